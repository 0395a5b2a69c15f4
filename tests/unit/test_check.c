/*
 * test_check.c - unit tests of a module's check() as the core runs it
 * (ctx.c: sl_instance_check, sl_fail_opt, sl_ctx_refuse): where errors
 * are placed and how they read, and that a check context acquires nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "daemon/core.h"
#include "conf/conf.h"
#include "conf/option.h"

/* The loop lives in main.c, which unit tests do not link; a check never
 * reaches it. */
struct event_base *sl_base;

/* What the test module's check() does, set by each test. */
static enum {
    DO_NOTHING,
    FAIL_KEY,
    FAIL_DEFAULT,
    FAIL_SECTION,
    FAIL_TWO,
    FAIL_SILENT,
    REPORT_BUT_ZERO,
    GRAB
} mode;
static int grabbed;

static void nothing(void *arg)
{
    (void)arg;
}

static int t_check(sl_ctx *ctx)
{
    switch (mode) {
    case DO_NOTHING:
        return 0;
    case FAIL_KEY:
        return sl_fail_opt(ctx, "ratio", "\"%s\" is not N/M", sl_opt_str(ctx, "ratio"));
    case FAIL_DEFAULT:
        return sl_fail_opt(ctx, "name", "default refused");
    case FAIL_SECTION:
        return sl_fail(ctx, "whole section refused");
    case FAIL_TWO:
        sl_fail_opt(ctx, "ratio", "first");
        sl_fail_opt(ctx, "prefix.b", "second");
        return -1;
    case FAIL_SILENT:
        return -1;
    case REPORT_BUT_ZERO:
        sl_fail_opt(ctx, "ratio", "reported");
        return 0;
    case GRAB:
        grabbed = sl_timer_new(ctx, 1, 0, nothing, NULL) != NULL ||
                  sl_track(ctx, "thing", ctx, NULL, NULL) != NULL;
        return 0;
    }
    return 0;
}

static int t_start(sl_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static const sl_option t_options[] = { { "ratio", SL_OPT_STRING, "1/1", "a ratio", 0, 0, NULL },
                                       { "name", SL_OPT_STRING, "x", "a name", 0, 0, NULL },
                                       { "prefix.*", SL_OPT_STRING, NULL, "prefixed", 0, 0, NULL },
                                       { NULL, 0, NULL, NULL, 0, 0, NULL } };

static const sl_module t_module = {
    .abi_version = SL_ABI_VERSION,
    .name = "t",
    .description = "test",
    .options = t_options,
    .start = t_start,
    .check = t_check,
};

static const char CONF[] = "[module t]\n"             /* 1 */
                           "ratio = 3/0\n"            /* 2 */
                           "\n"                       /* 3 */
                           "[module t \"i\"]\n"       /* 4 */
                           "prefix.a = 1\n"           /* 5 */
                           "prefix.b = 2\n"           /* 6 */
                           "ratio = 1/0 # comment\n"; /* 7 */

/* Runs the check of section `which` of CONF; returns its result, the
 * errors in `errs`. */
static int run(const sl_module *mod, size_t which, sl_errors *errs)
{
    const sl_option *tables[1] = { t_options };
    sl_errors parse = { 0 };
    sl_conf *conf = sl_conf_parse_string("t.conf", CONF, &parse);
    sl_dso dso = { 0 };
    sl_optset opts = { 0 };
    char *label;
    int rc;

    assert_non_null(conf);
    assert_int_equal(parse.n, 0);
    assert_int_equal(sl_options_validate(tables, 1, &conf->sections[which], conf->file, &opts,
                                         &parse),
                     0);
    label = sl_section_label(&conf->sections[which]);
    dso.mod = mod;
    dso.refs = 1;
    {
        sl_check_site site = { errs, conf->file, conf->sections[which].line, label };
        rc = sl_instance_check(&dso,
                               conf->sections[which].instance ? conf->sections[which].instance : "",
                               &opts, &site);
    }
    assert_int_equal(dso.refs, 1); /* a check takes no reference */
    assert_null(sl_instances);     /* and makes no instance */
    free(label);
    sl_optset_free(&opts);
    sl_conf_free(conf);
    return rc;
}

static void passes(void **state)
{
    sl_module nocheck = t_module;
    sl_errors errs = { 0 };

    (void)state;
    nocheck.check = NULL;
    mode = DO_NOTHING;
    assert_int_equal(run(&t_module, 0, &errs), 0);
    assert_int_equal(errs.n, 0);
    mode = FAIL_KEY;
    assert_int_equal(run(&nocheck, 0, &errs), 0);
    assert_int_equal(errs.n, 0);
}

static void at_the_key(void **state)
{
    sl_errors errs = { 0 };

    (void)state;
    mode = FAIL_KEY;
    assert_int_equal(run(&t_module, 0, &errs), -1);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0], "t.conf:2: [module t] ratio: \"3/0\" is not N/M");
    sl_errors_free(&errs);
    assert_int_equal(run(&t_module, 1, &errs), -1);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0], "t.conf:7: [module t \"i\"] ratio: \"1/0\" is not N/M");
    sl_errors_free(&errs);
}

