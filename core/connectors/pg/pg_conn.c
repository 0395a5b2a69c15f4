/*
 * pg_conn.c - the work on a live PostgreSQL connection: ops and their
 * answers, statements and their results, transactions, LISTEN/NOTIFY and
 * deadlines; pg_connect.c brings the connection up and down.
 *
 * A prepared statement (sluice_pg.h) costs its connection one more round
 * trip the first time: PQsendPrepare, then, once that answered,
 * PQsendQueryPrepared for the same op; `preparing` marks the first step.
 * A statement that carries its trace context (pg_trace.c) is sent in a
 * pipeline behind the SET of it, then a sync; `piped` follows its results.
 *
 * Only libpq's non-blocking calls are used: PQsend*, PQflush until it
 * returns 0, PQconsumeInput, PQisBusy and PQgetResult.  PQcancel is not
 * used because it connects synchronously: a statement past its deadline
 * costs its connection instead, which is closed and opened again, and the
 * server's statement_timeout (set to query_timeout at connect) ends the
 * work on its side.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daemon/core.h"
#include "daemon/log.h"
#include "metrics/metrics.h"
#include "pg_int.h"

#define TICK_SECONDS 0.1

static void conn_drop(conn *c, outcome out, const char *why);

/* libpq messages end in a newline and may span lines; logs want one. */
void pg_one_line(char *dst, size_t len, const char *msg)
{
    size_t n;

    snprintf(dst, len, "%s", msg != NULL && msg[0] != '\0' ? msg : "unknown error");
    for (char *p = dst; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    n = strlen(dst);
    while (n > 0 && dst[n - 1] == ' ')
        dst[--n] = '\0';
}

/* Frames of ours on the stack: the handle is destroyed only when none is,
 * so a module may free it from inside any of its callbacks. */
void pg_enter(sl_pg *pg)
{
    sl_conn_enter(&pg->life);
}

void pg_sweep_listeners(sl_pg *pg)
{
    sl_pg_listener **pp = &pg->listeners;

    while (*pp != NULL) {
        sl_pg_listener *l = *pp;
        if (l->dead) {
            *pp = l->next;
            free(l->channel);
            free(l);
        } else {
            pp = &l->next;
        }
    }
}

/* Listeners removed inside a callback are unlinked by the outermost frame. */
void pg_leave(sl_pg *pg)
{
    if (pg->life.depth == 1 && !pg->life.freeing)
        pg_sweep_listeners(pg);
    sl_conn_leave(&pg->life);
}

/* ------------------------------------------------------------------- ops */

void pg_op_free(op *o)
{
    if (o == NULL)
        return;
    for (int i = 0; i < o->nparams; i++)
        free(o->params[i]);
    free(o->params);
    free(o->sql);
    free(o->why);
    if (o->span != NULL) {
        sl_span_fail(o->span, "not run");
        sl_span_end(o->span);
    }
    free(o);
}

op *pg_op_new(op_kind kind, const char *sql, int nparams, const char *const *params, sl_pg_fn fn,
              void *arg)
{
    op *o = calloc(1, sizeof(*o));

    if (o == NULL)
        return NULL;
    o->kind = kind;
    o->fn = fn;
    o->arg = arg;
    o->trace = sl_trace_cur;
    if (sql != NULL && (o->sql = strdup(sql)) == NULL)
        goto oom;
    if (nparams > 0) {
        o->params = calloc((size_t)nparams, sizeof(*o->params));
        if (o->params == NULL)
            goto oom;
        o->nparams = nparams;
        for (int i = 0; i < nparams; i++) {
            if (params[i] != NULL && (o->params[i] = strdup(params[i])) == NULL)
                goto oom;
        }
    }
    return o;
oom:
    pg_op_free(o);
    return NULL;
}

void pg_push_back(op **head, op **tail, op *o)
{
    o->next = NULL;
    if (*tail != NULL)
        (*tail)->next = o;
    else
        *head = o;
    *tail = o;
}

op *pg_pop_front(op **head, op **tail)
{
    op *o = *head;

    if (o != NULL) {
        *head = o->next;
        if (*head == NULL)
            *tail = NULL;
        o->next = NULL;
    }
    return o;
}

static void unlink_op(op **head, op **tail, op *o)
{
    op *prev = NULL;

    for (op *p = *head; p != NULL; prev = p, p = p->next) {
        if (p != o)
            continue;
        if (prev != NULL)
            prev->next = p->next;
        else
            *head = p->next;
        if (*tail == p)
            *tail = prev;
        p->next = NULL;
        return;
    }
}

static void count(sl_pg *pg, const op *o, outcome out)
{
    if (!o->internal && pg->s_out[out] != NULL)
        sl_series_add(pg->s_out[out], 1);
}

void pg_arm_tick(sl_pg *pg)
{
    if (!pg->life.freeing && !evtimer_pending(pg->tick, NULL))
        sl_conn_arm(pg->tick, TICK_SECONDS);
}

/*
 * Answers `o` on the next loop turn with `why` (NULL: success without a
 * result, a ROLLBACK that was asked for).  Internal ops are dropped.
 */
void pg_fail_later(sl_pg *pg, op *o, outcome out, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (o->internal) {
        pg_op_free(o);
        return;
    }
    o->out = out;
    free(o->why);
    o->why = NULL;
    if (fmt != NULL) {
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        o->why = strdup(buf);
        if (o->why == NULL)
            o->why = strdup("out of memory");
    }
    pg_push_back(&pg->failed, &pg->failed_tail, o);
    event_active(pg->deliver, 0, 0);
}

void pg_on_deliver(evutil_socket_t fd, short what, void *arg)
{
    sl_pg *pg = arg;
    op *o;

    (void)fd;
    (void)what;
    pg_enter(pg);
    while (!pg->life.freeing && (o = pg_pop_front(&pg->failed, &pg->failed_tail)) != NULL) {
        sl_pg_tx *ends = o->ends_tx ? o->tx : NULL;
        count(pg, o, o->out);
        pg_call(pg, o, NULL, o->out == OUT_OK ? NULL : (o->why ? o->why : "failed"));
        pg_op_free(o);
        if (ends != NULL)
            pg_tx_free(ends);
    }
    pg_leave(pg);
}

/* ----------------------------------------------------------- transactions */

static void unpin(sl_pg_tx *tx)
{
    if (tx->c != NULL)
        tx->c->tx = NULL;
    tx->c = NULL;
}

/* Fails every statement the transaction still has queued, the end op too
 * unless `keep_end` (it must wait for the ROLLBACK still to run). */
static void tx_flush(sl_pg_tx *tx, int keep_end)
{
    sl_pg *pg = tx->pg;
    op *keep = NULL, *o;

    while ((o = pg_pop_front(&tx->head, &tx->tail)) != NULL) {
        if (o->internal) {
            pg_op_free(o);
        } else if (o->ends_tx && keep_end) {
            keep = o;
        } else if (o->ends_tx && o->kind == OP_ROLLBACK) {
            pg_fail_later(pg, o, OUT_OK, NULL);
        } else if (o->ends_tx) {
            pg_fail_later(pg, o, OUT_ABORTED, "transaction rolled back: %s", tx->err);
        } else {
            pg_fail_later(pg, o, OUT_ABORTED, "not run, transaction rolled back: %s", tx->err);
        }
    }
    if (keep != NULL)
        pg_push_back(&tx->head, &tx->tail, keep);
}

void pg_tx_fail(sl_pg_tx *tx, const char *why)
{
    sl_pg *pg = tx->pg;
    op *rb;

    if (tx->failed)
        return;
    tx->failed = 1;
    pg_one_line(tx->err, sizeof(tx->err), why);
    if (tx->begin != NULL) {
        unlink_op(&pg->jobs, &pg->jobs_tail, tx->begin);
        pg->njobs--;
        pg_op_free(tx->begin);
        tx->begin = NULL;
    }
    if (tx->c == NULL) {
        tx_flush(tx, 0);
        return;
    }
    /* The connection is still in the transaction: roll it back before it
     * serves anyone else; the end op, if any, is answered after that. */
    tx_flush(tx, 1);
    rb = pg_op_new(OP_ROLLBACK, "ROLLBACK", 0, NULL, NULL, NULL);
    if (rb == NULL) {
        conn_drop(tx->c, OUT_LOST, "out of memory"); /* the server rolls back */
        return;
    }
    rb->internal = 1;
    rb->tx = tx;
    rb->next = tx->head;
    tx->head = rb;
    if (tx->tail == NULL)
        tx->tail = rb;
    pg_conn_next(tx->c);
}

void pg_tx_free(sl_pg_tx *tx)
{
    sl_pg *pg = tx->pg;
    op *o;

    for (sl_pg_tx **pp = &pg->txs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == tx) {
            *pp = tx->next;
            break;
        }
    }
    unpin(tx);
    while ((o = pg_pop_front(&tx->head, &tx->tail)) != NULL)
        pg_op_free(o);
    if (tx->begin != NULL) {
        unlink_op(&pg->jobs, &pg->jobs_tail, tx->begin);
        pg->njobs--;
        pg_op_free(tx->begin);
    }
    if (tx->owned_free != NULL)
        tx->owned_free(tx->owned);
    pg_trace_tx_end(tx);
    free(tx);
}

