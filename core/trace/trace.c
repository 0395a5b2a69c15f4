/*
 * trace.c - span ids and sampling, and spans; see
 * trace.h.  The context slot is in trace_ctx.c; the exporter (the
 * [tracing] section, the queue, OTLP) in trace_export.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include "daemon/core.h"
#include "daemon/log.h"
#include "trace.h"
#include "trace_otlp.h"

/* Bounds on what one span holds, so a runaway caller cannot make one huge. */
#define ATTRS_MAX 8192
#define LINKS_MAX 1024

/* ------------------------------------------------------------------ ids */

/* xoshiro256**: ids need to be unique and unpredictable enough to not
 * collide across processes, not secret; seeded from the kernel once. */
static uint64_t rng[4];
static int rng_seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next64(void)
{
    uint64_t result, t;

    if (!rng_seeded) {
        if (getrandom(rng, sizeof(rng), 0) != (ssize_t)sizeof(rng)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            rng[0] = (uint64_t)ts.tv_nsec ^ 0x9e3779b97f4a7c15ULL;
            rng[1] = (uint64_t)ts.tv_sec;
            rng[2] = (uint64_t)getpid() << 32 | 0x5851f42dULL;
            rng[3] = 0xd1b54a32d192ed03ULL;
        }
        rng_seeded = 1;
    }
    result = rotl(rng[1] * 5, 7) * 9;
    t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return result;
}

/* n is 8 or 16; the spec's all-zero id is drawn again (tested on the
 * words drawn, not byte by byte: every span draws one or two ids). */
static void random_id(uint8_t *id, size_t n)
{
    uint64_t any;

    do {
        any = 0;
        for (size_t i = 0; i < n; i += 8) {
            uint64_t v = next64();
            memcpy(id + i, &v, 8);
            any |= v;
        }
    } while (any == 0);
}

/* The ratio decision of a new trace, from its id as OpenTelemetry's
 * TraceIdRatioBased does: the same trace is decided the same everywhere. */
static int sampled(const uint8_t trace_id[16])
{
    double ratio = sl_trace_ratio();
    uint64_t low = 0;

    if (ratio >= 1)
        return 1;
    for (int i = 8; i < 16; i++)
        low = low << 8 | trace_id[i];
    return (double)(low >> 11) < ratio * (double)(1ULL << 53);
}

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- spans */

/*
 * Freed spans are kept for reuse, up to POOL_MAX: a span is larger than
 * what malloc serves from its per-thread cache, and at ratio 1.0 a few
 * are made per request, so going to malloc's slow path each time was a
 * good part of what tracing cost.
 */
#define POOL_MAX 1024
static sl_span *pool;
static size_t pooled;
static int pool_closed; /* at exit: spans freed later go to free() */

static sl_span *span_alloc(void)
{
    sl_span *s = pool;

    if (s == NULL)
        return malloc(sizeof(*s));
    pool = s->next;
    pooled--;
    return s;
}

static void span_release(sl_span *s)
{
    if (pooled >= POOL_MAX || pool_closed) {
        free(s);
        return;
    }
    s->next = pool;
    pool = s;
    pooled++;
}

void sl_trace_pool_free(void)
{
    while (pool != NULL) {
        sl_span *s = pool;
        pool = s->next;
        free(s);
    }
    pooled = 0;
    pool_closed = 1;
}

sl_span *sl_span_begin(const sl_trace_ctx *parent, int kind, const char *name, sl_tp *pos)
{
    sl_span *s;
    sl_tp tp;
    int has_parent;
    size_t nlen;

    if (parent == NULL)
        parent = &sl_trace_cur;
    has_parent = parent->traced;
    if (has_parent) {
        memcpy(tp.trace_id, parent->tp.trace_id, 16);
        tp.flags = parent->tp.flags & SL_TP_SAMPLED;
    } else {
        random_id(tp.trace_id, 16);
        tp.flags = sl_trace_on() && sampled(tp.trace_id) ? SL_TP_SAMPLED : 0;
    }
    random_id(tp.span_id, 8);
    if (pos != NULL)
        *pos = tp;
    if (!sl_trace_on())
        return NULL;
    /* Not zeroed whole: the inline attribute area need not be. */
    s = span_alloc();
    if (s == NULL)
        return NULL;
    memset(s, 0, offsetof(sl_span, inline_attrs));
    nlen = strnlen(name, SL_SPAN_NAME_MAX);
    memcpy(s->name, name, nlen);
    s->name[nlen] = '\0';
    s->attrs = s->inline_attrs;
    s->acap = sizeof(s->inline_attrs);
    s->tp = tp;
    s->has_parent = (uint8_t)has_parent;
    if (has_parent)
        memcpy(s->parent, parent->tp.span_id, 8);
    s->recording = (tp.flags & SL_TP_SAMPLED) != 0;
    s->kind = (uint8_t)kind;
    s->start_ns = wall_ns();
    return s;
}

