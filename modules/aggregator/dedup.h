/*
 * dedup.h - a window of the last N event ids seen, for the de-duplicate
 * middleware.  It only saves work: exactness comes from the tables (rows
 * keyed by event id collapse), so a window lost in a crash or too small
 * for a late duplicate costs nothing but a redundant row.
 */
#ifndef AGG_DEDUP_H
#define AGG_DEDUP_H

#include <stddef.h>
#include <stdint.h>
#include "validate.h"

typedef struct {
    size_t cap;      /* ids kept */
    size_t nbuckets; /* a power of two */
    int32_t *heads;  /* bucket -> newest entry index, -1 */
    struct agg_dedup_entry *e;
    size_t next;     /* ring position of the next insert */
    size_t n;
} agg_dedup;

/* 0, or -1 when out of memory.  cap 0 makes a window that keeps nothing. */
int agg_dedup_init(agg_dedup *d, size_t cap);
/* 1 when `id` was seen within the window (nothing changes), else records
 * it, evicting the oldest, and returns 0. */
int agg_dedup_check(agg_dedup *d, const char *id);
void agg_dedup_free(agg_dedup *d);

#endif
