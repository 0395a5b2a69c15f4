/*
 * pgprobe - drives the PostgreSQL connector over HTTP, for the integration
 * tests.  Every route answers JSON:
 *
 *   POST /pg/query        {"sql": "...", "params": ["x", null, 3], "prepare": "name"}
 *                         200 {"columns": [...], "rows": [[...]], "affected": n}
 *                         with "prepare", the SQL runs as the handle's prepared
 *                         statement of that name (sl_pg_prepare, sl_pg_exec)
 *                         422 {"error", "sqlstate"} refused by the server,
 *                         503 {"error"} no answer (down, timeout, lost)
 *   POST /pg/tx           {"statements": [{"sql", "params", "prepare"}...], "end": "commit"|"rollback",
 *                          "hold": seconds to wait before ending it (optional)}
 *                         200 {"ok": bool, "error": str|null, "results": [{"error", "rows"}]}
 *   POST /pg/listen?channel=C   starts listening on C
 *   GET  /pg/notes?channel=C    {"established": n, "payloads": [...]}
 *   POST /pg/migrate      runs the probe's migrations: {"applied": n} or 500
 *   GET  /pg/migrations   the run made at start (option migrate):
 *                         {"done": bool, "applied": n, "error": str|null}
 *
 * It is a test tool: it runs whatever SQL it is sent, as the connector's
 * API is meant to be used, with values as parameters.  Bind it to loopback.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <sluice/sluice.h>
#include <sluice/pg.h>

#define MAX_NOTES 1000

/* v3 inserts a row: applied twice, the table would hold two seeds. */
static const sl_pg_migration probe_migrations[] = {
    { 1, "CREATE TABLE probe_items (id bigserial PRIMARY KEY, name text NOT NULL,"
         " created_at timestamptz NOT NULL DEFAULT now())" },
    { 2, "SELECT pg_sleep(0.3); ALTER TABLE probe_items ADD COLUMN note text" },
    { 3, "INSERT INTO probe_items (name, note) VALUES ('seed', 'applied once')" },
};

typedef struct channel_notes channel_notes;
struct channel_notes {
    channel_notes *next;
    char *channel;
    int established;
    cJSON *payloads; /* array, at most MAX_NOTES */
};

typedef struct {
    sl_ctx *ctx;
    sl_pg *pg;
    channel_notes *notes;
    int migrated, applied;
    char migrate_err[512];
} probe;

/* ------------------------------------------------------------- helpers */

static cJSON *result_json(const sl_pg_result *res)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *cols = cJSON_AddArrayToObject(o, "columns");
    cJSON *rows = cJSON_AddArrayToObject(o, "rows");

    for (int c = 0; c < sl_pg_ncols(res); c++)
        cJSON_AddItemToArray(cols, cJSON_CreateString(sl_pg_colname(res, c)));
    for (int r = 0; r < sl_pg_nrows(res); r++) {
        cJSON *row = cJSON_CreateArray();
        for (int c = 0; c < sl_pg_ncols(res); c++) {
            const char *v = sl_pg_value(res, r, c);
            cJSON_AddItemToArray(row, v != NULL ? cJSON_CreateString(v) : cJSON_CreateNull());
        }
        cJSON_AddItemToArray(rows, row);
    }
    cJSON_AddNumberToObject(o, "affected", (double)sl_pg_affected(res));
    return o;
}

/* Parameters from a JSON array: strings as they are, numbers and booleans
 * printed, null as SQL NULL.  Returns the count, or -1. */
typedef struct {
    const char *v[32];
    char buf[32][32];
} params;

static int params_from(const cJSON *arr, params *p)
{
    int n = 0;
    const cJSON *it;

    if (arr == NULL)
        return 0;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > 32)
        return -1;
    cJSON_ArrayForEach (it, arr) {
        if (cJSON_IsString(it)) {
            p->v[n] = it->valuestring;
        } else if (cJSON_IsNull(it)) {
            p->v[n] = NULL;
        } else if (cJSON_IsNumber(it)) {
            snprintf(p->buf[n], sizeof(p->buf[n]), "%.17g", it->valuedouble);
            p->v[n] = p->buf[n];
        } else if (cJSON_IsBool(it)) {
            p->v[n] = cJSON_IsTrue(it) ? "true" : "false";
        } else {
            return -1;
        }
        n++;
    }
    return n;
}

