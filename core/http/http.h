/*
 * http.h - HTTP listeners and the route table, on the shared loop (evhttp).
 *
 * Listeners are shared by address and reference counted: a generation holds
 * references on the addresses of [core] listen, an instance on those of its
 * own `listen`.  A reload that keeps an address keeps its socket open, so no
 * request is refused.  Routes are registered by instances (sl_route) and
 * released with them.
 */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include <stddef.h>
#include "conf/errors.h"
#include "access_log.h"
#include "tls.h"
#include "tokens.h"

typedef struct sl_listener sl_listener;

/* A reference to the listener bound to `addr` ("host:port", or ":port"
 * meaning 127.0.0.1), binding it if no listener has that address yet.
 * NULL after appending the reason to `errs`. */
sl_listener *sl_listener_get(const char *addr, sl_errors *errs);
void sl_listener_ref(sl_listener *l);
/* Drops a reference; the last one closes the socket. */
void sl_listener_put(sl_listener *l);
const char *sl_listener_addr(const sl_listener *l);

/* Marks exactly these listeners as the [core] ones, served with the routes
 * of instances without their own `listen`. */
void sl_listeners_set_core(sl_listener *const *ls, size_t n);

/* Settings from [core] applied to every listener, present and future. */
typedef struct {
    size_t max_body;   /* bytes; also the bound of every route's own limit */
    size_t max_header; /* bytes of request line and headers */
    double timeout;    /* seconds a client has to send one whole request */
    double rate;       /* requests per second per caller; 0: no limit */
    double burst;
    const sl_tokens *tokens; /* borrowed from the generation; NULL: none */
} sl_http_settings;
void sl_http_configure(const sl_http_settings *s);

/* Settings of one listener, from the section whose `listen` names it. */
typedef struct {
    int anonymous;              /* serve every route without credentials */
    size_t max_connections;     /* 0: no cap */
    char *const *allowed_hosts; /* Host names served; none: any */
    size_t nallowed_hosts;
    sl_tls *tls;               /* NULL: plain HTTP; the listener takes a reference */
    sl_access_log *access_log; /* NULL: none; the listener takes a reference */
} sl_listen_settings;
/* Applies to connections accepted from now on (and to the requests of
 * those open, for anonymous and allowed_hosts).  Returns 0, or -1 when out
 * of memory with the listener unchanged. */
int sl_listener_configure(sl_listener *l, const sl_listen_settings *s);

/* Answers handed to libevent but not yet written out completely; a
 * connection that breaks first may never complete, so waiters bound it. */
size_t sl_http_replies_in_flight(void);

/* Registers the core's HTTP metrics; once at start. */
void sl_http_metrics_init(void);
void sl_http_metrics_free(void);

#endif
