/*
 * parse.c - input checks with messages that say what is allowed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "parse.h"
#include "sha256.h"

int seg_slug_check(const char *s, char *why, size_t whylen)
{
    size_t n;

    if (s == NULL || *s == '\0') {
        snprintf(why, whylen, "slug must not be empty");
        return -1;
    }
    n = strlen(s);
    if (n > SEG_SLUG_MAX) {
        snprintf(why, whylen, "slug is %zu characters long, at most %d allowed", n, SEG_SLUG_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
            snprintf(why, whylen, "slug may hold only A-Z, 0-9 and _ (byte %zu is 0x%02x)", i, c);
            return -1;
        }
    }
    return 0;
}

int seg_parse_id_text(const char *s, long long *out, char *why, size_t whylen)
{
    long long v = 0;
    size_t n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > 16)
        goto bad;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            goto bad;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > SEG_ID_MAX)
        goto bad;
    *out = v;
    return 0;
bad:
    snprintf(why, whylen, "user id must be an integer from 1 to %lld", SEG_ID_MAX);
    return -1;
}

int seg_parse_id_json(const cJSON *v, const char *field, long long *out, char *why, size_t whylen)
{
    double d;

    if (v == NULL) {
        snprintf(why, whylen, "%s is required", field);
        return -1;
    }
    d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(d) || d != floor(d) || d < 1 || d > (double)SEG_ID_MAX) {
        snprintf(why, whylen, "%s must be an integer from 1 to %lld", field, SEG_ID_MAX);
        return -1;
    }
    *out = (long long)d;
    return 0;
}

int seg_check_fields(const cJSON *obj, const char *const *allowed, char *why, size_t whylen)
{
    const cJSON *it;

    cJSON_ArrayForEach (it, obj) {
        size_t i;
        for (i = 0; allowed[i] != NULL; i++)
            if (it->string != NULL && strcmp(it->string, allowed[i]) == 0)
                break;
        if (allowed[i] == NULL) {
            snprintf(why, whylen, "unknown field \"%.64s\"", it->string != NULL ? it->string : "");
            return -1;
        }
    }
    return 0;
}

static int slug_field(const cJSON *body, char slug[SEG_SLUG_MAX + 1], char *why, size_t whylen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "slug");
    char inner[160];

    if (v == NULL) {
        snprintf(why, whylen, "slug is required");
        return -1;
    }
    if (!cJSON_IsString(v)) {
        snprintf(why, whylen, "slug must be a string");
        return -1;
    }
    if (seg_slug_check(v->valuestring, inner, sizeof(inner)) != 0) {
        snprintf(why, whylen, "%s", inner);
        return -1;
    }
    strcpy(slug, v->valuestring);
    return 0;
}

/* user_percent: 0..100 with two decimals at most (10000 buckets). */
static int percent_value(const cJSON *p, double *percent, char *why, size_t whylen)
{
    if (!cJSON_IsNumber(p) || !isfinite(p->valuedouble) || p->valuedouble < 0 ||
        p->valuedouble > 100) {
        snprintf(why, whylen, "user_percent must be a number from 0 to 100");
        return -1;
    }
    if (fabs(p->valuedouble * 100 - round(p->valuedouble * 100)) > 1e-6) {
        snprintf(why, whylen, "user_percent may have at most two decimals");
        return -1;
    }
    *percent = p->valuedouble;
    return 0;
}

int seg_parse_segment(const cJSON *body, char slug[SEG_SLUG_MAX + 1], double *percent, char *why,
                      size_t whylen)
{
    static const char *const fields[] = { "slug", "user_percent", NULL };
    const cJSON *p;

    if (seg_check_fields(body, fields, why, whylen) != 0 ||
        slug_field(body, slug, why, whylen) != 0)
        return -1;
    *percent = -1;
    p = cJSON_GetObjectItemCaseSensitive(body, "user_percent");
    if (p == NULL || cJSON_IsNull(p))
        return 0;
    return percent_value(p, percent, why, whylen);
}

