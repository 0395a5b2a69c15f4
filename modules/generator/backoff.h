/*
 * backoff.h - the retry schedule of the sync strategy: exponential from a
 * base delay, capped, for a bounded number of attempts.
 */
#ifndef GEN_BACKOFF_H
#define GEN_BACKOFF_H

typedef struct {
    int attempts; /* attempts in all, the first included (>= 1) */
    double base;  /* delay after the first failure, seconds */
    double cap;   /* no delay is longer */
} gen_backoff;

/*
 * After attempt `failed` (1-based) failed: the delay before the next one,
 * base * 2^(failed-1) capped at `cap`, or a negative value when that was
 * the last attempt allowed.
 */
double gen_backoff_delay(const gen_backoff *b, int failed);

#endif
