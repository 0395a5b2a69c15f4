/*
 * chprobe - drives the ClickHouse connector from HTTP, for integration
 * tests and the insert benchmark.
 *
 *   POST /ch/exec                 body: a statement (CREATE TABLE ...)
 *   POST /ch/query                body: a SELECT; answers ClickHouse's
 *                                 FORMAT JSON document
 *   POST /ch/insert?table=T       body: JSONEachRow rows
 *   POST /ch/generate?table=T&rows=N&batch=B&parallel=P
 *                                 inserts N generated rows in batches of B,
 *                                 at most P batches in flight; answers
 *                                 {"rows","batches","seconds","gen_seconds"}
 *                                 where seconds covers the inserts only
 *   GET  /ch/rows?rows=N          the same N rows as JSONEachRow text, so a
 *                                 reference client can send identical bytes
 *   GET  /ch/status               {"ready": true|false}
 *
 * Errors are {"error": "...", "status": S, "code": C}: 400 when ClickHouse
 * refused the request (4xx, or a 5xx about the request), 503 when no
 * answer came.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <sluice/sluice.h>
#include <sluice/clickhouse.h>

typedef struct gen gen;

typedef struct {
    sl_ctx *ctx;
    sl_ch *ch;
    gen *gens; /* /ch/generate runs in progress */
} probe;

/* One /ch/generate run: batches prepared up front, sent P at a time. */
struct gen {
    gen *next;
    probe *p;
    sl_req *req;
    char table[128];
    sl_ch_batch **batches;
    size_t nbatches, sent, done;
    size_t rows;
    double start, gen_seconds;
    char *error;
    int starting;
};

/* Row i of the generated data; identical for /ch/generate and /ch/rows. */
static int format_row(char *buf, size_t len, size_t i)
{
    return snprintf(buf, len,
                    "{\"id\":%zu,\"user_id\":\"u%05zu\",\"page_id\":\"p%03zu\","
                    "\"event_type\":\"%s\",\"duration_s\":%zu.%zu}",
                    i, (i * 7919) % 100000, (i * 31) % 1000, i % 10 == 0 ? "bounce" : "view",
                    i % 600, i % 10);
}

static void reply_error(sl_req *req, const sl_ch_result *res)
{
    cJSON *body = cJSON_CreateObject();
    /* ClickHouse refused it, or raised an exception while streaming. */
    int refused = res->status >= 400 || res->code != 0;

    cJSON_AddStringToObject(body, "error", res->error);
    cJSON_AddNumberToObject(body, "status", (double)res->status);
    cJSON_AddNumberToObject(body, "code", res->code);
    cJSON_AddNumberToObject(body, "attempts", res->attempts);
    sl_reply_json(req, refused ? 400 : 503, body);
}

static void on_done(sl_ch *ch, const sl_ch_result *res, void *arg)
{
    sl_req *req = arg;
    cJSON *body;

    (void)ch;
    if (res->error != NULL) {
        reply_error(req, res);
        return;
    }
    if (res->json != NULL) {
        sl_reply_json(req, 200, cJSON_Duplicate(res->json, 1));
        return;
    }
    body = cJSON_CreateObject();
    cJSON_AddBoolToObject(body, "ok", 1);
    cJSON_AddNumberToObject(body, "attempts", res->attempts);
    sl_reply_json(req, 200, body);
}

static void serve_exec(sl_req *req, void *arg)
{
    probe *p = arg;
    size_t len;
    const char *sql = sl_req_body(req, &len);

    if (sql == NULL || sql[0] == '\0') {
        sl_reply_error(req, 400, "a statement is required");
        return;
    }
    if (sl_ch_exec(p->ch, sql, on_done, req) != 0)
        sl_reply_error(req, 500, "request refused");
}

static void serve_query(sl_req *req, void *arg)
{
    probe *p = arg;
    size_t len;
    const char *sql = sl_req_body(req, &len);

    if (sql == NULL || sql[0] == '\0') {
        sl_reply_error(req, 400, "a query is required");
        return;
    }
    if (sl_ch_query(p->ch, sql, on_done, req) != 0)
        sl_reply_error(req, 500, "request refused");
}

