/*
 * api.c - users and segments:
 *
 *   POST   /user                 {} or no body -> 201 {"user_id", "segments"}
 *   POST   /segment              {"slug", "user_percent"?} -> 201 {"slug", "created_at", ...}
 *   DELETE /segment              {"slug"} -> 200 {"message": "ok", "memberships_removed"}
 *   GET    /segment              200 {"segments": [{"slug", "user_percent", "created_at", "members",
 *                                                  "description"}]}
 *
 * (GET /segment/user/{id} is lookup.c, PATCH /segment/{slug} rollout.c.)
 * A new user joins every rollout segment whose percent covers its sticky
 * bucket (segments_bucket, see schema.c), in the statement that creates it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "seg.h"

/* Creates a user and its rollout memberships in one statement.  The id
 * comes from the sequence; ids given to POST /segment/user may have been
 * taken already, which the ON CONFLICT turns into no row (then retried). */
static const char SQL_NEW_USER[] =
        "WITH u AS (INSERT INTO users (id) VALUES (nextval('users_id_seq'))"
        "           ON CONFLICT (id) DO NOTHING RETURNING id),"
        " m AS (INSERT INTO user_segments (user_id, slug)"
        "       SELECT u.id, s.slug FROM u, segments s"
        "       WHERE s.user_percent IS NOT NULL"
        "         AND segments_bucket(u.id, s.slug) < round(s.user_percent * 100)"
        "       ORDER BY s.slug RETURNING slug)"
        " SELECT (SELECT id FROM u), (SELECT count(*) FROM m)";

static const char SQL_SEGMENT_NEW[] =
        "INSERT INTO segments (slug, user_percent) VALUES ($1, $2::numeric)"
        " ON CONFLICT (slug) DO NOTHING"
        " RETURNING to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

/* A bulk change: one "*" to every read cache instead of a notification
 * per user (schema.c). */
static const char SQL_CACHE_ALL[] = "SELECT segments_cache_all()";

/* DELETE /segment locks the segment first, so a concurrent
 * POST /segment/user adding it waits (its foreign key check) instead of
 * racing the removal. */
static const char SQL_SEGMENT_LOCK[] = "SELECT 1 FROM segments WHERE slug = $1 FOR UPDATE";
static const char SQL_SEGMENT_MEMBERS[] = "DELETE FROM user_segments WHERE slug = $1";
static const char SQL_SEGMENT_DELETE[] = "DELETE FROM segments WHERE slug = $1";

/* GET /segment: each segment with its live members (expired ones are
 * still in the table until the sweeper removes them). */
static const char SQL_SEGMENT_LIST[] =
        "SELECT s.slug, s.user_percent,"
        " to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
        " count(us.user_id) FILTER (WHERE us.expires_at IS NULL OR us.expires_at > now()),"
        " s.description"
        " FROM segments s LEFT JOIN user_segments us ON us.slug = s.slug"
        " GROUP BY s.slug ORDER BY s.slug";

static void on_new_user(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg);

static void new_user(seg_call *c)
{
    if (sl_pg_exec(c->s->pg, c->s->st[SEG_ST_NEW_USER], 0, NULL, on_new_user, c) != 0)
        seg_error(c, 503, "database unavailable: query not accepted");
}

static void on_new_user(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;
    const char *id, *n;
    cJSON *o;

    (void)pg;
    if (err != NULL)
        return seg_pg_error(c, res, err);
    id = sl_pg_value(res, 0, 0);
    n = sl_pg_value(res, 0, 1);
    if (id == NULL) {
        /* the sequence handed out an id someone had set explicitly */
        if (++c->attempts < 1000)
            return new_user(c);
        return seg_error(c, 503, "could not find a free user id");
    }
    o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "user_id", strtod(id, NULL));
    cJSON_AddNumberToObject(o, "segments", n != NULL ? strtod(n, NULL) : 0);
    sl_series_add(c->s->s_assign_new, n != NULL ? strtod(n, NULL) : 0);
    seg_reply(c, 201, o);
}

