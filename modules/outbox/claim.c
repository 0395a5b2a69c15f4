/*
 * claim.c - what a relay takes from the table: the rows of the buckets it
 * owns (lease.c), read in id order, one read in flight at a time.
 *
 * Why buckets, and why this keeps order.  The relay used to claim rows
 * one by one (an UPDATE stamping each row, a NOT EXISTS per row against
 * earlier rows of its aggregate, three statements per claim), which cost
 * PostgreSQL several times the work of reading and deleting the row.
 * Now work is divided by aggregate instead of by row: a row's bucket is
 * a hash of its aggregate id (sql.c), a relay leases buckets, and within
 * them it reads plainly, without writing anything, from a cursor per
 * bucket: "the next rows after id C whose bucket is B" is one index range
 * scan.  What a relay writes per row is only the batched DELETE (or mark)
 * once the broker acknowledged it: close to what PostgreSQL itself needs
 * to read and delete the row.  (Logical decoding would save the reading,
 * but needs wal_level = logical, a replication slot that holds WAL while
 * no relay runs, and still a delete per row; it was not worth that.)
 *
 * The rule that keeps each aggregate's order, whatever the leases do: a
 * relay takes a row only when the row of its aggregate just before it
 * (the read returns its id, one probe of the aggregate index) is gone
 * from the table (acknowledged: already published) or held by this relay
 * (queued, in flight, or acknowledged and being deleted); one row per
 * aggregate flies at a time, in the order taken, and a failed row blocks
 * its aggregate until it is read again.  So the first copy of each row
 * reaches Kafka after the first copy of every earlier row of its
 * aggregate.  This holds even when two relays read one bucket at once (a
 * relay that stalled past its lease and resumed): the worst a second
 * reader causes is a duplicate.  Leases divide the work; order does not
 * rest on them.  A predecessor in the table but not held committed after
 * the cursor went past it (its NOTIFY may still be on its way): the row
 * waits, and the bucket is read again from the predecessor.
 *
 * Cursors and rows committed late.  Ids are taken at insert and rows
 * become visible at commit, so a row may appear behind a cursor.  Three
 * things bring a bucket's cursor back (a rewind, applied just before the
 * next read, so that a read in flight cannot undo it):
 *   - the insert trigger's NOTIFY carries the lowest id each committed
 *     statement inserted (relay.c): every owned bucket rewinds below it;
 *   - a row dropped from memory unpublished (its aggregate failed, the
 *     producer was replaced, the bucket is handed over) rewinds its
 *     bucket below it, and a blocked aggregate, when its backoff ends,
 *     below the row that blocked it;
 *   - every poll_interval, and when listening is (re)established (NOTIFYs
 *     may have been missed), every owned bucket is read again from its
 *     first row.
 * A row read again that this relay already holds, or whose acknowledgement
 * the database has not yet taken, is in `mine` and skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "outbox.h"

typedef struct {
    ob *o;
    int buckets[OB_BUCKETS];
    int n;
    long long per; /* rows asked per bucket */
} ob_read;

int ob_claim_hold(ob *o, long long id, int bucket)
{
    if (ob_mine_add(&o->mine, id, bucket) != 0)
        return -1;
    o->bk[bucket].held++;
    return 0;
}

void ob_claim_unhold(ob *o, long long id)
{
    int b = ob_mine_del(&o->mine, id);

    if (b >= 0)
        o->bk[b].held--;
}

void ob_claim_unhold_later(ob *o, long long id)
{
    if (!o->reading || ob_ids_add(&o->settled, id, 0, NULL, NULL) != 0)
        ob_claim_unhold(o, id); /* out of memory: published twice at worst */
}

/* The read that was in flight is done: what was settled meanwhile leaves
 * mine. */
static void unhold_settled(ob *o)
{
    for (size_t i = 0; i < o->settled.n; i++)
        ob_claim_unhold(o, o->settled.ids[i]);
    ob_ids_free(&o->settled);
}

void ob_claim_rewind(ob *o, int b, long long id)
{
    ob_bucket *k = &o->bk[b];

    if (k->own != OB_OWNED)
        return;
    if (k->rewind < 0 || id < k->rewind)
        k->rewind = id < 0 ? 0 : id;
}

void ob_claim_rewind_all(ob *o)
{
    for (int b = 0; b < OB_BUCKETS; b++)
        ob_claim_rewind(o, b, 0);
    /* Parked rows are read again with the rest: whether they still are
     * parked (a retry un-parks them) is learnt then. */
    for (ob_agg *a = o->q.all; a != NULL;) {
        ob_agg *n = a->all_next;
        if (a->block == OB_PARKED) {
            a->block = OB_OPEN;
            ob_queue_resume(&o->q, a);
        }
        a = n;
    }
}

