/*
 * trace_otlp.h - ended spans as an OTLP/HTTP JSON request body
 * (ExportTraceServiceRequest, opentelemetry-proto's JSON mapping: ids in
 * lower-case hex, 64-bit integers as decimal strings).  Pure: unit-tested.
 */
#ifndef SL_TRACE_OTLP_H
#define SL_TRACE_OTLP_H

#include <stddef.h>
#include "trace.h"

/*
 * The resource part, {"attributes":[...]}, with service.name `service`,
 * the SDK attributes and `n` extra key/value pairs.  Returns a malloc'd
 * string, or NULL when out of memory.
 */
char *sl_otlp_resource(const char *service, const char *const *keys, const char *const *values,
                       size_t n);

/* The most bytes sl_otlp_attr() writes for a key and value of these
 * lengths (every byte escaped as \u00XX, and the object around them). */
#define SL_OTLP_ATTR_MAX(klen, vlen) (6 * ((klen) + (vlen)) + 48)

/*
 * Writes the OTLP KeyValue {"key":..., "value":{"stringValue":...}} of
 * `key` and the first `vlen` bytes of `value` into `dst` (room for
 * SL_OTLP_ATTR_MAX of them).  Type 's': a stringValue; 'i': an intValue,
 * `value` decimal digits.  Returns the bytes written (no NUL).
 */
size_t sl_otlp_attr(char *dst, char type, const char *key, const char *value, size_t vlen);
/* The same KeyValue in two parts, so that the key's part can be encoded
 * once and kept (sl_span_key): what precedes the value (room for
 * SL_OTLP_ATTR_MAX(klen, 0)), then the value and the end (room for
 * SL_OTLP_ATTR_MAX(0, vlen)).  Each returns the bytes written. */
size_t sl_otlp_attr_head(char *dst, char type, const char *key);
size_t sl_otlp_attr_value(char *dst, const char *value, size_t vlen);
/* The value part of an integer attribute (type 'i'): its decimal digits
 * and the end, at most SL_OTLP_ATTR_INT_MAX bytes. */
#define SL_OTLP_ATTR_INT_MAX 24
size_t sl_otlp_attr_int(char *dst, long long value);

/* A body being written, then sent.  Kept from one batch to the next:
 * once it has grown to a batch's size, encoding a batch allocates nothing
 * (a fresh buffer of a batch's size is a trip to malloc's slow path, and
 * page faults, every time).  free(p) releases it. */
typedef struct {
    char *p;
    size_t len, cap;
    size_t spans; /* in it since sl_otlp_open() */
} sl_otlp_buf;

/*
 * A body is written in three steps, so that each span is encoded when it
 * ends, while it is still in the cache, and its memory goes back at once:
 * sl_otlp_open() writes, over what `b` held, the start of the request
 * under `resource` (from sl_otlp_resource()); sl_otlp_add() appends one
 * span; sl_otlp_close() ends the body, NUL-ended, `len` without the NUL.
 * Each returns 0, or -1 when out of memory: `b` then still owns its
 * buffer, and after a failed sl_otlp_add() it holds what it held before,
 * so the span is lost, not the batch.
 */
int sl_otlp_open(sl_otlp_buf *b, const char *resource);
int sl_otlp_add(sl_otlp_buf *b, const sl_span *s);
int sl_otlp_close(sl_otlp_buf *b);

#endif
