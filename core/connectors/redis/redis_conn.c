/*
 * redis_conn.c - a Redis handle's connection: resolving the host, connecting
 * with the AUTH/SELECT/PING handshake, the glue between hiredis and the
 * loop, the connect and command timeouts, and reconnecting with backoff when
 * the connection goes.
 *
 * hiredis 0.14 has no timeouts and resolves host names with a blocking
 * getaddrinfo(), so this file adds what the loop needs around it: names are
 * resolved with evdns, a connect timeout and a command timeout run on loop
 * timers, and a lost connection is re-established with exponential backoff.
 *
 * The glue to libevent is our own copy of hiredis's adapter shape
 * (adapters/libevent.h) so that every entry from the loop goes through
 * sl_conn_enter()/sl_conn_leave(): a handle freed from inside one of its
 * callbacks (a module's reply callback, or the instance released while it
 * runs) is only marked, and the outermost frame frees it once hiredis has
 * returned.
 * hiredis does the same for its own context (REDIS_IN_CALLBACK).
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "connectors/connector.h"
#include "daemon/core.h"
#include "daemon/log.h"
#include "redis_int.h"

/* ----------------------------------------------------- loop glue (adapter) */

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    sl_redis *r = arg;

    (void)fd;
    (void)what;
    sl_conn_enter(&r->life);
    if (r->ac != NULL)
        redisAsyncHandleRead(r->ac);
    sl_conn_leave(&r->life);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    sl_redis *r = arg;

    (void)fd;
    (void)what;
    sl_conn_enter(&r->life);
    if (r->ac != NULL)
        redisAsyncHandleWrite(r->ac);
    sl_conn_leave(&r->life);
}

static void ev_add_read(void *privdata)
{
    sl_redis *r = privdata;
    event_add(r->rev, NULL);
}

static void ev_del_read(void *privdata)
{
    sl_redis *r = privdata;
    event_del(r->rev);
}

static void ev_add_write(void *privdata)
{
    sl_redis *r = privdata;
    event_add(r->wev, NULL);
}

static void ev_del_write(void *privdata)
{
    sl_redis *r = privdata;
    event_del(r->wev);
}

/* hiredis is done with the socket; may run inside on_read/on_write, where
 * freeing the running event is allowed as long as it is not touched after. */
void redis_conn_ev_cleanup(void *privdata)
{
    sl_redis *r = privdata;

    if (r->rev != NULL)
        event_free(r->rev);
    if (r->wev != NULL)
        event_free(r->wev);
    r->rev = r->wev = NULL;
}

static int attach(sl_redis *r, redisAsyncContext *ac)
{
    r->rev = event_new(sl_base, ac->c.fd, EV_READ, on_read, r);
    r->wev = event_new(sl_base, ac->c.fd, EV_WRITE, on_write, r);
    if (r->rev == NULL || r->wev == NULL) {
        redis_conn_ev_cleanup(r);
        return -1;
    }
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = redis_conn_ev_cleanup;
    ac->ev.data = r;
    event_add(r->rev, NULL);
    return 0;
}

/* ---------------------------------------------------------- connection */

static void schedule_retry(sl_redis *r)
{
    /* Up to 20% jitter, so that many handles do not reconnect in step. */
    double delay = r->backoff * (0.8 + 0.2 * ((double)random() / (double)RAND_MAX));

    r->state = ST_DOWN;
    redis_set_up(r, 0);
    event_del(r->connect_timer);
    sl_conn_arm(r->retry_timer, delay);
    r->backoff *= 2;
    if (r->backoff > r->reconnect_max)
        r->backoff = r->reconnect_max;
}

/* The connection went (or never came): log once per outage, retry later. */
static void lost(sl_redis *r)
{
    if (r->failures++ == 0)
        sl_log_core(SL_LOG_WARN, WHO, "%s: redis %s:%d unavailable: %s; reconnecting", r->label,
                    r->url.host, r->url.port, r->err);
    else
        sl_log_core(SL_LOG_DEBUG, WHO, "%s: redis %s:%d still unavailable: %s", r->label,
                    r->url.host, r->url.port, r->err);
    schedule_retry(r);
}

