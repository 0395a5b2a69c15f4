/*
 * dedup.c - the event-id window (dedup.h): a ring of ids in insertion
 * order, chained into hash buckets, so that the oldest is evicted in O(1)
 * (plus its chain).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dedup.h"

struct agg_dedup_entry {
    int32_t next; /* next entry in the same bucket, -1 */
    uint32_t hash;
    char id[AGG_ID_MAX + 1];
};

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

int agg_dedup_init(agg_dedup *d, size_t cap)
{
    memset(d, 0, sizeof(*d));
    if (cap == 0)
        return 0;
    d->cap = cap;
    d->nbuckets = 1;
    while (d->nbuckets < cap)
        d->nbuckets <<= 1;
    d->heads = malloc(d->nbuckets * sizeof(*d->heads));
    d->e = malloc(cap * sizeof(*d->e));
    if (d->heads == NULL || d->e == NULL) {
        agg_dedup_free(d);
        return -1;
    }
    memset(d->heads, 0xff, d->nbuckets * sizeof(*d->heads));
    return 0;
}

static void unlink_entry(agg_dedup *d, int32_t idx)
{
    int32_t *link = &d->heads[d->e[idx].hash & (d->nbuckets - 1)];
    while (*link != -1) {
        if (*link == idx) {
            *link = d->e[idx].next;
            return;
        }
        link = &d->e[*link].next;
    }
}

int agg_dedup_check(agg_dedup *d, const char *id)
{
    uint32_t h;
    size_t b;
    int32_t idx;

    if (d->cap == 0)
        return 0;
    h = fnv1a(id);
    b = h & (d->nbuckets - 1);
    for (idx = d->heads[b]; idx != -1; idx = d->e[idx].next)
        if (d->e[idx].hash == h && strcmp(d->e[idx].id, id) == 0)
            return 1;
    idx = (int32_t)d->next;
    if (d->n == d->cap)
        unlink_entry(d, idx);
    else
        d->n++;
    d->e[idx].hash = h;
    snprintf(d->e[idx].id, sizeof(d->e[idx].id), "%s", id);
    d->e[idx].next = d->heads[b];
    d->heads[b] = idx;
    d->next = (d->next + 1) % d->cap;
    return 0;
}

void agg_dedup_free(agg_dedup *d)
{
    free(d->heads);
    free(d->e);
    memset(d, 0, sizeof(*d));
}
