/*
 * sluice/kafka.h - the Kafka connector, for modules.
 *
 * A producer or consumer handle is one librdkafka client configured by the
 * [kafka] section (brokers, client_id, rdkafka.* properties) plus the
 * overrides the module passes.  It belongs to the instance that created it
 * and is released with it; the module may also free it earlier.
 *
 * Everything reaches module code on the loop thread: librdkafka's queues
 * wake the loop through a pipe and the connector drains them there
 * (delivery reports, messages, rebalances, commit results, logs,
 * statistics).  No librdkafka thread ever calls module code, and no
 * function here blocks the loop waiting for the network.
 *
 * A handle is not ready (/readyz) until a broker is reachable, and again
 * whenever librdkafka reports that every broker is down.
 *
 * Properties are NULL-terminated arrays of key, value pairs:
 *
 *     static const char *const props[] = { "linger.ms", "5", NULL };
 */
#ifndef SLUICE_KAFKA_H
#define SLUICE_KAFKA_H

#include <stddef.h>
#include <stdint.h>
#include <sluice/sluice.h>

typedef struct sl_kafka_producer sl_kafka_producer;
typedef struct sl_kafka_consumer sl_kafka_consumer;

/* Lets librdkafka's partitioner choose (by key hash, or at random). */
#define SL_KAFKA_PARTITION_ANY (-1)

/* What sl_kafka_produce() and friends return besides 0. */
#define SL_KAFKA_EQUEUEFULL (-1) /* local queue full: retry once deliveries freed room */
#define SL_KAFKA_EINVAL (-2)     /* bad argument, or the handle is closing */
#define SL_KAFKA_ETOOLARGE (-3)  /* larger than message.max.bytes */
#define SL_KAFKA_EUNKNOWN (-4)   /* unknown topic or partition */
#define SL_KAFKA_EFATAL (-5)     /* the client hit a fatal error; make a new one */
#define SL_KAFKA_EPERM (-6)      /* [kafka] admin is off, or not embedded */
#define SL_KAFKA_ENOMEM (-7)

SL_API const char *sl_kafka_strerror(int code);

typedef struct {
    const char *name;
    const void *value;
    size_t len;
} sl_kafka_header;

/*
 * A message as handed to a callback; read-only and valid only during it.
 * For a delivery report `err` is 0 when the broker acknowledged it, else a
 * librdkafka error code (rd_kafka_resp_err_t) with its name and text, and
 * `opaque` is what was given to sl_kafka_produce().
 */
typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset;  /* -1 when not known */
    const void *key; /* NULL when the message has none */
    size_t keylen;
    const void *value; /* NULL for a tombstone */
    size_t len;
    int64_t timestamp_ms; /* -1 when not known */
    int err;
    const char *errname; /* "" when err is 0 */
    const char *errstr;  /* "" when err is 0 */
    void *opaque;
    const void *impl; /* the connector's; for sl_kafka_msg_header() */
} sl_kafka_msg;

/* The `i`th header of a message: 0 and its parts, or -1 past the last. */
SL_API int sl_kafka_msg_header(const sl_kafka_msg *m, size_t i, const char **name,
                               const void **value, size_t *len);

/* ---------------------------------------------------------------- producer */

/* One report per message produced; `msg->opaque` is its msg_opaque. */
typedef void (*sl_kafka_delivery_fn)(sl_kafka_producer *p, const sl_kafka_msg *msg, void *arg);
/* A flush ended: `remaining` is 0, or the messages still undelivered when
 * its timeout expired. */
typedef void (*sl_kafka_flush_fn)(sl_kafka_producer *p, int remaining, void *arg);
/* Room was freed in the local queue after a SL_KAFKA_EQUEUEFULL. */
typedef void (*sl_kafka_space_fn)(sl_kafka_producer *p, void *arg);

/*
 * A producer for this instance.  `on_delivery` may be NULL.  `props`
 * (may be NULL) override the [kafka] section's properties.  Returns NULL
 * with the reason in `err` (if not NULL) on a bad property or when out of
 * memory.
 */
SL_API sl_kafka_producer *sl_kafka_producer_new(sl_ctx *ctx, sl_kafka_delivery_fn on_delivery,
                                                void *arg, const char *const *props, char *err,
                                                size_t errlen);

/*
 * Queues one message; key and value are copied.  Never blocks: returns
 * SL_KAFKA_EQUEUEFULL when the local queue is full (see
 * sl_kafka_producer_on_space), or another SL_KAFKA_E* code.  On 0 exactly one
 * delivery report follows (unless the handle is freed first).  `headers` may
 * be NULL; their names and values are copied.
 */