static void serve_insert(sl_req *req, void *arg)
{
    probe *p = arg;
    const char *table = sl_req_query(req, "table");
    size_t len;
    const char *rows = sl_req_body(req, &len);

    if (table == NULL || !sl_ch_valid_table(table)) {
        sl_reply_error(req, 400, "table must be an identifier");
        return;
    }
    if (sl_ch_insert(p->ch, table, rows != NULL ? rows : "", len, on_done, req) != 0)
        sl_reply_error(req, 500, "request refused");
}

static size_t query_size(sl_req *req, const char *name, size_t def, size_t max)
{
    const char *v = sl_req_query(req, name);
    char *end;
    unsigned long long n;

    if (v == NULL)
        return def;
    n = strtoull(v, &end, 10);
    if (*end != '\0' || n == 0 || n > max)
        return 0;
    return (size_t)n;
}

static void gen_free(gen *g)
{
    for (size_t i = 0; i < g->nbatches; i++)
        sl_ch_batch_free(g->batches[i]);
    free(g->batches);
    free(g->error);
    free(g);
}

static void gen_unlink(gen *g)
{
    for (gen **pp = &g->p->gens; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            return;
        }
    }
}

static void gen_send(gen *g);

/* Answers the run once every batch has its outcome. */
static void gen_finish(gen *g)
{
    double seconds = sl_now() - g->start;
    cJSON *body;

    if (g->error != NULL) {
        sl_reply_error(g->req, 502, "%s", g->error);
    } else {
        body = cJSON_CreateObject();
        cJSON_AddNumberToObject(body, "rows", (double)g->rows);
        cJSON_AddNumberToObject(body, "batches", (double)g->nbatches);
        cJSON_AddNumberToObject(body, "seconds", seconds);
        cJSON_AddNumberToObject(body, "gen_seconds", g->gen_seconds);
        sl_reply_json(g->req, 200, body);
    }
    gen_unlink(g);
    gen_free(g);
}

static void on_batch(sl_ch *ch, const sl_ch_result *res, void *arg)
{
    gen *g = arg;

    (void)ch;
    g->done++;
    if (res->error != NULL && g->error == NULL)
        g->error = strdup(res->error);
    if (g->done == g->nbatches)
        gen_finish(g);
    else
        gen_send(g);
}

/* Sends the next batch: called once per slot of `parallel` at the start,
 * then once per finished batch, so that many stay in flight.  Returns
 * with the run freed when it ended here. */
static void gen_send(gen *g)
{
    while (g->sent < g->nbatches) {
        sl_ch_batch *b = g->batches[g->sent];
        g->batches[g->sent++] = NULL;
        if (sl_ch_insert_batch(g->p->ch, g->table, b, on_batch, g) == 0)
            return;
        g->done++;
        if (g->error == NULL)
            g->error = strdup("insert refused");
    }
    if (g->done == g->nbatches && !g->starting)
        gen_finish(g);
}

static void serve_generate(sl_req *req, void *arg)
{
    probe *p = arg;
    const char *table = sl_req_query(req, "table");
    size_t rows = query_size(req, "rows", 10000, 100000000);
    size_t batch = query_size(req, "batch", 10000, 10000000);
    size_t parallel = query_size(req, "parallel", 1, 64);
    char line[256];
    double t0;
    gen *g;

    if (table == NULL || !sl_ch_valid_table(table) || strlen(table) >= sizeof(g->table) ||
        rows == 0 || batch == 0 || parallel == 0) {
        sl_reply_error(req, 400, "table, rows, batch and parallel must be valid");
        return;
    }
    g = calloc(1, sizeof(*g));
    if (g == NULL) {
        sl_reply_error(req, 500, "out of memory");
        return;
    }
    g->p = p;
    g->req = req;
    g->rows = rows;
    strcpy(g->table, table);
    g->nbatches = (rows + batch - 1) / batch;
    g->batches = calloc(g->nbatches, sizeof(*g->batches));
    t0 = sl_now();
    for (size_t i = 0; g->batches != NULL && i < rows; i++) {
        size_t k = i / batch;
        int n;
        if (g->batches[k] == NULL && (g->batches[k] = sl_ch_batch_new()) == NULL)
            break;
        n = format_row(line, sizeof(line), i);
        if (sl_ch_batch_append_raw(g->batches[k], line, (size_t)n) != 0)
            break;
    }
    if (g->batches == NULL || g->batches[g->nbatches - 1] == NULL ||
        sl_ch_batch_rows(g->batches[g->nbatches - 1]) != rows - (g->nbatches - 1) * batch) {
        gen_free(g);
        sl_reply_error(req, 500, "out of memory");
        return;
    }
    g->gen_seconds = sl_now() - t0;
    g->next = p->gens;
    p->gens = g;
    g->start = sl_now();
    /* Callbacks never run inside sl_ch_insert_batch(), so only refusals
     * can end the run here; `starting` keeps it alive until the loop ends. */
    g->starting = 1;
    for (size_t i = 0; i < parallel && g->sent < g->nbatches; i++)
        gen_send(g);
    g->starting = 0;
    if (g->done == g->nbatches)
        gen_finish(g);
}

