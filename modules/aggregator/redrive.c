/*
 * redrive.c - POST /aggregator/redrive?topic=DLQ (admin scope).
 *
 * After a fix (a config change, a handler update), sends what sits in a
 * dead-letter topic of this aggregator back to the topic it came from
 * (its source_topic header, to its source_partition), so that it goes
 * through its route again: the same key, value and headers, without the
 * dead-letter ones, plus redriven_from=DLQ/PARTITION@OFFSET.
 *
 * A redrive reads the dead-letter topic as consumer group GROUP.redrive
 * and stops at the end offsets it found when it got the partitions:
 * what is dead-lettered again meanwhile waits for the next redrive, so a
 * message still failing cannot loop.  Its position is committed once
 * every message sent before it was acknowledged by the broker, and the
 * next redrive starts there.  So each message is sent once by one
 * redrive, and a redrive sends only what no earlier one sent; a process
 * killed mid-redrive leaves the messages sent but not yet committed (at
 * most those in flight) to be sent once more by the next redrive, where
 * the tables collapse them.  A message that could not be delivered stops
 * its partition there (status "failed"); the next redrive takes it up
 * again.  One redrive at a time per instance (409 for another).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "ops.h"

/* Seconds to get the dead-letter topic's partitions before giving up. */
#define REDRIVE_ASSIGN_TIMEOUT 30
#define REDRIVE_LOOKUP_TIMEOUT 30

typedef struct {
    char *topic;
    int32_t partition;
    int64_t start;   /* first offset of this redrive */
    int64_t end;     /* stops before it */
    int64_t handed;  /* next offset to hand over */
    int64_t settled; /* committed, or being committed, up to it */
    size_t inflight;
    int failed;
    struct agg_redrive *r;
} redrive_part;

typedef enum { RD_IDLE, RD_JOINING, RD_LOOKUP, RD_SENDING, RD_CLOSING } redrive_state;

typedef struct agg_redrive {
    agg *a;
    redrive_state state;
    int step; /* of the lookups */
    char topic[256];
    char group[300];
    sl_kafka_consumer *consumer;
    sl_kafka_producer *producer;
    sl_timer *deadline;
    redrive_part *parts;
    size_t nparts;
    size_t commits; /* under way */
    uint64_t sent, failed, skipped, count;
    double started, finished;
    char error[256];
    sl_series *s_sent, *s_failed, *s_skipped;
} agg_redrive;

static void check_done(agg_redrive *r);

static void parts_free(agg_redrive *r)
{
    for (size_t i = 0; i < r->nparts; i++)
        free(r->parts[i].topic);
    free(r->parts);
    r->parts = NULL;
    r->nparts = 0;
}

static sl_kafka_tp *parts_tps(const agg_redrive *r)
{
    sl_kafka_tp *tps = calloc(r->nparts + 1, sizeof(*tps));

    for (size_t i = 0; tps != NULL && i < r->nparts; i++)
        tps[i] = (sl_kafka_tp){ r->parts[i].topic, r->parts[i].partition, -1 };
    return tps;
}

static redrive_part *part_of(agg_redrive *r, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < r->nparts; i++)
        if (r->parts[i].partition == partition && strcmp(r->parts[i].topic, topic) == 0)
            return &r->parts[i];
    return NULL;
}

static void on_closed(sl_kafka_consumer *c, int err, void *arg)
{
    agg_redrive *r = arg;

    (void)err;
    sl_kafka_consumer_free(c);
    r->consumer = NULL;
    sl_kafka_producer_free(r->producer);
    r->producer = NULL;
    r->state = RD_IDLE;
    r->finished = sl_wall();
    sl_log(r->a->ctx, SL_LOG_INFO, "redrive of %s done: %llu sent, %llu failed, %llu skipped%s%s",
           r->topic, (unsigned long long)r->sent, (unsigned long long)r->failed,
           (unsigned long long)r->skipped, r->error[0] != '\0' ? ": " : "", r->error);
}

