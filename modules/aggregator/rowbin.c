/*
 * rowbin.c - RowBinary values (rowbin.h).
 */
#include <string.h>
#include "rowbin.h"

/* `v` in its low `n` bytes, least significant first. */
static void le(jbuf *b, uint64_t v, size_t n)
{
    unsigned char t[8];

    for (size_t i = 0; i < n; i++)
        t[i] = (unsigned char)(v >> (8 * i));
    jb_put(b, t, n);
}

void rb_str(jbuf *b, const void *s, size_t n)
{
    unsigned char t[10];
    size_t k = 0;
    uint64_t v = n;

    do {
        t[k] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v != 0)
            t[k] |= 0x80;
        k++;
    } while (v != 0);
    jb_put(b, t, k);
    jb_put(b, s, n);
}

void rb_cstr(jbuf *b, const char *s)
{
    rb_str(b, s, strlen(s));
}

void rb_u16(jbuf *b, uint16_t v)
{
    le(b, v, 2);
}

void rb_i32(jbuf *b, int32_t v)
{
    le(b, (uint32_t)v, 4);
}

void rb_u64(jbuf *b, uint64_t v)
{
    le(b, v, 8);
}

void rb_i64(jbuf *b, int64_t v)
{
    le(b, (uint64_t)v, 8);
}

void rb_f64(jbuf *b, double v)
{
    uint64_t u;

    memcpy(&u, &v, sizeof(u));
    le(b, u, 8);
}

void rb_datetime(jbuf *b, int64_t sec)
{
    le(b, sec >= 0 && sec <= (int64_t)UINT32_MAX ? (uint64_t)sec : 0, 4);
}
