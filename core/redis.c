/*
 * redis.c - the Redis connector: one hiredis async connection per handle,
 * driven on the daemon's loop.
 *
 * hiredis 0.14 has no timeouts and resolves host names with a blocking
 * getaddrinfo(), so this file adds what the loop needs around it: names are
 * resolved with evdns, a connect timeout and a command timeout run on loop
 * timers, and a lost connection is re-established with exponential backoff.
 *
 * The glue to libevent is our own copy of hiredis's adapter shape
 * (adapters/libevent.h) so that every entry from the loop goes through
 * sl_conn_enter()/sl_conn_leave(): a handle freed from inside one of its
 * callbacks (a
 * module's reply callback, or the instance released while it runs) is only
 * marked, and the outermost frame frees it once hiredis has returned.
 * hiredis does the same for its own context (REDIS_IN_CALLBACK).
 *
 * Commands are kept in our own FIFO besides hiredis's: replies pair with
 * commands in order, so the head is the oldest unanswered command and one
 * timer at its deadline enforces command_timeout.  A command that times out
 * means the server is not answering: the connection is dropped, which fails
 * every command still waiting, and reconnecting starts.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "connector.h"
#include "core.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "schema.h"
#include "sluice_redis.h"

#define WHO "redis"
#define BACKOFF_FIRST 0.1

static const sl_option redis_options[] = {
    { "url", SL_OPT_STRING, "redis://127.0.0.1:6379",
      "server address, redis://[[user]:password@]host[:port][/db]", 0, 0, NULL },
    { "connect_timeout", SL_OPT_DURATION, "2s", "how long connecting may take, up to the first PONG", 0.001, 300,
      NULL },
    { "command_timeout", SL_OPT_DURATION, "5s",
      "how long a command may wait for its reply; on expiry the connection is reset "
      "(must exceed any blocking command's own timeout)", 0.001, 3600, NULL },
    { "reconnect_max", SL_OPT_DURATION, "5s",
      "longest wait between reconnect attempts (the wait doubles from 100ms)", 0.1, 3600,
      NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

/* ------------------------------------------------------------------- url */

int sl_redis_url_parse(const char *url, sl_redis_url *out, char *err, size_t errlen)
{
    const char *p, *at, *host, *hend, *slash;
    long v;
    char *end;

    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (strncasecmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "\"%s\" does not start with redis://", url);
        return -1;
    }
    p = url + 8;
    slash = strchr(p, '/');
    at = memchr(p, '@', slash != NULL ? (size_t)(slash - p) : strlen(p));
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon != NULL ? (size_t)(colon - p) : 0;
        size_t plen = colon != NULL ? (size_t)(at - colon - 1) : (size_t)(at - p);
        if (ulen >= sizeof(out->user) || plen >= sizeof(out->password)) {
            snprintf(err, errlen, "user or password too long in the redis url");
            return -1;
        }
        memcpy(out->user, p, ulen);
        memcpy(out->password, colon != NULL ? colon + 1 : p, plen);
        p = at + 1;
    }
    if (*p == '[') { /* [v6 address] */
        host = p + 1;
        hend = strchr(host, ']');
        if (hend == NULL) {
            snprintf(err, errlen, "unterminated [address] in \"%s\"", url);
            return -1;
        }
        p = hend + 1;
    } else {
        host = p;
        hend = host + strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789-._");
        p = hend;
    }
    if (hend == host || (size_t)(hend - host) >= sizeof(out->host)) {
        snprintf(err, errlen, "no usable host in \"%s\"", url);
        return -1;
    }
    memcpy(out->host, host, (size_t)(hend - host));
    if (*p == ':') {
        v = strtol(p + 1, &end, 10);
        if (end == p + 1 || v < 1 || v > 65535 || (*end != '\0' && *end != '/')) {
            snprintf(err, errlen, "bad port in \"%s\"", url);
            return -1;
        }
        out->port = (int)v;
        p = end;
    }
    if (*p == '/' && p[1] != '\0') {
        v = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end != '\0' || v < 0 || v > INT_MAX) {
            snprintf(err, errlen, "bad database number in \"%s\"", url);
            return -1;
        }
        out->db = (int)v;
    } else if (*p != '\0' && strcmp(p, "/") != 0) {
        snprintf(err, errlen, "unexpected \"%s\" in \"%s\"", p, url);
        return -1;
    }
    return 0;
}

