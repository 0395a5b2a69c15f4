/*
 * test_option.c - unit tests of option validation (option.c).
 *
 * Sections are written as config text and parsed with conf.c, so the line
 * numbers in the expected messages are the lines of that text.
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

#include "conf/conf.h"
#include "conf/errors.h"
#include "conf/option.h"

/* A module's table: one option of every type, and a pass-through prefix. */
static const sl_option mod_opts[] = {
    { .name = "name", .type = SL_OPT_STRING, .def = "anon", .help = "who" },
    { .name = "eps",
      .type = SL_OPT_INT,
      .def = "10",
      .help = "events/s",
      .min = 0,
      .max = 1000000 },
    { .name = "ratio", .type = SL_OPT_DOUBLE, .def = "0.5", .help = "share", .min = 0, .max = 1 },
    { .name = "enabled", .type = SL_OPT_BOOL, .def = "true", .help = "on?" },
    { .name = "mode",
      .type = SL_OPT_ENUM,
      .def = "fast",
      .help = "how",
      .choices = "fast|safe|off" },
    { .name = "timeout",
      .type = SL_OPT_DURATION,
      .def = "10s",
      .help = "wait",
      .min = 0,
      .max = 3600 },
    { .name = "brokers", .type = SL_OPT_LIST, .def = "", .help = "where" },
    { .name = "rdkafka.*", .type = SL_OPT_STRING, .help = "passed to librdkafka" },
    { 0 },
};
#define N_MOD_VALUES 7 /* mod_opts without the prefix option */

/* Options common to every module section. */
static const sl_option common_opts[] = {
    { .name = "listen", .type = SL_OPT_LIST, .def = "", .help = "own listeners" },
    { 0 },
};

static const sl_option unbounded_opts[] = {
    { .name = "n", .type = SL_OPT_INT, .def = "0" },
    { .name = "x", .type = SL_OPT_DOUBLE, .def = "0" },
    { .name = "wait", .type = SL_OPT_DURATION, .def = "0" },
    { 0 },
};

static const sl_option required_opts[] = {
    { .name = "topic", .type = SL_OPT_STRING, .def = NULL },
    { .name = "group", .type = SL_OPT_STRING, .def = NULL },
    { .name = "acks", .type = SL_OPT_INT, .def = "1" },
    { 0 },
};

/* ---------------------------------------------------------------- helpers */

/* Validates the first section of `text` against `tables`. */
static int validate_tables(const char *text, const sl_option *const *tables, size_t ntables,
                           sl_optset *out, sl_errors *errs)
{
    sl_errors perrs = { 0 };
    sl_conf *conf = sl_conf_parse_string("m.conf", text, &perrs);
    int rc;

    if (perrs.n > 0)
        print_error("config text does not parse: %s\n", perrs.msgs[0]);
    assert_non_null(conf);
    assert_true(conf->n > 0);
    rc = sl_options_validate(tables, ntables, &conf->sections[0], "m.conf", out, errs);
    sl_conf_free(conf);
    sl_errors_free(&perrs);
    return rc;
}

static int validate(const char *text, sl_optset *out, sl_errors *errs)
{
    const sl_option *const tables[] = { mod_opts, common_opts };

    return validate_tables(text, tables, 2, out, errs);
}

static void validate_ok(const char *text, sl_optset *out)
{
    sl_errors errs = { 0 };
    int rc = validate(text, out, &errs);

    if (errs.n > 0)
        print_error("unexpected error: %s\n", errs.msgs[0]);
    assert_int_equal(rc, 0);
    assert_int_equal(errs.n, 0);
}

/* Expects validation of `text` against `tables` to fail with exactly the
 * messages in `want` (NULL-terminated), in order, and leave `out` empty. */
static void fails_tables(const char *text, const sl_option *const *tables, size_t ntables,
                         const char *const *want)
{
    sl_errors errs = { 0 };
    sl_optset out = { 0 };
    size_t i, n = 0;

    assert_int_equal(validate_tables(text, tables, ntables, &out, &errs), -1);
    assert_int_equal(out.n, 0);
    assert_null(out.v);
    while (want[n])
        n++;
    if (errs.n != n)
        for (i = 0; i < errs.n; i++)
            print_error("  got: %s\n", errs.msgs[i]);
    assert_int_equal(errs.n, n);
    for (i = 0; i < n; i++)
        assert_string_equal(errs.msgs[i], want[i]);
    sl_errors_free(&errs);
}

