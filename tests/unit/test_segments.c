/*
 * test_segments.c - the segments module's pure parts: SHA-256 and HMAC
 * against published vectors, the sticky rollout bucket against values
 * computed independently (Python hashlib), the input checks, and the read
 * cache (expiry at read time, tickets, limits, the answer's bytes).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include "parse.h"
#include "sha256.h"
#include "ucache.h"

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_sha256_vectors(void **state)
{
    uint8_t d[32];
    char h[65];
    char million[1000];

    (void)state;
    seg_sha256("", 0, d);
    hex(d, 32, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    seg_sha256("abc", 3, d);
    hex(d, 32, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* 56 bytes: the padding spills into a second block */
    seg_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, d);
    hex(d, 32, h);
    assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    memset(million, 'a', sizeof(million));
    seg_sha256(million, sizeof(million), d);
    hex(d, 32, h);
    assert_string_equal(h, "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

static void test_hmac_rfc4231(void **state)
{
    uint8_t d[32], key[131];
    char h[65];

    (void)state;
    seg_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, d);
    hex(d, 32, h);
    assert_string_equal(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* test case 6: a key longer than the block is hashed first */
    memset(key, 0xaa, sizeof(key));
    seg_hmac_sha256(key, sizeof(key), "Test Using Larger Than Block-Size Key - Hash Key First", 54,
                    d);
    hex(d, 32, h);
    assert_string_equal(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static void test_bucket(void **state)
{
    (void)state;
    /* python3: int.from_bytes(sha256(f"{u}:{s}".encode()).digest()[:4], "big") % 10000 */
    assert_int_equal(seg_bucket(1, "AVITO_DISCOUNT_30"), 2436);
    assert_int_equal(seg_bucket(42, "ROLLOUT_25"), 8422);
    assert_int_equal(seg_bucket(9007199254740991LL, "A"), 5334);
    /* deterministic, and spread: about a quarter of users under 2500 */
    int under = 0;
    for (long long u = 1; u <= 10000; u++) {
        int b = seg_bucket(u, "SPREAD");
        assert_true(b >= 0 && b < SEG_BUCKETS);
        assert_int_equal(b, seg_bucket(u, "SPREAD"));
        under += b < 2500;
    }
    assert_true(under > 2300 && under < 2700);
}

static void test_slug(void **state)
{
    char why[256], s[80];

    (void)state;
    assert_int_equal(seg_slug_check("AVITO_DISCOUNT_30", why, sizeof(why)), 0);
    assert_int_equal(seg_slug_check("", why, sizeof(why)), -1);
    assert_non_null(strstr(why, "empty"));
    assert_int_equal(seg_slug_check(NULL, why, sizeof(why)), -1);
    assert_int_equal(seg_slug_check("avito", why, sizeof(why)), -1);
    assert_int_equal(seg_slug_check("A-B", why, sizeof(why)), -1);
    assert_int_equal(seg_slug_check("A'; DROP TABLE users; --", why, sizeof(why)), -1);
    assert_int_equal(seg_slug_check("../X", why, sizeof(why)), -1);
    assert_int_equal(seg_slug_check("\xc3\x89", why, sizeof(why)), -1);
    memset(s, 'A', 64);
    s[64] = '\0';
    assert_int_equal(seg_slug_check(s, why, sizeof(why)), 0);
    s[64] = 'A', s[65] = '\0';
    assert_int_equal(seg_slug_check(s, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "at most 64"));
}

static void test_ids(void **state)
{
    char why[256];
    long long v;
    cJSON *j;

    (void)state;
    assert_int_equal(seg_parse_id_text("1", &v, why, sizeof(why)), 0);
    assert_int_equal(v, 1);
    assert_int_equal(seg_parse_id_text("9007199254740991", &v, why, sizeof(why)), 0);
    assert_int_equal(seg_parse_id_text("9007199254740992", &v, why, sizeof(why)), -1);
    assert_int_equal(seg_parse_id_text("0", &v, why, sizeof(why)), -1);
    assert_int_equal(seg_parse_id_text("-1", &v, why, sizeof(why)), -1);
    assert_int_equal(seg_parse_id_text("1e3", &v, why, sizeof(why)), -1);
    assert_int_equal(seg_parse_id_text(" 1", &v, why, sizeof(why)), -1);
    assert_int_equal(seg_parse_id_text("", &v, why, sizeof(why)), -1);
    assert_int_equal(seg_parse_id_text("99999999999999999999", &v, why, sizeof(why)), -1);
    j = cJSON_Parse("[5, 5.5, \"5\", -1, 1e300, true]");
    assert_int_equal(seg_parse_id_json(cJSON_GetArrayItem(j, 0), "user_id", &v, why, sizeof(why)),
                     0);
    assert_int_equal(v, 5);
    for (int i = 1; i < 6; i++)
        assert_int_equal(seg_parse_id_json(cJSON_GetArrayItem(j, i), "user_id", &v, why,
                                           sizeof(why)),
                         -1);
    assert_int_equal(seg_parse_id_json(NULL, "user_id", &v, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "required"));
    cJSON_Delete(j);
}

static int change(const char *json, seg_change *ch, char *why, size_t whylen)
{
    cJSON *j = cJSON_Parse(json);
    int rc;

    assert_non_null(j);
    rc = seg_parse_change(j, ch, why, whylen);
    cJSON_Delete(j);
    return rc;
}

static void test_change(void **state)
{
    static seg_change ch;
    char why[256], arr[256];

    (void)state;
    assert_int_equal(change("{\"user_id\": 7, \"add_segments\": [\"B\", \"A\"], "
                            "\"delete_segments\": [\"C\"], \"ttl\": 60}",
                            &ch, why, sizeof(why)),
                     0);
    assert_int_equal(ch.user_id, 7);
    assert_int_equal(ch.nadd, 2);
    assert_string_equal(ch.add[0], "A"); /* sorted: a fixed lock order */
    assert_string_equal(ch.add[1], "B");
    assert_int_equal(ch.ndel, 1);
    assert_int_equal(ch.ttl, 60);
    assert_int_equal(seg_slug_array(ch.add, ch.nadd, arr, sizeof(arr)), 5);
    assert_string_equal(arr, "{A,B}");
    assert_int_equal(seg_slug_array(ch.add, 0, arr, sizeof(arr)), 2);
    assert_string_equal(arr, "{}");
    assert_int_equal(seg_slug_array(ch.add, ch.nadd, arr, 4), -1);

    static const struct {
        const char *json, *needle;
    } bad[] = {
        { "{\"add_segments\": [\"A\"]}", "user_id is required" },
        { "{\"user_id\": 1}", "both empty" },
        { "{\"user_id\": 1, \"add_segments\": [\"A\"], \"delete_segments\": [\"A\"]}", "in both" },
        { "{\"user_id\": 1, \"add_segments\": [\"A\", \"A\"]}", "listed twice" },
        { "{\"user_id\": 1, \"delete_segments\": [\"A\", \"A\"]}", "listed twice" },
        { "{\"user_id\": 1, \"add_segments\": \"A\"}", "must be an array" },
        { "{\"user_id\": 1, \"add_segments\": [1]}", "must be a string" },
        { "{\"user_id\": 1, \"add_segments\": [\"a\"]}", "A-Z" },
        { "{\"user_id\": 1, \"add_segments\": [\"A\"], \"ttl\": 0}", "ttl must be" },
        { "{\"user_id\": 1, \"add_segments\": [\"A\"], \"ttl\": -5}", "ttl must be" },
        { "{\"user_id\": 1, \"add_segments\": [\"A\"], \"ttl\": 315360001}", "ttl must be" },
        { "{\"user_id\": 1, \"add_segments\": [\"A\"], \"ttl\": 2.5}", "ttl must be" },
        { "{\"user_id\": 1, \"add_segments\": [\"A\"], \"ttl\": \"5\"}", "ttl must be" },
        { "{\"user_id\": 1, \"delete_segments\": [\"A\"], \"ttl\": 5}", "ttl applies" },
        { "{\"user_id\": 1, \"add_segments\": [\"A\"], \"extra\": 1}", "unknown field" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        assert_int_equal(change(bad[i].json, &ch, why, sizeof(why)), -1);
        if (strstr(why, bad[i].needle) == NULL)
            fail_msg("%s: got \"%s\", wanted \"%s\"", bad[i].json, why, bad[i].needle);
    }
    /* 101 slugs are too many */
    char big[2048] = "{\"user_id\": 1, \"add_segments\": [";
    for (int i = 0; i < 101; i++)
        snprintf(big + strlen(big), sizeof(big) - strlen(big), "%s\"S%d\"", i ? "," : "", i);
    strcat(big, "]}");
    assert_int_equal(change(big, &ch, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "more than 100"));
}

static void test_segment_body(void **state)
{
    char why[256], slug[SEG_SLUG_MAX + 1];
    double p;
    static const struct {
        const char *json;
        int rc;
        double p;
    } cases[] = {
        { "{\"slug\": \"A\"}", 0, -1 },
        { "{\"slug\": \"A\", \"user_percent\": null}", 0, -1 },
        { "{\"slug\": \"A\", \"user_percent\": 0}", 0, 0 },
        { "{\"slug\": \"A\", \"user_percent\": 100}", 0, 100 },
        { "{\"slug\": \"A\", \"user_percent\": 12.34}", 0, 12.34 },
        { "{\"slug\": \"A\", \"user_percent\": 12.345}", -1, 0 },
        { "{\"slug\": \"A\", \"user_percent\": 100.01}", -1, 0 },
        { "{\"slug\": \"A\", \"user_percent\": -0.01}", -1, 0 },
        { "{\"slug\": \"A\", \"user_percent\": \"5\"}", -1, 0 },
        { "{\"slug\": 5}", -1, 0 },
        { "{}", -1, 0 },
        { "{\"slug\": \"A\", \"x\": 1}", -1, 0 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *j = cJSON_Parse(cases[i].json);
        int rc = seg_parse_segment(j, slug, &p, why, sizeof(why));
        if (rc != cases[i].rc)
            fail_msg("%s: rc %d (%s)", cases[i].json, rc, why);
        if (rc == 0) {
            assert_string_equal(slug, "A");
            assert_true(p > cases[i].p - 1e-9 && p < cases[i].p + 1e-9);
        }
        cJSON_Delete(j);
    }
}

/* PATCH /segment/{slug}: which fields change, and to what. */
static void test_parse_patch(void **state)
{
    static const struct {
        const char *json;
        int rc, set_percent, set_description, has_description;
        double percent;
    } cases[] = {
        { "{\"user_percent\": 40}", 0, 1, 0, 0, 40 },
        { "{\"user_percent\": 12.34, \"description\": \"spring sale\"}", 0, 1, 1, 1, 12.34 },
        { "{\"user_percent\": null}", 0, 1, 0, 0, -1 },
        { "{\"description\": null}", 0, 0, 1, 0, -1 },
        { "{\"description\": \"\"}", 0, 0, 1, 1, -1 },
        { "{}", -1, 0, 0, 0, -1 },
        { "{\"user_percent\": 101}", -1, 0, 0, 0, -1 },
        { "{\"user_percent\": 1.234}", -1, 0, 0, 0, -1 },
        { "{\"user_percent\": \"5\"}", -1, 0, 0, 0, -1 },
        { "{\"description\": 5}", -1, 0, 0, 0, -1 },
        { "{\"description\": \"a\\nb\"}", -1, 0, 0, 0, -1 },
        { "{\"slug\": \"A\"}", -1, 0, 0, 0, -1 },
    };
    char why[256], longer[SEG_DESC_MAX + 40];
    seg_patch p;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *j = cJSON_Parse(cases[i].json);
        int rc = seg_parse_patch(j, &p, why, sizeof(why));
        if (rc != cases[i].rc)
            fail_msg("%s: rc %d (%s)", cases[i].json, rc, why);
        if (rc == 0 && (p.set_percent != cases[i].set_percent ||
                        p.set_description != cases[i].set_description ||
                        p.has_description != cases[i].has_description ||
                        p.percent < cases[i].percent - 1e-9 || p.percent > cases[i].percent + 1e-9))
            fail_msg("%s: parsed as %d %d %d %g", cases[i].json, p.set_percent, p.set_description,
                     p.has_description, p.percent);
        cJSON_Delete(j);
    }
    /* SEG_DESC_MAX bytes pass, one more does not */
    for (int extra = 0; extra <= 1; extra++) {
        int n = snprintf(longer, sizeof(longer), "{\"description\": \"");
        memset(longer + n, 'x', (size_t)SEG_DESC_MAX + (size_t)extra);
        strcpy(longer + n + SEG_DESC_MAX + extra, "\"}");
        cJSON *j = cJSON_Parse(longer);
        assert_int_equal(seg_parse_patch(j, &p, why, sizeof(why)), extra ? -1 : 0);
        cJSON_Delete(j);
    }
}

static void test_period_and_reports(void **state)
{
    char why[256], name[SEG_REPORT_NAME_MAX], bad[SEG_REPORT_NAME_MAX + 8];
    long long u;
    int y, m;

    (void)state;
    assert_int_equal(seg_parse_period("2023", "9", &y, &m, why, sizeof(why)), 0);
    assert_int_equal(y * 100 + m, 202309);
    assert_int_equal(seg_parse_period("2023", "09", &y, &m, why, sizeof(why)), 0);
    assert_int_equal(seg_parse_period("1999", "9", &y, &m, why, sizeof(why)), -1);
    assert_int_equal(seg_parse_period("2023", "13", &y, &m, why, sizeof(why)), -1);
    assert_int_equal(seg_parse_period("2023", "0", &y, &m, why, sizeof(why)), -1);
    assert_int_equal(seg_parse_period(NULL, "1", &y, &m, why, sizeof(why)), -1);
    assert_int_equal(seg_parse_period("2023", "1x", &y, &m, why, sizeof(why)), -1);

    seg_report_name("k", 7, 2026, 11, name);
    /* python3: hmac.new(b"k", b"7:2026:11", sha256).hexdigest()[:32] */
    assert_string_equal(name, "7-2026-11-54f98821281e145b36789466e717148a.csv");
    assert_int_equal(seg_parse_report_name("k", name, &u, &y, &m, why, sizeof(why)), 0);
    assert_true(u == 7 && y == 2026 && m == 11);
    /* another secret, user or month: refused */
    assert_int_equal(seg_parse_report_name("other", name, &u, &y, &m, why, sizeof(why)), -1);
    assert_int_equal(seg_parse_report_name("k", "8-2026-11-54f98821281e145b36789466e717148a.csv",
                                           &u, &y, &m, why, sizeof(why)),
                     -1);
    assert_int_equal(seg_parse_report_name("k", "7-2026-12-54f98821281e145b36789466e717148a.csv",
                                           &u, &y, &m, why, sizeof(why)),
                     -1);
    static const char *const shapes[] = {
        "",
        ".csv",
        "../../etc/passwd",
        "7-2026-11-54f98821281e145b36789466e717148a.csv/..",
        "7-2026-11-54F98821281E145B36789466E717148A.csv",
        "7-2026-11-54f98821281e145b36789466e717148a",
        "7-2026-11-54f98821281e145b36789466e717148a.csvx",
        "07-2026-11-54f98821281e145b36789466e717148a.csv",
        "7-2026-11-54f98821281e145b36789466e717148.csv",
        "7--2026-11-54f98821281e145b36789466e717148a.csv",
        "7-2026-1-154f98821281e145b36789466e717148a.csv",
        NULL,
    };
    for (size_t i = 0; shapes[i] != NULL; i++)
        assert_int_equal(seg_parse_report_name("k", shapes[i], &u, &y, &m, why, sizeof(why)), -1);
    assert_int_equal(seg_parse_report_name("k", NULL, &u, &y, &m, why, sizeof(why)), -1);
    memset(bad, 'x', sizeof(bad) - 1);
    bad[sizeof(bad) - 1] = '\0';
    assert_int_equal(seg_parse_report_name("k", bad, &u, &y, &m, why, sizeof(why)), -1);
    assert_string_equal(why, "no such report");
}

/* 2026-12-01T14:20:04.866285Z in microseconds since the epoch */
#define T0 1796134804866285LL

static void test_cache_answer(void **state)
{
    const ucache_member m[] = { { "A", UCACHE_NO_EXPIRY },
                                { "B", T0 },
                                { "Q\"\\", UCACHE_NO_EXPIRY } };
    char buf[512], small[8];
    size_t len;

    (void)state;
    /* the bytes PostgreSQL's to_char and cJSON gave before the cache */
    len = ucache_answer(buf, sizeof(buf), 7, m, 3, T0 - 1);
    assert_int_equal(len, strlen(buf));
    assert_string_equal(
            buf, "{\"user_id\":7,\"segments\":[{\"slug\":\"A\"},{\"slug\":\"B\","
                 "\"expires_at\":\"2026-12-01T14:20:04.866285Z\"},{\"slug\":\"Q\\\"\\\\\"}]}");
    ucache_answer(buf, sizeof(buf), 7, m, 2, T0); /* expired at exactly its time */
    assert_string_equal(buf, "{\"user_id\":7,\"segments\":[{\"slug\":\"A\"}]}");
    ucache_answer(buf, sizeof(buf), 9007199254740991LL, NULL, 0, T0);
    assert_string_equal(buf, "{\"user_id\":9007199254740991,\"segments\":[]}");
    assert_true(ucache_answer(small, sizeof(small), 7, m, 3, 0) >= sizeof(small));
    assert_true(ucache_answer_size(m, 3) > strlen(buf));
}

static void test_cache_expiry_and_tickets(void **state)
{
    const ucache_member m[] = { { "A", UCACHE_NO_EXPIRY }, { "B", T0 } };
    ucache *c = ucache_new(10, 1 << 20, 60);
    ucache_stats st;
    const char *body;
    uint64_t t;
    size_t len;

    (void)state;
    assert_non_null(c);
    assert_null(ucache_get(c, 7, T0 - 10, 0, &len));
    t = ucache_ticket(c, 7);
    assert_int_equal(ucache_put(c, 7, t, m, 2, 0), 1);
    body = ucache_get(c, 7, T0 - 1, 1, &len);
    assert_non_null(body);
    assert_non_null(strstr(body, "\"B\""));
    body = ucache_get(c, 7, T0, 2, &len); /* rebuilt at the expiry */
    assert_string_equal(body, "{\"user_id\":7,\"segments\":[{\"slug\":\"A\"}]}");
    assert_int_equal(len, strlen(body));
    assert_null(ucache_get(c, 7, T0, 61.5, &len)); /* older than max_age */

    /* a put under a ticket taken before an invalidation is refused */
    t = ucache_ticket(c, 7);
    ucache_forget(c, 7);
    assert_int_equal(ucache_put(c, 7, t, m, 2, 62), 0);
    assert_null(ucache_get(c, 7, T0 - 1, 62, &len));
    t = ucache_ticket(c, 8);
    ucache_clear(c);
    assert_int_equal(ucache_put(c, 8, t, m, 2, 62), 0);
    ucache_forget(c, 9); /* another user: another stripe (1024 of them) */
    assert_int_equal(ucache_put(c, 8, ucache_ticket(c, 8), m, 2, 62), 1);
    ucache_get_stats(c, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 3);
    ucache_free(c);
}

static void test_cache_limits(void **state)
{
    const ucache_member m[] = { { "SOME_SEGMENT", UCACHE_NO_EXPIRY }, { "OTHER", T0 } };
    ucache *c = ucache_new(50, 64 * 1024, 60);
    ucache_stats st;
    size_t len;

    (void)state;
    for (int64_t u = 1; u <= 5000; u++) {
        assert_int_not_equal(ucache_put(c, u, ucache_ticket(c, u), m, 2, 0), -1);
        ucache_get_stats(c, &st);
        assert_true(st.entries <= 50);
        assert_true(st.bytes <= 64 * 1024);
    }
    assert_int_equal(st.entries, 50);
    assert_int_equal(st.evictions, 4950);
    assert_non_null(ucache_get(c, 5000, 0, 0, &len)); /* the newest stay */
    assert_null(ucache_get(c, 1, 0, 0, &len));
    ucache_free(c);

    c = ucache_new(1000000, 32 * 1024, 60); /* now bytes bind first */
    for (int64_t u = 1; u <= 5000; u++) {
        ucache_put(c, u, ucache_ticket(c, u), m, 2, 0);
        ucache_get_stats(c, &st);
        assert_true(st.bytes <= 32 * 1024);
    }
    assert_true(st.entries > 10 && st.entries < 100);
    ucache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_slug),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_change),
        cmocka_unit_test(test_segment_body),
        cmocka_unit_test(test_parse_patch),
        cmocka_unit_test(test_period_and_reports),
        cmocka_unit_test(test_cache_answer),
        cmocka_unit_test(test_cache_expiry_and_tickets),
        cmocka_unit_test(test_cache_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
