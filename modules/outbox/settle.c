/*
 * settle.c - what becomes of rows in the table once their fate is known:
 * acknowledged rows are deleted (or marked sent), failed ones get their
 * attempt recorded and a backoff (parked after max_attempts).  Ids are
 * batched: a batch goes out when it holds ack_batch ids or ack_interval
 * after its first.  An id stays in `mine` (claim.c) until the database
 * took its statement, so that a read meanwhile does not publish it again.
 *
 * A statement the database did not take (connection lost, timeout) is
 * retried until it is: forgetting a delete would publish the row again,
 * and forgetting a failure would let the row's aggregate go on as if it
 * had been published.  Running one twice is harmless: a delete of what is
 * gone deletes nothing, and a failure counts only rows of buckets the
 * relay still owns.
 *
 * The drain's last statement hands every bucket back (OB_SQL_LEAVE), sent
 * the same way once nothing else is on its way.
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
    ob_ids rows;
    char *text;      /* the ids as an array parameter */
    char error[256]; /* OB_SQL_FAIL: the rows' error */
};

int ob_ids_add(ob_ids *b, long long id, int bucket, const char *at, const char *aid)
{
    if (b->n == b->cap) {
        size_t cap = b->cap == 0 ? 256 : b->cap * 2;
        long long *ids = realloc(b->ids, cap * sizeof(*ids));
        int *bk;
        char **keys;
        if (ids == NULL)
            return -1;
        b->ids = ids;
        bk = realloc(b->buckets, cap * sizeof(*bk));
        if (bk == NULL)
            return -1;
        b->buckets = bk;
        keys = realloc(b->keys, cap * sizeof(*keys));
        if (keys == NULL)
            return -1;
        b->keys = keys;
        b->cap = cap;
    }
    b->keys[b->n] = NULL;
    if (at != NULL) {
        size_t lt = strlen(at) + 1, la = strlen(aid) + 1;
        if ((b->keys[b->n] = malloc(lt + la)) == NULL)
            return -1;
        memcpy(b->keys[b->n], at, lt);
        memcpy(b->keys[b->n] + lt, aid, la);
    }
    b->ids[b->n] = id;
    b->buckets[b->n] = bucket;
    b->n++;
    return 0;
}

void ob_ids_free(ob_ids *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->keys[i]);
    free(b->ids);
    free(b->buckets);
    free(b->keys);
    memset(b, 0, sizeof(*b));
}

