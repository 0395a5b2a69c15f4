/*
 * traffic.c - what is generated when.  A token bucket paces events at the
 * target rate (the mode's, or a fixed one); bursts come on top of it.  A
 * generation turn makes what is due, at most TURN_BUDGET events, so that
 * the loop keeps answering while the generator runs flat out; it comes
 * back at once when more is due and sleeps until the next token otherwise.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "gen.h"

#define TURN_BUDGET 4096
#define NIGHT_EPS 0.1
#define REGULAR_MIN_EPS 1
#define REGULAR_MAX_EPS 10
/* The bucket holds at most this many seconds of a rate, and never less
 * than one event: a generator that fell further behind skips slots
 * (counted as missed) rather than sending an unbounded catch-up burst. */
#define CATCH_UP_SECONDS 1.0

double gen_target_eps(const gen *g)
{
    return g->fixed ? g->fixed_eps : g->mode_eps;
}

static gen_origin rate_origin(const gen *g)
{
    if (g->fixed)
        return GEN_ORIGIN_FIXED;
    return g->mode == GEN_MODE_PEAK    ? GEN_ORIGIN_PEAK
           : g->mode == GEN_MODE_NIGHT ? GEN_ORIGIN_NIGHT
                                       : GEN_ORIGIN_REGULAR;
}

/* The bucket's capacity follows the rate, within the backlog bound. */
static void apply_rate(gen *g)
{
    double now = sl_now();
    double eps = gen_target_eps(g);
    double cap = eps * CATCH_UP_SECONDS;

    if (cap > (double)g->backlog_max)
        cap = (double)g->backlog_max;
    gen_bucket_set_rate(&g->bucket, eps, now);
    /* A new rate starts its schedule afresh: night mode's first event
     * comes 10 s after the switch, not whenever a leftover fraction of
     * the old rate's token says. */
    if (g->bucket.tokens < 1)
        g->bucket.tokens = 0;
    g->bucket.capacity = cap >= 1 ? cap : 1;
    gen_bucket_refill(&g->bucket, now);
    sl_series_set(g->m_target, eps);
    if (g->kick != NULL && !g->paused)
        sl_timer_arm(g->kick, 0);
}

static void draw_mode_rate(gen *g)
{
    if (g->mode == GEN_MODE_NIGHT)
        g->mode_eps = NIGHT_EPS;
    else
        g->mode_eps = (double)gen_rng_between(&g->rng, REGULAR_MIN_EPS, REGULAR_MAX_EPS);
    g->regular_next = sl_now() + g->regular_every;
}

void gen_set_mode(gen *g, gen_mode mode)
{
    g->mode = mode;
    g->fixed = 0; /* setting the mode again ends a fixed rate */
    draw_mode_rate(g);
    g->peak_next = sl_now() + g->peak_every;
    for (int i = 0; i < GEN_NMODES; i++)
        sl_series_set(g->m_mode[i], i == (int)mode);
    apply_rate(g);
    sl_log(g->ctx, SL_LOG_INFO, "mode %s: %.3g events/s", gen_mode_name(mode), gen_target_eps(g));
}

/* A fixed rate, 0 included (a pause), holds until the mode is set again. */
void gen_set_eps(gen *g, double eps)
{
    g->fixed = 1;
    g->fixed_eps = eps;
    apply_rate(g);
    sl_log(g->ctx, SL_LOG_INFO, "fixed rate %.6g events/s (mode %s set aside until set again)", eps,
           gen_mode_name(g->mode));
}

long long gen_burst_room(const gen *g)
{
    long long pending = g->burst_left[0] + g->burst_left[1];

    return pending < g->burst_pending_max ? g->burst_pending_max - pending : 0;
}

void gen_add_burst(gen *g, long long count, int peak)
{
    /* a peak burst that finds the sender behind is cut, not stacked */
    if (count > gen_burst_room(g))
        count = gen_burst_room(g);
    if (count == 0)
        return;
    if (g->burst_left[peak] == 0)
        g->burst_at[peak] = sl_now();
    g->burst_left[peak] += count;
    sl_log(g->ctx, SL_LOG_INFO, "%s of %lld events", peak ? "peak burst" : "burst", count);
    if (g->kick != NULL && !g->paused)
        sl_timer_arm(g->kick, 0);
}

/* ------------------------------------------------------------- events */

/* A duplicate repeats an earlier event as it was sent: same key, event_id,
 * value and partition. */
static void make_duplicate(gen *g, gen_msg *m)
{
    const gen_msg *orig = &g->ring[gen_rng_below(&g->rng, g->ring_n)];

    *m = *orig;
    m->klass = GEN_DUPLICATE;
}

/* A fresh event, rendered straight into the ring slot it may later be
 * repeated from (malformed ones are never repeated). */
static void make_fresh(gen *g, gen_msg *m, gen_class klass, double intended, double wall_offset)
{
    gen_event ev;
    gen_part_how how;
    char *buf = g->scratch;
    size_t slot = g->ring_next;

    if (!gen_class_malformed(klass))
        buf = g->ring_values + slot * GEN_VALUE_CAP;
    gen_event_draw(&ev, klass, &g->rng, &g->pages, &g->users,
                   (int64_t)llround((intended + wall_offset) * 1000));
    m->klass = (uint8_t)klass;
    m->type = (uint8_t)klass;
    m->partition = gen_partition_pick(&g->part, &g->rng, &how);
    m->how = (uint8_t)how;
    m->keylen = gen_event_key(&ev, m->key);
    memcpy(m->id, ev.id, sizeof(m->id));
    m->value = buf;
    m->len = gen_event_render(&ev, buf, g->event_size);
    if (buf != g->scratch) {
        g->ring[slot] = *m;
        g->ring_next = (slot + 1) % GEN_RING;
        if (g->ring_n < GEN_RING)
            g->ring_n++;
    }
}

