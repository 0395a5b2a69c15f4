/*
 * api.c - the control API under /generator/:
 *
 *   POST config/speed?eps=N           fixed rate (0 pauses) until the mode is set again
 *   POST config/mode?mode=M           regular|peak|night; ends a fixed rate
 *   POST generate/burst?count=N       N events now, on top of the rate;
 *                                     429 beyond burst_pending_max pending
 *   GET  status                       counts by class and outcome, rates,
 *                                     latency; proves that generated =
 *                                     delivered + failed + dropped + pending
 *
 * Invalid values answer 400 {"error": "..."} saying what is allowed.  A
 * named instance serves the same under /generator/NAME/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "gen.h"

static const char *const outcome_names[GEN_NOUTCOMES] = { "generated", "delivered", "failed",
                                                          "dropped" };

static void serve_speed(sl_req *req, void *arg)
{
    gen *g = arg;
    char why[256];
    double eps;
    cJSON *body;

    if (gen_parse_eps(sl_req_query(req, "eps"), g->max_eps, &eps, why, sizeof(why)) != 0)
        return sl_reply_error(req, 400, "%s", why);
    gen_set_eps(g, eps);
    body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "mode", gen_mode_name(g->mode));
    cJSON_AddNumberToObject(body, "target_eps", gen_target_eps(g));
    cJSON_AddBoolToObject(body, "fixed", g->fixed);
    sl_reply_json(req, 200, body);
}

static void serve_mode(sl_req *req, void *arg)
{
    gen *g = arg;
    char why[256];
    gen_mode mode;
    cJSON *body;

    if (gen_parse_mode(sl_req_query(req, "mode"), &mode, why, sizeof(why)) != 0)
        return sl_reply_error(req, 400, "%s", why);
    gen_set_mode(g, mode);
    body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "mode", gen_mode_name(g->mode));
    cJSON_AddNumberToObject(body, "target_eps", gen_target_eps(g));
    sl_reply_json(req, 200, body);
}

static void serve_burst(sl_req *req, void *arg)
{
    gen *g = arg;
    char why[256];
    long long count;
    cJSON *body;

    if (gen_parse_count(sl_req_query(req, "count"), g->burst_max, &count, why, sizeof(why)) != 0)
        return sl_reply_error(req, 400, "%s", why);
    if (count > gen_burst_room(g)) {
        sl_reply_header(req, "Retry-After", "1");
        return sl_reply_error(
                req, 429,
                "%lld burst events are still pending; room for %lld more (burst_pending_max %lld)",
                g->burst_left[0] + g->burst_left[1], gen_burst_room(g), g->burst_pending_max);
    }
    gen_add_burst(g, count, 0);
    body = cJSON_CreateObject();
    cJSON_AddNumberToObject(body, "burst", (double)count);
    cJSON_AddNumberToObject(body, "queued", (double)g->burst_left[0]);
    sl_reply_json(req, 200, body);
}

/* {"total", "view", "bounce", "duplicate", "malformed": {"total", kinds...}} */
static cJSON *by_class(const gen *g, gen_outcome o)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON *mal = cJSON_CreateObject();
    uint64_t all = 0, bad = 0;

    for (int c = 0; c < GEN_NCLASSES; c++) {
        all += g->counts[c][o];
        if (gen_class_malformed((gen_class)c))
            bad += g->counts[c][o];
    }
    cJSON_AddNumberToObject(obj, "total", (double)all);
    for (int c = 0; c < GEN_MISSING_FIELD; c++)
        cJSON_AddNumberToObject(obj, gen_class_name((gen_class)c), (double)g->counts[c][o]);
    cJSON_AddNumberToObject(mal, "total", (double)bad);
    for (int c = GEN_MISSING_FIELD; c < GEN_NCLASSES; c++)
        cJSON_AddNumberToObject(mal, gen_class_name((gen_class)c), (double)g->counts[c][o]);
    cJSON_AddItemToObject(obj, "malformed", mal);
    return obj;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The 99th percentile of the last GEN_LATENCIES acks, or 0 without any. */
static double p99(const gen *g)
{
    size_t n = g->lat_n < GEN_LATENCIES ? g->lat_n : GEN_LATENCIES;
    double *copy;
    double v;

    if (n == 0)
        return 0;
    copy = malloc(n * sizeof(*copy));
    if (copy == NULL)
        return -1;
    memcpy(copy, g->latencies, n * sizeof(*copy));
    qsort(copy, n, sizeof(*copy), cmp_double);
    v = copy[(size_t)((double)(n - 1) * 0.99)];
    free(copy);
    return v;
}

