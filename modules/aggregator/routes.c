/*
 * routes.c - which handler chain a topic goes to.
 *
 *   route.NAME = PATTERN -> middleware, ..., handler
 *
 * PATTERN is a topic name, or a POSIX extended regex when it starts with
 * '^' (like the subscriptions, whose regexes are checked here too).  The first route in config order whose
 * pattern matches wins.  Middleware: retry, recover, deadletter, dedup,
 * forward (order does not matter: they always apply as retry ->
 * deadletter/recover -> dedup -> handler -> forward).  A regex route
 * does not take its own outputs: a topic that deadletter_topic or
 * forward_topic makes of a topic it matches.  Without any
 * route.* the built-in routes send page_views, ^analytics.* and
 * segment_events to their handlers with `recover, dedup`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agg.h"

static const char *const handler_names[AGG_NHANDLERS] = { "page_views", "analytics",
                                                          "segment_events" };

const char *agg_handler_name(agg_handler h)
{
    return (unsigned)h < AGG_NHANDLERS ? handler_names[h] : "none";
}

static const struct {
    const char *name;
    unsigned flag;
} mw_names[] = {
    { "retry", AGG_MW_RETRY }, { "recover", AGG_MW_RECOVER }, { "deadletter", AGG_MW_DEADLETTER },
    { "dedup", AGG_MW_DEDUP }, { "forward", AGG_MW_FORWARD },
};

typedef struct {
    sl_ctx *ctx;
    agg_route *routes;
    size_t n;
    int failed;
} parse_state;

static char *trim(char *s)
{
    char *e;
    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = '\0';
    return s;
}

/* Compiles a pattern starting with '^' as librdkafka compiles the same in
 * a subscription (POSIX extended, no subexpressions).  0, or -1 with the
 * reason in `why` and nothing to free. */
static int compile(const char *pattern, regex_t *re, char *why, size_t whylen)
{
    int e = regcomp(re, pattern, REG_EXTENDED | REG_NOSUB);
    char msg[256];

    if (e == 0)
        return 0;
    regerror(e, re, msg, sizeof(msg));
    snprintf(why, whylen, "bad regex %.200s: %s", pattern, msg);
    return -1;
}

/* Parses "PATTERN -> a, b, handler" into `r` (zeroed by the caller; what
 * it holds on failure too is freed with the list).  0, or -1 with the
 * reason in `why`, which does not name the key: the caller does. */
static int parse_route(const char *name, const char *value, agg_route *r, char *why, size_t whylen)
{
    char *copy = strdup(value), *arrow, *item, *save = NULL;
    int have_handler = 0, rc = -1;

    if (copy == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    arrow = strstr(copy, "->");
    if (arrow == NULL) {
        snprintf(why, whylen, "expected \"PATTERN -> middleware, ..., handler\"");
        goto out;
    }
    *arrow = '\0';
    r->name = strdup(name);
    r->pattern = strdup(trim(copy));
    if (r->name == NULL || r->pattern == NULL) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    if (r->pattern[0] == '\0') {
        snprintf(why, whylen, "the topic pattern is empty");
        goto out;
    }
    if (r->pattern[0] == '^') {
        if (compile(r->pattern, &r->re, why, whylen) != 0)
            goto out;
        r->compiled = 1;
    }
    for (item = strtok_r(arrow + 2, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char *w = trim(item);
        size_t i;
        int found = 0;
        for (i = 0; i < sizeof(mw_names) / sizeof(mw_names[0]); i++)
            if (strcmp(w, mw_names[i].name) == 0) {
                r->mw |= mw_names[i].flag;
                found = 1;
            }
        for (i = 0; i < AGG_NHANDLERS && !found; i++)
            if (strcmp(w, handler_names[i]) == 0) {
                if (have_handler) {
                    snprintf(why, whylen, "more than one handler");
                    goto out;
                }
                r->handler = (agg_handler)i;
                have_handler = found = 1;
            }
        if (!found) {
            snprintf(why, whylen,
                     "unknown \"%.64s\" (middleware: retry, recover, deadletter, dedup, forward; "
                     "handlers: page_views, analytics, segment_events)",
                     w);
            goto out;
        }
    }
    if (!have_handler) {
        snprintf(why, whylen, "no handler (page_views, analytics or segment_events)");
        goto out;
    }
    rc = 0;
out:
    free(copy);
    return rc;
}

/* One route.* key.  Every bad one is reported, not only the first, so
 * that `sluiced -t` lists them all. */
static void add_route(void *arg, const char *key, const char *value)
{
    parse_state *st = arg;
    agg_route *r;
    char why[512];

    r = realloc(st->routes, (st->n + 1) * sizeof(*r));
    if (r == NULL) {
        st->failed = 1;
        sl_fail(st->ctx, "out of memory");
        return;
    }
    st->routes = r;
    r = &st->routes[st->n++];
    memset(r, 0, sizeof(*r));
    if (parse_route(key + strlen("route."), value, r, why, sizeof(why)) != 0) {
        st->failed = 1;
        sl_fail_opt(st->ctx, key, "%s", why);
    }
}

static void free_routes(agg_route *routes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (routes[i].compiled)
            regfree(&routes[i].re);
        free(routes[i].name);
        free(routes[i].pattern);
    }
    free(routes);
}

/* The routes of the instance's options, or the built-in ones when none is
 * set: the one parser of both check() and start().  0, or -1 after
 * sl_fail_opt() said what is wrong (nothing is then left allocated). */
static int parse_all(sl_ctx *ctx, agg_route **routes, size_t *n)
{
    parse_state st = { ctx, NULL, 0, 0 };
    static const char *const defaults[][2] = {
        { "route.page_views", "page_views -> recover, dedup, page_views" },
        { "route.analytics", "^analytics.* -> recover, dedup, analytics" },
        { "route.segment_events", "segment_events -> recover, dedup, segment_events" },
    };

    sl_opt_each_prefixed(ctx, "route.*", add_route, &st);
    if (st.n == 0 && !st.failed)
        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]) && !st.failed; i++)
            add_route(&st, defaults[i][0], defaults[i][1]);
    if (st.failed) {
        free_routes(st.routes, st.n);
        return -1;
    }
    *routes = st.routes;
    *n = st.n;
    return 0;
}

