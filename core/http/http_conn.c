/*
 * http_conn.c - the connections of the HTTP listeners: counted, capped and
 * given a whole-request deadline.
 *
 * libevent 2.1's evhttp has no connection limit and only an inactivity
 * timeout, which a client sending one byte every few seconds renews
 * forever.  Its one hook on new connections is the bufferevent callback
 * (evhttp_set_bevcb), which runs before the connection object exists and
 * without the socket.  So a connection is tracked in two steps:
 *
 *  - the callback makes the bufferevent (TLS or plain), takes a reference
 *    on it and queues the connection for adoption with an active event,
 *    which runs in the same pass of the loop, before the socket can be
 *    read;
 *  - adoption finds the evhttp connection (the bufferevent's callback
 *    argument), learns the socket, registers a close callback, and either
 *    starts the deadline or, beyond max_connections, answers 503 itself.
 *    Requests find their connection by socket.
 *
 * The deadline runs while the connection waits for or reads a request and
 * stops while a request is being answered; when it fires the socket is
 * shut down, evhttp sees the end of the stream and frees the connection.
 *
 * evhttp answers a request head over its limit with its own 400 and no
 * hook.  So the head is measured here first, with a callback on the
 * connection's input buffer, which runs before evhttp's read callback
 * sees new bytes and also sees every line evhttp consumes: the bytes
 * consumed plus the rest up to the first empty line are the head.  Over
 * max_header_size the connection is answered 431 here, and evhttp, whose
 * own limit is the same and counts fewer bytes (no line ends), never gets
 * there.
 *
 * A refusal (431, 503) is a canned answer written past evhttp: its read
 * and write callbacks are taken off the bufferevent (the write callback
 * would run evhttp's "response sent" step for a request it is not
 * sending), what the client sends is discarded, and once the answer is
 * out the socket's write side is shut; the client's end of the stream, or
 * the deadline, then reaches evhttp's event callback, which frees the
 * connection.
 *
 * evhttp also answers some requests itself, before any dispatch: a
 * malformed head (400), a body over max_body (413), a method it was not
 * told to allow (501).  It offers no hook for those either, so they are
 * seen where they leave: an answer written on a connection with no
 * request dispatched is one of evhttp's, and its status line and size are
 * read from the output buffer for the access log.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include "daemon/core.h"
#include "daemon/log.h"
#include "metrics/metrics.h"
#include "edge.h"
#include "http_int.h"

struct sl_conn {
    sl_conn *next_pending;
    sl_listener *l;
    struct bufferevent *bev;
    struct evhttp_connection *evcon;
    evutil_socket_t fd;
    struct event *deadline;
    int busy;  /* requests dispatched and not yet answered in full */
    int *gone; /* a streamed reply's flag, set when the client goes */
    enum { READING_HEAD, READ_HEAD, REFUSING } phase;
    size_t head; /* bytes of the request head evhttp has consumed */
    struct evbuffer_cb_entry *in_cb;
    struct evbuffer_cb_entry *out_cb;
    const struct refusal *refusal;
    struct event *refuse_ev;
    double opened, opened_wall; /* adopted: monotonic, wall clock */
    double head_at, head_wall;  /* the current head's first bytes; 0: none yet */
    struct evbuffer_cb_entry *early_cb;
    int early_status; /* of an answer of evhttp's being written, 0: none */
    size_t early_bytes;
    sl_span_attrs span_attrs; /* its client's, for server spans (http_trace.c) */
};

/* A canned answer to a connection evhttp is not to see further. */
struct refusal {
    int status;
    const char *phrase;
    const char *extra_headers; /* each ending in CRLF */
    const char *error;
    const char *reason; /* label of sluice_http_connections_dropped_total */
};

static const struct refusal over_capacity = {
    503, "Service Unavailable", "Retry-After: 1\r\n",
    "too many connections to this listener; retry shortly", "over_capacity"
};
static const struct refusal head_too_large = {
    431, "Request Header Fields Too Large", "",
    "the request line and headers are over max_header_size", "header_too_large"
};

static sl_conn *pending;
static struct event *adopt_ev;
static sl_conn **by_fd;
static size_t by_fd_cap;
static double deadline_seconds = 30;
static size_t max_head = 16384;
static sl_metric *open_gauge;
static sl_metric *closed_total;

