/*
 * http.c - listeners, the route table and the request API of sluice.h.
 *
 * Every request is dispatched by one generic evhttp callback per listener.
 * The route table is a list, newest registration first, so that when a
 * successor instance registers the routes of the instance it replaces, it
 * wins at once and the old one only finishes what it already accepted.
 * Tables hold a few dozen routes; a linear scan costs less than a request's
 * parsing.
 *
 * A request handed to a module is tracked as a resource of its instance: if
 * the instance stops before answering, the core answers 503 for it.
 *
 * Before a module sees a request the core checks it at the edge, cheapest
 * and least revealing first: Host against allowed_hosts (421), the route
 * (404, 405), cross-site marks on anything but GET (403), the bearer token
 * against the route's scope (401, 403), the caller's rate (429), the body's
 * Content-Type (415) and size (413).  Every answer carries the request's
 * id, and every refusal is logged with it.  Every answer, served or
 * refused, is a line of the listener's access log (access_log.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <unistd.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <cjson/cJSON.h>
#include "daemon/core.h"
#include "daemon/log.h"
#include "http/http_trace.h"
#include "metrics/metrics.h"
#include "edge.h"
#include "http.h"
#include "http_int.h"
#include "ratelimit.h"
#include "router.h"
#include "tokens.h"

typedef struct route {
    struct route *next;
    unsigned methods;
    unsigned access;
    size_t max_body;
    char *pattern;
    sl_route_fn fn;
    void *arg;
    sl_ctx *ctx;
    sl_resource *res;
    sl_http_route_attrs span_attrs; /* its server spans' shared attributes */
} route;

struct sl_req {
    struct evhttp_request *ev;
    sl_ctx *ctx;
    sl_resource *res;
    char *module; /* metric labels, copied: the route may go first */
    char *pattern;
    unsigned method;
    char *path;
    sl_params params;
    struct evkeyvalq query;
    int query_parsed;
    char *body;
    size_t body_len;
    cJSON *json;
    double started;
    int status;
    int streaming;
    int gone;
    void (*more)(sl_req *req, void *arg);
    void *more_arg;
    char id[SL_REQUEST_ID_SIZE];
    char caller[72]; /* a token name is at most 64 characters */
    sl_http_trace trace;
    sl_access_log *alog; /* the listener's when it arrived, referenced */
    double wall;         /* when it arrived */
    size_t bytes;        /* of the answer's body so far */
};

static sl_listener *listeners;
static size_t replies_in_flight; /* answered, not yet fully written out */
static route *routes;
static sl_http_settings settings = { .max_body = 1024 * 1024, .max_header = 16384, .timeout = 30 };
static sl_rate rate;
static unsigned long long id_prefix;
static unsigned long long id_count;
static sl_metric *requests_total;
static sl_metric *request_seconds;
static sl_metric *auth_failures;

static const double latency_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                         0.05,   0.1,   0.25,   0.5,   1,    2.5 };

void sl_http_metrics_init(void)
{
    requests_total = sl_metric_register(SL_METRIC_COUNTER, "sluice_http_requests_total",
                                        "HTTP requests answered, by module, route and status code.",
                                        "module,route,code", NULL, 0, NULL);
    request_seconds =
            sl_metric_register(SL_METRIC_HISTOGRAM, "sluice_http_request_duration_seconds",
                               "Time from dispatch to the end of the answer, by module and route.",
                               "module,route", latency_bounds,
                               sizeof(latency_bounds) / sizeof(latency_bounds[0]), NULL);
    auth_failures = sl_metric_register(SL_METRIC_COUNTER, "sluice_http_auth_failures_total",
                                       "Requests refused for their credentials, by module and "
                                       "reason (missing, invalid, scope).",
                                       "module,reason", NULL, 0, NULL);
    sl_conn_metrics_init();
    /* Request ids are unique across restarts without a syscall per request. */
    if (getrandom(&id_prefix, sizeof(id_prefix), GRND_NONBLOCK) != sizeof(id_prefix))
        id_prefix = (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 32);
}

void sl_http_metrics_free(void)
{
    if (requests_total != NULL)
        sl_metric_release(requests_total);
    if (request_seconds != NULL)
        sl_metric_release(request_seconds);
    if (auth_failures != NULL)
        sl_metric_release(auth_failures);
    requests_total = request_seconds = auth_failures = NULL;
    sl_conn_metrics_free();
}

