/*
 * trace_event.c - log lines as events of a span; see trace.h.
 *
 * Handles are slots of one table, the slot's index in the low 16 bits and
 * its generation above: a slot is reused once its span ends, and a stale
 * handle (a copy of a context that outlived its span) finds another
 * generation there and adds nothing.  The table is bounded, so a span
 * that finds it full simply gets no events.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "trace.h"

#define SLOTS 4096
/* Bounds on what one span keeps of its log lines. */
#define EVENTS_MAX 16384
#define EVENT_COUNT_MAX 128

static struct {
    sl_span *span;
    uint16_t gen;
} slots[SLOTS];
static uint32_t next_free; /* a hint: where to look first */

uint32_t sl_trace_events_take(sl_span *s)
{
    if (s == NULL || !s->recording)
        return 0;
    for (uint32_t n = 0; n < SLOTS; n++) {
        uint32_t i = (next_free + n) % SLOTS;
        if (i == 0 || slots[i].span != NULL)
            continue; /* slot 0 is never used: handle 0 means none */
        slots[i].span = s;
        next_free = i + 1;
        s->slot = (uint32_t)slots[i].gen << 16 | i;
        return s->slot;
    }
    return 0;
}

void sl_trace_events_drop(sl_span *s)
{
    uint32_t i = s->slot & 0xffff;

    if (s->slot == 0 || slots[i].span != s)
        return;
    slots[i].span = NULL;
    slots[i].gen++;
    s->slot = 0;
}

void sl_trace_log_event(const char *level, const char *who, const char *msg)
{
    uint32_t h = sl_trace_cur.events, i = h & 0xffff;
    sl_span *s;
    size_t ll, wl, ml, need;
    struct timespec now;
    uint64_t ns;

    if (h == 0 || slots[i].span == NULL || slots[i].gen != (uint16_t)(h >> 16))
        return;
    s = slots[i].span;
    ll = strlen(level);
    wl = strlen(who);
    ml = strlen(msg);
    need = 8 + ll + 1 + wl + 1 + ml + 1;
    if (s->nevents >= EVENT_COUNT_MAX || s->elen + need > EVENTS_MAX) {
        s->dropped_events++;
        return;
    }
    if (s->elen + need > s->ecap) {
        size_t cap = s->ecap ? s->ecap * 2 : 1024;
        while (cap < s->elen + need)
            cap *= 2;
        char *p = realloc(s->events, cap);
        if (p == NULL) {
            s->dropped_events++;
            return;
        }
        s->events = p;
        s->ecap = cap;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    ns = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
    memcpy(s->events + s->elen, &ns, 8);
    s->elen += 8;
    memcpy(s->events + s->elen, level, ll + 1);
    s->elen += ll + 1;
    memcpy(s->events + s->elen, who, wl + 1);
    s->elen += wl + 1;
    memcpy(s->events + s->elen, msg, ml + 1);
    s->elen += ml + 1;
    s->nevents++;
}