/* The statement named by `prepare` in a request, or NULL when there is
 * none; `*bad` when it names one the connector refuses. */
static const sl_pg_stmt *prepared_of(probe *p, const cJSON *item, const char *sql, int *bad)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "prepare");
    const sl_pg_stmt *st;

    *bad = 0;
    if (name == NULL)
        return NULL;
    st = cJSON_IsString(name) ? sl_pg_prepare(p->pg, name->valuestring, sql) : NULL;
    *bad = st == NULL;
    return st;
}

/* --------------------------------------------------------------- query */

static void on_query(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    sl_req *req = arg;
    cJSON *o;

    (void)pg;
    if (err == NULL) {
        sl_reply_json(req, 200, result_json(res));
        return;
    }
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", err);
    if (res != NULL)
        cJSON_AddStringToObject(o, "sqlstate", sl_pg_sqlstate(res));
    sl_reply_json(req, res != NULL ? 422 : 503, o);
}

static void serve_query(sl_req *req, void *arg)
{
    probe *p = arg;
    cJSON *body = sl_req_json(req);
    const cJSON *sql;
    const sl_pg_stmt *st;
    params ps;
    int n, bad, rc;

    if (body == NULL)
        return;
    sql = cJSON_GetObjectItemCaseSensitive(body, "sql");
    n = params_from(cJSON_GetObjectItemCaseSensitive(body, "params"), &ps);
    if (!cJSON_IsString(sql) || n < 0) {
        sl_reply_error(req, 400, "want {\"sql\": string, \"params\": [up to 32 scalars]}");
        return;
    }
    st = prepared_of(p, body, sql->valuestring, &bad);
    if (bad) {
        sl_reply_error(req, 400, "the connector refused that statement name (or its SQL changed)");
        return;
    }
    if (st != NULL)
        rc = sl_pg_exec(p->pg, st, n, ps.v, on_query, req);
    else
        rc = sl_pg_query(p->pg, sql->valuestring, n, ps.v, on_query, req);
    if (rc != 0)
        sl_reply_error(req, 500, "query not accepted");
}

/* ---------------------------------------------------------- transaction */

typedef struct {
    sl_req *req;
    cJSON *results; /* one object per statement */
    sl_pg_tx *tx;
    int rollback;
    sl_timer *hold;
} tx_call;

typedef struct {
    tx_call *call;
    int index;
} tx_step;

static void on_tx_statement(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    tx_step *s = arg;
    cJSON *o = cJSON_GetArrayItem(s->call->results, s->index);

    (void)pg;
    if (err != NULL)
        cJSON_AddStringToObject(o, "error", err);
    else
        cJSON_AddNumberToObject(o, "rows", sl_pg_nrows(res));
    free(s);
}

static void on_tx_end(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    tx_call *call = arg;
    cJSON *o = cJSON_CreateObject();

    (void)pg;
    (void)res;
    cJSON_AddBoolToObject(o, "ok", err == NULL);
    if (err != NULL)
        cJSON_AddStringToObject(o, "error", err);
    else
        cJSON_AddNullToObject(o, "error");
    cJSON_AddItemToObject(o, "results", call->results);
    sl_reply_json(call->req, 200, o);
    sl_timer_free(call->hold);
    free(call);
}

static void end_tx(void *arg)
{
    tx_call *call = arg;

    if (call->rollback)
        sl_pg_tx_rollback(call->tx, on_tx_end, call);
    else
        sl_pg_tx_commit(call->tx, on_tx_end, call);
}

