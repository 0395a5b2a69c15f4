/*
 * agg.h - the aggregator instance, shared by its files:
 *
 *   aggregator.c  options, metrics, start, stop (the drain), the descriptor
 *   routes.c      topic regex -> handler chain (middleware flags)
 *   consume.c     the consumer: partitions, retries holding one partition,
 *                 de-duplication, dead letters, forwarding, backpressure
 *   handlers.c    page_views, analytics, segment_events: check and render rows
 *   sink.c        batches into ClickHouse, aggregates recomputed, offsets
 *                 committed after the sink accepted them; the schema
 *   api.c         GET /aggregator/status and the query API
 *
 * Exactly-once effect (see the README): every table is keyed so that a
 * replayed row collapses, and aggregates are recomputed from the
 * collapsed raw rows, so replaying any batch any number of times leaves
 * the same numbers.  Offsets are committed only after a batch landed.
 */
#ifndef AGG_AGG_H
#define AGG_AGG_H

#include <regex.h>
#include <stdint.h>
#include <sluice/sluice.h>
#include <sluice/clickhouse.h>
#include <sluice/kafka.h>
#include "dedup.h"
#include "evtypes.h"
#include "jbuf.h"
#include "retention.h"
#include "rowsort.h"
#include "validate.h"

typedef enum { AGG_H_PAGE_VIEWS, AGG_H_ANALYTICS, AGG_H_SEGMENTS, AGG_NHANDLERS } agg_handler;

#define AGG_MW_RETRY 0x1
#define AGG_MW_RECOVER 0x2
#define AGG_MW_DEADLETTER 0x4
#define AGG_MW_DEDUP 0x8
#define AGG_MW_FORWARD 0x10

typedef struct {
    char *name;
    char *pattern;
    regex_t re;
    int compiled;
    agg_handler handler;
    unsigned mw;
} agg_route;

/* A message as handlers see it: borrowed from librdkafka during its
 * callback, or an owned copy while its partition waits for a retry. */
typedef struct agg_msg {
    struct agg_msg *next;
    const char *topic;
    int32_t partition;
    int64_t offset;
    const char *key;
    size_t keylen;
    const char *value; /* NULL for a tombstone */
    size_t len;
    const char *event_id;   /* header, NUL-terminated copy, or NULL */
    const char *event_type; /* header, or NULL */
    char *own;              /* the storage of a copy */
} agg_msg;

#define AGG_PAUSE_SINK 0x1 /* ClickHouse down or batches backed up */
#define AGG_PAUSE_HOLD 0x2 /* a retry holds this partition and its queue is long */
#define AGG_PAUSE_STOP 0x4 /* draining */

typedef struct agg_part {
    struct agg_part *next;
    char *topic;
    int32_t partition;
    const agg_route *route;
    int own_output; /* no route: our own dead letters or forwards, skipped */
    int assigned;
    int64_t next_offset;       /* next offset expected; -1 unknown */
    int64_t pending;           /* to commit once the open batch lands; -1 none */
    int64_t committed;         /* last offset committed; -1 none */
    unsigned pause;            /* AGG_PAUSE_* reasons */
    int paused;                /* as last told to librdkafka */
    agg_msg *held, *held_tail; /* head: the message being retried */
    size_t nheld;
    int attempts;
    sl_timer *retry;
    struct agg *a;
    struct agg_part *index_next;
    uint32_t hash;
} agg_part;

typedef struct {
    agg_part *part;
    int64_t next;
} agg_commit;

typedef struct {
    jbuf rows[AGG_NHANDLERS];
    size_t nrows[AGG_NHANDLERS];
    jbuf errors;
    size_t nerrors;
    /* where each row ends, per handler then the errors: for rowsort.h;
     * `unsorted` when one could not be kept (the rows go as they are) */
    uint32_t *ends[AGG_NHANDLERS + 1];
    size_t capends[AGG_NHANDLERS + 1];
    int unsorted;
    int64_t *minutes[AGG_NHANDLERS]; /* touched minutes, epoch seconds */
    size_t nmin[AGG_NHANDLERS], capmin[AGG_NHANDLERS];
    agg_commit *commits;
    size_t ncommits, capcommits;
    size_t msgs;
    double opened;
    /* The positions of its traced messages (their consume spans), each
     * SL_TRACEPARENT_SIZE bytes, at most AGG_LINKS_MAX: what its flight's
     * span links to. */
    char *links;
    size_t nlinks, caplinks;
    sl_span *span; /* its flight's, from start to landing */
} agg_batch;

