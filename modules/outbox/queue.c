/*
 * queue.c - the rows a relay holds, one FIFO per aggregate in a hash table,
 * and a ready list of aggregates that have a row to produce, none in
 * flight and no block.  At most one row per aggregate is in flight: that
 * is what keeps an aggregate's order when a delivery fails (see outbox.h).
 * A blocked aggregate stays in the table with no rows, so that rows of it
 * read meanwhile are recognised and left in the table.
 */
#include <stdlib.h>
#include <string.h>
#include "outbox.h"

static unsigned hash_of(const char *at, const char *aid)
{
    unsigned h = 2166136261u; /* FNV-1a over both parts and the separator */

    for (const char *p = at; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ 0u) * 16777619u;
    for (const char *p = aid; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

static int key_is(const ob_agg *a, const char *at, const char *aid)
{
    size_t lt = strlen(a->key);
    return strcmp(a->key, at) == 0 && strcmp(a->key + lt + 1, aid) == 0;
}

static int grow(ob_queue *q)
{
    size_t nb = q->nbuckets == 0 ? 256 : q->nbuckets * 2;
    ob_agg **b = calloc(nb, sizeof(*b));

    if (b == NULL)
        return -1;
    for (size_t i = 0; i < q->nbuckets; i++) {
        ob_agg *a = q->buckets[i];
        while (a != NULL) {
            ob_agg *n = a->hnext;
            a->hnext = b[a->hash & (nb - 1)];
            b[a->hash & (nb - 1)] = a;
            a = n;
        }
    }
    free(q->buckets);
    q->buckets = b;
    q->nbuckets = nb;
    return 0;
}

ob_agg *ob_queue_find(ob_queue *q, const char *at, const char *aid)
{
    unsigned h = hash_of(at, aid);

    if (q->nbuckets == 0)
        return NULL;
    for (ob_agg *a = q->buckets[h & (q->nbuckets - 1)]; a != NULL; a = a->hnext)
        if (a->hash == h && key_is(a, at, aid))
            return a;
    return NULL;
}

ob_agg *ob_queue_get(ob_queue *q, const char *at, const char *aid)
{
    ob_agg *a = ob_queue_find(q, at, aid);
    size_t lt = strlen(at), la = strlen(aid);

    if (a != NULL)
        return a;
    if (q->n >= q->nbuckets && grow(q) != 0)
        return NULL;
    a = calloc(1, sizeof(*a) + lt + la + 2);
    if (a == NULL)
        return NULL;
    memcpy(a->key, at, lt + 1);
    memcpy(a->key + lt + 1, aid, la + 1);
    a->hash = hash_of(at, aid);
    a->hnext = q->buckets[a->hash & (q->nbuckets - 1)];
    q->buckets[a->hash & (q->nbuckets - 1)] = a;
    a->all_next = q->all;
    if (q->all != NULL)
        q->all->all_prev = a;
    q->all = a;
    q->n++;
    return a;
}

static void agg_free(ob_queue *q, ob_agg *a)
{
    ob_agg **pp = &q->buckets[a->hash & (q->nbuckets - 1)];

    while (*pp != a)
        pp = &(*pp)->hnext;
    *pp = a->hnext;
    if (a->all_prev != NULL)
        a->all_prev->all_next = a->all_next;
    else
        q->all = a->all_next;
    if (a->all_next != NULL)
        a->all_next->all_prev = a->all_prev;
    q->n--;
    free(a);
}

static void make_ready(ob_queue *q, ob_agg *a)
{
    if (a->in_ready || a->flying != NULL || a->head == NULL || a->block != OB_OPEN)
        return;
    a->in_ready = 1;
    a->ready_next = NULL;
    if (q->ready_tail != NULL)
        q->ready_tail->ready_next = a;
    else
        q->ready_head = a;
    q->ready_tail = a;
}

int ob_queue_add(ob_queue *q, ob_row *r)
{
    ob_agg *a = ob_queue_get(q, r->aggregate_type, r->key);

    if (a == NULL)
        return -1;
    r->agg = a;
    r->next = NULL;
    if (a->tail != NULL)
        a->tail->next = r;
    else
        a->head = r;
    a->tail = r;
    a->bucket = r->bucket;
    a->queued++;
    q->queued++;
    make_ready(q, a);
    return 0;
}

ob_agg *ob_queue_ready(ob_queue *q)
{
    /* An aggregate whose rows were given back (or that was blocked) while
     * it waited here leaves now (the ready list is singly linked:
     * unlinking at give-back time would mean a walk). */
    while (q->ready_head != NULL &&
           (q->ready_head->head == NULL || q->ready_head->block != OB_OPEN)) {
        ob_agg *a = q->ready_head;
        q->ready_head = a->ready_next;
        if (q->ready_head == NULL)
            q->ready_tail = NULL;
        a->in_ready = 0;
        a->ready_next = NULL;
        ob_queue_drop_if_idle(q, a);
    }
    return q->ready_head;
}

ob_row *ob_queue_pop(ob_queue *q, ob_agg *a)
{
    ob_row *r = a->head;

    if (r == NULL)
        return NULL;
    a->head = r->next;
    if (a->head == NULL)
        a->tail = NULL;
    r->next = NULL;
    a->queued--;
    q->queued--;
    return r;
}

ob_row *ob_queue_fly(ob_queue *q, ob_agg *a)
{
    ob_row *r;

    /* Only the ready list's head is ever flown. */
    q->ready_head = a->ready_next;
    if (q->ready_head == NULL)
        q->ready_tail = NULL;
    a->in_ready = 0;
    a->ready_next = NULL;
    r = ob_queue_pop(q, a);
    a->flying = r;
    q->flying++;
    return r;
}

void ob_queue_drop_if_idle(ob_queue *q, ob_agg *a)
{
    if (a->head == NULL && a->flying == NULL && !a->in_ready && a->block == OB_OPEN)
        agg_free(q, a);
}

ob_row *ob_queue_landed(ob_queue *q, ob_agg *a)
{
    ob_row *r = a->flying;

    a->flying = NULL;
    q->flying--;
    return r;
}

void ob_queue_resume(ob_queue *q, ob_agg *a)
{
    make_ready(q, a);
    ob_queue_drop_if_idle(q, a);
}

void ob_queue_free(ob_queue *q)
{
    while (q->all != NULL) {
        ob_agg *a = q->all;
        ob_row *r = a->head;
        while (r != NULL) {
            ob_row *n = r->next;
            free(r);
            r = n;
        }
        free(a->flying);
        q->all = a->all_next;
        free(a);
    }
    free(q->buckets);
    memset(q, 0, sizeof(*q));
}
