/*
 * ops.h - operating the aggregator over time, each an admin-scoped POST
 * under /aggregator/ with its state in /aggregator/status:
 *
 *   replay.c     POST replay?from=T     rewinds this instance's partitions
 *                to the first message at or after T and reads them again
 *   redrive.c    POST redrive?topic=D   sends the messages of dead-letter
 *                topic D back to their source topics, each once
 *   recompute.c  POST recompute?from=&to=   rebuilds the per-minute
 *                aggregates of a period from the raw rows
 *   membership.c the static group identity that lets a restarted
 *                instance resume at once
 *
 * All three are safe to repeat because every table collapses replays
 * (agg.h): reading an event again, or recomputing a minute again, leaves
 * the same numbers.
 */
#ifndef AGG_OPS_H
#define AGG_OPS_H

#include <cjson/cJSON.h>
#include "agg.h"

/* membership.c: the consumer's group.instance.id into `buf`, and its
 * length; 0 (and "") for dynamic membership. */
size_t agg_instance_id(const agg *a, char *buf, size_t cap);
/* check(): a group_instance_id Kafka would refuse is a config error. */
int agg_instance_id_check(sl_ctx *ctx);

/* Each registers its route and its state (owned by the instance). */
int agg_replay_start(agg *a);
int agg_redrive_start(agg *a);
int agg_recompute_start(agg *a);

/* Their objects "replay", "redrive", "recompute" in the status document. */
void agg_replay_status(const agg *a, cJSON *body);
void agg_redrive_status(const agg *a, cJSON *body);
void agg_recompute_status(const agg *a, cJSON *body);

static inline void agg_ops_status(const agg *a, cJSON *body)
{
    char id[256];

    agg_instance_id(a, id, sizeof(id));
    cJSON_AddStringToObject(body, "group_instance_id", id);
    agg_replay_status(a, body);
    agg_redrive_status(a, body);
    agg_recompute_status(a, body);
}

static inline int agg_ops_start(agg *a)
{
    if (agg_replay_start(a) != 0 || agg_redrive_start(a) != 0 || agg_recompute_start(a) != 0)
        return -1;
    return 0;
}

#endif
