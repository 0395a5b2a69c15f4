/*
 * chttp.h - libcurl's multi interface on the daemon's loop.
 *
 * One sl_chttp is one curl multi handle: its own connection cache (kept
 * alive between requests) and its own limit on connections.  Transfers are
 * easy handles the caller configures and owns; this file only runs them
 * and says when each has finished.  Everything happens on the loop thread:
 * curl is driven by socket and timer events (curl's
 * docs/examples/hiperfifo.c shape), never by a thread of its own.
 */
#ifndef SL_CHTTP_H
#define SL_CHTTP_H

#include <curl/curl.h>
#include <event2/event.h>

typedef struct sl_chttp sl_chttp;

/* curl_global_init(), once per process, by whichever section needs curl
 * first: it is not thread-safe against other libraries' set-up, so it runs
 * before modules start.  Returns 0, or -1 with the reason in `err`. */
int sl_chttp_global_init(char *err, size_t errlen);
/* At exit, after every sl_chttp was freed; a second call does nothing. */
void sl_chttp_global_cleanup(void);

/* A finished transfer: `result` is curl's code for it.  The easy handle has
 * already been taken off the multi handle, so the callback may add it again
 * (a retry), free it, or free the whole sl_chttp. */
typedef void (*sl_chttp_done_fn)(CURL *easy, CURLcode result, void *arg);

/* `max_connections` bounds the connections open at once (0: no bound);
 * transfers beyond it wait inside curl for a free connection.  Returns NULL
 * when out of memory. */
sl_chttp *sl_chttp_new(struct event_base *base, long max_connections);

/* Starts a transfer.  `done` is called exactly once, later, from the loop,
 * unless the transfer is cancelled first.  Returns 0 or -1. */
int sl_chttp_add(sl_chttp *h, CURL *easy, sl_chttp_done_fn done, void *arg);

/* Stops a transfer without calling its `done`; the caller keeps `easy`. */
void sl_chttp_cancel(sl_chttp *h, CURL *easy);

/* Cancels what is still running (without callbacks) and frees the handle;
 * inside a `done` callback the memory goes once the callback returned. */
void sl_chttp_free(sl_chttp *h);

#endif
