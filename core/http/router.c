/*
 * router.c - route pattern matching.
 */
#include <stdlib.h>
#include <string.h>
#include "router.h"

int sl_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *sl_percent_decode(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    size_t o = 0;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < len ? sl_hex_digit(s[i + 1]) : -1;
            int lo = hi >= 0 ? sl_hex_digit(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            c = hi * 16 + lo;
            i += 2;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return out;
}

static int is_ident(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

int sl_route_pattern_valid(const char *pattern)
{
    const char *names[SL_ROUTE_MAX_PARAMS];
    size_t lens[SL_ROUTE_MAX_PARAMS], n = 0;
    const char *p = pattern;

    if (pattern == NULL || pattern[0] != '/')
        return 0;
    while (*p) {
        const char *seg = ++p; /* past the '/' */
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if (len > 0 && seg[0] == '{') {
            if (seg[len - 1] != '}' || !is_ident(seg + 1, len - 2) || n == SL_ROUTE_MAX_PARAMS)
                return 0;
            for (size_t i = 0; i < n; i++)
                if (lens[i] == len - 2 && memcmp(names[i], seg + 1, len - 2) == 0)
                    return 0;
            names[n] = seg + 1;
            lens[n++] = len - 2;
        } else if (memchr(seg, '{', len) || memchr(seg, '}', len)) {
            return 0;
        }
        p = seg + len;
    }
    return 1;
}

void sl_params_free(sl_params *params)
{
    for (size_t i = 0; i < params->n; i++) {
        free(params->names[i]);
        free(params->values[i]);
    }
    params->n = 0;
}

const char *sl_params_get(const sl_params *params, const char *name)
{
    for (size_t i = 0; i < params->n; i++)
        if (strcmp(params->names[i], name) == 0)
            return params->values[i];
    return NULL;
}

int sl_route_match(const char *pattern, const char *path, sl_params *params)
{
    const char *p = pattern, *q = path;

    params->n = 0;
    for (;;) {
        if (*p == '\0' || *q == '\0') {
            if (*p == '\0' && *q == '\0')
                return 1;
            break;
        }
        if (*p != '/' || *q != '/')
            break;
        p++;
        q++;
        size_t plen = strcspn(p, "/"), qlen = strcspn(q, "/");
        if (plen > 0 && p[0] == '{') {
            if (qlen == 0)
                break;
            char *name = strndup(p + 1, plen - 2);
            char *value = sl_percent_decode(q, qlen);
            if (name == NULL || value == NULL) {
                free(name);
                free(value);
                sl_params_free(params);
                return -1;
            }
            params->names[params->n] = name;
            params->values[params->n++] = value;
        } else if (plen != qlen || memcmp(p, q, plen) != 0) {
            break;
        }
        p += plen;
        q += qlen;
    }
    sl_params_free(params);
    return 0;
}
