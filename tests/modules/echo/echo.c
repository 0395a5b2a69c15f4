/*
 * echo - a module for testing the core: it answers with its options, can
 * answer late (to test draining), can refuse to start, and owns a timer and
 * metrics like a real module, and has a schema step that can succeed,
 * fail, be refused or never finish (for --init-schema), and a check() of
 * its `ratio` syntax (with ways to misbehave).  ECHO_BUILD lets a test
 * build a second version of the same module and see which code a reload
 * really runs.
 */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <sluice/sluice.h>

#ifndef ECHO_BUILD
#define ECHO_BUILD 1
#endif
/* A test builds it with SL_MODULE_EXCLUSIVE to see the drain-first order. */
#ifndef ECHO_FLAGS
#define ECHO_FLAGS 0
#endif

typedef struct slow_reply slow_reply;

typedef struct {
    sl_ctx *ctx;
    sl_series *requests;
    sl_series *ticks;
    sl_series *slow_pending; /* a test waits on it to know a request is in flight */
    sl_timer *tick;
    int stopping;
    slow_reply *pending; /* slow requests not answered yet */
    int npending;
} echo;

struct slow_reply {
    slow_reply *next;
    echo *e;
    sl_req *req;
    sl_timer *timer;
};

/* The module's state is tracked like any resource, so that even an
 * instance the core had to cut off mid-drain leaves nothing allocated. */
static void free_state(void *obj)
{
    echo *e = obj;
    while (e->pending != NULL) {
        slow_reply *s = e->pending;
        e->pending = s->next;
        free(s);
    }
    free(e);
}

static void serve_echo(sl_req *req, void *arg)
{
    echo *e = arg;
    cJSON *body = cJSON_CreateObject();

    sl_series_add(e->requests, 1);
    cJSON_AddStringToObject(body, "value", sl_opt_str(e->ctx, "value"));
    cJSON_AddNumberToObject(body, "build", ECHO_BUILD);
    cJSON_AddStringToObject(body, "instance", sl_instance_name(e->ctx));
    sl_reply_json(req, 200, body);
}

