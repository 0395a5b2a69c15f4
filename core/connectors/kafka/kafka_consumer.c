/*
 * kafka_consumer.c - the consumer side of the Kafka connector: the group
 * subscription, fetched messages, rebalances, pause and resume, offset
 * commits and leaving the group.  The handle it embeds is served by kafka.c.
 *
 * Fetch restarts.  librdkafka 2.0 stops fetching a partition while the
 * queue its messages go to holds queued.min.messages messages or
 * queued.max.messages.kbytes of payload; for us that is the one consumer
 * queue every partition is forwarded to, so every partition stops at once.
 * It looks again only when its broker thread wakes: on network input, on
 * an operation queued to it, or at the end of its one-second serve cycle.
 * Draining the queue wakes nothing, nor does resuming a paused partition,
 * so a consumer slower than the broker idled up to a second each time the
 * queue filled (30 times over a backlog of a million small messages).  A
 * seek is the one operation of its API that wakes the broker thread: once
 * the loop has drained the queue after taking a threshold's worth from it,
 * and when a module resumes a partition, the connector seeks the
 * partitions to their positions (the offset after the last message handed
 * over).  Nothing is queued for them then, so nothing fetched is dropped
 * but a fetch response on its way, which the new fetch reads again.
 *
 * A module's own seek (sl_kafka_seek) is queued the same way, and until
 * its partition hands over a message the position librdkafka reports may
 * still be the old one: a restart then would queue a seek back to it
 * behind the module's and undo it.  So a partition with a seek of the
 * module's outstanding is left out of restarts; that seek wakes its
 * fetcher anyway.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daemon/core.h"
#include "kafka_int.h"
#include "kafka_trace.h"

typedef struct commit_req commit_req;
struct commit_req {
    commit_req *prev;
    commit_req *next;
    sl_kafka_commit_fn fn;
    void *arg;
};

typedef struct {
    char *topic;
    int32_t partition;
} seek_pending;

struct sl_kafka_consumer {
    kafka_handle h;
    sl_kafka_message_fn on_message;
    sl_kafka_rebalance_fn on_rebalance;
    void *arg;
    commit_req *commits; /* waiting for their result */
    int closing;
    int close_reported;
    int close_failed;
    sl_kafka_closed_fn closed_fn;
    void *closed_arg;
    char group[256];    /* for spans */
    kafka_query *query; /* an offsets lookup under way */
    sl_kafka_offsets_fn query_fn;
    void *query_arg;
    /* librdkafka's queue thresholds, and what was taken from the queue
     * since it was last seen empty (see "Fetch restarts" above) */
    long long queued_min_msgs, queued_max_bytes;
    long long taken_msgs, taken_bytes;
    /* partitions sl_kafka_seek() moved that have handed over no message
     * since (see "Fetch restarts" above) */
    seek_pending *seeking;
    size_t nseeking, capseeking;
};

/* A librdkafka partition list as our array; NULL (and *n 0) when empty or
 * out of memory. */
static sl_kafka_tp *tp_array(const rd_kafka_topic_partition_list_t *list, size_t *n)
{
    sl_kafka_tp *a;

    *n = 0;
    if (list == NULL || list->cnt == 0)
        return NULL;
    a = calloc((size_t)list->cnt, sizeof(*a));
    if (a == NULL)
        return NULL;
    for (int i = 0; i < list->cnt; i++) {
        a[i].topic = list->elems[i].topic;
        a[i].partition = list->elems[i].partition;
        a[i].offset = list->elems[i].offset;
    }
    *n = (size_t)list->cnt;
    return a;
}

static size_t seek_find(const sl_kafka_consumer *c, const char *topic, int32_t partition)
{
    size_t i;

    for (i = 0; i < c->nseeking; i++)
        if (c->seeking[i].partition == partition && strcmp(c->seeking[i].topic, topic) == 0)
            break;
    return i;
}

/* A message of the partition was handed over: its seek took effect. */
static void seek_settled(sl_kafka_consumer *c, const char *topic, int32_t partition)
{
    size_t i = seek_find(c, topic, partition);

    if (i == c->nseeking)
        return;
    free(c->seeking[i].topic);
    c->seeking[i] = c->seeking[--c->nseeking];
}

