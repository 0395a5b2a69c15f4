/*
 * clickhouse.c - the [clickhouse] section and the handle built from it:
 * the options and their check, curl's one-time set-up, and a handle's
 * creation, metrics, readiness and destruction.  Requests are in
 * clickhouse_req.c, what modules call in clickhouse_api.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <event2/event.h>

#include "http/chttp.h"
#include "clickhouse.h"
#include "clickhouse_int.h"
#include "connectors/connector.h"
#include "daemon/core.h"
#include "daemon/log.h"
#include "metrics/metrics.h"
#include "conf/section.h"
#include <sluice/clickhouse.h>

static const sl_option clickhouse_options[] = {
    { "url", SL_OPT_STRING, "http://127.0.0.1:8123", "HTTP interface of the server", 0, 0, NULL },
    { "user", SL_OPT_STRING, "", "user name (HTTP basic auth); empty: the server's default", 0, 0,
      NULL },
    { "password", SL_OPT_STRING, "", "password of `user`", 0, 0, NULL },
    { "password_file", SL_OPT_STRING, "",
      "file whose first line is the password of `user` (instead of `password`, so that the secret "
      "is not in the config)",
      0, 0, NULL },
    { "database", SL_OPT_STRING, "default", "database of unqualified table names", 0, 0, NULL },
    { "cluster", SL_OPT_STRING, "",
      "a cluster of the server's remote_servers: modules create their tables on every node (ON "
      "CLUSTER) as Replicated tables behind Distributed ones, and inserts return once every shard "
      "has its rows; empty: the one server of url",
      0, 0, NULL },
    { "timeout", SL_OPT_DURATION, "30s",
      "how long one attempt of a request may take once sent (waiting for a free connection "
      "does not count)",
      0.001, 86400, NULL },
    { "retries", SL_OPT_INT, "3",
      "further attempts after a failure that may pass (connection refused or broken, overload)", 0,
      100, NULL },
    { "max_connections", SL_OPT_INT, "8",
      "requests sent at once, each on its own kept-alive connection; more wait in turn "
      "(the readiness /ping has one more of its own)",
      1, 1024, NULL },
    { "ping_interval", SL_OPT_DURATION, "2s", "how often GET /ping checks readiness", 0.05, 3600,
      NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

/* ---------------------------------------------------------- the section */

static int check_url(const char *url, char *err, size_t errlen)
{
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        snprintf(err, errlen, "\"%s\" is not an http:// or https:// url", url);
        return -1;
    }
    if (strchr(url, '?') != NULL || strchr(url, '#') != NULL) {
        snprintf(err, errlen, "\"%s\": settings belong in their own options, not in the url", url);
        return -1;
    }
    return 0;
}

/* The cluster and the database go into DDL as names, quoted by modules:
 * identifiers only, so that no quoting can be broken. */
static int check_names(const sl_optset *opts, const char *file, sl_errors *errs)
{
    const sl_optval *cluster = sl_optset_get(opts, "cluster");
    const sl_optval *db = sl_optset_get(opts, "database");

    if (cluster == NULL || cluster->raw[0] == '\0')
        return 0;
    if (!sl_ch_valid_table(cluster->raw) || strchr(cluster->raw, '.') != NULL) {
        sl_errors_add(errs, file, cluster->line,
                      "[clickhouse] cluster: \"%s\" is not a name ([A-Za-z_][A-Za-z0-9_]*)",
                      cluster->raw);
        return -1;
    }
    if (db != NULL && (!sl_ch_valid_table(db->raw) || strchr(db->raw, '.') != NULL)) {
        sl_errors_add(errs, file, db->line,
                      "[clickhouse] database: \"%s\" is not a name ([A-Za-z_][A-Za-z0-9_]*), "
                      "which a cluster needs",
                      db->raw);
        return -1;
    }
    return 0;
}

static int ch_check(const sl_optset *opts, const char *file, sl_errors *errs)
{
    const sl_optval *v = sl_optset_get(opts, "url");
    char err[512];

    int rc = sl_conn_check_secret(opts, "clickhouse", "password_file", file, errs);

    if (check_names(opts, file, errs) != 0)
        rc = -1;
    if (v == NULL || check_url(v->raw, err, sizeof(err)) == 0)
        return rc;
    sl_errors_add(errs, file, v->line, "[clickhouse] url: %s", err);
    return -1;
}