static void serve_tx(sl_req *req, void *arg)
{
    probe *p = arg;
    cJSON *body = sl_req_json(req);
    const cJSON *stmts, *end, *hold, *it;
    tx_call *call;
    sl_pg_tx *tx;
    int i = 0;

    if (body == NULL)
        return;
    stmts = cJSON_GetObjectItemCaseSensitive(body, "statements");
    end = cJSON_GetObjectItemCaseSensitive(body, "end");
    hold = cJSON_GetObjectItemCaseSensitive(body, "hold");
    if (!cJSON_IsArray(stmts) || !cJSON_IsString(end) || (hold != NULL && !cJSON_IsNumber(hold))) {
        sl_reply_error(req, 400, "want {\"statements\": [...], \"end\": \"commit|rollback\"}");
        return;
    }
    call = calloc(1, sizeof(*call));
    tx = call != NULL ? sl_pg_tx_begin(p->pg) : NULL;
    if (tx == NULL) {
        free(call);
        sl_reply_error(req, 500, "out of memory");
        return;
    }
    call->req = req;
    call->tx = tx;
    call->rollback = strcmp(end->valuestring, "rollback") == 0;
    call->results = cJSON_CreateArray();
    cJSON_ArrayForEach (it, stmts) {
        const cJSON *sql = cJSON_GetObjectItemCaseSensitive(it, "sql");
        const sl_pg_stmt *st = NULL;
        params ps;
        int n = params_from(cJSON_GetObjectItemCaseSensitive(it, "params"), &ps), bad = 0, rc;
        tx_step *s = malloc(sizeof(*s));
        cJSON_AddItemToArray(call->results, cJSON_CreateObject());
        if (cJSON_IsString(sql))
            st = prepared_of(p, it, sql->valuestring, &bad);
        if (s == NULL || !cJSON_IsString(sql) || n < 0 || bad) {
            free(s);
            continue; /* shows as a result with neither rows nor error */
        }
        s->call = call;
        s->index = i++;
        if (st != NULL)
            rc = sl_pg_tx_exec(tx, st, n, ps.v, on_tx_statement, s);
        else
            rc = sl_pg_tx_query(tx, sql->valuestring, n, ps.v, on_tx_statement, s);
        if (rc != 0)
            free(s);
    }
    if (hold != NULL && hold->valuedouble > 0) {
        call->hold = sl_timer_new(p->ctx, hold->valuedouble, 0, end_tx, call);
        if (call->hold != NULL)
            return;
    }
    end_tx(call);
}

/* --------------------------------------------------------------- listen */

static channel_notes *notes_of(probe *p, const char *channel, int create)
{
    channel_notes *n;

    for (n = p->notes; n != NULL; n = n->next)
        if (strcmp(n->channel, channel) == 0)
            return n;
    if (!create || (n = calloc(1, sizeof(*n))) == NULL)
        return NULL;
    n->channel = strdup(channel);
    n->payloads = cJSON_CreateArray();
    n->next = p->notes;
    p->notes = n;
    return n;
}

static void on_notify(sl_pg *pg, const char *channel, const char *payload, void *arg)
{
    channel_notes *n = arg;

    (void)pg;
    (void)channel;
    if (payload == NULL)
        n->established++;
    else if (cJSON_GetArraySize(n->payloads) < MAX_NOTES)
        cJSON_AddItemToArray(n->payloads, cJSON_CreateString(payload));
}

static void serve_listen(sl_req *req, void *arg)
{
    probe *p = arg;
    const char *channel = sl_req_query(req, "channel");
    channel_notes *n;
    cJSON *o;

    if (channel == NULL || channel[0] == '\0') {
        sl_reply_error(req, 400, "channel is required");
        return;
    }
    if (notes_of(p, channel, 0) != NULL) {
        sl_reply_error(req, 409, "already listening on %s", channel);
        return;
    }
    n = notes_of(p, channel, 1);
    if (n == NULL || sl_pg_listen(p->pg, channel, on_notify, n) == NULL) {
        sl_reply_error(req, 500, "cannot listen");
        return;
    }
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "listening", channel);
    sl_reply_json(req, 200, o);
}

static void serve_notes(sl_req *req, void *arg)
{
    probe *p = arg;
    const char *channel = sl_req_query(req, "channel");
    channel_notes *n = channel != NULL ? notes_of(p, channel, 0) : NULL;
    cJSON *o;

    if (n == NULL) {
        sl_reply_error(req, 404, "not listening on that channel");
        return;
    }
    o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "established", n->established);
    cJSON_AddItemToObject(o, "payloads", cJSON_Duplicate(n->payloads, 1));
    sl_reply_json(req, 200, o);
}

/* ----------------------------------------------------------- migrations */

static void on_migrated_req(sl_pg *pg, int applied, const char *err, void *arg)
{
    sl_req *req = arg;
    cJSON *o;

    (void)pg;
    if (err != NULL) {
        sl_reply_error(req, 500, "%s", err);
        return;
    }
    o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "applied", applied);
    sl_reply_json(req, 200, o);
}