static void serve_user(sl_req *req, void *arg)
{
    static const char *const none[] = { NULL };
    seg_call *c = seg_call_new(arg, req, SEG_R_USER);
    size_t len;
    char why[256];
    cJSON *body;

    if (c == NULL || seg_ready(c, serve_user) != 0)
        return;
    sl_req_body(req, &len);
    if (len > 0) { /* no fields are defined: an empty object at most */
        if ((body = seg_body_json(c)) == NULL)
            return;
        if (seg_check_fields(body, none, why, sizeof(why)) != 0)
            return seg_error(c, 400, "%s", why);
    }
    new_user(c);
}

/* ------------------------------------------------------------ segments */

static void created(seg_call *c)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "slug", c->slug);
    cJSON_AddStringToObject(o, "created_at", c->created_at);
    if (c->percent >= 0) {
        cJSON_AddNumberToObject(o, "user_percent", c->percent);
        cJSON_AddNumberToObject(o, "users_assigned", (double)c->n1);
        sl_series_add(c->s->s_assign_create, (double)c->n1);
        if (c->n1 > 0)
            seg_cache_flush(c->s);
    }
    seg_reply(c, 201, o);
}

static void on_assigned(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;

    (void)pg;
    if (!seg_stmt_failed(c, res, err))
        c->n1 = sl_pg_affected(res);
    seg_tx_end(c);
}

static void on_segment_row(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;

    (void)pg;
    if (seg_stmt_failed(c, res, err))
        return seg_tx_end(c);
    if (sl_pg_nrows(res) == 0)
        return seg_tx_reject(c, 409, "segment %s already exists", c->slug);
    snprintf(c->created_at, sizeof(c->created_at), "%s", sl_pg_value(res, 0, 0));
    if (c->percent < 0)
        return seg_tx_end(c);
    /* Exactly round(p% of the users), in the sticky order (rollout.c). */
    if (seg_rollout_fill(c, on_assigned) != 0)
        seg_tx_end(c);
}

static void create_begin(seg_call *c)
{
    seg *s = c->s;
    char pct[32];
    const char *p[2] = { c->slug, NULL };

    if (c->percent >= 0) {
        snprintf(pct, sizeof(pct), "%.2f", c->percent);
        p[1] = pct;
    }
    if ((c->percent >= 0 &&
         sl_pg_tx_exec(c->tx, s->st[SEG_ST_CACHE_ALL], 0, NULL, NULL, NULL) != 0) ||
        sl_pg_tx_exec(c->tx, s->st[SEG_ST_SEGMENT_NEW], 2, p, on_segment_row, c) != 0)
        seg_tx_end(c);
}

static void serve_create(sl_req *req, void *arg)
{
    seg_call *c = seg_call_new(arg, req, SEG_R_SEGMENT_CREATE);
    char why[256];
    cJSON *body;

    if (c == NULL || seg_ready(c, serve_create) != 0 || (body = seg_body_json(c)) == NULL)
        return;
    if (seg_parse_segment(body, c->slug, &c->percent, why, sizeof(why)) != 0)
        return seg_error(c, 400, "%s", why);
    c->begin = create_begin;
    c->done = created;
    seg_tx_run(c);
}

static void deleted(seg_call *c)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "message", "ok");
    cJSON_AddNumberToObject(o, "memberships_removed", (double)c->n1);
    if (c->n1 > 0)
        seg_cache_flush(c->s);
    seg_reply(c, 200, o);
}

static void on_members_gone(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;

    (void)pg;
    if (!seg_stmt_failed(c, res, err))
        c->n1 = sl_pg_affected(res);
}

static void on_segment_gone(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;

    (void)pg;
    if (seg_stmt_failed(c, res, err))
        return seg_tx_end(c);
    if (sl_pg_affected(res) == 0)
        return seg_tx_reject(c, 404, "no segment %s", c->slug);
    seg_tx_end(c);
}

static void delete_begin(seg_call *c)
{
    seg *s = c->s;
    const char *p[1] = { c->slug };

    if (sl_pg_tx_exec(c->tx, s->st[SEG_ST_SEGMENT_LOCK], 1, p, NULL, NULL) != 0 ||
        sl_pg_tx_exec(c->tx, s->st[SEG_ST_CACHE_ALL], 0, NULL, NULL, NULL) != 0 ||
        sl_pg_tx_exec(c->tx, s->st[SEG_ST_SEGMENT_MEMBERS], 1, p, on_members_gone, c) != 0 ||
        sl_pg_tx_exec(c->tx, s->st[SEG_ST_SEGMENT_DELETE], 1, p, on_segment_gone, c) != 0)
        seg_tx_end(c);
}

