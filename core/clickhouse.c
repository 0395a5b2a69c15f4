/*
 * clickhouse.c - the ClickHouse connector: inserts and queries over
 * ClickHouse's HTTP interface, on the loop through chttp.c.
 *
 * Each handle owns one curl multi handle, so its connections are kept
 * alive and reused between requests and bounded by max_connections.  A
 * request is one easy handle reused across its attempts; a failed attempt
 * that may succeed later waits on its own timer (exponential backoff) and
 * goes again.  Readiness comes from a GET /ping every ping_interval on the
 * same connections.
 *
 * ClickHouse 18.16 (Debian) answers 400/404 for many client mistakes but
 * 500 for others (rows it cannot parse, Code: 27 and friends), so a 5xx is
 * retried only when its exception code names a condition that passes
 * (timeouts, memory, too many parts ...) or when it carries no code at all
 * (a proxy in between).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <event2/event.h>

#include "chttp.h"
#include "clickhouse.h"
#include "connector.h"
#include "core.h"
#include "log.h"
#include "metrics.h"
#include "schema.h"
#include "sluice_clickhouse.h"

#define WHO "clickhouse"
#define BACKOFF_FIRST 0.1
#define BACKOFF_MAX 10.0
/* Answers larger than this are refused rather than held in memory. */
#define MAX_RESPONSE (256u * 1024 * 1024)

static const sl_option clickhouse_options[] = {
    { "url", SL_OPT_STRING, "http://127.0.0.1:8123", "HTTP interface of the server", 0, 0,
      NULL },
    { "user", SL_OPT_STRING, "", "user name (HTTP basic auth); empty: the server's default", 0,
      0, NULL },
    { "password", SL_OPT_STRING, "", "password of `user`", 0, 0, NULL },
    { "database", SL_OPT_STRING, "default", "database of unqualified table names", 0, 0, NULL },
    { "timeout", SL_OPT_DURATION, "30s",
      "how long one attempt of a request may take once sent (waiting for a free connection "
      "does not count)", 0.001, 86400, NULL },
    { "retries", SL_OPT_INT, "3",
      "further attempts after a failure that may pass (connection refused or broken, overload)", 0, 100,
      NULL },
    { "max_connections", SL_OPT_INT, "8",
      "requests sent at once, each on its own kept-alive connection; more wait in turn "
      "(the readiness /ping has one more of its own)", 1, 1024, NULL },
    { "ping_interval", SL_OPT_DURATION, "2s", "how often GET /ping checks readiness", 0.05,
      3600, NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

/* ---------------------------------------------------------- the section */

static int curl_ready;

/* curl_global_init() is not thread-safe against other libraries' set-up,
 * so it runs here, before modules start, once per process. */
static int init_curl(char *err, size_t errlen)
{
    CURLcode rc;

    if (curl_ready)
        return 0;
    rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "curl_global_init: %s", curl_easy_strerror(rc));
        return -1;
    }
    curl_ready = 1;
    return 0;
}

static int check_url(const char *url, char *err, size_t errlen)
{
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        snprintf(err, errlen, "\"%s\" is not an http:// or https:// url", url);
        return -1;
    }
    if (strchr(url, '?') != NULL || strchr(url, '#') != NULL) {
        snprintf(err, errlen, "\"%s\": settings belong in their own options, not in the url",
                 url);
        return -1;
    }
    return 0;
}

static int ch_check(const sl_optset *opts, const char *file, sl_errors *errs)
{
    const sl_optval *v = sl_optset_get(opts, "url");
    char err[512];

    if (v == NULL || check_url(v->raw, err, sizeof(err)) == 0)
        return 0;
    sl_errors_add(errs, file, v->line, "[clickhouse] url: %s", err);
    return -1;
}

static int ch_prepare(const sl_optset *old, const sl_optset *opts, sl_errors *errs)
{
    char err[256];

    (void)old;
    (void)opts;
    if (init_curl(err, sizeof(err)) == 0)
        return 0;
    sl_errors_add(errs, NULL, 0, "[clickhouse]: %s", err);
    return -1;
}

static void ch_shutdown(void)
{
    if (curl_ready)
        curl_global_cleanup();
    curl_ready = 0;
}

const sl_section_schema sl_clickhouse_schema = {
    "clickhouse", "the ClickHouse HTTP connection of modules that use ClickHouse",
    clickhouse_options, SL_USES_CLICKHOUSE, ch_check, ch_prepare, ch_shutdown,
};

