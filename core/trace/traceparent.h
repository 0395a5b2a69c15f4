/*
 * traceparent.h - W3C Trace Context (https://www.w3.org/TR/trace-context/):
 * the `traceparent` and `tracestate` headers, parsed and formatted.
 * Pure functions, no state: unit-tested on their own.
 */
#ifndef SL_TRACEPARENT_H
#define SL_TRACEPARENT_H

#include <stddef.h>
#include <stdint.h>

/* "00-" 32 hex "-" 16 hex "-" 2 hex, and the terminating NUL. */
#define SL_TP_LEN 55
/* The spec's bound on a tracestate header a participant must accept. */
#define SL_TRACESTATE_MAX 512

#define SL_TP_SAMPLED 0x01

/* One position in a trace: the trace, the span, the trace flags. */
typedef struct {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags;
} sl_tp;

/*
 * Parses a traceparent header value.  Returns 0, or -1 when the value is
 * not one the spec lets a receiver use (wrong length or case, all-zero ids,
 * version ff, a version-00 header with trailing data); a future version is
 * read by its first four fields, as the spec asks.
 */
int sl_tp_parse(const char *s, sl_tp *out);

/* Writes the version-00 header of `tp` into `buf` (at least SL_TP_LEN + 1
 * bytes). */
void sl_tp_format(const sl_tp *tp, char *buf);

/* 1 when every byte of `id` (n bytes) is zero: the spec's invalid id. */
int sl_tp_id_zero(const uint8_t *id, size_t n);

/* Lower-case hex of n bytes into `out` (2n + 1 bytes, NUL-terminated). */
void sl_tp_hex(const uint8_t *id, size_t n, char *out);

/*
 * 1 when `s` is a tracestate value worth passing on: at most
 * SL_TRACESTATE_MAX bytes and 32 list members, each member key=value with
 * the spec's characters.  A value that fails is dropped, never repaired.
 */
int sl_tracestate_valid(const char *s);

#endif