void sl_conn_metrics_init(void)
{
    open_gauge =
            sl_metric_register(SL_METRIC_GAUGE, "sluice_http_connections",
                               "HTTP connections open, by listener.", "listener", NULL, 0, NULL);
    closed_total = sl_metric_register(
            SL_METRIC_COUNTER, "sluice_http_connections_dropped_total",
            "HTTP connections the server closed itself, by listener and reason "
            "(over_capacity: beyond max_connections, answered 503; header_too_large: the "
            "request head over max_header_size, answered 431; deadline: request_timeout "
            "ran out).",
            "listener,reason", NULL, 0, NULL);
}

void sl_conn_metrics_free(void)
{
    if (open_gauge != NULL)
        sl_metric_release(open_gauge);
    if (closed_total != NULL)
        sl_metric_release(closed_total);
    open_gauge = closed_total = NULL;
    if (adopt_ev != NULL)
        event_free(adopt_ev);
    adopt_ev = NULL;
    free(by_fd);
    by_fd = NULL;
    by_fd_cap = 0;
}

void sl_conn_set_limits(double seconds, size_t max_header)
{
    deadline_seconds = seconds;
    max_head = max_header;
}

static void count_open(sl_listener *l)
{
    sl_series_set(sl_series_of(open_gauge, l->addr), (double)l->nconns);
}

static void drop(sl_conn *c, const char *reason)
{
    sl_series_add(sl_series_of(closed_total, c->l->addr, reason), 1);
    sl_log_core(SL_LOG_DEBUG, "http", "%s: closing a connection: %s", c->l->addr, reason);
    /* evhttp reads the end of the stream next and frees the connection,
     * which calls conn_closed(). */
    shutdown(c->fd, SHUT_RDWR);
}

static void deadline_passed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    drop(arg, "deadline");
}

static void arm(sl_conn *c)
{
    struct timeval tv = { (time_t)deadline_seconds,
                          (suseconds_t)((deadline_seconds - (time_t)deadline_seconds) * 1e6) };
    evtimer_add(c->deadline, &tv);
}

static void conn_free(sl_conn *c)
{
    if (c->deadline != NULL)
        event_free(c->deadline);
    if (c->refuse_ev != NULL)
        event_free(c->refuse_ev);
    free(c->span_attrs.json);
    free(c);
}

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    sl_conn *c = arg;
    (void)evcon;

    if (c->gone != NULL)
        *c->gone = 1;
    /* The bufferevent may outlive this close callback by a little. */
    if (c->in_cb != NULL)
        evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->in_cb);
    if (c->out_cb != NULL)
        evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
    if (c->early_cb != NULL)
        evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->early_cb);
    if (c->fd >= 0 && (size_t)c->fd < by_fd_cap && by_fd[c->fd] == c)
        by_fd[c->fd] = NULL;
    c->l->nconns--;
    count_open(c->l);
    conn_free(c);
}

static int index_fd(sl_conn *c)
{
    if ((size_t)c->fd >= by_fd_cap) {
        size_t cap = by_fd_cap ? by_fd_cap : 256;
        sl_conn **p;
        while (cap <= (size_t)c->fd)
            cap *= 2;
        p = realloc(by_fd, cap * sizeof(*p));
        if (p == NULL)
            return -1;
        memset(p + by_fd_cap, 0, (cap - by_fd_cap) * sizeof(*p));
        by_fd = p;
        by_fd_cap = cap;
    }
    by_fd[c->fd] = c;
    return 0;
}

/* The refusal is out: shut the write side so the client sees the end of
 * the answer, and keep discarding what it sends until it closes (a
 * lingering close: closing at once could reset the connection before the
 * client has read the answer). */
static void refusal_sent(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    sl_conn *c = arg;

    if (info->n_deleted > 0 && evbuffer_get_length(buf) == 0)
        shutdown(c->fd, SHUT_WR);
}

/* An answer given without a request dispatched is an answer like any
 * other: the access log has it, with what is known (no method, path or
 * route; a request id when the answer gave one). */
static void log_early(sl_conn *c, int status, size_t bytes, const char *id)
{
    char *host = NULL;
    ev_uint16_t port;
    int head = c->head_at > 0;

    evhttp_connection_get_peer(c->evcon, &host, &port);
    sl_http_access_early(c->l,
                         &(sl_access_entry){ .ts = head ? c->head_wall : c->opened_wall,
                                             .client = host,
                                             .status = status,
                                             .bytes = bytes,
                                             .duration = sl_now() - (head ? c->head_at : c->opened),
                                             .request_id = id });
}

/*
 * The output of a connection changed.  While no request is dispatched on
 * it and no refusal of ours is being sent, what is written there is an
 * answer of evhttp's own: its status is read from the first line, its
 * body's size once the head is whole (evhttp writes the whole answer
 * before any of it leaves), and it is logged when it starts to leave.
 */