/* The usual tables and a single expected message. */
static void fails_with(const char *text, const char *want)
{
    const sl_option *const tables[] = { mod_opts, common_opts };
    const char *const list[] = { want, NULL };

    fails_tables(text, tables, 2, list);
}

static const sl_optval *get(const sl_optset *set, const char *name)
{
    const sl_optval *v = sl_optset_get(set, name);

    if (v == NULL)
        print_error("no option '%s' in the set\n", name);
    assert_non_null(v);
    return v;
}

/* ------------------------------------------------------------ happy paths */

static void test_defaults_only(void **state)
{
    const sl_option *const tables[] = { mod_opts };
    sl_errors errs = { 0 };
    sl_optset set = { 0 };
    const sl_optval *v;
    size_t i;

    (void)state;
    /* No section at all: every option takes its default. */
    assert_int_equal(sl_options_validate(tables, 1, NULL, "m.conf", &set, &errs), 0);
    assert_int_equal(errs.n, 0);
    assert_int_equal(set.n, N_MOD_VALUES);
    /* The set follows the table order. */
    for (i = 0; i < set.n; i++) {
        assert_ptr_equal(set.v[i].decl, &mod_opts[i]);
        assert_string_equal(set.v[i].key, mod_opts[i].name);
        assert_string_equal(set.v[i].raw, mod_opts[i].def);
        assert_int_equal(set.v[i].line, 0);
    }
    assert_string_equal(get(&set, "name")->raw, "anon");
    v = get(&set, "eps");
    assert_int_equal(v->i, 10);
    assert_true(v->d == 10.0);
    assert_true(get(&set, "ratio")->d == 0.5);
    assert_int_equal(get(&set, "enabled")->i, 1);
    assert_int_equal(get(&set, "mode")->i, 0);
    assert_true(get(&set, "timeout")->d == 10.0);
    assert_int_equal(get(&set, "brokers")->nlist, 0);
    /* A prefix option has no value of its own. */
    assert_null(sl_optset_get(&set, "rdkafka.*"));
    assert_null(sl_optset_get(&set, "nope"));
    sl_optset_free(&set);
    assert_int_equal(set.n, 0);
    assert_null(set.v);
}

static void test_configured_values(void **state)
{
    sl_optset set = { 0 };
    const sl_optval *v;

    (void)state;
    validate_ok("# comment\n"
                "[module gen \"second\"]\n"
                "name = \"  spaced  \"\n"
                "eps = 1000000\n"
                "ratio = 1e-3\n"
                "enabled = Off\n"
                "mode = off\n"
                "timeout = 250ms\n"
                "brokers = k1:9092 , k2:9092,,k3:9092 , \n"
                "listen = :8081\n",
                &set);
    assert_int_equal(set.n, N_MOD_VALUES + 1);

    v = get(&set, "name");
    assert_string_equal(v->raw, "  spaced  ");
    assert_int_equal(v->line, 3);
    v = get(&set, "eps");
    assert_int_equal(v->i, 1000000);
    assert_true(v->d == 1e6);
    assert_string_equal(v->raw, "1000000");
    assert_int_equal(v->line, 4);
    assert_true(get(&set, "ratio")->d == 1e-3);
    assert_int_equal(get(&set, "enabled")->i, 0);
    assert_int_equal(get(&set, "mode")->i, 2);
    v = get(&set, "timeout");
    assert_true(v->d == 0.25);
    assert_string_equal(v->raw, "250ms");
    v = get(&set, "brokers");
    assert_int_equal(v->nlist, 3);
    assert_string_equal(v->list[0], "k1:9092");
    assert_string_equal(v->list[1], "k2:9092");
    assert_string_equal(v->list[2], "k3:9092");
    v = get(&set, "listen");
    assert_ptr_equal(v->decl, &common_opts[0]);
    assert_int_equal(v->nlist, 1);
    assert_string_equal(v->list[0], ":8081");
    sl_optset_free(&set);
}

