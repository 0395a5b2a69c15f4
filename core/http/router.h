/*
 * router.h - matching request paths against route patterns.
 *
 * A pattern is a path whose segments are literals or {name} parameters:
 * "/segment/user/{id}".  A parameter matches one non-empty segment; its
 * value is percent-decoded.  Matching is exact otherwise (a trailing slash
 * matters).  Pure functions, no I/O, so they are unit-tested on their own.
 */
#ifndef SL_ROUTER_H
#define SL_ROUTER_H

#include <stddef.h>

#define SL_ROUTE_MAX_PARAMS 8

typedef struct {
    size_t n;
    char *names[SL_ROUTE_MAX_PARAMS];
    char *values[SL_ROUTE_MAX_PARAMS];
} sl_params;

/* 1 when `pattern` is well formed: starts with '/', parameters are
 * {identifier}, at most SL_ROUTE_MAX_PARAMS, names unique. */
int sl_route_pattern_valid(const char *pattern);

/*
 * Matches `path` (without query string, still percent-encoded) against
 * `pattern`.  Returns 1 and fills `params` (caller frees with
 * sl_params_free) on a match, 0 on no match, -1 when out of memory or a
 * parameter's encoding is invalid ("%zz") or decodes to a NUL byte.
 */
int sl_route_match(const char *pattern, const char *path, sl_params *params);
void sl_params_free(sl_params *params);
const char *sl_params_get(const sl_params *params, const char *name);

/* The value of a hexadecimal digit, either case; -1 for any other byte. */
int sl_hex_digit(int c);

/* Percent-decodes `len` bytes of `s` into a new string; NULL when the
 * encoding is invalid, decodes to NUL, or memory runs out. */
char *sl_percent_decode(const char *s, size_t len);

#endif
