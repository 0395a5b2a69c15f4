/*
 * test_conn_redis.c - the Redis handle's state machine without a server
 * (fake_daemon.h): against a port that refuses connections it stays down,
 * retries with a wait that doubles from 100 ms up to reconnect_max, fails
 * commands fast (from the loop, never inside the call) while down, and may
 * be freed from inside such a failure's callback.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "connectors/redis/redis_int.h"
#include "fake_daemon.h"

static sl_ctx *ctx;

static int setup(void **state)
{
    (void)state;
    ctx = fake_daemon_start("[redis]\nurl = redis://127.0.0.1:%d\nreconnect_max = 400ms\n",
                            fake_refused_port());
    return ctx != NULL ? 0 : -1;
}

typedef struct {
    int called;
    int free_handle;
    char err[256];
} reply_seen;

static void on_reply(sl_redis *r, const sl_redis_reply *reply, const char *err, void *arg)
{
    reply_seen *seen = arg;

    assert_null(reply);
    seen->called++;
    snprintf(seen->err, sizeof(seen->err), "%s", err != NULL ? err : "");
    if (seen->free_handle)
        sl_redis_free(r);
}

static int failures_reached;

/* done() for fake_run_until(): the handle failed failures_reached times. */
static int has_failed(const void *arg)
{
    return ((const sl_redis *)arg)->failures >= failures_reached;
}

static void run_until_failures(sl_redis *r, int n)
{
    failures_reached = n;
    assert_int_equal(fake_run_until(has_failed, r, 10), 0);
}

/* The wait after `failures` failed attempts: 100 ms doubled each time, at
 * most reconnect_max (400 ms). */
static double expected_backoff(int failures)
{
    return fmin(BACKOFF_FIRST * pow(2, failures), 0.4);
}

static void reconnect_backoff(void **state)
{
    sl_redis *r = sl_redis_new(ctx);

    (void)state;
    assert_non_null(r);
    for (int n = 1; n <= 4; n++) {
        run_until_failures(r, n);
        assert_int_equal(r->failures, n);
        assert_int_equal(r->state, ST_DOWN);
        assert_false(sl_redis_connected(r));
        assert_true(fabs(r->backoff - expected_backoff(n)) < 1e-9);
        assert_non_null(strstr(r->err, "refused"));
    }
    sl_redis_free(r);
}

static void fail_fast_while_down(void **state)
{
    const char *argv[] = { "PING" };
    reply_seen seen = { 0 };
    sl_redis *r = sl_redis_new(ctx);

    (void)state;
    assert_non_null(r);
    run_until_failures(r, 1);
    assert_int_equal(sl_redis_command(r, 1, argv, NULL, on_reply, &seen), 0);
    assert_int_equal(seen.called, 0); /* never inside the call */
    assert_int_equal(fake_run_until(fake_flag, &seen.called, 10), 0);
    assert_int_equal(seen.called, 1);
    assert_non_null(strstr(seen.err, "redis not connected"));
    sl_redis_free(r);
}

static void free_inside_a_callback(void **state)
{
    const char *argv[] = { "PING" };
    reply_seen first = { .free_handle = 1 }, second = { 0 };
    sl_redis *r = sl_redis_new(ctx);
    size_t held;

    (void)state;
    assert_non_null(r);
    run_until_failures(r, 1);
    held = ctx->nresources;
    assert_int_equal(sl_redis_command(r, 1, argv, NULL, on_reply, &first), 0);
    assert_int_equal(sl_redis_command(r, 1, argv, NULL, on_reply, &second), 0);
    /* Both failures are answered in one turn of the loop, which the
     * first one's free ends: the second is never called, the instance no
     * longer holds the handle, and (under ASan) nothing of it is touched
     * once it is gone. */
    assert_int_equal(fake_run_until(fake_flag, &first.called, 10), 0);
    assert_int_equal(first.called, 1);
    assert_int_equal(second.called, 0);
    assert_int_equal(ctx->nresources, held - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reconnect_backoff),
        cmocka_unit_test(fail_fast_while_down),
        cmocka_unit_test(free_inside_a_callback),
    };
    return cmocka_run_group_tests(tests, setup, fake_daemon_stop);
}
