/*
 * lease.c - which buckets of the table this relay reads (claim.c says why
 * buckets).  Each bucket has one lease row ({T}_leases: owner, expires_at)
 * and each relay a heartbeat row ({T}_relays).
 *
 * Every `beat` seconds (lease/3, or poll_interval when shorter) a relay
 * renews the leases it holds and learns how many other relays are alive;
 * its fair share is then the ceiling of OB_BUCKETS / relays.  Below it, it
 * takes free buckets and those whose lease ran out (its owner died or
 * stalled: a takeover); above it, it hands buckets over: it stops reading
 * them, drops what it queued of them, waits for the rows in flight to be
 * acknowledged and deleted, and only then clears the lease, so that the
 * next owner does not publish them a second time.  A bucket missing from
 * the renewal was taken over while this relay was not renewing: it is
 * dropped at once.
 *
 * Expiry is judged by the server's clock alone (now() in every statement),
 * so relays on hosts with skewed clocks agree.  Leases divide the work;
 * order never depends on them (claim.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "outbox.h"

static void beat_fire(void *arg);

int ob_lease_owned(const ob *o)
{
    int n = 0;

    for (int b = 0; b < OB_BUCKETS; b++)
        n += o->bk[b].own == OB_OWNED;
    return n;
}

/* Forgets a bucket: what it queues goes back to the table (unread), what
 * flies lands normally (an acknowledged row is deleted whoever owns it). */
static void drop_bucket(ob *o, int b)
{
    ob_claim_forget(o, b);
    o->bk[b].own = OB_FREE;
    o->bk[b].cursor = 0;
    o->bk[b].rewind = -1;
    o->bk[b].full = 0;
    for (ob_agg *a = o->q.all; a != NULL;) {
        ob_agg *n = a->all_next;
        if (a->bucket == b) {
            a->block = OB_OPEN; /* the next owner finds the block again */
            ob_relay_give_back(o, a);
        }
        a = n;
    }
}

static void on_taken(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    ob *o = arg;
    int taken = 0;
    (void)pg;

    o->beating = 0;
    if (err != NULL) {
        sl_log(o->ctx, SL_LOG_WARN, "taking buckets failed: %s", err);
        ob_relay_settled(o);
        return;
    }
    for (int i = 0; i < sl_pg_nrows(res); i++) {
        int b = atoi(sl_pg_value(res, i, 0));
        const char *t = sl_pg_value(res, i, 1);
        if (b < 0 || b >= OB_BUCKETS)
            continue;
        ob_claim_forget(o, b);
        o->bk[b].own = OB_OWNED;
        o->bk[b].cursor = 0;
        o->bk[b].rewind = -1;
        taken++;
        if (t != NULL && t[0] == 't') {
            o->takeovers++;
            sl_series_add(o->m_takeovers, 1);
        }
    }
    if (taken > 0)
        sl_log(o->ctx, SL_LOG_INFO, "took %d buckets (%d owned)", taken, ob_lease_owned(o));
    sl_series_set(o->m_buckets, (double)ob_lease_owned(o));
    if (o->stopping) {
        /* Taken while the drain began: handed back with the rest. */
        ob_relay_settled(o);
        return;
    }
    o->more = 1;
    ob_relay_settled(o);
}

static void take(ob *o, int n)
{
    char want[16];
    const char *p[3] = { o->me, o->lease_s, want };

    snprintf(want, sizeof(want), "%d", n);
    o->beating = 1;
    if (sl_pg_exec(o->pg, o->stmt[OB_SQL_TAKE], 3, p, on_taken, o) != 0)
        o->beating = 0;
}

/* Above the fair share: the highest buckets are handed over. */
static void hand_over(ob *o, int n)
{
    for (int b = OB_BUCKETS - 1; b >= 0 && n > 0; b--) {
        if (o->bk[b].own != OB_OWNED)
            continue;
        drop_bucket(o, b);
        o->bk[b].own = OB_RELEASING;
        n--;
    }
}

