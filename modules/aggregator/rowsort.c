/*
 * rowsort.c - rows in their table's order (rowsort.h).
 *
 * Each row gets an entry: its place and a 24-byte prefix of its key, made
 * of fixed-width fields (a number big-endian; a string's first bytes padded
 * with zeros, and unless it is the last field its length), so that
 * comparing prefixes as three integers never orders two rows against their
 * keys; only rows whose prefixes tie have their whole keys compared, as
 * ClickHouse does (numbers by value, strings bytewise then by length),
 * then their places.  The entries are sorted in
 * place (quicksort, median of three, the smaller side first so the stack
 * stays logarithmic), then the rows copied out in that order.
 */
#include <stdlib.h>
#include <string.h>
#include "rowsort.h"

struct agg_sortent {
    uint64_t k[3];
    uint32_t off, len;
};

#define PREFIX 24
#define MAX_PARTS 3

/* One part of a key: a number, or a string. */
typedef struct {
    int str;
    uint64_t num;
    const unsigned char *s;
    size_t len;
    size_t width; /* bytes of the prefix it fills */
} keypart;

typedef struct {
    keypart p[MAX_PARTS];
    int n;
} fullkey;

/* A bounds-checked reader of one RowBinary row. */
typedef struct {
    const unsigned char *p, *end;
    int bad;
} reader;

static void skip(reader *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n)
        r->bad = 1;
    else
        r->p += n;
}

/* A little-endian integer of n <= 8 bytes. */
static uint64_t get_le(reader *r, size_t n)
{
    uint64_t v = 0;

    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += n;
    return v;
}

static const unsigned char *get_str(reader *r, size_t *len)
{
    uint64_t n = 0;
    const unsigned char *s;

    for (int shift = 0;; shift += 7) {
        if (r->bad || r->p == r->end || shift > 63) {
            r->bad = 1;
            *len = 0;
            return NULL;
        }
        n |= (uint64_t)(*r->p & 0x7f) << shift;
        if ((*r->p++ & 0x80) == 0)
            break;
    }
    if ((uint64_t)(r->end - r->p) < n) {
        r->bad = 1;
        *len = 0;
        return NULL;
    }
    s = r->p;
    r->p += n;
    *len = (size_t)n;
    return s;
}

static void num_part(fullkey *k, uint64_t v, size_t width)
{
    keypart *p = &k->p[k->n++];
    p->str = 0;
    p->num = v;
    p->width = width;
}

static void str_part(fullkey *k, const unsigned char *s, size_t len, size_t width)
{
    keypart *p = &k->p[k->n++];
    p->str = 1;
    p->s = s;
    p->len = len;
    p->width = width;
}

/* The row's key, by the columns the handlers write (schema.c's column
 * lists); 0, or -1 when the row is not of that shape. */
static int key_of(agg_key kind, const unsigned char *row, size_t len, fullkey *k)
{
    reader r = { row, row + len, 0 };
    const unsigned char *a, *b;
    size_t alen, blen, skipped;
    uint64_t id, minute;

    k->n = 0;
    switch (kind) {
    case AGG_KEY_PAGE_VIEWS: /* event_id, event_type, page_id, user_id, duration_s, ts, ts_ms, minute */
        a = get_str(&r, &alen);
        get_str(&r, &skipped);
        b = get_str(&r, &blen);
        get_str(&r, &skipped);
        skip(&r, 8 + 4 + 2);
        minute = get_le(&r, 4);
        num_part(k, minute, 4);
        str_part(k, b, blen, 12);
        str_part(k, a, alen, 8);
        break;
    case AGG_KEY_ANALYTICS: /* id, ... */
        a = get_str(&r, &alen);
        str_part(k, a, alen, 24);
        break;
    case AGG_KEY_SEGMENTS: /* event_id, user_id, slug, operation, ts, ts_ms, minute */
        id = get_le(&r, 8);
        skip(&r, 8);
        a = get_str(&r, &alen);
        get_str(&r, &skipped);
        skip(&r, 4 + 2);
        minute = get_le(&r, 4);
        num_part(k, minute, 4);
        str_part(k, a, alen, 12);
        num_part(k, id, 8);
        break;
    case AGG_KEY_ERRORS: /* kafka_topic, kafka_partition, kafka_offset: signed, so the sign flipped */
        a = get_str(&r, &alen);
        str_part(k, a, alen, 12);
        num_part(k, get_le(&r, 4) ^ 0x80000000u, 4);
        num_part(k, get_le(&r, 8) ^ 0x8000000000000000ull, 8);
        break;
    }
    if (r.bad) {
        k->n = 0;
        return -1;
    }
    return 0;
}

