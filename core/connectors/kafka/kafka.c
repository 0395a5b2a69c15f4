/*
 * kafka.c - what every Kafka handle shares: building its configuration,
 * serving its queue on the loop, its metrics, readiness and teardown.  The
 * producer's side is in kafka_producer.c, the consumer's in kafka_consumer.c.
 *
 * Each handle is one rd_kafka_t.  Everything librdkafka has to tell us
 * (delivery reports, messages, rebalances, commit results, errors, logs,
 * statistics) is routed as events onto one queue per handle: the main
 * queue of a producer, the consumer queue of a consumer (the main queue is
 * forwarded into it).  The queue writes a byte into a non-blocking pipe when
 * it goes from empty to non-empty; the loop reads the pipe and drains the
 * queue with rd_kafka_queue_poll(q, 0).  No callback is registered with
 * librdkafka, so none of its threads ever runs our code or a module's.
 *
 * A module may free a handle, or stop its instance, from inside one of the
 * handle's callbacks.  The connectors' lifetime guard (sl_conn_life,
 * connector.h) then only marks it as being freed and destroys it once the
 * dispatch that called the module has unwound, and nothing it owned
 * (metrics included, which the core may already have released) is touched
 * after a module callback returned into a handle being freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include "connectors/connector.h"
#include "daemon/core.h"
#include "kafka_int.h"
#include "metrics/metrics.h"
#include "daemon/log.h"

/* Events served per wakeup before the loop gets a turn; the rest is served
 * on the next iteration. */
#define DRAIN_BUDGET 1000
/* Also serve the queue this often without a wakeup: a consumer must poll
 * within max.poll.interval.ms even when nothing arrives. */
#define TICK_SECONDS 0.5
/* Our default for statistics.interval.ms: readiness and lag come from it. */
#define STATS_INTERVAL_MS "1000"
/* A consumer's default queued.min.messages: librdkafka's maximum, so that
 * its prefetch is bounded by queued.max.messages.kbytes (bytes, i.e. the
 * memory it costs) rather than by a message count.  Why: librdkafka (2.0)
 * checks both thresholds, documented per partition, against the queue a
 * partition's fetch queue is forwarded to, which for us is the one consumer
 * queue of every partition.  Over either threshold, every partition leaves
 * the fetch list until its broker thread next wakes by itself, up to a
 * second later, however fast the loop drained the queue meanwhile (seen
 * with debug=fetch: 129353/100000 msgs over 64 partitions "not
 * fetchable", fetchable again 0.8 s later at 0/100000).  With the default
 * 100000 that second was paid every 100000 messages of a backlog. */
#define CONSUMER_QUEUED_MIN_MESSAGES "10000000"

static void handle_destroy(void *obj);

const sl_section_schema sl_kafka_schema = {
    "kafka",           "the Kafka connector: brokers, client properties, embedded broker",
    sl_kafka_options,  SL_USES_KAFKA,
    sl_kafka_check,    sl_kafka_prepare,
    sl_kafka_shutdown,
};

/* ---------------------------------------------------------------- helpers */

SL_API const char *sl_kafka_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
    case SL_KAFKA_EQUEUEFULL:
        return "local queue full";
    case SL_KAFKA_EINVAL:
        return "invalid argument or handle closing";
    case SL_KAFKA_ETOOLARGE:
        return "message larger than message.max.bytes";
    case SL_KAFKA_EUNKNOWN:
        return "unknown topic or partition";
    case SL_KAFKA_EFATAL:
        return "fatal client error";
    case SL_KAFKA_EPERM:
        return "not permitted ([kafka] admin off or not embedded)";
    case SL_KAFKA_ENOMEM:
        return "out of memory";
    default:
        return "unknown error";
    }
}

void kafka_set_ready(kafka_handle *h, int ready, const char *why)
{
    if (h->fatal)
        return; /* stays not ready: only a new handle recovers */
    if (ready == h->ready && (ready || strcmp(why, h->why) == 0))
        return;
    if (ready)
        sl_log(h->ctx, SL_LOG_INFO, "%s: a Kafka broker is reachable", h->kind);
    else
        sl_log(h->ctx, SL_LOG_WARN, "%s: not ready: %s", h->kind, why);
    h->ready = ready;
    snprintf(h->why, sizeof(h->why), "%s", ready ? "" : why);
}

