/*
 * validate.c - the handlers' checks (validate.h).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "dedup.h"
#include "validate.h"

static const char *const reason_names[AGG_NREASONS] = {
    "ok",
    "empty",
    "too_large",
    "broken_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "bad_value",
    "negative_duration",
    "bad_timestamp",
    "future_timestamp",
    "missing_event_id",
    "no_route",
};

const char *agg_reason_name(agg_reason r)
{
    return (unsigned)r < AGG_NREASONS ? reason_names[r] : "unknown";
}

/* ------------------------------------------------------------ RFC 3339 */

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int dm[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dm[m - 1];
}

int agg_parse_rfc3339(const char *s, int64_t *ms)
{
    int y, mo, d, h, mi, sec, frac = 0, off = 0;
    const char *p;

    if (strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &sec))
        return -1;
    p = s + 19;
    if (*p == '.') {
        int n = 0;
        p++;
        while (isdigit((unsigned char)*p)) {
            if (n < 3)
                frac = frac * 10 + (*p - '0');
            n++;
            p++;
        }
        if (n == 0)
            return -1;
        for (; n < 3; n++)
            frac *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off = (oh * 60 + om) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return -1;
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        sec > 60)
        return -1;
    /* ClickHouse DateTime holds 1970..2105; keep to a sane window. */
    if (y < 2000 || y > 2100)
        return -1;
    *ms = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) - (int64_t)off * 60) *
                  1000 +
          frac;
    return 0;
}

/* ------------------------------------------------------------ helpers */

typedef struct {
    char *detail;
    size_t dlen;
} why;

static agg_reason fail(why *w, agg_reason r, const char *fmt, const char *field)
{
    snprintf(w->detail, w->dlen, fmt, field);
    return r;
}

/* A string field copied into `out` (cap bytes with the NUL). */
static agg_reason str_field(const cJSON *obj, const char *name, char *out, size_t cap, why *w)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    size_t n;

    if (f == NULL)
        return fail(w, AGG_R_MISSING_FIELD, "%s is missing", name);
    if (!cJSON_IsString(f))
        return fail(w, AGG_R_WRONG_TYPE, "%s must be a string", name);
    n = strlen(f->valuestring);
    if (n == 0)
        return fail(w, AGG_R_BAD_VALUE, "%s must not be empty", name);
    if (n >= cap) {
        snprintf(w->detail, w->dlen, "%s is longer than %zu bytes", name, cap - 1);
        return AGG_R_BAD_VALUE;
    }
    memcpy(out, f->valuestring, n + 1);
    return AGG_OK;
}

/* A string or an integer, as text (ids and user ids come as either). */
static agg_reason id_field(const cJSON *obj, const char *name, char *out, size_t cap, why *w)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (f != NULL && cJSON_IsNumber(f)) {
        double v = f->valuedouble;
        if (v != floor(v) || fabs(v) > 9007199254740991.0)
            return fail(w, AGG_R_BAD_VALUE, "%s must be an integer or a string", name);
        snprintf(out, cap, "%.0f", v);
        return AGG_OK;
    }
    return str_field(obj, name, out, cap, w);
}

static agg_reason ts_field(const cJSON *obj, const char *name, const agg_limits *lim, int64_t *ms,
                           why *w)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (f == NULL)
        return fail(w, AGG_R_MISSING_FIELD, "%s is missing", name);
    if (!cJSON_IsString(f))
        return fail(w, AGG_R_WRONG_TYPE, "%s must be an RFC 3339 string", name);
    if (agg_parse_rfc3339(f->valuestring, ms) != 0) {
        snprintf(w->detail, w->dlen, "%s is not an RFC 3339 time from 2000 to 2100: \"%.40s\"",
                 name, f->valuestring);
        return AGG_R_BAD_TIMESTAMP;
    }
    if ((double)*ms / 1000.0 > lim->now + lim->max_future) {
        snprintf(w->detail, w->dlen, "%s %.40s is more than %.0f s ahead of now", name,
                 f->valuestring, lim->max_future);
        return AGG_R_FUTURE_TIMESTAMP;
    }
    return AGG_OK;
}

static agg_reason parse(const char *v, size_t len, cJSON **out, why *w)
{
    if (v == NULL || len == 0)
        return fail(w, AGG_R_EMPTY, "%s", "the message has no value");
    *out = cJSON_ParseWithLength(v, len);
    if (*out == NULL)
        return fail(w, AGG_R_BROKEN_JSON, "%s", "the value is not valid JSON");
    if (!cJSON_IsObject(*out))
        return fail(w, AGG_R_NOT_OBJECT, "%s", "the value is not a JSON object");
    return AGG_OK;
}

