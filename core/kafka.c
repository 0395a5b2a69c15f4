/*
 * kafka.c - Kafka producer and consumer handles driven from the loop.
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
 * handle's callbacks.  The handle then only marks itself dead and is
 * destroyed once the dispatch that called the module has unwound, and
 * nothing it owned (metrics included, which the core may already have
 * released) is touched after a module callback returned into a dead handle.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include "core.h"
#include "kafka.h"
#include "log.h"
#include "sluice_kafka.h"

/* Events served per wakeup before the loop gets a turn; the rest is served
 * on the next iteration. */
#define DRAIN_BUDGET 1000
/* Also serve the queue this often without a wakeup: a consumer must poll
 * within max.poll.interval.ms even when nothing arrives. */
#define TICK_SECONDS 0.5
#define FLUSH_CHECK_SECONDS 0.005
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

typedef struct {
    char *name;
    rd_kafka_topic_t *rkt; /* producers only */
    sl_series *produced;
    sl_series *delivered;
    sl_series *consumed;
} kafka_topic;

typedef struct handle handle;
struct handle {
    sl_ctx *ctx;
    sl_resource *res;
    const char *kind;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;      /* the queue the loop serves */
    rd_kafka_queue_t *closeq; /* a consumer's while it closes */
    int pipe[2];
    struct event *wake;
    struct event *tick;
    struct event *timer; /* a producer's flush, a consumer's close */
    sl_kafka_cluster *cluster;
    void (*on_event)(handle *h, rd_kafka_event_t *ev);
    void (*after_serve)(handle *h, int served_dr);
    void (*free_extra)(handle *h);
    int dispatching;
    int dead;
    int fatal;
    int ready;
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
    int served_dr; /* DR events served in the current wakeup */
};

struct sl_kafka_producer {
    handle h; /* first: a handle pointer is a producer pointer */
    sl_kafka_delivery_fn on_delivery;
    void *arg;
    sl_kafka_space_fn on_space;
    void *space_arg;
    sl_kafka_flush_fn flush_done;
    void *flush_arg;
    double flush_deadline;
};

typedef struct commit_req commit_req;
struct commit_req {
    commit_req *prev;
    commit_req *next;
    sl_kafka_commit_fn fn;
    void *arg;
};

struct sl_kafka_consumer {
    handle h;
    sl_kafka_message_fn on_message;
    sl_kafka_rebalance_fn on_rebalance;
    void *arg;
    commit_req *commits; /* waiting for their result */
    int closing;
    int close_reported;
    int close_failed;
    sl_kafka_closed_fn closed_fn;
    void *closed_arg;
};

static void handle_destroy(handle *h);

const sl_section_schema sl_kafka_schema = {
    "kafka", "the Kafka connector: brokers, client properties, embedded broker",
    sl_kafka_options, SL_USES_KAFKA, sl_kafka_check, sl_kafka_prepare, sl_kafka_shutdown,
};

/* ---------------------------------------------------------------- helpers */

SL_API const char *sl_kafka_strerror(int code)
{
    switch (code) {
    case 0: return "success";
    case SL_KAFKA_EQUEUEFULL: return "local queue full";
    case SL_KAFKA_EINVAL: return "invalid argument or handle closing";
    case SL_KAFKA_ETOOLARGE: return "message larger than message.max.bytes";
    case SL_KAFKA_EUNKNOWN: return "unknown topic or partition";
    case SL_KAFKA_EFATAL: return "fatal client error";
    case SL_KAFKA_EPERM: return "not permitted ([kafka] admin off or not embedded)";
    case SL_KAFKA_ENOMEM: return "out of memory";
    default: return "unknown error";
    }
}

static void series_add(sl_series *s, double v)
{
    if (s != NULL)
        sl_series_add(s, v);
}

static sl_series *series1(sl_metric *m, const char *a)
{
    return m != NULL ? sl_series_of(m, a) : NULL;
}

static sl_series *series2(sl_metric *m, const char *a, const char *b)
{
    return m != NULL ? sl_series_of(m, a, b) : NULL;
}

static void set_ready(handle *h, int ready, const char *why)
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
    handle *h = obj;

    if (h->ready)
        return 1;
    snprintf(why, whylen, "%s: %s", h->kind, h->why);
    return 0;
}

static kafka_topic *topic_find(handle *h, const char *name)
{
    for (size_t i = 0; i < h->ntopics; i++)
        if (strcmp(h->topics[i]->name, name) == 0)
            return h->topics[i];
    return NULL;
}

/* The handle's record of `name`, created on first use; for a producer
 * with its rd_kafka_topic_t, whose opaque points back at the record. */
