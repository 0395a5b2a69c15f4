/*
 * test_connectors.c - unit tests of the connectors' pure parts: the Redis
 * url (redis.c) and ClickHouse table names (clickhouse.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include <event2/event.h>

#include "connectors/redis/redis.h"
#include <sluice/clickhouse.h>

/* The loop lives in main.c, which unit tests do not link; nothing here
 * runs on it. */
struct event_base *sl_base;

static void url_defaults(void **state)
{
    sl_redis_url u;
    char err[256];

    (void)state;
    assert_int_equal(sl_redis_url_parse("redis://127.0.0.1", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "");
    assert_int_equal(sl_redis_url_parse("redis://h/", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "h");
    assert_int_equal(u.db, 0);
}

static void url_full(void **state)
{
    sl_redis_url u;
    char err[256];

    (void)state;
    assert_int_equal(sl_redis_url_parse("redis://app:s3cr:et@cache.local:6380/7", &u, err,
                                        sizeof(err)), 0);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "s3cr:et"); /* the first ':' splits user from password */
    assert_string_equal(u.host, "cache.local");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 7);

    assert_int_equal(sl_redis_url_parse("REDIS://:pw@[::1]:7000/2", &u, err, sizeof(err)), 0);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "pw");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 2);
}

static void url_bad(void **state)
{
    static const char *const bad[] = {
        "http://127.0.0.1:6379", /* scheme */
        "redis://",              /* no host */
        "redis://:6379",         /* no host */
        "redis://h:0",           /* port out of range */
        "redis://h:65536",
        "redis://h:12x",
        "redis://h:6379/x",      /* database not a number */
        "redis://h:6379/-1",
        "redis://h:6379/1/2",
        "redis://[::1",          /* unterminated bracket */
        "redis://h?db=1",
    };
    sl_redis_url u;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (sl_redis_url_parse(bad[i], &u, err, sizeof(err)) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
        if (err[0] == '\0')
            fail_msg("no reason given for \"%s\"", bad[i]);
    }
}

static void table_names(void **state)
{
    (void)state;
    assert_true(sl_ch_valid_table("events"));
    assert_true(sl_ch_valid_table("_tmp1"));
    assert_true(sl_ch_valid_table("analytics.page_views"));
    assert_false(sl_ch_valid_table(NULL));
    assert_false(sl_ch_valid_table(""));
    assert_false(sl_ch_valid_table("1events"));
    assert_false(sl_ch_valid_table("a.b.c"));
    assert_false(sl_ch_valid_table("db."));
    assert_false(sl_ch_valid_table(".t"));
    assert_false(sl_ch_valid_table("t; DROP TABLE x"));
    assert_false(sl_ch_valid_table("t`"));
    assert_false(sl_ch_valid_table("t FORMAT TSV"));
    assert_false(sl_ch_valid_table("caf\xc3\xa9"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(url_defaults),
        cmocka_unit_test(url_full),
        cmocka_unit_test(url_bad),
        cmocka_unit_test(table_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
