/*
 * test_generator_dist.c - the generator's distributions: the seeded PRNG,
 * the event mix with its malformed kinds and duplicates, Zipf-skewed
 * populations and the partitioning choice.  Over 100k draws each share
 * must be within one percentage point of its weight.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "cdf.h"
#include "mix.h"
#include "partition.h"
#include "prng.h"

#define DRAWS 100000
#define TOLERANCE 0.01

static void assert_share(const char *what, uint64_t got, double want)
{
    double share = (double)got / DRAWS;
    if (fabs(share - want) > TOLERANCE)
        fail_msg("%s: share %.4f, want %.4f +- %.2f", what, share, want, TOLERANCE);
}

static void test_seed_replays(void **state)
{
    gen_rng a, b, c;
    (void)state;
    gen_rng_seed(&a, 42);
    gen_rng_seed(&b, 42);
    gen_rng_seed(&c, 43);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = gen_rng_next(&a);
        assert_int_equal(x, gen_rng_next(&b));
        differ |= x != gen_rng_next(&c);
    }
    assert_true(differ);
}

static void test_ranges(void **state)
{
    gen_rng r;
    uint64_t seen[10] = { 0 };
    (void)state;
    gen_rng_seed(&r, 1);
    for (int i = 0; i < DRAWS; i++) {
        double u = gen_rng_unit(&r);
        int64_t v = gen_rng_between(&r, 1, 10);
        assert_true(u >= 0 && u < 1);
        assert_true(v >= 1 && v <= 10);
        seen[v - 1]++;
    }
    for (int i = 0; i < 10; i++)
        assert_share("1..10", seen[i], 0.1);
    assert_int_equal(gen_rng_below(&r, 0), 0);
    assert_int_equal(gen_rng_between(&r, 5, 5), 5);
}

static void test_weights_rejected(void **state)
{
    gen_cdf c;
    const double zero[3] = { 0, 0, 0 }, neg[2] = { 1, -1 };
    (void)state;
    assert_int_equal(gen_cdf_init(&c, zero, 3), -1);
    assert_int_equal(gen_cdf_init(&c, neg, 2), -1);
    assert_int_equal(gen_cdf_init(&c, neg, 0), -1);
    assert_int_equal(gen_cdf_zipf(&c, 0, 1), -1);
    assert_int_equal(gen_cdf_zipf(&c, 10, -1), -1);
}

/* The default mix: 85/10/5 with five equally weighted malformed kinds,
 * and 1% duplicates drawn before the mix. */
static void test_mix_shares(void **state)
{
    const double types[3] = { 85, 10, 5 }, kinds[GEN_NKINDS] = { 1, 1, 1, 1, 1 };
    gen_mix m;
    gen_rng r;
    uint64_t n[GEN_NCLASSES] = { 0 };
    double rest = 0.99;
    (void)state;

    assert_int_equal(gen_mix_init(&m, types, kinds, 0.01), 0);
    gen_rng_seed(&r, 7);
    for (int i = 0; i < DRAWS; i++)
        n[gen_mix_draw(&m, &r, 1)]++;
    assert_share("view", n[GEN_VIEW], rest * 0.85);
    assert_share("bounce", n[GEN_BOUNCE], rest * 0.10);
    assert_share("duplicate", n[GEN_DUPLICATE], 0.01);
    for (int k = GEN_MISSING_FIELD; k < GEN_NCLASSES; k++)
        assert_share(gen_class_name((gen_class)k), n[k], rest * 0.05 / GEN_NKINDS);
    gen_mix_free(&m);
}

