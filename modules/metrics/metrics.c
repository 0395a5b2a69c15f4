/*
 * metrics - serves what every module registered, for Prometheus, and the
 * liveness and readiness probes orchestrators ask for.
 *
 *   GET /metrics   Prometheus text format 0.0.4
 *   GET /healthz   200 while the loop answers at all
 *   GET /readyz    200 when every running instance is ready, else 503;
 *                  the body lists each instance and why it is not ready
 *   GET /          the status page: instances, readiness and rates over the
 *                  last minutes, redrawn in place from...
 *   GET /status.json  ...the readiness report and the sampled history
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "history.h"
#include <sluice/sluice.h>
#include "status_html.h"

typedef struct {
    sl_ctx *ctx;
    history hist;
    sl_series *ready;     /* sluice_ready */
    sl_series *not_ready; /* sluice_modules_not_ready */
} state;

/* Runs the readiness check into `list` (may be NULL) and mirrors it in the
 * gauges, so that alerts see what /readyz answers.  Returns 1 when ready. */
static int check_ready(state *st, cJSON *list)
{
    cJSON *own = list == NULL ? cJSON_CreateArray() : NULL;
    cJSON *report = list != NULL ? list : own;
    int ready, bad = 0;
    const cJSON *m;

    if (report == NULL)
        return 0;
    ready = sl_readiness(st->ctx, report);
    cJSON_ArrayForEach (m, report)
        bad += !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "ready"));
    sl_series_set(st->ready, ready);
    sl_series_set(st->not_ready, bad);
    cJSON_Delete(own);
    return ready;
}

/* The registry as text, readiness gauges refreshed first; NULL when out of
 * memory.  The caller frees it. */
static char *render(state *st, size_t *len)
{
    check_ready(st, NULL);
    return sl_metrics_text(st->ctx, len);
}

static void sample(void *arg)
{
    state *st = arg;
    size_t len;
    char *text = render(st, &len);

    if (text == NULL) {
        sl_log(st->ctx, SL_LOG_WARN, "out of memory sampling the metrics");
        return;
    }
    if (history_sample(&st->hist, text, len, sl_now(), sl_wall()) != 0)
        sl_log(st->ctx, SL_LOG_WARN, "status history: some families not sampled (limit %d)",
               HIST_MAX_FAMILIES);
    free(text);
}

