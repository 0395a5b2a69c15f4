/*
 * test_aggregator_validate.c - the aggregator's pure parts: every
 * handler's checks and their reasons (the generator's malformed kinds
 * among them), RFC 3339, the dedup window (against a plain list of the
 * last N ids) and its hash, and RowBinary values (raw payloads with NULs
 * and control bytes included).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "dedup.h"
#include "jbuf.h"
#include "rowbin.h"
#include "rowsort.h"
#include "validate.h"

static char detail[256];
static const agg_limits lim = { 1764511200.0 /* 2025-11-30T14:00:00Z */, 300 };

static agg_reason pv(const char *json, agg_page_view *out)
{
    return agg_check_page_view(json, strlen(json), &lim, out, detail, sizeof(detail));
}

static void test_page_view_valid(void **state)
{
    agg_page_view e;
    (void)state;
    assert_int_equal(
            pv("{\"event_id\":\"a-1\",\"event_type\":\"bounce\",\"page_id\":\"page-7\","
               "\"user_id\":\"user-3\",\"ts\":\"2025-11-30T13:59:59.250Z\",\"duration_s\":3}",
               &e),
            AGG_OK);
    assert_string_equal(e.event_id, "a-1");
    assert_int_equal(e.bounce, 1);
    assert_string_equal(e.page_id, "page-7");
    assert_true(e.ts_ms == 1764511199250LL);
    assert_true(e.duration_s == 3);
    /* a numeric user id is accepted as text */
    assert_int_equal(
            pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":42,"
               "\"ts\":\"2025-11-30T14:00:00+01:00\",\"duration_s\":10.5}",
               &e),
            AGG_OK);
    assert_string_equal(e.user_id, "42");
    assert_true(e.ts_ms == 1764507600000LL);
}

static void test_page_view_generator_kinds(void **state)
{
    agg_page_view e;
    (void)state;
    /* the generator's five malformed kinds, as it renders them */
    assert_int_equal(pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"page-1\","
                        "\"ts\":\"2025-11-30T14:00:00.000Z\",\"duration_s\":10}",
                        &e),
                     AGG_R_MISSING_FIELD);
    assert_non_null(strstr(detail, "user_id"));
    assert_int_equal(
            pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"page-1\","
               "\"user_id\":\"user-1\",\"ts\":\"2025-11-30T14:00:00.000Z\",\"duration_s\":\"10s\"}",
               &e),
            AGG_R_WRONG_TYPE);
    assert_int_equal(
            pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"page-1\","
               "\"user_id\":\"user-1\",\"ts\":\"2025-11-30T14:00:00.000Z\",\"duration_s\":10",
               &e),
            AGG_R_BROKEN_JSON);
    assert_int_equal(
            pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"page-1\","
               "\"user_id\":\"user-1\",\"ts\":\"2025-11-30T14:00:00.000Z\",\"duration_s\":-5}",
               &e),
            AGG_R_NEGATIVE_DURATION);
    assert_int_equal(pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"page-1\","
                        "\"user_id\":\"user-1\",\"ts\":\"2026-13-32T25:61:61Z\",\"duration_s\":10}",
                        &e),
                     AGG_R_BAD_TIMESTAMP);
    assert_string_equal(agg_reason_name(AGG_R_NEGATIVE_DURATION), "negative_duration");
}

