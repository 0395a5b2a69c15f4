/*
 * kafka.h - what the Kafka connector's files share: the [kafka] section and
 * its process-wide embedded broker (kafka_broker.c), used by the handles
 * (kafka.c, with kafka_producer.c and kafka_consumer.c).
 */
#ifndef SL_KAFKA_H
#define SL_KAFKA_H

#include <stddef.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include "conf/section.h"

/* The [kafka] section: brokers (embedded, a list or file:PATH), client
 * properties, the embedded broker's topics. */
extern const sl_section_schema sl_kafka_schema;

/* `brokers = file:PATH` reads the bootstrap servers from PATH (another
 * instance's bootstrap_file) when a handle is built. */
#define SL_KAFKA_BROKERS_FILE "file:"

/* The section's options and hooks (kafka_broker.c). */
extern const sl_option sl_kafka_options[];
int sl_kafka_check(const sl_optset *opts, const char *file, sl_errors *errs);
int sl_kafka_prepare(const sl_optset *old, const sl_optset *opts, sl_errors *errs);
void sl_kafka_shutdown(void);

/* An embedded (mock) cluster; handles bootstrapping to it hold a reference
 * so that a cluster replaced by a reload lives until its last user left. */
typedef struct sl_kafka_cluster sl_kafka_cluster;

/* The [kafka] options in force: the current generation's, or the defaults
 * when the config has no [kafka] section. */
const sl_optset *sl_kafka_section(void);

/* A reference to the embedded cluster for `opts` (brokers = embedded),
 * started now if none runs yet.  NULL with the reason in `err`. */
sl_kafka_cluster *sl_kafka_cluster_get(const sl_optset *opts, char *err, size_t errlen);
void sl_kafka_cluster_put(sl_kafka_cluster *c);
const char *sl_kafka_cluster_bootstraps(const sl_kafka_cluster *c);
/* Creates `topic` with embedded_partitions partitions unless it exists,
 * so that a client's first use does not get the mock's fixed default. */
void sl_kafka_cluster_ensure_topic(sl_kafka_cluster *c, const char *topic);

/* Commands to a mock cluster that return in milliseconds (kafka_mock.c). */
rd_kafka_resp_err_t sl_kafka_mock_topic_create(rd_kafka_mock_cluster_t *mock, const char *topic,
                                               int partitions, int replication);
rd_kafka_resp_err_t sl_kafka_mock_broker_set(rd_kafka_mock_cluster_t *mock, int32_t broker, int up);
void sl_kafka_mock_push_errors(rd_kafka_mock_cluster_t *mock, int16_t api, size_t count,
                               const rd_kafka_resp_err_t *errors);
void sl_kafka_mock_destroy(rd_kafka_mock_cluster_t *mock);

/* librdkafka's log levels (syslog's) as ours. */
sl_log_level sl_kafka_log_level(int syslog_level);

/* Sets client.id and the rdkafka.* properties of `opts` on the `conf` of
 * a client of `type`.  [kafka] applies to every handle, so a property
 * librdkafka lists for the other kind only (linger.ms on a consumer) is
 * left out rather than making librdkafka warn at every start that it
 * ignores it.  Returns 0 or -1 with the reason in `err`. */
int sl_kafka_conf_apply_section(rd_kafka_conf_t *conf, const sl_optset *opts, rd_kafka_type_t type,
                                char *err, size_t errlen);

#endif