/* ------------------------------------------------------------ handle */

typedef enum { K_INSERT, K_QUERY, K_EXEC, K_PING } req_kind;

typedef enum { OUT_OK, OUT_CLIENT, OUT_SERVER, OUT_TRANSPORT, OUT_TIMEOUT, OUT_N } outcome;
static const char *const outcome_names[OUT_N] = { "ok", "client_error", "server_error",
                                                   "transport_error", "timeout" };

typedef struct req req;
struct req {
    req *prev, *next;
    req *wnext;           /* in the queue for a free connection */
    sl_ch *ch;
    req_kind kind;
    CURL *easy;
    char *url;
    char *body;           /* owned; sent as is on every attempt */
    size_t body_len;
    sl_ch_fn fn;
    void *arg;
    unsigned attempts;
    double submitted;
    double attempt_start;
    struct event *retry_timer;
    char *resp;           /* the answer of the current attempt */
    size_t resp_len, resp_cap;
    int too_large;
    char errbuf[CURL_ERROR_SIZE];
};

struct sl_ch {
    sl_conn_life life;
    char *label;
    char *base;           /* url with exactly one trailing '/' */
    char *database;
    char *user, *password;
    double timeout, ping_interval;
    long retries;
    long max_connections;
    long inflight;        /* attempts sent, pings aside */
    req *wait_head, *wait_tail;
    sl_chttp *http;
    struct curl_slist *headers;
    req *reqs;            /* in flight or waiting for a retry */
    req *ping;            /* the /ping in flight, not in reqs */
    struct event *ping_timer;
    int up;
    int pinged;
    char why[512];        /* why not up */

    sl_metric *m_requests, *m_latency, *m_sent, *m_retries, *m_up;
    sl_series *s_out[OUT_N], *s_latency, *s_sent, *s_retries, *s_up;
};


static void series_add(sl_series *s, double v)
{
    if (s != NULL)
        sl_series_add(s, v);
}

/* ---------------------------------------------------------------- text */

SL_API int sl_ch_valid_table(const char *name)
{
    int parts = 0;
    const char *p = name;

    if (name == NULL)
        return 0;
    for (;;) {
        if (!(isalpha((unsigned char)*p) || *p == '_'))
            return 0;
        while (isalnum((unsigned char)*p) || *p == '_')
            p++;
        if (p - name > 200)
            return 0;
        parts++;
        if (*p == '\0')
            return 1;
        if (*p != '.' || parts == 2)
            return 0;
        p++;
    }
}

/* Percent-encodes `s` for a query string; malloc'd, NULL when out of memory. */
static char *url_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1), *o = out;

    if (out == NULL)
        return NULL;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

static char *str_printf(const char *fmt, ...) SL_PRINTF(1, 2);
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* `base`?database=...&<extra> */
static char *make_url(const sl_ch *ch, const char *extra)
{
    char *db = url_encode(ch->database), *url;

    if (db == NULL)
        return NULL;
    url = str_printf("%s?database=%s%s%s", ch->base, db, extra[0] != '\0' ? "&" : "", extra);
    free(db);
    return url;
}

/* ClickHouse's "Code: 62, e.displayText() = ..." → 62; 0 when absent. */
static int exception_code(const char *body)
{
    const char *p = strstr(body, "Code: ");

    if (p == NULL || p - body > 64)
        return 0;
    return atoi(p + 6);
}

/* The exception ClickHouse appended to a streamed answer: the last
 * "Code: N, e.displayText() = DB::Exception..." in it, or NULL. */
static const char *late_exception(const char *body)
{
    const char *at = NULL, *p = body;

    while ((p = strstr(p, "Code: ")) != NULL) {
        at = p;
        p += 6;
    }
    if (at == NULL || strstr(at, "DB::Exception") == NULL)
        return NULL;
    return at;
}

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

/* The first line of an error answer, trimmed, in `out`. */
static void first_line(const char *body, size_t len, char *out, size_t outlen)
{
    size_t n = 0;

    while (n < len && body[n] != '\n' && body[n] != '\r')
        n++;
    while (n > 0 && isspace((unsigned char)body[n - 1]))
        n--;
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, body, n);
    out[n] = '\0';
}