/* ---------------------------------------------------------------- replies */

static void req_free(sl_req *req)
{
    sl_access_log_put(req->alog);
    sl_params_free(&req->params);
    if (req->query_parsed)
        evhttp_clear_headers(&req->query);
    cJSON_Delete(req->json);
    free(req->body);
    free(req->module);
    free(req->pattern);
    free(req->path);
    free(req);
}

/* Counts an answer in sluice_http_requests_total. */
static void count(const char *module, const char *pattern, int status)
{
    char code[8];

    /* A status of three digits, written as such: snprintf("%d") cost
     * more than the rest of the count, on every request. */
    if (status >= 100 && status <= 999) {
        code[0] = (char)('0' + status / 100);
        code[1] = (char)('0' + status / 10 % 10);
        code[2] = (char)('0' + status % 10);
        code[3] = '\0';
    } else {
        snprintf(code, sizeof(code), "%d", status);
    }
    sl_series_add(sl_series_of(requests_total, module, pattern, code), 1);
}

static void account(sl_req *req)
{
    count(req->module, req->pattern, req->status);
    sl_series_observe(sl_series_of(request_seconds, req->module, req->pattern),
                      sl_now() - req->started);
}

static const char *peer_of(struct evhttp_request *ev);

/* One line of the access log, when the listener has one: `e` with the
 * client, method, trace id and token filled in here. */
static void access_line(sl_access_log *alog, struct evhttp_request *ev, sl_access_entry *e,
                        const sl_trace_ctx *trace)
{
    char trace_id[33] = "";

    if (alog == NULL)
        return;
    if (trace != NULL && trace->traced)
        sl_tp_hex(trace->tp.trace_id, 16, trace_id);
    e->client = peer_of(ev);
    switch (evhttp_request_get_command(ev)) {
    case EVHTTP_REQ_GET:
        e->method = "GET";
        break;
    case EVHTTP_REQ_POST:
        e->method = "POST";
        break;
    case EVHTTP_REQ_PUT:
        e->method = "PUT";
        break;
    case EVHTTP_REQ_DELETE:
        e->method = "DELETE";
        break;
    case EVHTTP_REQ_HEAD:
        e->method = "HEAD";
        break;
    default:
        e->method = "-";
        break;
    }
    e->trace_id = trace_id;
    if (settings.tokens == NULL)
        e->token = NULL; /* auth off: no caller to name */
    sl_access_log_write(alog, e);
}

void sl_http_access_early(const sl_listener *l, sl_access_entry *e)
{
    if (l->alog == NULL)
        return;
    e->module = "core";
    /* With auth on the field is there, unknown: no request was read. */
    e->token = settings.tokens != NULL ? "" : NULL;
    sl_access_log_write(l->alog, e);
}

/* The request is answered: forget it. */
static void req_done(sl_req *req)
{
    account(req);
    access_line(req->alog, req->ev,
                &(sl_access_entry){ .ts = req->wall,
                                    .path = req->path,
                                    .status = req->status,
                                    .bytes = req->bytes,
                                    .duration = sl_now() - req->started,
                                    .module = req->module,
                                    .route = req->pattern,
                                    .request_id = req->id,
                                    .token = req->caller },
                &req->trace.ctx);
    sl_http_trace_end(&req->trace, req->status);
    if (req->res != NULL)
        sl_untrack(req->ctx, req->res);
    req_free(req);
}

static void reply_written(struct evhttp_request *ev, void *arg)
{
    (void)ev;
    replies_in_flight--;
    sl_conn_idle(arg);
}

void sl_http_request_id(char *out)
{
    sl_edge_request_id_make(id_prefix, ++id_count, out);
}

size_t sl_http_replies_in_flight(void)
{
    return replies_in_flight;
}

/* Counts a reply until libevent has written all of it, so that shutdown
 * can wait for answers to reach their clients. */
static void watch_reply(struct evhttp_request *ev)
{
    replies_in_flight++;
    evhttp_request_set_on_complete_cb(ev, reply_written, sl_conn_find(ev));
}

