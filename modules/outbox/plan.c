/*
 * plan.c - how many buckets a relay should own, and how many rows to ask
 * of each: pure arithmetic, unit tested.
 */
#include "outbox.h"

int ob_fair_share(int relays)
{
    if (relays < 1)
        relays = 1;
    return (OB_BUCKETS + relays - 1) / relays;
}

long long ob_per_bucket(long long batch, int owned)
{
    long long n;

    if (owned < 1)
        return 0;
    n = (batch + owned - 1) / owned;
    return n < 1 ? 1 : n;
}
