/*
 * replay.c - POST /aggregator/replay?from=RFC3339 (admin scope).
 *
 * Rewinds every partition this instance holds to its first message whose
 * Kafka timestamp is at or after `from` (offsets for times, looked up by
 * the connector off the loop), commits those positions for the group,
 * forgets the dedup windows and reads everything from there again.  The
 * tables collapse what was stored already, so the counts after a replay
 * equal the counts before; what was lost from them (a table truncated by
 * hand, rows written by a handler since fixed) is written again.
 *
 * One replay at a time: another answers 409 until every rewound
 * partition was read back to where it stood when the replay began.  In a
 * group of several instances each rewinds the partitions it holds: call
 * it on each (the same `from`).  The request is answered once the
 * partitions were moved, with what was rewound.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "ops.h"

typedef struct {
    agg_part *part; /* lives as long as the instance */
    int64_t from;   /* the offset rewound to */
    int64_t to;     /* where the partition stood; -1 unknown (nothing read since assigned) */
} replay_part;

typedef struct agg_replay {
    agg *a;
    sl_req *req; /* waiting for the offsets lookup */
    int64_t from_ms;
    double started; /* wall clock */
    replay_part *parts;
    size_t nparts;
    uint64_t count;
    sl_series *s_replays;
} agg_replay;

/* Seconds the connector may spend finding the offsets. */
#define REPLAY_LOOKUP_TIMEOUT 30

static int part_caught_up(const replay_part *rp)
{
    const agg_part *p = rp->part;

    return !p->assigned || rp->to < 0 || (p->next_offset >= 0 && p->next_offset >= rp->to);
}

static int replay_running(const agg_replay *r)
{
    if (r->req != NULL)
        return 1;
    for (size_t i = 0; i < r->nparts; i++)
        if (!part_caught_up(&r->parts[i]))
            return 1;
    return 0;
}

