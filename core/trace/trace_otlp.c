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
    if (o->len == 0) { /* nothing to keep: no copy of the old contents */
        free(o->p);
        o->p = NULL;
        o->cap = 0;
        p = malloc(cap);
    } else {
        p = realloc(o->p, cap);
    }
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

static const char pairs[] = "0001020304050607080910111213141516171819"
                            "2021222324252627282930313233343536373839"
                            "4041424344454647484950515253545556575859"
                            "6061626364656667686970717273747576777879"
                            "8081828384858687888990919293949596979899";

/* Decimal text of v < 10^8 at d, without leading zeros; returns the end. */
static char *write_u32(char *d, uint32_t v)
{
    size_t n = 1;
    char *e;

    for (uint32_t p = 10; n < 8 && v >= p; p *= 10)
        n++;
    e = d + n;
    while (v >= 100) {
        e -= 2;
        memcpy(e, pairs + 2 * (v % 100), 2);
        v /= 100;
    }
    if (v >= 10)
        memcpy(e - 2, pairs + 2 * v, 2);
    else
        e[-1] = (char)('0' + v);
    return d + n;
}

/* The eight digits of v < 10^8 at d, leading zeros included; in two
 * halves, whose pairs do not wait on each other. */
static void write_8(char *d, uint32_t v)
{
    uint32_t hi = v / 10000, lo = v % 10000;

    memcpy(d, pairs + 2 * (hi / 100), 2);
    memcpy(d + 2, pairs + 2 * (hi % 100), 2);
    memcpy(d + 4, pairs + 2 * (lo / 100), 2);
    memcpy(d + 6, pairs + 2 * (lo % 100), 2);
}

/* Decimal text of v at d (room for 20 bytes); returns the end.  Cut in
 * parts of eight digits, each written two digits a division in 32-bit
 * arithmetic: every span has two nineteen-digit times, and 64-bit
 * divisions by 100 were most of what writing them cost. */
static char *write_u64(char *d, uint64_t v)
{
    uint32_t part[2]; /* 2^64 has twenty digits: at most two full parts */
    int n = 0;

    while (v >= 100000000) {
        part[n++] = (uint32_t)(v % 100000000);
        v /= 100000000;
    }
    d = write_u32(d, (uint32_t)v);
    while (n > 0) {
        write_8(d, part[--n]);
        d += 8;
    }
    return d;
}

static void put_u64(out *o, uint64_t v)
{
    if (room(o, 20))
        o->len = (size_t)(write_u64(o->p + o->len, v) - o->p);
}

/* JSON's escapes: 0 copies the byte, else the character after the
 * backslash ('u' for \u00XX).  Looked up per byte: one load and one test
 * where four comparisons were. */
static const char escape[256] = {
    ['\0'] = 'u', [1] = 'u',    [2] = 'u',    [3] = 'u',     [4] = 'u',    [5] = 'u',
    [6] = 'u',    [7] = 'u',    ['\b'] = 'b', ['\t'] = 't',  ['\n'] = 'n', [11] = 'u',
    ['\f'] = 'f', ['\r'] = 'r', [14] = 'u',   [15] = 'u',    [16] = 'u',   [17] = 'u',
    [18] = 'u',   [19] = 'u',   [20] = 'u',   [21] = 'u',    [22] = 'u',   [23] = 'u',
    [24] = 'u',   [25] = 'u',   [26] = 'u',   [27] = 'u',    [28] = 'u',   [29] = 'u',
    [30] = 'u',   [31] = 'u',   ['"'] = '"',  ['\\'] = '\\',
};

/* 1 when one of the eight bytes of `v` needs an escape: below 0x20, a
 * quote or a backslash.  (x - 0x01..) & ~x & 0x80.. is nonzero exactly
 * when a byte of x is zero (with 0x20.., when one is below 0x20); bytes
 * of 0x80 and above, UTF-8, are never flagged. */
static int word_needs_escape(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quote = v ^ (ones * '"'), backslash = v ^ (ones * '\\');

    return ((((v - ones * 0x20) & ~v) | ((quote - ones) & ~quote) |
             ((backslash - ones) & ~backslash)) &
            highs) != 0;
}

/* 1 when one of the `n` (8 or more) bytes at `s` needs an escape: each
 * word of eight, the last one overlapping the one before. */
static int needs_escape(const char *s, size_t n)
{
    uint64_t v;

    for (size_t i = 0; i + 8 < n; i += 8) {
        memcpy(&v, s + i, 8);
        if (word_needs_escape(v))
            return 1;
    }
    memcpy(&v, s + n - 8, 8);
    return word_needs_escape(v);
}

