/*
 * section.c - the sections a config file may hold besides [module ...].
 */
#include <string.h>
#include "daemon/core.h"
#include "section.h"
#include "connectors/redis/redis.h"
#include "connectors/clickhouse/clickhouse.h"
#include "connectors/kafka/kafka.h"
#include "connectors/pg/pg.h"
#include "trace/trace.h"

static const sl_option core_options[] = {
    { "listen", SL_OPT_LIST, "127.0.0.1:8080",
      "HTTP listen addresses, host:port, comma separated; empty for none", 0, 0, NULL },
    { "modules_dir", SL_OPT_STRING, SL_MODULES_DIR,
      "directory holding the module .so files; relative to the config file's directory", 0, 0,
      NULL },
    { "log_level", SL_OPT_ENUM, "info", "least severe level logged", 0, 0,
      "error|warn|info|debug" },
    { "log_format", SL_OPT_ENUM, "text", "log line format on stderr", 0, 0, "text|json" },
    { "drain_timeout", SL_OPT_DURATION, "10s",
      "how long a stopping module may take to finish its in-flight work", 0.001, 3600, NULL },
    { "max_body_size", SL_OPT_INT, "1048576", "largest HTTP request body accepted, in bytes", 1,
      1073741824, NULL },
    { "request_timeout", SL_OPT_DURATION, "30s",
      "how long an HTTP client may take to send a request", 0.1, 3600, NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

static const sl_section_schema core_schema = {
    "core", "the daemon itself", core_options, 0, NULL, NULL, NULL,
};

const sl_section_schema *const sl_sections[] = {
    &core_schema,
    /* Before the connectors: shutdown runs in this order, and the
     * exporter's curl handles go before curl's global clean-up. */
    &sl_tracing_schema,
    &sl_redis_schema,
    &sl_clickhouse_schema,
    &sl_kafka_schema,
    &sl_postgres_schema,
    NULL
};

const sl_option sl_module_common_options[] = {
    { "listen", SL_OPT_LIST, "",
      "serve this instance's routes on these host:port addresses instead of [core] listen", 0, 0,
      NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

const sl_section_schema *sl_section_find(const char *name)
{
    for (size_t i = 0; sl_sections[i] != NULL; i++)
        if (strcmp(sl_sections[i]->name, name) == 0)
            return sl_sections[i];
    return NULL;
}
