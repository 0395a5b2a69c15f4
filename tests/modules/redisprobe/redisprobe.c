/*
 * redisprobe - drives the Redis connector from HTTP, for integration tests.
 *
 *   POST /redis/set?key=K   body: the value, stored byte for byte
 *   GET  /redis/get?key=K   {"value": "..."} or {"value": null}
 *   POST /redis/cmd         body {"args": ["INCRBY", "n", "5"]}: any command,
 *                           answered as {"reply": <reply as JSON>}
 *   GET  /redis/status      {"connected": true|false, "sent": N, "instance": ID}:
 *                           N commands handed to the connector so far, ID
 *                           distinct for each start (a test tells a
 *                           replaced instance from the old one by it)
 *
 * A Redis error reply answers 400, no answer at all (down, timeout) 503,
 * each as {"error": "..."} with the connector's message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>
#include <sluice/sluice.h>
#include <sluice/redis.h>

typedef struct {
    sl_ctx *ctx;
    sl_redis *redis;
    double sent;
    char instance[32];
} probe;

/* A reply as JSON: strings and statuses as strings, integers as numbers,
 * nil as null, arrays as arrays, errors as {"error": "..."}. */
static cJSON *reply_json(const sl_redis_reply *r)
{
    size_t len, n;
    const char *s;
    cJSON *arr, *obj;

    switch (sl_redis_reply_type(r)) {
    case SL_REDIS_STRING:
    case SL_REDIS_STATUS:
        s = sl_redis_reply_str(r, &len);
        /* Values in tests are text; cJSON strings stop at a NUL byte. */
        return cJSON_CreateString(s);
    case SL_REDIS_INTEGER:
        return cJSON_CreateNumber((double)sl_redis_reply_integer(r));
    case SL_REDIS_ARRAY:
        arr = cJSON_CreateArray();
        n = sl_redis_reply_len(r);
        for (size_t i = 0; arr != NULL && i < n; i++)
            cJSON_AddItemToArray(arr, reply_json(sl_redis_reply_at(r, i)));
        return arr;
    case SL_REDIS_ERROR:
        obj = cJSON_CreateObject();
        cJSON_AddStringToObject(obj, "error", sl_redis_reply_str(r, NULL));
        return obj;
    case SL_REDIS_NIL:
    default:
        return cJSON_CreateNull();
    }
}

/* Answers a request from a command's outcome; `field` names the reply. */
static void answer(sl_req *req, const sl_redis_reply *reply, const char *err, const char *field)
{
    cJSON *body;

    if (err != NULL) {
        sl_reply_error(req, reply != NULL ? 400 : 503, "%s", err);
        return;
    }
    body = cJSON_CreateObject();
    cJSON_AddItemToObject(body, field, reply_json(reply));
    sl_reply_json(req, 200, body);
}

static void on_value(sl_redis *r, const sl_redis_reply *reply, const char *err, void *arg)
{
    (void)r;
    answer(arg, reply, err, "value");
}

static void on_reply(sl_redis *r, const sl_redis_reply *reply, const char *err, void *arg)
{
    (void)r;
    answer(arg, reply, err, "reply");
}

/* Hands a command to the connector, counting it; `done` answers `req`. */
static void probe_send(probe *p, sl_req *req, int argc, const char *const *argv, const size_t *lens,
                       sl_redis_fn done)
{
    if (sl_redis_command(p->redis, argc, argv, lens, done, req) != 0) {
        sl_reply_error(req, 500, "command refused");
        return;
    }
    p->sent++;
}

static void serve_set(sl_req *req, void *arg)
{
    probe *p = arg;
    const char *key = sl_req_query(req, "key");
    size_t len;
    const char *value = sl_req_body(req, &len);
    const char *argv[3] = { "SET", key, value };
    size_t lens[3];

    if (key == NULL || value == NULL) {
        sl_reply_error(req, 400, "key (query) and a body are required");
        return;
    }
    lens[0] = 3;
    lens[1] = strlen(key);
    lens[2] = len;
    probe_send(p, req, 3, argv, lens, on_reply);
}

static void serve_get(sl_req *req, void *arg)
{
    probe *p = arg;
    const char *key = sl_req_query(req, "key");
    const char *argv[2] = { "GET", key };

    if (key == NULL) {
        sl_reply_error(req, 400, "key is required");
        return;
    }
    probe_send(p, req, 2, argv, NULL, on_value);
}

static void serve_cmd(sl_req *req, void *arg)
{
    probe *p = arg;
    cJSON *json = sl_req_json(req), *args;
    const char *argv[64];
    int argc = 0;

    if (json == NULL)
        return;
    args = cJSON_GetObjectItemCaseSensitive(json, "args");
    if (!cJSON_IsArray(args) || cJSON_GetArraySize(args) < 1 || cJSON_GetArraySize(args) > 64) {
        sl_reply_error(req, 400, "args must be an array of 1 to 64 strings");
        return;
    }
    for (cJSON *a = args->child; a != NULL; a = a->next) {
        if (!cJSON_IsString(a)) {
            sl_reply_error(req, 400, "args must be strings");
            return;
        }
        argv[argc++] = a->valuestring;
    }
    probe_send(p, req, argc, argv, NULL, on_reply);
}

static void serve_status(sl_req *req, void *arg)
{
    probe *p = arg;
    cJSON *body = cJSON_CreateObject();

    cJSON_AddBoolToObject(body, "connected", sl_redis_connected(p->redis));
    cJSON_AddNumberToObject(body, "sent", p->sent);
    cJSON_AddStringToObject(body, "instance", p->instance);
    sl_reply_json(req, 200, body);
}

static int probe_start(sl_ctx *ctx)
{
    probe *p = calloc(1, sizeof(*p));
    struct timespec ts;

    if (p == NULL)
        return sl_fail(ctx, "out of memory");
    if (sl_track(ctx, "redisprobe state", p, free, NULL) == NULL) {
        free(p);
        return sl_fail(ctx, "out of memory");
    }
    p->ctx = ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(p->instance, sizeof(p->instance), "%lld.%09ld", (long long)ts.tv_sec, ts.tv_nsec);
    sl_set_data(ctx, p);
    p->redis = sl_redis_new(ctx);
    if (p->redis == NULL)
        return sl_fail(ctx, "cannot create the redis connection");
    if (sl_route_scoped(ctx, SL_POST, "/redis/set", SL_SCOPE_ADMIN | SL_ROUTE_ANY_BODY, 0,
                        serve_set, p) != 0 ||
        sl_route(ctx, SL_GET, "/redis/get", serve_get, p) != 0 ||
        sl_route_scoped(ctx, SL_POST, "/redis/cmd", SL_SCOPE_ADMIN | SL_ROUTE_ANY_BODY, 0,
                        serve_cmd, p) != 0 ||
        sl_route(ctx, SL_GET, "/redis/status", serve_status, p) != 0)
        return sl_fail(ctx, "cannot register routes");
    return 0;
}

/* Requests still waiting for Redis are answered 503 by the core. */
static void probe_stop(sl_ctx *ctx)
{
    sl_stopped(ctx);
}

static const sl_option probe_options[] = { { NULL, 0, NULL, NULL, 0, 0, NULL } };

SL_API const sl_module sluice_module = {
    .abi_version = SL_ABI_VERSION,
    .name = "redisprobe",
    .description = "drives the Redis connector from HTTP (tests)",
    .options = probe_options,
    .flags = 0,
    .start = probe_start,
    .stop = probe_stop,
};
