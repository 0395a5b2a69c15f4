/*
 * http_trace.c - a request's trace context, server span and log level;
 * see http_trace.h.  Attribute names are OpenTelemetry's HTTP semantic
 * conventions (v1.23+).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <event2/keyvalq_struct.h>
#include "daemon/core.h"
#include "http_trace.h"

static const char *method_name(unsigned method)
{
    switch (method) {
    case SL_GET:
        return "GET";
    case SL_POST:
        return "POST";
    case SL_PUT:
        return "PUT";
    case SL_PATCH:
        return "PATCH";
    case SL_DELETE:
        return "DELETE";
    case SL_HEAD:
        return "HEAD";
    default:
        return "_OTHER";
    }
}

static void open_span(sl_http_trace *t, struct evhttp_request *ev, unsigned method,
                      const char *route, const char *path, const char *module)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(ev);
    struct evhttp_connection *conn = evhttp_request_get_connection(ev);
    sl_trace_ctx parent = { 0 };
    char name[SL_SPAN_NAME_MAX + 1], tp[SL_TP_LEN + 1];
    const char *agent = evhttp_find_header(in, "User-Agent");
    const char *verb = method_name(method);
    size_t vlen = strlen(verb), rlen = strnlen(route, sizeof(name) - vlen - 2);

    if (sl_tp_parse(evhttp_find_header(in, "traceparent"), &parent.tp) == 0)
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
        sl_span_tracestate(t->span, evhttp_find_header(in, "tracestate"));
    sl_span_set_str(t->span, "http.request.method", method_name(method));
    sl_span_set_str(t->span, "url.path", path);
    sl_span_set_str(t->span, "url.scheme", "http");
    sl_span_set_str(t->span, "http.route", route);
    sl_span_set_str(t->span, "sluice.module", module);
    if (agent != NULL)
        sl_span_set_str(t->span, "user_agent.original", agent);
    if (conn != NULL) {
        const char *addr = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(conn, (char **)&addr, &port);
        if (addr != NULL)
            sl_span_set_str(t->span, "client.address", addr);
        sl_span_set_int(t->span, "client.port", port);
    }
}

void sl_http_trace_begin(sl_http_trace *t, struct evhttp_request *ev, unsigned method,
                         const char *route, const char *path, const char *module,
                         const char *request_id)
{
    const char *level = evhttp_find_header(evhttp_request_get_input_headers(ev), "X-Log-Level");

    memset(t, 0, sizeof(*t));
    t->ctx.log_debug = level != NULL && strcasecmp(level, "debug") == 0;
    if (request_id != NULL)
        snprintf(t->ctx.request_id, sizeof(t->ctx.request_id), "%s", request_id);
    if (sl_trace_on())
        open_span(t, ev, method, route, path, module);
}

void sl_http_trace_end(sl_http_trace *t, int status)
{
    if (t->span == NULL)
        return;
    sl_span_set_int(t->span, "http.response.status_code", status);
    /* Server spans fail on 5xx only: a 4xx is the client's error. */
    if (status >= 500)
        sl_span_fail(t->span, "%d", status);
    sl_span_end(t->span);
    t->span = NULL;
}
