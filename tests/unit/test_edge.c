/*
 * Unit tests of the HTTP edge's pure parts: request ids, the Authorization
 * header, Content-Type, cross-site marks, Host, loopback addresses, the
 * tokens file and the rate limiter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "http/edge.h"
#include "http/ratelimit.h"
#include "http/tokens.h"

static void test_request_ids(void **state)
{
    char id[SL_REQUEST_ID_SIZE];
    char longest[SL_REQUEST_ID_MAX + 2];
    (void)state;
    assert_true(sl_edge_request_id_sane("abc-123_x.y:z"));
    assert_false(sl_edge_request_id_sane(""));
    assert_false(sl_edge_request_id_sane(NULL));
    assert_false(sl_edge_request_id_sane("a b"));
    assert_false(sl_edge_request_id_sane("a\"b"));
    assert_false(sl_edge_request_id_sane("a\nb"));
    memset(longest, 'a', sizeof(longest));
    longest[SL_REQUEST_ID_MAX] = '\0';
    assert_true(sl_edge_request_id_sane(longest));
    longest[SL_REQUEST_ID_MAX] = 'a';
    longest[SL_REQUEST_ID_MAX + 1] = '\0';
    assert_false(sl_edge_request_id_sane(longest));
    sl_edge_request_id_make(0xabcULL, 42, id);
    assert_string_equal(id, "0000000000000abc-000000000000002a");
    assert_true(sl_edge_request_id_sane(id));
    sl_edge_request_id_make(0x0123456789abcdefULL, ~0ULL, id);
    assert_string_equal(id, "0123456789abcdef-ffffffffffffffff");
    sl_edge_request_id_make(0xfedcba9876543210ULL, 0, id);
    assert_string_equal(id, "fedcba9876543210-0000000000000000");
}

static void test_bearer(void **state)
{
    size_t len = 0;
    const char *t;
    (void)state;
    t = sl_edge_bearer("Bearer abc.DEF-_~+/==", &len);
    assert_non_null(t);
    assert_int_equal(len, 14);
    assert_memory_equal(t, "abc.DEF-_~+/==", 14);
    assert_non_null(sl_edge_bearer("bearer  tok  ", &len));
    assert_int_equal(len, 3);
    assert_null(sl_edge_bearer(NULL, &len));
    assert_null(sl_edge_bearer("Basic dXNlcjpw", &len));
    assert_null(sl_edge_bearer("Bearer ", &len));
    assert_null(sl_edge_bearer("Bearer a b", &len));
    assert_null(sl_edge_bearer("Bearer a=b", &len));
    assert_null(sl_edge_bearer("Bearer a\"b", &len));
}

static void test_content_type(void **state)
{
    (void)state;
    assert_true(sl_edge_is_json("application/json"));
    assert_true(sl_edge_is_json("Application/JSON; charset=utf-8"));
    assert_true(sl_edge_is_json("application/merge-patch+json"));
    assert_false(sl_edge_is_json(NULL));
    assert_false(sl_edge_is_json("text/plain"));
    assert_false(sl_edge_is_json("application/x-www-form-urlencoded"));
    assert_false(sl_edge_is_json("application/jsonx"));
    assert_false(sl_edge_is_json("text/x+json"));
    assert_false(sl_edge_is_json("application/+json"));
}

static void test_cross_site(void **state)
{
    (void)state;
    assert_false(sl_edge_cross_site(NULL, NULL, "http", "127.0.0.1:8080"));
    assert_false(
            sl_edge_cross_site("same-origin", "http://127.0.0.1:8080", "http", "127.0.0.1:8080"));
    assert_false(sl_edge_cross_site("none", NULL, "http", "localhost"));
    assert_true(sl_edge_cross_site("cross-site", NULL, "http", "localhost"));
    assert_true(sl_edge_cross_site(NULL, "http://evil.example", "http", "127.0.0.1:8080"));
    assert_true(sl_edge_cross_site(NULL, "null", "http", "127.0.0.1:8080"));
    assert_true(sl_edge_cross_site(NULL, "https://127.0.0.1:8080", "http", "127.0.0.1:8080"));
    assert_true(sl_edge_cross_site(NULL, "http://127.0.0.1:8080", "http", NULL));
    assert_false(sl_edge_cross_site(NULL, "HTTPS://Localhost:8443", "https", "localhost:8443"));
}

static void test_hosts(void **state)
{
    const char *allowed[] = { "localhost", "api.example:8443", "[::1]" };
    (void)state;
    assert_true(sl_edge_host_allowed("localhost", allowed, 3));
    assert_true(sl_edge_host_allowed("LOCALHOST:8080", allowed, 3));
    assert_true(sl_edge_host_allowed("api.example:8443", allowed, 3));
    assert_false(sl_edge_host_allowed("api.example:8080", allowed, 3));
    assert_false(sl_edge_host_allowed("api.example", allowed, 3));
    assert_true(sl_edge_host_allowed("[::1]:8080", allowed, 3));
    assert_false(sl_edge_host_allowed("evil.example", allowed, 3));
    assert_false(sl_edge_host_allowed("localhost.evil.example", allowed, 3));
    assert_false(sl_edge_host_allowed(NULL, allowed, 3));
}

static void test_loopback(void **state)
{
    (void)state;
    assert_true(sl_edge_loopback("127.0.0.1"));
    assert_true(sl_edge_loopback("127.1.2.3"));
    assert_true(sl_edge_loopback("[::1]"));
    assert_true(sl_edge_loopback("::1"));
    assert_true(sl_edge_loopback("localhost"));
    assert_false(sl_edge_loopback("0.0.0.0"));
    assert_false(sl_edge_loopback("10.0.0.1"));
    assert_false(sl_edge_loopback("[::]"));
    assert_false(sl_edge_loopback("example.com"));
    assert_false(sl_edge_loopback(""));
}

static void test_tokens(void **state)
{
    /* sha256("password") */
    static const char good[] =
            "# comment\n\n"
            "ci  read,write  a-long-secret-0123456789\r\n"
            "ops admin sha256:5E884898DA28047151D0E56F8DC6292773603D0D6AABBDD62A11EF721D1542D8\n";
    sl_errors errs = { 0 };
    unsigned scopes = 0;
    sl_tokens *t = sl_tokens_parse("tokens", good, sizeof(good) - 1, &errs);
    (void)state;
    assert_non_null(t);
    assert_int_equal(errs.n, 0);
    assert_int_equal(sl_tokens_count(t), 2);
    assert_string_equal(sl_tokens_find(t, "a-long-secret-0123456789", 24, &scopes), "ci");
    assert_int_equal(scopes, SL_TOKEN_READ | SL_TOKEN_WRITE);
    assert_string_equal(sl_tokens_find(t, "password", 8, &scopes), "ops");
    assert_int_equal(scopes, SL_TOKEN_ADMIN);
    assert_null(sl_tokens_find(t, "a-long-secret-012345678", 23, &scopes));
    assert_null(sl_tokens_find(t, "", 0, &scopes));
    sl_tokens_free(t);
}

