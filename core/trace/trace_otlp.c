/*
 * trace_otlp.c - ended spans as an OTLP/HTTP JSON body; see trace_otlp.h.
 *
 * Written by hand into one growing buffer rather than through cJSON or
 * stdio: at ratio 1.0 every request yields a few spans, encoded on the
 * loop, and a tree of nodes per attribute, or a formatted write per
 * field, would cost a good part of the request itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daemon/core.h"
#include "trace_otlp.h"

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} out;

/* Room for `n` more bytes; sets oom (and every later write does nothing)
 * when there is none to be had. */
static int room(out *o, size_t n)
{
    size_t cap;
    char *p;

    if (o->oom)
        return 0;
    if (o->len + n <= o->cap)
        return 1;
    cap = o->cap ? o->cap : 4096;
    while (cap < o->len + n)
        cap *= 2;
    p = realloc(o->p, cap);
    if (p == NULL) {
        o->oom = 1;
        return 0;
    }
    o->p = p;
    o->cap = cap;
    return 1;
}

static void put_mem(out *o, const char *s, size_t n)
{
    if (!room(o, n))
        return;
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_lit(out *o, const char *s)
{
    put_mem(o, s, strlen(s));
}

static void put_char(out *o, char c)
{
    if (room(o, 1))
        o->p[o->len++] = c;
}

static void put_u64(out *o, uint64_t v)
{
    char d[20];
    size_t n = 0;

    do {
        d[sizeof(d) - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put_mem(o, d + sizeof(d) - n, n);
}

/* A JSON string, quotes included; runs that need no escape are copied
 * whole. */
static void put_str(out *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";

    put_char(o, '"');
    for (;;) {
        size_t run = 0;
        unsigned char c;
        while ((c = (unsigned char)s[run]) != '\0' && c != '"' && c != '\\' && c >= 0x20)
            run++;
        put_mem(o, s, run);
        s += run;
        if (*s == '\0')
            break;
        c = (unsigned char)*s++;
        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };
            put_mem(o, esc, 2);
        } else {
            char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            put_mem(o, esc, 6);
        }
    }
    put_char(o, '"');
}

static void put_hex(out *o, const uint8_t *id, size_t n)
{
    char hex[33];

    sl_tp_hex(id, n, hex);
    put_char(o, '"');
    put_mem(o, hex, 2 * n);
    put_char(o, '"');
}

/* One KeyValue: integers as the proto3 JSON mapping writes int64. */
static void put_attr(out *o, char type, const char *key, const char *value)
{
    put_lit(o, "{\"key\":");
    put_str(o, key);
    put_lit(o, type == 'i' ? ",\"value\":{\"intValue\":" : ",\"value\":{\"stringValue\":");
    put_str(o, value);
    put_lit(o, "}}");
}

/* The text built, NUL-ended (its length in *len), or NULL when out of
 * memory. */
static char *finish(out *o, size_t *len)
{
    put_char(o, '\0');
    if (o->oom) {
        free(o->p);
        return NULL;
    }
    if (len != NULL)
        *len = o->len - 1;
    return o->p;
}

char *sl_otlp_resource(const char *service, const char *const *keys, const char *const *values,
                       size_t n)
{
    out o = { 0 };

    put_lit(&o, "{\"attributes\":[");
    put_attr(&o, 's', "service.name", service);
    put_char(&o, ',');
    put_attr(&o, 's', "telemetry.sdk.name", "sluice");
    put_char(&o, ',');
    put_attr(&o, 's', "telemetry.sdk.language", "c");
    put_char(&o, ',');
    put_attr(&o, 's', "telemetry.sdk.version", SL_VERSION);
    for (size_t i = 0; i < n; i++) {
        put_char(&o, ',');
        put_attr(&o, 's', keys[i], values[i]);
    }
    put_lit(&o, "]}");
    return finish(&o, NULL);
}

/* The span's log lines, each an event "log" with its level, source and
 * message. */
static void put_events(out *o, const sl_span *s)
{
    put_lit(o, ",\"events\":[");
    for (size_t at = 0; at < s->elen;) {
        uint64_t ns;
        const char *level = s->events + at + 8;
        const char *who = level + strlen(level) + 1;
        const char *msg = who + strlen(who) + 1;
        memcpy(&ns, s->events + at, 8);
        put_lit(o, at > 0 ? ",{\"timeUnixNano\":\"" : "{\"timeUnixNano\":\"");
        put_u64(o, ns);
        put_lit(o, "\",\"name\":\"log\",\"attributes\":[");
        put_attr(o, 's', "log.severity", level);
        put_char(o, ',');
        put_attr(o, 's', "log.source", who);
        put_char(o, ',');
        put_attr(o, 's', "log.message", msg);
        put_lit(o, "]}");
        at = (size_t)(msg - s->events) + strlen(msg) + 1;
    }
    put_char(o, ']');
}

static void put_links(out *o, const sl_span *s)
{
    put_lit(o, ",\"links\":[");
    for (size_t i = 0; i < s->nlinks; i++) {
        put_lit(o, i > 0 ? ",{\"traceId\":" : "{\"traceId\":");
        put_hex(o, s->links[i].trace_id, 16);
        put_lit(o, ",\"spanId\":");
        put_hex(o, s->links[i].span_id, 8);
        put_char(o, '}');
    }
    put_char(o, ']');
}

static void put_span(out *o, const sl_span *s)
{
    put_lit(o, "{\"traceId\":");
    put_hex(o, s->tp.trace_id, 16);
    put_lit(o, ",\"spanId\":");
    put_hex(o, s->tp.span_id, 8);
    if (s->has_parent) {
        put_lit(o, ",\"parentSpanId\":");
        put_hex(o, s->parent, 8);
    }
    if (s->tracestate != NULL) {
        put_lit(o, ",\"traceState\":");
        put_str(o, s->tracestate);
    }
    put_lit(o, ",\"name\":");
    put_str(o, s->name);
    put_lit(o, ",\"kind\":");
    put_u64(o, s->kind);
    put_lit(o, ",\"startTimeUnixNano\":\"");
    put_u64(o, s->start_ns);
    put_lit(o, "\",\"endTimeUnixNano\":\"");
    put_u64(o, s->end_ns);
    put_lit(o, "\",\"attributes\":[");
    for (size_t at = 0; at < s->alen;) {
        char type = s->attrs[at];
        const char *key = s->attrs + at + 1;
        const char *value = key + strlen(key) + 1;
        if (at > 0)
            put_char(o, ',');
        put_attr(o, type, key, value);
        at = (size_t)(value - s->attrs) + strlen(value) + 1;
    }
    put_char(o, ']');
    if (s->nlinks > 0)
        put_links(o, s);
    if (s->dropped_links > 0) {
        put_lit(o, ",\"droppedLinksCount\":");
        put_u64(o, s->dropped_links);
    }
    if (s->nevents > 0)
        put_events(o, s);
    if (s->dropped_events > 0) {
        put_lit(o, ",\"droppedEventsCount\":");
        put_u64(o, s->dropped_events);
    }
    if (s->failed) {
        put_lit(o, ",\"status\":{\"code\":2");
        if (s->status_msg != NULL) {
            put_lit(o, ",\"message\":");
            put_str(o, s->status_msg);
        }
        put_char(o, '}');
    }
    put_char(o, '}');
}

char *sl_otlp_body(const char *resource, const sl_span *spans, size_t max, size_t *len)
{
    /* Batches are alike: starting at the last one's size saves growing
     * through every power of two (and malloc's consolidations) each time. */
    static size_t last;
    out o = { 0 };
    size_t n = 0;

    if (last > 0 && !room(&o, last + last / 8))
        return NULL;

    put_lit(&o, "{\"resourceSpans\":[{\"resource\":");
    put_lit(&o, resource);
    put_lit(&o, ",\"scopeSpans\":[{\"scope\":{\"name\":\"sluice\",\"version\":\"" SL_VERSION
                "\"},\"spans\":[");
    for (const sl_span *s = spans; s != NULL && n < max; s = s->next, n++) {
        if (n > 0)
            put_char(&o, ',');
        put_span(&o, s);
    }
    put_lit(&o, "]}]}]}");
    last = o.len;
    return finish(&o, len);
}