/* Ends the redrive (leaves the group); `error` NULL when it went through. */
static void finish(agg_redrive *r, const char *error)
{
    if (r->state == RD_CLOSING || r->state == RD_IDLE)
        return;
    if (error != NULL && r->error[0] == '\0')
        snprintf(r->error, sizeof(r->error), "%s", error);
    r->state = RD_CLOSING;
    sl_timer_disarm(r->deadline);
    sl_kafka_consumer_close(r->consumer, 10, on_closed, r);
}

static void on_commit(sl_kafka_consumer *c, int err, const sl_kafka_tp *parts, size_t n, void *arg)
{
    agg_redrive *r = arg;

    (void)c;
    (void)parts;
    (void)n;
    r->commits--;
    if (err != 0 && r->error[0] == '\0')
        snprintf(
                r->error, sizeof(r->error),
                "a position was not committed (error %d): the next redrive sends from the last one "
                "that was",
                err);
    check_done(r);
}

/* Commits a partition's position once everything handed before it was
 * acknowledged. */
static void settle(agg_redrive *r, redrive_part *rp)
{
    sl_kafka_tp tp = { rp->topic, rp->partition, rp->handed };

    if (rp->inflight > 0 || rp->failed || rp->handed <= rp->settled)
        return;
    if (sl_kafka_commit(r->consumer, &tp, 1, on_commit, r) == 0) {
        rp->settled = rp->handed;
        r->commits++;
    }
}

static void check_done(agg_redrive *r)
{
    if (r->state != RD_SENDING || r->commits > 0)
        return;
    for (size_t i = 0; i < r->nparts; i++) {
        const redrive_part *rp = &r->parts[i];
        if (rp->inflight > 0 || (!rp->failed && rp->handed < rp->end))
            return;
    }
    finish(r, r->failed > 0 ? "messages not delivered: their partitions stopped there" : NULL);
}

static void on_delivery(sl_kafka_producer *p, const sl_kafka_msg *msg, void *arg)
{
    agg_redrive *r = arg;
    redrive_part *rp = msg->opaque;

    (void)p;
    rp->inflight--;
    if (msg->err == 0) {
        r->sent++;
        sl_series_add(r->s_sent, 1);
    } else {
        r->failed++;
        sl_series_add(r->s_failed, 1);
        /* Nothing after it is committed: the next redrive starts there. */
        rp->failed = 1;
        sl_kafka_consumer_pause(r->consumer, rp->topic, rp->partition, 1);
        sl_log(r->a->ctx, SL_LOG_WARN, "redrive to %s not delivered: %s", msg->topic, msg->errstr);
    }
    settle(r, rp);
    check_done(r);
}

static int is_dead_letter_header(const char *name)
{
    static const char *const names[] = { "error",         "source_topic", "source_partition",
                                         "source_offset", "attempts",     "redriven_from" };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i]) == 0)
            return 1;
    return 0;
}

#define REDRIVE_MAX_HEADERS 32

static int send_back(agg_redrive *r, redrive_part *rp, const sl_kafka_msg *m)
{
    sl_kafka_header h[REDRIVE_MAX_HEADERS + 1];
    char topic[256], part[16], from[300];
    const char *name;
    const void *value;
    size_t len, n = 0;
    int32_t partition = SL_KAFKA_PARTITION_ANY;
    char *end;

    if (agg_header(m, "source_topic", topic, sizeof(topic)) == NULL || topic[0] == '\0')
        return 1;
    if (agg_header(m, "source_partition", part, sizeof(part)) != NULL) {
        long v = strtol(part, &end, 10);
        if (*end == '\0' && v >= 0 && v <= INT32_MAX)
            partition = (int32_t)v;
    }
    for (size_t i = 0;
         n < REDRIVE_MAX_HEADERS && sl_kafka_msg_header(m, i, &name, &value, &len) == 0; i++)
        if (!is_dead_letter_header(name))
            h[n++] = (sl_kafka_header){ name, value, len };
    snprintf(from, sizeof(from), "%s/%d@%lld", m->topic, (int)m->partition, (long long)m->offset);
    h[n++] = (sl_kafka_header){ "redriven_from", from, strlen(from) };
    if (sl_kafka_produce(r->producer, topic, partition, m->key, m->key != NULL ? m->keylen : 0,
                         m->value, m->value != NULL ? m->len : 0, h, n, rp) != 0)
        return -1;
    rp->inflight++;
    return 0;
}

