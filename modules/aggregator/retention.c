/*
 * retention.c - expired rows deleted (retention.h).  A sweep walks the
 * tables one statement at a time: a count of the rows past the cutoff,
 * then the DELETE only where there are some, so an idle sweep costs
 * ClickHouse an index lookup per table and rewrites no part.  On a
 * cluster the count reads through the Distributed table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "retention.h"

#define CH_UNKNOWN_TABLE 60

static const struct {
    const char *table, *column;
    int keep;
} tables[] = {
    { "page_views", "minute", AGG_KEEP_RAW },
    { "analytics_events", "minute", AGG_KEEP_RAW },
    { "segment_events", "minute", AGG_KEEP_RAW },
    { "page_views_per_minute", "minute", AGG_KEEP_AGGREGATES },
    { "segment_changes_per_minute", "minute", AGG_KEEP_AGGREGATES },
    { "processing_errors", "received_at", AGG_KEEP_ERRORS },
};
#define NTABLES (sizeof(tables) / sizeof(tables[0]))

static const char *const keep_options[AGG_NKEEP] = { "retention_raw", "retention_aggregates",
                                                     "retention_errors" };

int agg_retention_check(sl_ctx *ctx)
{
    long long raw = sl_opt_int(ctx, "retention_raw");
    long long aggregates = sl_opt_int(ctx, "retention_aggregates");

    if (aggregates != 0 && (raw == 0 || aggregates < raw))
        return sl_fail_opt(ctx, "retention_aggregates",
                           "%lld days is shorter than retention_raw (%s): a late event would "
                           "recompute a deleted minute from the raw rows still kept; set it to at "
                           "least retention_raw, or 0",
                           aggregates, raw == 0 ? "0, every row kept" : "fewer days");
    return 0;
}

int64_t agg_retention_raw_floor(const agg_retention *r, double now)
{
    if (r->days[AGG_KEEP_RAW] == 0)
        return INT64_MIN;
    return (int64_t)now - r->days[AGG_KEEP_RAW] * 86400;
}

static void step(agg_retention *r);

static void finish(agg_retention *r, const char *err)
{
    r->running = 0;
    r->sweeps++;
    r->last_sweep = sl_wall();
    if (err != NULL) {
        r->failures++;
        sl_log(r->ctx, SL_LOG_WARN, "retention: %s; tried again in the next sweep", err);
    }
    if (r->done != NULL)
        r->done(r, err, r->done_arg);
}

static void on_deleted(sl_ch *ch, const sl_ch_result *res, void *arg)
{
    agg_retention *r = arg;
    char err[512];

    (void)ch;
    if (res->error != NULL) {
        snprintf(err, sizeof(err), "ALTER TABLE %s DELETE failed: %s", tables[r->next].table,
                 res->error);
        finish(r, err);
        return;
    }
    r->next++;
    step(r);
}

static void on_counted(sl_ch *ch, const sl_ch_result *res, void *arg)
{
    agg_retention *r = arg;
    const cJSON *row, *n;
    unsigned long long expired = 0;
    const char *cluster;
    char sql[512], err[512];

    (void)ch;
    if (res->error != NULL && res->code != CH_UNKNOWN_TABLE) {
        snprintf(err, sizeof(err), "counting expired rows of %s failed: %s", tables[r->next].table,
                 res->error);
        finish(r, err);
        return;
    }
    /* A table not created yet holds nothing to delete. */
    if (res->error == NULL) {
        row = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(res->json, "data"), 0);
        n = cJSON_GetObjectItemCaseSensitive(row, "n");
        /* UInt64 comes quoted in FORMAT JSON */
        if (cJSON_IsString(n))
            expired = strtoull(n->valuestring, NULL, 10);
        else if (cJSON_IsNumber(n))
            expired = (unsigned long long)n->valuedouble;
    }
    if (expired == 0) {
        r->next++;
        step(r);
        return;
    }
    sl_log(r->ctx, SL_LOG_INFO, "retention: deleting %llu rows of %s older than %lld days", expired,
           tables[r->next].table, r->days[tables[r->next].keep]);
    r->rows_deleted += expired;
    if (r->m_rows != NULL)
        sl_series_add(sl_series_of(r->m_rows, tables[r->next].table), (double)expired);
    cluster = sl_ch_cluster(r->ch);
    /* A Distributed table takes no mutation: on a cluster the rows are
     * deleted from every node's local table (on one replica of each
     * shard, which its replication passes on). */
    if (cluster[0] != '\0')
        snprintf(sql, sizeof(sql),
                 "ALTER TABLE `%s_local` ON CLUSTER `%s` DELETE WHERE %s < "
                 "toDateTime(%lld)",
                 tables[r->next].table, cluster, tables[r->next].column, (long long)r->cutoff);
    else
        snprintf(sql, sizeof(sql), "ALTER TABLE %s DELETE WHERE %s < toDateTime(%lld)",
                 tables[r->next].table, tables[r->next].column, (long long)r->cutoff);
    if (sl_ch_exec(r->ch, sql, on_deleted, r) != 0)
        finish(r, "cannot submit a statement (out of memory?)");
}