/* A row of the read: id, bucket, aggregate type and id, event type,
 * payload, created_at (epoch), parked, due in (seconds), the id of the
 * aggregate's previous row still in the table, the trace context. */
static ob_row *row_new(ob *o, const sl_pg_result *res, int i)
{
    const char *id = sl_pg_value(res, i, 0), *bk = sl_pg_value(res, i, 1),
               *at = sl_pg_value(res, i, 2), *aid = sl_pg_value(res, i, 3),
               *et = sl_pg_value(res, i, 4), *pl = sl_pg_value(res, i, 5),
               *cr = sl_pg_value(res, i, 6), *tp = sl_pg_value(res, i, 10);
    char topic[256];
    size_t lt, la, lk, le, lp, ltp;
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
    if (tp != NULL && tp[0] == '\0')
        tp = NULL; /* an empty context is none */
    ltp = tp != NULL ? strlen(tp) + 1 : 0;
    r = malloc(sizeof(*r) + lt + la + lk + le + lp + ltp);
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->id = atoll(id);
    r->bucket = atoi(bk);
    snprintf(r->idtext, sizeof(r->idtext), "%lld", r->id);
    r->created = cr != NULL ? atof(cr) : sl_wall();
    d = r->data;
    r->topic = memcpy(d, topic, lt), d += lt;
    r->aggregate_type = memcpy(d, at, la), d += la;
    r->key = memcpy(d, aid, lk), d += lk;
    r->event_type = memcpy(d, et, le), d += le;
    r->payload = pl != NULL ? memcpy(d, pl, lp) : NULL;
    r->payload_len = pl != NULL ? lp - 1 : 0;
    d += lp;
    r->traceparent = tp != NULL ? memcpy(d, tp, ltp) : NULL;
    return r;
}

/* A row that must wait: parked, or waiting for its backoff.  Its aggregate
 * is blocked from it on; nothing of it is held. */
static void block_at(ob *o, const sl_pg_result *res, int i, int bucket, long long id)
{
    const char *parked = sl_pg_value(res, i, 7), *due = sl_pg_value(res, i, 8);
    ob_agg *a = ob_queue_get(&o->q, sl_pg_value(res, i, 2), sl_pg_value(res, i, 3));

    if (a == NULL) {
        /* Cannot remember the block: read the bucket again from it. */
        ob_claim_rewind(o, bucket, id - 1);
        return;
    }
    a->bucket = bucket;
    a->block_id = id;
    if (parked != NULL && parked[0] == 't') {
        a->block = OB_PARKED;
    } else {
        a->block = OB_BLOCKED;
        a->until = sl_now() + atof(due);
        ob_relay_due(o, atof(due) + 0.005);
    }
    ob_relay_give_back(o, a); /* rows of it held after this one (read late) wait too */
}

/* What one row of the read becomes: skipped (held already, its aggregate
 * blocked), a block, or queued. */
static void take_row(ob *o, const sl_pg_result *res, int i)
{
    long long id = atoll(sl_pg_value(res, i, 0));
    int bucket = atoi(sl_pg_value(res, i, 1));
    const char *parked = sl_pg_value(res, i, 7), *due = sl_pg_value(res, i, 8),
               *prev = sl_pg_value(res, i, 9);
    ob_agg *a;
    ob_row *r;

    if (ob_mine_has(&o->mine, id))
        return;
    a = ob_queue_find(&o->q, sl_pg_value(res, i, 2), sl_pg_value(res, i, 3));
    if (a != NULL && a->block != OB_OPEN) {
        o->released_blocked++;
        if (id < a->block_id) /* an earlier row came late: start there */
            a->block_id = id;
        return;
    }
    if (prev != NULL &&
        (!ob_mine_has(&o->mine, atoll(prev)) || ob_mine_failed(&o->mine, atoll(prev)))) {
        /* An earlier row of its aggregate is in the table and not held
         * (it committed after the cursor went past it), or it failed and
         * its failure is still being recorded: it goes first. */
        o->released_blocked++;
        ob_claim_rewind(o, bucket, atoll(prev) - 1);
        return;
    }
    if ((parked != NULL && parked[0] == 't') || (due != NULL && atof(due) > 0)) {
        block_at(o, res, i, bucket, id);
        return;
    }
    r = row_new(o, res, i);
    if (r == NULL || ob_claim_hold(o, id, bucket) != 0) {
        free(r);
        ob_claim_rewind(o, bucket, id - 1); /* out of memory: later */
        return;
    }
    if (ob_queue_add(&o->q, r) != 0) {
        ob_claim_unhold(o, id);
        free(r);
        ob_claim_rewind(o, bucket, id - 1);
        return;
    }
    o->claimed++;
}

