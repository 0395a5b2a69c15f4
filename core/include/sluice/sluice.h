/*
 * sluice/sluice.h - the module API of sluiced.
 *
 * This is the only header a module includes.  A module is a shared object
 * exporting exactly one symbol, `sluice_module`, of type sl_module.  Every
 * resource a module obtains (routes, timers, fd watches, metrics, connector
 * handles) is obtained through the sl_ctx the core hands to start(), and is
 * recorded against that context, so the core can release all of it when the
 * instance stops and before the shared object is dlclose()d.
 *
 * Everything here runs on the single event-loop thread.  No function may be
 * called from any other thread.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

/*
 * The module ABI.  A module records the version it was built against in
 * its descriptor's first member, which stays first in every version, so
 * the core can always tell which layout it holds.  The descriptor only
 * grows: a new optional hook is appended at its end and raises
 * SL_ABI_VERSION, and the core loads a module built for any version from
 * SL_ABI_OLDEST on, with the hooks its version lacks absent (NULL).  A
 * module built for a newer version than the core's is refused, since the
 * core cannot know what its extra members mean.  A change that is not an
 * append (a member or function that changes type or meaning) raises both,
 * so that older modules are refused instead of misread.
 */
#define SL_ABI_VERSION 3
#define SL_ABI_OLDEST 2

#if defined(__GNUC__)
#define SL_API __attribute__((visibility("default")))
#define SL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SL_API
#define SL_PRINTF(f, a)
#endif

typedef struct sl_ctx sl_ctx;

/* ---------------------------------------------------------------- options */

typedef enum {
    SL_OPT_STRING,
    SL_OPT_INT,      /* 64-bit integer, bounded by min/max */
    SL_OPT_DOUBLE,   /* bounded by min/max */
    SL_OPT_BOOL,     /* true/false, yes/no, on/off, 1/0 */
    SL_OPT_ENUM,     /* one of `choices`, a '|' separated list */
    SL_OPT_DURATION, /* "250ms", "10s", "5m", "1h" or plain seconds; read as seconds */
    SL_OPT_LIST      /* comma separated strings */
} sl_opt_type;

/*
 * One declared option.  `def` is the default as it would be written in the
 * config file; NULL makes the option required.  Bounds apply when min < max.
 * A name ending in ".*" declares a prefix: any key starting with it is
 * accepted as a string (used for pass-through properties such as rdkafka.*).
 */
typedef struct {
    const char *name;
    sl_opt_type type;
    const char *def;
    const char *help;
    double min;
    double max;
    const char *choices;
} sl_option;

/* ----------------------------------------------------------------- module */

/* The module must not run two instances at once (a consumer-group member,
 * an outbox claimer): on reload the old instance drains before its
 * successor starts. */
#define SL_MODULE_EXCLUSIVE 0x1

typedef struct {
    int abi_version; /* SL_ABI_VERSION; first in every version */
    const char *name;
    const char *description;
    const sl_option *options; /* terminated by an entry with name == NULL */
    unsigned flags;
    /* Returns 0, or -1 after sl_fail() said why.  On failure the core
     * releases whatever the instance registered. */
    int (*start)(sl_ctx *ctx);
    /* Begin draining.  The module calls sl_stopped(ctx) once it has finished
     * or handed back its in-flight work, possibly later from a callback.  If
     * it does not within the core's drain timeout the core releases it
     * anyway and logs what it still owned. */
    void (*stop)(sl_ctx *ctx);
    /* Optional.  Applies the instance's schema (PostgreSQL migrations,
     * ClickHouse tables) for `sluiced --init-schema`, then calls
     * sl_schema_done(), possibly later from a callback.  Connector handles,
     * timers and logging work as in start(); nothing is served.  Returns 0,
     * or -1 after sl_fail() said why.  start() must still create what is
     * missing: this step is for deployments that apply schema separately,
     * e.g. with privileges the running daemon does not hold. */
    int (*init_schema)(sl_ctx *ctx);
    /* ABI 2 ends here.  Members below are appended in the version they
     * name; the core treats them as NULL in a module built before it. */
    /* Optional (ABI 3).  Validates the instance's options beyond their
     * declared types: whatever start() would refuse for what is written in
     * the file (a route's syntax, a list of weights, an identifier), so
     * that `sluiced -t`, startup and a SIGHUP reload reject it before
     * anything runs.  The core calls it for every configured instance each
     * time it builds a generation, on a transient context that holds only
     * the options: sl_opt_*(), sl_log(), sl_fail() and sl_fail_opt() work;
     * nothing may be acquired (no connector, timer, route, metric or
     * tracked resource: the core refuses them) and no I/O done.  Returns 0,
     * or -1 after reporting every problem it found with sl_fail_opt() (or
     * sl_fail() for one that belongs to no single key).  start() may rely
     * on what check() accepted and keeps only checks that depend on the
     * running system. */
    int (*check)(sl_ctx *ctx);
} sl_module;