char *ob_ids_text(const long long *ids, size_t n)
{
    char *s = malloc(n * 21 + 3);
    size_t len = 1;

    if (s == NULL)
        return NULL;
    s[0] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(s + len, "%s%lld", i > 0 ? "," : "", ids[i]);
    strcpy(s + len, "}");
    return s;
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

static void stmt_free(ob_stmt *st)
{
    ob_ids_free(&st->rows);
    free(st->text);
    free(st);
}

static void stmt_done(ob_stmt *st)
{
    ob *o = st->o;

    unlink_stmt(st);
    o->busy--;
    /* The database took it: these rows may be read again now, except by a
     * read already in flight, whose snapshot may predate this statement. */
    for (size_t i = 0; i < st->rows.n; i++)
        ob_claim_unhold_later(o, st->rows.ids[i]);
    stmt_free(st);
    ob_relay_settled(o);
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* A failure was recorded: each row's aggregate stays blocked until its
 * backoff ends (or for good, parked).  A row the statement did not return
 * is gone or in a bucket owned by another relay now: its aggregate is
 * read again at once. */
static void failed_done(ob_stmt *st, const sl_pg_result *res)
{
    ob *o = st->o;
    int n = sl_pg_nrows(res);
    long long *got = calloc((size_t)n + 1, sizeof(*got));
    double soonest = -1;

    for (int i = 0; got != NULL && i < n; i++)
        got[i] = atoll(sl_pg_value(res, i, 0));
    if (got != NULL)
        qsort(got, (size_t)n, sizeof(*got), cmp_ll);
    for (size_t j = 0; j < st->rows.n; j++) {
        const char *key = st->rows.keys[j];
        ob_agg *a = key != NULL ? ob_queue_find(&o->q, key, key + strlen(key) + 1) : NULL;
        long long *hit = got != NULL
                                 ? bsearch(&st->rows.ids[j], got, (size_t)n, sizeof(*got), cmp_ll)
                                 : NULL;
        const char *parked = hit != NULL ? sl_pg_value(res, (int)(hit - got), 1) : NULL;
        const char *due = hit != NULL ? sl_pg_value(res, (int)(hit - got), 2) : NULL;
        double in = due != NULL ? atof(due) : 0;

        if (parked != NULL && parked[0] == 't') {
            o->parked_n++;
            sl_series_add(o->m_parked_total, 1);
        } else if (hit != NULL) {
            o->retried++;
            sl_series_add(o->m_retried, 1);
        }
        if (a == NULL || a->block != OB_BLOCKED || a->until > 0)
            continue;
        if (parked != NULL && parked[0] == 't') {
            a->block = OB_PARKED;
        } else {
            a->until = sl_now() + (in > 0 ? in : 0);
            if (soonest < 0 || in < soonest)
                soonest = in;
        }
    }
    free(got);
    /* Look again when the soonest backoff ends, not at the next poll. */
    if (soonest >= 0)
        ob_relay_due(o, soonest + 0.005);
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
    if (st->which == OB_SQL_FAIL)
        failed_done(st, res);
    stmt_done(st);
}

static void send_stmt(ob_stmt *st)
{
    ob *o = st->o;
    const char *p[6] = { st->text,          o->me,        st->error,
                         o->max_attempts_s, o->backoff_s, o->backoff_max_s };
    const char *me[1] = { o->me };
    int rc;

    if (st->which == OB_SQL_LEAVE)
        rc = sl_pg_query(o->pg, o->sql[st->which], 1, me, on_done, st);
    else if (st->which == OB_SQL_FAIL)
        rc = sl_pg_exec(o->pg, o->stmt[st->which], 6, p, on_done, st);
    else
        rc = sl_pg_exec(o->pg, o->stmt[st->which], 1, p, on_done, st);
    if (rc != 0)
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

static ob_stmt *stmt_new(ob *o, ob_sql which)
{
    ob_stmt *st = calloc(1, sizeof(*st));

    if (st == NULL)
        return NULL;
    st->o = o;
    st->which = which;
    st->next = o->stmts;
    if (o->stmts != NULL)
        o->stmts->prev = st;
    o->stmts = st;
    o->busy++;
    return st;
}

/* Sends a batch of rows as one statement; the batch is emptied. */
static void send_ids(ob *o, ob_ids *b, ob_sql which)
{
    char *text;
    ob_stmt *st;

    if (b->n == 0)
        return;
    text = ob_ids_text(b->ids, b->n);
    st = text != NULL ? stmt_new(o, which) : NULL;
    if (st == NULL) {
        /* The rows stay in the table and in mine: this relay will not
         * publish them again, the next owner of their bucket will. */
        sl_log(o->ctx, SL_LOG_ERROR, "out of memory: %zu rows left for the next relay", b->n);
        free(text);
        ob_ids_free(b);
        return;
    }
    st->rows = *b;
    memset(b, 0, sizeof(*b));
    st->text = text;
    if (which == OB_SQL_FAIL)
        snprintf(st->error, sizeof(st->error), "%s", o->fail_error);
    send_stmt(st);
}

void ob_settle_flush(ob *o)
{
    if (o->ack_timer != NULL)
        sl_timer_disarm(o->ack_timer);
    send_ids(o, &o->acked, OB_SQL_ACK);
    send_ids(o, &o->failed, OB_SQL_FAIL);
}

void ob_settle_leave(ob *o)
{
    ob_stmt *st = stmt_new(o, OB_SQL_LEAVE);

    if (st == NULL) {
        /* The leases run out by themselves after `lease`. */
        sl_log(o->ctx, SL_LOG_ERROR, "out of memory: buckets are free again after the lease");
        ob_relay_settled(o);
        return;
    }
    send_stmt(st);
}

void ob_settle_soon(ob *o)
{
    if (o->stopping || o->acked.n >= (size_t)o->ack_batch || o->failed.n >= (size_t)o->ack_batch)
        ob_settle_flush(o);
    else if (o->ack_timer != NULL && (o->acked.n > 0 || o->failed.n > 0))
        sl_timer_arm(o->ack_timer, o->ack_interval);
}

static void add(ob *o, ob_ids *b, const ob_row *r, int with_key)
{
    if (ob_ids_add(b, r->id, r->bucket, with_key ? r->aggregate_type : NULL, r->key) == 0)
        return;
    /* Read again later: published twice, at worst. */
    sl_log(o->ctx, SL_LOG_ERROR, "out of memory: row %lld will be read again", r->id);
    ob_claim_unhold(o, r->id);
}

void ob_settle_ack(ob *o, const ob_row *r)
{
    add(o, &o->acked, r, 0);
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
    ob_mine_mark_failed(&o->mine, r->id);
    add(o, &o->failed, r, 1);
}

void ob_settle_free(ob *o)
{
    while (o->stmts != NULL) {
        ob_stmt *st = o->stmts;
        o->stmts = st->next;
        stmt_free(st);
    }
    ob_ids_free(&o->acked);
    ob_ids_free(&o->failed);
}