void sl_span_free(sl_span *s)
{
    sl_trace_events_drop(s);
    free(s->events);
    free(s->status_msg);
    free(s->tracestate);
    if (s->attrs != s->inline_attrs)
        free(s->attrs);
    free(s->links);
    span_release(s);
}

void sl_span_tracestate(sl_span *s, const char *tracestate)
{
    if (s == NULL || !s->recording || tracestate == NULL || !sl_tracestate_valid(tracestate))
        return;
    free(s->tracestate);
    s->tracestate = strdup(tracestate);
}

/* Room for `need` more bytes of attributes; 0 when there is none. */
static int attrs_room(sl_span *s, size_t need)
{
    if (s->alen + need > s->acap) {
        size_t cap = s->acap * 2;
        char *p;
        while (cap < s->alen + need)
            cap *= 2;
        if (s->attrs == s->inline_attrs) {
            p = malloc(cap);
            if (p != NULL)
                memcpy(p, s->attrs, s->alen);
        } else {
            p = realloc(s->attrs, cap);
        }
        if (p == NULL)
            return 0;
        s->attrs = p;
        s->acap = cap;
    }
    return 1;
}

/* Where the next attribute of at most `most` bytes goes, after its comma,
 * or NULL when the span has no room for it. */
static char *attr_slot(sl_span *s, size_t most)
{
    if (!attrs_room(s, 1 + most))
        return NULL;
    if (s->alen == 0)
        return s->attrs;
    s->attrs[s->alen] = ',';
    return s->attrs + s->alen + 1;
}

/* Keeps the `n` bytes written at `d` (from attr_slot()) unless they take
 * the span over its bound: then it keeps what it had. */
static void attr_commit(sl_span *s, const char *d, size_t n)
{
    size_t len = (size_t)(d - s->attrs) + n;

    if (len <= ATTRS_MAX)
        s->alen = len;
}

/* Appends one attribute, as its OTLP JSON (sl_otlp_attr() says what
 * `type` is); a span over its bound keeps what it had. */
static void add_attr(sl_span *s, char type, const char *key, const char *value, size_t vlen)
{
    size_t klen = strlen(key);
    char *d;

    if (s->alen + klen + vlen > ATTRS_MAX)
        return; /* over it already before any escaping */
    d = attr_slot(s, SL_OTLP_ATTR_MAX(klen, vlen));
    if (d != NULL)
        attr_commit(s, d, sl_otlp_attr(d, type, key, value, vlen));
}

/* Encodes the key's part of `k` once; 0 when it does not fit `head`. */
static int key_encoded(sl_span_key *k)
{
    char head[SL_OTLP_ATTR_MAX(64, 0)];
    size_t n;

    if (k->len > 0)
        return 1;
    if (strlen(k->name) > 64)
        return 0;
    n = sl_otlp_attr_head(head, k->type, k->name);
    if (n > sizeof(k->head))
        return 0;
    memcpy(k->head, head, n);
    k->len = n;
    return 1;
}

static void put_attr(sl_span *s, sl_span_key *k, const char *value, size_t vlen)
{
    char *d;

    if (!key_encoded(k)) {
        add_attr(s, k->type, k->name, value, vlen);
        return;
    }
    if (s->alen + k->len + vlen > ATTRS_MAX)
        return;
    d = attr_slot(s, k->len + SL_OTLP_ATTR_MAX(0, vlen));
    if (d == NULL)
        return;
    memcpy(d, k->head, k->len);
    attr_commit(s, d, k->len + sl_otlp_attr_value(d + k->len, value, vlen));
}

