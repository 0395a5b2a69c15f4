/*
 * Unit tests of route pattern matching.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include "http/router.h"

static void test_patterns_valid(void **state)
{
    (void)state;
    assert_true(sl_route_pattern_valid("/"));
    assert_true(sl_route_pattern_valid("/metrics"));
    assert_true(sl_route_pattern_valid("/segment/user/{id}"));
    assert_true(sl_route_pattern_valid("/a/{x}/b/{y_2}"));
    assert_false(sl_route_pattern_valid(""));
    assert_false(sl_route_pattern_valid("metrics"));
    assert_false(sl_route_pattern_valid("/a/{}"));
    assert_false(sl_route_pattern_valid("/a/{1x}"));
    assert_false(sl_route_pattern_valid("/a/{x"));
    assert_false(sl_route_pattern_valid("/a/x}"));
    assert_false(sl_route_pattern_valid("/a/{x}y"));
    assert_false(sl_route_pattern_valid("/a/{x}/b/{x}"));
    assert_false(sl_route_pattern_valid("/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}"));
}

static void test_literal_match(void **state)
{
    sl_params p;
    (void)state;
    assert_int_equal(sl_route_match("/metrics", "/metrics", &p), 1);
    assert_int_equal(p.n, 0);
    assert_int_equal(sl_route_match("/metrics", "/metric", &p), 0);
    assert_int_equal(sl_route_match("/metrics", "/metrics/", &p), 0);
    assert_int_equal(sl_route_match("/metrics", "/metricsx", &p), 0);
    assert_int_equal(sl_route_match("/", "/", &p), 1);
    assert_int_equal(sl_route_match("/", "/a", &p), 0);
    assert_int_equal(sl_route_match("/a/b", "/a", &p), 0);
}

static void test_params(void **state)
{
    sl_params p;
    (void)state;
    assert_int_equal(sl_route_match("/segment/user/{id}", "/segment/user/42", &p), 1);
    assert_int_equal(p.n, 1);
    assert_string_equal(sl_params_get(&p, "id"), "42");
    assert_null(sl_params_get(&p, "other"));
    sl_params_free(&p);

    assert_int_equal(sl_route_match("/a/{x}/b/{y}", "/a/1/b/two", &p), 1);
    assert_string_equal(sl_params_get(&p, "x"), "1");
    assert_string_equal(sl_params_get(&p, "y"), "two");
    sl_params_free(&p);

    /* A parameter is one non-empty segment. */
    assert_int_equal(sl_route_match("/segment/user/{id}", "/segment/user/", &p), 0);
    assert_int_equal(sl_route_match("/segment/user/{id}", "/segment/user/1/2", &p), 0);
    assert_int_equal(p.n, 0);
}

static void test_percent_decoding(void **state)
{
    sl_params p;
    (void)state;
    assert_int_equal(sl_route_match("/r/{file}", "/r/a%20b%2Fc.csv", &p), 1);
    assert_string_equal(sl_params_get(&p, "file"), "a b/c.csv");
    sl_params_free(&p);
    assert_int_equal(sl_route_match("/r/{file}", "/r/..%2F..%2Fetc", &p), 1);
    assert_string_equal(sl_params_get(&p, "file"), "../../etc");
    sl_params_free(&p);
    /* Broken escapes and NUL bytes are refused, not truncated. */
    assert_int_equal(sl_route_match("/r/{file}", "/r/a%zz", &p), -1);
    assert_int_equal(sl_route_match("/r/{file}", "/r/a%2", &p), -1);
    assert_int_equal(sl_route_match("/r/{file}", "/r/a%00b", &p), -1);
    assert_int_equal(p.n, 0);
}

static void test_decode_helper(void **state)
{
    char *s;
    (void)state;
    s = sl_percent_decode("%41%62c", 7);
    assert_string_equal(s, "Abc");
    free(s);
    s = sl_percent_decode("abc%4", 5);
    assert_null(s);
    s = sl_percent_decode("", 0);
    assert_string_equal(s, "");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patterns_valid), cmocka_unit_test(test_literal_match),
        cmocka_unit_test(test_params),         cmocka_unit_test(test_percent_decoding),
        cmocka_unit_test(test_decode_helper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
