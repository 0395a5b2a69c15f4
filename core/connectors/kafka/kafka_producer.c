/*
 * kafka_producer.c - the producer side of the Kafka connector: produce,
 * delivery reports, the queue-space callback and flush.  The handle it
 * embeds is served by kafka.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daemon/core.h"
#include "kafka_int.h"
#include "kafka_trace.h"

#define FLUSH_CHECK_SECONDS 0.005

struct sl_kafka_producer {
    kafka_handle h; /* first: a handle pointer is a producer pointer */
    sl_kafka_delivery_fn on_delivery;
    void *arg;
    sl_kafka_space_fn on_space;
    void *space_arg;
    sl_kafka_flush_fn flush_done;
    void *flush_arg;
    double flush_deadline;
    kafka_trace trace;
};

static void producer_dr_event(sl_kafka_producer *p, rd_kafka_event_t *ev)
{
    kafka_handle *h = &p->h;
    const rd_kafka_message_t *rkm;

    while ((rkm = rd_kafka_event_message_next(ev)) != NULL) {
        kafka_topic *t = rd_kafka_topic_opaque(rkm->rkt);
        sl_kafka_msg m;
        sl_trace_ctx ctx, saved;
        int traced = kafka_trace_delivered(&p->trace, rkm, &ctx);

        if (t == NULL)
            t = kafka_topic_find(h, rd_kafka_topic_name(rkm->rkt));
        /* Metrics first: the module callback may end the instance, and
         * its metrics with it. */
        if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            kafka_series_add(t != NULL ? t->delivered : NULL, 1);
            kafka_set_ready(h, 1, "");
        } else {
            kafka_series_add(kafka_series2(h, h->m_failed, rd_kafka_topic_name(rkm->rkt),
                                           rd_kafka_err2name(rkm->err)),
                             1);
        }
        if (p->on_delivery == NULL)
            continue;
        kafka_msg_fill(&m, rkm, t != NULL ? t->name : NULL);
        /* In the context the message was produced in, like any callback. */
        if (traced)
            sl_trace_enter(&ctx, &saved);
        p->on_delivery(p, &m, p->arg);
        if (traced)
            sl_trace_restore(&saved);
        if (h->life.freeing)
            return;
    }
}

static void producer_event(kafka_handle *h, rd_kafka_event_t *ev)
{
    if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR)
        producer_dr_event((sl_kafka_producer *)h, ev);
}

static void producer_free_extra(kafka_handle *h)
{
    kafka_trace_free(&((sl_kafka_producer *)h)->trace);
}

static void producer_after_serve(kafka_handle *h, int served_dr)
{
    sl_kafka_producer *p = (sl_kafka_producer *)h;
    sl_kafka_space_fn fn = p->on_space;

    if (served_dr == 0 || fn == NULL)
        return;
    p->on_space = NULL;
    fn(p, p->space_arg);
}

static void flush_check(evutil_socket_t fd, short what, void *arg)
{
    sl_kafka_producer *p = arg;
    int n = rd_kafka_outq_len(p->h.rk);
    struct timeval again = { 0, (suseconds_t)(FLUSH_CHECK_SECONDS * 1e6) };
    sl_kafka_flush_fn fn = p->flush_done;

    (void)fd;
    (void)what;
    if (fn == NULL)
        return;
    if (n > 0 && sl_now() < p->flush_deadline) {
        evtimer_add(p->h.timer, &again);
        return;
    }
    p->flush_done = NULL;
    fn(p, n, p->flush_arg);
}

