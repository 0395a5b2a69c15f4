/*
 * clickhouse_api.c - what modules call on a ClickHouse handle: inserts of
 * rows and batches, queries and statements, and the SQL and url text they
 * are sent as.  Sending them is clickhouse_req.c's.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "clickhouse_int.h"
#include "daemon/core.h"
#include <sluice/clickhouse.h>

/* ---------------------------------------------------------------- text */

SL_API int sl_ch_valid_table(const char *name)
{
    int parts = 0;
    const char *p = name;

    if (name == NULL)
        return 0;
    for (;;) {
        if (!(isalpha((unsigned char)*p) || *p == '_'))
            return 0;
        while (isalnum((unsigned char)*p) || *p == '_')
            p++;
        if (p - name > 200)
            return 0;
        parts++;
        if (*p == '\0')
            return 1;
        if (*p != '.' || parts == 2)
            return 0;
        p++;
    }
}

/* Percent-encodes `s` for a query string; malloc'd, NULL when out of memory. */
static char *url_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1), *o = out;

    if (out == NULL)
        return NULL;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

char *ch_str_printf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* `base`?database=...&<extra> */
char *ch_make_url(const sl_ch *ch, const char *extra)
{
    char *db = url_encode(ch->database), *url;

    if (db == NULL)
        return NULL;
    url = ch_str_printf("%s?database=%s%s%s", ch->base, db, extra[0] != '\0' ? "&" : "", extra);
    free(db);
    return url;
}

/* The settings of a request that may write.  On a cluster, an insert into
 * a Distributed table returns only once every shard has its rows: what the
 * caller is told was accepted is on the shards, not in a node's queue of
 * rows still to forward. */
static const char *write_settings(const sl_ch *ch)
{
    return ch->cluster[0] != '\0' ? "insert_distributed_sync=1" : "";
}

/* ------------------------------------------------------------ the API */

SL_API const char *sl_ch_cluster(const sl_ch *ch)
{
    return ch->cluster;
}

SL_API const char *sl_ch_database(const sl_ch *ch)
{
    return ch->database;
}

/* 1 when `s` is a list of identifiers separated by commas and blanks. */
static int valid_columns(const char *s)
{
    int want_name = 1;

    for (; *s != '\0'; s++) {
        if (*s == ' ')
            continue;
        if (*s == ',' && !want_name) {
            want_name = 1;
            continue;
        }
        if (!(isalpha((unsigned char)*s) || *s == '_'))
            return 0;
        while (isalnum((unsigned char)s[1]) || s[1] == '_')
            s++;
        if (!want_name)
            return 0;
        want_name = 0;
    }
    return !want_name;
}

/* The url of INSERT INTO `table` [(columns)] FORMAT `format`; the names
 * were checked by the caller.  NULL when out of memory. */
static char *insert_url(sl_ch *ch, const char *table, const char *columns, const char *format)
{
    char *sql, *enc, *url;
    const char *dot = strchr(table, '.');
    int tlen = dot != NULL ? (int)(dot - table) : (int)strlen(table);

    sql = ch_str_printf("INSERT INTO `%.*s`%s%s%s%s%s%s FORMAT %s", tlen, table,
                        dot != NULL ? ".`" : "", dot != NULL ? dot + 1 : "", dot != NULL ? "`" : "",
                        columns != NULL ? " (" : "", columns != NULL ? columns : "",
                        columns != NULL ? ")" : "", format);
    if (sql == NULL)
        return NULL;
    enc = url_encode(sql);
    free(sql);
    if (enc == NULL)
        return NULL;
    url = ch_str_printf("query=%s%s%s", enc, ch->cluster[0] != '\0' ? "&" : "", write_settings(ch));
    free(enc);
    if (url == NULL)
        return NULL;
    sql = ch_make_url(ch, url);
    free(url);
    return sql;
}

SL_API int sl_ch_insert(sl_ch *ch, const char *table, const char *rows, size_t len, sl_ch_fn fn,
                        void *arg)
{
    char *copy;

    if (ch == NULL || ch->life.freeing || !sl_ch_valid_table(table))
        return -1;
    copy = malloc(len + 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, rows, len);
    copy[len] = '\0';
    return ch_submit(ch, K_INSERT, insert_url(ch, table, NULL, "JSONEachRow"), copy, len, fn, arg,
                     0, 0);
}

SL_API int sl_ch_insert_rows(sl_ch *ch, const char *table, const char *columns, const char *format,
                             const void *rows, size_t len, sl_ch_fn fn, void *arg)
{
    if (ch == NULL || ch->life.freeing || fn == NULL || !sl_ch_valid_table(table) ||
        (columns != NULL && !valid_columns(columns)) || format == NULL ||
        strchr(format, '.') != NULL || !sl_ch_valid_table(format))
        return -1;
    return ch_submit_borrowed(ch, K_INSERT, insert_url(ch, table, columns, format), rows, len, fn,
                              arg);
}

