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

/*
 * The body for the spans of the list from `spans` (linked by next), at
 * most `max` of them, under `resource` (from sl_otlp_resource()).  Returns
 * a malloc'd string (its length in *len) or NULL when out of memory.
 */
char *sl_otlp_body(const char *resource, const sl_span *spans, size_t max, size_t *len);

#endif