static void serve_migrate(sl_req *req, void *arg)
{
    probe *p = arg;

    if (sl_pg_migrate(p->pg, "pgprobe", probe_migrations,
                      sizeof(probe_migrations) / sizeof(probe_migrations[0]), on_migrated_req,
                      req) != 0)
        sl_reply_error(req, 500, "migrations not accepted");
}

static void on_migrated_start(sl_pg *pg, int applied, const char *err, void *arg)
{
    probe *p = arg;

    (void)pg;
    p->migrated = 1;
    p->applied = applied;
    if (err != NULL) {
        snprintf(p->migrate_err, sizeof(p->migrate_err), "%s", err);
        sl_set_ready(p->ctx, 0, "migrations failed");
        return;
    }
    sl_set_ready(p->ctx, 1, NULL);
}

static void serve_migrations(sl_req *req, void *arg)
{
    probe *p = arg;
    cJSON *o = cJSON_CreateObject();

    cJSON_AddBoolToObject(o, "done", p->migrated);
    cJSON_AddNumberToObject(o, "applied", p->applied);
    if (p->migrate_err[0] != '\0')
        cJSON_AddStringToObject(o, "error", p->migrate_err);
    else
        cJSON_AddNullToObject(o, "error");
    sl_reply_json(req, 200, o);
}

/* ------------------------------------------------------------ lifecycle */

static void probe_free(probe *p)
{
    while (p->notes != NULL) {
        channel_notes *n = p->notes;
        p->notes = n->next;
        cJSON_Delete(n->payloads);
        free(n->channel);
        free(n);
    }
    free(p);
}

static int start(sl_ctx *ctx)
{
    probe *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return sl_fail(ctx, "out of memory");
    p->ctx = ctx;
    p->pg = sl_pg_new(ctx);
    if (p->pg == NULL) {
        free(p);
        return sl_fail(ctx, "no PostgreSQL handle (see the log)");
    }
    sl_set_data(ctx, p);
    if (sl_route_scoped(ctx, SL_POST, "/pg/query", SL_SCOPE_ADMIN | SL_ROUTE_ANY_BODY, 0,
                        serve_query, p) != 0 ||
        sl_route_scoped(ctx, SL_POST, "/pg/tx", SL_SCOPE_ADMIN | SL_ROUTE_ANY_BODY, 0, serve_tx,
                        p) != 0 ||
        sl_route_scoped(ctx, SL_POST, "/pg/listen", SL_SCOPE_ADMIN | SL_ROUTE_ANY_BODY, 0,
                        serve_listen, p) != 0 ||
        sl_route(ctx, SL_GET, "/pg/notes", serve_notes, p) != 0 ||
        sl_route_scoped(ctx, SL_POST, "/pg/migrate", SL_SCOPE_ADMIN | SL_ROUTE_ANY_BODY, 0,
                        serve_migrate, p) != 0 ||
        sl_route(ctx, SL_GET, "/pg/migrations", serve_migrations, p) != 0) {
        probe_free(p);
        return sl_fail(ctx, "cannot register routes");
    }
    if (sl_opt_bool(ctx, "migrate")) {
        sl_set_ready(ctx, 0, "migrating");
        if (sl_pg_migrate(p->pg, "pgprobe", probe_migrations,
                          sizeof(probe_migrations) / sizeof(probe_migrations[0]), on_migrated_start,
                          p) != 0) {
            probe_free(p);
            return sl_fail(ctx, "migrations not accepted");
        }
    }
    return 0;
}

/* Callbacks of the handle never come after this: the core releases it
 * with the instance, before the next loop turn. */
static void stop(sl_ctx *ctx)
{
    probe *p = sl_data(ctx);

    sl_pg_free(p->pg);
    probe_free(p);
    sl_stopped(ctx);
}

static const sl_option options[] = { { "migrate", SL_OPT_BOOL, "false",
                                       "apply the probe's migrations at start", 0, 0, NULL },
                                     { NULL, 0, NULL, NULL, 0, 0, NULL } };

SL_API const sl_module sluice_module = {
    .abi_version = SL_ABI_VERSION,
    .name = "pgprobe",
    .description = "drives the PostgreSQL connector for tests",
    .options = options,
    .flags = 0,
    .start = start,
    .stop = stop,
};