static void test_page_view_other_rejections(void **state)
{
    agg_page_view e;
    (void)state;
    assert_int_equal(pv("[1,2]", &e), AGG_R_NOT_OBJECT);
    assert_int_equal(
            pv("{\"event_id\":\"a\",\"event_type\":\"click\",\"page_id\":\"p\",\"user_id\":\"u\","
               "\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}",
               &e),
            AGG_R_BAD_VALUE);
    assert_int_equal(
            pv("{\"event_id\":\"\",\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":\"u\","
               "\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}",
               &e),
            AGG_R_BAD_VALUE);
    assert_int_equal(
            pv("{\"event_id\":7,\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":\"u\","
               "\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}",
               &e),
            AGG_R_WRONG_TYPE);
    /* 5 minutes ahead is allowed, an hour is not */
    assert_int_equal(
            pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":\"u\","
               "\"ts\":\"2025-11-30T14:04:00Z\",\"duration_s\":1}",
               &e),
            AGG_OK);
    assert_int_equal(
            pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":\"u\","
               "\"ts\":\"2025-11-30T15:00:00Z\",\"duration_s\":1}",
               &e),
            AGG_R_FUTURE_TIMESTAMP);
    assert_int_equal(agg_check_page_view(NULL, 0, &lim, &e, detail, sizeof(detail)), AGG_R_EMPTY);
}

/* The allocation-free path and the general one agree: inputs the first
 * hands over (escapes, nesting, trailing bytes) get the same verdict. */
static void test_page_view_paths(void **state)
{
    agg_page_view e;
    (void)state;
    assert_int_equal(pv("{\"event_id\":\"a\\u0062\",\"event_type\":\"view\",\"page_id\":\"p\","
                        "\"user_id\":\"u\","
                        "\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}",
                        &e),
                     AGG_OK);
    assert_string_equal(e.event_id, "ab");
    assert_int_equal(pv(" {\"extra\":{\"n\":[1,{\"x\":null}]},\"event_id\":\"a\",\"event_type\":"
                        "\"view\",\"page_id\":\"p\","
                        "\"user_id\":\"u\",\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1.5e1} ",
                        &e),
                     AGG_OK);
    assert_true(e.duration_s == 15);
    /* a repeated key: the first wins on both paths */
    assert_int_equal(pv("{\"event_type\":\"click\",\"event_type\":\"view\",\"event_id\":\"a\","
                        "\"page_id\":\"p\","
                        "\"user_id\":\"u\",\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}",
                        &e),
                     AGG_R_BAD_VALUE);
    assert_int_equal(pv("{\"event_type\":\"click\",\"event_type\":\"view\",\"event_id\":"
                        "\"a\\u0062\",\"page_id\":\"p\","
                        "\"user_id\":\"u\",\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}",
                        &e),
                     AGG_R_BAD_VALUE);
    assert_int_equal(
            pv("{\"event_id\":null,\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":true,"
               "\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}",
               &e),
            AGG_R_WRONG_TYPE);
    assert_int_equal(
            pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":\"u\","
               "\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":-}",
               &e),
            AGG_R_BROKEN_JSON);
    assert_int_equal(
            pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":7.5,"
               "\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}",
               &e),
            AGG_R_BAD_VALUE);
}

static void test_rfc3339(void **state)
{
    int64_t ms;
    (void)state;
    assert_int_equal(agg_parse_rfc3339("2024-02-29T23:59:60Z", &ms), 0);
    assert_int_equal(agg_parse_rfc3339("2023-02-29T00:00:00Z", &ms), -1);
    assert_int_equal(agg_parse_rfc3339("2025-11-30T14:00:00", &ms), -1);
    assert_int_equal(agg_parse_rfc3339("2025-11-30T14:00:00.Z", &ms), -1);
    assert_int_equal(agg_parse_rfc3339("1969-12-31T23:59:59Z", &ms), -1);
    assert_int_equal(agg_parse_rfc3339("2025-11-30T14:00:00.123456Z", &ms), 0);
    assert_true(ms == 1764511200123LL);
    assert_int_equal(agg_parse_rfc3339("2025-11-30T14:00:00Zjunk", &ms), -1);
}

