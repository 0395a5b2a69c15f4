/*
 * consume.c - the consumer side: one member of the consumer group, every
 * message routed to its handler chain and settled into the open batch.
 *
 * Per message: retry (the handler again after a backoff; only this
 * partition waits, its later messages queue behind it) -> when it still
 * fails, dead-letter (to the dead-letter topic with the error in a
 * header) and always a row in processing_errors -> dedup (an id seen in
 * the window is dropped and counted) -> the handler's row -> forward.
 * A message settles when its row, its error or its drop is in the batch;
 * its offset is committed with that batch.  `recover` lets a message go
 * even when dead-lettering it failed; without it the partition waits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "agg.h"
#include "ops.h"

/* What a prefetched message costs librdkafka besides its payload, rounded up. */
#define AGG_PREFETCH_MSG_COST 512
/* The least fetch.max.bytes: librdkafka's default message.max.bytes and more. */
#define AGG_FETCH_MIN 1048576LL

#define DLQ_TAG ((void *)1)
#define FWD_TAG ((void *)2)

/* ---------------------------------------------------------- partitions */

static uint32_t part_hash(const char *topic, int32_t partition)
{
    uint32_t h = 2166136261u;
    for (; *topic != '\0'; topic++)
        h = (h ^ (unsigned char)*topic) * 16777619u;
    return (h ^ (uint32_t)partition) * 16777619u;
}

#define NINDEX (sizeof(((agg *)0)->part_index) / sizeof(((agg *)0)->part_index[0]))

/* The state of a partition, made on first sight; NULL when out of memory. */
static agg_part *part_of(agg *a, const char *topic, int32_t partition)
{
    agg_part *p, *last = a->last_part; /* messages often come in runs */
    uint32_t h;

    if (last != NULL && last->partition == partition && strcmp(last->topic, topic) == 0)
        return last;
    h = part_hash(topic, partition);
    for (p = a->part_index[h % NINDEX]; p != NULL; p = p->index_next)
        if (p->hash == h && p->partition == partition && strcmp(p->topic, topic) == 0)
            return a->last_part = p;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->topic = strdup(topic);
    if (p->topic == NULL) {
        free(p);
        return NULL;
    }
    p->a = a;
    p->partition = partition;
    p->hash = h;
    p->route = agg_route_for(a, topic);
    p->own_output = p->route == NULL && agg_route_own_output(a, topic);
    if (p->own_output)
        sl_log(a->ctx, SL_LOG_INFO,
               "%s is a dead-letter or forward topic of a route that matches it: its messages are "
               "skipped",
               topic);
    p->next_offset = p->pending = p->committed = -1;
    p->next = a->parts;
    a->parts = p;
    p->index_next = a->part_index[h % NINDEX];
    a->part_index[h % NINDEX] = p;
    return a->last_part = p;
}

static void publish_paused(agg *a, agg_part *p)
{
    char part[16];
    snprintf(part, sizeof(part), "%d", (int)p->partition);
    sl_series_set(sl_series_of(a->m_paused, p->topic, part), p->paused);
}

static void apply_pause(agg *a, agg_part *p)
{
    int want = p->pause != 0 && p->assigned;

    if (want == p->paused || a->consumer == NULL)
        return;
    if (sl_kafka_consumer_pause(a->consumer, p->topic, p->partition, want) == 0)
        p->paused = want;
    publish_paused(a, p);
    sl_series_set(sl_series_of(a->m_paused_total), (double)agg_paused_count(a));
}

void agg_set_pause(agg *a, agg_part *p, unsigned reason, int on)
{
    p->pause = on ? p->pause | reason : p->pause & ~reason;
    apply_pause(a, p);
}

void agg_pause_all(agg *a, unsigned reason, int on)
{
    for (agg_part *p = a->parts; p != NULL; p = p->next)
        agg_set_pause(a, p, reason, on);
}

size_t agg_paused_count(const agg *a)
{
    size_t n = 0;
    for (const agg_part *p = a->parts; p != NULL; p = p->next)
        n += p->paused != 0;
    return n;
}

