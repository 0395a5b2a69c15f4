/*
 * test_conn_pg.c - the PostgreSQL handle's request queue and transactions
 * without a server (fake_daemon.h).  Against a server that accepts the
 * connection but never answers, requests wait for it up to max_queue and
 * the next one fails at once with "queue full"; when the connection
 * attempt times out, the waiting ones fail as unavailable, and so do new
 * requests and a transaction's statements and commit, each callback
 * exactly once, from the loop, never inside the call.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <sluice/pg.h>
#include "fake_daemon.h"

static sl_ctx *ctx;

static int setup(void **state)
{
    (void)state;
    ctx = fake_daemon_start("[postgres]\ndsn = host=127.0.0.1 port=%d user=u dbname=d\n"
                            "pool_size = 1\nmax_queue = 2\nconnect_timeout = 300ms\n"
                            "reconnect_max = 1s\n",
                            fake_silent_port());
    return ctx != NULL ? 0 : -1;
}

typedef struct {
    int called;
    int order; /* when it was called among all callbacks */
    char err[256];
} outcome_seen;

static int calls;

static void on_outcome(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    outcome_seen *seen = arg;

    (void)pg;
    assert_null(res);
    seen->called++;
    seen->order = ++calls;
    snprintf(seen->err, sizeof(seen->err), "%s", err != NULL ? err : "");
}

static void queue_bound_then_unavailable(void **state)
{
    outcome_seen q[4] = { { 0 } };
    sl_pg *pg = sl_pg_new(ctx);

    (void)state;
    assert_non_null(pg);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sl_pg_query(pg, "SELECT 1", 0, NULL, on_outcome, &q[i]), 0);
    assert_int_equal(q[0].called + q[1].called + q[2].called, 0);
    /* The third found the queue full and is answered first. */
    assert_int_equal(fake_run_until(fake_flag, &q[2].called, 10), 0);
    assert_string_equal(q[2].err, "postgres queue full (max_queue 2)");
    assert_int_equal(q[0].called + q[1].called, 0);
    /* The connection attempt times out: the waiting ones fail. */
    assert_int_equal(fake_run_until(fake_flag, &q[1].called, 10), 0);
    assert_int_equal(q[0].called, 1);
    assert_non_null(strstr(q[0].err, "postgres unavailable"));
    assert_non_null(strstr(q[1].err, "postgres unavailable"));
    assert_true(q[0].order < q[1].order);
    assert_false(sl_pg_ready(pg));
    /* While down, a new request fails fast. */
    assert_int_equal(sl_pg_query(pg, "SELECT 1", 0, NULL, on_outcome, &q[3]), 0);
    assert_int_equal(q[3].called, 0);
    assert_int_equal(fake_run_until(fake_flag, &q[3].called, 10), 0);
    assert_non_null(strstr(q[3].err, "postgres unavailable"));
    for (int i = 0; i < 4; i++)
        assert_int_equal(q[i].called, 1);
    sl_pg_free(pg);
}

static void transaction_on_a_pool_that_is_down(void **state)
{
    outcome_seen stmt = { 0 }, commit = { 0 }, probe = { 0 };
    sl_pg *pg = sl_pg_new(ctx);
    sl_pg_tx *tx;

    (void)state;
    assert_non_null(pg);
    /* Wait until the pool is known down. */
    assert_int_equal(sl_pg_query(pg, "SELECT 1", 0, NULL, on_outcome, &probe), 0);
    assert_int_equal(fake_run_until(fake_flag, &probe.called, 10), 0);
    tx = sl_pg_tx_begin(pg);
    assert_non_null(tx);
    assert_int_equal(sl_pg_tx_query(tx, "UPDATE t SET x = 1", 0, NULL, on_outcome, &stmt), 0);
    assert_int_equal(sl_pg_tx_commit(tx, on_outcome, &commit), 0);
    assert_int_equal(stmt.called + commit.called, 0);
    assert_int_equal(fake_run_until(fake_flag, &commit.called, 10), 0);
    assert_int_equal(stmt.called, 1);
    assert_int_equal(commit.called, 1);
    assert_true(stmt.order < commit.order);
    assert_string_not_equal(stmt.err, "");
    assert_string_not_equal(commit.err, ""); /* not committed, and it says so */
    sl_pg_free(pg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queue_bound_then_unavailable),
        cmocka_unit_test(transaction_on_a_pool_that_is_down),
    };
    return cmocka_run_group_tests(tests, setup, fake_daemon_stop);
}
