/*
 * segments - the user-segment HTTP API on PostgreSQL: users, segments
 * (slugs), memberships with optional TTL, percentage rollout, monthly
 * history as streamed CSV, an OpenAPI document and its Swagger UI page.
 * Expiry is scheduled in a Redis sorted set and carried out by a sweeper on
 * the loop (ttl.c); PostgreSQL stays the source of truth.
 *
 * Stop is a drain: requests in flight finish (their transactions commit or
 * roll back) before the instance says it stopped; the core cuts that short
 * after its drain timeout and then answers 503 for what is left.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "seg.h"

static const sl_option seg_options[] = {
    { "max_body", SL_OPT_INT, "65536", "largest request body accepted, in bytes (413 beyond)", 64,
      16777216, NULL },
    { "max_retries", SL_OPT_INT, "20",
      "attempts of a transaction that failed on a serialization failure or deadlock", 1, 1000,
      NULL },
    { "ttl_key", SL_OPT_STRING, "sluice:segments:ttl",
      "Redis sorted set holding the expiry schedule (member user:slug, score expiry time)", 0, 0,
      NULL },
    { "sweep_interval", SL_OPT_DURATION, "200ms",
      "how often the TTL sweeper looks for due memberships", 0.01, 60, NULL },
    { "sweep_batch", SL_OPT_INT, "500", "memberships the sweeper removes per round at most", 1,
      100000, NULL },
    { "cache_bytes", SL_OPT_INT, "67108864",
      "memory the read cache of GET /segment/user/{id} may hold, in bytes (entries, answers, "
      "hash table); 0 turns the cache off",
      0, 1099511627776.0, NULL },
    { "cache_entries", SL_OPT_INT, "1000000", "users the read cache may hold at most", 1, 100000000,
      NULL },
    { "cache_max_age", SL_OPT_DURATION, "5m",
      "longest a cached answer is served before it is read again: the staleness bound should a "
      "change's notification be lost while its connection stays up",
      0.1, 86400, NULL },
    { "report_page", SL_OPT_INT, "1000",
      "history rows read per round trip while streaming a report", 1, 100000, NULL },
    { "public_url", SL_OPT_STRING, "",
      "prefix of report links (e.g. https://api.example.com); empty: http:// and the request's "
      "Host",
      0, 0, NULL },
    { "report_secret", SL_OPT_STRING, "",
      "key signing report names; empty: the per-install secret kept in PostgreSQL", 0, 0, NULL },
    { "max_user_id", SL_OPT_INT, "4503599627370495",
      "POST /segment/user creates an unknown user only up to this id (400 beyond); ids up to "
      "9007199254740991 stay left for POST /user",
      1, 9007199254740990LL, NULL },
    { "history_retention", SL_OPT_DURATION, "0",
      "segment_history rows older than this are deleted (e.g. 8760h); 0 keeps them for ever", 0,
      3153600000.0, NULL },
    { "history_delete_batch", SL_OPT_INT, "10000",
      "history_retention: rows deleted per statement at most", 1, 1000000, NULL },
    { "history_sweep_interval", SL_OPT_DURATION, "1m",
      "history_retention: how often old rows are looked for", 1, 86400, NULL },
    { "docs_dir", SL_OPT_STRING, "",
      "directory of the swagger-ui-dist package served under /docs; empty: /docs answers 404", 0, 0,
      NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

static const char *const route_names[SEG_NROUTES] = {
    "user",         "segment_create", "segment_delete", "segment_list",
    "segment_user", "user_segments",  "history",        "report",
    "openapi",      "docs",           "segment_update",
};

/* ----------------------------------------------------------- replies */

void seg_count(seg *s, seg_route route, int status, double t0)
{
    char code[8];

    snprintf(code, sizeof(code), "%d", status);
    sl_series_add(sl_series_of(s->m_requests, route_names[route], code), 1);
    sl_series_observe(sl_series_of(s->m_latency, route_names[route]), sl_now() - t0);
}