static void on_message(sl_kafka_consumer *c, const sl_kafka_msg *m, void *arg)
{
    agg_redrive *r = arg;
    redrive_part *rp = part_of(r, m->topic, m->partition);
    int rc;

    if (rp == NULL || r->state != RD_SENDING || rp->failed || m->offset < rp->handed)
        return;
    if (m->offset >= rp->end) {
        /* Dead-lettered after the redrive began: the next one's. */
        sl_kafka_consumer_pause(c, m->topic, m->partition, 1);
        return;
    }
    rc = send_back(r, rp, m);
    if (rc < 0) {
        /* Not taken by the producer: stop this partition before it. */
        r->failed++;
        sl_series_add(r->s_failed, 1);
        rp->failed = 1;
        sl_kafka_consumer_pause(c, m->topic, m->partition, 1);
        check_done(r);
        return;
    }
    if (rc > 0) {
        r->skipped++;
        sl_series_add(r->s_skipped, 1);
        sl_log(r->a->ctx, SL_LOG_WARN, "redrive: %s/%d@%lld has no source_topic header; skipped",
               m->topic, (int)m->partition, (long long)m->offset);
    }
    rp->handed = m->offset + 1;
    settle(r, rp);
    check_done(r);
}

/* The partitions that hold something to send resume, from their start. */
static void start_sending(agg_redrive *r, sl_kafka_consumer *c)
{
    r->state = RD_SENDING;
    for (size_t i = 0; i < r->nparts; i++) {
        redrive_part *rp = &r->parts[i];
        sl_kafka_tp tp = { rp->topic, rp->partition, rp->handed };
        if (rp->start < 0 || rp->handed >= rp->end) {
            rp->handed = rp->settled = rp->end; /* nothing held, or nothing new */
            continue;
        }
        /* What was fetched while the lookups ran was not taken: from the start again. */
        if (sl_kafka_seek(c, &tp, 1) != 0)
            return finish(r, "cannot move to the redrive's start");
        sl_kafka_consumer_pause(c, rp->topic, rp->partition, 0);
    }
    check_done(r);
}

static void on_lookup(sl_kafka_consumer *c, int err, const sl_kafka_tp *parts, size_t n, void *arg);

/* The lookups, one after the other (the connector runs one at a time):
 * the positions a previous redrive committed, the first offsets held
 * (where none was committed), the end offsets. */
static void lookup(agg_redrive *r)
{
    sl_kafka_tp *tps = parts_tps(r);
    int rc = SL_KAFKA_ENOMEM;

    if (tps != NULL)
        rc = r->step == 0 ? sl_kafka_committed(r->consumer, tps, r->nparts, REDRIVE_LOOKUP_TIMEOUT,
                                               on_lookup, r)
                          : sl_kafka_offsets_for_times(r->consumer, tps, r->nparts,
                                                       r->step == 1 ? SL_KAFKA_TIME_BEGINNING
                                                                    : SL_KAFKA_TIME_END,
                                                       REDRIVE_LOOKUP_TIMEOUT, on_lookup, r);
    free(tps);
    if (rc != 0)
        finish(r, "cannot look up the dead-letter topic's offsets");
}

static void on_lookup(sl_kafka_consumer *c, int err, const sl_kafka_tp *parts, size_t n, void *arg)
{
    static const char *const what[] = { "committed positions", "first offsets", "end offsets" };
    agg_redrive *r = arg;
    char why[128];

    if (r->state != RD_LOOKUP)
        return;
    if (err != 0 || parts == NULL) {
        snprintf(why, sizeof(why), "the dead-letter topic's %s could not be read", what[r->step]);
        return finish(r, why);
    }
    for (size_t i = 0; i < n; i++) {
        redrive_part *rp = part_of(r, parts[i].topic, parts[i].partition);
        if (rp == NULL)
            continue;
        if (r->step == 2)
            rp->end = parts[i].offset;
        else if (r->step == 0 || rp->start < 0)
            rp->start = rp->handed = rp->settled = parts[i].offset;
    }
    if (++r->step < 3)
        return lookup(r);
    start_sending(r, c);
}