static void test_tokens_errors(void **state)
{
    static const char bad[] = "ok read a-long-secret-0123456789\n"
                              "ok read another-secret-0123456789\n"
                              "x reed a-long-secret-0123456789\n"
                              "y read short\n"
                              "z read sha256:abc\n"
                              "two fields\n"
                              "bad/name read a-long-secret-0123456789\n";
    sl_errors errs = { 0 };
    (void)state;
    assert_null(sl_tokens_parse("tokens", bad, sizeof(bad) - 1, &errs));
    assert_int_equal(errs.n, 6);
    assert_non_null(strstr(errs.msgs[0], "tokens:2: token name 'ok' is used twice"));
    assert_non_null(strstr(errs.msgs[1], "tokens:3: scopes must be"));
    assert_non_null(strstr(errs.msgs[2], "tokens:4: the secret of token 'y'"));
    assert_non_null(strstr(errs.msgs[3], "tokens:5:"));
    assert_non_null(strstr(errs.msgs[4], "tokens:6: expected three fields"));
    assert_non_null(strstr(errs.msgs[5], "tokens:7: token name"));
    for (size_t i = 0; i < errs.n; i++)
        assert_null(strstr(errs.msgs[i], "secret-0123456789"));
    sl_errors_free(&errs);
    assert_null(sl_tokens_parse("tokens", "# nothing\n", 10, &errs));
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.msgs[0], "holds no token"));
    sl_errors_free(&errs);
}

static void test_rate(void **state)
{
    static sl_rate r;
    (void)state;
    sl_rate_configure(&r, 0, 5);
    for (int i = 0; i < 100; i++)
        assert_int_equal(sl_rate_take(&r, "a", 1.0), 0);
    sl_rate_configure(&r, 2, 3);
    assert_int_equal(sl_rate_take(&r, "a", 10.0), 0);
    assert_int_equal(sl_rate_take(&r, "a", 10.0), 0);
    assert_int_equal(sl_rate_take(&r, "a", 10.0), 0);
    assert_int_equal(sl_rate_take(&r, "a", 10.0), 1); /* half a second to one more */
    assert_int_equal(sl_rate_take(&r, "b", 10.0), 0); /* another caller, its own bucket */
    assert_int_equal(sl_rate_take(&r, "a", 10.5), 0); /* refilled at 2/s */
    assert_int_equal(sl_rate_take(&r, "a", 10.5), 1);
    assert_int_equal(sl_rate_take(&r, "a", 100.0), 0); /* full again, no more than the burst */
    assert_int_equal(sl_rate_take(&r, "a", 100.0), 0);
    assert_int_equal(sl_rate_take(&r, "a", 100.0), 0);
    assert_int_not_equal(sl_rate_take(&r, "a", 100.0), 0);
    sl_rate_configure(&r, 0.1, 1);
    assert_int_equal(sl_rate_take(&r, "c", 1.0), 0);
    assert_int_equal(sl_rate_take(&r, "c", 1.0), 10); /* Retry-After in whole seconds */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_ids),  cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_content_type), cmocka_unit_test(test_cross_site),
        cmocka_unit_test(test_hosts),        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_tokens),       cmocka_unit_test(test_tokens_errors),
        cmocka_unit_test(test_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