seg_call *seg_call_new(seg *s, sl_req *req, seg_route route)
{
    seg_call *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        sl_reply_error(req, 503, "out of memory");
        seg_count(s, route, 503, sl_now());
        return NULL;
    }
    c->s = s;
    c->req = req;
    c->route = route;
    c->t0 = sl_now();
    c->next = s->calls;
    if (s->calls != NULL)
        s->calls->prev = c;
    s->calls = c;
    return c;
}

void seg_call_free(seg_call *c)
{
    seg *s = c->s;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->calls = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->watch != NULL)
        sl_timer_free(c->watch);
    cJSON_Delete(c->json);
    free(c->expiries);
    free(c);
    /* sl_stopped releases the state at once: the last thing done here */
    if (s->stopping && s->calls == NULL && !s->releasing)
        sl_stopped(s->ctx);
}

void seg_reply(seg_call *c, int status, cJSON *json)
{
    seg_count(c->s, c->route, status, c->t0);
    sl_reply_json(c->req, status, json);
    seg_call_free(c);
}

void seg_error(seg_call *c, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    cJSON *o = cJSON_CreateObject();

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cJSON_AddStringToObject(o, "error", msg);
    /* Like the core's errors: what a client quotes to find the log line. */
    cJSON_AddStringToObject(o, "request_id", sl_req_id(c->req));
    seg_reply(c, status, o);
}

cJSON *seg_body_json(seg_call *c)
{
    size_t len;
    const char *body;
    const char *end = NULL;

    body = sl_req_body(c->req, &len);
    if (len == 0) {
        seg_error(c, 400, "request body must be a JSON object, got an empty body");
        return NULL;
    }
    /* Parsed here rather than by sl_req_json so that the answer is
     * counted like every other; owned by the call. */
    c->json = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (c->json == NULL) {
        seg_error(c, 400, "malformed JSON body near byte %zu",
                  end != NULL && end >= body ? (size_t)(end - body) : 0);
        return NULL;
    }
    if (!cJSON_IsObject(c->json)) {
        seg_error(c, 400, "request body must be a JSON object");
        return NULL;
    }
    return c->json;
}

int seg_ready(seg_call *c, sl_route_fn again)
{
    seg *s = c->s;

    if (s->migrated)
        return 0;
    if (!s->migrate_failed && again != NULL && s->nwaiting < SEG_MAX_WAITING) {
        c->again = again;
        c->waiting = 1;
        s->nwaiting++;
        return -1;
    }
    /* the reason is in the log */
    seg_error(c, 503, "database unavailable: schema not ready yet");
    return -1;
}

/* The first schema check ended: every waiting request is handled afresh
 * (served, or answered 503 if the check failed). */
static void release_waiting(seg *s)
{
    size_t n = 0;
    struct {
        sl_req *req;
        sl_route_fn fn;
    } * w;

    if (s->nwaiting == 0)
        return;
    s->releasing = 1;
    w = malloc((size_t)s->nwaiting * sizeof(*w));
    for (seg_call *c = s->calls, *next; c != NULL; c = next) {
        next = c->next;
        if (!c->waiting)
            continue;
        if (w != NULL) {
            w[n].req = c->req;
            w[n++].fn = c->again;
            seg_call_free(c);
        } else {
            c->waiting = 0;
            seg_error(c, 503, "out of memory");
        }
    }
    s->nwaiting = 0;
    for (size_t i = 0; i < n; i++)
        w[i].fn(w[i].req, s);
    free(w);
    s->releasing = 0;
    if (s->stopping && s->calls == NULL)
        sl_stopped(s->ctx);
}

/* ------------------------------------------------------------- start */

static void migrate_later(seg *s);

static void on_secret(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg *s = arg;
    const char *v;

    (void)pg;
    v = err == NULL ? sl_pg_value(res, 0, 0) : NULL;
    if (v == NULL || strlen(v) >= sizeof(s->secret)) {
        sl_log(s->ctx, SL_LOG_WARN, "reading the install secret failed, retrying: %s",
               err != NULL ? err : "no row");
        migrate_later(s);
        return;
    }
    snprintf(s->secret, sizeof(s->secret), "%s", v);
    s->migrated = 1;
    s->migrate_failed = 0;
    sl_set_ready(s->ctx, 1, NULL);
    sl_log(s->ctx, SL_LOG_INFO, "schema ready");
    release_waiting(s);
    seg_sweep_tick(s);
}

