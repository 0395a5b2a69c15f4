/*
 * members.c - POST /segment/user
 *   {"user_id": 1, "add_segments": [...], "delete_segments": [...], "ttl": 86400}
 *   -> 200 {"segments_added": n, "segments_deleted": m}
 *
 * One transaction: an unknown slug rejects the whole request (404) and
 * changes nothing.  An unknown user id up to max_user_id is created
 * (joining its rollout segments like any new user); above it, 400.  The user's row is locked first, so
 * concurrent requests for one user run one after the other instead of
 * deadlocking; a serialization failure or deadlock that still happens
 * (against DELETE /segment or the sweeper) retries the transaction.
 * Memberships already expired are removed first, exactly as the sweeper
 * would, so that adding one again is a real re-add.  Adding a membership
 * the user has only updates its expiry; that is not a change (0 added).
 * After the commit, memberships with a ttl are scheduled in Redis.
 *
 * Four prepared statements, each one round trip (the connector runs a
 * transaction's statements one after the other): create the user if
 * needed; lock it and find an unknown slug; remove the expired and the
 * deleted memberships; add.  Fewer round trips is what a write costs
 * least in, so statements that can share one do.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "seg.h"

#define ARRAY_MAX (SEG_LIST_MAX * (SEG_SLUG_MAX + 1) + 3)

typedef struct {
    char id[24], ttl[24], max_id[24];
    char add[ARRAY_MAX], del[ARRAY_MAX], all[2 * ARRAY_MAX];
} change_params;

/* Create the user if unknown and its id at most max_user_id (with its
 * rollout memberships), and keep the sequence ahead of explicit ids.  The
 * bound keeps SEG_ID_MAX - max_user_id ids for POST /user whatever ids
 * callers choose: the sequence never passes what a client can address.
 * (The CTE runs whether or not the SELECT reads it.) */
static const char SQL_CREATE[] =
        "WITH u AS (INSERT INTO users (id) SELECT $1::bigint"
        "           WHERE $1::bigint <= $2::bigint"
        "           ON CONFLICT (id) DO NOTHING RETURNING id),"
        " m AS (INSERT INTO user_segments (user_id, slug)"
        "       SELECT u.id, s.slug FROM u, segments s"
        "       WHERE s.user_percent IS NOT NULL"
        "         AND segments_bucket(u.id, s.slug) < round(s.user_percent * 100)"
        "       ORDER BY s.slug)"
        " SELECT setval('users_id_seq', $1::bigint)"
        " WHERE $1::bigint > (SELECT last_value FROM users_id_seq)"
        "   AND $1::bigint <= $2::bigint";

/* No row: no such user.  Else the first unknown slug, or NULL.  NO KEY
 * UPDATE: requests for one user queue on it, while the foreign-key checks
 * (KEY SHARE) of a rollout do not.  A statement of its own, after
 * SQL_CREATE: a statement does not see rows its own CTEs inserted. */
static const char SQL_LOCK[] =
        "SELECT (SELECT s FROM unnest($2::text[]) AS s"
        "        WHERE NOT EXISTS (SELECT 1 FROM segments WHERE slug = s) ORDER BY s LIMIT 1)"
        " FROM users WHERE id = $1 FOR NO KEY UPDATE";

/* Expired memberships leave as the sweeper would remove them (so adding
 * one again is a real re-add), with those to delete; only the latter
 * count as deleted. */
static const char SQL_PURGE[] =
        "WITH d AS (DELETE FROM user_segments"
        "           WHERE user_id = $1 AND (expires_at <= now() OR slug = ANY ($2::text[]))"
        "           RETURNING expires_at)"
        " SELECT count(*) FILTER (WHERE expires_at IS NULL OR expires_at > now()) FROM d";

static const char SQL_ADD[] =
        "INSERT INTO user_segments (user_id, slug, expires_at)"
        " SELECT $1, s, CASE WHEN $3::bigint > 0"
        "                THEN now() + make_interval(secs => $3::bigint) END"
        " FROM unnest($2::text[]) AS s ORDER BY s"
        " ON CONFLICT (user_id, slug) DO UPDATE SET expires_at = EXCLUDED.expires_at"
        " RETURNING xmax = 0, slug, extract(epoch FROM expires_at)";

static void fill(const seg_call *c, change_params *p)
{
    char both[2 * SEG_LIST_MAX][SEG_SLUG_MAX + 1];

    snprintf(p->id, sizeof(p->id), "%lld", c->ch.user_id);
    snprintf(p->ttl, sizeof(p->ttl), "%lld", c->ch.ttl);
    snprintf(p->max_id, sizeof(p->max_id), "%lld", c->s->max_user_id);
    seg_slug_array((char(*)[SEG_SLUG_MAX + 1]) c->ch.add, c->ch.nadd, p->add, sizeof(p->add));
    seg_slug_array((char(*)[SEG_SLUG_MAX + 1]) c->ch.del, c->ch.ndel, p->del, sizeof(p->del));
    memcpy(both, c->ch.add, c->ch.nadd * sizeof(both[0]));
    memcpy(both + c->ch.nadd, c->ch.del, c->ch.ndel * sizeof(both[0]));
    seg_slug_array(both, c->ch.nadd + c->ch.ndel, p->all, sizeof(p->all));
}

