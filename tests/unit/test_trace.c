/*
 * Unit tests of W3C Trace Context parsing and formatting, and of the OTLP
 * JSON encoding of spans.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include "trace/trace.h"
#include "trace/trace_otlp.h"

/* The daemon defines the loop in main.c, which a unit test does not link. */
struct event_base *sl_base;

static const char good[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

static void test_parse_valid(void **state)
{
    sl_tp tp;
    char out[SL_TP_LEN + 1];
    (void)state;

    assert_int_equal(sl_tp_parse(good, &tp), 0);
    assert_int_equal(tp.trace_id[0], 0x4b);
    assert_int_equal(tp.trace_id[15], 0x36);
    assert_int_equal(tp.span_id[0], 0x00);
    assert_int_equal(tp.span_id[7], 0xb7);
    assert_int_equal(tp.flags, SL_TP_SAMPLED);
    sl_tp_format(&tp, out);
    assert_string_equal(out, good);

    assert_int_equal(sl_tp_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &tp),
                     0);
    assert_int_equal(tp.flags, 0);
    /* A later version is read by the fields it shares with 00. */
    assert_int_equal(sl_tp_parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what",
                                 &tp),
                     0);
    assert_int_equal(tp.flags, 1);
}

/* sl_tp_hex() and sl_tp_format() against printf's %02x: every byte value,
 * and every length up to 256 (written four bytes a step, the rest one at
 * a time). */
static void test_hex(void **state)
{
    uint8_t bytes[256];
    char got[2 * 256 + 2], want[2 * 256 + 1], trace[33], span[17];
    char tp_got[SL_TP_LEN + 2], tp_want[SL_TP_LEN + 1];
    sl_tp tp;
    (void)state;

    for (size_t i = 0; i < 256; i++)
        bytes[i] = (uint8_t)(255 - i);
    for (size_t n = 0; n <= 256; n++) {
        for (size_t i = 0; i < n; i++)
            snprintf(want + 2 * i, 3, "%02x", bytes[i]);
        want[2 * n] = '\0';
        memset(got, 'x', sizeof(got));
        sl_tp_hex(bytes, n, got);
        assert_string_equal(got, want);
        assert_int_equal(got[2 * n + 1], 'x'); /* nothing past the NUL */
    }
    for (size_t k = 0; k + 25 <= 256; k += 5) {
        memcpy(tp.trace_id, bytes + k, 16);
        memcpy(tp.span_id, bytes + k + 16, 8);
        tp.flags = bytes[k + 24];
        sl_tp_hex(tp.trace_id, 16, trace);
        sl_tp_hex(tp.span_id, 8, span);
        snprintf(tp_want, sizeof(tp_want), "00-%s-%s-%02x", trace, span, tp.flags);
        memset(tp_got, 'x', sizeof(tp_got));
        sl_tp_format(&tp, tp_got);
        assert_string_equal(tp_got, tp_want);
        assert_int_equal(tp_got[SL_TP_LEN + 1], 'x');
    }
}

static void test_parse_invalid(void **state)
{
    sl_tp tp;
    static const char *const bad[] = {
        NULL,
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",   /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011", /* v00 with more */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", /* upper case */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero trace */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", /* zero span */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* version ff */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", /* no dash after */
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sl_tp_parse(bad[i], &tp), -1);
}