static void send_body(sl_req *req, int status, const char *ctype, const void *body, size_t len)
{
    struct evbuffer *buf = evbuffer_new();
    struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);
    char length[24];

    if (evhttp_request_get_connection(req->ev) != NULL)
        watch_reply(req->ev);
    req->status = status;
    req->bytes += len;
    if (ctype != NULL)
        evhttp_add_header(out, "Content-Type", ctype);
    if (evhttp_request_get_command(req->ev) == EVHTTP_REQ_HEAD) {
        /* evhttp writes whatever body it is given, HEAD or not; the
         * length is what a GET would have sent. */
        snprintf(length, sizeof(length), "%zu", len);
        evhttp_add_header(out, "Content-Length", length);
        len = 0;
    }
    if (buf != NULL && evbuffer_add(buf, body, len) == 0) {
        evhttp_send_reply(req->ev, status, NULL, buf);
    } else {
        req->status = 500;
        evhttp_send_error(req->ev, 500, "out of memory");
    }
    if (buf != NULL)
        evbuffer_free(buf);
}

SL_API void sl_reply(sl_req *req, int status, const char *content_type, const void *body,
                     size_t len)
{
    send_body(req, status, content_type, body, len);
    req_done(req);
}

SL_API void sl_reply_json(sl_req *req, int status, cJSON *json)
{
    char *text = json != NULL ? cJSON_PrintUnformatted(json) : NULL;

    cJSON_Delete(json);
    if (text == NULL) {
        static const char oom[] = "{\"error\":\"out of memory\"}";
        sl_reply(req, 500, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    sl_reply(req, status, "application/json", text, strlen(text));
    free(text);
}

/* {"error": msg, "request_id": id}; NULL when out of memory. */
static char *error_json(const char *msg, const char *id)
{
    cJSON *obj = cJSON_CreateObject();
    char *text = NULL;

    if (obj != NULL && cJSON_AddStringToObject(obj, "error", msg) != NULL &&
        cJSON_AddStringToObject(obj, "request_id", id) != NULL)
        text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    return text;
}

static void reply_errorv(sl_req *req, int status, const char *fmt, va_list ap)
{
    static const char oom[] = "{\"error\":\"out of memory\"}";
    char msg[1024];
    char *text;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (status >= 500)
        sl_log_core(SL_LOG_WARN, req->module, "request %s: %s %s: %d %s", req->id,
                    evhttp_request_get_uri(req->ev), req->caller, status, msg);
    text = error_json(msg, req->id);
    if (text == NULL) {
        sl_reply(req, 500, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    sl_reply(req, status, "application/json", text, strlen(text));
    free(text);
}

SL_API void sl_reply_error(sl_req *req, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_errorv(req, status, fmt, ap);
    va_end(ap);
}

/* Answers outside of a sl_req: refusals at the edge, 404, 405 and friends.
 * Returns the answer's status and body size. */
static int plain_error(struct evhttp_request *ev, const char *id, int status, const char *msg,
                       size_t *bytes)
{
    static const char oom[] = "{\"error\":\"out of memory\"}";
    sl_req req = { .ev = ev };
    char *text = error_json(msg, id);

    if (text == NULL) {
        send_body(&req, 500, "application/json", oom, sizeof(oom) - 1);
    } else {
        send_body(&req, status, "application/json", text, strlen(text));
        free(text);
    }
    *bytes = req.bytes;
    return req.status;
}

SL_API void sl_reply_header(sl_req *req, const char *name, const char *value)
{
    evhttp_add_header(evhttp_request_get_output_headers(req->ev), name, value);
}

static void chunk_written(struct evhttp_connection *conn, void *arg)
{
    sl_req *req = arg;
    (void)conn;
    if (req->more != NULL && !req->gone)
        req->more(req, req->more_arg);
}

SL_API void sl_reply_start(sl_req *req, int status, const char *content_type,
                           void (*more)(sl_req *req, void *arg), void *arg)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req->ev);

    req->status = status;
    req->streaming = 1;
    req->more = more;
    req->more_arg = arg;
    if (content_type != NULL)
        evhttp_add_header(evhttp_request_get_output_headers(req->ev), "Content-Type", content_type);
    if (conn == NULL) {
        req->gone = 1;
    } else {
        watch_reply(req->ev);
        /* HEAD gets the headers only: the module sees the client as gone
         * and stops producing. */
        if (req->method == SL_HEAD)
            req->gone = 1;
        else
            sl_conn_watch_close(sl_conn_find(req->ev), &req->gone);
    }
    evhttp_send_reply_start(req->ev, status, NULL);
}

SL_API void sl_reply_chunk(sl_req *req, const void *data, size_t len)
{
    struct evbuffer *buf;

    if (req->gone || len == 0)
        return;
    buf = evbuffer_new();
    if (buf == NULL || evbuffer_add(buf, data, len) != 0) {
        /* Nothing sensible can follow a lost chunk: end the stream short. */
        req->gone = 1;
    } else {
        req->bytes += len;
        evhttp_send_reply_chunk_with_cb(req->ev, buf, chunk_written, req);
    }
    if (buf != NULL)
        evbuffer_free(buf);
}

SL_API void sl_reply_end(sl_req *req)
{
    if (!req->gone)
        sl_conn_watch_close(sl_conn_find(req->ev), NULL);
    evhttp_send_reply_end(req->ev);
    req_done(req);
}

SL_API int sl_req_gone(const sl_req *req)
{
    return req->gone;
}

/* The instance stopped before answering: the core answers for it. */
static void release_request(void *obj)
{
    sl_req *req = obj;

    req->res = NULL; /* the tracker is freeing it */
    if (req->streaming) {
        sl_reply_end(req);
        return;
    }
    sl_reply_error(req, 503, "module %s stopped before answering", req->module);
}

/* ---------------------------------------------------------------- requests */

SL_API unsigned sl_req_method(const sl_req *req)
{
    return req->method;
}

SL_API const char *sl_req_path(const sl_req *req)
{
    return req->path;
}

SL_API const char *sl_req_param(const sl_req *req, const char *name)
{
    return sl_params_get(&req->params, name);
}

SL_API const char *sl_req_query(const sl_req *req, const char *name)
{
    sl_req *mut = (sl_req *)req; /* parsed lazily: most handlers never ask */

    if (!mut->query_parsed) {
        const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req->ev));
        TAILQ_INIT(&mut->query);
        mut->query_parsed = 1;
        if (q != NULL && evhttp_parse_query_str(q, &mut->query) != 0) {
            evhttp_clear_headers(&mut->query);
            TAILQ_INIT(&mut->query);
        }
    }
    return evhttp_find_header(&mut->query, name);
}