/* What a held copy costs, counted against hold_max_bytes. */
static size_t held_size(const agg_msg *m)
{
    return sizeof(*m) + m->len + m->keylen + strlen(m->topic);
}

static void free_held(agg *a, agg_msg *m)
{
    a->held_bytes -= held_size(m);
    free(m->own);
    free(m);
}

/* `timers` 0 once the core released the instance's timers. */
static void drop_held(agg_part *p, int timers)
{
    while (p->held != NULL) {
        agg_msg *m = p->held;
        p->held = m->next;
        free_held(p->a, m);
    }
    p->held_tail = NULL;
    p->nheld = 0;
    p->attempts = 0;
    if (timers && p->retry != NULL)
        sl_timer_disarm(p->retry);
}

void agg_part_rewind(agg *a, agg_part *p, int64_t offset)
{
    drop_held(p, 1);
    p->next_offset = offset;
    agg_set_pause(a, p, AGG_PAUSE_HOLD, 0);
}

/* ---------------------------------------------------- dead letters etc */

static void topic_of(const char *tmpl, const char *topic, char *out, size_t cap)
{
    const char *at = strstr(tmpl, "{topic}");
    if (at == NULL)
        snprintf(out, cap, "%s", tmpl);
    else
        snprintf(out, cap, "%.*s%s%s", (int)(at - tmpl), tmpl, topic, at + 7);
}

static int dead_letter(agg *a, const agg_msg *m, const agg_result *res, int attempts)
{
    char topic[256], error[400], part[16], offset[24], tries[16];
    sl_kafka_header h[7];
    size_t n = 0;
    int rc;

    if (a->producer == NULL)
        return -1;
    topic_of(a->dlq_template, m->topic, topic, sizeof(topic));
    snprintf(error, sizeof(error), "%s: %s", agg_reason_name(res->reason), res->detail);
    snprintf(part, sizeof(part), "%d", (int)m->partition);
    snprintf(offset, sizeof(offset), "%lld", (long long)m->offset);
    snprintf(tries, sizeof(tries), "%d", attempts + 1);
    h[n++] = (sl_kafka_header){ "error", error, strlen(error) };
    h[n++] = (sl_kafka_header){ "source_topic", m->topic, strlen(m->topic) };
    h[n++] = (sl_kafka_header){ "source_partition", part, strlen(part) };
    h[n++] = (sl_kafka_header){ "source_offset", offset, strlen(offset) };
    h[n++] = (sl_kafka_header){ "attempts", tries, strlen(tries) };
    if (m->event_id != NULL)
        h[n++] = (sl_kafka_header){ "event_id", m->event_id, strlen(m->event_id) };
    if (m->event_type != NULL)
        h[n++] = (sl_kafka_header){ "event_type", m->event_type, strlen(m->event_type) };
    rc = sl_kafka_produce(a->producer, topic, SL_KAFKA_PARTITION_ANY, m->key, m->keylen, m->value,
                          m->value != NULL ? m->len : 0, h, n, DLQ_TAG);
    if (rc != 0) {
        sl_log(a->ctx, SL_LOG_WARN, "cannot dead-letter %s/%d@%lld to %s: %s", m->topic,
               (int)m->partition, (long long)m->offset, topic, sl_kafka_strerror(rc));
        return -1;
    }
    a->n.dead_lettered++;
    return 0;
}

static void forward(agg *a, const agg_msg *m)
{
    char topic[256];
    sl_kafka_header h[2];
    size_t n = 0;
    int rc;

    if (a->producer == NULL)
        return;
    topic_of(a->fwd_template, m->topic, topic, sizeof(topic));
    if (m->event_id != NULL)
        h[n++] = (sl_kafka_header){ "event_id", m->event_id, strlen(m->event_id) };
    if (m->event_type != NULL)
        h[n++] = (sl_kafka_header){ "event_type", m->event_type, strlen(m->event_type) };
    rc = sl_kafka_produce(a->producer, topic, SL_KAFKA_PARTITION_ANY, m->key, m->keylen, m->value,
                          m->len, h, n, FWD_TAG);
    if (rc == 0) {
        a->n.forwarded++;
        sl_series_add(sl_series_of(a->m_fwd), 1);
    } else {
        a->n.forward_failed++;
    }
}

