/*
 * ucache.h - the read cache of GET /segment/user/{id}: a user's memberships
 * with their expiry and the JSON answer built from them, bounded in entries
 * and bytes, least recently used evicted first.  Pure logic, no I/O: the
 * glue (lookup.c) feeds it what PostgreSQL answered and tells it what
 * changed.
 *
 * Expiry is exact at read time: every entry keeps each membership's
 * expires_at, and an answer asked for at or after the earliest of them is
 * rebuilt without what expired, whatever the sweeper has done.
 *
 * A fill that races a change must not put the old state back: a reader
 * takes a ticket before it asks the database and puts only with it; any
 * invalidation of that user (or of everything) since the ticket makes the
 * put a no-op.
 */
#ifndef UCACHE_H
#define UCACHE_H

#include <stddef.h>
#include <stdint.h>

#define UCACHE_NO_EXPIRY INT64_MAX

typedef struct ucache ucache;

/* One membership as read: the slug and its expiry in microseconds since
 * the Unix epoch, UCACHE_NO_EXPIRY for none. */
typedef struct {
    const char *slug;
    int64_t expires_us;
} ucache_member;

typedef struct {
    uint64_t hits, misses, evictions; /* since creation */
    size_t entries, bytes;            /* now */
} ucache_stats;

/* A cache holding at most `max_entries` users and `max_bytes` bytes (the
 * entries, their answers and the hash table), each served for at most
 * `max_age` seconds after it was read.  NULL when out of memory. */
ucache *ucache_new(size_t max_entries, size_t max_bytes, double max_age);
void ucache_free(ucache *c);

/*
 * The answer for `user` at wall time `now_us` (microseconds since the
 * epoch) and monotonic time `mono` (seconds), with its length in `len`:
 * borrowed, valid until the next call on the cache.  NULL on a miss
 * (absent, or older than max_age).  Counts a hit or a miss.
 */
const char *ucache_get(ucache *c, int64_t user, int64_t now_us, double mono, size_t *len);

/* The ticket a reader takes before asking the database for `user`. */
uint64_t ucache_ticket(const ucache *c, int64_t user);

/* Keeps what the database answered for `user` under a ticket taken
 * before the question; evicts as needed.  Returns 1 when kept, 0 when the
 * user was invalidated since the ticket, -1 when out of memory or too
 * large for the limits. */
int ucache_put(ucache *c, int64_t user, uint64_t ticket, const ucache_member *m, size_t n,
               double mono);

/* Drops one user / every user; tickets taken before no longer put. */
void ucache_forget(ucache *c, int64_t user);
void ucache_clear(ucache *c);

void ucache_get_stats(const ucache *c, ucache_stats *st);

/*
 * Writes the answer {"user_id":N,"segments":[{"slug":...,"expires_at":...}]}
 * for the members not expired at `now_us` into `buf` (`cap` bytes), the
 * same bytes whether served from the cache or straight from a read.
 * Returns its length, or the length it needs (>= cap) when it does not
 * fit (`buf` may then be NULL with `cap` 0).  ucache_answer_size() is the
 * room, NUL included, that any user and any `now_us` need for these
 * members.
 */
size_t ucache_answer(char *buf, size_t cap, int64_t user, const ucache_member *m, size_t n,
                     int64_t now_us);
size_t ucache_answer_size(const ucache_member *m, size_t n);

#endif
