/*
 * claim.c - one claim transaction at a time: CLAIM a batch, UNBLOCK (give
 * back) what an earlier row of its aggregate still holds up, COMMIT, then
 * queue the kept rows per aggregate (sql.c says why it takes two
 * statements).
 *
 * A claim starts only when no fail or release statement of ours is still
 * on its way: a released row must be visible as released (unclaimed, with
 * its backoff) to the claim, or the claim would take later rows of its
 * aggregate as if we still held it.  A row of an aggregate that failed
 * while the claim was open is given back at once for the same reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "outbox.h"

typedef struct {
    ob *o;
    sl_pg_tx *tx;
    long long limit, got, unblocked;
    ob_row **rows; /* as claimed, sorted by id */
    char *gone;    /* per row: given back by UNBLOCK */
    size_t nrows;
    unsigned long long takeovers;
    int abandoned; /* rolled back on purpose: nothing was claimed */
} ob_claim_t;

static int cmp_row(const void *a, const void *b)
{
    const ob_row *x = *(ob_row *const *)a, *y = *(ob_row *const *)b;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_id(const void *key, const void *elem)
{
    long long k = *(const long long *)key, id = (*(ob_row *const *)elem)->id;
    return (k > id) - (k < id);
}

void ob_claim_free(void *claim)
{
    ob_claim_t *c = claim;

    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nrows; i++)
        free(c->rows[i]);
    free(c->rows);
    free(c->gone);
    free(c);
}

/* A row from CLAIM's RETURNING: id, takeover, aggregate type and id, event
 * type, payload, created_at (epoch). */
static ob_row *row_new(ob *o, const sl_pg_result *res, int i)
{
    const char *id = sl_pg_value(res, i, 0), *at = sl_pg_value(res, i, 2),
               *aid = sl_pg_value(res, i, 3), *et = sl_pg_value(res, i, 4),
               *pl = sl_pg_value(res, i, 5), *cr = sl_pg_value(res, i, 6);
    char topic[256];
    size_t lt, la, lk, le, lp;
    ob_row *r;
    char *d;

    at = at != NULL ? at : "";
    aid = aid != NULL ? aid : "";
    et = et != NULL ? et : "";
    ob_topic_of(o->topic, at, et, topic, sizeof(topic));
    lt = strlen(topic) + 1;
    la = strlen(at) + 1;
    lk = strlen(aid) + 1;
    le = strlen(et) + 1;
    lp = pl != NULL ? strlen(pl) + 1 : 0;
    r = malloc(sizeof(*r) + lt + la + lk + le + lp);
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->id = atoll(id);
    snprintf(r->idtext, sizeof(r->idtext), "%lld", r->id);
    r->created = cr != NULL ? atof(cr) : sl_wall();
    d = r->data;
    r->topic = memcpy(d, topic, lt), d += lt;
    r->aggregate_type = memcpy(d, at, la), d += la;
    r->key = memcpy(d, aid, lk), d += lk;
    r->event_type = memcpy(d, et, le), d += le;
    r->payload = pl != NULL ? memcpy(d, pl, lp) : NULL;
    r->payload_len = pl != NULL ? lp - 1 : 0;
    return r;
}

static void on_committed(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg);

static void on_unblocked(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    ob_claim_t *c = arg;
    (void)pg;

    if (err != NULL)
        return; /* the commit reports it */
    for (int i = 0; i < sl_pg_nrows(res); i++) {
        long long id = atoll(sl_pg_value(res, i, 0));
        ob_row **hit = bsearch(&id, c->rows, c->nrows, sizeof(*c->rows), cmp_id);
        if (hit != NULL && !c->gone[hit - c->rows]) {
            c->gone[hit - c->rows] = 1;
            c->unblocked++;
        }
    }
}

static void on_claimed(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    ob_claim_t *c = arg;
    ob *o = c->o;
    ob_ids ids = { 0 };
    int n;
    (void)pg;

    if (err == NULL && (n = sl_pg_nrows(res)) > 0) {
        c->rows = calloc((size_t)n, sizeof(*c->rows));
        c->gone = calloc((size_t)n, 1);
        for (int i = 0; c->rows != NULL && c->gone != NULL && i < n; i++) {
            ob_row *r = row_new(o, res, i);
            const char *t = sl_pg_value(res, i, 1);
            if (r == NULL || ob_ids_add(&ids, r->id) != 0) {
                /* Cannot hold the batch: give all of it back (rollback). */
                free(r);
                free(ids.buf);
                c->abandoned = 1;
                sl_pg_tx_rollback(c->tx, on_committed, c);
                return;
            }
            c->rows[c->nrows++] = r;
            if (t != NULL && t[0] == 't')
                c->takeovers++;
        }
        c->got = n;
        if (c->rows == NULL || c->gone == NULL) {
            c->abandoned = 1;
            sl_pg_tx_rollback(c->tx, on_committed, c);
            return;
        }
        qsort(c->rows, c->nrows, sizeof(*c->rows), cmp_row);
        {
            char *list = ob_ids_take(&ids);
            const char *p[2] = { list, o->me };
            int rc = sl_pg_tx_query(c->tx, o->sql[OB_SQL_UNBLOCK], 2, p, on_unblocked, c);
            free(list);
            if (rc != 0) {
                c->abandoned = 1;
                sl_pg_tx_rollback(c->tx, on_committed, c);
                return;
            }
        }
    }
    /* On error the commit reports it (the transaction is already rolled back). */
    sl_pg_tx_commit(c->tx, on_committed, c);
}