/* The next table with a retention, or the end of the sweep. */
static void step(agg_retention *r)
{
    char sql[256];

    while (r->next < NTABLES && r->days[tables[r->next].keep] == 0)
        r->next++;
    if (r->next == NTABLES) {
        finish(r, NULL);
        return;
    }
    r->cutoff = (int64_t)sl_wall() - r->days[tables[r->next].keep] * 86400;
    snprintf(sql, sizeof(sql), "SELECT count() AS n FROM %s WHERE %s < toDateTime(%lld)",
             tables[r->next].table, tables[r->next].column, (long long)r->cutoff);
    if (sl_ch_query(r->ch, sql, on_counted, r) != 0)
        finish(r, "cannot submit a query (out of memory?)");
}

void agg_retention_sweep(agg_retention *r, sl_ch *ch, agg_retention_fn done, void *arg)
{
    if (r->running)
        return;
    r->running = 1;
    r->ch = ch;
    r->next = 0;
    r->done = done;
    r->done_arg = arg;
    step(r);
}

static void tick(void *arg)
{
    agg_retention *r = arg;
    agg_retention_sweep(r, r->ch, NULL, NULL);
}

void agg_retention_init(agg_retention *r, sl_ctx *ctx)
{
    memset(r, 0, sizeof(*r));
    r->ctx = ctx;
    for (int k = 0; k < AGG_NKEEP; k++)
        r->days[k] = sl_opt_int(ctx, keep_options[k]);
}

int agg_retention_start(agg_retention *r, sl_ctx *ctx)
{
    int any = 0;

    agg_retention_init(r, ctx);
    r->m_rows =
            sl_counter(ctx, "sluice_aggregator_retention_deleted_rows_total",
                       "Rows found past their table's retention and deleted, by table", "table");
    if (r->m_rows == NULL)
        return sl_fail(ctx, "cannot register metrics");
    for (size_t i = 0; i < NTABLES; i++)
        sl_series_add(sl_series_of(r->m_rows, tables[i].table), 0);
    for (int k = 0; k < AGG_NKEEP; k++)
        any |= r->days[k] != 0;
    if (!any)
        return 0;
    r->ch = sl_ch_new(ctx);
    if (r->ch == NULL)
        return sl_fail(ctx, "cannot create the retention's ClickHouse handle (see the log)");
    r->timer = sl_timer_new(ctx, sl_opt_seconds(ctx, "retention_interval"), 1, tick, r);
    if (r->timer == NULL)
        return sl_fail(ctx, "out of memory");
    agg_retention_sweep(r, r->ch, NULL, NULL);
    return 0;
}