static void on_rebalance(sl_kafka_consumer *c, sl_kafka_rebalance what, const sl_kafka_tp *parts,
                         size_t n, void *arg)
{
    agg_redrive *r = arg;

    if (what != SL_KAFKA_ASSIGNED) {
        if (r->state == RD_LOOKUP || r->state == RD_SENDING)
            finish(r, "the dead-letter topic's partitions were taken away; redrive again");
        return;
    }
    if (r->state != RD_JOINING || n == 0)
        return;
    parts_free(r);
    r->parts = calloc(n, sizeof(*r->parts));
    if (r->parts == NULL)
        return finish(r, "out of memory");
    for (size_t i = 0; i < n; i++) {
        redrive_part *rp = &r->parts[r->nparts];
        rp->topic = strdup(parts[i].topic);
        if (rp->topic == NULL)
            return finish(r, "out of memory");
        rp->partition = parts[i].partition;
        rp->start = rp->end = rp->handed = rp->settled = -1;
        rp->r = r;
        r->nparts++;
        /* Held until the end offsets are known. */
        sl_kafka_consumer_pause(c, rp->topic, rp->partition, 1);
    }
    sl_timer_disarm(r->deadline);
    r->state = RD_LOOKUP;
    r->step = 0;
    lookup(r);
}

static void on_deadline(void *arg)
{
    agg_redrive *r = arg;

    if (r->state == RD_JOINING)
        finish(r, "no partition of the topic was assigned in time (does it exist?)");
}

/* 1 when `topic` is what deadletter_topic makes of some source topic. */
static int is_dead_letter_topic(const agg *a, const char *topic)
{
    const char *at = strstr(a->dlq_template, "{topic}");
    size_t len = strlen(topic), pre, post;

    if (at == NULL)
        return strcmp(topic, a->dlq_template) == 0;
    pre = (size_t)(at - a->dlq_template);
    post = strlen(at + 7);
    return len > pre + post && strncmp(topic, a->dlq_template, pre) == 0 &&
           strcmp(topic + len - post, at + 7) == 0;
}

static void serve_redrive(sl_req *req, void *arg)
{
    agg *a = arg;
    agg_redrive *r = a->redrive;
    const char *topic = sl_req_query(req, "topic");
    /* A group of one member: its short session only bounds how long the
     * embedded broker holds a rejoin after the previous redrive left (it
     * waits session.timeout.ms less 1 s before it assigns anything). */
    static const char *const props[] = { "auto.offset.reset",
                                         "earliest",
                                         "enable.auto.commit",
                                         "false",
                                         "session.timeout.ms",
                                         "6000",
                                         "heartbeat.interval.ms",
                                         "1000",
                                         NULL };
    const char *topics[1];
    char err[512];
    cJSON *body;
    size_t n;

    n = topic != NULL
                ? strspn(topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
                : 0;
    if (topic == NULL || n == 0 || topic[n] != '\0' || n > 249)
        return sl_reply_error(req, 400,
                              "topic is required: a Kafka topic name (A-Z a-z 0-9 . _ -)");
    if (!is_dead_letter_topic(a, topic))
        return sl_reply_error(req, 400,
                              "%s is not a dead-letter topic of this aggregator "
                              "(deadletter_topic = %s)",
                              topic, a->dlq_template);
    if (r->state != RD_IDLE)
        return sl_reply_error(req, 409,
                              "a redrive of %s is under way: /aggregator/status shows "
                              "when it is done",
                              r->topic);
    if (a->stopping)
        return sl_reply_error(req, 503, "the aggregator is stopping");
    snprintf(r->topic, sizeof(r->topic), "%s", topic);
    snprintf(r->group, sizeof(r->group), "%s.redrive", a->group);
    r->error[0] = '\0';
    r->sent = r->failed = r->skipped = 0;
    parts_free(r);
    r->producer = sl_kafka_producer_new(a->ctx, on_delivery, r, NULL, err, sizeof(err));
    topics[0] = r->topic;
    if (r->producer != NULL)
        r->consumer = sl_kafka_consumer_new(a->ctx, r->group, topics, 1, on_message, on_rebalance,
                                            r, props, err, sizeof(err));
    if (r->consumer == NULL) {
        sl_kafka_producer_free(r->producer);
        r->producer = NULL;
        sl_log(a->ctx, SL_LOG_WARN, "redrive of %s (request %s): %s", topic, sl_req_id(req), err);
        return sl_reply_error(req, 503, "cannot start the redrive; the log has why");
    }
    r->state = RD_JOINING;
    r->count++;
    r->started = sl_wall();
    r->finished = 0;
    sl_timer_arm(r->deadline, REDRIVE_ASSIGN_TIMEOUT);
    sl_log(a->ctx, SL_LOG_INFO, "redrive of %s started as group %s (request %s)", r->topic,
           r->group, sl_req_id(req));
    body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "topic", r->topic);
    cJSON_AddStringToObject(body, "group", r->group);
    cJSON_AddStringToObject(body, "state", "started");
    sl_reply_json(req, 202, body);
}

