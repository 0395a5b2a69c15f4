/*
 * ctx.c - module instances and what they own.
 *
 * An sl_ctx is one running instance of a module.  Everything the instance
 * obtains from the core is recorded as an sl_resource in its list, so that
 * stopping the instance releases all of it, whatever the module forgot, and
 * the shared object can be closed knowing no callback into it remains.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "core.h"
#include "log.h"
#include "metrics/metrics.h"
#include "redact.h"

sl_ctx *sl_instances;

/* ---------------------------------------------------------------- tracking */

SL_API sl_resource *sl_track(sl_ctx *ctx, const char *kind, void *obj, sl_release_fn release,
                             sl_ready_fn ready)
{
    sl_resource *res;

    if (sl_ctx_refuse(ctx, kind))
        return NULL;
    res = calloc(1, sizeof(*res));
    if (res == NULL) {
        sl_log(ctx, SL_LOG_ERROR, "out of memory tracking a %s", kind);
        return NULL;
    }
    res->owner = ctx;
    res->kind = kind;
    res->obj = obj;
    res->release = release;
    res->ready = ready;
    res->next = ctx->resources;
    if (ctx->resources != NULL)
        ctx->resources->prev = res;
    ctx->resources = res;
    ctx->nresources++;
    return res;
}

SL_API void sl_untrack(sl_ctx *ctx, sl_resource *res)
{
    if (res == NULL)
        return;
    if (res->prev != NULL)
        res->prev->next = res->next;
    else
        ctx->resources = res->next;
    if (res->next != NULL)
        res->next->prev = res->prev;
    ctx->nresources--;
    free(res);
}

/* Releases every resource, newest first, so that what was built on top of
 * something (a request on a route) goes before it. */
static void release_all(sl_ctx *ctx)
{
    while (ctx->resources != NULL) {
        sl_resource *res = ctx->resources;
        sl_release_fn release = res->release;
        void *obj = res->obj;
        sl_untrack(ctx, res);
        if (release != NULL)
            release(obj);
    }
}