static void test_analytics(void **state)
{
    agg_analytics e;
    const char *ok = "{\"id\":17,\"timestamp\":\"2025-11-30T13:00:00Z\",\"eventType\":\"click\","
                     "\"userId\":\"u1\",\"properties\":{\"a\":[1,2]}}";
    (void)state;
    assert_int_equal(agg_check_analytics(ok, strlen(ok), &lim, &e, detail, sizeof(detail)), AGG_OK);
    assert_string_equal(e.id, "17");
    assert_string_equal(e.properties, "{\"a\":[1,2]}");
    free(e.properties);
    const char *bad =
            "{\"id\":\"x\",\"timestamp\":\"2025-11-30T13:00:00Z\",\"eventType\":\"click\","
            "\"userId\":\"u1\",\"properties\":5}";
    assert_int_equal(agg_check_analytics(bad, strlen(bad), &lim, &e, detail, sizeof(detail)),
                     AGG_R_WRONG_TYPE);
    free(e.properties);
}

/* Without id or timestamp: the id is derived from the content, the same
 * for a copy written in another member order or spacing and different for
 * any other content; the time is the one consumed. */
static void test_analytics_lenient(void **state)
{
    agg_analytics e, f;
    const char *bare = "{\"eventType\":\"click\",\"userId\":\"u1\",\"properties\":{\"b\":1,\"a\":[{"
                       "\"y\":1,\"x\":2}]}}";
    const char *reordered = "{ \"properties\": {\"a\": [{\"x\": 2, \"y\": 1}], \"b\": 1},"
                            " \"userId\": \"u1\", \"eventType\": \"click\" }";
    const char *other = "{\"eventType\":\"click\",\"userId\":\"u2\",\"properties\":{\"b\":1,\"a\":["
                        "{\"y\":1,\"x\":2}]}}";
    (void)state;
    assert_int_equal(agg_check_analytics(bare, strlen(bare), &lim, &e, detail, sizeof(detail)),
                     AGG_OK);
    assert_true(e.id_derived && e.ts_consumed);
    assert_true(e.ts_ms == 1764511200000LL);
    assert_int_equal(strlen(e.id), AGG_DERIVED_ID_LEN);
    assert_true(e.id[14] == '8' && strchr("89ab", e.id[19]) != NULL);
    /* the properties keep the producer's order; only the id sees them sorted */
    assert_string_equal(e.properties, "{\"b\":1,\"a\":[{\"y\":1,\"x\":2}]}");
    free(e.properties);
    assert_int_equal(agg_check_analytics(reordered, strlen(reordered), &lim, &f, detail,
                                         sizeof(detail)),
                     AGG_OK);
    assert_string_equal(f.id, e.id);
    free(f.properties);
    assert_int_equal(agg_check_analytics(other, strlen(other), &lim, &f, detail, sizeof(detail)),
                     AGG_OK);
    assert_string_not_equal(f.id, e.id);
    free(f.properties);
    /* a timestamp that is there must still be one */
    const char *badts = "{\"eventType\":\"click\",\"userId\":\"u1\",\"timestamp\":\"soon\"}";
    assert_int_equal(agg_check_analytics(badts, strlen(badts), &lim, &f, detail, sizeof(detail)),
                     AGG_R_BAD_TIMESTAMP);
    free(f.properties);
    const char *badid = "{\"id\":{},\"eventType\":\"click\",\"userId\":\"u1\"}";
    assert_int_equal(agg_check_analytics(badid, strlen(badid), &lim, &f, detail, sizeof(detail)),
                     AGG_R_WRONG_TYPE);
    free(f.properties);
}

static void test_segment(void **state)
{
    agg_segment e;
    const char *v = "{\"user_id\":1,\"slug\":\"AVITO_DISCOUNT_30\",\"operation\":\"D\","
                    "\"ts\":\"2025-11-30T14:00:00.123Z\"}";
    (void)state;
    assert_int_equal(agg_check_segment(v, strlen(v), "42", "segment_removed", &lim, &e, detail,
                                       sizeof(detail)),
                     AGG_OK);
    assert_true(e.event_id == 42 && e.user_id == 1 && e.operation == 'D');
    assert_int_equal(agg_check_segment(v, strlen(v), NULL, NULL, &lim, &e, detail, sizeof(detail)),
                     AGG_R_MISSING_EVENT_ID);
    assert_int_equal(agg_check_segment(v, strlen(v), "4x", NULL, &lim, &e, detail, sizeof(detail)),
                     AGG_R_MISSING_EVENT_ID);
    assert_int_equal(agg_check_segment(v, strlen(v), "42", "segment_added", &lim, &e, detail,
                                       sizeof(detail)),
                     AGG_R_BAD_VALUE);
}

