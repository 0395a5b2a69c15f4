/*
 * api.c - the aggregator's HTTP API under /aggregator/ (a named instance
 * under /aggregator/NAME/):
 *
 *   GET status                                  what was consumed, stored,
 *       rejected (by reason), dropped as duplicates, dead-lettered; lag,
 *       paused partitions, the last flush
 *   GET query/aggregates?hours=N[&page_id=P][&limit=L]   per-minute rows
 *   GET query/segments?hours=N[&slug=S][&limit=L]         segment changes per minute
 *   GET analytics?from=T&to=T[&event_type=E]    counts by type and unique
 *       users over page views and analytics events in [from, to)
 *   GET events?from=T&to=T[&event_type=E][&limit=L]  the events themselves
 *
 * Times are RFC 3339.  Every parameter is checked before any SQL is
 * built (names to a strict alphabet, numbers to bounds), so values are
 * pasted into the SQL only after they are known to be inert; a bad one
 * answers 400 {"error": "..."} naming what is allowed.
 *
 * A caller's query costs a bounded amount: its period is at most
 * query_max_span and its limit query_max_limit; ClickHouse runs it
 * read-only under query_timeout, query_max_rows and query_max_bytes
 * (sl_ch_query_limited); it goes out on a handle of its own, so the
 * ingestion's inserts never queue behind it, and at most max_queries are
 * under way (503 beyond).  ClickHouse's error text goes to the log; the
 * caller gets a short reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "agg.h"
#include "ops.h"
#include "schema.h"

/* --------------------------------------------------------- parameters */