int seg_parse_patch(const cJSON *body, seg_patch *out, char *why, size_t whylen)
{
    static const char *const fields[] = { "user_percent", "description", NULL };
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "user_percent");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "description");

    memset(out, 0, sizeof(*out));
    out->percent = -1;
    if (seg_check_fields(body, fields, why, whylen) != 0)
        return -1;
    if (p == NULL && d == NULL) {
        snprintf(why, whylen, "nothing to change: give user_percent, description or both");
        return -1;
    }
    if (p != NULL) {
        out->set_percent = 1;
        if (!cJSON_IsNull(p) && percent_value(p, &out->percent, why, whylen) != 0)
            return -1;
    }
    if (d != NULL) {
        out->set_description = 1;
        if (cJSON_IsNull(d))
            return 0;
        if (!cJSON_IsString(d)) {
            snprintf(why, whylen, "description must be a string or null");
            return -1;
        }
        if (strlen(d->valuestring) > SEG_DESC_MAX) {
            snprintf(why, whylen, "description is %zu bytes long, at most %d allowed",
                     strlen(d->valuestring), SEG_DESC_MAX);
            return -1;
        }
        for (const unsigned char *c = (const unsigned char *)d->valuestring; *c != '\0'; c++) {
            if (*c < 0x20 || *c == 0x7f) {
                snprintf(why, whylen, "description may not hold control characters");
                return -1;
            }
        }
        out->has_description = 1;
        strcpy(out->description, d->valuestring);
    }
    return 0;
}

int seg_parse_slug_body(const cJSON *body, char slug[SEG_SLUG_MAX + 1], char *why, size_t whylen)
{
    static const char *const fields[] = { "slug", NULL };

    if (seg_check_fields(body, fields, why, whylen) != 0)
        return -1;
    return slug_field(body, slug, why, whylen);
}

static int slug_list(const cJSON *v, const char *field, char (*out)[SEG_SLUG_MAX + 1], size_t *n,
                     char *why, size_t whylen)
{
    const cJSON *it;
    char inner[160];

    *n = 0;
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsArray(v)) {
        snprintf(why, whylen, "%s must be an array of slugs", field);
        return -1;
    }
    if (cJSON_GetArraySize(v) > SEG_LIST_MAX) {
        snprintf(why, whylen, "%s holds more than %d slugs", field, SEG_LIST_MAX);
        return -1;
    }
    cJSON_ArrayForEach (it, v) {
        if (!cJSON_IsString(it)) {
            snprintf(why, whylen, "%s[%zu] must be a string", field, *n);
            return -1;
        }
        if (seg_slug_check(it->valuestring, inner, sizeof(inner)) != 0) {
            snprintf(why, whylen, "%s[%zu]: %s", field, *n, inner);
            return -1;
        }
        strcpy(out[(*n)++], it->valuestring);
    }
    return 0;
}

static int cmp_slug(const void *a, const void *b)
{
    return strcmp(a, b);
}

int seg_parse_change(const cJSON *body, seg_change *out, char *why, size_t whylen)
{
    static const char *const fields[] = { "user_id", "add_segments", "delete_segments", "ttl",
                                          NULL };
    const cJSON *ttl;

    if (seg_check_fields(body, fields, why, whylen) != 0 ||
        seg_parse_id_json(cJSON_GetObjectItemCaseSensitive(body, "user_id"), "user_id",
                          &out->user_id, why, whylen) != 0 ||
        slug_list(cJSON_GetObjectItemCaseSensitive(body, "add_segments"), "add_segments", out->add,
                  &out->nadd, why, whylen) != 0 ||
        slug_list(cJSON_GetObjectItemCaseSensitive(body, "delete_segments"), "delete_segments",
                  out->del, &out->ndel, why, whylen) != 0)
        return -1;
    if (out->nadd + out->ndel == 0) {
        snprintf(why, whylen, "add_segments and delete_segments are both empty");
        return -1;
    }
    qsort(out->add, out->nadd, sizeof(out->add[0]), cmp_slug);
    qsort(out->del, out->ndel, sizeof(out->del[0]), cmp_slug);
    for (size_t i = 1; i < out->nadd; i++)
        if (strcmp(out->add[i - 1], out->add[i]) == 0) {
            snprintf(why, whylen, "%s is listed twice in add_segments", out->add[i]);
            return -1;
        }
    for (size_t i = 1; i < out->ndel; i++)
        if (strcmp(out->del[i - 1], out->del[i]) == 0) {
            snprintf(why, whylen, "%s is listed twice in delete_segments", out->del[i]);
            return -1;
        }
    for (size_t i = 0; i < out->nadd; i++)
        if (bsearch(out->add[i], out->del, out->ndel, sizeof(out->del[0]), cmp_slug) != NULL) {
            snprintf(why, whylen, "%s is in both add_segments and delete_segments", out->add[i]);
            return -1;
        }
    out->ttl = 0;
    ttl = cJSON_GetObjectItemCaseSensitive(body, "ttl");
    if (ttl == NULL || cJSON_IsNull(ttl))
        return 0;
    if (!cJSON_IsNumber(ttl) || !isfinite(ttl->valuedouble) ||
        ttl->valuedouble != floor(ttl->valuedouble) || ttl->valuedouble < 1 ||
        ttl->valuedouble > (double)SEG_TTL_MAX) {
        snprintf(why, whylen, "ttl must be an integer number of seconds from 1 to %lld",
                 SEG_TTL_MAX);
        return -1;
    }
    if (out->nadd == 0) {
        snprintf(why, whylen, "ttl applies to add_segments, which is empty");
        return -1;
    }
    out->ttl = (long long)ttl->valuedouble;
    return 0;
}

