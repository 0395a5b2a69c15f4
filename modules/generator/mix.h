/*
 * mix.h - what kind of event comes next: a view, a bounce, a duplicate of
 * an earlier event, or one of several malformed shapes a consumer must
 * reject.  Each class is counted on its own in the status and metrics.
 */
#ifndef GEN_MIX_H
#define GEN_MIX_H

#include "cdf.h"
#include "prng.h"

typedef enum {
    GEN_VIEW,
    GEN_BOUNCE,
    GEN_DUPLICATE,
    /* the malformed kinds, in the order of the malformed_kinds option */
    GEN_MISSING_FIELD,
    GEN_WRONG_TYPE,
    GEN_BROKEN_JSON,
    GEN_NEGATIVE_DURATION,
    GEN_BAD_TIMESTAMP,
    GEN_NCLASSES
} gen_class;

#define GEN_NKINDS (GEN_NCLASSES - GEN_MISSING_FIELD)

typedef struct {
    gen_cdf types; /* view, bounce, malformed */
    gen_cdf kinds; /* one of GEN_NKINDS, given malformed */
    double duplicates;
} gen_mix;

/* "view", "bounce", "duplicate", "missing_field", ... */
const char *gen_class_name(gen_class c);
int gen_class_malformed(gen_class c);

/* 0, or -1 when the weights are unusable (negative, all 0) or
 * `duplicates` is outside [0, 1). */
int gen_mix_init(gen_mix *m, const double type_weights[3], const double kind_weights[GEN_NKINDS],
                 double duplicates);
/* A duplicate is drawn first with its own probability, and only when there
 * is an earlier event to repeat; otherwise the type, then the kind. */
gen_class gen_mix_draw(const gen_mix *m, gen_rng *r, int can_duplicate);
void gen_mix_free(gen_mix *m);

#endif
