/*
 * cdf.h - drawing an index by weight: the event mix, the malformed kinds,
 * the partitioning strategies, and Zipf-skewed populations (a few hot
 * pages, a long tail) are all one cumulative table and a binary search.
 */
#ifndef GEN_CDF_H
#define GEN_CDF_H

#include <stddef.h>
#include "prng.h"

typedef struct {
    size_t n;
    double *cum; /* cum[i]: sum of weights 0..i, normalised to end at 1; NULL when uniform */
} gen_cdf;

/* From `n` weights, each >= 0 and not all 0.  0, or -1 (bad weights or
 * out of memory; `c` is then empty). */
int gen_cdf_init(gen_cdf *c, const double *weights, size_t n);
/* Ranks 0..n-1 with weight 1/(rank+1)^skew; skew 0 is uniform and needs
 * no table.  0 or -1 (n 0, skew < 0, out of memory). */
int gen_cdf_zipf(gen_cdf *c, size_t n, double skew);
size_t gen_cdf_pick(const gen_cdf *c, gen_rng *r);
/* The share of index i, for reports and tests. */
double gen_cdf_share(const gen_cdf *c, size_t i);
void gen_cdf_free(gen_cdf *c);

#endif