static void on_read(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    ob_read *rd = arg;
    ob *o = rd->o;
    long long got[OB_BUCKETS] = { 0 }, last[OB_BUCKETS];
    (void)pg;

    o->reading = 0;
    if (err != NULL) {
        unhold_settled(o);
        sl_log(o->ctx, SL_LOG_WARN, "reading the outbox failed: %s", err);
        /* Nothing was taken: the cursors stay; the next poll reads again. */
        free(rd);
        ob_relay_settled(o);
        return;
    }
    for (int b = 0; b < OB_BUCKETS; b++)
        last[b] = -1;
    for (int i = 0; i < sl_pg_nrows(res); i++) {
        int b = atoi(sl_pg_value(res, i, 1));
        long long id = atoll(sl_pg_value(res, i, 0));
        if (b < 0 || b >= OB_BUCKETS)
            continue;
        got[b]++;
        if (id > last[b])
            last[b] = id;
        /* A bucket lost or handed over meanwhile: its rows are not ours. */
        if (o->bk[b].own == OB_OWNED && !o->stopping)
            take_row(o, res, i);
    }
    for (int j = 0; j < rd->n; j++) {
        int b = rd->buckets[j];
        ob_bucket *k = &o->bk[b];
        if (k->own != OB_OWNED)
            continue;
        if (last[b] > k->cursor)
            k->cursor = last[b];
        k->full = got[b] >= rd->per;
        if (k->full)
            o->more = 1;
    }
    free(rd);
    unhold_settled(o);
    sl_series_set(o->m_buckets, (double)ob_lease_owned(o));
    ob_settle_soon(o);
    ob_relay_produce(o);
    ob_relay_settled(o);
}

/* One read over every owned bucket, when a whole batch fits (or nothing is
 * held): a read of a few rows costs the database nearly as much as a full
 * one. */
void ob_claim(ob *o)
{
    long long held = o->q.queued + o->q.flying;
    long long room = o->max_inflight - held;
    long long want = o->batch_size < o->max_inflight ? o->batch_size : o->max_inflight;
    char *buckets, *cursors, per[32];
    size_t bl = 0, cl = 0;
    const char *p[4];
    ob_read *rd;
    int owned = ob_lease_owned(o);

    if (o->stopping || o->reading || !o->migrated || o->producer == NULL || owned == 0)
        return; /* (no producer: it failed and is being replaced, see relay.c) */
    if (room <= 0 || (held > 0 && room < want)) {
        o->more = 1; /* come back when there is room */
        return;
    }
    rd = calloc(1, sizeof(*rd));
    buckets = malloc(OB_BUCKETS * 4 + 3);
    cursors = malloc(OB_BUCKETS * 21 + 3);
    if (rd == NULL || buckets == NULL || cursors == NULL) {
        free(rd);
        free(buckets);
        free(cursors);
        return;
    }
    rd->o = o;
    rd->per = ob_per_bucket(want, owned);
    bl += (size_t)sprintf(buckets, "{");
    cl += (size_t)sprintf(cursors, "{");
    for (int b = 0; b < OB_BUCKETS; b++) {
        ob_bucket *k = &o->bk[b];
        if (k->own != OB_OWNED)
            continue;
        if (k->rewind >= 0) {
            if (k->rewind < k->cursor)
                k->cursor = k->rewind;
            k->rewind = -1;
        }
        rd->buckets[rd->n++] = b;
        bl += (size_t)sprintf(buckets + bl, "%s%d", rd->n > 1 ? "," : "", b);
        cl += (size_t)sprintf(cursors + cl, "%s%lld", rd->n > 1 ? "," : "", k->cursor);
    }
    strcpy(buckets + bl, "}");
    strcpy(cursors + cl, "}");
    snprintf(per, sizeof(per), "%lld", rd->per);
    p[0] = o->me;
    p[1] = buckets;
    p[2] = cursors;
    p[3] = per;
    o->more = 0;
    o->reading = 1;
    if (sl_pg_exec(o->pg, o->stmt[OB_SQL_READ], 4, p, on_read, rd) != 0) {
        o->reading = 0;
        o->more = 1;
        free(rd);
    }
    free(buckets);
    free(cursors);
}