/* Weights other than the defaults, and no duplicate without an earlier event. */
static void test_mix_custom(void **state)
{
    const double types[3] = { 1, 1, 2 }, kinds[GEN_NKINDS] = { 0, 0, 1, 0, 3 };
    gen_mix m;
    gen_rng r;
    uint64_t n[GEN_NCLASSES] = { 0 };
    (void)state;

    assert_int_equal(gen_mix_init(&m, types, kinds, 0.5), 0);
    gen_rng_seed(&r, 8);
    for (int i = 0; i < DRAWS; i++)
        n[gen_mix_draw(&m, &r, 0)]++;
    assert_int_equal(n[GEN_DUPLICATE], 0);
    assert_share("view", n[GEN_VIEW], 0.25);
    assert_share("bounce", n[GEN_BOUNCE], 0.25);
    assert_share("broken_json", n[GEN_BROKEN_JSON], 0.5 * 0.25);
    assert_share("bad_timestamp", n[GEN_BAD_TIMESTAMP], 0.5 * 0.75);
    assert_int_equal(n[GEN_MISSING_FIELD] + n[GEN_WRONG_TYPE] + n[GEN_NEGATIVE_DURATION], 0);
    gen_mix_free(&m);
    assert_int_equal(gen_mix_init(&m, types, kinds, 1.0), -1);
}

/* Zipf s = 1 over 1000 pages: rank k has 1/(k H_1000). */
static void test_zipf(void **state)
{
    gen_cdf c;
    gen_rng r;
    static uint64_t n[1000];
    double h = 0;
    (void)state;

    for (int k = 1; k <= 1000; k++)
        h += 1.0 / k;
    assert_int_equal(gen_cdf_zipf(&c, 1000, 1.0), 0);
    gen_rng_seed(&r, 9);
    memset(n, 0, sizeof(n));
    for (int i = 0; i < DRAWS; i++)
        n[gen_cdf_pick(&c, &r)]++;
    for (int k = 0; k < 10; k++)
        assert_share("zipf rank", n[k], 1.0 / ((k + 1) * h));
    assert_true(fabs(gen_cdf_share(&c, 0) - 1.0 / h) < 1e-9);
    gen_cdf_free(&c);

    /* skew 0 is uniform, without a table */
    assert_int_equal(gen_cdf_zipf(&c, 4, 0), 0);
    assert_null(c.cum);
    memset(n, 0, sizeof(n));
    for (int i = 0; i < DRAWS; i++)
        n[gen_cdf_pick(&c, &r)]++;
    for (int k = 0; k < 4; k++)
        assert_share("uniform", n[k], 0.25);
    gen_cdf_free(&c);
}

static void test_partitioning(void **state)
{
    const double w[GEN_NPART] = { 70, 20, 10 };
    gen_partitioner p;
    gen_rng r;
    uint64_t how_n[GEN_NPART] = { 0 }, rr[8] = { 0 }, rnd[8] = { 0 };
    int32_t last_rr = -1;
    (void)state;

    assert_int_equal(gen_partitioner_init(&p, w, 8), 0);
    gen_rng_seed(&r, 10);
    for (int i = 0; i < DRAWS; i++) {
        gen_part_how how;
        int32_t part = gen_partition_pick(&p, &r, &how);
        how_n[how]++;
        if (how == GEN_PART_KEY) {
            assert_int_equal(part, GEN_BY_KEY);
        } else {
            assert_true(part >= 0 && part < 8);
            if (how == GEN_PART_ROUND_ROBIN) {
                /* round-robin visits the partitions in turn */
                assert_int_equal(part, (last_rr + 1) % 8);
                last_rr = part;
                rr[part]++;
            } else {
                rnd[part]++;
            }
        }
    }
    assert_share("key", how_n[GEN_PART_KEY], 0.7);
    assert_share("round_robin", how_n[GEN_PART_ROUND_ROBIN], 0.2);
    assert_share("random", how_n[GEN_PART_RANDOM], 0.1);
    for (int i = 0; i < 8; i++) {
        assert_share("round-robin partition", rr[i], 0.2 / 8);
        assert_share("random partition", rnd[i], 0.1 / 8);
    }
    gen_partitioner_free(&p);
    assert_int_equal(gen_partitioner_init(&p, w, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_replays),     cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_weights_rejected), cmocka_unit_test(test_mix_shares),
        cmocka_unit_test(test_mix_custom),       cmocka_unit_test(test_zipf),
        cmocka_unit_test(test_partitioning),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
