/*
 * http_trace.c - a request's trace context, server span and log level;
 * see http_trace.h.  Attribute names are OpenTelemetry's HTTP semantic
 * conventions (v1.23+).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/keyvalq_struct.h>
#include "daemon/core.h"
#include "http_trace.h"

/* A method's place in sl_http_route_attrs, and its name in spans. */
static const char *const method_names[SL_HTTP_METHOD_SLOTS] = { "GET",    "POST", "PUT",   "PATCH",
                                                                "DELETE", "HEAD", "_OTHER" };

static unsigned method_slot(unsigned method)
{
    switch (method) {
    case SL_GET:
        return 0;
    case SL_POST:
        return 1;
    case SL_PUT:
        return 2;
    case SL_PATCH:
        return 3;
    case SL_DELETE:
        return 4;
    case SL_HEAD:
        return 5;
    default:
        return 6;
    }
}

void sl_http_route_attrs_free(sl_http_route_attrs *a)
{
    for (size_t i = 0; i < SL_HTTP_METHOD_SLOTS; i++)
        free(a->by_method[i].json);
    memset(a, 0, sizeof(*a));
}

/* The request headers read here, found in one pass over them: a lookup
 * for each walked every header again, with tracing on, three times. */
typedef struct {
    const char *traceparent, *tracestate, *agent, *level;
} trace_headers;

static void read_headers(struct evkeyvalq *in, trace_headers *h)
{
    memset(h, 0, sizeof(*h));
    for (struct evkeyval *kv = in->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
        const char **slot = NULL;
        switch (kv->key[0]) {
        case 't':
        case 'T':
            slot = strcasecmp(kv->key, "traceparent") == 0  ? &h->traceparent
                   : strcasecmp(kv->key, "tracestate") == 0 ? &h->tracestate
                                                            : NULL;
            break;
        case 'u':
        case 'U':
            slot = strcasecmp(kv->key, "User-Agent") == 0 ? &h->agent : NULL;
            break;
        case 'x':
        case 'X':
            slot = strcasecmp(kv->key, "X-Log-Level") == 0 ? &h->level : NULL;
            break;
        default:
            break;
        }
        /* The first of a repeated header, as evhttp_find_header() gives. */
        if (slot != NULL && *slot == NULL)
            *slot = kv->value;
    }
}

/* The server span's attributes that differ from one request to the next;
 * the route's own are encoded once per route (sl_http_trace_begin()). */
static sl_span_key k_path = { "url.path", 's', 0, "" },
                   k_agent = { "user_agent.original", 's', 0, "" },
                   k_client = { "client.address", 's', 0, "" },
                   k_port = { "client.port", 'i', 0, "" },
                   k_status = { "http.response.status_code", 'i', 0, "" };

/* The attributes every request of a route has alike with this method,
 * encoded at its first traced request: NULL when out of memory (each span
 * then sets its own). */
static const sl_span_attrs *route_attrs(sl_span_attrs *fixed, const char *verb, const char *route,
                                        const char *module)
{
    if (fixed->len > 0)
        return fixed;
    if (sl_span_attrs_add(fixed, "http.request.method", verb) != 0 ||
        sl_span_attrs_add(fixed, "url.scheme", "http") != 0 ||
        sl_span_attrs_add(fixed, "http.route", route) != 0 ||
        sl_span_attrs_add(fixed, "sluice.module", module) != 0) {
        free(fixed->json);
        memset(fixed, 0, sizeof(*fixed));
        return NULL;
    }
    return fixed;
}

/* The client's address and port, alike for every request of a connection,
 * encoded into `peer` (the connection's) at its first traced request.
 * NULL when the connection keeps none or memory ran out (each span then
 * sets its own). */