SL_API const char *sl_req_header(const sl_req *req, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(req->ev), name);
}

SL_API const char *sl_req_id(const sl_req *req)
{
    return req->id;
}

SL_API const char *sl_req_caller(const sl_req *req)
{
    return req->caller;
}

SL_API const char *sl_req_body(sl_req *req, size_t *len)
{
    size_t ignored;

    if (len == NULL)
        len = &ignored;
    if (req->body == NULL) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req->ev);
        size_t n = evbuffer_get_length(in);
        req->body = malloc(n + 1);
        if (req->body == NULL) {
            *len = 0;
            return "";
        }
        evbuffer_copyout(in, req->body, n);
        req->body[n] = '\0';
        req->body_len = n;
    }
    *len = req->body_len;
    return req->body;
}

SL_API cJSON *sl_req_json(sl_req *req)
{
    size_t len;
    const char *body = sl_req_body(req, &len);
    const char *end = NULL;

    if (req->json != NULL)
        return req->json;
    if (len == 0) {
        sl_reply_error(req, 400, "request body must be a JSON object, got an empty body");
        return NULL;
    }
    req->json = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (req->json == NULL) {
        size_t at = end != NULL && end >= body ? (size_t)(end - body) : 0;
        sl_reply_error(req, 400, "malformed JSON body near byte %zu", at);
        return NULL;
    }
    if (!cJSON_IsObject(req->json)) {
        sl_reply_error(req, 400, "request body must be a JSON object");
        return NULL;
    }
    return req->json;
}

/* ---------------------------------------------------------------- routing */

static unsigned method_of(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return SL_GET;
    case EVHTTP_REQ_POST:
        return SL_POST;
    case EVHTTP_REQ_PUT:
        return SL_PUT;
    case EVHTTP_REQ_DELETE:
        return SL_DELETE;
    case EVHTTP_REQ_HEAD:
        return SL_HEAD;
    case EVHTTP_REQ_PATCH:
        return SL_PATCH;
    default:
        return 0;
    }
}

static int served_on(const route *r, const sl_listener *l)
{
    if (r->ctx->nlisteners == 0)
        return l->core;
    for (size_t i = 0; i < r->ctx->nlisteners; i++)
        if (r->ctx->listeners[i] == l)
            return 1;
    return 0;
}

