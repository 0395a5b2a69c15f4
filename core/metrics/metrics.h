/*
 * metrics.h - the metrics registry and its Prometheus text exposition.
 *
 * Families are global and reference counted: every registration (by an
 * instance through sluice.h, or by the core) takes a reference and the
 * family with its series is freed when the last reference goes.  A handle
 * (sl_metric) is one registration: it remembers the registrant's instance
 * name, which becomes the label instance_name of the series it creates.
 * Everything runs on the loop thread; values are plain doubles.
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include <stddef.h>
#include <sluice/sluice.h>

typedef enum { SL_METRIC_COUNTER, SL_METRIC_GAUGE, SL_METRIC_HISTOGRAM } sl_metric_type;

/*
 * Registers (or shares) the family `name`.  `labels` is a comma separated
 * list of label names or NULL.  `instance` is "" or NULL for none.  Returns
 * NULL, logging why, when the name or a label name is not a valid
 * Prometheus name, or when `name` exists with another type, labels or
 * buckets.  Histogram `bounds` must be strictly ascending.
 */
sl_metric *sl_metric_register(sl_metric_type type, const char *name, const char *help,
                              const char *labels, const double *bounds, size_t nbounds,
                              const char *instance);
/* Drops one registration; the family goes with its last one. */
void sl_metric_release(sl_metric *m);

/* A gauge whose subject is gone (a partition this consumer no longer
 * reads): not exposed until its next sl_series_set() or sl_series_add().
 * Other types are left alone: a counter's history stays meaningful. */
void sl_series_retire(sl_series *s);

/*
 * Renders every family in the Prometheus text format 0.0.4, families sorted
 * by name, series in creation order.  Returns a malloc'd NUL-terminated
 * string (length in *len) or NULL on allocation failure.
 */
char *sl_metrics_render(size_t *len);

/* Number of families currently registered (for tests and leak checks). */
size_t sl_metrics_family_count(void);

#endif
