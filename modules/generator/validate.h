/*
 * validate.h - checks of what users hand the generator: the control API's
 * query values and the weight lists of its options.  Each failure writes a
 * message saying what is allowed, fit for a 400 answer or a start failure.
 */
#ifndef GEN_VALIDATE_H
#define GEN_VALIDATE_H

#include <stddef.h>

typedef enum { GEN_MODE_REGULAR, GEN_MODE_PEAK, GEN_MODE_NIGHT, GEN_NMODES } gen_mode;

#define GEN_MODE_CHOICES "regular|peak|night"

const char *gen_mode_name(gen_mode m);

/* `eps` of POST config/speed: a finite number from 0 to `max` (0 pauses).
 * 0 or -1. */
int gen_parse_eps(const char *s, double max, double *out, char *why, size_t whylen);
/* `mode` of POST config/mode.  0 or -1. */
int gen_parse_mode(const char *s, gen_mode *out, char *why, size_t whylen);
/* `count` of POST generate/burst: an integer from 1 to `max`.  0 or -1. */
int gen_parse_count(const char *s, long long max, long long *out, char *why, size_t whylen);
/* A weight list option: exactly `n` numbers >= 0, not all 0, named in
 * `names` (comma separated) for the message, which leaves naming the
 * option to the caller.  0 or -1. */
int gen_parse_weights(const char *const *items, size_t nitems, size_t n, const char *names,
                      double *out, char *why, size_t whylen);

#endif
