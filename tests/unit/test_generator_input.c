/*
 * test_generator_input.c - what users hand the generator (the control
 * API's values, the weight options) and what it hands consumers (the
 * event JSON and its malformed shapes).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <cjson/cJSON.h>

#include "event.h"
#include "validate.h"

static char why[256];

static void test_eps(void **state)
{
    double v = -1;
    (void)state;
    assert_int_equal(gen_parse_eps("10", 1e7, &v, why, sizeof(why)), 0);
    assert_true(v == 10);
    assert_int_equal(gen_parse_eps("0", 1e7, &v, why, sizeof(why)), 0);
    assert_true(v == 0);
    assert_int_equal(gen_parse_eps("2.5", 1e7, &v, why, sizeof(why)), 0);
    assert_true(v == 2.5);
    const char *bad[] = { "-1", "abc", "", " 5", "5 ", "1e9", "nan", "inf", "0x10", "1,5", NULL };
    for (int i = 0; bad[i] != NULL; i++) {
        assert_int_equal(gen_parse_eps(bad[i], 1e7, &v, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "eps must be a number from 0 to 10000000"));
    }
    assert_int_equal(gen_parse_eps(NULL, 1e7, &v, why, sizeof(why)), -1);
}

static void test_mode(void **state)
{
    gen_mode m;
    (void)state;
    assert_int_equal(gen_parse_mode("regular", &m, why, sizeof(why)), 0);
    assert_int_equal(m, GEN_MODE_REGULAR);
    assert_int_equal(gen_parse_mode("peak", &m, why, sizeof(why)), 0);
    assert_int_equal(m, GEN_MODE_PEAK);
    assert_int_equal(gen_parse_mode("night", &m, why, sizeof(why)), 0);
    assert_int_equal(m, GEN_MODE_NIGHT);
    assert_int_equal(gen_parse_mode("Peak", &m, why, sizeof(why)), -1);
    assert_string_equal(why, "mode must be one of regular, peak, night, got \"Peak\"");
    assert_int_equal(gen_parse_mode(NULL, &m, why, sizeof(why)), -1);
    assert_int_equal(gen_parse_mode("", &m, why, sizeof(why)), -1);
    assert_string_equal(gen_mode_name(GEN_MODE_NIGHT), "night");
}

static void test_count(void **state)
{
    long long n;
    (void)state;
    assert_int_equal(gen_parse_count("1", 1000, &n, why, sizeof(why)), 0);
    assert_int_equal(n, 1);
    assert_int_equal(gen_parse_count("1000", 1000, &n, why, sizeof(why)), 0);
    assert_int_equal(n, 1000);
    const char *bad[] = { "0", "-5", "1001", "1.5", "ten", "", "+3", "99999999999999999999", NULL };
    for (int i = 0; bad[i] != NULL; i++) {
        assert_int_equal(gen_parse_count(bad[i], 1000, &n, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "count must be an integer from 1 to 1000"));
    }
}

static void test_weights(void **state)
{
    double w[3];
    const char *ok[] = { "85", "10", "5" }, *neg[] = { "1", "-1", "1" },
               *zero[] = { "0", "0", "0" }, *text[] = { "a", "1", "1" };
    (void)state;
    assert_int_equal(gen_parse_weights(ok, 3, 3, "view, bounce, malformed", w, why, sizeof(why)),
                     0);
    assert_true(w[0] == 85 && w[1] == 10 && w[2] == 5);
    assert_int_equal(gen_parse_weights(ok, 2, 3, "view, bounce, malformed", w, why, sizeof(why)),
                     -1);
    assert_string_equal(
            why, "must be 3 numbers >= 0, not all 0, the weights of view, bounce, malformed");
    assert_int_equal(gen_parse_weights(neg, 3, 3, "x", w, why, sizeof(why)), -1);
    assert_int_equal(gen_parse_weights(zero, 3, 3, "x", w, why, sizeof(why)), -1);
    assert_int_equal(gen_parse_weights(text, 3, 3, "x", w, why, sizeof(why)), -1);
}

/* ------------------------------------------------------------- events */

