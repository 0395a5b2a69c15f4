/*
 * outbox.h - the outbox relay instance, shared by its files:
 *
 *   outbox.c  options, metrics, start, stop, the descriptor
 *   sql.c     the statements and migrations, built once from the
 *             configured names
 *   lease.c   which buckets of the table this relay owns: heartbeat,
 *             take, hand over, rebalance
 *   claim.c   reading the rows of the buckets it owns, in id order
 *   queue.c   rows held in memory, one queue per aggregate; blocked
 *             aggregates
 *   mine.c    the ids this relay read and has not settled (pure)
 *   plan.c    fair shares and per-bucket read sizes (pure)
 *   settle.c  acknowledge (delete or mark) and fail: batched statements
 *             retried until the database took them
 *   relay.c   publish, delivery reports, wake-ups, the drain
 *   api.c     GET /outbox/status, POST /outbox/retry
 *
 * Work is divided by aggregate: every row belongs to one of OB_BUCKETS
 * buckets by a hash of its aggregate id, and each bucket is leased to one
 * relay at a time (lease.c).  claim.c says why order per aggregate holds.
 *
 * Order within a relay: at most one row of an aggregate is handed to the
 * producer at a time; the next row of that aggregate is produced only
 * after the broker acknowledged the previous one.  A failed row blocks its
 * aggregate (its later rows held are dropped from memory and left in the
 * table) until its backoff ends, or for good when it is parked.
 *
 * A row the relay read is in exactly one place: its aggregate's queue
 * (not yet produced), in flight (produced, no report yet), or an id batch
 * on its way to the database; and its id is in `mine` until the database
 * took that batch.  Stop empties all of them, then hands the buckets
 * back, before sl_stopped().
 */
#ifndef OB_OUTBOX_H
#define OB_OUTBOX_H

#include <stddef.h>
#include <sluice/sluice.h>
#include <sluice/kafka.h>
#include <sluice/pg.h>

/* Buckets per table: the most relays that can share one table.  Part of
 * the table's schema (its bucket index, sql.c): changing it needs a new
 * migration. */
#define OB_BUCKETS 64

typedef struct ob_agg ob_agg;

/* One row read; its strings live in `data` after the struct. */
typedef struct ob_row {
    struct ob_row *next;
    ob_agg *agg;
    long long id;
    int bucket;
    double created;                                                  /* wall seconds */
    const char *topic, *key, *event_type, *aggregate_type, *payload; /* payload NULL: tombstone */
    const char *traceparent; /* the writer's trace context, NULL when none */
    size_t payload_len;
    char idtext[24];
    char data[];
} ob_row;

typedef enum { OB_OPEN, OB_BLOCKED, OB_PARKED } ob_block;

/* One aggregate with rows held, or blocked: `queue` in id order, at most
 * one row `flying` (produced, no report yet).  Ready when it has a queued
 * row, none flying and no block. */
struct ob_agg {
    ob_agg *hnext; /* hash chain */
    ob_agg *ready_next;
    ob_agg *all_prev, *all_next;
    ob_row *head, *tail;
    long long queued;
    ob_row *flying;
    int in_ready;
    int bucket;
    ob_block block;     /* OB_BLOCKED: a row failed (until `until`, 0 while
                          its failure is being recorded); OB_PARKED: a
                          parked row holds it */
    double until;       /* sl_now() */
    long long block_id; /* the row that blocks it: reading resumes there */
    unsigned hash;
    char key[]; /* aggregate_type '\0' aggregate_id */
};

typedef struct {
    ob_agg **buckets;
    size_t nbuckets, n;
    ob_agg *ready_head, *ready_tail;
    ob_agg *all; /* every entry, for the drain and the due blocks */
    long long queued, flying;
} ob_queue;

/* The ids read and not yet settled, each with its bucket (mine.c). */
typedef struct {
    long long *ids; /* 0: empty slot (ids are positive) */
    unsigned char *buckets;
    size_t cap, n;
} ob_mine;

/* Rows waiting for one statement (delete/mark, fail). */
typedef struct {
    long long *ids;
    int *buckets;
    char **keys; /* fail: the aggregate of each row */
    size_t n, cap;
} ob_ids;

typedef enum { OB_FREE, OB_OWNED, OB_RELEASING } ob_own;

/* A bucket as this relay sees it. */
typedef struct {
    ob_own own;
    long long cursor; /* rows up to this id were read */
    long long rewind; /* read again from here (the next read), or -1 */
    long long held;   /* ids in mine */
    int full;         /* the last read filled its share: more may wait */
} ob_bucket;

/* POST retry?aggregate_id=: the longest id accepted */
#define OB_AGGREGATE_ID_MAX 256

