/*
 * outbox - the transactional-outbox relay: services commit their business
 * change and its event in one transaction into an outbox table; this
 * module makes sure every committed event reaches Kafka, at least once,
 * in order per aggregate, and removes it from the table once the broker
 * acknowledged it.  Up to OB_BUCKETS relays share one table's work, each
 * owning some of its buckets (lease.c, claim.c).
 *
 * Exclusive: on a reload the old relay drains (stops claiming, flushes
 * the producer within flush_timeout, deletes what was acknowledged and
 * hands back the rest) before its successor starts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "outbox.h"

static const sl_option ob_options[] = {
    { "table", SL_OPT_STRING, "outbox",
      "the outbox table (created if missing, with TABLE_leases and TABLE_relays beside it)", 0, 0,
      NULL },
    { "topic", SL_OPT_STRING, "outbox.${aggregate_type}",
      "Kafka topic template: ${aggregate_type} and ${event_type} are replaced by the row's values",
      0, 0, NULL },
    { "column_id", SL_OPT_STRING, "id", "column of the event id (an ascending integer)", 0, 0,
      NULL },
    { "column_aggregate_type", SL_OPT_STRING, "aggregate_type",
      "column of the aggregate type (Debezium: aggregatetype)", 0, 0, NULL },
    { "column_aggregate_id", SL_OPT_STRING, "aggregate_id",
      "column of the aggregate id, the message key (Debezium: aggregateid)", 0, 0, NULL },
    { "column_event_type", SL_OPT_STRING, "event_type", "column of the event type (Debezium: type)",
      0, 0, NULL },
    { "column_payload", SL_OPT_STRING, "payload", "column of the payload, the message value", 0, 0,
      NULL },
    { "column_created_at", SL_OPT_STRING, "created_at",
      "column of the creation time (added if missing)", 0, 0, NULL },
    { "column_traceparent", SL_OPT_STRING, "traceparent",
      "column of the writer's trace context (W3C traceparent, added if missing), sent as the "
      "message's traceparent header; empty: none (a table without it)",
      0, 0, NULL },
    { "on_ack", SL_OPT_ENUM, "delete",
      "what happens to an acknowledged row: delete it, or mark it sent (sent_at)", 0, 0,
      "delete|mark" },
    { "batch_size", SL_OPT_INT, "1000",
      "rows read per statement, over every bucket this relay owns", 1, 100000, NULL },
    { "max_inflight", SL_OPT_INT, "8000",
      "rows read and held (queued or produced) and not yet acknowledged, at most; one row per "
      "aggregate is produced at a time",
      1, 10000000, NULL },
    { "ack_batch", SL_OPT_INT, "1000",
      "settle (delete, record failures) when this many rows are waiting", 1, 100000, NULL },
    { "ack_interval", SL_OPT_DURATION, "50ms", "or when the first waiting row is this old", 0.001,
      60, NULL },
    { "poll_interval", SL_OPT_DURATION, "2s",
      "look for work this often, even without a notification: parked rows are read again, and "
      "owned buckets from their first row (8 of them in turn; all while the NOTIFY connection is "
      "down)",
      0.01, 3600, NULL },
    { "lease", SL_OPT_DURATION, "60s",
      "a bucket whose lease is not renewed for this long (its relay died or stalls) is taken over "
      "by another relay; relays renew and rebalance every lease/3 (or poll_interval when shorter)",
      1, 86400, NULL },
    { "max_attempts", SL_OPT_INT, "10", "failed publications before a row is parked", 1, 1000000,
      NULL },
    { "retry_backoff", SL_OPT_DURATION, "1s", "delay after the first failure, doubled after each",
      0.001, 3600, NULL },
    { "retry_backoff_max", SL_OPT_DURATION, "60s", "the longest delay between attempts", 0.001,
      86400, NULL },
    { "delivery_timeout", SL_OPT_DURATION, "30s",
      "how long the producer tries one row (message.timeout.ms)", 0.01, 3600, NULL },
    { "flush_timeout", SL_OPT_DURATION, "5s",
      "on stop, how long to wait for outstanding acknowledgements", 0, 3600, NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

/* Tracked first, so released last: after the producer, the database
 * handle and the timers, so nothing calls back into it. */
