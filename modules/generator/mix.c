/*
 * mix.c - the event mix.
 */
#include "mix.h"

static const char *const class_names[GEN_NCLASSES] = {
    "view",       "bounce",      "duplicate",         "missing_field",
    "wrong_type", "broken_json", "negative_duration", "bad_timestamp",
};

const char *gen_class_name(gen_class c)
{
    return (unsigned)c < GEN_NCLASSES ? class_names[c] : "unknown";
}

int gen_class_malformed(gen_class c)
{
    return c >= GEN_MISSING_FIELD && c < GEN_NCLASSES;
}

int gen_mix_init(gen_mix *m, const double type_weights[3], const double kind_weights[GEN_NKINDS],
                 double duplicates)
{
    m->kinds.cum = NULL;
    m->kinds.n = 0;
    if (!(duplicates >= 0 && duplicates < 1) || gen_cdf_init(&m->types, type_weights, 3) != 0)
        return -1;
    if (gen_cdf_init(&m->kinds, kind_weights, GEN_NKINDS) != 0) {
        gen_cdf_free(&m->types);
        return -1;
    }
    m->duplicates = duplicates;
    return 0;
}

gen_class gen_mix_draw(const gen_mix *m, gen_rng *r, int can_duplicate)
{
    size_t type;

    if (m->duplicates > 0 && gen_rng_unit(r) < m->duplicates && can_duplicate)
        return GEN_DUPLICATE;
    type = gen_cdf_pick(&m->types, r);
    if (type == 0)
        return GEN_VIEW;
    if (type == 1)
        return GEN_BOUNCE;
    return (gen_class)(GEN_MISSING_FIELD + gen_cdf_pick(&m->kinds, r));
}

void gen_mix_free(gen_mix *m)
{
    gen_cdf_free(&m->types);
    gen_cdf_free(&m->kinds);
}
