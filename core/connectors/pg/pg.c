/*
 * pg.c - the PostgreSQL connector: the [postgres] section, the handle (a
 * pool of connections: pg_connect.c brings them up and down, pg_conn.c
 * runs the work on them), and the API of <sluice/pg.h>.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <event2/dns.h>
#include "daemon/core.h"
#include "daemon/log.h"
#include "metrics/metrics.h"
#include "pg_int.h"

#define MAX_PARAMS 65535 /* the protocol's limit */

static const sl_option pg_options[] = {
    { "dsn", SL_OPT_STRING, "",
      "libpq connection string, e.g. \"host=127.0.0.1 port=5432 user=sluice dbname=sluice\"; "
      "required by every module that uses PostgreSQL",
      0, 0, NULL },
    { "password_file", SL_OPT_STRING, "",
      "file whose first line is the password (instead of password= in the dsn, so that the secret "
      "is not in the config)",
      0, 0, NULL },
    { "pool_size", SL_OPT_INT, "4", "connections of each handle (one handle per instance)", 1, 64,
      NULL },
    { "connect_timeout", SL_OPT_DURATION, "5s", "how long establishing a connection may take",
      0.001, 300, NULL },
    { "query_timeout", SL_OPT_DURATION, "10s",
      "how long a request may take from the call to its answer, waiting for a connection "
      "included; also the server's statement_timeout",
      0.001, 3600, NULL },
    { "tx_timeout", SL_OPT_DURATION, "30s",
      "how long a transaction may stay open before it is rolled back", 0.001, 3600, NULL },
    { "max_queue", SL_OPT_INT, "1024",
      "requests that may wait for a free connection; more fail at once", 1, 1000000, NULL },
    { "reconnect_max", SL_OPT_DURATION, "5s",
      "longest wait between reconnection attempts (the wait doubles from 100ms)", 0.1, 300, NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

/* -t and every reload: a malformed dsn is a config error with its line. */
static int pg_check(const sl_optset *opts, const char *file, sl_errors *errs)
{
    const sl_optval *v = sl_optset_get(opts, "dsn");
    PQconninfoOption *parsed;
    char *msg = NULL, why[512];
    int rc = sl_conn_check_secret(opts, "postgres", "password_file", file, errs);

    if (v == NULL || v->raw[0] == '\0')
        return rc;
    parsed = PQconninfoParse(v->raw, &msg);
    if (parsed != NULL) {
        PQconninfoFree(parsed);
        return rc;
    }
    pg_one_line(why, sizeof(why), msg != NULL ? msg : "out of memory");
    sl_errors_add(errs, file, v->line, "[postgres] dsn: %s", why);
    PQfreemem(msg);
    return -1;
}

const sl_section_schema sl_postgres_schema = {
    "postgres", "the PostgreSQL connection pool of modules that use PostgreSQL",
    pg_options, SL_USES_POSTGRES,
    pg_check,   NULL,
    NULL,
};

static const char *const outcome_names[OUT_N] = { "ok",   "error",    "timeout", "unavailable",
                                                  "lost", "overflow", "aborted" };

static void free_params(sl_pg *pg)
{
    for (size_t i = 0; pg->keys != NULL && pg->keys[i] != NULL; i++) {
        free(pg->keys[i]);
        free(pg->vals[i]);
    }
    free(pg->keys);
    free(pg->vals);
}

static void destroy(void *obj)
{
    sl_pg *pg = obj;
    op *o;

    for (int i = 0; pg->conns != NULL && i < pg->pool_size; i++)
        pg_conn_fini(&pg->conns[i]);
    free(pg->conns);
    if (pg->lconn != NULL) {
        pg_conn_fini(pg->lconn);
        free(pg->lconn);
    }
    while (pg->txs != NULL)
        pg_tx_free(pg->txs);
    while ((o = pg_pop_front(&pg->jobs, &pg->jobs_tail)) != NULL)
        pg_op_free(o);
    /* Every transaction is gone already, those whose end op waits here too. */
    while ((o = pg_pop_front(&pg->failed, &pg->failed_tail)) != NULL)
        pg_op_free(o);
    while (pg->stmts != NULL) {
        sl_pg_stmt *st = pg->stmts;
        pg->stmts = st->next;
        pg_stmt_free(st);
    }
    for (sl_pg_listener *l = pg->listeners; l != NULL; l = l->next)
        l->dead = 1;
    pg_sweep_listeners(pg);
    if (pg->dns != NULL)
        evdns_base_free(pg->dns, 0);
    free(pg->resolve);
    if (pg->deliver != NULL)
        event_free(pg->deliver);
    if (pg->tick != NULL)
        event_free(pg->tick);
    sl_metric_release(pg->m_latency);
    sl_metric_release(pg->m_queries);
    sl_metric_release(pg->m_reconnects);
    sl_metric_release(pg->m_up);
    sl_metric_release(pg->m_prepares);
    free_params(pg);
    free(pg->span_attrs.json);
    free(pg->label);
    free(pg);
}

/* The instance's release: it does not call module code. */
static void release(void *obj)
{
    sl_conn_released(&((sl_pg *)obj)->life);
}

static int conn_is_up(const conn *c)
{
    return c->state == C_IDLE || c->state == C_BUSY;
}

static int is_ready(const sl_pg *pg)
{
    return pg->nup > 0 && (pg->lconn == NULL || conn_is_up(pg->lconn));
}

static int ready(void *obj, char *why, size_t whylen)
{
    const sl_pg *pg = obj;

    if (is_ready(pg))
        return 1;
    if (pg->nup == 0) {
        snprintf(why, whylen, "postgres %s %s%s%s", pg->where,
                 pg->down ? "unavailable" : "connecting", pg->err[0] ? ": " : "", pg->err);
        return 0;
    }
    snprintf(why, whylen, "postgres %s: LISTEN connection down%s%s", pg->where,
             pg->err[0] ? ": " : "", pg->err);
    return 0;
}

static const double latency_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10 };

static void register_metrics(sl_pg *pg, const char *module, const char *instance)
{
    pg->m_latency =
            sl_metric_register(SL_METRIC_HISTOGRAM, "sluice_pg_query_duration_seconds",
                               "Time from sending a PostgreSQL statement to its last result",
                               "module", latency_bounds,
                               sizeof(latency_bounds) / sizeof(latency_bounds[0]), instance);
    pg->m_queries = sl_metric_register(
            SL_METRIC_COUNTER, "sluice_pg_queries_total",
            "PostgreSQL requests by outcome (ok, error: refused by the server, timeout, "
            "unavailable: no connection, lost: connection lost in flight, overflow: queue full, "
            "aborted: not run because its transaction was rolled back)",
            "module,outcome", NULL, 0, instance);
    pg->m_reconnects = sl_metric_register(SL_METRIC_COUNTER, "sluice_pg_reconnects_total",
                                          "Attempts to re-establish a lost PostgreSQL connection",
                                          "module", NULL, 0, instance);
    pg->m_up = sl_metric_register(SL_METRIC_GAUGE, "sluice_pg_connections_up",
                                  "PostgreSQL connections established (pool and LISTEN)", "module",
                                  NULL, 0, instance);
    pg->m_prepares = sl_metric_register(
            SL_METRIC_COUNTER, "sluice_pg_prepares_total",
            "Prepared statements parsed and planned on a connection: once per statement and "
            "connection, again after the connection is re-established",
            "module", NULL, 0, instance);
    if (pg->m_prepares != NULL)
        pg->s_prepares = sl_series_of(pg->m_prepares, module);
    if (pg->m_latency != NULL)
        pg->s_latency = sl_series_of(pg->m_latency, module);
    if (pg->m_reconnects != NULL)
        pg->s_reconnects = sl_series_of(pg->m_reconnects, module);
    if (pg->m_up != NULL)
        pg->s_up = sl_series_of(pg->m_up, module);
    for (int i = 0; i < OUT_N && pg->m_queries != NULL; i++)
        pg->s_out[i] = sl_series_of(pg->m_queries, module, outcome_names[i]);
}

/* A host that libpq would look up: not a socket directory, not an
 * address. */
static int is_name(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return host[0] != '\0' && host[0] != '/' && host[0] != '@' &&
           inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1;
}

/*
 * libpq parameters from the dsn, plus ours: statement_timeout appended to
 * `options` so that the server stops what the client gave up on, and a
 * fallback application_name naming the instance in pg_stat_activity.
 */
static int build_params(sl_pg *pg, const char *dsn, const char *password_file, char *err,
                        size_t errlen)
{
    PQconninfoOption *parsed;
    char *msg = NULL;
    char extra[64], appname[200];
    const char *options = NULL, *host = NULL, *port = NULL;
    size_t n = 0, k = 0;
    int hostaddr = 0;

    parsed = PQconninfoParse(dsn, &msg);
    if (parsed == NULL) {
        pg_one_line(err, errlen, msg != NULL ? msg : "out of memory");
        PQfreemem(msg);
        return -1;
    }
    for (PQconninfoOption *o = parsed; o->keyword != NULL; o++)
        n += o->val != NULL;
    pg->keys = calloc(n + 4, sizeof(*pg->keys));
    pg->vals = calloc(n + 4, sizeof(*pg->vals));
    if (pg->keys == NULL || pg->vals == NULL)
        goto oom;
    for (PQconninfoOption *o = parsed; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        if (strcmp(o->keyword, "options") == 0) {
            options = o->val;
            continue;
        }
        if (strcmp(o->keyword, "host") == 0 ||
            (host == NULL && strcmp(o->keyword, "hostaddr") == 0))
            host = o->val;
        hostaddr |= strcmp(o->keyword, "hostaddr") == 0;
        if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        if (strcmp(o->keyword, "fallback_application_name") == 0 ||
            (password_file[0] != '\0' && strcmp(o->keyword, "password") == 0))
            continue;
        pg->keys[k] = strdup(o->keyword);
        pg->vals[k] = strdup(o->val);
        if (pg->keys[k] == NULL || pg->vals[k] == NULL)
            goto oom;
        k++;
    }
    snprintf(extra, sizeof(extra), "-c statement_timeout=%lld",
             (long long)(pg->query_timeout * 1000) + 1);
    snprintf(appname, sizeof(appname), "sluiced %s", pg->label);
    pg->keys[k] = strdup("options");
    pg->vals[k] = malloc((options ? strlen(options) : 0) + strlen(extra) + 2);
    if (pg->keys[k] == NULL || pg->vals[k] == NULL)
        goto oom;
    sprintf(pg->vals[k], "%s%s%s", options ? options : "", options ? " " : "", extra);
    k++;
    pg->keys[k] = strdup("fallback_application_name");
    pg->vals[k] = strdup(appname);
    if (pg->keys[k] == NULL || pg->vals[k] == NULL)
        goto oom;
    if (password_file[0] != '\0') {
        char secret[SL_SECRET_MAX];
        if (sl_conn_read_secret(password_file, secret, sizeof(secret), err, errlen) != 0) {
            PQconninfoFree(parsed);
            return -1;
        }
        k++;
        pg->keys[k] = strdup("password");
        pg->vals[k] = strdup(secret);
        memset(secret, 0, sizeof(secret));
        if (pg->keys[k] == NULL || pg->vals[k] == NULL)
            goto oom;
    }
    snprintf(pg->where, sizeof(pg->where), "%s:%s", host ? host : "(default host)",
             port ? port : "5432");
    if (!hostaddr && host != NULL && is_name(host)) {
        if (strchr(host, ',') != NULL || (port != NULL && strchr(port, ',') != NULL)) {
            sl_log_core(SL_LOG_WARN, "postgres",
                        "%s: libpq resolves a list of host names with a blocking lookup that "
                        "stalls the loop; give their addresses (hostaddr) instead",
                        pg->label);
        } else if ((pg->resolve = strdup(host)) == NULL) {
            goto oom;
        } else {
            snprintf(pg->resolve_port, sizeof(pg->resolve_port), "%s", port ? port : "5432");
        }
    }
    PQconninfoFree(parsed);
    return 0;
oom:
    PQconninfoFree(parsed);
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* The [postgres] options of the current generation, or the defaults. */
static int load_options(sl_pg *pg, char *err, size_t errlen)
{
    sl_optset defaults = { NULL, 0 };
    const sl_optset *set = sl_conn_options("postgres", pg_options, &defaults, err, errlen);
    const char *dsn;
    int rc = -1;

    if (set == NULL)
        return -1;
    dsn = sl_optset_get(set, "dsn")->raw;
    pg->pool_size = (int)sl_optset_get(set, "pool_size")->i;
    pg->connect_timeout = sl_optset_get(set, "connect_timeout")->d;
    pg->query_timeout = sl_optset_get(set, "query_timeout")->d;
    pg->tx_timeout = sl_optset_get(set, "tx_timeout")->d;
    pg->max_queue = sl_optset_get(set, "max_queue")->i;
    pg->reconnect_max = sl_optset_get(set, "reconnect_max")->d;
    if (dsn[0] == '\0')
        snprintf(err, errlen, "[postgres] dsn is not set; this module needs a PostgreSQL server");
    else
        rc = build_params(pg, dsn, sl_optset_get(set, "password_file")->raw, err, errlen);
    sl_optset_free(&defaults);
    return rc;
}

SL_API sl_pg *sl_pg_new(sl_ctx *ctx)
{
    if (sl_ctx_refuse(ctx, "a PostgreSQL handle"))
        return NULL;
    sl_pg *pg = calloc(1, sizeof(*pg));
    char err[512];

    if (pg == NULL) {
        sl_log(ctx, SL_LOG_ERROR, "postgres: out of memory");
        return NULL;
    }
    pg->label = strdup(ctx->label != NULL ? ctx->label : sl_module_name(ctx));
    if (pg->label == NULL || load_options(pg, err, sizeof(err)) != 0) {
        sl_log(ctx, SL_LOG_ERROR, "postgres: %s", pg->label == NULL ? "out of memory" : err);
        free_params(pg);
        free(pg->label);
        free(pg);
        return NULL;
    }
    pg->conns = calloc((size_t)pg->pool_size, sizeof(*pg->conns));
    pg->deliver = event_new(sl_base, -1, 0, pg_on_deliver, pg);
    pg->tick = evtimer_new(sl_base, pg_on_tick, pg);
    if (pg->conns == NULL || pg->deliver == NULL || pg->tick == NULL)
        goto oom;
    for (int i = 0; i < pg->pool_size; i++) {
        pg_conn_init(pg, &pg->conns[i], i + 1);
        if (pg->conns[i].timer == NULL)
            goto oom;
    }
    register_metrics(pg, sl_module_name(ctx), sl_instance_name(ctx));
    if (sl_conn_track(&pg->life, ctx, "postgres pool", pg, destroy, release, ready) != 0)
        goto oom;
    sl_ctx_uses(ctx, SL_USES_POSTGRES);
    pg_enter(pg);
    for (int i = 0; i < pg->pool_size; i++)
        pg_conn_start(&pg->conns[i]);
    pg_leave(pg);
    return pg;
oom:
    sl_log(ctx, SL_LOG_ERROR, "postgres: out of memory");
    destroy(pg);
    return NULL;
}

SL_API void sl_pg_free(sl_pg *pg)
{
    if (pg != NULL)
        sl_conn_free(&pg->life);
}

SL_API int sl_pg_ready(const sl_pg *pg)
{
    return pg != NULL && is_ready(pg);
}

const char *sl_pg_label(const sl_pg *pg)
{
    return pg->label;
}

/* Puts a request in the pool queue, or fails it at once (next loop turn)
 * when no connection is up or the queue is full. */
static void submit(sl_pg *pg, op *o)
{
    pg_enter(pg);
    if (pg->down || pg->njobs >= pg->max_queue) {
        int full = !pg->down;
        if (o->kind == OP_BEGIN) {
            o->tx->begin = NULL;
            pg_tx_fail(o->tx, full ? "queue full" : pg->err);
            pg_op_free(o);
        } else if (full) {
            pg_fail_later(pg, o, OUT_OVERFLOW, "postgres queue full (max_queue %lld)",
                          pg->max_queue);
        } else {
            pg_fail_later(pg, o, OUT_UNAVAILABLE, "postgres unavailable: %s", pg->err);
        }
        pg_leave(pg);
        return;
    }
    pg_push_back(&pg->jobs, &pg->jobs_tail, o);
    pg->njobs++;
    pg_arm_tick(pg);
    for (int i = 0; i < pg->pool_size && pg->jobs != NULL; i++)
        pg_conn_next(&pg->conns[i]);
    pg_leave(pg);
}

static int bad_args(const char *sql, int nparams, const char *const *params)
{
    return sql == NULL || nparams < 0 || nparams > MAX_PARAMS || (nparams > 0 && params == NULL);
}

SL_API int sl_pg_query(sl_pg *pg, const char *sql, int nparams, const char *const *params,
                       sl_pg_fn fn, void *arg)
{
    op *o;

    if (pg == NULL || pg->life.freeing || bad_args(sql, nparams, params))
        return -1;
    o = pg_op_new(OP_QUERY, sql, nparams, params, fn, arg);
    if (o == NULL)
        return -1;
    o->deadline = sl_now() + pg->query_timeout;
    pg_trace_statement(pg, o);
    submit(pg, o);
    return 0;
}

SL_API const sl_pg_stmt *sl_pg_prepare(sl_pg *pg, const char *name, const char *sql)
{
    sl_pg_stmt *st;

    if (pg == NULL || pg->life.freeing || !pg_stmt_name_ok(name) || sql == NULL)
        return NULL;
    st = pg_stmt_find(pg->stmts, name);
    if (st != NULL)
        return strcmp(st->sql, sql) == 0 ? st : NULL;
    /* Room in every pool connection's set now, so that recording a
     * statement as prepared can never fail later. */
    for (int i = 0; i < pg->pool_size; i++)
        if (pg_set_reserve(&pg->conns[i].prepared, (size_t)pg->nstmts + 1) != 0)
            return NULL;
    st = pg_stmt_new(pg, pg->nstmts, name, sql);
    if (st == NULL)
        return NULL;
    pg_trace_stmt(st);
    st->next = pg->stmts;
    pg->stmts = st;
    pg->nstmts++;
    return st;
}

static op *exec_op(const sl_pg *pg, const sl_pg_stmt *stmt, int nparams, const char *const *params,
                   sl_pg_fn fn, void *arg)
{
    op *o;

    if (stmt == NULL || stmt->pg != pg || bad_args("", nparams, params))
        return NULL;
    o = pg_op_new(OP_EXEC, NULL, nparams, params, fn, arg);
    if (o != NULL)
        o->stmt = stmt;
    return o;
}

SL_API int sl_pg_exec(sl_pg *pg, const sl_pg_stmt *stmt, int nparams, const char *const *params,
                      sl_pg_fn fn, void *arg)
{
    op *o;

    if (pg == NULL || pg->life.freeing || (o = exec_op(pg, stmt, nparams, params, fn, arg)) == NULL)
        return -1;
    o->deadline = sl_now() + pg->query_timeout;
    pg_trace_statement(pg, o);
    submit(pg, o);
    return 0;
}

static sl_pg_tx *tx_begin(sl_pg *pg, int unbounded)
{
    sl_pg_tx *tx;
    op *b;
    char begin[PG_TRACE_BEGIN_MAX];

    if (pg == NULL || pg->life.freeing)
        return NULL;
    tx = calloc(1, sizeof(*tx));
    if (tx == NULL)
        return NULL;
    tx->pg = pg;
    pg_trace_tx_begin(pg, tx, begin);
    b = pg_op_new(OP_BEGIN, begin, 0, NULL, NULL, NULL);
    if (b == NULL) {
        pg_trace_tx_end(tx);
        free(tx);
        return NULL;
    }
    tx->unbounded = unbounded;
    tx->deadline = sl_now() + pg->tx_timeout;
    tx->next = pg->txs;
    pg->txs = tx;
    b->internal = 1;
    b->tx = tx;
    if (!unbounded)
        b->deadline = sl_now() + pg->query_timeout;
    tx->begin = b;
    submit(pg, b);
    return tx;
}

SL_API sl_pg_tx *sl_pg_tx_begin(sl_pg *pg)
{
    return tx_begin(pg, 0);
}

sl_pg_tx *sl_pg_tx_begin_unbounded(sl_pg *pg)
{
    return tx_begin(pg, 1);
}

/* Queues a statement of the transaction, or fails it at once when the
 * transaction was already rolled back. */
static int tx_add(sl_pg_tx *tx, op *o)
{
    sl_pg *pg = tx->pg;

    pg_enter(pg);
    o->tx = tx;
    pg_trace_statement(pg, o);
    if (!tx->unbounded && !o->ends_tx)
        o->deadline = sl_now() + pg->query_timeout;
    if (tx->failed && (tx->c == NULL || !o->ends_tx)) {
        if (o->ends_tx && o->kind == OP_ROLLBACK)
            pg_fail_later(pg, o, OUT_OK, NULL);
        else if (o->ends_tx)
            pg_fail_later(pg, o, OUT_ABORTED, "transaction rolled back: %s", tx->err);
        else
            pg_fail_later(pg, o, OUT_ABORTED, "not run, transaction rolled back: %s", tx->err);
    } else {
        pg_push_back(&tx->head, &tx->tail, o);
        pg_arm_tick(pg);
        if (tx->c != NULL)
            pg_conn_next(tx->c);
    }
    pg_leave(pg);
    return 0;
}

SL_API int sl_pg_tx_query(sl_pg_tx *tx, const char *sql, int nparams, const char *const *params,
                          sl_pg_fn fn, void *arg)
{
    op *o;

    if (tx == NULL || tx->ended || tx->pg->life.freeing || bad_args(sql, nparams, params))
        return -1;
    o = pg_op_new(OP_QUERY, sql, nparams, params, fn, arg);
    return o != NULL ? tx_add(tx, o) : -1;
}

SL_API int sl_pg_tx_exec(sl_pg_tx *tx, const sl_pg_stmt *stmt, int nparams,
                         const char *const *params, sl_pg_fn fn, void *arg)
{
    op *o;

    if (tx == NULL || tx->ended || tx->pg->life.freeing ||
        (o = exec_op(tx->pg, stmt, nparams, params, fn, arg)) == NULL)
        return -1;
    return tx_add(tx, o);
}

int sl_pg_tx_script(sl_pg_tx *tx, const char *sql, sl_pg_fn fn, void *arg)
{
    op *o;

    if (tx == NULL || tx->ended || tx->pg->life.freeing || sql == NULL)
        return -1;
    o = pg_op_new(OP_SCRIPT, sql, 0, NULL, fn, arg);
    return o != NULL ? tx_add(tx, o) : -1;
}

void sl_pg_tx_own(sl_pg_tx *tx, void *obj, void (*free_fn)(void *))
{
    tx->owned = obj;
    tx->owned_free = free_fn;
}

static int tx_end(sl_pg_tx *tx, op_kind kind, sl_pg_fn fn, void *arg)
{
    op *o;

    if (tx == NULL || tx->ended || tx->pg->life.freeing)
        return -1;
    o = pg_op_new(kind, kind == OP_COMMIT ? "COMMIT" : "ROLLBACK", 0, NULL, fn, arg);
    if (o == NULL)
        return -1;
    o->ends_tx = 1;
    tx->ended = 1;
    return tx_add(tx, o);
}

SL_API int sl_pg_tx_commit(sl_pg_tx *tx, sl_pg_fn fn, void *arg)
{
    return tx_end(tx, OP_COMMIT, fn, arg);
}

SL_API int sl_pg_tx_rollback(sl_pg_tx *tx, sl_pg_fn fn, void *arg)
{
    return tx_end(tx, OP_ROLLBACK, fn, arg);
}

/* The entry point lives here, with the rest of the API, and not in
 * migrate.c: sluiced links the core as a static library, which brings in
 * only the objects something references, and no core code calls the
 * runner but this. */
SL_API int sl_pg_migrate(sl_pg *pg, const char *module, const sl_pg_migration *migrations, size_t n,
                         sl_pg_migrate_fn fn, void *arg)
{
    return sl_pg_migrate_start(pg, module, migrations, n, fn, arg);
}

/* ---------------------------------------------------------------- listen */

SL_API sl_pg_listener *sl_pg_listen(sl_pg *pg, const char *channel, sl_pg_notify_fn fn, void *arg)
{
    sl_pg_listener *l;

    if (pg == NULL || pg->life.freeing || channel == NULL || channel[0] == '\0' || fn == NULL)
        return NULL;
    l = calloc(1, sizeof(*l));
    if (l == NULL || (l->channel = strdup(channel)) == NULL) {
        free(l);
        return NULL;
    }
    if (pg->lconn == NULL) {
        pg->lconn = calloc(1, sizeof(*pg->lconn));
        if (pg->lconn != NULL)
            pg_conn_init(pg, pg->lconn, 0);
        if (pg->lconn == NULL || pg->lconn->timer == NULL) {
            free(pg->lconn);
            pg->lconn = NULL;
            free(l->channel);
            free(l);
            return NULL;
        }
    }
    l->pg = pg;
    l->fn = fn;
    l->arg = arg;
    l->next = pg->listeners;
    pg->listeners = l;
    pg_enter(pg);
    if (pg->lconn->state == C_DOWN && !evtimer_pending(pg->lconn->timer, NULL))
        pg_conn_start(pg->lconn); /* its LISTENs are queued once it is up */
    else
        pg_listen_queue(pg->lconn, OP_LISTEN, l, channel);
    pg_leave(pg);
    return l;
}

SL_API void sl_pg_unlisten(sl_pg_listener *l)
{
    sl_pg *pg;
    conn *c;
    int others = 0;

    if (l == NULL || l->dead)
        return;
    pg = l->pg;
    c = pg->lconn;
    l->dead = 1;
    /* A LISTEN still queued or in flight must not call it back. */
    for (op *o = c->own; o != NULL; o = o->next)
        if (o->listener == l)
            o->listener = NULL;
    if (c->cur != NULL && c->cur->listener == l)
        c->cur->listener = NULL;
    for (sl_pg_listener *p = pg->listeners; p != NULL; p = p->next)
        others += !p->dead && strcmp(p->channel, l->channel) == 0;
    pg_enter(pg);
    if (!others)
        pg_listen_queue(c, OP_UNLISTEN, NULL, l->channel);
    pg_leave(pg); /* unlinks and frees it unless inside a callback */
}

SL_API int sl_pg_listening(const sl_pg_listener *l)
{
    return l != NULL && !l->dead && l->active;
}

SL_API unsigned long long sl_pg_epoch(const sl_pg *pg)
{
    return pg != NULL ? pg->epoch : 0;
}

/* --------------------------------------------------------------- results */

/* sl_pg_result is libpq's PGresult under a name modules can see. */
static const PGresult *pq(const sl_pg_result *res)
{
    return (const PGresult *)(const void *)res;
}

SL_API int sl_pg_nrows(const sl_pg_result *res)
{
    return res != NULL ? PQntuples(pq(res)) : 0;
}

SL_API int sl_pg_ncols(const sl_pg_result *res)
{
    return res != NULL ? PQnfields(pq(res)) : 0;
}

SL_API const char *sl_pg_colname(const sl_pg_result *res, int col)
{
    return res != NULL ? PQfname(pq(res), col) : NULL;
}

SL_API int sl_pg_colnum(const sl_pg_result *res, const char *name)
{
    /* PQfnumber folds unquoted names to lower case; exact names here. */
    if (res == NULL || name == NULL)
        return -1;
    for (int i = 0; i < PQnfields(pq(res)); i++)
        if (strcmp(PQfname(pq(res), i), name) == 0)
            return i;
    return -1;
}

SL_API const char *sl_pg_value(const sl_pg_result *res, int row, int col)
{
    const PGresult *r = pq(res);

    if (res == NULL || row < 0 || col < 0 || row >= PQntuples(r) || col >= PQnfields(r) ||
        PQgetisnull(r, row, col))
        return NULL;
    return PQgetvalue(r, row, col);
}

SL_API long long sl_pg_affected(const sl_pg_result *res)
{
    const char *n =
            res != NULL ? PQcmdTuples((PGresult *)(void *)res) /* not const in libpq */ : "";

    return n[0] != '\0' ? strtoll(n, NULL, 10) : -1;
}

SL_API const char *sl_pg_sqlstate(const sl_pg_result *res)
{
    const char *s = res != NULL ? PQresultErrorField(pq(res), PG_DIAG_SQLSTATE) : NULL;

    return s != NULL ? s : "";
}
