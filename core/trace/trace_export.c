/*
 * trace_export.c - the [tracing] section and the exporter: a span is
 * encoded into the batch being filled as it ends, full batches wait in one
 * bounded queue and leave one OTLP/HTTP request at a time, through the
 * core's curl-multi client.
 *
 * Encoded at its end, a span is read while it is still in the cache and
 * its memory is reused by the next one at once; kept whole until its batch
 * left, each was a couple of kilobytes read back after hundreds of others
 * had pushed it out.
 *
 * Nothing here waits: a full queue drops the span, a failed or refused
 * export drops its batch, both counted in sluice_tracing_spans_dropped_total;
 * the next batch simply tries again, so export resumes by itself when the
 * collector is back.  One request in flight bounds what a slow collector
 * can hold (a batch) and keeps spans in order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <event2/event.h>
#include "http/chttp.h"
#include "connectors/connector.h"
#include "daemon/core.h"
#include "daemon/log.h"
#include "metrics/metrics.h"
#include "trace.h"
#include "trace_otlp.h"

static const sl_option tracing_options[] = {
    { "endpoint", SL_OPT_STRING, "",
      "OTLP/HTTP traces URL of a collector (JSON encoding), e.g. "
      "http://127.0.0.1:4318/v1/traces; empty: tracing off, at no cost",
      0, 0, NULL },
    { "sample_ratio", SL_OPT_DOUBLE, "1",
      "share of new traces recorded; a request or message that carries a trace context "
      "follows its sampled flag (parent-based)",
      0, 1, NULL },
    { "service_name", SL_OPT_STRING, "sluice", "service.name of the spans this process exports", 0,
      0, NULL },
    { "batch_size", SL_OPT_INT, "512", "most spans sent in one export request", 1, 100000, NULL },
    { "max_queue", SL_OPT_INT, "4096",
      "most ended spans waiting for export; beyond it spans are dropped and counted", 1, 10000000,
      NULL },
    { "flush_interval", SL_OPT_DURATION, "2s",
      "how long an ended span waits for a fuller batch before it is sent", 0.01, 3600, NULL },
    { "timeout", SL_OPT_DURATION, "10s", "how long one export request may take", 0.1, 600, NULL },
    { "resource.*", SL_OPT_STRING, NULL,
      "an extra resource attribute of every span, e.g. resource.deployment.environment = prod", 0,
      0, NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

/* Encoded spans: the batch filling, one waiting, or the one in flight. */
typedef struct batch {
    struct batch *next;
    sl_otlp_buf body;
} batch;

static struct {
    int on;
    double ratio;
    char *endpoint;
    char *resource; /* the OTLP resource object */
    size_t batch;
    size_t max_queue;
    double interval;
    double timeout;

    batch *filling;      /* ended spans are added to it; NULL: none yet */
    batch *ready, *tail; /* closed batches waiting, oldest first */
    batch *flight;       /* being sent; NULL: none */
    batch *spare;        /* kept for the next batches, with their buffers */
    size_t spares;
    size_t queued; /* spans in `filling` and `ready` */

    sl_chttp *http;
    CURL *easy;
    struct curl_slist *headers;
    int failing;         /* the last export failed: say so once, and when it recovers */
    struct event *timer; /* the flush interval */
    struct event *soon;  /* a full batch: send from the loop, not from the caller */

    sl_metric *dropped, *exported, *pending;
    sl_series *drop_queue, *drop_export, *drop_disabled, *sent, *waiting;
} ex;

int sl_trace_on(void)
{
    return ex.on;
}

double sl_trace_ratio(void)
{
    return ex.ratio;
}

/* ------------------------------------------------------------ the queue */

static size_t in_flight(void)
{
    return ex.flight != NULL ? ex.flight->body.spans : 0;
}

/* Queued or in flight: what a test waits on to see everything sent. */
static void count_pending(void)
{
    if (ex.waiting != NULL)
        sl_series_set(ex.waiting, (double)(ex.queued + in_flight()));
}

static void batch_free(batch *b)
{
    free(b->body.p);
    free(b);
}

