/*
 * ttl.c - expiry: a Redis sorted set (member "user:slug", score the
 * expiry as epoch seconds) drives a sweeper on the loop.
 *
 * Every sweep_interval the sweeper takes the due members (score <= now),
 * deletes those memberships in PostgreSQL only where they are still due
 * (expires_at <= that now: a refreshed ttl is left alone), which writes their
 * history D rows and outbox events through the trigger like any removal,
 * then drops them from the schedule only if their score did not change
 * meanwhile (a Lua compare-and-delete, so a concurrent refresh survives).
 *
 * PostgreSQL is the source of truth.  A marker key sits beside the
 * schedule; when it is missing (Redis flushed or restarted empty) or a
 * ZADD failed, the schedule is rebuilt from expires_at, page by page,
 * before the marker is set again.  While Redis is unreachable the sweeper
 * removes due memberships straight from PostgreSQL.  Reads never depend
 * on it: GET /segment/user/{id} filters on expires_at itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "seg.h"

#define REBUILD_PAGE 1000

static const char ZREM_IF_SAME[] =
        "local n = 0 "
        "for i = 1, #ARGV, 2 do "
        "  if redis.call('ZSCORE', KEYS[1], ARGV[i]) == ARGV[i + 1] then "
        "    n = n + redis.call('ZREM', KEYS[1], ARGV[i]) end end "
        "return n";

/* $1 users, $2 slugs, $3 the time they were chosen by (see on_due). */
static const char SQL_TTL_REMOVE[] =
        "DELETE FROM user_segments us USING unnest($1::bigint[], $2::text[]) AS d(u, s)"
        " WHERE us.user_id = d.u AND us.slug = d.s"
        "   AND us.expires_at <= to_timestamp($3::double precision) + interval '1 ms'";

/* One page of the schedule's rebuild, after ($1 user, $2 slug). */
static const char SQL_TTL_REBUILD[] =
        "SELECT user_id, slug, extract(epoch FROM expires_at) FROM user_segments"
        " WHERE expires_at IS NOT NULL AND (user_id, slug) > ($1::bigint, $2)"
        " ORDER BY user_id, slug LIMIT 1000";

/* Redis away: at most $1 due memberships removed by the server's clock. */
static const char SQL_TTL_FALLBACK[] =
        "DELETE FROM user_segments WHERE (user_id, slug) IN"
        " (SELECT user_id, slug FROM user_segments WHERE expires_at <= now()"
        "  ORDER BY user_id, slug LIMIT $1::int FOR UPDATE SKIP LOCKED)";

static const char SQL_ACTIVE[] =
        "SELECT count(*) FROM user_segments WHERE expires_at IS NULL OR expires_at > now()";

static void sweep_done(seg *s)
{
    s->sweeping = 0;
}

void seg_ttl_schedule(seg *s, const char *const *members, const char *const *scores, size_t n)
{
    const char *argv[2 + 2 * SEG_LIST_MAX];
    int argc = 0;

    if (n == 0)
        return;
    argv[argc++] = "ZADD";
    argv[argc++] = s->ttl_key;
    for (size_t i = 0; i < n && i < SEG_LIST_MAX; i++) {
        argv[argc++] = scores[i];
        argv[argc++] = members[i];
    }
    /* A lost ZADD is made good by a rebuild from PostgreSQL. */
    if (!sl_redis_connected(s->redis) ||
        sl_redis_command(s->redis, argc, argv, NULL, NULL, NULL) != 0)
        s->rebuild_needed = 1;
}

/* ------------------------------------------------------------ removal */

typedef struct {
    seg *s;
    char **members, **scores;
    size_t n;
    double oldest;
} batch;

static void batch_free(batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->members[i]);
        free(b->scores[i]);
    }
    free(b->members);
    free(b->scores);
    free(b);
}

static void on_zrem(sl_redis *r, const sl_redis_reply *reply, const char *err, void *arg)
{
    batch *b = arg;

    (void)r, (void)reply;
    if (err != NULL)
        sl_log(b->s->ctx, SL_LOG_WARN, "ttl: dropping swept members from the schedule: %s", err);
    sweep_done(b->s);
    batch_free(b);
}