static int redis_check(const sl_optset *opts, const char *file, sl_errors *errs)
{
    const sl_optval *v = sl_optset_get(opts, "url");
    sl_redis_url u;
    char err[256];

    if (v == NULL || sl_redis_url_parse(v->raw, &u, err, sizeof(err)) == 0)
        return 0;
    sl_errors_add(errs, file, v->line, "[redis] url: %s", err);
    return -1;
}

const sl_section_schema sl_redis_schema = {
    "redis", "the Redis connection of modules that use Redis", redis_options, SL_USES_REDIS,
    redis_check, NULL, NULL,
};

/* ---------------------------------------------------------------- handle */

typedef enum { ST_DOWN, ST_RESOLVING, ST_CONNECTING, ST_UP } conn_state;

typedef enum { OUT_OK, OUT_ERROR, OUT_UNAVAILABLE, OUT_FAILED, OUT_TIMEOUT, OUT_N } outcome;
static const char *const outcome_names[OUT_N] = { "ok", "error", "unavailable", "failed",
                                                   "timeout" };

typedef struct cmd cmd;
struct cmd {
    cmd *next;
    sl_redis *r;
    sl_redis_fn fn;     /* NULL for our own commands and ignored outcomes */
    void *arg;
    double start;
    double deadline;
    int internal;       /* AUTH/SELECT/PING at connect: not counted, failure drops */
    int handshake_end;  /* the PING whose answer makes the connection usable */
    int timed_out;
    char *why;          /* for commands failed without being sent */
};

struct sl_redis {
    sl_conn_life life;
    char *label;        /* the owning instance, for logs */
    sl_redis_url url;
    double connect_timeout, command_timeout, reconnect_max, backoff;

    conn_state state;
    int failures;       /* connection attempts failed since the last success */
    redisAsyncContext *ac;
    struct event *rev, *wev;
    struct event *connect_timer, *command_timer, *retry_timer, *deliver;
    struct evdns_base *dns;
    struct evdns_getaddrinfo_request *dns_req;
    char addr[INET6_ADDRSTRLEN];
    char err[512];      /* why the connection went or did not come */

    cmd *head, *tail;           /* handed to hiredis, oldest first */
    cmd *failed, *failed_tail;  /* to be answered on the next loop turn */

    sl_metric *m_latency, *m_commands, *m_reconnects, *m_up;
    sl_series *s_latency, *s_reconnects, *s_up, *s_out[OUT_N];
};

static void start_connect(sl_redis *r);

static void set_up(sl_redis *r, int up)
{
    if (r->s_up != NULL)
        sl_series_set(r->s_up, up);
}

static void count(sl_redis *r, const cmd *c, outcome o)
{
    if (c->internal)
        return;
    if (r->s_out[o] != NULL)
        sl_series_add(r->s_out[o], 1);
    if (o != OUT_UNAVAILABLE && r->s_latency != NULL)
        sl_series_observe(r->s_latency, sl_now() - c->start);
}

/* Keeps the command timer at the deadline of the oldest waiting command. */
static void rearm_command_timer(sl_redis *r)
{
    if (r->head == NULL)
        event_del(r->command_timer);
    else
        sl_conn_arm(r->command_timer, r->head->deadline - sl_now());
}

static void unlink_cmd(sl_redis *r, cmd *c)
{
    cmd **pp;

    for (pp = &r->head; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            if (r->tail == c) {
                r->tail = NULL;
                for (cmd *t = r->head; t != NULL; t = t->next)
                    r->tail = t;
            }
            c->next = NULL;
            return;
        }
    }
}

/* Calls a module's callback; the handle may be freed inside. */
static void call(sl_redis *r, cmd *c, const redisReply *reply, const char *err)
{
    if (c->fn != NULL && !r->life.freeing)
        c->fn(r, (const sl_redis_reply *)reply, err, c->arg);
}

/* ------------------------------------------------------- failing early */

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
    sl_redis *r = arg;
    cmd *c;

    (void)fd;
    (void)what;
    sl_conn_enter(&r->life);
    while ((c = r->failed) != NULL && !r->life.freeing) {
        r->failed = c->next;
        if (r->failed == NULL)
            r->failed_tail = NULL;
        count(r, c, OUT_UNAVAILABLE);
        call(r, c, NULL, c->why != NULL ? c->why : "redis not connected");
        free(c->why);
        free(c);
    }
    sl_conn_leave(&r->life);
}

/* Answers `c` with an error on the next loop turn, not from inside the
 * caller's sl_redis_command(). */
static void fail_later(sl_redis *r, cmd *c, const char *why)
{
    c->why = strdup(why); /* NULL when out of memory: answered with a fixed text */
    c->next = NULL;
    if (r->failed_tail != NULL)
        r->failed_tail->next = c;
    else
        r->failed = c;
    r->failed_tail = c;
    event_active(r->deliver, EV_TIMEOUT, 0);
}

