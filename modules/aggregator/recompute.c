/*
 * recompute.c - POST /aggregator/recompute?from=T&to=T (admin scope).
 *
 * Rebuilds the per-minute aggregates (page_views_per_minute,
 * segment_changes_per_minute) of the minutes in [from, to) from the raw
 * rows, with the same statements the sink runs after each batch
 * (agg_recompute_sql), in chunks of RECOMPUTE_CHUNK minutes one after the
 * other.  Each chunk writes complete rows with a version newer than any
 * the sink wrote before it, so FINAL shows the recomputed numbers; a
 * (page, minute) with no raw row left is not written (nothing removes an
 * aggregate row).  The period is at most recompute_max_span; one
 * recompute runs at a time (409 for another).  Answered when done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "ops.h"
#include "schema.h"

/* Minutes per statement: their list stays far below ClickHouse's
 * max_query_size (256 KiB), about 25 bytes each. */
#define RECOMPUTE_CHUNK 1440

typedef struct agg_recompute {
    agg *a;
    sl_ch *ch; /* its own: never queued behind ingestion, nor ingestion behind it */
    double max_span;
    sl_req *req;            /* under way */
    int64_t from, to, next; /* minutes, epoch seconds; `next` is the first not yet sent */
    int handler;            /* of the chunk under way */
    size_t statements;
    double started;
    int64_t *minutes;
    jbuf sql;
    uint64_t count, failures;
    sl_series *s_ok, *s_failed;
} agg_recompute;

static void step(agg_recompute *r);

static void finish(agg_recompute *r, const char *error)
{
    sl_req *req = r->req;
    cJSON *body;

    r->req = NULL;
    if (error != NULL) {
        r->failures++;
        sl_series_add(r->s_failed, 1);
        sl_log(r->a->ctx, SL_LOG_WARN, "recompute (request %s) failed: %s", sl_req_id(req), error);
        return sl_reply_error(req, 503, "ClickHouse did not take the recompute; the log has why");
    }
    r->count++;
    sl_series_add(r->s_ok, 1);
    body = cJSON_CreateObject();
    cJSON_AddNumberToObject(body, "minutes", (double)((r->to - r->from) / 60));
    cJSON_AddNumberToObject(body, "statements", (double)r->statements);
    cJSON_AddNumberToObject(body, "seconds", sl_now() - r->started);
    sl_reply_json(req, 200, body);
}

static void on_done(sl_ch *ch, const sl_ch_result *res, void *arg)
{
    agg_recompute *r = arg;

    (void)ch;
    if (res->error != NULL)
        return finish(r, res->error);
    step(r);
}

/* Sends the next statement: each handler with an aggregate table for the
 * chunk at `next`, then the next chunk. */
static void step(agg_recompute *r)
{
    while (r->next < r->to) {
        size_t n = 0;
        /* One version per statement, taken when it is sent: newer than
         * what the sink wrote before, older than what it writes after. */
        uint64_t version = (uint64_t)(sl_wall() * 1e6);

        for (int64_t m = r->next; m < r->to && n < RECOMPUTE_CHUNK; m += 60)
            r->minutes[n++] = m;
        while (r->handler < AGG_NHANDLERS) {
            agg_handler h = (agg_handler)r->handler++;
            if (!agg_recompute_sql(h, r->minutes, n, version, &r->sql))
                continue;
            if (r->sql.oom)
                return finish(r, "out of memory");
            r->statements++;
            if (sl_ch_exec(r->ch, r->sql.p, on_done, r) != 0)
                return finish(r, "cannot submit a statement");
            return;
        }
        r->handler = 0;
        r->next += (int64_t)n * 60;
    }
    finish(r, NULL);
}

/* The minute a time falls in: aggregates are per whole minute. */
static int get_minute(sl_req *req, const char *name, int64_t *sec)
{
    if (agg_api_time(req, name, sec) != 0)
        return -1;
    *sec -= (*sec % 60 + 60) % 60;
    return 0;
}

static void serve_recompute(sl_req *req, void *arg)
{
    agg *a = arg;
    agg_recompute *r = a->recompute;
    int64_t from, to;

    if (get_minute(req, "from", &from) != 0 || get_minute(req, "to", &to) != 0)
        return;
    if (to == from)
        to += 60; /* the minute `from` is in */
    if (from > to)
        return sl_reply_error(req, 400, "from must be earlier than to");
    if ((double)(to - from) > r->max_span)
        return sl_reply_error(req, 400,
                              "the period may cover at most %.0f hours (recompute_max_span)",
                              r->max_span / 3600);
    if (r->req != NULL)
        return sl_reply_error(req, 409, "a recompute is under way; try again when it answered");
    r->req = req;
    r->from = r->next = from;
    r->to = to;
    r->handler = 0;
    r->statements = 0;
    r->started = sl_now();
    sl_log(a->ctx, SL_LOG_INFO, "recompute of %lld minutes from %lld (request %s)",
           (long long)((to - from) / 60), (long long)from, sl_req_id(req));
    step(r);
}

void agg_recompute_status(const agg *a, cJSON *body)
{
    const agg_recompute *r = a->recompute;
    cJSON *o = cJSON_AddObjectToObject(body, "recompute");

    if (r == NULL || o == NULL)
        return;
    cJSON_AddBoolToObject(o, "running", r->req != NULL);
    cJSON_AddNumberToObject(o, "count", (double)r->count);
    cJSON_AddNumberToObject(o, "failures", (double)r->failures);
}

static void recompute_free(void *obj)
{
    agg_recompute *r = obj;

    jb_free(&r->sql);
    free(r->minutes);
    free(r);
}

int agg_recompute_start(agg *a)
{
    agg_recompute *r = calloc(1, sizeof(*r));
    sl_metric *m;

    if (r == NULL || sl_track(a->ctx, "recompute state", r, recompute_free, NULL) == NULL) {
        free(r);
        return sl_fail(a->ctx, "out of memory");
    }
    r->a = a;
    a->recompute = r;
    r->max_span = sl_opt_seconds(a->ctx, "recompute_max_span");
    r->minutes = calloc(RECOMPUTE_CHUNK, sizeof(*r->minutes));
    if (r->minutes == NULL)
        return sl_fail(a->ctx, "out of memory");
    r->ch = sl_ch_new(a->ctx);
    if (r->ch == NULL)
        return sl_fail(a->ctx, "cannot create the recompute's ClickHouse handle (see the log)");
    m = sl_counter(a->ctx, "sluice_aggregator_recomputes_total",
                   "Recomputes of a period's aggregates (POST /aggregator/recompute), by result",
                   "result");
    if (m == NULL)
        return sl_fail(a->ctx, "cannot register metrics");
    r->s_ok = sl_series_of(m, "ok");
    r->s_failed = sl_series_of(m, "failed");
    sl_series_add(r->s_ok, 0);
    sl_series_add(r->s_failed, 0);
    if (agg_api_route(a, SL_POST, SL_SCOPE_ADMIN, "recompute", serve_recompute) != 0)
        return sl_fail(a->ctx, "cannot register routes");
    return 0;
}
