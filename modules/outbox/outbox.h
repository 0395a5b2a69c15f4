/*
 * outbox.h - the outbox relay instance, shared by its files:
 *
 *   outbox.c  options, metrics, start, stop, the descriptor
 *   sql.c     the statements, built once from the configured names
 *   queue.c   claimed rows held in memory, one queue per aggregate
 *   claim.c   the claim transaction
 *   settle.c  acknowledge (delete or mark), fail, release, renew: batched
 *             statements retried until the database took them
 *   relay.c   publish, delivery reports, wake-ups, the drain
 *   api.c     GET /outbox/status, POST /outbox/retry
 *
 * Order per aggregate: a relay has at most one row of an aggregate handed
 * to the producer at a time; the next row of that aggregate is produced
 * only after the broker acknowledged the previous one.  A failed row takes
 * every later row of its aggregate this relay holds back to the table with
 * it (released unpublished), and the claim (sql.c) never hands out a row
 * while an earlier row of its aggregate waits, is parked or is held by
 * another relay.  So an aggregate's rows reach Kafka, for the first time,
 * in id order, whatever fails, and with any number of relays.
 *
 * A row the relay claimed is in exactly one place: its aggregate's queue
 * (claimed, not yet produced), in flight (produced, no report yet), or an
 * id batch on its way to the database.  Stop empties all of them before
 * sl_stopped().
 */
#ifndef OB_OUTBOX_H
#define OB_OUTBOX_H

#include <stddef.h>
#include <sluice/sluice.h>
#include <sluice/kafka.h>
#include <sluice/pg.h>

typedef struct ob_agg ob_agg;

/* One claimed row; its strings live in `data` after the struct. */
typedef struct ob_row {
    struct ob_row *next;
    ob_agg *agg;
    long long id;
    double created; /* wall seconds */
    const char *topic, *key, *event_type, *aggregate_type, *payload; /* payload NULL: tombstone */
    size_t payload_len;
    char idtext[24];
    char data[];
} ob_row;

/* One aggregate with claimed rows: `queue` in id order, at most one row
 * `flying` (produced, no report yet).  Ready when it has a queued row and
 * none flying. */
struct ob_agg {
    ob_agg *hnext;     /* hash chain */
    ob_agg *ready_next;
    ob_agg *all_prev, *all_next;
    ob_row *head, *tail;
    long long queued;
    ob_row *flying;
    int in_ready;
    int poisoned; /* failed while a claim was open: rows of that claim go back */
    unsigned hash;
    char key[]; /* aggregate_type '\0' aggregate_id */
};

typedef struct {
    ob_agg **buckets;
    size_t nbuckets, n;
    ob_agg *ready_head, *ready_tail;
    ob_agg *all; /* every entry, for renewals and the drain */
    long long queued, flying;
} ob_queue;

/* Ids waiting for one statement (delete/mark, release, fail). */
typedef struct {
    char *buf; /* "{1,2,3" being built */
    size_t len, cap;
    long long n;
} ob_ids;

typedef enum { OB_SQL_CLAIM, OB_SQL_UNBLOCK, OB_SQL_ACK, OB_SQL_FAIL, OB_SQL_RELEASE, OB_SQL_RENEW,
               OB_SQL_PENDING, OB_SQL_PARKED, OB_SQL_RETRY, OB_SQL_RETRY_ONE, OB_NSQL } ob_sql;

typedef struct ob_stmt ob_stmt;
typedef struct ob ob;
struct ob {
    sl_ctx *ctx;
    sl_pg *pg;
    sl_kafka_producer *producer;
    sl_pg_listener *listener;
    char me[160]; /* relay id: claimed_by */
    char *sql[OB_NSQL];
    char *migration;
    const char *table;
    const char *topic; /* template */
    char channel[64];
    int mark; /* on_ack = mark */

    long long batch_size, max_inflight, ack_batch, max_attempts;
    double lease, poll, ack_interval, backoff, backoff_max, flush_timeout;
    char lease_s[32], backoff_s[32], backoff_max_s[32], max_attempts_s[32];

