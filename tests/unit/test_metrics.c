/*
 * test_metrics.c - the metrics registry: registration, sharing and
 * conflicts, series updates and misuse, and the exact exposition text.
 *
 * Every test releases what it registered; the teardown checks that the
 * registry is empty again, and ASan checks that it was freed.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "metrics/metrics.h"

static const double bounds[] = { 0.005, 0.5, 1, 10 };

/* Renders the registry and checks the length it reports. */
static char *render(void)
{
    size_t len = (size_t)-1;
    char *text = sl_metrics_render(&len);

    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    return text;
}

static void assert_rendered(const char *expected)
{
    char *text = render();

    assert_string_equal(text, expected);
    free(text);
}

/* The log writes to fd 2; these swap it for a temporary file so a test can
 * see what was logged. */
static FILE *captured;
static int saved_stderr = -1;

static void capture_begin(void)
{
    captured = tmpfile();
    assert_non_null(captured);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fileno(captured), STDERR_FILENO) >= 0);
}

/* Returns how many logged lines contain `needle`. */
static int capture_end(const char *needle)
{
    char line[1024];
    int n = 0;

    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    saved_stderr = -1;
    rewind(captured);
    while (fgets(line, sizeof(line), captured) != NULL) {
        fputs(line, stderr);
        if (strstr(line, needle) != NULL)
            n++;
    }
    fclose(captured);
    captured = NULL;
    return n;
}

static int registry_empty(void **state)
{
    (void)state;
    assert_int_equal(sl_metrics_family_count(), 0);
    return 0;
}

static void test_empty_registry(void **state)
{
    (void)state;
    assert_rendered("");
}

