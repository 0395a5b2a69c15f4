/*
 * test_outbox.c - the outbox relay's pure parts: which names may reach SQL,
 * the topic template, the per-aggregate queue that keeps at most one row
 * of an aggregate in flight and holds blocked aggregates back, the set of
 * ids a relay holds, and the bucket shares.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbox.h"

static void test_ident(void **state)
{
    (void)state;
    const char *good[] = { "outbox", "_t", "aggregatetype", "A1_b2", NULL };
    const char *bad[] = {
        "", "1abc", "outbox; DROP TABLE users", "a-b", "a b", "\"x\"", "é", NULL
    };
    char longest[65];

    for (int i = 0; good[i] != NULL; i++)
        assert_true(ob_ident_ok(good[i]));
    for (int i = 0; bad[i] != NULL; i++)
        assert_false(ob_ident_ok(bad[i]));
    assert_false(ob_ident_ok(NULL));
    memset(longest, 'a', 64);
    longest[64] = '\0';
    assert_false(ob_ident_ok(longest)); /* 64 bytes: PostgreSQL would cut it */
    longest[63] = '\0';
    assert_true(ob_ident_ok(longest));
}

static void test_topic(void **state)
{
    char out[64];
    (void)state;

    ob_topic_of("segment_events", "segment", "segment_added", out, sizeof(out));
    assert_string_equal(out, "segment_events");
    ob_topic_of("outbox.${aggregate_type}", "order", "order.changed", out, sizeof(out));
    assert_string_equal(out, "outbox.order");
    ob_topic_of("${aggregate_type}-${event_type}", "a b/c", "x$y", out, sizeof(out));
    assert_string_equal(out, "a_b_c-x_y"); /* characters Kafka refuses become '_' */
    ob_topic_of("${aggregate_type}",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "", out,
                16);
    assert_int_equal(strlen(out), 15); /* truncated, still terminated */
}

static ob_row *row(long long id, const char *at, const char *aid)
{
    size_t la = strlen(at) + 1, lk = strlen(aid) + 1;
    ob_row *r = calloc(1, sizeof(*r) + la + lk);

    assert_non_null(r);
    r->id = id;
    r->aggregate_type = memcpy(r->data, at, la);
    r->key = memcpy(r->data + la, aid, lk);
    return r;
}

/* Flies the ready list's head and returns its row's id. */
static long long fly(ob_queue *q)
{
    ob_agg *a = ob_queue_ready(q);
    assert_non_null(a);
    return ob_queue_fly(q, a)->id;
}

static void test_queue_one_in_flight(void **state)
{
    ob_queue q = { 0 };
    ob_agg *a1, *a2;
    ob_row *r;
    (void)state;

    assert_int_equal(ob_queue_add(&q, row(1, "order", "A")), 0);
    assert_int_equal(ob_queue_add(&q, row(2, "order", "B")), 0);
    assert_int_equal(ob_queue_add(&q, row(3, "order", "A")), 0);
    assert_int_equal(ob_queue_add(&q, row(4, "customer", "A")), 0); /* another aggregate */
    assert_int_equal(q.queued, 4);
    assert_int_equal(fly(&q), 1);
    assert_int_equal(fly(&q), 2);
    assert_int_equal(fly(&q), 4);
    assert_null(ob_queue_ready(&q)); /* row 3 waits for row 1's report */
    assert_int_equal(q.flying, 3);
    assert_int_equal(q.queued, 1);

    a1 = ob_queue_find(&q, "order", "A");
    assert_non_null(a1);
    r = ob_queue_landed(&q, a1);
    assert_int_equal(r->id, 1);
    free(r);
    ob_queue_resume(&q, a1);
    assert_int_equal(fly(&q), 3);

    /* An idle aggregate is freed when its last row landed. */
    a2 = ob_queue_find(&q, "order", "B");
    free(ob_queue_landed(&q, a2));
    ob_queue_resume(&q, a2);
    assert_null(ob_queue_find(&q, "order", "B"));
    assert_int_equal(q.n, 2);
    ob_queue_free(&q);
}

static void test_queue_give_back_and_block(void **state)
{
    ob_queue q = { 0 };
    ob_agg *a;
    ob_row *r;
    long long ids[2];
    int n = 0;
    (void)state;

    for (long long id = 10; id < 13; id++)
        assert_int_equal(ob_queue_add(&q, row(id, "segment", "42")), 0);
    assert_int_equal(fly(&q), 10);
    a = ob_queue_find(&q, "segment", "42");
    /* Row 10 failed: what the aggregate queues goes back, in order. */
    free(ob_queue_landed(&q, a));
    while ((r = ob_queue_pop(&q, a)) != NULL) {
        ids[n++] = r->id;
        free(r);
    }
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 11);
    assert_int_equal(ids[1], 12);
    /* Blocked (row 10 waits for its backoff), it stays known though idle,
     * and a row of it read meanwhile is not made ready... */
    a->block = OB_BLOCKED;
    ob_queue_drop_if_idle(&q, a);
    assert_ptr_equal(ob_queue_find(&q, "segment", "42"), a);
    assert_int_equal(ob_queue_add(&q, row(13, "segment", "42")), 0);
    assert_null(ob_queue_ready(&q));
    free(ob_queue_pop(&q, a));
    /* ...until the block ends. */
    a->block = OB_OPEN;
    ob_queue_resume(&q, a);
    assert_null(ob_queue_find(&q, "segment", "42"));
    assert_int_equal(q.n, 0);
    assert_int_equal(q.queued, 0);
    assert_int_equal(q.flying, 0);
    ob_queue_free(&q);
}

