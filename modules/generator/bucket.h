/*
 * bucket.h - rate control: a token bucket that also says when each token
 * was due, so send latency can be measured from the intended send time
 * (a stalled generator then shows up as latency, not as a quiet gap:
 * no coordinated omission).
 *
 * Tokens accrue at `rate` per second up to `capacity`; what would overflow
 * the capacity is counted in `missed` (slots the schedule wanted but the
 * generator was too far behind to fill).
 */
#ifndef GEN_BUCKET_H
#define GEN_BUCKET_H

#include <stdint.h>

typedef struct {
    double rate;     /* tokens per second, >= 0 */
    double capacity; /* >= 1 */
    double tokens;
    double last;   /* when tokens were last brought up to date */
    double missed; /* tokens discarded at the capacity, as a fraction too */
} gen_bucket;

void gen_bucket_init(gen_bucket *b, double rate, double capacity, double now);
/* Changes the rate from now on: what accrued so far counts at the old one. */
void gen_bucket_set_rate(gen_bucket *b, double rate, double now);
/* Brings the tokens up to `now`. */
void gen_bucket_refill(gen_bucket *b, double now);
/*
 * Takes up to `max` whole tokens at `now`; returns how many.  `*first` is
 * when the first of them was due and `*step` the spacing of the others
 * (token i was due at first + i * step).
 */
uint64_t gen_bucket_take(gen_bucket *b, double now, uint64_t max, double *first, double *step);
/* Seconds until the next whole token at the current rate (0 when one is
 * there, a large value when the rate is 0). */
double gen_bucket_wait(const gen_bucket *b, double now);

#endif