typedef struct {
    ob *o;
    int handed[OB_BUCKETS]; /* 1: cleared by this heartbeat */
} ob_beat;

static void on_beat(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    ob_beat *bt = arg;
    ob *o = bt->o;
    int still[OB_BUCKETS] = { 0 }, others = 0, free_n = 0, lost = 0, owned, fair;
    (void)pg;

    o->beating = 0;
    if (err != NULL) {
        sl_log(o->ctx, SL_LOG_WARN, "heartbeat failed: %s", err);
        free(bt);
        ob_relay_settled(o);
        return;
    }
    for (int i = 0; i < sl_pg_nrows(res); i++) {
        int kind = atoi(sl_pg_value(res, i, 0)), v = atoi(sl_pg_value(res, i, 1));
        if (kind == 0 && v >= 0 && v < OB_BUCKETS)
            still[v] = 1;
        else if (kind == 1)
            others = v;
        else if (kind == 2)
            free_n = v;
    }
    for (int b = 0; b < OB_BUCKETS; b++) {
        if (bt->handed[b]) {
            if (o->bk[b].own == OB_RELEASING)
                o->bk[b].own = OB_FREE;
        } else if (o->bk[b].own != OB_FREE && !still[b]) {
            drop_bucket(o, b);
            lost++;
        } else if (still[b]) {
            o->renewed++;
        }
    }
    free(bt);
    if (lost > 0)
        sl_log(o->ctx, SL_LOG_WARN,
               "%d buckets were taken over by another relay (this one did not renew in time)",
               lost);
    owned = ob_lease_owned(o);
    sl_series_set(o->m_buckets, (double)owned);
    fair = ob_fair_share(others + 1);
    if (!o->stopping && owned > fair)
        hand_over(o, owned - fair);
    else if (!o->stopping && owned < fair && free_n > 0)
        take(o, fair - owned < free_n ? fair - owned : free_n);
    ob_relay_settled(o);
}

/* Heartbeat now: renew, hand back what was handed over and is settled,
 * learn the others. */
void ob_lease_beat(ob *o)
{
    char list[OB_BUCKETS * 4 + 3];
    size_t len = 0;
    const char *p[3];
    ob_beat *bt;
    int n = 0;

    if (o->beating || !o->migrated || o->left)
        return;
    bt = calloc(1, sizeof(*bt));
    if (bt == NULL)
        return;
    bt->o = o;
    len += (size_t)sprintf(list, "{");
    for (int b = 0; b < OB_BUCKETS; b++) {
        if (o->bk[b].own != OB_RELEASING || o->bk[b].held > 0)
            continue;
        bt->handed[b] = 1;
        len += (size_t)sprintf(list + len, "%s%d", n++ > 0 ? "," : "", b);
    }
    strcpy(list + len, "}");
    p[0] = o->me;
    p[1] = o->lease_s;
    p[2] = list;
    o->beating = 1;
    if (sl_pg_exec(o->pg, o->stmt[OB_SQL_BEAT], 3, p, on_beat, bt) != 0) {
        o->beating = 0;
        free(bt);
    }
}

/* A bucket being handed over has no row left here: clear its lease now
 * rather than at the next heartbeat. */
void ob_lease_check_release(ob *o)
{
    for (int b = 0; b < OB_BUCKETS; b++) {
        if (o->bk[b].own == OB_RELEASING && o->bk[b].held == 0) {
            if (o->beat_timer != NULL)
                sl_timer_arm(o->beat_timer, 0);
            return;
        }
    }
}

static void beat_fire(void *arg)
{
    ob *o = arg;

    ob_lease_beat(o);
    if (o->beat_timer != NULL)
        sl_timer_arm(o->beat_timer, o->beat);
}

void ob_lease_start(ob *o)
{
    for (int b = 0; b < OB_BUCKETS; b++) {
        o->bk[b].own = OB_FREE;
        o->bk[b].rewind = -1;
    }
    o->beat_timer = sl_timer_new(o->ctx, o->beat, 0, beat_fire, o);
}