static void allow_header(struct evhttp_request *ev, unsigned methods)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = { { SL_GET, "GET" }, { SL_HEAD, "HEAD" },   { SL_POST, "POST" },
                  { SL_PUT, "PUT" }, { SL_PATCH, "PATCH" }, { SL_DELETE, "DELETE" } };
    char allow[64] = "";

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (methods & names[i].bit) {
            if (allow[0] != '\0')
                strcat(allow, ", ");
            strcat(allow, names[i].name);
        }
    }
    evhttp_add_header(evhttp_request_get_output_headers(ev), "Allow", allow);
}

/* What the edge knows of a request before a module sees it. */
typedef struct {
    struct evhttp_request *ev;
    sl_listener *l;
    sl_conn *conn;      /* NULL when untracked; valid while dispatch() runs */
    const char *module; /* metric labels: "core", "unmatched" until routed */
    const char *pattern;
    char id[SL_REQUEST_ID_SIZE];
    char caller[72];
    double started, wall; /* when it arrived: monotonic, wall clock */
} edge;

static const char *peer_of(struct evhttp_request *ev)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
    char *host = NULL;
    ev_uint16_t port;

    if (evcon != NULL)
        evhttp_connection_get_peer(evcon, &host, &port);
    return host != NULL ? host : "-";
}

/* Answers a request the edge refuses, and logs why with its id: the
 * client gets `msg`, the log also `why` when the two differ. */
static void refuse(const edge *e, int status, const char *msg, const char *why)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(e->ev);
    size_t bytes;
    int sent;

    sl_log_core(status == 404 || status == 405 || status == 429 ? SL_LOG_DEBUG : SL_LOG_INFO,
                "http", "request %s from %s (%s): %s %s refused %d: %s", e->id, peer_of(e->ev),
                e->caller, e->l->addr, evhttp_request_get_uri(e->ev), status,
                why != NULL ? why : msg);
    sent = plain_error(e->ev, e->id, status, msg, &bytes);
    count(e->module, e->pattern, status);
    access_line(e->l->alog, e->ev,
                &(sl_access_entry){ .ts = e->wall,
                                    .path = uri != NULL ? evhttp_uri_get_path(uri) : NULL,
                                    .status = sent,
                                    .bytes = bytes,
                                    .duration = sl_now() - e->started,
                                    .module = e->module,
                                    .route = e->pattern,
                                    .request_id = e->id,
                                    .token = e->caller },
                NULL);
}

static void auth_failed(const edge *e, const char *reason, int status, const char *challenge,
                        const char *msg)
{
    sl_series_add(sl_series_of(auth_failures, e->module, reason), 1);
    evhttp_add_header(evhttp_request_get_output_headers(e->ev), "WWW-Authenticate", challenge);
    refuse(e, status, msg, NULL);
}

static unsigned token_bit(unsigned scope)
{
    switch (scope) {
    case SL_SCOPE_READ:
        return SL_TOKEN_READ;
    case SL_SCOPE_WRITE:
        return SL_TOKEN_WRITE;
    default:
        return SL_TOKEN_ADMIN;
    }
}

static const char *scope_name(unsigned scope)
{
    return scope == SL_SCOPE_READ ? "read" : scope == SL_SCOPE_WRITE ? "write" : "admin";
}

/* Checks the caller's credentials against the route's scope; fills
 * e->caller.  Returns 0, or -1 after refusing the request. */
static int authorize(edge *e, unsigned scope)
{
    const char *header =
            evhttp_find_header(evhttp_request_get_input_headers(e->ev), "Authorization");
    const char *secret, *name;
    unsigned granted = 0;
    size_t len = 0;
    char msg[96];

    if (scope == SL_SCOPE_OPEN || e->l->anonymous || settings.tokens == NULL)
        return 0;
    secret = sl_edge_bearer(header, &len);
    if (secret == NULL) {
        auth_failed(e, header == NULL ? "missing" : "invalid", 401, "Bearer realm=\"sluice\"",
                    header == NULL ? "this route needs a bearer token"
                                   : "the Authorization header is not a bearer token");
        return -1;
    }
    name = sl_tokens_find(settings.tokens, secret, len, &granted);
    if (name == NULL) {
        auth_failed(e, "invalid", 401, "Bearer realm=\"sluice\", error=\"invalid_token\"",
                    "unknown bearer token");
        return -1;
    }
    snprintf(e->caller, sizeof(e->caller), "%s", name);
    if (!(granted & token_bit(scope))) {
        snprintf(msg, sizeof(msg), "token %s lacks the %s scope", name, scope_name(scope));
        auth_failed(e, "scope", 403, "Bearer realm=\"sluice\", error=\"insufficient_scope\"", msg);
        return -1;
    }
    return 0;
}