int seg_slug_array(char (*slugs)[SEG_SLUG_MAX + 1], size_t n, char *out, size_t outlen)
{
    size_t at = 0;

    if (outlen < 3)
        return -1;
    out[at++] = '{';
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(slugs[i]);
        if (at + len + 3 > outlen)
            return -1;
        if (i > 0)
            out[at++] = ',';
        memcpy(out + at, slugs[i], len);
        at += len;
    }
    out[at++] = '}';
    out[at] = '\0';
    return (int)at;
}

static int small_int(const char *s, int lo, int hi, int *out)
{
    int v = 0;
    size_t n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > 4)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int seg_parse_period(const char *year, const char *month, int *y, int *m, char *why, size_t whylen)
{
    if (small_int(year, 2000, 9999, y) != 0) {
        snprintf(why, whylen, "year must be an integer from 2000 to 9999");
        return -1;
    }
    if (small_int(month, 1, 12, m) != 0) {
        snprintf(why, whylen, "month must be an integer from 1 to 12");
        return -1;
    }
    return 0;
}

static void report_mac(const char *secret, long long user, int y, int m, char hex[33])
{
    char msg[64];
    uint8_t mac[SEG_SHA256_LEN];
    int n = snprintf(msg, sizeof(msg), "%lld:%04d:%02d", user, y, m);

    seg_hmac_sha256(secret, strlen(secret), msg, (size_t)n, mac);
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
}

void seg_report_name(const char *secret, long long user, int y, int m,
                     char out[SEG_REPORT_NAME_MAX])
{
    char hex[33];

    report_mac(secret, user, y, m, hex);
    snprintf(out, SEG_REPORT_NAME_MAX, "%lld-%04d-%02d-%s.csv", user, y, m, hex);
}

int seg_parse_report_name(const char *secret, const char *name, long long *user, int *y, int *m,
                          char *why, size_t whylen)
{
    char part[4][40], hex[33], inner[128];
    const char *p = name;
    size_t len = name != NULL ? strlen(name) : 0;
    unsigned diff = 0;

    /* Shape first: "<id>-<yyyy>-<mm>-<32 hex>.csv", nothing else. */
    if (len < 4 || len >= SEG_REPORT_NAME_MAX || strcmp(name + len - 4, ".csv") != 0)
        goto bad;
    for (int i = 0; i < 4; i++) {
        size_t n = 0;
        while (p < name + len - 4 && *p != '-' && n < sizeof(part[i]) - 1)
            part[i][n++] = *p++;
        part[i][n] = '\0';
        if (i < 3 && *p++ != '-')
            goto bad;
    }
    /* one spelling per report: no leading zeros on the id */
    if (p != name + len - 4 || part[0][0] == '0' || strlen(part[1]) != 4 || strlen(part[2]) != 2 ||
        strlen(part[3]) != 32 || seg_parse_id_text(part[0], user, inner, sizeof(inner)) != 0 ||
        seg_parse_period(part[1], part[2], y, m, inner, sizeof(inner)) != 0)
        goto bad;
    report_mac(secret, *user, *y, *m, hex);
    for (int i = 0; i < 32; i++)
        diff |= (unsigned)(hex[i] ^ part[3][i]); /* constant time */
    if (diff != 0)
        goto bad;
    return 0;
bad:
    snprintf(why, whylen, "no such report");
    return -1;
}

int seg_bucket(long long user, const char *slug)
{
    char msg[128];
    uint8_t d[SEG_SHA256_LEN];
    int n = snprintf(msg, sizeof(msg), "%lld:%s", user, slug);

    if (n < 0 || (size_t)n >= sizeof(msg))
        n = (int)sizeof(msg) - 1;
    seg_sha256(msg, (size_t)n, d);
    return (int)(((uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3]) %
                 SEG_BUCKETS);
}