/* ------------------------------------------------------------ statements */

static void conn_flush(conn *c)
{
    int r = PQflush(c->pq);

    if (r < 0) {
        conn_drop(c, OUT_LOST, PQerrorMessage(c->pq));
        return;
    }
    c->flushing = r == 1;
    if (pg_watch(c, c->flushing ? EV_READ | EV_WRITE : EV_READ, 0) != 0)
        conn_drop(c, OUT_LOST, "cannot watch the connection's socket");
}

/* Runs a statement the connection has prepared. */
static int send_prepared(conn *c, op *o)
{
    return PQsendQueryPrepared(c->pq, o->stmt->name, o->nparams, (const char *const *)o->params,
                               NULL, NULL, 0);
}

/* Runs a module's statement (OP_QUERY, or OP_EXEC once prepared). */
static int send_one(conn *c, op *o)
{
    if (o->kind == OP_EXEC)
        return send_prepared(c, o);
    return PQsendQueryParams(c->pq, o->sql, o->nparams, NULL, (const char *const *)o->params, NULL,
                             NULL, 0);
}

/* The trace context of a statement outside a transaction: local to the
 * implicit transaction its pipeline runs in, so gone at the sync. */
static const char SET_TRACE[] = "SELECT set_config('sluice.traceparent', $1, true)";