/* ------------------------------------------------------------ requests */

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    req *q = arg;
    size_t n = size * nmemb;

    if (q->resp_len + n + 1 > q->resp_cap) {
        size_t cap = q->resp_cap != 0 ? q->resp_cap : 4096;
        char *p;
        while (cap < q->resp_len + n + 1)
            cap *= 2;
        if (cap > MAX_RESPONSE + 1) {
            q->too_large = 1;
            return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
        }
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

static void req_free(req *q)
{
    if (q->easy != NULL)
        curl_easy_cleanup(q->easy);
    if (q->retry_timer != NULL)
        event_free(q->retry_timer);
    free(q->url);
    free(q->body);
    free(q->resp);
    free(q);
}

static void unlink_req(sl_ch *ch, req *q)
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

/* Answers a request that could not even be sent, rather than let it hang. */
static void fail_start(sl_ch *ch, req *q)
{
    sl_ch_result res = { "cannot start the request (out of memory)", 0, 0, NULL, "", 0,
                         q->attempts, sl_now() - q->submitted };

    unlink_req(ch, q);
    if (q->fn != NULL && !ch->life.freeing)
        q->fn(ch, &res, q->arg);
    req_free(q);
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

static void schedule_ping(sl_ch *ch, double delay);

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
    req_free(q);
    schedule_ping(ch, ch->ping_interval);
}

static void finish(sl_ch *ch, req *q, long status, int code, const char *err)
{
    sl_ch_result res;
    cJSON *json = NULL;
    char late[1024];

    unlink_req(ch, q);
    res.error = err;
    res.status = status;
    res.code = code;
    res.json = NULL;
    res.body = q->resp != NULL ? q->resp : "";
    res.len = q->resp_len;
    res.attempts = q->attempts;
    if (err == NULL && q->kind == K_QUERY) {
        json = cJSON_ParseWithLength(res.body, res.len);
        res.json = json;
        /* An exception after the first rows were sent cannot change the
         * status any more: ClickHouse appends it to the body. */
        if (json == NULL) {
            const char *at = late_exception(res.body);
            res.code = at != NULL ? exception_code(at) : 0;
            if (at != NULL)
                first_line(at, res.len - (size_t)(at - res.body), late, sizeof(late));
            res.error = at != NULL ? late : "cannot parse ClickHouse's JSON answer";
        }
    }
    res.elapsed = sl_now() - q->submitted;
    if (q->fn != NULL && !ch->life.freeing)
        q->fn(ch, &res, q->arg);
    cJSON_Delete(json);
    req_free(q);
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
            snprintf(err, sizeof(err), "answer larger than %u bytes", MAX_RESPONSE);
        else
            snprintf(err, sizeof(err), "%s", q->errbuf[0] != '\0' ? q->errbuf : curl_easy_strerror(rc));
    } else if (status >= 200 && status < 300) {
        o = OUT_OK;
        retriable = 0;
        err[0] = '\0';
    } else {
        const char *body = q->resp != NULL ? q->resp : "";
        code = exception_code(body);
        retriable = status >= 500 && code_retriable(code);
        o = status >= 500 && retriable ? OUT_SERVER : OUT_CLIENT;
        first_line(body, q->resp_len, err, sizeof(err));
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
        sl_log_core(SL_LOG_DEBUG, WHO, "%s: attempt %u failed (%s); retrying in %.2fs",
                    ch->label, q->attempts, err, delay);
        series_add(ch->s_retries, 1);
        sl_conn_arm(q->retry_timer, delay);
    } else {
        finish(ch, q, status, code, o == OUT_OK ? NULL : err);
    }
    pump(ch);
    sl_conn_leave(&ch->life);
}