static int handle_ready(void *obj, char *why, size_t whylen)
{
    kafka_handle *h = obj;

    if (h->ready)
        return 1;
    snprintf(why, whylen, "%s: %s", h->kind, h->why);
    return 0;
}

kafka_topic *kafka_topic_find(kafka_handle *h, const char *name)
{
    for (size_t i = 0; i < h->ntopics; i++)
        if (strcmp(h->topics[i]->name, name) == 0)
            return h->topics[i];
    return NULL;
}

/* The handle's record of `name`, created on first use; for a producer
 * with its rd_kafka_topic_t, whose opaque points back at the record. */
kafka_topic *kafka_topic_get(kafka_handle *h, const char *name, int producer)
{
    kafka_topic *t = kafka_topic_find(h, name);
    kafka_topic **grown;
    rd_kafka_topic_conf_t *tconf;

    if (t != NULL)
        return t;
    t = calloc(1, sizeof(*t));
    grown = realloc(h->topics, (h->ntopics + 1) * sizeof(*grown));
    if (grown != NULL)
        h->topics = grown;
    if (t == NULL || grown == NULL || (t->name = strdup(name)) == NULL)
        goto fail;
    if (producer) {
        if (h->cluster != NULL)
            sl_kafka_cluster_ensure_topic(h->cluster, name);
        /* The default topic conf carries the topic-level properties of
         * [kafka] rdkafka.* and the handle's overrides (message.timeout.ms,
         * acks, ...); a fresh one would silently drop them. */
        tconf = rd_kafka_default_topic_conf_dup(h->rk);
        if (tconf == NULL)
            goto fail;
        rd_kafka_topic_conf_set_opaque(tconf, t);
        t->rkt = rd_kafka_topic_new(h->rk, name, tconf); /* takes tconf */
        if (t->rkt == NULL)
            goto fail;
    }
    if (producer) {
        t->produced = kafka_series1(h, h->m_produced, name);
        t->delivered = kafka_series1(h, h->m_delivered, name);
    } else {
        t->consumed = kafka_series1(h, h->m_consumed, name);
    }
    h->topics[h->ntopics++] = t;
    return t;

fail:
    if (t != NULL)
        free(t->name);
    free(t);
    return NULL;
}

void kafka_msg_fill(sl_kafka_msg *m, const rd_kafka_message_t *rkm, const char *topic)
{
    rd_kafka_timestamp_type_t tstype;

    m->topic = topic != NULL ? topic : rd_kafka_topic_name(rkm->rkt);
    m->partition = rkm->partition;
    m->offset = rkm->offset;
    m->key = rkm->key;
    m->keylen = rkm->key_len;
    m->value = rkm->payload;
    m->len = rkm->len;
    m->timestamp_ms = rd_kafka_message_timestamp(rkm, &tstype);
    m->err = rkm->err;
    m->errname = rkm->err ? rd_kafka_err2name(rkm->err) : "";
    /* rd_kafka_message_errstr() would return the payload of a failed
     * delivery; the error's own text is what a log line needs. */
    m->errstr = rkm->err ? rd_kafka_err2str(rkm->err) : "";
    m->opaque = rkm->_private;
    m->impl = rkm;
}