/* The other outbox events of the segments module: a user's creation (no
 * slug) and a segment's creation, change and deletion (user 0). */
static void test_segment_kinds(void **state)
{
    static const struct {
        const char *json, *type;
        agg_reason want;
    } cases[] = {
        { "{\"user_id\":7,\"slug\":\"\",\"operation\":\"N\",\"ts\":\"2025-11-30T14:00:00Z\"}",
          "user_created", AGG_OK },
        { "{\"user_id\":7,\"operation\":\"N\",\"ts\":\"2025-11-30T14:00:00Z\"}", NULL, AGG_OK },
        { "{\"user_id\":7,\"slug\":\"A\",\"operation\":\"N\",\"ts\":\"2025-11-30T14:00:00Z\"}",
          "user_created", AGG_R_BAD_VALUE },
        { "{\"user_id\":0,\"slug\":\"A\",\"operation\":\"C\",\"ts\":\"2025-11-30T14:00:00Z\"}",
          "segment_created", AGG_OK },
        { "{\"user_id\":0,\"slug\":\"A\",\"operation\":\"U\",\"ts\":\"2025-11-30T14:00:00Z\"}",
          "segment_updated", AGG_OK },
        { "{\"user_id\":0,\"slug\":\"A\",\"operation\":\"X\",\"ts\":\"2025-11-30T14:00:00Z\"}",
          "segment_deleted", AGG_OK },
        { "{\"user_id\":0,\"slug\":\"A\",\"operation\":\"X\",\"ts\":\"2025-11-30T14:00:00Z\"}",
          "segment_created", AGG_R_BAD_VALUE },
        { "{\"user_id\":0,\"slug\":\"\",\"operation\":\"C\",\"ts\":\"2025-11-30T14:00:00Z\"}",
          "segment_created", AGG_R_BAD_VALUE },
        { "{\"user_id\":0,\"slug\":\"A\",\"operation\":\"Q\",\"ts\":\"2025-11-30T14:00:00Z\"}",
          NULL, AGG_R_BAD_VALUE },
        { "{\"user_id\":0,\"slug\":\"A\",\"operation\":\"CC\",\"ts\":\"2025-11-30T14:00:00Z\"}",
          NULL, AGG_R_BAD_VALUE },
        /* another producer's header type is not ours to judge */
        { "{\"user_id\":0,\"slug\":\"A\",\"operation\":\"C\",\"ts\":\"2025-11-30T14:00:00Z\"}",
          "something_else", AGG_OK },
    };
    agg_segment e;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        agg_reason r = agg_check_segment(cases[i].json, strlen(cases[i].json), "9", cases[i].type,
                                         &lim, &e, detail, sizeof(detail));
        if (r != cases[i].want)
            fail_msg("case %zu: %s -> %d (%s), want %d", i, cases[i].json, r, detail,
                     cases[i].want);
    }
    assert_int_equal(agg_check_segment(cases[0].json, strlen(cases[0].json), "9", "user_created",
                                       &lim, &e, detail, sizeof(detail)),
                     AGG_OK);
    assert_true(e.operation == 'N' && e.user_id == 7 && e.slug[0] == '\0');
}