/* Runs a module's statement, behind the SET of its trace context when it
 * carries one. */
static int send_statement(conn *c, op *o)
{
    char tp[SL_TP_LEN + 1];
    const char *p[1] = { tp };

    if (pg_trace_carried(o, tp) != 0)
        return send_one(c, o);
    if (!PQenterPipelineMode(c->pq))
        return 0;
    c->piped = PIPE_SET;
    return PQsendQueryParams(c->pq, SET_TRACE, 1, NULL, p, NULL, NULL, 0) && send_one(c, o) &&
           PQpipelineSync(c->pq);
}

static void conn_send(conn *c, op *o)
{
    int sent;

    if (o->kind == OP_QUERY || (o->kind == OP_EXEC && pg_set_has(&c->prepared, o->stmt->index))) {
        sent = send_statement(c, o);
    } else if (o->kind == OP_EXEC) {
        /* Parameter types are left to the server, as PQsendQueryParams
         * does: inferred from the SQL, text when it cannot tell. */
        sent = PQsendPrepare(c->pq, o->stmt->name, o->stmt->sql, 0, NULL);
        c->preparing = 1;
    } else {
        sent = PQsendQuery(c->pq, o->sql);
    }
    c->cur = o;
    c->state = C_BUSY;
    o->sent = sl_now();
    /* COMMIT, ROLLBACK and our own statements are bounded from when they
     * are sent, not queued: they must run whatever came before them. */
    if (o->deadline <= 0 && (o->ends_tx || o->internal) && !(o->tx != NULL && o->tx->unbounded))
        o->deadline = o->sent + c->pg->query_timeout;
    if (!sent) {
        conn_drop(c, OUT_LOST, PQerrorMessage(c->pq));
        return;
    }
    pg_arm_tick(c->pg);
    conn_flush(c);
}

/* The next op for an idle connection: its own (LISTEN, a probe), its
 * transaction's, or the pool's.  Ops whose deadline passed while they
 * waited fail here. */
void pg_conn_next(conn *c)
{
    sl_pg *pg = c->pg;
    op *o;

    while (c->state == C_IDLE && !pg->life.freeing) {
        if (c->own != NULL) {
            o = pg_pop_front(&c->own, &c->own_tail);
        } else if (c->tx != NULL) {
            o = pg_pop_front(&c->tx->head, &c->tx->tail);
        } else if (c == pg->lconn) {
            return;
        } else {
            o = pg_pop_front(&pg->jobs, &pg->jobs_tail);
            if (o != NULL)
                pg->njobs--;
        }
        if (o == NULL)
            return;
        if (o->deadline > 0 && sl_now() >= o->deadline && !o->ends_tx) {
            if (o->kind == OP_BEGIN) {
                o->tx->begin = NULL;
                pg_tx_fail(o->tx, "timed out waiting for a free connection");
                pg_op_free(o);
            } else {
                sl_pg_tx *tx = o->tx;
                pg_fail_later(pg, o, OUT_TIMEOUT, "timed out after %gs waiting for a connection",
                              pg->query_timeout);
                if (tx != NULL)
                    pg_tx_fail(tx, "a statement timed out");
            }
            continue;
        }
        if (o->kind == OP_BEGIN) {
            o->tx->begin = NULL;
            o->tx->c = c;
            c->tx = o->tx;
        }
        conn_send(c, o);
    }
}

