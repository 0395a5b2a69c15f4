/*
 * redis.c - the [redis] section and the handle built from it: the options,
 * the url and its check, and a handle's creation, metrics, readiness and
 * destruction.  The connection is in redis_conn.c, commands in redis_cmd.c.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "connectors/connector.h"
#include "daemon/core.h"
#include "daemon/log.h"
#include "metrics/metrics.h"
#include "redis.h"
#include "redis_int.h"
#include "conf/section.h"
#include <sluice/redis.h>

static const sl_option redis_options[] = {
    { "url", SL_OPT_STRING, "redis://127.0.0.1:6379",
      "server address, redis://[[user]:password@]host[:port][/db]", 0, 0, NULL },
    { "password_file", SL_OPT_STRING, "",
      "file whose first line is the password (AUTH), instead of one in the url", 0, 0, NULL },
    { "connect_timeout", SL_OPT_DURATION, "2s",
      "how long connecting may take, up to the first PONG", 0.001, 300, NULL },
    { "command_timeout", SL_OPT_DURATION, "5s",
      "how long a command may wait for its reply; on expiry the connection is reset "
      "(must exceed any blocking command's own timeout)",
      0.001, 3600, NULL },
    { "reconnect_max", SL_OPT_DURATION, "5s",
      "longest wait between reconnect attempts (the wait doubles from 100ms)", 0.1, 3600, NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

/* ------------------------------------------------------------------- url */

int sl_redis_url_parse(const char *url, sl_redis_url *out, char *err, size_t errlen)
{
    const char *p, *at, *host, *hend, *slash;
    long v;
    char *end;

    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (strncasecmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "\"%s\" does not start with redis://", url);
        return -1;
    }
    p = url + 8;
    slash = strchr(p, '/');
    at = memchr(p, '@', slash != NULL ? (size_t)(slash - p) : strlen(p));
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon != NULL ? (size_t)(colon - p) : 0;
        size_t plen = colon != NULL ? (size_t)(at - colon - 1) : (size_t)(at - p);
        if (ulen >= sizeof(out->user) || plen >= sizeof(out->password)) {
            snprintf(err, errlen, "user or password too long in the redis url");
            return -1;
        }
        memcpy(out->user, p, ulen);
        memcpy(out->password, colon != NULL ? colon + 1 : p, plen);
        p = at + 1;
    }
    if (*p == '[') { /* [v6 address] */
        host = p + 1;
        hend = strchr(host, ']');
        if (hend == NULL) {
            snprintf(err, errlen, "unterminated [address] in \"%s\"", url);
            return -1;
        }
        p = hend + 1;
    } else {
        host = p;
        hend = host + strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789-._");
        p = hend;
    }
    if (hend == host || (size_t)(hend - host) >= sizeof(out->host)) {
        snprintf(err, errlen, "no usable host in \"%s\"", url);
        return -1;
    }
    memcpy(out->host, host, (size_t)(hend - host));
    if (*p == ':') {
        v = strtol(p + 1, &end, 10);
        if (end == p + 1 || v < 1 || v > 65535 || (*end != '\0' && *end != '/')) {
            snprintf(err, errlen, "bad port in \"%s\"", url);
            return -1;
        }
        out->port = (int)v;
        p = end;
    }
    if (*p == '/' && p[1] != '\0') {
        v = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end != '\0' || v < 0 || v > INT_MAX) {
            snprintf(err, errlen, "bad database number in \"%s\"", url);
            return -1;
        }
        out->db = (int)v;
    } else if (*p != '\0' && strcmp(p, "/") != 0) {
        snprintf(err, errlen, "unexpected \"%s\" in \"%s\"", p, url);
        return -1;
    }
    return 0;
}

static int redis_check(const sl_optset *opts, const char *file, sl_errors *errs)
{
    const sl_optval *v = sl_optset_get(opts, "url");
    sl_redis_url u;
    char err[256];

    int rc = sl_conn_check_secret(opts, "redis", "password_file", file, errs);

    if (v == NULL || sl_redis_url_parse(v->raw, &u, err, sizeof(err)) == 0)
        return rc;
    sl_errors_add(errs, file, v->line, "[redis] url: %s", err);
    return -1;
}

const sl_section_schema sl_redis_schema = {
    "redis",       "the Redis connection of modules that use Redis",
    redis_options, SL_USES_REDIS,
    redis_check,   NULL,
    NULL,
};

/* ------------------------------------------------------------ lifetime */

/* In the order of `outcome` in redis_int.h. */
static const char *const outcome_names[OUT_N] = { "ok", "error", "unavailable", "failed",
                                                  "timeout" };

static void destroy(void *obj)
{
    sl_redis *r = obj;
    cmd *c;

    if (r->dns_req != NULL) {
        evdns_getaddrinfo_cancel(r->dns_req);
        r->dns_req = NULL;
    }
    if (r->dns != NULL)
        evdns_base_free(r->dns, 0);
    if (r->ac != NULL) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac); /* redis_cmd_on_reply frees the waiting commands silently */
    }
    redis_conn_ev_cleanup(r);
    while ((c = r->head) != NULL) { /* only if hiredis never took them */
        r->head = c->next;
        redis_cmd_free(c);
    }
    while ((c = r->failed) != NULL) {
        r->failed = c->next;
        redis_cmd_free(c);
    }
    if (r->connect_timer != NULL)
        event_free(r->connect_timer);
    if (r->command_timer != NULL)
        event_free(r->command_timer);
    if (r->retry_timer != NULL)
        event_free(r->retry_timer);
    if (r->deliver != NULL)
        event_free(r->deliver);
    redis_set_up(r, 0);
    sl_metric_release(r->m_latency);
    sl_metric_release(r->m_commands);
    sl_metric_release(r->m_reconnects);
    sl_metric_release(r->m_up);
    free(r->label);
    free(r);
}