SL_API int sl_kafka_msg_header(const sl_kafka_msg *m, size_t i, const char **name,
                               const void **value, size_t *len)
{
    rd_kafka_headers_t *hdrs;

    if (m == NULL || m->impl == NULL ||
        rd_kafka_message_headers(m->impl, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    return rd_kafka_header_get_all(hdrs, i, name, value, len) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0
                                                                                            : -1;
}

/* ------------------------------------------------------- common events */

static void handle_log_event(kafka_handle *h, rd_kafka_event_t *ev)
{
    const char *fac, *str;
    int level;

    if (rd_kafka_event_log(ev, &fac, &str, &level) == 0)
        sl_log(h->ctx, sl_kafka_log_level(level), "%s: librdkafka %s: %s", h->kind, fac, str);
}

static void handle_error_event(kafka_handle *h, rd_kafka_event_t *ev)
{
    rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
    const char *text = rd_kafka_event_error_string(ev);

    if (rd_kafka_event_error_is_fatal(ev)) {
        char why[200];
        snprintf(why, sizeof(why), "fatal error: %s", text);
        kafka_set_ready(h, 0, why);
        h->fatal = 1;
        sl_log(h->ctx, SL_LOG_ERROR, "%s: fatal: %s; the handle must be replaced", h->kind, text);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        kafka_set_ready(h, 0, "all Kafka brokers are down");
        return;
    }
    /* Disconnects and resolution failures are retried by librdkafka and
     * are routine while a broker restarts. */
    sl_log(h->ctx,
           err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__RESOLVE ? SL_LOG_INFO
                                                                                    : SL_LOG_WARN,
           "%s: %s: %s", h->kind, rd_kafka_err2name(err), text);
}

/* Sets every partition's consumer lag; partitions not assigned report -1
 * and are skipped. */
static void stats_lag(kafka_handle *h, const cJSON *root)
{
    const cJSON *topics = cJSON_GetObjectItemCaseSensitive(root, "topics");
    const cJSON *t, *p;

    if (h->m_lag == NULL)
        return;
    cJSON_ArrayForEach (t, topics) {
        const cJSON *parts = cJSON_GetObjectItemCaseSensitive(t, "partitions");
        cJSON_ArrayForEach (p, parts) {
            const cJSON *lag = cJSON_GetObjectItemCaseSensitive(p, "consumer_lag");
            if (p->string == NULL || strcmp(p->string, "-1") == 0)
                continue;
            /* librdkafka goes on computing a lag for a partition a
             * rebalance took away, from offsets it no longer follows:
             * only the member that reads a partition reports its lag. */
            if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(p, "desired"))) {
                sl_series_retire(kafka_series2(h, h->m_lag, t->string, p->string));
                continue;
            }
            if (!cJSON_IsNumber(lag) || lag->valuedouble < 0)
                continue;
            sl_series_set(kafka_series2(h, h->m_lag, t->string, p->string), lag->valuedouble);
        }
    }
}

/* librdkafka's statistics JSON: the broker states make readiness, the
 * partitions' lag a gauge.  Parsed here, on the loop. */
static void handle_stats_event(kafka_handle *h, rd_kafka_event_t *ev)
{
    cJSON *root = cJSON_Parse(rd_kafka_event_stats(ev));
    const cJSON *brokers, *b;
    int up = 0, known = 0;

    if (root == NULL)
        return;
    brokers = cJSON_GetObjectItemCaseSensitive(root, "brokers");
    cJSON_ArrayForEach (b, brokers) {
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(b, "state");
        known++;
        if (cJSON_IsString(state) && strcmp(state->valuestring, "UP") == 0)
            up = 1;
    }
    if (known > 0)
        kafka_set_ready(h, up, "no Kafka broker reachable");
    stats_lag(h, root);
    cJSON_Delete(root);
}

/* Returns 1 when the event was one every handle treats alike. */
static int handle_common_event(kafka_handle *h, rd_kafka_event_t *ev)
{
    switch (rd_kafka_event_type(ev)) {
    case RD_KAFKA_EVENT_LOG:
        handle_log_event(h, ev);
        return 1;
    case RD_KAFKA_EVENT_ERROR:
        handle_error_event(h, ev);
        return 1;
    case RD_KAFKA_EVENT_STATS:
        handle_stats_event(h, ev);
        return 1;
    default:
        return 0;
    }
}

/* ------------------------------------------------------------- serving */

static rd_kafka_event_t *next_event(kafka_handle *h)
{
    rd_kafka_event_t *ev = NULL;

    /* While a consumer closes its queue is forwarded to closeq; what was
     * queued before the forward may still sit in q. */
    if (h->closeq != NULL)
        ev = rd_kafka_queue_poll(h->closeq, 0);
    if (ev == NULL)
        ev = rd_kafka_queue_poll(h->q, 0);
    return ev;
}