SL_API int sl_kafka_produce(sl_kafka_producer *p, const char *topic, int32_t partition,
                            const void *key, size_t keylen, const void *value, size_t len,
                            const sl_kafka_header *headers, size_t nheaders, void *opaque);

/* Asks for one call of `fn` once a delivery report batch freed room in the
 * local queue; call it after sl_kafka_produce() returned EQUEUEFULL.  A
 * later call replaces an earlier one; fn NULL cancels. */
SL_API void sl_kafka_producer_on_space(sl_kafka_producer *p, sl_kafka_space_fn fn, void *arg);

/* Messages queued or in flight, delivery reports not yet handed over
 * included. */
SL_API int sl_kafka_producer_outq(const sl_kafka_producer *p);

/*
 * Waits, without blocking the loop, until every queued message has been
 * reported or `timeout` seconds passed, then calls `done` once (never from
 * inside this call).  A flush already pending is ended first with its
 * current count.
 */
SL_API void sl_kafka_producer_flush(sl_kafka_producer *p, double timeout, sl_kafka_flush_fn done,
                                    void *arg);

/* Destroys the producer now.  Messages not yet delivered are dropped and
 * their reports never come.  Safe inside the handle's own callbacks. */
SL_API void sl_kafka_producer_free(sl_kafka_producer *p);

/* ---------------------------------------------------------------- consumer */

typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset; /* for commits: the next offset to read (last processed + 1) */
} sl_kafka_tp;

typedef enum {
    SL_KAFKA_ASSIGNED, /* partitions now ours; called after they were assigned */
    SL_KAFKA_REVOKED,  /* partitions leaving; called before they are unassigned */
    SL_KAFKA_LOST      /* like REVOKED, but another member may already read them */
} sl_kafka_rebalance;

typedef void (*sl_kafka_message_fn)(sl_kafka_consumer *c, const sl_kafka_msg *msg, void *arg);
typedef void (*sl_kafka_rebalance_fn)(sl_kafka_consumer *c, sl_kafka_rebalance what,
                                      const sl_kafka_tp *parts, size_t nparts, void *arg);
/* `err` 0, or the librdkafka error of the commit; `parts` as committed. */
typedef void (*sl_kafka_commit_fn)(sl_kafka_consumer *c, int err, const sl_kafka_tp *parts,
                                   size_t nparts, void *arg);
/* The consumer left its group (`err` 0), or the close timed out (-1). */
typedef void (*sl_kafka_closed_fn)(sl_kafka_consumer *c, int err, void *arg);

/*
 * A member of consumer group `group` subscribed to `topics` (names, or
 * regular expressions starting with '^').  Messages come to `on_message`,
 * in order per partition; errors on the fetch path (e.g. an offset out of
 * range) are logged and counted, not handed over.  The connector performs
 * the assignment itself (eager or cooperative protocol) and tells
 * `on_rebalance` (may be NULL).  librdkafka's defaults apply unless
 * overridden, so offsets are auto-committed unless `props` set
 * enable.auto.commit=false.  Returns NULL with the reason in `err`.
 */
SL_API sl_kafka_consumer *sl_kafka_consumer_new(sl_ctx *ctx, const char *group,
                                                const char *const *topics, size_t ntopics,
                                                sl_kafka_message_fn on_message,
                                                sl_kafka_rebalance_fn on_rebalance, void *arg,
                                                const char *const *props, char *err, size_t errlen);

/* Stops (pause 1) or restarts (pause 0) fetching one partition.  0 or an
 * SL_KAFKA_E* code. */
SL_API int sl_kafka_consumer_pause(sl_kafka_consumer *c, const char *topic, int32_t partition,
                                   int pause);

/*
 * Stops (hold 1) or restarts (hold 0) handing messages over, without
 * pausing anything: what librdkafka fetched stays queued, within its queue
 * thresholds, and is handed over first on restart, where a pause would
 * drop it to be fetched again.  Everything else the consumer reports
 * (rebalances, commit results) waits in the same queue, so hold only while
 * waiting for something quick (a write in progress), well under
 * max.poll.interval.ms, and pause partitions for longer waits.  Takes
 * effect before the next message: one called from on_message is the last.
 * Closing the consumer ends a hold.
 */
SL_API void sl_kafka_consumer_hold(sl_kafka_consumer *c, int hold);

/* Messages waiting for this member: over its assigned partitions, the
 * log end the fetcher last saw minus the position (the offset after the
 * last message handed over), whether still in Kafka or already fetched.
 * Computed locally, without a broker round trip; a partition with neither
 * known yet counts 0. */