static void test_int(void **state)
{
    const sl_option *const tables[] = { unbounded_opts };
    sl_optset set = { 0 };
    sl_errors errs = { 0 };

    (void)state;
    validate_ok("[m]\neps = 0\n", &set);
    assert_int_equal(get(&set, "eps")->i, 0);
    sl_optset_free(&set);
    validate_ok("[m]\neps = +42\n", &set);
    assert_int_equal(get(&set, "eps")->i, 42);
    sl_optset_free(&set);

    /* Unbounded (min == max): the whole 64-bit range. */
    assert_int_equal(validate_tables("[m]\nn = -9223372036854775808\n", tables, 1, &set, &errs), 0);
    assert_true(get(&set, "n")->i == INT64_MIN);
    sl_optset_free(&set);
    assert_int_equal(validate_tables("[m]\nn = 9223372036854775807\n", tables, 1, &set, &errs), 0);
    assert_true(get(&set, "n")->i == INT64_MAX);
    sl_optset_free(&set);
    assert_int_equal(errs.n, 0);

    fails_with("[m]\neps = -5\n",
               "m.conf:2: option 'eps' must be an integer between 0 and 1000000, got '-5'");
    fails_with("[m]\neps = 1000001\n",
               "m.conf:2: option 'eps' must be an integer between 0 and 1000000, got '1000001'");
    fails_with("[m]\neps = 12abc\n",
               "m.conf:2: option 'eps' must be an integer between 0 and 1000000, got '12abc'");
    fails_with("[m]\neps = 1.5\n",
               "m.conf:2: option 'eps' must be an integer between 0 and 1000000, got '1.5'");
    fails_with("[m]\neps =\n",
               "m.conf:2: option 'eps' must be an integer between 0 and 1000000, got ''");
    fails_with("[m]\neps = \" 5\"\n",
               "m.conf:2: option 'eps' must be an integer between 0 and 1000000, got ' 5'");
    fails_with("[m]\neps = 0x10\n",
               "m.conf:2: option 'eps' must be an integer between 0 and 1000000, got '0x10'");
    fails_tables("[m]\nn = 9223372036854775808\n", tables, 1,
                 (const char *const[]){
                         "m.conf:2: option 'n' must be a 64-bit integer, got '9223372036854775808'",
                         NULL });
    fails_tables("[m]\nn = -\n", tables, 1,
                 (const char *const[]){ "m.conf:2: option 'n' must be a 64-bit integer, got '-'",
                                        NULL });
}

static void test_double(void **state)
{
    const sl_option *const tables[] = { unbounded_opts };
    sl_optset set = { 0 };
    sl_errors errs = { 0 };

    (void)state;
    validate_ok("[m]\nratio = 1\n", &set);
    assert_true(get(&set, "ratio")->d == 1.0);
    sl_optset_free(&set);
    assert_int_equal(validate_tables("[m]\nx = -2.5e3\n", tables, 1, &set, &errs), 0);
    assert_true(get(&set, "x")->d == -2500.0);
    sl_optset_free(&set);

    fails_with("[m]\nratio = 1.01\n",
               "m.conf:2: option 'ratio' must be a number between 0 and 1, got '1.01'");
    fails_with("[m]\nratio = half\n",
               "m.conf:2: option 'ratio' must be a number between 0 and 1, got 'half'");
    fails_with("[m]\nratio = 0.5x\n",
               "m.conf:2: option 'ratio' must be a number between 0 and 1, got '0.5x'");
    fails_tables("[m]\nx = nan\n", tables, 1,
                 (const char *const[]){ "m.conf:2: option 'x' must be a finite number, got 'nan'",
                                        NULL });
    fails_tables("[m]\nx = inf\n", tables, 1,
                 (const char *const[]){ "m.conf:2: option 'x' must be a finite number, got 'inf'",
                                        NULL });
    fails_tables("[m]\nx = 1e999\n", tables, 1,
                 (const char *const[]){ "m.conf:2: option 'x' must be a finite number, got '1e999'",
                                        NULL });
    fails_tables("[m]\nx = 0x1p3\n", tables, 1,
                 (const char *const[]){ "m.conf:2: option 'x' must be a finite number, got '0x1p3'",
                                        NULL });
    fails_tables("[m]\nx =\n", tables, 1,
                 (const char *const[]){ "m.conf:2: option 'x' must be a finite number, got ''",
                                        NULL });
}