/* -------------------------------------------------------------- replies */

static void drop(sl_redis *r, const char *fmt, ...) SL_PRINTF(2, 3);
static void mark_up(sl_redis *r);

/* hiredis calls this once per command: with the reply, or with NULL when
 * the connection went before the reply came. */
static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    cmd *c = privdata;
    sl_redis *r = c->r;
    redisReply *reply = reply_;
    const char *err = NULL;
    outcome o;

    unlink_cmd(r, c);
    if (r->life.freeing) {
        free(c);
        return;
    }
    sl_conn_enter(&r->life);
    if (reply == NULL) {
        if (c->timed_out)
            err = r->err, o = OUT_TIMEOUT;
        else if (ac->err != 0 && ac->errstr != NULL)
            err = ac->errstr, o = OUT_FAILED;
        else
            err = r->err[0] != '\0' ? r->err : "connection closed", o = OUT_FAILED;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        err = reply->str;
        o = OUT_ERROR;
    } else {
        o = OUT_OK;
    }
    count(r, c, o);
    if (c->internal) {
        if (err != NULL && r->ac == ac)
            drop(r, "setting up the connection to %s:%d failed: %s", r->url.host, r->url.port,
                 err);
        else if (err == NULL && c->handshake_end && r->ac == ac)
            mark_up(r);
    } else {
        call(r, c, reply, err);
    }
    free(c);
    if (!r->life.freeing)
        rearm_command_timer(r);
    sl_conn_leave(&r->life);
}

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
static void ev_cleanup(void *privdata)
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
        ev_cleanup(r);
        return -1;
    }
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
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
    set_up(r, 0);
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
static void drop(sl_redis *r, const char *fmt, ...)
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

static void mark_up(sl_redis *r)
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
    set_up(r, 1);
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
    if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, NULL) != REDIS_OK) {
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
            drop(r, "cannot queue AUTH");
            return;
        }
    }
    if (r->url.db != 0) {
        const char *select[] = { "SELECT", db };
        snprintf(db, sizeof(db), "%d", r->url.db);
        if (send_internal(r, 2, select, 0) != 0) {
            drop(r, "cannot queue SELECT");
            return;
        }
    }
    {
        const char *ping[] = { "PING" };
        if (send_internal(r, 1, ping, 1) != 0) {
            drop(r, "cannot queue PING");
            return;
        }
    }
    rearm_command_timer(r);
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
static void start_connect(sl_redis *r)
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

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    sl_redis *r = arg;

    (void)fd;
    (void)what;
    sl_conn_enter(&r->life);
    if (r->s_reconnects != NULL)
        sl_series_add(r->s_reconnects, 1);
    start_connect(r);
    sl_conn_leave(&r->life);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    sl_redis *r = arg;

    (void)fd;
    (void)what;
    sl_conn_enter(&r->life);
    if (r->state == ST_CONNECTING)
        drop(r, "connect to %s:%d timed out after %gs", r->addr, r->url.port,
             r->connect_timeout);
    sl_conn_leave(&r->life);
}

static void on_command_timeout(evutil_socket_t fd, short what, void *arg)
{
    sl_redis *r = arg;

    (void)fd;
    (void)what;
    sl_conn_enter(&r->life);
    if (r->head != NULL && r->head->deadline <= sl_now() + 0.0005) {
        r->head->timed_out = 1;
        /* Once per outage: lost() reports the rest. */
        sl_log_core(r->state == ST_UP ? SL_LOG_WARN : SL_LOG_DEBUG, WHO,
                    "%s: redis %s:%d did not answer within %gs; resetting the connection",
                    r->label, r->url.host, r->url.port, r->command_timeout);
        drop(r, "no reply from redis within %gs (command_timeout); connection reset",
             r->command_timeout);
    } else {
        rearm_command_timer(r);
    }
    sl_conn_leave(&r->life);
}

/* ------------------------------------------------------------ lifetime */

