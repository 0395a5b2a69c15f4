/*
 * redis_int.h - what redis.c (the [redis] section and the handle's
 * lifetime), redis_conn.c (the connection and its re-establishment) and
 * redis_cmd.c (commands and their replies) share; nothing else includes it.
 *
 * A handle is one hiredis async connection, driven on the daemon's loop,
 * and a FIFO of the commands handed to it.  Every entry from the loop goes
 * through sl_conn_enter()/sl_conn_leave(), so a handle freed from inside
 * one of its callbacks is freed by the outermost frame.
 */
#ifndef SL_REDIS_INT_H
#define SL_REDIS_INT_H

#include <netinet/in.h>
#include <stddef.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/async.h>
#include "connectors/connector.h"
#include "daemon/core.h"
#include "trace/trace.h"
#include "redis.h"
#include <sluice/redis.h>

#define WHO "redis"
#define BACKOFF_FIRST 0.1

typedef enum { ST_DOWN, ST_RESOLVING, ST_CONNECTING, ST_UP } conn_state;

typedef enum { OUT_OK, OUT_ERROR, OUT_UNAVAILABLE, OUT_FAILED, OUT_TIMEOUT, OUT_N } outcome;

typedef struct cmd cmd;
struct cmd {
    cmd *next;
    sl_redis *r;
    sl_redis_fn fn; /* NULL for our own commands and ignored outcomes */
    void *arg;
    double start;
    double deadline;
    int internal;      /* AUTH/SELECT/PING at connect: not counted, failure drops */
    int handshake_end; /* the PING whose answer makes the connection usable */
    int timed_out;
    char *why;          /* for commands failed without being sent */
    sl_trace_ctx trace; /* current when sent: the callback's */
    sl_span *span;      /* NULL when not recorded */
};

struct sl_redis {
    sl_conn_life life;
    char *label; /* the owning instance, for logs */
    sl_redis_url url;
    double connect_timeout, command_timeout, reconnect_max, backoff;

    conn_state state;
    int failures; /* connection attempts failed since the last success */
    redisAsyncContext *ac;
    struct event *rev, *wev;
    struct event *connect_timer, *command_timer, *retry_timer, *deliver;
    struct evdns_base *dns;
    struct evdns_getaddrinfo_request *dns_req;
    char addr[INET6_ADDRSTRLEN];
    char err[512]; /* why the connection went or did not come */

    cmd *head, *tail;          /* handed to hiredis, oldest first */
    cmd *failed, *failed_tail; /* to be answered on the next loop turn */

    sl_metric *m_latency, *m_commands, *m_reconnects, *m_up;
    sl_series *s_latency, *s_reconnects, *s_up, *s_out[OUT_N];
};

static inline void redis_set_up(sl_redis *r, int up)
{
    if (r->s_up != NULL)
        sl_series_set(r->s_up, up);
}

/* -------------------------------------------- redis_conn.c for the others */

/* Starts connecting: at once to a numeric address, else after resolving. */
void redis_conn_start(sl_redis *r);
/* Closes the connection on our initiative with the reason; every command
 * still waiting is answered with it, and reconnecting starts. */
void redis_conn_drop(sl_redis *r, const char *fmt, ...) SL_PRINTF(2, 3);
/* The handshake's PING was answered: the connection is usable. */
void redis_conn_mark_up(sl_redis *r);
/* Frees the read and write events hiredis had us add. */
void redis_conn_ev_cleanup(void *privdata);
/* Timer callbacks: the wait before reconnecting, the connect deadline, and
 * the deadline of the oldest command. */
void redis_conn_on_retry(evutil_socket_t fd, short what, void *arg);
void redis_conn_on_connect_timeout(evutil_socket_t fd, short what, void *arg);
void redis_conn_on_command_timeout(evutil_socket_t fd, short what, void *arg);

/* --------------------------------------------- redis_cmd.c for the others */

/* hiredis's reply callback of every command, ours and the module's. */
void redis_cmd_on_reply(redisAsyncContext *ac, void *reply_, void *privdata);
/* Keeps the command timer at the deadline of the oldest waiting command. */
void redis_cmd_rearm_timer(sl_redis *r);
/* Frees a command never answered (its span ends failed). */
void redis_cmd_free(cmd *c);
/* The `deliver` event: answers the commands failed before being sent. */
void redis_cmd_on_deliver(evutil_socket_t fd, short what, void *arg);

#endif