static const sl_span_attrs *peer_attrs(sl_span_attrs *peer, struct evhttp_connection *conn)
{
    char *addr = NULL;
    ev_uint16_t port = 0;

    if (peer == NULL || peer->len > 0)
        return peer;
    evhttp_connection_get_peer(conn, &addr, &port);
    if ((addr != NULL && sl_span_attrs_add(peer, "client.address", addr) != 0) ||
        sl_span_attrs_add_int(peer, "client.port", port) != 0) {
        free(peer->json);
        memset(peer, 0, sizeof(*peer));
        return NULL;
    }
    return peer;
}

static void open_span(sl_http_trace *t, struct evhttp_request *ev, const trace_headers *h,
                      unsigned method, const char *route, const char *path, const char *module,
                      sl_http_route_attrs *fixed, sl_span_attrs *peer)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(ev);
    sl_trace_ctx parent = { 0 };
    char name[SL_SPAN_NAME_MAX + 1], tp[SL_TP_LEN + 1];
    unsigned slot = method_slot(method);
    const char *verb = method_names[slot];
    const sl_span_attrs *same, *client;
    size_t vlen = strlen(verb), rlen = strnlen(route, sizeof(name) - vlen - 2);

    if (sl_tp_parse(h->traceparent, &parent.tp) == 0)
        parent.traced = 1;
    /* "METHOD ROUTE", copied: a formatted print costs more than the rest
     * of opening the span. */
    memcpy(name, verb, vlen);
    name[vlen] = ' ';
    memcpy(name + vlen + 1, route, rlen);
    name[vlen + 1 + rlen] = '\0';
    t->span = sl_span_begin(&parent, SL_SPAN_SERVER, name, &t->ctx.tp);
    t->ctx.traced = 1;
    sl_tp_format(&t->ctx.tp, tp);
    evhttp_add_header(evhttp_request_get_output_headers(ev), "traceparent", tp);
    if (t->span == NULL)
        return;
    /* The request's log lines become its span's events. */
    t->ctx.events = sl_trace_events_take(t->span);
    if (parent.traced)
        sl_span_tracestate(t->span, h->tracestate);
    same = route_attrs(&fixed->by_method[slot], verb, route, module);
    if (same != NULL) {
        sl_span_set_attrs(t->span, same);
    } else {
        sl_span_set_str(t->span, "http.request.method", verb);
        sl_span_set_str(t->span, "url.scheme", "http");
        sl_span_set_str(t->span, "http.route", route);
        sl_span_set_str(t->span, "sluice.module", module);
    }
    sl_span_put(t->span, &k_path, path);
    sl_span_put(t->span, &k_agent, h->agent);
    if (conn == NULL)
        return;
    client = peer_attrs(peer, conn);
    if (client != NULL) {
        sl_span_set_attrs(t->span, client);
    } else {
        char *addr = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(conn, &addr, &port);
        sl_span_put(t->span, &k_client, addr);
        sl_span_put_int(t->span, &k_port, port);
    }
}

void sl_http_trace_begin(sl_http_trace *t, struct evhttp_request *ev, unsigned method,
                         const char *route, const char *path, const char *module,
                         sl_http_route_attrs *fixed, sl_span_attrs *peer, const char *request_id)
{
    trace_headers h;

    read_headers(evhttp_request_get_input_headers(ev), &h);
    memset(t, 0, sizeof(*t));
    t->ctx.log_debug = h.level != NULL && strcasecmp(h.level, "debug") == 0;
    /* Copied, cut at SL_REQID_MAX: snprintf("%s") costs twice as much as
     * measuring and copying, on every request. */
    if (request_id != NULL) {
        size_t n = strnlen(request_id, SL_REQID_MAX);
        memcpy(t->ctx.request_id, request_id, n);
        t->ctx.request_id[n] = '\0';
    }
    if (sl_trace_on())
        open_span(t, ev, &h, method, route, path, module, fixed, peer);
}

void sl_http_trace_end(sl_http_trace *t, int status)
{
    if (t->span == NULL)
        return;
    sl_span_put_int(t->span, &k_status, status);
    /* Server spans fail on 5xx only: a 4xx is the client's error. */
    if (status >= 500)
        sl_span_fail(t->span, "%d", status);
    sl_span_end(t->span);
    t->span = NULL;
}
