/*
 * lookup.c - GET /segment/user/{id} -> 200 {"user_id", "segments": [{"slug", "expires_at"}]}
 * served from a bounded read cache (ucache.c) kept true by PostgreSQL.
 *
 * Reads of a user's segments are what other services call on every request
 * they serve, and writes are rare, so answers are kept, with each
 * membership's expiry, and invalidated:
 *   - by this instance's own changes, before they are acknowledged
 *     (seg_cache_forget, seg_cache_flush): never a stale answer after an
 *     acknowledged change;
 *   - by NOTIFY from the transaction that wrote (the row trigger of
 *     schema.c sends each user changed, a bulk change "*"), so the
 *     other instances on the same database drop them once it commits, within
 *     the notification's delivery time;
 *   - all at once whenever a connection of the PostgreSQL handle is
 *     established or lost (sl_pg_epoch): a reconnect may reach another
 *     server (failover), and notifications sent meanwhile are lost.  While
 *     the LISTEN is not in effect nothing is served from the cache or put
 *     in it;
 *   - and by age (cache_max_age), the backstop should a notification be
 *     lost some other way.
 * Expiry is exact: an answer asked for once a membership expired is built
 * again without it (ucache.h), whatever the sweeper has done.  Unknown
 * users are not cached (a 404 is read every time).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "seg.h"
#include "ucache.h"

#define CHANNEL "segments_cache"
#define STACK_MEMBERS 64
#define STACK_ANSWER 4096

/* A miss: the memberships not expired by the database's clock, with
 * their expiry in microseconds (the answer formats it, ucache.c). */
static const char SQL_USER_SEGMENTS[] =
        "SELECT us.slug, (extract(epoch FROM us.expires_at) * 1000000)::bigint"
        " FROM users u LEFT JOIN user_segments us ON us.user_id = u.id"
        "  AND (us.expires_at IS NULL OR us.expires_at > now())"
        " WHERE u.id = $1 ORDER BY us.slug";

static int64_t wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void report(seg *s)
{
    ucache_stats st;

    if (s->cache == NULL)
        return;
    ucache_get_stats(s->cache, &st);
    sl_series_add(s->s_cache_evictions, (double)(st.evictions - s->evictions_seen));
    s->evictions_seen = st.evictions;
    sl_series_set(s->s_cache_entries, (double)st.entries);
    sl_series_set(s->s_cache_bytes, (double)st.bytes);
}

static void clear(seg *s, sl_series *why)
{
    if (s->cache == NULL)
        return;
    ucache_clear(s->cache);
    sl_series_add(why, 1);
    report(s);
}

/* The cache may be read and filled: LISTEN in effect, and no connection
 * came or went since it was last emptied. */
static int cache_live(seg *s)
{
    unsigned long long epoch;

    if (s->cache == NULL || !sl_pg_listening(s->listener))
        return 0;
    epoch = sl_pg_epoch(s->pg);
    if (epoch != s->cache_epoch) {
        s->cache_epoch = epoch;
        clear(s, s->s_inv_connection);
    }
    return 1;
}

void seg_cache_forget(seg *s, long long user)
{
    if (s->cache == NULL)
        return;
    ucache_forget(s->cache, user);
    sl_series_add(s->s_inv_change, 1);
    report(s);
}

void seg_cache_flush(seg *s)
{
    clear(s, s->s_inv_flush);
}

/* Payload: user ids separated by commas, "*" for everyone; NULL when the
 * LISTEN was (re)established, after which what was missed is unknown. */