/* Names what an instance still owns, e.g. "2 timer, 1 request". */
static void describe_resources(const sl_ctx *ctx, char *buf, size_t len)
{
    const char *kinds[16];
    size_t counts[16], nk = 0, used = 0;

    for (const sl_resource *r = ctx->resources; r != NULL; r = r->next) {
        size_t i;
        for (i = 0; i < nk; i++)
            if (strcmp(kinds[i], r->kind) == 0)
                break;
        if (i == nk) {
            if (nk == 16)
                continue;
            kinds[nk] = r->kind;
            counts[nk++] = 0;
        }
        counts[i]++;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < nk && used < len; i++) {
        int n = snprintf(buf + used, len - used, "%s%zu %s", i ? ", " : "", counts[i], kinds[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* --------------------------------------------------------------- lifecycle */

/* "name" or "name/instance", for logs; malloc'd. */
static char *make_label(const sl_module *mod, const char *instance)
{
    size_t lablen = strlen(mod->name) + strlen(instance) + 2;
    char *label = malloc(lablen);

    if (label == NULL)
        return NULL;
    if (instance[0] != '\0')
        snprintf(label, lablen, "%s/%s", mod->name, instance);
    else
        snprintf(label, lablen, "%s", mod->name);
    return label;
}

sl_ctx *sl_instance_new(sl_dso *dso, const char *instance, sl_optset *opts,
                        sl_listener *const *listeners, size_t nlisteners)
{
    sl_ctx *ctx = calloc(1, sizeof(*ctx));

    if (ctx == NULL)
        return NULL;
    ctx->instance = strdup(instance);
    ctx->label = make_label(dso->mod, instance);
    ctx->listeners = nlisteners ? calloc(nlisteners, sizeof(*ctx->listeners)) : NULL;
    if (ctx->instance == NULL || ctx->label == NULL || (nlisteners && ctx->listeners == NULL)) {
        free(ctx->instance);
        free(ctx->label);
        free(ctx->listeners);
        free(ctx);
        return NULL;
    }
    for (size_t i = 0; i < nlisteners; i++) {
        ctx->listeners[i] = listeners[i];
        sl_listener_ref(listeners[i]);
    }
    ctx->nlisteners = nlisteners;
    ctx->opts = *opts;
    opts->v = NULL;
    opts->n = 0;
    ctx->dso = dso;
    ctx->mod = dso->mod;
    sl_dso_ref(dso);
    ctx->state = SL_INST_NEW;
    ctx->next = sl_instances;
    sl_instances = ctx;
    return ctx;
}

int sl_instance_check(sl_dso *dso, const char *instance, const sl_optset *opts,
                      const sl_check_site *site)
{
    sl_ctx ctx = { 0 };
    size_t before = site->errs->n;
    int rc;

    if (dso->mod->check == NULL)
        return 0;
    ctx.dso = dso;
    ctx.mod = dso->mod;
    ctx.instance = (char *)instance; /* read only, like every field here */
    ctx.label = make_label(dso->mod, instance);
    if (ctx.label == NULL) {
        sl_errors_add(site->errs, site->file, site->line, "out of memory");
        return -1;
    }
    ctx.opts = *opts; /* borrowed: never freed through this context */
    ctx.state = SL_INST_NEW;
    ctx.check = site;
    rc = dso->mod->check(&ctx);
    if (rc != 0 && site->errs->n == before)
        sl_errors_add(site->errs, site->file, site->line, "%s not valid (check() gave no reason)",
                      site->section);
    free(ctx.label);
    return rc != 0 || site->errs->n > before ? -1 : 0;
}

int sl_ctx_refuse(sl_ctx *ctx, const char *what)
{
    const sl_check_site *site = ctx->check;

    if (site == NULL)
        return 0;
    sl_errors_add(site->errs, site->file, site->line,
                  "%s check() tried to acquire %s, which it may not (a bug in module %s)",
                  site->section, what, ctx->mod->name);
    return 1;
}

int sl_instance_start(sl_ctx *ctx)
{
    ctx->ready = 1;
    ctx->fail_reason[0] = '\0';
    ctx->state = SL_INST_RUNNING;
    if (ctx->mod->start(ctx) != 0) {
        sl_log_core(SL_LOG_ERROR, ctx->label, "failed to start: %s",
                    ctx->fail_reason[0] ? ctx->fail_reason : "(no reason given)");
        release_all(ctx);
        ctx->state = SL_INST_STOPPED;
        return -1;
    }
    sl_log_core(SL_LOG_INFO, ctx->label, "started");
    return 0;
}

static void report_stopped(evutil_socket_t fd, short what, void *arg)
{
    sl_ctx *ctx = arg;
    (void)fd;
    (void)what;
    if (ctx->on_stopped != NULL)
        ctx->on_stopped(ctx, ctx->on_stopped_arg);
}

static void finish_stop(sl_ctx *ctx, int timed_out)
{
    char owned[256];

    if (ctx->state != SL_INST_STOPPING)
        return;
    if (ctx->drain_timer != NULL) {
        event_free(ctx->drain_timer);
        ctx->drain_timer = NULL;
    }
    /* A module may leave routes and metrics for the core to release; the
     * core only has to say something when it had to cut work short. */
    if (timed_out && ctx->nresources > 0) {
        describe_resources(ctx, owned, sizeof(owned));
        sl_log_core(SL_LOG_WARN, ctx->label,
                    "did not finish draining in time; the core released what it still owned: %s",
                    owned);
    } else if (ctx->nresources > 0) {
        describe_resources(ctx, owned, sizeof(owned));
        sl_log_core(SL_LOG_DEBUG, ctx->label, "released on stop: %s", owned);
    }
    release_all(ctx);
    ctx->state = SL_INST_STOPPED;
    sl_log_core(SL_LOG_INFO, ctx->label, "stopped");
    /* sl_stopped() is usually called from module code, which must not be
     * unmapped under its own feet: whoever waits for the stop (and may
     * dlclose) runs from the loop, after the module returned. */
    if (event_base_once(sl_base, -1, EV_TIMEOUT, report_stopped, ctx, &(struct timeval){ 0, 0 }) !=
        0)
        report_stopped(-1, 0, ctx);
}

static void drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    finish_stop(arg, 1);
}

SL_API void sl_stopped(sl_ctx *ctx)
{
    finish_stop(ctx, 0);
}

/* Arms ctx->drain_timer: `fn` runs `timeout` seconds from now unless the
 * instance finishes first.  -1 when it could not be armed. */
static int arm_deadline(sl_ctx *ctx, double timeout, event_callback_fn fn)
{
    struct timeval tv;

    tv.tv_sec = (time_t)timeout;
    tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) * 1e6);
    ctx->drain_timer = evtimer_new(sl_base, fn, ctx);
    return ctx->drain_timer != NULL && evtimer_add(ctx->drain_timer, &tv) == 0 ? 0 : -1;
}

void sl_instance_stop(sl_ctx *ctx, double timeout, sl_stopped_fn done, void *arg)
{
    if (ctx->state != SL_INST_RUNNING) {
        if (done != NULL)
            done(ctx, arg);
        return;
    }
    ctx->state = SL_INST_STOPPING;
    ctx->on_stopped = done;
    ctx->on_stopped_arg = arg;
    /* Without the deadline the drain still ends when the module says so. */
    if (arm_deadline(ctx, timeout, drain_timeout) != 0)
        sl_log_core(SL_LOG_WARN, ctx->label, "cannot arm the drain timeout");
    sl_log_core(SL_LOG_INFO, ctx->label, "stopping");
    if (ctx->mod->stop != NULL)
        ctx->mod->stop(ctx); /* may call sl_stopped() at once */
    else
        finish_stop(ctx, 0);
}

/* --init-schema runs an instance only between init_schema() and
 * sl_schema_done(); its end reuses the stop path, which releases what the
 * instance acquired and reports to `done` from the loop. */
static void schema_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sl_schema_done(arg, "timed out");
}

