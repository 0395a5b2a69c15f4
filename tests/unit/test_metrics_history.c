/*
 * test_metrics_history.c - the status page's history: per-family sums
 * parsed from the text exposition, counters turned into rates, gaps and
 * resets shown as null, the ring's wrap-around.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "history.h"

static void sample(history *h, const char *text, double t)
{
    assert_int_equal(history_sample(h, text, strlen(text), t, 1000 + t), 0);
}

/* The "values" array of family `name` in the JSON of `h`; the caller
 * deletes *root. */
static cJSON *values_of(const history *h, const char *name, cJSON **root)
{
    cJSON *s;
    *root = cJSON_CreateObject();
    assert_int_equal(history_json(h, *root), 0);
    cJSON_ArrayForEach (s, cJSON_GetObjectItem(*root, "series"))
        if (strcmp(cJSON_GetObjectItem(s, "name")->valuestring, name) == 0)
            return cJSON_GetObjectItem(s, "values");
    fail_msg("no series %s", name);
    return NULL;
}

static double at(cJSON *vals, int i)
{
    cJSON *v = cJSON_GetArrayItem(vals, i);
    assert_non_null(v);
    return cJSON_IsNull(v) ? NAN : v->valuedouble;
}

static const char *const T0 =
        "# HELP x_total requests\n"
        "# TYPE x_total counter\n"
        "x_total{route=\"/a\",code=\"200\"} 10\n"
        "x_total{route=\"/b}\\\" 1\",code=\"500\"} 5\n" /* '}' and an escaped quote in a value */
        "x_total_created 12345\n"                       /* not the family's own series */
        "# TYPE g gauge\n"
        "g 7\n"
        "g{k=\"v\"} 1.5\n"
        "# TYPE h histogram\n"
        "h_bucket{le=\"+Inf\"} 3\n"
        "h_count 3\n";

/* Counters become rates between samples, summed over their series;
 * gauges are summed as they are; histograms are not kept. */
static void test_sums_and_rates(void **state)
{
    history h;
    cJSON *root, *v;
    const char *t1 = "# TYPE x_total counter\nx_total{route=\"/a\"} 30\nx_total{route=\"/b\"} 15\n"
                     "# TYPE g gauge\ng 2\n";
    (void)state;

    assert_int_equal(history_init(&h, 10), 0);
    sample(&h, T0, 100);
    sample(&h, t1, 102);
    v = values_of(&h, "x_total", &root);
    assert_true(isnan(at(v, 0))); /* no sample before the first */
    assert_true(at(v, 1) == 15);  /* (45 - 15) / 2 s */
    cJSON_Delete(root);
    v = values_of(&h, "g", &root);
    assert_true(at(v, 0) == 8.5 && at(v, 1) == 2);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "series")), 2); /* no h */
    assert_true(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "t"), 1)->valuedouble == 1102);
    cJSON_Delete(root);
    history_free(&h);
}

/* A family that appears later is null before; a counter that went down
 * (its instance was replaced) has no rate at that sample. */
static void test_gaps_and_resets(void **state)
{
    history h;
    cJSON *root, *v;
    (void)state;

    assert_int_equal(history_init(&h, 10), 0);
    sample(&h, "# TYPE a gauge\na 1\n", 1);
    sample(&h, "# TYPE a gauge\na 1\n# TYPE c_total counter\nc_total 100\n", 2);
    sample(&h, "# TYPE a gauge\na 1\n# TYPE c_total counter\nc_total 4\n", 3);
    sample(&h, "# TYPE a gauge\na 1\n# TYPE c_total counter\nc_total 10\n", 4);
    sample(&h, "# TYPE a gauge\na 1\n", 5);
    v = values_of(&h, "c_total", &root);
    assert_int_equal(cJSON_GetArraySize(v), 5);
    assert_true(isnan(at(v, 0)) && isnan(at(v, 1))); /* absent, then first seen */
    assert_true(isnan(at(v, 2)));                    /* reset */
    assert_true(at(v, 3) == 6);
    assert_true(isnan(at(v, 4))); /* gone */
    cJSON_Delete(root);
    history_free(&h);
}

/* The ring keeps the last `cap` samples, oldest first. */
static void test_wrap(void **state)
{
    history h;
    cJSON *root, *v, *t;
    char text[64];
    (void)state;

    assert_int_equal(history_init(&h, 4), 0);
    for (int i = 0; i < 10; i++) {
        snprintf(text, sizeof(text), "# TYPE g gauge\ng %d\n", i);
        sample(&h, text, i);
    }
    v = values_of(&h, "g", &root);
    t = cJSON_GetObjectItem(root, "t");
    assert_int_equal(cJSON_GetArraySize(v), 4);
    for (int i = 0; i < 4; i++) {
        assert_true(at(v, i) == 6 + i);
        assert_true(cJSON_GetArrayItem(t, i)->valuedouble == 1006 + i);
    }
    cJSON_Delete(root);
    history_free(&h);
}

/* Beyond HIST_MAX_FAMILIES families the rest is not kept, and said so. */
static void test_family_limit(void **state)
{
    history h;
    size_t cap = (HIST_MAX_FAMILIES + 10) * 40, len = 0;
    char *text = malloc(cap);
    (void)state;

    assert_non_null(text);
    for (int i = 0; i < HIST_MAX_FAMILIES + 10; i++)
        len += (size_t)snprintf(text + len, cap - len, "# TYPE f%d gauge\nf%d 1\n", i, i);
    assert_int_equal(history_init(&h, 3), 0);
    assert_int_equal(history_sample(&h, text, len, 1, 1), -1);
    assert_int_equal(h.nfams, HIST_MAX_FAMILIES);
    free(text);
    history_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sums_and_rates),
        cmocka_unit_test(test_gaps_and_resets),
        cmocka_unit_test(test_wrap),
        cmocka_unit_test(test_family_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
