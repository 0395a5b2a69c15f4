/*
 * send.c - the send strategies and where every event ends.
 *
 *   async  hand each event to the producer at once; the delivery report
 *          settles it.  At `inflight` unconfirmed events, or when the
 *          producer's local queue is full, the event at hand is dropped
 *          and counted, and generation waits for room instead of making
 *          events only to drop them.
 *   sync   one event at a time: wait for the broker's ack, retry a failed
 *          attempt after an exponential backoff, up to `retries` attempts;
 *          what still fails is logged and counted.  Events due meanwhile
 *          wait in the backlog.
 *   batch  events accumulate until `batch_size` of them or until the
 *          oldest is `batch_interval` old, then go to the producer
 *          together; reports settle them as in async.
 *
 * The delivery report's opaque carries the event's class, origin and
 * intended send time (a tag), so async sending allocates nothing per event.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gen.h"

_Static_assert(sizeof(void *) >= 8, "message tags need 64-bit pointers");

enum { SYNC_IDLE, SYNC_INFLIGHT, SYNC_SPACE, SYNC_BACKOFF };

#define FAIL_LOGS_PER_SECOND 5

/* ---------------------------------------------------------- accounting */

static void count(gen *g, int klass, int origin, gen_outcome outcome)
{
    g->counts[klass][outcome]++;
    g->by_origin[origin][outcome]++;
    switch (outcome) {
    case GEN_GENERATED:
        if (gen_class_malformed((gen_class)klass)) {
            sl_series_add(g->m_events[3], 1);
            sl_series_add(g->m_malformed[klass - GEN_MISSING_FIELD], 1);
        } else {
            sl_series_add(g->m_events[klass], 1); /* view, bounce, duplicate */
        }
        break;
    case GEN_DELIVERED:
        sl_series_add(g->m_delivered, 1);
        break;
    case GEN_FAILED:
        sl_series_add(g->m_failed, 1);
        break;
    default:
        break;
    }
}

void gen_count(gen *g, const gen_msg *m, gen_outcome outcome)
{
    count(g, m->klass, m->origin, outcome);
}

void gen_drop_msg(gen *g, const gen_msg *m, gen_drop why)
{
    count(g, m->klass, m->origin, GEN_DROPPED);
    g->drops[why]++;
    sl_series_add(g->m_dropped[why], 1);
}

static void log_failure(gen *g, const char *id, const char *why, int attempts)
{
    if (g->fail_logged < FAIL_LOGS_PER_SECOND) {
        if (id != NULL)
            sl_log(g->ctx, SL_LOG_ERROR, "event %s failed after %d attempt%s: %s", id, attempts,
                   attempts == 1 ? "" : "s", why);
        else
            sl_log(g->ctx, SL_LOG_ERROR, "an event failed: %s", why);
    } else if (g->fail_logged == FAIL_LOGS_PER_SECOND) {
        sl_log(g->ctx, SL_LOG_ERROR, "more events failed this second; counted, not logged");
    }
    g->fail_logged++;
}

static void observe_latency(gen *g, double intended)
{
    double lat = sl_now() - intended;

    if (lat < 0)
        lat = 0;
    g->lat_last = lat;
    g->latencies[g->lat_n % GEN_LATENCIES] = lat;
    g->lat_n++;
    sl_series_observe(g->m_latency, lat);
}

/* ---------------------------------------------------------------- tags */

static void *tag(const gen *g, const gen_msg *m)
{
    double us = (m->intended - g->t0) * 1e6;
    uint64_t t = us > 0 ? (uint64_t)llround(us) : 0;

    return (void *)(uintptr_t)((t << 8) | ((uint64_t)m->origin << 4) | m->klass);
}

static void untag(const gen *g, void *opaque, int *klass, int *origin, double *intended)
{
    uint64_t v = (uint64_t)(uintptr_t)opaque;

    *klass = (int)(v & 0x0f);
    *origin = (int)((v >> 4) & 0x0f);
    *intended = g->t0 + (double)(v >> 8) / 1e6;
}

/* ------------------------------------------------------------ producing */

/* 0 or the connector's error; on 0 the event is in flight.  Every message
 * carries event_type, event_id and generator; origin and partitioning
 * only with trace_headers. */
