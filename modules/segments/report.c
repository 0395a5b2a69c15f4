/*
 * report.c - a user's monthly history as CSV:
 *
 *   GET /segment/history/{id}?year=2023&month=9 -> 200 {"report_link": "..."}
 *   GET /segment/reports/{name}                 -> 200 text/csv
 *       user_id,segment_slug,operation,executed_at
 *
 * The name is "<user>-<yyyy>-<mm>-<mac>.csv" with an HMAC under the install
 * secret (parse.c): it reads nothing from disk and cannot be guessed for
 * another user or month.  The body is streamed: rows are read a page at a
 * time by keyset (executed_at, id) and the next page is asked for only
 * once the previous chunk went out, so memory stays one page whatever the
 * history's size and a slow client slows the reads down.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "seg.h"

/* One page of a user's history in a UTC month; the keyset resumes after
 * the last row sent. */
static const char SQL_PAGE[] =
        "SELECT user_id, slug, operation,"
        " to_char(executed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
        " executed_at, id"
        " FROM segment_history"
        " WHERE user_id = $1"
        "   AND executed_at >= ($2::date)::timestamp AT TIME ZONE 'UTC'"
        "   AND executed_at < ($3::date)::timestamp AT TIME ZONE 'UTC'"
        "   AND ($4::timestamptz IS NULL OR (executed_at, id) > ($4::timestamptz, $5::bigint))"
        " ORDER BY executed_at, id LIMIT $6::int";

static const char SQL_USER[] = "SELECT 1 FROM users WHERE id = $1";

static void serve_history(sl_req *req, void *arg)
{
    seg *s = arg;
    seg_call *c = seg_call_new(s, req, SEG_R_HISTORY);
    char why[256], name[SEG_REPORT_NAME_MAX], link[1024];
    const char *host;
    cJSON *o;

    if (c == NULL || seg_ready(c, serve_history) != 0)
        return;
    if (seg_parse_id_text(sl_req_param(req, "id"), &c->user, why, sizeof(why)) != 0 ||
        seg_parse_period(sl_req_query(req, "year"), sl_req_query(req, "month"), &c->year, &c->month,
                         why, sizeof(why)) != 0)
        return seg_error(c, 400, "%s", why);
    seg_report_name(s->secret, c->user, c->year, c->month, name);
    host = sl_req_header(req, "Host");
    if (s->public_url[0] != '\0')
        snprintf(link, sizeof(link), "%s/segment/reports/%s", s->public_url, name);
    else if (host != NULL && strlen(host) < 256 && strpbrk(host, "/\\ \"<>") == NULL)
        snprintf(link, sizeof(link), "http://%s/segment/reports/%s", host, name);
    else
        snprintf(link, sizeof(link), "/segment/reports/%s", name);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "report_link", link);
    seg_reply(c, 200, o);
}

static void fetch(seg_call *c);
static void more(sl_req *req, void *arg);
static void finish(seg_call *c, int status);

static void watch_gone(void *arg)
{
    seg_call *c = arg;

    if (sl_req_gone(c->req) && !c->in_flight)
        finish(c, 200);
}

static void finish(seg_call *c, int status)
{
    sl_reply_end(c->req);
    seg_count(c->s, c->route, status, c->t0);
    seg_call_free(c);
}

/* CSV of one page; the values are ids, [A-Z0-9_] slugs, I/D and times,
 * so none needs quoting. */
