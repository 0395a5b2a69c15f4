/*
 * metrics - serves what every module registered, for Prometheus, and the
 * liveness and readiness probes orchestrators ask for.
 *
 *   GET /metrics   Prometheus text format 0.0.4
 *   GET /healthz   200 while the loop answers at all
 *   GET /readyz    200 when every running instance is ready, else 503;
 *                  the body lists each instance and why it is not ready
 */
#include <stdlib.h>
#include <cjson/cJSON.h>
#include "sluice.h"

static void serve_metrics(sl_req *req, void *arg)
{
    sl_ctx *ctx = arg;
    size_t len;
    char *text = sl_metrics_text(ctx, &len);

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
    sl_ctx *ctx = arg;
    cJSON *body = cJSON_CreateObject();
    cJSON *list = cJSON_CreateArray();
    int ready;

    if (body == NULL || list == NULL) {
        cJSON_Delete(body);
        cJSON_Delete(list);
        sl_reply_error(req, 500, "out of memory");
        return;
    }
    ready = sl_readiness(ctx, list);
    cJSON_AddBoolToObject(body, "ready", ready);
    cJSON_AddItemToObject(body, "modules", list);
    sl_reply_json(req, ready ? 200 : 503, body);
}

static int metrics_start(sl_ctx *ctx)
{
    if (sl_route(ctx, SL_GET, "/metrics", serve_metrics, ctx) != 0 ||
        sl_route(ctx, SL_GET, "/healthz", serve_healthz, ctx) != 0 ||
        sl_route(ctx, SL_GET, "/readyz", serve_readyz, ctx) != 0)
        return sl_fail(ctx, "cannot register routes");
    return 0;
}

static void metrics_stop(sl_ctx *ctx)
{
    sl_stopped(ctx);
}

SL_API const sl_module sluice_module = {
    .abi_version = SL_ABI_VERSION,
    .name = "metrics",
    .description = "Prometheus /metrics, /healthz and /readyz for every loaded module",
    .options = NULL,
    .flags = 0,
    .start = metrics_start,
    .stop = metrics_stop,
};