/* Drains the handle's queue, up to the budget, on the loop thread. */
static void serve(kafka_handle *h)
{
    int budget = DRAIN_BUDGET;
    rd_kafka_event_t *ev = NULL;

    if (h->life.freeing)
        return;
    sl_conn_enter(&h->life);
    h->served_dr = 0;
    while (!h->life.freeing && !h->held && budget > 0 && (ev = next_event(h)) != NULL) {
        budget--;
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR)
            h->served_dr++;
        if (!handle_common_event(h, ev))
            h->on_event(h, ev);
        rd_kafka_event_destroy(ev);
    }
    if (!h->life.freeing && h->after_serve != NULL)
        h->after_serve(h, h->served_dr);
    if (!sl_conn_leave(&h->life))
        return;
    /* Out of budget: the queue may hold more, and its pipe will not fire
     * again until it was empty once, so come back ourselves.  Held, the
     * queue waits for sl_kafka_consumer_hold() to do that. */
    if (budget == 0 && !h->held)
        event_active(h->wake, EV_READ, 1);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    char buf[256];

    (void)what;
    while (read(fd, buf, sizeof(buf)) > 0)
        continue;
    serve(arg);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    serve(arg);
}

/* The core releases the handle with its instance. */
static void handle_release(void *obj)
{
    kafka_handle *h = obj;

    sl_conn_released(&h->life);
}

/* The module frees the handle itself. */
void kafka_free(kafka_handle *h)
{
    if (h != NULL)
        sl_conn_free(&h->life);
}

/*
 * Tears the client down.  rd_kafka_destroy() joins librdkafka's threads, so
 * when it returns none of them is left; since no callback was registered,
 * none could have called our code meanwhile.  A consumer is destroyed
 * without leaving its group (that is sl_kafka_consumer_close's job): the
 * join is then bounded by librdkafka's thread shutdown, a few milliseconds
 * here (logged at debug level), not by any broker round trip.
 */