static void test_bool(void **state)
{
    static const char *const yes[] = { "true", "TRUE", "yes", "Yes", "on", "ON", "1" };
    static const char *const no[] = { "false", "False", "no", "NO", "off", "Off", "0" };
    char text[64];
    sl_optset set = { 0 };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        snprintf(text, sizeof text, "[m]\nenabled = %s\n", yes[i]);
        validate_ok(text, &set);
        assert_int_equal(get(&set, "enabled")->i, 1);
        sl_optset_free(&set);
        snprintf(text, sizeof text, "[m]\nenabled = %s\n", no[i]);
        validate_ok(text, &set);
        assert_int_equal(get(&set, "enabled")->i, 0);
        sl_optset_free(&set);
    }
    fails_with("[m]\nenabled = maybe\n",
               "m.conf:2: option 'enabled' must be a boolean (true/false, yes/no, on/off, 1/0), "
               "got 'maybe'");
    fails_with("[m]\nenabled = 2\n",
               "m.conf:2: option 'enabled' must be a boolean (true/false, yes/no, on/off, 1/0), "
               "got '2'");
}

static void test_enum(void **state)
{
    sl_optset set = { 0 };

    (void)state;
    validate_ok("[m]\nmode = safe\n", &set);
    assert_int_equal(get(&set, "mode")->i, 1);
    assert_string_equal(get(&set, "mode")->raw, "safe");
    sl_optset_free(&set);

    fails_with("[m]\nmode = SAFE\n",
               "m.conf:2: option 'mode' must be one of fast|safe|off, got 'SAFE'");
    fails_with("[m]\nmode = fas\n",
               "m.conf:2: option 'mode' must be one of fast|safe|off, got 'fas'");
    fails_with("[m]\nmode = fast|safe\n",
               "m.conf:2: option 'mode' must be one of fast|safe|off, got 'fast|safe'");
    fails_with("[m]\nmode =\n", "m.conf:2: option 'mode' must be one of fast|safe|off, got ''");
}

static void test_duration_option(void **state)
{
    const sl_option *const tables[] = { unbounded_opts };
    sl_optset set = { 0 };
    sl_errors errs = { 0 };

    (void)state;
    validate_ok("[m]\ntimeout = 5m\n", &set);
    assert_true(get(&set, "timeout")->d == 300.0);
    sl_optset_free(&set);
    validate_ok("[m]\ntimeout = 1h\n", &set);
    assert_true(get(&set, "timeout")->d == 3600.0);
    sl_optset_free(&set);
    assert_int_equal(validate_tables("[m]\nwait = 48h\n", tables, 1, &set, &errs), 0);
    assert_true(get(&set, "wait")->d == 172800.0);
    sl_optset_free(&set);

    fails_with("[m]\ntimeout = 2h\n",
               "m.conf:2: option 'timeout' must be a duration between 0s and 3600s (such as "
               "250ms, 10s, 5m, 1h), got '2h'");
    fails_with("[m]\ntimeout = -1s\n",
               "m.conf:2: option 'timeout' must be a duration between 0s and 3600s (such as "
               "250ms, 10s, 5m, 1h), got '-1s'");
    fails_tables("[m]\nwait = 10 s\n", tables, 1,
                 (const char *const[]){
                         "m.conf:2: option 'wait' must be a duration such as 250ms, 10s, 5m, 1h or "
                         "plain seconds, got '10 s'",
                         NULL });
}

static void test_parse_duration(void **state)
{
    static const struct {
        const char *text;
        double seconds;
    } good[] = {
        { "0", 0 },     { "2.5", 2.5 },   { "10s", 10 },  { "250ms", 0.25 }, { "5m", 300 },
        { "1h", 3600 }, { "1.5h", 5400 }, { ".5s", 0.5 }, { "7.", 7 },       { "0ms", 0 },
    };
    static const char *const bad[] = {
        "",    "-1",   "+1",  "s",   "ms",  ".",     "10x", "10 s",  " 10s", "10s ",
        "1e3", "0x10", "inf", "nan", "10S", "10sec", "1d",  "1.2.3", "1hm",
    };
    double d;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        d = -1;
        if (sl_parse_duration(good[i].text, &d) != 0)
            print_error("'%s' should parse\n", good[i].text);
        assert_int_equal(sl_parse_duration(good[i].text, &d), 0);
        assert_true(fabs(d - good[i].seconds) < 1e-12);
    }
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        d = 42;
        if (sl_parse_duration(bad[i], &d) == 0)
            print_error("'%s' should not parse\n", bad[i]);
        assert_int_equal(sl_parse_duration(bad[i], &d), -1);
        assert_true(d == 42); /* untouched on failure */
    }
    assert_int_equal(sl_parse_duration(NULL, &d), -1);
    /* Finite digits can still overflow once scaled. */
    {
        char big[400];

        memset(big, '9', 320);
        strcpy(big + 320, "h");
        assert_int_equal(sl_parse_duration(big, &d), -1);
    }
}