static int hand_over(gen *g, const gen_msg *m)
{
    const char *type = gen_class_malformed((gen_class)m->type) ? "malformed"
                                                               : gen_class_name((gen_class)m->type);
    const char *origin = gen_origin_name((gen_origin)m->origin);
    const char *how = gen_part_name((gen_part_how)m->how);
    sl_kafka_header h[5] = {
        { "event_type", type, strlen(type) },      { "event_id", m->id, GEN_ID_LEN },
        { "generator", g->name, strlen(g->name) }, { "origin", origin, strlen(origin) },
        { "partitioning", how, strlen(how) },
    };
    /* A traced event is the root of its own trace, even in a burst asked
     * for over HTTP: the core's produce span nests under it and the message
     * carries the context.  The random draw happens only with a share set,
     * so seeded runs repeat as before. */
    sl_span *span = g->trace_share > 0 && gen_rng_unit(&g->rng) < g->trace_share
                            ? sl_span_start_from(g->ctx, SL_SPAN_INTERNAL, "generate", NULL)
                            : NULL;
    int rc;

    sl_span_set_str(span, "sluice.event_type", type);
    sl_span_enter(span);
    rc = sl_kafka_produce(g->producer, g->topic,
                          m->partition == GEN_BY_KEY ? SL_KAFKA_PARTITION_ANY : m->partition,
                          m->key, m->keylen, m->value, m->len, h, g->trace_headers ? 5 : 3,
                          tag(g, m));
    sl_span_end(span);
    if (rc == 0) {
        g->inflight++;
        g->inflight_by[m->klass][m->origin]++;
    }
    return rc;
}

/* ---------------------------------------------------- the waiting queue */

static gen_msg *q_head(gen *g)
{
    return g->qlen > 0 ? &g->q[g->qhead] : NULL;
}

static void q_pop(gen *g)
{
    gen_msg *m = &g->q[g->qhead];

    free(m->value);
    m->value = NULL;
    g->qhead = (g->qhead + 1) % (size_t)g->backlog_max;
    g->qlen--;
}

/* Copies the event into the queue, or drops it when the backlog is full. */
static int q_push(gen *g, const gen_msg *m)
{
    gen_msg *slot;
    char *value;

    if (g->qlen >= (size_t)g->backlog_max) {
        gen_drop_msg(g, m, GEN_DROP_BACKLOG);
        return -1;
    }
    value = malloc(m->len > 0 ? m->len : 1);
    if (value == NULL) {
        sl_log(g->ctx, SL_LOG_ERROR, "out of memory queueing an event");
        gen_drop_msg(g, m, GEN_DROP_BACKLOG);
        return -1;
    }
    memcpy(value, m->value, m->len);
    slot = &g->q[(g->qhead + g->qlen) % (size_t)g->backlog_max];
    *slot = *m;
    slot->value = value;
    g->qlen++;
    return 0;
}

/* ----------------------------------------------------------------- async */

static void async_space(sl_kafka_producer *p, void *arg)
{
    gen *g = arg;

    (void)p;
    if (g->inflight < g->inflight_max)
        gen_resume(g);
}

static void async_send(gen *g, gen_msg *m)
{
    int rc;

    if (g->inflight >= g->inflight_max) {
        gen_drop_msg(g, m, GEN_DROP_INFLIGHT);
        g->paused = 1; /* a delivery report resumes */
        return;
    }
    rc = hand_over(g, m);
    if (rc == 0)
        return;
    if (rc == SL_KAFKA_EQUEUEFULL) {
        gen_drop_msg(g, m, GEN_DROP_QUEUE_FULL);
        g->paused = 1;
        sl_kafka_producer_on_space(g->producer, async_space, g);
        return;
    }
    gen_count(g, m, GEN_FAILED);
    log_failure(g, m->id, sl_kafka_strerror(rc), 1);
}

/* ------------------------------------------------------------------ sync */

static void sync_pump(gen *g);

static void sync_space(sl_kafka_producer *p, void *arg)
{
    gen *g = arg;

    (void)p;
    if (g->sync_state == SYNC_SPACE) {
        g->sync_state = SYNC_IDLE;
        sync_pump(g);
    }
}

static void sync_retry(void *arg)
{
    gen *g = arg;

    if (g->sync_state == SYNC_BACKOFF) {
        g->sync_state = SYNC_IDLE;
        sync_pump(g);
    }
}

/* The head's attempt failed: back off and retry, or give it up. */
static void sync_attempt_failed(gen *g, const char *why)
{
    gen_msg *m = q_head(g);
    double delay = gen_backoff_delay(&g->backoff, m->attempts);

    if (delay < 0 || g->stopping) {
        gen_count(g, m, GEN_FAILED);
        log_failure(g, m->id, why, m->attempts);
        q_pop(g);
        g->sync_state = SYNC_IDLE;
        return;
    }
    g->retries++;
    sl_series_add(g->m_retries, 1);
    sl_log(g->ctx, SL_LOG_WARN, "event %s: attempt %d failed (%s); retrying in %.3g s", m->id,
           m->attempts, why, delay);
    g->sync_state = SYNC_BACKOFF;
    sl_timer_arm(g->retry, delay);
}