SL_API int64_t sl_kafka_consumer_backlog(sl_kafka_consumer *c);

/* Commits explicit offsets asynchronously; `done` (may be NULL) gets the
 * result on the loop.  0 or an SL_KAFKA_E* code (then `done` is not called). */
SL_API int sl_kafka_commit(sl_kafka_consumer *c, const sl_kafka_tp *parts, size_t nparts,
                           sl_kafka_commit_fn done, void *arg);

/*
 * Looks up, for each of `parts` (their `offset` is ignored), the first
 * offset whose message timestamp is at or after `time_ms` (milliseconds
 * since the epoch; Kafka's ListOffsets by time, rd_kafka_offsets_for_times),
 * or with SL_KAFKA_TIME_END the end offset (the next to be written), with
 * SL_KAFKA_TIME_BEGINNING the first offset held,
 * without blocking the loop: the lookup runs on a thread of the connector
 * that calls only librdkafka, bounded by `timeout` seconds, and `done`
 * gets the answer on the loop, never from inside this call.  Its `parts`
 * have `offset` -1 where no held message is that late (or where that
 * partition's lookup failed: then `err` is that error, else 0).  One
 * lookup per consumer at a time.  With the embedded broker, which does
 * not answer ListOffsets by time, the offsets are found by reading the
 * partitions' timestamps.  0, or SL_KAFKA_EINVAL (bad argument, closing,
 * a lookup already under way) or SL_KAFKA_ENOMEM; then `done` is not
 * called.  Freeing the consumer waits for a lookup under way (at most
 * `timeout`) and does not call `done`.
 */
#define SL_KAFKA_TIME_END (-1)
#define SL_KAFKA_TIME_BEGINNING (-2)
typedef void (*sl_kafka_offsets_fn)(sl_kafka_consumer *c, int err, const sl_kafka_tp *parts,
                                    size_t nparts, void *arg);
SL_API int sl_kafka_offsets_for_times(sl_kafka_consumer *c, const sl_kafka_tp *parts, size_t nparts,
                                      int64_t time_ms, double timeout, sl_kafka_offsets_fn done,
                                      void *arg);

/* The group's committed offsets of `parts` (-1 where none), looked up
 * like sl_kafka_offsets_for_times() and sharing its one lookup at a time. */
SL_API int sl_kafka_committed(sl_kafka_consumer *c, const sl_kafka_tp *parts, size_t nparts,
                              double timeout, sl_kafka_offsets_fn done, void *arg);

/* Moves the fetch position of assigned partitions to their `offset`:
 * messages fetched before the call are not handed over any more (the
 * next message of each partition is the one at its new offset), nothing
 * is committed.  0 or an SL_KAFKA_E* code. */
SL_API int sl_kafka_seek(sl_kafka_consumer *c, const sl_kafka_tp *parts, size_t nparts);

/*
 * Leaves the group asynchronously: the last revoke reaches on_rebalance,
 * auto-commit (if on) commits, then `done` is called once.  After
 * `timeout` seconds `done` is called with -1 anyway.  Messages fetched
 * before the revoke may still reach on_message meanwhile: librdkafka
 * stores a message's offset for auto-commit when it is handed over, so
 * dropping them here would lose them.
 */
SL_API void sl_kafka_consumer_close(sl_kafka_consumer *c, double timeout, sl_kafka_closed_fn done,
                                    void *arg);

/* Destroys the consumer now without leaving the group (the group notices
 * after session.timeout.ms).  Safe inside the handle's own callbacks. */
SL_API void sl_kafka_consumer_free(sl_kafka_consumer *c);

/* -------------------------------------------------------- embedded broker */

/*
 * Reliability testing with [kafka] brokers = embedded and admin = true:
 * takes embedded broker `broker_id` (1.., or -1 for all) down or up, or
 * makes the next `count` requests of Kafka API `api_key` (0 Produce, 1
 * Fetch, ...) fail with librdkafka error code `err`.  0 or SL_KAFKA_EPERM
 * when admin is off or no embedded broker runs, SL_KAFKA_EINVAL.
 */
SL_API int sl_kafka_embedded_broker_set(sl_ctx *ctx, int broker_id, int up);
SL_API int sl_kafka_embedded_push_errors(sl_ctx *ctx, int api_key, int err, int count);
/* 1 when [kafka] brokers is an embedded broker: this process's
 * (`embedded`) or another local instance's (`file:`). */
SL_API int sl_kafka_brokers_embedded(sl_ctx *ctx);
/* The embedded cluster's bootstrap address, or NULL when not embedded. */
SL_API const char *sl_kafka_embedded_bootstrap(sl_ctx *ctx);

#endif