static void on_delivery(sl_kafka_producer *p, const sl_kafka_msg *msg, void *arg)
{
    agg *a = arg;

    (void)p;
    if (msg->err == 0)
        return;
    if (msg->opaque == DLQ_TAG)
        a->n.dead_letter_failed++;
    else
        a->n.forward_failed++;
    sl_log(a->ctx, SL_LOG_WARN, "%s to %s not delivered: %s",
           msg->opaque == DLQ_TAG ? "dead letter" : "forward", msg->topic, msg->errstr);
}

/* ------------------------------------------------------------- process */

/* The wall clock to a few milliseconds, without the cost of a precise
 * read per message. */
static double wall_coarse(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) != 0)
        return sl_wall();
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void retry_fire(void *arg);

static int hold(agg *a, agg_part *p, double delay)
{
    if (p->retry == NULL) {
        p->retry = sl_timer_new(a->ctx, delay, 0, retry_fire, p);
        if (p->retry == NULL)
            return -1;
    } else {
        sl_timer_arm(p->retry, delay);
    }
    return 1;
}

static double mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int process_message(agg *a, agg_part *p, const agg_msg *m);

/* 0 when the message settled, 1 when it waits for a retry (the caller
 * keeps it at the head of the partition's queue).  Each attempt's time is
 * observed, whatever its outcome. */
static int process(agg *a, agg_part *p, const agg_msg *m)
{
    double t0 = mono();
    int rc = process_message(a, p, m);

    sl_series_observe(a->s_processing[p->route != NULL ? p->route->handler : AGG_NHANDLERS],
                      mono() - t0);
    return rc;
}

static int process_message(agg *a, agg_part *p, const agg_msg *m)
{
    const agg_route *r = p->route;
    agg_handler h = r != NULL ? r->handler : AGG_NHANDLERS;
    agg_result res;

    if (p->attempts == 0) {
        a->n.consumed[h]++;
        sl_series_add(a->s_consumed[h], 1);
    }
    a->lim.now = wall_coarse(); /* "far in the future" is relative to now */
    if (p->own_output) {
        /* Subscribed by a wide regex: read, never handled (routes.c). */
        a->n.own_output_skipped++;
        agg_batch_done(a, p, m->offset);
        return 0;
    }
    if (r == NULL) {
        res.reason = AGG_R_NO_ROUTE;
        snprintf(res.detail, sizeof(res.detail), "no route matches topic %s", m->topic);
    } else {
        /* The row goes straight into the open batch: no copy. */
        jbuf *rows = &a->cur->rows[h];
        size_t mark = rows->len;
        agg_dedup *dedup = (r->mw & AGG_MW_DEDUP) ? &a->dedup[h] : NULL;

        agg_handle(a, h, dedup, m, rows, &res);
        if (res.reason != AGG_OK) {
            jb_truncate(rows, mark);
        } else if (dedup != NULL && agg_dedup_check_hash(dedup, res.id_hash)) {
            jb_truncate(rows, mark);
            a->n.duplicates[h]++;
            sl_series_add(a->s_dups[h], 1);
            p->attempts = 0;
            agg_batch_done(a, p, m->offset);
            return 0;
        }
    }
    if (res.reason == AGG_OK) {
        agg_batch_row(a, h, res.minute);
        a->n.valid[h]++;
        sl_series_add(a->s_valid[h], 1);
        if (res.type != NULL)
            sl_series_add(res.type, 1);
        if (res.filled & AGG_FILLED_ID) {
            a->n.ids_derived++;
            sl_series_add(a->s_filled_id, 1);
        }
        if (res.filled & AGG_FILLED_TS) {
            a->n.timestamps_consumed++;
            sl_series_add(a->s_filled_ts, 1);
        }
        if (r->mw & AGG_MW_FORWARD)
            forward(a, m);
        p->attempts = 0;
        agg_batch_done(a, p, m->offset);
        return 0;
    }
    if (r != NULL && (r->mw & AGG_MW_RETRY) && p->attempts < a->retries) {
        double delay = a->backoff;
        for (int i = 0; i < p->attempts && delay < a->backoff_max; i++)
            delay *= 2;
        p->attempts++;
        a->n.retries++;
        sl_series_add(sl_series_of(a->m_retries, agg_handler_name(h)), 1);
        return hold(a, p, delay > a->backoff_max ? a->backoff_max : delay) == 1 ? 1 : 0;
    }
    if (r != NULL && (r->mw & AGG_MW_DEADLETTER)) {
        if (dead_letter(a, m, &res, p->attempts) == 0) {
            sl_series_add(sl_series_of(a->m_dead, agg_handler_name(h)), 1);
        } else if (!(r->mw & AGG_MW_RECOVER)) {
            /* Without recover a message that cannot be dead-lettered waits. */
            p->attempts++;
            if (hold(a, p, a->backoff_max) == 1)
                return 1;
        } else {
            a->n.dead_letter_failed++;
        }
    }
    agg_batch_error(a, m, h, r != NULL, res.reason, res.detail);
    a->n.invalid[h][res.reason]++;
    if (a->s_invalid[h][res.reason] == NULL)
        a->s_invalid[h][res.reason] =
                sl_series_of(a->m_invalid, r != NULL ? agg_handler_name(h) : "none",
                             agg_reason_name(res.reason));
    sl_series_add(a->s_invalid[h][res.reason], 1);
    p->attempts = 0;
    agg_batch_done(a, p, m->offset);
    return 0;
}

