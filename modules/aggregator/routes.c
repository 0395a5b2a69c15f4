/*
 * routes.c - which handler chain a topic goes to.
 *
 *   route.NAME = PATTERN -> middleware, ..., handler
 *
 * PATTERN is a topic name, or a POSIX extended regex when it starts with
 * '^' (like the subscriptions).  The first route in config order whose
 * pattern matches wins.  Middleware: retry, recover, deadletter, dedup,
 * forward (order does not matter: they always apply as retry ->
 * deadletter/recover -> dedup -> handler -> forward).  Without any
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
    { "retry", AGG_MW_RETRY },   { "recover", AGG_MW_RECOVER }, { "deadletter", AGG_MW_DEADLETTER },
    { "dedup", AGG_MW_DEDUP },   { "forward", AGG_MW_FORWARD },
};

typedef struct {
    agg *a;
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

/* Parses "PATTERN -> a, b, handler" into `r`; 0 or -1 after sl_fail(). */
static int parse_route(agg *a, const char *name, const char *value, agg_route *r)
{
    char *copy = strdup(value), *arrow, *item, *save = NULL;
    int have_handler = 0, rc = -1;

    if (copy == NULL)
        return sl_fail(a->ctx, "out of memory");
    arrow = strstr(copy, "->");
    if (arrow == NULL) {
        sl_fail(a->ctx, "route.%s: expected \"PATTERN -> middleware, ..., handler\"", name);
        goto out;
    }
    *arrow = '\0';
    r->name = strdup(name);
    r->pattern = strdup(trim(copy));
    if (r->name == NULL || r->pattern == NULL) {
        sl_fail(a->ctx, "out of memory");
        goto out;
    }
    if (r->pattern[0] == '\0') {
        sl_fail(a->ctx, "route.%s: the topic pattern is empty", name);
        goto out;
    }
    if (r->pattern[0] == '^') {
        int e = regcomp(&r->re, r->pattern, REG_EXTENDED | REG_NOSUB);
        if (e != 0) {
            char msg[256];
            regerror(e, &r->re, msg, sizeof(msg));
            sl_fail(a->ctx, "route.%s: bad regex %s: %s", name, r->pattern, msg);
            goto out;
        }
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
                    sl_fail(a->ctx, "route.%s: more than one handler", name);
                    goto out;
                }
                r->handler = (agg_handler)i;
                have_handler = found = 1;
            }
        if (!found) {
            sl_fail(a->ctx,
                    "route.%s: unknown \"%s\" (middleware: retry, recover, deadletter, dedup, forward; handlers: page_views, analytics, segment_events)",
                    name, w);
            goto out;
        }
    }
    if (!have_handler) {
        sl_fail(a->ctx, "route.%s: no handler (page_views, analytics or segment_events)", name);
        goto out;
    }
    rc = 0;
out:
    free(copy);
    return rc;
}

static void add_route(void *arg, const char *key, const char *value)
{
    parse_state *st = arg;
    agg *a = st->a;
    agg_route *r;

    if (st->failed)
        return;
    r = realloc(a->routes, (a->nroutes + 1) * sizeof(*r));
    if (r == NULL) {
        st->failed = 1;
        sl_fail(a->ctx, "out of memory");
        return;
    }
    a->routes = r;
    r = &a->routes[a->nroutes++];
    memset(r, 0, sizeof(*r));
    if (parse_route(a, key + strlen("route."), value, r) != 0)
        st->failed = 1;
}

int agg_routes_start(agg *a)
{
    parse_state st = { a, 0 };
    static const char *const defaults[][2] = {
        { "route.page_views", "page_views -> recover, dedup, page_views" },
        { "route.analytics", "^analytics.* -> recover, dedup, analytics" },
        { "route.segment_events", "segment_events -> recover, dedup, segment_events" },
    };

    sl_opt_each_prefixed(a->ctx, "route.*", add_route, &st);
    if (st.failed)
        return -1;
    if (a->nroutes == 0)
        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]) && !st.failed; i++)
            add_route(&st, defaults[i][0], defaults[i][1]);
    return st.failed ? -1 : 0;
}

const agg_route *agg_route_for(const agg *a, const char *topic)
{
    for (size_t i = 0; i < a->nroutes; i++) {
        const agg_route *r = &a->routes[i];
        if (r->compiled ? regexec(&r->re, topic, 0, NULL, 0) == 0 : strcmp(r->pattern, topic) == 0)
            return r;
    }
    return NULL;
}

void agg_routes_free(agg *a)
{
    for (size_t i = 0; i < a->nroutes; i++) {
        if (a->routes[i].compiled)
            regfree(&a->routes[i].re);
        free(a->routes[i].name);
        free(a->routes[i].pattern);
    }
    free(a->routes);
    a->routes = NULL;
    a->nroutes = 0;
}