static void test_share_same_family(void **state)
{
    sl_metric *a, *b;
    sl_series *sa, *sb;

    (void)state;
    a = sl_metric_register(SL_METRIC_COUNTER, "requests_total", "Requests.", "code", NULL, 0, "");
    b = sl_metric_register(SL_METRIC_COUNTER, "requests_total", "Other help.", " code ", NULL, 0,
                           NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_int_equal(sl_metrics_family_count(), 1);

    /* Same instance (none) and values: the same series through both. */
    sa = sl_series_of(a, "200");
    sb = sl_series_of(b, "200");
    assert_non_null(sa);
    assert_ptr_equal(sa, sb);
    sl_series_add(sa, 2);
    sl_series_add(sb, 3);

    /* A successor keeps counting after its predecessor went. */
    sl_metric_release(a);
    assert_int_equal(sl_metrics_family_count(), 1);
    sl_series_add(sa, 1);
    assert_ptr_equal(sl_series_of(b, "200"), sa);
    assert_rendered("# HELP requests_total Requests.\n"
                    "# TYPE requests_total counter\n"
                    "requests_total{code=\"200\"} 6\n");
    sl_metric_release(b);
}

static void test_conflicts(void **state)
{
    sl_metric *c, *h, *h2;
    static const double other[] = { 0.005, 0.5, 2, 10 };

    (void)state;
    c = sl_metric_register(SL_METRIC_COUNTER, "jobs_total", "", "queue,state", NULL, 0, "");
    assert_non_null(c);
    assert_null(sl_metric_register(SL_METRIC_GAUGE, "jobs_total", "", "queue,state", NULL, 0, ""));
    assert_null(sl_metric_register(SL_METRIC_COUNTER, "jobs_total", "", "queue", NULL, 0, ""));
    assert_null(
            sl_metric_register(SL_METRIC_COUNTER, "jobs_total", "", "state,queue", NULL, 0, ""));
    assert_null(sl_metric_register(SL_METRIC_COUNTER, "jobs_total", "", NULL, NULL, 0, ""));
    assert_null(
            sl_metric_register(SL_METRIC_COUNTER, "jobs_total", "", "queue,state,x", NULL, 0, ""));

    h = sl_metric_register(SL_METRIC_HISTOGRAM, "latency_seconds", "", NULL, bounds, 4, "");
    assert_non_null(h);
    assert_null(sl_metric_register(SL_METRIC_HISTOGRAM, "latency_seconds", "", NULL, other, 4, ""));
    assert_null(
            sl_metric_register(SL_METRIC_HISTOGRAM, "latency_seconds", "", NULL, bounds, 3, ""));
    assert_null(sl_metric_register(SL_METRIC_COUNTER, "latency_seconds", "", NULL, NULL, 0, ""));
    h2 = sl_metric_register(SL_METRIC_HISTOGRAM, "latency_seconds", "", NULL, bounds, 4, "other");
    assert_non_null(h2);

    assert_int_equal(sl_metrics_family_count(), 2);
    sl_metric_release(c);
    sl_metric_release(h);
    sl_metric_release(h2);
}

static void test_release_frees(void **state)
{
    sl_metric *a, *b, *g;

    (void)state;
    a = sl_metric_register(SL_METRIC_COUNTER, "x_total", "", "k", NULL, 0, "one");
    b = sl_metric_register(SL_METRIC_COUNTER, "x_total", "", "k", NULL, 0, "two");
    assert_non_null(a);
    assert_non_null(b);
    for (int i = 0; i < 50; i++) {
        char v[16];
        snprintf(v, sizeof(v), "%d", i);
        sl_series_add(sl_series_of(i % 2 ? a : b, v), 1);
    }
    sl_metric_release(b);
    assert_int_equal(sl_metrics_family_count(), 1);
    sl_metric_release(a);
    assert_int_equal(sl_metrics_family_count(), 0);
    sl_metric_release(NULL);

    /* Once gone, the name is free for another type. */
    g = sl_metric_register(SL_METRIC_GAUGE, "x_total", "", NULL, NULL, 0, "");
    assert_non_null(g);
    sl_metric_release(g);
}

static void test_invalid_names(void **state)
{
    static const char *const bad_metrics[] = { "", "1abc", "a-b", "a b", "é", "a.b" };
    static const char *const bad_labels[] = { "1x",
                                              "a-b",
                                              "__x",
                                              "instance_name",
                                              "a,,b",
                                              ",",
                                              "a,",
                                              "a,a",
                                              "a:b",
                                              "x y",
                                              "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q" };
    static const double unordered[] = { 1, 1 };
    static const double descending[] = { 2, 1 };
    static const double with_inf[] = { 1, INFINITY };
    static const double with_nan[] = { NAN };
    sl_metric *m;
    size_t i;

    (void)state;
    assert_null(sl_metric_register(SL_METRIC_COUNTER, NULL, "", NULL, NULL, 0, ""));
    for (i = 0; i < sizeof(bad_metrics) / sizeof(bad_metrics[0]); i++)
        assert_null(sl_metric_register(SL_METRIC_COUNTER, bad_metrics[i], "", NULL, NULL, 0, ""));
    for (i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++)
        assert_null(sl_metric_register(SL_METRIC_GAUGE, "g", "", bad_labels[i], NULL, 0, ""));
    assert_null(sl_metric_register((sl_metric_type)42, "g", "", NULL, NULL, 0, ""));

    assert_null(sl_metric_register(SL_METRIC_HISTOGRAM, "h", "", "le", bounds, 4, ""));
    assert_null(sl_metric_register(SL_METRIC_HISTOGRAM, "h", "", NULL, unordered, 2, ""));
    assert_null(sl_metric_register(SL_METRIC_HISTOGRAM, "h", "", NULL, descending, 2, ""));
    assert_null(sl_metric_register(SL_METRIC_HISTOGRAM, "h", "", NULL, with_inf, 2, ""));
    assert_null(sl_metric_register(SL_METRIC_HISTOGRAM, "h", "", NULL, with_nan, 1, ""));
    assert_null(sl_metric_register(SL_METRIC_HISTOGRAM, "h", "", NULL, NULL, 2, ""));
    assert_int_equal(sl_metrics_family_count(), 0);

    /* Valid edge cases: colons in metric names, "le" outside histograms,
     * sixteen labels, blanks around label names, a leading single "_". */
    m = sl_metric_register(SL_METRIC_COUNTER, ":ns:a_b:total", "", "le", NULL, 0, "");
    assert_non_null(m);
    sl_metric_release(m);
    m = sl_metric_register(SL_METRIC_GAUGE, "_g", "", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,_p", NULL, 0,
                           "");
    assert_non_null(m);
    sl_metric_release(m);
    m = sl_metric_register(SL_METRIC_GAUGE, "g", "", " \t ", NULL, 0, "");
    assert_non_null(m);
    sl_metric_release(m);
}

static void test_label_escaping(void **state)
{
    sl_metric *m;

    (void)state;
    m = sl_metric_register(SL_METRIC_GAUGE, "temp", "Line one\nback\\slash \"quotes\" stay.",
                           "path,empty", NULL, 0, "in\"st\\");
    assert_non_null(m);
    sl_series_set(sl_series_of(m, "a\"b\\c\nd", ""), 1.5);
    assert_rendered(
            "# HELP temp Line one\\nback\\\\slash \"quotes\" stay.\n"
            "# TYPE temp gauge\n"
            "temp{path=\"a\\\"b\\\\c\\nd\",empty=\"\",instance_name=\"in\\\"st\\\\\"} 1.5\n");
    sl_metric_release(m);
}

static void test_histogram(void **state)
{
    sl_metric *m;
    sl_series *s;

    (void)state;
    m = sl_metric_register(SL_METRIC_HISTOGRAM, "latency_seconds", "Latency.", "route", bounds, 4,
                           "");
    assert_non_null(m);
    s = sl_series_of(m, "/x");
    assert_non_null(s);
    sl_series_observe(s, 0.005); /* on a bound: counts in that bucket */
    sl_series_observe(s, -1);
    sl_series_observe(s, 0.25);
    sl_series_observe(s, 1);
    sl_series_observe(s, 100);
    sl_series_observe(s, NAN); /* ignored */
    assert_rendered("# HELP latency_seconds Latency.\n"
                    "# TYPE latency_seconds histogram\n"
                    "latency_seconds_bucket{route=\"/x\",le=\"0.005\"} 2\n"
                    "latency_seconds_bucket{route=\"/x\",le=\"0.5\"} 3\n"
                    "latency_seconds_bucket{route=\"/x\",le=\"1\"} 4\n"
                    "latency_seconds_bucket{route=\"/x\",le=\"10\"} 4\n"
                    "latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 5\n"
                    "latency_seconds_sum{route=\"/x\"} 100.255\n"
                    "latency_seconds_count{route=\"/x\"} 5\n");
    sl_metric_release(m);

    /* No bounds at all: only the +Inf bucket. */
    m = sl_metric_register(SL_METRIC_HISTOGRAM, "size_bytes", "", NULL, NULL, 0, "");
    assert_non_null(m);
    sl_series_observe(sl_series_of(m), 7);
    assert_rendered("# TYPE size_bytes histogram\n"
                    "size_bytes_bucket{le=\"+Inf\"} 1\n"
                    "size_bytes_sum 7\n"
                    "size_bytes_count 1\n");
    sl_metric_release(m);
}

static void test_instance_name(void **state)
{
    sl_metric *plain, *named, *up1, *up2;
    sl_series *sp, *sn;

    (void)state;
    plain = sl_metric_register(SL_METRIC_COUNTER, "msgs_total", "", "topic", NULL, 0, "");
    named = sl_metric_register(SL_METRIC_COUNTER, "msgs_total", "", "topic", NULL, 0, "second");
    assert_non_null(plain);
    assert_non_null(named);
    sp = sl_series_of(plain, "t");
    sn = sl_series_of(named, "t");
    assert_non_null(sp);
    assert_non_null(sn);
    assert_ptr_not_equal(sp, sn);
    sl_series_add(sl_series_of(named, "t"), 4);
    sl_series_add(sl_series_of(plain, "t"), 1);

    /* Label-less families get one series per instance at registration. */
    up1 = sl_metric_register(SL_METRIC_GAUGE, "up", "", NULL, NULL, 0, NULL);
    up2 = sl_metric_register(SL_METRIC_GAUGE, "up", "", NULL, NULL, 0, "second");
    assert_non_null(up1);
    assert_non_null(up2);
    sl_series_set(sl_series_of(up2), 1);
    assert_ptr_equal(sl_series_ofv(up2, NULL), sl_series_of(up2));

    assert_rendered("# TYPE msgs_total counter\n"
                    "msgs_total{topic=\"t\"} 1\n"
                    "msgs_total{topic=\"t\",instance_name=\"second\"} 4\n"
                    "# TYPE up gauge\n"
                    "up 0\n"
                    "up{instance_name=\"second\"} 1\n");
    sl_metric_release(plain);
    sl_metric_release(named);
    sl_metric_release(up1);
    sl_metric_release(up2);
}

/* An instance that is gone (its last registration released) stops being
 * exposed, while others sharing the family stay; registering the same
 * instance name again brings its series back with their values. */
static void test_instance_gone(void **state)
{
    sl_metric *plain, *a1, *a2, *up;

    (void)state;
    plain = sl_metric_register(SL_METRIC_GAUGE, "lag", "", "partition", NULL, 0, "");
    a1 = sl_metric_register(SL_METRIC_GAUGE, "lag", "", "partition", NULL, 0, "a");
    a2 = sl_metric_register(SL_METRIC_GAUGE, "lag", "", "partition", NULL, 0, "a");
    up = sl_metric_register(SL_METRIC_GAUGE, "up", "", NULL, NULL, 0, "a");
    assert_non_null(plain);
    assert_non_null(a1);
    assert_non_null(a2);
    assert_non_null(up);
    sl_series_set(sl_series_of(plain, "0"), 1);
    sl_series_set(sl_series_of(a1, "0"), 7);
    sl_series_set(sl_series_of(up), 1);

    sl_metric_release(a1); /* a2 still holds instance "a" */
    assert_rendered("# TYPE lag gauge\n"
                    "lag{partition=\"0\"} 1\n"
                    "lag{partition=\"0\",instance_name=\"a\"} 7\n"
                    "# TYPE up gauge\n"
                    "up{instance_name=\"a\"} 1\n");
    sl_metric_release(a2);
    assert_rendered("# TYPE lag gauge\n"
                    "lag{partition=\"0\"} 1\n"
                    "# TYPE up gauge\n"
                    "up{instance_name=\"a\"} 1\n");

    a1 = sl_metric_register(SL_METRIC_GAUGE, "lag", "", "partition", NULL, 0, "a");
    assert_non_null(a1);
    assert_rendered("# TYPE lag gauge\n"
                    "lag{partition=\"0\"} 1\n"
                    "lag{partition=\"0\",instance_name=\"a\"} 7\n"
                    "# TYPE up gauge\n"
                    "up{instance_name=\"a\"} 1\n");
    sl_metric_release(a1);
    sl_metric_release(up);
    sl_metric_release(plain);
}

/* A retired gauge is not exposed until it is set again; a counter cannot
 * be retired. */
static void test_retire(void **state)
{
    sl_metric *lag, *msgs;

    (void)state;
    lag = sl_metric_register(SL_METRIC_GAUGE, "lag", "", "partition", NULL, 0, "");
    msgs = sl_metric_register(SL_METRIC_COUNTER, "msgs_total", "", NULL, NULL, 0, "");
    assert_non_null(lag);
    assert_non_null(msgs);
    sl_series_set(sl_series_of(lag, "0"), 3);
    sl_series_set(sl_series_of(lag, "1"), 5);
    sl_series_retire(sl_series_of(lag, "0"));
    sl_series_retire(sl_series_of(msgs));
    assert_rendered("# TYPE lag gauge\n"
                    "lag{partition=\"1\"} 5\n"
                    "# TYPE msgs_total counter\n"
                    "msgs_total 0\n");
    sl_series_set(sl_series_of(lag, "0"), 2);
    assert_rendered("# TYPE lag gauge\n"
                    "lag{partition=\"0\"} 2\n"
                    "lag{partition=\"1\"} 5\n"
                    "# TYPE msgs_total counter\n"
                    "msgs_total 0\n");
    sl_metric_release(lag);
    sl_metric_release(msgs);
}

static void test_exposition(void **state)
{
    sl_metric *conns, *req, *lat, *empty;
    static const double b2[] = { 0.1, 1 };

    (void)state;
    /* Registered out of order: rendered sorted by name. */
    req = sl_metric_register(SL_METRIC_COUNTER, "sluice_requests_total", "HTTP requests.",
                             "method,code", NULL, 0, "");
    lat = sl_metric_register(SL_METRIC_HISTOGRAM, "sluice_request_seconds", "Request latency.",
                             NULL, b2, 2, "");
    conns = sl_metric_register(SL_METRIC_GAUGE, "sluice_connections", "Open connections.", NULL,
                               NULL, 0, "");
    empty = sl_metric_register(SL_METRIC_COUNTER, "sluice_errors_total", "Errors.", "kind", NULL, 0,
                               "");
    assert_non_null(req);
    assert_non_null(lat);
    assert_non_null(conns);
    assert_non_null(empty);

    sl_series_add(sl_series_of(req, "GET", "200"), 3);
    sl_series_add(sl_series_of(req, "POST", "500"), 1);
    sl_series_add(sl_series_of(req, "GET", "200"), 1);
    sl_series_add(sl_series_of(conns), 2);
    sl_series_add(sl_series_of(conns), -1);
    sl_series_observe(sl_series_of(lat), 0.05);
    sl_series_observe(sl_series_of(lat), 0.5);

    assert_rendered("# HELP sluice_connections Open connections.\n"
                    "# TYPE sluice_connections gauge\n"
                    "sluice_connections 1\n"
                    "# HELP sluice_errors_total Errors.\n"
                    "# TYPE sluice_errors_total counter\n"
                    "# HELP sluice_request_seconds Request latency.\n"
                    "# TYPE sluice_request_seconds histogram\n"
                    "sluice_request_seconds_bucket{le=\"0.1\"} 1\n"
                    "sluice_request_seconds_bucket{le=\"1\"} 2\n"
                    "sluice_request_seconds_bucket{le=\"+Inf\"} 2\n"
                    "sluice_request_seconds_sum 0.55\n"
                    "sluice_request_seconds_count 2\n"
                    "# HELP sluice_requests_total HTTP requests.\n"
                    "# TYPE sluice_requests_total counter\n"
                    "sluice_requests_total{method=\"GET\",code=\"200\"} 4\n"
                    "sluice_requests_total{method=\"POST\",code=\"500\"} 1\n");

    sl_metric_release(req);
    sl_metric_release(lat);
    sl_metric_release(conns);
    sl_metric_release(empty);
}

static void test_value_format(void **state)
{
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        { 0, "0" },
        { -0.0, "0" },
        { 42, "42" },
        { -7, "-7" },
        { 1e15, "1000000000000000" },
        { 9007199254740992.0, "9007199254740992" },
        { 1e20, "1e+20" },
        { 0.1, "0.1" },
        { 1.5, "1.5" },
        { 1.0 / 3, "0.3333333333333333" },
        { 2.5e-7, "2.5e-07" },
        { INFINITY, "+Inf" },
        { -INFINITY, "-Inf" },
        { NAN, "NaN" },
    };
    char expected[256];
    sl_metric *m;
    sl_series *s;
    size_t i;

    (void)state;
    m = sl_metric_register(SL_METRIC_GAUGE, "v", "", NULL, NULL, 0, "");
    assert_non_null(m);
    s = sl_series_of(m);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sl_series_set(s, cases[i].v);
        snprintf(expected, sizeof(expected), "# TYPE v gauge\nv %s\n", cases[i].text);
        assert_rendered(expected);
    }
    sl_metric_release(m);
}

