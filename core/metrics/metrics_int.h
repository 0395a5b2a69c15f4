/*
 * metrics_int.h - what metrics.c (the registry) and metrics_text.c (its
 * Prometheus text exposition) share; nothing else includes it.
 *
 * Families live in one list kept sorted by name: registration and rendering
 * are rare, and rendering wants that order anyway.  A family owns its
 * series.  A series is found by (instance name, label values) through a
 * chained hash table per family, so sl_series_of() costs one hash over the
 * values and usually one comparison, with no allocation once the series
 * exists; a second list keeps the creation order for rendering.  Series are
 * never freed before their family goes, which is what lets callers cache
 * the pointers.  But once the last registration of an instance name is
 * released (the instance stopped, or a reload removed it) that instance's
 * series are no longer exposed: a gauge such as a lag must not stay frozen
 * at its last value for an instance that is gone.  They are exposed again,
 * values kept, if the same instance name registers again (a reload that
 * replaced the instance).
 */
#ifndef SL_METRICS_INT_H
#define SL_METRICS_INT_H

#include <stddef.h>
#include <stdint.h>
#include "metrics.h"

/* Bounds the stack array sl_series_of() collects its arguments into. */
#define SL_METRIC_MAX_LABELS 16
#define SL_INSTANCE_LABEL "instance_name"

typedef struct sl_family sl_family;

struct sl_series {
    sl_family *fam;
    sl_series *next;  /* creation order */
    sl_series *hnext; /* hash chain */
    uint32_t hash;
    unsigned warned;
    /* The instance name, then one value per label, each NUL-terminated. */
    char *key;
    double value;      /* counter or gauge value; histogram sum */
    uint64_t count;    /* histogram observations */
    uint64_t *buckets; /* histogram: nbounds + 1 plain (not cumulative) counts */
    int hidden;        /* its instance holds no registration of the family */
    int retired;       /* a gauge whose subject is gone, until its next update */
};

/* How many live registrations of a family an instance name holds. */
typedef struct {
    char *name;
    size_t refs;
} inst_ref;

struct sl_family {
    sl_family *next;
    char *name;
    char *help;
    sl_metric_type type;
    size_t refs;
    char *label_buf; /* the storage labels[] point into */
    char *labels[SL_METRIC_MAX_LABELS];
    size_t nlabels;
    double *bounds;
    size_t nbounds;
    sl_series *first;
    sl_series *last;
    sl_series **table; /* table_size is a power of two */
    size_t table_size;
    size_t nseries;
    inst_ref *insts; /* every instance name seen, refs 0 included */
    size_t ninsts;
    size_t capinsts;
};

static inline const char *type_name(sl_metric_type type)
{
    switch (type) {
    case SL_METRIC_COUNTER:
        return "counter";
    case SL_METRIC_GAUGE:
        return "gauge";
    case SL_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "unknown";
}

/* The registered families, sorted by name: the head of their list. */
const sl_family *metrics_families(void);

#endif