static void test_list(void **state)
{
    sl_optset set = { 0 };
    const sl_optval *v;

    (void)state;
    validate_ok("[m]\nbrokers = , a ,b,,\t c d ,\n", &set);
    v = get(&set, "brokers");
    assert_int_equal(v->nlist, 3);
    assert_string_equal(v->list[0], "a");
    assert_string_equal(v->list[1], "b");
    assert_string_equal(v->list[2], "c d");
    assert_string_equal(v->raw, ", a ,b,,\t c d ,");
    sl_optset_free(&set);

    validate_ok("[m]\nbrokers = ,, ,\n", &set);
    assert_int_equal(get(&set, "brokers")->nlist, 0);
    sl_optset_free(&set);

    validate_ok("[m]\nbrokers = single\n", &set);
    v = get(&set, "brokers");
    assert_int_equal(v->nlist, 1);
    assert_string_equal(v->list[0], "single");
    sl_optset_free(&set);
}

static void test_prefix(void **state)
{
    sl_optset set = { 0 };
    const sl_optval *v;
    size_t i, n = 0;

    (void)state;
    validate_ok("[module kafka]\n"
                "rdkafka.socket.timeout.ms = 500\n"
                "eps = 5\n"
                "rdkafka.acks = all\n",
                &set);
    assert_int_equal(set.n, N_MOD_VALUES + 1 + 2);
    for (i = 0; i < set.n; i++) {
        if (set.v[i].decl != &mod_opts[7])
            continue;
        /* Keys matched by the prefix come in file order. */
        assert_string_equal(set.v[i].key, n == 0 ? "rdkafka.socket.timeout.ms" : "rdkafka.acks");
        n++;
    }
    assert_int_equal(n, 2);
    v = get(&set, "rdkafka.acks");
    assert_ptr_equal(v->decl, &mod_opts[7]);
    assert_string_equal(v->raw, "all");
    assert_int_equal(v->line, 4);
    v = get(&set, "rdkafka.socket.timeout.ms");
    assert_string_equal(v->raw, "500");
    assert_int_equal(v->line, 2);
    sl_optset_free(&set);

    /* The prefix alone is not a key. */
    fails_with("[m]\nrdkafka. = 1\n", "m.conf:2: unknown option 'rdkafka.' in [m]");
}

/* ----------------------------------------------------------------- errors */

static void test_unknown(void **state)
{
    (void)state;
    fails_with("[module gen \"second\"]\nepss = 1\n",
               "m.conf:2: unknown option 'epss' in [module gen \"second\"], did you mean 'eps'?");
    fails_with("[module gen]\n\ntimout = 1s\n",
               "m.conf:3: unknown option 'timout' in [module gen], did you mean 'timeout'?");
    fails_with("[m]\nMode = safe\n",
               "m.conf:2: unknown option 'Mode' in [m], did you mean 'mode'?");
    fails_with("[m]\nlistn = :80\n",
               "m.conf:2: unknown option 'listn' in [m], did you mean 'listen'?");
    fails_with("[m]\nrdkafak.acks = all\n",
               "m.conf:2: unknown option 'rdkafak.acks' in [m], did you mean 'rdkafka.acks'?");
    fails_with("[m]\nbananas = 1\n", "m.conf:2: unknown option 'bananas' in [m]");
    /* Two edits away still gets a suggestion, three is too far. */
    fails_with("[m]\nnmaee = 1\n", "m.conf:2: unknown option 'nmaee' in [m], did you mean 'name'?");
    fails_with("[m]\nnxyz = 1\n", "m.conf:2: unknown option 'nxyz' in [m]");
    /* A one-letter name is not suggested for any other one-letter key. */
    fails_tables("[m]\ny = 1\n", (const sl_option *const[]){ unbounded_opts }, 1,
                 (const char *const[]){ "m.conf:2: unknown option 'y' in [m]", NULL });
}

