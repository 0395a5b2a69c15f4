/*
 * membership.c - the aggregator's identity in its consumer group.
 *
 * With Kafka's static membership (KIP-345, group.instance.id) a member
 * that restarts under the same identity takes its place back at once:
 * the broker hands it the partitions it had, without waiting
 * session.timeout.ms for the old member to time out and without a
 * rebalance of the others.  The price: a static member does not leave
 * the group when it stops (librdkafka sends no LeaveGroup for it), so
 * its partitions wait for it, or for session.timeout.ms, and two
 * processes under one identity fence each other (the broker refuses the
 * older one with FENCED_INSTANCE_ID, a fatal error for it).
 *
 * The identity must be stable across restarts and unique in the group:
 * by default the host name, with the instance name of a named instance.
 * The embedded broker (librdkafka 2.0.2's mock cluster) reads
 * group.instance.id and drops it (README, "Restarts"), so there the
 * default is dynamic membership, which at least leaves on a clean stop.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "ops.h"

size_t agg_instance_id(const agg *a, char *buf, size_t cap)
{
    const char *v = sl_opt_str(a->ctx, "group_instance_id");
    const char *inst = sl_instance_name(a->ctx);
    char host[256];

    buf[0] = '\0';
    if (strcmp(v, "auto") != 0) {
        snprintf(buf, cap, "%s", v);
        return strlen(buf);
    }
    if (sl_kafka_brokers_embedded(a->ctx))
        return 0;
    if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    if (inst[0] != '\0')
        snprintf(buf, cap, "%s.%s", host, inst);
    else
        snprintf(buf, cap, "%s", host);
    return strlen(buf);
}

int agg_instance_id_check(sl_ctx *ctx)
{
    const char *v = sl_opt_str(ctx, "group_instance_id");
    size_t n = strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-");

    /* What Kafka accepts as a group.instance.id; the broker would refuse
     * the member at every join otherwise. */
    if (v[n] != '\0' || n > 249)
        return sl_fail_opt(ctx, "group_instance_id",
                           "\"%.64s\": at most 249 of A-Z a-z 0-9 . _ - (or auto, or empty)", v);
    return 0;
}
