/*
 * jbuf.h - a growing byte buffer for building JSON rows and SQL by hand.
 * Hand-built rows are several times cheaper than cJSON at a million
 * messages and let the raw payload (any bytes, NULs included) be escaped
 * exactly.  An allocation failure sets `oom` and later appends do
 * nothing, so a caller checks once at the end.
 */
#ifndef AGG_JBUF_H
#define AGG_JBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} jbuf;

void jb_put(jbuf *b, const void *s, size_t n);
void jb_char(jbuf *b, char c);
#define jb_lit(b, lit) jb_put((b), (lit), sizeof(lit) - 1)
void jb_cstr(jbuf *b, const char *s);
/* A JSON string literal, quotes included: control bytes, NUL, '"' and
 * '\\' escaped; other bytes pass through. */
void jb_jstr(jbuf *b, const char *s, size_t n);
void jb_int(jbuf *b, long long v);
void jb_double(jbuf *b, double v);
void jb_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "YYYY-MM-DD hh:mm:ss" (UTC) of epoch seconds, unquoted. */
void jb_datetime(jbuf *b, int64_t sec);
void jb_reset(jbuf *b);
void jb_free(jbuf *b);

#endif