/* An owned copy of a borrowed message. */
static agg_msg *copy_msg(const agg_msg *m)
{
    size_t tl = strlen(m->topic) + 1, il = m->event_id ? strlen(m->event_id) + 1 : 0,
           yl = m->event_type ? strlen(m->event_type) + 1 : 0;
    agg_msg *c = calloc(1, sizeof(*c));
    char *s;

    if (c == NULL)
        return NULL;
    *c = *m;
    c->next = NULL;
    c->own = s = malloc(tl + il + yl + m->keylen + m->len + 1);
    if (s == NULL) {
        free(c);
        return NULL;
    }
    memcpy(s, m->topic, tl);
    c->topic = s;
    s += tl;
    if (il) {
        memcpy(s, m->event_id, il);
        c->event_id = s;
        s += il;
    }
    if (yl) {
        memcpy(s, m->event_type, yl);
        c->event_type = s;
        s += yl;
    }
    if (m->keylen) {
        memcpy(s, m->key, m->keylen);
        c->key = s;
        s += m->keylen;
    }
    if (m->value != NULL) {
        memcpy(s, m->value, m->len);
        s[m->len] = '\0';
        c->value = s;
    }
    return c;
}

static void retry_fire(void *arg)
{
    agg_part *p = arg;
    agg *a = p->a;

    while (p->held != NULL && !a->stopping) {
        agg_msg *m = p->held;
        if (process(a, p, m) == 1)
            return;
        p->held = m->next;
        if (p->held == NULL)
            p->held_tail = NULL;
        p->nheld--;
        free_held(a, m);
    }
    agg_set_pause(a, p, AGG_PAUSE_HOLD, 0);
}

const char *agg_header(const sl_kafka_msg *km, const char *name, char *buf, size_t cap)
{
    const char *n;
    const void *v;
    size_t len;

    for (size_t i = 0; sl_kafka_msg_header(km, i, &n, &v, &len) == 0; i++)
        if (strcmp(n, name) == 0 && v != NULL && len < cap) {
            memcpy(buf, v, len);
            buf[len] = '\0';
            return buf;
        }
    return NULL;
}