static void serve_metrics(sl_req *req, void *arg)
{
    state *st = arg;
    size_t len;
    char *text = render(st, &len);

    if (text == NULL) {
        sl_reply_error(req, 500, "out of memory rendering metrics");
        return;
    }
    sl_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static void serve_healthz(sl_req *req, void *arg)
{
    static const char body[] = "{\"status\":\"ok\"}";
    (void)arg;
    sl_reply(req, 200, "application/json", body, sizeof(body) - 1);
}

static void serve_readyz(sl_req *req, void *arg)
{
    state *st = arg;
    cJSON *body = cJSON_CreateObject();
    cJSON *list = cJSON_CreateArray();
    int ready;

    if (body == NULL || list == NULL) {
        cJSON_Delete(body);
        cJSON_Delete(list);
        sl_reply_error(req, 500, "out of memory");
        return;
    }
    ready = check_ready(st, list);
    cJSON_AddBoolToObject(body, "ready", ready);
    cJSON_AddItemToObject(body, "modules", list);
    sl_reply_json(req, ready ? 200 : 503, body);
}

static void serve_page(sl_req *req, void *arg)
{
    (void)arg;
    sl_reply_header(req, "Cache-Control", "no-cache");
    sl_reply(req, 200, "text/html; charset=utf-8", sl_status_html, sizeof(sl_status_html) - 1);
}

static void serve_status(sl_req *req, void *arg)
{
    state *st = arg;
    cJSON *body = cJSON_CreateObject();
    cJSON *list = cJSON_CreateArray();

    if (body == NULL || list == NULL) {
        cJSON_Delete(body);
        cJSON_Delete(list);
        sl_reply_error(req, 500, "out of memory");
        return;
    }
    cJSON_AddBoolToObject(body, "ready", check_ready(st, list));
    cJSON_AddItemToObject(body, "modules", list);
    cJSON_AddNumberToObject(body, "interval", sl_opt_seconds(st->ctx, "sample_interval"));
    if (history_json(&st->hist, body) != 0) {
        cJSON_Delete(body);
        sl_reply_error(req, 500, "out of memory");
        return;
    }
    sl_reply_json(req, 200, body);
}

static void state_free(void *obj)
{
    state *st = obj;
    history_free(&st->hist);
    free(st);
}

static int metrics_start(sl_ctx *ctx)
{
    double every = sl_opt_seconds(ctx, "sample_interval");
    double keep = sl_opt_seconds(ctx, "history");
    const char *access = sl_opt_str(ctx, "scope");
    unsigned scope = strcmp(access, "open") == 0   ? SL_SCOPE_OPEN
                     : strcmp(access, "read") == 0 ? SL_SCOPE_READ
                                                   : SL_SCOPE_ADMIN;
    state *st = calloc(1, sizeof(*st));

    if (st == NULL)
        return sl_fail(ctx, "out of memory");
    st->ctx = ctx;
    if (history_init(&st->hist, (size_t)ceil(keep / every) + 1) != 0) {
        free(st);
        return sl_fail(ctx, "out of memory for %.0f s of history", keep);
    }
    if (sl_track(ctx, "status history", st, state_free, NULL) == NULL) {
        state_free(st);
        return sl_fail(ctx, "cannot track the status history");
    }
    st->ready =
            sl_series_of(sl_gauge(ctx, "sluice_ready",
                                  "1 when every instance is ready (what /readyz answers)", NULL));
    st->not_ready = sl_series_of(sl_gauge(ctx, "sluice_modules_not_ready",
                                          "Instances not ready (see /readyz for why)", NULL));
    if (st->ready == NULL || st->not_ready == NULL)
        return sl_fail(ctx, "cannot register the readiness gauges");
    /* Probes must work without credentials; the rest shows how the
     * daemon runs, so its scope is the operator's choice. */
    if (sl_route_scoped(ctx, SL_GET, "/metrics", scope, 0, serve_metrics, st) != 0 ||
        sl_route_scoped(ctx, SL_GET, "/healthz", SL_SCOPE_OPEN, 0, serve_healthz, st) != 0 ||
        sl_route_scoped(ctx, SL_GET, "/readyz", SL_SCOPE_OPEN, 0, serve_readyz, st) != 0 ||
        sl_route_scoped(ctx, SL_GET, "/", scope, 0, serve_page, st) != 0 ||
        sl_route_scoped(ctx, SL_GET, "/status.json", scope, 0, serve_status, st) != 0)
        return sl_fail(ctx, "cannot register routes");
    if (sl_timer_new(ctx, every, 1, sample, st) == NULL)
        return sl_fail(ctx, "cannot start the sampling timer");
    sample(st);
    return 0;
}

static void metrics_stop(sl_ctx *ctx)
{
    sl_stopped(ctx);
}

static const sl_option options[] = {
    { "sample_interval", SL_OPT_DURATION, "5s",
      "how often the status page's history samples the metrics", 0.05, 3600, NULL },
    { "history", SL_OPT_DURATION, "10m", "how far back the status page's charts go", 1, 86400,
      NULL },
    { "scope", SL_OPT_ENUM, "read",
      "token scope /metrics, the status page and /status.json require when [core] tokens_file is "
      "set (/healthz and /readyz are always open); open: none, e.g. on a listener of their own",
      0, 0, "open|read|admin" },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

SL_API const sl_module sluice_module = {
    .abi_version = SL_ABI_VERSION,
    .name = "metrics",
    .description =
            "Prometheus /metrics, /healthz and /readyz for every loaded module, and a status page",
    .options = options,
    .flags = 0,
    .start = metrics_start,
    .stop = metrics_stop,
};