static void on_removed(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    batch *b = arg;
    seg *s = b->s;
    const char **argv;
    int argc = 0;

    (void)pg;
    if (err != NULL) {
        /* retried on the next tick: the members are still scheduled */
        sl_log(s->ctx, SL_LOG_WARN, "ttl: removing expired memberships: %s", err);
        sweep_done(s);
        batch_free(b);
        return;
    }
    if (sl_pg_affected(res) > 0) {
        sl_series_add(s->s_removals, (double)sl_pg_affected(res));
        sl_series_set(s->s_lag, sl_wall() - b->oldest);
    }
    argv = malloc((4 + 2 * b->n) * sizeof(*argv));
    if (argv == NULL) {
        sweep_done(s);
        batch_free(b);
        return;
    }
    argv[argc++] = "EVAL";
    argv[argc++] = ZREM_IF_SAME;
    argv[argc++] = "1";
    argv[argc++] = s->ttl_key;
    for (size_t i = 0; i < b->n; i++) {
        argv[argc++] = b->members[i];
        argv[argc++] = b->scores[i];
    }
    if (sl_redis_command(s->redis, argc, argv, NULL, on_zrem, b) != 0) {
        sweep_done(s);
        batch_free(b);
    }
    free(argv);
}

/* Members are "user:slug"; anything else in the set is not ours. */
static int split_member(const char *m, char *user, size_t ulen, char *slug)
{
    const char *colon = strchr(m, ':');
    long long id;
    char why[128];

    if (colon == NULL || (size_t)(colon - m) >= ulen)
        return -1;
    memcpy(user, m, (size_t)(colon - m));
    user[colon - m] = '\0';
    if (seg_parse_id_text(user, &id, why, sizeof(why)) != 0 ||
        seg_slug_check(colon + 1, why, sizeof(why)) != 0)
        return -1;
    strcpy(slug, colon + 1);
    return 0;
}

static void on_due(sl_redis *r, const sl_redis_reply *reply, const char *err, void *arg)
{
    seg *s = arg;
    size_t len = reply != NULL ? sl_redis_reply_len(reply) : 0;
    batch *b;
    char *users, *slugs;
    size_t ucap, scap, ua = 1, sa = 1;
    const char *p[3];

    (void)r;
    if (err != NULL || len < 2) {
        sweep_done(s);
        return;
    }
    b = calloc(1, sizeof(*b));
    ucap = len / 2 * 24 + 3;
    scap = len / 2 * (SEG_SLUG_MAX + 1) + 3;
    users = malloc(ucap);
    slugs = malloc(scap);
    if (b == NULL || users == NULL || slugs == NULL ||
        (b->members = calloc(len / 2, sizeof(char *))) == NULL ||
        (b->scores = calloc(len / 2, sizeof(char *))) == NULL) {
        free(users), free(slugs);
        if (b != NULL)
            batch_free(b);
        sweep_done(s);
        return;
    }
    b->s = s;
    b->oldest = strtod(sl_redis_reply_str(sl_redis_reply_at(reply, 1), NULL), NULL);
    users[0] = '{', slugs[0] = '{';
    for (size_t i = 0; i + 1 < len; i += 2) {
        const char *m = sl_redis_reply_str(sl_redis_reply_at(reply, i), NULL);
        const char *sc = sl_redis_reply_str(sl_redis_reply_at(reply, i + 1), NULL);
        char user[24], slug[SEG_SLUG_MAX + 1];
        if (m == NULL || sc == NULL)
            continue;
        b->members[b->n] = strdup(m);
        b->scores[b->n] = strdup(sc);
        if (b->members[b->n] == NULL || b->scores[b->n] == NULL) {
            free(b->members[b->n]), free(b->scores[b->n]);
            break;
        }
        b->n++;
        if (split_member(m, user, sizeof(user), slug) != 0)
            continue; /* dropped from the schedule without a removal */
        ua += (size_t)snprintf(users + ua, ucap - ua, "%s%s", ua > 1 ? "," : "", user);
        sa += (size_t)snprintf(slugs + sa, scap - sa, "%s%s", sa > 1 ? "," : "", slug);
    }
    snprintf(users + ua, ucap - ua, "}");
    snprintf(slugs + sa, scap - sa, "}");
    p[0] = users, p[1] = slugs, p[2] = s->sweep_now;
    /* Due by the clock that chose them (the schedule's, ours), not the
     * server's: with skewed clocks a member dropped from the schedule
     * would otherwise never be removed.  The millisecond covers the
     * score's rounding to a double; a refreshed ttl is far later. */
    if (sl_pg_exec(s->pg, s->st[SEG_ST_TTL_REMOVE], 3, p, on_removed, b) != 0) {
        batch_free(b);
        sweep_done(s);
    }
    free(users);
    free(slugs);
}