static void test_misuse(void **state)
{
    sl_metric *c, *g, *h;
    sl_series *cs, *gs, *hs;
    const char *vals[] = { NULL };

    (void)state;
    c = sl_metric_register(SL_METRIC_COUNTER, "c_total", "", NULL, NULL, 0, "");
    g = sl_metric_register(SL_METRIC_GAUGE, "g", "", "k", NULL, 0, "");
    h = sl_metric_register(SL_METRIC_HISTOGRAM, "h", "", NULL, bounds, 4, "");
    assert_non_null(c);
    assert_non_null(g);
    assert_non_null(h);
    cs = sl_series_of(c);
    gs = sl_series_of(g, "x");
    hs = sl_series_of(h);

    /* NULL handles, series and label values: ignored, logged once. */
    capture_begin();
    assert_null(sl_series_of(NULL, "x"));
    assert_null(sl_series_ofv(NULL, NULL));
    assert_null(sl_series_of(g, NULL));
    assert_null(sl_series_of(g, NULL));
    assert_null(sl_series_ofv(g, NULL));
    assert_null(sl_series_ofv(g, vals));
    sl_series_add(NULL, 1);
    sl_series_set(NULL, 1);
    sl_series_observe(NULL, 1);
    assert_int_equal(capture_end("NULL"), 2);

    /* Wrong operations for the type, repeated: each kind is logged once
     * per series, so that a bug on a hot path cannot flood the log. */
    capture_begin();
    for (int i = 0; i < 3; i++) {
        sl_series_add(cs, -1);
        sl_series_add(cs, NAN);
        sl_series_set(cs, 100);
        sl_series_observe(cs, 1);
        sl_series_observe(gs, 1);
        sl_series_add(hs, 1);
        sl_series_set(hs, 1);
        sl_series_observe(hs, NAN);
    }
    assert_int_equal(capture_end("c_total: "), 2);
    capture_begin();
    sl_series_add(cs, -1);
    assert_int_equal(capture_end("c_total: "), 0);
    sl_series_add(cs, 0.5);
    sl_series_add(cs, 0);
    sl_series_add(gs, -2.5);

    assert_rendered("# TYPE c_total counter\n"
                    "c_total 0.5\n"
                    "# TYPE g gauge\n"
                    "g{k=\"x\"} -2.5\n"
                    "# TYPE h histogram\n"
                    "h_bucket{le=\"0.005\"} 0\n"
                    "h_bucket{le=\"0.5\"} 0\n"
                    "h_bucket{le=\"1\"} 0\n"
                    "h_bucket{le=\"10\"} 0\n"
                    "h_bucket{le=\"+Inf\"} 0\n"
                    "h_sum 0\n"
                    "h_count 0\n");
    sl_metric_release(c);
    sl_metric_release(g);
    sl_metric_release(h);
}

