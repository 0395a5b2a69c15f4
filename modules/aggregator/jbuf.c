/*
 * jbuf.c - the growing buffer of jbuf.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jbuf.h"

static int grow(jbuf *b, size_t more)
{
    size_t cap;
    char *p;

    if (b->oom)
        return -1;
    if (b->len + more + 1 <= b->cap)
        return 0;
    cap = b->cap != 0 ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void jb_put(jbuf *b, const void *s, size_t n)
{
    if (grow(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void jb_char(jbuf *b, char c)
{
    jb_put(b, &c, 1);
}

void jb_int(jbuf *b, long long v)
{
    char tmp[24];
    int n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    char out[24];
    int o = 0;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        out[o++] = '-';
    while (n > 0)
        out[o++] = tmp[--n];
    jb_put(b, out, (size_t)o);
}

void jb_printf(jbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->oom)
        return;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || grow(b, (size_t)n) != 0) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Civil date of days since 1970-01-01 (Howard Hinnant's algorithm):
 * strftime would be most of the cost of a row. */
static void civil(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static void two(char *p, int v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

void jb_datetime(jbuf *b, int64_t sec)
{
    char t[19];
    int64_t days = sec >= 0 ? sec / 86400 : -((-sec + 86399) / 86400);
    int64_t rem = sec - days * 86400;
    int y, m, d;

    civil(days, &y, &m, &d);
    if (y < 0 || y > 9999) { /* not a time ClickHouse can hold anyway */
        y = 1970;
        m = d = 1;
        rem = 0;
    }
    two(t, y / 100);
    two(t + 2, y % 100);
    t[4] = '-';
    two(t + 5, m);
    t[7] = '-';
    two(t + 8, d);
    t[10] = ' ';
    two(t + 11, (int)(rem / 3600));
    t[13] = ':';
    two(t + 14, (int)(rem / 60 % 60));
    t[16] = ':';
    two(t + 17, (int)(rem % 60));
    jb_put(b, t, sizeof(t));
}

void jb_reset(jbuf *b)
{
    b->len = 0;
    b->oom = 0;
    if (b->p != NULL)
        b->p[0] = '\0';
}

void jb_truncate(jbuf *b, size_t len)
{
    if (len >= b->len || b->p == NULL)
        return;
    b->len = len;
    b->p[len] = '\0';
}

void jb_free(jbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}