static kafka_topic *topic_get(handle *h, const char *name, int producer)
{
    kafka_topic *t = topic_find(h, name);
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
        t->produced = series1(h->m_produced, name);
        t->delivered = series1(h->m_delivered, name);
    } else {
        t->consumed = series1(h->m_consumed, name);
    }
    h->topics[h->ntopics++] = t;
    return t;

fail:
    if (t != NULL)
        free(t->name);
    free(t);
    return NULL;
}

static void msg_fill(sl_kafka_msg *m, const rd_kafka_message_t *rkm, const char *topic)
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

static void handle_log_event(handle *h, rd_kafka_event_t *ev)
{
    const char *fac, *str;
    int level;

    if (rd_kafka_event_log(ev, &fac, &str, &level) == 0)
        sl_log(h->ctx, sl_kafka_log_level(level), "%s: librdkafka %s: %s", h->kind, fac, str);
}

static void handle_error_event(handle *h, rd_kafka_event_t *ev)
{
    rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
    const char *text = rd_kafka_event_error_string(ev);

    if (rd_kafka_event_error_is_fatal(ev)) {
        char why[200];
        snprintf(why, sizeof(why), "fatal error: %s", text);
        set_ready(h, 0, why);
        h->fatal = 1;
        sl_log(h->ctx, SL_LOG_ERROR, "%s: fatal: %s; the handle must be replaced", h->kind, text);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        set_ready(h, 0, "all Kafka brokers are down");
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
static void stats_lag(handle *h, const cJSON *root)
{
    const cJSON *topics = cJSON_GetObjectItemCaseSensitive(root, "topics");
    const cJSON *t, *p;

    if (h->m_lag == NULL)
        return;
    cJSON_ArrayForEach(t, topics) {
        const cJSON *parts = cJSON_GetObjectItemCaseSensitive(t, "partitions");
        cJSON_ArrayForEach(p, parts) {
            const cJSON *lag = cJSON_GetObjectItemCaseSensitive(p, "consumer_lag");
            if (p->string == NULL || strcmp(p->string, "-1") == 0 || !cJSON_IsNumber(lag) ||
                lag->valuedouble < 0)
                continue;
            sl_series_set(sl_series_of(h->m_lag, t->string, p->string), lag->valuedouble);
        }
    }
}

/* librdkafka's statistics JSON: the broker states make readiness, the
 * partitions' lag a gauge.  Parsed here, on the loop. */
static void handle_stats_event(handle *h, rd_kafka_event_t *ev)
{
    cJSON *root = cJSON_Parse(rd_kafka_event_stats(ev));
    const cJSON *brokers, *b;
    int up = 0, known = 0;

    if (root == NULL)
        return;
    brokers = cJSON_GetObjectItemCaseSensitive(root, "brokers");
    cJSON_ArrayForEach(b, brokers) {
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(b, "state");
        known++;
        if (cJSON_IsString(state) && strcmp(state->valuestring, "UP") == 0)
            up = 1;
    }
    if (known > 0)
        set_ready(h, up, "no Kafka broker reachable");
    stats_lag(h, root);
    cJSON_Delete(root);
}

/* Returns 1 when the event was one every handle treats alike. */
static int handle_common_event(handle *h, rd_kafka_event_t *ev)
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

static rd_kafka_event_t *next_event(handle *h)
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

/* Around a call into module code: a free meanwhile only marks the handle
 * dead.  unpin() destroys it then and returns 0; 1 while it lives. */
static void pin(handle *h)
{
    h->dispatching++;
}

static int unpin(handle *h)
{
    h->dispatching--;
    if (!h->dead)
        return 1;
    if (h->dispatching == 0)
        handle_destroy(h);
    return 0;
}

/* Drains the handle's queue, up to the budget, on the loop thread. */
static void serve(handle *h)
{
    int budget = DRAIN_BUDGET;
    rd_kafka_event_t *ev = NULL;

    if (h->dead)
        return;
    pin(h);
    h->served_dr = 0;
    while (!h->dead && budget > 0 && (ev = next_event(h)) != NULL) {
        budget--;
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR)
            h->served_dr++;
        if (!handle_common_event(h, ev))
            h->on_event(h, ev);
        rd_kafka_event_destroy(ev);
    }
    if (!h->dead && h->after_serve != NULL)
        h->after_serve(h, h->served_dr);
    if (!unpin(h))
        return;
    /* Out of budget: the queue may hold more, and its pipe will not fire
     * again until it was empty once, so come back ourselves. */
    if (budget == 0)
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

/* Marks the handle dead and destroys it now, or once the dispatch that is
 * calling module code has unwound. */
static void handle_kill(handle *h)
{
    if (h->dead)
        return;
    h->dead = 1;
    if (h->dispatching == 0)
        handle_destroy(h);
}

/* The core releases the handle with its instance. */
static void handle_release(void *obj)
{
    handle *h = obj;

    h->res = NULL;
    handle_kill(h);
}

/* The module frees the handle itself. */
static void handle_free(handle *h)
{
    if (h == NULL || h->dead)
        return;
    if (h->res != NULL)
        sl_untrack(h->ctx, h->res);
    h->res = NULL;
    handle_kill(h);
}

/*
 * Tears the client down.  rd_kafka_destroy() joins librdkafka's threads, so
 * when it returns none of them is left; since no callback was registered,
 * none could have called our code meanwhile.  A consumer is destroyed
 * without leaving its group (that is sl_kafka_consumer_close's job): the
 * join is then bounded by librdkafka's thread shutdown, a few milliseconds
 * here (logged at debug level), not by any broker round trip.
 */
static void handle_destroy(handle *h)
{
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

/* The client's configuration, by precedence: our defaults, the [kafka]
 * section, the module's overrides, then what the connector needs to stay
 * on the loop. */
static rd_kafka_conf_t *build_conf(handle *h, const char *group, const char *const *props,
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
        if (brokers_from_file(brokers + strlen(SL_KAFKA_BROKERS_FILE), from_file,
                              sizeof(from_file), err, errlen) != 0)
            goto fail;
        brokers = from_file;
    }
    if (strcmp(brokers, "embedded") == 0) {
        h->cluster = sl_kafka_cluster_get(opts, err, errlen);
        if (h->cluster == NULL)
            goto fail;
        brokers = sl_kafka_cluster_bootstraps(h->cluster);
        /* The default 500 ms wait at the log end makes reads from the
         * in-memory broker look ten times slower than they are. */
        if (group != NULL && conf_set(conf, "fetch.wait.max.ms", "10", err, errlen) != 0)
            goto fail;
    }
    if (sl_kafka_conf_apply_section(conf, opts, err, errlen) != 0)
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
static void register_producer_metrics(handle *h)
{
    sl_ctx *ctx = h->ctx;

    h->m_produced = sl_counter(ctx, "sluice_kafka_produced_total",
                               "Messages accepted into the producer's local queue", "topic");
    h->m_delivered = sl_counter(ctx, "sluice_kafka_delivered_total",
                                "Messages acknowledged by the broker", "topic");
    h->m_failed = sl_counter(ctx, "sluice_kafka_delivery_failed_total",
                             "Messages that could not be delivered, by librdkafka error name",
                             "topic,reason");
    h->m_rejected = sl_counter(ctx, "sluice_kafka_produce_rejected_total",
                               "Messages refused by the local producer queue", "reason");
}

static void register_consumer_metrics(handle *h)
{
    sl_ctx *ctx = h->ctx;

    h->m_consumed = sl_counter(ctx, "sluice_kafka_consumed_total",
                               "Messages handed to the consuming module", "topic");
    h->m_errors = sl_counter(ctx, "sluice_kafka_consumer_errors_total",
                             "Errors on the fetch path, by librdkafka error name", "reason");
    h->m_lag = sl_gauge(ctx, "sluice_kafka_consumer_lag",
                        "Messages between the committed offset and the log end, per partition",
                        "topic,partition");
    h->m_rebalances = sl_counter(ctx, "sluice_kafka_rebalances_total",
                                 "Consumer group rebalances seen", "type");
    h->m_commits = sl_counter(ctx, "sluice_kafka_commits_total",
                              "Explicit offset commits, by result", "result");
}

/*
 * Creates the client and wires its queue to the loop.  On failure
 * everything is undone, the reason is in `err` and -1 returned; `h` is
 * then freed too.
 */
static int handle_start(handle *h, sl_ctx *ctx, rd_kafka_type_t type, const char *group,
                        const char *const *props, int events, event_callback_fn timer_fn,
                        char *err, size_t errlen)
{
    struct timeval tick = { 0, (suseconds_t)(TICK_SECONDS * 1e6) };
    rd_kafka_conf_t *conf;

    h->ctx = ctx;
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
    h->res = sl_track(h->ctx, h->kind, h, handle_release, handle_ready);
    if (h->res == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return 0;

fail:
    sl_log(ctx, SL_LOG_ERROR, "%s: %s", h->kind, err);
    handle_destroy(h);
    return -1;
}

/* ---------------------------------------------------------------- producer */

static void producer_dr_event(sl_kafka_producer *p, rd_kafka_event_t *ev)
{
    handle *h = &p->h;
    const rd_kafka_message_t *rkm;

    while ((rkm = rd_kafka_event_message_next(ev)) != NULL) {
        kafka_topic *t = rd_kafka_topic_opaque(rkm->rkt);
        sl_kafka_msg m;

        if (t == NULL)
            t = topic_find(h, rd_kafka_topic_name(rkm->rkt));
        /* Metrics first: the module callback may end the instance, and
         * its metrics with it. */
        if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            series_add(t != NULL ? t->delivered : NULL, 1);
            set_ready(h, 1, "");
        } else {
            series_add(series2(h->m_failed, rd_kafka_topic_name(rkm->rkt),
                               rd_kafka_err2name(rkm->err)), 1);
        }
        if (p->on_delivery == NULL)
            continue;
        msg_fill(&m, rkm, t != NULL ? t->name : NULL);
        p->on_delivery(p, &m, p->arg);
        if (h->dead)
            return;
    }
}

static void producer_event(handle *h, rd_kafka_event_t *ev)
{
    if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR)
        producer_dr_event((sl_kafka_producer *)h, ev);
}

static void producer_after_serve(handle *h, int served_dr)
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
    p->on_delivery = on_delivery;
    p->arg = arg;
    if (handle_start(&p->h, ctx, RD_KAFKA_PRODUCER, NULL, props,
                     RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG |
                         RD_KAFKA_EVENT_STATS,
                     flush_check, err, errlen) != 0)
        return NULL;
    return p;
}

static int map_produce_error(handle *h, rd_kafka_resp_err_t e)
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
    series_add(series1(h->m_rejected, reason), 1);
    return code;
}

