/* sl_redact(): passwords out, everything else kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include "daemon/redact.h"

static void expect(const char *in, const char *want, int changed)
{
    char out[256];

    assert_int_equal(sl_redact(in, out, sizeof(out)), changed);
    assert_string_equal(out, want);
}

static void test_urls(void **state)
{
    (void)state;
    expect("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0", 1);
    expect("clickhouse http://u:p@ss@h:8123/ is down", "clickhouse http://u:***@h:8123/ is down",
           1);
    expect("\"url\":\"http://user:pw@host/x\"", "\"url\":\"http://user:***@host/x\"", 1);
    expect("postgresql://me:pw@db/app?sslmode=require",
           "postgresql://me:***@db/app?sslmode=require", 1);
    expect("redis://hunter2@h:6379", "redis://***@h:6379", 1);
    /* no password: untouched */
    expect("http://user@host:8123/", "http://user@host:8123/", 0);
    expect("http://127.0.0.1:8123/ping", "http://127.0.0.1:8123/ping", 0);
    expect("mail me@host: see http://h/x", "mail me@host: see http://h/x", 0);
}

static void test_keys(void **state)
{
    (void)state;
    expect("host=db user=u password=secret dbname=x", "host=db user=u password=*** dbname=x", 1);
    expect("host=db password = 'a b\\' c' port=5", "host=db password = *** port=5", 1);
    expect("url?user=u&password=x&db=d", "url?user=u&password=***&db=d", 1);
    expect("rdkafka.sasl.password = hunter2", "rdkafka.sasl.password = ***", 1);
    expect("PASSWORD=x", "PASSWORD=***", 1);
    expect("password authentication failed for user \"u\"",
           "password authentication failed for user \"u\"", 0);
    expect("password=", "password=", 0);
}

static void test_cut(void **state)
{
    char out[12];

    (void)state;
    sl_redact("password=abcdefghijklmnop", out, sizeof(out));
    assert_string_equal(out, "password=**");
    assert_int_equal(sl_redact("x", out, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
