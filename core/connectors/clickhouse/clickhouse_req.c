/*
 * clickhouse_req.c - a ClickHouse request on the wire: its easy handle,
 * the wait for a free connection, attempts with backoff, the answer and
 * what it means, and the GET /ping that keeps the handle's readiness.
 *
 * ClickHouse 18.16 (Debian) answers 400/404 for many client mistakes but
 * 500 for others (rows it cannot parse, Code: 27 and friends), so a 5xx is
 * retried only when its exception code names a condition that passes
 * (timeouts, memory, too many parts ...) or when it carries no code at all
 * (a proxy in between).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <event2/event.h>

#include "http/chttp.h"
#include "clickhouse_int.h"
#include "connectors/connector.h"
#include "daemon/core.h"
#include "daemon/log.h"
#include "metrics/metrics.h"
#include <sluice/clickhouse.h>

#define BACKOFF_FIRST 0.1
#define BACKOFF_MAX 10.0
/* Answers larger than this are refused rather than held in memory. */
#define MAX_RESPONSE (256u * 1024 * 1024)

static void series_add(sl_series *s, double v)
{
    if (s != NULL)
        sl_series_add(s, v);
}

/* ------------------------------------------------------------ answers */

/* Exceptions that describe the server's state rather than the request:
 * trying again later may succeed. */
static int code_retriable(int code)
{
    static const int codes[] = { 159, /* TIMEOUT_EXCEEDED */
                                 160, /* TOO_SLOW */
                                 202, /* TOO_MANY_SIMULTANEOUS_QUERIES */
                                 203, /* NO_FREE_CONNECTION */
                                 209, /* SOCKET_TIMEOUT */
                                 210, /* NETWORK_ERROR */
                                 241, /* MEMORY_LIMIT_EXCEEDED */
                                 242, /* TABLE_IS_READ_ONLY */
                                 252, /* TOO_MANY_PARTS */
                                 285, /* TOO_FEW_LIVE_REPLICAS */
                                 319, /* UNKNOWN_STATUS_OF_INSERT */
                                 425, /* SYSTEM_ERROR */
                                 999, /* KEEPER_EXCEPTION */
                                 1000 /* POCO_EXCEPTION */ };

    if (code == 0)
        return 1; /* not ClickHouse speaking: a proxy, a restart */
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (codes[i] == code)
            return 1;
    return 0;
}

/* Transport failures worth another attempt; a bad url or an answer too
 * large would fail the same way again.  A timeout is not retried: the
 * request is slow by itself, another attempt doubles the server's load,
 * and an insert that timed out may still be applied. */
static int curl_retriable(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

/* ------------------------------------------------------------ requests */

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    req *q = arg;
    size_t n = size * nmemb;

    /* Checked on every piece: the buffer grows by doubling, so a check
     * at growth alone would let an answer run to the next power of two. */
    if (q->resp_len + n > q->max_answer) {
        q->too_large = 1;
        return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
    }
    if (q->resp_len + n + 1 > q->resp_cap) {
        size_t cap = q->resp_cap != 0 ? q->resp_cap : 4096;
        char *p;
        while (cap < q->resp_len + n + 1)
            cap *= 2;
        p = realloc(q->resp, cap);
        if (p == NULL)
            return 0;
        q->resp = p;
        q->resp_cap = cap;
    }
    memcpy(q->resp + q->resp_len, data, n);
    q->resp_len += n;
    q->resp[q->resp_len] = '\0';
    return n;
}

void ch_req_free(req *q)
{
    ch_trace_end(q, 0, 0, "the request was dropped unanswered");
    if (q->easy != NULL)
        curl_easy_cleanup(q->easy);
    if (q->retry_timer != NULL)
        event_free(q->retry_timer);
    free(q->url);
    free(q->body);
    free(q->resp);
    free(q);
}