int sl_instance_init_schema(sl_ctx *ctx, double timeout, sl_stopped_fn done, void *arg)
{
    ctx->ready = 1;
    ctx->fail_reason[0] = '\0';
    ctx->schema_only = 1;
    ctx->schema_failed = 0;
    ctx->state = SL_INST_RUNNING;
    ctx->on_stopped = done;
    ctx->on_stopped_arg = arg;
    if (arm_deadline(ctx, timeout, schema_timeout) != 0) {
        sl_log_core(SL_LOG_ERROR, ctx->label, "cannot arm the schema timer");
        if (ctx->drain_timer != NULL)
            event_free(ctx->drain_timer);
        ctx->drain_timer = NULL;
        release_all(ctx);
        ctx->state = SL_INST_STOPPED;
        return -1;
    }
    sl_log_core(SL_LOG_INFO, ctx->label, "applying its schema");
    if (ctx->mod->init_schema(ctx) != 0) {
        sl_log_core(SL_LOG_ERROR, ctx->label, "cannot apply its schema: %s",
                    ctx->fail_reason[0] ? ctx->fail_reason : "(no reason given)");
        event_free(ctx->drain_timer);
        ctx->drain_timer = NULL;
        release_all(ctx);
        ctx->state = SL_INST_STOPPED;
        return -1;
    }
    return 0;
}

SL_API void sl_schema_done(sl_ctx *ctx, const char *err)
{
    if (!ctx->schema_only || ctx->state != SL_INST_RUNNING)
        return; /* not in --init-schema, or already done */
    if (err != NULL) {
        ctx->schema_failed = 1;
        snprintf(ctx->fail_reason, sizeof(ctx->fail_reason), "%s", err);
    }
    ctx->state = SL_INST_STOPPING;
    finish_stop(ctx, 0);
}

void sl_instance_free(sl_ctx *ctx)
{
    if (ctx->state == SL_INST_RUNNING || ctx->state == SL_INST_STOPPING)
        return; /* a caller bug; leaking beats a use after free */
    release_all(ctx);
    for (sl_ctx **pp = &sl_instances; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == ctx) {
            *pp = ctx->next;
            break;
        }
    }
    for (size_t i = 0; i < ctx->nlisteners; i++)
        sl_listener_put(ctx->listeners[i]);
    free(ctx->listeners);
    sl_optset_free(&ctx->opts);
    sl_dso_put(ctx->dso);
    free(ctx->instance);
    free(ctx->label);
    free(ctx);
}