static void free_state(void *obj)
{
    ob *o = obj;

    ob_relay_free(o);
    ob_sql_free(o);
    free(o);
}

static int metrics_start(ob *o)
{
    sl_ctx *ctx = o->ctx;
    /* Fine below 100 ms, where a healthy relay lives, so that p50/p99 can
     * be read off it. */
    static const double bounds[] = { 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015,
                                     0.02,  0.03,  0.05,  0.075, 0.1,    0.25, 0.5,
                                     1,     2.5,   5,     10,    30,     60,   300 };
    sl_metric *pending =
            sl_gauge(ctx, "sluice_outbox_pending",
                     "Rows in the outbox table waiting to be published (parked excluded)", NULL);
    sl_metric *parked =
            sl_gauge(ctx, "sluice_outbox_parked", "Rows parked after max_attempts failures", NULL);
    sl_metric *inflight = sl_gauge(ctx, "sluice_outbox_inflight",
                                   "Rows this relay claimed and has not settled", NULL);
    sl_metric *published =
            sl_counter(ctx, "sluice_outbox_published_total", "Rows the broker acknowledged", NULL);
    sl_metric *failed =
            sl_counter(ctx, "sluice_outbox_failed_total", "Failed publications of a row", NULL);
    sl_metric *retried = sl_counter(ctx, "sluice_outbox_retried_total",
                                    "Rows released with backoff for another attempt", NULL);
    sl_metric *takeovers = sl_counter(ctx, "sluice_outbox_takeovers_total",
                                      "Buckets taken from a relay whose lease ran out", NULL);
    sl_metric *buckets = sl_gauge(ctx, "sluice_outbox_buckets",
                                  "Buckets of the table this relay owns and reads", NULL);
    sl_metric *parked_total = sl_counter(ctx, "sluice_outbox_parked_total", "Rows parked", NULL);
    sl_metric *lag = sl_histogram(ctx, "sluice_outbox_lag_seconds",
                                  "From the row's created_at to the broker's ack", NULL, bounds,
                                  sizeof(bounds) / sizeof(bounds[0]));

    if (pending == NULL || parked == NULL || inflight == NULL || published == NULL ||
        failed == NULL || retried == NULL || takeovers == NULL || parked_total == NULL ||
        lag == NULL || buckets == NULL)
        return sl_fail(ctx, "cannot register metrics");
    o->m_pending = sl_series_of(pending);
    o->m_parked = sl_series_of(parked);
    o->m_inflight = sl_series_of(inflight);
    o->m_published = sl_series_of(published);
    o->m_failed = sl_series_of(failed);
    o->m_retried = sl_series_of(retried);
    o->m_takeovers = sl_series_of(takeovers);
    o->m_parked_total = sl_series_of(parked_total);
    o->m_lag = sl_series_of(lag);
    o->m_buckets = sl_series_of(buckets);
    return 0;
}

static void schema_applied(sl_pg *pg, int applied, const char *err, void *arg)
{
    ob *o = arg;

    (void)pg;
    if (err == NULL)
        sl_log(o->ctx, SL_LOG_INFO, "outbox table %s in place (%d migrations applied)", o->table,
               applied);
    sl_schema_done(o->ctx, err);
}

/* `sluiced --init-schema`: the migration start() applies, once. */
static int ob_init_schema(sl_ctx *ctx)
{
    ob *o = calloc(1, sizeof(*o));

    if (o == NULL)
        return sl_fail(ctx, "out of memory");
    o->ctx = ctx;
    if (sl_track(ctx, "outbox state", o, free_state, NULL) == NULL) {
        free(o);
        return sl_fail(ctx, "out of memory");
    }
    o->table = sl_opt_str(ctx, "table");
    if (ob_sql_build(o) != 0)
        return -1;
    o->pg = sl_pg_new(ctx);
    if (o->pg == NULL)
        return sl_fail(ctx, "no PostgreSQL handle: is [postgres] configured?");
    if (ob_relay_migrate(o, schema_applied) != 0)
        return sl_fail(ctx, "cannot queue the migration");
    return 0;
}

