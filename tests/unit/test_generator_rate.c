/*
 * test_generator_rate.c - the generator's rate control (token bucket with
 * intended send times) and the sync strategy's backoff schedule.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "backoff.h"
#include "bucket.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

/* A generator taking what is due every millisecond for 10 s at 1000/s
 * makes 10000 events, each at most a millisecond after it was due. */
static void test_steady_rate(void **state)
{
    gen_bucket b;
    uint64_t made = 0;
    double worst = 0;
    (void)state;

    gen_bucket_init(&b, 1000, 1000, 0);
    for (int ms = 1; ms <= 10000; ms++) {
        double now = ms / 1000.0, first, step;
        uint64_t n = gen_bucket_take(&b, now, 100000, &first, &step);
        for (uint64_t i = 0; i < n; i++) {
            double late = now - (first + (double)i * step);
            assert_true(late > -1e-9);
            if (late > worst)
                worst = late;
        }
        made += n;
    }
    assert_true(made >= 9999 && made <= 10000);
    assert_true(worst <= 0.001 + 1e-9);
    assert_true(NEAR(b.missed, 0));
}

/* A stall shows up as lateness from the intended time, not as a gap. */
static void test_stall_is_latency(void **state)
{
    gen_bucket b;
    double first, step;
    uint64_t n;
    (void)state;

    gen_bucket_init(&b, 10, 100, 0);
    n = gen_bucket_take(&b, 2.0, 1000, &first, &step); /* 2 s without a turn */
    assert_int_equal(n, 20);
    assert_true(NEAR(step, 0.1));
    assert_true(NEAR(first, 0.1));             /* the first was due at 0.1 s */
    assert_true(NEAR(first + 19 * step, 2.0)); /* the last just now */
}

static void test_capacity_and_missed(void **state)
{
    gen_bucket b;
    double first, step;
    (void)state;

    gen_bucket_init(&b, 100, 50, 0);
    assert_int_equal(gen_bucket_take(&b, 1.0, 1000, &first, &step), 50);
    assert_true(NEAR(b.missed, 50));
    /* a budget smaller than what is due leaves the rest due */
    assert_int_equal(gen_bucket_take(&b, 1.2, 5, &first, &step), 5);
    assert_int_equal(gen_bucket_take(&b, 1.2, 1000, &first, &step), 15);
}

static void test_rate_change(void **state)
{
    gen_bucket b;
    double first, step;
    (void)state;

    gen_bucket_init(&b, 10, 1000, 0);
    gen_bucket_set_rate(&b, 100, 1.0); /* 10 accrued at the old rate */
    assert_int_equal(gen_bucket_take(&b, 2.0, 1000, &first, &step), 110);
    /* rate 0: nothing, and a long wait */
    gen_bucket_set_rate(&b, 0, 2.0);
    assert_int_equal(gen_bucket_take(&b, 100.0, 1000, &first, &step), 0);
    assert_true(gen_bucket_wait(&b, 100.0) >= 3600);
}

static void test_wait(void **state)
{
    gen_bucket b;
    double first, step;
    (void)state;

    gen_bucket_init(&b, 0.1, 1, 0); /* night: one event every 10 s */
    assert_true(NEAR(gen_bucket_wait(&b, 0), 10));
    assert_true(NEAR(gen_bucket_wait(&b, 4), 6));
    assert_true(NEAR(gen_bucket_wait(&b, 10), 0));
    assert_int_equal(gen_bucket_take(&b, 10, 10, &first, &step), 1);
    assert_true(NEAR(first, 10));
    assert_true(NEAR(gen_bucket_wait(&b, 10), 10));
}

/* The schedule: 5 attempts in all, delays doubling, capped at 30 s. */
static void test_backoff_schedule(void **state)
{
    gen_backoff one = { 5, 1, 30 }, big = { 5, 5, 30 }, longer = { 8, 1, 30 },
                single = { 1, 1, 30 };
    (void)state;

    assert_true(NEAR(gen_backoff_delay(&one, 1), 1));
    assert_true(NEAR(gen_backoff_delay(&one, 2), 2));
    assert_true(NEAR(gen_backoff_delay(&one, 3), 4));
    assert_true(NEAR(gen_backoff_delay(&one, 4), 8));
    assert_true(gen_backoff_delay(&one, 5) < 0); /* the fifth failure is final */
    assert_true(NEAR(gen_backoff_delay(&big, 3), 20));
    assert_true(NEAR(gen_backoff_delay(&big, 4), 30));    /* 40 capped */
    assert_true(NEAR(gen_backoff_delay(&longer, 6), 30)); /* 32 capped */
    assert_true(NEAR(gen_backoff_delay(&longer, 7), 30));
    assert_true(gen_backoff_delay(&longer, 8) < 0);
    assert_true(gen_backoff_delay(&single, 1) < 0);
    assert_true(gen_backoff_delay(&one, 0) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steady_rate),
        cmocka_unit_test(test_stall_is_latency),
        cmocka_unit_test(test_capacity_and_missed),
        cmocka_unit_test(test_rate_change),
        cmocka_unit_test(test_wait),
        cmocka_unit_test(test_backoff_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
