/*
 * retention.h - optional retention of the aggregator's tables, in days:
 * retention_raw (page_views, analytics_events, segment_events),
 * retention_aggregates (page_views_per_minute, segment_changes_per_minute)
 * and retention_errors (processing_errors); 0 keeps every row.
 *
 * ClickHouse 18.16, the oldest server the aggregator runs against, has no
 * table TTL, so the aggregator enforces retention itself: at start, by
 * --init-schema and every retention_interval, each table with a retention
 * is asked whether it holds rows older than it (by minute, or received_at
 * for errors) and, when it does, gets ALTER TABLE ... DELETE WHERE for
 * them (a mutation: ClickHouse rewrites the parts in the background).
 * Rows are deleted at the granularity of the column's minute or second,
 * at most retention_interval after they expired.
 */
#ifndef AGG_RETENTION_H
#define AGG_RETENTION_H

#include <stdint.h>
#include <sluice/sluice.h>
#include <sluice/clickhouse.h>

enum { AGG_KEEP_RAW, AGG_KEEP_AGGREGATES, AGG_KEEP_ERRORS, AGG_NKEEP };

typedef struct agg_retention agg_retention;
/* A sweep ended: NULL, or what failed (the next sweep tries again). */
typedef void (*agg_retention_fn)(agg_retention *r, const char *err, void *arg);

struct agg_retention {
    sl_ctx *ctx;
    sl_ch *ch;
    long long days[AGG_NKEEP];
    sl_timer *timer; /* every retention_interval; NULL without retention */
    int running;
    size_t next;    /* the table being swept */
    int64_t cutoff; /* of that table, epoch seconds */
    agg_retention_fn done;
    void *done_arg;
    /* what /aggregator/status and the metrics show */
    uint64_t sweeps, failures, rows_deleted;
    double last_sweep;
    sl_metric *m_rows; /* NULL for --init-schema */
};

/* The options of check(): retention_aggregates may not be shorter than
 * retention_raw (a late event would recompute a deleted minute from the
 * raw rows still kept).  0, or -1 after sl_fail_opt(). */
int agg_retention_check(sl_ctx *ctx);
/* Reads the options (for --init-schema, which then calls
 * agg_retention_sweep()). */
void agg_retention_init(agg_retention *r, sl_ctx *ctx);
/* Reads the options, registers the metric and, when any retention is set,
 * sweeps now and every retention_interval with a ClickHouse handle of its
 * own.  0, or -1 after sl_fail(). */
int agg_retention_start(agg_retention *r, sl_ctx *ctx);
/* One sweep on `ch` (for --init-schema), `done` called once at its end. */
void agg_retention_sweep(agg_retention *r, sl_ch *ch, agg_retention_fn done, void *arg);
/* The oldest minute whose raw rows are kept at `now`; INT64_MIN without
 * a raw retention. */
int64_t agg_retention_raw_floor(const agg_retention *r, double now);

#endif