/* The edge's checks of a routed request; 0 when it may be served. */
static int admit(edge *e, const route *r, unsigned method)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(e->ev);
    size_t body = evbuffer_get_length(evhttp_request_get_input_buffer(e->ev));
    size_t max_body =
            r->max_body != 0 && r->max_body < settings.max_body ? r->max_body : settings.max_body;
    unsigned scope = r->access & SL_SCOPE_MASK;
    char msg[128];
    long wait;

    if (!(method & (SL_GET | SL_HEAD)) &&
        sl_edge_cross_site(evhttp_find_header(in, "Sec-Fetch-Site"),
                           evhttp_find_header(in, "Origin"), e->l->tls != NULL ? "https" : "http",
                           evhttp_find_header(in, "Host"))) {
        refuse(e, 403, "cross-site request refused", NULL);
        return -1;
    }
    if (authorize(e, scope) != 0)
        return -1;
    if (scope != SL_SCOPE_OPEN &&
        (wait = sl_rate_take(&rate,
                             strcmp(e->caller, "anonymous") != 0 ? e->caller : peer_of(e->ev),
                             sl_now())) > 0) {
        snprintf(msg, sizeof(msg), "%ld", wait);
        evhttp_add_header(evhttp_request_get_output_headers(e->ev), "Retry-After", msg);
        refuse(e, 429, "too many requests", NULL);
        return -1;
    }
    if (body > 0 && !(method & (SL_GET | SL_HEAD)) && !(r->access & SL_ROUTE_ANY_BODY) &&
        !sl_edge_is_json(evhttp_find_header(in, "Content-Type"))) {
        refuse(e, 415, "the request body must be sent as Content-Type: application/json", NULL);
        return -1;
    }
    if (body > max_body) {
        snprintf(msg, sizeof(msg), "request body of %zu bytes is over the limit of %zu", body,
                 max_body);
        refuse(e, 413, msg, NULL);
        return -1;
    }
    return 0;
}

static void serve(edge *e, route *r, const char *path, sl_params *params, unsigned method)
{
    sl_trace_ctx saved;
    sl_req *req;

    e->module = r->ctx->label;
    e->pattern = r->pattern;
    if (admit(e, r, method) != 0) {
        sl_params_free(params);
        return;
    }
    req = calloc(1, sizeof(*req));
    if (req == NULL || (req->module = strdup(r->ctx->label)) == NULL ||
        (req->pattern = strdup(r->pattern)) == NULL || (req->path = strdup(path)) == NULL) {
        if (req != NULL)
            req_free(req);
        sl_params_free(params);
        refuse(e, 500, "out of memory", NULL);
        return;
    }
    req->ev = e->ev;
    req->ctx = r->ctx;
    req->method = method;
    req->params = *params;
    req->started = e->started;
    req->wall = e->wall;
    req->alog = e->l->alog;
    sl_access_log_ref(req->alog);
    memcpy(req->id, e->id, sizeof(req->id));
    memcpy(req->caller, e->caller, sizeof(req->caller));
    req->res = sl_track(r->ctx, "request", req, release_request, NULL);
    sl_http_trace_begin(&req->trace, e->ev, method, r->pattern, path, r->ctx->label, &r->span_attrs,
                        sl_conn_span_attrs(e->conn), e->id);
    sl_trace_enter(&req->trace.ctx, &saved);
    r->fn(req, r->arg);
    sl_trace_restore(&saved);
}

