/*
 * partition.h - where each message goes: by its key (the page id, so one
 * page stays in one partition and in order), round-robin, or at random,
 * chosen per message by weight.
 */
#ifndef GEN_PARTITION_H
#define GEN_PARTITION_H

#include <stdint.h>
#include "cdf.h"
#include "prng.h"

/* Let the producer hash the key (the connector's SL_KAFKA_PARTITION_ANY). */
#define GEN_BY_KEY (-1)

typedef enum { GEN_PART_KEY, GEN_PART_ROUND_ROBIN, GEN_PART_RANDOM, GEN_NPART } gen_part_how;

typedef struct {
    gen_cdf how;        /* weights of key, round_robin, random */
    int32_t partitions; /* of the topic, for round-robin and random */
    uint32_t next;      /* round-robin position */
} gen_partitioner;

const char *gen_part_name(gen_part_how how);
/* 0, or -1 on unusable weights or partitions < 1. */
int gen_partitioner_init(gen_partitioner *p, const double weights[GEN_NPART], int32_t partitions);
/* The partition for the next message (GEN_BY_KEY, or 0..partitions-1) and
 * how it was chosen. */
int32_t gen_partition_pick(gen_partitioner *p, gen_rng *r, gen_part_how *how);
void gen_partitioner_free(gen_partitioner *p);

#endif
