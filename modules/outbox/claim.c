/*
 * claim.c - what a relay takes from the table: the rows of the buckets it
 * owns (lease.c), read in id order.
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
 * still in the table is held by this relay (queued, in flight, or
 * acknowledged and being deleted) or is not there (already published);
 * one row per aggregate flies at a time, in the order taken, and a failed
 * row blocks its aggregate until it is read again.  So the first copy of
 * each row reaches Kafka after the first copy of every earlier row of its
 * aggregate.  This holds even when two relays read one bucket at once (a
 * relay that stalled past its lease and resumed): the worst a second
 * reader causes is a duplicate.  Leases divide the work; order does not
 * rest on them.
 *
 * How the rule is checked without looking up every row's predecessor
 * (that lookup, an index probe that meets the dead tuples of the rows
 * just deleted, was 7 parts in 8 of a read's cost).  A read returns,
 * per bucket, the rows after the bucket's cursor in id order; a row's
 * predecessor above the cursor is in the same read, before it, and is
 * decided first (a row not taken for want of memory or order stops its
 * bucket for the rest of the read).  A predecessor at or below the cursor
 * and not held can only be a row that committed after the read that moved
 * the cursor past it (or one dropped from memory, which moves the cursor
 * back).  Its transaction's NOTIFY carries its id and moves the cursor
 * back; the question is only whether that NOTIFY has arrived before the
 * read's rows are taken.  So after each read the relay sends itself a
 * marker, a NOTIFY of its own, and decides on the read's rows when the
 * marker comes back: PostgreSQL delivers notifications in commit order,
 * and the marker commits after the read's snapshot, so every NOTIFY of a
 * transaction the read saw came before it.  A bucket whose cursor was
 * moved back below where the read started, meanwhile, is not taken from
 * this read but read again from there.  While the LISTEN connection is
 * not up, or when a marker did not come back within OB_MARKER_WAIT, reads
 * look up each row's predecessor in the table, as they all used to.  The
 * marker costs one tiny statement and a NOTIFY delivery per read; the
 * next read is sent meanwhile, from the cursors moved past the rows
 * waiting (one read sent and one waiting, at most).  Reads are decided
 * oldest first, a later marker vouching for earlier reads too; a bucket
 * moved back below where a read started marks that read "dirty" for it,
 * and a read decided untrusted moves its buckets back to where it started.
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
 *   - every poll_interval, parked rows are read again, and while not
 *     listening (NOTIFYs may be missed) every owned bucket is read again
 *     from its first row; so is it when listening is (re)established.
 *     While listening, OB_SWEEP buckets in turn are, at bounded cost, for
 *     rows inserted without the trigger firing (session_replication_role
 *     = replica): such a row is found, but a later row of its aggregate
 *     read before it is not held back for it.
 * A row read again that this relay already holds, or whose acknowledgement
 * the database has not yet taken, is in `mine` and skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "outbox.h"

/* One row of a read, parsed and copied: a read is decided on after its
 * marker came back, when the result is long gone. */
typedef struct {
    ob_row *r; /* NULL: out of memory, or taken */
    long long id;
    int bucket;
    int parked;
    double due;     /* seconds until it may be tried again; <= 0: now */
    long long prev; /* lookup mode: the aggregate's row before it still in the table; 0 none */
} ob_got;

typedef enum { OB_RD_WAITING, OB_RD_TRUSTED, OB_RD_UNTRUSTED } ob_rd_state;

struct ob_read {
    ob *o;
    ob_read *next; /* o->wait: returned, not yet decided, oldest first */
    int buckets[OB_BUCKETS];
    long long start[OB_BUCKETS]; /* each bucket's cursor when the read was sent */
    int dirty[OB_BUCKETS];       /* moved back below start since: read again */
    int n;
    long long per; /* rows asked per bucket */
    int look;      /* with each row's predecessor */
    ob_rd_state state;
    ob_got *rows;
    int nrows;
    ob_ids settled; /* settled after this read was sent: leave mine once it is decided */
    char marker[200];
};

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

/* The newest read not decided (sent last), or NULL. */
static ob_read *newest(ob *o)
{
    return o->rd_sent != NULL ? o->rd_sent : o->wait_tail;
}

void ob_claim_unhold_later(ob *o, long long id)
{
    ob_read *rd = newest(o);

    /* Reads are decided oldest first: when the newest one sent before
     * the database took the statement is, all are. */
    if (rd == NULL || ob_ids_add(&rd->settled, id, 0, NULL, NULL) != 0)
        ob_claim_unhold(o, id); /* out of memory: published twice at worst */
}