static void make_event(gen *g, gen_origin origin, double intended, double wall_offset)
{
    gen_msg m;
    gen_class klass = gen_mix_draw(&g->mix, &g->rng, g->ring_n > 0);

    if (klass == GEN_DUPLICATE)
        make_duplicate(g, &m);
    else
        make_fresh(g, &m, klass, intended, wall_offset);
    m.origin = (uint8_t)origin;
    m.intended = intended;
    m.attempts = 0;
    gen_count(g, &m, GEN_GENERATED);
    gen_send(g, &m);
}

/* ---------------------------------------------------------- the turn */

static void turn(void *arg)
{
    gen *g = arg;
    double now = sl_now();
    double wall_offset = sl_wall() - now;
    long budget = TURN_BUDGET;
    double first, step;
    uint64_t n, i;

    if (g->stopping)
        return;
    for (int b = 0; b < 2; b++) {
        while (g->burst_left[b] > 0 && budget > 0 && !g->paused && !g->stopping) {
            g->burst_left[b]--;
            budget--;
            make_event(g, b ? GEN_ORIGIN_PEAK_BURST : GEN_ORIGIN_BURST, g->burst_at[b],
                       wall_offset);
        }
    }
    n = g->paused ? 0 : gen_bucket_take(&g->bucket, now, (uint64_t)budget, &first, &step);
    for (i = 0; i < n && !g->paused && !g->stopping; i++)
        make_event(g, rate_origin(g), first + (double)i * step, wall_offset);
    /* Held back mid-turn: what was taken but not made is still due. */
    g->bucket.tokens += (double)(n - i);
    if (g->stopping || g->paused || g->kick == NULL)
        return;
    if (g->burst_left[0] > 0 || g->burst_left[1] > 0)
        sl_timer_arm(g->kick, 0);
    else
        sl_timer_arm(g->kick, gen_bucket_wait(&g->bucket, sl_now()));
}

void gen_resume(gen *g)
{
    if (!g->paused || g->stopping)
        return;
    g->paused = 0;
    if (g->kick != NULL)
        sl_timer_arm(g->kick, 0);
}

/* Once a second: the mode's own changes, the measured rate, the gauges. */
static void each_second(void *arg)
{
    gen *g = arg;
    double now = sl_now();
    uint64_t generated = 0;

    if (g->mode != GEN_MODE_NIGHT && now >= g->regular_next) {
        draw_mode_rate(g);
        if (!g->fixed) {
            apply_rate(g);
            sl_log(g->ctx, SL_LOG_DEBUG, "mode %s: now %.3g events/s", gen_mode_name(g->mode),
                   g->mode_eps);
        }
    }
    /* A fixed rate overrides the mode's shape, its bursts included. */
    if (g->mode == GEN_MODE_PEAK && !g->fixed && now >= g->peak_next) {
        g->peak_next = now + g->peak_every;
        gen_add_burst(g, gen_rng_between(&g->rng, g->peak_min, g->peak_max), 1);
    }
    for (int c = 0; c < GEN_NCLASSES; c++)
        generated += g->counts[c][GEN_GENERATED];
    if (now > g->measured_at) {
        g->measured = (double)(generated - g->measured_prev) / (now - g->measured_at);
        g->measured_prev = generated;
        g->measured_at = now;
    }
    gen_bucket_refill(&g->bucket, now);
    sl_series_set(g->m_inflight, (double)g->inflight);
    {
        static const double epsilon = 1e-9;
        double missed = floor(g->bucket.missed + epsilon);
        if (missed > 0) {
            sl_series_add(g->m_missed, missed);
            g->bucket.missed -= missed;
            g->missed_total += (uint64_t)missed;
        }
    }
    g->fail_logged = 0;
}

int gen_traffic_start(gen *g)
{
    sl_ctx *ctx = g->ctx;
    gen_mode mode = GEN_MODE_REGULAR;
    char why[128];
    double now = sl_now();

    g->max_eps = 10000000;
    g->burst_max = sl_opt_int(ctx, "burst_max");
    g->burst_pending_max = sl_opt_int(ctx, "burst_pending_max");
    g->peak_every = sl_opt_seconds(ctx, "peak_every");
    g->peak_min = sl_opt_int(ctx, "peak_burst_min");
    g->peak_max = sl_opt_int(ctx, "peak_burst_max");
    g->regular_every = sl_opt_seconds(ctx, "regular_every");
    g->measured_at = now;
    if (gen_parse_mode(sl_opt_str(ctx, "mode"), &mode, why, sizeof(why)) != 0)
        return sl_fail(ctx, "%s", why);
    gen_bucket_init(&g->bucket, 0, 1, now);
    g->kick = sl_timer_new(ctx, 0, 0, turn, g);
    g->second = sl_timer_new(ctx, 1, 1, each_second, g);
    if (g->kick == NULL || g->second == NULL)
        return sl_fail(ctx, "cannot create timers");
    g->mode = mode;
    draw_mode_rate(g);
    g->peak_next = now + g->peak_every;
    for (int i = 0; i < GEN_NMODES; i++)
        sl_series_set(g->m_mode[i], i == (int)mode);
    /* In the config, 0 means no fixed rate. */
    g->fixed_eps = sl_opt_double(ctx, "eps");
    g->fixed = g->fixed_eps > 0;
    apply_rate(g);
    return 0;
}