/* The instance's release: it must not call module code, and does not. */
static void release(void *obj)
{
    sl_redis *r = obj;

    sl_conn_released(&r->life);
}

static int ready(void *obj, char *why, size_t whylen)
{
    const sl_redis *r = obj;

    if (r->state == ST_UP)
        return 1;
    snprintf(why, whylen, "redis %s:%d %s%s%s", r->url.host, r->url.port,
             r->state == ST_DOWN ? "unavailable" : "connecting", r->err[0] != '\0' ? ": " : "",
             r->err);
    return 0;
}

static const double latency_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                         0.05,   0.1,     0.25,   0.5,   1,      2.5,   5 };

static void register_metrics(sl_redis *r, const char *module, const char *instance)
{
    r->m_latency = sl_metric_register(SL_METRIC_HISTOGRAM, "sluice_redis_command_duration_seconds",
                                      "Time from sending a Redis command to its reply", "module",
                                      latency_bounds,
                                      sizeof(latency_bounds) / sizeof(latency_bounds[0]), instance);
    r->m_commands = sl_metric_register(SL_METRIC_COUNTER, "sluice_redis_commands_total",
                                       "Redis commands by outcome (ok, error reply, unavailable, "
                                       "failed: connection lost, timeout)",
                                       "module,outcome", NULL, 0, instance);
    r->m_reconnects = sl_metric_register(SL_METRIC_COUNTER, "sluice_redis_reconnects_total",
                                         "Attempts to re-establish a Redis connection", "module",
                                         NULL, 0, instance);
    r->m_up = sl_metric_register(SL_METRIC_GAUGE, "sluice_redis_up",
                                 "1 while the Redis connection is established", "module", NULL, 0,
                                 instance);
    if (r->m_latency != NULL)
        r->s_latency = sl_series_of(r->m_latency, module);
    if (r->m_reconnects != NULL)
        r->s_reconnects = sl_series_of(r->m_reconnects, module);
    if (r->m_up != NULL)
        r->s_up = sl_series_of(r->m_up, module);
    for (int i = 0; i < OUT_N && r->m_commands != NULL; i++)
        r->s_out[i] = sl_series_of(r->m_commands, module, outcome_names[i]);
}

/* The [redis] options of the current generation, or the defaults. */
static int load_options(sl_redis *r, char *err, size_t errlen)
{
    sl_optset defaults = { NULL, 0 };
    const sl_optset *set = sl_conn_options("redis", redis_options, &defaults, err, errlen);
    int rc;

    if (set == NULL)
        return -1;
    rc = sl_redis_url_parse(sl_optset_get(set, "url")->raw, &r->url, err, errlen);
    if (rc == 0 && sl_optset_get(set, "password_file")->raw[0] != '\0')
        rc = sl_conn_read_secret(sl_optset_get(set, "password_file")->raw, r->url.password,
                                 sizeof(r->url.password), err, errlen);
    r->connect_timeout = sl_optset_get(set, "connect_timeout")->d;
    r->command_timeout = sl_optset_get(set, "command_timeout")->d;
    r->reconnect_max = sl_optset_get(set, "reconnect_max")->d;
    sl_optset_free(&defaults);
    return rc;
}

SL_API sl_redis *sl_redis_new(sl_ctx *ctx)
{
    if (sl_ctx_refuse(ctx, "a Redis handle"))
        return NULL;
    sl_redis *r = calloc(1, sizeof(*r));
    char err[256];

    if (r == NULL) {
        sl_log(ctx, SL_LOG_ERROR, "redis: out of memory");
        return NULL;
    }
    r->label = strdup(ctx->label != NULL ? ctx->label : sl_module_name(ctx));
    if (r->label == NULL || load_options(r, err, sizeof(err)) != 0) {
        sl_log(ctx, SL_LOG_ERROR, "redis: %s", r->label == NULL ? "out of memory" : err);
        free(r->label);
        free(r);
        return NULL;
    }
    r->backoff = BACKOFF_FIRST;
    r->connect_timer = evtimer_new(sl_base, redis_conn_on_connect_timeout, r);
    r->command_timer = evtimer_new(sl_base, redis_conn_on_command_timeout, r);
    r->retry_timer = evtimer_new(sl_base, redis_conn_on_retry, r);
    r->deliver = event_new(sl_base, -1, 0, redis_cmd_on_deliver, r);
    if (r->connect_timer == NULL || r->command_timer == NULL || r->retry_timer == NULL ||
        r->deliver == NULL) {
        sl_log(ctx, SL_LOG_ERROR, "redis: out of memory");
        destroy(r);
        return NULL;
    }
    register_metrics(r, sl_module_name(ctx), sl_instance_name(ctx));
    if (sl_conn_track(&r->life, ctx, "redis connection", r, destroy, release, ready) != 0) {
        destroy(r);
        return NULL;
    }
    sl_ctx_uses(ctx, SL_USES_REDIS);
    r->state = ST_DOWN;
    sl_conn_enter(&r->life);
    redis_conn_start(r);
    sl_conn_leave(&r->life);
    return r;
}

SL_API void sl_redis_free(sl_redis *r)
{
    if (r != NULL)
        sl_conn_free(&r->life);
}

SL_API int sl_redis_connected(const sl_redis *r)
{
    return r != NULL && r->state == ST_UP;
}