/* What was settled while `rd` was undecided leaves mine. */
static void unhold_settled(ob *o, ob_read *rd)
{
    for (size_t i = 0; i < rd->settled.n; i++)
        ob_claim_unhold(o, rd->settled.ids[i]);
    ob_ids_free(&rd->settled);
}

/* Every read not yet decided whose rows of bucket `b` may now follow an
 * unheld row below `id`. */
static void mark_dirty(ob *o, int b, long long id)
{
    if (o->rd_sent != NULL && id < o->rd_sent->start[b])
        o->rd_sent->dirty[b] = 1;
    for (ob_read *rd = o->wait; rd != NULL; rd = rd->next)
        if (id < rd->start[b])
            rd->dirty[b] = 1;
}

void ob_claim_forget(ob *o, int b)
{
    mark_dirty(o, b, -1);
}

void ob_claim_rewind(ob *o, int b, long long id)
{
    ob_bucket *k = &o->bk[b];

    if (k->own != OB_OWNED)
        return;
    mark_dirty(o, b, id);
    if (k->rewind < 0 || id < k->rewind)
        k->rewind = id < 0 ? 0 : id;
}

void ob_claim_rewind_all(ob *o)
{
    for (int b = 0; b < OB_BUCKETS; b++)
        ob_claim_rewind(o, b, 0);
    ob_claim_rewind_parked(o);
}

/* Parked rows are read again: whether they still are parked (a retry
 * un-parks them, maybe through another relay) is learnt then. */
void ob_claim_rewind_parked(ob *o)
{
    for (ob_agg *a = o->q.all; a != NULL;) {
        ob_agg *n = a->all_next;
        if (a->block == OB_PARKED) {
            a->block = OB_OPEN;
            ob_claim_rewind(o, a->bucket, a->block_id - 1);
            ob_queue_resume(&o->q, a);
        }
        a = n;
    }
}

void ob_claim_rewind_sweep(ob *o)
{
    for (int i = 0, n = 0; i < OB_BUCKETS && n < OB_SWEEP; i++) {
        int b = (o->sweep + i) % OB_BUCKETS;
        if (o->bk[b].own != OB_OWNED)
            continue;
        ob_claim_rewind(o, b, 0);
        n++;
        o->sweep = (b + 1) % OB_BUCKETS;
    }
}

/* A row of the read: id, bucket, aggregate type and id, event type,
 * payload, created_at (epoch), parked, due in (seconds), and in lookup
 * mode the id of the aggregate's previous row still in the table, the trace context. */
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
 * is blocked from it on; nothing of it is held.  -1 when the block cannot
 * be remembered (the bucket is read again from the row). */
static int block_at(ob *o, const ob_got *g)
{
    ob_agg *a = ob_queue_get(&o->q, g->r->aggregate_type, g->r->key);

    if (a == NULL) {
        ob_claim_rewind(o, g->bucket, g->id - 1);
        return -1;
    }
    a->bucket = g->bucket;
    a->block_id = g->id;
    if (g->parked) {
        a->block = OB_PARKED;
    } else {
        a->block = OB_BLOCKED;
        a->until = sl_now() + g->due;
        ob_relay_due(o, g->due + 0.005);
    }
    ob_relay_give_back(o, a); /* rows of it held after this one (read late) wait too */
    return 0;
}

/* What one row of the read becomes: skipped (held already, its aggregate
 * blocked), a block, or queued.  -1: it was not taken and its bucket is
 * read again from it (or its predecessor), so the bucket's later rows in
 * this read must not be taken either: one of them may be of its
 * aggregate. */
static int take_row(ob *o, ob_got *g)
{
    ob_agg *a;

    if (ob_mine_has(&o->mine, g->id))
        return 0;
    if (g->r == NULL) {
        ob_claim_rewind(o, g->bucket, g->id - 1); /* out of memory: later */
        return -1;
    }
    a = ob_queue_find(&o->q, g->r->aggregate_type, g->r->key);
    if (a != NULL && a->block != OB_OPEN) {
        o->released_blocked++;
        if (g->id < a->block_id) /* an earlier row came late: start there */
            a->block_id = g->id;
        return 0;
    }
    if (g->prev > 0 && (!ob_mine_has(&o->mine, g->prev) || ob_mine_failed(&o->mine, g->prev))) {
        /* An earlier row of its aggregate is in the table and not held
         * (it committed after the cursor went past it), or it failed and
         * its failure is still being recorded: it goes first. */
        o->released_blocked++;
        ob_claim_rewind(o, g->bucket, g->prev - 1);
        return -1;
    }
    if (g->parked || g->due > 0)
        return block_at(o, g);
    if (ob_claim_hold(o, g->id, g->bucket) != 0) {
        ob_claim_rewind(o, g->bucket, g->id - 1);
        return -1;
    }
    if (ob_queue_add(&o->q, g->r) != 0) {
        ob_claim_unhold(o, g->id);
        ob_claim_rewind(o, g->bucket, g->id - 1);
        return -1;
    }
    g->r = NULL; /* the queue owns it */
    o->claimed++;
    return 0;
}