/* `n` bytes of `s` escaped into `dst` (room for 6n), quotes not included;
 * returns the bytes written.  Text that needs no escape, the usual case,
 * is checked eight bytes at a time and copied at once; in text that does,
 * words of eight that need none are still copied whole. */
static size_t escape_into(char *dst, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *d = dst;
    size_t i = 0;

    if (n >= 8 && !needs_escape(s, n)) {
        memcpy(dst, s, n);
        return n;
    }
    while (i < n) {
        uint64_t v;
        unsigned char c;
        char e;

        if (n - i >= 8) {
            memcpy(&v, s + i, 8);
            if (!word_needs_escape(v)) {
                memcpy(d, &v, 8);
                d += 8;
                i += 8;
                continue;
            }
        }
        c = (unsigned char)s[i++];
        e = escape[c];
        if (e == 0) {
            *d++ = (char)c;
            continue;
        }
        *d++ = '\\';
        *d++ = e;
        if (e == 'u') {
            *d++ = '0';
            *d++ = '0';
            *d++ = hex[c >> 4];
            *d++ = hex[c & 15];
        }
    }
    return (size_t)(d - dst);
}

size_t sl_otlp_attr_head(char *dst, char type, const char *key)
{
    static const char k[] = "{\"key\":\"", sv[] = "\",\"value\":{\"stringValue\":\"",
                      iv[] = "\",\"value\":{\"intValue\":\"";
    const char *mid = type == 'i' ? iv : sv;
    size_t mlen = type == 'i' ? sizeof(iv) - 1 : sizeof(sv) - 1;
    char *d = dst;

    memcpy(d, k, sizeof(k) - 1);
    d += sizeof(k) - 1;
    d += escape_into(d, key, strlen(key));
    memcpy(d, mid, mlen);
    d += mlen;
    return (size_t)(d - dst);
}

size_t sl_otlp_attr_value(char *dst, const char *value, size_t vlen)
{
    size_t n = escape_into(dst, value, vlen);

    memcpy(dst + n, "\"}}", 3);
    return n + 3;
}

size_t sl_otlp_attr_int(char *dst, long long value)
{
    char *d = dst;

    if (value < 0)
        *d++ = '-';
    d = write_u64(d, value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value);
    memcpy(d, "\"}}", 3);
    return (size_t)(d + 3 - dst);
}

size_t sl_otlp_attr(char *dst, char type, const char *key, const char *value, size_t vlen)
{
    size_t n = sl_otlp_attr_head(dst, type, key);

    return n + sl_otlp_attr_value(dst + n, value, vlen);
}

static void put_hex(out *o, const uint8_t *id, size_t n)
{
    char hex[33];

    sl_tp_hex(id, n, hex);
    put_char(o, '"');
    put_mem(o, hex, 2 * n);
    put_char(o, '"');
}

/* One KeyValue (sl_otlp_attr()). */
static void put_attr(out *o, char type, const char *key, const char *value)
{
    size_t vlen = strlen(value);

    if (room(o, SL_OTLP_ATTR_MAX(strlen(key), vlen)))
        o->len += sl_otlp_attr(o->p + o->len, type, key, value, vlen);
}

