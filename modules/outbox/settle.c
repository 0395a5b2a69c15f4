/*
 * settle.c - what becomes of claimed rows in the table: acknowledged rows
 * are deleted (or marked sent), failed ones released with backoff (parked
 * after max_attempts), rows never published handed back untouched.  Ids
 * are batched: a batch goes out when it holds ack_batch ids or
 * ack_interval after its first.
 *
 * A statement the database did not take (connection lost, timeout) is
 * retried until it is: forgetting it would leave rows claimed by a relay
 * that no longer holds them, and a failed row that is still marked ours
 * would not hold back the later rows of its aggregate (sql.c).  Every
 * statement matches only rows still claimed by this relay, so running one
 * twice is harmless.
 *
 * Renewal: every lease/3 the relay re-stamps claimed_at of every row it
 * holds, so that a row waiting long (a slow broker, a long queue behind
 * its aggregate) is never taken over by another relay while this one may
 * still publish it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "outbox.h"

struct ob_stmt {
    ob_stmt *prev, *next; /* o->stmts: every statement not yet taken */
    ob *o;
    int waiting; /* for the retry timer */
    ob_sql which;
    char *ids;
    char error[256]; /* OB_SQL_FAIL: the row's error */
};

int ob_ids_add(ob_ids *b, long long id)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%s%lld", b->n == 0 ? "{" : ",", id);

    if (b->len + (size_t)n + 2 > b->cap) {
        size_t cap = b->cap == 0 ? 4096 : b->cap * 2;
        char *nb = realloc(b->buf, cap);
        if (nb == NULL)
            return -1;
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, num, (size_t)n);
    b->len += (size_t)n;
    b->n++;
    return 0;
}

char *ob_ids_take(ob_ids *b)
{
    char *s = b->buf;

    s[b->len] = '}';
    s[b->len + 1] = '\0';
    b->buf = NULL;
    b->len = b->cap = 0;
    b->n = 0;
    return s;
}

static int is_order(ob_sql which)
{
    return which == OB_SQL_FAIL || which == OB_SQL_RELEASE;
}

static void unlink_stmt(ob_stmt *st)
{
    ob *o = st->o;

    if (st->prev != NULL)
        st->prev->next = st->next;
    else
        o->stmts = st->next;
    if (st->next != NULL)
        st->next->prev = st->prev;
}

static void retry_later(ob_stmt *st)
{
    st->waiting = 1;
    if (st->o->retry_timer != NULL)
        sl_timer_arm(st->o->retry_timer, 0.5);
}

static void stmt_done(ob_stmt *st)
{
    ob *o = st->o;

    unlink_stmt(st);
    o->busy--;
    if (is_order(st->which))
        o->unsettled_order--;
    free(st->ids);
    free(st);
    ob_relay_settled(o);
}

static void on_done(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    ob_stmt *st = arg;
    ob *o = st->o;
    (void)pg;

    if (err != NULL) {
        sl_log(o->ctx, SL_LOG_WARN, "settling rows failed (%s); retrying", err);
        retry_later(st);
        return;
    }
    if (st->which == OB_SQL_FAIL) {
        double due = -1;
        for (int i = 0; i < sl_pg_nrows(res); i++) {
            const char *v = sl_pg_value(res, i, 0), *in = sl_pg_value(res, i, 1);
            if (v != NULL && v[0] == 't') {
                o->parked_n++;
                sl_series_add(o->m_parked_total, 1);
            } else {
                o->retried++;
                sl_series_add(o->m_retried, 1);
                if (in != NULL && (due < 0 || atof(in) < due))
                    due = atof(in);
            }
        }
        /* Look again when the soonest backoff ends, not at the next poll. */
        if (due >= 0)
            ob_relay_due(o, due + 0.005);
    } else if (st->which == OB_SQL_RENEW) {
        o->renewed += (unsigned long long)sl_pg_affected(res);
    }
    stmt_done(st);
}