/* ---------------------------------------------------------- handlers */

/* The six fields of a page view as either parser saw them. */
enum { F_ABSENT, F_STRING, F_NUMBER, F_OTHER };
typedef struct {
    int type;
    const char *s; /* F_STRING: the decoded bytes (not NUL-terminated) */
    size_t n;
    double num;
} fld;

enum { PV_EVENT_ID, PV_EVENT_TYPE, PV_PAGE_ID, PV_USER_ID, PV_TS, PV_DURATION, PV_NFIELDS };
static const char *const pv_names[PV_NFIELDS] = { "event_id", "event_type", "page_id",
                                                  "user_id",  "ts",         "duration_s" };
/* Their lengths, so that a key is told apart without a strlen() each. */
static const size_t pv_lens[PV_NFIELDS] = { 8, 10, 7, 7, 2, 10 };

static const char *ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* A string body up to its closing quote; NULL when it holds an escape or
 * a control byte (the general parser decides those). */
static const char *plain_string(const char *p, const char *e)
{
    while (p < e && *p != '"') {
        if (*p == '\\' || (unsigned char)*p < 0x20)
            return NULL;
        p++;
    }
    return p < e ? p : NULL;
}

/*
 * The fast path: a flat object of plain strings, numbers, true, false and
 * null, read without allocating.  Fills the wanted fields (the first of a
 * repeated key wins, as with cJSON) and returns 0; returns -1 for anything
 * else (escapes, nesting, bad syntax), which the general parser then
 * judges, so both paths give the same verdict on every input this one
 * accepts.  Most messages take this path; it is most of the consumer's time.
 */