void ch_unlink_req(sl_ch *ch, req *q)
{
    if (q->prev != NULL)
        q->prev->next = q->next;
    else if (ch->reqs == q)
        ch->reqs = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

static void on_done(CURL *easy, CURLcode rc, void *arg);

/* Sends one attempt now; -1 when curl would not take it. */
static int dispatch(req *q)
{
    q->attempts++;
    q->attempt_start = sl_now();
    q->resp_len = 0;
    q->too_large = 0;
    q->errbuf[0] = '\0';
    if (q->resp != NULL)
        q->resp[0] = '\0';
    if (q->kind != K_PING)
        series_add(q->ch->s_sent, (double)q->body_len);
    if (sl_chttp_add(q->ch->http, q->easy, on_done, q) != 0)
        return -1;
    if (q->kind != K_PING)
        q->ch->inflight++;
    return 0;
}

/*
 * One attempt: sent now when a connection is free, else queued in turn.
 * The queue is ours, not curl's, because curl counts a transfer's timeout
 * from when it was added, waiting included, and because /ping must never
 * wait behind bulk inserts (it has a connection of its own).
 */
static int attempt(req *q)
{
    sl_ch *ch = q->ch;

    if (q->kind == K_PING || (ch->inflight < ch->max_connections && ch->wait_head == NULL))
        return dispatch(q);
    q->wnext = NULL;
    if (ch->wait_tail != NULL)
        ch->wait_tail->wnext = q;
    else
        ch->wait_head = q;
    ch->wait_tail = q;
    return 0;
}

/* Ends the request's span and calls the module back in the context the
 * request was submitted in. */
static void answer(sl_ch *ch, req *q, const sl_ch_result *res)
{
    sl_trace_ctx saved;

    ch_trace_end(q, res->status, res->code, res->error);
    if (q->fn == NULL || ch->life.freeing)
        return;
    sl_trace_enter(&q->trace, &saved);
    q->fn(ch, res, q->arg);
    sl_trace_restore(&saved);
}

/* Answers a request that could not even be sent, rather than let it hang. */
static void fail_start(sl_ch *ch, req *q)
{
    sl_ch_result res = { "cannot start the request (out of memory)",
                         0,
                         0,
                         NULL,
                         "",
                         0,
                         q->attempts,
                         sl_now() - q->submitted };

    ch_unlink_req(ch, q);
    answer(ch, q, &res);
    ch_req_free(q);
}

/* Sends queued attempts while connections are free. */
static void pump(sl_ch *ch)
{
    while (!ch->life.freeing && ch->wait_head != NULL && ch->inflight < ch->max_connections) {
        req *q = ch->wait_head;
        ch->wait_head = q->wnext;
        if (ch->wait_head == NULL)
            ch->wait_tail = NULL;
        q->wnext = NULL;
        if (dispatch(q) != 0)
            fail_start(ch, q);
    }
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    req *q = arg;
    sl_ch *ch = q->ch;

    (void)fd;
    (void)what;
    sl_conn_enter(&ch->life);
    if (attempt(q) != 0)
        fail_start(ch, q);
    sl_conn_leave(&ch->life);
}

static void ping_done(sl_ch *ch, req *q, int ok, const char *err)
{
    int was = ch->up, first = !ch->pinged;

    ch->ping = NULL;
    ch->pinged = 1;
    ch->up = ok;
    if (ok) {
        ch->why[0] = '\0';
        if (!was)
            sl_log_core(SL_LOG_INFO, WHO, "%s: clickhouse %s is up", ch->label, ch->base);
    } else {
        snprintf(ch->why, sizeof(ch->why), "clickhouse %s: %s", ch->base, err);
        /* Once per outage, and once if it was never up. */
        if (was || first)
            sl_log_core(SL_LOG_WARN, WHO, "%s: clickhouse %s is down: %s", ch->label, ch->base,
                        err);
    }
    if (ch->s_up != NULL)
        sl_series_set(ch->s_up, ok);
    ch_req_free(q);
    ch_schedule_ping(ch, ch->ping_interval);
}

/* A query's answer, read: its exception when ClickHouse appended one
 * (found from the tail, so the rows before it are never parsed), else
 * the parsed document in res->json, else why it cannot be read. */
static cJSON *read_answer(sl_ch_result *res, char *late, size_t latelen)
{
    const char *at = ch_late_exception(res->body, res->len);
    cJSON *json;

    if (at != NULL) {
        size_t rest = res->len - (size_t)(at - res->body);
        res->code = ch_exception_code(at, rest);
        ch_first_line(at, rest, late, latelen);
        res->error = late;
        return NULL;
    }
    json = cJSON_ParseWithLength(res->body, res->len);
    if (json == NULL)
        res->error = "cannot parse ClickHouse's JSON answer";
    res->json = json;
    return json;
}

static void finish(sl_ch *ch, req *q, long status, int code, const char *err)
{
    sl_ch_result res;
    cJSON *json = NULL;
    char late[1024];

    ch_unlink_req(ch, q);
    res.error = err;
    res.status = status;
    res.code = code;
    res.json = NULL;
    res.body = q->resp != NULL ? q->resp : "";
    res.len = q->resp_len;
    res.attempts = q->attempts;
    if (err == NULL && q->kind == K_QUERY)
        json = read_answer(&res, late, sizeof(late));
    res.elapsed = sl_now() - q->submitted;
    answer(ch, q, &res);
    cJSON_Delete(json);
    ch_req_free(q);
}

static void on_done(CURL *easy, CURLcode rc, void *arg)
{
    req *q = arg;
    sl_ch *ch = q->ch;
    long status = 0;
    int code = 0, retriable;
    outcome o;
    char err[1024];

    sl_conn_enter(&ch->life);
    if (rc == CURLE_OK)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
        o = rc == CURLE_OPERATION_TIMEDOUT ? OUT_TIMEOUT : OUT_TRANSPORT;
        retriable = curl_retriable(rc);
        if (q->too_large)
            snprintf(err, sizeof(err), "answer larger than %zu bytes", q->max_answer);
        else
            snprintf(err, sizeof(err), "%s",
                     q->errbuf[0] != '\0' ? q->errbuf : curl_easy_strerror(rc));
    } else if (status >= 200 && status < 300) {
        o = OUT_OK;
        retriable = 0;
        err[0] = '\0';
    } else {
        const char *body = q->resp != NULL ? q->resp : "";
        code = ch_exception_code(body, q->resp_len);
        /* A query for a caller that hit a limit would hit it again. */
        retriable = status >= 500 && !q->caller && code_retriable(code);
        o = status >= 500 && retriable ? OUT_SERVER : OUT_CLIENT;
        ch_first_line(body, q->resp_len, err, sizeof(err));
        if (err[0] == '\0')
            snprintf(err, sizeof(err), "HTTP status %ld", status);
    }

    if (q->kind == K_PING) {
        ping_done(ch, q, o == OUT_OK, err);
        sl_conn_leave(&ch->life);
        return;
    }
    ch->inflight--;
    series_add(ch->s_out[o], 1);
    if (ch->s_latency != NULL)
        sl_series_observe(ch->s_latency, sl_now() - q->attempt_start);

    if (o != OUT_OK && retriable && q->attempts <= (unsigned)ch->retries && !ch->life.freeing) {
        double delay = BACKOFF_FIRST;
        for (unsigned i = 1; i < q->attempts && delay < BACKOFF_MAX; i++)
            delay *= 2;
        if (delay > BACKOFF_MAX)
            delay = BACKOFF_MAX;
        delay *= 0.8 + 0.2 * ((double)random() / (double)RAND_MAX);
        sl_log_core(SL_LOG_DEBUG, WHO, "%s: attempt %u failed (%s); retrying in %.2fs", ch->label,
                    q->attempts, err, delay);
        series_add(ch->s_retries, 1);
        sl_conn_arm(q->retry_timer, delay);
    } else {
        finish(ch, q, status, code, o == OUT_OK ? NULL : err);
    }
    pump(ch);
    sl_conn_leave(&ch->life);
}