SL_API void sl_stopped(sl_ctx *ctx);

/* Ends init_schema(): `err` is NULL when the schema is in place, else why
 * it is not.  The core then releases the instance. */
SL_API void sl_schema_done(sl_ctx *ctx, const char *err);

/* Records why start() failed; returns -1 for convenience.  In check() it
 * reports a config error at the line of the module's section. */
SL_API int sl_fail(sl_ctx *ctx, const char *fmt, ...) SL_PRINTF(2, 3);
/* Like sl_fail(), about the value of option `key` (as configured, e.g.
 * "route.pv").  In check() each call reports one config error at the line
 * of that key, like a bad option value:
 *   FILE:LINE: [module aggregator] route.pv: unknown "foo" (...)
 * (the section's line when the key is not in the file and its default was
 * taken); a check may call it once per problem.  Elsewhere it records
 * "KEY: message" as sl_fail() does.  Returns -1. */
SL_API int sl_fail_opt(sl_ctx *ctx, const char *key, const char *fmt, ...) SL_PRINTF(3, 4);

/* Per-instance module state, owned by the module. */
SL_API void sl_set_data(sl_ctx *ctx, void *data);
SL_API void *sl_data(sl_ctx *ctx);

SL_API const char *sl_module_name(const sl_ctx *ctx);
/* The instance name from [module NAME "instance"], or "" for the default. */
SL_API const char *sl_instance_name(const sl_ctx *ctx);

/* Readiness: an instance is ready after a successful start() unless it says
 * otherwise; /readyz also consults every connector the instance holds. */
SL_API void sl_set_ready(sl_ctx *ctx, int ready, const char *why);

/* ----------------------------------------------------------- option values */

/* Values of validated options: the configured value or the default.  The
 * strings live as long as the instance. */
SL_API const char *sl_opt_str(const sl_ctx *ctx, const char *name);
SL_API long long sl_opt_int(const sl_ctx *ctx, const char *name);
SL_API double sl_opt_double(const sl_ctx *ctx, const char *name);
SL_API int sl_opt_bool(const sl_ctx *ctx, const char *name);
SL_API double sl_opt_seconds(const sl_ctx *ctx, const char *name);
/* Number of elements of a SL_OPT_LIST option; sl_opt_list_at() returns one. */
SL_API size_t sl_opt_list_len(const sl_ctx *ctx, const char *name);
SL_API const char *sl_opt_list_at(const sl_ctx *ctx, const char *name, size_t i);
/* Visits every configured key matching a prefix option, named as declared
 * ("rdkafka.*") or by its prefix ("rdkafka."). */
SL_API void sl_opt_each_prefixed(const sl_ctx *ctx, const char *prefix,
                                 void (*fn)(void *arg, const char *key, const char *value),
                                 void *arg);

/* -------------------------------------------------------------------- log */

typedef enum { SL_LOG_ERROR, SL_LOG_WARN, SL_LOG_INFO, SL_LOG_DEBUG } sl_log_level;

SL_API void sl_log(const sl_ctx *ctx, sl_log_level level, const char *fmt, ...) SL_PRINTF(3, 4);

/* ------------------------------------------------------- timers and events */

typedef struct sl_timer sl_timer;
typedef void (*sl_timer_fn)(void *arg);

/* A timer firing after `seconds`, again every `seconds` if `repeat`.  Owned
 * by the instance; a one-shot timer stays allocated until cancelled or the
 * instance stops, so it can be re-armed with sl_timer_arm(). */
SL_API sl_timer *sl_timer_new(sl_ctx *ctx, double seconds, int repeat, sl_timer_fn fn, void *arg);
SL_API void sl_timer_arm(sl_timer *t, double seconds);
SL_API void sl_timer_disarm(sl_timer *t);
SL_API void sl_timer_free(sl_timer *t);