typedef struct {
    uint64_t consumed[AGG_NHANDLERS + 1]; /* the last: no route */
    uint64_t valid[AGG_NHANDLERS];
    uint64_t invalid[AGG_NHANDLERS + 1][AGG_NREASONS];
    uint64_t duplicates[AGG_NHANDLERS];
    uint64_t dead_lettered, dead_letter_failed, forwarded, forward_failed;
    uint64_t retries;
    uint64_t flushes, flush_failures, rows_written, commits, commit_failures;
    uint64_t redelivered;                      /* offsets below the expected one, skipped */
    uint64_t ids_derived, timestamps_consumed; /* analytics events stored with them */
    uint64_t own_output_skipped;               /* messages of our own dead-letter/forward topics */
} agg_counts;

typedef struct agg {
    sl_ctx *ctx;
    const char *group;
    agg_route *routes;
    size_t nroutes;
    agg_limits lim;
    size_t max_message_bytes;
    size_t error_raw_bytes; /* of a rejected message's value kept in processing_errors */

    sl_kafka_consumer *consumer;
    sl_kafka_producer *producer; /* dead letters and forwards; NULL if unused */
    agg_part *parts;
    agg_part *last_part;
    agg_part *part_index[1024]; /* hash of (topic, partition), chained by index_next */
    const char *dlq_template, *fwd_template;
    long long retries;
    double backoff, backoff_max;
    size_t hold_max, hold_max_bytes;
    size_t held_bytes; /* copies queued behind retries, every partition */
    agg_dedup dedup[AGG_NHANDLERS];
    jbuf scratch;

    sl_ch *ch;
    int schema_ok;
    size_t batch_size, max_buffered;
    size_t batch_bytes, max_buffered_bytes;
    double batch_interval;
    agg_batch b[2];
    agg_batch *cur, *flight;
    /* puts a flight's rows in their tables' order */
    agg_sorter sorter;
    agg_batch carry; /* minutes and offsets of flights whose recompute was deferred */
    int carried;     /* flights in `carry` */
    int stage;       /* of the flight (sink.c) */
    int outstanding; /* requests of the current stage */
    int stage_failed;
    char last_error[512];
    double sink_backoff, sink_backoff_base, sink_backoff_max;
    sl_timer *sink_retry;
    sl_timer *tick;
    int sink_down;
    double flight_started;
    double last_flush_at; /* wall clock */
    size_t last_flush_rows;
    double last_flush_latency;

    /* the query API: its own handle, so that ingestion never waits behind it */
    sl_ch *qch;
    sl_ch_limits qlim;
    double max_span;
    long long max_limit;
    int max_queries, nqueries;
    struct agg_query *queries;

    agg_retention retention;

    agg_counts n;
    int stopping, closing;

    /* operating over time (ops.h): each owned by the instance (sl_track) */
    struct agg_replay *replay;
    struct agg_redrive *redrive;
    struct agg_recompute *recompute;

    /* metrics */
    agg_evtypes evtypes;
    sl_series *s_pv_types[2]; /* view, bounce */
    sl_series *s_processing[AGG_NHANDLERS + 1];
    sl_series *s_filled_id, *s_filled_ts;
    sl_series *s_consumed[AGG_NHANDLERS + 1], *s_valid[AGG_NHANDLERS], *s_dups[AGG_NHANDLERS],
            *s_invalid[AGG_NHANDLERS + 1][AGG_NREASONS];
    sl_metric *m_consumed, *m_valid, *m_invalid, *m_dups, *m_dead, *m_fwd, *m_retries, *m_batch,
            *m_latency, *m_flushes, *m_paused, *m_paused_total, *m_buffered;
} agg;