static void test_dedup(void **state)
{
    agg_dedup d;
    char id[16];
    (void)state;
    assert_int_equal(agg_dedup_init(&d, 3), 0);
    assert_int_equal(agg_dedup_check(&d, "a"), 0);
    assert_int_equal(agg_dedup_check(&d, "b"), 0);
    assert_int_equal(agg_dedup_check(&d, "a"), 1);
    assert_int_equal(agg_dedup_check(&d, "c"), 0);
    assert_int_equal(agg_dedup_check(&d, "d"), 0); /* evicts a */
    assert_int_equal(agg_dedup_check(&d, "a"), 0);
    assert_int_equal(agg_dedup_check(&d, "d"), 1);
    agg_dedup_free(&d);
    assert_int_equal(agg_dedup_init(&d, 1000), 0);
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "id-%d", i);
        assert_int_equal(agg_dedup_check(&d, id), 0);
    }
    for (int i = 4000; i < 5000; i++) {
        snprintf(id, sizeof(id), "id-%d", i);
        assert_int_equal(agg_dedup_check(&d, id), 1);
    }
    agg_dedup_free(&d);
}

/* The window against a model: a FIFO of the last `cap` distinct ids,
 * over a stream dense in repeats so that evictions shift long clusters. */
static void test_dedup_model(void **state)
{
    enum { CAP = 50, IDS = 200, OPS = 40000 };
    agg_dedup d;
    int fifo[CAP], n = 0, head = 0;
    unsigned seed = 12345;
    char id[16];
    (void)state;
    assert_int_equal(agg_dedup_init(&d, CAP), 0);
    for (int op = 0; op < OPS; op++) {
        int x, seen = 0;
        seed = seed * 1103515245u + 12345u;
        x = (int)((seed >> 16) % IDS);
        for (int i = 0; i < n; i++)
            seen |= fifo[(head + i) % CAP] == x;
        snprintf(id, sizeof(id), "ev-%d", x);
        assert_int_equal(agg_dedup_check(&d, id), seen);
        if (!seen) {
            if (n == CAP)
                head = (head + 1) % CAP;
            else
                n++;
            fifo[(head + n - 1) % CAP] = x;
        }
    }
    agg_dedup_free(&d);
    assert_int_equal(agg_dedup_init(&d, 0), 0);
    assert_int_equal(agg_dedup_check(&d, "a"), 0);
    assert_int_equal(agg_dedup_check(&d, "a"), 0);
    agg_dedup_free(&d);
}

/* SipHash-1-3 with the 128-bit finalization; the -2-4 reference vectors
 * (key 00..0f, messages 00, 00 01, ...) do not apply to 1-3, so these are
 * its known answer, from a second implementation (in Python) that gives
 * the -2-4 vectors when run with 2 and 4 rounds. */
static void test_siphash(void **state)
{
    const uint64_t k0 = 0x0706050403020100ULL, k1 = 0x0f0e0d0c0b0a0908ULL;
    unsigned char m[16];
    agg_h128 a, b;
    (void)state;
    for (int i = 0; i < 16; i++)
        m[i] = (unsigned char)i;
    a = agg_siphash128(k0, k1, m, 15);
    b = agg_siphash128(k0, k1, m, 15);
    assert_true(a.lo == b.lo && a.hi == b.hi);
    b = agg_siphash128(k0, k1, m, 16);
    assert_false(a.lo == b.lo && a.hi == b.hi);
    b = agg_siphash128(k0 + 1, k1, m, 15);
    assert_false(a.lo == b.lo || a.hi == b.hi);
    assert_true(a.lo == 0x6c52bdb205557ec1ULL && a.hi == 0x09017e1eeccd2129ULL);
}

