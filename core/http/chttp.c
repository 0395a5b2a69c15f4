/*
 * chttp.c - libcurl's multi interface on the daemon's loop.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when
 * to call it back (CURLMOPT_TIMERFUNCTION); we turn those into libevent
 * events and hand readiness back with curl_multi_socket_action().  Finished
 * transfers are collected with curl_multi_info_read() after every action.
 *
 * curl forbids calling curl_multi_* from inside its own callbacks, and a
 * `done` callback may free everything (the instance stops), so:
 *   - completion callbacks run only from check_done(), after
 *     curl_multi_socket_action() has returned;
 *   - the handle counts our frames on the stack and a free requested inside
 *     one is carried out by the outermost frame (the same deferral hiredis
 *     uses for its contexts).
 * Callers must not set CURLOPT_PRIVATE: it points at our transfer record.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chttp.h"
#include "connectors/connector.h"
#include "daemon/log.h"

typedef struct xfer xfer;
struct xfer {
    xfer *prev, *next;
    CURL *easy;
    sl_chttp_done_fn done;
    void *arg;
};

/* One watched socket; curl keeps the pointer with curl_multi_assign(). */
typedef struct sock sock;
struct sock {
    sock *prev, *next;
    struct event *ev;
};

struct sl_chttp {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    xfer *xfers;
    sock *socks; /* to free what curl_multi_cleanup() does not report */
    int running;
    sl_conn_life life; /* only its depth and deferred destroy: no owner */
};

static void destroy(void *obj);

static int curl_ready;

int sl_chttp_global_init(char *err, size_t errlen)
{
    CURLcode rc;

    if (curl_ready)
        return 0;
    rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "curl_global_init: %s", curl_easy_strerror(rc));
        return -1;
    }
    curl_ready = 1;
    return 0;
}

void sl_chttp_global_cleanup(void)
{
    if (curl_ready)
        curl_global_cleanup();
    curl_ready = 0;
}

static void sock_free(sl_chttp *h, sock *sk)
{
    if (sk->prev != NULL)
        sk->prev->next = sk->next;
    else
        h->socks = sk->next;
    if (sk->next != NULL)
        sk->next->prev = sk->prev;
    if (sk->ev != NULL)
        event_free(sk->ev);
    free(sk);
}

static void unlink_xfer(sl_chttp *h, xfer *x)
{
    if (x->prev != NULL)
        x->prev->next = x->next;
    else
        h->xfers = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

/* Hands every finished transfer to its owner, each taken off the multi
 * handle first so that the owner may re-add or free it. */
static void check_done(sl_chttp *h)
{
    CURLMsg *msg;
    int left;

    while (!h->life.freeing && (msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        xfer *x = NULL;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(h->multi, easy);
        if (x == NULL)
            continue;
        /* The easy handle outlives x (its owner may keep it for a retry):
         * a later sl_chttp_cancel() of it must not find x. */
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        unlink_xfer(h, x);
        {
            sl_chttp_done_fn done = x->done;
            void *arg = x->arg;
            free(x);
            done(easy, result, arg);
        }
    }
}

static void action(sl_chttp *h, curl_socket_t s, int mask)
{
    CURLMcode rc = curl_multi_socket_action(h->multi, s, mask, &h->running);

    if (rc != CURLM_OK)
        sl_log_core(SL_LOG_ERROR, "http-client", "curl_multi_socket_action: %s",
                    curl_multi_strerror(rc));
    check_done(h);
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    sl_chttp *h = arg;
    int mask =
            ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);

    sl_conn_enter(&h->life);
    action(h, fd, mask);
    sl_conn_leave(&h->life);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    sl_chttp *h = arg;

    (void)fd;
    (void)what;
    sl_conn_enter(&h->life);
    action(h, CURL_SOCKET_TIMEOUT, 0);
    sl_conn_leave(&h->life);
}

/* CURLMOPT_TIMERFUNCTION: -1 stops the timer, 0 means "as soon as you can",
 * which must still go through the loop (no curl calls from here). */
static int timer_fn(CURLM *multi, long timeout_ms, void *arg)
{
    sl_chttp *h = arg;
    struct timeval tv;

    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(h->timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(h->timer, &tv);
    return 0;
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching one socket. */
static int socket_fn(CURL *easy, curl_socket_t s, int what, void *arg, void *sockp)
{
    sl_chttp *h = arg;
    sock *sk = sockp;
    short kind;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (sk != NULL) {
            sock_free(h, sk);
            curl_multi_assign(h->multi, s, NULL);
        }
        return 0;
    }
    kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0) |
                   EV_PERSIST);
    if (sk == NULL) {
        sk = calloc(1, sizeof(*sk));
        if (sk == NULL)
            return -1; /* curl fails the transfer */
        sk->next = h->socks;
        if (h->socks != NULL)
            h->socks->prev = sk;
        h->socks = sk;
        curl_multi_assign(h->multi, s, sk);
    } else {
        event_free(sk->ev);
    }
    sk->ev = event_new(h->base, s, kind, on_socket_event, h);
    if (sk->ev == NULL || event_add(sk->ev, NULL) != 0) {
        sock_free(h, sk);
        curl_multi_assign(h->multi, s, NULL);
        return -1;
    }
    return 0;
}

sl_chttp *sl_chttp_new(struct event_base *base, long max_connections)
{
    sl_chttp *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return NULL;
    h->base = base;
    h->life.destroy = destroy;
    h->life.obj = h;
    h->multi = curl_multi_init();
    h->timer = evtimer_new(base, on_timer, h);
    if (h->multi == NULL || h->timer == NULL) {
        destroy(h);
        return NULL;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_fn);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_fn);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    if (max_connections > 0) {
        curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_connections);
        curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_connections);
        /* Keep as many idle connections as may be busy at once. */
        curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, max_connections);
    }
    return h;
}

int sl_chttp_add(sl_chttp *h, CURL *easy, sl_chttp_done_fn done, void *arg)
{
    xfer *x;

    if (h->life.freeing)
        return -1;
    x = calloc(1, sizeof(*x));
    if (x == NULL)
        return -1;
    x->easy = easy;
    x->done = done;
    x->arg = arg;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
    if (curl_multi_add_handle(h->multi, easy) != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        free(x);
        return -1;
    }
    x->next = h->xfers;
    if (h->xfers != NULL)
        h->xfers->prev = x;
    h->xfers = x;
    return 0;
}

void sl_chttp_cancel(sl_chttp *h, CURL *easy)
{
    xfer *x = NULL;

    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    if (x == NULL)
        return;
    curl_multi_remove_handle(h->multi, easy);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    unlink_xfer(h, x);
    free(x);
}

static void destroy(void *obj)
{
    sl_chttp *h = obj;

    while (h->xfers != NULL)
        sl_chttp_cancel(h, h->xfers->easy);
    /* Closes the cached connections; socket_fn frees their events. */
    if (h->multi != NULL)
        curl_multi_cleanup(h->multi);
    while (h->socks != NULL)
        sock_free(h, h->socks);
    if (h->timer != NULL)
        event_free(h->timer);
    free(h);
}

void sl_chttp_free(sl_chttp *h)
{
    if (h != NULL)
        sl_conn_released(&h->life);
}