static void on_migrated(sl_pg *pg, int applied, const char *err, void *arg)
{
    seg *s = arg;

    if (err != NULL) {
        sl_log(s->ctx, SL_LOG_WARN, "migrations failed, retrying: %s", err);
        migrate_later(s);
        return;
    }
    if (applied > 0)
        sl_log(s->ctx, SL_LOG_INFO, "applied %d migration(s)", applied);
    if (sl_opt_str(s->ctx, "report_secret")[0] != '\0') {
        snprintf(s->secret, sizeof(s->secret), "%s", sl_opt_str(s->ctx, "report_secret"));
        s->migrated = 1;
        s->migrate_failed = 0;
        sl_set_ready(s->ctx, 1, NULL);
        release_waiting(s);
        return;
    }
    if (sl_pg_query(pg, "SELECT secret FROM segments_install WHERE id = 1", 0, NULL, on_secret,
                    s) != 0)
        migrate_later(s);
}

static void migrate_now(void *arg)
{
    seg *s = arg;

    if (sl_pg_migrate(s->pg, "segments", seg_migrations, seg_nmigrations, on_migrated, s) != 0)
        migrate_later(s);
}

/* PostgreSQL may be down at start: the schema is retried every second and
 * the API answers 503 until it is in place. */
static void migrate_later(seg *s)
{
    s->migrate_failed = 1;
    release_waiting(s);
    sl_timer_arm(s->migrate_timer, 1.0);
}

static void free_state(void *obj)
{
    seg *s = obj;

    while (s->calls != NULL) {
        seg_call *c = s->calls;
        s->calls = c->next;
        cJSON_Delete(c->json);
        free(c->expiries);
        free(c);
    }
    free(s);
}

static int metrics_start(seg *s)
{
    static const double bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,    0.25,  0.5,    1,     2.5,  5,     10 };
    sl_ctx *ctx = s->ctx;
    sl_metric *active, *lag, *removals, *rebuilds, *assign, *retries, *scheduled;

    s->m_requests = sl_counter(ctx, "sluice_segments_requests_total",
                               "HTTP requests answered, by route and status code", "route,code");
    s->m_latency = sl_histogram(ctx, "sluice_segments_request_duration_seconds",
                                "Time from a request's arrival to its answer, by route", "route",
                                bounds, sizeof(bounds) / sizeof(bounds[0]));
    active = sl_gauge(ctx, "sluice_segments_active_memberships",
                      "Memberships not expired (refreshed every few seconds)", NULL);
    lag = sl_gauge(ctx, "sluice_segments_ttl_sweeper_lag_seconds",
                   "How late the last swept membership was removed after its expiry", NULL);
    removals = sl_counter(ctx, "sluice_segments_ttl_removals_total",
                          "Memberships removed by the TTL sweeper", NULL);
    rebuilds = sl_counter(ctx, "sluice_segments_ttl_rebuilds_total",
                          "Times the Redis schedule was rebuilt from PostgreSQL", NULL);
    scheduled = sl_gauge(ctx, "sluice_segments_ttl_scheduled",
                         "Memberships waiting in the Redis schedule", NULL);
    assign = sl_counter(
            ctx, "sluice_segments_percent_assignments_total",
            "Memberships given by percentage rollout: at segment creation, by a change of its "
            "percent, or to new users",
            "when");
    retries = sl_counter(ctx, "sluice_segments_tx_retries_total",
                         "Transactions retried after a serialization failure or deadlock", NULL);
    if (s->m_requests == NULL || s->m_latency == NULL || active == NULL || lag == NULL ||
        removals == NULL || rebuilds == NULL || assign == NULL || retries == NULL ||
        scheduled == NULL)
        return sl_fail(ctx, "cannot register metrics");
    s->s_active = sl_series_of(active);
    s->s_lag = sl_series_of(lag);
    s->s_removals = sl_series_of(removals);
    s->s_rebuilds = sl_series_of(rebuilds);
    s->s_scheduled = sl_series_of(scheduled);
    s->s_assign_create = sl_series_of(assign, "create");
    s->s_assign_new = sl_series_of(assign, "new_user");
    s->s_assign_update = sl_series_of(assign, "update");
    s->s_retries = sl_series_of(retries);
    return 0;
}