static void dispatch(struct evhttp_request *ev, void *arg)
{
    sl_listener *l = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    const char *given = evhttp_find_header(evhttp_request_get_input_headers(ev), "X-Request-Id");
    unsigned method = method_of(evhttp_request_get_command(ev));
    unsigned allowed = 0;
    route *stopping = NULL;
    sl_params params;
    edge e = { .ev = ev,
               .l = l,
               .module = "core",
               .pattern = "unmatched",
               .caller = "anonymous",
               .started = sl_now(),
               .wall = sl_wall() };

    e.conn = sl_conn_find(ev);
    sl_conn_busy(e.conn);
    if (sl_edge_request_id_sane(given))
        memcpy(e.id, given, strlen(given) + 1); /* sane: it fits */
    else
        sl_edge_request_id_make(id_prefix, ++id_count, e.id);
    evhttp_add_header(evhttp_request_get_output_headers(ev), "X-Request-Id", e.id);
    if (l->nallowed_hosts > 0 &&
        !sl_edge_host_allowed(evhttp_find_header(evhttp_request_get_input_headers(ev), "Host"),
                              (const char *const *)l->allowed_hosts, l->nallowed_hosts)) {
        refuse(&e, 421, "this host name is not served here", NULL);
        return;
    }
    if (path == NULL || path[0] == '\0')
        path = "/";
    for (route *r = routes; r != NULL; r = r->next) {
        if (!served_on(r, l))
            continue;
        int m = sl_route_match(r->pattern, path, &params);
        if (m < 0) {
            refuse(&e, 400, "invalid percent-encoding in path", NULL);
            return;
        }
        if (m == 0)
            continue;
        if (!(r->methods & method) || r->ctx->state != SL_INST_RUNNING) {
            if (r->methods & method)
                stopping = stopping != NULL ? stopping : r;
            else
                allowed |= r->methods;
            sl_params_free(&params);
            continue;
        }
        serve(&e, r, path, &params, method);
        return;
    }
    if (stopping != NULL) {
        refuse(&e, 503, "the module serving this route is restarting", NULL);
    } else if (allowed != 0) {
        allow_header(ev, allowed);
        refuse(&e, 405, "method not allowed", NULL);
    } else {
        refuse(&e, 404, "no such route", NULL);
    }
}

static void release_route(void *obj)
{
    route *r = obj;

    for (route **pp = &routes; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    sl_http_route_attrs_free(&r->span_attrs);
    free(r->pattern);
    free(r);
}

SL_API int sl_route_scoped(sl_ctx *ctx, unsigned methods, const char *pattern, unsigned access,
                           size_t max_body, sl_route_fn fn, void *arg)
{
    if (sl_ctx_refuse(ctx, "a route"))
        return -1;
    route *r;

    if (!sl_route_pattern_valid(pattern) || methods == 0 || fn == NULL ||
        (access & SL_SCOPE_MASK) > SL_SCOPE_WRITE ||
        (access & ~(SL_SCOPE_MASK | SL_ROUTE_ANY_BODY))) {
        sl_log(ctx, SL_LOG_ERROR, "invalid route '%s'", pattern != NULL ? pattern : "(null)");
        return -1;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL || (r->pattern = strdup(pattern)) == NULL) {
        free(r);
        return -1;
    }
    /* HEAD is answered wherever GET is, as HTTP expects. */
    r->methods = methods & SL_GET ? methods | SL_HEAD : methods;
    r->access = access;
    r->max_body = max_body;
    r->fn = fn;
    r->arg = arg;
    r->ctx = ctx;
    r->res = sl_track(ctx, "route", r, release_route, NULL);
    if (r->res == NULL) {
        free(r->pattern);
        free(r);
        return -1;
    }
    r->next = routes;
    routes = r;
    return 0;
}

SL_API int sl_route(sl_ctx *ctx, unsigned methods, const char *pattern, sl_route_fn fn, void *arg)
{
    return sl_route_scoped(ctx, methods, pattern, SL_SCOPE_ADMIN, 0, fn, arg);
}

/* -------------------------------------------------------------- listeners */

static int split_addr(const char *addr, char *host, size_t hostlen, unsigned short *port)
{
    const char *colon = strrchr(addr, ':');
    char *end;
    long p;

    if (colon == NULL)
        return -1;
    p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || p < 1 || p > 65535)
        return -1;
    if (colon == addr) {
        snprintf(host, hostlen, "127.0.0.1");
    } else {
        size_t n = (size_t)(colon - addr);
        if (addr[0] == '[' && colon[-1] == ']') {
            addr++;
            n -= 2;
        }
        if (n >= hostlen)
            return -1;
        memcpy(host, addr, n);
        host[n] = '\0';
    }
    *port = (unsigned short)p;
    return 0;
}

