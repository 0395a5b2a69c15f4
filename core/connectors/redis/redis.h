/*
 * redis.h - what the core knows of the Redis connector; modules use
 * <sluice/redis.h>.
 */
#ifndef SL_REDIS_H
#define SL_REDIS_H

#include <stddef.h>
#include "conf/section.h"

/* The [redis] section: url, timeouts, reconnect backoff. */
extern const sl_section_schema sl_redis_schema;

/* redis://[[user]:password@]host[:port][/db], parsed. */
typedef struct {
    char user[128];
    char password[256];
    char host[256];
    int port;
    int db;
} sl_redis_url;

/* Returns 0, or -1 with the reason in `err`. */
int sl_redis_url_parse(const char *url, sl_redis_url *out, char *err, size_t errlen);

#endif
