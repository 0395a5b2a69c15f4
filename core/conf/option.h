/*
 * option.h - validation of a config section against declared options.
 *
 * A section is checked against a table of sl_option (sluice.h).  The result
 * is an sl_optset: for every declared option the configured value (or the
 * default), already converted to its type.  Unknown keys, values of the
 * wrong type, values out of bounds or not among the choices, and missing
 * required options are errors reported with file:line.
 */
#ifndef SL_OPTION_H
#define SL_OPTION_H

#include <stddef.h>
#include <sluice/sluice.h>
#include "conf.h"
#include "errors.h"

typedef struct {
    const sl_option *decl; /* the declaration; for a key matched by a prefix
                              option such as "rdkafka.*", that option */
    char *key;             /* the option or configured key */
    char *raw;             /* the value as configured, or the default */
    int line;              /* 0 when the default was taken */
    long long i;           /* SL_OPT_INT, SL_OPT_BOOL (0/1), SL_OPT_ENUM (index
                              into choices) */
    double d;              /* SL_OPT_DOUBLE, SL_OPT_DURATION (seconds), SL_OPT_INT */
    char **list;           /* SL_OPT_LIST elements, trimmed, empty ones dropped */
    size_t nlist;
} sl_optval;

typedef struct {
    sl_optval *v;
    size_t n;
} sl_optset;

/*
 * The set holds the declared options in table order; a prefix option has
 * no value of its own (nor default, nor "required") and contributes one
 * entry per configured key it matched, in file order.
 *
 * Validates `sec` (may be NULL: all defaults) against the declarations in
 * `tables`, an array of `ntables` option tables each terminated by a NULL
 * name; a module's own table and the options common to every module section
 * are checked together this way.  `file` is used in messages.  Returns 0 and
 * fills `out`, or -1 after appending every error to `errs` (out is then
 * left empty).  A required option missing is reported at the section line.
 */
int sl_options_validate(const sl_option *const *tables, size_t ntables, const sl_conf_section *sec,
                        const char *file, sl_optset *out, sl_errors *errs);

/* How messages name a section: "[module generator \"second\"]"; malloc'd,
 * NULL when out of memory. */
char *sl_section_label(const sl_conf_section *sec);

/* The value of a declared option, or NULL if there is no such option. */
const sl_optval *sl_optset_get(const sl_optset *set, const char *name);

/* 1 when both sets hold the same keys with the same raw values. */
int sl_optset_equal(const sl_optset *a, const sl_optset *b);

/* Deep copy; `dst` must be empty.  Returns 0 or -1 on allocation failure. */
int sl_optset_copy(sl_optset *dst, const sl_optset *src);
void sl_optset_free(sl_optset *set);

/* Parses a duration ("250ms", "10s", "5m", "1h", "2.5") into seconds.
 * Returns 0 or -1. */
int sl_parse_duration(const char *text, double *seconds);

#endif