/* A request with its own easy handle; NULL when out of memory. */
static req *req_new(sl_ch *ch, req_kind kind, char *url, char *body, size_t body_len)
{
    req *q = calloc(1, sizeof(*q));

    if (q == NULL)
        return NULL;
    q->ch = ch;
    q->kind = kind;
    q->url = url;
    q->body = body;
    q->body_len = body_len;
    q->easy = curl_easy_init();
    q->retry_timer = evtimer_new(sl_base, on_retry, q);
    if (url == NULL || q->easy == NULL || q->retry_timer == NULL) {
        q->url = q->body = NULL; /* the caller still owns them */
        req_free(q);
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
        curl_easy_setopt(q->easy, CURLOPT_POSTFIELDS, body != NULL ? body : "");
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

/* Takes ownership of url and body in every case. */
static int submit(sl_ch *ch, req_kind kind, char *url, char *body, size_t len, sl_ch_fn fn,
                  void *arg)
{
    req *q;

    if (ch == NULL || ch->life.freeing) {
        free(url);
        free(body);
        return -1;
    }
    q = req_new(ch, kind, url, body, len);
    if (q == NULL) {
        free(url);
        free(body);
        sl_log_core(SL_LOG_ERROR, WHO, "%s: out of memory for a request", ch->label);
        return -1;
    }
    q->fn = fn;
    q->arg = arg;
    q->submitted = sl_now();
    if (attempt(q) != 0) {
        req_free(q);
        return -1;
    }
    q->next = ch->reqs;
    if (ch->reqs != NULL)
        ch->reqs->prev = q;
    ch->reqs = q;
    return 0;
}

/* ---------------------------------------------------------------- ping */

static void on_ping_timer(evutil_socket_t fd, short what, void *arg)
{
    sl_ch *ch = arg;
    char *url;
    req *q;

    (void)fd;
    (void)what;
    if (ch->ping != NULL || ch->life.freeing)
        return;
    sl_conn_enter(&ch->life);
    url = str_printf("%sping", ch->base);
    q = url != NULL ? req_new(ch, K_PING, url, NULL, 0) : NULL;
    if (q == NULL) {
        free(url);
        schedule_ping(ch, ch->ping_interval);
    } else {
        q->submitted = sl_now();
        ch->ping = q;
        if (attempt(q) != 0) {
            ch->ping = NULL;
            req_free(q);
            schedule_ping(ch, ch->ping_interval);
        }
    }
    sl_conn_leave(&ch->life);
}

static void schedule_ping(sl_ch *ch, double delay)
{
    if (!ch->life.freeing)
        sl_conn_arm(ch->ping_timer, delay);
}

/* ------------------------------------------------------------ lifetime */

static void destroy(void *obj)
{
    sl_ch *ch = obj;
    req *q;

    while ((q = ch->reqs) != NULL) {
        unlink_req(ch, q);
        if (ch->http != NULL)
            sl_chttp_cancel(ch->http, q->easy);
        req_free(q);
    }
    if (ch->ping != NULL) {
        if (ch->http != NULL)
            sl_chttp_cancel(ch->http, ch->ping->easy);
        req_free(ch->ping);
    }
    sl_chttp_free(ch->http);
    if (ch->ping_timer != NULL)
        event_free(ch->ping_timer);
    curl_slist_free_all(ch->headers);
    if (ch->s_up != NULL)
        sl_series_set(ch->s_up, 0);
    sl_metric_release(ch->m_requests);
    sl_metric_release(ch->m_latency);
    sl_metric_release(ch->m_sent);
    sl_metric_release(ch->m_retries);
    sl_metric_release(ch->m_up);
    free(ch->label);
    free(ch->base);
    free(ch->database);
    free(ch->user);
    free(ch->password);
    free(ch);
}

/* The instance's release: calls no module code. */
static void release(void *obj)
{
    sl_ch *ch = obj;

    sl_conn_released(&ch->life);
}

static int ready(void *obj, char *why, size_t whylen)
{
    const sl_ch *ch = obj;

    if (ch->up)
        return 1;
    snprintf(why, whylen, "%s", ch->pinged ? ch->why : "clickhouse: not yet reachable");
    return 0;
}

static const double latency_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5, 1, 2.5, 5, 10, 30 };

static void register_metrics(sl_ch *ch, const char *module, const char *instance)
{
    ch->m_requests = sl_metric_register(
        SL_METRIC_COUNTER, "sluice_clickhouse_requests_total",
        "ClickHouse HTTP request attempts by outcome", "module,outcome", NULL, 0, instance);
    ch->m_latency = sl_metric_register(
        SL_METRIC_HISTOGRAM, "sluice_clickhouse_request_duration_seconds",
        "Duration of one ClickHouse HTTP request attempt", "module", latency_bounds,
        sizeof(latency_bounds) / sizeof(latency_bounds[0]), instance);
    ch->m_sent = sl_metric_register(SL_METRIC_COUNTER, "sluice_clickhouse_sent_bytes_total",
                                    "Request body bytes sent to ClickHouse, retries included",
                                    "module", NULL, 0, instance);
    ch->m_retries = sl_metric_register(SL_METRIC_COUNTER, "sluice_clickhouse_retries_total",
                                       "ClickHouse requests attempted again after a failure",
                                       "module", NULL, 0, instance);
    ch->m_up = sl_metric_register(SL_METRIC_GAUGE, "sluice_clickhouse_up",
                                  "1 while ClickHouse answers /ping", "module", NULL, 0,
                                  instance);
    for (int i = 0; i < OUT_N && ch->m_requests != NULL; i++)
        ch->s_out[i] = sl_series_of(ch->m_requests, module, outcome_names[i]);
    if (ch->m_latency != NULL)
        ch->s_latency = sl_series_of(ch->m_latency, module);
    if (ch->m_sent != NULL)
        ch->s_sent = sl_series_of(ch->m_sent, module);
    if (ch->m_retries != NULL)
        ch->s_retries = sl_series_of(ch->m_retries, module);
    if (ch->m_up != NULL)
        ch->s_up = sl_series_of(ch->m_up, module);
}

/* The [clickhouse] options of the current generation, or the defaults. */
static int load_options(sl_ch *ch, long *max_connections, char *err, size_t errlen)
{
    sl_optset defaults = { NULL, 0 };
    const sl_optset *set = sl_conn_options("clickhouse", clickhouse_options, &defaults, err,
                                           errlen);
    const char *url;
    size_t n;
    int rc = 0;

    if (set == NULL)
        return -1;
    url = sl_optset_get(set, "url")->raw;
    n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (check_url(url, err, errlen) != 0) {
        rc = -1;
    } else {
        ch->base = str_printf("%.*s/", (int)n, url);
        ch->database = strdup(sl_optset_get(set, "database")->raw);
        ch->user = strdup(sl_optset_get(set, "user")->raw);
        ch->password = strdup(sl_optset_get(set, "password")->raw);
        ch->timeout = sl_optset_get(set, "timeout")->d;
        ch->ping_interval = sl_optset_get(set, "ping_interval")->d;
        ch->retries = (long)sl_optset_get(set, "retries")->i;
        *max_connections = (long)sl_optset_get(set, "max_connections")->i;
        if (ch->base == NULL || ch->database == NULL || ch->user == NULL ||
            ch->password == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
    }
    sl_optset_free(&defaults);
    return rc;
}

SL_API sl_ch *sl_ch_new(sl_ctx *ctx)
{
    if (sl_ctx_refuse(ctx, "a ClickHouse handle"))
        return NULL;
    sl_ch *ch = calloc(1, sizeof(*ch));
    long max_connections = 8;
    char err[512];

    if (ch == NULL) {
        sl_log(ctx, SL_LOG_ERROR, "clickhouse: out of memory");
        return NULL;
    }
    ch->label = strdup(ctx->label != NULL ? ctx->label : sl_module_name(ctx));
    if (ch->label == NULL || load_options(ch, &max_connections, err, sizeof(err)) != 0 ||
        init_curl(err, sizeof(err)) != 0) {
        sl_log(ctx, SL_LOG_ERROR, "clickhouse: %s", ch->label == NULL ? "out of memory" : err);
        destroy(ch);
        return NULL;
    }
    ch->max_connections = max_connections;
    /* One more than requests may use: the /ping's own. */
    ch->http = sl_chttp_new(sl_base, max_connections + 1);
    ch->ping_timer = evtimer_new(sl_base, on_ping_timer, ch);
    /* No "Expect: 100-continue": it costs a round trip per insert. */
    ch->headers = curl_slist_append(NULL, "Expect:");
    if (ch->http == NULL || ch->ping_timer == NULL || ch->headers == NULL) {
        sl_log(ctx, SL_LOG_ERROR, "clickhouse: out of memory");
        destroy(ch);
        return NULL;
    }
    register_metrics(ch, sl_module_name(ctx), sl_instance_name(ctx));
    if (sl_conn_track(&ch->life, ctx, "clickhouse connection", ch, destroy, release, ready) != 0) {
        destroy(ch);
        return NULL;
    }
    sl_ctx_uses(ctx, SL_USES_CLICKHOUSE);
    schedule_ping(ch, 0);
    return ch;
}

SL_API void sl_ch_free(sl_ch *ch)
{
    if (ch != NULL)
        sl_conn_free(&ch->life);
}

SL_API int sl_ch_ready(const sl_ch *ch)
{
    return ch != NULL && ch->up;
}

/* ------------------------------------------------------------ the API */

static char *insert_url(sl_ch *ch, const char *table)
{
    char *sql, *enc, *url;
    const char *dot = strchr(table, '.');

    if (dot != NULL)
        sql = str_printf("INSERT INTO `%.*s`.`%s` FORMAT JSONEachRow", (int)(dot - table), table,
                         dot + 1);
    else
        sql = str_printf("INSERT INTO `%s` FORMAT JSONEachRow", table);
    if (sql == NULL)
        return NULL;
    enc = url_encode(sql);
    free(sql);
    if (enc == NULL)
        return NULL;
    url = str_printf("query=%s", enc);
    free(enc);
    if (url == NULL)
        return NULL;
    sql = make_url(ch, url);
    free(url);
    return sql;
}

SL_API int sl_ch_insert(sl_ch *ch, const char *table, const char *rows, size_t len, sl_ch_fn fn,
                        void *arg)
{
    char *copy;

    if (ch == NULL || ch->life.freeing || !sl_ch_valid_table(table))
        return -1;
    copy = malloc(len + 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, rows, len);
    copy[len] = '\0';
    return submit(ch, K_INSERT, insert_url(ch, table), copy, len, fn, arg);
}

struct sl_ch_batch {
    char *buf;
    size_t len, cap;
    size_t rows;
};

SL_API sl_ch_batch *sl_ch_batch_new(void)
{
    return calloc(1, sizeof(sl_ch_batch));
}

SL_API int sl_ch_batch_append_raw(sl_ch_batch *b, const char *row, size_t len)
{
    if (b->len + len + 2 > b->cap) {
        size_t cap = b->cap != 0 ? b->cap : 65536;
        char *p;
        while (cap < b->len + len + 2)
            cap *= 2;
        p = realloc(b->buf, cap);
        if (p == NULL)
            return -1;
        b->buf = p;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, row, len);
    b->len += len;
    b->buf[b->len++] = '\n';
    b->buf[b->len] = '\0';
    b->rows++;
    return 0;
}

SL_API int sl_ch_batch_append_json(sl_ch_batch *b, const cJSON *row)
{
    char *s;
    int rc;

    if (!cJSON_IsObject(row))
        return -1;
    s = cJSON_PrintUnformatted(row);
    if (s == NULL)
        return -1;
    rc = sl_ch_batch_append_raw(b, s, strlen(s));
    cJSON_free(s);
    return rc;
}

SL_API size_t sl_ch_batch_rows(const sl_ch_batch *b)
{
    return b->rows;
}

SL_API size_t sl_ch_batch_bytes(const sl_ch_batch *b)
{
    return b->len;
}

SL_API void sl_ch_batch_free(sl_ch_batch *b)
{
    if (b == NULL)
        return;
    free(b->buf);
    free(b);
}

SL_API int sl_ch_insert_batch(sl_ch *ch, const char *table, sl_ch_batch *b, sl_ch_fn fn,
                              void *arg)
{
    char *body;
    size_t len;

    if (b == NULL)
        return -1;
    if (ch == NULL || ch->life.freeing || !sl_ch_valid_table(table)) {
        sl_ch_batch_free(b);
        return -1;
    }
    body = b->buf;
    len = b->len;
    free(b);
    return submit(ch, K_INSERT, insert_url(ch, table), body, len, fn, arg);
}

/* The statement without trailing blanks and semicolons, then `suffix`. */
static char *statement(const char *sql, const char *suffix)
{
    size_t n = strlen(sql);

    while (n > 0 && (isspace((unsigned char)sql[n - 1]) || sql[n - 1] == ';'))
        n--;
    return str_printf("%.*s%s", (int)n, sql, suffix);
}

SL_API int sl_ch_query(sl_ch *ch, const char *sql, sl_ch_fn fn, void *arg)
{
    char *body;

    if (ch == NULL || ch->life.freeing || sql == NULL)
        return -1;
    body = statement(sql, "\nFORMAT JSON");
    if (body == NULL)
        return -1;
    /* 64-bit integers as JSON numbers, not strings: counts read naturally. */
    return submit(ch, K_QUERY, make_url(ch, "output_format_json_quote_64bit_integers=0"), body,
                  strlen(body), fn, arg);
}

SL_API int sl_ch_exec(sl_ch *ch, const char *sql, sl_ch_fn fn, void *arg)
{
    char *body;

    if (ch == NULL || ch->life.freeing || sql == NULL)
        return -1;
    body = statement(sql, "");
    if (body == NULL)
        return -1;
    return submit(ch, K_EXEC, make_url(ch, ""), body, strlen(body), fn, arg);
}