static void read_free(ob_read *rd)
{
    for (int i = 0; i < rd->nrows; i++)
        free(rd->rows[i].r);
    free(rd->rows);
    ob_ids_free(&rd->settled);
    free(rd);
}

/* The oldest read is decided on.  Trusted: every late row of its buckets
 * has been seen to (claim.c's header); otherwise nothing of it is taken
 * and its buckets are read again from where it started.  A bucket moved
 * back below where the read started, meanwhile (a late row's NOTIFY, a
 * row dropped from memory, the bucket lost), is read again too: a row of
 * it below the read's start may now precede one the read returned. */
static void decide(ob *o, int trusted)
{
    ob_read *rd = o->wait;
    int skip[OB_BUCKETS] = { 0 }, halt[OB_BUCKETS] = { 0 };

    o->wait = rd->next;
    if (o->wait == NULL)
        o->wait_tail = NULL;
    o->wait_rows -= rd->nrows;
    for (int j = 0; j < rd->n; j++) {
        int b = rd->buckets[j];
        skip[b] = !trusted || rd->dirty[b];
        if (!trusted) /* its cursor went past the read's rows: back */
            ob_claim_rewind(o, b, rd->start[b]);
        if (skip[b])
            o->more = 1;
    }
    for (int i = 0; i < rd->nrows; i++) {
        ob_got *g = &rd->rows[i];
        int b = g->bucket;
        /* A bucket lost or handed over meanwhile: its rows are not ours. */
        if (o->bk[b].own != OB_OWNED || o->stopping || skip[b] || halt[b])
            continue;
        if (take_row(o, g) != 0)
            halt[b] = 1;
    }
    unhold_settled(o, rd);
    read_free(rd);
}

/* Decides the reads whose turn it is, oldest first. */
static void decide_ready(ob *o)
{
    int n = 0;

    while (o->wait != NULL && o->wait->state != OB_RD_WAITING) {
        decide(o, o->wait->state == OB_RD_TRUSTED);
        n++;
    }
    if (o->wait == NULL && o->marker_timer != NULL)
        sl_timer_disarm(o->marker_timer);
    if (n == 0)
        return;
    sl_series_set(o->m_buckets, (double)ob_lease_owned(o));
    ob_settle_soon(o);
    ob_relay_produce(o);
    ob_relay_settled(o);
}

static void on_marker_sent(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    ob *o = arg;
    (void)pg;
    (void)res;

    /* Not sent: it will not come back. */
    if (err != NULL && o->wait != NULL) {
        sl_log(o->ctx, SL_LOG_WARN, "sending the read's marker failed: %s", err);
        ob_claim_abandon(o);
    }
}

void ob_claim_marker(ob *o, const char *payload)
{
    ob_read *hit = NULL;

    for (ob_read *rd = o->wait; rd != NULL && hit == NULL; rd = rd->next)
        if (strcmp(payload, rd->marker) == 0)
            hit = rd;
    if (hit == NULL)
        return;
    /* A later read's marker vouches for the earlier reads too: it
     * committed after their snapshots as well. */
    for (ob_read *rd = o->wait; rd != hit->next; rd = rd->next)
        if (rd->state == OB_RD_WAITING)
            rd->state = OB_RD_TRUSTED;
    decide_ready(o);
}

void ob_claim_abandon(ob *o)
{
    if (o->wait == NULL)
        return;
    o->look_next = 1;
    for (ob_read *rd = o->wait; rd != NULL; rd = rd->next)
        if (rd->state == OB_RD_WAITING)
            rd->state = OB_RD_UNTRUSTED;
    decide_ready(o);
}

void ob_claim_marker_late(void *arg)
{
    ob *o = arg;

    if (o->wait != NULL)
        sl_log(o->ctx, SL_LOG_WARN,
               "a read's marker did not come back within %.0f s: reading again, with predecessors",
               OB_MARKER_WAIT);
    ob_claim_abandon(o);
}

/* Sends the marker of a read without predecessors (claim.c's header). */
static void send_marker(ob *o, ob_read *rd)
{
    const char *p[2];

    snprintf(rd->marker, sizeof(rd->marker), "m %s %llu", o->me, ++o->marker_seq);
    p[0] = o->channel;
    p[1] = rd->marker;
    if (o->listener == NULL || !sl_pg_listening(o->listener) ||
        sl_pg_exec(o->pg, o->stmt[OB_SQL_MARK], 2, p, on_marker_sent, o) != 0) {
        rd->state = OB_RD_UNTRUSTED;
        o->look_next = 1;
        return;
    }
    sl_timer_arm(o->marker_timer, OB_MARKER_WAIT);
}