/* A batch opened under the current resource, or NULL when out of memory. */
static batch *batch_new(void)
{
    batch *b = ex.spare;

    if (b != NULL) {
        ex.spare = b->next;
        ex.spares--;
    } else if ((b = calloc(1, sizeof(*b))) == NULL)
        return NULL;
    b->next = NULL;
    if (sl_otlp_open(&b->body, ex.resource) != 0) {
        batch_free(b);
        return NULL;
    }
    return b;
}

/* Keeps a batch's buffer for a next one, unless a burst of large spans
 * grew it far past what it held: a peak must not stay pinned.  Two are
 * kept: with one waiting and one in flight, the filling batch needs a
 * third buffer, and a batch's buffer given back to malloc, being large,
 * makes it consolidate its free lists, which every small allocation of
 * the loop pays for after. */
#define SPARES_MAX 2
static void batch_done(batch *b)
{
    if (ex.spares < SPARES_MAX && b->body.len >= b->body.cap / 4) {
        b->next = ex.spare;
        ex.spare = b;
        ex.spares++;
        return;
    }
    batch_free(b);
}

/* Every queued span dropped, and counted under `why` (NULL: at exit, not
 * counted). */
static void drop_queued(sl_series *why)
{
    batch *b;

    if (why != NULL)
        sl_series_add(why, (double)ex.queued);
    while ((b = ex.ready) != NULL) {
        ex.ready = b->next;
        batch_done(b);
    }
    ex.tail = NULL;
    if (ex.filling != NULL)
        batch_done(ex.filling);
    ex.filling = NULL;
    ex.queued = 0;
    count_pending();
}

/* The filling batch, ended, joins the waiting ones. */
static void seal(void)
{
    batch *b = ex.filling;

    if (b == NULL || b->body.spans == 0)
        return;
    ex.filling = NULL;
    if (sl_otlp_close(&b->body) != 0) {
        ex.queued -= b->body.spans;
        sl_series_add(ex.drop_export, (double)b->body.spans);
        sl_log_core(SL_LOG_ERROR, "tracing", "out of memory encoding %zu spans", b->body.spans);
        batch_done(b);
        count_pending();
        return;
    }
    if (ex.tail != NULL)
        ex.tail->next = b;
    else
        ex.ready = b;
    ex.tail = b;
}

/* The collector's answer body says nothing we act on: its status does. */
static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

static void export_done(CURL *easy, CURLcode result, void *arg)
{
    long code = 0;
    size_t n = in_flight();

    (void)arg;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    batch_done(ex.flight);
    ex.flight = NULL;
    if (result == CURLE_OK && code >= 200 && code < 300) {
        sl_series_add(ex.sent, (double)n);
        if (ex.failing)
            sl_log_core(SL_LOG_INFO, "tracing", "export to %s works again", ex.endpoint);
        ex.failing = 0;
    } else {
        sl_series_add(ex.drop_export, (double)n);
        if (!ex.failing)
            sl_log_core(SL_LOG_WARN, "tracing",
                        "export to %s failed (%s); spans are dropped and counted until it works",
                        ex.endpoint != NULL ? ex.endpoint : "(off)",
                        result != CURLE_OK ? curl_easy_strerror(result) : "HTTP error status");
        if (!ex.failing && result == CURLE_OK)
            sl_log_core(SL_LOG_DEBUG, "tracing", "collector answered %ld", code);
        ex.failing = 1;
    }
    count_pending();
    if (ex.on && ex.ready != NULL)
        event_active(ex.soon, EV_TIMEOUT, 0);
}

/* Sends the oldest batch if nothing is in flight; on the flush interval,
 * the filling one when none waits. */