static void changed(seg_call *c)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddNumberToObject(o, "segments_added", (double)c->n1);
    cJSON_AddNumberToObject(o, "segments_deleted", (double)c->n2);
    /* Even with nothing added or deleted: a TTL may have been refreshed,
     * or the user created with its rollout memberships. */
    seg_cache_forget(c->s, c->ch.user_id);
    /* Schedule what carries a ttl: "user:slug score" lines. */
    if (c->expiries != NULL) {
        const char *members[SEG_LIST_MAX], *scores[SEG_LIST_MAX];
        size_t n = 0;
        for (char *line = strtok(c->expiries, "\n"); line != NULL && n < SEG_LIST_MAX;
             line = strtok(NULL, "\n")) {
            char *sp = strchr(line, ' ');
            if (sp == NULL)
                continue;
            *sp = '\0';
            members[n] = line;
            scores[n++] = sp + 1;
        }
        seg_ttl_schedule(c->s, members, scores, n);
    }
    seg_reply(c, 200, o);
}

static void on_added(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;
    size_t cap, at = 0;

    (void)pg;
    if (seg_stmt_failed(c, res, err)) {
        /* a segment deleted since the check: its foreign key fails */
        if (strcmp(c->sqlstate, "23503") == 0)
            return seg_tx_reject(c, 404, "a segment of add_segments was deleted meanwhile");
        return seg_tx_end(c);
    }
    free(c->expiries);
    c->expiries = NULL;
    cap = (size_t)sl_pg_nrows(res) * 128 + 1;
    if (c->ch.ttl > 0 && (c->expiries = malloc(cap)) != NULL)
        c->expiries[0] = '\0';
    for (int r = 0; r < sl_pg_nrows(res); r++) {
        const char *ins = sl_pg_value(res, r, 0), *slug = sl_pg_value(res, r, 1),
                   *exp = sl_pg_value(res, r, 2);
        if (ins != NULL && strcmp(ins, "t") == 0)
            c->n1++;
        if (c->expiries != NULL && slug != NULL && exp != NULL && at < cap)
            at += (size_t)snprintf(c->expiries + at, cap - at, "%lld:%s %s\n", c->ch.user_id, slug,
                                   exp);
    }
    seg_tx_end(c);
}

static void on_purged(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;

    (void)pg;
    if (!seg_stmt_failed(c, res, err))
        c->n2 = strtoll(sl_pg_value(res, 0, 0), NULL, 10);
    if (c->ch.nadd == 0)
        seg_tx_end(c);
}

static void on_locked(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;
    seg *s = c->s;
    change_params p;
    const char *pd[2], *pa[3];

    (void)pg;
    if (seg_stmt_failed(c, res, err))
        return seg_tx_end(c);
    if (sl_pg_nrows(res) == 0)
        return seg_tx_reject(c, 400,
                             "user %lld does not exist, and users are created on demand only with "
                             "an id from 1 to %lld (max_user_id)",
                             c->ch.user_id, s->max_user_id);
    if (sl_pg_value(res, 0, 0) != NULL)
        return seg_tx_reject(c, 404, "no segment %s", sl_pg_value(res, 0, 0));
    fill(c, &p);
    pd[0] = p.id, pd[1] = p.del;
    pa[0] = p.id, pa[1] = p.add, pa[2] = p.ttl;
    if (sl_pg_tx_exec(c->tx, s->st[SEG_ST_CHANGE_PURGE], 2, pd, on_purged, c) != 0)
        return seg_tx_end(c);
    if (c->ch.nadd > 0 && sl_pg_tx_exec(c->tx, s->st[SEG_ST_CHANGE_ADD], 3, pa, on_added, c) != 0)
        return seg_tx_end(c);
}

static void change_begin(seg_call *c)
{
    seg *s = c->s;
    change_params p;
    const char *pu[2], *pl[2];

    fill(c, &p);
    pu[0] = p.id;
    pu[1] = p.max_id;
    pl[0] = p.id;
    pl[1] = p.all;
    /* Queued together: one wait for a connection. */
    if (sl_pg_tx_exec(c->tx, s->st[SEG_ST_CHANGE_CREATE], 2, pu, NULL, NULL) != 0 ||
        sl_pg_tx_exec(c->tx, s->st[SEG_ST_CHANGE_LOCK], 2, pl, on_locked, c) != 0)
        seg_tx_end(c);
}

static void serve_change(sl_req *req, void *arg)
{
    seg_call *c = seg_call_new(arg, req, SEG_R_CHANGE);
    char why[256];
    cJSON *body;

    if (c == NULL || seg_ready(c, serve_change) != 0 || (body = seg_body_json(c)) == NULL)
        return;
    if (seg_parse_change(body, &c->ch, why, sizeof(why)) != 0)
        return seg_error(c, 400, "%s", why);
    c->begin = change_begin;
    c->done = changed;
    seg_tx_run(c);
}

int seg_members_routes(seg *s)
{
    static const seg_sql sql[] = {
        { SEG_ST_CHANGE_CREATE, "segments_change_create", SQL_CREATE },
        { SEG_ST_CHANGE_LOCK, "segments_change_lock", SQL_LOCK },
        { SEG_ST_CHANGE_PURGE, "segments_change_purge", SQL_PURGE },
        { SEG_ST_CHANGE_ADD, "segments_change_add", SQL_ADD },
    };

    if (seg_prepare(s, sql, sizeof(sql) / sizeof(sql[0])) != 0)
        return -1;
    return sl_route_scoped(s->ctx, SL_POST, "/segment/user", SL_SCOPE_WRITE, s->max_body,
                           serve_change, s);
}
