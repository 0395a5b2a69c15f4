/*
 * rowbin.h - values in ClickHouse's RowBinary format, appended to a jbuf:
 * integers and floats little-endian at their width, a String as its
 * length (unsigned LEB128) then its bytes, a DateTime as UInt32 seconds.
 * Rows are the values of the insert's columns in order, nothing between.
 * Nothing is escaped on either side, so a payload of any bytes costs its
 * length, and the server parses it several times faster than JSON.
 */
#ifndef AGG_ROWBIN_H
#define AGG_ROWBIN_H

#include <stddef.h>
#include <stdint.h>
#include "jbuf.h"

void rb_str(jbuf *b, const void *s, size_t n);
void rb_cstr(jbuf *b, const char *s);
void rb_u16(jbuf *b, uint16_t v);
void rb_i32(jbuf *b, int32_t v);
void rb_u64(jbuf *b, uint64_t v);
void rb_i64(jbuf *b, int64_t v);
void rb_f64(jbuf *b, double v);
/* DateTime of epoch seconds; 0 (1970-01-01) outside what it can hold. */
void rb_datetime(jbuf *b, int64_t sec);

#endif