static void sync_pump(gen *g)
{
    while (g->sync_state == SYNC_IDLE && g->qlen > 0 && !g->stopping) {
        gen_msg *m = q_head(g);
        int rc = hand_over(g, m);

        if (rc == 0) {
            m->attempts++;
            g->sync_state = SYNC_INFLIGHT;
        } else if (rc == SL_KAFKA_EQUEUEFULL) {
            g->sync_state = SYNC_SPACE;
            sl_kafka_producer_on_space(g->producer, sync_space, g);
        } else {
            m->attempts++;
            sync_attempt_failed(g, sl_kafka_strerror(rc));
        }
    }
}

static void sync_report(gen *g, const sl_kafka_msg *msg)
{
    gen_msg *m = q_head(g);

    if (m == NULL || g->sync_state != SYNC_INFLIGHT)
        return; /* cannot happen: one event is in flight at a time */
    if (msg->err == 0) {
        gen_count(g, m, GEN_DELIVERED);
        observe_latency(g, m->intended);
        q_pop(g);
        g->sync_state = SYNC_IDLE;
    } else {
        sync_attempt_failed(g, msg->errname);
    }
    sync_pump(g);
}

/* ----------------------------------------------------------------- batch */

static void batch_send_all(gen *g);

static void batch_space(sl_kafka_producer *p, void *arg)
{
    (void)p;
    batch_send_all(arg);
}

static void batch_due(void *arg)
{
    batch_send_all(arg);
}

/* Hands the accumulated events over; waits for room when there is none. */
static void batch_send_all(gen *g)
{
    g->batch_waiting = 0;
    sl_timer_disarm(g->batch_timer);
    while (g->qlen > 0) {
        gen_msg *m = q_head(g);
        int rc;

        if (g->inflight >= g->inflight_max && !g->stopping) {
            g->batch_waiting = 1; /* a delivery report sends the rest */
            return;
        }
        rc = hand_over(g, m);
        if (rc == SL_KAFKA_EQUEUEFULL) {
            if (g->stopping) {
                gen_drop_msg(g, m, GEN_DROP_STOPPING);
                q_pop(g);
                continue;
            }
            g->batch_waiting = 1;
            sl_kafka_producer_on_space(g->producer, batch_space, g);
            return;
        }
        if (rc != 0) {
            gen_count(g, m, GEN_FAILED);
            log_failure(g, m->id, sl_kafka_strerror(rc), 1);
        }
        q_pop(g);
    }
}

static void batch_send(gen *g, gen_msg *m)
{
    if (q_push(g, m) != 0 || g->batch_waiting)
        return;
    if (g->qlen >= (size_t)g->batch_size)
        batch_send_all(g);
    else if (g->qlen == 1)
        sl_timer_arm(g->batch_timer, g->batch_interval);
}

/* ------------------------------------------------------------- reports */

static void on_delivery(sl_kafka_producer *p, const sl_kafka_msg *msg, void *arg)
{
    gen *g = arg;
    int klass, origin;
    double intended;

    (void)p;
    untag(g, msg->opaque, &klass, &origin, &intended);
    if (klass >= GEN_NCLASSES || origin >= GEN_NORIGINS)
        return; /* not ours: cannot happen */
    g->inflight--;
    g->inflight_by[klass][origin]--;
    if (g->strategy == GEN_SYNC) {
        sync_report(g, msg);
        return;
    }
    if (msg->err == 0) {
        count(g, klass, origin, GEN_DELIVERED);
        observe_latency(g, intended);
    } else {
        count(g, klass, origin, GEN_FAILED);
        log_failure(g, NULL, msg->errname, 1);
    }
    if (g->strategy == GEN_BATCH && g->batch_waiting && g->inflight < g->inflight_max)
        batch_send_all(g);
    else if (g->strategy == GEN_ASYNC && g->paused && g->inflight < g->inflight_max)
        gen_resume(g);
}

void gen_send(gen *g, gen_msg *m)
{
    switch (g->strategy) {
    case GEN_ASYNC:
        async_send(g, m);
        break;
    case GEN_SYNC:
        if (q_push(g, m) == 0)
            sync_pump(g);
        break;
    case GEN_BATCH:
        batch_send(g, m);
        break;
    }
}

/* ------------------------------------------------------------- lifecycle */

