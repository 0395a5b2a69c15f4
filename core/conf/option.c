/*
 * option.c - validation of a config section against declared options.
 *
 * Every key of the section is matched to a declaration first (reporting
 * unknown keys), then the declarations are walked in table order to build
 * the result, so the set lists options in the order the module declared
 * them, whatever order the file used.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "option.h"

/* Suggestions for unknown keys go no further than this many edits. */
#define MAX_SUGGEST_DISTANCE 2

typedef struct {
    const sl_option *const *tables;
    size_t ntables;
    const sl_conf_section *sec;
    const char *file;
    sl_errors *errs;
    sl_optset *out;
    size_t cap; /* capacity of out->v */
    int oom;
} validator;

/* Results of convert(). */
#define CONV_OK 0
#define CONV_BAD -1
#define CONV_OOM -2

/* -------------------------------------------------------------- helpers */

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_blank(int c)
{
    return c == ' ' || c == '\t';
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *dup_s(const char *s)
{
    return dup_n(s, strlen(s));
}

/* A name such as "rdkafka.*" declares a prefix; returns the length of the
 * part before the '*' ("rdkafka."), or 0 for an ordinary option. */
static size_t prefix_len(const sl_option *o)
{
    size_t n = strlen(o->name);

    if (n >= 2 && o->name[n - 2] == '.' && o->name[n - 1] == '*')
        return n - 1;
    return 0;
}

/* The declaration `key` belongs to: an ordinary option of that exact name
 * first, else the first prefix option it extends; NULL when unknown. */
static const sl_option *find_decl(const validator *v, const char *key)
{
    const sl_option *o;
    size_t t, plen;

    for (t = 0; t < v->ntables; t++)
        for (o = v->tables[t]; o->name; o++)
            if (prefix_len(o) == 0 && strcmp(o->name, key) == 0)
                return o;
    for (t = 0; t < v->ntables; t++)
        for (o = v->tables[t]; o->name; o++) {
            plen = prefix_len(o);
            if (plen > 0 && strncmp(o->name, key, plen) == 0 && key[plen] != '\0')
                return o;
        }
    return NULL;
}

/* "[name arg \"instance\"]" for messages (option.h). */
char *sl_section_label(const sl_conf_section *sec)
{
    const char *arg = sec->arg ? sec->arg : "";
    const char *inst = sec->instance ? sec->instance : "";
    size_t n = strlen(sec->name) + strlen(arg) + strlen(inst) + 8;
    char *s = malloc(n);

    if (s == NULL)
        return NULL;
    snprintf(s, n, "[%s%s%s%s%s%s]", sec->name, arg[0] ? " " : "", arg, inst[0] ? " \"" : "", inst,
             inst[0] ? "\"" : "");
    return s;
}

/* ---------------------------------------------------------- conversion */

/* Strict decimal integer: optional sign, digits, nothing else. */
static int parse_int(const char *s, long long *out)
{
    const char *d = (*s == '-' || *s == '+') ? s + 1 : s;
    char *end;
    long long x;

    if (!is_digit(*d))
        return -1;
    errno = 0;
    x = strtoll(s, &end, 10);
    if (errno == ERANGE || *end != '\0')
        return -1;
    *out = x;
    return 0;
}

/* A finite decimal number such as "-1.5e3".  The characters are checked
 * first because strtod() also skips blanks and reads hex, "inf" and "nan". */
static int parse_double(const char *s, double *out)
{
    char *end;
    double x;

    if (*s == '\0' || s[strspn(s, "0123456789+-.eE")] != '\0')
        return -1;
    x = strtod(s, &end);
    if (*end != '\0' || !isfinite(x))
        return -1;
    *out = x;
    return 0;
}

static int parse_bool(const char *s, long long *out)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    size_t i;

    for (i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Index of `s` among the '|' separated `choices`, or -1. */
static long long enum_index(const char *choices, const char *s)
{
    size_t n = strlen(s);
    long long i = 0;
    const char *p = choices;

    for (;;) {
        size_t len = strcspn(p, "|");

        if (len == n && strncmp(p, s, n) == 0)
            return i;
        if (p[len] == '\0')
            return -1;
        p += len + 1;
        i++;
    }
}

/* Splits a comma separated list into trimmed, non-empty elements. */
static int parse_list(const char *s, sl_optval *val)
{
    size_t max = 1, n = 0;
    const char *p;

    for (p = s; *p; p++)
        if (*p == ',')
            max++;
    val->list = calloc(max, sizeof *val->list);
    if (val->list == NULL)
        return CONV_OOM;

    for (p = s;;) {
        size_t len = strcspn(p, ",");
        const char *a = p, *b = p + len;

        while (a < b && is_blank(*a))
            a++;
        while (b > a && is_blank(b[-1]))
            b--;
        if (b > a) {
            val->list[n] = dup_n(a, (size_t)(b - a));
            if (val->list[n] == NULL)
                return CONV_OOM; /* the caller frees what was made */
            val->nlist = ++n;
        }
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    return CONV_OK;
}

static int in_bounds(const sl_option *o, double x)
{
    return !(o->min < o->max) || (x >= o->min && x <= o->max);
}

/* Converts `text` to the option's type into `val` (raw and key are the
 * caller's business).  Returns CONV_OK, CONV_BAD or CONV_OOM. */
static int convert(const sl_option *o, const char *text, sl_optval *val)
{
    long long i;
    double d;

    if (prefix_len(o) > 0)
        return CONV_OK; /* pass-through keys are plain strings */

    switch (o->type) {
    case SL_OPT_STRING:
        return CONV_OK;
    case SL_OPT_INT:
        if (parse_int(text, &i) < 0 || !in_bounds(o, (double)i))
            return CONV_BAD;
        val->i = i;
        val->d = (double)i;
        return CONV_OK;
    case SL_OPT_DOUBLE:
        if (parse_double(text, &d) < 0 || !in_bounds(o, d))
            return CONV_BAD;
        val->d = d;
        return CONV_OK;
    case SL_OPT_BOOL:
        if (parse_bool(text, &i) < 0)
            return CONV_BAD;
        val->i = i;
        val->d = (double)i;
        return CONV_OK;
    case SL_OPT_ENUM:
        if (o->choices == NULL || (i = enum_index(o->choices, text)) < 0)
            return CONV_BAD;
        val->i = i;
        return CONV_OK;
    case SL_OPT_DURATION:
        if (sl_parse_duration(text, &d) < 0 || !in_bounds(o, d))
            return CONV_BAD;
        val->d = d;
        return CONV_OK;
    case SL_OPT_LIST:
        return parse_list(text, val);
    }
    return CONV_BAD; /* a type this code does not know */
}

/* What the option accepts, as the middle of "option 'x' ..., got 'y'".
 * An enum's choices are appended by the caller, being of any length. */
static void describe(const sl_option *o, char *buf, size_t size)
{
    int bounded = o->min < o->max;

    switch (o->type) {
    case SL_OPT_INT:
        if (bounded)
            snprintf(buf, size, "must be an integer between %.15g and %.15g", o->min, o->max);
        else
            snprintf(buf, size, "must be a 64-bit integer");
        break;
    case SL_OPT_DOUBLE:
        if (bounded)
            snprintf(buf, size, "must be a number between %.15g and %.15g", o->min, o->max);
        else
            snprintf(buf, size, "must be a finite number");
        break;
    case SL_OPT_BOOL:
        snprintf(buf, size, "must be a boolean (true/false, yes/no, on/off, 1/0)");
        break;
    case SL_OPT_ENUM:
        snprintf(buf, size, o->choices ? "must be one of " : "has no choices declared");
        break;
    case SL_OPT_DURATION:
        if (bounded)
            snprintf(buf, size,
                     "must be a duration between %.15gs and %.15gs "
                     "(such as 250ms, 10s, 5m, 1h)",
                     o->min, o->max);
        else
            snprintf(buf, size,
                     "must be a duration such as 250ms, 10s, 5m, 1h or "
                     "plain seconds");
        break;
    default:
        snprintf(buf, size, "has an unknown type %d", (int)o->type);
        break;
    }
}

/* ------------------------------------------------------------- building */

static void optval_free(sl_optval *val)
{
    size_t i;

    for (i = 0; i < val->nlist; i++)
        free(val->list[i]);
    free(val->list);
    free(val->key);
    free(val->raw);
}

/* Reports a value the option does not accept.  A bad default is the
 * module's fault rather than the file's, so it carries no place. */
static void report_bad(validator *v, const sl_option *o, const char *key, const char *raw, int line,
                       int is_default)
{
    const char *choices = o->type == SL_OPT_ENUM && o->choices ? o->choices : "";
    char what[160];

    describe(o, what, sizeof what);
    if (!is_default)
        sl_errors_add(v->errs, v->file, line, "option '%s' %s%s, got '%s'", key, what, choices,
                      raw);
    else
        sl_errors_add(v->errs, NULL, 0, "option '%s' has an invalid default: %s%s, got '%s'", key,
                      what, choices, raw);
}

/* Checks a default that the configured value overrides: a bad one is a
 * bug to report on every run, not only once someone removes the key. */
static void check_default(validator *v, const sl_option *o)
{
    sl_optval val = { 0 };
    int rc = convert(o, o->def, &val);

    if (rc == CONV_BAD)
        report_bad(v, o, o->name, o->def, 0, 1);
    else if (rc == CONV_OOM)
        v->oom = 1;
    optval_free(&val);
}

/* Converts and appends one value; a default is added with line 0. */
static void add_value(validator *v, const sl_option *o, const char *key, const char *raw, int line,
                      int is_default)
{
    sl_optval val = { 0 };
    int rc;

    val.decl = o;
    val.line = line;
    rc = convert(o, raw, &val);
    if (rc == CONV_BAD) {
        report_bad(v, o, key, raw, line, is_default);
        optval_free(&val);
        return;
    }
    if (rc == CONV_OOM)
        goto oom;

    val.key = dup_s(key);
    val.raw = dup_s(raw);
    if (val.key == NULL || val.raw == NULL)
        goto oom;
    if (v->out->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        sl_optval *nv = realloc(v->out->v, cap * sizeof *nv);

        if (nv == NULL)
            goto oom;
        v->out->v = nv;
        v->cap = cap;
    }
    v->out->v[v->out->n++] = val;
    return;

oom:
    optval_free(&val);
    v->oom = 1;
}

/* ---------------------------------------------------------- suggestions */

/*
 * Levenshtein distance, ignoring case, between a[0..an) and b[0..bn).
 * Anything beyond MAX_SUGGEST_DISTANCE is only reported as "too far".
 */
static size_t distance(const char *a, size_t an, const char *b, size_t bn)
{
    size_t *prev, *cur, *tmp, i, j, d;

    if ((an > bn ? an - bn : bn - an) > MAX_SUGGEST_DISTANCE)
        return MAX_SUGGEST_DISTANCE + 1;
    prev = malloc((bn + 1) * sizeof *prev);
    cur = malloc((bn + 1) * sizeof *cur);
    if (prev == NULL || cur == NULL) {
        /* Only a hint is lost. */
        free(prev);
        free(cur);
        return MAX_SUGGEST_DISTANCE + 1;
    }
    for (j = 0; j <= bn; j++)
        prev[j] = j;
    for (i = 1; i <= an; i++) {
        cur[0] = i;
        for (j = 1; j <= bn; j++) {
            size_t sub = prev[j - 1] + (lower(a[i - 1]) != lower(b[j - 1]));
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;

            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        tmp = prev;
        prev = cur;
        cur = tmp;
    }
    d = prev[bn];
    free(prev);
    free(cur);
    return d;
}

/*
 * The declared name closest to an unknown `key`, or NULL (the caller frees
 * it).  For a prefix option the first part of the key is compared with the
 * prefix, so "rdkafak.acks" suggests "rdkafka.acks".
 */
static char *suggest(const validator *v, const char *key)
{
    const sl_option *o;
    size_t t, kn = strlen(key), best = MAX_SUGGEST_DISTANCE + 1, d;
    const char *dot;
    char *s = NULL, *c;

    for (t = 0; t < v->ntables; t++) {
        for (o = v->tables[t]; o->name; o++) {
            size_t plen = prefix_len(o);

            if (plen == 0) {
                size_t on = strlen(o->name);

                d = distance(key, kn, o->name, on);
                if (d == 0)
                    d = 1; /* differs only in case */
                if (d < best && d < on) {
                    c = dup_s(o->name);
                    if (c == NULL)
                        continue;
                    free(s);
                    s = c;
                    best = d;
                }
                continue;
            }
            for (dot = strchr(key, '.'); dot && dot[1]; dot = strchr(dot + 1, '.')) {
                size_t seg = (size_t)(dot - key) + 1;

                d = distance(key, seg, o->name, plen);
                if (d == 0)
                    d = 1; /* differs only in case */
                if (d >= best || d >= plen)
                    continue;
                c = malloc(plen + strlen(dot + 1) + 1);
                if (c == NULL)
                    continue;
                memcpy(c, o->name, plen);
                strcpy(c + plen, dot + 1);
                free(s);
                s = c;
                best = d;
            }
        }
    }
    return s;
}

static void report_unknown(validator *v, const sl_conf_entry *e)
{
    char *label = sl_section_label(v->sec);
    char *hint = suggest(v, e->key);

    if (label == NULL) {
        v->oom = 1;
    } else if (hint) {
        sl_errors_add(v->errs, v->file, e->line, "unknown option '%s' in %s, did you mean '%s'?",
                      e->key, label, hint);
    } else {
        sl_errors_add(v->errs, v->file, e->line, "unknown option '%s' in %s", e->key, label);
    }
    free(label);
    free(hint);
}

/* ------------------------------------------------------------------ API */

/* 1 when an option named like `o` (in table `t`) is declared before it. */
static int declared_before(const validator *v, size_t t, const sl_option *o)
{
    const sl_option *p;
    size_t u;

    for (u = 0; u <= t; u++)
        for (p = v->tables[u]; p->name && p != o; p++)
            if (strcmp(p->name, o->name) == 0)
                return 1;
    return 0;
}

/* Declaration mistakes are the module author's: reported without a place. */
static void check_tables(validator *v)
{
    const sl_option *o;
    size_t t;

    for (t = 0; t < v->ntables; t++) {
        for (o = v->tables[t]; o->name; o++) {
            if (o->type == SL_OPT_ENUM && o->choices == NULL && prefix_len(o) == 0)
                sl_errors_add(v->errs, NULL, 0, "option '%s' is an enum without choices", o->name);
            if (declared_before(v, t, o))
                sl_errors_add(v->errs, NULL, 0, "option '%s' is declared twice", o->name);
        }
    }
}

int sl_options_validate(const sl_option *const *tables, size_t ntables, const sl_conf_section *sec,
                        const char *file, sl_optset *out, sl_errors *errs)
{
    validator v = { tables, ntables, sec, file, errs, out, 0, 0 };
    const sl_option **match = NULL;
    const sl_option *o;
    size_t n0 = errs->n, nent = sec ? sec->n : 0, i, j, t;

    out->v = NULL;
    out->n = 0;
    check_tables(&v);

    if (nent > 0) {
        match = calloc(nent, sizeof *match);
        if (match == NULL) {
            sl_errors_add(errs, file, sec->line, "out of memory");
            return -1;
        }
    }
    for (i = 0; i < nent; i++) {
        const sl_conf_entry *e = &sec->entries[i];

        /* The parser refuses duplicates; a section built elsewhere may not. */
        for (j = 0; j < i; j++)
            if (strcmp(sec->entries[j].key, e->key) == 0)
                break;
        if (j < i) {
            sl_errors_add(errs, file, e->line, "option '%s' is set twice (first at line %d)",
                          e->key, sec->entries[j].line);
            continue;
        }
        match[i] = find_decl(&v, e->key);
        if (match[i] == NULL)
            report_unknown(&v, e);
    }

    for (t = 0; t < ntables; t++) {
        for (o = tables[t]; o->name; o++) {
            if (prefix_len(o) > 0) {
                /* Every key it matched, in file order; it has no value
                 * of its own, so neither a default nor "required". */
                for (i = 0; i < nent; i++)
                    if (match[i] == o)
                        add_value(&v, o, sec->entries[i].key, sec->entries[i].value,
                                  sec->entries[i].line, 0);
                continue;
            }
            for (i = 0; i < nent; i++)
                if (match[i] == o)
                    break;
            if (i < nent) {
                add_value(&v, o, o->name, sec->entries[i].value, sec->entries[i].line, 0);
                if (o->def)
                    check_default(&v, o);
            } else if (o->def) {
                add_value(&v, o, o->name, o->def, 0, 1);
            } else if (sec) {
                char *label = sl_section_label(sec);

                if (label == NULL)
                    v.oom = 1;
                else
                    sl_errors_add(errs, file, sec->line, "missing required option '%s' in %s",
                                  o->name, label);
                free(label);
            } else {
                sl_errors_add(errs, file, 0, "missing required option '%s'", o->name);
            }
        }
    }
    free(match);

    if (v.oom)
        sl_errors_add(errs, file, sec ? sec->line : 0, "out of memory");
    if (errs->n > n0) {
        sl_optset_free(out);
        return -1;
    }
    return 0;
}

const sl_optval *sl_optset_get(const sl_optset *set, const char *name)
{
    size_t i;

    for (i = 0; i < set->n; i++)
        if (strcmp(set->v[i].key, name) == 0)
            return &set->v[i];
    return NULL;
}

int sl_optset_equal(const sl_optset *a, const sl_optset *b)
{
    size_t i;

    if (a->n != b->n)
        return 0;
    /* Keys are unique within a set, so same size plus every key of `a`
     * found in `b` with the same value means the same set. */
    for (i = 0; i < a->n; i++) {
        const sl_optval *o = sl_optset_get(b, a->v[i].key);

        if (o == NULL || strcmp(o->raw, a->v[i].raw) != 0)
            return 0;
    }
    return 1;
}

int sl_optset_copy(sl_optset *dst, const sl_optset *src)
{
    size_t i, j;

    dst->v = NULL;
    dst->n = 0;
    if (src->n == 0)
        return 0;
    dst->v = calloc(src->n, sizeof *dst->v);
    if (dst->v == NULL)
        return -1;
    /* dst->n counts entries as they are started, so that on failure
     * sl_optset_free() releases exactly what was made. */
    for (i = 0; i < src->n; i++) {
        const sl_optval *s = &src->v[i];
        sl_optval *d = &dst->v[dst->n++];

        d->decl = s->decl;
        d->line = s->line;
        d->i = s->i;
        d->d = s->d;
        d->key = dup_s(s->key);
        d->raw = dup_s(s->raw);
        if (d->key == NULL || d->raw == NULL)
            goto fail;
        if (s->nlist > 0) {
            d->list = calloc(s->nlist, sizeof *d->list);
            if (d->list == NULL)
                goto fail;
            for (j = 0; j < s->nlist; j++) {
                d->list[j] = dup_s(s->list[j]);
                if (d->list[j] == NULL)
                    goto fail;
                d->nlist = j + 1;
            }
        }
    }
    return 0;

fail:
    sl_optset_free(dst);
    return -1;
}

void sl_optset_free(sl_optset *set)
{
    size_t i;

    for (i = 0; i < set->n; i++)
        optval_free(&set->v[i]);
    free(set->v);
    set->v = NULL;
    set->n = 0;
}

int sl_parse_duration(const char *text, double *seconds)
{
    const char *p = text, *unit;
    char *end;
    double x;

    if (text == NULL)
        return -1;
    /* Digits with at most one '.', checked here because strtod() would
     * also take signs, exponents, hex, "inf" and "nan". */
    while (is_digit(*p))
        p++;
    if (*p == '.')
        for (p++; is_digit(*p); p++)
            ;
    if (p == text || (p == text + 1 && *text == '.'))
        return -1;
    unit = p;

    x = strtod(text, &end);
    if (end != unit)
        return -1; /* e.g. a locale whose decimal point is not '.' */

    if (*unit == '\0' || strcmp(unit, "s") == 0)
        ;
    else if (strcmp(unit, "ms") == 0)
        x /= 1000.0;
    else if (strcmp(unit, "m") == 0)
        x *= 60.0;
    else if (strcmp(unit, "h") == 0)
        x *= 3600.0;
    else
        return -1;
    if (!isfinite(x))
        return -1;
    *seconds = x;
    return 0;
}