struct sl_ch_batch {
    char *buf;
    size_t len, cap;
    size_t rows;
};

SL_API sl_ch_batch *sl_ch_batch_new(void)
{
    return calloc(1, sizeof(sl_ch_batch));
}

SL_API int sl_ch_batch_append_raw(sl_ch_batch *b, const char *row, size_t len)
{
    if (b->len + len + 2 > b->cap) {
        size_t cap = b->cap != 0 ? b->cap : 65536;
        char *p;
        while (cap < b->len + len + 2)
            cap *= 2;
        p = realloc(b->buf, cap);
        if (p == NULL)
            return -1;
        b->buf = p;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, row, len);
    b->len += len;
    b->buf[b->len++] = '\n';
    b->buf[b->len] = '\0';
    b->rows++;
    return 0;
}

SL_API int sl_ch_batch_append_json(sl_ch_batch *b, const cJSON *row)
{
    char *s;
    int rc;

    if (!cJSON_IsObject(row))
        return -1;
    s = cJSON_PrintUnformatted(row);
    if (s == NULL)
        return -1;
    rc = sl_ch_batch_append_raw(b, s, strlen(s));
    cJSON_free(s);
    return rc;
}

SL_API size_t sl_ch_batch_rows(const sl_ch_batch *b)
{
    return b->rows;
}

SL_API size_t sl_ch_batch_bytes(const sl_ch_batch *b)
{
    return b->len;
}

SL_API void sl_ch_batch_free(sl_ch_batch *b)
{
    if (b == NULL)
        return;
    free(b->buf);
    free(b);
}

SL_API int sl_ch_insert_batch(sl_ch *ch, const char *table, sl_ch_batch *b, sl_ch_fn fn, void *arg)
{
    char *body;
    size_t len;

    if (b == NULL)
        return -1;
    if (ch == NULL || ch->life.freeing || !sl_ch_valid_table(table)) {
        sl_ch_batch_free(b);
        return -1;
    }
    body = b->buf;
    len = b->len;
    free(b);
    return ch_submit(ch, K_INSERT, insert_url(ch, table, NULL, "JSONEachRow"), body, len, fn, arg,
                     0, 0);
}

/* The statement without trailing blanks and semicolons, then `suffix`. */
static char *statement(const char *sql, const char *suffix)
{
    size_t n = strlen(sql);

    while (n > 0 && (isspace((unsigned char)sql[n - 1]) || sql[n - 1] == ';'))
        n--;
    return ch_str_printf("%.*s%s", (int)n, sql, suffix);
}

SL_API int sl_ch_query(sl_ch *ch, const char *sql, sl_ch_fn fn, void *arg)
{
    char *body;

    if (ch == NULL || ch->life.freeing || sql == NULL)
        return -1;
    body = statement(sql, "\nFORMAT JSON");
    if (body == NULL)
        return -1;
    /* 64-bit integers as JSON numbers, not strings: counts read naturally. */
    return ch_submit(ch, K_QUERY, ch_make_url(ch, "output_format_json_quote_64bit_integers=0"),
                     body, strlen(body), fn, arg, CH_MAX_QUERY_ANSWER, 0);
}

SL_API int sl_ch_exec(sl_ch *ch, const char *sql, sl_ch_fn fn, void *arg)
{
    char *body;

    if (ch == NULL || ch->life.freeing || sql == NULL)
        return -1;
    body = statement(sql, "");
    if (body == NULL)
        return -1;
    return ch_submit(ch, K_EXEC, ch_make_url(ch, write_settings(ch)), body, strlen(body), fn, arg,
                     0, 0);
}

/* The settings go before readonly: ClickHouse refuses to change a setting
 * in the same request once readonly=1 has been applied. */
SL_API int sl_ch_query_limited(sl_ch *ch, const char *sql, const sl_ch_limits *lim, sl_ch_fn fn,
                               void *arg)
{
    char *body, *settings, *url;

    if (ch == NULL || ch->life.freeing || sql == NULL || lim == NULL ||
        lim->max_execution_time < 1 || lim->max_result_rows == 0 || lim->max_result_bytes == 0)
        return -1;
    body = statement(sql, "\nFORMAT JSON");
    settings = ch_str_printf("output_format_json_quote_64bit_integers=0&max_execution_time=%lld"
                             "&max_result_rows=%llu&max_result_bytes=%llu"
                             "&result_overflow_mode=throw&readonly=1",
                             (long long)lim->max_execution_time, lim->max_result_rows,
                             lim->max_result_bytes);
    url = settings != NULL ? ch_make_url(ch, settings) : NULL;
    free(settings);
    if (body == NULL || url == NULL) {
        free(body);
        free(url);
        return -1;
    }
    return ch_submit(ch, K_QUERY, url, body, strlen(body), fn, arg, (size_t)lim->max_result_bytes,
                     1);
}