static int get_int(sl_req *req, const char *name, long long def, long long min, long long max,
                   long long *out)
{
    const char *s = sl_req_query(req, name);
    char *end;
    long long v;

    if (s == NULL && def >= 0) {
        *out = def;
        return 0;
    }
    if (s == NULL || s[0] == '\0' || s[0] == '+' || s[0] == ' ') {
        sl_reply_error(req, 400, "%s is required: an integer from %lld to %lld", name, min, max);
        return -1;
    }
    v = strtoll(s, &end, 10);
    if (*end != '\0' || v < min || v > max) {
        sl_reply_error(req, 400, "%s must be an integer from %lld to %lld, got \"%.40s\"", name,
                       min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* An optional name: 1..128 of [A-Za-z0-9_.:-]; NULL when absent. */
static int get_name(sl_req *req, const char *name, const char **out)
{
    const char *s = sl_req_query(req, name);
    size_t n;

    *out = NULL;
    if (s == NULL)
        return 0;
    n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-");
    if (n == 0 || s[n] != '\0' || n > 128) {
        sl_reply_error(req, 400, "%s must be 1 to 128 characters of A-Z a-z 0-9 _ . : -", name);
        return -1;
    }
    *out = s;
    return 0;
}

int agg_api_time(sl_req *req, const char *name, int64_t *sec)
{
    const char *s = sl_req_query(req, name);
    int64_t ms;

    if (s == NULL || agg_parse_rfc3339(s, &ms) != 0) {
        sl_reply_error(req, 400, "%s is required: an RFC 3339 time such as 2026-11-30T14:00:00Z",
                       name);
        return -1;
    }
    *sec = ms / 1000;
    return 0;
}

/* The period [from, to), no longer than query_max_span. */
static int get_period(agg *a, sl_req *req, int64_t *from, int64_t *to)
{
    if (agg_api_time(req, "from", from) != 0 || agg_api_time(req, "to", to) != 0)
        return -1;
    if (*from >= *to) {
        sl_reply_error(req, 400, "from must be earlier than to");
        return -1;
    }
    if ((double)(*to - *from) > a->max_span) {
        sl_reply_error(req, 400, "the period may cover at most %.0f hours (query_max_span)",
                       a->max_span / 3600);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- queries */

/* A query in flight, listed so that one whose handle goes away with the
 * instance (no callback then) is still freed. */
typedef struct agg_query {
    struct agg_query *prev, *next;
    agg *a;
    sl_req *req;
    char key[16]; /* the answer's member holding the rows */
    cJSON *extra; /* members added to the answer (the period ...) */
} query;

static void query_free(query *q)
{
    agg *a = q->a;

    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        a->queries = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    a->nqueries--;
    cJSON_Delete(q->extra);
    free(q);
}

void agg_api_free(agg *a)
{
    while (a->queries != NULL)
        query_free(a->queries);
}

/* What the caller is told about a failed query: a short reason of its
 * own, never ClickHouse's text (that goes to the log). */
static void reply_failed(query *q, const sl_ch_result *res)
{
    switch (res->code) {
    case 159: /* TIMEOUT_EXCEEDED */
    case 160: /* TOO_SLOW */
        return sl_reply_error(q->req, 504,
                              "the query ran out of time (query_timeout): narrow the period");
    case 158: /* TOO_MANY_ROWS */
    case 307: /* TOO_MANY_BYTES */
    case 396: /* TOO_MANY_ROWS_OR_BYTES */
        return sl_reply_error(q->req, 400,
                              "the answer is over the size limit (query_max_rows, "
                              "query_max_bytes): narrow the period or lower limit");
    case 241: /* MEMORY_LIMIT_EXCEEDED */
    case 202: /* TOO_MANY_SIMULTANEOUS_QUERIES */
        return sl_reply_error(q->req, 503, "ClickHouse is out of resources for this query");
    default:
        break;
    }
    if (res->status == 0 && strncmp(res->error, "answer larger than", 18) == 0)
        return sl_reply_error(q->req, 400,
                              "the answer is over the size limit (query_max_bytes): narrow the "
                              "period or lower limit");
    sl_reply_error(q->req, 503, "ClickHouse query failed");
}

static void on_rows(sl_ch *ch, const sl_ch_result *res, void *arg)
{
    query *q = arg;
    const cJSON *data;
    cJSON *body;

    (void)ch;
    if (res->error != NULL) {
        sl_log(q->a->ctx, SL_LOG_WARN,
               "query for %s failed (code %d, %u attempt(s), %.3fs, request %s): %s",
               sl_req_path(q->req), res->code, res->attempts, res->elapsed, sl_req_id(q->req),
               res->error);
        reply_failed(q, res);
        return query_free(q);
    }
    data = cJSON_GetObjectItemCaseSensitive(res->json, "data");
    body = q->extra != NULL ? q->extra : cJSON_CreateObject();
    q->extra = NULL;
    cJSON_AddItemToObject(body, q->key,
                          data != NULL ? cJSON_Duplicate(data, 1) : cJSON_CreateArray());
    sl_reply_json(q->req, 200, body);
    query_free(q);
}

/* Sends the query on the query handle, or answers 503 when max_queries
 * are already under way: they wait for connections of their own, never
 * for ingestion's, but their number is bounded. */
static void run(agg *a, sl_req *req, jbuf *sql, const char *key, cJSON *extra)
{
    query *q;

    if (a->nqueries >= a->max_queries) {
        cJSON_Delete(extra);
        jb_free(sql);
        sl_reply_header(req, "Retry-After", "1");
        return sl_reply_error(req, 503, "too many queries under way (max_queries %d): try again",
                              a->max_queries);
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL || sql->oom) {
        free(q);
        cJSON_Delete(extra);
        jb_free(sql);
        return sl_reply_error(req, 500, "out of memory");
    }
    q->a = a;
    q->req = req;
    snprintf(q->key, sizeof(q->key), "%s", key);
    q->extra = extra;
    q->next = a->queries;
    if (a->queries != NULL)
        a->queries->prev = q;
    a->queries = q;
    a->nqueries++;
    if (sl_ch_query_limited(a->qch, sql->p, &a->qlim, on_rows, q) != 0) {
        query_free(q);
        sl_reply_error(req, 503, "ClickHouse handle unavailable");
    }
    jb_free(sql);
}

static void period_sql(jbuf *sql, const char *col, int64_t from, int64_t to)
{
    jb_printf(sql, " %s >= toDateTime(%lld) AND %s < toDateTime(%lld)", col, (long long)from, col,
              (long long)to);
}

/* The per-minute tables: which table, its optional name filter, its
 * columns and its order. */
typedef struct {
    const char *table, *filter, *columns, *order;
} minutes_query;

static const minutes_query page_minutes = {
    "page_views_per_minute", "page_id",
    "page_id, minute, views, bounces, unique_users, round(avg_duration_s, 3) AS avg_duration_s, "
    "p95_duration_s",
    "minute, page_id"
};
static const minutes_query segment_minutes = { "segment_changes_per_minute", "slug",
                                               "slug, minute, operation, changes, users",
                                               "minute, slug, operation" };

static void serve_minutes(agg *a, sl_req *req, const minutes_query *mq)
{
    long long hours, limit;
    const char *name;
    jbuf sql = { 0 };
    cJSON *extra;

    if (get_int(req, "hours", -1, 1, (long long)(a->max_span / 3600), &hours) != 0 ||
        get_int(req, "limit", a->max_limit < 10000 ? a->max_limit : 10000, 1, a->max_limit,
                &limit) != 0 ||
        get_name(req, mq->filter, &name) != 0)
        return;
    jb_printf(&sql, "SELECT %s FROM %s FINAL WHERE minute >= toStartOfMinute(now() - %lld)",
              mq->columns, mq->table, hours * 3600);
    if (name != NULL)
        jb_printf(&sql, " AND %s = '%s'", mq->filter, name);
    jb_printf(&sql, " ORDER BY %s LIMIT %lld", mq->order, limit);
    extra = cJSON_CreateObject();
    cJSON_AddNumberToObject(extra, "hours", (double)hours);
    if (name != NULL)
        cJSON_AddStringToObject(extra, mq->filter, name);
    run(a, req, &sql, "rows", extra);
}

static void serve_aggregates(sl_req *req, void *arg)
{
    serve_minutes(arg, req, &page_minutes);
}

static void serve_segments(sl_req *req, void *arg)
{
    serve_minutes(arg, req, &segment_minutes);
}

/* Page views and analytics events as one stream of (type, user, ts). */
static void union_sql(jbuf *sql, const char *cols_pv, const char *cols_an, int64_t from, int64_t to,
                      const char *type)
{
    jb_printf(sql, "(SELECT %s FROM page_views FINAL WHERE", cols_pv);
    period_sql(sql, "ts", from, to);
    if (type != NULL)
        jb_printf(sql, " AND event_type = '%s'", type);
    jb_printf(sql, " UNION ALL SELECT %s FROM analytics_events FINAL WHERE", cols_an);
    period_sql(sql, "ts", from, to);
    if (type != NULL)
        jb_printf(sql, " AND event_type = '%s'", type);
    jb_lit(sql, ")");
}

static cJSON *period_json(int64_t from, int64_t to)
{
    cJSON *o = cJSON_CreateObject();
    jbuf f = { 0 }, t = { 0 };

    jb_datetime(&f, from);
    jb_datetime(&t, to);
    cJSON_AddStringToObject(o, "from", f.oom ? "" : f.p);
    cJSON_AddStringToObject(o, "to", t.oom ? "" : t.p);
    jb_free(&f);
    jb_free(&t);
    return o;
}

static void serve_analytics(sl_req *req, void *arg)
{
    agg *a = arg;
    int64_t from, to;
    const char *type;
    jbuf sql = { 0 };
    cJSON *extra;

    if (get_period(a, req, &from, &to) != 0 || get_name(req, "event_type", &type) != 0)
        return;
    /* One row per type plus the all-types row (event_type ''), from WITH TOTALS-free SQL. */
    jb_lit(&sql, "SELECT event_type, count() AS events, uniqExact(user_id) AS unique_users FROM ");
    union_sql(&sql, "event_type, user_id", "event_type, user_id", from, to, type);
    jb_lit(&sql,
           " GROUP BY event_type ORDER BY event_type UNION ALL "
           "SELECT '*' AS event_type, count() AS events, uniqExact(user_id) AS unique_users FROM ");
    union_sql(&sql, "event_type, user_id", "event_type, user_id", from, to, type);
    extra = cJSON_CreateObject();
    cJSON_AddItemToObject(extra, "period", period_json(from, to));
    if (type != NULL)
        cJSON_AddStringToObject(extra, "event_type", type);
    run(a, req, &sql, "by_type", extra);
}

static void serve_events(sl_req *req, void *arg)
{
    agg *a = arg;
    int64_t from, to;
    long long limit;
    const char *type;
    jbuf sql = { 0 };
    cJSON *extra;

    if (get_period(a, req, &from, &to) != 0 || get_name(req, "event_type", &type) != 0 ||
        get_int(req, "limit", a->max_limit < 100 ? a->max_limit : 100, 1, a->max_limit, &limit) !=
                0)
        return;
    jb_lit(&sql, "SELECT id, event_type, user_id, ts, page_id, duration_s, properties FROM ");
    union_sql(&sql,
              "event_id AS id, event_type, user_id, ts, ts_ms, page_id, "
              "duration_s, '' AS properties",
              "id, event_type, user_id, ts, ts_ms, '' AS page_id, "
              "toFloat64(0) AS duration_s, properties",
              from, to, type);
    jb_printf(&sql, " ORDER BY ts, ts_ms, id LIMIT %lld", limit);
    extra = cJSON_CreateObject();
    cJSON_AddItemToObject(extra, "period", period_json(from, to));
    run(a, req, &sql, "events", extra);
}

/* -------------------------------------------------------------- status */

/* The connector's per-partition lag gauge of this instance, read back
 * from the registry: sluice_kafka_consumer_lag{module="M",topic="T",
 * partition="P"[,instance_name="I"]} V.  Matched whole: another module or
 * instance consuming the same topic has its own series.  -1 when absent. */
static double lag_of(const agg *a, const char *metrics, const agg_part *p)
{
    const char *inst = sl_instance_name(a->ctx);
    char want[512], tail[160];
    const char *at;
    size_t wlen, tlen;

    if (metrics == NULL)
        return -1;
    /* Every series line follows a newline: the text starts with # HELP. */
    snprintf(want, sizeof(want),
             "\nsluice_kafka_consumer_lag{module=\"%s\",topic=\"%s\",partition=\"%d\"",
             sl_module_name(a->ctx), p->topic, (int)p->partition);
    if (inst[0] != '\0')
        snprintf(tail, sizeof(tail), ",instance_name=\"%s\"} ", inst);
    else
        snprintf(tail, sizeof(tail), "} ");
    wlen = strlen(want);
    tlen = strlen(tail);
    for (at = metrics; (at = strstr(at, want)) != NULL; at += wlen)
        if (strncmp(at + wlen, tail, tlen) == 0)
            return strtod(at + wlen + tlen, NULL);
    return -1;
}

static cJSON *per_handler(const uint64_t *v, int with_none)
{
    cJSON *o = cJSON_CreateObject();
    uint64_t total = 0;

    for (int h = 0; h < AGG_NHANDLERS + with_none; h++)
        total += v[h];
    cJSON_AddNumberToObject(o, "total", (double)total);
    for (int h = 0; h < AGG_NHANDLERS; h++)
        cJSON_AddNumberToObject(o, agg_handler_name((agg_handler)h), (double)v[h]);
    if (with_none)
        cJSON_AddNumberToObject(o, "none", (double)v[AGG_NHANDLERS]);
    return o;
}

static void serve_status(sl_req *req, void *arg)
{
    agg *a = arg;
    cJSON *body = cJSON_CreateObject(), *inv, *by_reason, *by_handler, *parts, *sink, *last,
          *filled, *keep;
    uint64_t inv_total = 0;
    double lag_total = 0;
    char *metrics = sl_metrics_text(a->ctx, NULL);

    if (body == NULL) {
        free(metrics);
        return sl_reply_error(req, 500, "out of memory");
    }
    cJSON_AddStringToObject(body, "group", a->group);
    cJSON_AddItemToObject(body, "consumed", per_handler(a->n.consumed, 1));
    cJSON_AddItemToObject(body, "valid", per_handler(a->n.valid, 0));
    inv = cJSON_AddObjectToObject(body, "invalid");
    by_reason = cJSON_CreateObject();
    by_handler = cJSON_CreateObject();
    for (int r = 1; r < AGG_NREASONS; r++) {
        uint64_t n = 0;
        for (int h = 0; h <= AGG_NHANDLERS; h++)
            n += a->n.invalid[h][r];
        inv_total += n;
        cJSON_AddNumberToObject(by_reason, agg_reason_name((agg_reason)r), (double)n);
    }
    for (int h = 0; h <= AGG_NHANDLERS; h++) {
        uint64_t n = 0;
        for (int r = 1; r < AGG_NREASONS; r++)
            n += a->n.invalid[h][r];
        cJSON_AddNumberToObject(by_handler,
                                h < AGG_NHANDLERS ? agg_handler_name((agg_handler)h) : "none",
                                (double)n);
    }
    cJSON_AddNumberToObject(inv, "total", (double)inv_total);
    cJSON_AddItemToObject(inv, "by_reason", by_reason);
    cJSON_AddItemToObject(inv, "by_handler", by_handler);
    cJSON_AddItemToObject(body, "duplicates", per_handler(a->n.duplicates, 0));
    cJSON_AddNumberToObject(body, "dead_lettered", (double)a->n.dead_lettered);
    cJSON_AddNumberToObject(body, "dead_letter_failed", (double)a->n.dead_letter_failed);
    cJSON_AddNumberToObject(body, "forwarded", (double)a->n.forwarded);
    cJSON_AddNumberToObject(body, "retries", (double)a->n.retries);
    cJSON_AddNumberToObject(body, "redelivered_skipped", (double)a->n.redelivered);
    cJSON_AddNumberToObject(body, "own_output_skipped", (double)a->n.own_output_skipped);
    filled = cJSON_AddObjectToObject(body, "analytics_filled");
    cJSON_AddNumberToObject(filled, "ids_derived", (double)a->n.ids_derived);
    cJSON_AddNumberToObject(filled, "timestamps_consumed", (double)a->n.timestamps_consumed);
    cJSON_AddNumberToObject(body, "buffered", (double)agg_buffered(a));
    cJSON_AddNumberToObject(body, "paused_partitions", (double)agg_paused_count(a));
    parts = cJSON_CreateArray();
    for (const agg_part *p = a->parts; p != NULL; p = p->next) {
        cJSON *o;
        double lag;
        if (!p->assigned)
            continue;
        o = cJSON_CreateObject();
        lag = lag_of(a, metrics, p);
        if (lag > 0)
            lag_total += lag;
        cJSON_AddStringToObject(o, "topic", p->topic);
        cJSON_AddNumberToObject(o, "partition", p->partition);
        cJSON_AddNumberToObject(o, "committed", (double)p->committed);
        cJSON_AddNumberToObject(o, "lag", lag);
        cJSON_AddBoolToObject(o, "paused", p->paused);
        cJSON_AddNumberToObject(o, "held", (double)p->nheld);
        cJSON_AddItemToArray(parts, o);
    }
    free(metrics);
    cJSON_AddNumberToObject(body, "lag", lag_total);
    cJSON_AddItemToObject(body, "partitions", parts);
    sink = cJSON_AddObjectToObject(body, "sink");
    cJSON_AddBoolToObject(sink, "down", a->sink_down);
    cJSON_AddStringToObject(sink, "last_error", a->sink_down ? a->last_error : "");
    cJSON_AddNumberToObject(sink, "flushes", (double)a->n.flushes);
    cJSON_AddNumberToObject(sink, "flush_failures", (double)a->n.flush_failures);
    cJSON_AddNumberToObject(sink, "rows_written", (double)a->n.rows_written);
    cJSON_AddNumberToObject(sink, "commits", (double)a->n.commits);
    cJSON_AddNumberToObject(sink, "commit_failures", (double)a->n.commit_failures);
    keep = cJSON_AddObjectToObject(body, "retention");
    cJSON_AddNumberToObject(keep, "raw_days", (double)a->retention.days[AGG_KEEP_RAW]);
    cJSON_AddNumberToObject(keep, "aggregates_days",
                            (double)a->retention.days[AGG_KEEP_AGGREGATES]);
    cJSON_AddNumberToObject(keep, "errors_days", (double)a->retention.days[AGG_KEEP_ERRORS]);
    cJSON_AddNumberToObject(keep, "sweeps", (double)a->retention.sweeps);
    cJSON_AddNumberToObject(keep, "sweep_failures", (double)a->retention.failures);
    cJSON_AddNumberToObject(keep, "rows_deleted", (double)a->retention.rows_deleted);
    cJSON_AddNumberToObject(keep, "last_sweep", a->retention.last_sweep);
    last = cJSON_AddObjectToObject(body, "last_flush");
    cJSON_AddNumberToObject(last, "at", a->last_flush_at);
    cJSON_AddNumberToObject(last, "rows", (double)a->last_flush_rows);
    cJSON_AddNumberToObject(last, "latency_s", a->last_flush_latency);
    agg_ops_status(a, body);
    sl_reply_json(req, 200, body);
}

int agg_api_route(agg *a, unsigned methods, unsigned scope, const char *what, sl_route_fn fn)
{
    char path[256];
    const char *inst = sl_instance_name(a->ctx);

    if (inst[0] != '\0')
        snprintf(path, sizeof(path), "/aggregator/%s/%s", inst, what);
    else
        snprintf(path, sizeof(path), "/aggregator/%s", what);
    return sl_route_scoped(a->ctx, methods, path, scope, 0, fn, a);
}

static int route(agg *a, const char *what, sl_route_fn fn)
{
    return agg_api_route(a, SL_GET, SL_SCOPE_READ, what, fn);
}

int agg_api_start(agg *a)
{
    sl_ctx *ctx = a->ctx;

    a->max_span = sl_opt_seconds(ctx, "query_max_span");
    a->max_limit = sl_opt_int(ctx, "query_max_limit");
    a->max_queries = (int)sl_opt_int(ctx, "max_queries");
    a->qlim.max_execution_time = sl_opt_seconds(ctx, "query_timeout");
    a->qlim.max_result_rows = (unsigned long long)sl_opt_int(ctx, "query_max_rows");
    a->qlim.max_result_bytes = (unsigned long long)sl_opt_int(ctx, "query_max_bytes");
    a->qch = sl_ch_new(ctx);
    if (a->qch == NULL)
        return sl_fail(ctx, "cannot create the query API's ClickHouse handle (see the log)");
    if (route(a, "status", serve_status) != 0 ||
        route(a, "query/aggregates", serve_aggregates) != 0 ||
        route(a, "query/segments", serve_segments) != 0 ||
        route(a, "analytics", serve_analytics) != 0 || route(a, "events", serve_events) != 0)
        return sl_fail(a->ctx, "cannot register routes");
    return 0;
}
