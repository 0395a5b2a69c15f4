/*
 * cdf.c - weighted draws by cumulative table.
 */
#include <math.h>
#include <stdlib.h>
#include "cdf.h"

int gen_cdf_init(gen_cdf *c, const double *weights, size_t n)
{
    double total = 0, acc = 0;

    c->n = 0;
    c->cum = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!(weights[i] >= 0) || isinf(weights[i]))
            return -1;
        total += weights[i];
    }
    if (n == 0 || !(total > 0))
        return -1;
    c->cum = malloc(n * sizeof(*c->cum));
    if (c->cum == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        acc += weights[i];
        c->cum[i] = acc / total;
    }
    c->cum[n - 1] = 1.0; /* no rounding gap above the last one */
    c->n = n;
    return 0;
}

int gen_cdf_zipf(gen_cdf *c, size_t n, double skew)
{
    double *w;
    int rc;

    c->n = 0;
    c->cum = NULL;
    if (n == 0 || !(skew >= 0))
        return -1;
    if (skew == 0) {
        c->n = n;
        return 0;
    }
    w = malloc(n * sizeof(*w));
    if (w == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        w[i] = pow((double)(i + 1), -skew);
    rc = gen_cdf_init(c, w, n);
    free(w);
    return rc;
}

/* The first index whose cumulative share exceeds a uniform draw. */
size_t gen_cdf_pick(const gen_cdf *c, gen_rng *r)
{
    double u;
    size_t lo = 0, hi;

    if (c->cum == NULL)
        return (size_t)gen_rng_below(r, c->n);
    u = gen_rng_unit(r);
    hi = c->n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (u < c->cum[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

double gen_cdf_share(const gen_cdf *c, size_t i)
{
    if (i >= c->n)
        return 0;
    if (c->cum == NULL)
        return 1.0 / (double)c->n;
    return i == 0 ? c->cum[0] : c->cum[i] - c->cum[i - 1];
}

void gen_cdf_free(gen_cdf *c)
{
    free(c->cum);
    c->cum = NULL;
    c->n = 0;
}
