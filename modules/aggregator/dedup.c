/*
 * dedup.c - the event-id window (dedup.h).  The index is linear probing
 * over packed slots: a lookup reads one cache line of the index and the
 * ring only on a 32-bit fingerprint match; eviction deletes by shifting
 * the rest of the cluster back, so there are no tombstones to age.
 */
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/random.h>
#include "dedup.h"

#define HUGE_PAGE ((size_t)2 << 20)

/* ------------------------------------------------------------ SipHash */

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static void sipround(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = rotl(v[1], 13);
    v[1] ^= v[0];
    v[0] = rotl(v[0], 32);
    v[2] += v[3];
    v[3] = rotl(v[3], 16);
    v[3] ^= v[2];
    v[0] += v[3];
    v[3] = rotl(v[3], 21);
    v[3] ^= v[0];
    v[2] += v[1];
    v[1] = rotl(v[1], 17);
    v[1] ^= v[2];
    v[2] = rotl(v[2], 32);
}

static uint64_t load_le(const unsigned char *p, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

agg_h128 agg_siphash128(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t v[4] = { k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL ^ 0xee,
                      k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL };
    uint64_t m;
    size_t left = len;
    agg_h128 h;

    /* One compression round a word, three to finish: SipHash-1-3. */
    for (; left >= 8; p += 8, left -= 8) {
        m = load_le(p, 8);
        v[3] ^= m;
        sipround(v);
        v[0] ^= m;
    }
    m = load_le(p, left) | (uint64_t)len << 56;
    v[3] ^= m;
    sipround(v);
    v[0] ^= m;
    v[2] ^= 0xee;
    for (int i = 0; i < 3; i++)
        sipround(v);
    h.lo = v[0] ^ v[1] ^ v[2] ^ v[3];
    v[1] ^= 0xdd;
    for (int i = 0; i < 3; i++)
        sipround(v);
    h.hi = v[0] ^ v[1] ^ v[2] ^ v[3];
    return h;
}

/* ------------------------------------------------------------- window */

int agg_dedup_init(agg_dedup *d, size_t cap)
{
    size_t slots = 1, ringlen, slotlen;
    uint64_t key[2];
    char *at;

    memset(d, 0, sizeof(*d));
    if (cap == 0)
        return 0;
    if (cap >= UINT32_MAX)
        return -1;
    /* A load of 1/3 to 2/3: short clusters, small index. */
    while (slots < cap + cap / 2)
        slots <<= 1;
    d->cap = cap;
    d->mask = slots - 1;
    /* Anonymous memory: zero.  Every lookup lands on a random page of
     * the index, so in huge pages where the kernel allows them (a miss in
     * the TLB costs as much as the load); hence the mapping is aligned to
     * one. */
    ringlen = (cap * sizeof(*d->ring) + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    slotlen = slots * sizeof(*d->slots);
    d->maplen = ringlen + slotlen + HUGE_PAGE;
    d->map = mmap(NULL, d->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (d->map == MAP_FAILED) {
        d->map = NULL;
        agg_dedup_free(d);
        return -1;
    }
    at = (char *)(((uintptr_t)d->map + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    madvise(at, ringlen + slotlen, MADV_HUGEPAGE); /* only advice: fine if refused */
    /* Faulted in now, huge pages and all: each costs the kernel a clearing
     * (0.15 s for a window of a million here), better paid at start than
     * by the first million messages.  The memory is the window's budget,
     * used in full by then anyway.  Only advice too: a kernel without it
     * faults the pages in as they are used. */
    madvise(at, ringlen + slotlen, MADV_POPULATE_WRITE);
    d->ring = (agg_h128 *)at;
    d->slots = (uint64_t *)(at + ringlen);
    /* Only the strength of the key is at stake, never correctness. */
    if (getrandom(key, sizeof(key), GRND_NONBLOCK) != (ssize_t)sizeof(key)) {
        key[0] = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)d;
        key[1] = (uint64_t)clock() ^ (uint64_t)(uintptr_t)d->ring;
    }
    d->k0 = key[0];
    d->k1 = key[1];
    return 0;
}

static uint32_t fingerprint(agg_h128 h)
{
    return (uint32_t)h.lo;
}

/* Takes ring entry `idx` out of the index: find its slot, then move each
 * later entry of the cluster back when its home allows. */
static void unindex(agg_dedup *d, size_t idx)
{
    uint64_t want = ((uint64_t)fingerprint(d->ring[idx]) << 32) | (idx + 1);
    size_t i = fingerprint(d->ring[idx]) & d->mask, j;

    while (d->slots[i] != want)
        i = (i + 1) & d->mask;
    for (j = i;;) {
        size_t home;
        j = (j + 1) & d->mask;
        if (d->slots[j] == 0)
            break;
        home = (size_t)(d->slots[j] >> 32) & d->mask;
        /* Movable when `i` lies on its probe path, from home to j. */
        if (((j - home) & d->mask) >= ((j - i) & d->mask)) {
            d->slots[i] = d->slots[j];
            i = j;
        }
    }
    d->slots[i] = 0;
}

agg_h128 agg_dedup_prepare(const agg_dedup *d, const char *id, size_t len)
{
    agg_h128 h = agg_siphash128(d->k0, d->k1, id, len);

    if (d->cap != 0) {
        /* A window bigger than the caches misses on both: the two loads
         * overlap each other and the caller's work instead of queueing. */
        __builtin_prefetch(&d->slots[fingerprint(h) & d->mask]);
        if (d->n == d->cap)
            __builtin_prefetch(&d->slots[fingerprint(d->ring[d->next]) & d->mask]);
    }
    return h;
}

int agg_dedup_check_hash(agg_dedup *d, agg_h128 h)
{
    uint32_t fp = fingerprint(h);
    size_t i;

    if (d->cap == 0)
        return 0;
    for (i = fp & d->mask; d->slots[i] != 0; i = (i + 1) & d->mask) {
        uint64_t s = d->slots[i];
        if ((uint32_t)(s >> 32) == fp) {
            const agg_h128 *r = &d->ring[(uint32_t)s - 1];
            if (r->lo == h.lo && r->hi == h.hi)
                return 1;
        }
    }
    if (d->n == d->cap) {
        unindex(d, d->next);
        /* The shift may have emptied a slot before i. */
        for (i = fp & d->mask; d->slots[i] != 0; i = (i + 1) & d->mask)
            continue;
    } else {
        d->n++;
    }
    d->ring[d->next] = h;
    d->slots[i] = ((uint64_t)fp << 32) | (d->next + 1);
    d->next = d->next + 1 == d->cap ? 0 : d->next + 1;
    return 0;
}

int agg_dedup_check(agg_dedup *d, const char *id)
{
    return agg_dedup_check_hash(d, agg_dedup_prepare(d, id, strlen(id)));
}

void agg_dedup_free(agg_dedup *d)
{
    if (d->map != NULL)
        munmap(d->map, d->maplen);
    memset(d, 0, sizeof(*d));
}