static const char *result_error(conn *c, PGresult *res, char *buf, size_t len)
{
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY)
        return NULL;
    pg_one_line(buf, len, res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(c->pq));
    return buf;
}

static void notify_listening(sl_pg *pg, sl_pg_listener *l)
{
    if (l != NULL && !l->dead) {
        l->active = 1;
        l->fn(pg, l->channel, NULL, l->arg);
    }
}

/* The op in flight got its last result.  State first, module code last:
 * the callback may queue, end a transaction or free the handle. */
static void finish_op(conn *c)
{
    sl_pg *pg = c->pg;
    op *o = c->cur;
    PGresult *res = c->res;
    sl_pg_tx *tx = o->tx;
    sl_pg_tx *ends = NULL;
    char buf[1024];
    const char *err = result_error(c, res, buf, sizeof(buf));

    c->cur = NULL;
    c->res = NULL;
    c->state = C_IDLE;
    if (pg->s_latency != NULL && !o->internal)
        sl_series_observe(pg->s_latency, sl_now() - o->sent);
    count(pg, o, err == NULL ? OUT_OK : OUT_ERROR);

    if (o->kind == OP_BEGIN) {
        if (err != NULL) {
            unpin(tx);
            pg_tx_fail(tx, err);
        }
    } else if (o->ends_tx) {
        unpin(tx);
        ends = tx;
    } else if (o->internal && o->kind == OP_ROLLBACK) {
        unpin(tx);
        tx_flush(tx, 0);
    } else if (tx != NULL && err != NULL) {
        pg_tx_fail(tx, err);
    }
    pg_conn_next(c);

    if (o->kind == OP_LISTEN && err == NULL)
        notify_listening(pg, o->listener);
    else if (o->internal && err != NULL)
        sl_log_core(SL_LOG_WARN, "postgres", "%s: %s failed: %s", pg->label, o->sql, err);
    if (!pg->life.freeing)
        pg_call(pg, o, res, err);
    if (ends != NULL)
        pg_tx_free(ends);
    if (res != NULL)
        PQclear(res);
    pg_op_free(o);
}

/*
 * The Parse of cur's statement answered.  Prepared: the statement is run
 * at once on the same connection, and 1 is returned (the op goes on).
 * Refused: 0, and cur finishes with that error like any statement.
 */
static int prepared(conn *c)
{
    sl_pg *pg = c->pg;
    op *o = c->cur;
    ExecStatusType st = c->res != NULL ? PQresultStatus(c->res) : PGRES_FATAL_ERROR;

    c->preparing = 0;
    if (st != PGRES_COMMAND_OK)
        return 0;
    PQclear(c->res);
    c->res = NULL;
    pg_set_add(&c->prepared, o->stmt->index);
    if (pg->s_prepares != NULL)
        sl_series_add(pg->s_prepares, 1);
    if (!send_statement(c, o)) {
        conn_drop(c, OUT_LOST, PQerrorMessage(c->pq));
        return 1;
    }
    conn_flush(c);
    return 1;
}

/* Keeps the first error result of a statement, else its last result. */
static int collect(conn *c, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);

    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        PQclear(r);
        return -1;
    }
    if (c->res == NULL) {
        c->res = r;
    } else if (st == PGRES_FATAL_ERROR && PQresultStatus(c->res) != PGRES_FATAL_ERROR) {
        PQclear(c->res);
        c->res = r;
    } else {
        PQclear(r);
    }
    return 0;
}

/*
 * A result of a statement sent behind its trace context (send_statement):
 * the SET's is dropped, the statement's are collected like any, and the op
 * is done at the sync: 1 then, and the connection leaves pipeline mode.
 * -1 for what this connector does not take (COPY).
 */
