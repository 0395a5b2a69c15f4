/*
 * trace_otlp.c - ended spans as an OTLP/HTTP JSON body; see trace_otlp.h.
 *
 * Written by hand into a memory stream rather than through cJSON: at ratio
 * 1.0 every request yields a few spans, and a tree of nodes per attribute
 * would cost more than the request itself.
 */
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include "daemon/core.h"
#include "trace_otlp.h"

/* A JSON string, quotes included; runs that need no escape are copied
 * whole. */
static void put_str(FILE *f, const char *s)
{
    putc('"', f);
    for (;;) {
        size_t run = 0;
        unsigned char c;
        while ((c = (unsigned char)s[run]) != '\0' && c != '"' && c != '\\' && c >= 0x20)
            run++;
        fwrite(s, 1, run, f);
        s += run;
        if (*s == '\0')
            break;
        c = (unsigned char)*s++;
        if (c == '"' || c == '\\') {
            putc('\\', f);
            putc(c, f);
        } else {
            fprintf(f, "\\u%04x", c);
        }
    }
    putc('"', f);
}

/* A memory stream only this thread writes: no stdio lock per character. */
static FILE *open_stream(char **buf, size_t *len)
{
    FILE *f = open_memstream(buf, len);

    if (f != NULL)
        __fsetlocking(f, FSETLOCKING_BYCALLER);
    return f;
}

static void put_hex(FILE *f, const uint8_t *id, size_t n)
{
    char hex[33];

    sl_tp_hex(id, n, hex);
    fprintf(f, "\"%s\"", hex);
}

/* One KeyValue: integers as the proto3 JSON mapping writes int64. */
static void put_attr(FILE *f, char type, const char *key, const char *value)
{
    fputs("{\"key\":", f);
    put_str(f, key);
    fputs(type == 'i' ? ",\"value\":{\"intValue\":" : ",\"value\":{\"stringValue\":", f);
    put_str(f, value);
    fputs("}}", f);
}

static char *close_stream(FILE *f, char **buf)
{
    int bad = ferror(f);

    if (fclose(f) != 0 || bad) {
        free(*buf);
        return NULL;
    }
    return *buf;
}

char *sl_otlp_resource(const char *service, const char *const *keys, const char *const *values,
                       size_t n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_stream(&buf, &len);

    if (f == NULL)
        return NULL;
    fputs("{\"attributes\":[", f);
    put_attr(f, 's', "service.name", service);
    putc(',', f);
    put_attr(f, 's', "telemetry.sdk.name", "sluice");
    putc(',', f);
    put_attr(f, 's', "telemetry.sdk.language", "c");
    putc(',', f);
    put_attr(f, 's', "telemetry.sdk.version", SL_VERSION);
    for (size_t i = 0; i < n; i++) {
        putc(',', f);
        put_attr(f, 's', keys[i], values[i]);
    }
    fputs("]}", f);
    return close_stream(f, &buf);
}

static void put_span(FILE *f, const sl_span *s)
{
    fputs("{\"traceId\":", f);
    put_hex(f, s->tp.trace_id, 16);
    fputs(",\"spanId\":", f);
    put_hex(f, s->tp.span_id, 8);
    if (s->has_parent) {
        fputs(",\"parentSpanId\":", f);
        put_hex(f, s->parent, 8);
    }
    if (s->tracestate != NULL) {
        fputs(",\"traceState\":", f);
        put_str(f, s->tracestate);
    }
    fputs(",\"name\":", f);
    put_str(f, s->name);
    fprintf(f, ",\"kind\":%d,\"startTimeUnixNano\":\"%llu\",\"endTimeUnixNano\":\"%llu\"", s->kind,
            (unsigned long long)s->start_ns, (unsigned long long)s->end_ns);
    fputs(",\"attributes\":[", f);
    for (size_t at = 0; at < s->alen;) {
        char type = s->attrs[at];
        const char *key = s->attrs + at + 1;
        const char *value = key + strlen(key) + 1;
        if (at > 0)
            putc(',', f);
        put_attr(f, type, key, value);
        at = (size_t)(value - s->attrs) + strlen(value) + 1;
    }
    putc(']', f);
    if (s->nlinks > 0) {
        fputs(",\"links\":[", f);
        for (size_t i = 0; i < s->nlinks; i++) {
            fputs(i > 0 ? ",{\"traceId\":" : "{\"traceId\":", f);
            put_hex(f, s->links[i].trace_id, 16);
            fputs(",\"spanId\":", f);
            put_hex(f, s->links[i].span_id, 8);
            putc('}', f);
        }
        putc(']', f);
    }
    if (s->dropped_links > 0)
        fprintf(f, ",\"droppedLinksCount\":%u", s->dropped_links);
    if (s->failed) {
        fputs(",\"status\":{\"code\":2", f);
        if (s->status_msg != NULL) {
            fputs(",\"message\":", f);
            put_str(f, s->status_msg);
        }
        putc('}', f);
    }
    putc('}', f);
}

char *sl_otlp_body(const char *resource, const sl_span *spans, size_t max, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_stream(&buf, len);
    size_t n = 0;

    if (f == NULL)
        return NULL;
    fprintf(f,
            "{\"resourceSpans\":[{\"resource\":%s,\"scopeSpans\":[{\"scope\":"
            "{\"name\":\"sluice\",\"version\":\"%s\"},\"spans\":[",
            resource, SL_VERSION);
    for (const sl_span *s = spans; s != NULL && n < max; s = s->next, n++) {
        if (n > 0)
            putc(',', f);
        put_span(f, s);
    }
    fputs("]}]}]}", f);
    return close_stream(f, &buf);
}
