/*
 * generator - realistic page-view traffic into Kafka, for feeding the
 * pipeline and load-testing it.  Modes (regular, peak, night) or a fixed
 * rate set the pace; an event mix with duplicates and malformed events
 * and Zipf-skewed populations set the content; sync, async or batch
 * sending sets how the broker is waited for.  Controlled over HTTP under
 * /generator/ (api.c).
 *
 * Stop is a drain: generation stops, what the generator still holds is
 * sent or counted as dropped, the producer is flushed (bounded by
 * flush_timeout) and the counts are logged.  Every event generated ends as
 * delivered, failed or dropped; the module is not exclusive, so on a
 * reload the successor is already generating while this drains.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gen.h"

static const sl_option gen_options[] = {
    { "topic", SL_OPT_STRING, "page_views", "Kafka topic the events go to", 0, 0, NULL },
    { "mode", SL_OPT_ENUM, "regular",
      "traffic shape: regular (a random 1-10 events/s), peak (regular plus bursts), night (1 event "
      "every 10 s)",
      0, 0, GEN_MODE_CHOICES },
    { "eps", SL_OPT_DOUBLE, "0", "fixed rate in events/s; 0: the mode decides", 0, 10000000, NULL },
    { "strategy", SL_OPT_ENUM, "async",
      "sync (wait for each ack, retry with backoff), async (delivery callbacks, bounded in "
      "flight), batch (N messages or X seconds)",
      0, 0, "sync|async|batch" },
    { "seed", SL_OPT_INT, "0", "seed of the random numbers, for reproducible runs; 0: random", 0,
      9007199254740991.0, NULL },
    { "mix", SL_OPT_LIST, "85,10,5", "weights of views, bounces and malformed events", 0, 0, NULL },
    { "malformed_kinds", SL_OPT_LIST, "1,1,1,1,1",
      "weights of the malformed kinds: missing_field, wrong_type, broken_json, negative_duration, "
      "bad_timestamp",
      0, 0, NULL },
    { "duplicates", SL_OPT_DOUBLE, "0.01",
      "share of events repeating the key and event_id of an earlier one", 0, 0.99, NULL },
    { "partitioning", SL_OPT_LIST, "70,20,10",
      "weights of partitioning by page_id key, round-robin and random", 0, 0, NULL },
    { "partitions", SL_OPT_INT, "4",
      "partitions of the topic, for round-robin and random partitioning (at most the topic's "
      "count)",
      1, 100000, NULL },
    { "pages", SL_OPT_INT, "1000", "size of the page population", 1, 1000000, NULL },
    { "users", SL_OPT_INT, "100000", "size of the user population", 1, 1000000, NULL },
    { "page_skew", SL_OPT_DOUBLE, "1.0", "Zipf exponent of page popularity; 0: uniform", 0, 5,
      NULL },
    { "user_skew", SL_OPT_DOUBLE, "0", "Zipf exponent of user activity; 0: uniform", 0, 5, NULL },
    { "event_size", SL_OPT_INT, "0",
      "pad events with a \"pad\" field to this many bytes; 0: no padding", 0, GEN_EVENT_SIZE_MAX,
      NULL },
    { "trace_headers", SL_OPT_BOOL, "false",
      "also send the headers origin and partitioning (for tests and debugging; each header costs "
      "an allocation per message)",
      0, 0, NULL },
    { "trace_share", SL_OPT_DOUBLE, "0",
      "share of events that start a trace when [tracing] is on (its sample_ratio then decides "
      "which are recorded); the message carries it in a traceparent header",
      0, 1, NULL },
    { "burst_max", SL_OPT_INT, "100000", "largest burst POST generate/burst accepts", 1, 100000000,
      NULL },
    { "burst_pending_max", SL_OPT_INT, "1000000",
      "burst events waiting to be sent at most: a POST generate/burst that would pass it is "
      "answered 429, a peak burst is cut to fit",
      1, 1000000000, NULL },
    { "peak_every", SL_OPT_DURATION, "30s", "peak mode: time between bursts", 0.1, 86400, NULL },
    { "peak_burst_min", SL_OPT_INT, "100", "peak mode: smallest burst", 1, 100000000, NULL },
    { "peak_burst_max", SL_OPT_INT, "1000", "peak mode: largest burst", 1, 100000000, NULL },
    { "regular_every", SL_OPT_DURATION, "10s",
      "regular and peak modes: how long one random rate lasts", 0.1, 86400, NULL },
    { "inflight", SL_OPT_INT, "100000",
      "async and batch: events handed to the producer and not yet confirmed; beyond it events are "
      "dropped",
      1, 100000000, NULL },
    { "backlog", SL_OPT_INT, "10000",
      "events the generator holds (due but not yet sent, sync queue, batch buffer); beyond it "
      "events are dropped",
      1, 100000000, NULL },
    { "batch_size", SL_OPT_INT, "1000", "batch: send when this many events accumulated", 1,
      10000000, NULL },
    { "batch_interval", SL_OPT_DURATION, "1s",
      "batch: send when the oldest waiting event is this old", 0.001, 3600, NULL },
    { "retries", SL_OPT_INT, "5", "sync: attempts per event, the first included", 1, 100, NULL },
    { "retry_backoff", SL_OPT_DURATION, "1s",
      "sync: delay after the first failed attempt, doubled after each", 0.001, 3600, NULL },
    { "retry_backoff_max", SL_OPT_DURATION, "30s", "sync: the longest delay between attempts",
      0.001, 3600, NULL },
    { "delivery_timeout", SL_OPT_DURATION, "30s",
      "how long one attempt waits for the broker's ack (librdkafka message.timeout.ms)", 0.01, 3600,
      NULL },
    { "flush_timeout", SL_OPT_DURATION, "5s", "on stop, how long to wait for unconfirmed events", 0,
      3600, NULL },
    { "log_every", SL_OPT_DURATION, "0",
      "log the rate over the interval and the totals (generated by class, delivered, failed, "
      "dropped, pending) this often (at least 1s); 0: never",
      0, 86400, NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

static const char *const origin_names[GEN_NORIGINS] = {
    "regular", "peak", "night", "fixed", "burst", "peak_burst",
};
static const char *const drop_names[GEN_NDROPS] = {
    "queue_full",
    "inflight_limit",
    "backlog_full",
    "stopping",
};

const char *gen_origin_name(gen_origin o)
{
    return (unsigned)o < GEN_NORIGINS ? origin_names[o] : "unknown";
}

const char *gen_drop_name(gen_drop d)
{
    return (unsigned)d < GEN_NDROPS ? drop_names[d] : "unknown";
}

/* The state is tracked like any resource, so that an instance cut off
 * mid-drain leaves nothing allocated.  It runs after the producer, timers
 * and routes were released (newest first), so nothing calls back. */
