/*
 * kafka_broker.c - the [kafka] section and the embedded broker.
 *
 * `brokers = embedded` runs librdkafka's mock cluster inside the process:
 * real TCP listeners on 127.0.0.1 that speak enough of the Kafka protocol
 * for producers, consumer groups and external clients such as kcat.  It is
 * process-wide, so it lives here and not in any instance: prepare() starts
 * it (or keeps the running one when the reload did not change what it
 * depends on), shutdown() stops it at exit.
 *
 * A handle that bootstraps to a cluster holds a reference to it.  A reload
 * that changes the number of embedded brokers starts a new cluster; the old
 * one lives on until the handles of the old generation, which the core
 * replaces, are gone, so that they can still drain into it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include "daemon/core.h"
#include "kafka.h"
#include "connectors/connector.h"
#include "daemon/log.h"
#include <sluice/kafka.h>

#define RDKAFKA_PREFIX "rdkafka."

const sl_option sl_kafka_options[] = {
    { "brokers", SL_OPT_STRING, "embedded",
      "bootstrap servers, host:port comma separated, \"embedded\" for a broker inside the "
      "process (memory only, for development and tests), or file:PATH to read them from another "
      "instance's bootstrap_file",
      0, 0, NULL },
    { "client_id", SL_OPT_STRING, "sluiced", "client.id of every Kafka client", 0, 0, NULL },
    { "bootstrap_file", SL_OPT_STRING, "",
      "with brokers = embedded, write the embedded bootstrap address to this file", 0, 0, NULL },
    { "embedded_brokers", SL_OPT_INT, "1", "number of embedded brokers", 1, 16, NULL },
    { "embedded_topics", SL_OPT_LIST, "",
      "topics created when the embedded broker starts, as name:partitions", 0, 0, NULL },
    { "embedded_partitions", SL_OPT_INT, "4",
      "partitions of a topic the connector's handles use first without it being listed", 1, 10000,
      NULL },
    { "embedded_replication", SL_OPT_INT, "1",
      "replicas of each embedded topic's partitions, spread over the embedded brokers (at most "
      "embedded_brokers); the mock keeps one copy of the data, so this shapes the metadata "
      "clients see, not durability",
      1, 16, NULL },
    { "admin", SL_OPT_BOOL, "false",
      "let modules take embedded brokers down and inject errors (reliability tests only)", 0, 0,
      NULL },
    { "sasl_password_file", SL_OPT_STRING, "",
      "file whose first line is sasl.password, so that the secret is not in the config "
      "(rdkafka.sasl.username and rdkafka.sasl.mechanism stay here)",
      0, 0, NULL },
    { "rdkafka.*", SL_OPT_STRING, NULL,
      "any librdkafka configuration property, e.g. rdkafka.linger.ms = 5; one librdkafka lists for "
      "producers only or consumers only goes to that kind of handle only",
      0, 0, NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

/* Properties the connector sets itself: overriding them would take the
 * clients off the loop or point them elsewhere than `brokers`. */
static const char *const owned_properties[] = { "bootstrap.servers", "metadata.broker.list",
                                                "log.queue", "enabled_events", NULL };

struct sl_kafka_cluster {
    sl_kafka_cluster *next;
    rd_kafka_t *rk; /* the bookkeeping client librdkafka requires */
    rd_kafka_mock_cluster_t *mock;
    struct event *log_timer;
    char *bootstraps;
    int nbrokers;
    int partitions;
    int replication;
    char **topics; /* created by us, or found existing */
    size_t ntopics;
    int refs;
};

static sl_kafka_cluster *clusters;
static sl_optset defaults;
static int have_defaults;
static char *written_file;

/* ------------------------------------------------------------- options */

static int is_embedded(const sl_optset *opts)
{
    return strcmp(sl_optset_get(opts, "brokers")->raw, "embedded") == 0;
}