static void test_rowbin(void **state)
{
    jbuf b = { 0 };
    static const char raw[] = "a\"b\\c\n\x01\0z";
    static const unsigned char want[] = {
        9,    'a',  '"',  'b',  '\\', 'c', '\n', 1,    0, 'z', /* String: LEB128 length, bytes */
        0x34, 0x12,                                            /* UInt16 */
        0xfe, 0xff, 0xff, 0xff,                                /* Int32 -2 */
        1,    0,    0,    0,    0,    0,   0,    0x80,         /* Int64 INT64_MIN + 1 */
        0,    0,    0,    0,    0,    0,   0xf8, 0x3f,         /* Float64 1.5 */
        0xe0, 0x4d, 0x2c, 0x69,                                /* DateTime 2025-11-30 14:00:00 */
        0,    0,    0,    0,                                   /* DateTime out of range: 0 */
    };
    char big[300];
    (void)state;
    rb_str(&b, raw, sizeof(raw) - 1);
    rb_u16(&b, 0x1234);
    rb_i32(&b, -2);
    rb_i64(&b, INT64_MIN + 1);
    rb_f64(&b, 1.5);
    rb_datetime(&b, 1764511200);
    rb_datetime(&b, -1);
    assert_false(b.oom);
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.p, want, sizeof(want));
    /* A length of two LEB128 bytes: 300 = 0xac 0x02. */
    jb_reset(&b);
    memset(big, 'x', sizeof(big));
    rb_str(&b, big, sizeof(big));
    assert_int_equal(b.len, 2 + sizeof(big));
    assert_int_equal((unsigned char)b.p[0], 0xac);
    assert_int_equal((unsigned char)b.p[1], 0x02);
    /* A dropped row is taken back. */
    jb_truncate(&b, 2);
    assert_int_equal(b.len, 2);
    jb_reset(&b);
    jb_datetime(&b, 1764511200);
    assert_string_equal(b.p, "2025-11-30 14:00:00");
    jb_free(&b);
}

/* A page_views row as the handler writes it; `seq` goes in kafka_offset. */
static void pv_row(jbuf *b, const char *event_id, const char *page_id, int64_t minute, int64_t seq)
{
    rb_cstr(b, event_id);
    rb_cstr(b, "view");
    rb_cstr(b, page_id);
    rb_cstr(b, "user-1");
    rb_f64(b, 1.5);
    rb_datetime(b, minute + 7);
    rb_u16(b, 0);
    rb_datetime(b, minute);
    rb_cstr(b, "pv");
    rb_i32(b, 0);
    rb_i64(b, seq);
}

/* The test's own reading of a page_views row: its key and kafka_offset. */
typedef struct {
    uint32_t minute;
    char page[64], event[64];
    int64_t seq;
} pv_key;

static const unsigned char *rd_str(const unsigned char *p, char *out)
{
    size_t n = *p++; /* lengths under 128 here */
    memcpy(out, p, n);
    out[n] = '\0';
    return p + n;
}

static size_t pv_read(const unsigned char *p, pv_key *k)
{
    const unsigned char *s = p;
    char skip[64];
    s = rd_str(s, k->event);
    s = rd_str(s, skip);
    s = rd_str(s, k->page);
    s = rd_str(s, skip);
    s += 8 + 4 + 2;
    memcpy(&k->minute, s, 4);
    s += 4;
    s = rd_str(s, skip);
    s += 4;
    memcpy(&k->seq, s, 8);
    return (size_t)(s + 8 - p);
}

/* ClickHouse's order for (minute, page_id, event_id): strings bytewise,
 * a prefix first. */
static int pv_cmp(const pv_key *a, const pv_key *b)
{
    int c;
    if (a->minute != b->minute)
        return a->minute < b->minute ? -1 : 1;
    if ((c = strcmp(a->page, b->page)) != 0)
        return c;
    return strcmp(a->event, b->event);
}

