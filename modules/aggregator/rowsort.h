/*
 * rowsort.h - a flight's rows put in their table's ORDER BY order before
 * they are sent.  ClickHouse sorts each inserted block by the table's
 * sorting key unless it finds the block sorted already; sorted here, an
 * insert costs the server about a third of the CPU (measured with 18.16:
 * 940,000 page_views rows in five inserts took 0.7 s of its CPU instead of
 * 2.0 s), which on a machine shared with the server is what bounds the
 * rate.  Only the order changes, never a row: a row whose key cannot be
 * read (a shape this file does not know) sorts as an empty key.
 */
#ifndef AGG_ROWSORT_H
#define AGG_ROWSORT_H

#include <stddef.h>
#include <stdint.h>
#include "jbuf.h"

/* The sorting keys of the tables (schema.c), by the rows' columns. */
typedef enum {
    AGG_KEY_PAGE_VIEWS, /* (minute, page_id, event_id) */
    AGG_KEY_ANALYTICS,  /* (id) */
    AGG_KEY_SEGMENTS,   /* (minute, slug, event_id) */
    AGG_KEY_ERRORS      /* (kafka_topic, kafka_partition, kafka_offset) */
} agg_key;

typedef struct agg_sortent agg_sortent;

/* The entries a sort keeps for the next one. */
typedef struct {
    agg_sortent *ents;
    size_t cap;
} agg_sorter;

/*
 * Puts the `n` rows of `rows`, row i ending at ends[i] (the first starting
 * at 0), in `key`'s order (rows of equal keys keep theirs); bytes after
 * the last end stay last.  The rows are written into `spare`, an empty
 * buffer whose memory is reused, and the two are swapped: `spare` then
 * holds the old buffer, emptied.  -1 when out of memory, when `ends` do
 * not fit `rows` or `spare` is not empty: both are left as they were
 * (ClickHouse then sorts).
 */
int agg_rows_sort(agg_sorter *s, agg_key key, jbuf *rows, const uint32_t *ends, size_t n,
                  jbuf *spare);
/* Frees the entries when they are for more than `keep` rows. */
void agg_sorter_trim(agg_sorter *s, size_t keep);
void agg_sorter_free(agg_sorter *s);

#endif
