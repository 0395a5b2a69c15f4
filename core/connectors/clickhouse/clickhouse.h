/*
 * clickhouse.h - what the core knows of the ClickHouse connector; modules
 * use <sluice/clickhouse.h>.
 */
#ifndef SL_CLICKHOUSE_H
#define SL_CLICKHOUSE_H

#include "conf/section.h"

/* The [clickhouse] section: url, credentials, timeout, retries; its
 * prepare() runs curl_global_init() once per process. */
extern const sl_section_schema sl_clickhouse_schema;

#endif
