/*
 * kafka_offsets.c - a consumer's offsets for a time (Kafka's ListOffsets
 * by timestamp), looked up without blocking the loop.
 *
 * librdkafka 2.0 answers offsets for times only synchronously
 * (rd_kafka_offsets_for_times() waits for the broker), so the lookup runs
 * on a thread of its own that calls nothing but librdkafka, then wakes
 * the loop through the handle's pipe; the consumer hands the answer to
 * the module from its queue's serve, on the loop (kafka_consumer.c).
 * The thread is joined before the handle is destroyed: its work is
 * bounded by the timeout it was given.
 *
 * The embedded broker (librdkafka 2.0.2's mock cluster) answers ListOffsets
 * by timestamp with -1 for every time ("FIXME: by timestamp" in
 * rdkafka_mock_handlers.c), which a real broker would mean as "no message
 * that late".  For it the thread finds the offsets by reading each
 * partition from its first held message until one is at least as late as
 * the time asked: the embedded broker holds at most 5 MiB a partition.
 *
 * The same thread answers the group's committed offsets
 * (rd_kafka_committed(), as synchronous).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kafka_int.h"

struct kafka_query {
    pthread_t thread;
    int started;
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *list; /* .offset: the time asked, then the answer */
    int committed;                         /* the group's committed offsets instead */
    int scan;                              /* read the partitions: an embedded broker */
    int timeout_ms;
    int wake;            /* the handle's pipe */
    atomic_int finished; /* set last by the thread */
    rd_kafka_resp_err_t err;
    char bootstrap[1024];
};

/* The first offset of `partition` at or after `time_ms` by reading it
 * through `rk` (a client of its own), or -1 when no held message is that
 * late.  An error code when the partition could not be read in time. */
static rd_kafka_resp_err_t scan_partition(rd_kafka_t *rk, const char *topic, int32_t partition,
                                          int64_t time_ms, int timeout_ms, int64_t *offset)
{
    rd_kafka_topic_t *rkt;
    rd_kafka_resp_err_t err;
    int64_t lo, hi;

    *offset = -1;
    err = rd_kafka_query_watermark_offsets(rk, topic, partition, &lo, &hi, timeout_ms);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && time_ms == SL_KAFKA_TIME_END)
        *offset = hi;
    else if (err == RD_KAFKA_RESP_ERR_NO_ERROR && time_ms == SL_KAFKA_TIME_BEGINNING)
        *offset = lo;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR || lo >= hi || time_ms < 0)
        return err;
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rkt == NULL)
        return rd_kafka_last_error();
    if (rd_kafka_consume_start(rkt, partition, lo) != 0) {
        err = rd_kafka_last_error();
        rd_kafka_topic_destroy(rkt);
        return err;
    }
    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consume(rkt, partition, timeout_ms);
        int64_t at, ts;

        if (m == NULL) {
            err = RD_KAFKA_RESP_ERR__TIMED_OUT;
            break;
        }
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            err = m->err;
            rd_kafka_message_destroy(m);
            break;
        }
        at = m->offset;
        ts = rd_kafka_message_timestamp(m, NULL);
        rd_kafka_message_destroy(m);
        if (ts >= time_ms) {
            *offset = at;
            break;
        }
        if (at + 1 >= hi)
            break;
    }
    rd_kafka_consume_stop(rkt, partition);
    rd_kafka_topic_destroy(rkt);
    return err;
}

static rd_kafka_resp_err_t scan(kafka_query *q)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char why[512];
    rd_kafka_t *rk;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (conf == NULL)
        return RD_KAFKA_RESP_ERR__FAIL;
    if (rd_kafka_conf_set(conf, "bootstrap.servers", q->bootstrap, why, sizeof(why)) !=
                RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", why, sizeof(why)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "3", why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return RD_KAFKA_RESP_ERR__INVALID_ARG;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return RD_KAFKA_RESP_ERR__FAIL;
    }
    for (int i = 0; i < q->list->cnt && err == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
        rd_kafka_topic_partition_t *tp = &q->list->elems[i];
        tp->err = scan_partition(rk, tp->topic, tp->partition, tp->offset, q->timeout_ms,
                                 &tp->offset);
        err = tp->err;
    }
    rd_kafka_destroy(rk);
    return err;
}

static void *query_main(void *arg)
{
    kafka_query *q = arg;
    ssize_t w;

    if (q->committed)
        q->err = rd_kafka_committed(q->rk, q->list, q->timeout_ms);
    else if (q->scan)
        q->err = scan(q);
    else
        q->err = rd_kafka_offsets_for_times(q->rk, q->list, q->timeout_ms);
    atomic_store(&q->finished, 1);
    /* The pipe is non-blocking and only wakes the loop: a full pipe
     * already will. */
    w = write(q->wake, "1", 1);
    (void)w;
    return NULL;
}

kafka_query *kafka_query_start(kafka_handle *h, const sl_kafka_tp *parts, size_t n, int64_t time_ms,
                               int timeout_ms)
{
    kafka_query *q = calloc(1, sizeof(*q));
    size_t len = sizeof(q->bootstrap);

    if (q == NULL)
        return NULL;
    q->rk = h->rk;
    q->committed = time_ms == KAFKA_QUERY_COMMITTED;
    q->scan = h->embedded && !q->committed;
    q->timeout_ms = timeout_ms;
    q->wake = h->pipe[1];
    atomic_init(&q->finished, 0);
    if (q->scan && rd_kafka_conf_get(rd_kafka_conf(h->rk), "bootstrap.servers", q->bootstrap,
                                     &len) != RD_KAFKA_CONF_OK) {
        free(q);
        return NULL;
    }
    q->list = rd_kafka_topic_partition_list_new((int)n);
    if (q->list == NULL) {
        free(q);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(q->list, parts[i].topic, parts[i].partition)->offset =
                time_ms;
    if (pthread_create(&q->thread, NULL, query_main, q) != 0) {
        kafka_query_free(q);
        return NULL;
    }
    q->started = 1;
    return q;
}

int kafka_query_finished(kafka_query *q)
{
    return atomic_load(&q->finished);
}

sl_kafka_tp *kafka_query_result(kafka_query *q, size_t *n, int *err)
{
    sl_kafka_tp *tps;

    pthread_join(q->thread, NULL);
    q->started = 0;
    *n = 0;
    *err = q->err;
    tps = calloc((size_t)q->list->cnt + 1, sizeof(*tps));
    if (tps == NULL) {
        *err = RD_KAFKA_RESP_ERR__FAIL;
        return NULL;
    }
    for (int i = 0; i < q->list->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &q->list->elems[i];
        tps[i].topic = tp->topic;
        tps[i].partition = tp->partition;
        /* A per-partition error leaves that partition without an answer. */
        tps[i].offset = tp->err == RD_KAFKA_RESP_ERR_NO_ERROR && tp->offset >= 0 ? tp->offset : -1;
        if (*err == RD_KAFKA_RESP_ERR_NO_ERROR && tp->err != RD_KAFKA_RESP_ERR_NO_ERROR)
            *err = tp->err;
    }
    *n = (size_t)q->list->cnt;
    return tps;
}

void kafka_query_free(kafka_query *q)
{
    if (q == NULL)
        return;
    if (q->started)
        pthread_join(q->thread, NULL);
    if (q->list != NULL)
        rd_kafka_topic_partition_list_destroy(q->list);
    free(q);
}
