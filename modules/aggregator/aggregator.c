/*
 * aggregator - Kafka consumer group -> validate, de-duplicate, aggregate
 * -> ClickHouse, with topic routing, middleware (retry, recover,
 * dead-letter, dedup, forward) and a query API under /aggregator/.
 *
 * The counts are exact whatever happens to the process, the broker or
 * the database because exactness lives in the tables, not in memory
 * (agg.h, schema.h, README): replaying any batch collapses into the same
 * rows, and offsets are committed only after ClickHouse accepted them.
 *
 * Stop is a drain: fetching stops, the open batch is written, offsets
 * committed, then the consumer leaves its group.  The module is
 * exclusive: a successor starts only after this member left.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agg.h"
#include "ops.h"
#include "schema.h"

static const sl_option agg_options[] = {
    { "topics", SL_OPT_LIST, "page_views",
      "subscriptions: topic names, or regular expressions starting with ^", 0, 0, NULL },
    { "group", SL_OPT_STRING, "sluice-aggregator", "Kafka consumer group", 0, 0, NULL },
    { "route.*", SL_OPT_STRING, NULL,
      "route.NAME = PATTERN -> middleware, ..., handler: topics matching PATTERN (a name, or a "
      "regex starting with ^) go to handler page_views, analytics or segment_events through "
      "middleware retry, recover, deadletter, dedup, forward; first match in file order wins; none "
      "set: page_views, ^analytics.* and segment_events to their handlers with recover, dedup",
      0, 0, NULL },
    { "batch_size", SL_OPT_INT, "10000", "write a batch when it holds this many messages", 1,
      10000000, NULL },
    { "batch_interval", SL_OPT_DURATION, "1s", "write a batch when its oldest message is this old",
      0.001, 3600, NULL },
    { "batch_bytes", SL_OPT_INT, "16777216",
      "write a batch when its rows (and rejected messages' prefixes) reach this many bytes", 65536,
      1073741824, NULL },
    { "max_buffered", SL_OPT_INT, "0",
      "messages accumulated while a batch is being written before consuming waits for it; 0: 2 x "
      "batch_size",
      0, 100000000, NULL },
    { "max_buffered_bytes", SL_OPT_INT, "0",
      "bytes of rows accumulated while a batch is being written before consuming waits for it; 0: "
      "2 x batch_bytes",
      0, 4294967296LL, NULL },
    { "prefetch_bytes", SL_OPT_INT, "33554432",
      "bytes of messages the Kafka client fetches ahead of processing (queued.max.messages.kbytes "
      "and fetch.max.bytes are derived from it)",
      1048576, 1073741824, NULL },
    { "retries", SL_OPT_INT, "3", "retry middleware: attempts after the first", 0, 100, NULL },
    { "retry_backoff", SL_OPT_DURATION, "200ms",
      "retry middleware: delay before the first retry, doubled after each", 0.001, 3600, NULL },
    { "retry_backoff_max", SL_OPT_DURATION, "30s", "retry middleware: the longest delay", 0.001,
      3600, NULL },
    { "sink_backoff", SL_OPT_DURATION, "500ms",
      "ClickHouse unavailable: delay before a batch is written again, doubled after each failure",
      0.001, 3600, NULL },
    { "sink_backoff_max", SL_OPT_DURATION, "10s", "ClickHouse unavailable: the longest delay",
      0.001, 3600, NULL },
    { "deadletter_topic", SL_OPT_STRING, "{topic}.dlq",
      "deadletter middleware: where failed messages go; {topic} is the source topic", 0, 0, NULL },
    { "forward_topic", SL_OPT_STRING, "{topic}.valid",
      "forward middleware: where valid events are copied; {topic} is the source topic", 0, 0,
      NULL },
    { "dedup_window", SL_OPT_INT, "100000",
      "dedup middleware: event ids remembered per handler (at most 40 bytes each, whatever their "
      "length)",
      0, 100000000, NULL },
    { "hold_max", SL_OPT_INT, "10000",
      "messages queued behind one being retried before its partition pauses", 1, 10000000, NULL },
    { "hold_max_bytes", SL_OPT_INT, "16777216",
      "bytes of messages queued behind retries, all partitions together, before a partition adding "
      "to them pauses",
      65536, 1073741824, NULL },
    { "max_future", SL_OPT_DURATION, "5m", "timestamps later than now plus this are rejected", 0,
      31536000, NULL },
    { "max_message_bytes", SL_OPT_INT, "1048576", "larger messages are rejected (too_large)", 1,
      1073741824, NULL },
    { "error_raw_bytes", SL_OPT_INT, "4096",
      "bytes of a rejected message kept in processing_errors.raw (its whole size is in raw_size)",
      0, 1048576, NULL },
    { "query_max_span", SL_OPT_DURATION, "744h",
      "query API: the longest period a query may cover (hours=, from..to); longer is answered 400",
      3600, 315360000, NULL },
    { "query_max_limit", SL_OPT_INT, "10000", "query API: the largest limit= accepted (400 beyond)",
      1, 1000000, NULL },
    { "query_timeout", SL_OPT_DURATION, "10s",
      "query API: ClickHouse's max_execution_time for a query (whole seconds)", 1, 3600, NULL },
    { "query_max_rows", SL_OPT_INT, "100000",
      "query API: ClickHouse's max_result_rows (result_overflow_mode=throw)", 1, 100000000, NULL },
    { "query_max_bytes", SL_OPT_INT, "16777216",
      "query API: ClickHouse's max_result_bytes, and the largest answer held", 4096, 268435456,
      NULL },
    { "max_queries", SL_OPT_INT, "8",
      "query API: queries in flight or waiting for a ClickHouse connection at once; more are "
      "answered 503",
      1, 1024, NULL },
    { "retention_raw", SL_OPT_INT, "0",
      "days raw events are kept (page_views, analytics_events, segment_events); 0: every row", 0,
      36500, NULL },
    { "retention_aggregates", SL_OPT_INT, "0",
      "days per-minute aggregates are kept; 0: every row, else at least retention_raw", 0, 36500,
      NULL },
    { "retention_errors", SL_OPT_INT, "0", "days processing_errors rows are kept; 0: every row", 0,
      36500, NULL },
    { "retention_interval", SL_OPT_DURATION, "1h",
      "how often rows past their retention are looked for and deleted (also at start)", 1, 86400,
      NULL },
    { "max_event_types", SL_OPT_INT, "100",
      "analytics event types that get their own event_type label in "
      "sluice_aggregator_events_total; later ones, and types not 1-64 of [A-Za-z0-9_.:-], count "
      "as other",
      0, 10000, NULL },
    { "group_instance_id", SL_OPT_STRING, "auto",
      "static group membership (Kafka's group.instance.id): a restarted instance gets its "
      "partitions back at once instead of after session.timeout.ms; auto: HOST, or "
      "HOST.INSTANCE for a named instance, except with an embedded broker (it does not implement "
      "static membership); empty: off",
      0, 0, NULL },
    { "recompute_max_span", SL_OPT_DURATION, "168h",
      "POST /aggregator/recompute: the longest period recomputed by one request", 60, 31622400,
      NULL },
    { "rdkafka.*", SL_OPT_STRING, NULL,
      "librdkafka property of the consumer, e.g. rdkafka.session.timeout.ms = 6000 "
      "(enable.auto.commit stays false)",
      0, 0, NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

/* The state is tracked like any resource; released after the handles,
 * timers and routes (newest first), so nothing calls back into it. */
