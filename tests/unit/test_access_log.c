/* sl_access_format(): one line per answer, text or JSON, that no path
 * sent by a client can break or forge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include "http/access_log.h"

static const sl_access_entry base = {
    1764855600.25,
    "127.0.0.1",
    "POST",
    "/segment/user",
    200,
    41,
    0.0035,
    "segments",
    "/segment/user",
    "req-1",
    "0af7651916cd43dd8448eb211c80319c",
    "ci",
};

static void test_text(void **state)
{
    char line[512];
    sl_access_entry e = base;
    (void)state;

    sl_access_format(&e, 0, line, sizeof(line));
    assert_string_equal(line,
                        "2025-12-04T13:40:00.250Z 127.0.0.1 POST /segment/user 200 41 0.003500 "
                        "module=segments route=/segment/user request_id=req-1 "
                        "trace_id=0af7651916cd43dd8448eb211c80319c token=ci\n");
    /* Blanks, quotes, controls and non-ASCII in what a client sent. */
    e.path = "/a b\"c\n\xc3\xa9";
    e.request_id = "x y";
    e.trace_id = "";
    e.token = NULL;
    sl_access_format(&e, 0, line, sizeof(line));
    assert_string_equal(
            line, "2025-12-04T13:40:00.250Z 127.0.0.1 POST /a\\x20b\\x22c\\x0a\\xc3\\xa9 200 41 "
                  "0.003500 module=segments route=/segment/user request_id=x\\x20y "
                  "trace_id=-\n");
}

static void test_json(void **state)
{
    char line[512];
    sl_access_entry e = base;
    cJSON *j;
    (void)state;

    e.path = "/a\"b\n";
    sl_access_format(&e, 1, line, sizeof(line));
    assert_int_equal(line[strlen(line) - 1], '\n');
    assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1); /* one line */
    j = cJSON_Parse(line);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "path")->valuestring, "/a\"b\n");
    assert_int_equal(cJSON_GetObjectItem(j, "status")->valueint, 200);
    assert_int_equal(cJSON_GetObjectItem(j, "bytes")->valueint, 41);
    assert_string_equal(cJSON_GetObjectItem(j, "token")->valuestring, "ci");
    assert_string_equal(cJSON_GetObjectItem(j, "trace_id")->valuestring,
                        "0af7651916cd43dd8448eb211c80319c");
    cJSON_Delete(j);
    e.trace_id = "";
    e.token = NULL;
    sl_access_format(&e, 1, line, sizeof(line));
    j = cJSON_Parse(line);
    assert_non_null(j);
    assert_null(cJSON_GetObjectItem(j, "trace_id"));
    assert_null(cJSON_GetObjectItem(j, "token"));
    cJSON_Delete(j);
}

/* A line too long for the buffer is cut, still one line. */
static void test_cut(void **state)
{
    char line[64], path[300];
    sl_access_entry e = base;
    size_t n;
    (void)state;

    memset(path, 'p', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    e.path = path;
    n = sl_access_format(&e, 0, line, sizeof(line));
    assert_int_equal(n, strlen(line));
    assert_true(n < sizeof(line));
    assert_int_equal(line[n - 1], '\n');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
