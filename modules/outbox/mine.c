/*
 * mine.c - the ids a relay read and has not settled, each with its bucket:
 * an open-addressing hash set (linear probing, deletion by shifting back,
 * so no tombstones).  A row read again while its id is here is one this
 * relay already holds, or one whose acknowledgement the database has not
 * taken yet: it is skipped, not published twice.
 */
#include <stdlib.h>
#include "outbox.h"

static size_t slot_of(long long id, size_t cap)
{
    unsigned long long h = (unsigned long long)id * 0x9E3779B97F4A7C15ULL;

    return (size_t)(h >> 32) & (cap - 1);
}

static int grow(ob_mine *m)
{
    size_t cap = m->cap == 0 ? 1024 : m->cap * 2;
    long long *ids = calloc(cap, sizeof(*ids));
    unsigned char *bk = malloc(cap);

    if (ids == NULL || bk == NULL) {
        free(ids);
        free(bk);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        size_t s;
        if (m->ids[i] == 0)
            continue;
        for (s = slot_of(m->ids[i], cap); ids[s] != 0; s = (s + 1) & (cap - 1))
            ;
        ids[s] = m->ids[i];
        bk[s] = m->buckets[i];
    }
    free(m->ids);
    free(m->buckets);
    m->ids = ids;
    m->buckets = bk;
    m->cap = cap;
    return 0;
}

static long long find(const ob_mine *m, long long id)
{
    if (m->cap == 0)
        return -1;
    for (size_t s = slot_of(id, m->cap);; s = (s + 1) & (m->cap - 1)) {
        if (m->ids[s] == id)
            return (long long)s;
        if (m->ids[s] == 0)
            return -1;
    }
}

int ob_mine_add(ob_mine *m, long long id, int bucket)
{
    size_t s;

    if (id <= 0)
        return -1;
    if (find(m, id) >= 0)
        return 0;
    if ((m->n + 1) * 2 > m->cap && grow(m) != 0)
        return -1;
    for (s = slot_of(id, m->cap); m->ids[s] != 0; s = (s + 1) & (m->cap - 1))
        ;
    m->ids[s] = id;
    m->buckets[s] = (unsigned char)bucket;
    m->n++;
    return 0;
}

int ob_mine_has(const ob_mine *m, long long id)
{
    return find(m, id) >= 0;
}

/* The bucket byte's high bit marks a failed row (OB_BUCKETS < 128). */
#define FAILED 0x80

void ob_mine_mark_failed(ob_mine *m, long long id)
{
    long long at = find(m, id);

    if (at >= 0)
        m->buckets[at] |= FAILED;
}

int ob_mine_failed(const ob_mine *m, long long id)
{
    long long at = find(m, id);

    return at >= 0 && (m->buckets[at] & FAILED) != 0;
}

int ob_mine_del(ob_mine *m, long long id)
{
    long long at = find(m, id);
    size_t hole, s;
    int bucket;

    if (at < 0)
        return -1;
    hole = (size_t)at;
    bucket = m->buckets[hole] & ~FAILED;
    m->ids[hole] = 0;
    m->n--;
    /* Shift back every entry of the run after the hole that may sit in
     * it, so that lookups never stop early at an empty slot. */
    for (s = (hole + 1) & (m->cap - 1); m->ids[s] != 0; s = (s + 1) & (m->cap - 1)) {
        size_t home = slot_of(m->ids[s], m->cap);
        int movable = hole <= s ? (home <= hole || home > s) : (home <= hole && home > s);
        if (movable) {
            m->ids[hole] = m->ids[s];
            m->buckets[hole] = m->buckets[s];
            m->ids[s] = 0;
            hole = s;
        }
    }
    return bucket;
}

void ob_mine_free(ob_mine *m)
{
    free(m->ids);
    free(m->buckets);
    m->ids = NULL;
    m->buckets = NULL;
    m->cap = m->n = 0;
}