static void free_state(void *obj)
{
    agg *a = obj;

    agg_consume_free(a);
    agg_sink_free(a);
    agg_api_free(a);
    for (int h = 0; h < AGG_NHANDLERS; h++)
        agg_dedup_free(&a->dedup[h]);
    jb_free(&a->scratch);
    agg_evtypes_free(&a->evtypes);
    agg_routes_free(a);
    free(a);
}

static int metrics_events_start(agg *a);

static int metrics_start(agg *a)
{
    sl_ctx *ctx = a->ctx;
    static const double sizes[] = { 1, 10, 100, 1000, 5000, 10000, 50000, 100000, 500000 };
    static const double secs[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 };

    a->m_consumed = sl_counter(ctx, "sluice_aggregator_consumed_total",
                               "Messages consumed, by handler (none: no route)", "handler");
    a->m_valid = sl_counter(ctx, "sluice_aggregator_valid_total", "Valid events stored, by handler",
                            "handler");
    a->m_invalid =
            sl_counter(ctx, "sluice_aggregator_invalid_total",
                       "Rejected messages, stored in processing_errors, by handler and reason",
                       "handler,reason");
    a->m_dups = sl_counter(ctx, "sluice_aggregator_duplicates_dropped_total",
                           "Events dropped by the dedup middleware's window", "handler");
    a->m_dead = sl_counter(ctx, "sluice_aggregator_dead_lettered_total",
                           "Messages sent to the dead-letter topic", "handler");
    a->m_fwd = sl_counter(ctx, "sluice_aggregator_forwarded_total",
                          "Valid events copied to the forward topic", NULL);
    a->m_retries = sl_counter(ctx, "sluice_aggregator_retries_total",
                              "Handler retries by the retry middleware", "handler");
    a->m_flushes = sl_counter(ctx, "sluice_aggregator_flushes_total",
                              "Batch writes to ClickHouse, by result (ok, failed)", "result");
    a->m_batch = sl_histogram(ctx, "sluice_aggregator_batch_size", "Messages per batch written",
                              NULL, sizes, sizeof(sizes) / sizeof(sizes[0]));
    a->m_latency = sl_histogram(ctx, "sluice_aggregator_flush_latency_seconds",
                                "From a batch closing to its offsets being committed", NULL, secs,
                                sizeof(secs) / sizeof(secs[0]));
    a->m_paused = sl_gauge(ctx, "sluice_aggregator_partition_paused",
                           "1 while a partition is paused (sink down, backlog, or a retry)",
                           "topic,partition");
    a->m_paused_total =
            sl_gauge(ctx, "sluice_aggregator_paused_partitions", "Partitions paused now", NULL);
    a->m_buffered = sl_gauge(ctx, "sluice_aggregator_buffered_messages",
                             "Messages settled but not yet written (open batch and flight)", NULL);
    if (a->m_consumed == NULL || a->m_valid == NULL || a->m_invalid == NULL || a->m_dups == NULL ||
        a->m_dead == NULL || a->m_fwd == NULL || a->m_retries == NULL || a->m_flushes == NULL ||
        a->m_batch == NULL || a->m_latency == NULL || a->m_paused == NULL ||
        a->m_paused_total == NULL || a->m_buffered == NULL)
        return sl_fail(ctx, "cannot register metrics");
    /* Series that exist before their first event, so that rates start at 0. */
    for (int h = 0; h < AGG_NHANDLERS; h++) {
        const char *hn = agg_handler_name((agg_handler)h);
        a->s_consumed[h] = sl_series_of(a->m_consumed, hn);
        a->s_valid[h] = sl_series_of(a->m_valid, hn);
        a->s_dups[h] = sl_series_of(a->m_dups, hn);
        sl_series_add(a->s_consumed[h], 0);
        sl_series_add(a->s_valid[h], 0);
        sl_series_add(a->s_dups[h], 0);
    }
    a->s_consumed[AGG_NHANDLERS] = sl_series_of(a->m_consumed, "none");
    sl_series_add(sl_series_of(a->m_flushes, "ok"), 0);
    sl_series_add(sl_series_of(a->m_flushes, "failed"), 0);
    sl_series_set(sl_series_of(a->m_paused_total), 0);
    return metrics_events_start(a);
}

