/*
 * core_metrics.c - the daemon's own metrics: build, uptime, reloads,
 * instances, and how late the event loop runs its timers.
 */
#include <stdlib.h>
#include "core.h"
#include "metrics/metrics.h"

static sl_metric *build_info, *uptime, *reloads, *reload_failures, *reload_ok, *reload_ts;
static sl_metric *modules_loaded, *start_failures, *loop_lag, *loop_lag_last;
static struct event *tick;
static double started, tick_due;

#define TICK_SECONDS 0.25

static const double lag_bounds[] = { 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1 };

/* A timer due every TICK_SECONDS: how late it fires is what every other
 * callback on the loop waits behind. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    double now = sl_now(), lag = now - tick_due;
    (void)fd;
    (void)what;
    (void)arg;
    if (lag < 0)
        lag = 0;
    sl_series_observe(sl_series_of(loop_lag), lag);
    sl_series_set(sl_series_of(loop_lag_last), lag);
    sl_series_set(sl_series_of(uptime), now - started);
    tick_due = now + TICK_SECONDS;
}

void sl_core_metrics_init(void)
{
    struct timeval tv = { 0, (suseconds_t)(TICK_SECONDS * 1e6) };

    started = sl_now();
    build_info = sl_metric_register(SL_METRIC_GAUGE, "sluice_build_info",
                                    "Always 1; the labels say which build runs.", "version", NULL,
                                    0, NULL);
    sl_series_set(sl_series_of(build_info, SL_VERSION), 1);
    uptime = sl_metric_register(SL_METRIC_GAUGE, "sluice_uptime_seconds",
                                "Seconds since the daemon started.", NULL, NULL, 0, NULL);
    reloads = sl_metric_register(SL_METRIC_COUNTER, "sluice_reloads_total",
                                 "Configuration reloads attempted, the first load included.", NULL,
                                 NULL, 0, NULL);
    reload_failures = sl_metric_register(SL_METRIC_COUNTER, "sluice_reload_failures_total",
                                         "Reloads refused because the new configuration failed.",
                                         NULL, NULL, 0, NULL);
    reload_ok =
            sl_metric_register(SL_METRIC_GAUGE, "sluice_config_last_reload_successful",
                               "1 when the last reload succeeded, else 0.", NULL, NULL, 0, NULL);
    reload_ts = sl_metric_register(SL_METRIC_GAUGE,
                                   "sluice_config_last_reload_success_timestamp_seconds",
                                   "Wall-clock time of the last successful reload.", NULL, NULL, 0,
                                   NULL);
    modules_loaded = sl_metric_register(SL_METRIC_GAUGE, "sluice_modules_loaded",
                                        "Module instances running.", NULL, NULL, 0, NULL);
    start_failures =
            sl_metric_register(SL_METRIC_COUNTER, "sluice_module_start_failures_total",
                               "Module instances whose start failed.", "module", NULL, 0, NULL);
    loop_lag = sl_metric_register(SL_METRIC_HISTOGRAM, "sluice_event_loop_lag_seconds",
                                  "How late a periodic timer fires: time callbacks waited.", NULL,
                                  lag_bounds, sizeof(lag_bounds) / sizeof(lag_bounds[0]), NULL);
    loop_lag_last = sl_metric_register(SL_METRIC_GAUGE, "sluice_event_loop_lag_last_seconds",
                                       "The latest event loop lag measured.", NULL, NULL, 0, NULL);
    tick = event_new(sl_base, -1, EV_PERSIST, on_tick, NULL);
    if (tick != NULL) {
        tick_due = sl_now() + TICK_SECONDS;
        event_add(tick, &tv);
    }
}

void sl_core_metrics_free(void)
{
    sl_metric *all[] = {
        build_info, uptime,         reloads,        reload_failures, reload_ok,
        reload_ts,  modules_loaded, start_failures, loop_lag,        loop_lag_last
    };

    if (tick != NULL)
        event_free(tick);
    tick = NULL;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (all[i] != NULL)
            sl_metric_release(all[i]);
}

void sl_core_metrics_reload(int ok)
{
    sl_series_add(sl_series_of(reloads), 1);
    if (!ok)
        sl_series_add(sl_series_of(reload_failures), 1);
    sl_series_set(sl_series_of(reload_ok), ok);
    if (ok)
        sl_series_set(sl_series_of(reload_ts), sl_wall());
}

void sl_core_metrics_instances(size_t running)
{
    sl_series_set(sl_series_of(modules_loaded), (double)running);
}

void sl_core_metrics_start_failed(const char *module)
{
    sl_series_add(sl_series_of(start_failures, module), 1);
}