static int fast_fields(const char *v, size_t len, fld *f)
{
    const char *p = v, *e = v + len;

    memset(f, 0, PV_NFIELDS * sizeof(*f));
    p = ws(p, e);
    if (p == e || *p != '{')
        return -1;
    p = ws(p + 1, e);
    if (p < e && *p == '}') {
        p++;
        goto end;
    }
    for (;;) {
        const char *k, *ke, *s = NULL;
        size_t sn = 0;
        double num = 0;
        int type;

        if (p >= e || *p != '"' || (ke = plain_string(k = p + 1, e)) == NULL)
            return -1;
        p = ws(ke + 1, e);
        if (p >= e || *p != ':')
            return -1;
        p = ws(p + 1, e);
        if (p >= e)
            return -1;
        if (*p == '"') {
            const char *se = plain_string(s = p + 1, e);
            if (se == NULL)
                return -1;
            sn = (size_t)(se - s);
            p = se + 1;
            type = F_STRING;
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            char buf[64], *end;
            const char *ns = p;
            while (p < e && (isdigit((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.' ||
                             *p == 'e' || *p == 'E'))
                p++;
            if ((size_t)(p - ns) >= sizeof(buf))
                return -1;
            memcpy(buf, ns, (size_t)(p - ns));
            buf[p - ns] = '\0';
            num = strtod(buf, &end);
            if (end != buf + (p - ns))
                return -1;
            type = F_NUMBER;
        } else if (e - p >= 4 && (memcmp(p, "true", 4) == 0 || memcmp(p, "null", 4) == 0)) {
            p += 4;
            type = F_OTHER;
        } else if (e - p >= 5 && memcmp(p, "false", 5) == 0) {
            p += 5;
            type = F_OTHER;
        } else {
            return -1;
        }
        for (int i = 0; i < PV_NFIELDS; i++)
            if (f[i].type == F_ABSENT && pv_lens[i] == (size_t)(ke - k) &&
                memcmp(pv_names[i], k, (size_t)(ke - k)) == 0) {
                f[i] = (fld){ type, s, sn, num };
                break;
            }
        p = ws(p, e);
        if (p < e && *p == ',') {
            p = ws(p + 1, e);
            continue;
        }
        if (p < e && *p == '}') {
            p++;
            break;
        }
        return -1;
    }
end:
    return ws(p, e) == e ? 0 : -1;
}

static void cjson_fields(const cJSON *root, fld *f)
{
    for (int i = 0; i < PV_NFIELDS; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, pv_names[i]);
        f[i] = (fld){ F_ABSENT, NULL, 0, 0 };
        if (it == NULL)
            continue;
        if (cJSON_IsString(it))
            f[i] = (fld){ F_STRING, it->valuestring, strlen(it->valuestring), 0 };
        else if (cJSON_IsNumber(it))
            f[i] = (fld){ F_NUMBER, NULL, 0, it->valuedouble };
        else
            f[i].type = F_OTHER;
    }
}

/* Like str_field(), over a parsed field. */
static agg_reason fstr(const fld *f, const char *name, char *out, size_t cap, why *w)
{
    if (f->type != F_STRING)
        return fail(w, AGG_R_WRONG_TYPE, "%s must be a string", name);
    if (f->n == 0)
        return fail(w, AGG_R_BAD_VALUE, "%s must not be empty", name);
    if (f->n >= cap) {
        snprintf(w->detail, w->dlen, "%s is longer than %zu bytes", name, cap - 1);
        return AGG_R_BAD_VALUE;
    }
    memcpy(out, f->s, f->n);
    out[f->n] = '\0';
    return AGG_OK;
}

static agg_reason check_page_view(const fld *f, const agg_limits *lim, agg_page_view *out, why *w)
{
    char type[16], ts[128];
    agg_reason r;
    size_t n;

    /* Presence first, in the contract's order, so that an event missing
     * one field is reported as missing whatever else is wrong with it. */
    for (int i = 0; i < PV_NFIELDS; i++)
        if (f[i].type == F_ABSENT)
            return fail(w, AGG_R_MISSING_FIELD, "%s is missing", pv_names[i]);
    if (f[PV_DURATION].type != F_NUMBER)
        return fail(w, AGG_R_WRONG_TYPE, "%s must be a number", "duration_s");
    if ((r = fstr(&f[PV_EVENT_ID], "event_id", out->event_id, sizeof(out->event_id), w)) !=
                AGG_OK ||
        (r = fstr(&f[PV_EVENT_TYPE], "event_type", type, sizeof(type), w)) != AGG_OK ||
        (r = fstr(&f[PV_PAGE_ID], "page_id", out->page_id, sizeof(out->page_id), w)) != AGG_OK)
        return r;
    if (f[PV_USER_ID].type == F_NUMBER) {
        double v = f[PV_USER_ID].num;
        if (v != floor(v) || fabs(v) > 9007199254740991.0)
            return fail(w, AGG_R_BAD_VALUE, "%s must be an integer or a string", "user_id");
        snprintf(out->user_id, sizeof(out->user_id), "%.0f", v);
    } else if ((r = fstr(&f[PV_USER_ID], "user_id", out->user_id, sizeof(out->user_id), w)) !=
               AGG_OK) {
        return r;
    }
    if (strcmp(type, "view") != 0 && strcmp(type, "bounce") != 0) {
        snprintf(w->detail, w->dlen, "event_type must be view or bounce, got \"%s\"", type);
        return AGG_R_BAD_VALUE;
    }
    out->bounce = type[0] == 'b';
    out->duration_s = f[PV_DURATION].num;
    if (out->duration_s < 0) {
        snprintf(w->detail, w->dlen, "duration_s is negative: %g", out->duration_s);
        return AGG_R_NEGATIVE_DURATION;
    }
    if (!isfinite(out->duration_s) || out->duration_s > 31536000) {
        snprintf(w->detail, w->dlen, "duration_s is beyond a year: %g", out->duration_s);
        return AGG_R_BAD_VALUE;
    }
    if (f[PV_TS].type != F_STRING)
        return fail(w, AGG_R_WRONG_TYPE, "%s must be an RFC 3339 string", "ts");
    /* Longer than any RFC 3339 time worth reading: it is not one. */
    n = f[PV_TS].n < sizeof(ts) ? f[PV_TS].n : sizeof(ts) - 1;
    memcpy(ts, f[PV_TS].s, n);
    ts[n] = '\0';
    if (f[PV_TS].n >= sizeof(ts) || agg_parse_rfc3339(ts, &out->ts_ms) != 0) {
        snprintf(w->detail, w->dlen, "%s is not an RFC 3339 time from 2000 to 2100: \"%.40s\"",
                 "ts", ts);
        return AGG_R_BAD_TIMESTAMP;
    }
    if ((double)out->ts_ms / 1000.0 > lim->now + lim->max_future) {
        snprintf(w->detail, w->dlen, "%s %.40s is more than %.0f s ahead of now", "ts", ts,
                 lim->max_future);
        return AGG_R_FUTURE_TIMESTAMP;
    }
    return AGG_OK;
}

agg_reason agg_check_page_view(const char *v, size_t len, const agg_limits *lim, agg_page_view *out,
                               char *detail, size_t dlen)
{
    why w = { detail, dlen };
    fld f[PV_NFIELDS];
    cJSON *root = NULL;
    agg_reason r;

    detail[0] = '\0';
    if (v != NULL && len > 0 && fast_fields(v, len, f) == 0)
        return check_page_view(f, lim, out, &w);
    if ((r = parse(v, len, &root, &w)) == AGG_OK) {
        cjson_fields(root, f);
        r = check_page_view(f, lim, out, &w);
    }
    cJSON_Delete(root);
    return r;
}

/* ------------------------------------------------------ derived ids */

typedef struct {
    cJSON *item;
    size_t at; /* position before sorting: repeated names keep their order */
} member;

static int member_cmp(const void *x, const void *y)
{
    const member *a = x, *b = y;
    int c = strcmp(a->item->string, b->item->string);

    return c != 0 ? c : (a->at > b->at) - (a->at < b->at);
}

/* Orders the members of every object under `item` by name, so that the
 * order a producer wrote them in is not part of the content.  0, or -1
 * when out of memory. */
static int sort_members(cJSON *item)
{
    member *v;
    cJSON *c;
    size_t n = 0;

    for (c = item->child; c != NULL; c = c->next, n++)
        if (sort_members(c) != 0)
            return -1;
    if (!cJSON_IsObject(item) || n < 2)
        return 0;
    v = malloc(n * sizeof(*v));
    if (v == NULL)
        return -1;
    n = 0;
    for (c = item->child; c != NULL; c = c->next, n++)
        v[n] = (member){ c, n };
    qsort(v, n, sizeof(*v), member_cmp);
    /* cJSON's list: the head's prev is the tail, the tail's next NULL. */
    item->child = v[0].item;
    for (size_t i = 0; i < n; i++) {
        v[i].item->prev = v[i == 0 ? n - 1 : i - 1].item;
        v[i].item->next = i + 1 < n ? v[i + 1].item : NULL;
    }
    free(v);
    return 0;
}

int agg_analytics_id(cJSON *root, char out[AGG_DERIVED_ID_LEN + 1])
{
    /* Fixed, so that every instance derives the same id: "sluice-analytics". */
    static const uint64_t k0 = 0x736c756963652d61ULL, k1 = 0x6e616c7974696373ULL;
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    char *text;
    agg_h128 h;

    if (sort_members(root) != 0 || (text = cJSON_PrintUnformatted(root)) == NULL)
        return -1;
    h = agg_siphash128(k0, k1, text, strlen(text));
    free(text);
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(h.lo >> (8 * i));
        b[8 + i] = (unsigned char)(h.hi >> (8 * i));
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x80); /* version 8: custom */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 9562 variant */
    for (int i = 0, o = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0f];
    }
    out[AGG_DERIVED_ID_LEN] = '\0';
    return 0;
}