static void output_changed(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
    sl_conn *c = arg;
    struct evbuffer_ptr end;
    char line[13];

    if (c->busy > 0 || c->phase == REFUSING)
        return;
    if (info->n_deleted > 0 && c->early_status != 0) {
        log_early(c, c->early_status, c->early_bytes, NULL);
        c->early_status = 0;
        return;
    }
    if (info->n_added == 0)
        return;
    if (c->early_status == 0 && evbuffer_copyout(out, line, 12) == 12) {
        line[12] = '\0';
        if (strncmp(line, "HTTP/1.", 7) == 0 && line[8] == ' ')
            c->early_status = atoi(line + 9);
    }
    end = evbuffer_search(out, "\r\n\r\n", 4, NULL);
    if (c->early_status != 0 && end.pos >= 0)
        c->early_bytes = evbuffer_get_length(out) - (size_t)end.pos - 4;
}

static void send_refusal(evutil_socket_t fd, short what, void *arg)
{
    sl_conn *c = arg;
    const struct refusal *r = c->refusal;
    bufferevent_event_cb eventcb = NULL;
    void *cbarg = NULL;
    char id[SL_REQUEST_ID_SIZE], body[256];
    int n;

    (void)fd;
    (void)what;
    sl_http_request_id(id);
    n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"request_id\":\"%s\"}", r->error, id);
    bufferevent_getcb(c->bev, NULL, NULL, &eventcb, &cbarg);
    bufferevent_setcb(c->bev, NULL, NULL, eventcb, cbarg);
    c->out_cb = evbuffer_add_cb(bufferevent_get_output(c->bev), refusal_sent, c);
    if (c->out_cb == NULL ||
        evbuffer_add_printf(bufferevent_get_output(c->bev),
                            "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                            "Content-Length: %d\r\nConnection: close\r\nX-Request-Id: %s\r\n"
                            "%s\r\n%s",
                            r->status, r->phrase, n, id, r->extra_headers, body) < 0) {
        shutdown(c->fd, SHUT_RDWR);
        return;
    }
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    log_early(c, r->status, (size_t)n, id);
}

/* Answers the connection with `r` instead of evhttp.  What the client has
 * sent is dropped now, and the answer is written from the loop's next
 * pass: this may run inside evhttp's own steps (reading, or completing the
 * previous answer), which set the bufferevent's callbacks after it. */
static void refuse(sl_conn *c, const struct refusal *r, const char *detail)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    c->phase = REFUSING;
    c->refusal = r;
    sl_series_add(sl_series_of(closed_total, c->l->addr, r->reason), 1);
    sl_log_core(r->status == 503 ? SL_LOG_DEBUG : SL_LOG_INFO, "http",
                "%s: refusing a connection with %d: %s", c->l->addr, r->status, detail);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (c->refuse_ev == NULL &&
        (c->refuse_ev = event_new(sl_base, -1, 0, send_refusal, c)) == NULL) {
        shutdown(c->fd, SHUT_RDWR);
        return;
    }
    event_active(c->refuse_ev, EV_TIMEOUT, 0);
}

/* Measures the request head buffered in `in` on top of the c->head bytes
 * evhttp has consumed (whole lines, so the rest starts a line): refuses
 * it with 431 when over max_head, or notes its end at the first empty
 * line. */
static void check_head(sl_conn *c, struct evbuffer *in)
{
    size_t len = evbuffer_get_length(in);
    struct evbuffer_ptr at;
    char detail[96];

    evbuffer_ptr_set(in, &at, 0, EVBUFFER_PTR_SET);
    for (;;) {
        size_t eol_len = 0;
        struct evbuffer_ptr eol = evbuffer_search_eol(in, &at, &eol_len, EVBUFFER_EOL_CRLF);
        size_t upto = eol.pos < 0 ? len : (size_t)eol.pos + eol_len;

        if (c->head + upto > max_head) {
            snprintf(detail, sizeof(detail), "request head over %zu bytes (max_header_size)",
                     max_head);
            refuse(c, &head_too_large, detail);
            return;
        }
        if (eol.pos < 0)
            return;
        if (eol.pos == at.pos) {
            c->phase = READ_HEAD;
            return;
        }
        evbuffer_ptr_set(in, &at, upto, EVBUFFER_PTR_SET);
    }
}

