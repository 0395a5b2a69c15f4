/*
 * rollout.c - changing a segment: PATCH /segment/{slug}
 *   {"user_percent": P or null, "description": D or null}
 *   -> 200 {"slug", "user_percent", "description", "created_at",
 *           "users_added", "users_removed", "members"}
 *
 * A rollout holds exactly round(P% of the users) members, chosen in the
 * sticky order (segments_bucket(user, slug), user id) that a new user's
 * bucket also follows: growing it adds the first users in that order who
 * are not members yet (every member stays), shrinking it removes the last
 * members in that order, so the same change always removes the same users.
 * POST /segment with a percent fills the new segment by the same statement.
 * Every membership added or removed writes its history row and outbox
 * event through the user_segments trigger; the segment's own change writes
 * segment_updated (schema.c).  null ends the rollout (new users no longer
 * join) and leaves the members as they are.
 *
 * One transaction: the segment's row is locked first, so two changes of
 * one segment (or a change and DELETE /segment) run one after the other;
 * memberships already expired are removed first, as the sweeper would,
 * so that they are counted neither as members nor as free users twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "seg.h"

static const char SQL_EXPIRED[] =
        "DELETE FROM user_segments WHERE slug = $1 AND expires_at <= now()";

/* $2: the percent; a field not given keeps its value ($3, $5 false). */
static const char SQL_UPDATE[] =
        "UPDATE segments SET"
        " user_percent = CASE WHEN $3::boolean THEN $2::numeric ELSE user_percent END,"
        " description = CASE WHEN $5::boolean THEN $4::text ELSE description END"
        " WHERE slug = $1"
        " RETURNING user_percent::text, description,"
        " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

static const char SQL_GROW[] =
        "INSERT INTO user_segments (user_id, slug)"
        " SELECT u.id, $1 FROM users u"
        " WHERE NOT EXISTS (SELECT 1 FROM user_segments m WHERE m.user_id = u.id AND m.slug = $1)"
        " ORDER BY segments_bucket(u.id, $1), u.id"
        " LIMIT greatest((SELECT round(count(*) * $2::numeric / 100) FROM users)::bigint"
        "                - (SELECT count(*) FROM user_segments WHERE slug = $1), 0)";

static const char SQL_SHRINK[] =
        "DELETE FROM user_segments WHERE slug = $1 AND user_id IN ("
        " SELECT user_id FROM user_segments WHERE slug = $1"
        " ORDER BY segments_bucket(user_id, $1) DESC, user_id DESC"
        " LIMIT greatest((SELECT count(*) FROM user_segments WHERE slug = $1)"
        "                - (SELECT round(count(*) * $2::numeric / 100) FROM users)::bigint, 0))";

static const char SQL_MEMBERS[] = "SELECT count(*) FROM user_segments WHERE slug = $1";

int seg_rollout_prepare(seg *s)
{
    static const seg_sql sql[] = {
        { SEG_ST_ROLLOUT_EXPIRED, "rollout_expired", SQL_EXPIRED },
        { SEG_ST_ROLLOUT_UPDATE, "rollout_update", SQL_UPDATE },
        { SEG_ST_ROLLOUT_GROW, "rollout_grow", SQL_GROW },
        { SEG_ST_ROLLOUT_SHRINK, "rollout_shrink", SQL_SHRINK },
        { SEG_ST_ROLLOUT_MEMBERS, "rollout_members", SQL_MEMBERS },
    };

    return seg_prepare(s, sql, sizeof(sql) / sizeof(sql[0]));
}

int seg_rollout_fill(seg_call *c, sl_pg_fn fn)
{
    char pct[32];
    const char *p[2] = { c->slug, pct };

    snprintf(pct, sizeof(pct), "%.2f", c->percent);
    return sl_pg_tx_exec(c->tx, c->s->st[SEG_ST_ROLLOUT_GROW], 2, p, fn, c);
}

static void updated(seg_call *c)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "slug", c->slug);
    if (c->had_percent)
        cJSON_AddNumberToObject(o, "user_percent", c->percent);
    else
        cJSON_AddNullToObject(o, "user_percent");
    if (c->has_desc_out)
        cJSON_AddStringToObject(o, "description", c->desc_out);
    else
        cJSON_AddNullToObject(o, "description");
    cJSON_AddStringToObject(o, "created_at", c->created_at);
    cJSON_AddNumberToObject(o, "users_added", (double)c->n1);
    cJSON_AddNumberToObject(o, "users_removed", (double)c->n2);
    cJSON_AddNumberToObject(o, "members", (double)c->members);
    sl_series_add(c->s->s_assign_update, (double)c->n1);
    if (c->n1 > 0 || c->n2 > 0)
        seg_cache_flush(c->s);
    seg_reply(c, 200, o);
}