/* The read's rows are parsed and wait for their turn (and marker); the
 * cursors move past them at once, so that the next read can be sent
 * while this one waits.  A read decided untrusted moves them back. */
static void on_read(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    ob_read *rd = arg;
    ob *o = rd->o;
    int n = err == NULL ? sl_pg_nrows(res) : 0;
    long long got[OB_BUCKETS] = { 0 }, last[OB_BUCKETS];
    (void)pg;

    o->reading = 0;
    o->rd_sent = NULL;
    if (err == NULL && n > 0 && (rd->rows = calloc((size_t)n, sizeof(*rd->rows))) == NULL)
        err = "out of memory";
    if (err != NULL) {
        ob_read *prev = o->wait_tail;
        sl_log(o->ctx, SL_LOG_WARN, "reading the outbox failed: %s", err);
        /* Nothing was taken: the cursors stay; the next poll reads again.
         * What was settled meanwhile waits for the reads sent before. */
        for (size_t i = 0; i < rd->settled.n; i++)
            if (prev == NULL || ob_ids_add(&prev->settled, rd->settled.ids[i], 0, NULL, NULL) != 0)
                ob_claim_unhold(o, rd->settled.ids[i]);
        read_free(rd);
        ob_relay_settled(o);
        return;
    }
    for (int b = 0; b < OB_BUCKETS; b++)
        last[b] = -1;
    for (int i = 0; i < n; i++) {
        ob_got *g = &rd->rows[rd->nrows];
        const char *parked = sl_pg_value(res, i, 7), *due = sl_pg_value(res, i, 8),
                   *prev = sl_pg_value(res, i, 9);
        g->bucket = atoi(sl_pg_value(res, i, 1));
        if (g->bucket < 0 || g->bucket >= OB_BUCKETS)
            continue;
        g->id = atoll(sl_pg_value(res, i, 0));
        g->parked = parked != NULL && parked[0] == 't';
        g->due = due != NULL ? atof(due) : 0;
        g->prev = prev != NULL ? atoll(prev) : 0;
        g->r = ob_mine_has(&o->mine, g->id) ? NULL : row_new(o, res, i);
        got[g->bucket]++;
        if (g->id > last[g->bucket])
            last[g->bucket] = g->id;
        rd->nrows++;
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
    if (o->wait_tail != NULL)
        o->wait_tail->next = rd;
    else
        o->wait = rd;
    o->wait_tail = rd;
    o->wait_rows += rd->nrows;
    if (rd->look || o->stopping)
        rd->state = OB_RD_TRUSTED;
    else
        send_marker(o, rd);
    decide_ready(o);
    if (o->more)
        ob_claim(o); /* the next read, while this one waits */
}

/* One read over every owned bucket, when a whole batch fits (or nothing is
 * held): a read of a few rows costs the database nearly as much as a full
 * one. */
void ob_claim(ob *o)
{
    long long held = o->q.queued + o->q.flying + o->wait_rows;
    long long room = o->max_inflight - held;
    long long want = o->batch_size < o->max_inflight ? o->batch_size : o->max_inflight;
    char *buckets, *cursors, per[32];
    size_t bl = 0, cl = 0;
    const char *p[5];
    ob_read *rd;
    int owned = ob_lease_owned(o);

    if (o->stopping || !o->migrated || o->producer == NULL || owned == 0)
        return; /* (no producer: it failed and is being replaced, see relay.c) */
    if (o->reading || (o->wait != NULL && o->wait->next != NULL)) {
        o->more = 1; /* one read sent and one waiting for its marker, at most */
        return;
    }
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
    /* Predecessors are looked up when late rows cannot be vouched for by
     * the NOTIFYs: not listening, or a marker did not come back. */
    rd->look = o->look_next || o->listener == NULL || !sl_pg_listening(o->listener);
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
        rd->start[b] = k->cursor;
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
    p[4] = rd->look ? "t" : "f";
    o->more = 0;
    o->reading = 1;
    o->rd_sent = rd;
    o->look_next = 0;
    if (sl_pg_exec(o->pg, o->stmt[OB_SQL_READ], 5, p, on_read, rd) != 0) {
        o->reading = 0;
        o->rd_sent = NULL;
        o->more = 1;
        free(rd);
    }
    free(buckets);
    free(cursors);
}

void ob_claim_free(ob *o)
{
    while (o->wait != NULL) {
        ob_read *rd = o->wait;
        o->wait = rd->next;
        read_free(rd);
    }
    o->wait_tail = NULL;
}