void sl_span_put(sl_span *s, sl_span_key *k, const char *value)
{
    if (s != NULL && s->recording && value != NULL)
        put_attr(s, k, value, strnlen(value, SL_SPAN_VALUE_MAX));
}

void sl_span_put_int(sl_span *s, sl_span_key *k, long long value)
{
    char *d;

    if (s == NULL || !s->recording)
        return;
    if (!key_encoded(k)) {
        sl_span_set_int(s, k->name, value);
        return;
    }
    if (s->alen + k->len + SL_OTLP_ATTR_INT_MAX > ATTRS_MAX)
        return;
    d = attr_slot(s, k->len + SL_OTLP_ATTR_INT_MAX);
    if (d == NULL)
        return;
    memcpy(d, k->head, k->len);
    attr_commit(s, d, k->len + sl_otlp_attr_int(d + k->len, value));
}

static void release_span(void *obj)
{
    sl_span *s = obj;

    s->res = NULL; /* the tracker is freeing it */
    sl_span_fail(s, "the instance stopped before the span ended");
    sl_span_end(s);
}

static sl_span *start_owned(sl_ctx *ctx, sl_span *s)
{
    if (s == NULL)
        return NULL;
    s->owner = ctx;
    s->res = sl_track(ctx, "span", s, release_span, NULL);
    if (s->res == NULL) {
        sl_span_free(s);
        return NULL;
    }
    return s;
}

SL_API sl_span *sl_span_start(sl_ctx *ctx, sl_span_kind kind, const char *name)
{
    if (!sl_trace_on())
        return NULL;
    return start_owned(ctx, sl_span_begin(NULL, (int)kind, name, NULL));
}

SL_API sl_span *sl_span_start_from(sl_ctx *ctx, sl_span_kind kind, const char *name,
                                   const char *traceparent)
{
    sl_trace_ctx remote = { 0 };

    if (!sl_trace_on())
        return NULL;
    remote.traced = sl_tp_parse(traceparent, &remote.tp) == 0;
    return start_owned(ctx, sl_span_begin(&remote, (int)kind, name, NULL));
}

SL_API sl_span *sl_span_start_linked(sl_ctx *ctx, sl_span_kind kind, const char *name,
                                     const char *links, size_t n)
{
    sl_trace_ctx none = { 0 };
    sl_span *s;
    int any = 0;
    sl_tp tp;

    if (!sl_trace_on())
        return NULL;
    for (size_t i = 0; i < n && !any; i++)
        any = sl_tp_parse(links + i * SL_TRACEPARENT_SIZE, &tp) == 0 &&
              (tp.flags & SL_TP_SAMPLED) != 0;
    s = sl_span_begin(&none, (int)kind, name, NULL);
    if (s == NULL)
        return NULL;
    /* The ratio's decision is replaced by the messages': a batch of
     * sampled messages is recorded whatever the ratio says of it. */
    s->tp.flags = any ? SL_TP_SAMPLED : 0;
    s->recording = (uint8_t)any;
    for (size_t i = 0; i < n && any; i++)
        sl_span_link(s, links + i * SL_TRACEPARENT_SIZE);
    return start_owned(ctx, s);
}

SL_API void sl_span_set_str(sl_span *s, const char *key, const char *value)
{
    if (s != NULL && s->recording && key != NULL && value != NULL)
        add_attr(s, 's', key, value, strnlen(value, SL_SPAN_VALUE_MAX));
}

/* Room in the set for one more attribute of at most `most` bytes: where
 * it goes (after a comma when the set holds one already), or NULL when out
 * of memory, the set left as it was. */
static char *attrs_grow(sl_span_attrs *a, size_t most)
{
    char *p = realloc(a->json, a->len + 1 + most);

    if (p == NULL)
        return NULL;
    a->json = p;
    if (a->len > 0)
        a->json[a->len++] = ',';
    return a->json + a->len;
}