static void serve_status(sl_req *req, void *arg)
{
    gen *g = arg;
    cJSON *body = cJSON_CreateObject();
    cJSON *rate, *drops, *origins, *lat;
    static const char *const strategies[] = { "sync", "async", "batch" };
    uint64_t settled = 0, generated = 0;

    if (body == NULL)
        return sl_reply_error(req, 500, "out of memory");
    cJSON_AddStringToObject(body, "generator", g->name);
    cJSON_AddStringToObject(body, "topic", g->topic);
    cJSON_AddStringToObject(body, "strategy", strategies[g->strategy]);
    cJSON_AddStringToObject(body, "mode", gen_mode_name(g->mode));
    rate = cJSON_AddObjectToObject(body, "rate");
    cJSON_AddNumberToObject(rate, "target_eps", gen_target_eps(g));
    cJSON_AddBoolToObject(rate, "fixed", g->fixed);
    cJSON_AddNumberToObject(rate, "measured_eps", g->measured);
    cJSON_AddNumberToObject(rate, "missed", (double)g->missed_total);
    cJSON_AddNumberToObject(rate, "burst_pending", (double)(g->burst_left[0] + g->burst_left[1]));
    for (int o = 0; o < GEN_NOUTCOMES; o++)
        cJSON_AddItemToObject(body, outcome_names[o], by_class(g, (gen_outcome)o));
    for (int c = 0; c < GEN_NCLASSES; c++) {
        generated += g->counts[c][GEN_GENERATED];
        settled +=
                g->counts[c][GEN_DELIVERED] + g->counts[c][GEN_FAILED] + g->counts[c][GEN_DROPPED];
    }
    /* In flight or waiting in the generator: not settled yet. */
    cJSON_AddNumberToObject(body, "pending", (double)(generated - settled));
    cJSON_AddNumberToObject(body, "inflight", (double)g->inflight);
    cJSON_AddNumberToObject(body, "queued", (double)g->qlen);
    drops = cJSON_AddObjectToObject(body, "dropped_by_reason");
    for (int d = 0; d < GEN_NDROPS; d++)
        cJSON_AddNumberToObject(drops, gen_drop_name((gen_drop)d), (double)g->drops[d]);
    cJSON_AddNumberToObject(body, "retries", (double)g->retries);
    origins = cJSON_AddObjectToObject(body, "by_origin");
    for (int o = 0; o < GEN_NORIGINS; o++) {
        cJSON *one = cJSON_AddObjectToObject(origins, gen_origin_name((gen_origin)o));
        for (int k = 0; k < GEN_NOUTCOMES; k++)
            cJSON_AddNumberToObject(one, outcome_names[k], (double)g->by_origin[o][k]);
    }
    lat = cJSON_AddObjectToObject(body, "latency_s");
    cJSON_AddNumberToObject(lat, "last", g->lat_last);
    cJSON_AddNumberToObject(lat, "p99", p99(g));
    cJSON_AddNumberToObject(lat, "samples",
                            (double)(g->lat_n < GEN_LATENCIES ? g->lat_n : GEN_LATENCIES));
    sl_reply_json(req, 200, body);
}

static int route(gen *g, unsigned methods, const char *what, sl_route_fn fn)
{
    char path[256];
    const char *inst = sl_instance_name(g->ctx);

    if (inst[0] != '\0')
        snprintf(path, sizeof(path), "/generator/%s/%s", inst, what);
    else
        snprintf(path, sizeof(path), "/generator/%s", what);
    /* Reading the status is read; anything that changes the traffic is
     * operating the daemon. */
    return sl_route_scoped(g->ctx, methods, path,
                           methods == SL_GET ? SL_SCOPE_READ : SL_SCOPE_ADMIN, 0, fn, g);
}

int gen_api_start(gen *g)
{
    if (route(g, SL_POST, "config/speed", serve_speed) != 0 ||
        route(g, SL_POST, "config/mode", serve_mode) != 0 ||
        route(g, SL_POST, "generate/burst", serve_burst) != 0 ||
        route(g, SL_GET, "status", serve_status) != 0)
        return sl_fail(g->ctx, "cannot register routes");
    return 0;
}