int sl_instance_ready(sl_ctx *ctx, char *why, size_t whylen)
{
    if (ctx->state != SL_INST_RUNNING) {
        snprintf(why, whylen, "not running");
        return 0;
    }
    if (!ctx->ready) {
        snprintf(why, whylen, "%s", ctx->ready_why[0] ? ctx->ready_why : "not ready");
        return 0;
    }
    for (sl_resource *r = ctx->resources; r != NULL; r = r->next) {
        if (r->ready != NULL && !r->ready(r->obj, why, whylen))
            return 0;
    }
    why[0] = '\0';
    return 1;
}

void sl_ctx_uses(sl_ctx *ctx, unsigned connectors)
{
    ctx->uses |= connectors;
}

/* ------------------------------------------------------------- module API */

SL_API int sl_fail(sl_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->fail_reason, sizeof(ctx->fail_reason), fmt, ap);
    va_end(ap);
    if (ctx->check != NULL)
        sl_errors_add(ctx->check->errs, ctx->check->file, ctx->check->line, "%s %s",
                      ctx->check->section, ctx->fail_reason);
    return -1;
}

/* The line `key` was configured at, or 0 when its default was taken. */
static int line_of(const sl_ctx *ctx, const char *key)
{
    for (size_t i = 0; i < ctx->opts.n; i++)
        if (strcmp(ctx->opts.v[i].key, key) == 0)
            return ctx->opts.v[i].line;
    return 0;
}

SL_API int sl_fail_opt(sl_ctx *ctx, const char *key, const char *fmt, ...)
{
    size_t size = sizeof(ctx->fail_reason);
    int n = snprintf(ctx->fail_reason, size, "%s: ", key);
    const char *msg;
    va_list ap;
    int line;

    if (n < 0 || (size_t)n >= size)
        n = 0; /* a key too long to name: the message matters more */
    msg = ctx->fail_reason + n;
    va_start(ap, fmt);
    vsnprintf(ctx->fail_reason + n, size - (size_t)n, fmt, ap);
    va_end(ap);
    if (ctx->check != NULL) {
        /* The same place and label as a bad option value (option.c). */
        line = line_of(ctx, key);
        sl_errors_add(ctx->check->errs, ctx->check->file, line > 0 ? line : ctx->check->line,
                      "%s %s: %s", ctx->check->section, key, msg);
    }
    return -1;
}

SL_API void sl_set_data(sl_ctx *ctx, void *data)
{
    ctx->data = data;
}

SL_API void *sl_data(sl_ctx *ctx)
{
    return ctx->data;
}

SL_API const char *sl_module_name(const sl_ctx *ctx)
{
    return ctx->mod->name;
}

SL_API const char *sl_instance_name(const sl_ctx *ctx)
{
    return ctx->instance;
}

SL_API void sl_set_ready(sl_ctx *ctx, int ready, const char *why)
{
    if (ready != ctx->ready)
        sl_log_core(ready ? SL_LOG_INFO : SL_LOG_WARN, ctx->label, "%s%s%s",
                    ready ? "ready" : "not ready", why ? ": " : "", why ? why : "");
    ctx->ready = ready;
    snprintf(ctx->ready_why, sizeof(ctx->ready_why), "%s", why != NULL ? why : "");
}

SL_API void sl_log(const sl_ctx *ctx, sl_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_log_v(level, ctx->label, fmt, ap);
    va_end(ap);
}

/* Every getter is given a name the module declared; asking for another is a
 * module bug, logged, answered with an empty value rather than a crash. */
static const sl_optval *opt(const sl_ctx *ctx, const char *name)
{
    static const sl_optval empty = { .raw = "" };
    const sl_optval *v = sl_optset_get(&ctx->opts, name);

    if (v == NULL) {
        sl_log_core(SL_LOG_ERROR, ctx->label, "asked for undeclared option '%s'", name);
        return &empty;
    }
    return v;
}

SL_API const char *sl_opt_str(const sl_ctx *ctx, const char *name)
{
    return opt(ctx, name)->raw;
}