/* What each message costs and which events it carried (README: counters
 * per event type, a processing-time histogram). */
static int metrics_events_start(agg *a)
{
    sl_ctx *ctx = a->ctx;
    static const double secs[] = { 1e-6,   2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4,
                                   2.5e-4, 5e-4,   1e-3, 1e-2, 0.1,    1 };
    sl_metric *processing, *filled;
    const char *pv = agg_handler_name(AGG_H_PAGE_VIEWS);

    processing = sl_histogram(ctx, "sluice_aggregator_processing_seconds",
                              "Time to process one message (check, row, dedup, dead letter, "
                              "forward), each attempt, by handler (none: no route)",
                              "handler", secs, sizeof(secs) / sizeof(secs[0]));
    filled = sl_counter(ctx, "sluice_aggregator_analytics_filled_total",
                        "Analytics events stored with a field the aggregator filled in: id "
                        "(derived from the content) or timestamp (the time consumed)",
                        "field");
    if (processing == NULL || filled == NULL ||
        agg_evtypes_start(&a->evtypes, ctx, (size_t)sl_opt_int(ctx, "max_event_types"),
                          agg_handler_name(AGG_H_ANALYTICS)) != 0)
        return sl_fail(ctx, "cannot register metrics");
    for (int h = 0; h <= AGG_NHANDLERS; h++)
        a->s_processing[h] =
                sl_series_of(processing,
                             h < AGG_NHANDLERS ? agg_handler_name((agg_handler)h) : "none");
    a->s_filled_id = sl_series_of(filled, "id");
    a->s_filled_ts = sl_series_of(filled, "timestamp");
    sl_series_add(a->s_filled_id, 0);
    sl_series_add(a->s_filled_ts, 0);
    a->s_pv_types[0] = agg_evtype_series(&a->evtypes, pv, 0, "view");
    a->s_pv_types[1] = agg_evtype_series(&a->evtypes, pv, 0, "bounce");
    return 0;
}