static void on_notify(sl_pg *pg, const char *channel, const char *payload, void *arg)
{
    seg *s = arg;
    const char *p = payload;

    (void)pg;
    (void)channel;
    if (s->cache == NULL)
        return;
    if (payload == NULL) {
        s->cache_epoch = sl_pg_epoch(s->pg);
        clear(s, s->s_inv_connection);
        return;
    }
    if (strcmp(payload, "*") == 0) {
        clear(s, s->s_inv_flush);
        return;
    }
    while (*p != '\0') {
        char *end;
        long long id = strtoll(p, &end, 10);
        if (end == p) { /* not ours: be safe */
            clear(s, s->s_inv_flush);
            return;
        }
        ucache_forget(s->cache, id);
        sl_series_add(s->s_inv_change, 1);
        p = *end == ',' ? end + 1 : end;
    }
    report(s);
}

/* ------------------------------------------------------------- answers */

static void reply_answer(seg *s, sl_req *req, int64_t user, const ucache_member *m, size_t n,
                         double t0)
{
    char stack[STACK_ANSWER];
    size_t need = ucache_answer_size(m, n);
    char *buf = need <= sizeof(stack) ? stack : malloc(need);
    size_t len;

    if (buf == NULL) {
        sl_reply_error(req, 503, "out of memory");
        seg_count(s, SEG_R_USER_SEGMENTS, 503, t0);
        return;
    }
    len = ucache_answer(buf, need, user, m, n, wall_us());
    sl_reply(req, 200, "application/json", buf, len);
    sl_series_add(s->s_get_ok, 1);
    sl_series_observe(s->s_get_latency, sl_now() - t0);
    if (buf != stack)
        free(buf);
}

static void on_user_segments(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;
    seg *s = c->s;
    ucache_member stack[STACK_MEMBERS], *m = stack;
    int rows;
    size_t n = 0;

    (void)pg;
    if (err != NULL)
        return seg_pg_error(c, res, err);
    rows = sl_pg_nrows(res);
    if (rows == 0)
        return seg_error(c, 404, "no user %lld", c->user);
    if (rows > STACK_MEMBERS && (m = malloc((size_t)rows * sizeof(*m))) == NULL)
        return seg_error(c, 503, "out of memory");
    for (int r = 0; r < rows; r++) {
        const char *slug = sl_pg_value(res, r, 0), *exp = sl_pg_value(res, r, 1);
        if (slug == NULL)
            continue; /* the user row without memberships */
        m[n].slug = slug;
        m[n++].expires_us = exp != NULL ? strtoll(exp, NULL, 10) : UCACHE_NO_EXPIRY;
    }
    /* Kept only if no change to this user was seen since the question. */
    if (cache_live(s) && c->cache_ticket_ok &&
        ucache_put(s->cache, c->user, c->cache_ticket, m, n, sl_now()) != 0)
        report(s);
    reply_answer(s, c->req, c->user, m, n, c->t0);
    if (m != stack)
        free(m);
    seg_call_free(c);
}

static void serve_user_segments(sl_req *req, void *arg)
{
    seg *s = arg;
    double t0 = sl_now();
    long long user;
    char why[256], id[24];
    const char *p[1] = { id };
    const char *body;
    size_t len;
    seg_call *c;

    if (s->migrated && seg_parse_id_text(sl_req_param(req, "id"), &user, why, sizeof(why)) == 0 &&
        cache_live(s)) {
        body = ucache_get(s->cache, user, wall_us(), t0, &len);
        if (body != NULL) {
            sl_series_add(s->s_cache_hits, 1);
            sl_reply(req, 200, "application/json", body, len);
            sl_series_add(s->s_get_ok, 1);
            sl_series_observe(s->s_get_latency, sl_now() - t0);
            return;
        }
        report(s); /* an entry past its age was dropped */
    }
    c = seg_call_new(s, req, SEG_R_USER_SEGMENTS);
    if (c == NULL || seg_ready(c, serve_user_segments) != 0)
        return;
    if (seg_parse_id_text(sl_req_param(req, "id"), &c->user, why, sizeof(why)) != 0)
        return seg_error(c, 400, "%s", why);
    if (s->cache != NULL)
        sl_series_add(s->s_cache_misses, 1);
    if (cache_live(s)) {
        c->cache_ticket = ucache_ticket(s->cache, c->user);
        c->cache_ticket_ok = 1;
    }
    snprintf(id, sizeof(id), "%lld", c->user);
    if (sl_pg_exec(s->pg, s->st[SEG_ST_USER_SEGMENTS], 1, p, on_user_segments, c) != 0)
        seg_error(c, 503, "database unavailable: query not accepted");
}