/* ------------------------------------------------------------ rebuild */

static void rebuild_page(seg *s);

static void on_marker_set(sl_redis *r, const sl_redis_reply *reply, const char *err, void *arg)
{
    seg *s = arg;

    (void)r, (void)reply;
    if (err == NULL) {
        sl_series_add(s->s_rebuilds, 1);
        sl_log(s->ctx, SL_LOG_INFO, "ttl: schedule rebuilt from PostgreSQL");
    }
    sweep_done(s);
}

static void on_rebuild_rows(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg *s = arg;
    int n = err == NULL ? sl_pg_nrows(res) : 0;
    const char **argv;
    char(*members)[24 + SEG_SLUG_MAX + 2];
    int argc = 0;

    (void)pg;
    if (err != NULL) {
        sl_log(s->ctx, SL_LOG_WARN, "ttl: rebuilding the schedule: %s", err);
        s->rebuild_needed = 1;
        sweep_done(s);
        return;
    }
    if (n == 0) {
        const char *argv1[3] = { "SET", s->marker_key, "1" };
        if (sl_redis_command(s->redis, 3, argv1, NULL, on_marker_set, s) != 0)
            sweep_done(s);
        return;
    }
    argv = malloc((size_t)(2 + 2 * n) * sizeof(*argv));
    members = malloc((size_t)n * sizeof(*members));
    if (argv == NULL || members == NULL) {
        free(argv), free(members);
        s->rebuild_needed = 1;
        sweep_done(s);
        return;
    }
    argv[argc++] = "ZADD";
    argv[argc++] = s->ttl_key;
    for (int i = 0; i < n; i++) {
        snprintf(members[i], sizeof(members[i]), "%s:%s", sl_pg_value(res, i, 0),
                 sl_pg_value(res, i, 1));
        argv[argc++] = sl_pg_value(res, i, 2);
        argv[argc++] = members[i];
    }
    snprintf(s->rebuild_after_user, sizeof(s->rebuild_after_user), "%s",
             sl_pg_value(res, n - 1, 0));
    snprintf(s->rebuild_after_slug, sizeof(s->rebuild_after_slug), "%s",
             sl_pg_value(res, n - 1, 1));
    if (sl_redis_command(s->redis, argc, argv, NULL, NULL, NULL) != 0) {
        s->rebuild_needed = 1;
        sweep_done(s);
    } else {
        rebuild_page(s);
    }
    free(argv);
    free(members);
}

static void rebuild_page(seg *s)
{
    const char *p[2] = { s->rebuild_after_user, s->rebuild_after_slug };

    if (sl_pg_exec(s->pg, s->st[SEG_ST_TTL_REBUILD], 2, p, on_rebuild_rows, s) != 0) {
        s->rebuild_needed = 1;
        sweep_done(s);
    }
}

static void rebuild(seg *s)
{
    s->rebuild_needed = 0;
    strcpy(s->rebuild_after_user, "0");
    s->rebuild_after_slug[0] = '\0';
    rebuild_page(s);
}

/* -------------------------------------------------------------- ticks */