static int absent(const cJSON *obj, const char *name)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    return f == NULL || cJSON_IsNull(f);
}

agg_reason agg_check_analytics(const char *v, size_t len, const agg_limits *lim, agg_analytics *out,
                               char *detail, size_t dlen)
{
    why w = { detail, dlen };
    cJSON *root = NULL;
    const cJSON *props;
    agg_reason r;

    detail[0] = '\0';
    out->properties = NULL;
    out->id_derived = out->ts_consumed = 0;
    if ((r = parse(v, len, &root, &w)) != AGG_OK)
        goto done;
    out->id_derived = absent(root, "id");
    out->ts_consumed = absent(root, "timestamp");
    if ((!out->id_derived && (r = id_field(root, "id", out->id, sizeof(out->id), &w)) != AGG_OK) ||
        (r = str_field(root, "eventType", out->event_type, sizeof(out->event_type), &w)) !=
                AGG_OK ||
        (r = id_field(root, "userId", out->user_id, sizeof(out->user_id), &w)) != AGG_OK)
        goto done;
    if (out->ts_consumed)
        out->ts_ms = (int64_t)(lim->now * 1000.0);
    else if ((r = ts_field(root, "timestamp", lim, &out->ts_ms, &w)) != AGG_OK)
        goto done;
    props = cJSON_GetObjectItemCaseSensitive(root, "properties");
    if (props != NULL && !cJSON_IsNull(props) && !cJSON_IsObject(props)) {
        r = fail(&w, AGG_R_WRONG_TYPE, "%s must be an object", "properties");
        goto done;
    }
    /* Printed before the id is derived: the properties keep the
     * producer's member order. */
    out->properties =
            props != NULL && cJSON_IsObject(props) ? cJSON_PrintUnformatted(props) : strdup("{}");
    if (out->properties == NULL || (out->id_derived && agg_analytics_id(root, out->id) != 0))
        r = fail(&w, AGG_R_BAD_VALUE, "%s", "out of memory");
done:
    cJSON_Delete(root);
    return r;
}

