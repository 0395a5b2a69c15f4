/*
 * kafka_int.h - what kafka.c (the handle machinery every Kafka kafka_handle
 * shares), kafka_producer.c and kafka_consumer.c share; nothing else
 * includes it.
 *
 * A producer or consumer embeds a handle as its first member, so a kafka_handle
 * pointer is a producer or consumer pointer.  kafka.c serves the handle's
 * queue and gives each event it does not handle itself (logs, errors,
 * statistics) to the handle's on_event; the kind's own state lives in its
 * struct, in its file.
 */
#ifndef SL_KAFKA_INT_H
#define SL_KAFKA_INT_H

#include <stddef.h>
#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include "daemon/core.h"
#include "connectors/connector.h"
#include "kafka.h"
#include <sluice/kafka.h>

typedef struct {
    char *name;
    rd_kafka_topic_t *rkt; /* producers only */
    sl_series *produced;
    sl_series *delivered;
    sl_series *consumed;
} kafka_topic;

typedef struct kafka_handle kafka_handle;
struct kafka_handle {
    sl_ctx *ctx;
    /* The owning instance's module name, the first label of every series,
     * so that two modules using one topic do not share a series.  The
     * core's string: valid while the handle is not being freed. */
    const char *module;
    sl_conn_life life; /* owner, and our frames on the stack */
    const char *kind;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;      /* the queue the loop serves */
    rd_kafka_queue_t *closeq; /* a consumer's while it closes */
    int pipe[2];
    struct event *wake;
    struct event *tick;
    struct event *timer; /* a producer's flush, a consumer's close */
    sl_kafka_cluster *cluster;
    void (*on_event)(kafka_handle *h, rd_kafka_event_t *ev);
    void (*after_serve)(kafka_handle *h, int served_dr);
    void (*free_extra)(kafka_handle *h);
    int held; /* a consumer whose module takes no messages for now */
    int fatal;
    int ready;
    int embedded; /* the brokers are an embedded cluster, here or in a local peer (file:) */
    char why[200];
    kafka_topic **topics;
    size_t ntopics;
    sl_metric *m_produced;
    sl_metric *m_delivered;
    sl_metric *m_failed;
    sl_metric *m_rejected;
    sl_metric *m_consumed;
    sl_metric *m_errors;
    sl_metric *m_lag;
    sl_metric *m_rebalances;
    sl_metric *m_commits;
    sl_metric *m_restarts;
    int served_dr; /* DR events served in the current wakeup */
};

static inline void kafka_series_add(sl_series *s, double v)
{
    if (s != NULL)
        sl_series_add(s, v);
}

/* The series of `m` for this handle's module and the given labels. */
static inline sl_series *kafka_series1(const kafka_handle *h, sl_metric *m, const char *a)
{
    return m != NULL ? sl_series_of(m, h->module, a) : NULL;
}

static inline sl_series *kafka_series2(const kafka_handle *h, sl_metric *m, const char *a,
                                       const char *b)
{
    return m != NULL ? sl_series_of(m, h->module, a, b) : NULL;
}

/* ------------------------------------------- kafka.c for the two kinds */

/* Readiness as librdkafka last told it; a fatal error keeps it at 0. */
void kafka_set_ready(kafka_handle *h, int ready, const char *why);

/* The handle's record of `name`, or NULL. */
kafka_topic *kafka_topic_find(kafka_handle *h, const char *name);
/* The handle's record of `name`, created on first use; for a producer
 * with its rd_kafka_topic_t.  NULL when out of memory. */
kafka_topic *kafka_topic_get(kafka_handle *h, const char *name, int producer);

/* Our view of a librdkafka message, valid while `rkm` is. */
void kafka_msg_fill(sl_kafka_msg *m, const rd_kafka_message_t *rkm, const char *topic);

/*
 * Creates the client of `type` (`group` for a consumer), registers the
 * kind's metrics and wires its queue to the loop; `timer_fn` is the
 * handle's one timer (a producer's flush, a consumer's close).  On failure
 * everything is undone, `h` freed too, the reason is in `err` and -1
 * returned.
 */
int kafka_start(kafka_handle *h, sl_ctx *ctx, rd_kafka_type_t type, const char *group,
                const char *const *props, int events, event_callback_fn timer_fn, char *err,
                size_t errlen);
/* The module frees the handle: destroyed now, or once the dispatch that
 * is calling module code has unwound. */
void kafka_free(kafka_handle *h);

/* ------------------------------------- kafka_offsets.c for the consumer */

/* Offsets for a time, looked up on a thread of its own that wakes the
 * handle's pipe when it is done (see kafka_offsets.c). */
typedef struct kafka_query kafka_query;
/* `time_ms` KAFKA_QUERY_COMMITTED asks for the group's committed offsets
 * (-1 where none) instead of offsets for a time.  NULL when out of memory
 * or no thread could be started. */
#define KAFKA_QUERY_COMMITTED INT64_MIN
kafka_query *kafka_query_start(kafka_handle *h, const sl_kafka_tp *parts, size_t n, int64_t time_ms,
                               int timeout_ms);
/* 1 once the thread is done; then kafka_query_result() does not wait. */
int kafka_query_finished(kafka_query *q);
/* The answer (topics point into `q`: free the array before it) and the
 * first error; waits for the thread. */
sl_kafka_tp *kafka_query_result(kafka_query *q, size_t *n, int *err);
/* Waits for the thread (bounded by its timeout) and frees. */
void kafka_query_free(kafka_query *q);

#endif