static void prefix_of(const fullkey *k, uint64_t out[3])
{
    unsigned char buf[PREFIX] = { 0 };
    size_t at = 0;

    for (int i = 0; i < k->n; i++) {
        const keypart *p = &k->p[i];
        if (p->str && i == k->n - 1) {
            memcpy(buf + at, p->s, p->len < p->width ? p->len : p->width);
        } else if (p->str) {
            /* Not the last part: its bytes, then its length + 1, so that
             * the parts after it only count between equal strings; a
             * string too long for its field ends the prefix. */
            size_t room = p->width - 1;
            memcpy(buf + at, p->s, p->len < room ? p->len : room);
            if (p->len > room) {
                buf[at + room] = 0xff;
                break;
            }
            buf[at + room] = (unsigned char)(p->len + 1);
        } else {
            for (size_t j = 0; j < p->width; j++)
                buf[at + j] = (unsigned char)(p->num >> (8 * (p->width - 1 - j)));
        }
        at += p->width;
    }
    for (int w = 0; w < 3; w++) {
        uint64_t v = 0;
        for (int j = 0; j < 8; j++)
            v = v << 8 | buf[w * 8 + j];
        out[w] = v;
    }
}

static int cmp_full(const fullkey *x, const fullkey *y)
{
    for (int i = 0; i < x->n && i < y->n; i++) {
        const keypart *a = &x->p[i], *b = &y->p[i];
        if (a->str) {
            size_t n = a->len < b->len ? a->len : b->len;
            int c = n > 0 ? memcmp(a->s, b->s, n) : 0;
            if (c != 0)
                return c;
            if (a->len != b->len)
                return a->len < b->len ? -1 : 1;
        } else if (a->num != b->num) {
            return a->num < b->num ? -1 : 1;
        }
    }
    return x->n - y->n; /* a row of no key first */
}

typedef struct {
    agg_key kind;
    const unsigned char *rows;
} sortctx;

static int cmp(const sortctx *c, const agg_sortent *x, const agg_sortent *y)
{
    fullkey kx, ky;
    int r;

    for (int i = 0; i < 3; i++)
        if (x->k[i] != y->k[i])
            return x->k[i] < y->k[i] ? -1 : 1;
    key_of(c->kind, c->rows + x->off, x->len, &kx);
    key_of(c->kind, c->rows + y->off, y->len, &ky);
    r = cmp_full(&kx, &ky);
    if (r != 0)
        return r;
    return x->off < y->off ? -1 : x->off > y->off;
}

static void swap(agg_sortent *a, agg_sortent *b)
{
    agg_sortent t = *a;
    *a = *b;
    *b = t;
}

static void sort_ents(const sortctx *c, agg_sortent *e, size_t n)
{
    while (n > 16) {
        size_t mid = n / 2, i = 0, j = n - 1;
        agg_sortent pivot;

        /* Median of three to the middle: sorted input stays linearithmic. */
        if (cmp(c, &e[mid], &e[0]) < 0)
            swap(&e[mid], &e[0]);
        if (cmp(c, &e[n - 1], &e[mid]) < 0) {
            swap(&e[n - 1], &e[mid]);
            if (cmp(c, &e[mid], &e[0]) < 0)
                swap(&e[mid], &e[0]);
        }
        pivot = e[mid];
        /* Hoare partition; keys are distinct (places break ties). */
        for (;;) {
            while (cmp(c, &e[i], &pivot) < 0)
                i++;
            while (cmp(c, &pivot, &e[j]) < 0)
                j--;
            if (i >= j)
                break;
            swap(&e[i], &e[j]);
            i++;
            j--;
        }
        /* e[0..j] <= pivot <= e[j+1..n-1]; recurse into the smaller. */
        if (j + 1 < n - j - 1) {
            sort_ents(c, e, j + 1);
            e += j + 1;
            n -= j + 1;
        } else {
            sort_ents(c, e + j + 1, n - j - 1);
            n = j + 1;
        }
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && cmp(c, &e[j], &e[j - 1]) < 0; j--)
            swap(&e[j], &e[j - 1]);
}

int agg_rows_sort(agg_sorter *s, agg_key key, jbuf *rows, const uint32_t *ends, size_t n,
                  jbuf *spare)
{
    sortctx c = { key, (const unsigned char *)rows->p };
    uint32_t start = 0;
    jbuf t;

    if (n < 2)
        return 0;
    if (spare->len != 0)
        return -1; /* not empty: its rows are someone's */
    if (n > s->cap) {
        agg_sortent *e = realloc(s->ents, n * sizeof(*e));
        if (e == NULL)
            return -1;
        s->ents = e;
        s->cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        agg_sortent *e = &s->ents[i];
        fullkey k;
        if (ends[i] < start || ends[i] > rows->len)
            return -1; /* not this buffer's rows: left alone */
        e->off = start;
        e->len = ends[i] - start;
        start = ends[i];
        key_of(key, c.rows + e->off, e->len, &k);
        prefix_of(&k, e->k);
    }
    sort_ents(&c, s->ents, n);
    jb_reset(spare);
    for (size_t i = 0; i < n; i++)
        jb_put(spare, rows->p + s->ents[i].off, s->ents[i].len);
    if (start < rows->len)
        jb_put(spare, rows->p + start, rows->len - start);
    if (spare->oom) {
        jb_reset(spare);
        return -1;
    }
    t = *rows;
    *rows = *spare;
    *spare = t;
    jb_reset(spare);
    return 0;
}

void agg_sorter_trim(agg_sorter *s, size_t keep)
{
    if (s->cap > keep) {
        free(s->ents);
        s->ents = NULL;
        s->cap = 0;
    }
}

void agg_sorter_free(agg_sorter *s)
{
    free(s->ents);
    memset(s, 0, sizeof(*s));
}