/* ----------------------------------------------------------------- start */

static int metrics_start(seg *s)
{
    sl_ctx *ctx = s->ctx;
    sl_metric *hits, *misses, *evictions, *entries, *bytes, *inv;

    hits = sl_counter(ctx, "sluice_segments_cache_hits_total",
                      "GET /segment/user/{id} answered from the read cache", NULL);
    misses = sl_counter(ctx, "sluice_segments_cache_misses_total",
                        "GET /segment/user/{id} read from PostgreSQL (absent, too old, or the "
                        "cache not live)",
                        NULL);
    evictions = sl_counter(ctx, "sluice_segments_cache_evictions_total",
                           "Users evicted from the read cache to stay within its limits", NULL);
    entries = sl_gauge(ctx, "sluice_segments_cache_entries", "Users held by the read cache", NULL);
    bytes = sl_gauge(ctx, "sluice_segments_cache_bytes",
                     "Memory held by the read cache: entries, answers and hash table", NULL);
    inv = sl_counter(ctx, "sluice_segments_cache_invalidations_total",
                     "Read cache invalidations: a user changed (change), everyone (flush), or a "
                     "PostgreSQL connection came or went (connection)",
                     "reason");
    if (hits == NULL || misses == NULL || evictions == NULL || entries == NULL || bytes == NULL ||
        inv == NULL)
        return -1;
    s->s_cache_hits = sl_series_of(hits);
    s->s_cache_misses = sl_series_of(misses);
    s->s_cache_evictions = sl_series_of(evictions);
    s->s_cache_entries = sl_series_of(entries);
    s->s_cache_bytes = sl_series_of(bytes);
    s->s_inv_change = sl_series_of(inv, "change");
    s->s_inv_flush = sl_series_of(inv, "flush");
    s->s_inv_connection = sl_series_of(inv, "connection");
    s->s_get_ok = sl_series_of(s->m_requests, "user_segments", "200");
    s->s_get_latency = sl_series_of(s->m_latency, "user_segments");
    return 0;
}

static void cache_free(void *obj)
{
    ucache_free(obj);
}

int seg_lookup_start(seg *s)
{
    static const seg_sql sql[] = {
        { SEG_ST_USER_SEGMENTS, "segments_user_segments", SQL_USER_SEGMENTS },
    };
    long long bytes = sl_opt_int(s->ctx, "cache_bytes");

    if (metrics_start(s) != 0)
        return sl_fail(s->ctx, "cannot register the cache's metrics");
    if (seg_prepare(s, sql, 1) != 0)
        return -1;
    if (bytes > 0) {
        s->cache = ucache_new((size_t)sl_opt_int(s->ctx, "cache_entries"), (size_t)bytes,
                              sl_opt_seconds(s->ctx, "cache_max_age"));
        if (s->cache == NULL ||
            sl_track(s->ctx, "read cache", s->cache, cache_free, NULL) == NULL) {
            ucache_free(s->cache);
            s->cache = NULL;
            return sl_fail(s->ctx, "out of memory");
        }
        s->listener = sl_pg_listen(s->pg, CHANNEL, on_notify, s);
        if (s->listener == NULL)
            return sl_fail(s->ctx, "cannot listen on %s", CHANNEL);
        report(s);
    }
    if (sl_route_scoped(s->ctx, SL_GET, "/segment/user/{id}", SL_SCOPE_READ, 0, serve_user_segments,
                        s) != 0)
        return sl_fail(s->ctx, "cannot register GET /segment/user/{id}");
    return 0;
}