static void input_changed(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    sl_conn *c = arg;

    if (c->phase == REFUSING) {
        if (evbuffer_get_length(in) > 0)
            evbuffer_drain(in, evbuffer_get_length(in));
    } else if (c->phase == READING_HEAD) {
        if (c->head_at == 0 && info->n_added > 0) {
            c->head_at = sl_now();
            c->head_wall = sl_wall();
        }
        c->head += info->n_deleted;
        if (info->n_added > 0)
            check_head(c, in);
    }
}

static void adopt(sl_conn *c)
{
    bufferevent_event_cb eventcb = NULL;
    void *cbarg = NULL;

    bufferevent_getcb(c->bev, NULL, NULL, &eventcb, &cbarg);
    c->fd = bufferevent_getfd(c->bev);
    if (eventcb == NULL || cbarg == NULL || c->fd < 0) {
        /* evhttp gave up on the connection before it was ours (it clears
         * the callbacks when it frees the bufferevent); ours was the last
         * reference. */
        bufferevent_decref(c->bev);
        conn_free(c);
        return;
    }
    bufferevent_decref(c->bev);
    c->evcon = cbarg;
    c->opened = sl_now();
    c->opened_wall = sl_wall();
    c->deadline = evtimer_new(sl_base, deadline_passed, c);
    c->in_cb = evbuffer_add_cb(bufferevent_get_input(c->bev), input_changed, c);
    c->early_cb = evbuffer_add_cb(bufferevent_get_output(c->bev), output_changed, c);
    if (c->deadline == NULL || c->in_cb == NULL || c->early_cb == NULL || index_fd(c) != 0) {
        sl_log_core(SL_LOG_ERROR, "http", "%s: out of memory tracking a connection", c->l->addr);
        if (c->in_cb != NULL)
            evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->in_cb);
        if (c->early_cb != NULL)
            evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->early_cb);
        shutdown(c->fd, SHUT_RDWR);
        conn_free(c);
        return;
    }
    evhttp_connection_set_closecb(c->evcon, conn_closed, c);
    c->l->nconns++;
    count_open(c->l);
    arm(c);
    if (c->l->max_connections > 0 && c->l->nconns > c->l->max_connections)
        refuse(c, &over_capacity, "over max_connections");
}

static void adopt_pending(void)
{
    while (pending != NULL) {
        sl_conn *c = pending;
        pending = c->next_pending;
        adopt(c);
    }
}

static void adopt_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    adopt_pending();
}

static struct bufferevent *new_bev(struct event_base *base, void *arg)
{
    sl_listener *l = arg;
    struct bufferevent *bev = NULL;
    sl_conn *c;

    if (adopt_ev == NULL && (adopt_ev = event_new(sl_base, -1, 0, adopt_cb, NULL)) == NULL)
        return NULL;
    if (l->tls != NULL) {
        SSL *ssl = SSL_new(l->tls);
        if (ssl != NULL)
            bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                 BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) {
            /* Out of memory.  evhttp would then make a plain bufferevent;
             * a TLS client's handshake on it reads as a malformed request
             * and gets a 400, so nothing is served in the clear. */
            if (ssl != NULL)
                SSL_free(ssl);
            return NULL;
        }
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    } else {
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL)
            return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return bev; /* served, untracked: the least harm when memory is short */
    c->l = l;
    c->bev = bev;
    c->fd = -1;
    bufferevent_incref(bev);
    c->next_pending = pending;
    pending = c;
    event_active(adopt_ev, EV_TIMEOUT, 0);
    return bev;
}

void sl_conn_attach(sl_listener *l)
{
    evhttp_set_bevcb(l->http, new_bev, l);
}

sl_conn *sl_conn_find(struct evhttp_request *ev)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
    struct bufferevent *bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;
    sl_conn *c;

    adopt_pending();
    if (fd < 0 || (size_t)fd >= by_fd_cap || (c = by_fd[fd]) == NULL || c->evcon != evcon)
        return NULL;
    return c;
}

void sl_conn_busy(sl_conn *c)
{
    if (c != NULL && c->busy++ == 0)
        evtimer_del(c->deadline);
}

void sl_conn_idle(sl_conn *c)
{
    if (c == NULL || --c->busy > 0)
        return;
    arm(c);
    /* The next request's head starts; a pipelining client may have sent
     * some of it already. */
    c->phase = READING_HEAD;
    c->head = 0;
    c->head_at = 0;
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        check_head(c, bufferevent_get_input(c->bev));
}

sl_span_attrs *sl_conn_span_attrs(sl_conn *c)
{
    return c != NULL ? &c->span_attrs : NULL;
}

void sl_conn_watch_close(sl_conn *c, int *gone)
{
    if (c != NULL)
        c->gone = gone;
}