/* A topic template must expand to a legal Kafka topic name for any source
 * topic: outside {topic} only [A-Za-z0-9._-]; otherwise every dead letter
 * would be refused by the broker while the daemon runs. */
static int topic_template_check(sl_ctx *ctx, const char *key)
{
    const char *t = sl_opt_str(ctx, key);

    if (t[0] == '\0')
        return sl_fail_opt(ctx, key, "must not be empty");
    for (const char *p = t; *p != '\0'; p++) {
        if (strncmp(p, "{topic}", 7) == 0) {
            p += 6;
            continue;
        }
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return sl_fail_opt(ctx, key,
                               "\"%s\": '%c' cannot be in a topic name (letters, digits, '.', '_', "
                               "'-'; {topic} is the source topic)",
                               t, *p);
    }
    if (strlen(t) > 200)
        return sl_fail_opt(ctx, key, "longer than 200 characters");
    return 0;
}

/* What start() would refuse in the options themselves (sluice.h): every
 * problem is reported, each at its key. */
static int agg_check(sl_ctx *ctx)
{
    long long max_buffered = sl_opt_int(ctx, "max_buffered");
    long long max_buffered_bytes = sl_opt_int(ctx, "max_buffered_bytes");
    int rc = 0;

    if (sl_opt_str(ctx, "group")[0] == '\0')
        rc = sl_fail_opt(ctx, "group", "must not be empty");
    if (agg_topics_check(ctx) != 0)
        rc = -1;
    if (max_buffered != 0 && max_buffered < sl_opt_int(ctx, "batch_size"))
        rc = sl_fail_opt(ctx, "max_buffered", "must be 0 or at least batch_size (%lld)",
                         sl_opt_int(ctx, "batch_size"));
    if (max_buffered_bytes != 0 && max_buffered_bytes < sl_opt_int(ctx, "batch_bytes"))
        rc = sl_fail_opt(ctx, "max_buffered_bytes", "must be 0 or at least batch_bytes (%lld)",
                         sl_opt_int(ctx, "batch_bytes"));
    if (agg_routes_check(ctx) != 0)
        rc = -1;
    if (topic_template_check(ctx, "deadletter_topic") != 0)
        rc = -1;
    if (topic_template_check(ctx, "forward_topic") != 0)
        rc = -1;
    if (agg_retention_check(ctx) != 0)
        rc = -1;
    if (agg_instance_id_check(ctx) != 0)
        rc = -1;
    return rc;
}

/* The options passed check(): what is left to fail depends on the running
 * system (memory, the connectors). */