int gen_send_start(gen *g, char *err, size_t errlen)
{
    sl_ctx *ctx = g->ctx;
    char timeout_ms[32];
    /* Idempotence: a produce request whose answer is lost when a broker
     * goes down is retried by librdkafka, and without a producer id the
     * broker appends it twice, so the topic would hold an event the
     * counts never delivered.  With it, the broker drops the repeat. */
    const char *props[] = {
        "message.timeout.ms", timeout_ms, "enable.idempotence", "true", NULL, NULL, NULL
    };

    g->inflight_max = sl_opt_int(ctx, "inflight");
    g->backlog_max = sl_opt_int(ctx, "backlog");
    g->batch_size = sl_opt_int(ctx, "batch_size");
    g->batch_interval = sl_opt_seconds(ctx, "batch_interval");
    g->flush_timeout = sl_opt_seconds(ctx, "flush_timeout");
    snprintf(timeout_ms, sizeof(timeout_ms), "%.0f",
             ceil(sl_opt_seconds(ctx, "delivery_timeout") * 1000));
    /* One event at a time: do not wait for company that never comes. */
    if (g->strategy == GEN_SYNC) {
        props[4] = "linger.ms";
        props[5] = "0";
    }
    if (g->strategy != GEN_ASYNC) {
        g->q = calloc((size_t)g->backlog_max, sizeof(*g->q));
        if (g->q == NULL) {
            snprintf(err, errlen, "out of memory for a backlog of %lld events", g->backlog_max);
            return -1;
        }
    }
    g->retry = sl_timer_new(ctx, 3600, 0, sync_retry, g);
    g->batch_timer = sl_timer_new(ctx, 3600, 0, batch_due, g);
    if (g->retry == NULL || g->batch_timer == NULL) {
        snprintf(err, errlen, "cannot create timers");
        return -1;
    }
    sl_timer_disarm(g->retry);
    sl_timer_disarm(g->batch_timer);
    g->producer = sl_kafka_producer_new(ctx, on_delivery, g, props, err, errlen);
    return g->producer != NULL ? 0 : -1;
}

static uint64_t total(const gen *g, gen_outcome o)
{
    uint64_t n = 0;

    for (int c = 0; c < GEN_NCLASSES; c++)
        n += g->counts[c][o];
    return n;
}

static void on_flushed(sl_kafka_producer *p, int remaining, void *arg)
{
    gen *g = arg;
    sl_ctx *ctx = g->ctx;

    /* Reports of what is left will never come once the producer is gone:
     * the broker may or may not have it, so it did not provably arrive. */
    if (remaining > 0 || g->inflight > 0) {
        sl_log(ctx, SL_LOG_WARN, "%lld events unconfirmed after %.3g s; counted as failed",
               g->inflight, g->flush_timeout);
        for (int c = 0; c < GEN_NCLASSES; c++)
            for (int o = 0; o < GEN_NORIGINS; o++)
                for (; g->inflight_by[c][o] > 0; g->inflight_by[c][o]--)
                    count(g, c, o, GEN_FAILED);
        g->inflight = 0;
    }
    sl_log(ctx, SL_LOG_INFO, "drained: generated %llu, delivered %llu, failed %llu, dropped %llu",
           (unsigned long long)total(g, GEN_GENERATED), (unsigned long long)total(g, GEN_DELIVERED),
           (unsigned long long)total(g, GEN_FAILED), (unsigned long long)total(g, GEN_DROPPED));
    sl_kafka_producer_free(p);
    g->producer = NULL;
    sl_stopped(ctx);
}

void gen_send_drain(gen *g)
{
    sl_kafka_producer_on_space(g->producer, NULL, NULL);
    sl_timer_disarm(g->retry);
    switch (g->strategy) {
    case GEN_SYNC:
        /* The event in flight may still arrive; one backing off or waiting
         * for room has had its chances; the rest were never sent. */
        if (g->sync_state == SYNC_BACKOFF) {
            gen_msg *m = q_head(g);
            gen_count(g, m, GEN_FAILED);
            log_failure(g, m->id, "stopped while backing off", m->attempts);
            q_pop(g);
        }
        while (g->qlen > (g->sync_state == SYNC_INFLIGHT ? 1u : 0u)) {
            size_t last = (g->qhead + g->qlen - 1) % (size_t)g->backlog_max;
            gen_drop_msg(g, &g->q[last], GEN_DROP_STOPPING);
            free(g->q[last].value);
            g->q[last].value = NULL;
            g->qlen--;
        }
        break;
    case GEN_BATCH:
        batch_send_all(g); /* with stopping set: all of it, or dropped */
        break;
    case GEN_ASYNC:
        break;
    }
    sl_kafka_producer_flush(g->producer, g->flush_timeout, on_flushed, g);
}

void gen_send_free(gen *g)
{
    while (g->q != NULL && g->qlen > 0)
        q_pop(g);
    free(g->q);
    g->q = NULL;
}