typedef enum {
    OB_SQL_READ,
    OB_SQL_ACK,
    OB_SQL_FAIL,
    OB_SQL_BEAT,
    OB_SQL_TAKE,
    OB_SQL_LEAVE,
    OB_SQL_PENDING,
    OB_SQL_PARKED,
    OB_SQL_RETRY,
    OB_SQL_RETRY_ONE,
    OB_SQL_RETRY_AGG,
    OB_SQL_MARK,
    OB_NSQL
} ob_sql;

/* How long a read waits for its marker (claim.c) before it is read again
 * with predecessors: far above a NOTIFY's usual milliseconds. */
#define OB_MARKER_WAIT 2.0

/* Buckets read again from their first row at each poll while listening
 * (relay.c): every bucket once in OB_BUCKETS / OB_SWEEP polls. */
#define OB_SWEEP 8

typedef struct ob_read ob_read;

typedef struct ob_stmt ob_stmt;
typedef struct ob ob;
struct ob {
    sl_ctx *ctx;
    sl_pg *pg;
    sl_kafka_producer *producer;
    sl_pg_listener *listener;
    char me[160]; /* relay id: the owner of its leases */
    char *sql[OB_NSQL];
    const sl_pg_stmt *stmt[OB_NSQL]; /* prepared, for those that run all the time */
    char *migration[3];
    int traced_column; /* column_traceparent set: migration 3 applies */
    const char *table;
    const char *topic; /* template */
    char channel[64];
    int mark; /* on_ack = mark */

    long long batch_size, max_inflight, ack_batch, max_attempts;
    double lease, poll, ack_interval, backoff, backoff_max, flush_timeout, beat;
    char lease_s[32], backoff_s[32], backoff_max_s[32], max_attempts_s[32];

    ob_bucket bk[OB_BUCKETS];
    ob_queue q;
    ob_mine mine;
    ob_ids acked, failed;
    char fail_error[256];
    ob_stmt *stmts;            /* settle statements not yet taken by the database (settle.c) */
    int reading;               /* a read's statement is in flight */
    ob_read *rd_sent;          /* that read */
    ob_read *wait, *wait_tail; /* reads returned, not yet decided (claim.c) */
    long long wait_rows;       /* their rows */
    unsigned long long marker_seq;
    int look_next; /* the next read looks up predecessors (claim.c) */
    int sweep;     /* the bucket the next poll's sweep starts at */
    int more;      /* work may be waiting: read again when there is room */
    int waiting_space;
    int busy;    /* settle statements of ours in flight or waiting for a retry */
    int beating; /* a heartbeat or take is in flight */
    int left;    /* stop: the buckets were handed back */
    int migrated;
    sl_timer *poll_timer, *ack_timer, *gauge_timer, *kick, *migrate_timer, *beat_timer,
            *retry_timer, *due_timer, *marker_timer;
    double due_at; /* when due_timer fires (sl_now), 0 when disarmed */

    /* counts */
    unsigned long long published, failed_n, retried, takeovers, parked_n, claimed, released_blocked,
            renewed;
    long long pending_rows, parked_rows;

    sl_series *m_pending, *m_parked, *m_inflight, *m_published, *m_failed, *m_retried, *m_takeovers,
            *m_parked_total, *m_lag, *m_buckets;

    int stopping, flushed, stopped;
};

/* sql.c: checks the names spliced into SQL (check() and start() alike);
 * builds the statements.  Both return 0, or -1 after sl_fail_opt(). */
int ob_names_check(sl_ctx *ctx);
int ob_sql_build(ob *o);
void ob_sql_free(ob *o);
int ob_ident_ok(const char *s);

/* queue.c */
/* Appends a row to its aggregate's queue (created on first use); -1 when
 * out of memory (the row is not taken). */
int ob_queue_add(ob_queue *q, ob_row *r);
/* The aggregate of these values, or NULL. */
ob_agg *ob_queue_find(ob_queue *q, const char *aggregate_type, const char *aggregate_id);
/* The aggregate of these values, created (idle, open) if need be; NULL
 * when out of memory. */
ob_agg *ob_queue_get(ob_queue *q, const char *aggregate_type, const char *aggregate_id);
/* The next aggregate ready to produce (not removed), or NULL; aggregates
 * whose rows were given back meanwhile are dropped from the list here. */
ob_agg *ob_queue_ready(ob_queue *q);
/* Takes the head row of a ready aggregate as its flying row. */
ob_row *ob_queue_fly(ob_queue *q, ob_agg *a);
/* The flying row's report came: returns it; the aggregate is then either
 * resumed or blocked (relay.c). */
ob_row *ob_queue_landed(ob_queue *q, ob_agg *a);
/* Makes the aggregate ready if rows wait and it is open, else frees it
 * when idle. */
