/*
 * kafka_trace.c - spans of Kafka work; see kafka_trace.h.  Attribute
 * names are OpenTelemetry's messaging conventions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kafka_trace.h"

struct kafka_pspan {
    kafka_pspan *prev, *next;
    sl_tp tp;         /* the span's position, sent in the header */
    sl_span *span;    /* NULL when not recorded */
    sl_trace_ctx ctx; /* current at produce: the delivery callback's */
};

static void unlink_ps(kafka_trace *kt, kafka_pspan *ps)
{
    if (ps->prev != NULL)
        ps->prev->next = ps->next;
    else
        kt->head = ps->next;
    if (ps->next != NULL)
        ps->next->prev = ps->prev;
    else
        kt->tail = ps->prev;
}

/* The message's traceparent header, parsed; -1 when it has none valid. */
static int header_tp(const rd_kafka_message_t *rkm, sl_tp *tp)
{
    rd_kafka_headers_t *hdrs;
    const void *value;
    size_t size;
    char text[SL_TP_LEN + 1];

    if (rd_kafka_message_headers(rkm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, "traceparent", &value, &size) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
        size != SL_TP_LEN)
        return -1;
    memcpy(text, value, SL_TP_LEN);
    text[SL_TP_LEN] = '\0';
    return sl_tp_parse(text, tp);
}

static void common(sl_span *s, const char *op, const char *topic, int32_t partition)
{
    sl_span_set_str(s, "messaging.system", "kafka");
    sl_span_set_str(s, "messaging.operation.type", op);
    sl_span_set_str(s, "messaging.operation.name", op);
    sl_span_set_str(s, "messaging.destination.name", topic);
    if (partition >= 0) {
        char id[16];
        snprintf(id, sizeof(id), "%d", (int)partition);
        sl_span_set_str(s, "messaging.destination.partition.id", id);
    }
}

kafka_pspan *kafka_trace_produce(kafka_trace *kt, const char *topic, int32_t partition,
                                 const sl_kafka_header *headers, size_t nheaders, char *tp)
{
    sl_trace_ctx parent = sl_trace_cur;
    kafka_pspan *ps;
    char name[300];

    if (!sl_trace_on())
        return NULL;
    for (size_t i = 0; i < nheaders; i++) {
        char given[SL_TP_LEN + 1];
        if (strcmp(headers[i].name, "traceparent") != 0 || headers[i].len != SL_TP_LEN)
            continue;
        memcpy(given, headers[i].value, SL_TP_LEN);
        given[SL_TP_LEN] = '\0';
        if (sl_tp_parse(given, &parent.tp) == 0)
            parent.traced = 1;
    }
    if (!parent.traced)
        return NULL;
    ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return NULL;
    snprintf(name, sizeof(name), "send %s", topic);
    ps->span = sl_span_begin(&parent, SL_SPAN_PRODUCER, name, &ps->tp);
    ps->ctx = sl_trace_cur;
    common(ps->span, "send", topic, partition);
    sl_tp_format(&ps->tp, tp);
    ps->prev = kt->tail;
    if (kt->tail != NULL)
        kt->tail->next = ps;
    else
        kt->head = ps;
    kt->tail = ps;
    return ps;
}

static void end(kafka_pspan *ps, const char *why)
{
    if (why != NULL)
        sl_span_fail(ps->span, "%s", why);
    sl_span_end(ps->span);
    free(ps);
}

void kafka_trace_refused(kafka_trace *kt, kafka_pspan *ps, const char *why)
{
    unlink_ps(kt, ps);
    end(ps, why);
}

int kafka_trace_delivered(kafka_trace *kt, const rd_kafka_message_t *rkm, sl_trace_ctx *ctx)
{
    sl_tp tp;

    if (kt->head == NULL || header_tp(rkm, &tp) != 0)
        return 0;
    for (kafka_pspan *ps = kt->head; ps != NULL; ps = ps->next) {
        if (memcmp(ps->tp.span_id, tp.span_id, 8) != 0)
            continue;
        unlink_ps(kt, ps);
        *ctx = ps->ctx;
        if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            sl_span_set_int(ps->span, "messaging.kafka.offset", (long long)rkm->offset);
            end(ps, NULL);
        } else {
            sl_span_set_str(ps->span, "error.type", rd_kafka_err2name(rkm->err));
            end(ps, rd_kafka_err2str(rkm->err));
        }
        return 1;
    }
    return 0;
}

void kafka_trace_free(kafka_trace *kt)
{
    while (kt->head != NULL) {
        kafka_pspan *ps = kt->head;
        unlink_ps(kt, ps);
        end(ps, "producer freed before the delivery report");
    }
}

sl_span *kafka_trace_consume(const rd_kafka_message_t *rkm, const char *topic, const char *group,
                             sl_trace_ctx *ctx)
{
    char name[300];
    sl_trace_ctx parent = { 0 };
    sl_span *s;

    if (!sl_trace_on() || header_tp(rkm, &parent.tp) != 0)
        return NULL;
    parent.traced = 1;
    snprintf(name, sizeof(name), "process %s", topic);
    memset(ctx, 0, sizeof(*ctx));
    s = sl_span_begin(&parent, SL_SPAN_CONSUMER, name, &ctx->tp);
    ctx->traced = 1;
    common(s, "process", topic, rkm->partition);
    sl_span_set_int(s, "messaging.kafka.offset", (long long)rkm->offset);
    if (group != NULL)
        sl_span_set_str(s, "messaging.consumer.group.name", group);
    if (rkm->key != NULL && rkm->key_len > 0 && rkm->key_len < 256) {
        char key[256];
        memcpy(key, rkm->key, rkm->key_len);
        key[rkm->key_len] = '\0';
        if (strlen(key) == rkm->key_len)
            sl_span_set_str(s, "messaging.kafka.message.key", key);
    }
    return s;
}