static void flush(void)
{
    batch *b;

    if (!ex.on || ex.flight != NULL)
        return;
    if (ex.ready == NULL)
        seal();
    if ((b = ex.ready) == NULL)
        return;
    ex.ready = b->next;
    if (ex.ready == NULL)
        ex.tail = NULL;
    ex.queued -= b->body.spans;
    ex.flight = b;
    curl_easy_setopt(ex.easy, CURLOPT_URL, ex.endpoint);
    curl_easy_setopt(ex.easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(ex.easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(ex.easy, CURLOPT_HTTPHEADER, ex.headers);
    curl_easy_setopt(ex.easy, CURLOPT_POST, 1L);
    curl_easy_setopt(ex.easy, CURLOPT_POSTFIELDS, b->body.p);
    curl_easy_setopt(ex.easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->body.len);
    curl_easy_setopt(ex.easy, CURLOPT_TIMEOUT_MS, (long)(ex.timeout * 1000));
    count_pending();
    if (sl_chttp_add(ex.http, ex.easy, export_done, NULL) != 0)
        export_done(ex.easy, CURLE_OUT_OF_MEMORY, NULL);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    flush();
}

void sl_trace_export_span(sl_span *s)
{
    if (!ex.on || ex.queued >= ex.max_queue) {
        sl_series_add(ex.on ? ex.drop_queue : ex.drop_disabled, 1);
        sl_span_free(s);
        return;
    }
    if (ex.filling == NULL)
        ex.filling = batch_new();
    if (ex.filling == NULL || sl_otlp_add(&ex.filling->body, s) != 0) {
        sl_series_add(ex.drop_export, 1);
        sl_span_free(s);
        return;
    }
    sl_span_free(s);
    ex.queued++;
    count_pending();
    if (ex.filling->body.spans >= ex.batch) {
        seal();
        if (ex.flight == NULL)
            event_active(ex.soon, EV_TIMEOUT, 0);
    }
}

/* ---------------------------------------------------------- the section */

static int check_endpoint(const char *url, char *err, size_t errlen)
{
    if (url[0] == '\0')
        return 0;
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        snprintf(err, errlen, "\"%s\" is not an http:// or https:// url", url);
        return -1;
    }
    return 0;
}

static int tracing_check(const sl_optset *opts, const char *file, sl_errors *errs)
{
    const sl_optval *v = sl_optset_get(opts, "endpoint");
    char err[512];

    if (check_endpoint(v->raw, err, sizeof(err)) == 0)
        return 0;
    sl_errors_add(errs, file, v->line, "[tracing] endpoint: %s", err);
    return -1;
}

/*
 * The exporter's metrics exist whether or not [tracing] is configured, so
 * that a dashboard or an alert on them sees zero rather than no series
 * while tracing is off.  Released by tracing_shutdown().
 */
int sl_trace_metrics_init(void)
{
    ex.dropped = sl_metric_register(
            SL_METRIC_COUNTER, "sluice_tracing_spans_dropped_total",
            "Spans not exported, by reason: queue (the queue was full), export (the collector "
            "failed or refused the batch), disabled (tracing was turned off with spans queued).",
            "reason", NULL, 0, NULL);
    ex.exported = sl_metric_register(SL_METRIC_COUNTER, "sluice_tracing_spans_exported_total",
                                     "Spans the collector accepted.", NULL, NULL, 0, NULL);
    ex.pending = sl_metric_register(SL_METRIC_GAUGE, "sluice_tracing_spans_pending",
                                    "Ended spans queued or being sent.", NULL, NULL, 0, NULL);
    if (ex.dropped == NULL || ex.exported == NULL || ex.pending == NULL)
        return -1;
    ex.drop_queue = sl_series_of(ex.dropped, "queue");
    ex.drop_export = sl_series_of(ex.dropped, "export");
    ex.drop_disabled = sl_series_of(ex.dropped, "disabled");
    ex.sent = sl_series_of(ex.exported);
    ex.waiting = sl_series_of(ex.pending);
    return 0;
}

/* Frees what make_exporter() made, and forgets it. */
static void free_exporter(void)
{
    if (ex.http != NULL)
        sl_chttp_free(ex.http);
    if (ex.easy != NULL)
        curl_easy_cleanup(ex.easy);
    curl_slist_free_all(ex.headers);
    if (ex.timer != NULL)
        event_free(ex.timer);
    if (ex.soon != NULL)
        event_free(ex.soon);
    ex.http = NULL;
    ex.easy = NULL;
    ex.headers = NULL;
    ex.timer = ex.soon = NULL;
}

/* The exporter's process-wide parts, made once the section is first used;
 * all or none of them, so that a later try starts again. */
static int make_exporter(char *err, size_t errlen)
{
    struct curl_slist *both = NULL;

    if (ex.http != NULL)
        return 0;
    if (sl_chttp_global_init(err, errlen) != 0)
        return -1;
    ex.http = sl_chttp_new(sl_base, 1);
    ex.easy = curl_easy_init();
    ex.headers = curl_slist_append(NULL, "Content-Type: application/json");
    /* No "Expect: 100-continue", which libcurl adds to a body over 1 MB: a
     * round trip per batch, and a second's wait before each with a
     * collector that does not answer it. */
    if (ex.headers != NULL)
        both = curl_slist_append(ex.headers, "Expect:");
    ex.timer = event_new(sl_base, -1, EV_PERSIST, on_timer, NULL);
    ex.soon = event_new(sl_base, -1, 0, on_timer, NULL);
    if (ex.http == NULL || ex.easy == NULL || both == NULL || ex.timer == NULL || ex.soon == NULL) {
        free_exporter();
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int tracing_prepare(const sl_optset *old, const sl_optset *opts, sl_errors *errs)
{
    char err[256];

    (void)old;
    if (sl_optset_get(opts, "endpoint")->raw[0] == '\0' || make_exporter(err, sizeof(err)) == 0)
        return 0;
    sl_errors_add(errs, NULL, 0, "[tracing]: %s", err);
    return -1;
}

static void tracing_shutdown(void)
{
    ex.on = 0;
    drop_queued(NULL);
    sl_trace_pool_free();
    free_exporter();
    if (ex.flight != NULL)
        batch_free(ex.flight);
    while (ex.spare != NULL) {
        batch *b = ex.spare;
        ex.spare = b->next;
        batch_free(b);
    }
    if (ex.dropped != NULL)
        sl_metric_release(ex.dropped);
    if (ex.exported != NULL)
        sl_metric_release(ex.exported);
    if (ex.pending != NULL)
        sl_metric_release(ex.pending);
    free(ex.endpoint);
    free(ex.resource);
    memset(&ex, 0, sizeof(ex));
    sl_chttp_global_cleanup();
}

const sl_section_schema sl_tracing_schema = {
    "tracing",        "spans exported to an OpenTelemetry collector (OTLP/HTTP, JSON)",
    tracing_options,  0,
    tracing_check,    tracing_prepare,
    tracing_shutdown,
};

/* Builds the resource object from service_name and every resource.* key. */
static char *resource_of(const sl_optset *opts)
{
    const char *keys[64], *values[64];
    size_t n = 0;

    for (size_t i = 0; i < opts->n && n < 64; i++) {
        const sl_optval *v = &opts->v[i];
        if (v->line > 0 && strncmp(v->key, "resource.", 9) == 0 && v->key[9] != '\0') {
            keys[n] = v->key + 9;
            values[n++] = v->raw;
        }
    }
    return sl_otlp_resource(sl_optset_get(opts, "service_name")->raw, keys, values, n);
}

void sl_trace_configure(const sl_optset *opts)
{
    const char *endpoint = opts != NULL ? sl_optset_get(opts, "endpoint")->raw : "";
    char *url, *resource;

    if (endpoint[0] == '\0' || ex.http == NULL) {
        if (ex.on) {
            sl_log_core(SL_LOG_INFO, "tracing", "off");
            drop_queued(ex.drop_disabled);
            event_del(ex.timer);
        }
        ex.on = 0;
        return;
    }
    url = strdup(endpoint);
    resource = resource_of(opts);
    if (url == NULL || resource == NULL) {
        /* The section was accepted: keep what runs rather than half of it. */
        sl_log_core(SL_LOG_ERROR, "tracing", "out of memory applying [tracing]");
        free(url);
        free(resource);
        return;
    }
    free(ex.endpoint);
    free(ex.resource);
    ex.endpoint = url;
    ex.resource = resource;
    ex.ratio = sl_optset_get(opts, "sample_ratio")->d;
    ex.batch = (size_t)sl_optset_get(opts, "batch_size")->i;
    ex.max_queue = (size_t)sl_optset_get(opts, "max_queue")->i;
    ex.interval = sl_optset_get(opts, "flush_interval")->d;
    ex.timeout = sl_optset_get(opts, "timeout")->d;
    if (!ex.on)
        sl_log_core(SL_LOG_INFO, "tracing", "exporting spans to %s, sample ratio %g", ex.endpoint,
                    ex.ratio);
    ex.on = 1;
    event_del(ex.timer);
    sl_conn_arm(ex.timer, ex.interval);
}
