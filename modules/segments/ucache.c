/*
 * ucache.c - the read cache of GET /segment/user/{id} (ucache.h).
 *
 * One allocation per user: the entry, its members, their slugs and room
 * for the answer.  Members only ever leave an entry (when they expire),
 * so the answer rebuilt after an expiry always fits where the first one
 * was.  A hash table (chained, grown while the byte limit allows) finds
 * entries; a doubly linked list keeps them by last use for eviction.
 *
 * Tickets: every user hashes to one of STRIPES (1024) generation counters, and a
 * global generation covers clear(); a ticket is the sum of the global and
 * the user's stripe generation.  Both only grow, so the sum changes when
 * either does: a put under an old ticket is refused.  A change to another
 * user of the same stripe refuses it too, which costs a miss, never a
 * stale answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ucache.h"

#define STRIPES 1024
#define FIRST_BUCKETS 1024
#define MALLOC_OVERHEAD 16 /* what the allocator keeps beside each block */

typedef struct entry entry;
struct entry {
    entry *hnext;
    entry *prev, *next; /* by last use, most recent first */
    int64_t user;
    double filled;
    int64_t next_exp; /* the earliest expiry of its members */
    size_t cost;
    size_t n;
    size_t body_len; /* 0: to be built */
    ucache_member *m;
    char *body;
};

struct ucache {
    size_t max_entries, max_bytes;
    double max_age;
    entry **buckets;
    size_t nbuckets;
    entry *head, *tail;
    size_t entries, bytes;
    uint64_t hits, misses, evictions;
    uint64_t gen;
    uint64_t stripe[STRIPES];
};

static uint64_t mix(int64_t user)
{
    uint64_t x = (uint64_t)user;

    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static size_t fixed_cost(size_t nbuckets)
{
    return sizeof(ucache) + nbuckets * sizeof(entry *) + 2 * MALLOC_OVERHEAD;
}

ucache *ucache_new(size_t max_entries, size_t max_bytes, double max_age)
{
    ucache *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->buckets = calloc(FIRST_BUCKETS, sizeof(*c->buckets));
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    c->nbuckets = FIRST_BUCKETS;
    c->max_entries = max_entries;
    c->max_bytes = max_bytes;
    c->max_age = max_age;
    c->bytes = fixed_cost(c->nbuckets);
    return c;
}

void ucache_free(ucache *c)
{
    if (c == NULL)
        return;
    for (entry *e = c->head, *next; e != NULL; e = next) {
        next = e->next;
        free(e);
    }
    free(c->buckets);
    free(c);
}

/* --------------------------------------------------------------- answers */

static size_t put_str(char *buf, size_t cap, size_t at, const char *s)
{
    size_t n = strlen(s);

    if (at + n < cap)
        memcpy(buf + at, s, n);
    return at + n;
}

/* A slug as a JSON string body.  Slugs are [A-Z0-9_] by the schema's
 * CHECK; escaping anyway keeps the answer JSON whatever the table holds. */
static size_t put_escaped(char *buf, size_t cap, size_t at, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            esc[2] = '\0';
            at = put_str(buf, cap, at, esc);
        } else if (ch < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            at = put_str(buf, cap, at, esc);
        } else {
            if (at + 1 < cap)
                buf[at] = (char)ch;
            at++;
        }
    }
    return at;
}