SL_API int sl_kafka_produce(sl_kafka_producer *p, const char *topic, int32_t partition,
                            const void *key, size_t keylen, const void *value, size_t len,
                            const sl_kafka_header *headers, size_t nheaders, void *opaque)
{
    handle *h = &p->h;
    kafka_topic *t;
    rd_kafka_headers_t *hdrs;
    rd_kafka_resp_err_t e;

    if (h->dead || topic == NULL || partition < RD_KAFKA_PARTITION_UA)
        return SL_KAFKA_EINVAL;
    if (h->fatal)
        return SL_KAFKA_EFATAL;
    t = topic_get(h, topic, 1);
    if (t == NULL)
        return SL_KAFKA_ENOMEM;
    if (nheaders == 0) {
        /* The plain call: the fastest path librdkafka offers. */
        if (rd_kafka_produce(t->rkt, partition, RD_KAFKA_MSG_F_COPY, (void *)value, len, key,
                             keylen, opaque) != 0)
            return map_produce_error(h, rd_kafka_last_error());
        series_add(t->produced, 1);
        return 0;
    }
    hdrs = rd_kafka_headers_new(nheaders);
    if (hdrs == NULL)
        return SL_KAFKA_ENOMEM;
    for (size_t i = 0; i < nheaders; i++)
        rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                            (ssize_t)headers[i].len);
    e = rd_kafka_producev(h->rk, RD_KAFKA_V_RKT(t->rkt), RD_KAFKA_V_PARTITION(partition),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)value, len),
                          RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(hdrs); /* only taken over on success */
        return map_produce_error(h, e);
    }
    series_add(t->produced, 1);
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

    if (p->h.dead)
        return;
    if (previous != NULL) {
        p->flush_done = NULL;
        pin(&p->h);
        previous(p, rd_kafka_outq_len(p->h.rk), p->flush_arg);
        if (!unpin(&p->h))
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
        handle_free(&p->h);
}

