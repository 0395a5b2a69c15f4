/*
 * ratelimit.h - request rate limits per caller (a token's name, or the
 * client address when no token is used), as token buckets.
 *
 * Callers are hashed into a fixed table of SL_RATE_BUCKETS buckets, so the
 * memory is bounded whatever the number of clients; two callers that hash
 * to the same bucket share its allowance (with 4096 buckets, rarely).
 * Pure logic: the time is an argument.
 */
#ifndef SL_RATELIMIT_H
#define SL_RATELIMIT_H

#define SL_RATE_BUCKETS 4096

typedef struct {
    double tokens;
    double at; /* when `tokens` was computed */
} sl_rate_bucket;

typedef struct {
    double rate;  /* requests per second refilled; 0 = no limit */
    double burst; /* most requests at once */
    sl_rate_bucket b[SL_RATE_BUCKETS];
} sl_rate;

/* Sets the limit; buckets refill to the new burst. */
void sl_rate_configure(sl_rate *r, double rate, double burst);

/* Takes one request from `key`'s allowance at time `now`.  Returns 0 when
 * allowed, else the whole seconds (at least 1) after which it would be
 * (for Retry-After). */
long sl_rate_take(sl_rate *r, const char *key, double now);

#endif
