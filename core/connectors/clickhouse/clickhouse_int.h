/*
 * clickhouse_int.h - what clickhouse.c (the [clickhouse] section and the
 * handle's lifetime), clickhouse_req.c (requests on the wire) and
 * clickhouse_api.c (what modules call) share; nothing else includes it.
 *
 * Each handle owns one curl multi handle, so its connections are kept
 * alive and reused between requests and bounded by max_connections.  A
 * request is one easy handle reused across its attempts; a failed attempt
 * that may succeed later waits on its own timer (exponential backoff) and
 * goes again.  Readiness comes from a GET /ping every ping_interval on the
 * same connections.
 */
#ifndef SL_CLICKHOUSE_INT_H
#define SL_CLICKHOUSE_INT_H

#include <stddef.h>
#include <curl/curl.h>
#include <event2/event.h>
#include "http/chttp.h"
#include "connectors/connector.h"
#include "daemon/core.h"
#include "trace/trace.h"
#include <sluice/clickhouse.h>

#define WHO "clickhouse"

/* sl_ch_query()'s answer is parsed on the loop (about 3 s per 100 MiB
 * without sanitizers), so a larger one fails instead. */
#define CH_MAX_QUERY_ANSWER (16u * 1024 * 1024)

typedef enum { K_INSERT, K_QUERY, K_EXEC, K_PING } req_kind;

typedef enum { OUT_OK, OUT_CLIENT, OUT_SERVER, OUT_TRANSPORT, OUT_TIMEOUT, OUT_N } outcome;

typedef struct req req;
struct req {
    req *prev, *next;
    req *wnext; /* in the queue for a free connection */
    sl_ch *ch;
    req_kind kind;
    CURL *easy;
    char *url;
    char *body;       /* owned (NULL when borrowed) */
    const char *send; /* sent as is on every attempt: body, or borrowed */
    size_t body_len;
    sl_ch_fn fn;
    void *arg;
    unsigned attempts;
    double submitted;
    double attempt_start;
    struct event *retry_timer;
    char *resp; /* the answer of the current attempt */
    size_t resp_len, resp_cap;
    int too_large;
    size_t max_answer; /* answers longer than this fail the request */
    int caller;        /* sl_ch_query_limited(): no attempt after an answer */
    char errbuf[CURL_ERROR_SIZE];
    sl_trace_ctx trace; /* current at submission: the callback's */
    sl_span *span;      /* NULL when not recorded */
};

struct sl_ch {
    sl_conn_life life;
    char *label;
    char *base; /* url with exactly one trailing '/' */
    char *database;
    char *cluster; /* "" for one server */
    char *user, *password;
    double timeout, ping_interval;
    long retries;
    long max_connections;
    long inflight; /* attempts sent, pings aside */
    req *wait_head, *wait_tail;
    sl_chttp *http;
    struct curl_slist *headers;
    req *reqs; /* in flight or waiting for a retry */
    req *ping; /* the /ping in flight, not in reqs */
    struct event *ping_timer;
    int up;
    int pinged;
    char why[512]; /* why not up */

    sl_metric *m_requests, *m_latency, *m_sent, *m_retries, *m_up;
    sl_series *s_out[OUT_N], *s_latency, *s_sent, *s_retries, *s_up;
};

/* ------------------------------------- clickhouse_req.c for the others */

void ch_req_free(req *q);
/* Takes `q` out of ch->reqs. */
void ch_unlink_req(sl_ch *ch, req *q);
/* Takes ownership of url and body in every case.  `max_answer` 0: the
 * connector's own bound; `caller`: a query run for a caller
 * (sl_ch_query_limited), not attempted again once ClickHouse answered. */
int ch_submit(sl_ch *ch, req_kind kind, char *url, char *body, size_t len, sl_ch_fn fn, void *arg,
              size_t max_answer, int caller);
/* Like ch_submit() for an insert, with a body the caller keeps valid until
 * `fn` ran or the request was cancelled; takes ownership of url only. */
int ch_submit_borrowed(sl_ch *ch, req_kind kind, char *url, const char *body, size_t len,
                       sl_ch_fn fn, void *arg);
/* The /ping timer's callback, and arming it (not while the handle frees). */
void ch_on_ping_timer(evutil_socket_t fd, short what, void *arg);
void ch_schedule_ping(sl_ch *ch, double delay);

/* ---------------------------------- clickhouse_answer.c for the others */

/* ClickHouse's exception code at the head of an error answer ("Code: 62,
 * e.displayText() = ..." gives 62); 0 when none is there. */
int ch_exception_code(const char *body, size_t len);
/* The exception ClickHouse appended as the last line of an answer whose
 * rows it had begun to stream ("Code: N, ... DB::Exception ..."), or
 * NULL.  Reads the answer's tail only. */
const char *ch_late_exception(const char *body, size_t len);
/* The first line of an error answer, trimmed, in `out`. */
void ch_first_line(const char *body, size_t len, char *out, size_t outlen);

/* ----------------------------------- clickhouse_trace.c for clickhouse_req.c */

/* Captures the current context and, when it is traced, opens the
 * request's span. */
void ch_trace_begin(req *q);
/* Ends the span (if any) with the answer's status, exception code and
 * error. */
void ch_trace_end(req *q, long status, int code, const char *err);

/* ------------------------------------- clickhouse_api.c for the others */

/* vasprintf() into a new string; NULL when out of memory. */
char *ch_str_printf(const char *fmt, ...) SL_PRINTF(1, 2);
/* `base`?database=...&<extra>; malloc'd, NULL when out of memory. */
char *ch_make_url(const sl_ch *ch, const char *extra);

#endif
