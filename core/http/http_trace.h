/*
 * http_trace.h - what a request brings to tracing and logging: its trace
 * context (traceparent/tracestate), its server span, and an X-Log-Level
 * that raises the log level of this request's lines alone.
 */
#ifndef SL_HTTP_TRACE_H
#define SL_HTTP_TRACE_H

#include <event2/http.h>
#include "trace/trace.h"

/* The server-span attributes every request of one route shares, one set
 * per method (http.request.method is one of them: a route may serve GET
 * and HEAD, or more), each encoded at the first traced request with that
 * method.  Zero-initialised; sl_http_route_attrs_free() releases it. */
#define SL_HTTP_METHOD_SLOTS 7
typedef struct {
    sl_span_attrs by_method[SL_HTTP_METHOD_SLOTS];
} sl_http_route_attrs;
void sl_http_route_attrs_free(sl_http_route_attrs *a);

typedef struct {
    sl_span *span;    /* NULL when not recorded */
    sl_trace_ctx ctx; /* current while the core runs module code for it */
} sl_http_trace;

/*
 * Fills `t` for the request `ev` routed to `route` of instance `module`:
 * with tracing on, continues the caller's trace (or starts one), opens the
 * server span and answers a `traceparent` header naming it.  Also reads
 * X-Log-Level.  `fixed` belongs to the route: the attributes its requests
 * share are encoded there once per method.  `peer` belongs to the
 * connection (zero-initialised, freed with it; NULL: none): its client's
 * attributes are encoded there once.  `request_id` may be NULL.
 */
void sl_http_trace_begin(sl_http_trace *t, struct evhttp_request *ev, unsigned method,
                         const char *route, const char *path, const char *module,
                         sl_http_route_attrs *fixed, sl_span_attrs *peer, const char *request_id);
/* Ends the server span with the answer's status. */
void sl_http_trace_end(sl_http_trace *t, int status);

#endif