static void apply_settings(struct evhttp *http)
{
    double t = settings.timeout;

    evhttp_set_max_body_size(http, (ev_ssize_t)settings.max_body);
    evhttp_set_max_headers_size(http, (ev_ssize_t)settings.max_header);
    /* evhttp's own timeout is one of inactivity; it still bounds a reply
     * the client does not read.  The whole-request deadline is
     * http_conn.c's. */
    evhttp_set_timeout_tv(http,
                          &(struct timeval){ .tv_sec = (time_t)t,
                                             .tv_usec = (suseconds_t)((t - (time_t)t) * 1e6) });
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                             EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
                                             EVHTTP_REQ_HEAD);
}

void sl_http_configure(const sl_http_settings *s)
{
    int rate_changed = s->rate != settings.rate || s->burst != settings.burst;

    settings = *s;
    if (rate_changed)
        sl_rate_configure(&rate, s->rate, s->burst);
    sl_conn_set_limits(s->timeout, s->max_header);
    for (sl_listener *l = listeners; l != NULL; l = l->next)
        apply_settings(l->http);
}

static void free_hosts(sl_listener *l)
{
    for (size_t i = 0; i < l->nallowed_hosts; i++)
        free(l->allowed_hosts[i]);
    free(l->allowed_hosts);
    l->allowed_hosts = NULL;
    l->nallowed_hosts = 0;
}

int sl_listener_configure(sl_listener *l, const sl_listen_settings *s)
{
    char **hosts = s->nallowed_hosts ? calloc(s->nallowed_hosts, sizeof(*hosts)) : NULL;

    if (s->nallowed_hosts > 0 && hosts == NULL)
        return -1;
    for (size_t i = 0; i < s->nallowed_hosts; i++) {
        if ((hosts[i] = strdup(s->allowed_hosts[i])) == NULL) {
            while (i > 0)
                free(hosts[--i]);
            free(hosts);
            return -1;
        }
    }
    free_hosts(l);
    l->allowed_hosts = hosts;
    l->nallowed_hosts = s->nallowed_hosts;
    l->anonymous = s->anonymous;
    l->max_connections = s->max_connections;
    if (s->tls != NULL)
        sl_tls_ref(s->tls);
    sl_tls_put(l->tls);
    l->tls = s->tls;
    sl_access_log_ref(s->access_log);
    sl_access_log_put(l->alog);
    l->alog = s->access_log;
    return 0;
}

sl_listener *sl_listener_get(const char *addr, sl_errors *errs)
{
    char host[256];
    unsigned short port;
    sl_listener *l;

    for (l = listeners; l != NULL; l = l->next) {
        if (strcmp(l->addr, addr) == 0) {
            l->refs++;
            return l;
        }
    }
    if (split_addr(addr, host, sizeof(host), &port) != 0) {
        sl_errors_add(errs, NULL, 0, "listen address '%s' is not host:port", addr);
        return NULL;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL || (l->addr = strdup(addr)) == NULL || (l->http = evhttp_new(sl_base)) == NULL) {
        sl_errors_add(errs, NULL, 0, "out of memory binding %s", addr);
        goto fail;
    }
    apply_settings(l->http);
    evhttp_set_gencb(l->http, dispatch, l);
    sl_conn_attach(l);
    if (evhttp_bind_socket_with_handle(l->http, host, port) == NULL) {
        sl_errors_add(errs, NULL, 0, "cannot listen on %s: %s", addr, strerror(errno));
        goto fail;
    }
    l->refs = 1;
    l->next = listeners;
    listeners = l;
    sl_log_core(SL_LOG_INFO, "core", "listening on %s", addr);
    return l;

fail:
    if (l != NULL) {
        if (l->http != NULL)
            evhttp_free(l->http);
        free(l->addr);
        free(l);
    }
    return NULL;
}

void sl_listener_ref(sl_listener *l)
{
    l->refs++;
}

void sl_listener_put(sl_listener *l)
{
    if (--l->refs > 0)
        return;
    for (sl_listener **pp = &listeners; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    sl_log_core(SL_LOG_INFO, "core", "closed listener %s", l->addr);
    evhttp_free(l->http);
    free_hosts(l);
    sl_tls_put(l->tls);
    sl_access_log_put(l->alog);
    free(l->addr);
    free(l);
}

const char *sl_listener_addr(const sl_listener *l)
{
    return l->addr;
}

void sl_listeners_set_core(sl_listener *const *ls, size_t n)
{
    for (sl_listener *l = listeners; l != NULL; l = l->next) {
        l->core = 0;
        for (size_t i = 0; i < n; i++)
            if (ls[i] == l)
                l->core = 1;
    }
}