static gen_event sample(gen_class k)
{
    gen_event e = { .klass = k, .page = 42, .user = 7, .ts_ms = 1795849200123LL, .duration = 120 };
    memcpy(e.id, "0b6cbd8e-7a0c-4a3e-9c51-2f3a4b5c6d7e", GEN_ID_LEN + 1);
    if (k == GEN_NEGATIVE_DURATION)
        e.duration = -3;
    return e;
}

static cJSON *render(gen_class k, size_t pad, size_t *len, char *buf)
{
    gen_event e = sample(k);
    *len = gen_event_render(&e, buf, pad);
    return cJSON_ParseWithLength(buf, *len);
}

static void test_event_valid(void **state)
{
    static char buf[GEN_VALUE_CAP];
    size_t len;
    cJSON *j = render(GEN_VIEW, 0, &len, buf);
    (void)state;

    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "event_id")->valuestring,
                        "0b6cbd8e-7a0c-4a3e-9c51-2f3a4b5c6d7e");
    assert_string_equal(cJSON_GetObjectItem(j, "event_type")->valuestring, "view");
    assert_string_equal(cJSON_GetObjectItem(j, "page_id")->valuestring, "page-42");
    assert_string_equal(cJSON_GetObjectItem(j, "user_id")->valuestring, "user-7");
    assert_string_equal(cJSON_GetObjectItem(j, "ts")->valuestring, "2026-11-28T07:00:00.123Z");
    assert_int_equal(cJSON_GetObjectItem(j, "duration_s")->valueint, 120);
    assert_int_equal(cJSON_GetArraySize(j), 6);
    cJSON_Delete(j);
    j = render(GEN_BOUNCE, 0, &len, buf);
    assert_string_equal(cJSON_GetObjectItem(j, "event_type")->valuestring, "bounce");
    cJSON_Delete(j);

    gen_event e = sample(GEN_VIEW);
    char key[GEN_KEY_CAP];
    size_t kl = gen_event_key(&e, key);
    assert_int_equal(kl, 7);
    assert_memory_equal(key, "page-42", 7);
}

/* Every malformed kind is wrong in its own way, and only in that way. */
static void test_event_malformed(void **state)
{
    static char buf[GEN_VALUE_CAP];
    size_t len;
    cJSON *j;
    (void)state;

    j = render(GEN_MISSING_FIELD, 0, &len, buf);
    assert_non_null(j);
    assert_null(cJSON_GetObjectItem(j, "user_id"));
    assert_int_equal(cJSON_GetArraySize(j), 5);
    cJSON_Delete(j);

    j = render(GEN_WRONG_TYPE, 0, &len, buf);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "duration_s")));
    cJSON_Delete(j);

    j = render(GEN_BROKEN_JSON, 0, &len, buf);
    assert_null(j);
    assert_true(buf[len - 1] != '}');

    j = render(GEN_NEGATIVE_DURATION, 0, &len, buf);
    assert_true(cJSON_GetObjectItem(j, "duration_s")->valuedouble < 0);
    cJSON_Delete(j);

    j = render(GEN_BAD_TIMESTAMP, 0, &len, buf);
    assert_string_equal(cJSON_GetObjectItem(j, "ts")->valuestring, "2026-13-32T25:61:61Z");
    cJSON_Delete(j);
}

/* event_size pads every kind to exactly that many bytes. */
static void test_event_padding(void **state)
{
    static char buf[GEN_VALUE_CAP];
    size_t len;
    (void)state;

    for (int k = GEN_VIEW; k < GEN_NCLASSES; k++) {
        cJSON *j;
        if (k == GEN_DUPLICATE)
            continue;
        j = render((gen_class)k, 200, &len, buf);
        assert_int_equal(len, 200);
        if (k == GEN_BROKEN_JSON) {
            assert_null(j);
        } else {
            assert_non_null(j);
            assert_int_equal(strlen(cJSON_GetObjectItem(j, "pad")->valuestring) > 0, 1);
        }
        cJSON_Delete(j);
    }
    cJSON_Delete(render(GEN_VIEW, 10, &len, buf)); /* smaller than the event: unpadded */
    assert_true(len > 150 && len < 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eps),           cmocka_unit_test(test_mode),
        cmocka_unit_test(test_count),         cmocka_unit_test(test_weights),
        cmocka_unit_test(test_event_valid),   cmocka_unit_test(test_event_malformed),
        cmocka_unit_test(test_event_padding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