void ob_queue_resume(ob_queue *q, ob_agg *a);
/* Removes and returns the head of an aggregate's queue (NULL if empty). */
ob_row *ob_queue_pop(ob_queue *q, ob_agg *a);
/* Frees an aggregate with nothing queued or flying and no block. */
void ob_queue_drop_if_idle(ob_queue *q, ob_agg *a);
void ob_queue_free(ob_queue *q);

/* mine.c: a set of ids, each with its bucket. */
int ob_mine_add(ob_mine *m, long long id, int bucket); /* 0, or -1 out of memory */
int ob_mine_has(const ob_mine *m, long long id);
/* A row held whose publication failed: held, but not in its aggregate's
 * order any more (claim.c). */
void ob_mine_mark_failed(ob_mine *m, long long id);
int ob_mine_failed(const ob_mine *m, long long id);
/* Removes `id`; its bucket, or -1 when it was not there. */
int ob_mine_del(ob_mine *m, long long id);
void ob_mine_free(ob_mine *m);

/* plan.c */
/* Buckets each of `relays` live relays should own: the ceiling of an even
 * share, so that the shares cover every bucket. */
int ob_fair_share(int relays);
/* Rows to ask per owned bucket for a read of about `batch` rows. */
long long ob_per_bucket(long long batch, int owned);

/* settle.c */
/* A row for a statement; with its aggregate when `at` is not NULL. */
int ob_ids_add(ob_ids *b, long long id, int bucket, const char *at, const char *aid);
void ob_ids_free(ob_ids *b);
/* "{1,2,3}", malloc'd; NULL when out of memory. */
char *ob_ids_text(const long long *ids, size_t n);
void ob_settle_ack(ob *o, const ob_row *r);
void ob_settle_fail(ob *o, const ob_row *r, const char *why);
void ob_settle_soon(ob *o); /* the batches are due when full, else after ack_interval */
void ob_settle_flush(ob *o);
/* Stop: hands every bucket back and leaves the table's relays. */
void ob_settle_leave(ob *o);
void ob_settle_retry_fire(void *arg);
void ob_settle_free(ob *o);

/* claim.c */
void ob_claim(ob *o);
/* Read bucket `b` again from after `id` (the next read). */
void ob_claim_rewind(ob *o, int b, long long id);
/* Read every owned bucket again from its first row. */
void ob_claim_rewind_all(ob *o);
/* Read parked rows again (a retry may have un-parked them). */
void ob_claim_rewind_parked(ob *o);
/* Read the next OB_SWEEP owned buckets again from their first row. */
void ob_claim_rewind_sweep(ob *o);
/* Bucket `b` is lost or taken anew: no read not yet decided takes from it. */
void ob_claim_forget(ob *o, int b);
/* A marker came back (a NOTIFY whose payload starts with "m "). */
void ob_claim_marker(ob *o, const char *payload);
/* The read waiting for its marker is given up: nothing of it is taken,
 * and the next read looks up predecessors. */
void ob_claim_abandon(ob *o);
void ob_claim_marker_late(void *arg); /* the marker timer */
void ob_claim_free(ob *o);
/* Takes a row read into `mine` (counted in its bucket): 0, or -1. */
int ob_claim_hold(ob *o, long long id, int bucket);
/* A row leaves `mine` (settled or dropped). */
void ob_claim_unhold(ob *o, long long id);
/* A row the database settled leaves `mine` once no read that may have
 * started before that is in flight. */
void ob_claim_unhold_later(ob *o, long long id);

/* lease.c */
void ob_lease_start(ob *o);
void ob_lease_beat(ob *o); /* now */
/* A settle or a landing may have emptied a bucket being handed over. */
void ob_lease_check_release(ob *o);
int ob_lease_owned(const ob *o);

/* relay.c */
int ob_relay_start(ob *o, char *err, size_t errlen);
/* Queues the table's migrations on o->pg; `fn` gets `o`.  0 or -1. */
int ob_relay_migrate(ob *o, sl_pg_migrate_fn fn);
/* Look for work now, every owned bucket from its first row (a retry of
 * parked rows). */
void ob_relay_kick(ob *o);
void ob_relay_soon(ob *o);                /* look for new work now */
void ob_relay_due(ob *o, double seconds); /* look at blocked aggregates then */
void ob_relay_produce(ob *o);
void ob_relay_settled(ob *o); /* a statement of ours ended */
void ob_relay_stop(ob *o);    /* the drain; calls sl_stopped() */
void ob_relay_free(ob *o);    /* frees every row still held */
void ob_relay_gauges(ob *o);
/* Drops what an aggregate still queues (left in the table, read again). */
void ob_relay_give_back(ob *o, ob_agg *a);
/* Drops a row from memory unpublished: read again later. */
void ob_relay_drop_row(ob *o, ob_row *r);
void ob_topic_of(const char *tmpl, const char *aggregate_type, const char *event_type, char *out,
                 size_t outlen);

/* api.c */
int ob_api_start(ob *o);

#endif
