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

static void fill(const seg_call *c, change_params *p)
{
    char both[2 * SEG_LIST_MAX][SEG_SLUG_MAX + 1];

    snprintf(p->id, sizeof(p->id), "%lld", c->ch.user_id);
    snprintf(p->ttl, sizeof(p->ttl), "%lld", c->ch.ttl);
    snprintf(p->max_id, sizeof(p->max_id), "%lld", c->s->max_user_id);
    seg_slug_array((char (*)[SEG_SLUG_MAX + 1])c->ch.add, c->ch.nadd, p->add, sizeof(p->add));
    seg_slug_array((char (*)[SEG_SLUG_MAX + 1])c->ch.del, c->ch.ndel, p->del, sizeof(p->del));
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
            at += (size_t)snprintf(c->expiries + at, cap - at, "%lld:%s %s\n", c->ch.user_id,
                                   slug, exp);
    }
    seg_tx_end(c);
}

static void on_deleted(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;

    (void)pg;
    if (!seg_stmt_failed(c, res, err))
        c->n2 = sl_pg_affected(res);
    if (c->ch.nadd == 0)
        seg_tx_end(c);
}

static void on_unknown(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;
    change_params p;
    const char *pd[2], *pa[3];

    (void)pg;
    if (seg_stmt_failed(c, res, err))
        return seg_tx_end(c);
    if (strcmp(sl_pg_value(res, 0, 0), "f") == 0)
        return seg_tx_reject(c, 400,
                             "user %lld does not exist, and users are created on demand only with an id from 1 to %lld (max_user_id)",
                             c->ch.user_id, c->s->max_user_id);
    if (sl_pg_value(res, 0, 1) != NULL)
        return seg_tx_reject(c, 404, "no segment %s", sl_pg_value(res, 0, 1));
    fill(c, &p);
    pd[0] = p.id, pd[1] = p.del;
    pa[0] = p.id, pa[1] = p.add, pa[2] = p.ttl;
    /* Expired memberships leave first, as the sweeper would remove them. */
    if (sl_pg_tx_query(c->tx, "DELETE FROM user_segments WHERE user_id = $1 AND expires_at <= now()",
                       1, pd, NULL, NULL) != 0)
        return seg_tx_end(c);
    if (c->ch.ndel > 0 &&
        sl_pg_tx_query(c->tx,
                       "DELETE FROM user_segments WHERE user_id = $1 AND slug = ANY ($2::text[])", 2,
                       pd, on_deleted, c) != 0)
        return seg_tx_end(c);
    if (c->ch.nadd > 0 &&
        sl_pg_tx_query(c->tx,
                       "INSERT INTO user_segments (user_id, slug, expires_at)"
                       " SELECT $1, s, CASE WHEN $3::bigint > 0"
                       "                THEN now() + make_interval(secs => $3::bigint) END"
                       " FROM unnest($2::text[]) AS s ORDER BY s"
                       " ON CONFLICT (user_id, slug) DO UPDATE SET expires_at = EXCLUDED.expires_at"
                       " RETURNING xmax = 0, slug, extract(epoch FROM expires_at)",
                       3, pa, on_added, c) != 0)
        return seg_tx_end(c);
}

static void change_begin(seg_call *c)
{
    change_params p;
    const char *pu[2], *ps[2];

    fill(c, &p);
    pu[0] = p.id;
    pu[1] = p.max_id;
    ps[0] = p.all;
    ps[1] = p.id;
    /* Create the user if unknown and its id at most max_user_id (with its
     * rollout memberships), keep the sequence ahead of explicit ids, lock
     * the user's row, then look for the user and unknown slugs.  Queued
     * together: one round trip's worth of waiting.  The bound keeps
     * SEG_ID_MAX - max_user_id ids for POST /user whatever ids callers
     * choose: the sequence never passes what a client can address. */
    if (sl_pg_tx_query(c->tx,
                       "WITH u AS (INSERT INTO users (id) SELECT $1::bigint"
                       "           WHERE $1::bigint <= $2::bigint"
                       "           ON CONFLICT (id) DO NOTHING RETURNING id)"
                       " INSERT INTO user_segments (user_id, slug)"
                       " SELECT u.id, s.slug FROM u, segments s"
                       " WHERE s.user_percent IS NOT NULL"
                       "   AND segments_bucket(u.id, s.slug) < round(s.user_percent * 100)"
                       " ORDER BY s.slug",
                       2, pu, NULL, NULL) != 0 ||
        sl_pg_tx_query(c->tx,
                       "SELECT setval('users_id_seq', $1::bigint)"
                       " WHERE $1::bigint > (SELECT last_value FROM users_id_seq)"
                       "   AND $1::bigint <= $2::bigint",
                       2, pu, NULL, NULL) != 0 ||
        /* NO KEY UPDATE: requests for one user queue on it, while the
         * foreign-key checks (KEY SHARE) of a rollout do not. */
        sl_pg_tx_query(c->tx, "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", 1, pu, NULL,
                       NULL) != 0 ||
        sl_pg_tx_query(c->tx,
                       "SELECT EXISTS (SELECT 1 FROM users WHERE id = $2::bigint),"
                       " (SELECT s FROM unnest($1::text[]) AS s"
                       "  WHERE NOT EXISTS (SELECT 1 FROM segments WHERE slug = s) ORDER BY s LIMIT 1)",
                       2, ps, on_unknown, c) != 0)
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
    return sl_route_scoped(s->ctx, SL_POST, "/segment/user", SL_SCOPE_WRITE, s->max_body,
                           serve_change, s);
}
