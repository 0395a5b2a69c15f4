/*
 * relay.c - the relay proper: publish each row read keyed by its
 * aggregate id, one row per aggregate in flight (outbox.h says why), and
 * turn delivery reports into settle batches (settle.c).
 *
 * Work is found five ways: a NOTIFY from the insert trigger (carrying the
 * lowest id committed, claim.c), a read that filled a bucket's share
 * (there may be more), the end of the soonest backoff of a blocked
 * aggregate, buckets newly owned (lease.c), and the poll timer as the
 * fallback, which reads every owned bucket again from its first row while
 * no NOTIFY can be relied on (not listening), and parked rows again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "outbox.h"

static void maybe_finish(ob *o);

/* -------------------------------------------------------------- publish */

void ob_relay_gauges(ob *o)
{
    sl_series_set(o->m_inflight, (double)(o->q.queued + o->q.flying));
}

void ob_relay_drop_row(ob *o, ob_row *r)
{
    ob_claim_unhold(o, r->id);
    ob_claim_rewind(o, r->bucket, r->id - 1);
    free(r);
}

/* Drops every row an aggregate still queues: a row of it failed (they must
 * not overtake it), or its bucket goes.  They stay in the table and are
 * read again. */
void ob_relay_give_back(ob *o, ob_agg *a)
{
    ob_row *r;

    while ((r = ob_queue_pop(&o->q, a)) != NULL)
        ob_relay_drop_row(o, r);
    ob_queue_drop_if_idle(&o->q, a);
}

static sl_kafka_producer *producer_new(ob *o, char *err, size_t errlen);

/* Frees the producer (no report comes for what it still had) and hands
 * back every row held, in flight or queued: whether those in flight
 * arrived is unknown, so they are published again (a duplicate at worst). */
static void drop_producer(ob *o)
{
    sl_kafka_producer_free(o->producer);
    o->producer = NULL;
    for (ob_agg *a = o->q.all; a != NULL;) {
        ob_agg *n = a->all_next;
        if (a->flying != NULL)
            ob_relay_drop_row(o, ob_queue_landed(&o->q, a));
        ob_relay_give_back(o, a);
        a = n;
    }
}

/* The idempotent producer hit a fatal error and refuses every message:
 * replace it.  Rows it held are handed back unpublished (those in flight
 * may have arrived: a duplicate at worst), not failed: the broker refused
 * nothing of theirs.  If no producer can be made, the next poll tries. */
static void producer_reset(ob *o)
{
    char err[256];

    sl_log(o->ctx, SL_LOG_ERROR,
           "kafka producer failed fatally: replacing it, %lld rows handed back",
           o->q.queued + o->q.flying);
    o->waiting_space = 0;
    drop_producer(o);
    ob_settle_flush(o);
    o->producer = producer_new(o, err, sizeof(err));
    if (o->producer == NULL)
        sl_log(o->ctx, SL_LOG_ERROR, "cannot make a kafka producer: %s; retrying at the next poll",
               err);
}

static void on_space(sl_kafka_producer *p, void *arg)
{
    ob *o = arg;
    (void)p;

    o->waiting_space = 0;
    ob_relay_produce(o);
}

/* A row failed: recorded (settle.c), and its aggregate blocked until the
 * database says when it is due again. */
static void fail_row(ob *o, ob_agg *a, ob_row *r, const char *why)
{
    ob_settle_fail(o, r, why);
    a->block = OB_BLOCKED;
    a->until = 0;
    a->block_id = r->id;
    a->bucket = r->bucket;
    free(r);
    ob_relay_give_back(o, a);
}