typedef struct sl_watch sl_watch;
#define SL_READ 0x02
#define SL_WRITE 0x04
typedef void (*sl_watch_fn)(int fd, short what, void *arg);

/* Persistent readiness watch on a descriptor the module owns. */
SL_API sl_watch *sl_watch_new(sl_ctx *ctx, int fd, short what, sl_watch_fn fn, void *arg);
SL_API void sl_watch_free(sl_watch *w);

/* Monotonic and wall clock, in seconds. */
SL_API double sl_now(void);
SL_API double sl_wall(void);

/* ------------------------------------------------------------------- http */

typedef struct sl_req sl_req;
typedef struct cJSON cJSON;

/*
 * A route handler.  It must eventually answer the request exactly once, with
 * one of the sl_reply_* functions, now or later from another callback.  If
 * the instance stops first, the core answers 503 for it.
 */
typedef void (*sl_route_fn)(sl_req *req, void *arg);

#define SL_GET 0x01
#define SL_POST 0x02
#define SL_PUT 0x04
#define SL_DELETE 0x08
#define SL_HEAD 0x10
/* A partial update (RFC 5789); a new bit, so no module built before it
 * changes meaning. */
#define SL_PATCH 0x20

/*
 * Who may call a route, when the listener requires credentials ([core]
 * tokens_file set and the listener not allow_anonymous): a bearer token
 * granting the scope.  OPEN routes need none (health probes); READ is for
 * GETs of module APIs, WRITE for changes to the data a module serves
 * (segments, users), ADMIN for operating the daemon (generator control,
 * outbox retry).  ADMIN is 0 so that a route that declares nothing gets
 * the strictest scope.
 */
#define SL_SCOPE_ADMIN 0x0
#define SL_SCOPE_OPEN 0x1
#define SL_SCOPE_READ 0x2
#define SL_SCOPE_WRITE 0x3
#define SL_SCOPE_MASK 0xf
/* Flag for `access`: the route takes request bodies of any Content-Type.
 * Without it, a POST, PUT, PATCH or DELETE with a body must say
 * Content-Type: application/json (else 415), so that a web page cannot
 * send one cross-site as a "simple" form or text/plain request. */
#define SL_ROUTE_ANY_BODY 0x100

/*
 * Registers `pattern` (e.g. "/segment/user/{id}") for the given methods.
 * Served on the instance's own `listen` addresses if its section sets any,
 * else on [core] listen.  When two instances register the same route the
 * newest wins, so a successor takes over without refusing a request.
 * The route requires SL_SCOPE_ADMIN; see sl_route_scoped().
 */
SL_API int sl_route(sl_ctx *ctx, unsigned methods, const char *pattern, sl_route_fn fn, void *arg);

/*
 * Like sl_route(), with `access` one SL_SCOPE_* optionally ORed with
 * SL_ROUTE_ANY_BODY, and the largest request body the route accepts in
 * `max_body` bytes (0: [core] max_body_size, which also bounds any
 * route's); a larger body is answered 413 before the handler runs.  The
 * core answers every refusal itself (401, 403, 413, 415, 429) with a JSON
 * error, so a handler only sees requests that passed.  Added without an
 * ABI change: sl_route() keeps its meaning.
 */
SL_API int sl_route_scoped(sl_ctx *ctx, unsigned methods, const char *pattern, unsigned access,
                           size_t max_body, sl_route_fn fn, void *arg);

SL_API unsigned sl_req_method(const sl_req *req);
SL_API const char *sl_req_path(const sl_req *req);
/* Value of a {name} path parameter, already percent-decoded. */
SL_API const char *sl_req_param(const sl_req *req, const char *name);
/* Value of a query-string parameter, decoded; NULL when absent. */
SL_API const char *sl_req_query(const sl_req *req, const char *name);
SL_API const char *sl_req_header(const sl_req *req, const char *name);
/* The request's id: the client's X-Request-Id when it sent a sane one (1
 * to 64 characters of [A-Za-z0-9._:-]), else one the core made.  Every
 * response carries it back in X-Request-Id, the core's JSON errors in
 * "request_id"; log it with anything written about the request, so that
 * a client's report and the server's log meet. */