static void test_queue_give_back_while_ready(void **state)
{
    ob_queue q = { 0 };
    ob_agg *a;
    ob_row *r;
    (void)state;

    /* A waits in the ready list when its rows go back (a producer reset):
     * it must not be produced from, and is freed. */
    assert_int_equal(ob_queue_add(&q, row(1, "order", "A")), 0);
    assert_int_equal(ob_queue_add(&q, row(2, "order", "B")), 0);
    a = ob_queue_find(&q, "order", "A");
    while ((r = ob_queue_pop(&q, a)) != NULL)
        free(r);
    ob_queue_drop_if_idle(&q, a); /* still listed as ready: kept for now */
    assert_int_equal(fly(&q), 2);
    assert_null(ob_queue_find(&q, "order", "A"));
    assert_null(ob_queue_ready(&q));
    ob_queue_free(&q);
}

static void test_queue_many(void **state)
{
    ob_queue q = { 0 };
    char aid[16];
    long long produced = 0;
    (void)state;

    /* Enough aggregates to grow the table several times; each keeps its
     * rows in id order. */
    for (long long id = 0; id < 20000; id++) {
        snprintf(aid, sizeof(aid), "%lld", id % 5000);
        assert_int_equal(ob_queue_add(&q, row(id, "segment", aid)), 0);
    }
    assert_int_equal(q.n, 5000);
    while (q.queued > 0 || q.flying > 0) {
        ob_agg *a;
        ob_row *r;
        while ((a = ob_queue_ready(&q)) != NULL) {
            ob_queue_fly(&q, a);
            produced++;
        }
        /* Acknowledge every flying row; each must be its aggregate's next. */
        for (a = q.all; a != NULL;) {
            ob_agg *next = a->all_next;
            if (a->flying != NULL) {
                r = ob_queue_landed(&q, a);
                assert_int_equal(r->id % 5000, atoll(r->key));
                if (a->head != NULL)
                    assert_true(a->head->id == r->id + 5000);
                free(r);
                ob_queue_resume(&q, a);
            }
            a = next;
        }
    }
    assert_int_equal(produced, 20000);
    assert_int_equal(q.n, 0);
    ob_queue_free(&q);
}

static void test_mine(void **state)
{
    ob_mine m = { 0 };
    (void)state;

    assert_false(ob_mine_has(&m, 1));
    assert_int_equal(ob_mine_del(&m, 1), -1);
    /* Enough to grow the table several times, with ids that collide. */
    for (long long id = 1; id <= 50000; id++)
        assert_int_equal(ob_mine_add(&m, id * 1024, (int)(id % OB_BUCKETS)), 0);
    assert_int_equal(m.n, 50000);
    assert_int_equal(ob_mine_add(&m, 0, 0), -1);   /* ids are positive */
    assert_int_equal(ob_mine_add(&m, 1024, 1), 0); /* already there: kept once */
    assert_int_equal(m.n, 50000);
    /* Delete every other one: the rest must still be found (deletion
     * shifts the probe runs back, it leaves no holes in them). */
    for (long long id = 2; id <= 50000; id += 2)
        assert_int_equal(ob_mine_del(&m, id * 1024), (int)(id % OB_BUCKETS));
    for (long long id = 1; id <= 50000; id++)
        assert_int_equal(ob_mine_has(&m, id * 1024), id % 2 == 1);
    assert_int_equal(m.n, 25000);
    assert_int_equal(ob_mine_del(&m, 2 * 1024), -1);
    /* A failed row stays held, marked, with its bucket. */
    assert_false(ob_mine_failed(&m, 3 * 1024));
    ob_mine_mark_failed(&m, 3 * 1024);
    ob_mine_mark_failed(&m, 2 * 1024); /* not held: nothing */
    assert_true(ob_mine_failed(&m, 3 * 1024));
    assert_false(ob_mine_failed(&m, 5 * 1024));
    assert_false(ob_mine_failed(&m, 2 * 1024));
    assert_true(ob_mine_has(&m, 3 * 1024));
    for (long long id = 1; id <= 50000; id += 2)
        assert_int_equal(ob_mine_del(&m, id * 1024), (int)(id % OB_BUCKETS));
    assert_int_equal(m.n, 0);
    assert_false(ob_mine_has(&m, 1024));
    ob_mine_free(&m);
}

static void test_plan(void **state)
{
    (void)state;
    assert_int_equal(ob_fair_share(1), OB_BUCKETS);
    assert_int_equal(ob_fair_share(0), OB_BUCKETS);
    assert_int_equal(ob_fair_share(2), OB_BUCKETS / 2);
    /* Shares cover every bucket: 3 relays at 22 each leave none free. */
    for (int n = 1; n <= OB_BUCKETS + 3; n++)
        assert_true(ob_fair_share(n) * n >= OB_BUCKETS);
    assert_int_equal(ob_fair_share(3), 22);
    assert_int_equal(ob_fair_share(OB_BUCKETS + 1), 1);
    assert_int_equal(ob_per_bucket(1000, 64), 16);
    assert_int_equal(ob_per_bucket(1000, 1), 1000);
    assert_int_equal(ob_per_bucket(10, 64), 1); /* never 0 */
    assert_int_equal(ob_per_bucket(1000, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ident),
        cmocka_unit_test(test_topic),
        cmocka_unit_test(test_queue_one_in_flight),
        cmocka_unit_test(test_queue_give_back_and_block),
        cmocka_unit_test(test_queue_give_back_while_ready),
        cmocka_unit_test(test_queue_many),
        cmocka_unit_test(test_mine),
        cmocka_unit_test(test_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