void ob_relay_produce(ob *o)
{
    ob_agg *a;

    while ((a = ob_queue_ready(&o->q)) != NULL && !o->waiting_space && o->producer != NULL) {
        ob_row *r = a->head;
        /* The writer's trace context goes on as the header; the core
         * continues it with the produce span. */
        sl_kafka_header h[4] = {
            { "event_id", r->idtext, strlen(r->idtext) },
            { "event_type", r->event_type, strlen(r->event_type) },
            { "aggregate_type", r->aggregate_type, strlen(r->aggregate_type) },
            { "traceparent", r->traceparent, r->traceparent != NULL ? strlen(r->traceparent) : 0 },
        };
        int rc = sl_kafka_produce(o->producer, r->topic, SL_KAFKA_PARTITION_ANY, r->key,
                                  strlen(r->key), r->payload, r->payload_len, h,
                                  r->traceparent != NULL ? 4 : 3, r);

        if (rc == SL_KAFKA_EQUEUEFULL) {
            o->waiting_space = 1;
            sl_kafka_producer_on_space(o->producer, on_space, o);
            break;
        }
        if (rc == SL_KAFKA_EFATAL) {
            producer_reset(o); /* hands this row back too; claims resume once settled */
            o->more = 1;
            break;
        }
        ob_queue_fly(&o->q, a);
        if (rc != 0) {
            /* Refused before it left (too large, unknown topic...): a failed
             * attempt like a failed delivery. */
            char why[128];
            snprintf(why, sizeof(why), "produce: %s", sl_kafka_strerror(rc));
            ob_queue_landed(&o->q, a);
            fail_row(o, a, r, why);
            ob_settle_soon(o);
        }
    }
    ob_relay_gauges(o);
}

static void on_delivery(sl_kafka_producer *p, const sl_kafka_msg *m, void *arg)
{
    ob *o = arg;
    ob_row *r = m->opaque;
    ob_agg *a = r->agg;
    (void)p;

    ob_queue_landed(&o->q, a);
    if (m->err == 0) {
        o->published++;
        sl_series_add(o->m_published, 1);
        sl_series_observe(o->m_lag, sl_wall() - r->created);
        ob_settle_ack(o, r);
        ob_queue_resume(&o->q, a);
        free(r);
    } else {
        char why[256];
        snprintf(why, sizeof(why), "%s: %s", m->errname, m->errstr);
        fail_row(o, a, r, why);
    }
    ob_settle_soon(o);
    if (!o->stopping) {
        ob_relay_produce(o);
        if (o->more)
            ob_claim(o);
    }
    ob_relay_gauges(o);
}

/* A statement of ours ended: read what waited for it, hand over a bucket
 * that emptied, or finish the drain. */
void ob_relay_settled(ob *o)
{
    ob_lease_check_release(o);
    if (o->stopping)
        maybe_finish(o);
    else if (o->more)
        ob_claim(o);
}

/* ----------------------------------------------------------------- wake */

static void kick_fire(void *arg)
{
    ob_claim(arg);
}

void ob_relay_soon(ob *o)
{
    if (o->stopping)
        return;
    o->more = 1;
    if (o->kick != NULL && !o->reading)
        sl_timer_arm(o->kick, 0);
}

void ob_relay_kick(ob *o)
{
    ob_claim_rewind_all(o);
    ob_relay_soon(o);
}

/* Blocked aggregates whose backoff ended are read again from the row that
 * blocked them; the soonest other one arms the timer again. */
static void due_fire(void *arg)
{
    ob *o = arg;
    double now = sl_now(), next = 0;

    o->due_at = 0;
    for (ob_agg *a = o->q.all; a != NULL;) {
        ob_agg *n = a->all_next;
        if (a->block == OB_BLOCKED && a->until > 0 && a->until <= now + 0.001) {
            a->block = OB_OPEN;
            ob_claim_rewind(o, a->bucket, a->block_id - 1);
            ob_queue_resume(&o->q, a);
        } else if (a->block == OB_BLOCKED && a->until > 0 && (next == 0 || a->until < next)) {
            next = a->until;
        }
        a = n;
    }
    if (next > 0)
        ob_relay_due(o, next - now);
    ob_relay_soon(o);
}

