/*
 * redact.c - see redact.h.  The text is scanned once; what is not a
 * password is copied as it is, so a message keeps its meaning.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>
#include "redact.h"

#define MASK "***"

typedef struct {
    char *p;
    size_t len, cap; /* cap excludes the NUL */
} sink;

static void put(sink *o, const char *s, size_t n)
{
    if (n > o->cap - o->len)
        n = o->cap - o->len;
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

/* Where a URL's authority ends: at the path, query, fragment, or anything
 * that cannot be in it (blanks, quotes, brackets of the text around). */
static const char *authority_end(const char *s)
{
    while (*s != '\0' && strchr("/?#\"'<> \t\r\n,;)]}", *s) == NULL)
        s++;
    return s;
}

/* At `s` (just after "://"): with a password up to the '@' at *at, the
 * length of what precedes it ("user:"), else -1.  redis://SECRET@host
 * is a password alone (sl_redis_url_parse), other schemes' user@host a
 * user name. */
static long userinfo_password(const char *text, const char *s, const char **at)
{
    const char *end = authority_end(s), *a = NULL, *colon, *scheme = s - 3;

    for (const char *p = s; p < end; p++)
        if (*p == '@')
            a = p; /* the last '@': a password may hold one, unescaped */
    if (a == NULL || a == s)
        return -1;
    *at = a;
    colon = memchr(s, ':', (size_t)(a - s));
    if (colon != NULL)
        return colon - s + 1;
    while (scheme > text && isalpha((unsigned char)scheme[-1]))
        scheme--;
    if ((s - 3 - scheme == 5 && strncasecmp(scheme, "redis", 5) == 0) ||
        (s - 3 - scheme == 6 && strncasecmp(scheme, "rediss", 6) == 0))
        return 0;
    return -1;
}

/* At `s`, "password" (any case, also the end of a longer key such as
 * sasl.password) then blanks and '=': the length up to the value, else 0. */
static size_t password_key(const char *s)
{
    const char *p = s + 8;

    if (strncasecmp(s, "password", 8) != 0)
        return 0;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '=')
        return 0;
    p++;
    while (*p == ' ' || *p == '\t')
        p++;
    return (size_t)(p - s);
}

/* The value at `s`: quoted ('...' with \' inside, or "...") or up to a
 * blank or a separator.  Returns its end. */
static const char *value_end(const char *s)
{
    if (*s == '\'' || *s == '"') {
        char q = *s++;
        while (*s != '\0' && *s != q) {
            if (*s == '\\' && s[1] != '\0')
                s++;
            s++;
        }
        return *s == q ? s + 1 : s;
    }
    while (*s != '\0' && strchr(" \t\r\n&;,\"'", *s) == NULL)
        s++;
    return s;
}

int sl_redact(const char *in, char *out, size_t outlen)
{
    sink o = { out, 0, outlen > 0 ? outlen - 1 : 0 };
    const char *s = in, *copied = in;
    int changed = 0;

    if (outlen == 0)
        return 0;
    while (*s != '\0') {
        const char *at;
        size_t n;
        long u;

        if (s[0] == ':' && s[1] == '/' && s[2] == '/' &&
            (u = userinfo_password(in, s + 3, &at)) >= 0) {
            put(&o, copied, (size_t)(s + 3 - copied) + (size_t)u);
            put(&o, MASK, sizeof(MASK) - 1);
            s = copied = at;
            changed = 1;
            continue;
        }
        if ((*s == 'p' || *s == 'P') && (n = password_key(s)) != 0) {
            const char *end = value_end(s + n);
            if (end > s + n) {
                put(&o, copied, (size_t)(s - copied) + n);
                put(&o, MASK, sizeof(MASK) - 1);
                s = copied = end;
                changed = 1;
                continue;
            }
        }
        s++;
    }
    put(&o, copied, (size_t)(s - copied));
    out[o.len] = '\0';
    return changed;
}