static void test_rowsort(void **state)
{
    enum { N = 5000 };
    static const char *pages[] = { "page-1", "page-10", "page-1000000000000",  "page-100000000000",
                                   "page-2", "p",       "page-10000000000000x" };
    jbuf rows = { 0 }, copy = { 0 }, err = { 0 }, spare = { 0 };
    uint32_t ends[N], eends[4];
    agg_sorter s = { 0 };
    unsigned seed = 7;
    (void)state;
    for (int64_t i = 0; i < N; i++) {
        char ev[40];
        seed = seed * 1103515245u + 12345u;
        /* Few event ids, so equal keys are common: they keep their order.
         * They differ in their first bytes, so two pages alike in their
         * first twelve are told apart by the pages, not the ids. */
        snprintf(ev, sizeof(ev), "%02u-ev-%08u", (seed >> 4) % 40, (seed >> 8) % 3);
        pv_row(&rows, ev, pages[(seed >> 16) % 7], 1764511200 + 60 * (int64_t)((seed >> 20) % 3),
               i);
        ends[i] = (uint32_t)rows.len;
    }
    jb_put(&copy, rows.p, rows.len);
    assert_int_equal(agg_rows_sort(&s, AGG_KEY_PAGE_VIEWS, &rows, ends, N, &spare), 0);
    assert_int_equal(rows.len, copy.len);
    /* In order, ties in their first order, and every row still there once. */
    {
        pv_key prev, k;
        size_t at = 0;
        static char seen[N];
        for (int i = 0; i < N; i++) {
            at += pv_read((const unsigned char *)rows.p + at, &k);
            assert_true(k.seq >= 0 && k.seq < N && !seen[k.seq]);
            seen[k.seq] = 1;
            if (i > 0) {
                int c = pv_cmp(&prev, &k);
                assert_true(c < 0 || (c == 0 && prev.seq < k.seq));
            }
            prev = k;
        }
        assert_int_equal(at, rows.len);
    }
    /* Ends that do not fit the buffer: nothing moves. */
    memcpy(rows.p, copy.p, copy.len);
    ends[N - 1] = (uint32_t)rows.len + 1;
    assert_int_equal(agg_rows_sort(&s, AGG_KEY_PAGE_VIEWS, &rows, ends, N, &spare), -1);
    assert_memory_equal(rows.p, copy.p, copy.len);
    /* Errors by (topic, partition, offset), signed; a row too short for its
     * key sorts first and stays whole. */
    rb_cstr(&err, "t");
    rb_i32(&err, 0);
    rb_i64(&err, 5);
    eends[0] = (uint32_t)err.len;
    rb_cstr(&err, "t");
    rb_i32(&err, -1);
    rb_i64(&err, 9);
    eends[1] = (uint32_t)err.len;
    rb_cstr(&err, "t");
    rb_i32(&err, 0);
    rb_i64(&err, -3);
    eends[2] = (uint32_t)err.len;
    rb_cstr(&err, "zz");
    eends[3] = (uint32_t)err.len;
    assert_int_equal(agg_rows_sort(&s, AGG_KEY_ERRORS, &err, eends, 4, &spare), 0);
    {
        static const unsigned char want[] = { 2,    'z',  'z',                    /* no key */
                                              1,    't',  0xff, 0xff, 0xff, 0xff, /* -1, 9 */
                                              9,    0,    0,    0,    0,    0,    0,    0,
                                              1,    't',  0,    0,    0,    0, /* 0, -3 */
                                              0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                              1,    't',  0,    0,    0,    0, /* 0, 5 */
                                              5,    0,    0,    0,    0,    0,    0,    0 };
        assert_int_equal(err.len, sizeof(want));
        assert_memory_equal(err.p, want, sizeof(want));
    }
    /* The old buffer came back as the spare, emptied. */
    assert_int_equal(spare.len, 0);
    agg_sorter_free(&s);
    jb_free(&spare);
    jb_free(&rows);
    jb_free(&copy);
    jb_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page_view_valid),
        cmocka_unit_test(test_page_view_generator_kinds),
        cmocka_unit_test(test_page_view_other_rejections),
        cmocka_unit_test(test_page_view_paths),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_analytics),
        cmocka_unit_test(test_analytics_lenient),
        cmocka_unit_test(test_segment),
        cmocka_unit_test(test_segment_kinds),
        cmocka_unit_test(test_dedup),
        cmocka_unit_test(test_dedup_model),
        cmocka_unit_test(test_siphash),
        cmocka_unit_test(test_rowbin),
        cmocka_unit_test(test_rowsort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