/* The generated rows as text, streamed in chunks. */
typedef struct {
    size_t next, rows;
} rows_stream;

static void rows_more(sl_req *req, void *arg)
{
    rows_stream *s = arg;
    char buf[65536];
    size_t used = 0;

    if (s->next >= s->rows || sl_req_gone(req)) {
        free(s);
        sl_reply_end(req);
        return;
    }
    while (s->next < s->rows && used + 256 < sizeof(buf)) {
        used += (size_t)format_row(buf + used, sizeof(buf) - used, s->next++);
        buf[used++] = '\n';
    }
    sl_reply_chunk(req, buf, used);
}

static void serve_rows(sl_req *req, void *arg)
{
    size_t rows = query_size(req, "rows", 10000, 100000000);
    rows_stream *s;

    (void)arg;
    if (rows == 0) {
        sl_reply_error(req, 400, "rows must be a positive integer");
        return;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        sl_reply_error(req, 500, "out of memory");
        return;
    }
    s->rows = rows;
    sl_reply_start(req, 200, "application/x-ndjson", rows_more, s);
    rows_more(req, s);
}

static void serve_status(sl_req *req, void *arg)
{
    probe *p = arg;
    cJSON *body = cJSON_CreateObject();

    cJSON_AddBoolToObject(body, "ready", sl_ch_ready(p->ch));
    sl_reply_json(req, 200, body);
}

/* Runs of /ch/generate still going when the instance goes: the connector
 * was released first (newest first) and calls no callback, so only the
 * memory is left to free here. */
static void free_state(void *obj)
{
    probe *p = obj;

    while (p->gens != NULL) {
        gen *g = p->gens;
        p->gens = g->next;
        gen_free(g);
    }
    free(p);
}

static int probe_start(sl_ctx *ctx)
{
    probe *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return sl_fail(ctx, "out of memory");
    if (sl_track(ctx, "chprobe state", p, free_state, NULL) == NULL) {
        free(p);
        return sl_fail(ctx, "out of memory");
    }
    p->ctx = ctx;
    sl_set_data(ctx, p);
    p->ch = sl_ch_new(ctx);
    if (p->ch == NULL)
        return sl_fail(ctx, "cannot create the clickhouse connection");
    if (sl_route_scoped(ctx, SL_POST, "/ch/exec", SL_SCOPE_ADMIN | SL_ROUTE_ANY_BODY, 0, serve_exec,
                        p) != 0 ||
        sl_route_scoped(ctx, SL_POST, "/ch/query", SL_SCOPE_ADMIN | SL_ROUTE_ANY_BODY, 0,
                        serve_query, p) != 0 ||
        sl_route_scoped(ctx, SL_POST, "/ch/insert", SL_SCOPE_ADMIN | SL_ROUTE_ANY_BODY, 0,
                        serve_insert, p) != 0 ||
        sl_route_scoped(ctx, SL_POST, "/ch/generate", SL_SCOPE_ADMIN | SL_ROUTE_ANY_BODY, 0,
                        serve_generate, p) != 0 ||
        sl_route(ctx, SL_GET, "/ch/rows", serve_rows, p) != 0 ||
        sl_route(ctx, SL_GET, "/ch/status", serve_status, p) != 0)
        return sl_fail(ctx, "cannot register routes");
    return 0;
}

static void probe_stop(sl_ctx *ctx)
{
    sl_stopped(ctx);
}

static const sl_option probe_options[] = { { NULL, 0, NULL, NULL, 0, 0, NULL } };

SL_API const sl_module sluice_module = {
    .abi_version = SL_ABI_VERSION,
    .name = "chprobe",
    .description = "drives the ClickHouse connector from HTTP (tests, benchmark)",
    .options = probe_options,
    .flags = 0,
    .start = probe_start,
    .stop = probe_stop,
};
