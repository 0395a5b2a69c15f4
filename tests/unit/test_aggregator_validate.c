/*
 * test_aggregator_validate.c - the aggregator's pure parts: every
 * handler's checks and their reasons (the generator's malformed kinds
 * among them), RFC 3339, the dedup window, and the JSON escaping of raw
 * payloads (NULs and control bytes included).
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
    assert_int_equal(pv("{\"event_id\":\"a-1\",\"event_type\":\"bounce\",\"page_id\":\"page-7\","
                        "\"user_id\":\"user-3\",\"ts\":\"2025-11-30T13:59:59.250Z\",\"duration_s\":3}",
                        &e),
                     AGG_OK);
    assert_string_equal(e.event_id, "a-1");
    assert_int_equal(e.bounce, 1);
    assert_string_equal(e.page_id, "page-7");
    assert_true(e.ts_ms == 1764511199250LL);
    assert_true(e.duration_s == 3);
    /* a numeric user id is accepted as text */
    assert_int_equal(pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":42,"
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
                        "\"ts\":\"2025-11-30T14:00:00.000Z\",\"duration_s\":10}", &e),
                     AGG_R_MISSING_FIELD);
    assert_non_null(strstr(detail, "user_id"));
    assert_int_equal(pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"page-1\","
                        "\"user_id\":\"user-1\",\"ts\":\"2025-11-30T14:00:00.000Z\",\"duration_s\":\"10s\"}", &e),
                     AGG_R_WRONG_TYPE);
    assert_int_equal(pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"page-1\","
                        "\"user_id\":\"user-1\",\"ts\":\"2025-11-30T14:00:00.000Z\",\"duration_s\":10", &e),
                     AGG_R_BROKEN_JSON);
    assert_int_equal(pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"page-1\","
                        "\"user_id\":\"user-1\",\"ts\":\"2025-11-30T14:00:00.000Z\",\"duration_s\":-5}", &e),
                     AGG_R_NEGATIVE_DURATION);
    assert_int_equal(pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"page-1\","
                        "\"user_id\":\"user-1\",\"ts\":\"2026-13-32T25:61:61Z\",\"duration_s\":10}", &e),
                     AGG_R_BAD_TIMESTAMP);
    assert_string_equal(agg_reason_name(AGG_R_NEGATIVE_DURATION), "negative_duration");
}

static void test_page_view_other_rejections(void **state)
{
    agg_page_view e;
    (void)state;
    assert_int_equal(pv("[1,2]", &e), AGG_R_NOT_OBJECT);
    assert_int_equal(pv("{\"event_id\":\"a\",\"event_type\":\"click\",\"page_id\":\"p\",\"user_id\":\"u\","
                        "\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}", &e),
                     AGG_R_BAD_VALUE);
    assert_int_equal(pv("{\"event_id\":\"\",\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":\"u\","
                        "\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}", &e),
                     AGG_R_BAD_VALUE);
    assert_int_equal(pv("{\"event_id\":7,\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":\"u\","
                        "\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}", &e),
                     AGG_R_WRONG_TYPE);
    /* 5 minutes ahead is allowed, an hour is not */
    assert_int_equal(pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":\"u\","
                        "\"ts\":\"2025-11-30T14:04:00Z\",\"duration_s\":1}", &e),
                     AGG_OK);
    assert_int_equal(pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":\"u\","
                        "\"ts\":\"2025-11-30T15:00:00Z\",\"duration_s\":1}", &e),
                     AGG_R_FUTURE_TIMESTAMP);
    assert_int_equal(agg_check_page_view(NULL, 0, &lim, &e, detail, sizeof(detail)), AGG_R_EMPTY);
}

/* The allocation-free path and the general one agree: inputs the first
 * hands over (escapes, nesting, trailing bytes) get the same verdict. */
static void test_page_view_paths(void **state)
{
    agg_page_view e;
    (void)state;
    assert_int_equal(pv("{\"event_id\":\"a\\u0062\",\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":\"u\","
                        "\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}", &e),
                     AGG_OK);
    assert_string_equal(e.event_id, "ab");
    assert_int_equal(pv(" {\"extra\":{\"n\":[1,{\"x\":null}]},\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"p\","
                        "\"user_id\":\"u\",\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1.5e1} ", &e),
                     AGG_OK);
    assert_true(e.duration_s == 15);
    /* a repeated key: the first wins on both paths */
    assert_int_equal(pv("{\"event_type\":\"click\",\"event_type\":\"view\",\"event_id\":\"a\",\"page_id\":\"p\","
                        "\"user_id\":\"u\",\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}", &e),
                     AGG_R_BAD_VALUE);
    assert_int_equal(pv("{\"event_type\":\"click\",\"event_type\":\"view\",\"event_id\":\"a\\u0062\",\"page_id\":\"p\","
                        "\"user_id\":\"u\",\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}", &e),
                     AGG_R_BAD_VALUE);
    assert_int_equal(pv("{\"event_id\":null,\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":true,"
                        "\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}", &e),
                     AGG_R_WRONG_TYPE);
    assert_int_equal(pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":\"u\","
                        "\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":-}", &e),
                     AGG_R_BROKEN_JSON);
    assert_int_equal(pv("{\"event_id\":\"a\",\"event_type\":\"view\",\"page_id\":\"p\",\"user_id\":7.5,"
                        "\"ts\":\"2025-11-30T14:00:00Z\",\"duration_s\":1}", &e),
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
    const char *bad = "{\"id\":\"x\",\"timestamp\":\"2025-11-30T13:00:00Z\",\"eventType\":\"click\","
                      "\"userId\":\"u1\",\"properties\":5}";
    assert_int_equal(agg_check_analytics(bad, strlen(bad), &lim, &e, detail, sizeof(detail)),
                     AGG_R_WRONG_TYPE);
    free(e.properties);
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

static void test_jstr(void **state)
{
    jbuf b = { 0 };
    static const char raw[] = "a\"b\\c\n\x01\0z\xc3\xa9";
    cJSON *j;
    (void)state;
    jb_jstr(&b, raw, sizeof(raw) - 1);
    assert_false(b.oom);
    assert_string_equal(b.p, "\"a\\\"b\\\\c\\n\\u0001\\u0000z\xc3\xa9\"");
    j = cJSON_Parse(b.p);
    assert_non_null(j);
    cJSON_Delete(j);
    jb_reset(&b);
    jb_datetime(&b, 1764511200);
    assert_string_equal(b.p, "2025-11-30 14:00:00");
    jb_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page_view_valid),  cmocka_unit_test(test_page_view_generator_kinds),
        cmocka_unit_test(test_page_view_other_rejections), cmocka_unit_test(test_page_view_paths),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_analytics),        cmocka_unit_test(test_segment),
        cmocka_unit_test(test_segment_kinds),
        cmocka_unit_test(test_dedup),            cmocka_unit_test(test_jstr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
