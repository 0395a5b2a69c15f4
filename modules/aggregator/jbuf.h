/*
 * jbuf.h - a growing byte buffer for building rows (rowbin.h) and SQL by
 * hand: several times cheaper than a general serializer at a million
 * messages, and any bytes (NULs included) go in as they are.  The buffer
 * is kept NUL-terminated for SQL.  An allocation failure sets `oom` and
 * later appends do nothing, so a caller checks once at the end.
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
void jb_int(jbuf *b, long long v);
void jb_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "YYYY-MM-DD hh:mm:ss" (UTC) of epoch seconds, unquoted. */
void jb_datetime(jbuf *b, int64_t sec);
void jb_reset(jbuf *b);
/* Back to `len` bytes (at most the current length), e.g. to take back a
 * row that was dropped. */
void jb_truncate(jbuf *b, size_t len);
void jb_free(jbuf *b);

#endif