/*
 * Closes the connection on our initiative (timeout, failed set-up).  Every
 * command still waiting is answered with the reason.  Inside a hiredis
 * callback hiredis itself defers the free until the callback returns.
 */
void redis_conn_drop(sl_redis *r, const char *fmt, ...)
{
    redisAsyncContext *ac = r->ac;
    va_list ap;

    if (ac == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
    r->ac = NULL;
    ac->data = NULL; /* our connect/disconnect callbacks ignore it from now */
    redisAsyncFree(ac);
    if (!r->life.freeing)
        lost(r);
}

/* TCP connects even to a stopped or loading server, so the connection
 * counts as up only once the handshake's PING has been answered. */
static void on_connect(const redisAsyncContext *ac, int status)
{
    sl_redis *r = ac->data;

    if (r == NULL || r->ac != ac || status == REDIS_OK)
        return;
    /* hiredis frees the context right after this returns. */
    snprintf(r->err, sizeof(r->err), "%s", ac->errstr != NULL ? ac->errstr : "connect failed");
    r->ac = NULL;
    lost(r);
}

void redis_conn_mark_up(sl_redis *r)
{
    event_del(r->connect_timer);
    if (r->failures > 0)
        sl_log_core(SL_LOG_INFO, WHO, "%s: redis %s:%d reconnected after %d failed attempt%s",
                    r->label, r->url.host, r->url.port, r->failures, r->failures == 1 ? "" : "s");
    else
        sl_log_core(SL_LOG_INFO, WHO, "%s: connected to redis %s:%d", r->label, r->url.host,
                    r->url.port);
    r->state = ST_UP;
    r->failures = 0;
    r->backoff = BACKOFF_FIRST;
    r->err[0] = '\0';
    redis_set_up(r, 1);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    sl_redis *r = ac->data;

    (void)status;
    if (r == NULL || r->ac != ac)
        return;
    snprintf(r->err, sizeof(r->err), "%s",
             ac->err != 0 && ac->errstr != NULL ? ac->errstr : "server closed the connection");
    r->ac = NULL;
    if (!r->life.freeing)
        lost(r);
}

/* Queues a command of ours ahead of anything the module sends. */
static int send_internal(sl_redis *r, int argc, const char **argv, int handshake_end)
{
    cmd *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return -1;
    c->r = r;
    c->internal = 1;
    c->handshake_end = handshake_end;
    c->start = sl_now();
    c->deadline = c->start + r->command_timeout;
    if (redisAsyncCommandArgv(r->ac, redis_cmd_on_reply, c, argc, argv, NULL) != REDIS_OK) {
        free(c);
        return -1;
    }
    if (r->tail != NULL)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    return 0;
}

static void connect_to(sl_redis *r, const char *ip)
{
    redisAsyncContext *ac;
    char db[16];

    snprintf(r->addr, sizeof(r->addr), "%s", ip);
    ac = redisAsyncConnect(ip, r->url.port);
    if (ac == NULL || ac->err != 0) {
        snprintf(r->err, sizeof(r->err), "%s", ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        lost(r);
        return;
    }
    if (attach(r, ac) != 0) {
        snprintf(r->err, sizeof(r->err), "out of memory");
        redisAsyncFree(ac);
        lost(r);
        return;
    }
    r->ac = ac;
    ac->data = r;
    r->state = ST_CONNECTING;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    sl_conn_arm(r->connect_timer, r->connect_timeout);
    /* Pipelined ahead of every module command, so nothing runs before the
     * connection is authenticated and on the right database. */
    if (r->url.password[0] != '\0') {
        const char *auth2[] = { "AUTH", r->url.password };
        const char *auth3[] = { "AUTH", r->url.user, r->url.password };
        int bad = r->url.user[0] != '\0' ? send_internal(r, 3, auth3, 0)
                                         : send_internal(r, 2, auth2, 0);
        if (bad != 0) {
            redis_conn_drop(r, "cannot queue AUTH");
            return;
        }
    }
    if (r->url.db != 0) {
        const char *select[] = { "SELECT", db };
        snprintf(db, sizeof(db), "%d", r->url.db);
        if (send_internal(r, 2, select, 0) != 0) {
            redis_conn_drop(r, "cannot queue SELECT");
            return;
        }
    }
    {
        const char *ping[] = { "PING" };
        if (send_internal(r, 1, ping, 1) != 0) {
            redis_conn_drop(r, "cannot queue PING");
            return;
        }
    }
    redis_cmd_rearm_timer(r);
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    sl_redis *r = arg;
    char ip[INET6_ADDRSTRLEN];
    const void *a;

    if (result == EVUTIL_EAI_CANCEL) /* from destroy(): touch nothing */
        return;
    r->dns_req = NULL;
    sl_conn_enter(&r->life);
    if (r->life.freeing) {
        /* nothing: leave() frees */
    } else if (result != 0 || res == NULL) {
        snprintf(r->err, sizeof(r->err), "cannot resolve %.255s: %s", r->url.host,
                 evutil_gai_strerror(result));
        lost(r);
    } else {
        if (res->ai_family == AF_INET6)
            a = &((const struct sockaddr_in6 *)(const void *)res->ai_addr)->sin6_addr;
        else
            a = &((const struct sockaddr_in *)(const void *)res->ai_addr)->sin_addr;
        if (evutil_inet_ntop(res->ai_family, a, ip, sizeof(ip)) == NULL) {
            snprintf(r->err, sizeof(r->err), "cannot use the address of %.255s", r->url.host);
            lost(r);
        } else {
            connect_to(r, ip);
        }
    }
    if (res != NULL)
        evutil_freeaddrinfo(res);
    sl_conn_leave(&r->life);
}

/* Numeric addresses connect at once; names are resolved without blocking
 * the loop (hiredis would call getaddrinfo() itself). */
void redis_conn_start(sl_redis *r)
{
    struct evutil_addrinfo hints;
    unsigned char buf[sizeof(struct in6_addr)];
    char port[8];

    if (inet_pton(AF_INET, r->url.host, buf) == 1 || inet_pton(AF_INET6, r->url.host, buf) == 1) {
        connect_to(r, r->url.host);
        return;
    }
    if (r->dns == NULL) {
        r->dns = evdns_base_new(sl_base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
        if (r->dns == NULL) {
            snprintf(r->err, sizeof(r->err), "cannot set up name resolution");
            lost(r);
            return;
        }
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(port, sizeof(port), "%d", r->url.port);
    r->state = ST_RESOLVING;
    /* The callback may run before this returns (hosts file, cache). */
    r->dns_req = evdns_getaddrinfo(r->dns, r->url.host, port, &hints, on_resolved, r);
}

void redis_conn_on_retry(evutil_socket_t fd, short what, void *arg)
{
    sl_redis *r = arg;

    (void)fd;
    (void)what;
    sl_conn_enter(&r->life);
    if (r->s_reconnects != NULL)
        sl_series_add(r->s_reconnects, 1);
    redis_conn_start(r);
    sl_conn_leave(&r->life);
}

void redis_conn_on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    sl_redis *r = arg;

    (void)fd;
    (void)what;
    sl_conn_enter(&r->life);
    if (r->state == ST_CONNECTING)
        redis_conn_drop(r, "connect to %s:%d timed out after %gs", r->addr, r->url.port,
                        r->connect_timeout);
    sl_conn_leave(&r->life);
}

void redis_conn_on_command_timeout(evutil_socket_t fd, short what, void *arg)
{
    sl_redis *r = arg;

    (void)fd;
    (void)what;
    sl_conn_enter(&r->life);
    if (r->head != NULL && r->head->deadline <= sl_now() + 0.0005) {
        r->head->timed_out = 1;
        /* Once per outage: lost() reports the rest. */
        sl_log_core(r->state == ST_UP ? SL_LOG_WARN : SL_LOG_DEBUG, WHO,
                    "%s: redis %s:%d did not answer within %gs; resetting the connection", r->label,
                    r->url.host, r->url.port, r->command_timeout);
        redis_conn_drop(r, "no reply from redis within %gs (command_timeout); connection reset",
                        r->command_timeout);
    } else {
        redis_cmd_rearm_timer(r);
    }
    sl_conn_leave(&r->life);
}