void agg_redrive_status(const agg *a, cJSON *body)
{
    static const char *const states[] = { "idle", "joining", "lookup", "sending", "closing" };
    const agg_redrive *r = a->redrive;
    cJSON *o = cJSON_AddObjectToObject(body, "redrive");
    int64_t remaining = 0;

    if (r == NULL || o == NULL)
        return;
    cJSON_AddBoolToObject(o, "running", r->state != RD_IDLE);
    cJSON_AddStringToObject(o, "state", states[r->state]);
    cJSON_AddNumberToObject(o, "count", (double)r->count);
    if (r->count == 0)
        return;
    cJSON_AddStringToObject(o, "topic", r->topic);
    cJSON_AddNumberToObject(o, "sent", (double)r->sent);
    cJSON_AddNumberToObject(o, "failed", (double)r->failed);
    cJSON_AddNumberToObject(o, "skipped", (double)r->skipped);
    for (size_t i = 0; i < r->nparts; i++)
        if (!r->parts[i].failed && r->parts[i].end > r->parts[i].handed)
            remaining += r->parts[i].end - r->parts[i].handed;
    cJSON_AddNumberToObject(o, "remaining", (double)remaining);
    cJSON_AddNumberToObject(o, "started_at", r->started);
    cJSON_AddNumberToObject(o, "finished_at", r->finished);
    cJSON_AddStringToObject(o, "error", r->error);
}

static void redrive_free(void *obj)
{
    agg_redrive *r = obj;

    parts_free(r);
    free(r);
}

int agg_redrive_start(agg *a)
{
    agg_redrive *r = calloc(1, sizeof(*r));
    sl_metric *m;

    if (r == NULL || sl_track(a->ctx, "redrive state", r, redrive_free, NULL) == NULL) {
        free(r);
        return sl_fail(a->ctx, "out of memory");
    }
    r->a = a;
    a->redrive = r;
    r->deadline = sl_timer_new(a->ctx, REDRIVE_ASSIGN_TIMEOUT, 0, on_deadline, r);
    m = sl_counter(a->ctx, "sluice_aggregator_redriven_total",
                   "Dead letters sent back to their source topic by a redrive, by result (sent: "
                   "acknowledged; failed: not delivered; skipped: no source_topic header)",
                   "result");
    if (r->deadline == NULL || m == NULL)
        return sl_fail(a->ctx, "cannot register the redrive's timer and metrics");
    sl_timer_disarm(r->deadline);
    r->s_sent = sl_series_of(m, "sent");
    r->s_failed = sl_series_of(m, "failed");
    r->s_skipped = sl_series_of(m, "skipped");
    sl_series_add(r->s_sent, 0);
    sl_series_add(r->s_failed, 0);
    sl_series_add(r->s_skipped, 0);
    if (agg_api_route(a, SL_POST, SL_SCOPE_ADMIN, "redrive", serve_redrive) != 0)
        return sl_fail(a->ctx, "cannot register routes");
    return 0;
}
