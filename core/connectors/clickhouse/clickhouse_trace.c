/*
 * clickhouse_trace.c - spans of ClickHouse requests: a module's request
 * sent for a traced request or message is a CLIENT span (OpenTelemetry's
 * database conventions, db.system clickhouse) from submission to its
 * answer, retries included (sluice.attempts says how many), and its
 * callback runs in the context it was submitted in.  Inserts carry the
 * statement, never the rows; queries their text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clickhouse_int.h"

/* The statement of a request: an insert's is in its url (query=...), the
 * others' in the body.  malloc'd; NULL when out of memory or none. */
static char *statement_of(const req *q)
{
    const char *at = strstr(q->url, "query=");
    const char *end;
    char *text;
    int len = 0;

    if (q->kind != K_INSERT)
        return q->body != NULL ? strdup(q->body) : NULL;
    if (at == NULL)
        return NULL;
    at += 6;
    end = strchr(at, '&');
    text = curl_easy_unescape(q->easy, at, end != NULL ? (int)(end - at) : 0, &len);
    if (text == NULL)
        return NULL;
    at = strdup(text);
    curl_free(text);
    return (char *)at;
}

/* The first keyword, upper-cased, and for an INSERT its table, which make
 * the span's name ("INSERT segment_events", "SELECT"). */
static void operation(const char *sql, char *op, size_t oplen, char *table, size_t tablen)
{
    size_t n = 0, t = 0;

    while (*sql == ' ' || *sql == '\n' || *sql == '\t' || *sql == '(')
        sql++;
    while (n + 1 < oplen && ((*sql >= 'A' && *sql <= 'Z') || (*sql >= 'a' && *sql <= 'z'))) {
        char c = *sql++;
        op[n++] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
    }
    op[n] = '\0';
    table[0] = '\0';
    if (strcmp(op, "INSERT") != 0 || (sql = strstr(sql, "INTO")) == NULL)
        return;
    for (sql += 4; *sql == ' '; sql++)
        ;
    for (; *sql != '\0' && *sql != ' ' && *sql != '(' && t + 1 < tablen; sql++)
        if (*sql != '`')
            table[t++] = *sql;
    table[t] = '\0';
}

/* The host[:port] of the url, whatever credentials it may hold. */
static void server_address(const char *url, char *out, size_t outlen)
{
    const char *at = strstr(url, "://"), *end, *cred;

    at = at != NULL ? at + 3 : url;
    end = at + strcspn(at, "/?#");
    cred = memchr(at, '@', (size_t)(end - at));
    if (cred != NULL)
        at = cred + 1;
    snprintf(out, outlen, "%.*s", (int)(end - at), at);
}

void ch_trace_begin(req *q)
{
    char op[32], table[128], name[176], host[256];
    char *sql;

    q->trace = sl_trace_cur;
    if (!sl_trace_on() || !q->trace.traced || q->kind == K_PING)
        return;
    sql = statement_of(q);
    operation(sql != NULL ? sql : "", op, sizeof(op), table, sizeof(table));
    snprintf(name, sizeof(name), "%s%s%s", op[0] != '\0' ? op : "clickhouse",
             table[0] != '\0' ? " " : "", table);
    q->span = sl_span_begin(NULL, SL_SPAN_CLIENT, name, NULL);
    sl_span_set_str(q->span, "db.system", "clickhouse");
    sl_span_set_str(q->span, "db.system.name", "clickhouse");
    sl_span_set_str(q->span, "db.namespace", q->ch->database);
    server_address(q->ch->base, host, sizeof(host));
    sl_span_set_str(q->span, "server.address", host);
    if (op[0] != '\0')
        sl_span_set_str(q->span, "db.operation.name", op);
    if (table[0] != '\0')
        sl_span_set_str(q->span, "db.collection.name", table);
    if (sql != NULL)
        sl_span_set_str(q->span, "db.query.text", sql);
    if (q->kind == K_INSERT)
        sl_span_set_int(q->span, "http.request.body.size", (long long)q->body_len);
    free(sql);
}

void ch_trace_end(req *q, long status, int code, const char *err)
{
    if (q->span == NULL)
        return;
    sl_span_set_int(q->span, "sluice.attempts", q->attempts);
    if (status != 0)
        sl_span_set_int(q->span, "http.response.status_code", status);
    if (code != 0)
        sl_span_set_int(q->span, "db.response.status_code", code);
    if (err != NULL)
        sl_span_fail(q->span, "%s", err);
    sl_span_end(q->span);
    q->span = NULL;
}