/* A request with its own easy handle, owning `body` unless it is NULL (then
 * `send` is borrowed); NULL when out of memory. */
static req *req_new(sl_ch *ch, req_kind kind, char *url, char *body, const char *send,
                    size_t body_len)
{
    req *q = calloc(1, sizeof(*q));

    if (q == NULL)
        return NULL;
    q->ch = ch;
    q->kind = kind;
    q->max_answer = MAX_RESPONSE;
    q->url = url;
    q->body = body;
    q->send = send != NULL ? send : "";
    q->body_len = body_len;
    q->easy = curl_easy_init();
    q->retry_timer = evtimer_new(sl_base, on_retry, q);
    if (url == NULL || q->easy == NULL || q->retry_timer == NULL) {
        q->url = q->body = NULL; /* the caller still owns them */
        ch_req_free(q);
        return NULL;
    }
    curl_easy_setopt(q->easy, CURLOPT_URL, url);
    curl_easy_setopt(q->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(q->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(q->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(q->easy, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(q->easy, CURLOPT_ERRORBUFFER, q->errbuf);
    curl_easy_setopt(q->easy, CURLOPT_HTTPHEADER, ch->headers);
    if (kind == K_PING) {
        double t = ch->timeout < ch->ping_interval ? ch->timeout : ch->ping_interval;
        if (t < 1)
            t = 1;
        curl_easy_setopt(q->easy, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(q->easy, CURLOPT_TIMEOUT_MS, (long)(t * 1000));
    } else {
        curl_easy_setopt(q->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(q->easy, CURLOPT_POSTFIELDS, q->send);
        curl_easy_setopt(q->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(q->easy, CURLOPT_TIMEOUT_MS, (long)(ch->timeout * 1000));
    }
    curl_easy_setopt(q->easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)((ch->timeout < 10 ? ch->timeout : 10) * 1000));
    if (ch->user[0] != '\0') {
        curl_easy_setopt(q->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(q->easy, CURLOPT_USERNAME, ch->user);
        curl_easy_setopt(q->easy, CURLOPT_PASSWORD, ch->password);
    }
    return q;
}

/* Owns url and body (NULL for a borrowed body) in every case; sends `send`. */
static int submit(sl_ch *ch, req_kind kind, char *url, char *body, const char *send, size_t len,
                  sl_ch_fn fn, void *arg, size_t max_answer, int caller)
{
    req *q;

    if (ch == NULL || ch->life.freeing) {
        free(url);
        free(body);
        return -1;
    }
    q = req_new(ch, kind, url, body, send, len);
    if (q == NULL) {
        free(url);
        free(body);
        sl_log_core(SL_LOG_ERROR, WHO, "%s: out of memory for a request", ch->label);
        return -1;
    }
    q->fn = fn;
    q->arg = arg;
    if (max_answer != 0 && max_answer < MAX_RESPONSE)
        q->max_answer = max_answer;
    q->caller = caller;
    q->submitted = sl_now();
    ch_trace_begin(q);
    if (attempt(q) != 0) {
        ch_req_free(q);
        return -1;
    }
    q->next = ch->reqs;
    if (ch->reqs != NULL)
        ch->reqs->prev = q;
    ch->reqs = q;
    return 0;
}

/* Takes ownership of url and body in every case. */
int ch_submit(sl_ch *ch, req_kind kind, char *url, char *body, size_t len, sl_ch_fn fn, void *arg,
              size_t max_answer, int caller)
{
    return submit(ch, kind, url, body, body, len, fn, arg, max_answer, caller);
}

int ch_submit_borrowed(sl_ch *ch, req_kind kind, char *url, const char *body, size_t len,
                       sl_ch_fn fn, void *arg)
{
    return submit(ch, kind, url, NULL, body, len, fn, arg, 0, 0);
}

/* ---------------------------------------------------------------- ping */

void ch_on_ping_timer(evutil_socket_t fd, short what, void *arg)
{
    sl_ch *ch = arg;
    char *url;
    req *q;

    (void)fd;
    (void)what;
    if (ch->ping != NULL || ch->life.freeing)
        return;
    sl_conn_enter(&ch->life);
    url = ch_str_printf("%sping", ch->base);
    q = url != NULL ? req_new(ch, K_PING, url, NULL, NULL, 0) : NULL;
    if (q == NULL) {
        free(url);
        ch_schedule_ping(ch, ch->ping_interval);
    } else {
        q->submitted = sl_now();
        ch->ping = q;
        if (attempt(q) != 0) {
            ch->ping = NULL;
            ch_req_free(q);
            ch_schedule_ping(ch, ch->ping_interval);
        }
    }
    sl_conn_leave(&ch->life);
}

void ch_schedule_ping(sl_ch *ch, double delay)
{
    if (!ch->life.freeing)
        sl_conn_arm(ch->ping_timer, delay);
}