/* Remembers a seek of the module's; 0, or -1 when out of memory. */
static int seek_started(sl_kafka_consumer *c, const char *topic, int32_t partition)
{
    char *copy;

    if (seek_find(c, topic, partition) != c->nseeking)
        return 0;
    if (c->nseeking == c->capseeking) {
        size_t cap = c->capseeking != 0 ? c->capseeking * 2 : 8;
        seek_pending *p = realloc(c->seeking, cap * sizeof(*p));
        if (p == NULL)
            return -1;
        c->seeking = p;
        c->capseeking = cap;
    }
    copy = strdup(topic);
    if (copy == NULL)
        return -1;
    c->seeking[c->nseeking++] = (seek_pending){ copy, partition };
    return 0;
}

static void consumer_fetch_event(sl_kafka_consumer *c, rd_kafka_event_t *ev)
{
    kafka_handle *h = &c->h;
    const rd_kafka_message_t *rkm;

    while ((rkm = rd_kafka_event_message_next(ev)) != NULL) {
        const char *name = rkm->rkt != NULL ? rd_kafka_topic_name(rkm->rkt) : "";
        kafka_topic *t;
        sl_kafka_msg m;
        sl_trace_ctx ctx, saved;
        sl_span *span;

        c->taken_msgs++;
        c->taken_bytes += (long long)rkm->len; /* librdkafka counts the payload */
        if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                continue;
            kafka_series_add(kafka_series1(h, h->m_errors, rd_kafka_err2name(rkm->err)), 1);
            sl_log(h->ctx, SL_LOG_WARN, "%s: %s [%d]: %s", h->kind, name, (int)rkm->partition,
                   rd_kafka_message_errstr(rkm));
            continue;
        }
        if (c->nseeking != 0)
            seek_settled(c, name, rkm->partition);
        t = kafka_topic_get(h, name, 0);
        kafka_series_add(t != NULL ? t->consumed : NULL, 1);
        kafka_set_ready(h, 1, "");
        kafka_msg_fill(&m, rkm, name);
        span = kafka_trace_consume(rkm, name, c->group, &ctx);
        if (span != NULL)
            sl_trace_enter(&ctx, &saved);
        c->on_message(c, &m, c->arg);
        if (span != NULL) {
            sl_trace_restore(&saved);
            sl_span_end(span);
        }
        if (h->life.freeing)
            return;
    }
}