/* Enough series to grow the hash table several times; lookups must still
 * find the very same series, and values that only differ in where one
 * label ends and the next starts must not collide. */
static void test_many_series(void **state)
{
    enum { N = 2000 };
    static sl_series *made[N];
    char a[16], b[16];
    const char *v[2];
    sl_metric *m;
    int i;

    (void)state;
    m = sl_metric_register(SL_METRIC_COUNTER, "many_total", "", "a,b", NULL, 0, "i");
    assert_non_null(m);
    for (i = 0; i < N; i++) {
        snprintf(a, sizeof(a), "%d", i / 10);
        snprintf(b, sizeof(b), "%d", i % 10);
        made[i] = sl_series_of(m, a, b);
        assert_non_null(made[i]);
    }
    for (i = 0; i < N; i++) {
        snprintf(a, sizeof(a), "%d", i / 10);
        snprintf(b, sizeof(b), "%d", i % 10);
        v[0] = a;
        v[1] = b;
        assert_ptr_equal(sl_series_ofv(m, v), made[i]);
    }
    assert_ptr_not_equal(sl_series_of(m, "ab", ""), sl_series_of(m, "a", "b"));
    sl_metric_release(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_empty_registry, registry_empty),
        cmocka_unit_test_teardown(test_share_same_family, registry_empty),
        cmocka_unit_test_teardown(test_conflicts, registry_empty),
        cmocka_unit_test_teardown(test_release_frees, registry_empty),
        cmocka_unit_test_teardown(test_invalid_names, registry_empty),
        cmocka_unit_test_teardown(test_label_escaping, registry_empty),
        cmocka_unit_test_teardown(test_histogram, registry_empty),
        cmocka_unit_test_teardown(test_instance_name, registry_empty),
        cmocka_unit_test_teardown(test_instance_gone, registry_empty),
        cmocka_unit_test_teardown(test_retire, registry_empty),
        cmocka_unit_test_teardown(test_exposition, registry_empty),
        cmocka_unit_test_teardown(test_value_format, registry_empty),
        cmocka_unit_test_teardown(test_misuse, registry_empty),
        cmocka_unit_test_teardown(test_many_series, registry_empty),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
