/*
 * ratelimit.c - token buckets per caller (see ratelimit.h).
 */
#include "ratelimit.h"

void sl_rate_configure(sl_rate *r, double rate, double burst)
{
    r->rate = rate;
    r->burst = burst < 1 ? 1 : burst;
    for (int i = 0; i < SL_RATE_BUCKETS; i++) {
        r->b[i].tokens = r->burst;
        r->b[i].at = 0;
    }
}

/* FNV-1a: cheap and well spread for short strings. */
static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;

    while (*s != '\0') {
        h ^= (unsigned char)*s++;
        h *= 16777619u;
    }
    return h;
}

long sl_rate_take(sl_rate *r, const char *key, double now)
{
    sl_rate_bucket *b;

    if (r->rate <= 0)
        return 0;
    b = &r->b[hash(key) % SL_RATE_BUCKETS];
    if (b->at == 0 || now < b->at) {
        b->tokens = r->burst;
    } else {
        b->tokens += (now - b->at) * r->rate;
        if (b->tokens > r->burst)
            b->tokens = r->burst;
    }
    b->at = now;
    if (b->tokens >= 1) {
        b->tokens -= 1;
        return 0;
    }
    double wait = (1 - b->tokens) / r->rate;
    long whole = (long)wait;
    return whole < wait || whole == 0 ? whole + 1 : whole;
}