int sl_span_attrs_add(sl_span_attrs *a, const char *key, const char *value)
{
    size_t vlen = strnlen(value, SL_SPAN_VALUE_MAX);
    char *d = attrs_grow(a, SL_OTLP_ATTR_MAX(strlen(key), vlen));

    if (d == NULL)
        return -1;
    a->len += sl_otlp_attr(d, 's', key, value, vlen);
    return 0;
}

int sl_span_attrs_add_int(sl_span_attrs *a, const char *key, long long value)
{
    char *d = attrs_grow(a, SL_OTLP_ATTR_MAX(strlen(key), 0) + SL_OTLP_ATTR_INT_MAX);
    size_t n;

    if (d == NULL)
        return -1;
    n = sl_otlp_attr_head(d, 'i', key);
    a->len += n + sl_otlp_attr_int(d + n, value);
    return 0;
}

void sl_span_set_attrs(sl_span *s, const sl_span_attrs *a)
{
    char *d;

    if (s == NULL || !s->recording || a->len == 0 || s->alen + 1 + a->len > ATTRS_MAX)
        return;
    d = attr_slot(s, a->len);
    if (d == NULL)
        return;
    memcpy(d, a->json, a->len);
    attr_commit(s, d, a->len);
}

SL_API void sl_span_set_int(sl_span *s, const char *key, long long value)
{
    size_t klen, n;
    char *d;

    if (s == NULL || !s->recording || key == NULL)
        return;
    klen = strlen(key);
    if (s->alen + klen + SL_OTLP_ATTR_INT_MAX > ATTRS_MAX)
        return;
    d = attr_slot(s, SL_OTLP_ATTR_MAX(klen, 0) + SL_OTLP_ATTR_INT_MAX);
    if (d == NULL)
        return;
    n = sl_otlp_attr_head(d, 'i', key);
    attr_commit(s, d, n + sl_otlp_attr_int(d + n, value));
}

SL_API void sl_span_link(sl_span *s, const char *traceparent)
{
    sl_tp tp;

    if (s == NULL || !s->recording || sl_tp_parse(traceparent, &tp) != 0)
        return;
    if (s->nlinks == LINKS_MAX) {
        s->dropped_links++;
        return;
    }
    if (s->nlinks == s->caplinks) {
        size_t cap = s->caplinks ? s->caplinks * 2 : 8;
        sl_tp *p = realloc(s->links, cap * sizeof(*p));
        if (p == NULL) {
            s->dropped_links++;
            return;
        }
        s->links = p;
        s->caplinks = cap;
    }
    s->links[s->nlinks++] = tp;
}

SL_API void sl_span_fail(sl_span *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (s == NULL)
        return;
    s->failed = 1;
    if (!s->recording || s->status_msg != NULL)
        return; /* the first reason is the cause; later ones follow from it */
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    s->status_msg = strdup(msg);
}

SL_API void sl_span_end(sl_span *s)
{
    if (s == NULL)
        return;
    if (s->entered)
        sl_span_leave(s);
    if (s->res != NULL)
        sl_untrack(s->owner, s->res);
    s->res = NULL;
    /* No log line is its event any more: its slot goes back now, not once
     * it was exported, so the table holds open spans only. */
    sl_trace_events_drop(s);
    if (!s->recording) {
        sl_span_free(s);
        return;
    }
    s->end_ns = wall_ns();
    sl_trace_export_span(s);
}

SL_API void sl_span_enter(sl_span *s)
{
    sl_trace_ctx next;

    if (s == NULL || s->entered)
        return;
    next = sl_trace_cur;
    next.tp = s->tp;
    next.traced = 1;
    sl_trace_enter(&next, &s->saved);
    s->entered = 1;
}

SL_API void sl_span_leave(sl_span *s)
{
    if (s == NULL || !s->entered)
        return;
    sl_trace_restore(&s->saved);
    s->entered = 0;
}

SL_API int sl_trace_current(char *buf)
{
    if (!sl_trace_cur.traced)
        return -1;
    sl_tp_format(&sl_trace_cur.tp, buf);
    return 0;
}

SL_API int sl_span_traceparent(const sl_span *s, char *buf)
{
    if (s == NULL)
        return -1;
    sl_tp_format(&s->tp, buf);
    return 0;
}
