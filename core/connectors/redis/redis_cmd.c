/*
 * redis_cmd.c - commands on a Redis handle: sending a module's command,
 * pairing replies with commands, failing commands early on the next loop
 * turn, counting outcomes, and the accessors of a reply.
 *
 * Commands are kept in our own FIFO besides hiredis's: replies pair with
 * commands in order, so the head is the oldest unanswered command and one
 * timer at its deadline enforces command_timeout.  A command that times out
 * means the server is not answering: the connection is dropped, which fails
 * every command still waiting, and reconnecting starts.
 *
 * A module's command sent for a traced request or message is a CLIENT span
 * (OpenTelemetry's database conventions, db.system redis) from the call to
 * its reply, and its callback runs in the context it was sent in.  The
 * span names the command, never its arguments (they hold the data).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "connectors/connector.h"
#include "daemon/core.h"
#include "redis_int.h"
#include <sluice/redis.h>

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
void redis_cmd_rearm_timer(sl_redis *r)
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

/* The command's span, when its caller's work is traced. */
static void trace_begin(sl_redis *r, cmd *c, const char *name, size_t len)
{
    char op[32], db[16];
    size_t n = 0;

    c->trace = sl_trace_cur;
    if (!sl_trace_on() || !c->trace.traced)
        return;
    for (; n < len && n + 1 < sizeof(op); n++)
        op[n] = name[n] >= 'a' && name[n] <= 'z' ? (char)(name[n] - 'a' + 'A') : name[n];
    op[n] = '\0';
    c->span = sl_span_begin(NULL, SL_SPAN_CLIENT, op, NULL);
    sl_span_set_str(c->span, "db.system", "redis");
    sl_span_set_str(c->span, "db.system.name", "redis");
    sl_span_set_str(c->span, "db.operation.name", op);
    snprintf(db, sizeof(db), "%d", r->url.db);
    sl_span_set_str(c->span, "db.namespace", db);
    sl_span_set_str(c->span, "server.address", r->url.host);
    sl_span_set_int(c->span, "server.port", r->url.port);
}

void redis_cmd_free(cmd *c)
{
    if (c->span != NULL) {
        sl_span_fail(c->span, "the handle was freed before the reply");
        sl_span_end(c->span);
    }
    free(c->why);
    free(c);
}

/* Ends the span and calls a module's callback in the context the command
 * was sent in; the handle may be freed inside. */
static void call(sl_redis *r, cmd *c, const redisReply *reply, const char *err)
{
    sl_trace_ctx saved;

    if (c->span != NULL) {
        if (err != NULL)
            sl_span_fail(c->span, "%s", err);
        sl_span_end(c->span);
        c->span = NULL;
    }
    if (c->fn == NULL || r->life.freeing)
        return;
    sl_trace_enter(&c->trace, &saved);
    c->fn(r, (const sl_redis_reply *)reply, err, c->arg);
    sl_trace_restore(&saved);
}

/* ------------------------------------------------------- failing early */

void redis_cmd_on_deliver(evutil_socket_t fd, short what, void *arg)
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

/* hiredis calls this once per command: with the reply, or with NULL when
 * the connection went before the reply came. */
void redis_cmd_on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    cmd *c = privdata;
    sl_redis *r = c->r;
    redisReply *reply = reply_;
    const char *err = NULL;
    outcome o;

    unlink_cmd(r, c);
    if (r->life.freeing) {
        redis_cmd_free(c);
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
            redis_conn_drop(r, "setting up the connection to %s:%d failed: %s", r->url.host,
                            r->url.port, err);
        else if (err == NULL && c->handshake_end && r->ac == ac)
            redis_conn_mark_up(r);
    } else {
        call(r, c, reply, err);
    }
    free(c);
    if (!r->life.freeing)
        redis_cmd_rearm_timer(r);
    sl_conn_leave(&r->life);
}

/* -------------------------------------------------------------- sending */

/* Commands whose replies do not pair one to one with commands, which the
 * FIFO (and the command timeout) relies on. */
static int is_unpaired(const char *name, size_t len)
{
    static const char *const names[] = { "subscribe", "psubscribe", "unsubscribe", "punsubscribe",
                                         "monitor" };

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
    trace_begin(r, c, argv[0], argvlen != NULL ? argvlen[0] : strlen(argv[0]));

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
    if (redisAsyncCommandArgv(r->ac, redis_cmd_on_reply, c, argc, (const char **)argv, argvlen) !=
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
        redis_cmd_rearm_timer(r);
    return 0;
}

/* ------------------------------------------------------ reply accessors */

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