static void test_tracestate(void **state)
{
    char big[SL_TRACESTATE_MAX + 2];
    char many[40 * 5 + 1] = "";
    (void)state;

    assert_true(sl_tracestate_valid("rojo=00f067aa0ba902b7"));
    assert_true(sl_tracestate_valid("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
    assert_true(sl_tracestate_valid("rojo=1, congo=2 ,"));
    assert_true(sl_tracestate_valid("tenant@vendor=x"));
    assert_false(sl_tracestate_valid("Rojo=1"));
    assert_false(sl_tracestate_valid("rojo"));
    assert_false(sl_tracestate_valid("rojo="));
    assert_false(sl_tracestate_valid("=1"));
    assert_false(sl_tracestate_valid("rojo=a=b"));
    assert_false(sl_tracestate_valid("rojo=\x01"));
    memset(big, 'a', sizeof(big) - 1);
    big[0] = 'k';
    big[1] = '=';
    big[sizeof(big) - 1] = '\0';
    assert_false(sl_tracestate_valid(big));
    for (int i = 0; i < 33; i++) {
        char m[8];
        snprintf(m, sizeof(m), "%sk%d=1", i ? "," : "", i);
        strcat(many, m);
    }
    assert_false(sl_tracestate_valid(many)); /* 33 members */
}

/* A recorded span built by hand: tracing is off in a unit test. */
static sl_span *make_span(const char *name, int kind)
{
    sl_span *s = calloc(1, sizeof(*s));

    assert_non_null(s);
    assert_int_equal(sl_tp_parse(good, &s->tp), 0);
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->attrs = s->inline_attrs;
    s->acap = sizeof(s->inline_attrs);
    s->kind = (uint8_t)kind;
    s->recording = 1;
    s->start_ns = 1700000000000000000ULL;
    s->end_ns = 1700000000000000500ULL;
    return s;
}

/* The body of `n` spans, written the way the exporter writes it. */
static void encode(sl_otlp_buf *buf, const char *resource, sl_span *const *spans, size_t n)
{
    assert_int_equal(sl_otlp_open(buf, resource), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sl_otlp_add(buf, spans[i]), 0);
    assert_int_equal(buf->spans, n);
    assert_int_equal(sl_otlp_close(buf), 0);
}

static cJSON *attr_value(const cJSON *attrs, const char *key)
{
    const cJSON *a;
    cJSON_ArrayForEach (a, attrs) {
        if (strcmp(cJSON_GetObjectItem(a, "key")->valuestring, key) == 0)
            return cJSON_GetObjectItem(a, "value");
    }
    return NULL;
}

static void test_otlp_body(void **state)
{
    const char *keys[] = { "deployment.environment" }, *values[] = { "test\"q" };
    char *resource = sl_otlp_resource("svc", keys, values, 1);
    sl_span *a = make_span("GET /segment/user/{id}", 2), *b = make_span("SELECT", 3);
    sl_otlp_buf buf = { 0 };
    cJSON *doc, *rs, *spans, *sa, *sb;
    (void)state;

    assert_non_null(resource);
    b->has_parent = 1;
    memcpy(b->parent, a->tp.span_id, 8);
    b->tp.span_id[7] = 0x01;
    sl_span_set_str(b, "db.system", "postgresql");
    sl_span_set_int(b, "db.response.returned_rows", 3);
    sl_span_set_str(b, "db.query.text", "SELECT \"x\"\n");
    {
        /* Attributes encoded once for many spans go out as if set one by
         * one. */
        sl_span_attrs set = { 0 };
        assert_int_equal(sl_span_attrs_add(&set, "db.query.summary", "WITH \"y\"\t"), 0);
        assert_int_equal(sl_span_attrs_add(&set, "db.namespace", "sluice"), 0);
        assert_int_equal(sl_span_attrs_add_int(&set, "server.port", 5432), 0);
        assert_int_equal(sl_span_attrs_add_int(&set, "sluice.offset", -9007199254740993LL), 0);
        sl_span_set_attrs(b, &set);
        free(set.json);
    }
    sl_span_link(b, good);
    sl_span_link(b, "nonsense");
    sl_span_fail(b, "boom %d", 7);
    sl_span_fail(b, "later");
    /* Log lines written under the span's handle are its events; a stale
     * handle adds nothing. */
    sl_trace_cur.events = sl_trace_events_take(b);
    assert_int_not_equal(sl_trace_cur.events, 0);
    sl_trace_log_event("debug", "echo", "line \"one\"");
    sl_trace_log_event("info", "core", "two");
    sl_trace_events_drop(b);
    sl_trace_log_event("info", "core", "after the span let go");
    sl_trace_cur.events = 0;

    encode(&buf, resource, (sl_span *[]){ a, b }, 2);
    assert_int_equal(strlen(buf.p), buf.len);
    doc = cJSON_Parse(buf.p);
    assert_non_null(doc);
    rs = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "resourceSpans"), 0);
    assert_string_equal(attr_value(cJSON_GetObjectItem(cJSON_GetObjectItem(rs, "resource"),
                                                       "attributes"),
                                   "service.name")
                                ->child->valuestring,
                        "svc");
    assert_string_equal(attr_value(cJSON_GetObjectItem(cJSON_GetObjectItem(rs, "resource"),
                                                       "attributes"),
                                   "deployment.environment")
                                ->child->valuestring,
                        "test\"q");
    spans = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "scopeSpans"), 0),
                                "spans");
    assert_int_equal(cJSON_GetArraySize(spans), 2);
    sa = cJSON_GetArrayItem(spans, 0);
    sb = cJSON_GetArrayItem(spans, 1);
    assert_string_equal(cJSON_GetObjectItem(sa, "traceId")->valuestring,
                        "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(cJSON_GetObjectItem(sa, "spanId")->valuestring, "00f067aa0ba902b7");
    assert_null(cJSON_GetObjectItem(sa, "parentSpanId"));
    assert_int_equal(cJSON_GetObjectItem(sa, "kind")->valueint, 2);
    assert_string_equal(cJSON_GetObjectItem(sa, "startTimeUnixNano")->valuestring,
                        "1700000000000000000");
    assert_string_equal(cJSON_GetObjectItem(sa, "endTimeUnixNano")->valuestring,
                        "1700000000000000500");
    assert_string_equal(cJSON_GetObjectItem(sb, "parentSpanId")->valuestring, "00f067aa0ba902b7");
    assert_string_equal(cJSON_GetObjectItem(sb, "spanId")->valuestring, "00f067aa0ba90201");
    assert_string_equal(
            attr_value(cJSON_GetObjectItem(sb, "attributes"), "db.system")->child->valuestring,
            "postgresql");
    assert_string_equal(cJSON_GetObjectItem(attr_value(cJSON_GetObjectItem(sb, "attributes"),
                                                       "db.response.returned_rows"),
                                            "intValue")
                                ->valuestring,
                        "3");
    assert_string_equal(
            attr_value(cJSON_GetObjectItem(sb, "attributes"), "db.query.text")->child->valuestring,
            "SELECT \"x\"\n");
    assert_string_equal(attr_value(cJSON_GetObjectItem(sb, "attributes"), "db.query.summary")
                                ->child->valuestring,
                        "WITH \"y\"\t");
    assert_string_equal(
            attr_value(cJSON_GetObjectItem(sb, "attributes"), "db.namespace")->child->valuestring,
            "sluice");
    assert_string_equal(cJSON_GetObjectItem(attr_value(cJSON_GetObjectItem(sb, "attributes"),
                                                       "server.port"),
                                            "intValue")
                                ->valuestring,
                        "5432");
    assert_string_equal(cJSON_GetObjectItem(attr_value(cJSON_GetObjectItem(sb, "attributes"),
                                                       "sluice.offset"),
                                            "intValue")
                                ->valuestring,
                        "-9007199254740993");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(sb, "links")), 1);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(sb, "events")), 2);
    assert_string_equal(
            attr_value(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(sb, "events"), 0),
                                           "attributes"),
                       "log.message")
                    ->child->valuestring,
            "line \"one\"");
    assert_string_equal(
            attr_value(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(sb, "events"), 1),
                                           "attributes"),
                       "log.severity")
                    ->child->valuestring,
            "info");
    assert_null(cJSON_GetObjectItem(sa, "events"));
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(sb, "status"), "code")->valueint, 2);
    assert_string_equal(
            cJSON_GetObjectItem(cJSON_GetObjectItem(sb, "status"), "message")->valuestring,
            "boom 7");
    cJSON_Delete(doc);

    /* The next body is written over the last. */
    encode(&buf, resource, (sl_span *[]){ a }, 1);
    assert_int_equal(strlen(buf.p), buf.len);
    doc = cJSON_Parse(buf.p);
    rs = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "resourceSpans"), 0);
    spans = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "scopeSpans"), 0),
                                "spans");
    assert_int_equal(cJSON_GetArraySize(spans), 1);
    cJSON_Delete(doc);
    free(buf.p);
    sl_span_free(a);
    sl_span_free(b);
    free(resource);
}