static void serve_delete(sl_req *req, void *arg)
{
    seg_call *c = seg_call_new(arg, req, SEG_R_SEGMENT_DELETE);
    char why[256];
    cJSON *body;

    if (c == NULL || seg_ready(c, serve_delete) != 0 || (body = seg_body_json(c)) == NULL)
        return;
    if (seg_parse_slug_body(body, c->slug, why, sizeof(why)) != 0)
        return seg_error(c, 400, "%s", why);
    c->begin = delete_begin;
    c->done = deleted;
    seg_tx_run(c);
}

static void on_list(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;
    cJSON *o, *arr;

    (void)pg;
    if (err != NULL)
        return seg_pg_error(c, res, err);
    o = cJSON_CreateObject();
    arr = cJSON_AddArrayToObject(o, "segments");
    for (int r = 0; r < sl_pg_nrows(res); r++) {
        cJSON *it = cJSON_CreateObject();
        const char *pct = sl_pg_value(res, r, 1);
        cJSON_AddStringToObject(it, "slug", sl_pg_value(res, r, 0));
        if (pct != NULL)
            cJSON_AddNumberToObject(it, "user_percent", strtod(pct, NULL));
        else
            cJSON_AddNullToObject(it, "user_percent");
        cJSON_AddStringToObject(it, "created_at", sl_pg_value(res, r, 2));
        cJSON_AddNumberToObject(it, "members", strtod(sl_pg_value(res, r, 3), NULL));
        if (sl_pg_value(res, r, 4) != NULL)
            cJSON_AddStringToObject(it, "description", sl_pg_value(res, r, 4));
        else
            cJSON_AddNullToObject(it, "description");
        cJSON_AddItemToArray(arr, it);
    }
    seg_reply(c, 200, o);
}

static void serve_list(sl_req *req, void *arg)
{
    seg_call *c = seg_call_new(arg, req, SEG_R_SEGMENT_LIST);

    if (c == NULL || seg_ready(c, serve_list) != 0)
        return;
    if (sl_pg_exec(c->s->pg, c->s->st[SEG_ST_SEGMENT_LIST], 0, NULL, on_list, c) != 0)
        seg_error(c, 503, "database unavailable: query not accepted");
}

int seg_api_routes(seg *s)
{
    static const seg_sql sql[] = {
        { SEG_ST_NEW_USER, "segments_new_user", SQL_NEW_USER },
        { SEG_ST_SEGMENT_NEW, "segments_segment_new", SQL_SEGMENT_NEW },
        { SEG_ST_CACHE_ALL, "segments_cache_all", SQL_CACHE_ALL },
        { SEG_ST_SEGMENT_LOCK, "segments_segment_lock", SQL_SEGMENT_LOCK },
        { SEG_ST_SEGMENT_MEMBERS, "segments_segment_members", SQL_SEGMENT_MEMBERS },
        { SEG_ST_SEGMENT_DELETE, "segments_segment_delete", SQL_SEGMENT_DELETE },
        { SEG_ST_SEGMENT_LIST, "segments_segment_list", SQL_SEGMENT_LIST },
    };

    if (seg_prepare(s, sql, sizeof(sql) / sizeof(sql[0])) != 0)
        return -1;
    if (sl_route_scoped(s->ctx, SL_POST, "/user", SL_SCOPE_WRITE, s->max_body, serve_user, s) !=
                0 ||
        sl_route_scoped(s->ctx, SL_POST, "/segment", SL_SCOPE_WRITE, s->max_body, serve_create,
                        s) != 0 ||
        sl_route_scoped(s->ctx, SL_DELETE, "/segment", SL_SCOPE_WRITE, s->max_body, serve_delete,
                        s) != 0 ||
        sl_route_scoped(s->ctx, SL_GET, "/segment", SL_SCOPE_READ, 0, serve_list, s) != 0)
        return -1;
    return 0;
}
