/*
 * event.h - one page-view event and its JSON, per the data contract:
 *
 *   {"event_id","event_type":"view|bounce","page_id","user_id",
 *    "ts" (RFC 3339),"duration_s"}
 *
 * and the malformed shapes of it.  Rendering is hand-written rather than
 * snprintf'd: at millions of events a second it is most of the cost.
 */
#ifndef GEN_EVENT_H
#define GEN_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include "cdf.h"
#include "mix.h"
#include "prng.h"

/* Room for any rendered event: the largest `event_size` plus slack. */
#define GEN_EVENT_SIZE_MAX 4096
#define GEN_VALUE_CAP (GEN_EVENT_SIZE_MAX + 64)
#define GEN_KEY_CAP 32
#define GEN_ID_LEN 36

typedef struct {
    gen_class klass; /* never GEN_DUPLICATE: a duplicate repeats an event */
    char id[GEN_ID_LEN + 1];
    uint32_t page;
    uint32_t user;
    int64_t ts_ms; /* wall clock of the intended send, milliseconds */
    int duration;  /* seconds */
} gen_event;

/* Draws an event of class `klass` (not GEN_DUPLICATE): a random v4 UUID,
 * a page and a user from their populations, a duration fitting the class
 * (views 10-600 s, bounces 0-4 s, negative for negative_duration). */
void gen_event_draw(gen_event *e, gen_class klass, gen_rng *r, const gen_cdf *pages,
                    const gen_cdf *users, int64_t ts_ms);

/* The JSON into `buf` (GEN_VALUE_CAP bytes), padded with a "pad" field to
 * `pad_to` bytes when that is larger than the event; returns the length
 * (no terminator is written). */
size_t gen_event_render(const gen_event *e, char *buf, size_t pad_to);

/* The message key, the page id ("page-N"); returns its length. */
size_t gen_event_key(const gen_event *e, char *buf);

/* RFC 3339 UTC with milliseconds, 24 characters, into `buf` (>= 25). */
void gen_rfc3339(int64_t ms, char *buf);

#endif