/* PostgreSQL's to_char(... 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') in UTC. */
static size_t put_time(char *buf, size_t cap, size_t at, int64_t us)
{
    int64_t sec = us / 1000000, frac = us % 1000000;
    time_t t;
    struct tm tm;
    char s[64];

    if (frac < 0) {
        frac += 1000000;
        sec--;
    }
    t = (time_t)sec;
    if (gmtime_r(&t, &tm) == NULL)
        memset(&tm, 0, sizeof(tm));
    snprintf(s, sizeof(s), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    return put_str(buf, cap, at, s);
}

size_t ucache_answer_size(const ucache_member *m, size_t n)
{
    /* the answer with every member and the longest user id, measured by
     * writing it nowhere, and its terminating NUL */
    return ucache_answer(NULL, 0, INT64_MIN, m, n, INT64_MIN) + 1;
}

size_t ucache_answer(char *buf, size_t cap, int64_t user, const ucache_member *m, size_t n,
                     int64_t now_us)
{
    char head[64];
    size_t at = 0;
    int first = 1;

    snprintf(head, sizeof(head), "{\"user_id\":%lld,\"segments\":[", (long long)user);
    at = put_str(buf, cap, at, head);
    for (size_t i = 0; i < n; i++) {
        if (m[i].expires_us <= now_us)
            continue;
        at = put_str(buf, cap, at, first ? "{\"slug\":\"" : ",{\"slug\":\"");
        first = 0;
        at = put_escaped(buf, cap, at, m[i].slug);
        if (m[i].expires_us != UCACHE_NO_EXPIRY) {
            at = put_str(buf, cap, at, "\",\"expires_at\":\"");
            at = put_time(buf, cap, at, m[i].expires_us);
        }
        at = put_str(buf, cap, at, "\"}");
    }
    at = put_str(buf, cap, at, "]}");
    if (cap > 0)
        buf[at < cap ? at : cap - 1] = '\0';
    return at;
}

/* ------------------------------------------------------------- entries */

static entry **slot(ucache *c, int64_t user)
{
    entry **pp = &c->buckets[mix(user) & (c->nbuckets - 1)];

    while (*pp != NULL && (*pp)->user != user)
        pp = &(*pp)->hnext;
    return pp;
}

static void lru_unlink(ucache *c, entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(ucache *c, entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head != NULL)
        c->head->prev = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
}

static void drop(ucache *c, entry *e)
{
    entry **pp = slot(c, e->user);

    *pp = e->hnext;
    lru_unlink(c, e);
    c->entries--;
    c->bytes -= e->cost;
    free(e);
}

static void earliest(entry *e)
{
    e->next_exp = UCACHE_NO_EXPIRY;
    for (size_t i = 0; i < e->n; i++)
        if (e->m[i].expires_us < e->next_exp)
            e->next_exp = e->m[i].expires_us;
}

/* Drops what expired and builds the answer again, in place: the members
 * left are a subset, so it fits in the room the first one had. */
static void rebuild(entry *e, int64_t now_us, size_t room)
{
    size_t k = 0;

    for (size_t i = 0; i < e->n; i++)
        if (e->m[i].expires_us > now_us)
            e->m[k++] = e->m[i];
    e->n = k;
    earliest(e);
    e->body_len = ucache_answer(e->body, room, e->user, e->m, e->n, now_us);
}

const char *ucache_get(ucache *c, int64_t user, int64_t now_us, double mono, size_t *len)
{
    entry *e = *slot(c, user);

    if (e == NULL || mono - e->filled > c->max_age) {
        if (e != NULL)
            drop(c, e);
        c->misses++;
        return NULL;
    }
    if (e->body_len == 0 || now_us >= e->next_exp)
        rebuild(e, now_us, ucache_answer_size(e->m, e->n));
    if (c->head != e) {
        lru_unlink(c, e);
        lru_front(c, e);
    }
    c->hits++;
    *len = e->body_len;
    return e->body;
}

uint64_t ucache_ticket(const ucache *c, int64_t user)
{
    return c->gen + c->stripe[mix(user) % STRIPES];
}

/* Doubles the table when the limits leave room for it; a full table only
 * makes chains longer. */
static void grow(ucache *c)
{
    size_t n = c->nbuckets * 2;
    size_t extra = c->nbuckets * sizeof(entry *);
    entry **b;

    if (c->entries <= c->nbuckets || c->bytes + extra > c->max_bytes)
        return;
    b = calloc(n, sizeof(*b));
    if (b == NULL)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        for (entry *e = c->buckets[i], *next; e != NULL; e = next) {
            next = e->hnext;
            e->hnext = b[mix(e->user) & (n - 1)];
            b[mix(e->user) & (n - 1)] = e;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
    c->bytes += extra;
}

int ucache_put(ucache *c, int64_t user, uint64_t ticket, const ucache_member *m, size_t n,
               double mono)
{
    size_t slugs = 0, room = ucache_answer_size(m, n), cost;
    entry *e, **pp;
    char *p;

    if (ticket != ucache_ticket(c, user))
        return 0;
    for (size_t i = 0; i < n; i++)
        slugs += strlen(m[i].slug) + 1;
    cost = sizeof(entry) + n * sizeof(ucache_member) + slugs + room + MALLOC_OVERHEAD;
    if (c->max_entries == 0 || cost + fixed_cost(c->nbuckets) > c->max_bytes)
        return -1;
    if ((e = *slot(c, user)) != NULL)
        drop(c, e);
    while (c->tail != NULL && (c->entries >= c->max_entries || c->bytes + cost > c->max_bytes)) {
        drop(c, c->tail);
        c->evictions++;
    }
    e = malloc(cost - MALLOC_OVERHEAD);
    if (e == NULL)
        return -1;
    memset(e, 0, sizeof(*e));
    e->user = user;
    e->filled = mono;
    e->cost = cost;
    e->n = n;
    e->m = (ucache_member *)(e + 1);
    p = (char *)(e->m + n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(m[i].slug) + 1;
        memcpy(p, m[i].slug, len);
        e->m[i].slug = p;
        e->m[i].expires_us = m[i].expires_us;
        p += len;
    }
    e->body = p;
    earliest(e);
    pp = slot(c, user);
    *pp = e;
    lru_front(c, e);
    c->entries++;
    c->bytes += cost;
    grow(c);
    return 1;
}

void ucache_forget(ucache *c, int64_t user)
{
    entry *e = *slot(c, user);

    c->stripe[mix(user) % STRIPES]++;
    if (e != NULL)
        drop(c, e);
}

void ucache_clear(ucache *c)
{
    c->gen++;
    while (c->head != NULL)
        drop(c, c->head);
}

void ucache_get_stats(const ucache *c, ucache_stats *st)
{
    st->hits = c->hits;
    st->misses = c->misses;
    st->evictions = c->evictions;
    st->entries = c->entries;
    st->bytes = c->bytes;
}
