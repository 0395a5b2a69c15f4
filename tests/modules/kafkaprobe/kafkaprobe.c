/*
 * kafkaprobe - drives the Kafka connector from HTTP so that tests and
 * benchmarks can act with curl.  Every answer is JSON.
 *
 *   POST /kafkaprobe/produce?topic=T&n=N[&size=S][&prefix=P][&key=K][&hdr=H:V]
 *        produces N messages as fast as the local queue allows; value i is
 *        "P-i" (padded with 'x' to S bytes when S is larger), key K (or
 *        none), one header H with value V (or none).  With fixed=1 every
 *        value is "P-0" padded, written once: what the benchmark sends, so
 *        that formatting does not count against the connector.  Answers once every one was reported:
 *        {"produced","delivered","failed","queue_full","elapsed_s","msgs_per_s"}
 *   GET  /kafkaprobe/consumed[?values=1]
 *        {"count","distinct","partitions":[...assigned "topic/p"...],
 *         "assigned","rebalances","headers","tag","backlog","values":[...]};
 *        "headers" counts the messages whose first header is trace=abc,
 *        "backlog" is sl_kafka_consumer_backlog()
 *   GET  /kafkaprobe/status     readiness of the handles and counters, and
 *        "instance", distinct for each start
 *   POST /kafkaprobe/commit     commits the next offset of every partition
 *        read so far; answers with the result: {"err","committed"}
 *   POST /kafkaprobe/pause?topic=T&partition=P&pause=1|0
 *   POST /kafkaprobe/hold?hold=1|0   sl_kafka_consumer_hold()
 *   POST /kafkaprobe/broker?id=I&up=0|1          (needs [kafka] admin)
 *   POST /kafkaprobe/errors?api=A&err=E&count=C  (needs [kafka] admin)
 *
 * Options: `topics` and `group` start a consumer with the instance;
 * `produce` (default true) creates the producer; `auto_commit` false
 * leaves commits to /commit; `queued_min_messages` sets librdkafka's
 * (the connector's default otherwise); `tag` only marks a config change (/consumed
 * shows it, to tell a successor from the old instance).  Routes carry the instance
 * name when there is one (/kafkaprobe/a/consumed), so two instances in one
 * process can be told apart.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>
#include <sluice/sluice.h>
#include <sluice/kafka.h>

typedef struct probe probe;

typedef struct {
    probe *pr;
    sl_req *req;
    char *topic;
    char *key;
    char *hdr; /* "name\0value" */
    sl_kafka_header header;
    char *buf; /* one value, rewritten per message */
    size_t cap;
    size_t size;
    size_t len; /* of the value, when fixed */
    int fixed;
    char *prefix;
    long n;
    long next;
    long delivered;
    long failed;
    long queue_full;
    double started;
} run;

typedef struct {
    char *topic;
    int32_t partition;
    int64_t next; /* offset after the last message read */
} position;

struct probe {
    sl_ctx *ctx;
    char instance[32]; /* distinct for each start */
    position *positions;
    size_t npositions;
    sl_req *commit_req; /* one commit at a time */
    sl_kafka_producer *producer;
    sl_kafka_consumer *consumer;
    run *running; /* one produce run at a time */
    /* consumed values, kept for comparison by the test */
    char **values;
    size_t nvalues;
    size_t cap;
    long assigned;
    long rebalances;
    long headers;
    cJSON *partitions; /* array of "topic/partition" currently assigned */
    int stopping;
    int pending_stop; /* drain steps still running */
};