static void free_state(void *obj)
{
    gen *g = obj;

    gen_send_free(g);
    gen_mix_free(&g->mix);
    gen_cdf_free(&g->pages);
    gen_cdf_free(&g->users);
    gen_partitioner_free(&g->part);
    free(g->ring_values);
    free(g);
}

/* The weight lists, parsed the same way by check() and start().  Each
 * bad one is reported at its key.  0 or -1. */
static int weights(sl_ctx *ctx, const char *option, size_t n, const char *names, double *out)
{
    const char *items[16];
    size_t len = sl_opt_list_len(ctx, option);
    char why[256];

    if (len > 16)
        len = 16 + 1; /* reported as a wrong count */
    for (size_t i = 0; i < len && i < 16; i++)
        items[i] = sl_opt_list_at(ctx, option, i);
    if (gen_parse_weights(items, len, n, names, out, why, sizeof(why)) != 0)
        return sl_fail_opt(ctx, option, "%s", why);
    return 0;
}

static const char MIX_NAMES[] = "view, bounce, malformed";
static const char KIND_NAMES[] =
        "missing_field, wrong_type, broken_json, negative_duration, bad_timestamp";
static const char PART_NAMES[] = "key, round_robin, random";

static int metrics_start(gen *g)
{
    sl_ctx *ctx = g->ctx;
    static const double bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                     0.5,   1,      2.5,   5,    10,    30,   60 };
    static const char *const types[4] = { "view", "bounce", "duplicate", "malformed" };
    sl_metric *events =
            sl_counter(ctx, "sluice_generator_events_total", "Events generated, by type", "type");
    sl_metric *malformed = sl_counter(ctx, "sluice_generator_malformed_events_total",
                                      "Malformed events generated, by kind", "kind");
    sl_metric *delivered = sl_counter(ctx, "sluice_generator_delivered_total",
                                      "Events the broker acknowledged", NULL);
    sl_metric *failed = sl_counter(ctx, "sluice_generator_failed_total",
                                   "Events that could not be delivered (after every retry)", NULL);
    sl_metric *dropped =
            sl_counter(ctx, "sluice_generator_dropped_total",
                       "Events dropped before reaching the broker, by reason", "reason");
    sl_metric *retries = sl_counter(ctx, "sluice_generator_retries_total",
                                    "Send attempts after a failed one (sync)", NULL);
    sl_metric *latency = sl_histogram(ctx, "sluice_generator_send_latency_seconds",
                                      "From the intended send time to the broker's ack", NULL,
                                      bounds, sizeof(bounds) / sizeof(bounds[0]));
    sl_metric *mode =
            sl_gauge(ctx, "sluice_generator_mode", "1 for the current traffic mode", "mode");
    sl_metric *target = sl_gauge(ctx, "sluice_generator_target_events_per_second",
                                 "The rate the generator aims at, bursts aside", NULL);
    sl_metric *inflight = sl_gauge(ctx, "sluice_generator_inflight",
                                   "Events handed to the producer and not yet confirmed", NULL);
    sl_metric *missed = sl_counter(ctx, "sluice_generator_schedule_missed_total",
                                   "Events the rate asked for that were never generated because "
                                   "the generator fell behind or was held back",
                                   NULL);

    if (events == NULL || malformed == NULL || delivered == NULL || failed == NULL ||
        dropped == NULL || retries == NULL || latency == NULL || mode == NULL || target == NULL ||
        inflight == NULL || missed == NULL)
        return sl_fail(ctx, "cannot register metrics");
    for (int i = 0; i < 4; i++)
        g->m_events[i] = sl_series_of(events, types[i]);
    for (int i = 0; i < GEN_NKINDS; i++)
        g->m_malformed[i] =
                sl_series_of(malformed, gen_class_name((gen_class)(GEN_MISSING_FIELD + i)));
    for (int i = 0; i < GEN_NDROPS; i++)
        g->m_dropped[i] = sl_series_of(dropped, drop_names[i]);
    for (int i = 0; i < GEN_NMODES; i++)
        g->m_mode[i] = sl_series_of(mode, gen_mode_name((gen_mode)i));
    g->m_delivered = sl_series_of(delivered);
    g->m_failed = sl_series_of(failed);
    g->m_retries = sl_series_of(retries);
    g->m_latency = sl_series_of(latency);
    g->m_target = sl_series_of(target);
    g->m_inflight = sl_series_of(inflight);
    g->m_missed = sl_series_of(missed);
    return 0;
}

