/*
 * edge.h - the checks a request passes at the HTTP edge, before any module
 * sees it: request ids, the Authorization header, Content-Type, Origin and
 * Host.  Pure functions of their arguments (no I/O, no globals), so they
 * are unit-tested and fuzzed on their own; http.c applies them.
 */
#ifndef SL_EDGE_H
#define SL_EDGE_H

#include <stddef.h>

/* The longest request id taken from a client, and the buffer a request id
 * needs (with its NUL). */
#define SL_REQUEST_ID_MAX 64
#define SL_REQUEST_ID_SIZE (SL_REQUEST_ID_MAX + 1)

/* 1 when a client's X-Request-Id may be adopted as is: 1 to
 * SL_REQUEST_ID_MAX characters of [A-Za-z0-9._:-], so that it can go into
 * a log line, a header and a JSON string without escaping. */
int sl_edge_request_id_sane(const char *id);

/* Writes the id of the `n`th request of a process whose random prefix is
 * `prefix` ("<16 hex>-<16 hex>") into `out` (SL_REQUEST_ID_SIZE bytes). */
void sl_edge_request_id_make(unsigned long long prefix, unsigned long long n, char *out);

/* The credential of "Authorization: Bearer <token>": a pointer into
 * `header` and its length in `len`, or NULL when the header is absent,
 * another scheme, or the token is empty or holds characters RFC 6750's
 * b64token does not allow. */
const char *sl_edge_bearer(const char *header, size_t *len);

/* 1 when a Content-Type names JSON: application/json or application/NAME+json,
 * any case, optionally followed by parameters (";charset=utf-8"). */
int sl_edge_is_json(const char *content_type);

/* 1 when a browser marked the request as coming from another site: either
 * Sec-Fetch-Site is "cross-site", or an Origin is present that is not
 * `scheme`://`host` (host as in the request's Host header; "null" is
 * another site).  Either header may be NULL. */
int sl_edge_cross_site(const char *sec_fetch_site, const char *origin, const char *scheme,
                       const char *host);

/* 1 when `host` (a Host header, with or without ":port") names one of the
 * `n` allowed names; an allowed name matches with any port, an allowed
 * "name:port" only that port.  Case-insensitive.  NULL host: 0. */
int sl_edge_host_allowed(const char *host, const char *const *allowed, size_t n);

/* 1 when the host part of a listen address ("127.0.0.1", "[::1]",
 * "localhost") is a loopback address; 0 for anything else, names included. */
int sl_edge_loopback(const char *host);

#endif