static void on_page(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;
    int n = err == NULL ? sl_pg_nrows(res) : 0;
    size_t cap = 64, at = 0;
    char *buf;

    (void)pg;
    c->in_flight = 0;
    if (err != NULL) {
        if (!c->streaming)
            return seg_pg_error(c, res, err);
        /* Headers are gone: cut the stream short so the client sees a
         * truncated body rather than a complete-looking one. */
        sl_log(c->s->ctx, SL_LOG_WARN, "report for user %lld cut short: %s", c->user, err);
        return finish(c, 500);
    }
    /* sized from the values: history rows are not bound to the API's slugs */
    for (int r = 0; r < n; r++)
        for (int col = 0; col < 4; col++)
            cap += strlen(sl_pg_value(res, r, col) != NULL ? sl_pg_value(res, r, col) : "") + 1;
    cap += (size_t)n * 2;
    if ((buf = malloc(cap)) == NULL) {
        if (!c->streaming)
            return seg_error(c, 503, "out of memory");
        return finish(c, 500);
    }
    if (!c->streaming) {
        sl_reply_header(c->req, "Content-Disposition", "attachment");
        at += (size_t)snprintf(buf, cap, "user_id,segment_slug,operation,executed_at\r\n");
    }
    for (int r = 0; r < n && at < cap; r++)
        at += (size_t)snprintf(buf + at, cap - at, "%s,%s,%s,%s\r\n", sl_pg_value(res, r, 0),
                               sl_pg_value(res, r, 1), sl_pg_value(res, r, 2),
                               sl_pg_value(res, r, 3));
    if (at > cap - 1)
        at = cap - 1;
    if (n > 0) {
        snprintf(c->after_ts, sizeof(c->after_ts), "%s", sl_pg_value(res, n - 1, 4));
        snprintf(c->after_id, sizeof(c->after_id), "%s", sl_pg_value(res, n - 1, 5));
    }
    c->finished = n < c->s->report_page;
    if (!c->streaming) {
        c->streaming = 1;
        sl_reply_start(c->req, 200, "text/csv; charset=utf-8", more, c);
        /* A client that leaves between chunks gets no `more`: look. */
        c->watch = sl_timer_new(c->s->ctx, 1.0, 1, watch_gone, c);
    }
    if (at > 0)
        sl_reply_chunk(c->req, buf, at);
    free(buf);
    if (c->finished || sl_req_gone(c->req))
        return finish(c, 200);
}

static void more(sl_req *req, void *arg)
{
    seg_call *c = arg;

    (void)req;
    if (!c->in_flight && !c->finished)
        fetch(c);
}

static void fetch(seg_call *c)
{
    char id[24], from[32], to[32], page[16];
    const char *p[6] = { id, from, to, c->after_ts[0] ? c->after_ts : NULL, c->after_id, page };

    snprintf(id, sizeof(id), "%lld", c->user);
    snprintf(from, sizeof(from), "%04d-%02d-01", c->year, c->month);
    snprintf(to, sizeof(to), "%04d-%02d-01", c->month == 12 ? c->year + 1 : c->year,
             c->month == 12 ? 1 : c->month + 1);
    snprintf(page, sizeof(page), "%d", c->s->report_page);
    c->in_flight = 1;
    if (sl_pg_exec(c->s->pg, c->s->st[SEG_ST_REPORT_PAGE], 6, p, on_page, c) != 0) {
        c->in_flight = 0;
        if (!c->streaming)
            return seg_error(c, 503, "database unavailable: query not accepted");
        finish(c, 500);
    }
}

static void on_user(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;

    (void)pg;
    if (err != NULL)
        return seg_pg_error(c, res, err);
    if (sl_pg_nrows(res) == 0)
        return seg_error(c, 404, "no user %lld", c->user);
    fetch(c);
}

static void serve_report(sl_req *req, void *arg)
{
    seg *s = arg;
    seg_call *c = seg_call_new(s, req, SEG_R_REPORT);
    char why[128], id[24];
    const char *p[1] = { id };

    if (c == NULL || seg_ready(c, serve_report) != 0)
        return;
    if (seg_parse_report_name(s->secret, sl_req_param(req, "name"), &c->user, &c->year, &c->month,
                              why, sizeof(why)) != 0)
        return seg_error(c, 404, "%s", why);
    strcpy(c->after_id, "0");
    snprintf(id, sizeof(id), "%lld", c->user);
    if (sl_pg_exec(s->pg, s->st[SEG_ST_REPORT_USER], 1, p, on_user, c) != 0)
        seg_error(c, 503, "database unavailable: query not accepted");
}

int seg_report_routes(seg *s)
{
    static const seg_sql sql[] = {
        { SEG_ST_REPORT_USER, "segments_report_user", SQL_USER },
        { SEG_ST_REPORT_PAGE, "segments_report_page", SQL_PAGE },
    };

    if (seg_prepare(s, sql, sizeof(sql) / sizeof(sql[0])) != 0)
        return -1;
    if (sl_route_scoped(s->ctx, SL_GET, "/segment/history/{id}", SL_SCOPE_READ, 0, serve_history,
                        s) != 0 ||
        sl_route_scoped(s->ctx, SL_GET, "/segment/reports/{name}", SL_SCOPE_READ, 0, serve_report,
                        s) != 0)
        return -1;
    return 0;
}
