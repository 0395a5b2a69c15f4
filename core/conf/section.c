/*
 * section.c - the sections a config file may hold besides [module ...].
 */
#include <string.h>
#include "daemon/core.h"
#include "section.h"
#include "connectors/redis/redis.h"
#ifdef SL_WITH_CLICKHOUSE
#include "connectors/clickhouse/clickhouse.h"
#endif
#include "connectors/kafka/kafka.h"
#include "connectors/pg/pg.h"
#include "trace/trace.h"

/* Settings of the listeners a section's `listen` names, in [core] and in
 * every module section: one table entry list, spliced into both. */
#define SL_LISTEN_OPTIONS                                                                         \
    { "allow_anonymous",                                                                          \
      SL_OPT_BOOL,                                                                                \
      "no",                                                                                       \
      "serve every route of these listeners without credentials; needed for a listener off "      \
      "loopback when tokens_file is not set",                                                     \
      0,                                                                                          \
      0,                                                                                          \
      NULL },                                                                                     \
            { "allowed_hosts",                                                                    \
              SL_OPT_LIST,                                                                        \
              "",                                                                                 \
              "Host header names these listeners answer (421 otherwise), against DNS rebinding; " \
              "\"name\" matches any port, \"name:port\" one; empty: any",                         \
              0,                                                                                  \
              0,                                                                                  \
              NULL },                                                                             \
            { "max_connections",                                                                  \
              SL_OPT_INT,                                                                         \
              "1024",                                                                             \
              "connections open at once per listener; beyond it new ones are answered 503 with "  \
              "Retry-After and closed, unread; 0: no cap",                                        \
              0,                                                                                  \
              1000000,                                                                            \
              NULL },                                                                             \
            { "tls_cert",                                                                         \
              SL_OPT_STRING,                                                                      \
              "",                                                                                 \
              "PEM certificate chain, relative to the config file's directory: serve HTTPS on "   \
              "these "                                                                            \
              "listeners; re-read on SIGHUP",                                                     \
              0,                                                                                  \
              0,                                                                                  \
              NULL },                                                                             \
            { "tls_key", SL_OPT_STRING, "", "PEM private key of tls_cert", 0, 0, NULL },          \
    {                                                                                             \
        "access_log", SL_OPT_STRING, "off",                                                       \
                "one line per request answered on these listeners, in [core] log_format: off, "   \
                "stderr, "                                                                        \
                "or a file (relative to the config file's directory), opened again on SIGHUP",    \
                0, 0, NULL                                                                        \
    }

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
    { "max_body_size", SL_OPT_INT, "1048576",
      "largest HTTP request body accepted, in bytes (413 beyond); routes may set less", 1,
      1073741824, NULL },
    { "max_header_size", SL_OPT_INT, "16384",
      "largest HTTP request line and headers, in bytes (431 beyond, the connection closed)", 1024,
      1048576, NULL },
    { "request_timeout", SL_OPT_DURATION, "30s",
      "how long an HTTP client may take to send one whole request, however it trickles; also "
      "how long a keep-alive connection may sit idle",
      0.1, 3600, NULL },
    { "tokens_file", SL_OPT_STRING, "",
      "bearer tokens (NAME SCOPES SECRET per line), re-read on SIGHUP; relative to the config "
      "file's directory; empty: no credentials, every route open to whoever reaches a listener",
      0, 0, NULL },
    { "rate_limit", SL_OPT_DOUBLE, "0",
      "requests per second allowed per token (or client address without one), 429 beyond; 0: "
      "no limit",
      0, 1e6, NULL },
    { "rate_burst", SL_OPT_INT, "50", "requests a caller may make at once under rate_limit", 1,
      1000000, NULL },
    SL_LISTEN_OPTIONS,
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

static const sl_section_schema core_schema = {
    "core", "the daemon itself", core_options, 0, NULL, NULL, NULL,
};

const sl_section_schema *const sl_sections[] = {
    &core_schema,
    /* Before the connectors: shutdown runs in this order, and the
     * exporter's curl handles go before curl's global clean-up. */
    &sl_tracing_schema, &sl_redis_schema,
#ifdef SL_WITH_CLICKHOUSE
    &sl_clickhouse_schema,
#endif
    &sl_kafka_schema, &sl_postgres_schema, NULL
};

const sl_option sl_module_common_options[] = {
    { "listen", SL_OPT_LIST, "",
      "serve this instance's routes on these host:port addresses instead of [core] listen", 0, 0,
      NULL },
    SL_LISTEN_OPTIONS,
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

const sl_section_schema *sl_section_find(const char *name)
{
    for (size_t i = 0; sl_sections[i] != NULL; i++)
        if (strcmp(sl_sections[i]->name, name) == 0)
            return sl_sections[i];
    return NULL;
}

int sl_section_left_out(const char *name)
{
#ifdef SL_WITH_CLICKHOUSE
    (void)name;
    return 0;
#else
    return strcmp(name, "clickhouse") == 0;
#endif
}