static int ch_prepare(const sl_optset *old, const sl_optset *opts, sl_errors *errs)
{
    char err[256];

    (void)old;
    (void)opts;
    if (sl_chttp_global_init(err, sizeof(err)) == 0)
        return 0;
    sl_errors_add(errs, NULL, 0, "[clickhouse]: %s", err);
    return -1;
}

static void ch_shutdown(void)
{
    sl_chttp_global_cleanup();
}

const sl_section_schema sl_clickhouse_schema = {
    "clickhouse",       "the ClickHouse HTTP connection of modules that use ClickHouse",
    clickhouse_options, SL_USES_CLICKHOUSE,
    ch_check,           ch_prepare,
    ch_shutdown,
};

/* ------------------------------------------------------------ lifetime */

/* In the order of `outcome` in clickhouse_int.h. */
static const char *const outcome_names[OUT_N] = { "ok", "client_error", "server_error",
                                                  "transport_error", "timeout" };

static void destroy(void *obj)
{
    sl_ch *ch = obj;
    req *q;

    while ((q = ch->reqs) != NULL) {
        ch_unlink_req(ch, q);
        if (ch->http != NULL)
            sl_chttp_cancel(ch->http, q->easy);
        ch_req_free(q);
    }
    if (ch->ping != NULL) {
        if (ch->http != NULL)
            sl_chttp_cancel(ch->http, ch->ping->easy);
        ch_req_free(ch->ping);
    }
    sl_chttp_free(ch->http);
    if (ch->ping_timer != NULL)
        event_free(ch->ping_timer);
    curl_slist_free_all(ch->headers);
    if (ch->s_up != NULL)
        sl_series_set(ch->s_up, 0);
    sl_metric_release(ch->m_requests);
    sl_metric_release(ch->m_latency);
    sl_metric_release(ch->m_sent);
    sl_metric_release(ch->m_retries);
    sl_metric_release(ch->m_up);
    free(ch->label);
    free(ch->base);
    free(ch->database);
    free(ch->cluster);
    free(ch->user);
    free(ch->password);
    free(ch);
}

/* The instance's release: calls no module code. */
static void release(void *obj)
{
    sl_ch *ch = obj;

    sl_conn_released(&ch->life);
}

static int ready(void *obj, char *why, size_t whylen)
{
    const sl_ch *ch = obj;

    if (ch->up)
        return 1;
    snprintf(why, whylen, "%s", ch->pinged ? ch->why : "clickhouse: not yet reachable");
    return 0;
}

static const double latency_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1,     2.5,  5,     10,   30 };

static void register_metrics(sl_ch *ch, const char *module, const char *instance)
{
    ch->m_requests = sl_metric_register(SL_METRIC_COUNTER, "sluice_clickhouse_requests_total",
                                        "ClickHouse HTTP request attempts by outcome",
                                        "module,outcome", NULL, 0, instance);
    ch->m_latency =
            sl_metric_register(SL_METRIC_HISTOGRAM, "sluice_clickhouse_request_duration_seconds",
                               "Duration of one ClickHouse HTTP request attempt", "module",
                               latency_bounds, sizeof(latency_bounds) / sizeof(latency_bounds[0]),
                               instance);
    ch->m_sent = sl_metric_register(SL_METRIC_COUNTER, "sluice_clickhouse_sent_bytes_total",
                                    "Request body bytes sent to ClickHouse, retries included",
                                    "module", NULL, 0, instance);
    ch->m_retries = sl_metric_register(SL_METRIC_COUNTER, "sluice_clickhouse_retries_total",
                                       "ClickHouse requests attempted again after a failure",
                                       "module", NULL, 0, instance);
    ch->m_up = sl_metric_register(SL_METRIC_GAUGE, "sluice_clickhouse_up",
                                  "1 while ClickHouse answers /ping", "module", NULL, 0, instance);
    for (int i = 0; i < OUT_N && ch->m_requests != NULL; i++)
        ch->s_out[i] = sl_series_of(ch->m_requests, module, outcome_names[i]);
    if (ch->m_latency != NULL)
        ch->s_latency = sl_series_of(ch->m_latency, module);
    if (ch->m_sent != NULL)
        ch->s_sent = sl_series_of(ch->m_sent, module);
    if (ch->m_retries != NULL)
        ch->s_retries = sl_series_of(ch->m_retries, module);
    if (ch->m_up != NULL)
        ch->s_up = sl_series_of(ch->m_up, module);
}