static void send_stmt(ob_stmt *st)
{
    ob *o = st->o;
    const char *p[6] = { st->ids, o->me, st->error, o->max_attempts_s, o->backoff_s,
                         o->backoff_max_s };

    if (sl_pg_query(o->pg, o->sql[st->which], st->which == OB_SQL_FAIL ? 6 : 2, p, on_done, st) !=
        0)
        retry_later(st);
}

void ob_settle_retry_fire(void *arg)
{
    ob *o = arg;

    for (ob_stmt *st = o->stmts; st != NULL; st = st->next)
        if (st->waiting) {
            st->waiting = 0;
            send_stmt(st);
        }
}

/* Sends a batch of ids as one statement. */
static void send_ids(ob *o, ob_ids *b, ob_sql which)
{
    ob_stmt *st;

    if (b->n == 0)
        return;
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        sl_log(o->ctx, SL_LOG_ERROR, "out of memory: rows stay claimed until their lease ends");
        free(ob_ids_take(b));
        return;
    }
    st->o = o;
    st->which = which;
    st->ids = ob_ids_take(b);
    if (which == OB_SQL_FAIL)
        snprintf(st->error, sizeof(st->error), "%s", o->fail_error);
    st->next = o->stmts;
    if (o->stmts != NULL)
        o->stmts->prev = st;
    o->stmts = st;
    o->busy++;
    if (is_order(which))
        o->unsettled_order++;
    send_stmt(st);
}

void ob_settle_flush(ob *o)
{
    if (o->ack_timer != NULL)
        sl_timer_disarm(o->ack_timer);
    send_ids(o, &o->acked, OB_SQL_ACK);
    send_ids(o, &o->failed, OB_SQL_FAIL);
    send_ids(o, &o->release, OB_SQL_RELEASE);
}

void ob_settle_soon(ob *o)
{
    if (o->stopping || o->acked.n >= o->ack_batch || o->failed.n >= o->ack_batch ||
        o->release.n >= o->ack_batch)
        ob_settle_flush(o);
    else if (o->ack_timer != NULL && (o->acked.n > 0 || o->failed.n > 0 || o->release.n > 0))
        sl_timer_arm(o->ack_timer, o->ack_interval);
}

static void add(ob *o, ob_ids *b, long long id)
{
    if (ob_ids_add(b, id) != 0)
        sl_log(o->ctx, SL_LOG_ERROR, "out of memory: row %lld stays claimed until its lease ends",
               id);
}

void ob_settle_ack(ob *o, const ob_row *r)
{
    add(o, &o->acked, r->id);
}

void ob_settle_fail(ob *o, const ob_row *r, const char *why)
{
    /* One statement carries one error text: a new error closes the batch. */
    if (o->failed.n > 0 && strcmp(o->fail_error, why) != 0)
        send_ids(o, &o->failed, OB_SQL_FAIL);
    if (o->failed.n == 0)
        snprintf(o->fail_error, sizeof(o->fail_error), "%s", why);
    o->failed_n++;
    sl_series_add(o->m_failed, 1);
    add(o, &o->failed, r->id);
}

void ob_settle_release(ob *o, long long id)
{
    add(o, &o->release, id);
}

void ob_settle_renew(ob *o)
{
    ob_ids ids = { 0 };

    for (ob_agg *a = o->q.all; a != NULL; a = a->all_next) {
        if (a->flying != NULL)
            ob_ids_add(&ids, a->flying->id);
        for (ob_row *r = a->head; r != NULL; r = r->next)
            ob_ids_add(&ids, r->id);
    }
    send_ids(o, &ids, OB_SQL_RENEW);
    free(ids.buf);
}

void ob_settle_free(ob *o)
{
    while (o->stmts != NULL) {
        ob_stmt *st = o->stmts;
        o->stmts = st->next;
        free(st->ids);
        free(st);
    }
    free(o->acked.buf);
    free(o->failed.buf);
    free(o->release.buf);
}