static void destroy(void *obj)
{
    sl_redis *r = obj;
    cmd *c;

    if (r->dns_req != NULL) {
        evdns_getaddrinfo_cancel(r->dns_req);
        r->dns_req = NULL;
    }
    if (r->dns != NULL)
        evdns_base_free(r->dns, 0);
    if (r->ac != NULL) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac); /* on_reply frees the waiting commands silently */
    }
    ev_cleanup(r);
    while ((c = r->head) != NULL) { /* only if hiredis never took them */
        r->head = c->next;
        free(c);
    }
    while ((c = r->failed) != NULL) {
        r->failed = c->next;
        free(c->why);
        free(c);
    }
    if (r->connect_timer != NULL)
        event_free(r->connect_timer);
    if (r->command_timer != NULL)
        event_free(r->command_timer);
    if (r->retry_timer != NULL)
        event_free(r->retry_timer);
    if (r->deliver != NULL)
        event_free(r->deliver);
    set_up(r, 0);
    sl_metric_release(r->m_latency);
    sl_metric_release(r->m_commands);
    sl_metric_release(r->m_reconnects);
    sl_metric_release(r->m_up);
    free(r->label);
    free(r);
}

/* The instance's release: it must not call module code, and does not. */
static void release(void *obj)
{
    sl_redis *r = obj;

    sl_conn_released(&r->life);
}

static int ready(void *obj, char *why, size_t whylen)
{
    const sl_redis *r = obj;

    if (r->state == ST_UP)
        return 1;
    snprintf(why, whylen, "redis %s:%d %s%s%s", r->url.host, r->url.port,
             r->state == ST_DOWN ? "unavailable" : "connecting", r->err[0] != '\0' ? ": " : "",
             r->err);
    return 0;
}

static const double latency_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                         0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5 };

static void register_metrics(sl_redis *r, const char *module, const char *instance)
{
    r->m_latency = sl_metric_register(
        SL_METRIC_HISTOGRAM, "sluice_redis_command_duration_seconds",
        "Time from sending a Redis command to its reply", "module", latency_bounds,
        sizeof(latency_bounds) / sizeof(latency_bounds[0]), instance);
    r->m_commands = sl_metric_register(SL_METRIC_COUNTER, "sluice_redis_commands_total",
                                       "Redis commands by outcome (ok, error reply, unavailable, "
                                       "failed: connection lost, timeout)",
                                       "module,outcome", NULL, 0, instance);
    r->m_reconnects = sl_metric_register(SL_METRIC_COUNTER, "sluice_redis_reconnects_total",
                                         "Attempts to re-establish a Redis connection", "module",
                                         NULL, 0, instance);
    r->m_up = sl_metric_register(SL_METRIC_GAUGE, "sluice_redis_up",
                                 "1 while the Redis connection is established", "module", NULL, 0,
                                 instance);
    if (r->m_latency != NULL)
        r->s_latency = sl_series_of(r->m_latency, module);
    if (r->m_reconnects != NULL)
        r->s_reconnects = sl_series_of(r->m_reconnects, module);
    if (r->m_up != NULL)
        r->s_up = sl_series_of(r->m_up, module);
    for (int i = 0; i < OUT_N && r->m_commands != NULL; i++)
        r->s_out[i] = sl_series_of(r->m_commands, module, outcome_names[i]);
}

/* The [redis] options of the current generation, or the defaults. */
static int load_options(sl_redis *r, char *err, size_t errlen)
{
    sl_optset defaults = { NULL, 0 };
    const sl_optset *set = sl_conn_options("redis", redis_options, &defaults, err, errlen);
    int rc;

    if (set == NULL)
        return -1;
    rc = sl_redis_url_parse(sl_optset_get(set, "url")->raw, &r->url, err, errlen);
    r->connect_timeout = sl_optset_get(set, "connect_timeout")->d;
    r->command_timeout = sl_optset_get(set, "command_timeout")->d;
    r->reconnect_max = sl_optset_get(set, "reconnect_max")->d;
    sl_optset_free(&defaults);
    return rc;
}

SL_API sl_redis *sl_redis_new(sl_ctx *ctx)
{
    if (sl_ctx_refuse(ctx, "a Redis handle"))
        return NULL;
    sl_redis *r = calloc(1, sizeof(*r));
    char err[256];

    if (r == NULL) {
        sl_log(ctx, SL_LOG_ERROR, "redis: out of memory");
        return NULL;
    }
    r->label = strdup(ctx->label != NULL ? ctx->label : sl_module_name(ctx));
    if (r->label == NULL || load_options(r, err, sizeof(err)) != 0) {
        sl_log(ctx, SL_LOG_ERROR, "redis: %s", r->label == NULL ? "out of memory" : err);
        free(r->label);
        free(r);
        return NULL;
    }
    r->backoff = BACKOFF_FIRST;
    r->connect_timer = evtimer_new(sl_base, on_connect_timeout, r);
    r->command_timer = evtimer_new(sl_base, on_command_timeout, r);
    r->retry_timer = evtimer_new(sl_base, on_retry, r);
    r->deliver = event_new(sl_base, -1, 0, on_deliver, r);
    if (r->connect_timer == NULL || r->command_timer == NULL || r->retry_timer == NULL ||
        r->deliver == NULL) {
        sl_log(ctx, SL_LOG_ERROR, "redis: out of memory");
        destroy(r);
        return NULL;
    }
    register_metrics(r, sl_module_name(ctx), sl_instance_name(ctx));
    if (sl_conn_track(&r->life, ctx, "redis connection", r, destroy, release, ready) != 0) {
        destroy(r);
        return NULL;
    }
    sl_ctx_uses(ctx, SL_USES_REDIS);
    r->state = ST_DOWN;
    sl_conn_enter(&r->life);
    start_connect(r);
    sl_conn_leave(&r->life);
    return r;
}