static int piped(conn *c, PGresult *r)
{
    ExecStatusType st;

    if (r == NULL) { /* the end of one statement's results */
        c->piped++;
        return 0;
    }
    st = PQresultStatus(r);
    if (st == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        c->piped = PIPE_OFF;
        return PQexitPipelineMode(c->pq) ? 1 : -1;
    }
    if (st == PGRES_PIPELINE_ABORTED || (c->piped == PIPE_SET && st == PGRES_TUPLES_OK)) {
        PQclear(r); /* behind an error kept already, or the SET's row */
        return 0;
    }
    return collect(c, r);
}

static void dispatch_notifications(conn *c)
{
    sl_pg *pg = c->pg;
    PGnotify *n;

    while (!pg->life.freeing && c->pq != NULL && (n = PQnotifies(c->pq)) != NULL) {
        /* Listeners added by a callback are prepended, so this walk does
         * not reach them; removed ones are only marked dead meanwhile. */
        for (sl_pg_listener *l = pg->listeners; l != NULL && !pg->life.freeing; l = l->next) {
            if (c == pg->lconn && !l->dead && strcmp(l->channel, n->relname) == 0)
                l->fn(pg, l->channel, n->extra, l->arg);
        }
        PQfreemem(n);
    }
}

void pg_conn_io(conn *c, short what)
{
    PGresult *r;

    if ((what & EV_READ) && !PQconsumeInput(c->pq)) {
        conn_drop(c, OUT_LOST, PQerrorMessage(c->pq));
        return;
    }
    if (c->flushing) {
        conn_flush(c);
        if (c->state == C_DOWN)
            return;
    }
    dispatch_notifications(c);
    if (c->pg->life.freeing || c->state == C_DOWN)
        return;
    while (c->cur != NULL && !PQisBusy(c->pq)) {
        r = PQgetResult(c->pq);
        if (c->piped != PIPE_OFF) {
            int done = piped(c, r);
            if (done < 0) {
                conn_drop(c, OUT_ERROR, "unexpected result in a traced statement's pipeline");
                return;
            }
            if (done)
                finish_op(c);
            if (done || c->state == C_DOWN)
                return;
            continue;
        }
        if (r == NULL && c->preparing && prepared(c)) {
            if (c->state == C_DOWN)
                return;
            continue;
        }
        if (r == NULL) {
            finish_op(c);
            return;
        }
        if (collect(c, r) != 0) {
            conn_drop(c, OUT_ERROR, "COPY is not supported by this connector");
            return;
        }
    }
    if (PQstatus(c->pq) == CONNECTION_BAD)
        conn_drop(c, OUT_LOST, PQerrorMessage(c->pq));
}

/*
 * A statement timed out: the server may be frozen or the network gone,
 * which an idle connection cannot notice by itself.  Each idle one runs
 * SELECT 1 under the same deadline, so that a dead server empties the pool,
 * and readiness says so, within one more timeout instead of one timeout
 * per request that happens to pick a stale connection.
 */
static void probe_idle(sl_pg *pg)
{
    for (int i = -1; i < pg->pool_size && !pg->life.freeing; i++) {
        conn *c = i < 0 ? pg->lconn : &pg->conns[i];
        op *o;
        if (c == NULL || c->state != C_IDLE || c->tx != NULL || c->own != NULL)
            continue;
        o = pg_op_new(OP_SCRIPT, "SELECT 1", 0, NULL, NULL, NULL);
        if (o == NULL)
            return;
        o->internal = 1;
        pg_push_back(&c->own, &c->own_tail, o);
        pg_conn_next(c);
    }
}

/*
 * An established connection is gone (or abandoned: a statement past its
 * deadline).  The statement in flight fails with `out`, its transaction
 * fails, and the connection is opened again: at once after a timeout (the
 * server is fine), after the backoff otherwise.
 */
static void conn_drop(conn *c, outcome out, const char *why)
{
    sl_pg *pg = c->pg;
    op *o = c->cur;
    sl_pg_tx *tx = c->tx;
    char msg[512];

    pg_one_line(msg, sizeof(msg), why);
    c->cur = NULL;
    pg_conn_close(c);
    snprintf(pg->err, sizeof(pg->err), "%s", msg);
    sl_log_core(SL_LOG_WARN, "postgres", "%s: connection %d to %s %s: %s", pg->label, c->id,
                pg->where, out == OUT_TIMEOUT ? "abandoned" : "lost", msg);
    if (o != NULL) {
        if (o->ends_tx && o->kind == OP_COMMIT)
            pg_fail_later(pg, o, out, "connection lost during COMMIT, outcome unknown: %s", msg);
        else
            pg_fail_later(pg, o, out, "%s", msg);
    }
    if (tx != NULL) {
        unpin(tx);
        pg_tx_fail(tx, msg);
    }
    {
        op *own;
        while ((own = pg_pop_front(&c->own, &c->own_tail)) != NULL)
            pg_op_free(own); /* LISTENs are queued again once it is back */
    }
    c->backoff = BACKOFF_FIRST;
    sl_conn_arm(c->timer, out == OUT_TIMEOUT ? 0 : BACKOFF_FIRST);
    if (c->id > 0)
        pg_pool_down(pg);
    if (out == OUT_TIMEOUT)
        probe_idle(pg);
}

