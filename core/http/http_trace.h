/*
 * http_trace.h - what a request brings to tracing and logging: its trace
 * context (traceparent/tracestate), its server span, and an X-Log-Level
 * that raises the log level of this request's lines alone.
 */
#ifndef SL_HTTP_TRACE_H
#define SL_HTTP_TRACE_H

#include <event2/http.h>
#include "trace/trace.h"

typedef struct {
    sl_span *span;    /* NULL when not recorded */
    sl_trace_ctx ctx; /* current while the core runs module code for it */
} sl_http_trace;

/*
 * Fills `t` for the request `ev` routed to `route` of instance `module`:
 * with tracing on, continues the caller's trace (or starts one), opens the
 * server span and answers a `traceparent` header naming it.  Also reads
 * X-Log-Level.  `fixed` belongs to the route (zero-initialised, freed with
 * it): the attributes its requests share are encoded there once.
 * `request_id` may be NULL.
 */
void sl_http_trace_begin(sl_http_trace *t, struct evhttp_request *ev, unsigned method,
                         const char *route, const char *path, const char *module,
                         sl_span_attrs *fixed, const char *request_id);
/* Ends the server span with the answer's status. */
void sl_http_trace_end(sl_http_trace *t, int status);

#endif