/* What start() would refuse in the options themselves (sluice.h): every
 * problem is reported, each at its key. */
static int ob_check(sl_ctx *ctx)
{
    int rc = ob_names_check(ctx);

    if (sl_opt_str(ctx, "topic")[0] == '\0')
        rc = sl_fail_opt(ctx, "topic", "must not be empty");
    return rc;
}

static int ob_start(sl_ctx *ctx)
{
    ob *o = calloc(1, sizeof(*o));
    char host[64] = "host", err[512];
    unsigned long long rnd = 0;
    FILE *f;

    if (o == NULL)
        return sl_fail(ctx, "out of memory");
    o->ctx = ctx;
    if (sl_track(ctx, "outbox state", o, free_state, NULL) == NULL) {
        free(o);
        return sl_fail(ctx, "out of memory");
    }
    sl_set_data(ctx, o);
    o->table = sl_opt_str(ctx, "table");
    o->topic = sl_opt_str(ctx, "topic");
    o->mark = strcmp(sl_opt_str(ctx, "on_ack"), "mark") == 0;
    o->batch_size = sl_opt_int(ctx, "batch_size");
    o->max_inflight = sl_opt_int(ctx, "max_inflight");
    o->ack_batch = sl_opt_int(ctx, "ack_batch");
    o->max_attempts = sl_opt_int(ctx, "max_attempts");
    o->ack_interval = sl_opt_seconds(ctx, "ack_interval");
    o->poll = sl_opt_seconds(ctx, "poll_interval");
    o->lease = sl_opt_seconds(ctx, "lease");
    o->backoff = sl_opt_seconds(ctx, "retry_backoff");
    o->backoff_max = sl_opt_seconds(ctx, "retry_backoff_max");
    o->flush_timeout = sl_opt_seconds(ctx, "flush_timeout");
    o->beat = o->lease / 3 < o->poll ? o->lease / 3 : o->poll;
    snprintf(o->lease_s, sizeof(o->lease_s), "%.3f", o->lease);
    snprintf(o->backoff_s, sizeof(o->backoff_s), "%.3f", o->backoff);
    snprintf(o->backoff_max_s, sizeof(o->backoff_max_s), "%.3f", o->backoff_max);
    snprintf(o->max_attempts_s, sizeof(o->max_attempts_s), "%lld", o->max_attempts);
    if (ob_sql_build(o) != 0)
        return -1;
    /* The lease owner: unique per start, so that a restarted relay never
     * mistakes its predecessor's leases for its own. */
    gethostname(host, sizeof(host) - 1);
    f = fopen("/dev/urandom", "rb");
    if (f == NULL || fread(&rnd, sizeof(rnd), 1, f) != 1)
        rnd = (unsigned long long)(sl_wall() * 1e6);
    if (f != NULL)
        fclose(f);
    snprintf(o->me, sizeof(o->me), "%s:%ld:%s:%08llx", host, (long)getpid(),
             sl_instance_name(ctx)[0] != '\0' ? sl_instance_name(ctx) : "outbox",
             rnd & 0xffffffffULL);
    if (metrics_start(o) != 0)
        return -1;
    if (ob_relay_start(o, err, sizeof(err)) != 0)
        return sl_fail(ctx, "%s", err);
    if (ob_api_start(o) != 0)
        return -1;
    sl_log(ctx, SL_LOG_INFO, "relaying %s to %s as %s", o->table, o->topic, o->me);
    return 0;
}

static void ob_stop(sl_ctx *ctx)
{
    ob *o = sl_data(ctx);

    if (o == NULL) {
        sl_stopped(ctx);
        return;
    }
    ob_relay_stop(o); /* calls sl_stopped() when done */
}

SL_API const sl_module sluice_module = {
    .abi_version = SL_ABI_VERSION,
    .name = "outbox",
    .description = "transactional-outbox relay from a PostgreSQL table to Kafka: at least once, "
                   "ordered per aggregate",
    .options = ob_options,
    .flags = SL_MODULE_EXCLUSIVE,
    .start = ob_start,
    .stop = ob_stop,
    .init_schema = ob_init_schema,
    .check = ob_check,
};
