/*
 * evtypes.c - bounded event_type label values (evtypes.h).  A small open
 * addressing table from "handler/type" to its series, sized for the bound
 * so that it never grows; the fixed types of page views and segment
 * events have room beside the bound.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "evtypes.h"

#define EVENTS_METRIC "sluice_aggregator_events_total"
#define FIXED_TYPES 16 /* view, bounce, the six segment kinds, and room */
#define KEY_MAX 96     /* a handler name, '/', a type of AGG_EVTYPE_MAX */

static size_t hash(const char *key)
{
    uint32_t h = 2166136261u;

    for (; *key != '\0'; key++)
        h = (h ^ (unsigned char)*key) * 16777619u;
    return h;
}

static int label_safe(const char *type)
{
    size_t n = strspn(type, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-");
    return n > 0 && n <= AGG_EVTYPE_MAX && type[n] == '\0';
}

/* The entry of `key`, or the empty slot it would take. */
static agg_evtype *slot(agg_evtypes *t, const char *key)
{
    size_t i = hash(key) & t->mask;

    while (t->slots[i].key != NULL && strcmp(t->slots[i].key, key) != 0)
        i = (i + 1) & t->mask;
    return &t->slots[i];
}

sl_series *agg_evtype_series(agg_evtypes *t, const char *handler, int open, const char *type)
{
    char key[KEY_MAX];
    agg_evtype *e;

    if (!label_safe(type) || snprintf(key, sizeof(key), "%s/%s", handler, type) >= (int)sizeof(key))
        return t->other;
    e = slot(t, key);
    if (e->key != NULL)
        return e->series;
    if (open && t->admitted >= t->cap)
        return t->other;
    if (t->used + 1 >= t->mask) /* a fixed type outside the fixed sets */
        return t->other;
    e->series = sl_series_of(t->family, handler, type);
    e->key = strdup(key);
    if (e->key == NULL)
        return t->other;
    t->used++;
    t->admitted += open != 0;
    return e->series;
}

/* The analytics types this instance's family already has series for: a
 * predecessor's, which a reload carries over.  Read back from the
 * exposition, as api.c reads the lag. */
static void seed(agg_evtypes *t, sl_ctx *ctx, const char *handler)
{
    const char *inst = sl_instance_name(ctx);
    char *text = sl_metrics_text(ctx, NULL), want[128], tail[160], type[AGG_EVTYPE_MAX + 1];
    const char *at;
    size_t wlen, tlen, n;

    if (text == NULL)
        return;
    snprintf(want, sizeof(want), "\n" EVENTS_METRIC "{handler=\"%s\",event_type=\"", handler);
    if (inst[0] != '\0')
        snprintf(tail, sizeof(tail), "\",instance_name=\"%s\"} ", inst);
    else
        snprintf(tail, sizeof(tail), "\"} ");
    wlen = strlen(want);
    tlen = strlen(tail);
    for (at = text; (at = strstr(at, want)) != NULL;) {
        at += wlen;
        n = strcspn(at, "\"\n");
        if (n == 0 || n > AGG_EVTYPE_MAX || strncmp(at + n, tail, tlen) != 0)
            continue;
        memcpy(type, at, n);
        type[n] = '\0';
        if (strcmp(type, AGG_EVTYPE_OTHER) != 0)
            agg_evtype_series(t, handler, 1, type);
    }
    free(text);
}

int agg_evtypes_start(agg_evtypes *t, sl_ctx *ctx, size_t cap, const char *open_handler)
{
    size_t slots = 1;

    memset(t, 0, sizeof(*t));
    t->family = sl_counter(ctx, EVENTS_METRIC,
                           "Valid events stored, by handler and event type (analytics types past "
                           "max_event_types, or not 1-64 of [A-Za-z0-9_.:-], count as other)",
                           "handler,event_type");
    if (t->family == NULL)
        return sl_fail(ctx, "cannot register metrics");
    while (slots < 2 * (cap + FIXED_TYPES))
        slots <<= 1;
    t->slots = calloc(slots, sizeof(*t->slots));
    if (t->slots == NULL)
        return sl_fail(ctx, "out of memory");
    t->mask = slots - 1;
    t->cap = cap;
    t->other = sl_series_of(t->family, open_handler, AGG_EVTYPE_OTHER);
    seed(t, ctx, open_handler);
    return 0;
}

void agg_evtypes_free(agg_evtypes *t)
{
    if (t->slots != NULL)
        for (size_t i = 0; i <= t->mask; i++)
            free(t->slots[i].key);
    free(t->slots);
    t->slots = NULL;
}