/* Keys encoded once (sl_span_key) give the same attributes as set one by
 * one, on the first span and on the next that reuses the encoding; a key
 * too long to keep encoded is set the plain way. */
static void test_span_keys(void **state)
{
    static sl_span_key path = { "url.path", 's', 0, "" }, port = { "client.port", 'i', 0, "" },
                       longer = { "k.0123456789012345678901234567890123456789012345678901234567890"
                                  "123456789",
                                  's', 0, "" };
    char *resource = sl_otlp_resource("svc", NULL, NULL, 0);
    sl_span *a = make_span("GET /x", 2), *b = make_span("GET /y", 2);
    sl_otlp_buf buf = { 0 };
    cJSON *doc, *spans;
    (void)state;

    a->tracestate = strdup("k=v");
    /* An end whose high digits differ from the start's. */
    b->start_ns = 1799999999999999999ULL;
    b->end_ns = 1800000000100000001ULL;
    sl_span_put(a, &path, "/a\"b");
    sl_span_put(a, &path, NULL);
    sl_span_put_int(a, &port, -5);
    sl_span_put(a, &longer, "kept");
    assert_int_not_equal(path.len, 0);
    assert_int_equal(longer.len, 0);
    sl_span_put(b, &path, "/b");
    sl_span_put_int(b, &port, 65535);
    encode(&buf, resource, (sl_span *[]){ a, b }, 2);
    doc = cJSON_Parse(buf.p);
    assert_non_null(doc);
    spans = cJSON_GetObjectItem(
            cJSON_GetArrayItem(cJSON_GetObjectItem(
                                       cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "resourceSpans"),
                                                          0),
                                       "scopeSpans"),
                               0),
            "spans");
    for (int i = 0; i < 2; i++) {
        const cJSON *attrs = cJSON_GetObjectItem(cJSON_GetArrayItem(spans, i), "attributes");
        assert_int_equal(cJSON_GetArraySize(attrs), i == 0 ? 3 : 2);
        assert_string_equal(attr_value(attrs, "url.path")->child->valuestring,
                            i == 0 ? "/a\"b" : "/b");
        assert_string_equal(
                cJSON_GetObjectItem(attr_value(attrs, "client.port"), "intValue")->valuestring,
                i == 0 ? "-5" : "65535");
    }
    assert_string_equal(attr_value(cJSON_GetObjectItem(cJSON_GetArrayItem(spans, 0), "attributes"),
                                   longer.name)
                                ->child->valuestring,
                        "kept");
    assert_string_equal(
            cJSON_GetObjectItem(cJSON_GetArrayItem(spans, 0), "traceState")->valuestring, "k=v");
    assert_string_equal(
            cJSON_GetObjectItem(cJSON_GetArrayItem(spans, 1), "startTimeUnixNano")->valuestring,
            "1799999999999999999");
    assert_string_equal(
            cJSON_GetObjectItem(cJSON_GetArrayItem(spans, 1), "endTimeUnixNano")->valuestring,
            "1800000000100000001");
    cJSON_Delete(doc);
    free(buf.p);
    sl_span_free(a);
    sl_span_free(b);
    free(resource);
}

