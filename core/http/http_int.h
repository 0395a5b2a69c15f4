/*
 * http_int.h - what the HTTP files of the core share: a listener, and the
 * connections accepted on it (http_conn.c).  Not for modules.
 */
#ifndef SL_HTTP_INT_H
#define SL_HTTP_INT_H

#include <stddef.h>
#include <event2/event.h>
#include <event2/http.h>
#include "trace/trace.h"
#include "http.h"
#include "tls.h"

typedef struct sl_conn sl_conn;

struct sl_listener {
    sl_listener *next;
    char *addr;
    struct evhttp *http;
    int refs;
    int core;
    /* From the section that names the address (sl_listener_configure). */
    int anonymous;
    size_t max_connections;
    char **allowed_hosts;
    size_t nallowed_hosts;
    sl_tls *tls;
    sl_access_log *alog; /* NULL: none */
    size_t nconns;       /* connections open now */
};

/* Makes `l` create the bufferevent of every connection it accepts (plain
 * or TLS, as l->tls says when the connection arrives), so that each is
 * counted, bounded by l->max_connections and given a deadline. */
void sl_conn_attach(sl_listener *l);

/* The connection a request arrived on, or NULL when it is gone (the
 * client left while the request was being answered).  Look it up when
 * needed rather than keeping it: it may go at any time. */
sl_conn *sl_conn_find(struct evhttp_request *ev);
/* A request on the connection is being answered: its deadline stops. */
void sl_conn_busy(sl_conn *c);
/* An answer on the connection is written out: when it was the last, the
 * deadline for the next request starts.  NULL does nothing. */
void sl_conn_idle(sl_conn *c);
/* The server-span attributes of the connection's client, for
 * sl_http_trace_begin(): empty until its first traced request, freed
 * with the connection.  NULL for NULL `c`. */
sl_span_attrs *sl_conn_span_attrs(sl_conn *c);
/* A streamed reply on the connection learns when the client goes away:
 * `*gone` is set to 1 then (NULL to stop).  NULL `c` does nothing. */
void sl_conn_watch_close(sl_conn *c, int *gone);

/* The deadline of one request, from [core] request_timeout, and the bound
 * of its request line and headers, from max_header_size (431 beyond). */
void sl_conn_set_limits(double seconds, size_t max_header);

/* Writes a fresh request id (SL_REQUEST_ID_SIZE bytes) into `out`, for an
 * answer given before a request is dispatched. */
void sl_http_request_id(char *out);

/* The access log line of an answer written before any request was
 * dispatched on the connection (http_conn.c's refusals), when the
 * listener keeps a log: `e` with the module ("core") and the token field
 * filled in here. */
void sl_http_access_early(const sl_listener *l, sl_access_entry *e);

/* Registers the connection metrics; once at start. */
void sl_conn_metrics_init(void);
void sl_conn_metrics_free(void);

#endif