static void consumer_rebalance_event(sl_kafka_consumer *c, rd_kafka_event_t *ev)
{
    kafka_handle *h = &c->h;
    rd_kafka_resp_err_t what = rd_kafka_event_error(ev);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_event_topic_partition_list(ev);
    int cooperative = strcmp(rd_kafka_rebalance_protocol(h->rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    sl_kafka_rebalance kind;
    sl_kafka_tp *tps;
    size_t n;

    if (what == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        kind = SL_KAFKA_ASSIGNED;
        if (cooperative)
            error = rd_kafka_incremental_assign(h->rk, parts);
        else
            e = rd_kafka_assign(h->rk, parts);
    } else {
        kind = rd_kafka_assignment_lost(h->rk) ? SL_KAFKA_LOST : SL_KAFKA_REVOKED;
    }
    kafka_series_add(kafka_series1(h, h->m_rebalances,
                                   kind == SL_KAFKA_ASSIGNED  ? "assigned"
                                   : kind == SL_KAFKA_REVOKED ? "revoked"
                                                              : "lost"),
                     1);
    sl_log(h->ctx, SL_LOG_INFO, "%s: %d partition%s %s", h->kind, parts != NULL ? parts->cnt : 0,
           parts != NULL && parts->cnt == 1 ? "" : "s",
           kind == SL_KAFKA_ASSIGNED  ? "assigned"
           : kind == SL_KAFKA_REVOKED ? "revoked"
                                      : "lost");
    if (c->on_rebalance != NULL) {
        tps = tp_array(parts, &n);
        c->on_rebalance(c, kind, tps, n, c->arg);
        free(tps);
        if (h->life.freeing)
            return;
    }
    if (kind != SL_KAFKA_ASSIGNED) {
        /* Revoked only after the module had its say (e.g. committed). */
        if (cooperative)
            error = rd_kafka_incremental_unassign(h->rk, parts);
        else
            e = rd_kafka_assign(h->rk, NULL);
    }
    if (error != NULL) {
        sl_log(h->ctx, SL_LOG_ERROR, "%s: rebalance: %s", h->kind, rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        sl_log(h->ctx, SL_LOG_ERROR, "%s: rebalance: %s", h->kind, rd_kafka_err2str(e));
    }
}

static void commit_unlink(sl_kafka_consumer *c, commit_req *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        c->commits = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
}

static void consumer_commit_event(sl_kafka_consumer *c, rd_kafka_event_t *ev)
{
    kafka_handle *h = &c->h;
    commit_req *r = rd_kafka_event_opaque(ev);
    rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
    sl_kafka_commit_fn fn;
    sl_kafka_tp *tps;
    void *arg;
    size_t n;

    if (r == NULL) {
        /* An automatic commit; nothing committed is not a failure. */
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
            sl_log(h->ctx, SL_LOG_WARN, "%s: auto-commit: %s", h->kind, rd_kafka_err2str(e));
        return;
    }
    commit_unlink(c, r);
    fn = r->fn;
    arg = r->arg;
    free(r);
    kafka_series_add(kafka_series1(h, h->m_commits,
                                   e == RD_KAFKA_RESP_ERR_NO_ERROR ? "ok" : "failed"),
                     1);
    if (fn == NULL)
        return;
    tps = tp_array(rd_kafka_event_topic_partition_list(ev), &n);
    fn(c, e, tps, n, arg);
    free(tps);
}

static void consumer_event(kafka_handle *h, rd_kafka_event_t *ev)
{
    sl_kafka_consumer *c = (sl_kafka_consumer *)h;

    switch (rd_kafka_event_type(ev)) {
    case RD_KAFKA_EVENT_FETCH:
        consumer_fetch_event(c, ev);
        break;
    case RD_KAFKA_EVENT_REBALANCE:
        consumer_rebalance_event(c, ev);
        break;
    case RD_KAFKA_EVENT_OFFSET_COMMIT:
        consumer_commit_event(c, ev);
        break;
    default:
        break;
    }
}

static void report_closed(sl_kafka_consumer *c, int err)
{
    sl_kafka_closed_fn fn = c->closed_fn;

    if (c->close_reported)
        return;
    c->close_reported = 1;
    evtimer_del(c->h.timer);
    sl_log(c->h.ctx, err == 0 ? SL_LOG_INFO : SL_LOG_WARN, "%s: %s", c->h.kind,
           err == 0 ? "left its group" : "did not close in time");
    if (fn != NULL)
        fn(c, err, c->closed_arg);
}

/* An offsets lookup finished: its answer to the module, on the loop. */
static void query_deliver(sl_kafka_consumer *c)
{
    kafka_query *q = c->query;
    sl_kafka_tp *tps;
    size_t n;
    int err;

    c->query = NULL;
    tps = kafka_query_result(q, &n, &err);
    c->query_fn(c, err, tps, n, c->query_arg);
    free(tps);
    kafka_query_free(q);
}

/* Seeks `list`'s partitions to their positions, which wakes the broker
 * threads that serve them; partitions never read from, and those the
 * module moved itself, are left alone. */
static void restart_fetch(sl_kafka_consumer *c, rd_kafka_topic_partition_list_t *list,
                          const char *reason)
{
    rd_kafka_topic_partition_list_t *seek;
    rd_kafka_error_t *error;

    if (rd_kafka_position(c->h.rk, list) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    seek = rd_kafka_topic_partition_list_new(list->cnt);
    if (seek == NULL)
        return;
    for (int i = 0; i < list->cnt; i++)
        if (list->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && list->elems[i].offset >= 0 &&
            seek_find(c, list->elems[i].topic, list->elems[i].partition) == c->nseeking)
            rd_kafka_topic_partition_list_add(seek, list->elems[i].topic, list->elems[i].partition)
                    ->offset = list->elems[i].offset;
    if (seek->cnt > 0) {
        /* No timeout: the seeks are queued and the call returns at once. */
        error = rd_kafka_seek_partitions(c->h.rk, seek, 0);
        if (error != NULL) {
            sl_log(c->h.ctx, SL_LOG_DEBUG, "%s: fetch restart: %s", c->h.kind,
                   rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        } else {
            kafka_series_add(kafka_series1(&c->h, c->h.m_restarts, reason), 1);
        }
    }
    rd_kafka_topic_partition_list_destroy(seek);
}

/* The queue is empty: if the loop took a threshold's worth from it since
 * it was last empty, the fetchers may have stopped and wait to be woken. */
static void restart_if_drained(sl_kafka_consumer *c)
{
    rd_kafka_topic_partition_list_t *assigned = NULL;

    if (rd_kafka_queue_length(c->h.q) != 0)
        return;
    if (!c->closing &&
        (c->taken_msgs >= c->queued_min_msgs || c->taken_bytes >= c->queued_max_bytes) &&
        rd_kafka_assignment(c->h.rk, &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (assigned->cnt > 0)
            restart_fetch(c, assigned, "drained");
        rd_kafka_topic_partition_list_destroy(assigned);
    }
    c->taken_msgs = c->taken_bytes = 0;
}

static void consumer_after_serve(kafka_handle *h, int served_dr)
{
    sl_kafka_consumer *c = (sl_kafka_consumer *)h;

    (void)served_dr;
    if (c->query != NULL && kafka_query_finished(c->query)) {
        query_deliver(c);
        if (h->life.freeing)
            return;
    }
    restart_if_drained(c);
    if (c->closing && !c->close_reported && (c->close_failed || rd_kafka_consumer_closed(h->rk)))
        report_closed(c, c->close_failed ? -1 : 0);
}

static void close_timeout(evutil_socket_t fd, short what, void *arg)
{
    sl_kafka_consumer *c = arg;

    (void)fd;
    (void)what;
    report_closed(c, -1);
}

static void consumer_free_extra(kafka_handle *h)
{
    sl_kafka_consumer *c = (sl_kafka_consumer *)h;

    kafka_query_free(c->query);
    c->query = NULL;
    for (size_t i = 0; i < c->nseeking; i++)
        free(c->seeking[i].topic);
    free(c->seeking);
    c->seeking = NULL;
    c->nseeking = c->capseeking = 0;
    /* Results that never came: their callbacks are not called. */
    while (c->commits != NULL) {
        commit_req *r = c->commits;
        c->commits = r->next;
        free(r);
    }
}

/* A numeric property as the client was configured, or `dflt`. */
static long long conf_number(rd_kafka_t *rk, const char *name, long long dflt)
{
    char buf[32];
    size_t len = sizeof(buf);

    if (rd_kafka_conf_get(rd_kafka_conf(rk), name, buf, &len) != RD_KAFKA_CONF_OK)
        return dflt;
    return strtoll(buf, NULL, 10);
}

SL_API sl_kafka_consumer *sl_kafka_consumer_new(sl_ctx *ctx, const char *group,
                                                const char *const *topics, size_t ntopics,
                                                sl_kafka_message_fn on_message,
                                                sl_kafka_rebalance_fn on_rebalance, void *arg,
                                                const char *const *props, char *err, size_t errlen)
{
    sl_kafka_consumer *c;
    rd_kafka_topic_partition_list_t *subs;
    rd_kafka_resp_err_t e;
    char scratch[512];

    if (err == NULL || errlen == 0) {
        err = scratch;
        errlen = sizeof(scratch);
    }
    if (sl_ctx_refuse(ctx, "a Kafka consumer")) {
        snprintf(err, errlen, "not in check()");
        return NULL;
    }
    if (group == NULL || group[0] == '\0' || topics == NULL || ntopics == 0 || on_message == NULL) {
        snprintf(err, errlen, "a consumer needs a group, topics and a message callback");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->h.on_event = consumer_event;
    c->h.after_serve = consumer_after_serve;
    c->h.free_extra = consumer_free_extra;
    c->on_message = on_message;
    c->on_rebalance = on_rebalance;
    c->arg = arg;
    snprintf(c->group, sizeof(c->group), "%s", group);
    if (kafka_start(&c->h, ctx, RD_KAFKA_CONSUMER, group, props,
                    RD_KAFKA_EVENT_REBALANCE | RD_KAFKA_EVENT_OFFSET_COMMIT | RD_KAFKA_EVENT_ERROR |
                            RD_KAFKA_EVENT_LOG | RD_KAFKA_EVENT_STATS,
                    close_timeout, err, errlen) != 0)
        return NULL;
    c->queued_min_msgs = conf_number(c->h.rk, "queued.min.messages", 100000);
    c->queued_max_bytes = conf_number(c->h.rk, "queued.max.messages.kbytes", 65536) * 1024;
    subs = rd_kafka_topic_partition_list_new((int)ntopics);
    if (subs == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < ntopics; i++) {
        /* The embedded broker gives a topic it auto-creates a fixed 4
         * partitions; create named ones with ours first. */
        if (c->h.cluster != NULL && topics[i][0] != '^')
            sl_kafka_cluster_ensure_topic(c->h.cluster, topics[i]);
        rd_kafka_topic_partition_list_add(subs, topics[i], RD_KAFKA_PARTITION_UA);
    }
    e = rd_kafka_subscribe(c->h.rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "subscribe: %s", rd_kafka_err2str(e));
        goto fail;
    }
    return c;

fail:
    sl_log(ctx, SL_LOG_ERROR, "kafka consumer: %s", err);
    kafka_free(&c->h);
    return NULL;
}

SL_API int sl_kafka_consumer_pause(sl_kafka_consumer *c, const char *topic, int32_t partition,
                                   int pause)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t e;

    if (c->h.life.freeing || topic == NULL || partition < 0)
        return SL_KAFKA_EINVAL;
    list = rd_kafka_topic_partition_list_new(1);
    if (list == NULL)
        return SL_KAFKA_ENOMEM;
    rd_kafka_topic_partition_list_add(list, topic, partition);
    e = pause ? rd_kafka_pause_partitions(c->h.rk, list)
              : rd_kafka_resume_partitions(c->h.rk, list);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        e = list->elems[0].err;
    /* Pausing dropped what was queued for it: seeking to its position
     * drops nothing more, and wakes the fetcher. */
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR && !pause && !c->closing)
        restart_fetch(c, list, "resumed");
    rd_kafka_topic_partition_list_destroy(list);
    return e == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : SL_KAFKA_EUNKNOWN;
}

SL_API void sl_kafka_consumer_hold(sl_kafka_consumer *c, int hold)
{
    hold = hold && !c->closing;
    if (c->h.life.freeing || hold == c->h.held)
        return;
    c->h.held = hold;
    /* The queue's pipe fires only when it goes from empty to not empty:
     * serve what waited without it. */
    if (!hold)
        event_active(c->h.wake, EV_READ, 1);
}

SL_API int64_t sl_kafka_consumer_backlog(sl_kafka_consumer *c)
{
    rd_kafka_topic_partition_list_t *assigned = NULL;
    int64_t n = 0, low, high;

    if (c->h.life.freeing || rd_kafka_assignment(c->h.rk, &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    if (assigned->cnt > 0 && rd_kafka_position(c->h.rk, assigned) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (int i = 0; i < assigned->cnt; i++) {
            const rd_kafka_topic_partition_t *p = &assigned->elems[i];
            if (p->offset >= 0 &&
                rd_kafka_get_watermark_offsets(c->h.rk, p->topic, p->partition, &low, &high) ==
                        RD_KAFKA_RESP_ERR_NO_ERROR &&
                high > p->offset)
                n += high - p->offset;
        }
    rd_kafka_topic_partition_list_destroy(assigned);
    return n;
}

SL_API int sl_kafka_commit(sl_kafka_consumer *c, const sl_kafka_tp *parts, size_t nparts,
                           sl_kafka_commit_fn done, void *arg)
{
    rd_kafka_topic_partition_list_t *list;
    commit_req *r;
    rd_kafka_resp_err_t e;

    if (c->h.life.freeing || c->close_reported || parts == NULL || nparts == 0)
        return SL_KAFKA_EINVAL;
    list = rd_kafka_topic_partition_list_new((int)nparts);
    r = calloc(1, sizeof(*r));
    if (list == NULL || r == NULL) {
        if (list != NULL)
            rd_kafka_topic_partition_list_destroy(list);
        free(r);
        return SL_KAFKA_ENOMEM;
    }
    for (size_t i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(list, parts[i].topic, parts[i].partition)->offset =
                parts[i].offset;
    r->fn = done;
    r->arg = arg;
    r->next = c->commits;
    if (c->commits != NULL)
        c->commits->prev = r;
    c->commits = r;
    /* With a queue given the result comes back on it as an event: the
     * call itself does not wait. */
    e = rd_kafka_commit_queue(c->h.rk, list, c->h.q, NULL, r);
    rd_kafka_topic_partition_list_destroy(list);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        commit_unlink(c, r);
        free(r);
        sl_log(c->h.ctx, SL_LOG_WARN, "%s: commit: %s", c->h.kind, rd_kafka_err2str(e));
        return SL_KAFKA_EINVAL;
    }
    return 0;
}

static int query_start(sl_kafka_consumer *c, const sl_kafka_tp *parts, size_t nparts,
                       int64_t time_ms, double timeout, sl_kafka_offsets_fn done, void *arg)
{
    if (c->h.life.freeing || c->closing || c->query != NULL || parts == NULL || nparts == 0 ||
        nparts > INT_MAX || done == NULL || !(timeout > 0 && timeout < 3600))
        return SL_KAFKA_EINVAL;
    c->query = kafka_query_start(&c->h, parts, nparts, time_ms, (int)(timeout * 1000));
    if (c->query == NULL)
        return SL_KAFKA_ENOMEM;
    c->query_fn = done;
    c->query_arg = arg;
    return 0;
}

SL_API int sl_kafka_offsets_for_times(sl_kafka_consumer *c, const sl_kafka_tp *parts, size_t nparts,
                                      int64_t time_ms, double timeout, sl_kafka_offsets_fn done,
                                      void *arg)
{
    if (time_ms < SL_KAFKA_TIME_BEGINNING)
        return SL_KAFKA_EINVAL;
    return query_start(c, parts, nparts, time_ms, timeout, done, arg);
}

SL_API int sl_kafka_committed(sl_kafka_consumer *c, const sl_kafka_tp *parts, size_t nparts,
                              double timeout, sl_kafka_offsets_fn done, void *arg)
{
    return query_start(c, parts, nparts, KAFKA_QUERY_COMMITTED, timeout, done, arg);
}

SL_API int sl_kafka_seek(sl_kafka_consumer *c, const sl_kafka_tp *parts, size_t nparts)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_error_t *error;
    int rc = 0;

    if (c->h.life.freeing || c->closing || parts == NULL || nparts == 0 || nparts > INT_MAX)
        return SL_KAFKA_EINVAL;
    /* Remembered first: a seek no fetch restart can undo, or none. */
    for (size_t i = 0; i < nparts; i++)
        if (seek_started(c, parts[i].topic, parts[i].partition) != 0)
            return SL_KAFKA_ENOMEM;
    list = rd_kafka_topic_partition_list_new((int)nparts);
    if (list == NULL)
        return SL_KAFKA_ENOMEM;
    for (size_t i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(list, parts[i].topic, parts[i].partition)->offset =
                parts[i].offset;
    /* Asynchronous (timeout 0), yet each partition's version barrier is
     * raised in this call: what was fetched for the old position is
     * dropped when its queue is served, never handed over. */
    error = rd_kafka_seek_partitions(c->h.rk, list, 0);
    if (error != NULL) {
        sl_log(c->h.ctx, SL_LOG_WARN, "%s: seek: %s", c->h.kind, rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        rc = SL_KAFKA_EUNKNOWN;
    }
    /* Started asynchronously, a partition's seek says "in progress". */
    for (int i = 0; rc == 0 && i < list->cnt; i++)
        if (list->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR &&
            list->elems[i].err != RD_KAFKA_RESP_ERR__IN_PROGRESS)
            rc = SL_KAFKA_EUNKNOWN;
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

/*
 * librdkafka 2.0 has rd_kafka_consumer_close_queue(): the close runs on its
 * threads and its rebalance events come to the queue we give it, which we
 * serve like any other (the consumer queue cannot be given: it is the one
 * being forwarded).  rd_kafka_consumer_closed() then tells us it is done.
 */
SL_API void sl_kafka_consumer_close(sl_kafka_consumer *c, double timeout, sl_kafka_closed_fn done,
                                    void *arg)
{
    kafka_handle *h = &c->h;
    struct timeval tv;
    rd_kafka_error_t *error;

    if (h->life.freeing)
        return;
    c->closed_fn = done;
    c->closed_arg = arg;
    if (c->closing)
        return;
    c->closing = 1;
    sl_kafka_consumer_hold(c, 0); /* the close's events come through the loop */
    if (timeout < 0)
        timeout = 0;
    tv.tv_sec = (time_t)timeout;
    tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) * 1e6);
    h->closeq = rd_kafka_queue_new(h->rk);
    if (h->closeq == NULL) {
        c->close_failed = 1;
        sl_log(h->ctx, SL_LOG_ERROR, "%s: close: out of memory", h->kind);
    } else {
        rd_kafka_queue_io_event_enable(h->closeq, h->pipe[1], "1", 1);
        error = rd_kafka_consumer_close_queue(h->rk, h->closeq);
        if (error != NULL) {
            sl_log(h->ctx, SL_LOG_ERROR, "%s: close: %s", h->kind, rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
            c->close_failed = 1;
        }
    }
    if (c->close_failed) {
        tv.tv_sec = 0;
        tv.tv_usec = 0;
    }
    evtimer_add(h->timer, &tv);
}

SL_API void sl_kafka_consumer_free(sl_kafka_consumer *c)
{
    if (c != NULL)
        kafka_free(&c->h);
}