    ob_queue q;
    ob_ids acked, failed, release;
    char fail_error[256];
    ob_stmt *stmts; /* settle statements not yet taken by the database (settle.c) */
    int claiming;        /* a claim transaction is open */
    int more;            /* work may be waiting: claim again when there is room */
    int waiting_space;
    int busy;     /* settle statements of ours in flight or waiting for a retry */
    int unsettled_order; /* of those, fail/release ones: a claim waits for them */
    int migrated;
    sl_timer *poll_timer, *ack_timer, *gauge_timer, *kick, *migrate_timer, *renew_timer,
        *retry_timer, *due_timer;
    double due_at; /* when due_timer fires (sl_now), 0 when disarmed */
    void *cur_claim; /* the open claim (claim.c) */

    /* counts */
    unsigned long long published, failed_n, retried, takeovers, parked_n, claimed, released_blocked,
        renewed;
    long long pending_rows, parked_rows;

    sl_series *m_pending, *m_parked, *m_inflight, *m_published, *m_failed, *m_retried,
        *m_takeovers, *m_parked_total, *m_lag;

    int stopping, flushed, stopped;
};

/* sql.c: checks the names spliced into SQL (check() and start() alike);
 * builds the statements.  Both return 0, or -1 after sl_fail_opt(). */
int ob_names_check(sl_ctx *ctx);
int ob_sql_build(ob *o);
void ob_sql_free(ob *o);
int ob_ident_ok(const char *s);

/* queue.c */
/* Appends a claimed row to its aggregate's queue (created on first use);
 * -1 when out of memory (the row is not taken). */
int ob_queue_add(ob_queue *q, ob_row *r);
/* The aggregate of a claimed row's values, or NULL. */
ob_agg *ob_queue_find(ob_queue *q, const char *aggregate_type, const char *aggregate_id);
/* The next aggregate ready to produce (not removed), or NULL; aggregates
 * whose rows were given back meanwhile are dropped from the list here. */
ob_agg *ob_queue_ready(ob_queue *q);
/* Takes the head row of a ready aggregate as its flying row. */
ob_row *ob_queue_fly(ob_queue *q, ob_agg *a);
/* The flying row's report came: returns it; the aggregate is then either
 * resumed or given back (relay.c). */
ob_row *ob_queue_landed(ob_queue *q, ob_agg *a);
/* Makes the aggregate ready if rows wait, else frees it unless poisoned. */
void ob_queue_resume(ob_queue *q, ob_agg *a);
/* Removes and returns the head of an aggregate's queue (NULL if empty). */
ob_row *ob_queue_pop(ob_queue *q, ob_agg *a);
/* Frees an aggregate with nothing queued or flying unless poisoned. */
void ob_queue_drop_if_idle(ob_queue *q, ob_agg *a);
/* Frees every poisoned aggregate that is idle, clears the others' flag. */
void ob_queue_unpoison(ob_queue *q);
void ob_queue_free(ob_queue *q);

/* settle.c */
int ob_ids_add(ob_ids *b, long long id);
char *ob_ids_take(ob_ids *b); /* "{1,2}" malloc'd; the batch is reset */
void ob_settle_ack(ob *o, const ob_row *r);
void ob_settle_fail(ob *o, const ob_row *r, const char *why);
void ob_settle_release(ob *o, long long id);
void ob_settle_soon(ob *o); /* the batches are due when full, else after ack_interval */
void ob_settle_flush(ob *o);
void ob_settle_renew(ob *o);
void ob_settle_retry_fire(void *arg);
void ob_settle_free(ob *o);

/* claim.c */
void ob_claim(ob *o);
void ob_claim_free(void *claim);

/* relay.c */
int ob_relay_start(ob *o, char *err, size_t errlen);
/* Queues the table's migration on o->pg; `fn` gets `o`.  0 or -1. */
int ob_relay_migrate(ob *o, sl_pg_migrate_fn fn);
void ob_relay_kick(ob *o);  /* look for work now */
void ob_relay_due(ob *o, double seconds); /* look for work then (a backoff ends) */
void ob_relay_produce(ob *o);
void ob_relay_settled(ob *o); /* a settle statement ended */
void ob_relay_stop(ob *o);  /* the drain; calls sl_stopped() */
void ob_relay_free(ob *o);  /* frees every row still held */
void ob_relay_gauges(ob *o);
/* A row's aggregate failed: release what it still queues. */
void ob_relay_give_back(ob *o, ob_agg *a);
void ob_topic_of(const char *tmpl, const char *aggregate_type, const char *event_type, char *out,
                 size_t outlen);

/* api.c */
int ob_api_start(ob *o);

#endif
