/*
 * prng.h - the generator's seeded pseudo-random numbers (xoshiro256**,
 * seeded through splitmix64), so that `seed = N` replays a run exactly.
 * Not for anything secret.
 */
#ifndef GEN_PRNG_H
#define GEN_PRNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} gen_rng;

void gen_rng_seed(gen_rng *r, uint64_t seed);
uint64_t gen_rng_next(gen_rng *r);
/* Uniform in [0, 1). */
double gen_rng_unit(gen_rng *r);
/* Uniform in [0, n); 0 when n is 0. */
uint64_t gen_rng_below(gen_rng *r, uint64_t n);
/* Uniform integer in [lo, hi]. */
int64_t gen_rng_between(gen_rng *r, int64_t lo, int64_t hi);

#endif
