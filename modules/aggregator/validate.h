/*
 * validate.h - the checks of every handler, pure so that they are unit
 * tested: a message either becomes a parsed event or is rejected with a
 * reason (a bounded set, used as a metric label and stored with the
 * message) and a detail naming the field and the value.
 *
 * Reason names of page views match the generator's malformed kinds
 * (missing_field, wrong_type, broken_json, negative_duration,
 * bad_timestamp), so the two sides can be compared kind by kind.
 */
#ifndef AGG_VALIDATE_H
#define AGG_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    AGG_OK = 0,
    AGG_R_EMPTY,             /* no value (tombstone) or an empty one */
    AGG_R_TOO_LARGE,         /* larger than max_message_bytes */
    AGG_R_BROKEN_JSON,       /* not parsable as JSON */
    AGG_R_NOT_OBJECT,        /* JSON, but not an object */
    AGG_R_MISSING_FIELD,     /* a required field is absent */
    AGG_R_WRONG_TYPE,        /* a field has the wrong JSON type */
    AGG_R_BAD_VALUE,         /* right type, value not allowed (unknown type, empty id ...) */
    AGG_R_NEGATIVE_DURATION, /* duration_s < 0 */
    AGG_R_BAD_TIMESTAMP,     /* not RFC 3339, or outside 2000..2100 */
    AGG_R_FUTURE_TIMESTAMP,  /* later than now + max_future */
    AGG_R_MISSING_EVENT_ID,  /* segment_events: no usable event_id header */
    AGG_R_NO_ROUTE,          /* subscribed, but no route matches the topic */
    AGG_NREASONS
} agg_reason;

const char *agg_reason_name(agg_reason r);

/* Limits a check needs besides the message. */
typedef struct {
    double now;        /* wall clock, seconds */
    double max_future; /* seconds a timestamp may be ahead of now */
} agg_limits;

#define AGG_ID_MAX 64
#define AGG_NAME_MAX 128

/* A page view as the generator sends it. */
typedef struct {
    char event_id[AGG_ID_MAX + 1];
    int bounce; /* event_type "bounce", else "view" */
    char page_id[AGG_NAME_MAX + 1];
    char user_id[AGG_NAME_MAX + 1];
    int64_t ts_ms;
    double duration_s;
} agg_page_view;

/* A generic analytics event {id, timestamp, eventType, userId, properties}.
 * Lenient where the analytics document allows it: without `timestamp`
 * (absent or null) the event takes the time it was consumed (lim->now);
 * without `id` it takes one derived from its content (agg_analytics_id),
 * so that a redelivered copy still collapses. */
typedef struct {
    char id[AGG_ID_MAX + 1];
    char event_type[AGG_NAME_MAX + 1];
    char user_id[AGG_NAME_MAX + 1];
    int64_t ts_ms;
    char *properties; /* JSON text of the properties object, malloc'd ("{}" when absent) */
    int id_derived;   /* the id is agg_analytics_id() of the content */
    int ts_consumed;  /* ts_ms is lim->now: the event had no timestamp */
} agg_analytics;

/* The id of an analytics event that has none: SipHash-1-3-128 under a fixed
 * key of its canonical JSON (object members sorted by name at every level,
 * no whitespace), written as a version 8 UUID (RFC 9562).  Byte-for-byte
 * copies and re-serialisations of one event get the same id on every
 * instance and after restarts; so do two events identical in every field,
 * timestamp included.  `root` is reordered.  0, or -1 when out of memory. */
#define AGG_DERIVED_ID_LEN 36
struct cJSON;
int agg_analytics_id(struct cJSON *root, char out[AGG_DERIVED_ID_LEN + 1]);

/* A segment membership change, the outbox relay's payload. */
typedef struct {
    uint64_t event_id; /* the event_id header (the outbox id) */
    long long user_id;
    char slug[AGG_NAME_MAX + 1];
    char operation;         /* 'I' or 'D' */
    const char *event_type; /* the operation's kind: segment_added ... (static) */
    int64_t ts_ms;
} agg_segment;

/*
 * Each returns AGG_OK and fills `out`, or a reason with `detail` saying
 * which field and why.  `header_*` are the message's event_id and
 * event_type headers (NULL when absent).
 */
agg_reason agg_check_page_view(const char *v, size_t len, const agg_limits *lim, agg_page_view *out,
                               char *detail, size_t dlen);
agg_reason agg_check_analytics(const char *v, size_t len, const agg_limits *lim, agg_analytics *out,
                               char *detail, size_t dlen);
agg_reason agg_check_segment(const char *v, size_t len, const char *header_id,
                             const char *header_type, const agg_limits *lim, agg_segment *out,
                             char *detail, size_t dlen);

/* RFC 3339 (e.g. 2026-11-30T14:00:00.123Z, or +01:00) to epoch
 * milliseconds; 0 or -1 when malformed or out of range. */
int agg_parse_rfc3339(const char *s, int64_t *ms);

#endif
