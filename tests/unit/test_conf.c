/*
 * test_conf.c - unit tests of the config parser (conf.c) and the error
 * list it reports into (errors.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/errors.h"

/* ---------------------------------------------------------------- helpers */

static sl_conf *parse_ok(const char *text)
{
    sl_errors errs = { 0 };
    sl_conf *conf = sl_conf_parse_string("t.conf", text, &errs);

    if (errs.n > 0)
        print_error("unexpected error: %s\n", errs.msgs[0]);
    assert_int_equal(errs.n, 0);
    assert_non_null(conf);
    sl_errors_free(&errs);
    return conf;
}

/* Parses `text`, expects it to fail with exactly the messages in `want`
 * (NULL-terminated), in order. */
static void parse_fails(const char *text, const char *const *want)
{
    sl_errors errs = { 0 };
    sl_conf *conf = sl_conf_parse_string("t.conf", text, &errs);
    size_t i, n = 0;

    assert_null(conf);
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

static void parse_fails_with(const char *text, const char *want)
{
    const char *const list[] = { want, NULL };

    parse_fails(text, list);
}

static const char *value_of(const sl_conf_section *sec, const char *key)
{
    size_t i;

    for (i = 0; i < sec->n; i++)
        if (strcmp(sec->entries[i].key, key) == 0)
            return sec->entries[i].value;
    return NULL;
}

/* Writes `len` bytes to a fresh temporary file; the caller unlinks it. */
static void write_temp(char *path, const char *data, size_t len)
{
    int fd;

    strcpy(path, "/tmp/sl_test_conf_XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* ----------------------------------------------------------------- errors */

static void test_errors_format(void **state)
{
    sl_errors errs = { 0 };
    int i;

    (void)state;
    sl_errors_add(&errs, "a.conf", 3, "bad %s", "thing");
    sl_errors_add(&errs, "a.conf", 0, "no line");
    sl_errors_add(&errs, NULL, 7, "no file");
    sl_errors_add(&errs, NULL, 0, "nowhere %d", 42);
    sl_errors_add(&errs, "100%s.conf", 1, "file names are not formats");
    assert_int_equal(errs.n, 5);
    assert_string_equal(errs.msgs[0], "a.conf:3: bad thing");
    assert_string_equal(errs.msgs[1], "a.conf: no line");
    assert_string_equal(errs.msgs[2], "line 7: no file");
    assert_string_equal(errs.msgs[3], "nowhere 42");
    assert_string_equal(errs.msgs[4], "100%s.conf:1: file names are not formats");

    for (i = 0; i < 100; i++)
        sl_errors_add(&errs, "a.conf", i + 1, "error %d", i);
    assert_int_equal(errs.n, 105);
    assert_string_equal(errs.msgs[104], "a.conf:100: error 99");

    sl_errors_free(&errs);
    assert_int_equal(errs.n, 0);
    assert_null(errs.msgs);
    sl_errors_add(&errs, "b.conf", 1, "reused");
    assert_string_equal(errs.msgs[0], "b.conf:1: reused");
    sl_errors_free(&errs);
}

/* ------------------------------------------------------------ happy paths */

static void test_basic(void **state)
{
    sl_conf *conf;
    const sl_conf_section *core, *kafka;

    (void)state;
    conf = parse_ok("# a comment\n"
                    "; another comment\n"
                    "\n"
                    "   # indented comment\n"
                    "[core]\n"
                    "listen = 127.0.0.1:8080, 127.0.0.1:8081\n"
                    "  log.level=debug   \n"
                    "url = http://x/#anchor\n"
                    "empty =\n"
                    "trail = value   # inline comment\n"
                    "semi = value\t; inline comment\n"
                    "[ kafka ]   # comment after header\n"
                    "brokers = k1:9092\n");
    assert_string_equal(conf->file, "t.conf");
    assert_int_equal(conf->n, 2);

    core = sl_conf_find(conf, "core");
    assert_non_null(core);
    assert_int_equal(core->line, 5);
    assert_null(core->arg);
    assert_string_equal(core->instance, "");
    assert_int_equal(core->n, 6);
    assert_string_equal(core->entries[0].key, "listen");
    assert_string_equal(core->entries[0].value, "127.0.0.1:8080, 127.0.0.1:8081");
    assert_int_equal(core->entries[0].line, 6);
    assert_string_equal(value_of(core, "log.level"), "debug");
    assert_int_equal(core->entries[1].line, 7);
    assert_string_equal(value_of(core, "url"), "http://x/#anchor");
    assert_string_equal(value_of(core, "empty"), "");
    assert_string_equal(value_of(core, "trail"), "value");
    assert_string_equal(value_of(core, "semi"), "value");
    sl_conf_free(conf);

    /* "a;b = 1" is not a key: make sure it was rejected, not swallowed. */
    parse_fails_with("[core]\na;b = 1\n",
                     "t.conf:2: invalid key 'a;b' (keys are made of letters, digits, '_', '.' "
                     "and '-')");

    conf = parse_ok("[core]\nx = 1\n[kafka]\nbrokers = k1:9092\n");
    kafka = sl_conf_find(conf, "kafka");
    assert_non_null(kafka);
    assert_int_equal(kafka->line, 3);
    assert_string_equal(value_of(kafka, "brokers"), "k1:9092");
    assert_null(sl_conf_find(conf, "nope"));
    sl_conf_free(conf);
}

static void test_module_instances(void **state)
{
    sl_conf *conf;
    const sl_conf_section *s;

    (void)state;
    conf = parse_ok("[module generator]\n"
                    "eps = 10\n"
                    "[module generator \"second\"]\n"
                    "eps = 20\n"
                    "[module  other   \"with \\\"quotes\\\" and spaces\"  ]\n"
                    "[module generator \"$HOME ${X}\"]\n");
    assert_int_equal(conf->n, 4);

    s = &conf->sections[0];
    assert_string_equal(s->name, "module");
    assert_string_equal(s->arg, "generator");
    assert_string_equal(s->instance, "");
    assert_string_equal(value_of(s, "eps"), "10");

    s = &conf->sections[1];
    assert_string_equal(s->arg, "generator");
    assert_string_equal(s->instance, "second");
    assert_int_equal(s->line, 3);
    assert_string_equal(value_of(s, "eps"), "20");

    s = &conf->sections[2];
    assert_string_equal(s->arg, "other");
    assert_string_equal(s->instance, "with \"quotes\" and spaces");

    /* No ${} expansion in an instance name. */
    assert_string_equal(conf->sections[3].instance, "$HOME ${X}");

    /* sl_conf_find() only returns sections without an arg. */
    assert_null(sl_conf_find(conf, "module"));
    sl_conf_free(conf);
}

static void test_quoted_values(void **state)
{
    sl_conf *conf;
    const sl_conf_section *s;

    (void)state;
    conf = parse_ok("[core]\n"
                    "spaces = \"  keep me  \"\n"
                    "escapes = \"a\\\"b\\\\c\\nd\\te\"\n"
                    "hash = \"not # a comment ; either\"\n"
                    "after = \"v\"   # comment\n"
                    "tight = \"v\"#comment\n"
                    "empty = \"\"\n"
                    "dollar = \"\\${NOT_EXPANDED} costs $5\"\n"
                    "unquoted = say \"hi\" there\n"
                    "backslash = C:\\dir\\n\n");
    s = &conf->sections[0];
    assert_string_equal(value_of(s, "spaces"), "  keep me  ");
    assert_string_equal(value_of(s, "escapes"), "a\"b\\c\nd\te");
    assert_string_equal(value_of(s, "hash"), "not # a comment ; either");
    assert_string_equal(value_of(s, "after"), "v");
    assert_string_equal(value_of(s, "tight"), "v");
    assert_string_equal(value_of(s, "empty"), "");
    assert_string_equal(value_of(s, "dollar"), "${NOT_EXPANDED} costs $5");
    /* Quotes and backslashes inside an unquoted value are literal. */
    assert_string_equal(value_of(s, "unquoted"), "say \"hi\" there");
    assert_string_equal(value_of(s, "backslash"), "C:\\dir\\n");
    sl_conf_free(conf);
}

static void test_env_expansion(void **state)
{
    sl_conf *conf;
    const sl_conf_section *s;

    (void)state;
    setenv("SL_TEST_PASSWORD", "s3cret", 1);
    setenv("SL_TEST_HOST", "db.local", 1);
    setenv("SL_TEST_EMPTY", "", 1);
    setenv("SL_TEST_TRICKY", "a #b \"c\" ${SL_TEST_HOST}", 1);
    conf = parse_ok("[core]\n"
                    "password = ${SL_TEST_PASSWORD}\n"
                    "dsn = host=${SL_TEST_HOST} password=${SL_TEST_PASSWORD} # comment\n"
                    "quoted = \"  ${SL_TEST_HOST}  \"\n"
                    "empty = x${SL_TEST_EMPTY}y\n"
                    "tricky = ${SL_TEST_TRICKY}\n"
                    "price = $5 and $ and $HOME\n");
    s = &conf->sections[0];
    assert_string_equal(value_of(s, "password"), "s3cret");
    assert_string_equal(value_of(s, "dsn"), "host=db.local password=s3cret");
    assert_string_equal(value_of(s, "quoted"), "  db.local  ");
    assert_string_equal(value_of(s, "empty"), "xy");
    /* An expansion is not parsed again: no comment, quote or reference. */
    assert_string_equal(value_of(s, "tricky"), "a #b \"c\" ${SL_TEST_HOST}");
    assert_string_equal(value_of(s, "price"), "$5 and $ and $HOME");
    sl_conf_free(conf);
}

static void test_crlf(void **state)
{
    sl_conf *conf;
    const sl_conf_section *s;

    (void)state;
    conf = parse_ok("[core]\r\n"
                    "a = 1\r\n"
                    "b = \"two\"\r\n"
                    "\r\n"
                    "# comment\r\n"
                    "[kafka]\r\n"
                    "c = 3   \r\n");
    s = sl_conf_find(conf, "core");
    assert_string_equal(value_of(s, "a"), "1");
    assert_string_equal(value_of(s, "b"), "two");
    s = sl_conf_find(conf, "kafka");
    assert_int_equal(s->line, 6);
    assert_string_equal(value_of(s, "c"), "3");
    assert_int_equal(s->entries[0].line, 7);
    sl_conf_free(conf);

    parse_fails_with("[core]\r\na = 1\r\nbogus\r\n",
                     "t.conf:3: syntax error: expected '[section]' or 'key = value', got 'bogus'");
}

static void test_no_trailing_newline(void **state)
{
    sl_conf *conf;

    (void)state;
    conf = parse_ok("[core]\nlast = value");
    assert_string_equal(value_of(&conf->sections[0], "last"), "value");
    assert_int_equal(conf->sections[0].entries[0].line, 2);
    sl_conf_free(conf);

    conf = parse_ok("[core]\r\nlast = \"quoted\"");
    assert_string_equal(value_of(&conf->sections[0], "last"), "quoted");
    sl_conf_free(conf);

    parse_fails_with("[core]\na = 1\nlast = \"open", "t.conf:3: unterminated quote in value");

    conf = parse_ok("");
    assert_int_equal(conf->n, 0);
    sl_conf_free(conf);
}

static void test_long_line(void **state)
{
    size_t n = 200000;
    char *text = malloc(n + 64);
    sl_conf *conf;
    const char *v;

    (void)state;
    assert_non_null(text);
    strcpy(text, "[core]\nlong = ");
    memset(text + strlen(text), 'x', n);
    strcpy(text + strlen("[core]\nlong = ") + n, "\nnext = 1\n");
    conf = parse_ok(text);
    v = value_of(&conf->sections[0], "long");
    assert_non_null(v);
    assert_int_equal(strlen(v), n);
    assert_string_equal(value_of(&conf->sections[0], "next"), "1");
    assert_int_equal(conf->sections[0].entries[1].line, 3);
    sl_conf_free(conf);
    free(text);
}

static void test_bom(void **state)
{
    sl_conf *conf;

    (void)state;
    conf = parse_ok("\xEF\xBB\xBF[core]\na = 1\n");
    assert_non_null(sl_conf_find(conf, "core"));
    sl_conf_free(conf);
}

/* ----------------------------------------------------------------- errors */

static void test_err_syntax(void **state)
{
    (void)state;
    parse_fails_with("[core]\na = 1\njust some words\n",
                     "t.conf:3: syntax error: expected '[section]' or 'key = value', "
                     "got 'just some words'");
    parse_fails_with("[core]\n= 1\n", "t.conf:2: missing key before '='");
    parse_fails_with("[core]\nfoo bar = 1\n",
                     "t.conf:2: invalid key 'foo bar' (keys are made of letters, digits, '_', "
                     "'.' and '-')");
    parse_fails_with("[core]\nk/x = 1\n",
                     "t.conf:2: invalid key 'k/x' (keys are made of letters, digits, '_', "
                     "'.' and '-')");
}

static void test_err_key_outside_section(void **state)
{
    (void)state;
    parse_fails_with("# header comment\nlisten = :8080\n[core]\n",
                     "t.conf:2: key 'listen' outside of any section");
}

static void test_err_duplicate_section(void **state)
{
    sl_conf *conf;

    (void)state;
    parse_fails_with("[core]\na = 1\n[kafka]\n[core]\nb = 2\n",
                     "t.conf:4: duplicate section [core] (first defined at line 1)");
    parse_fails_with("[module gen \"x\"]\n[module gen \"x\"]\n",
                     "t.conf:2: duplicate section [module gen \"x\"] (first defined at line 1)");
    parse_fails_with("[module gen]\n[module gen]\n",
                     "t.conf:2: duplicate section [module gen] (first defined at line 1)");
    /* Same module with other instances, or another module, is fine. */
    conf = parse_ok("[module gen]\n[module gen \"x\"]\n[module gen \"y\"]\n[module other]\n"
                    "[gen]\n");
    assert_int_equal(conf->n, 5);
    sl_conf_free(conf);
}

static void test_err_duplicate_key(void **state)
{
    sl_conf *conf;

    (void)state;
    parse_fails_with("[core]\na = 1\nb = 2\na = 3\n",
                     "t.conf:4: duplicate key 'a' in [core] (first set at line 2)");
    parse_fails_with("[module gen \"x\"]\neps = 1\neps = 1\n",
                     "t.conf:3: duplicate key 'eps' in [module gen \"x\"] (first set at line 2)");
    /* The same key in two sections is not a duplicate. */
    conf = parse_ok("[core]\na = 1\n[kafka]\na = 2\n");
    sl_conf_free(conf);
}

static void test_err_env(void **state)
{
    (void)state;
    unsetenv("SL_TEST_UNSET");
    parse_fails_with("[core]\npassword = ${SL_TEST_UNSET}\n",
                     "t.conf:2: environment variable 'SL_TEST_UNSET' is not set");
    parse_fails_with("[core]\npassword = \"x${SL_TEST_UNSET}\"\n",
                     "t.conf:2: environment variable 'SL_TEST_UNSET' is not set");
    parse_fails_with("[core]\na = ${SL_TEST_UNSET\n", "t.conf:2: unterminated '${' in value");
    parse_fails_with("[core]\na = ${}\n",
                     "t.conf:2: invalid variable reference '${}' (expected ${NAME}, NAME made "
                     "of letters, digits and '_')");
    parse_fails_with("[core]\na = ${1X} ${A-B}\n",
                     "t.conf:2: invalid variable reference '${1X}' (expected ${NAME}, NAME made "
                     "of letters, digits and '_')");
}

static void test_err_bad_header(void **state)
{
    (void)state;
    parse_fails_with("[core\n", "t.conf:1: invalid section header '[core': missing ']'");
    parse_fails_with("[]\n",
                     "t.conf:1: invalid section header '[]': expected a section name made of "
                     "letters, digits, '_' and '-'");
    parse_fails_with("[core] extra\n",
                     "t.conf:1: invalid section header '[core] extra': unexpected text after "
                     "']'");
    parse_fails_with("[a.b]\n",
                     "t.conf:1: invalid section header '[a.b]': unexpected character '.'");
    parse_fails_with("[module gen extra]\n",
                     "t.conf:1: invalid section header '[module gen extra]': unexpected "
                     "character 'e'");
    parse_fails_with("[core \"x\"]\n",
                     "t.conf:1: invalid section header '[core \"x\"]': an instance name must "
                     "follow a name, as in [module name \"instance\"]");
    parse_fails_with("[module gen \"x\" \"y\"]\n",
                     "t.conf:1: invalid section header '[module gen \"x\" \"y\"]': unexpected "
                     "character '\"'");
    parse_fails_with("[module gen \"x]\n", "t.conf:1: unterminated quote in section header");
    /* Keys under a bad header are checked but not blamed on being outside
     * a section. */
    parse_fails("[core\na = 1\nb c\n",
                (const char *const[]){
                        "t.conf:1: invalid section header '[core': missing ']'",
                        "t.conf:3: syntax error: expected '[section]' or 'key = value', got 'b c'",
                        NULL });
}

static void test_err_quotes(void **state)
{
    (void)state;
    parse_fails_with("[core]\na = \"open\n", "t.conf:2: unterminated quote in value");
    parse_fails_with("[core]\na = \"open\\\"\n", "t.conf:2: unterminated quote in value");
    parse_fails_with("[core]\na = \"ends in backslash\\\n",
                     "t.conf:2: unterminated quote in value");
    parse_fails_with("[core]\na = \"bad \\q escape\"\n",
                     "t.conf:2: unknown escape '\\q' in value (use \\\" \\\\ \\n \\t or \\$)");
    parse_fails_with("[core]\na = \"v\" trailing\n",
                     "t.conf:2: unexpected text 'trailing' after closing quote");
}

static void test_err_nul_byte(void **state)
{
    static const char data[] = "[core]\na = 1\nb = x\0y\nc = 3\n";
    sl_errors errs = { 0 };
    char path[64];

    (void)state;
    write_temp(path, data, sizeof data - 1);
    assert_null(sl_conf_parse_file(path, &errs));
    assert_int_equal(errs.n, 1);
    assert_true(strncmp(errs.msgs[0], path, strlen(path)) == 0);
    assert_string_equal(errs.msgs[0] + strlen(path), ":3: line contains a NUL byte");
    sl_errors_free(&errs);
    unlink(path);
}

/* One broken file reports everything wrong with it, each at its line. */
static void test_err_multiple(void **state)
{
    const char *const want[] = {
        "t.conf:2: key 'orphan' outside of any section",
        "t.conf:4: syntax error: expected '[section]' or 'key = value', got 'oops'",
        "t.conf:6: duplicate key 'a' in [core] (first set at line 5)",
        "t.conf:7: environment variable 'SL_TEST_UNSET' is not set",
        "t.conf:8: invalid section header '[bad': missing ']'",
        "t.conf:9: unterminated quote in value",
        "t.conf:12: duplicate key 'x' in [module m \"i\"] (first set at line 11)",
        "t.conf:13: duplicate section [core] (first defined at line 3)",
        "t.conf:15: unknown escape '\\z' in value (use \\\" \\\\ \\n \\t or \\$)",
        NULL
    };

    (void)state;
    unsetenv("SL_TEST_UNSET");
    parse_fails("# comment\n"            /* 1 */
                "orphan = 1\n"           /* 2 */
                "[core]\r\n"             /* 3 */
                "oops\n"                 /* 4 */
                "a = 1\n"                /* 5 */
                "a = 2\n"                /* 6 */
                "b = ${SL_TEST_UNSET}\n" /* 7 */
                "[bad\n"                 /* 8 */
                "c = \"open\n"           /* 9: keys under a bad header are still checked */
                "[module m \"i\"]\n"     /* 10 */
                "x = 1\n"                /* 11 */
                "x = 2\n"                /* 12 */
                "[core]\n"               /* 13 */
                "\n"                     /* 14 */
                "z = \"\\z\"",           /* 15: no final newline */
                want);
}

/* ------------------------------------------------------------------ files */

static void test_file_ok(void **state)
{
    static const char data[] = "[core]\nlisten = :8080\n";
    sl_errors errs = { 0 };
    sl_conf *conf;
    char path[64];

    (void)state;
    write_temp(path, data, sizeof data - 1);
    conf = sl_conf_parse_file(path, &errs);
    assert_int_equal(errs.n, 0);
    assert_non_null(conf);
    assert_string_equal(conf->file, path);
    assert_string_equal(value_of(sl_conf_find(conf, "core"), "listen"), ":8080");
    sl_conf_free(conf);
    unlink(path);
}

static void test_file_errors_carry_path(void **state)
{
    static const char data[] = "[core]\n\nnonsense\n";
    sl_errors errs = { 0 };
    char path[64], want[256];

    (void)state;
    write_temp(path, data, sizeof data - 1);
    assert_null(sl_conf_parse_file(path, &errs));
    assert_int_equal(errs.n, 1);
    snprintf(want, sizeof want,
             "%s:3: syntax error: expected '[section]' or 'key = value', got 'nonsense'", path);
    assert_string_equal(errs.msgs[0], want);
    sl_errors_free(&errs);
    unlink(path);
}

static void test_file_unreadable(void **state)
{
    sl_errors errs = { 0 };

    (void)state;
    assert_null(sl_conf_parse_file("/nonexistent/sluice.conf", &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0],
                        "/nonexistent/sluice.conf: cannot open: No such file or directory");
    sl_errors_free(&errs);

    assert_null(sl_conf_parse_file("/tmp", &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0], "/tmp: cannot read: Is a directory");
    sl_errors_free(&errs);
}

/* Errors already in the list belong to someone else: they do not make a
 * good file fail, and new ones are appended after them. */
static void test_errors_appended(void **state)
{
    sl_errors errs = { 0 };
    sl_conf *conf;

    (void)state;
    sl_errors_add(&errs, "other.conf", 9, "earlier");
    conf = sl_conf_parse_string("t.conf", "[core]\n", &errs);
    assert_non_null(conf);
    sl_conf_free(conf);
    assert_null(sl_conf_parse_string("t.conf", "x\n", &errs));
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.msgs[0], "other.conf:9: earlier");
    assert_string_equal(errs.msgs[1],
                        "t.conf:1: syntax error: expected '[section]' or 'key = value', got 'x'");
    sl_errors_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_format),
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_module_instances),
        cmocka_unit_test(test_quoted_values),
        cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_no_trailing_newline),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_err_syntax),
        cmocka_unit_test(test_err_key_outside_section),
        cmocka_unit_test(test_err_duplicate_section),
        cmocka_unit_test(test_err_duplicate_key),
        cmocka_unit_test(test_err_env),
        cmocka_unit_test(test_err_bad_header),
        cmocka_unit_test(test_err_quotes),
        cmocka_unit_test(test_err_nul_byte),
        cmocka_unit_test(test_err_multiple),
        cmocka_unit_test(test_file_ok),
        cmocka_unit_test(test_file_errors_carry_path),
        cmocka_unit_test(test_file_unreadable),
        cmocka_unit_test(test_errors_appended),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
