/*
 * kafka_trace.h - spans of Kafka work, and the trace context carried in a
 * message's `traceparent` header.
 *
 * Produce: a PRODUCER span from sl_kafka_produce() to the delivery report,
 * child of the current context, or of a `traceparent` header the caller
 * passed (an outbox row's); the message carries the span's own position
 * in its `traceparent` header, and the delivery callback runs in the
 * context the message was produced in.  Consume: a CONSUMER span per
 * message that carries a `traceparent`, current while the module handles
 * it.  Messages without a trace open nothing, on either side.
 */
#ifndef SL_KAFKA_TRACE_H
#define SL_KAFKA_TRACE_H

#include <librdkafka/rdkafka.h>
#include <sluice/kafka.h>
#include "trace/trace.h"

/* Open produce spans of one producer, oldest first: reports come back
 * about in produce order, so a lookup from the head is short. */
typedef struct kafka_pspan kafka_pspan;
typedef struct {
    kafka_pspan *head, *tail;
} kafka_trace;

/*
 * Before a produce: when the message is to be traced, opens its span and
 * returns it with `tp` (SL_TP_LEN + 1 bytes) holding the header value to
 * send; else NULL.  `headers` are the caller's, searched for a traceparent
 * to continue.
 */
kafka_pspan *kafka_trace_produce(kafka_trace *kt, const char *topic, int32_t partition,
                                 const sl_kafka_header *headers, size_t nheaders, char *tp);
/* The produce call failed: the span ends failed, no report will come. */
void kafka_trace_refused(kafka_trace *kt, kafka_pspan *ps, const char *why);
/*
 * A delivery report: ends the message's span (if it has one) and fills
 * `ctx` with the context the message was produced in.  Returns 1 when it
 * did, else 0 (ctx untouched).
 */
int kafka_trace_delivered(kafka_trace *kt, const rd_kafka_message_t *rkm, sl_trace_ctx *ctx);
/* The producer goes: spans of reports that will never come end failed. */
void kafka_trace_free(kafka_trace *kt);

/* Consume: opens the span of a message carrying a traceparent and fills
 * `ctx` with it; NULL (ctx untouched) otherwise. */
sl_span *kafka_trace_consume(const rd_kafka_message_t *rkm, const char *topic, const char *group,
                             sl_trace_ctx *ctx);

#endif
