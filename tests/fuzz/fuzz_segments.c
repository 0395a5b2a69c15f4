/*
 * fuzz_segments.c - libFuzzer target for the segments module's request
 * parsers: the input is tried as a JSON body of each endpoint, and as the
 * path and query values (user id, year/month, report name).  Beyond not
 * crashing, whatever a parser accepts must satisfy its contract.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Imodules/segments \
 *     tests/fuzz/fuzz_segments.c modules/segments/parse.c modules/segments/sha256.c -lcjson -lm
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "parse.h"

static void check_slug(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > SEG_SLUG_MAX || strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != n)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static seg_change ch;
    char why[256], slug[SEG_SLUG_MAX + 1], arr[2 * SEG_LIST_MAX * (SEG_SLUG_MAX + 1) + 3];
    char *text = malloc(size + 1), *sep;
    cJSON *j;
    double pct;
    long long id;
    int y, m;

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    j = cJSON_ParseWithLength((const char *)data, size);
    if (j != NULL) {
        if (seg_parse_change(j, &ch, why, sizeof(why)) == 0) {
            if (ch.user_id < 1 || ch.user_id > SEG_ID_MAX || ch.nadd + ch.ndel == 0 ||
                ch.nadd > SEG_LIST_MAX || ch.ndel > SEG_LIST_MAX || ch.ttl < 0 ||
                ch.ttl > SEG_TTL_MAX)
                abort();
            for (size_t i = 0; i < ch.nadd; i++)
                check_slug(ch.add[i]);
            for (size_t i = 0; i < ch.ndel; i++)
                check_slug(ch.del[i]);
            if (seg_slug_array(ch.add, ch.nadd, arr, sizeof(arr)) < 0)
                abort();
        }
        if (seg_parse_segment(j, slug, &pct, why, sizeof(why)) == 0) {
            check_slug(slug);
            if (pct != -1 && (pct < 0 || pct > 100))
                abort();
        }
        if (seg_parse_slug_body(j, slug, why, sizeof(why)) == 0)
            check_slug(slug);
        cJSON_Delete(j);
    }
    if (seg_parse_id_text(text, &id, why, sizeof(why)) == 0 && (id < 1 || id > SEG_ID_MAX))
        abort();
    if (seg_parse_report_name("fuzz-secret", text, &id, &y, &m, why, sizeof(why)) == 0)
        abort(); /* guessing a signed name must not work */
    if (seg_slug_check(text, why, sizeof(why)) == 0)
        check_slug(text);
    if ((sep = strchr(text, '&')) != NULL) {
        *sep = '\0';
        if (seg_parse_period(text, sep + 1, &y, &m, why, sizeof(why)) == 0 &&
            (y < 2000 || y > 9999 || m < 1 || m > 12))
            abort();
    }
    free(text);
    return 0;
}