static int agg_start(sl_ctx *ctx)
{
    agg *a = calloc(1, sizeof(*a));
    char err[512];

    if (a == NULL)
        return sl_fail(ctx, "out of memory");
    a->ctx = ctx;
    if (sl_track(ctx, "aggregator state", a, free_state, NULL) == NULL) {
        free(a);
        return sl_fail(ctx, "out of memory");
    }
    sl_set_data(ctx, a);
    a->group = sl_opt_str(ctx, "group");
    a->batch_size = (size_t)sl_opt_int(ctx, "batch_size");
    a->batch_interval = sl_opt_seconds(ctx, "batch_interval");
    a->max_buffered = (size_t)sl_opt_int(ctx, "max_buffered");
    if (a->max_buffered == 0)
        a->max_buffered = 2 * a->batch_size;
    a->batch_bytes = (size_t)sl_opt_int(ctx, "batch_bytes");
    a->max_buffered_bytes = (size_t)sl_opt_int(ctx, "max_buffered_bytes");
    if (a->max_buffered_bytes == 0)
        a->max_buffered_bytes = 2 * a->batch_bytes;
    a->retries = sl_opt_int(ctx, "retries");
    a->backoff = sl_opt_seconds(ctx, "retry_backoff");
    a->backoff_max = sl_opt_seconds(ctx, "retry_backoff_max");
    a->sink_backoff_base = sl_opt_seconds(ctx, "sink_backoff");
    a->sink_backoff_max = sl_opt_seconds(ctx, "sink_backoff_max");
    a->dlq_template = sl_opt_str(ctx, "deadletter_topic");
    a->fwd_template = sl_opt_str(ctx, "forward_topic");
    a->hold_max = (size_t)sl_opt_int(ctx, "hold_max");
    a->hold_max_bytes = (size_t)sl_opt_int(ctx, "hold_max_bytes");
    a->lim.max_future = sl_opt_seconds(ctx, "max_future");
    a->max_message_bytes = (size_t)sl_opt_int(ctx, "max_message_bytes");
    a->error_raw_bytes = (size_t)sl_opt_int(ctx, "error_raw_bytes");
    for (int h = 0; h < AGG_NHANDLERS; h++)
        if (agg_dedup_init(&a->dedup[h], (size_t)sl_opt_int(ctx, "dedup_window")) != 0)
            return sl_fail(ctx, "out of memory for the dedup window");
    if (metrics_start(a) != 0 || agg_routes_start(a) != 0 || agg_sink_start(a) != 0)
        return -1;
    if (agg_consume_start(a, err, sizeof(err)) != 0)
        return sl_fail(ctx, "%s", err);
    if (agg_api_start(a) != 0 || agg_retention_start(&a->retention, ctx) != 0 ||
        agg_ops_start(a) != 0)
        return -1;
    sl_log(ctx, SL_LOG_INFO,
           "consuming %zu subscriptions as group %s, %zu routes, batches of %zu or %.3g s",
           sl_opt_list_len(ctx, "topics"), a->group, a->nroutes, a->batch_size, a->batch_interval);
    return 0;
}

static void on_closed(sl_kafka_consumer *c, int err, void *arg)
{
    agg *a = arg;

    (void)c;
    sl_log(a->ctx, SL_LOG_INFO, "left group %s%s; consumed %llu, written %llu rows in %llu batches",
           a->group, err != 0 ? " (timed out)" : "",
           (unsigned long long)(a->n.consumed[0] + a->n.consumed[1] + a->n.consumed[2] +
                                a->n.consumed[3]),
           (unsigned long long)a->n.rows_written, (unsigned long long)a->n.flushes);
    sl_stopped(a->ctx);
}

void agg_drain_check(agg *a)
{
    if (!a->stopping || a->closing || !agg_sink_idle(a))
        return;
    a->closing = 1;
    if (a->consumer != NULL)
        sl_kafka_consumer_close(a->consumer, 10, on_closed, a);
    else
        sl_stopped(a->ctx);
}

static void agg_stop(sl_ctx *ctx)
{
    agg *a = sl_data(ctx);

    if (a == NULL) {
        sl_stopped(ctx);
        return;
    }
    a->stopping = 1;
    agg_pause_all(a, AGG_PAUSE_STOP, 1);
    agg_sink_kick(a);
    agg_drain_check(a);
}

SL_API const sl_module sluice_module = {
    .abi_version = SL_ABI_VERSION,
    .name = "aggregator",
    .description = "Kafka consumer group -> validate, de-duplicate, aggregate -> ClickHouse, with "
                   "routing, dead letters and a query API",
    .options = agg_options,
    .flags = SL_MODULE_EXCLUSIVE,
    .start = agg_start,
    .stop = agg_stop,
    .init_schema = agg_init_schema,
    .check = agg_check,
};