SL_API void sl_redis_free(sl_redis *r)
{
    if (r != NULL)
        sl_conn_free(&r->life);
}

SL_API int sl_redis_connected(const sl_redis *r)
{
    return r != NULL && r->state == ST_UP;
}

/* Commands whose replies do not pair one to one with commands, which the
 * FIFO (and the command timeout) relies on. */
static int is_unpaired(const char *name, size_t len)
{
    static const char *const names[] = { "subscribe", "psubscribe", "unsubscribe",
                                         "punsubscribe", "monitor" };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (len == strlen(names[i]) && strncasecmp(name, names[i], len) == 0)
            return 1;
    return 0;
}

SL_API int sl_redis_command(sl_redis *r, int argc, const char *const *argv, const size_t *argvlen,
                            sl_redis_fn fn, void *arg)
{
    cmd *c;

    if (r == NULL || r->life.freeing || argc < 1 || argv == NULL)
        return -1;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->r = r;
    c->fn = fn;
    c->arg = arg;
    c->start = sl_now();
    c->deadline = c->start + r->command_timeout;

    /* Waiting for the first connection is allowed (module start-up races
     * it); after a failure, commands fail fast until it is back. */
    if (r->ac == NULL || (r->state != ST_UP && r->failures > 0)) {
        char why[600];
        snprintf(why, sizeof(why), "redis not connected: %s",
                 r->err[0] != '\0' ? r->err : "connection not established");
        fail_later(r, c, why);
        return 0;
    }
    if (is_unpaired(argv[0], argvlen != NULL ? argvlen[0] : strlen(argv[0]))) {
        fail_later(r, c, "publish/subscribe and MONITOR are not supported by this connector");
        return 0;
    }
    /* hiredis copies the arguments into its output buffer (argv-style: no
     * value is ever interpreted as part of the command syntax). */
    if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, (const char **)argv, argvlen) !=
        REDIS_OK) {
        fail_later(r, c, "redis not connected: connection closing");
        return 0;
    }
    if (r->tail != NULL)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    if (r->head == c)
        rearm_command_timer(r);
    return 0;
}

/* -------------------------------------------------------------- replies */

/* An sl_redis_reply is a redisReply; the accessors keep hiredis out of
 * module code. */
SL_API sl_redis_type sl_redis_reply_type(const sl_redis_reply *reply)
{
    return (sl_redis_type)((const redisReply *)(const void *)reply)->type;
}

SL_API const char *sl_redis_reply_str(const sl_redis_reply *reply, size_t *len)
{
    const redisReply *rr = (const redisReply *)(const void *)reply;

    if (rr->type != REDIS_REPLY_STRING && rr->type != REDIS_REPLY_STATUS &&
        rr->type != REDIS_REPLY_ERROR) {
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    if (len != NULL)
        *len = (size_t)rr->len;
    return rr->str;
}

SL_API long long sl_redis_reply_integer(const sl_redis_reply *reply)
{
    const redisReply *rr = (const redisReply *)(const void *)reply;

    return rr->type == REDIS_REPLY_INTEGER ? rr->integer : 0;
}

SL_API size_t sl_redis_reply_len(const sl_redis_reply *reply)
{
    const redisReply *rr = (const redisReply *)(const void *)reply;

    return rr->type == REDIS_REPLY_ARRAY ? rr->elements : 0;
}

SL_API const sl_redis_reply *sl_redis_reply_at(const sl_redis_reply *reply, size_t i)
{
    const redisReply *rr = (const redisReply *)(const void *)reply;

    if (rr->type != REDIS_REPLY_ARRAY || i >= rr->elements)
        return NULL;
    return (const sl_redis_reply *)(const void *)rr->element[i];
}