static void at_the_section(void **state)
{
    sl_errors errs = { 0 };

    (void)state;
    mode = FAIL_DEFAULT; /* `name` is not in the file */
    assert_int_equal(run(&t_module, 1, &errs), -1);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0], "t.conf:4: [module t \"i\"] name: default refused");
    sl_errors_free(&errs);
    mode = FAIL_SECTION;
    assert_int_equal(run(&t_module, 1, &errs), -1);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0], "t.conf:4: [module t \"i\"] whole section refused");
    sl_errors_free(&errs);
}

static void every_error_and_no_silence(void **state)
{
    sl_errors errs = { 0 };

    (void)state;
    mode = FAIL_TWO;
    assert_int_equal(run(&t_module, 1, &errs), -1);
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.msgs[0], "t.conf:7: [module t \"i\"] ratio: first");
    assert_string_equal(errs.msgs[1], "t.conf:6: [module t \"i\"] prefix.b: second");
    sl_errors_free(&errs);
    mode = FAIL_SILENT;
    assert_int_equal(run(&t_module, 0, &errs), -1);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0], "t.conf:1: [module t] not valid (check() gave no reason)");
    sl_errors_free(&errs);
    mode = REPORT_BUT_ZERO; /* what was reported counts, whatever it returns */
    assert_int_equal(run(&t_module, 0, &errs), -1);
    assert_int_equal(errs.n, 1);
    sl_errors_free(&errs);
}

static void acquires_nothing(void **state)
{
    sl_errors errs = { 0 };

    (void)state;
    mode = GRAB;
    grabbed = 0;
    assert_int_equal(run(&t_module, 0, &errs), -1);
    assert_int_equal(grabbed, 0);
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.msgs[0], "t.conf:1: [module t] check() tried to acquire a timer, "
                                      "which it may not (a bug in module t)");
    assert_non_null(strstr(errs.msgs[1], "tried to acquire thing"));
    sl_errors_free(&errs);
}

/* Outside check(), sl_fail_opt() is sl_fail() naming the key. */
static void outside_check(void **state)
{
    sl_dso dso = { 0 };
    sl_optset opts = { 0 };
    sl_ctx *ctx;

    (void)state;
    dso.mod = &t_module;
    dso.refs = 2; /* so that no put reaches 0 and dlclose()s */
    ctx = sl_instance_new(&dso, "", &opts, NULL, 0);
    assert_non_null(ctx);
    assert_int_equal(sl_fail_opt(ctx, "ratio", "bad %d", 7), -1);
    assert_string_equal(ctx->fail_reason, "ratio: bad 7");
    sl_instance_free(ctx);
    assert_int_equal(dso.refs, 2); /* the instance's reference given back */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(passes),           cmocka_unit_test(at_the_key),
        cmocka_unit_test(at_the_section),   cmocka_unit_test(every_error_and_no_silence),
        cmocka_unit_test(acquires_nothing), cmocka_unit_test(outside_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
