/*
 * metrics.c - the metrics registry: families and their series, registration
 * and release, per-instance references that hide and show an instance's
 * series, updates of a series, and reports of misuse.  How families and
 * series are kept is described in metrics_int.h; metrics_text.c renders them.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "metrics.h"
#include "metrics_int.h"

#define SL_SERIES_TABLE_MIN 8

/* Kinds of misuse, each reported once per series or handle so that a bug on
 * a hot path does not flood the log. */
#define SL_WARN_TYPE 0x1
#define SL_WARN_NEGATIVE 0x2
#define SL_WARN_NAN 0x4
#define SL_WARN_NULL 0x8

struct sl_metric {
    sl_family *fam;
    char *instance;
    int held; /* counted in fam->insts */
    unsigned warned;
};

/* Label names parsed from a registration, before a family owns them. */
typedef struct {
    char *buf;
    char *names[SL_METRIC_MAX_LABELS];
    size_t n;
} label_list;

static sl_family *families;

/* Set once a NULL handle or series was reported. */
static int null_reported;

/* ------------------------------------------------------------ validation */

static int is_alpha_(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* */
static int valid_metric_name(const char *s)
{
    if (!is_alpha_(*s) && *s != ':')
        return 0;
    for (s++; *s != '\0'; s++) {
        if (!is_alpha_(*s) && !is_digit(*s) && *s != ':')
            return 0;
    }
    return 1;
}

/* [a-zA-Z_][a-zA-Z0-9_]* */
static int valid_label_name(const char *s)
{
    if (!is_alpha_(*s))
        return 0;
    for (s++; *s != '\0'; s++) {
        if (!is_alpha_(*s) && !is_digit(*s))
            return 0;
    }
    return 1;
}

/*
 * Splits a comma separated list of label names into `out`, trimming blanks
 * around each name.  NULL or a blank string means no labels.  Returns 0, or
 * -1 after logging why; out->buf is then already freed.
 */
static int parse_labels(const char *metric, sl_metric_type type, const char *labels,
                        label_list *out)
{
    char *p, *name, *end;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (labels == NULL || labels[strspn(labels, " \t")] == '\0')
        return 0;

    out->buf = strdup(labels);
    if (out->buf == NULL) {
        sl_log_core(SL_LOG_ERROR, "metrics", "%s: out of memory", metric);
        return -1;
    }

    for (p = out->buf; p != NULL;) {
        name = p + strspn(p, " \t");
        p = strchr(name, ',');
        if (p != NULL)
            *p++ = '\0';
        end = name + strlen(name);
        while (end > name && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        *end = '\0';

        if (*name == '\0') {
            sl_log_core(SL_LOG_ERROR, "metrics", "%s: empty label name in \"%s\"", metric, labels);
            goto fail;
        }
        if (!valid_label_name(name)) {
            sl_log_core(SL_LOG_ERROR, "metrics",
                        "%s: invalid label name \"%s\" (must match [a-zA-Z_][a-zA-Z0-9_]*)", metric,
                        name);
            goto fail;
        }
        if (name[0] == '_' && name[1] == '_') {
            sl_log_core(SL_LOG_ERROR, "metrics",
                        "%s: label name \"%s\" is reserved (starts with \"__\")", metric, name);
            goto fail;
        }
        if (strcmp(name, SL_INSTANCE_LABEL) == 0) {
            sl_log_core(SL_LOG_ERROR, "metrics",
                        "%s: label name \"" SL_INSTANCE_LABEL "\" is reserved for the instance",
                        metric);
            goto fail;
        }
        if (type == SL_METRIC_HISTOGRAM && strcmp(name, "le") == 0) {
            sl_log_core(SL_LOG_ERROR, "metrics", "%s: label name \"le\" is reserved in histograms",
                        metric);
            goto fail;
        }
        for (i = 0; i < out->n; i++) {
            if (strcmp(out->names[i], name) == 0) {
                sl_log_core(SL_LOG_ERROR, "metrics", "%s: duplicate label name \"%s\"", metric,
                            name);
                goto fail;
            }
        }
        if (out->n == SL_METRIC_MAX_LABELS) {
            sl_log_core(SL_LOG_ERROR, "metrics", "%s: more than %d label names", metric,
                        SL_METRIC_MAX_LABELS);
            goto fail;
        }
        out->names[out->n++] = name;
    }
    return 0;

fail:
    free(out->buf);
    out->buf = NULL;
    return -1;
}

/* Bounds must be finite and strictly ascending; +Inf is implied. */
static int check_bounds(const char *metric, const double *bounds, size_t nbounds)
{
    size_t i;

    if (nbounds > 0 && bounds == NULL) {
        sl_log_core(SL_LOG_ERROR, "metrics", "%s: %zu histogram bounds but no array", metric,
                    nbounds);
        return -1;
    }
    for (i = 0; i < nbounds; i++) {
        if (!isfinite(bounds[i])) {
            sl_log_core(SL_LOG_ERROR, "metrics",
                        "%s: histogram bound %zu is not finite (+Inf is implied)", metric, i);
            return -1;
        }
        if (i > 0 && !(bounds[i] > bounds[i - 1])) {
            sl_log_core(SL_LOG_ERROR, "metrics",
                        "%s: histogram bounds are not strictly ascending at %g", metric, bounds[i]);
            return -1;
        }
    }
    return 0;
}

/* Writes "a,b,c" into buf for log messages, truncating if needed. */
static const char *join_names(char *buf, size_t len, char *const *names, size_t n)
{
    size_t i, used = 0;
    int w;

    buf[0] = '\0';
    for (i = 0; i < n && used < len; i++) {
        w = snprintf(buf + used, len - used, "%s%s", i > 0 ? "," : "", names[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return buf;
}

/*
 * True when an existing family can be shared by a new registration; logs
 * the difference otherwise.  Help texts may differ: the first one stays.
 */
static int family_matches(const sl_family *f, sl_metric_type type, const label_list *ll,
                          const double *bounds, size_t nbounds)
{
    char have[256], want[256];
    size_t i;
    int same;

    if (f->type != type) {
        sl_log_core(SL_LOG_ERROR, "metrics", "%s: already registered as a %s, not a %s", f->name,
                    type_name(f->type), type_name(type));
        return 0;
    }

    same = f->nlabels == ll->n;
    for (i = 0; same && i < ll->n; i++)
        same = strcmp(f->labels[i], ll->names[i]) == 0;
    if (!same) {
        sl_log_core(SL_LOG_ERROR, "metrics", "%s: already registered with labels (%s), not (%s)",
                    f->name, join_names(have, sizeof(have), f->labels, f->nlabels),
                    join_names(want, sizeof(want), ll->names, ll->n));
        return 0;
    }

    same = f->nbounds == nbounds;
    for (i = 0; same && i < nbounds; i++)
        same = f->bounds[i] == bounds[i];
    if (!same) {
        sl_log_core(SL_LOG_ERROR, "metrics", "%s: already registered with other histogram bounds",
                    f->name);
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- series */

/* FNV-1a, terminators included so that ("ab","") and ("a","b") differ. */
static uint32_t hash_str(uint32_t h, const char *s)
{
    for (;; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
        if (*s == '\0')
            return h;
    }
}

static uint32_t series_hash(const char *instance, const char *const *values, size_t n)
{
    uint32_t h = 2166136261u;
    size_t i;

    h = hash_str(h, instance);
    for (i = 0; i < n; i++)
        h = hash_str(h, values[i]);
    return h;
}

static int series_is(const sl_series *s, const char *instance, const char *const *values, size_t n)
{
    const char *p = s->key;
    size_t i;

    if (strcmp(p, instance) != 0)
        return 0;
    for (i = 0; i < n; i++) {
        p += strlen(p) + 1;
        if (strcmp(p, values[i]) != 0)
            return 0;
    }
    return 1;
}

/* Doubles the hash table.  Failing to is harmless: chains just get longer. */
static void series_table_grow(sl_family *f)
{
    size_t size = f->table_size * 2, i;
    sl_series **table, *s, *next;

    table = calloc(size, sizeof(*table));
    if (table == NULL)
        return;
    for (i = 0; i < f->table_size; i++) {
        for (s = f->table[i]; s != NULL; s = next) {
            next = s->hnext;
            s->hnext = table[s->hash & (size - 1)];
            table[s->hash & (size - 1)] = s;
        }
    }
    free(f->table);
    f->table = table;
    f->table_size = size;
}

static void series_free(sl_series *s)
{
    free(s->buckets);
    free(s->key);
    free(s);
}

/* Returns the series for these values, creating it on first use; NULL only
 * when out of memory.  The values must already be checked for NULL. */
static sl_series *series_get(sl_family *f, const char *instance, const char *const *values)
{
    uint32_t h = series_hash(instance, values, f->nlabels);
    sl_series *s;
    size_t i, len, off, vlen;

    for (s = f->table[h & (f->table_size - 1)]; s != NULL; s = s->hnext) {
        if (s->hash == h && series_is(s, instance, values, f->nlabels))
            return s;
    }

    s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto oom;
    len = strlen(instance) + 1;
    for (i = 0; i < f->nlabels; i++)
        len += strlen(values[i]) + 1;
    s->key = malloc(len);
    if (s->key == NULL)
        goto oom;
    off = strlen(instance) + 1;
    memcpy(s->key, instance, off);
    for (i = 0; i < f->nlabels; i++) {
        vlen = strlen(values[i]) + 1;
        memcpy(s->key + off, values[i], vlen);
        off += vlen;
    }
    if (f->type == SL_METRIC_HISTOGRAM) {
        s->buckets = calloc(f->nbounds + 1, sizeof(*s->buckets));
        if (s->buckets == NULL)
            goto oom;
    }

    s->fam = f;
    s->hash = h;
    s->hnext = f->table[h & (f->table_size - 1)];
    f->table[h & (f->table_size - 1)] = s;
    if (f->last != NULL)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    if (++f->nseries > f->table_size)
        series_table_grow(f);
    return s;

oom:
    if (s != NULL)
        series_free(s);
    sl_log_core(SL_LOG_ERROR, "metrics", "%s: out of memory creating a series", f->name);
    return NULL;
}

static void series_misuse(sl_series *s, unsigned kind, const char *fmt, ...) SL_PRINTF(3, 4);

/* Logs a misuse of a series once per kind, naming the family. */
static void series_misuse(sl_series *s, unsigned kind, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    if (s->warned & kind)
        return;
    s->warned |= kind;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sl_log_core(SL_LOG_ERROR, "metrics", "%s: %s (reported once per series)", s->fam->name, msg);
}

static void null_misuse(const char *fn, const char *what)
{
    if (null_reported)
        return;
    null_reported = 1;
    sl_log_core(SL_LOG_ERROR, "metrics", "%s() called with a NULL %s, ignored (reported once)", fn,
                what);
}

/* -------------------------------------------------------------- families */

static void family_free(sl_family *f)
{
    sl_series *s, *next;

    for (s = f->first; s != NULL; s = next) {
        next = s->next;
        series_free(s);
    }
    for (size_t i = 0; i < f->ninsts; i++)
        free(f->insts[i].name);
    free(f->insts);
    free(f->table);
    free(f->bounds);
    free(f->label_buf);
    free(f->help);
    free(f->name);
    free(f);
}

static void set_instance_hidden(sl_family *f, const char *instance, int hidden)
{
    for (sl_series *s = f->first; s != NULL; s = s->next)
        if (strcmp(s->key, instance) == 0) /* the key starts with the instance */
            s->hidden = hidden;
}

static inst_ref *inst_find(sl_family *f, const char *instance)
{
    for (size_t i = 0; i < f->ninsts; i++)
        if (strcmp(f->insts[i].name, instance) == 0)
            return &f->insts[i];
    return NULL;
}

/* Counts a registration by `instance`; -1 when out of memory. */
static int inst_hold(sl_family *f, const char *instance)
{
    inst_ref *r = inst_find(f, instance);

    if (r == NULL) {
        if (f->ninsts == f->capinsts) {
            size_t cap = f->capinsts != 0 ? f->capinsts * 2 : 4;
            inst_ref *p = realloc(f->insts, cap * sizeof(*p));
            if (p == NULL)
                return -1;
            f->insts = p;
            f->capinsts = cap;
        }
        r = &f->insts[f->ninsts];
        r->name = strdup(instance);
        if (r->name == NULL)
            return -1;
        r->refs = 0;
        f->ninsts++;
    }
    if (r->refs++ == 0)
        set_instance_hidden(f, instance, 0);
    return 0;
}

static void inst_drop(sl_family *f, const char *instance)
{
    inst_ref *r = inst_find(f, instance);

    if (r != NULL && --r->refs == 0)
        set_instance_hidden(f, instance, 1);
}

/* Takes ownership of ll->buf, also on failure. */
static sl_family *family_new(sl_metric_type type, const char *name, const char *help,
                             label_list *ll, const double *bounds, size_t nbounds)
{
    sl_family *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        free(ll->buf);
        return NULL;
    }
    f->type = type;
    f->label_buf = ll->buf;
    memcpy(f->labels, ll->names, sizeof(f->labels));
    f->nlabels = ll->n;
    f->name = strdup(name);
    f->help = strdup(help);
    f->table_size = SL_SERIES_TABLE_MIN;
    f->table = calloc(f->table_size, sizeof(*f->table));
    if (nbounds > 0) {
        f->bounds = malloc(nbounds * sizeof(*f->bounds));
        if (f->bounds != NULL)
            memcpy(f->bounds, bounds, nbounds * sizeof(*f->bounds));
    }
    f->nbounds = nbounds;
    if (f->name == NULL || f->help == NULL || f->table == NULL ||
        (nbounds > 0 && f->bounds == NULL)) {
        family_free(f);
        return NULL;
    }
    return f;
}

sl_metric *sl_metric_register(sl_metric_type type, const char *name, const char *help,
                              const char *labels, const double *bounds, size_t nbounds,
                              const char *instance)
{
    label_list ll;
    sl_family **pos, *f;
    sl_metric *m;
    int ok;

    if (name == NULL || !valid_metric_name(name)) {
        sl_log_core(SL_LOG_ERROR, "metrics",
                    "invalid metric name \"%s\" (must match [a-zA-Z_:][a-zA-Z0-9_:]*)",
                    name != NULL ? name : "(null)");
        return NULL;
    }
    if (type != SL_METRIC_COUNTER && type != SL_METRIC_GAUGE && type != SL_METRIC_HISTOGRAM) {
        sl_log_core(SL_LOG_ERROR, "metrics", "%s: unknown metric type %d", name, (int)type);
        return NULL;
    }
    if (type == SL_METRIC_HISTOGRAM) {
        if (check_bounds(name, bounds, nbounds) != 0)
            return NULL;
    } else {
        /* Only histograms have bounds; do not let stray ones block sharing. */
        bounds = NULL;
        nbounds = 0;
    }
    if (parse_labels(name, type, labels, &ll) != 0)
        return NULL;

    /* The handle first, so that nothing below has to undo a registration. */
    m = calloc(1, sizeof(*m));
    if (m != NULL)
        m->instance = strdup(instance != NULL ? instance : "");
    if (m == NULL || m->instance == NULL) {
        sl_log_core(SL_LOG_ERROR, "metrics", "%s: out of memory", name);
        free(m);
        free(ll.buf);
        return NULL;
    }

    for (pos = &families; *pos != NULL && strcmp((*pos)->name, name) < 0; pos = &(*pos)->next)
        ;
    if (*pos != NULL && strcmp((*pos)->name, name) == 0) {
        f = *pos;
        ok = family_matches(f, type, &ll, bounds, nbounds);
        free(ll.buf);
        if (!ok) {
            free(m->instance);
            free(m);
            return NULL;
        }
    } else {
        f = family_new(type, name, help != NULL ? help : "", &ll, bounds, nbounds);
        if (f == NULL) {
            sl_log_core(SL_LOG_ERROR, "metrics", "%s: out of memory", name);
            free(m->instance);
            free(m);
            return NULL;
        }
        f->next = *pos;
        *pos = f;
    }
    f->refs++;
    m->fam = f;
    if (inst_hold(f, m->instance) != 0) {
        sl_log_core(SL_LOG_ERROR, "metrics", "%s: out of memory", name);
        m->held = 0;
        sl_metric_release(m);
        return NULL;
    }
    m->held = 1;

    /* A family without labels has exactly one series per instance: create
     * it now so that it is exposed (as 0) before its first update. */
    if (f->nlabels == 0 && series_get(f, m->instance, NULL) == NULL) {
        sl_metric_release(m);
        return NULL;
    }
    return m;
}

void sl_metric_release(sl_metric *m)
{
    sl_family **pos;

    if (m == NULL)
        return;
    if (m->held)
        inst_drop(m->fam, m->instance);
    if (--m->fam->refs == 0) {
        for (pos = &families; *pos != m->fam; pos = &(*pos)->next)
            ;
        *pos = m->fam->next;
        family_free(m->fam);
    }
    free(m->instance);
    free(m);
}

size_t sl_metrics_family_count(void)
{
    size_t n = 0;
    const sl_family *f;

    for (f = families; f != NULL; f = f->next)
        n++;
    return n;
}

const sl_family *metrics_families(void)
{
    return families;
}

/* ------------------------------------------------------------ public API */

SL_API sl_series *sl_series_ofv(sl_metric *m, const char *const *values)
{
    size_t i;

    if (m == NULL) {
        null_misuse("sl_series_of", "metric");
        return NULL;
    }
    for (i = 0; i < m->fam->nlabels; i++) {
        if (values == NULL || values[i] == NULL) {
            if (!(m->warned & SL_WARN_NULL)) {
                m->warned |= SL_WARN_NULL;
                sl_log_core(SL_LOG_ERROR, "metrics",
                            "%s: NULL value for label \"%s\", no series (reported once)",
                            m->fam->name, m->fam->labels[i]);
            }
            return NULL;
        }
    }
    return series_get(m->fam, m->instance, values);
}

/* Takes exactly one const char * per label name: the count comes from the
 * family, so a caller passing fewer reads garbage like any printf misuse. */
SL_API sl_series *sl_series_of(sl_metric *m, ...)
{
    const char *values[SL_METRIC_MAX_LABELS];
    va_list ap;
    size_t i;

    if (m == NULL) {
        null_misuse("sl_series_of", "metric");
        return NULL;
    }
    va_start(ap, m);
    for (i = 0; i < m->fam->nlabels; i++)
        values[i] = va_arg(ap, const char *);
    va_end(ap);
    return sl_series_ofv(m, values);
}

/* Counters take non-negative increments; gauges take any. */
SL_API void sl_series_add(sl_series *s, double v)
{
    if (s == NULL) {
        null_misuse("sl_series_add", "series");
        return;
    }
    switch (s->fam->type) {
    case SL_METRIC_COUNTER:
        if (!(v >= 0)) {
            series_misuse(s, SL_WARN_NEGATIVE, "counter increment %g ignored: counters only go up",
                          v);
            return;
        }
        s->value += v;
        return;
    case SL_METRIC_GAUGE:
        s->value += v;
        s->retired = 0;
        return;
    case SL_METRIC_HISTOGRAM:
        series_misuse(s, SL_WARN_TYPE, "sl_series_add() on a histogram ignored");
        return;
    }
}

SL_API void sl_series_set(sl_series *s, double v)
{
    if (s == NULL) {
        null_misuse("sl_series_set", "series");
        return;
    }
    if (s->fam->type != SL_METRIC_GAUGE) {
        series_misuse(s, SL_WARN_TYPE, "sl_series_set() on a %s ignored", type_name(s->fam->type));
        return;
    }
    s->value = v;
    s->retired = 0;
}

void sl_series_retire(sl_series *s)
{
    if (s != NULL && s->fam->type == SL_METRIC_GAUGE)
        s->retired = 1;
}

/* NaN observations are dropped: one would make the sum NaN for good. */
SL_API void sl_series_observe(sl_series *s, double v)
{
    const sl_family *f;
    size_t lo, hi, mid;

    if (s == NULL) {
        null_misuse("sl_series_observe", "series");
        return;
    }
    f = s->fam;
    if (f->type != SL_METRIC_HISTOGRAM) {
        series_misuse(s, SL_WARN_TYPE, "sl_series_observe() on a %s ignored", type_name(f->type));
        return;
    }
    if (isnan(v)) {
        series_misuse(s, SL_WARN_NAN, "NaN observation ignored");
        return;
    }

    /* The first bucket whose upper bound is >= v; nbounds is +Inf. */
    lo = 0;
    hi = f->nbounds;
    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (v <= f->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    s->buckets[lo]++;
    s->count++;
    s->value += v;
}
