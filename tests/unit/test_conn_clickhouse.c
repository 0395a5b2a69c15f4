/*
 * test_conn_clickhouse.c - ClickHouse table names, and the handle's retries
 * without a server (fake_daemon.h): a request to a port that refuses connections is
 * tried 1 + retries times, then answered once, from the loop, with the
 * transport error and no HTTP status; the handle is not ready; and it may
 * be freed from inside that callback.  And what an answer says beyond its
 * status (clickhouse_answer.c): the exception ClickHouse appends once it
 * has begun to stream rows, told apart from rows that quote one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <sluice/clickhouse.h>
#include "connectors/clickhouse/clickhouse_int.h"
#include "fake_daemon.h"

static sl_ctx *ctx;

static int setup(void **state)
{
    (void)state;
    ctx = fake_daemon_start("[clickhouse]\nurl = http://127.0.0.1:%d\nretries = 2\n",
                            fake_refused_port());
    return ctx != NULL ? 0 : -1;
}

static int answered;

typedef struct {
    int called;
    int free_handle;
    unsigned attempts;
    long status;
    char err[256];
} result_seen;

static void on_result(sl_ch *ch, const sl_ch_result *res, void *arg)
{
    result_seen *seen = arg;

    answered++;
    seen->called++;
    seen->attempts = res->attempts;
    seen->status = res->status;
    snprintf(seen->err, sizeof(seen->err), "%s", res->error != NULL ? res->error : "");
    if (seen->free_handle)
        sl_ch_free(ch);
}

static void table_names(void **state)
{
    (void)state;
    assert_true(sl_ch_valid_table("events"));
    assert_true(sl_ch_valid_table("_tmp1"));
    assert_true(sl_ch_valid_table("analytics.page_views"));
    assert_false(sl_ch_valid_table(NULL));
    assert_false(sl_ch_valid_table(""));
    assert_false(sl_ch_valid_table("1events"));
    assert_false(sl_ch_valid_table("a.b.c"));
    assert_false(sl_ch_valid_table("db."));
    assert_false(sl_ch_valid_table(".t"));
    assert_false(sl_ch_valid_table("t; DROP TABLE x"));
    assert_false(sl_ch_valid_table("t`"));
    assert_false(sl_ch_valid_table("t FORMAT TSV"));
    assert_false(sl_ch_valid_table("caf\xc3\xa9"));
}

static void retries_then_one_answer(void **state)
{
    result_seen seen = { 0 };
    sl_ch *ch = sl_ch_new(ctx);

    (void)state;
    assert_non_null(ch);
    assert_int_equal(sl_ch_exec(ch, "SELECT 1", on_result, &seen), 0);
    assert_int_equal(seen.called, 0);
    assert_int_equal(fake_run_until(fake_flag, &seen.called, 20), 0);
    assert_int_equal(seen.called, 1);
    assert_int_equal(seen.attempts, 3);
    assert_int_equal(seen.status, 0);
    assert_string_not_equal(seen.err, "");
    assert_false(sl_ch_ready(ch));
    sl_ch_free(ch);
}

static void free_inside_the_callback(void **state)
{
    result_seen one = { .free_handle = 1 }, two = { .free_handle = 1 };
    sl_ch *ch = sl_ch_new(ctx);

    (void)state;
    assert_non_null(ch);
    answered = 0;
    assert_int_equal(sl_ch_exec(ch, "SELECT 1", on_result, &one), 0);
    assert_int_equal(sl_ch_exec(ch, "SELECT 2", on_result, &two), 0);
    assert_int_equal(fake_run_until(fake_flag, &answered, 20), 0);
    /* The first answer freed the handle: the other request, still in
     * flight, went with it uncalled, and (under ASan) nothing of the
     * handle was touched after. */
    assert_int_equal(answered, 1);
    assert_int_equal(one.called + two.called, 1);
}

static const char *late(const char *body)
{
    return ch_late_exception(body, strlen(body));
}

static void late_exceptions(void **state)
{
    static const char old[] = "\t\t{\n\t\t\t\"n\": 262143\n\t\t}Code: 395, e.displayText() = "
                              "DB::Exception: Value passed to 'throwIf' function is non zero, "
                              "e.what() = DB::Exception\n";
    static const char later[] = "\t\t},\nCode: 395. DB::Exception: Value passed to 'throwIf' "
                                "function is non-zero. (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO) "
                                "(version 23.8.1.1)\n";
    const char *at;
    char line[256];
    char big[6000];

    (void)state;
    at = late(old);
    assert_non_null(at);
    assert_int_equal(ch_exception_code(at, strlen(at)), 395);
    ch_first_line(at, strlen(at), line, sizeof(line));
    assert_string_equal(line, "Code: 395, e.displayText() = DB::Exception: Value passed to "
                              "'throwIf' function is non zero, e.what() = DB::Exception");
    at = late(later);
    assert_non_null(at);
    assert_int_equal(ch_exception_code(at, strlen(at)), 395);
    /* Whole documents whose rows quote an exception, and answers that
     * merely stop, are not exceptions. */
    assert_null(late("{\"data\":[{\"e\":\"Code: 60, e.displayText() = DB::Exception: "
                     "no table\"}],\"rows\":1}\n"));
    assert_null(late("{\"data\":[\n{\"e\":\"x\"},\n\"Code: 60, e.displayText() = "
                     "DB::Exception: x\""));
    assert_null(late("\t\t},\nCode: x, e.displayText() = DB::Exception: x\n"));
    assert_null(late("\t\t},\nCode: 60 DB::Exception\n"));
    assert_null(late(""));
    /* Only the tail is read: a last line longer than any message is not
     * searched from somewhere in its middle. */
    memset(big, 'x', 5000);
    snprintf(big + 5000, sizeof(big) - 5000, "}Code: 395, e.displayText() = DB::Exception: x");
    assert_null(late(big));
}

static void exception_codes(void **state)
{
    static const char err[] = "Code: 62, e.displayText() = DB::Exception: Syntax error\n";
    static const char proxy[] = "<html><head><title>502 Bad Gateway</title></head><body>"
                                "<p>upstream said Code: 62, e.displayText()</p></body></html>";

    (void)state;
    assert_int_equal(ch_exception_code(err, strlen(err)), 62);
    assert_int_equal(ch_exception_code(err, 4), 0);
    assert_int_equal(ch_exception_code(proxy, strlen(proxy)), 0);
    assert_int_equal(ch_exception_code("", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_names),
        cmocka_unit_test(late_exceptions),
        cmocka_unit_test(exception_codes),
        cmocka_unit_test(retries_then_one_answer),
        cmocka_unit_test(free_inside_the_callback),
    };
    return cmocka_run_group_tests(tests, setup, fake_daemon_stop);
}
