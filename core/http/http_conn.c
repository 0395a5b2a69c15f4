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
 *    starts the deadline or, beyond max_connections, shuts the socket so
 *    that evhttp drops it at once.  Requests find their connection by
 *    socket.
 *
 * The deadline runs while the connection waits for or reads a request and
 * stops while a request is being answered; when it fires the socket is
 * shut down, evhttp sees the end of the stream and frees the connection.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include "daemon/core.h"
#include "daemon/log.h"
#include "metrics/metrics.h"
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
};

static sl_conn *pending;
static struct event *adopt_ev;
static sl_conn **by_fd;
static size_t by_fd_cap;
static double deadline_seconds = 30;
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
            "(over_capacity: beyond max_connections; deadline: request_timeout ran out).",
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

void sl_conn_set_deadline(double seconds)
{
    deadline_seconds = seconds;
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
    free(c);
}

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    sl_conn *c = arg;
    (void)evcon;

    if (c->gone != NULL)
        *c->gone = 1;
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
    c->deadline = evtimer_new(sl_base, deadline_passed, c);
    if (c->deadline == NULL || index_fd(c) != 0) {
        sl_log_core(SL_LOG_ERROR, "http", "%s: out of memory tracking a connection", c->l->addr);
        shutdown(c->fd, SHUT_RDWR);
        conn_free(c);
        return;
    }
    evhttp_connection_set_closecb(c->evcon, conn_closed, c);
    c->l->nconns++;
    count_open(c->l);
    if (c->l->max_connections > 0 && c->l->nconns > c->l->max_connections) {
        drop(c, "over_capacity");
        return;
    }
    arm(c);
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
    if (c != NULL && --c->busy == 0)
        arm(c);
}

void sl_conn_watch_close(sl_conn *c, int *gone)
{
    if (c != NULL)
        c->gone = gone;
}