static void handle_destroy(void *obj)
{
    kafka_handle *h = obj;
    double started = sl_now();

    if (h->free_extra != NULL)
        h->free_extra(h);
    if (h->wake != NULL)
        event_free(h->wake);
    if (h->tick != NULL)
        event_free(h->tick);
    if (h->timer != NULL)
        event_free(h->timer);
    if (h->closeq != NULL) {
        rd_kafka_queue_io_event_enable(h->closeq, -1, NULL, 0);
        rd_kafka_queue_destroy(h->closeq);
    }
    if (h->q != NULL) {
        rd_kafka_queue_io_event_enable(h->q, -1, NULL, 0);
        rd_kafka_queue_destroy(h->q);
    }
    for (size_t i = 0; i < h->ntopics; i++) {
        if (h->topics[i]->rkt != NULL)
            rd_kafka_topic_destroy(h->topics[i]->rkt);
        free(h->topics[i]->name);
        free(h->topics[i]);
    }
    free(h->topics);
    if (h->rk != NULL) {
        /* Undelivered messages are dropped now rather than waited for. */
        if (rd_kafka_type(h->rk) == RD_KAFKA_PRODUCER)
            rd_kafka_purge(h->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
                                          RD_KAFKA_PURGE_F_NON_BLOCKING);
        rd_kafka_destroy_flags(h->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        sl_log_core(SL_LOG_DEBUG, "kafka", "%s destroyed in %.1f ms", h->kind,
                    (sl_now() - started) * 1000);
    }
    if (h->pipe[0] >= 0)
        close(h->pipe[0]);
    if (h->pipe[1] >= 0)
        close(h->pipe[1]);
    sl_kafka_cluster_put(h->cluster);
    free(h);
}

/* --------------------------------------------------------- construction */

static int is_owned_property(const char *name)
{
    return strcmp(name, "bootstrap.servers") == 0 || strcmp(name, "metadata.broker.list") == 0 ||
           strcmp(name, "log.queue") == 0 || strcmp(name, "enabled_events") == 0 ||
           strcmp(name, "group.id") == 0;
}

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen)
{
    char why[512];

    if (rd_kafka_conf_set(conf, k, v, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    return 0;
}

/* `brokers = file:PATH`: the bootstrap servers another instance's embedded
 * broker wrote to its bootstrap_file (one line, host:port comma
 * separated).  Read when a handle is built, so a role started after the
 * broker finds it.  Fills `out`; -1 with `err` set when the file is
 * missing, empty or too long. */
static int brokers_from_file(const char *path, char *out, size_t outlen, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL) {
        snprintf(err, errlen, "brokers file %s: %s", path, strerror(errno));
        return -1;
    }
    n = fread(out, 1, outlen - 1, f);
    fclose(f);
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        out[--n] = '\0';
    if (n == 0 || n == outlen - 1 || strchr(out, '\n') != NULL) {
        snprintf(err, errlen, "brokers file %s: expected one line of host:port", path);
        return -1;
    }
    return 0;
}

/* sasl.password from [kafka] sasl_password_file, when set. */
static int sasl_password(rd_kafka_conf_t *conf, const char *path, char *err, size_t errlen)
{
    char secret[SL_SECRET_MAX];
    int rc;

    if (path[0] == '\0')
        return 0;
    if (sl_conn_read_secret(path, secret, sizeof(secret), err, errlen) != 0)
        return -1;
    rc = conf_set(conf, "sasl.password", secret, err, errlen);
    memset(secret, 0, sizeof(secret));
    return rc;
}

/* The client's configuration, by precedence: our defaults, the [kafka]
 * section, the module's overrides, then what the connector needs to stay
 * on the loop. */
static rd_kafka_conf_t *build_conf(kafka_handle *h, const char *group, const char *const *props,
                                   int events, char *err, size_t errlen)
{
    const sl_optset *opts = sl_kafka_section();
    const char *brokers = sl_optset_get(opts, "brokers")->raw;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char from_file[1024];

    if (conf == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (conf_set(conf, "statistics.interval.ms", STATS_INTERVAL_MS, err, errlen) != 0)
        goto fail;
    if (group != NULL &&
        conf_set(conf, "queued.min.messages", CONSUMER_QUEUED_MIN_MESSAGES, err, errlen) != 0)
        goto fail;
    if (strncmp(brokers, SL_KAFKA_BROKERS_FILE, strlen(SL_KAFKA_BROKERS_FILE)) == 0) {
        if (brokers_from_file(brokers + strlen(SL_KAFKA_BROKERS_FILE), from_file, sizeof(from_file),
                              err, errlen) != 0)
            goto fail;
        brokers = from_file;
        h->embedded = 1; /* only an embedded broker writes that file */
    }
    if (strcmp(brokers, "embedded") == 0) {
        h->cluster = sl_kafka_cluster_get(opts, err, errlen);
        if (h->cluster == NULL)
            goto fail;
        brokers = sl_kafka_cluster_bootstraps(h->cluster);
        h->embedded = 1;
        /* The default 500 ms wait at the log end makes reads from the
         * in-memory broker look ten times slower than they are. */
        if (group != NULL && conf_set(conf, "fetch.wait.max.ms", "10", err, errlen) != 0)
            goto fail;
    }
    if (sl_kafka_conf_apply_section(conf, opts,
                                    group != NULL ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER, err,
                                    errlen) != 0 ||
        sasl_password(conf, sl_optset_get(opts, "sasl_password_file")->raw, err, errlen) != 0)
        goto fail;
    for (size_t i = 0; props != NULL && props[i] != NULL; i += 2) {
        if (props[i + 1] == NULL) {
            snprintf(err, errlen, "property %s has no value", props[i]);
            goto fail;
        }
        if (is_owned_property(props[i])) {
            snprintf(err, errlen, "property %s is set by the connector", props[i]);
            goto fail;
        }
        if (conf_set(conf, props[i], props[i + 1], err, errlen) != 0)
            goto fail;
    }
    if (conf_set(conf, "bootstrap.servers", brokers, err, errlen) != 0 ||
        conf_set(conf, "log.queue", "true", err, errlen) != 0 ||
        (group != NULL && conf_set(conf, "group.id", group, err, errlen) != 0))
        goto fail;
    rd_kafka_conf_set_events(conf, events);
    return conf;

fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* A handle registers the families of its kind only, so that /metrics does
 * not list consumer families for an instance that only produces. */
static void register_producer_metrics(kafka_handle *h)
{
    sl_ctx *ctx = h->ctx;

    h->m_produced = sl_counter(ctx, "sluice_kafka_produced_total",
                               "Messages accepted into the producer's local queue", "module,topic");
    h->m_delivered = sl_counter(ctx, "sluice_kafka_delivered_total",
                                "Messages acknowledged by the broker", "module,topic");
    h->m_failed = sl_counter(ctx, "sluice_kafka_delivery_failed_total",
                             "Messages that could not be delivered, by librdkafka error name",
                             "module,topic,reason");
    h->m_rejected = sl_counter(ctx, "sluice_kafka_produce_rejected_total",
                               "Messages refused by the local producer queue", "module,reason");
}

static void register_consumer_metrics(kafka_handle *h)
{
    sl_ctx *ctx = h->ctx;

    h->m_consumed = sl_counter(ctx, "sluice_kafka_consumed_total",
                               "Messages handed to the consuming module", "module,topic");
    h->m_errors = sl_counter(ctx, "sluice_kafka_consumer_errors_total",
                             "Errors on the fetch path, by librdkafka error name", "module,reason");
    h->m_lag = sl_gauge(ctx, "sluice_kafka_consumer_lag",
                        "Messages between the committed offset and the log end, per partition",
                        "module,topic,partition");
    h->m_rebalances = sl_counter(ctx, "sluice_kafka_rebalances_total",
                                 "Consumer group rebalances seen", "module,type");
    h->m_commits = sl_counter(ctx, "sluice_kafka_commits_total",
                              "Explicit offset commits, by result", "module,result");
    h->m_restarts = sl_counter(ctx, "sluice_kafka_fetch_restarts_total",
                               "Fetching woken after the queue drained or a partition resumed",
                               "module,reason");
}

/*
 * Creates the client and wires its queue to the loop.  On failure
 * everything is undone, the reason is in `err` and -1 returned; `h` is
 * then freed too.
 */
int kafka_start(kafka_handle *h, sl_ctx *ctx, rd_kafka_type_t type, const char *group,
                const char *const *props, int events, event_callback_fn timer_fn, char *err,
                size_t errlen)
{
    struct timeval tick = { 0, (suseconds_t)(TICK_SECONDS * 1e6) };
    rd_kafka_conf_t *conf;

    h->ctx = ctx;
    h->module = sl_module_name(ctx);
    h->kind = type == RD_KAFKA_PRODUCER ? "kafka producer" : "kafka consumer";
    h->pipe[0] = h->pipe[1] = -1;
    snprintf(h->why, sizeof(h->why), "connecting to Kafka");
    sl_ctx_uses(ctx, SL_USES_KAFKA);
    if (type == RD_KAFKA_PRODUCER)
        register_producer_metrics(h);
    else
        register_consumer_metrics(h);
    conf = build_conf(h, group, props, events, err, errlen);
    if (conf == NULL)
        goto fail;
    h->rk = rd_kafka_new(type, conf, err, errlen);
    if (h->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    if (rd_kafka_set_log_queue(h->rk, NULL) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "cannot route librdkafka logs to a queue");
        goto fail;
    }
    if (type == RD_KAFKA_CONSUMER) {
        if (rd_kafka_poll_set_consumer(h->rk) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "cannot forward the main queue to the consumer queue");
            goto fail;
        }
        h->q = rd_kafka_queue_get_consumer(h->rk);
    } else {
        h->q = rd_kafka_queue_get_main(h->rk);
    }
    if (h->q == NULL) {
        snprintf(err, errlen, "no queue to serve");
        goto fail;
    }
    if (pipe2(h->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    rd_kafka_queue_io_event_enable(h->q, h->pipe[1], "1", 1);
    h->wake = event_new(sl_base, h->pipe[0], EV_READ | EV_PERSIST, on_wake, h);
    h->tick = event_new(sl_base, -1, EV_PERSIST, on_tick, h);
    h->timer = evtimer_new(sl_base, timer_fn, h);
    if (h->wake == NULL || h->tick == NULL || h->timer == NULL || event_add(h->wake, NULL) != 0 ||
        event_add(h->tick, &tick) != 0) {
        snprintf(err, errlen, "cannot add the handle to the loop");
        goto fail;
    }
    if (sl_conn_track(&h->life, ctx, h->kind, h, handle_destroy, handle_release, handle_ready) !=
        0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return 0;

fail:
    sl_log(ctx, SL_LOG_ERROR, "%s: %s", h->kind, err);
    handle_destroy(h);
    return -1;
}
