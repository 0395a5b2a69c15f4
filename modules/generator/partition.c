/*
 * partition.c - the partitioning strategy per message.
 */
#include "partition.h"

static const char *const names[GEN_NPART] = { "key", "round_robin", "random" };

const char *gen_part_name(gen_part_how how)
{
    return (unsigned)how < GEN_NPART ? names[how] : "unknown";
}

int gen_partitioner_init(gen_partitioner *p, const double weights[GEN_NPART], int32_t partitions)
{
    p->next = 0;
    p->partitions = partitions;
    if (partitions < 1)
        return -1;
    return gen_cdf_init(&p->how, weights, GEN_NPART);
}

int32_t gen_partition_pick(gen_partitioner *p, gen_rng *r, gen_part_how *how)
{
    *how = (gen_part_how)gen_cdf_pick(&p->how, r);
    switch (*how) {
    case GEN_PART_ROUND_ROBIN:
        return (int32_t)(p->next++ % (uint32_t)p->partitions);
    case GEN_PART_RANDOM:
        return (int32_t)gen_rng_below(r, (uint64_t)p->partitions);
    default:
        return GEN_BY_KEY;
    }
}

void gen_partitioner_free(gen_partitioner *p)
{
    gen_cdf_free(&p->how);
}
