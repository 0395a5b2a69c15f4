/*
 * schema.h - the ClickHouse tables of the aggregator and the statements
 * that recompute its aggregates.  Every table collapses replays:
 *
 *   page_views, analytics_events, segment_events   raw valid events,
 *       ReplacingMergeTree keyed by the event id (with the minute and
 *       page/slug first, so recomputing a minute reads only its rows)
 *   processing_errors   rejected messages, keyed by (topic, partition, offset)
 *   page_views_per_minute, segment_changes_per_minute   aggregates,
 *       ReplacingMergeTree(version) keyed by what they count per minute:
 *       each recompute writes a complete row with a newer version
 */
#ifndef AGG_SCHEMA_H
#define AGG_SCHEMA_H

#include "agg.h"

extern const char *const agg_raw_tables[AGG_NHANDLERS];
/* The columns a raw row holds, in the order handlers.c writes them. */
extern const char *const agg_raw_columns[AGG_NHANDLERS];
#define AGG_ERRORS_TABLE "processing_errors"
/* An error row's columns, in the order sink.c writes them. */
#define AGG_ERRORS_COLUMNS                                                                 \
    "kafka_topic, kafka_partition, kafka_offset, handler, reason, detail, raw, raw_size, " \
    "received_at"
/* The CREATE TABLE IF NOT EXISTS statements of every table: on one server
 * one each; on a cluster ([clickhouse] cluster) a ReplicatedReplacingMergeTree
 * table NAME_local on every node (ON CLUSTER) and a Distributed table NAME
 * over them, sharded by the table's key, which is what inserts and queries
 * name.  The statements do not depend on one another's order. */
size_t agg_schema_count(const sl_ch *ch);
/* Statement `i` (< agg_schema_count()) into `sql`. */
void agg_schema_sql(const sl_ch *ch, size_t i, jbuf *sql);
/* What tables made by an earlier version lack, NULL-terminated (ADD
 * COLUMN: "already exists", code 44, is done); none on a cluster. */
const char *const *agg_schema_upgrades(const sl_ch *ch);
#define AGG_CH_DUPLICATE_COLUMN 44

/* INSERT INTO <aggregate> SELECT ... FROM <raw> FINAL for the given
 * minutes, with `version`, into `sql`; nothing for handlers without an
 * aggregate table (returns 0 then, 1 when it wrote a statement). */
int agg_recompute_sql(agg_handler h, const int64_t *minutes, size_t n, uint64_t version, jbuf *sql);

/* The module's init_schema(): creates every table for --init-schema. */
int agg_init_schema(sl_ctx *ctx);

#endif