void ob_relay_due(ob *o, double seconds)
{
    double at;

    if (o->stopping || o->due_timer == NULL)
        return;
    if (seconds < 0.001)
        seconds = 0.001;
    at = sl_now() + seconds;
    if (o->due_at != 0 && o->due_at <= at)
        return; /* an earlier wake-up is armed */
    o->due_at = at;
    sl_timer_arm(o->due_timer, seconds);
}

/* The payload is the lowest id a committed statement inserted (sql.c):
 * read every owned bucket again from there, in case a cursor went past it
 * before it was visible.  "m ...": a read's marker (claim.c), this
 * relay's or another's.  NULL: listening was (re)established and
 * notifications may have been missed: read everything again; a marker
 * awaited may be among them. */
static void on_notify(sl_pg *pg, const char *channel, const char *payload, void *arg)
{
    ob *o = arg;
    long long id = payload != NULL && payload[0] != '\0' ? atoll(payload) : 0;
    (void)pg;
    (void)channel;

    if (payload == NULL) {
        ob_relay_kick(o);
        ob_claim_abandon(o);
        return;
    }
    if (strncmp(payload, "m ", 2) == 0) {
        ob_claim_marker(o, payload);
        return;
    }
    /* Whatever the cursors say now: a read in flight may not see the row
     * yet and still move them past it. */
    for (int b = 0; id > 0 && b < OB_BUCKETS; b++)
        ob_claim_rewind(o, b, id - 1);
    ob_relay_soon(o);
}

static void poll_fire(void *arg)
{
    ob *o = arg;
    char err[256];

    if (o->producer == NULL && !o->stopping) {
        o->producer = producer_new(o, err, sizeof(err));
        if (o->producer == NULL) {
            sl_log(o->ctx, SL_LOG_ERROR, "cannot make a kafka producer: %s", err);
            return; /* claiming would only hold rows nobody can publish */
        }
    }
    /* While listening, the NOTIFYs bring every late row (claim.c), and
     * reading every bucket from its first row would mostly read again the
     * rows held: a few buckets are, in turn, for a row whose NOTIFY never
     * fired (inserted with session_replication_role = replica).  Parked
     * rows are read again either way. */
    if (o->listener != NULL && sl_pg_listening(o->listener)) {
        ob_claim_rewind_parked(o);
        ob_claim_rewind_sweep(o);
    } else {
        ob_claim_rewind_all(o);
    }
    o->more = 1;
    ob_claim(o);
}

static void ack_timer_fire(void *arg)
{
    ob_settle_flush(arg);
}

static void on_counted(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    ob *o = arg;
    (void)pg;

    if (err != NULL || sl_pg_nrows(res) < 1)
        return;
    o->pending_rows = atoll(sl_pg_value(res, 0, 0));
    o->parked_rows = atoll(sl_pg_value(res, 0, 1));
    sl_series_set(o->m_pending, (double)o->pending_rows);
    sl_series_set(o->m_parked, (double)o->parked_rows);
}

static void gauge_fire(void *arg)
{
    ob *o = arg;

    if (o->migrated && !o->stopping)
        sl_pg_exec(o->pg, o->stmt[OB_SQL_PENDING], 0, NULL, on_counted, o);
}

static void migrate(ob *o);

static void on_migrated(sl_pg *pg, int applied, const char *err, void *arg)
{
    ob *o = arg;
    (void)pg;

    if (err != NULL) {
        sl_set_ready(o->ctx, 0, "outbox table not migrated yet");
        sl_log(o->ctx, SL_LOG_WARN, "migrating %s failed (%s); retrying", o->table, err);
        if (o->migrate_timer != NULL && !o->stopping)
            sl_timer_arm(o->migrate_timer, 0.5);
        maybe_finish(o);
        return;
    }
    if (applied > 0)
        sl_log(o->ctx, SL_LOG_INFO, "migrated the outbox table %s (%d migrations applied)",
               o->table, applied);
    o->migrated = 1;
    sl_set_ready(o->ctx, 1, NULL);
    if (o->stopping) {
        maybe_finish(o);
        return;
    }
    o->listener = sl_pg_listen(o->pg, o->channel, on_notify, o);
    ob_lease_beat(o);
    gauge_fire(o);
}

