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
#define AGG_ERRORS_TABLE "processing_errors"
extern const char *const agg_schema[];

/* INSERT INTO <aggregate> SELECT ... FROM <raw> FINAL for the given
 * minutes, with `version`, into `sql`; nothing for handlers without an
 * aggregate table (returns 0 then, 1 when it wrote a statement). */
int agg_recompute_sql(agg_handler h, const int64_t *minutes, size_t n, uint64_t version,
                      jbuf *sql);

/* The module's init_schema(): creates every table for --init-schema. */
int agg_init_schema(sl_ctx *ctx);

#endif