/* Whether the aggregate already holds row `id` (flying or queued). */
static int holds(const ob_agg *a, long long id)
{
    /* The usual case: newer than everything held (rows come in id order). */
    if ((a->tail == NULL || id > a->tail->id) && (a->flying == NULL || id > a->flying->id))
        return 0;
    if (a->flying != NULL && a->flying->id == id)
        return 1;
    for (const ob_row *r = a->head; r != NULL; r = r->next)
        if (r->id == id)
            return 1;
    return 0;
}

static void on_committed(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    ob_claim_t *c = arg;
    ob *o = c->o;
    long long kept = 0;
    (void)pg;
    (void)res;

    o->claiming = 0;
    o->cur_claim = NULL;
    if (err != NULL || c->abandoned) {
        sl_log(o->ctx, SL_LOG_WARN, "claiming a batch failed: %s", err != NULL ? err : "out of memory");
        ob_claim_free(c);
        ob_queue_unpoison(&o->q);
        ob_relay_settled(o);
        return;
    }
    o->takeovers += c->takeovers;
    sl_series_add(o->m_takeovers, (double)c->takeovers);
    o->released_blocked += (unsigned long long)c->unblocked;
    for (size_t i = 0; i < c->nrows; i++) {
        ob_row *r = c->rows[i];
        ob_agg *a;
        if (c->gone[i])
            continue; /* freed with the claim */
        c->rows[i] = NULL;
        a = ob_queue_find(&o->q, r->aggregate_type, r->key);
        if (a != NULL && holds(a, r->id)) {
            free(r); /* ours already (renewal lagged): keep the one copy */
            continue;
        }
        if (o->stopping || (a != NULL && a->poisoned) || ob_queue_add(&o->q, r) != 0) {
            ob_settle_release(o, r->id);
            free(r);
            continue;
        }
        kept++;
    }
    o->claimed += (unsigned long long)kept;
    /* A full batch of which something was kept: more may wait.  (A batch
     * given back whole is not retried at once: that would spin while
     * another relay holds the aggregates; the poll comes back to it.) */
    if (c->got >= c->limit && kept > 0)
        o->more = 1;
    ob_claim_free(c);
    ob_queue_unpoison(&o->q);
    ob_settle_soon(o);
    ob_relay_produce(o);
    ob_relay_settled(o);
}

void ob_claim(ob *o)
{
    long long held = o->q.queued + o->q.flying;
    long long room = o->max_inflight - held;
    long long want = o->batch_size < o->max_inflight ? o->batch_size : o->max_inflight;
    char limit[32];
    const char *p[3];
    ob_claim_t *c;

    if (o->stopping || o->claiming || !o->migrated || o->producer == NULL)
        return; /* (no producer: it failed and is being replaced, see relay.c) */
    /* Claim when a whole batch fits (or nothing is held): a claim of a few
     * rows costs the database nearly as much as a full one (it walks the
     * same index entries, dead ones of deleted rows included). */
    if (room <= 0 || (held > 0 && room < want) || o->unsettled_order > 0 || o->failed.n > 0 ||
        o->release.n > 0) {
        /* Come back when there is room, or once what failed is settled. */
        o->more = 1;
        if (o->failed.n > 0 || o->release.n > 0)
            ob_settle_flush(o);
        return;
    }
    if (room > o->batch_size)
        room = o->batch_size;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->o = o;
    c->limit = room;
    snprintf(limit, sizeof(limit), "%lld", room);
    c->tx = sl_pg_tx_begin(o->pg);
    if (c->tx == NULL) {
        free(c);
        return;
    }
    o->more = 0;
    o->claiming = 1;
    o->cur_claim = c;
    p[0] = o->me;
    p[1] = o->lease_s;
    p[2] = limit;
    if (sl_pg_tx_query(c->tx, o->sql[OB_SQL_CLAIM], 3, p, on_claimed, c) != 0 &&
        (c->abandoned = 1, sl_pg_tx_rollback(c->tx, on_committed, c)) != 0) {
        /* Neither callback will come: give up this claim. */
        o->claiming = 0;
        o->cur_claim = NULL;
        ob_claim_free(c);
    }
}
