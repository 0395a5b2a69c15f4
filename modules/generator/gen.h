/*
 * gen.h - the generator instance, shared by the glue files:
 *
 *   generator.c  options, start, stop (the drain), the module descriptor
 *   traffic.c    what is generated when: modes, rates, bursts, the events
 *   send.c       the send strategies (sync, async, batch) and outcomes
 *   api.c        the HTTP control API and the status report
 *   report.c     the rate and totals logged every log_every seconds
 *
 * Every event generated is counted once under GEN_GENERATED and later once
 * under exactly one of delivered, failed or dropped; status and metrics
 * read the same counts.
 */
#ifndef GEN_GEN_H
#define GEN_GEN_H

#include <stdint.h>
#include <sluice/sluice.h>
#include <sluice/kafka.h>
#include "backoff.h"
#include "bucket.h"
#include "cdf.h"
#include "event.h"
#include "mix.h"
#include "partition.h"
#include "prng.h"
#include "validate.h"

typedef enum { GEN_SYNC, GEN_ASYNC, GEN_BATCH } gen_strategy;

/* What made an event: the mode's own rate, a fixed rate, or a burst. */
typedef enum {
    GEN_ORIGIN_REGULAR,
    GEN_ORIGIN_PEAK,
    GEN_ORIGIN_NIGHT,
    GEN_ORIGIN_FIXED,
    GEN_ORIGIN_BURST,      /* POST generate/burst */
    GEN_ORIGIN_PEAK_BURST, /* the peak mode's own bursts */
    GEN_NORIGINS
} gen_origin;

typedef enum { GEN_GENERATED, GEN_DELIVERED, GEN_FAILED, GEN_DROPPED, GEN_NOUTCOMES } gen_outcome;

/* Why an event was dropped (never handed to the producer, or handed back). */
typedef enum {
    GEN_DROP_QUEUE_FULL, /* async: the producer's local queue was full */
    GEN_DROP_INFLIGHT,   /* async: `inflight` events were unconfirmed */
    GEN_DROP_BACKLOG,    /* sync, batch: `backlog` events were waiting */
    GEN_DROP_STOPPING,   /* still waiting in the generator when it stopped */
    GEN_NDROPS
} gen_drop;

/* Failures are only counted by class; the reason goes to the log. */

/* An event on its way: buffers borrowed (async) or owned (queued). */
typedef struct {
    uint8_t klass;  /* gen_class */
    uint8_t type;   /* gen_class of the content: view or bounce (duplicates), else klass */
    uint8_t origin; /* gen_origin */
    uint8_t how;    /* gen_part_how */
    int32_t partition;
    int attempts;    /* sync: attempts made */
    double intended; /* monotonic seconds */
    size_t keylen;
    size_t len;
    char key[GEN_KEY_CAP];
    char id[GEN_ID_LEN + 1];
    char *value;
} gen_msg;

#define GEN_RING 64        /* earlier events a duplicate may repeat */
#define GEN_LATENCIES 4096 /* send latencies kept for the p99 */

typedef struct gen gen;

struct gen {
    sl_ctx *ctx;
    const char *topic;
    const char *name; /* the "generator" header: instance name, or "generator" */
    gen_strategy strategy;
    double t0; /* monotonic start, the origin of message tags */

    /* what to generate */
    gen_rng rng;
    gen_mix mix;
    gen_cdf pages;
    gen_cdf users;
    gen_partitioner part;
    size_t event_size;
    int trace_headers;  /* also send the origin and partitioning headers */
    double trace_share; /* of events that start a trace */

    /* when to generate */
    gen_bucket bucket;
    gen_mode mode;
    double mode_eps; /* the mode's current rate */
    int fixed;       /* a fixed rate (eps option or the API) overrides the mode's */
    double fixed_eps;
    double max_eps;
    double regular_every;
    double regular_next;
    double peak_every;
    double peak_next;
    long long peak_min, peak_max;
    long long burst_max;
    long long burst_pending_max; /* burst_left[0] + burst_left[1] at most */
    long long burst_left[2];     /* API bursts, peak bursts */
    double burst_at[2];
    sl_timer *kick;   /* the generation turn */
    sl_timer *second; /* modes, measured rate, gauges */

    /* sending */
    sl_kafka_producer *producer;
    long long inflight_max;
    long long inflight; /* handed to the producer, not yet reported */
    long long inflight_by[GEN_NCLASSES][GEN_NORIGINS];
    int paused; /* async: waiting for room before generating more */
    gen_backoff backoff;
    long long backlog_max;
    gen_msg *q; /* sync and batch: events waiting, a ring of backlog_max */
    size_t qhead, qlen;
    int sync_state;  /* sync: what the head of the queue waits for (send.c) */
    sl_timer *retry; /* sync: the backoff */
    long long batch_size;
    double batch_interval;
    sl_timer *batch_timer;
    int batch_waiting; /* batch: waiting for room to send the rest */
    double flush_timeout;

    /* earlier events, for duplicates */
    gen_msg ring[GEN_RING];
    char *ring_values; /* GEN_RING * GEN_VALUE_CAP */
    size_t ring_n, ring_next;
    char scratch[GEN_VALUE_CAP];

    /* counts */
    uint64_t counts[GEN_NCLASSES][GEN_NOUTCOMES];
    uint64_t by_origin[GEN_NORIGINS][GEN_NOUTCOMES];
    uint64_t drops[GEN_NDROPS];
    uint64_t retries;
    uint64_t missed_total; /* schedule slots skipped (gen_bucket.missed, whole) */
    uint64_t fail_logged;  /* failures logged in the current second */
    double lat_last;
    double latencies[GEN_LATENCIES];
    size_t lat_n;
    double measured;
    uint64_t measured_prev;
    double measured_at;
    sl_timer *report_timer; /* log_every: NULL when off */
    uint64_t report_prev;   /* generated at the last report */
    double report_at;

    /* metrics */
    sl_series *m_events[4]; /* view, bounce, duplicate, malformed */
    sl_series *m_malformed[GEN_NKINDS];
    sl_series *m_delivered;
    sl_series *m_failed;
    sl_series *m_dropped[GEN_NDROPS];
    sl_series *m_retries;
    sl_series *m_latency;
    sl_series *m_mode[GEN_NMODES];
    sl_series *m_target;
    sl_series *m_inflight;
    sl_series *m_missed;

    int stopping;
};

const char *gen_origin_name(gen_origin o);
const char *gen_drop_name(gen_drop d);

/* traffic.c */
int gen_traffic_start(gen *g);
double gen_target_eps(const gen *g);
void gen_set_mode(gen *g, gen_mode mode);
void gen_set_eps(gen *g, double eps);
/* Queues `count` burst events, cut to gen_burst_room(). */
void gen_add_burst(gen *g, long long count, int peak);
/* Burst events that may still be queued under burst_pending_max. */
long long gen_burst_room(const gen *g);
void gen_resume(gen *g); /* room again: generate what is due */

/* send.c */
int gen_send_start(gen *g, char *err, size_t errlen);
void gen_send(gen *g, gen_msg *m); /* takes the event: it ends in one outcome */
void gen_send_drain(gen *g);       /* stop: hand over or settle what is held, flush, stop */
void gen_count(gen *g, const gen_msg *m, gen_outcome outcome);
void gen_drop_msg(gen *g, const gen_msg *m, gen_drop why);
void gen_send_free(gen *g);

/* api.c */
int gen_api_start(gen *g);

/* report.c: starts the log_every timer when the option is set. */
int gen_report_start(gen *g);

#endif
