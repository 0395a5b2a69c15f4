/*
 * history.h - the last minutes of the metrics registry, sampled on a timer
 * for the status page: one ring of values per counter or gauge family.
 *
 * A sample reads the registry the way Prometheus does, through its text
 * exposition, and keeps per family the sum over its series: the page shows
 * how a module is doing, not every label combination.
 */
#ifndef SL_METRICS_HISTORY_H
#define SL_METRICS_HISTORY_H

#include <stddef.h>

typedef struct cJSON cJSON;

enum { HIST_COUNTER, HIST_GAUGE };

typedef struct {
    char *name;
    int kind;       /* HIST_COUNTER or HIST_GAUGE */
    double *values; /* ring of `cap` sums; NaN where the family was absent */
} hist_family;

typedef struct {
    size_t cap;   /* samples kept */
    size_t count; /* samples taken, at most cap */
    size_t head;  /* index of the next sample */
    double *mono; /* monotonic time of each sample, for rates */
    double *wall; /* wall-clock time of each sample, for the axis */
    hist_family *fams;
    size_t nfams;
} history;

/* Families beyond this many are not sampled (the page stays small). */
#define HIST_MAX_FAMILIES 256

/* 0, or -1 when out of memory.  `cap` >= 2. */
int history_init(history *h, size_t cap);
void history_free(history *h);

/* Adds one sample parsed from Prometheus text `text` (`len` bytes) taken
 * at `mono`/`wall` seconds.  Returns -1 when out of memory (the sample is
 * then partly recorded, never inconsistent). */
int history_sample(history *h, const char *text, size_t len, double mono, double wall);

/* Adds to `out` "t": [wall times, oldest first] and "series": one object
 * {"name","kind":"rate"|"gauge","values":[...]} per family, counters as
 * per-second rates between samples (null where unknown). */
int history_json(const history *h, cJSON *out);

#endif