static void on_message(sl_kafka_consumer *c, const sl_kafka_msg *km, void *arg)
{
    agg *a = arg;
    agg_part *p;
    agg_msg m = { 0 };
    char id[AGG_ID_MAX + 1], type[64];

    (void)c;
    if (a->stopping)
        return; /* not settled, so not committed: the next owner reads it */
    p = part_of(a, km->topic, km->partition);
    if (p == NULL) {
        sl_log(a->ctx, SL_LOG_ERROR, "out of memory: %s/%d@%lld left for a replay", km->topic,
               (int)km->partition, (long long)km->offset);
        return;
    }
    if (p->next_offset >= 0 && km->offset < p->next_offset) {
        a->n.redelivered++;
        return;
    }
    m.topic = km->topic;
    m.partition = km->partition;
    m.offset = km->offset;
    m.key = km->key;
    m.keylen = km->key != NULL ? km->keylen : 0;
    m.value = km->value;
    m.len = km->value != NULL ? km->len : 0;
    /* Headers cost a walk each: read them only where they are used. */
    if (p->route != NULL && (p->route->handler == AGG_H_SEGMENTS ||
                             (p->route->mw & (AGG_MW_DEADLETTER | AGG_MW_FORWARD)))) {
        m.event_id = agg_header(km, "event_id", id, sizeof(id));
        m.event_type = agg_header(km, "event_type", type, sizeof(type));
    }
    if (p->held == NULL && process(a, p, &m) == 0) {
        p->next_offset = km->offset + 1;
        return;
    }
    /* Waits behind (or is) the message being retried. */
    agg_msg *copy = copy_msg(&m);
    if (copy == NULL) {
        sl_log(a->ctx, SL_LOG_ERROR, "out of memory holding %s/%d@%lld; pausing the partition",
               km->topic, (int)km->partition, (long long)km->offset);
        agg_set_pause(a, p, AGG_PAUSE_HOLD, 1);
        return; /* next_offset unchanged: a refetch after the resume reads it again */
    }
    p->next_offset = km->offset + 1;
    if (p->held_tail != NULL)
        p->held_tail->next = copy;
    else
        p->held = copy;
    p->held_tail = copy;
    p->nheld++;
    a->held_bytes += held_size(copy);
    /* Bounded in messages per partition and in bytes over all of them;
     * only a partition that holds copies pauses, and its retries resume it. */
    if (p->nheld >= a->hold_max || a->held_bytes >= a->hold_max_bytes)
        agg_set_pause(a, p, AGG_PAUSE_HOLD, 1);
}

static void on_rebalance(sl_kafka_consumer *c, sl_kafka_rebalance what, const sl_kafka_tp *parts,
                         size_t n, void *arg)
{
    agg *a = arg;

    (void)c;
    for (size_t i = 0; i < n; i++) {
        agg_part *p = part_of(a, parts[i].topic, parts[i].partition);
        if (p == NULL)
            continue;
        drop_held(p, 1);
        p->next_offset = p->pending = -1;
        p->paused = 0; /* a new assignment starts unpaused; a revoked one is gone */
        p->assigned = what == SL_KAFKA_ASSIGNED;
        if (p->assigned && a->stopping)
            p->pause |= AGG_PAUSE_STOP;
        apply_pause(a, p);
        publish_paused(a, p);
    }
    sl_log(a->ctx, SL_LOG_INFO, "%s %zu partitions",
           what == SL_KAFKA_ASSIGNED  ? "assigned"
           : what == SL_KAFKA_REVOKED ? "revoked"
                                      : "lost",
           n);
}

/* --------------------------------------------------------------- start */

typedef struct {
    const char **v;
    size_t n;
} props;

static void add_prop(void *arg, const char *key, const char *value)
{
    props *pr = arg;
    pr->v[pr->n++] = key + strlen("rdkafka.");
    pr->v[pr->n++] = value;
}

static void count_prop(void *arg, const char *key, const char *value)
{
    (void)key;
    (void)value;
    (*(size_t *)arg)++;
}