static const sl_option probe_options[] = {
    { "topics", SL_OPT_LIST, "", "topics to consume; none: no consumer", 0, 0, NULL },
    { "group", SL_OPT_STRING, "kafkaprobe", "consumer group", 0, 0, NULL },
    { "produce", SL_OPT_BOOL, "true", "create a producer", 0, 0, NULL },
    { "auto_offset_reset", SL_OPT_ENUM, "earliest", "where a new group starts", 0, 0,
      "earliest|latest" },
    { "auto_commit", SL_OPT_BOOL, "true", "let librdkafka commit offsets", 0, 0, NULL },
    { "queued_min_messages", SL_OPT_INT, "0",
      "librdkafka's queued.min.messages; 0: the connector's default", 0, 10000000, NULL },
    { "tag", SL_OPT_STRING, "", "changes nothing but the config", 0, 0, NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

/* ----------------------------------------------------------- producing */

static void run_finish(run *r)
{
    probe *pr = r->pr;
    double elapsed = sl_now() - r->started;
    cJSON *body = cJSON_CreateObject();

    cJSON_AddNumberToObject(body, "produced", (double)r->next);
    cJSON_AddNumberToObject(body, "delivered", (double)r->delivered);
    cJSON_AddNumberToObject(body, "failed", (double)r->failed);
    cJSON_AddNumberToObject(body, "queue_full", (double)r->queue_full);
    cJSON_AddNumberToObject(body, "elapsed_s", elapsed);
    cJSON_AddNumberToObject(body, "msgs_per_s", elapsed > 0 ? (double)r->delivered / elapsed : 0);
    sl_reply_json(r->req, 200, body);
    pr->running = NULL;
    free(r->topic);
    free(r->key);
    free(r->hdr);
    free(r->buf);
    free(r->prefix);
    free(r);
}

/* Writes value i into r->buf; returns its length. */
static size_t format_value(run *r, long i)
{
    int n = snprintf(r->buf, r->cap, "%s-%ld", r->prefix, i);

    if ((size_t)n >= r->size)
        return (size_t)n;
    memset(r->buf + n, 'x', r->size - (size_t)n);
    return r->size;
}

/* Produces until done or the local queue is full; then waits for room. */
static void run_fill(sl_kafka_producer *p, void *arg)
{
    run *r = arg;

    while (r->next < r->n) {
        int rc;
        if (!r->fixed || r->next == 0)
            r->len = format_value(r, r->next);
        rc = sl_kafka_produce(p, r->topic, SL_KAFKA_PARTITION_ANY, r->key,
                              r->key != NULL ? strlen(r->key) : 0, r->buf, r->len,
                              r->hdr != NULL ? &r->header : NULL, r->hdr != NULL ? 1 : 0, r);
        if (rc == SL_KAFKA_EQUEUEFULL) {
            r->queue_full++;
            sl_kafka_producer_on_space(p, run_fill, r);
            return;
        }
        if (rc != 0) {
            sl_log(r->pr->ctx, SL_LOG_ERROR, "produce: %s", sl_kafka_strerror(rc));
            r->failed += r->n - r->next;
            r->n = r->next;
            break;
        }
        r->next++;
    }
    if (r->delivered + r->failed >= r->n)
        run_finish(r);
}

static void on_delivery(sl_kafka_producer *p, const sl_kafka_msg *msg, void *arg)
{
    probe *pr = arg;
    run *r = msg->opaque;

    (void)p;
    if (r == NULL || r != pr->running)
        return;
    if (msg->err == 0)
        r->delivered++;
    else {
        r->failed++;
        sl_log(pr->ctx, SL_LOG_WARN, "delivery failed: %s", msg->errstr);
    }
    if (r->next >= r->n && r->delivered + r->failed >= r->n)
        run_finish(r);
}

static void serve_produce(sl_req *req, void *arg)
{
    probe *pr = arg;
    const char *topic = sl_req_query(req, "topic");
    const char *n = sl_req_query(req, "n");
    const char *size = sl_req_query(req, "size");
    const char *prefix = sl_req_query(req, "prefix");
    const char *key = sl_req_query(req, "key");
    const char *hdr = sl_req_query(req, "hdr");
    const char *fixed = sl_req_query(req, "fixed");
    run *r;

    if (pr->producer == NULL || pr->stopping)
        return sl_reply_error(req, 503, "no producer");
    if (pr->running != NULL)
        return sl_reply_error(req, 409, "a produce run is in progress");
    if (topic == NULL || n == NULL || atol(n) <= 0)
        return sl_reply_error(req, 400, "topic and n > 0 are required");
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return sl_reply_error(req, 500, "out of memory");
    r->pr = pr;
    r->req = req;
    r->n = atol(n);
    r->size = size != NULL ? (size_t)atol(size) : 0;
    r->fixed = fixed != NULL && strcmp(fixed, "1") == 0;
    r->prefix = strdup(prefix != NULL ? prefix : "m");
    r->topic = strdup(topic);
    r->key = key != NULL ? strdup(key) : NULL;
    if (hdr != NULL && strchr(hdr, ':') != NULL && (r->hdr = strdup(hdr)) != NULL) {
        char *colon = strchr(r->hdr, ':');
        *colon = '\0';
        r->header.name = r->hdr;
        r->header.value = colon + 1;
        r->header.len = strlen(colon + 1);
    }
    /* Room for the prefix and number even when size is smaller. */
    r->cap = r->size + 32 + (r->prefix != NULL ? strlen(r->prefix) : 0);
    r->buf = malloc(r->cap);
    if (r->topic == NULL || r->buf == NULL || r->prefix == NULL ||
        (key != NULL && r->key == NULL)) {
        free(r->topic);
        free(r->key);
        free(r->hdr);
        free(r->buf);
        free(r->prefix);
        free(r);
        return sl_reply_error(req, 500, "out of memory");
    }
    pr->running = r;
    r->started = sl_now();
    run_fill(pr->producer, r);
}

/* ----------------------------------------------------------- consuming */

static void remember_position(probe *pr, const sl_kafka_msg *msg)
{
    position *grown;

    for (size_t i = 0; i < pr->npositions; i++) {
        if (pr->positions[i].partition == msg->partition &&
            strcmp(pr->positions[i].topic, msg->topic) == 0) {
            pr->positions[i].next = msg->offset + 1;
            return;
        }
    }
    grown = realloc(pr->positions, (pr->npositions + 1) * sizeof(*grown));
    if (grown == NULL)
        return;
    pr->positions = grown;
    grown[pr->npositions].topic = strdup(msg->topic);
    if (grown[pr->npositions].topic == NULL)
        return;
    grown[pr->npositions].partition = msg->partition;
    grown[pr->npositions].next = msg->offset + 1;
    pr->npositions++;
}

static void on_message(sl_kafka_consumer *c, const sl_kafka_msg *msg, void *arg)
{
    probe *pr = arg;
    const char *hname;
    const void *hvalue;
    size_t hlen;

    (void)c;
    remember_position(pr, msg);
    if (sl_kafka_msg_header(msg, 0, &hname, &hvalue, &hlen) == 0 && strcmp(hname, "trace") == 0 &&
        hlen == 3 && memcmp(hvalue, "abc", 3) == 0)
        pr->headers++;
    if (pr->nvalues == pr->cap) {
        size_t cap = pr->cap ? pr->cap * 2 : 1024;
        char **grown = realloc(pr->values, cap * sizeof(*grown));
        if (grown == NULL)
            return;
        pr->values = grown;
        pr->cap = cap;
    }
    pr->values[pr->nvalues] = strndup(msg->value != NULL ? msg->value : "", msg->len);
    if (pr->values[pr->nvalues] != NULL)
        pr->nvalues++;
}

static void on_rebalance(sl_kafka_consumer *c, sl_kafka_rebalance what, const sl_kafka_tp *parts,
                         size_t n, void *arg)
{
    probe *pr = arg;
    char name[300];

    (void)c;
    pr->rebalances++;
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "%s/%d", parts[i].topic, (int)parts[i].partition);
        if (what == SL_KAFKA_ASSIGNED) {
            cJSON_AddItemToArray(pr->partitions, cJSON_CreateString(name));
            pr->assigned++;
        } else {
            int size = cJSON_GetArraySize(pr->partitions);
            for (int j = 0; j < size; j++) {
                if (strcmp(cJSON_GetArrayItem(pr->partitions, j)->valuestring, name) == 0) {
                    cJSON_DeleteItemFromArray(pr->partitions, j);
                    pr->assigned--;
                    break;
                }
            }
        }
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void serve_consumed(sl_req *req, void *arg)
{
    probe *pr = arg;
    const char *values = sl_req_query(req, "values");
    cJSON *body = cJSON_CreateObject();
    char **sorted = malloc((pr->nvalues + 1) * sizeof(*sorted));
    size_t distinct = 0;

    if (body == NULL || sorted == NULL) {
        cJSON_Delete(body);
        free(sorted);
        return sl_reply_error(req, 500, "out of memory");
    }
    if (pr->nvalues > 0)
        memcpy(sorted, pr->values, pr->nvalues * sizeof(*sorted));
    qsort(sorted, pr->nvalues, sizeof(*sorted), cmp_str);
    for (size_t i = 0; i < pr->nvalues; i++)
        if (i == 0 || strcmp(sorted[i], sorted[i - 1]) != 0)
            distinct++;
    cJSON_AddNumberToObject(body, "count", (double)pr->nvalues);
    cJSON_AddNumberToObject(body, "distinct", (double)distinct);
    cJSON_AddNumberToObject(body, "assigned", (double)pr->assigned);
    cJSON_AddNumberToObject(body, "rebalances", (double)pr->rebalances);
    cJSON_AddNumberToObject(body, "headers", (double)pr->headers);
    cJSON_AddStringToObject(body, "tag", sl_opt_str(pr->ctx, "tag"));
    cJSON_AddNumberToObject(body, "backlog",
                            pr->consumer != NULL ? (double)sl_kafka_consumer_backlog(pr->consumer)
                                                 : 0);
    cJSON_AddItemToObject(body, "partitions", cJSON_Duplicate(pr->partitions, 1));
    if (values != NULL && strcmp(values, "1") == 0) {
        cJSON *a = cJSON_AddArrayToObject(body, "values");
        for (size_t i = 0; i < pr->nvalues; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(sorted[i]));
    }
    free(sorted);
    sl_reply_json(req, 200, body);
}

static void serve_status(sl_req *req, void *arg)
{
    probe *pr = arg;
    cJSON *body = cJSON_CreateObject();
    const char *bs = sl_kafka_embedded_bootstrap(pr->ctx);

    cJSON_AddBoolToObject(body, "producer", pr->producer != NULL);
    cJSON_AddBoolToObject(body, "consumer", pr->consumer != NULL);
    cJSON_AddNumberToObject(body, "outq", pr->producer ? sl_kafka_producer_outq(pr->producer) : 0);
    cJSON_AddStringToObject(body, "bootstrap", bs != NULL ? bs : "");
    cJSON_AddStringToObject(body, "instance", pr->instance);
    sl_reply_json(req, 200, body);
}

static void on_committed(sl_kafka_consumer *c, int err, const sl_kafka_tp *parts, size_t n,
                         void *arg)
{
    probe *pr = arg;
    cJSON *body = cJSON_CreateObject();

    (void)c;
    (void)parts;
    cJSON_AddNumberToObject(body, "err", err);
    cJSON_AddNumberToObject(body, "committed", (double)n);
    sl_reply_json(pr->commit_req, err == 0 ? 200 : 500, body);
    pr->commit_req = NULL;
}

static void serve_commit(sl_req *req, void *arg)
{
    probe *pr = arg;
    sl_kafka_tp *tps;
    int rc;

    if (pr->consumer == NULL || pr->stopping)
        return sl_reply_error(req, 503, "no consumer");
    if (pr->commit_req != NULL)
        return sl_reply_error(req, 409, "a commit is in progress");
    if (pr->npositions == 0)
        return sl_reply_error(req, 400, "nothing read yet");
    tps = calloc(pr->npositions, sizeof(*tps));
    if (tps == NULL)
        return sl_reply_error(req, 500, "out of memory");
    for (size_t i = 0; i < pr->npositions; i++) {
        tps[i].topic = pr->positions[i].topic;
        tps[i].partition = pr->positions[i].partition;
        tps[i].offset = pr->positions[i].next;
    }
    rc = sl_kafka_commit(pr->consumer, tps, pr->npositions, on_committed, pr);
    free(tps);
    if (rc != 0)
        return sl_reply_error(req, 500, "%s", sl_kafka_strerror(rc));
    pr->commit_req = req;
}

static void serve_pause(sl_req *req, void *arg)
{
    probe *pr = arg;
    const char *topic = sl_req_query(req, "topic");
    const char *partition = sl_req_query(req, "partition");
    const char *pause = sl_req_query(req, "pause");
    int rc;

    if (pr->consumer == NULL)
        return sl_reply_error(req, 503, "no consumer");
    if (topic == NULL || partition == NULL || pause == NULL)
        return sl_reply_error(req, 400, "topic, partition and pause are required");
    rc = sl_kafka_consumer_pause(pr->consumer, topic, atoi(partition), atoi(pause));
    if (rc != 0)
        return sl_reply_error(req, 400, "%s", sl_kafka_strerror(rc));
    sl_reply_json(req, 200, cJSON_CreateObject());
}

static void serve_hold(sl_req *req, void *arg)
{
    probe *pr = arg;
    const char *hold = sl_req_query(req, "hold");

    if (pr->consumer == NULL)
        return sl_reply_error(req, 503, "no consumer");
    if (hold == NULL)
        return sl_reply_error(req, 400, "hold is required");
    sl_kafka_consumer_hold(pr->consumer, atoi(hold));
    sl_reply_json(req, 200, cJSON_CreateObject());
}

static void serve_broker(sl_req *req, void *arg)
{
    probe *pr = arg;
    const char *id = sl_req_query(req, "id");
    const char *up = sl_req_query(req, "up");
    int rc;

    if (id == NULL || up == NULL)
        return sl_reply_error(req, 400, "id and up are required");
    rc = sl_kafka_embedded_broker_set(pr->ctx, atoi(id), atoi(up));
    if (rc != 0)
        return sl_reply_error(req, rc == SL_KAFKA_EPERM ? 403 : 400, "%s", sl_kafka_strerror(rc));
    sl_reply_json(req, 200, cJSON_CreateObject());
}

static void serve_errors(sl_req *req, void *arg)
{
    probe *pr = arg;
    const char *api = sl_req_query(req, "api");
    const char *err = sl_req_query(req, "err");
    const char *count = sl_req_query(req, "count");
    int rc;

    if (api == NULL || err == NULL || count == NULL)
        return sl_reply_error(req, 400, "api, err and count are required");
    rc = sl_kafka_embedded_push_errors(pr->ctx, atoi(api), atoi(err), atoi(count));
    if (rc != 0)
        return sl_reply_error(req, rc == SL_KAFKA_EPERM ? 403 : 400, "%s", sl_kafka_strerror(rc));
    sl_reply_json(req, 200, cJSON_CreateObject());
}

/* -------------------------------------------------------------- lifecycle */

static void route(probe *pr, unsigned methods, const char *what, sl_route_fn fn)
{
    char path[256];
    const char *inst = sl_instance_name(pr->ctx);

    if (inst[0] != '\0')
        snprintf(path, sizeof(path), "/kafkaprobe/%s/%s", inst, what);
    else
        snprintf(path, sizeof(path), "/kafkaprobe/%s", what);
    sl_route_scoped(pr->ctx, methods, path, SL_SCOPE_ADMIN | SL_ROUTE_ANY_BODY, 0, fn, pr);
}

static int probe_start(sl_ctx *ctx)
{
    probe *pr = calloc(1, sizeof(*pr));
    char err[512];
    size_t ntopics = sl_opt_list_len(ctx, "topics");
    struct timespec ts;

    if (pr == NULL)
        return sl_fail(ctx, "out of memory");
    pr->ctx = ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(pr->instance, sizeof(pr->instance), "%lld.%09ld", (long long)ts.tv_sec, ts.tv_nsec);
    pr->partitions = cJSON_CreateArray();
    sl_set_data(ctx, pr);
    if (sl_opt_bool(ctx, "produce")) {
        pr->producer = sl_kafka_producer_new(ctx, on_delivery, pr, NULL, err, sizeof(err));
        if (pr->producer == NULL)
            return sl_fail(ctx, "producer: %s", err);
    }
    if (ntopics > 0) {
        const char **topics = calloc(ntopics, sizeof(*topics));
        char min_msgs[24];
        const char *props[] = { "auto.offset.reset",
                                sl_opt_str(ctx, "auto_offset_reset"),
                                "enable.auto.commit",
                                sl_opt_bool(ctx, "auto_commit") ? "true" : "false",
                                "queued.min.messages",
                                min_msgs,
                                NULL };
        snprintf(min_msgs, sizeof(min_msgs), "%lld", sl_opt_int(ctx, "queued_min_messages"));
        if (sl_opt_int(ctx, "queued_min_messages") == 0)
            props[4] = NULL;
        if (topics == NULL)
            return sl_fail(ctx, "out of memory");
        for (size_t i = 0; i < ntopics; i++)
            topics[i] = sl_opt_list_at(ctx, "topics", i);
        pr->consumer = sl_kafka_consumer_new(ctx, sl_opt_str(ctx, "group"), topics, ntopics,
                                             on_message, on_rebalance, pr, props, err, sizeof(err));
        free(topics);
        if (pr->consumer == NULL)
            return sl_fail(ctx, "consumer: %s", err);
    }
    route(pr, SL_POST, "produce", serve_produce);
    route(pr, SL_GET, "consumed", serve_consumed);
    route(pr, SL_GET, "status", serve_status);
    route(pr, SL_POST, "commit", serve_commit);
    route(pr, SL_POST, "pause", serve_pause);
    route(pr, SL_POST, "hold", serve_hold);
    route(pr, SL_POST, "broker", serve_broker);
    route(pr, SL_POST, "errors", serve_errors);
    return 0;
}

static void probe_free(probe *pr)
{
    for (size_t i = 0; i < pr->nvalues; i++)
        free(pr->values[i]);
    free(pr->values);
    for (size_t i = 0; i < pr->npositions; i++)
        free(pr->positions[i].topic);
    free(pr->positions);
    cJSON_Delete(pr->partitions);
    free(pr);
}

static void stop_step_done(probe *pr)
{
    if (--pr->pending_stop > 0)
        return;
    sl_ctx *ctx = pr->ctx;
    sl_kafka_producer_free(pr->producer);
    sl_kafka_consumer_free(pr->consumer);
    sl_set_data(ctx, NULL);
    probe_free(pr);
    sl_stopped(ctx);
}

static void on_flushed(sl_kafka_producer *p, int remaining, void *arg)
{
    probe *pr = arg;

    (void)p;
    if (remaining > 0)
        sl_log(pr->ctx, SL_LOG_WARN, "stopping with %d messages undelivered", remaining);
    stop_step_done(pr);
}

static void on_closed(sl_kafka_consumer *c, int err, void *arg)
{
    (void)c;
    (void)err;
    stop_step_done(arg);
}

/* The drain: flush the producer and leave the group, then report. */
static void probe_stop(sl_ctx *ctx)
{
    probe *pr = sl_data(ctx);

    if (pr == NULL) {
        sl_stopped(ctx);
        return;
    }
    pr->stopping = 1;
    /* A run still producing answers with what it has; later reports of
     * its messages are ignored (they no longer match pr->running). */
    if (pr->running != NULL)
        run_finish(pr->running);
    pr->pending_stop = 1; /* held until both steps were started */
    if (pr->producer != NULL) {
        pr->pending_stop++;
        sl_kafka_producer_flush(pr->producer, 5, on_flushed, pr);
    }
    if (pr->consumer != NULL) {
        pr->pending_stop++;
        sl_kafka_consumer_close(pr->consumer, 5, on_closed, pr);
    }
    stop_step_done(pr);
}

SL_API const sl_module sluice_module = {
    .abi_version = SL_ABI_VERSION,
    .name = "kafkaprobe",
    .description = "drives the Kafka connector from HTTP, for tests and benchmarks",
    .options = probe_options,
    .flags = SL_MODULE_EXCLUSIVE,
    .start = probe_start,
    .stop = probe_stop,
};