int agg_routes_check(sl_ctx *ctx)
{
    agg_route *routes;
    size_t n;

    if (parse_all(ctx, &routes, &n) != 0)
        return -1;
    free_routes(routes, n);
    return 0;
}

int agg_topics_check(sl_ctx *ctx)
{
    size_t n = sl_opt_list_len(ctx, "topics");
    char why[512];
    regex_t re;
    int rc = 0;

    if (n == 0)
        return sl_fail_opt(ctx, "topics", "must name at least one topic");
    for (size_t i = 0; i < n; i++) {
        const char *t = sl_opt_list_at(ctx, "topics", i);
        if (t[0] != '^')
            continue;
        if (compile(t, &re, why, sizeof(why)) != 0)
            rc = sl_fail_opt(ctx, "topics", "%s", why);
        else
            regfree(&re);
    }
    return rc;
}

int agg_routes_start(agg *a)
{
    return parse_all(a->ctx, &a->routes, &a->nroutes);
}

/* 1 when `topic` is what the topic template `tmpl` makes of a topic that
 * regex route `r` matches. */
static int made_by(const agg_route *r, const char *tmpl, const char *topic)
{
    const char *at = strstr(tmpl, "{topic}");
    size_t len = strlen(topic), pre, post;
    char source[256];

    if (at == NULL)
        return strcmp(tmpl, topic) == 0;
    pre = (size_t)(at - tmpl);
    post = strlen(at + 7);
    if (len <= pre + post || len - pre - post >= sizeof(source) || strncmp(topic, tmpl, pre) != 0 ||
        strcmp(topic + len - post, at + 7) != 0)
        return 0;
    memcpy(source, topic + pre, len - pre - post);
    source[len - pre - post] = '\0';
    return regexec(&r->re, source, 0, NULL, 0) == 0;
}

/* A regex route never takes the topics it writes itself (its dead
 * letters, its forwards): ^analytics.* would otherwise read
 * analytics.events.dlq back and dead-letter its poison again, forever. */
static int own_output(const agg *a, const agg_route *r, const char *topic)
{
    return made_by(r, a->dlq_template, topic) || made_by(r, a->fwd_template, topic);
}

const agg_route *agg_route_for(const agg *a, const char *topic)
{
    for (size_t i = 0; i < a->nroutes; i++) {
        const agg_route *r = &a->routes[i];
        if (r->compiled ? regexec(&r->re, topic, 0, NULL, 0) == 0 && !own_output(a, r, topic)
                        : strcmp(r->pattern, topic) == 0)
            return r;
    }
    return NULL;
}

int agg_route_own_output(const agg *a, const char *topic)
{
    for (size_t i = 0; i < a->nroutes; i++) {
        const agg_route *r = &a->routes[i];
        if (r->compiled && regexec(&r->re, topic, 0, NULL, 0) == 0 && own_output(a, r, topic))
            return 1;
    }
    return 0;
}

void agg_routes_free(agg *a)
{
    free_routes(a->routes, a->nroutes);
    a->routes = NULL;
    a->nroutes = 0;
}