SL_API const char *sl_req_id(const sl_req *req);
/* Who called: the name of the bearer token that authorized the request
 * (never its secret), or "anonymous" on a listener without credentials. */
SL_API const char *sl_req_caller(const sl_req *req);
/* The request body; NUL-terminated, its length without the terminator in
 * `len` unless that is NULL. */
SL_API const char *sl_req_body(sl_req *req, size_t *len);
/* Parses the body as a JSON object.  On failure answers 400 itself and
 * returns NULL.  The result is owned by the request. */
SL_API cJSON *sl_req_json(sl_req *req);

/* Answers with `json` serialized; takes ownership of `json`. */
SL_API void sl_reply_json(sl_req *req, int status, cJSON *json);
/* Answers {"error": "...", "request_id": "..."}.  A 5xx error is also
 * logged with the request id, so the message may name the internal
 * reason; for a detail the client should not see, log it yourself with
 * sl_req_id() and answer a short message. */
SL_API void sl_reply_error(sl_req *req, int status, const char *fmt, ...) SL_PRINTF(3, 4);
SL_API void sl_reply(sl_req *req, int status, const char *content_type, const void *body,
                     size_t len);
/* A HEAD request (routed wherever GET is) gets the status and headers of
 * the reply, with the Content-Length of its body, and no body. */
/* Adds a response header; before the reply. */
SL_API void sl_reply_header(sl_req *req, const char *name, const char *value);

/* Chunked replies for bodies too large to hold: start, any number of
 * chunks, end.  `more` is called when the previous chunk has been written
 * out, so a producer can go at the client's pace; it may be NULL. */
SL_API void sl_reply_start(sl_req *req, int status, const char *content_type,
                           void (*more)(sl_req *req, void *arg), void *arg);
SL_API void sl_reply_chunk(sl_req *req, const void *data, size_t len);
SL_API void sl_reply_end(sl_req *req);
/* True once the client went away, and from sl_reply_start() on for a HEAD
 * request (no body is sent); a streaming producer should then end. */
SL_API int sl_req_gone(const sl_req *req);

/* ---------------------------------------------------------------- metrics */

typedef struct sl_metric sl_metric;
typedef struct sl_series sl_series;

/*
 * Metric families.  `labels` is a comma separated list of label names or
 * NULL.  Registering a name that exists with the same type and labels
 * shares the family (a successor instance continues its predecessor's
 * counters); a conflicting registration returns NULL.  Series of a named
 * instance carry an extra label instance_name.  Once no instance of that
 * name holds the family (it stopped and nothing replaced it) its series are
 * no longer exposed.
 */
SL_API sl_metric *sl_counter(sl_ctx *ctx, const char *name, const char *help, const char *labels);
SL_API sl_metric *sl_gauge(sl_ctx *ctx, const char *name, const char *help, const char *labels);
/* `bounds` ascending upper bounds, without +Inf; copied. */
SL_API sl_metric *sl_histogram(sl_ctx *ctx, const char *name, const char *help, const char *labels,
                               const double *bounds, size_t nbounds);

/* The series for the given label values, one per label name, in order.
 * Created on first use; lives as long as the family. */
SL_API sl_series *sl_series_of(sl_metric *m, ...);
SL_API sl_series *sl_series_ofv(sl_metric *m, const char *const *values);
SL_API void sl_series_add(sl_series *s, double v);
SL_API void sl_series_set(sl_series *s, double v);
SL_API void sl_series_observe(sl_series *s, double v);

/* ---------------------------------------------------------------- tracing */

/*
 * Spans, exported as OpenTelemetry traces when [tracing] endpoint is set.
 * The core keeps a current context while it runs module code on behalf of
 * a request or a message: a route handler, the callbacks of connector work
 * submitted under it (queries, produce), and timers armed under it.  Spans
 * the connectors open (an SQL statement, a Redis command, a ClickHouse
 * request, a produce) become children of it by themselves; a module opens
 * its own only for work of its own.
 *
 * With tracing off every function below costs a test and sl_span_start()
 * returns NULL; every function accepts a NULL span.  Attribute names follow
 * the OpenTelemetry semantic conventions (db.system, messaging.system...).
 * A span is owned by the instance that started it: one still open when
 * the instance stops is ended with an error status.
 */