static void answer_slow(void *arg)
{
    slow_reply *s = arg;
    echo *e = s->e;
    cJSON *body = cJSON_CreateObject();

    /* Runs from a timer: a test sees the request's context reach it. */
    sl_log(e->ctx, SL_LOG_DEBUG, "answering a slow request");
    cJSON_AddStringToObject(body, "value", sl_opt_str(e->ctx, "value"));
    cJSON_AddNumberToObject(body, "build", ECHO_BUILD);
    sl_reply_json(s->req, 200, body);
    sl_timer_free(s->timer);
    for (slow_reply **pp = &e->pending; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    free(s);
    sl_series_set(e->slow_pending, --e->npending);
    /* The last in-flight request of a draining instance ends the drain. */
    if (e->pending == NULL && e->stopping)
        sl_stopped(e->ctx);
}

/* GET /echo/slow?ms=N answers after N milliseconds. */
static void serve_slow(sl_req *req, void *arg)
{
    echo *e = arg;
    const char *ms = sl_req_query(req, "ms");
    char *end;
    long n = ms != NULL ? strtol(ms, &end, 10) : -1;
    slow_reply *s;

    if (ms == NULL || *end != '\0' || n < 0 || n > 60000) {
        sl_reply_error(req, 400, "ms must be an integer from 0 to 60000");
        return;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        sl_reply_error(req, 500, "out of memory");
        return;
    }
    s->e = e;
    s->req = req;
    s->timer = sl_timer_new(e->ctx, (double)n / 1000.0, 0, answer_slow, s);
    if (s->timer == NULL) {
        free(s);
        sl_reply_error(req, 500, "cannot arm a timer");
        return;
    }
    s->next = e->pending;
    e->pending = s;
    sl_series_set(e->slow_pending, ++e->npending);
    sl_log(e->ctx, SL_LOG_DEBUG, "slow reply in %ld ms", n);
}

/* POST /echo/body answers the JSON body it was sent. */
static void serve_body(sl_req *req, void *arg)
{
    cJSON *json = sl_req_json(req);
    (void)arg;
    if (json == NULL)
        return;
    sl_reply_json(req, 200, cJSON_Duplicate(json, 1));
}

/* GET /echo/item/{id} answers the decoded path parameter. */
static void serve_item(sl_req *req, void *arg)
{
    cJSON *body = cJSON_CreateObject();
    (void)arg;
    cJSON_AddStringToObject(body, "id", sl_req_param(req, "id"));
    sl_reply_json(req, 200, body);
}

static void on_tick(void *arg)
{
    echo *e = arg;
    sl_series_add(e->ticks, 1);
}

static int echo_start(sl_ctx *ctx)
{
    echo *e;
    sl_metric *requests, *ticks, *slow_pending;

    if (sl_opt_bool(ctx, "fail"))
        return sl_fail(ctx, "told to fail by its configuration");
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return sl_fail(ctx, "out of memory");
    e->ctx = ctx;
    if (sl_track(ctx, "echo state", e, free_state, NULL) == NULL) {
        free(e);
        return sl_fail(ctx, "out of memory");
    }
    sl_set_data(ctx, e);
    requests = sl_counter(ctx, "sluice_echo_requests_total", "Requests answered by /echo.", NULL);
    ticks = sl_counter(ctx, "sluice_echo_ticks_total", "Ticks of the echo timer.", NULL);
    slow_pending = sl_gauge(ctx, "sluice_echo_slow_pending",
                            "Requests to /echo/slow not answered yet.", NULL);
    if (requests == NULL || ticks == NULL || slow_pending == NULL)
        return sl_fail(ctx, "cannot register metrics");
    e->requests = sl_series_of(requests);
    e->ticks = sl_series_of(ticks);
    e->slow_pending = sl_series_of(slow_pending);
    e->tick = sl_timer_new(ctx, sl_opt_seconds(ctx, "tick"), 1, on_tick, e);
    if (e->tick == NULL || sl_route(ctx, SL_GET, "/echo", serve_echo, e) != 0 ||
        sl_route(ctx, SL_GET, "/echo/slow", serve_slow, e) != 0 ||
        sl_route(ctx, SL_POST, "/echo/body", serve_body, e) != 0 ||
        sl_route(ctx, SL_GET, "/echo/item/{id}", serve_item, e) != 0)
        return sl_fail(ctx, "cannot register its timer or routes");
    if (!sl_opt_bool(ctx, "ready"))
        sl_set_ready(ctx, 0, "configured not ready");
    return 0;
}

static void echo_stop(sl_ctx *ctx)
{
    echo *e = sl_data(ctx);

    sl_timer_free(e->tick);
    e->tick = NULL;
    e->stopping = 1;
    if (e->pending != NULL)
        return; /* answer_slow() ends the drain */
    sl_stopped(ctx);
}

static const sl_option echo_options[] = {
    { "value", SL_OPT_STRING, "one", "what /echo answers", 0, 0, NULL },
    { "tick", SL_OPT_DURATION, "1s", "period of the internal timer", 0.001, 3600, NULL },
    { "fail", SL_OPT_BOOL, "false", "refuse to start", 0, 0, NULL },
    { "ready", SL_OPT_BOOL, "true", "report ready", 0, 0, NULL },
    { "limit", SL_OPT_INT, "10", "a bounded integer, for validation tests", 1, 100, NULL },
    { "schema", SL_OPT_ENUM, "ok", "how init_schema ends", 0, 0, "ok|fail|refuse|hang" },
    { "ratio", SL_OPT_STRING, "1/1", "N/M with M > 0: syntax only check() validates", 0, 0, NULL },
    { "check_fail", SL_OPT_BOOL, "false", "check() refuses the section as a whole", 0, 0, NULL },
    { "check_grab", SL_OPT_BOOL, "false",
      "check() misbehaves by asking for a timer, which the core must refuse", 0, 0, NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

static void on_grabbed(void *arg)
{
    (void)arg;
}

/* Syntax beyond the declared types, as a real module would check it. */
static int echo_check(sl_ctx *ctx)
{
    const char *ratio = sl_opt_str(ctx, "ratio");
    char *end;
    long n, m = 0;
    int rc = 0;

    n = strtol(ratio, &end, 10);
    if (end != ratio && *end == '/') {
        const char *den = end + 1;
        m = strtol(den, &end, 10);
        if (end == den)
            m = 0;
    }
    if (*end != '\0' || m <= 0 || n < 0)
        rc = sl_fail_opt(ctx, "ratio", "\"%s\" is not N/M with M > 0", ratio);
    if (sl_opt_bool(ctx, "check_fail"))
        rc = sl_fail(ctx, "told to fail its check");
    if (sl_opt_bool(ctx, "check_grab") && sl_timer_new(ctx, 1, 0, on_grabbed, NULL) != NULL)
        rc = sl_fail(ctx, "the core handed check() a timer");
    return rc;
}

/* Reports later, from the loop, like a real schema step waiting on a
 * database. */
static void schema_reply(void *arg)
{
    sl_ctx *ctx = arg;

    sl_log(ctx, SL_LOG_INFO, "schema step finished");
    sl_schema_done(ctx, strcmp(sl_opt_str(ctx, "schema"), "fail") == 0 ? "told to fail" : NULL);
}

static int echo_init_schema(sl_ctx *ctx)
{
    const char *how = sl_opt_str(ctx, "schema");

    if (strcmp(how, "refuse") == 0)
        return sl_fail(ctx, "told to refuse");
    if (strcmp(how, "hang") == 0)
        return 0;
    return sl_timer_new(ctx, 0.05, 0, schema_reply, ctx) != NULL ? 0 : sl_fail(ctx, "no timer");
}

SL_API const sl_module sluice_module = {
    .abi_version = SL_ABI_VERSION,
    .name = "echo",
    .description = "a module for testing the core",
    .options = echo_options,
    .flags = ECHO_FLAGS,
    .start = echo_start,
    .stop = echo_stop,
    .init_schema = echo_init_schema,
    .check = echo_check,
};