/* ---------------------------------------------------------------- consumer */

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

static void consumer_fetch_event(sl_kafka_consumer *c, rd_kafka_event_t *ev)
{
    handle *h = &c->h;
    const rd_kafka_message_t *rkm;

    while ((rkm = rd_kafka_event_message_next(ev)) != NULL) {
        const char *name = rkm->rkt != NULL ? rd_kafka_topic_name(rkm->rkt) : "";
        kafka_topic *t;
        sl_kafka_msg m;

        if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                continue;
            series_add(series1(h->m_errors, rd_kafka_err2name(rkm->err)), 1);
            sl_log(h->ctx, SL_LOG_WARN, "%s: %s [%d]: %s", h->kind, name, (int)rkm->partition,
                   rd_kafka_message_errstr(rkm));
            continue;
        }
        t = topic_get(h, name, 0);
        series_add(t != NULL ? t->consumed : NULL, 1);
        set_ready(h, 1, "");
        msg_fill(&m, rkm, name);
        c->on_message(c, &m, c->arg);
        if (h->dead)
            return;
    }
}

static void consumer_rebalance_event(sl_kafka_consumer *c, rd_kafka_event_t *ev)
{
    handle *h = &c->h;
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
    series_add(series1(h->m_rebalances, kind == SL_KAFKA_ASSIGNED  ? "assigned"
                                        : kind == SL_KAFKA_REVOKED ? "revoked"
                                                                   : "lost"),
               1);
    sl_log(h->ctx, SL_LOG_INFO, "%s: %d partition%s %s", h->kind, parts != NULL ? parts->cnt : 0,
           parts != NULL && parts->cnt == 1 ? "" : "s",
           kind == SL_KAFKA_ASSIGNED ? "assigned" : kind == SL_KAFKA_REVOKED ? "revoked" : "lost");
    if (c->on_rebalance != NULL) {
        tps = tp_array(parts, &n);
        c->on_rebalance(c, kind, tps, n, c->arg);
        free(tps);
        if (h->dead)
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
    handle *h = &c->h;
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
    series_add(series1(h->m_commits, e == RD_KAFKA_RESP_ERR_NO_ERROR ? "ok" : "failed"), 1);
    if (fn == NULL)
        return;
    tps = tp_array(rd_kafka_event_topic_partition_list(ev), &n);
    fn(c, e, tps, n, arg);
    free(tps);
}

static void consumer_event(handle *h, rd_kafka_event_t *ev)
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

static void consumer_after_serve(handle *h, int served_dr)
{
    sl_kafka_consumer *c = (sl_kafka_consumer *)h;

    (void)served_dr;
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

static void consumer_free_extra(handle *h)
{
    sl_kafka_consumer *c = (sl_kafka_consumer *)h;

    /* Results that never came: their callbacks are not called. */
    while (c->commits != NULL) {
        commit_req *r = c->commits;
        c->commits = r->next;
        free(r);
    }
}

SL_API sl_kafka_consumer *sl_kafka_consumer_new(sl_ctx *ctx, const char *group,
                                                const char *const *topics, size_t ntopics,
                                                sl_kafka_message_fn on_message,
                                                sl_kafka_rebalance_fn on_rebalance, void *arg,
                                                const char *const *props, char *err,
                                                size_t errlen)
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
    if (group == NULL || group[0] == '\0' || topics == NULL || ntopics == 0 ||
        on_message == NULL) {
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
    if (handle_start(&c->h, ctx, RD_KAFKA_CONSUMER, group, props,
                     RD_KAFKA_EVENT_REBALANCE | RD_KAFKA_EVENT_OFFSET_COMMIT |
                         RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG | RD_KAFKA_EVENT_STATS,
                     close_timeout, err, errlen) != 0)
        return NULL;
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
    handle_free(&c->h);
    return NULL;
}

SL_API int sl_kafka_consumer_pause(sl_kafka_consumer *c, const char *topic, int32_t partition,
                                   int pause)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t e;

    if (c->h.dead || topic == NULL || partition < 0)
        return SL_KAFKA_EINVAL;
    list = rd_kafka_topic_partition_list_new(1);
    if (list == NULL)
        return SL_KAFKA_ENOMEM;
    rd_kafka_topic_partition_list_add(list, topic, partition);
    e = pause ? rd_kafka_pause_partitions(c->h.rk, list) : rd_kafka_resume_partitions(c->h.rk, list);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        e = list->elems[0].err;
    rd_kafka_topic_partition_list_destroy(list);
    return e == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : SL_KAFKA_EUNKNOWN;
}

SL_API int sl_kafka_commit(sl_kafka_consumer *c, const sl_kafka_tp *parts, size_t nparts,
                           sl_kafka_commit_fn done, void *arg)
{
    rd_kafka_topic_partition_list_t *list;
    commit_req *r;
    rd_kafka_resp_err_t e;

    if (c->h.dead || c->close_reported || parts == NULL || nparts == 0)
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

/*
 * librdkafka 2.0 has rd_kafka_consumer_close_queue(): the close runs on its
 * threads and its rebalance events come to the queue we give it, which we
 * serve like any other (the consumer queue cannot be given: it is the one
 * being forwarded).  rd_kafka_consumer_closed() then tells us it is done.
 */
SL_API void sl_kafka_consumer_close(sl_kafka_consumer *c, double timeout, sl_kafka_closed_fn done,
                                    void *arg)
{
    handle *h = &c->h;
    struct timeval tv;
    rd_kafka_error_t *error;

    if (h->dead)
        return;
    c->closed_fn = done;
    c->closed_arg = arg;
    if (c->closing)
        return;
    c->closing = 1;
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
        handle_free(&c->h);
}
