/*
 * evtypes.h - the event_type label of sluice_aggregator_events_total,
 * kept to a bounded set.  Page views (view, bounce) and segment events
 * (the six kinds of the segments module) have fixed sets.  An analytics
 * event's eventType is a label value of its own only when it is 1 to 64
 * characters of [A-Za-z0-9_.:-] and among the first max_event_types
 * distinct ones of the instance, counting those a predecessor instance
 * already exposed (a reload does not start the count again); every other
 * type is counted as "other".
 */
#ifndef AGG_EVTYPES_H
#define AGG_EVTYPES_H

#include <stddef.h>
#include <sluice/sluice.h>

#define AGG_EVTYPE_MAX 64
#define AGG_EVTYPE_OTHER "other"

typedef struct {
    char *key; /* "handler/type" */
    sl_series *series;
} agg_evtype;

typedef struct {
    sl_metric *family;
    agg_evtype *slots; /* open addressing, mask + 1 of them */
    size_t mask;
    size_t cap;       /* analytics types admitted at most */
    size_t used;      /* entries */
    size_t admitted;  /* open types admitted so far */
    sl_series *other; /* open types past the bound */
} agg_evtypes;

/* Registers the family and reads back the types of `open_handler` (the
 * one whose types come from the events) that the family already exposes
 * for this instance.  0, or -1 (after sl_fail). */
int agg_evtypes_start(agg_evtypes *t, sl_ctx *ctx, size_t cap, const char *open_handler);
/* The series counting valid events of `type` for the handler named
 * `handler`; `open` when the type comes from the events themselves (it
 * is then bounded as above).  NULL only when out of memory. */
sl_series *agg_evtype_series(agg_evtypes *t, const char *handler, int open, const char *type);
void agg_evtypes_free(agg_evtypes *t);

#endif