static void migrate_fire(void *arg)
{
    migrate(arg);
}

int ob_relay_migrate(ob *o, sl_pg_migrate_fn fn)
{
    char module[96];
    sl_pg_migration m[3] = { { 1, o->migration[0] },
                             { 2, o->migration[1] },
                             { 3, o->migration[2] } };

    /* Per table: two relays of different tables migrate independently.
     * Without column_traceparent migration 3 waits, unapplied, for a
     * configuration that names the column. */
    snprintf(module, sizeof(module), "outbox:%s", o->table);
    return sl_pg_migrate(o->pg, module, m, o->traced_column ? 3 : 2, fn, o);
}

static void migrate(ob *o)
{
    if (o->stopping)
        return;
    if (ob_relay_migrate(o, on_migrated) != 0)
        sl_log(o->ctx, SL_LOG_ERROR, "cannot queue the migration");
}

/* ---------------------------------------------------------------- start */

static sl_kafka_producer *producer_new(ob *o, char *err, size_t errlen)
{
    char timeout_ms[32];
    const char *props[] = {
        "enable.idempotence", "true", "message.timeout.ms", timeout_ms, "linger.ms", "5", NULL
    };

    snprintf(timeout_ms, sizeof(timeout_ms), "%lld",
             (long long)(sl_opt_seconds(o->ctx, "delivery_timeout") * 1000));
    return sl_kafka_producer_new(o->ctx, on_delivery, o, props, err, errlen);
}

/* The statements that run on every read, acknowledgement, heartbeat and
 * gauge tick: parsed and planned once per connection.  (Only the leave at
 * stop, once per start, is sent unprepared.) */
static int prepare(ob *o)
{
    static const struct {
        ob_sql which;
        const char *name;
    } hot[] = { { OB_SQL_READ, "outbox_read" },      { OB_SQL_ACK, "outbox_ack" },
                { OB_SQL_FAIL, "outbox_fail" },      { OB_SQL_BEAT, "outbox_beat" },
                { OB_SQL_TAKE, "outbox_take" },      { OB_SQL_MARK, "outbox_mark" },
                { OB_SQL_PENDING, "outbox_pending" } };

    for (size_t i = 0; i < sizeof(hot) / sizeof(hot[0]); i++) {
        o->stmt[hot[i].which] = sl_pg_prepare(o->pg, hot[i].name, o->sql[hot[i].which]);
        if (o->stmt[hot[i].which] == NULL)
            return -1;
    }
    return 0;
}