SL_API long long sl_opt_int(const sl_ctx *ctx, const char *name)
{
    return opt(ctx, name)->i;
}

SL_API double sl_opt_double(const sl_ctx *ctx, const char *name)
{
    return opt(ctx, name)->d;
}

SL_API int sl_opt_bool(const sl_ctx *ctx, const char *name)
{
    return opt(ctx, name)->i != 0;
}

SL_API double sl_opt_seconds(const sl_ctx *ctx, const char *name)
{
    return opt(ctx, name)->d;
}

SL_API size_t sl_opt_list_len(const sl_ctx *ctx, const char *name)
{
    return opt(ctx, name)->nlist;
}

SL_API const char *sl_opt_list_at(const sl_ctx *ctx, const char *name, size_t i)
{
    const sl_optval *v = opt(ctx, name);
    return i < v->nlist ? v->list[i] : NULL;
}

SL_API void sl_opt_each_prefixed(const sl_ctx *ctx, const char *prefix,
                                 void (*fn)(void *arg, const char *key, const char *value),
                                 void *arg)
{
    /* Both the declared spelling "rdkafka.*" and "rdkafka." are accepted. */
    size_t plen = strlen(prefix);

    if (plen > 0 && prefix[plen - 1] == '*')
        plen--;
    for (size_t i = 0; i < ctx->opts.n; i++) {
        const sl_optval *v = &ctx->opts.v[i];
        if (v->line > 0 && strncmp(v->key, prefix, plen) == 0 && v->key[plen] != '\0')
            fn(arg, v->key, v->raw);
    }
}

/* ----------------------------------------------------------------- metrics */

static sl_metric *track_metric(sl_ctx *ctx, sl_metric *m)
{
    if (m != NULL && sl_track(ctx, "metric", m, (sl_release_fn)sl_metric_release, NULL) == NULL) {
        sl_metric_release(m);
        return NULL;
    }
    return m;
}

SL_API sl_metric *sl_counter(sl_ctx *ctx, const char *name, const char *help, const char *labels)
{
    if (sl_ctx_refuse(ctx, "a metric"))
        return NULL;
    return track_metric(ctx, sl_metric_register(SL_METRIC_COUNTER, name, help, labels, NULL, 0,
                                                ctx->instance));
}

SL_API sl_metric *sl_gauge(sl_ctx *ctx, const char *name, const char *help, const char *labels)
{
    if (sl_ctx_refuse(ctx, "a metric"))
        return NULL;
    return track_metric(ctx, sl_metric_register(SL_METRIC_GAUGE, name, help, labels, NULL, 0,
                                                ctx->instance));
}

SL_API sl_metric *sl_histogram(sl_ctx *ctx, const char *name, const char *help, const char *labels,
                               const double *bounds, size_t nbounds)
{
    if (sl_ctx_refuse(ctx, "a metric"))
        return NULL;
    return track_metric(ctx, sl_metric_register(SL_METRIC_HISTOGRAM, name, help, labels, bounds,
                                                nbounds, ctx->instance));
}

/* ----------------------------------------------------------- introspection */

SL_API char *sl_metrics_text(sl_ctx *ctx, size_t *len)
{
    (void)ctx;
    return sl_metrics_render(len);
}

SL_API int sl_readiness(sl_ctx *ctx, cJSON *report)
{
    int all = 1;
    char why[256], shown[256];

    (void)ctx;
    for (sl_ctx *c = sl_instances; c != NULL; c = c->next) {
        if (c->state != SL_INST_RUNNING)
            continue;
        int ready = sl_instance_ready(c, why, sizeof(why));
        cJSON *o = cJSON_CreateObject();
        if (o == NULL)
            return 0;
        cJSON_AddStringToObject(o, "module", c->mod->name);
        cJSON_AddStringToObject(o, "instance", c->instance);
        cJSON_AddBoolToObject(o, "ready", ready);
        if (!ready) {
            /* a connector's reason may quote its url */
            sl_redact(why, shown, sizeof(shown));
            cJSON_AddStringToObject(o, "reason", shown);
        }
        cJSON_AddItemToArray(report, o);
        all &= ready;
    }
    return all;
}