static void on_marker(sl_redis *r, const sl_redis_reply *reply, const char *err, void *arg)
{
    seg *s = arg;
    char now[32], limit[16];
    const char *argv[8];

    (void)r;
    if (err != NULL) {
        sweep_done(s);
        return;
    }
    if (sl_redis_reply_integer(reply) == 0 || s->rebuild_needed) {
        rebuild(s);
        return;
    }
    snprintf(now, sizeof(now), "%.6f", sl_wall());
    snprintf(s->sweep_now, sizeof(s->sweep_now), "%s", now);
    snprintf(limit, sizeof(limit), "%d", s->sweep_batch);
    argv[0] = "ZRANGEBYSCORE", argv[1] = s->ttl_key, argv[2] = "-inf", argv[3] = now;
    argv[4] = "WITHSCORES", argv[5] = "LIMIT", argv[6] = "0", argv[7] = limit;
    if (sl_redis_command(s->redis, 8, argv, NULL, on_due, s) != 0)
        sweep_done(s);
}

static void on_fallback(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg *s = arg;

    (void)pg;
    if (err == NULL && sl_pg_affected(res) > 0)
        sl_series_add(s->s_removals, (double)sl_pg_affected(res));
    sweep_done(s);
}

void seg_sweep_tick(void *arg)
{
    seg *s = arg;
    char limit[16];
    const char *p[1] = { limit };
    const char *argv[2] = { "EXISTS", s->marker_key };

    if (s->sweeping || !s->migrated || !sl_pg_ready(s->pg))
        return;
    s->sweeping = 1;
    if (sl_redis_connected(s->redis)) {
        if (sl_redis_command(s->redis, 2, argv, NULL, on_marker, s) != 0)
            sweep_done(s);
        return;
    }
    /* Redis is away: sweep from PostgreSQL, and rebuild once it is back. */
    s->rebuild_needed = 1;
    snprintf(limit, sizeof(limit), "%d", s->sweep_batch);
    if (sl_pg_exec(s->pg, s->st[SEG_ST_TTL_FALLBACK], 1, p, on_fallback, s) != 0)
        sweep_done(s);
}

/* ------------------------------------------------------------- gauges */

static void on_active(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg *s = arg;

    (void)pg;
    if (err == NULL && sl_pg_value(res, 0, 0) != NULL)
        sl_series_set(s->s_active, strtod(sl_pg_value(res, 0, 0), NULL));
    s->gauge_busy &= ~1;
}

static void on_zcard(sl_redis *r, const sl_redis_reply *reply, const char *err, void *arg)
{
    seg *s = arg;

    (void)r;
    if (err == NULL)
        sl_series_set(s->s_scheduled, (double)sl_redis_reply_integer(reply));
    s->gauge_busy &= ~2;
}

static void gauge_tick(void *arg)
{
    seg *s = arg;
    const char *argv[2] = { "ZCARD", s->ttl_key };

    if (!s->migrated)
        return;
    if (!(s->gauge_busy & 1) && sl_pg_exec(s->pg, s->st[SEG_ST_ACTIVE], 0, NULL, on_active, s) == 0)
        s->gauge_busy |= 1;
    if (!(s->gauge_busy & 2) && sl_redis_connected(s->redis) &&
        sl_redis_command(s->redis, 2, argv, NULL, on_zcard, s) == 0)
        s->gauge_busy |= 2;
}

int seg_ttl_start(seg *s)
{
    static const seg_sql sql[] = {
        { SEG_ST_TTL_REMOVE, "segments_ttl_remove", SQL_TTL_REMOVE },
        { SEG_ST_TTL_REBUILD, "segments_ttl_rebuild", SQL_TTL_REBUILD },
        { SEG_ST_TTL_FALLBACK, "segments_ttl_fallback", SQL_TTL_FALLBACK },
        { SEG_ST_ACTIVE, "segments_active", SQL_ACTIVE },
    };

    if (seg_prepare(s, sql, sizeof(sql) / sizeof(sql[0])) != 0)
        return -1;
    s->rebuild_needed = 1; /* take what PostgreSQL holds at start */
    s->sweep_timer = sl_timer_new(s->ctx, s->sweep_interval, 1, seg_sweep_tick, s);
    s->gauge_timer = sl_timer_new(s->ctx, 2.0, 1, gauge_tick, s);
    return s->sweep_timer != NULL && s->gauge_timer != NULL ? 0 : -1;
}
