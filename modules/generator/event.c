/*
 * event.c - drawing and rendering events.
 */
#include <string.h>
#include <time.h>
#include "event.h"

static const char hex[] = "0123456789abcdef";

static void uuid4(char *out, gen_rng *r)
{
    uint64_t a = gen_rng_next(r), b = gen_rng_next(r);
    unsigned char v[16];

    for (int i = 0; i < 8; i++) {
        v[i] = (unsigned char)(a >> (8 * i));
        v[8 + i] = (unsigned char)(b >> (8 * i));
    }
    v[6] = (unsigned char)((v[6] & 0x0f) | 0x40); /* version 4 */
    v[8] = (unsigned char)((v[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    for (int i = 0, o = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[v[i] >> 4];
        out[o++] = hex[v[i] & 0x0f];
    }
    out[GEN_ID_LEN] = '\0';
}

void gen_event_draw(gen_event *e, gen_class klass, gen_rng *r, const gen_cdf *pages,
                    const gen_cdf *users, int64_t ts_ms)
{
    e->klass = klass;
    uuid4(e->id, r);
    e->page = (uint32_t)gen_cdf_pick(pages, r) + 1;
    e->user = (uint32_t)gen_cdf_pick(users, r) + 1;
    e->ts_ms = ts_ms;
    if (klass == GEN_BOUNCE)
        e->duration = (int)gen_rng_between(r, 0, 4);
    else if (klass == GEN_NEGATIVE_DURATION)
        e->duration = -(int)gen_rng_between(r, 1, 600);
    else
        e->duration = (int)gen_rng_between(r, 10, 600);
}

/* ------------------------------------------------------------ rendering */

typedef struct {
    char *p;
} out;

static void put(out *o, const char *s, size_t n)
{
    memcpy(o->p, s, n);
    o->p += n;
}

#define PUT_LIT(o, lit) put((o), (lit), sizeof(lit) - 1)

static void put_int(out *o, long long v)
{
    char tmp[24];
    int n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    if (v < 0)
        *o->p++ = '-';
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    while (n > 0)
        *o->p++ = tmp[--n];
}

/* The formatted second is cached: consecutive events share it. */
void gen_rfc3339(int64_t ms, char *buf)
{
    static int64_t cached_sec = INT64_MIN;
    static char cached[21];
    int64_t sec = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    int milli = (int)(ms - sec * 1000);

    if (sec != cached_sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL ||
            strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm) != 19)
            memcpy(cached, "1970-01-01T00:00:00", 20);
        cached_sec = sec;
    }
    memcpy(buf, cached, 19);
    buf[19] = '.';
    buf[20] = (char)('0' + milli / 100);
    buf[21] = (char)('0' + milli / 10 % 10);
    buf[22] = (char)('0' + milli % 10);
    buf[23] = 'Z';
    buf[24] = '\0';
}

/* Everything up to the closing brace, shaped by the class. */
static void render_fields(const gen_event *e, out *o)
{
    char ts[25];

    PUT_LIT(o, "{\"event_id\":\"");
    put(o, e->id, GEN_ID_LEN);
    if (e->klass == GEN_BOUNCE)
        PUT_LIT(o, "\",\"event_type\":\"bounce\",\"page_id\":\"page-");
    else
        PUT_LIT(o, "\",\"event_type\":\"view\",\"page_id\":\"page-");
    put_int(o, e->page);
    if (e->klass != GEN_MISSING_FIELD) {
        PUT_LIT(o, "\",\"user_id\":\"user-");
        put_int(o, e->user);
    }
    PUT_LIT(o, "\",\"ts\":\"");
    if (e->klass == GEN_BAD_TIMESTAMP) {
        PUT_LIT(o, "2026-13-32T25:61:61Z");
    } else {
        gen_rfc3339(e->ts_ms, ts);
        put(o, ts, 24);
    }
    if (e->klass == GEN_WRONG_TYPE) {
        PUT_LIT(o, "\",\"duration_s\":\"");
        put_int(o, e->duration);
        PUT_LIT(o, "s\"");
    } else {
        PUT_LIT(o, "\",\"duration_s\":");
        put_int(o, e->duration);
    }
}

size_t gen_event_render(const gen_event *e, char *buf, size_t pad_to)
{
    out o = { buf };
    size_t len, want = pad_to;

    if (want > GEN_EVENT_SIZE_MAX)
        want = GEN_EVENT_SIZE_MAX;
    /* Broken JSON is a whole event cut before its closing brace: pad it
     * one further so that it too has the requested size once cut. */
    if (e->klass == GEN_BROKEN_JSON && want > 0)
        want++;
    render_fields(e, &o);
    len = (size_t)(o.p - buf);
    /* ,"pad":"" and the closing brace take 10 bytes. */
    if (want >= len + 11) {
        size_t n = want - len - 11;
        PUT_LIT(&o, ",\"pad\":\"");
        memset(o.p, 'x', n + 1);
        o.p += n + 1;
        *o.p++ = '"';
    }
    *o.p++ = '}';
    len = (size_t)(o.p - buf);
    if (e->klass == GEN_BROKEN_JSON)
        len--;
    return len;
}

size_t gen_event_key(const gen_event *e, char *buf)
{
    out o = { buf };
    PUT_LIT(&o, "page-");
    put_int(&o, e->page);
    return (size_t)(o.p - buf);
}
