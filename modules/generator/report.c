/*
 * report.c - the periodic log line: with log_every set, the generator logs
 * its rate and its totals every log_every seconds, so that a run can be
 * followed (and later read back) from the log alone, as the aggregation
 * document asks.  The rate is measured over the interval just ended, from
 * the same counts as the status and the metrics.
 */
#include <inttypes.h>
#include "gen.h"

static uint64_t total(const gen *g, gen_outcome o)
{
    uint64_t n = 0;

    for (int c = 0; c < GEN_NCLASSES; c++)
        n += g->counts[c][o];
    return n;
}

static void report(void *arg)
{
    gen *g = arg;
    double now = sl_now();
    uint64_t generated = total(g, GEN_GENERATED), delivered = total(g, GEN_DELIVERED),
             failed = total(g, GEN_FAILED), dropped = total(g, GEN_DROPPED), malformed = 0;
    double rate =
            now > g->report_at ? (double)(generated - g->report_prev) / (now - g->report_at) : 0;

    for (int c = 0; c < GEN_NCLASSES; c++)
        if (gen_class_malformed((gen_class)c))
            malformed += g->counts[c][GEN_GENERATED];
    sl_log(g->ctx, SL_LOG_INFO,
           "rate %.1f events/s over the last %.1f s (target %.3g, mode %s); totals: generated "
           "%" PRIu64 " (view %" PRIu64 ", bounce %" PRIu64 ", duplicate %" PRIu64
           ", malformed %" PRIu64 "), delivered %" PRIu64 ", failed %" PRIu64 ", dropped %" PRIu64
           ", pending %" PRIu64,
           rate, now - g->report_at, gen_target_eps(g), gen_mode_name(g->mode), generated,
           g->counts[GEN_VIEW][GEN_GENERATED], g->counts[GEN_BOUNCE][GEN_GENERATED],
           g->counts[GEN_DUPLICATE][GEN_GENERATED], malformed, delivered, failed, dropped,
           generated - delivered - failed - dropped);
    g->report_prev = generated;
    g->report_at = now;
}

int gen_report_start(gen *g)
{
    double every = sl_opt_seconds(g->ctx, "log_every");

    if (every <= 0)
        return 0;
    g->report_at = sl_now();
    g->report_timer = sl_timer_new(g->ctx, every, every, report, g);
    return g->report_timer != NULL ? 0 : sl_fail(g->ctx, "cannot create the log_every timer");
}