static void test_missing_required(void **state)
{
    const sl_option *const tables[] = { required_opts };
    sl_errors errs = { 0 };
    sl_optset set = { 0 };

    (void)state;
    fails_tables("# comment\n\n[module consumer \"a\"]\nacks = 2\n", tables, 1,
                 (const char *const[]){
                         "m.conf:3: missing required option 'topic' in [module consumer \"a\"]",
                         "m.conf:3: missing required option 'group' in [module consumer \"a\"]",
                         NULL });

    /* No section: nothing to point at but the file. */
    assert_int_equal(sl_options_validate(tables, 1, NULL, "m.conf", &set, &errs), -1);
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.msgs[0], "m.conf: missing required option 'topic'");
    assert_string_equal(errs.msgs[1], "m.conf: missing required option 'group'");
    assert_int_equal(set.n, 0);
    sl_errors_free(&errs);

    /* An empty value is a value. */
    assert_int_equal(validate_tables("[m]\ntopic = t\ngroup =\n", tables, 1, &set, &errs), 0);
    assert_string_equal(get(&set, "group")->raw, "");
    assert_int_equal(get(&set, "acks")->i, 1);
    sl_optset_free(&set);
}

static void test_bad_defaults(void **state)
{
    static const sl_option bad[] = {
        { .name = "eps", .type = SL_OPT_INT, .def = "abc", .min = 0, .max = 10 },
        { .name = "mode", .type = SL_OPT_ENUM, .def = "x", .choices = "a|b" },
        { .name = "tags", .type = SL_OPT_ENUM, .def = "a" },
        { .name = "wait", .type = SL_OPT_DURATION, .def = "soon" },
        { .name = "eps", .type = SL_OPT_INT, .def = "1" },
        { 0 },
    };
    const sl_option *const tables[] = { bad };

    (void)state;
    /* A bad default is a bug in the module: reported without a place, and
     * even when the file sets the option. */
    fails_tables(
            "[m]\nwait = 1s\n", tables, 1,
            (const char *const[]){
                    "option 'tags' is an enum without choices", "option 'eps' is declared twice",
                    "option 'eps' has an invalid default: must be an integer between 0 and 10, "
                    "got 'abc'",
                    "option 'mode' has an invalid default: must be one of a|b, got 'x'",
                    "option 'tags' has an invalid default: has no choices declared, got 'a'",
                    "option 'wait' has an invalid default: must be a duration such as 250ms, "
                    "10s, 5m, 1h or plain seconds, got 'soon'",
                    NULL });
}

static void test_declared_twice_across_tables(void **state)
{
    static const sl_option mine[] = {
        { .name = "listen", .type = SL_OPT_STRING, .def = "" },
        { 0 },
    };
    const sl_option *const tables[] = { mine, common_opts };

    (void)state;
    fails_tables("[m]\n", tables, 2,
                 (const char *const[]){ "option 'listen' is declared twice", NULL });
}

/* Everything wrong in a section is reported, each at its own line. */
static void test_multiple_errors(void **state)
{
    const sl_option *const tables[] = { mod_opts, common_opts, required_opts };

    (void)state;
    fails_tables(
            "[module gen \"x\"]\n" /* 1 */
            "eps = -5\n"           /* 2 */
            "ratio = 2\n"          /* 3 */
            "colour = red\n"       /* 4 */
            "enabled = sure\n"     /* 5 */
            "topic = t\n"          /* 6 */
            "mode = slow\n"        /* 7 */
            "timeout = 1y\n",      /* 8 */
            tables, 3,
            (const char *const[]){
                    "m.conf:4: unknown option 'colour' in [module gen \"x\"]",
                    "m.conf:2: option 'eps' must be an integer between 0 and 1000000, got '-5'",
                    "m.conf:3: option 'ratio' must be a number between 0 and 1, got '2'",
                    "m.conf:5: option 'enabled' must be a boolean (true/false, yes/no, on/off, "
                    "1/0), got 'sure'",
                    "m.conf:7: option 'mode' must be one of fast|safe|off, got 'slow'",
                    "m.conf:8: option 'timeout' must be a duration between 0s and 3600s (such "
                    "as 250ms, 10s, 5m, 1h), got '1y'",
                    "m.conf:1: missing required option 'group' in [module gen \"x\"]", NULL });
}