/* The pure parts: mix, populations, partitioning, backoff. */
static int model_start(gen *g)
{
    sl_ctx *ctx = g->ctx;
    double mix[3], kinds[GEN_NKINDS], part[GEN_NPART];
    long long seed = sl_opt_int(ctx, "seed");

    if (weights(ctx, "mix", 3, MIX_NAMES, mix) != 0 ||
        weights(ctx, "malformed_kinds", GEN_NKINDS, KIND_NAMES, kinds) != 0 ||
        weights(ctx, "partitioning", GEN_NPART, PART_NAMES, part) != 0)
        return -1;
    if (gen_mix_init(&g->mix, mix, kinds, sl_opt_double(ctx, "duplicates")) != 0)
        return sl_fail(ctx, "cannot set up the event mix");
    if (gen_cdf_zipf(&g->pages, (size_t)sl_opt_int(ctx, "pages"),
                     sl_opt_double(ctx, "page_skew")) != 0 ||
        gen_cdf_zipf(&g->users, (size_t)sl_opt_int(ctx, "users"),
                     sl_opt_double(ctx, "user_skew")) != 0)
        return sl_fail(ctx, "out of memory for the populations");
    if (gen_partitioner_init(&g->part, part, (int32_t)sl_opt_int(ctx, "partitions")) != 0)
        return sl_fail(ctx, "cannot set up partitioning");
    if (seed == 0) {
        /* Random, but logged, so that a run worth repeating can be. */
        FILE *f = fopen("/dev/urandom", "rb");
        uint64_t s = 0;
        if (f == NULL || fread(&s, sizeof(s), 1, f) != 1)
            s = (uint64_t)(sl_wall() * 1e6);
        if (f != NULL)
            fclose(f);
        seed = (long long)(s & 0x1fffffffffffffULL);
    }
    gen_rng_seed(&g->rng, (uint64_t)seed);
    sl_log(ctx, SL_LOG_INFO, "seed %lld (set seed = %lld to repeat this run)", seed, seed);
    g->backoff.attempts = (int)sl_opt_int(ctx, "retries");
    g->backoff.base = sl_opt_seconds(ctx, "retry_backoff");
    g->backoff.cap = sl_opt_seconds(ctx, "retry_backoff_max");
    g->event_size = (size_t)sl_opt_int(ctx, "event_size");
    g->trace_headers = sl_opt_bool(ctx, "trace_headers");
    g->trace_share = sl_opt_double(ctx, "trace_share");
    return 0;
}

