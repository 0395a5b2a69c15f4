/*
 * test_connectors.c - unit tests of the connectors' pure parts: the Redis
 * url (redis.c) and the bookkeeping of PostgreSQL prepared statements
 * (pg_stmt.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include <event2/event.h>

#include "connectors/pg/pg_int.h"
#include "connectors/redis/redis.h"

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
                                        sizeof(err)),
                     0);
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
        "redis://h:6379/x", /* database not a number */
        "redis://h:6379/-1",
        "redis://h:6379/1/2",
        "redis://[::1", /* unterminated bracket */
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

static void stmt_names(void **state)
{
    char longest[51], too_long[52];

    (void)state;
    memset(longest, 'a', 50);
    longest[50] = '\0';
    memset(too_long, 'a', 51);
    too_long[51] = '\0';
    assert_true(pg_stmt_name_ok("outbox_claim"));
    assert_true(pg_stmt_name_ok("q1"));
    assert_true(pg_stmt_name_ok(longest));
    assert_false(pg_stmt_name_ok(too_long));
    assert_false(pg_stmt_name_ok(""));
    assert_false(pg_stmt_name_ok(NULL));
    assert_false(pg_stmt_name_ok("Claim")); /* the server would fold it */
    assert_false(pg_stmt_name_ok("a-b"));
    assert_false(pg_stmt_name_ok("a b"));
    assert_false(pg_stmt_name_ok("x\"; DROP"));
}

static void stmt_list(void **state)
{
    sl_pg_stmt *a, *b;

    (void)state;
    a = pg_stmt_new(NULL, 0, "claim", "SELECT $1");
    b = pg_stmt_new(NULL, 1, "ack", "DELETE FROM t WHERE id = $1");
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a->name, "sl_claim"); /* the server-side name */
    assert_string_equal(b->sql, "DELETE FROM t WHERE id = $1");
    a->next = b;
    assert_ptr_equal(pg_stmt_find(a, "claim"), a);
    assert_ptr_equal(pg_stmt_find(a, "ack"), b);
    assert_null(pg_stmt_find(a, "sl_ack")); /* by the caller's name only */
    assert_null(pg_stmt_find(a, "nack"));
    assert_null(pg_stmt_find(NULL, "ack"));
    pg_stmt_free(a);
    pg_stmt_free(b);
}

static void prepared_set(void **state)
{
    pg_set s = { NULL, 0 };

    (void)state;
    assert_false(pg_set_has(&s, 0));
    pg_set_add(&s, 0); /* no room reserved: not recorded, and no write */
    assert_false(pg_set_has(&s, 0));
    assert_int_equal(pg_set_reserve(&s, 3), 0);
    assert_false(pg_set_has(&s, 2));
    pg_set_add(&s, 2);
    pg_set_add(&s, 0);
    assert_true(pg_set_has(&s, 2));
    assert_true(pg_set_has(&s, 0));
    assert_false(pg_set_has(&s, 1));
    assert_false(pg_set_has(&s, 3));
    assert_false(pg_set_has(&s, -1));
    assert_int_equal(pg_set_reserve(&s, 10), 0); /* growing keeps members */
    assert_true(pg_set_has(&s, 2));
    assert_false(pg_set_has(&s, 9));
    assert_int_equal(pg_set_reserve(&s, 2), 0); /* never shrinks */
    assert_true(pg_set_has(&s, 2));
    pg_set_clear(&s); /* a reconnect: nothing prepared, room kept */
    assert_false(pg_set_has(&s, 2));
    assert_false(pg_set_has(&s, 0));
    pg_set_add(&s, 9);
    assert_true(pg_set_has(&s, 9));
    pg_set_free(&s);
    assert_false(pg_set_has(&s, 9));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(url_defaults), cmocka_unit_test(url_full),  cmocka_unit_test(url_bad),
        cmocka_unit_test(stmt_names),   cmocka_unit_test(stmt_list), cmocka_unit_test(prepared_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
