/*
 * bucket.c - the token bucket.
 */
#include <math.h>
#include "bucket.h"

#define NEVER 3600.0

void gen_bucket_init(gen_bucket *b, double rate, double capacity, double now)
{
    b->rate = rate > 0 ? rate : 0;
    b->capacity = capacity >= 1 ? capacity : 1;
    b->tokens = 0;
    b->last = now;
    b->missed = 0;
}

void gen_bucket_refill(gen_bucket *b, double now)
{
    if (now > b->last) {
        b->tokens += (now - b->last) * b->rate;
        b->last = now;
    }
    if (b->tokens > b->capacity) {
        b->missed += b->tokens - b->capacity;
        b->tokens = b->capacity;
    }
}

void gen_bucket_set_rate(gen_bucket *b, double rate, double now)
{
    gen_bucket_refill(b, now);
    b->rate = rate > 0 ? rate : 0;
}

uint64_t gen_bucket_take(gen_bucket *b, double now, uint64_t max, double *first, double *step)
{
    double whole;
    uint64_t n;

    gen_bucket_refill(b, now);
    /* Rates and times in binary floating point: 0.2 s at 100/s may come
     * out as 19.999999999999996 tokens, which is 20. */
    whole = floor(b->tokens + 1e-9);
    n = whole < (double)max ? (uint64_t)whole : max;
    /* Token i (0 the oldest) became whole when the bucket reached i + 1. */
    if (b->rate > 0) {
        *step = 1.0 / b->rate;
        *first = now - (b->tokens - 1) / b->rate;
    } else {
        *step = 0;
        *first = now;
    }
    b->tokens -= (double)n;
    if (b->tokens < 0)
        b->tokens = 0;
    return n;
}

double gen_bucket_wait(const gen_bucket *b, double now)
{
    double tokens = b->tokens;

    if (now > b->last)
        tokens += (now - b->last) * b->rate;
    if (tokens >= 1)
        return 0;
    if (!(b->rate > 0))
        return NEVER;
    return (1 - tokens) / b->rate;
}
