/*
 * timer.c - timers, descriptor watches and clocks for modules.
 *
 * Both are libevent events tracked against the instance, so a module that
 * forgets one at stop cannot be called back after it is unloaded.
 */
#include <stdlib.h>
#include <time.h>
#include "core.h"
#include "trace/trace.h"

struct sl_timer {
    struct event *ev;
    sl_ctx *ctx;
    sl_resource *res;
    double seconds;
    int repeat;
    sl_timer_fn fn;
    void *arg;
    sl_trace_ctx trace; /* current when it was armed: its work's context */
};

struct sl_watch {
    struct event *ev;
    sl_ctx *ctx;
    sl_resource *res;
    sl_watch_fn fn;
    void *arg;
};

static struct timeval to_timeval(double seconds)
{
    struct timeval tv;

    if (seconds < 0)
        seconds = 0;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    return tv;
}

static void timer_fired(evutil_socket_t fd, short what, void *arg)
{
    sl_timer *t = arg;
    sl_trace_ctx saved;
    (void)fd;
    (void)what;
    sl_trace_enter(&t->trace, &saved);
    t->fn(t->arg);
    sl_trace_restore(&saved);
}

static void timer_release(void *obj)
{
    sl_timer *t = obj;
    event_free(t->ev);
    free(t);
}

SL_API sl_timer *sl_timer_new(sl_ctx *ctx, double seconds, int repeat, sl_timer_fn fn, void *arg)
{
    sl_timer *t;

    if (sl_ctx_refuse(ctx, "a timer"))
        return NULL;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->ev = event_new(sl_base, -1, repeat ? EV_PERSIST : 0, timer_fired, t);
    if (t->ev == NULL) {
        free(t);
        return NULL;
    }
    t->ctx = ctx;
    t->seconds = seconds;
    t->repeat = repeat;
    t->fn = fn;
    t->arg = arg;
    t->res = sl_track(ctx, "timer", t, timer_release, NULL);
    if (t->res == NULL) {
        timer_release(t);
        return NULL;
    }
    sl_timer_arm(t, seconds);
    return t;
}

SL_API void sl_timer_arm(sl_timer *t, double seconds)
{
    struct timeval tv = to_timeval(seconds);
    t->seconds = seconds;
    t->trace = sl_trace_cur;
    event_add(t->ev, &tv);
}

SL_API void sl_timer_disarm(sl_timer *t)
{
    event_del(t->ev);
}

SL_API void sl_timer_free(sl_timer *t)
{
    if (t == NULL)
        return;
    sl_untrack(t->ctx, t->res);
    timer_release(t);
}

static void watch_fired(evutil_socket_t fd, short what, void *arg)
{
    sl_watch *w = arg;
    w->fn((int)fd, (short)(what & (SL_READ | SL_WRITE)), w->arg);
}

static void watch_release(void *obj)
{
    sl_watch *w = obj;
    event_free(w->ev);
    free(w);
}

SL_API sl_watch *sl_watch_new(sl_ctx *ctx, int fd, short what, sl_watch_fn fn, void *arg)
{
    sl_watch *w;
    short flags;

    if (sl_ctx_refuse(ctx, "an fd watch"))
        return NULL;
    w = calloc(1, sizeof(*w));
    flags = EV_PERSIST | ((what & SL_READ) ? EV_READ : 0) | ((what & SL_WRITE) ? EV_WRITE : 0);
    if (w == NULL)
        return NULL;
    w->ev = event_new(sl_base, fd, flags, watch_fired, w);
    if (w->ev == NULL || event_add(w->ev, NULL) != 0) {
        if (w->ev != NULL)
            event_free(w->ev);
        free(w);
        return NULL;
    }
    w->ctx = ctx;
    w->fn = fn;
    w->arg = arg;
    w->res = sl_track(ctx, "watch", w, watch_release, NULL);
    if (w->res == NULL) {
        watch_release(w);
        return NULL;
    }
    return w;
}

SL_API void sl_watch_free(sl_watch *w)
{
    if (w == NULL)
        return;
    sl_untrack(w->ctx, w->res);
    watch_release(w);
}

SL_API double sl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

SL_API double sl_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