int agg_consume_start(agg *a, char *err, size_t errlen)
{
    size_t ntopics = sl_opt_list_len(a->ctx, "topics"), nextra = 0;
    const char **topics = calloc(ntopics + 1, sizeof(*topics));
    props pr = { NULL, 0 };
    unsigned mw = 0;
    int rc = -1;
    long long prefetch = sl_opt_int(a->ctx, "prefetch_bytes");
    char kbytes[24], fetch_max[24], min_msgs[24], instance_id[256];

    sl_opt_each_prefixed(a->ctx, "rdkafka.*", count_prop, &nextra);
    pr.v = calloc(2 * nextra + 16, sizeof(*pr.v));
    if (topics == NULL || pr.v == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < ntopics; i++)
        topics[i] = sl_opt_list_at(a->ctx, "topics", i);
    /* Ours: commits are the sink's, after ClickHouse accepted a batch. */
    pr.v[pr.n++] = "auto.offset.reset";
    pr.v[pr.n++] = "earliest";
    pr.v[pr.n++] = "fetch.wait.max.ms";
    pr.v[pr.n++] = "10";
    /* The prefetch budget: half queued for the loop, half in one fetch
     * response on its way.  librdkafka counts only payload against
     * queued.max.messages.kbytes, and keeps about 400 bytes more per
     * message (measured with 2.0.2), so the queue is also capped at one
     * message per 512 bytes of its half: small messages cannot multiply it.
     * A response is bounded in payload only, and arrives whatever the
     * queue holds (the consumer holds rather than pauses, so the queue is
     * full while a batch is written): fetch.max.bytes is an eighth of the
     * budget, whose messages cost at most its other half when they are of
     * 133 bytes or more.  The connector restarts fetching as soon as the
     * queue drains, so smaller responses cost round trips, not waits.
     * librdkafka wants at least message.max.bytes (10^6 by default). */
    snprintf(kbytes, sizeof(kbytes), "%lld", prefetch / 2 / 1024);
    snprintf(fetch_max, sizeof(fetch_max), "%lld",
             prefetch / 8 > AGG_FETCH_MIN ? prefetch / 8 : AGG_FETCH_MIN);
    snprintf(min_msgs, sizeof(min_msgs), "%lld", prefetch / 2 / AGG_PREFETCH_MSG_COST);
    pr.v[pr.n++] = "queued.max.messages.kbytes";
    pr.v[pr.n++] = kbytes;
    pr.v[pr.n++] = "queued.min.messages";
    pr.v[pr.n++] = min_msgs;
    pr.v[pr.n++] = "fetch.max.bytes";
    pr.v[pr.n++] = fetch_max;
    if (agg_instance_id(a, instance_id, sizeof(instance_id)) != 0) {
        pr.v[pr.n++] = "group.instance.id";
        pr.v[pr.n++] = instance_id;
    }
    sl_opt_each_prefixed(a->ctx, "rdkafka.*", add_prop, &pr);
    pr.v[pr.n++] = "enable.auto.commit";
    pr.v[pr.n++] = "false";
    pr.v[pr.n] = NULL;
    for (size_t i = 0; i < a->nroutes; i++)
        mw |= a->routes[i].mw;
    if (mw & (AGG_MW_DEADLETTER | AGG_MW_FORWARD)) {
        a->producer = sl_kafka_producer_new(a->ctx, on_delivery, a, NULL, err, errlen);
        if (a->producer == NULL)
            goto out;
    }
    a->consumer = sl_kafka_consumer_new(a->ctx, a->group, topics, ntopics, on_message, on_rebalance,
                                        a, pr.v, err, errlen);
    rc = a->consumer != NULL ? 0 : -1;
out:
    free(topics);
    free(pr.v);
    return rc;
}

void agg_consume_free(agg *a)
{
    while (a->parts != NULL) {
        agg_part *p = a->parts;
        a->parts = p->next;
        drop_held(p, 0);
        free(p->topic);
        free(p);
    }
}