/* routes.c: check() and start() parse route.* with the same code; the
 * subscriptions' regexes are compiled as librdkafka will. */
int agg_routes_check(sl_ctx *ctx);
int agg_topics_check(sl_ctx *ctx);
int agg_routes_start(agg *a);
const agg_route *agg_route_for(const agg *a, const char *topic);
/* 1 when a regex route matches `topic` but does not take it: the topic
 * is the route's own dead-letter or forward topic (routes.c). */
int agg_route_own_output(const agg *a, const char *topic);
void agg_routes_free(agg *a);
const char *agg_handler_name(agg_handler h);

/* consume.c */
int agg_consume_start(agg *a, char *err, size_t errlen);
void agg_set_pause(agg *a, agg_part *p, unsigned reason, int on);
void agg_pause_all(agg *a, unsigned reason, int on);
size_t agg_paused_count(const agg *a);
void agg_consume_free(agg *a);
/* Header `name` of a message as a NUL-terminated string in `buf`, or NULL
 * (absent, or longer than cap - 1). */
const char *agg_header(const sl_kafka_msg *km, const char *name, char *buf, size_t cap);
/* Replay (replay.c): forgets what the partition holds for a retry and
 * expects `offset` next, the consumer having been moved there. */
void agg_part_rewind(agg *a, agg_part *p, int64_t offset);

/* handlers.c: appends the row to `row` (nothing unless AGG_OK) and
 * returns AGG_OK with the event's minute, or a reason.  With `dedup`, the
 * event id's hash in it is prepared before the row is rendered (the
 * window's memory is fetched meanwhile) and returned for
 * agg_dedup_check_hash(). */
#define AGG_FILLED_ID 0x1 /* an analytics event's id was derived */
#define AGG_FILLED_TS 0x2 /* an analytics event took the time it was consumed */
typedef struct {
    agg_reason reason;
    char detail[256];
    agg_h128 id_hash;
    int64_t minute;
    sl_series *type; /* sluice_aggregator_events_total of the event's type */
    unsigned filled; /* AGG_FILLED_* */
} agg_result;
void agg_handle(agg *a, agg_handler h, const agg_dedup *dedup, const agg_msg *m, jbuf *row,
                agg_result *res);
/* kafka_topic, kafka_partition, kafka_offset of a row (RowBinary). */
void agg_row_source(jbuf *row, const agg_msg *m);

/* sink.c */
/* Links kept per batch: more than a trace viewer shows of one span; the
 * batch's message count says how many it carried. */
#define AGG_LINKS_MAX 1024
int agg_sink_start(agg *a);
void agg_batch_error(agg *a, const agg_msg *m, agg_handler h, int routed, agg_reason r,
                     const char *detail);
/* A row was appended to a->cur->rows[h]: count it and its minute. */
void agg_batch_row(agg *a, agg_handler h, int64_t minute);
void agg_batch_done(agg *a, agg_part *p, int64_t offset); /* a message settled */
void agg_sink_kick(agg *a);                               /* flush if due */
int agg_sink_idle(const agg *a);
void agg_sink_free(agg *a);
size_t agg_buffered(const agg *a);
size_t agg_buffered_bytes(const agg *a); /* rows and errors of the open batch and flight */

/* aggregator.c */
void agg_drain_check(agg *a); /* stopping: done once nothing is held */

/* api.c */
int agg_api_start(agg *a);
/* Registers /aggregator/WHAT (/aggregator/INSTANCE/WHAT for a named one). */
int agg_api_route(agg *a, unsigned methods, unsigned scope, const char *what, sl_route_fn fn);
/* Query parameter `name` as an RFC 3339 time, in seconds; else answers
 * 400 itself and returns -1. */
int agg_api_time(sl_req *req, const char *name, int64_t *sec);
void agg_api_free(agg *a); /* queries whose handle went away unanswered */

#endif