int ob_relay_start(ob *o, char *err, size_t errlen)
{
    sl_ctx *ctx = o->ctx;

    o->pg = sl_pg_new(ctx);
    if (o->pg == NULL) {
        snprintf(err, errlen, "no PostgreSQL connection (is [postgres] dsn set?)");
        return -1;
    }
    o->producer = producer_new(o, err, errlen);
    if (o->producer == NULL)
        return -1;
    if (prepare(o) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    o->kick = sl_timer_new(ctx, 0, 0, kick_fire, o);
    o->ack_timer = sl_timer_new(ctx, o->ack_interval, 0, ack_timer_fire, o);
    o->poll_timer = sl_timer_new(ctx, o->poll, 1, poll_fire, o);
    /* count(*) reads the whole table: every 5 s, not every second. */
    o->gauge_timer = sl_timer_new(ctx, 5, 1, gauge_fire, o);
    o->migrate_timer = sl_timer_new(ctx, 0.5, 0, migrate_fire, o);
    ob_lease_start(o);
    o->retry_timer = sl_timer_new(ctx, 0.5, 0, ob_settle_retry_fire, o);
    o->due_timer = sl_timer_new(ctx, 1, 0, due_fire, o);
    o->marker_timer = sl_timer_new(ctx, OB_MARKER_WAIT, 0, ob_claim_marker_late, o);
    if (o->kick == NULL || o->ack_timer == NULL || o->poll_timer == NULL ||
        o->gauge_timer == NULL || o->migrate_timer == NULL || o->beat_timer == NULL ||
        o->retry_timer == NULL || o->due_timer == NULL || o->marker_timer == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    sl_timer_disarm(o->kick);
    sl_timer_disarm(o->ack_timer);
    sl_timer_disarm(o->migrate_timer);
    sl_timer_disarm(o->retry_timer);
    sl_timer_disarm(o->due_timer);
    sl_timer_disarm(o->marker_timer);
    sl_set_ready(ctx, 0, "outbox table not migrated yet");
    migrate(o);
    return 0;
}

/* ----------------------------------------------------------------- stop */

/* Drained: no read or heartbeat in flight, the producer flushed (or given
 * up), every batch of ids sent and taken by the database; then the
 * buckets are handed back, and that taken too. */
static void maybe_finish(ob *o)
{
    if (!o->stopping || o->stopped || !o->flushed || o->reading || o->wait != NULL || o->beating)
        return;
    if (o->acked.n > 0 || o->failed.n > 0)
        ob_settle_flush(o);
    if (o->busy > 0)
        return;
    if (!o->left && o->migrated) {
        o->left = 1;
        ob_settle_leave(o);
        return;
    }
    o->stopped = 1;
    sl_timer_free(o->beat_timer);
    o->beat_timer = NULL;
    sl_log(o->ctx, SL_LOG_INFO,
           "outbox relay stopped: %llu published, %llu failed, %llu retried, %llu parked, %llu "
           "taken over",
           o->published, o->failed_n, o->retried, o->parked_n, o->takeovers);
    sl_stopped(o->ctx);
}

/* Drops every row still queued (never produced): left in the table. */
static void release_queued(ob *o)
{
    for (ob_agg *a = o->q.all; a != NULL;) {
        ob_agg *n = a->all_next;
        ob_relay_give_back(o, a);
        a = n;
    }
}

static void on_flushed(sl_kafka_producer *p, int remaining, void *arg)
{
    ob *o = arg;
    (void)p; /* o->producer */

    if (remaining > 0) {
        sl_log(o->ctx, SL_LOG_WARN,
               "%d rows not acknowledged within flush_timeout: leaving them to the next relay",
               remaining);
        drop_producer(o);
    }
    o->flushed = 1;
    ob_settle_flush(o);
    ob_relay_gauges(o);
    maybe_finish(o);
}

void ob_relay_stop(ob *o)
{
    o->stopping = 1;
    ob_claim_abandon(o); /* its marker would never come: not listening */
    sl_timer_free(o->poll_timer);
    sl_timer_free(o->gauge_timer);
    sl_timer_free(o->kick);
    sl_timer_free(o->migrate_timer);
    sl_timer_free(o->due_timer);
    sl_timer_free(o->marker_timer);
    o->poll_timer = o->gauge_timer = o->kick = NULL;
    o->migrate_timer = o->due_timer = o->marker_timer = NULL;
    /* The heartbeat goes on until the buckets are handed back: a drain
     * longer than the lease must not let another relay publish the rows
     * it is still settling. */
    if (o->listener != NULL)
        sl_pg_unlisten(o->listener);
    o->listener = NULL;
    release_queued(o);
    ob_settle_flush(o);
    if (o->producer != NULL) {
        sl_kafka_producer_on_space(o->producer, NULL, NULL);
        sl_kafka_producer_flush(o->producer, o->flush_timeout, on_flushed, o);
    } else {
        o->flushed = 1;
        maybe_finish(o);
    }
}

void ob_relay_free(ob *o)
{
    ob_claim_free(o);
    ob_queue_free(&o->q);
    ob_mine_free(&o->mine);
    ob_settle_free(o);
}