SL_API sl_kafka_producer *sl_kafka_producer_new(sl_ctx *ctx, sl_kafka_delivery_fn on_delivery,
                                                void *arg, const char *const *props, char *err,
                                                size_t errlen)
{
    sl_kafka_producer *p;
    char scratch[512];

    if (err == NULL || errlen == 0) {
        err = scratch;
        errlen = sizeof(scratch);
    }
    if (sl_ctx_refuse(ctx, "a Kafka producer")) {
        snprintf(err, errlen, "not in check()");
        return NULL;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->h.on_event = producer_event;
    p->h.after_serve = producer_after_serve;
    p->h.free_extra = producer_free_extra;
    p->on_delivery = on_delivery;
    p->arg = arg;
    if (kafka_start(&p->h, ctx, RD_KAFKA_PRODUCER, NULL, props,
                    RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG |
                            RD_KAFKA_EVENT_STATS,
                    flush_check, err, errlen) != 0)
        return NULL;
    return p;
}

static int map_produce_error(kafka_handle *h, rd_kafka_resp_err_t e)
{
    const char *reason;
    int code;

    switch (e) {
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        reason = "queue_full", code = SL_KAFKA_EQUEUEFULL;
        break;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        reason = "too_large", code = SL_KAFKA_ETOOLARGE;
        break;
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        reason = "unknown_topic_or_partition", code = SL_KAFKA_EUNKNOWN;
        break;
    case RD_KAFKA_RESP_ERR__FATAL:
        reason = "fatal", code = SL_KAFKA_EFATAL;
        break;
    default:
        reason = "invalid", code = SL_KAFKA_EINVAL;
        break;
    }
    kafka_series_add(kafka_series1(h, h->m_rejected, reason), 1);
    return code;
}

SL_API int sl_kafka_produce(sl_kafka_producer *p, const char *topic, int32_t partition,
                            const void *key, size_t keylen, const void *value, size_t len,
                            const sl_kafka_header *headers, size_t nheaders, void *opaque)
{
    kafka_handle *h = &p->h;
    kafka_topic *t;
    rd_kafka_headers_t *hdrs;
    rd_kafka_resp_err_t e;
    kafka_pspan *ps;
    char tp[SL_TP_LEN + 1];

    if (h->life.freeing || topic == NULL || partition < RD_KAFKA_PARTITION_UA)
        return SL_KAFKA_EINVAL;
    if (h->fatal)
        return SL_KAFKA_EFATAL;
    t = kafka_topic_get(h, topic, 1);
    if (t == NULL)
        return SL_KAFKA_ENOMEM;
    ps = kafka_trace_produce(&p->trace, topic, partition, headers, nheaders, tp);
    if (nheaders == 0 && ps == NULL) {
        /* The plain call: the fastest path librdkafka offers. */
        if (rd_kafka_produce(t->rkt, partition, RD_KAFKA_MSG_F_COPY, (void *)value, len, key,
                             keylen, opaque) != 0)
            return map_produce_error(h, rd_kafka_last_error());
        kafka_series_add(t->produced, 1);
        return 0;
    }
    hdrs = rd_kafka_headers_new(nheaders + 1);
    if (hdrs == NULL) {
        if (ps != NULL)
            kafka_trace_refused(&p->trace, ps, "out of memory");
        return SL_KAFKA_ENOMEM;
    }
    /* A traced message carries its produce span's position instead of the
     * caller's (which became that span's parent). */
    for (size_t i = 0; i < nheaders; i++)
        if (ps == NULL || strcmp(headers[i].name, "traceparent") != 0)
            rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                                (ssize_t)headers[i].len);
    if (ps != NULL)
        rd_kafka_header_add(hdrs, "traceparent", -1, tp, SL_TP_LEN);
    e = rd_kafka_producev(h->rk, RD_KAFKA_V_RKT(t->rkt), RD_KAFKA_V_PARTITION(partition),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, keylen),
                          RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_OPAQUE(opaque),
                          RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(hdrs); /* only taken over on success */
        if (ps != NULL)
            kafka_trace_refused(&p->trace, ps, rd_kafka_err2str(e));
        return map_produce_error(h, e);
    }
    kafka_series_add(t->produced, 1);
    return 0;
}

SL_API void sl_kafka_producer_on_space(sl_kafka_producer *p, sl_kafka_space_fn fn, void *arg)
{
    p->on_space = fn;
    p->space_arg = arg;
}

SL_API int sl_kafka_producer_outq(const sl_kafka_producer *p)
{
    return p->h.rk != NULL ? rd_kafka_outq_len(p->h.rk) : 0;
}

SL_API void sl_kafka_producer_flush(sl_kafka_producer *p, double timeout, sl_kafka_flush_fn done,
                                    void *arg)
{
    struct timeval now = { 0, 0 };
    sl_kafka_flush_fn previous = p->flush_done;

    if (p->h.life.freeing)
        return;
    if (previous != NULL) {
        p->flush_done = NULL;
        sl_conn_enter(&p->h.life);
        previous(p, rd_kafka_outq_len(p->h.rk), p->flush_arg);
        if (!sl_conn_leave(&p->h.life))
            return;
    }
    p->flush_done = done;
    p->flush_arg = arg;
    p->flush_deadline = sl_now() + (timeout > 0 ? timeout : 0);
    if (done != NULL)
        evtimer_add(p->h.timer, &now);
}

SL_API void sl_kafka_producer_free(sl_kafka_producer *p)
{
    if (p != NULL)
        kafka_free(&p->h);
}