/* A section built by other code than the parser may repeat a key. */
static void test_duplicate_entry(void **state)
{
    const sl_option *const tables[] = { mod_opts };
    sl_conf_entry entries[] = { { "eps", "1", 2 }, { "eps", "2", 3 } };
    sl_conf_section sec = { "m", NULL, "", 1, entries, 2 };
    sl_errors errs = { 0 };
    sl_optset set = { 0 };

    (void)state;
    assert_int_equal(sl_options_validate(tables, 1, &sec, "m.conf", &set, &errs), -1);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0], "m.conf:3: option 'eps' is set twice (first at line 2)");
    sl_errors_free(&errs);
}

/* ----------------------------------------------------------------- sets */

static void test_optset_equal(void **state)
{
    sl_optset a = { 0 }, b = { 0 };

    (void)state;
    validate_ok("[m]\neps = 5\nrdkafka.acks = all\nmode = safe\n", &a);
    validate_ok("[m]\nmode = safe\nrdkafka.acks = all\neps = 5\n", &b);
    assert_true(sl_optset_equal(&a, &b));
    assert_true(sl_optset_equal(&b, &a));
    sl_optset_free(&b);

    /* Spelling out a default gives the same set. */
    validate_ok("[m]\nmode = safe\nrdkafka.acks = all\neps = 5\nratio = 0.5\n", &b);
    assert_true(sl_optset_equal(&a, &b));
    sl_optset_free(&b);

    /* Raw values are compared: "5" and "+5" differ. */
    validate_ok("[m]\nmode = safe\nrdkafka.acks = all\neps = +5\n", &b);
    assert_false(sl_optset_equal(&a, &b));
    sl_optset_free(&b);

    validate_ok("[m]\neps = 5\nrdkafka.acks = 1\nmode = safe\n", &b);
    assert_false(sl_optset_equal(&a, &b));
    sl_optset_free(&b);

    /* An extra or a missing prefixed key. */
    validate_ok("[m]\neps = 5\nrdkafka.acks = all\nrdkafka.x = y\nmode = safe\n", &b);
    assert_false(sl_optset_equal(&a, &b));
    assert_false(sl_optset_equal(&b, &a));
    sl_optset_free(&b);
    validate_ok("[m]\neps = 5\nrdkafka.linger = all\nmode = safe\n", &b);
    assert_false(sl_optset_equal(&a, &b));
    sl_optset_free(&b);

    assert_true(sl_optset_equal(&b, &b)); /* both empty */
    sl_optset_free(&a);
}

static void test_optset_copy(void **state)
{
    sl_optset src = { 0 }, dst = { 0 }, empty = { 0 };
    const sl_optval *v;

    (void)state;
    validate_ok("[m]\nbrokers = a, b\nrdkafka.acks = all\neps = 7\n", &src);
    assert_int_equal(sl_optset_copy(&dst, &src), 0);
    assert_true(sl_optset_equal(&src, &dst));
    sl_optset_free(&src); /* the copy owns its own memory */

    v = get(&dst, "brokers");
    assert_int_equal(v->nlist, 2);
    assert_string_equal(v->list[0], "a");
    assert_string_equal(v->list[1], "b");
    v = get(&dst, "eps");
    assert_int_equal(v->i, 7);
    assert_int_equal(v->line, 4);
    assert_ptr_equal(v->decl, &mod_opts[1]);
    v = get(&dst, "rdkafka.acks");
    assert_ptr_equal(v->decl, &mod_opts[7]);
    assert_string_equal(v->raw, "all");
    sl_optset_free(&dst);

    assert_int_equal(sl_optset_copy(&dst, &empty), 0);
    assert_int_equal(dst.n, 0);
    sl_optset_free(&dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_only),
        cmocka_unit_test(test_configured_values),
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_double),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_enum),
        cmocka_unit_test(test_duration_option),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_unknown),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_bad_defaults),
        cmocka_unit_test(test_declared_twice_across_tables),
        cmocka_unit_test(test_multiple_errors),
        cmocka_unit_test(test_duplicate_entry),
        cmocka_unit_test(test_optset_equal),
        cmocka_unit_test(test_optset_copy),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