/* What start() would refuse in the options themselves (sluice.h): every
 * problem is reported, each at its key. */
static int gen_check(sl_ctx *ctx)
{
    double mix[3], kinds[GEN_NKINDS], part[GEN_NPART];
    int rc = 0;

    if (sl_opt_str(ctx, "topic")[0] == '\0')
        rc = sl_fail_opt(ctx, "topic", "must not be empty");
    if (sl_opt_int(ctx, "peak_burst_min") > sl_opt_int(ctx, "peak_burst_max"))
        rc = sl_fail_opt(ctx, "peak_burst_min", "must not exceed peak_burst_max (%lld)",
                         sl_opt_int(ctx, "peak_burst_max"));
    if (sl_opt_int(ctx, "burst_pending_max") < sl_opt_int(ctx, "burst_max"))
        rc = sl_fail_opt(ctx, "burst_pending_max", "must be at least burst_max (%lld)",
                         sl_opt_int(ctx, "burst_max"));
    /* a log line more often than a second would drown the log */
    if (sl_opt_seconds(ctx, "log_every") > 0 && sl_opt_seconds(ctx, "log_every") < 1)
        rc = sl_fail_opt(ctx, "log_every", "must be 0 (off) or at least 1s");
    if (weights(ctx, "mix", 3, MIX_NAMES, mix) != 0)
        rc = -1;
    if (weights(ctx, "malformed_kinds", GEN_NKINDS, KIND_NAMES, kinds) != 0)
        rc = -1;
    if (weights(ctx, "partitioning", GEN_NPART, PART_NAMES, part) != 0)
        rc = -1;
    return rc;
}

/* The options passed check(); start() still parses the weights (it needs
 * them) with the same code, and fails only on what depends on the running
 * system. */
static int gen_start(sl_ctx *ctx)
{
    gen *g = calloc(1, sizeof(*g));
    const char *strategy = sl_opt_str(ctx, "strategy");
    char err[512];

    if (g == NULL)
        return sl_fail(ctx, "out of memory");
    g->ctx = ctx;
    if (sl_track(ctx, "generator state", g, free_state, NULL) == NULL) {
        free(g);
        return sl_fail(ctx, "out of memory");
    }
    sl_set_data(ctx, g);
    g->t0 = sl_now();
    g->topic = sl_opt_str(ctx, "topic");
    g->name = sl_instance_name(ctx)[0] != '\0' ? sl_instance_name(ctx) : "generator";
    g->strategy = strcmp(strategy, "sync") == 0    ? GEN_SYNC
                  : strcmp(strategy, "batch") == 0 ? GEN_BATCH
                                                   : GEN_ASYNC;
    g->ring_values = malloc((size_t)GEN_RING * GEN_VALUE_CAP);
    if (g->ring_values == NULL)
        return sl_fail(ctx, "out of memory");
    if (metrics_start(g) != 0 || model_start(g) != 0)
        return -1;
    if (gen_send_start(g, err, sizeof(err)) != 0)
        return sl_fail(ctx, "%s", err);
    if (gen_traffic_start(g) != 0 || gen_api_start(g) != 0 || gen_report_start(g) != 0)
        return -1;
    sl_log(ctx, SL_LOG_INFO, "generating into %s: mode %s, target %.3g events/s, strategy %s",
           g->topic, gen_mode_name(g->mode), gen_target_eps(g), strategy);
    return 0;
}

static void gen_stop(sl_ctx *ctx)
{
    gen *g = sl_data(ctx);

    if (g == NULL) {
        sl_stopped(ctx);
        return;
    }
    g->stopping = 1;
    sl_timer_free(g->kick);
    sl_timer_free(g->second);
    g->kick = g->second = NULL;
    gen_send_drain(g); /* calls sl_stopped() when done */
}

SL_API const sl_module sluice_module = {
    .abi_version = SL_ABI_VERSION,
    .name = "generator",
    .description =
            "realistic page-view traffic into Kafka, with modes, send strategies and a control API",
    .options = gen_options,
    .flags = 0,
    .start = gen_start,
    .stop = gen_stop,
    .check = gen_check,
};