/* The [clickhouse] options of the current generation, or the defaults. */
static int load_options(sl_ch *ch, long *max_connections, char *err, size_t errlen)
{
    sl_optset defaults = { NULL, 0 };
    const sl_optset *set =
            sl_conn_options("clickhouse", clickhouse_options, &defaults, err, errlen);
    const char *url;
    size_t n;
    int rc = 0;

    if (set == NULL)
        return -1;
    url = sl_optset_get(set, "url")->raw;
    n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (check_url(url, err, errlen) != 0) {
        rc = -1;
    } else {
        ch->base = ch_str_printf("%.*s/", (int)n, url);
        ch->database = strdup(sl_optset_get(set, "database")->raw);
        ch->cluster = strdup(sl_optset_get(set, "cluster")->raw);
        ch->user = strdup(sl_optset_get(set, "user")->raw);
        ch->password = strdup(sl_optset_get(set, "password")->raw);
        if (sl_optset_get(set, "password_file")->raw[0] != '\0' && ch->password != NULL) {
            char secret[SL_SECRET_MAX];
            free(ch->password);
            ch->password = NULL;
            if (sl_conn_read_secret(sl_optset_get(set, "password_file")->raw, secret,
                                    sizeof(secret), err, errlen) != 0) {
                sl_optset_free(&defaults);
                return -1;
            }
            ch->password = strdup(secret);
            memset(secret, 0, sizeof(secret));
        }
        ch->timeout = sl_optset_get(set, "timeout")->d;
        ch->ping_interval = sl_optset_get(set, "ping_interval")->d;
        ch->retries = (long)sl_optset_get(set, "retries")->i;
        *max_connections = (long)sl_optset_get(set, "max_connections")->i;
        if (ch->base == NULL || ch->database == NULL || ch->cluster == NULL || ch->user == NULL ||
            ch->password == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
    }
    sl_optset_free(&defaults);
    return rc;
}

SL_API sl_ch *sl_ch_new(sl_ctx *ctx)
{
    if (sl_ctx_refuse(ctx, "a ClickHouse handle"))
        return NULL;
    sl_ch *ch = calloc(1, sizeof(*ch));
    long max_connections = 8;
    char err[512];

    if (ch == NULL) {
        sl_log(ctx, SL_LOG_ERROR, "clickhouse: out of memory");
        return NULL;
    }
    ch->label = strdup(ctx->label != NULL ? ctx->label : sl_module_name(ctx));
    if (ch->label == NULL || load_options(ch, &max_connections, err, sizeof(err)) != 0 ||
        sl_chttp_global_init(err, sizeof(err)) != 0) {
        sl_log(ctx, SL_LOG_ERROR, "clickhouse: %s", ch->label == NULL ? "out of memory" : err);
        destroy(ch);
        return NULL;
    }
    ch->max_connections = max_connections;
    /* One more than requests may use: the /ping's own. */
    ch->http = sl_chttp_new(sl_base, max_connections + 1);
    ch->ping_timer = evtimer_new(sl_base, ch_on_ping_timer, ch);
    /* No "Expect: 100-continue": it costs a round trip per insert. */
    ch->headers = curl_slist_append(NULL, "Expect:");
    if (ch->http == NULL || ch->ping_timer == NULL || ch->headers == NULL) {
        sl_log(ctx, SL_LOG_ERROR, "clickhouse: out of memory");
        destroy(ch);
        return NULL;
    }
    register_metrics(ch, sl_module_name(ctx), sl_instance_name(ctx));
    if (sl_conn_track(&ch->life, ctx, "clickhouse connection", ch, destroy, release, ready) != 0) {
        destroy(ch);
        return NULL;
    }
    sl_ctx_uses(ctx, SL_USES_CLICKHOUSE);
    ch_schedule_ping(ch, 0);
    return ch;
}

SL_API void sl_ch_free(sl_ch *ch)
{
    if (ch != NULL)
        sl_conn_free(&ch->life);
}

SL_API int sl_ch_ready(const sl_ch *ch)
{
    return ch != NULL && ch->up;
}
