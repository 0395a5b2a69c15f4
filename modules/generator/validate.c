/*
 * validate.c - input checks with messages that say what is allowed.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "validate.h"

static const char *const mode_names[GEN_NMODES] = { "regular", "peak", "night" };

const char *gen_mode_name(gen_mode m)
{
    return (unsigned)m < GEN_NMODES ? mode_names[m] : "unknown";
}

/* strtod over the whole string, no leading space, no hex or inf/nan. */
static int parse_number(const char *s, double *out)
{
    char *end;

    if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
        return -1;
    for (const char *p = s; *p != '\0'; p++)
        if (!isdigit((unsigned char)*p) && *p != '.' && *p != '-' && *p != '+' && *p != 'e' &&
            *p != 'E')
            return -1;
    errno = 0;
    *out = strtod(s, &end);
    if (*end != '\0' || errno != 0 || !isfinite(*out))
        return -1;
    return 0;
}

int gen_parse_eps(const char *s, double max, double *out, char *why, size_t whylen)
{
    double v;

    if (parse_number(s, &v) != 0 || v < 0 || v > max) {
        snprintf(why, whylen,
                 "eps must be a number from 0 to %.0f (events per second; 0 pauses until "
                 "the mode is set again), got \"%s\"",
                 max, s != NULL ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int gen_parse_mode(const char *s, gen_mode *out, char *why, size_t whylen)
{
    for (int i = 0; s != NULL && i < GEN_NMODES; i++) {
        if (strcmp(s, mode_names[i]) == 0) {
            *out = (gen_mode)i;
            return 0;
        }
    }
    snprintf(why, whylen, "mode must be one of regular, peak, night, got \"%s\"",
             s != NULL ? s : "");
    return -1;
}

int gen_parse_count(const char *s, long long max, long long *out, char *why, size_t whylen)
{
    char *end = NULL;
    long long v = 0;
    int ok = s != NULL && isdigit((unsigned char)*s);

    if (ok) {
        errno = 0;
        v = strtoll(s, &end, 10);
        ok = *end == '\0' && errno == 0 && v >= 1 && v <= max;
    }
    if (!ok) {
        snprintf(why, whylen, "count must be an integer from 1 to %lld (burst_max), got \"%s\"",
                 max, s != NULL ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int gen_parse_weights(const char *const *items, size_t nitems, size_t n, const char *names,
                      double *out, char *why, size_t whylen)
{
    double total = 0;

    if (nitems != n)
        goto bad;
    for (size_t i = 0; i < n; i++) {
        if (parse_number(items[i], &out[i]) != 0 || out[i] < 0)
            goto bad;
        total += out[i];
    }
    if (total > 0)
        return 0;
bad:
    snprintf(why, whylen, "must be %zu numbers >= 0, not all 0, the weights of %s", n, names);
    return -1;
}
