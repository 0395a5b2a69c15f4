/*
 * dedup.h - a window of the last N event ids seen, for the de-duplicate
 * middleware.  It only saves work: exactness comes from the tables (rows
 * keyed by event id collapse), so a window lost in a crash or too small
 * for a late duplicate costs nothing but a redundant row.
 *
 * An id is kept as its 128-bit keyed hash (SipHash-1-3, random key per
 * window), so the memory is fixed whatever the ids look like: 16 bytes a
 * hash in a ring (insertion order, the oldest evicted first) plus an
 * open-addressing index of 8-byte slots, one and a half to three per id
 * (AGG_DEDUP_BYTES_PER_ID at most).  Two distinct ids would have to share
 * all 128 bits to be mistaken for each other (about 1e-23 per event with a
 * window of a million), and nobody without the key can make them.
 */
#ifndef AGG_DEDUP_H
#define AGG_DEDUP_H

#include <stddef.h>
#include <stdint.h>
#include "validate.h"

#define AGG_DEDUP_BYTES_PER_ID 40

typedef struct {
    uint64_t lo, hi;
} agg_h128;

typedef struct {
    size_t cap;      /* ids kept */
    size_t mask;     /* index slots - 1 (a power of two minus one) */
    agg_h128 *ring;  /* hashes in insertion order */
    uint64_t *slots; /* 0 empty, else (low 32 bits of the hash << 32) | (ring index + 1) */
    void *map;       /* the mapping ring and slots live in */
    size_t maplen;
    size_t next; /* ring position of the next insert */
    size_t n;
    uint64_t k0, k1; /* the hash key */
} agg_dedup;

/* 0, or -1 when out of memory.  cap 0 makes a window that keeps nothing.
 * The memory is allocated and faulted in here. */
int agg_dedup_init(agg_dedup *d, size_t cap);
/* 1 when `id` was seen within the window (nothing changes), else records
 * it, evicting the oldest, and returns 0. */
int agg_dedup_check(agg_dedup *d, const char *id);
/* The same in two steps, so that the memory it needs is on its way while
 * the caller does other work: agg_dedup_prepare() hashes `id` and asks for
 * the index lines the check will read (its own and the eviction's);
 * agg_dedup_check_hash() is agg_dedup_check() on that hash. */
agg_h128 agg_dedup_prepare(const agg_dedup *d, const char *id, size_t len);
int agg_dedup_check_hash(agg_dedup *d, agg_h128 h);
void agg_dedup_free(agg_dedup *d);

/* SipHash-1-3 of `len` bytes with key (k0, k1), 128-bit output. */
agg_h128 agg_siphash128(uint64_t k0, uint64_t k1, const void *data, size_t len);

#endif