/* The outbox events of the segments module (sluice-api(7)): the one-letter
 * operation each event_type carries. */
static const struct {
    char op;
    const char *event_type;
} segment_kinds[] = { { 'I', "segment_added" },   { 'D', "segment_removed" },
                      { 'N', "user_created" },    { 'C', "segment_created" },
                      { 'U', "segment_updated" }, { 'X', "segment_deleted" } };

static const char *segment_kind(const char *op)
{
    if (op[0] == '\0' || op[1] != '\0')
        return NULL;
    for (size_t i = 0; i < sizeof(segment_kinds) / sizeof(segment_kinds[0]); i++)
        if (segment_kinds[i].op == op[0])
            return segment_kinds[i].event_type;
    return NULL;
}

/* Headers of other producers name other types: only ours are held to
 * their operation. */
static int segment_kind_named(const char *event_type)
{
    for (size_t i = 0; i < sizeof(segment_kinds) / sizeof(segment_kinds[0]); i++)
        if (strcmp(segment_kinds[i].event_type, event_type) == 0)
            return 1;
    return 0;
}

agg_reason agg_check_segment(const char *v, size_t len, const char *header_id,
                             const char *header_type, const agg_limits *lim, agg_segment *out,
                             char *detail, size_t dlen)
{
    why w = { detail, dlen };
    cJSON *root = NULL;
    const cJSON *user, *op;
    const char *kind;
    char *end;
    agg_reason r;

    detail[0] = '\0';
    if (header_id == NULL || header_id[0] == '\0' || !isdigit((unsigned char)header_id[0]))
        return fail(&w, AGG_R_MISSING_EVENT_ID, "%s",
                    "the event_id header (the outbox id, decimal) is missing or not a number");
    out->event_id = strtoull(header_id, &end, 10);
    if (*end != '\0')
        return fail(&w, AGG_R_MISSING_EVENT_ID, "%s",
                    "the event_id header is not a decimal number");
    if ((r = parse(v, len, &root, &w)) != AGG_OK)
        goto done;
    user = cJSON_GetObjectItemCaseSensitive(root, "user_id");
    if (user == NULL) {
        r = fail(&w, AGG_R_MISSING_FIELD, "%s is missing", "user_id");
        goto done;
    }
    if (!cJSON_IsNumber(user) || user->valuedouble != floor(user->valuedouble) ||
        user->valuedouble < 0 || user->valuedouble > 9007199254740991.0) {
        r = fail(&w, AGG_R_WRONG_TYPE, "%s must be a non-negative integer", "user_id");
        goto done;
    }
    out->user_id = (long long)user->valuedouble;
    op = cJSON_GetObjectItemCaseSensitive(root, "operation");
    if (op == NULL) {
        r = fail(&w, AGG_R_MISSING_FIELD, "%s is missing", "operation");
        goto done;
    }
    if (!cJSON_IsString(op)) {
        r = fail(&w, AGG_R_WRONG_TYPE, "%s must be a string", "operation");
        goto done;
    }
    kind = segment_kind(op->valuestring);
    if (kind == NULL) {
        r = fail(&w, AGG_R_BAD_VALUE, "%s must be one of \"I\", \"D\", \"N\", \"C\", \"U\", \"X\"",
                 "operation");
        goto done;
    }
    out->operation = op->valuestring[0];
    out->event_type = kind;
    /* a user's creation concerns no segment: its slug is "" */
    if (out->operation == 'N') {
        const cJSON *slug = cJSON_GetObjectItemCaseSensitive(root, "slug");
        if (slug != NULL && (!cJSON_IsString(slug) || slug->valuestring[0] != '\0')) {
            r = fail(&w, AGG_R_BAD_VALUE, "%s must be empty for a user_created event", "slug");
            goto done;
        }
        out->slug[0] = '\0';
    } else if ((r = str_field(root, "slug", out->slug, sizeof(out->slug), &w)) != AGG_OK) {
        goto done;
    }
    if (header_type != NULL && segment_kind_named(header_type) && strcmp(header_type, kind) != 0) {
        snprintf(detail, dlen, "operation %c contradicts the event_type header %s", out->operation,
                 header_type);
        r = AGG_R_BAD_VALUE;
        goto done;
    }
    r = ts_field(root, "ts", lim, &out->ts_ms, &w);
done:
    cJSON_Delete(root);
    return r;
}