/* What start() would refuse in the options themselves (sluice.h). */
static int seg_check(sl_ctx *ctx)
{
    size_t len = strlen(sl_opt_str(ctx, "ttl_key"));
    long long cache = sl_opt_int(ctx, "cache_bytes");
    int rc = 0;

    if (len == 0 || len > 200)
        rc = sl_fail_opt(ctx, "ttl_key", "must be 1 to 200 characters");
    /* below that the hash table alone would fill it */
    if (cache > 0 && cache < 65536)
        rc = sl_fail_opt(ctx, "cache_bytes", "must be 0 (no cache) or at least 65536");
    return rc;
}

static int seg_start(sl_ctx *ctx)
{
    seg *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return sl_fail(ctx, "out of memory");
    s->ctx = ctx;
    if (sl_track(ctx, "segments state", s, free_state, NULL) == NULL) {
        free(s);
        return sl_fail(ctx, "out of memory");
    }
    sl_set_data(ctx, s);
    s->max_body = (size_t)sl_opt_int(ctx, "max_body");
    s->max_retries = (int)sl_opt_int(ctx, "max_retries");
    s->ttl_key = sl_opt_str(ctx, "ttl_key");
    snprintf(s->marker_key, sizeof(s->marker_key), "%s:built", s->ttl_key);
    s->public_url = sl_opt_str(ctx, "public_url");
    s->docs_dir = sl_opt_str(ctx, "docs_dir");
    s->sweep_interval = sl_opt_seconds(ctx, "sweep_interval");
    s->sweep_batch = (int)sl_opt_int(ctx, "sweep_batch");
    s->report_page = (int)sl_opt_int(ctx, "report_page");
    s->max_user_id = sl_opt_int(ctx, "max_user_id");
    if (metrics_start(s) != 0)
        return -1;
    s->pg = sl_pg_new(ctx);
    if (s->pg == NULL)
        return sl_fail(ctx, "cannot create the PostgreSQL handle ([postgres] dsn)");
    s->redis = sl_redis_new(ctx);
    if (s->redis == NULL)
        return sl_fail(ctx, "cannot create the Redis handle ([redis] url)");
    s->migrate_timer = sl_timer_new(ctx, 3600, 0, migrate_now, s);
    if (s->migrate_timer == NULL)
        return sl_fail(ctx, "out of memory");
    sl_timer_disarm(s->migrate_timer);
    if (seg_lookup_start(s) != 0)
        return -1;
    if (seg_rollout_prepare(s) != 0)
        return -1;
    if (seg_api_routes(s) != 0 || seg_members_routes(s) != 0 || seg_rollout_routes(s) != 0 ||
        seg_report_routes(s) != 0 || seg_openapi_routes(s) != 0 || seg_ttl_start(s) != 0 ||
        seg_retention_start(s) != 0)
        return sl_fail(ctx, "cannot register routes or timers");
    sl_set_ready(ctx, 0, "applying the schema");
    migrate_now(s);
    return 0;
}

static void seg_stop(sl_ctx *ctx)
{
    seg *s = sl_data(ctx);

    if (s != NULL)
        s->stopping = 1;
    if (s == NULL || s->calls == NULL)
        sl_stopped(ctx);
}

SL_API const sl_module sluice_module = {
    .abi_version = SL_ABI_VERSION,
    .name = "segments",
    .description = "user segments over HTTP: PostgreSQL storage, TTLs scheduled in Redis, "
                   "percentage rollout, CSV history, OpenAPI",
    .options = seg_options,
    .flags = 0,
    .start = seg_start,
    .stop = seg_stop,
    .init_schema = seg_init_schema,
    .check = seg_check,
};