/* Every ASCII byte at every place of a string (the escaper copies eight
 * clean bytes at once, so where a byte falls matters) comes back as it
 * was from a JSON parser. */
static void test_escape(void **state)
{
    (void)state;
    for (int c = 1; c < 0x80; c++) {
        for (size_t at = 0; at < 17; at++) {
            char in[18], json[SL_OTLP_ATTR_MAX(1, 17) + 1];
            size_t len;
            cJSON *doc;
            memset(in, 'a', 17);
            in[17] = '\0';
            in[at] = (char)c;
            len = sl_otlp_attr(json, 's', "k", in, 17);
            assert_true(len < sizeof(json));
            json[len] = '\0';
            doc = cJSON_Parse(json);
            assert_non_null(doc);
            assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "value"),
                                                    "stringValue")
                                        ->valuestring,
                                in);
            cJSON_Delete(doc);
        }
    }
}

/* With tracing off a context still gets a position (a request answers its
 * trace id) but no span is recorded. */
static void test_off_is_free(void **state)
{
    sl_tp pos, pos2;
    sl_trace_ctx parent = { 0 };
    (void)state;

    assert_false(sl_trace_on());
    assert_null(sl_span_begin(NULL, 2, "x", &pos));
    assert_false(sl_tp_id_zero(pos.trace_id, 16));
    assert_false(sl_tp_id_zero(pos.span_id, 8));
    assert_int_equal(pos.flags, 0);
    parent.tp = pos;
    parent.traced = 1;
    assert_null(sl_span_begin(&parent, 3, "y", &pos2));
    assert_memory_equal(pos2.trace_id, pos.trace_id, 16);
    assert_memory_not_equal(pos2.span_id, pos.span_id, 8);
    assert_null(sl_span_start(NULL, SL_SPAN_INTERNAL, "z"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid), cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_tracestate),  cmocka_unit_test(test_otlp_body),
        cmocka_unit_test(test_span_keys),   cmocka_unit_test(test_escape),
        cmocka_unit_test(test_off_is_free), cmocka_unit_test(test_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