const sl_optset *sl_kafka_section(void)
{
    const sl_optset *cur = sl_cycle_section("kafka");
    const sl_option *tables[1] = { sl_kafka_options };
    sl_errors errs = { 0 };

    if (cur != NULL)
        return cur;
    if (!have_defaults) {
        /* The defaults cannot fail validation; if they did (out of
         * memory aborts in the error list) the set stays empty. */
        if (sl_options_validate(tables, 1, NULL, "defaults", &defaults, &errs) == 0)
            have_defaults = 1;
        sl_errors_free(&errs);
    }
    return &defaults;
}

static int is_owned_property(const char *name)
{
    for (size_t i = 0; owned_properties[i] != NULL; i++)
        if (strcmp(owned_properties[i], name) == 0)
            return 1;
    return 0;
}

/* librdkafka's own table of its properties, one "name | C/P | ..." line
 * each: the second column says which kind of client reads a property.
 * malloc'd; NULL when out of memory. */
static char *properties_table(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (f == NULL)
        return NULL;
    rd_kafka_conf_properties_show(f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* 'P' (producers), 'C' (consumers) or '*' for `name`; 0 when the table
 * does not list it (librdkafka then judges it itself). */
static char property_scope(const char *table, const char *name)
{
    size_t n = strlen(name);

    for (const char *line = table; line != NULL && *line != '\0';) {
        const char *nl = strchr(line, '\n');
        const char *bar = strchr(line, '|');
        if (strncmp(line, name, n) == 0 && line[n] == ' ' && bar != NULL &&
            (nl == NULL || bar < nl)) {
            for (bar++; *bar == ' '; bar++)
                ;
            return *bar;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    return 0;
}

int sl_kafka_conf_apply_section(rd_kafka_conf_t *conf, const sl_optset *opts, rd_kafka_type_t type,
                                char *err, size_t errlen)
{
    char other = type == RD_KAFKA_PRODUCER ? 'C' : 'P';
    char *table = NULL;
    int rc = 0;

    if (rd_kafka_conf_set(conf, "client.id", sl_optset_get(opts, "client_id")->raw, err, errlen) !=
        RD_KAFKA_CONF_OK)
        return -1;
    for (size_t i = 0; i < opts->n && rc == 0; i++) {
        const sl_optval *v = &opts->v[i];
        const char *name = v->key + strlen(RDKAFKA_PREFIX);
        if (strncmp(v->key, RDKAFKA_PREFIX, strlen(RDKAFKA_PREFIX)) != 0)
            continue;
        if (table == NULL)
            table = properties_table();
        if (table != NULL && property_scope(table, name) == other)
            continue;
        if (rd_kafka_conf_set(conf, name, v->raw, err, errlen) != RD_KAFKA_CONF_OK)
            rc = -1;
    }
    free(table);
    return rc;
}

/* Splits "name:count" (count optional, default `def`).  Returns 0 with a
 * malloc'd name, or -1. */
static int parse_topic_spec(const char *spec, int def, char **name, int *count)
{
    const char *colon = strrchr(spec, ':');
    size_t n = colon != NULL ? (size_t)(colon - spec) : strlen(spec);
    long c = def;

    if (colon != NULL) {
        char *end;
        errno = 0;
        c = strtol(colon + 1, &end, 10);
        if (errno != 0 || end == colon + 1 || *end != '\0' || c < 1 || c > 10000)
            return -1;
    }
    while (n > 0 && (spec[n - 1] == ' ' || spec[n - 1] == '\t'))
        n--;
    if (n == 0)
        return -1;
    *name = strndup(spec, n);
    if (*name == NULL)
        return -1;
    *count = (int)c;
    return 0;
}

/* Side-effect free: `-t` and every reload run it before anything changes. */
int sl_kafka_check(const sl_optset *opts, const char *file, sl_errors *errs)
{
    const sl_optval *brokers = sl_optset_get(opts, "brokers");
    const sl_optval *topics = sl_optset_get(opts, "embedded_topics");
    const sl_optval *replication = sl_optset_get(opts, "embedded_replication");
    rd_kafka_conf_t *scratch;
    char err[512];
    int bad = 0;

    if (sl_conn_check_secret(opts, "kafka", "sasl_password_file", file, errs) != 0)
        bad = 1;
    if (brokers->raw[0] == '\0') {
        sl_errors_add(errs, file, brokers->line,
                      "[kafka] brokers: empty; use \"embedded\" or host:port");
        bad = 1;
    } else if (strcmp(brokers->raw, SL_KAFKA_BROKERS_FILE) == 0) {
        sl_errors_add(errs, file, brokers->line, "[kafka] brokers: file: names no file");
        bad = 1;
    }
    if (replication->i > sl_optset_get(opts, "embedded_brokers")->i) {
        sl_errors_add(errs, file, replication->line,
                      "[kafka] embedded_replication: %lld replicas need as many embedded_brokers "
                      "(%lld)",
                      replication->i, sl_optset_get(opts, "embedded_brokers")->i);
        bad = 1;
    }
    for (size_t i = 0; i < topics->nlist; i++) {
        char *name;
        int count;
        if (parse_topic_spec(topics->list[i], 1, &name, &count) != 0) {
            sl_errors_add(
                    errs, file, topics->line,
                    "[kafka] embedded_topics: \"%s\" is not name or name:partitions (1..10000)",
                    topics->list[i]);
            bad = 1;
            continue;
        }
        free(name);
    }
    scratch = rd_kafka_conf_new();
    if (scratch == NULL) {
        sl_errors_add(errs, file, 0, "[kafka] out of memory checking rdkafka properties");
        return -1;
    }
    if (rd_kafka_conf_set(scratch, "client.id", sl_optset_get(opts, "client_id")->raw, err,
                          sizeof(err)) != RD_KAFKA_CONF_OK) {
        sl_errors_add(errs, file, sl_optset_get(opts, "client_id")->line, "[kafka] client_id: %s",
                      err);
        bad = 1;
    }
    for (size_t i = 0; i < opts->n; i++) {
        const sl_optval *v = &opts->v[i];
        const char *prop;
        if (strncmp(v->key, RDKAFKA_PREFIX, strlen(RDKAFKA_PREFIX)) != 0)
            continue;
        prop = v->key + strlen(RDKAFKA_PREFIX);
        if (is_owned_property(prop)) {
            sl_errors_add(errs, file, v->line, "[kafka] %s: set by the connector itself%s", v->key,
                          strcmp(prop, "bootstrap.servers") == 0 ? "; use brokers" : "");
            bad = 1;
        } else if (rd_kafka_conf_set(scratch, prop, v->raw, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            sl_errors_add(errs, file, v->line, "[kafka] %s: %s", v->key, err);
            bad = 1;
        }
    }
    rd_kafka_conf_destroy(scratch);
    return bad ? -1 : 0;
}

/* ------------------------------------------------------ embedded cluster */

sl_log_level sl_kafka_log_level(int syslog_level)
{
    if (syslog_level <= 3)
        return SL_LOG_ERROR;
    if (syslog_level == 4)
        return SL_LOG_WARN;
    if (syslog_level <= 6)
        return SL_LOG_INFO;
    return SL_LOG_DEBUG;
}

/* The bookkeeping client is never used for messages; its queue only holds
 * the mock cluster's log lines, so a slow timer is enough to drain it on
 * the loop. */
static void drain_cluster_log(evutil_socket_t fd, short what, void *arg)
{
    sl_kafka_cluster *c = arg;
    rd_kafka_queue_t *q = rd_kafka_queue_get_main(c->rk);
    rd_kafka_event_t *ev;

    (void)fd;
    (void)what;
    while ((ev = rd_kafka_queue_poll(q, 0)) != NULL) {
        const char *fac, *str;
        int level;
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_LOG &&
            rd_kafka_event_log(ev, &fac, &str, &level) == 0)
            sl_log_core(sl_kafka_log_level(level), "kafka", "embedded broker: %s: %s", fac, str);
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
}

static int cluster_knows(const sl_kafka_cluster *c, const char *topic)
{
    for (size_t i = 0; i < c->ntopics; i++)
        if (strcmp(c->topics[i], topic) == 0)
            return 1;
    return 0;
}

static void cluster_remember(sl_kafka_cluster *c, const char *topic)
{
    char **grown = realloc(c->topics, (c->ntopics + 1) * sizeof(*grown));
    char *copy = strdup(topic);

    if (grown == NULL || copy == NULL) {
        /* Forgetting only means asking the mock again next time. */
        free(copy);
        if (grown != NULL)
            c->topics = grown;
        return;
    }
    c->topics = grown;
    c->topics[c->ntopics++] = copy;
}

/* A command to the mock cluster's thread: memory only, never the network,
 * and kafka_mock.c keeps its wait short. */
static void create_topic(sl_kafka_cluster *c, const char *topic, int partitions)
{
    rd_kafka_resp_err_t e;

    if (cluster_knows(c, topic))
        return;
    e = sl_kafka_mock_topic_create(c->mock, topic, partitions, c->replication);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        sl_log_core(SL_LOG_INFO, "kafka",
                    "embedded topic %s created with %d partitions, %d replica%s each", topic,
                    partitions, c->replication, c->replication == 1 ? "" : "s");
    else if (e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        sl_log_core(SL_LOG_WARN, "kafka", "embedded topic %s: %s", topic, rd_kafka_err2str(e));
    cluster_remember(c, topic);
}

void sl_kafka_cluster_ensure_topic(sl_kafka_cluster *c, const char *topic)
{
    create_topic(c, topic, c->partitions);
}

static void cluster_destroy(sl_kafka_cluster *c)
{
    double started = sl_now();

    if (c->log_timer != NULL)
        event_free(c->log_timer);
    if (c->mock != NULL)
        sl_kafka_mock_destroy(c->mock);
    if (c->rk != NULL)
        rd_kafka_destroy(c->rk);
    sl_log_core(SL_LOG_INFO, "kafka", "embedded Kafka broker on %s stopped (%.1f ms)",
                c->bootstraps, (sl_now() - started) * 1000);
    for (size_t i = 0; i < c->ntopics; i++)
        free(c->topics[i]);
    free(c->topics);
    free(c->bootstraps);
    free(c);
}

static sl_kafka_cluster *cluster_start(int nbrokers, char *err, size_t errlen)
{
    sl_kafka_cluster *c = calloc(1, sizeof(*c));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    struct timeval half = { 0, 500000 };

    if (c == NULL || conf == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    c->nbrokers = nbrokers;
    c->replication = 1;
    if (rd_kafka_conf_set(conf, "log.queue", "true", err, errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "4", err, errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "sluiced-embedded", err, errlen) != RD_KAFKA_CONF_OK)
        goto fail;
    c->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (c->rk == NULL)
        goto fail;
    conf = NULL; /* owned by rk now */
    if (rd_kafka_set_log_queue(c->rk, NULL) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "cannot route librdkafka logs to a queue");
        goto fail;
    }
    c->log_timer = event_new(sl_base, -1, EV_PERSIST, drain_cluster_log, c);
    if (c->log_timer == NULL || event_add(c->log_timer, &half) != 0) {
        snprintf(err, errlen, "cannot add a timer to the loop");
        goto fail;
    }
    c->mock = rd_kafka_mock_cluster_new(c->rk, nbrokers);
    if (c->mock == NULL) {
        snprintf(err, errlen, "librdkafka could not start a mock cluster");
        goto fail;
    }
    c->bootstraps = strdup(rd_kafka_mock_cluster_bootstraps(c->mock));
    if (c->bootstraps == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    sl_log_core(SL_LOG_INFO, "kafka", "embedded Kafka broker listening on %s (%d broker%s)",
                c->bootstraps, nbrokers, nbrokers == 1 ? "" : "s");
    c->next = clusters;
    clusters = c;
    return c;

fail:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (c != NULL) {
        c->bootstraps = c->bootstraps != NULL ? c->bootstraps : strdup("(not started)");
        cluster_destroy(c);
    }
    return NULL;
}

static sl_kafka_cluster *cluster_find(int nbrokers)
{
    for (sl_kafka_cluster *c = clusters; c != NULL; c = c->next)
        if (c->nbrokers == nbrokers)
            return c;
    return NULL;
}

static int wants(const sl_optset *opts, const sl_kafka_cluster *c)
{
    return opts != NULL && is_embedded(opts) &&
           sl_optset_get(opts, "embedded_brokers")->i == c->nbrokers;
}

/* Stops the clusters no handle uses and neither `a` nor `b` wants. */
static void reap(const sl_optset *a, const sl_optset *b)
{
    sl_kafka_cluster **at = &clusters;

    while (*at != NULL) {
        sl_kafka_cluster *c = *at;
        if (c->refs == 0 && !wants(a, c) && !wants(b, c)) {
            *at = c->next;
            cluster_destroy(c);
        } else {
            at = &c->next;
        }
    }
}

/* Creates the listed topics and takes over the partition default. */
static void cluster_configure(sl_kafka_cluster *c, const sl_optset *opts)
{
    const sl_optval *topics = sl_optset_get(opts, "embedded_topics");

    c->partitions = (int)sl_optset_get(opts, "embedded_partitions")->i;
    c->replication = (int)sl_optset_get(opts, "embedded_replication")->i;
    for (size_t i = 0; i < topics->nlist; i++) {
        char *name;
        int count;
        if (parse_topic_spec(topics->list[i], c->partitions, &name, &count) != 0)
            continue; /* check() reported it */
        create_topic(c, name, count);
        free(name);
    }
}

sl_kafka_cluster *sl_kafka_cluster_get(const sl_optset *opts, char *err, size_t errlen)
{
    int n = (int)sl_optset_get(opts, "embedded_brokers")->i;
    sl_kafka_cluster *c = cluster_find(n);

    if (c == NULL) {
        c = cluster_start(n, err, errlen);
        if (c == NULL)
            return NULL;
        cluster_configure(c, opts);
    }
    c->refs++;
    return c;
}

void sl_kafka_cluster_put(sl_kafka_cluster *c)
{
    if (c == NULL)
        return;
    c->refs--;
    reap(sl_kafka_section(), NULL);
}

const char *sl_kafka_cluster_bootstraps(const sl_kafka_cluster *c)
{
    return c->bootstraps;
}

/* Writes the address next to the file and renames it into place, so that
 * a reader never sees half of it. */
static int write_bootstrap_file(const char *path, const char *bootstraps, char *err, size_t errlen)
{
    char tmp[4096];
    FILE *f;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "path too long");
        return -1;
    }
    f = fopen(tmp, "w");
    if (f == NULL) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
    }
    if (fprintf(f, "%s\n", bootstraps) < 0 || fclose(f) != 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int sl_kafka_prepare(const sl_optset *old, const sl_optset *opts, sl_errors *errs)
{
    const sl_optval *file = sl_optset_get(opts, "bootstrap_file");
    sl_kafka_cluster *c;
    char err[512];

    (void)old;
    if (!is_embedded(opts)) {
        reap(opts, sl_cycle_section("kafka"));
        return 0;
    }
    c = cluster_find((int)sl_optset_get(opts, "embedded_brokers")->i);
    if (c == NULL) {
        c = cluster_start((int)sl_optset_get(opts, "embedded_brokers")->i, err, sizeof(err));
        if (c == NULL) {
            sl_errors_add(errs, NULL, sl_optset_get(opts, "brokers")->line,
                          "[kafka] cannot start the embedded broker: %s", err);
            return -1;
        }
    }
    cluster_configure(c, opts);
    if (file->raw[0] != '\0') {
        if (write_bootstrap_file(file->raw, c->bootstraps, err, sizeof(err)) != 0) {
            sl_errors_add(errs, NULL, file->line, "[kafka] bootstrap_file %s: %s", file->raw, err);
            return -1;
        }
        if (written_file == NULL || strcmp(written_file, file->raw) != 0) {
            free(written_file);
            written_file = strdup(file->raw);
        }
    }
    reap(opts, sl_cycle_section("kafka"));
    return 0;
}

void sl_kafka_shutdown(void)
{
    while (clusters != NULL) {
        sl_kafka_cluster *c = clusters;
        clusters = c->next;
        if (c->refs != 0)
            sl_log_core(SL_LOG_WARN, "kafka", "embedded broker stopped with %d handles on it",
                        c->refs);
        cluster_destroy(c);
    }
    if (written_file != NULL) {
        unlink(written_file);
        free(written_file);
        written_file = NULL;
    }
    if (have_defaults) {
        sl_optset_free(&defaults);
        have_defaults = 0;
    }
}

/* ------------------------------------------------------------------ admin */

/* The embedded cluster the admin functions act on, or NULL when admin is
 * off or nothing is embedded. */
static sl_kafka_cluster *admin_cluster(sl_ctx *ctx)
{
    const sl_optset *opts = sl_kafka_section();

    if (sl_ctx_refuse(ctx, "the embedded broker"))
        return NULL;
    sl_ctx_uses(ctx, SL_USES_KAFKA);
    if (!sl_optset_get(opts, "admin")->i || !is_embedded(opts))
        return NULL;
    return cluster_find((int)sl_optset_get(opts, "embedded_brokers")->i);
}

SL_API int sl_kafka_embedded_broker_set(sl_ctx *ctx, int broker_id, int up)
{
    sl_kafka_cluster *c = admin_cluster(ctx);
    rd_kafka_resp_err_t e;

    if (c == NULL)
        return SL_KAFKA_EPERM;
    if (broker_id != -1 && (broker_id < 1 || broker_id > c->nbrokers))
        return SL_KAFKA_EINVAL;
    e = sl_kafka_mock_broker_set(c->mock, broker_id, up);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return SL_KAFKA_EINVAL;
    sl_log_core(SL_LOG_WARN, "kafka", "admin: embedded broker %d set %s by %s", broker_id,
                up ? "up" : "down", ctx->label);
    return 0;
}

SL_API int sl_kafka_embedded_push_errors(sl_ctx *ctx, int api_key, int err, int count)
{
    sl_kafka_cluster *c = admin_cluster(ctx);
    rd_kafka_resp_err_t *errors;

    if (c == NULL)
        return SL_KAFKA_EPERM;
    if (api_key < 0 || api_key > 100 || count < 1 || count > 100000)
        return SL_KAFKA_EINVAL;
    errors = malloc((size_t)count * sizeof(*errors));
    if (errors == NULL)
        return SL_KAFKA_ENOMEM;
    for (int i = 0; i < count; i++)
        errors[i] = (rd_kafka_resp_err_t)err;
    sl_kafka_mock_push_errors(c->mock, (int16_t)api_key, (size_t)count, errors);
    free(errors);
    sl_log_core(SL_LOG_WARN, "kafka", "admin: next %d requests of API %d fail with %s (by %s)",
                count, api_key, rd_kafka_err2name((rd_kafka_resp_err_t)err), ctx->label);
    return 0;
}

SL_API const char *sl_kafka_embedded_bootstrap(sl_ctx *ctx)
{
    const sl_optset *opts = sl_kafka_section();
    sl_kafka_cluster *c;

    if (sl_ctx_refuse(ctx, "the embedded broker"))
        return NULL;
    sl_ctx_uses(ctx, SL_USES_KAFKA);
    if (!is_embedded(opts))
        return NULL;
    c = cluster_find((int)sl_optset_get(opts, "embedded_brokers")->i);
    return c != NULL ? c->bootstraps : NULL;
}

SL_API int sl_kafka_brokers_embedded(sl_ctx *ctx)
{
    const sl_optset *opts = sl_kafka_section();

    (void)ctx;
    return is_embedded(opts) || strncmp(sl_optset_get(opts, "brokers")->raw, SL_KAFKA_BROKERS_FILE,
                                        strlen(SL_KAFKA_BROKERS_FILE)) == 0;
}
