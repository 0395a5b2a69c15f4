/*
 * trace.h - the core's side of tracing: the current context, spans the
 * core opens itself, and the exporter's settings.  Modules use the tracing
 * part of sluice.h.
 *
 * The current context is one slot on the loop thread.  The core fills it
 * while it runs module code on behalf of a request or a message (a route
 * handler, a connector callback, a timer armed during such work) and
 * restores what was there after, so that a span opened anywhere below
 * (by a connector for a query, or by the module) gets the right parent
 * without the module passing anything along.  Connectors capture the
 * context when work is submitted and put it back around the callback that
 * reports its end.
 */
#ifndef SL_TRACE_H
#define SL_TRACE_H

#include <stdint.h>
#include <sluice/sluice.h>
#include "conf/errors.h"
#include "conf/option.h"
#include "conf/section.h"
#include "traceparent.h"

/* The longest request id kept with a context; longer ones are cut. */
#define SL_REQID_MAX 64

typedef struct {
    sl_tp tp;                          /* valid when `traced` */
    uint8_t traced;                    /* a trace position is current */
    uint8_t log_debug;                 /* this work logs at debug (X-Log-Level) */
    uint32_t events;                   /* the span log lines go to as events, 0: none */
    char request_id[SL_REQID_MAX + 1]; /* "" when none */
} sl_trace_ctx;

/* The most bytes of an attribute's value kept (longer ones are cut). */
#define SL_SPAN_VALUE_MAX 2048
/* The longest span name kept (longer ones are cut). */
#define SL_SPAN_NAME_MAX 127
/* Attribute bytes a span holds without a second allocation: enough for
 * the server span and for a statement span with its SQL text. */
#define SL_SPAN_ATTRS_INLINE 2048

/* A span.  Its attributes are kept as the OTLP JSON they are exported
 * as, KeyValue objects separated by commas (sl_otlp_attr()): each is
 * escaped once, when it is set, and a batch copies them whole, instead of
 * keeping the text and escaping it character by character at export.
 * `attrs` starts as `inline_attrs`, one allocation with the span, and
 * moves to the heap only when a span outgrows it. */
struct sl_span {
    sl_span *next; /* in the pool of spans kept for reuse */
    sl_tp tp;
    uint8_t parent[8];
    uint8_t has_parent;
    uint8_t recording; /* sampled: exported when it ends */
    uint8_t entered;
    uint8_t kind;
    uint8_t failed;
    uint64_t start_ns, end_ns;
    char name[SL_SPAN_NAME_MAX + 1];
    char *status_msg;
    char *tracestate;
    char *attrs;
    size_t alen, acap;
    sl_tp *links;
    size_t nlinks, caplinks;
    unsigned dropped_links;
    /* events: records of the time (8 bytes), then level, source and
     * message, each NUL-ended */
    char *events;
    size_t elen, ecap;
    unsigned nevents, dropped_events;
    uint32_t slot; /* its handle for log lines, 0: none */
    sl_ctx *owner; /* when started through sluice.h */
    sl_resource *res;
    sl_trace_ctx saved; /* while entered */
    char inline_attrs[SL_SPAN_ATTRS_INLINE];
};

/* The current context; all zero outside any request or message. */
extern sl_trace_ctx sl_trace_cur;

/* Makes `next` current (NULL: none) after saving the current one in
 * `saved`; sl_trace_restore() puts it back.  Cheap enough for every
 * callback. */
void sl_trace_enter(const sl_trace_ctx *next, sl_trace_ctx *saved);
void sl_trace_restore(const sl_trace_ctx *saved);

/* 1 when spans are recorded and exported ([tracing] endpoint set). */
int sl_trace_on(void);

/*
 * Opens a span child of `parent` (NULL: of the current context); a parent
 * without a trace starts one, sampled at [tracing] sample_ratio, else the
 * parent's sampled flag decides.  Always fills `pos` (when not NULL) with
 * the new span's position, so that a request's context exists even when
 * it is not recorded.  Returns NULL when the span is not recorded
 * (tracing off, or not sampled): every span function accepts NULL.  Not
 * tracked against any instance: the caller owns it and ends it.
 */
sl_span *sl_span_begin(const sl_trace_ctx *parent, int kind, const char *name, sl_tp *pos);
/* The tracestate received with the parent (validated), kept on the span. */
void sl_span_tracestate(sl_span *s, const char *tracestate);

/* Registers the exporter's metrics; called once at start.  0, or -1 when
 * out of memory. */
int sl_trace_metrics_init(void);

/* The [tracing] section. */
extern const sl_section_schema sl_tracing_schema;

/* Applies the [tracing] options of the generation becoming current (NULL:
 * the section is absent, tracing off). */
void sl_trace_configure(const sl_optset *opts);

/* The sample ratio of new traces. */
double sl_trace_ratio(void);

/*
 * Log lines as span events.  A recording span may take a handle
 * (sl_trace_events_take()) that a context carries in `events`; every log
 * line written in that context is then added to the span as an event
 * (trace_event.c), until the span ends and the handle goes stale.  A
 * handle, not a pointer: contexts are copied into work that may outlive
 * the span (a timer, a query's callback).  0 when there is no room or the
 * span does not record.
 */
uint32_t sl_trace_events_take(sl_span *s);
void sl_trace_events_drop(sl_span *s);
/* Adds a log line to the span of the current context's handle, if any. */
void sl_trace_log_event(const char *level, const char *who, const char *msg);

/*
 * Attributes that many spans carry alike (a connection's db.system and
 * server.address, a prepared statement's text): encoded once, then added
 * to each span with one copy instead of being escaped again per span.
 * Zero-initialised empty; free(a->json) releases it.
 */
typedef struct {
    char *json; /* KeyValue objects, comma-separated */
    size_t len;
} sl_span_attrs;
/* Appends one string attribute to the set: 0, or -1 when out of memory
 * (the set is left as it was). */
int sl_span_attrs_add(sl_span_attrs *a, const char *key, const char *value);
/* The same for an integer attribute. */
int sl_span_attrs_add_int(sl_span_attrs *a, const char *key, long long value);
/* Adds every attribute of the set to the span. */
void sl_span_set_attrs(sl_span *s, const sl_span_attrs *a);

/*
 * An attribute key the core sets on every span of a kind (url.path,
 * client.port): its OTLP JSON up to the value is encoded at its first use
 * and copied after, instead of measuring and escaping the key again for
 * every span.  Declared static with `name` and `type` ('s': a string, 'i':
 * an integer) and the rest zero; used on the loop thread only.
 */
typedef struct {
    const char *name;
    char type;
    size_t len;     /* of `head`; 0 until encoded */
    char head[128]; /* a longer key is set the plain way each time */
} sl_span_key;
/* Sets the attribute `k` of a recording span to `value` (NULL: not set),
 * as sl_span_set_str() / sl_span_set_int() would. */
void sl_span_put(sl_span *s, sl_span_key *k, const char *value);
void sl_span_put_int(sl_span *s, sl_span_key *k, long long value);

/* Frees a span without exporting it (kept for reuse, bounded). */
void sl_span_free(sl_span *s);
/* Frees the spans kept for reuse; at exit. */
void sl_trace_pool_free(void);

/* Export side, for trace.c: encodes an ended span into the batch being
 * filled and frees it, or drops and counts it. */
void sl_trace_export_span(sl_span *s);

#endif