/* The text built, NUL-ended, or NULL when out of memory. */
static char *finish(out *o)
{
    put_char(o, '\0');
    if (o->oom) {
        free(o->p);
        return NULL;
    }
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
    return finish(&o);
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

/* Raw writers for put_span(), which reserves the room first. */

/* The digits of the last time written above its last eight, as text:
 * they change every tenth of a second, and spans end one after another,
 * so the next time nearly always has the same. */
static struct {
    uint64_t high;
    size_t len;
    char text[20];
} last_high = { 0, 0, "" };

/* A time in nanoseconds, its digits above the last eight copied when they
 * are the last time's. */
static char *write_time(char *d, uint64_t ns)
{
    uint64_t high = ns / 100000000;

    if (high == 0)
        return write_u64(d, ns);
    if (high != last_high.high || last_high.len == 0) {
        last_high.len = (size_t)(write_u64(last_high.text, high) - last_high.text);
        last_high.high = high;
    }
    memcpy(d, last_high.text, last_high.len);
    write_8(d + last_high.len, (uint32_t)(ns % 100000000));
    return d + last_high.len + 8;
}

/* The start time, the field between, and the end time. */
static char *write_times(char *d, uint64_t start, uint64_t end)
{
    static const char between[] = "\",\"endTimeUnixNano\":\"";

    d = write_time(d, start);
    memcpy(d, between, sizeof(between) - 1);
    return write_time(d + sizeof(between) - 1, end);
}

static char *write_lit(char *d, const char *lit)
{
    size_t n = strlen(lit);

    memcpy(d, lit, n);
    return d + n;
}

static char *write_hex(char *d, const uint8_t *id, size_t n)
{
    *d++ = '"';
    sl_tp_hex(id, n, d);
    d += 2 * n;
    *d++ = '"';
    return d;
}

static char *write_str(char *d, const char *s, size_t n)
{
    *d++ = '"';
    d += escape_into(d, s, n);
    *d++ = '"';
    return d;
}

/* The most bytes of a span's head and tail besides its name, tracestate,
 * attributes and status message: the field names, three ids, three
 * numbers (put_span() writes them). */
#define SPAN_FIXED 384

/*
 * A span's head and tail are written after one reservation, not one per
 * field: at ratio 1.0 a POST /segment/user exports seven spans, and the
 * per-field checks and calls were a good part of encoding them.  Links
 * and events, rare, go through the checked writers.
 */
static void put_span(out *o, const sl_span *s)
{
    size_t nlen = strlen(s->name), tslen = s->tracestate != NULL ? strlen(s->tracestate) : 0;
    size_t mlen = s->status_msg != NULL ? strlen(s->status_msg) : 0;
    char *d;

    if (!room(o, SPAN_FIXED + 6 * (nlen + tslen) + s->alen))
        return;
    d = o->p + o->len;
    d = write_lit(d, "{\"traceId\":");
    d = write_hex(d, s->tp.trace_id, 16);
    d = write_lit(d, ",\"spanId\":");
    d = write_hex(d, s->tp.span_id, 8);
    if (s->has_parent) {
        d = write_lit(d, ",\"parentSpanId\":");
        d = write_hex(d, s->parent, 8);
    }
    if (s->tracestate != NULL) {
        d = write_lit(d, ",\"traceState\":");
        d = write_str(d, s->tracestate, tslen);
    }
    d = write_lit(d, ",\"name\":");
    d = write_str(d, s->name, nlen);
    d = write_lit(d, ",\"kind\":");
    d = write_u64(d, s->kind);
    d = write_lit(d, ",\"startTimeUnixNano\":\"");
    d = write_times(d, s->start_ns, s->end_ns);
    d = write_lit(d, "\",\"attributes\":[");
    memcpy(d, s->attrs, s->alen);
    d += s->alen;
    *d++ = ']';
    o->len = (size_t)(d - o->p);
    if (s->nlinks > 0)
        put_links(o, s);
    if (s->nevents > 0)
        put_events(o, s);
    if (!room(o, SPAN_FIXED + 6 * mlen))
        return;
    d = o->p + o->len;
    if (s->dropped_links > 0) {
        d = write_lit(d, ",\"droppedLinksCount\":");
        d = write_u64(d, s->dropped_links);
    }
    if (s->dropped_events > 0) {
        d = write_lit(d, ",\"droppedEventsCount\":");
        d = write_u64(d, s->dropped_events);
    }
    if (s->failed) {
        d = write_lit(d, ",\"status\":{\"code\":2");
        if (s->status_msg != NULL) {
            d = write_lit(d, ",\"message\":");
            d = write_str(d, s->status_msg, mlen);
        }
        *d++ = '}';
    }
    *d++ = '}';
    o->len = (size_t)(d - o->p);
}

int sl_otlp_open(sl_otlp_buf *b, const char *resource)
{
    out o = { b->p, 0, b->cap, 0 };

    put_lit(&o, "{\"resourceSpans\":[{\"resource\":");
    put_lit(&o, resource);
    put_lit(&o, ",\"scopeSpans\":[{\"scope\":{\"name\":\"sluice\",\"version\":\"" SL_VERSION
                "\"},\"spans\":[");
    b->p = o.p; /* grown or not, still ours when out of memory */
    b->cap = o.cap;
    b->len = o.oom ? 0 : o.len;
    b->spans = 0;
    return o.oom ? -1 : 0;
}

int sl_otlp_add(sl_otlp_buf *b, const sl_span *s)
{
    out o = { b->p, b->len, b->cap, 0 };

    if (b->spans > 0)
        put_char(&o, ',');
    put_span(&o, s);
    b->p = o.p;
    b->cap = o.cap;
    if (o.oom)
        return -1; /* what the body held is whole: len still ends it */
    b->len = o.len;
    b->spans++;
    return 0;
}

int sl_otlp_close(sl_otlp_buf *b)
{
    out o = { b->p, b->len, b->cap, 0 };

    put_lit(&o, "]}]}]}");
    put_char(&o, '\0');
    b->p = o.p;
    b->cap = o.cap;
    if (o.oom)
        return -1;
    b->len = o.len - 1;
    return 0;
}