/* Deadlines: waiting ops, statements in flight, open transactions. */
void pg_on_tick(evutil_socket_t fd, short what, void *arg)
{
    sl_pg *pg = arg;
    double now = sl_now();
    op *o, *next;
    char why[128];

    (void)fd;
    (void)what;
    pg_enter(pg);
    for (o = pg->jobs; o != NULL && !pg->life.freeing; o = next) {
        next = o->next;
        if (o->deadline <= 0 || now < o->deadline)
            continue;
        unlink_op(&pg->jobs, &pg->jobs_tail, o);
        pg->njobs--;
        if (o->kind == OP_BEGIN) {
            o->tx->begin = NULL;
            pg_tx_fail(o->tx, "timed out waiting for a free connection");
            pg_op_free(o);
        } else {
            pg_fail_later(pg, o, OUT_TIMEOUT, "timed out after %gs waiting for a free connection",
                          pg->query_timeout);
        }
    }
    for (int i = -1; i < pg->pool_size && !pg->life.freeing; i++) {
        conn *c = i < 0 ? pg->lconn : &pg->conns[i];
        if (c == NULL || c->cur == NULL || c->cur->deadline <= 0 || now < c->cur->deadline)
            continue;
        snprintf(why, sizeof(why), "statement timed out after %gs", pg->query_timeout);
        conn_drop(c, OUT_TIMEOUT, why);
    }
    for (sl_pg_tx *tx = pg->txs; tx != NULL && !pg->life.freeing; tx = tx->next) {
        if (!tx->unbounded && !tx->failed && now >= tx->deadline) {
            snprintf(why, sizeof(why), "transaction not ended within tx_timeout (%gs)",
                     pg->tx_timeout);
            pg_tx_fail(tx, why);
        }
    }
    if (!pg->life.freeing && (pg->jobs != NULL || pg->txs != NULL))
        pg_arm_tick(pg);
    for (int i = -1; i < pg->pool_size && !pg->life.freeing; i++) {
        conn *c = i < 0 ? pg->lconn : &pg->conns[i];
        if (c != NULL && c->cur != NULL && c->cur->deadline > 0)
            pg_arm_tick(pg);
    }
    pg_leave(pg);
}

/* ---------------------------------------------------------------- listen */

/* Queues LISTEN (or UNLISTEN) for one channel on the LISTEN connection.
 * The channel is an identifier, not a value: it is quoted by libpq. */
void pg_listen_queue(conn *c, op_kind kind, sl_pg_listener *l, const char *channel)
{
    char *quoted, *sql;
    op *o;

    if (c->pq == NULL || (c->state != C_IDLE && c->state != C_BUSY))
        return; /* queued again when the connection is up */
    quoted = PQescapeIdentifier(c->pq, channel, strlen(channel));
    o = NULL;
    if (quoted != NULL) {
        sql = malloc(strlen(quoted) + 10);
        if (sql != NULL) {
            sprintf(sql, "%s %s", kind == OP_LISTEN ? "LISTEN" : "UNLISTEN", quoted);
            o = pg_op_new(kind, sql, 0, NULL, NULL, NULL);
            free(sql);
        }
        PQfreemem(quoted);
    }
    if (o == NULL) {
        /* The channel's subscription is redone whenever the LISTEN
         * connection comes back; until then its notifications are missed,
         * and whoever waits on them falls back to polling. */
        sl_log_core(SL_LOG_ERROR, "postgres", "%s: out of memory queueing %s %s", c->pg->label,
                    kind == OP_LISTEN ? "LISTEN" : "UNLISTEN", channel);
    } else {
        o->internal = 1;
        o->listener = l;
        pg_push_back(&c->own, &c->own_tail, o);
    }
    pg_conn_next(c);
}