typedef struct sl_span sl_span;

/* OpenTelemetry span kinds, with OTLP's numbering. */
typedef enum {
    SL_SPAN_INTERNAL = 1,
    SL_SPAN_SERVER = 2,
    SL_SPAN_CLIENT = 3,
    SL_SPAN_PRODUCER = 4,
    SL_SPAN_CONSUMER = 5
} sl_span_kind;

/* A traceparent header value and its NUL. */
#define SL_TRACEPARENT_SIZE 56

/* A span, child of the current context (a new trace when there is none). */
SL_API sl_span *sl_span_start(sl_ctx *ctx, sl_span_kind kind, const char *name);
/* A span whose parent is `traceparent` (a header carried by a message),
 * whatever is current; when it is NULL or not a valid traceparent the span
 * starts a trace of its own (sampled at [tracing] sample_ratio). */
SL_API sl_span *sl_span_start_from(sl_ctx *ctx, sl_span_kind kind, const char *name,
                                   const char *traceparent);
/*
 * A span of work done for many messages at once (a batch written to a
 * database): it starts a trace of its own, whatever is current, and is
 * linked to each of the `n` positions in `links`, n traceparent values of
 * SL_TRACEPARENT_SIZE bytes each, one after the other (the messages'
 * positions, from sl_trace_current(); invalid ones are skipped).  It is
 * recorded when at least one of them was sampled, so that every sampled
 * message leads to it, and not otherwise; either way it is a context of
 * its own once entered, so that the batch's work does not nest under
 * whichever message happened to be current.  NULL when tracing is off.
 */
SL_API sl_span *sl_span_start_linked(sl_ctx *ctx, sl_span_kind kind, const char *name,
                                     const char *links, size_t n);
SL_API void sl_span_set_str(sl_span *s, const char *key, const char *value);
SL_API void sl_span_set_int(sl_span *s, const char *key, long long value);
/* Links the span to another position, e.g. a batch to the messages it
 * carries; ignored when `traceparent` is not valid. */
SL_API void sl_span_link(sl_span *s, const char *traceparent);
/* Marks the span failed (status ERROR) with a short reason. */
SL_API void sl_span_fail(sl_span *s, const char *fmt, ...) SL_PRINTF(2, 3);
/* Ends (and frees) the span. */
SL_API void sl_span_end(sl_span *s);
/* Makes the span the current context until sl_span_leave(), so that work
 * started in between (queries, produce, further spans) nests under it.
 * Pairs must nest. */
SL_API void sl_span_enter(sl_span *s);
SL_API void sl_span_leave(sl_span *s);
/* Writes the traceparent of the current context into `buf`
 * (SL_TRACEPARENT_SIZE bytes), for a module that carries it with its data
 * (an outbox row).  Returns 0, or -1 when there is no current trace. */
SL_API int sl_trace_current(char *buf);
/* The same for a span (its own position). */
SL_API int sl_span_traceparent(const sl_span *s, char *buf);

/* ---------------------------------------------------------- introspection */

/* The whole metrics registry in the Prometheus text format 0.0.4.  Returns a
 * malloc'd string the caller frees, or NULL when out of memory. */
SL_API char *sl_metrics_text(sl_ctx *ctx, size_t *len);

/* Appends one object {"module","instance","ready","reason"} per running
 * instance to the JSON array `report`; returns 1 when every one is ready. */
SL_API int sl_readiness(sl_ctx *ctx, cJSON *report);

/* ------------------------------------------------------- resource tracking */

/*
 * Everything an instance owns is tracked through these; connectors use them
 * so that their handles are released with the instance like any timer, and
 * a module may track its own state the same way, so that nothing leaks even
 * when the core has to cut a drain short.  Release functions run newest
 * first, while the module is still loaded; a connector's must not call back
 * into module code.  An optional readiness probe contributes to /readyz.
 */
typedef struct sl_resource sl_resource;
typedef void (*sl_release_fn)(void *obj);
typedef int (*sl_ready_fn)(void *obj, char *why, size_t whylen);

SL_API sl_resource *sl_track(sl_ctx *ctx, const char *kind, void *obj, sl_release_fn release,
                             sl_ready_fn ready);
/* Forgets a resource the owner released itself. */
SL_API void sl_untrack(sl_ctx *ctx, sl_resource *res);

#endif