static agg_part *find_part(agg *a, const char *topic, int32_t partition)
{
    for (agg_part *p = a->parts; p != NULL; p = p->next)
        if (p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    return NULL;
}

/* Replayed events must reach the tables again, not be dropped by the
 * windows that saw them the first time. */
static void forget_dedup(agg *a)
{
    for (int h = 0; h < AGG_NHANDLERS; h++) {
        size_t cap = a->dedup[h].cap;
        agg_dedup_free(&a->dedup[h]);
        if (agg_dedup_init(&a->dedup[h], cap) != 0) {
            sl_log(a->ctx, SL_LOG_WARN,
                   "replay: out of memory for a dedup window; running without");
            agg_dedup_init(&a->dedup[h], 0);
        }
    }
}

static cJSON *time_json(int64_t ms)
{
    jbuf j = { 0 };
    cJSON *s;

    jb_datetime(&j, ms / 1000);
    s = cJSON_CreateString(j.oom ? "" : j.p);
    jb_free(&j);
    return s;
}

static cJSON *parts_json(const agg_replay *r)
{
    cJSON *arr = cJSON_CreateArray();

    for (size_t i = 0; i < r->nparts; i++) {
        const replay_part *rp = &r->parts[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "topic", rp->part->topic);
        cJSON_AddNumberToObject(o, "partition", rp->part->partition);
        cJSON_AddNumberToObject(o, "from_offset", (double)rp->from);
        cJSON_AddNumberToObject(o, "to_offset", (double)rp->to);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

/* Moves the partitions the lookup found a message for; the answer to the
 * waiting request.  Runs on the loop (sl_kafka_offsets_for_times). */
static void on_offsets(sl_kafka_consumer *c, int err, const sl_kafka_tp *found, size_t n, void *arg)
{
    agg_replay *r = arg;
    agg *a = r->a;
    sl_req *req = r->req;
    sl_kafka_tp *tps = calloc(n + 1, sizeof(*tps));
    replay_part *parts = calloc(n + 1, sizeof(*parts));
    size_t k = 0;
    int64_t messages = 0;
    cJSON *body;

    r->req = NULL;
    if (tps == NULL || parts == NULL || found == NULL) {
        free(tps);
        free(parts);
        return sl_reply_error(req, 500, "out of memory");
    }
    if (err != 0)
        sl_log(a->ctx, SL_LOG_WARN, "replay: offsets lookup: %s (request %s)",
               sl_kafka_strerror(err), sl_req_id(req));
    for (size_t i = 0; i < n; i++) {
        agg_part *p = find_part(a, found[i].topic, found[i].partition);
        int64_t to;

        if (p == NULL || !p->assigned || found[i].offset < 0 || a->stopping)
            continue;
        to = p->next_offset > p->committed ? p->next_offset : p->committed;
        if (to >= 0 && found[i].offset >= to)
            continue; /* nothing read since `from` */
        parts[k] = (replay_part){ p, found[i].offset, to };
        tps[k] = (sl_kafka_tp){ p->topic, p->partition, found[i].offset };
        if (to >= 0)
            messages += to - found[i].offset;
        k++;
    }
    if (k > 0 && sl_kafka_seek(c, tps, k) != 0) {
        free(tps);
        free(parts);
        return sl_reply_error(req, 503, "the consumer could not move its partitions; try again");
    }
    for (size_t i = 0; i < k; i++) {
        agg_part_rewind(a, parts[i].part, parts[i].from);
        parts[i].part->committed = parts[i].from;
    }
    if (k > 0) {
        /* The group's positions too: a restart mid-replay goes on with it. */
        if (sl_kafka_commit(c, tps, k, NULL, NULL) != 0)
            sl_log(a->ctx, SL_LOG_WARN, "replay: the rewound positions were not committed");
        forget_dedup(a);
    }
    free(tps);
    free(r->parts);
    r->parts = parts;
    r->nparts = k;
    r->count++;
    sl_series_add(r->s_replays, 1);
    sl_log(a->ctx, SL_LOG_INFO, "replay from %lld ms: %zu partitions rewound over %lld messages",
           (long long)r->from_ms, k, (long long)messages);
    body = cJSON_CreateObject();
    cJSON_AddItemToObject(body, "from", time_json(r->from_ms));
    cJSON_AddItemToObject(body, "partitions", parts_json(r));
    cJSON_AddNumberToObject(body, "messages", (double)messages);
    if (err != 0)
        cJSON_AddStringToObject(body, "lookup_error", sl_kafka_strerror(err));
    sl_reply_json(req, 200, body);
}

static void serve_replay(sl_req *req, void *arg)
{
    agg *a = arg;
    agg_replay *r = a->replay;
    sl_kafka_tp *tps;
    size_t n = 0, i = 0;
    int64_t sec, ms;
    int rc;

    if (agg_api_time(req, "from", &sec) != 0)
        return;
    ms = sec * 1000;
    if (ms < 0 || (double)ms > sl_wall() * 1000)
        return sl_reply_error(req, 400, "from must be a time between 1970 and now");
    if (replay_running(r))
        return sl_reply_error(req, 409,
                              "a replay is under way: /aggregator/status shows when it is done");
    if (a->stopping || a->consumer == NULL)
        return sl_reply_error(req, 503, "the aggregator is stopping");
    for (agg_part *p = a->parts; p != NULL; p = p->next)
        n += p->assigned != 0;
    if (n == 0) {
        sl_reply_header(req, "Retry-After", "5");
        return sl_reply_error(req, 503, "no partitions are assigned to this instance yet");
    }
    tps = calloc(n, sizeof(*tps));
    if (tps == NULL)
        return sl_reply_error(req, 500, "out of memory");
    for (agg_part *p = a->parts; p != NULL; p = p->next)
        if (p->assigned)
            tps[i++] = (sl_kafka_tp){ p->topic, p->partition, -1 };
    rc = sl_kafka_offsets_for_times(a->consumer, tps, n, ms, REPLAY_LOOKUP_TIMEOUT, on_offsets, r);
    free(tps);
    if (rc != 0)
        return sl_reply_error(req, 503, "cannot look up offsets: %s", sl_kafka_strerror(rc));
    r->req = req;
    r->from_ms = ms;
    r->started = sl_wall();
}

void agg_replay_status(const agg *a, cJSON *body)
{
    const agg_replay *r = a->replay;
    cJSON *o = cJSON_AddObjectToObject(body, "replay");
    int64_t remaining = 0;

    if (r == NULL || o == NULL)
        return;
    cJSON_AddBoolToObject(o, "running", replay_running(r));
    cJSON_AddNumberToObject(o, "count", (double)r->count);
    if (r->count == 0 && r->req == NULL)
        return;
    cJSON_AddItemToObject(o, "from", time_json(r->from_ms));
    cJSON_AddNumberToObject(o, "started_at", r->started);
    cJSON_AddItemToObject(o, "partitions", parts_json(r));
    for (size_t i = 0; i < r->nparts; i++) {
        const replay_part *rp = &r->parts[i];
        int64_t at = rp->part->next_offset >= rp->from ? rp->part->next_offset : rp->from;
        if (!part_caught_up(rp))
            remaining += rp->to - at;
    }
    cJSON_AddNumberToObject(o, "remaining", (double)remaining);
}

static void replay_free(void *obj)
{
    agg_replay *r = obj;

    free(r->parts);
    free(r);
}

int agg_replay_start(agg *a)
{
    agg_replay *r = calloc(1, sizeof(*r));
    sl_metric *m;

    if (r == NULL || sl_track(a->ctx, "replay state", r, replay_free, NULL) == NULL) {
        free(r);
        return sl_fail(a->ctx, "out of memory");
    }
    r->a = a;
    a->replay = r;
    m = sl_counter(a->ctx, "sluice_aggregator_replays_total",
                   "Replays done (POST /aggregator/replay)", NULL);
    if (m == NULL)
        return sl_fail(a->ctx, "cannot register metrics");
    r->s_replays = sl_series_of(m);
    sl_series_add(r->s_replays, 0);
    if (agg_api_route(a, SL_POST, SL_SCOPE_ADMIN, "replay", serve_replay) != 0)
        return sl_fail(a->ctx, "cannot register routes");
    return 0;
}