static void on_members(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;

    (void)pg;
    if (!seg_stmt_failed(c, res, err))
        c->members = strtoll(sl_pg_value(res, 0, 0), NULL, 10);
    seg_tx_end(c);
}

static void on_grown(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;

    (void)pg;
    if (!seg_stmt_failed(c, res, err))
        c->n1 = sl_pg_affected(res);
}

static void on_shrunk(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;

    (void)pg;
    if (!seg_stmt_failed(c, res, err))
        c->n2 = sl_pg_affected(res);
}

static void on_updated(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;
    const char *p[1] = { c->slug };
    const char *pct, *desc;

    (void)pg;
    if (seg_stmt_failed(c, res, err))
        return seg_tx_end(c);
    if (sl_pg_nrows(res) == 0)
        return seg_tx_reject(c, 404, "no segment %s", c->slug);
    pct = sl_pg_value(res, 0, 0);
    desc = sl_pg_value(res, 0, 1);
    c->had_percent = pct != NULL;
    c->percent = pct != NULL ? strtod(pct, NULL) : -1;
    c->has_desc_out = desc != NULL;
    snprintf(c->desc_out, sizeof(c->desc_out), "%s", desc != NULL ? desc : "");
    snprintf(c->created_at, sizeof(c->created_at), "%s", sl_pg_value(res, 0, 2));
    /* Only a percent given moves members: a description alone does not. */
    if (c->patch.set_percent && c->percent >= 0) {
        char pct2[32];
        const char *pr[2] = { c->slug, pct2 };
        snprintf(pct2, sizeof(pct2), "%.2f", c->percent);
        if (sl_pg_tx_exec(c->tx, c->s->st[SEG_ST_ROLLOUT_GROW], 2, pr, on_grown, c) != 0 ||
            sl_pg_tx_exec(c->tx, c->s->st[SEG_ST_ROLLOUT_SHRINK], 2, pr, on_shrunk, c) != 0)
            return seg_tx_end(c);
    }
    if (sl_pg_tx_exec(c->tx, c->s->st[SEG_ST_ROLLOUT_MEMBERS], 1, p, on_members, c) != 0)
        seg_tx_end(c);
}

static void update_begin(seg_call *c)
{
    seg *s = c->s;
    char pct[32];
    const char *p[5] = { c->slug, NULL, c->patch.set_percent ? "t" : "f",
                         c->patch.has_description ? c->patch.description : NULL,
                         c->patch.set_description ? "t" : "f" };

    if (c->patch.set_percent && c->patch.percent >= 0) {
        snprintf(pct, sizeof(pct), "%.2f", c->patch.percent);
        p[1] = pct;
    }
    /* A new percent may move many users: one "*" for every cache (the
     * row triggers then stay quiet in this transaction). */
    if (sl_pg_tx_exec(c->tx, s->st[SEG_ST_SEGMENT_LOCK], 1, p, NULL, NULL) != 0 ||
        (c->patch.set_percent && c->patch.percent >= 0 &&
         sl_pg_tx_exec(c->tx, s->st[SEG_ST_CACHE_ALL], 0, NULL, NULL, NULL) != 0) ||
        sl_pg_tx_exec(c->tx, s->st[SEG_ST_ROLLOUT_EXPIRED], 1, p, NULL, NULL) != 0 ||
        sl_pg_tx_exec(c->tx, s->st[SEG_ST_ROLLOUT_UPDATE], 5, p, on_updated, c) != 0)
        seg_tx_end(c);
}

static void serve_update(sl_req *req, void *arg)
{
    seg_call *c = seg_call_new(arg, req, SEG_R_SEGMENT_UPDATE);
    const char *slug = sl_req_param(req, "slug");
    char why[256];
    cJSON *body;

    if (c == NULL || seg_ready(c, serve_update) != 0)
        return;
    if (seg_slug_check(slug, why, sizeof(why)) != 0)
        return seg_error(c, 400, "%s", why);
    snprintf(c->slug, sizeof(c->slug), "%s", slug);
    if ((body = seg_body_json(c)) == NULL)
        return;
    if (seg_parse_patch(body, &c->patch, why, sizeof(why)) != 0)
        return seg_error(c, 400, "%s", why);
    c->begin = update_begin;
    c->done = updated;
    seg_tx_run(c);
}

int seg_rollout_routes(seg *s)
{
    return sl_route_scoped(s->ctx, SL_PATCH, "/segment/{slug}", SL_SCOPE_WRITE, s->max_body,
                           serve_update, s);
}
