/*
 * seg.h - the segments module's state, shared by its files:
 *   segments.c  descriptor, options, start/stop, metrics, reply helpers
 *   schema.c    the migrations (tables, history/outbox trigger, bucket fn)
 *   call.c      one request's database work: transactions with retries
 *   api.c       users and segments endpoints
 *   lookup.c    GET /segment/user/{id} and its read cache (ucache.c)
 *   members.c   POST /segment/user
 *   rollout.c   PATCH /segment/{slug}: percent and description, exact rollout
 *   ttl.c       the Redis expiry schedule and its sweeper
 *   report.c    history links and streamed CSV reports
 *   retention.c segment_history rows past history_retention removed
 *   openapi.c   /openapi.json and /docs
 */
#ifndef SEG_H
#define SEG_H

#include <sluice/sluice.h>
#include <sluice/pg.h>
#include <sluice/redis.h>
#include "parse.h"

typedef enum {
    SEG_R_USER,
    SEG_R_SEGMENT_CREATE,
    SEG_R_SEGMENT_DELETE,
    SEG_R_SEGMENT_LIST,
    SEG_R_CHANGE,
    SEG_R_USER_SEGMENTS,
    SEG_R_HISTORY,
    SEG_R_REPORT,
    SEG_R_OPENAPI,
    SEG_R_DOCS,
    SEG_R_SEGMENT_UPDATE,
    SEG_NROUTES
} seg_route;

/* requests held while a new instance checks the schema */
#define SEG_MAX_WAITING 4096

typedef struct seg seg;
typedef struct seg_call seg_call;

/* The statements that run on every request or every tick of a timer,
 * prepared (sl_pg_prepare) when the routes or timers that run them are
 * set up: parsed and planned once per connection.  One slot each in
 * seg.st.  Only what runs once per start (the secret, the migrations) is
 * sent unprepared. */
typedef enum {
    SEG_ST_USER_SEGMENTS, /* lookup.c: a cache miss */
    SEG_ST_NEW_USER,      /* api.c */
    SEG_ST_SEGMENT_NEW,
    SEG_ST_SEGMENT_LOCK,
    SEG_ST_SEGMENT_MEMBERS,
    SEG_ST_SEGMENT_DELETE,
    SEG_ST_SEGMENT_LIST,
    SEG_ST_CACHE_ALL,
    SEG_ST_CHANGE_CREATE, /* members.c */
    SEG_ST_CHANGE_LOCK,
    SEG_ST_CHANGE_PURGE,
    SEG_ST_CHANGE_ADD,
    SEG_ST_REPORT_USER, /* report.c */
    SEG_ST_REPORT_PAGE,
    SEG_ST_ROLLOUT_EXPIRED, /* rollout.c */
    SEG_ST_ROLLOUT_UPDATE,
    SEG_ST_ROLLOUT_GROW,
    SEG_ST_ROLLOUT_SHRINK,
    SEG_ST_ROLLOUT_MEMBERS,
    SEG_ST_TTL_REMOVE, /* ttl.c */
    SEG_ST_TTL_REBUILD,
    SEG_ST_TTL_FALLBACK,
    SEG_ST_ACTIVE,
    SEG_ST_RETENTION, /* retention.c */
    SEG_NSTMTS
} seg_stmt;

typedef struct {
    seg_stmt id;
    const char *name; /* the server-side name, after "sl_" */
    const char *sql;
} seg_sql;

/* One request in flight.  Calls are listed in the state so that an
 * instance stopped mid-request frees them (the core answers 503). */
struct seg_call {
    seg *s;
    sl_req *req;
    seg_call *prev, *next;
    seg_route route;
    double t0;
    /* transaction runner (call.c) */
    sl_pg_tx *tx;
    int attempts;
    void (*begin)(seg_call *c); /* queues one attempt's statements */
    void (*done)(seg_call *c);  /* after a successful commit */
    int failed;                 /* a statement of this attempt failed */
    int unavailable;            /* ...without an answer from the server */
    char sqlstate[8];
    char err[256];
    cJSON *json;       /* the request body, parsed */
    sl_route_fn again; /* waiting for the schema: its handler */
    int waiting;
    int reject; /* a 4xx decided inside the transaction */
    char reject_why[256];
    /* request data */
    seg_change ch;
    char slug[SEG_SLUG_MAX + 1];
    char created_at[40];
    double percent;
    long long n1, n2;
    /* PATCH /segment/{slug} (rollout.c): the change asked for, and what
     * the segment holds after it */
    seg_patch patch;
    int had_percent, has_desc_out;
    char desc_out[SEG_DESC_MAX + 1];
    long long members;
    char *expiries; /* members' "user:slug score" to schedule */
    /* read cache (lookup.c): the ticket taken before a miss's read */
    uint64_t cache_ticket;
    int cache_ticket_ok;
    /* report stream */
    long long user;
    int year, month;
    char after_ts[64];
    char after_id[24];
    int streaming, in_flight, finished;
    sl_timer *watch;
};

struct seg {
    sl_ctx *ctx;
    sl_pg *pg;
    sl_redis *redis;
    seg_call *calls;
    int stopping;       /* drain: sl_stopped once no call is left */
    int nwaiting;       /* calls waiting for the schema */
    int releasing;      /* inside release_waiting: no sl_stopped yet */
    int migrate_failed; /* the last schema check failed */
    int migrated;       /* schema ready and secret loaded */
    char secret[128];
    size_t max_body;
    int max_retries;
    const char *ttl_key;
    char marker_key[256];
    const char *public_url;
    const char *docs_dir;
    double sweep_interval;
    int sweep_batch;
    int report_page;
    long long max_user_id; /* users created on demand: ids up to this */
    /* history retention */
    double retention, retention_interval;
    long long retention_batch;
    sl_timer *retention_timer;
    /* ttl sweeper */
    sl_timer *sweep_timer, *gauge_timer, *migrate_timer;
    int sweeping, rebuild_needed, gauge_busy;
    char sweep_now[32]; /* the time the due members were chosen by */
    char rebuild_after_user[24], rebuild_after_slug[SEG_SLUG_MAX + 1];
    const sl_pg_stmt *st[SEG_NSTMTS];
    /* read cache (lookup.c) */
    struct ucache *cache; /* NULL: cache_bytes = 0 */
    sl_pg_listener *listener;
    unsigned long long cache_epoch;
    uint64_t evictions_seen;
    sl_series *s_cache_hits, *s_cache_misses, *s_cache_evictions, *s_cache_entries, *s_cache_bytes,
            *s_inv_change, *s_inv_flush, *s_inv_connection, *s_get_ok, *s_get_latency;
    /* metrics */
    sl_metric *m_requests, *m_latency;
    sl_series *s_active, *s_lag, *s_removals, *s_rebuilds, *s_assign_create, *s_assign_new,
            *s_assign_update, *s_retries, *s_scheduled, *s_history_removed;
};

/* segments.c */
seg_call *seg_call_new(seg *s, sl_req *req, seg_route route);
void seg_call_free(seg_call *c);
void seg_reply(seg_call *c, int status, cJSON *json);
void seg_error(seg_call *c, int status, const char *fmt, ...) SL_PRINTF(3, 4);
/* Answers directly, for routes that need no call state. */
void seg_count(seg *s, seg_route route, int status, double t0);
/* The JSON body, or NULL after answering 400 and freeing c.  (The core
 * answered 413 for a body over max_body: the routes declare it.) */
cJSON *seg_body_json(seg_call *c);
/* 0 when the schema is ready.  Else -1: until the first schema check
 * ends (a successor started by a reload, a few milliseconds) the request
 * waits and `again` is called for it then; after a failed check it is
 * answered 503 and c freed. */
int seg_ready(seg_call *c, sl_route_fn again);

/* Prepares `n` statements into s->st; 0, or -1 after sl_fail(). */
int seg_prepare(seg *s, const seg_sql *list, size_t n);

/* schema.c */
extern const sl_pg_migration seg_migrations[];
extern const size_t seg_nmigrations;
/* The module's init_schema(): applies seg_migrations for --init-schema. */
int seg_init_schema(sl_ctx *ctx);

/* call.c */
void seg_tx_run(seg_call *c);
/* Records a failed statement; returns 1 when `err` is set. */
int seg_stmt_failed(seg_call *c, const sl_pg_result *res, const char *err);
/* Ends the attempt: commit (or rollback after a reject or failure). */
void seg_tx_end(seg_call *c);
/* Answers a failed single query: 503 when unanswered, 500 otherwise. */
void seg_pg_error(seg_call *c, const sl_pg_result *res, const char *err);
void seg_tx_reject(seg_call *c, int status, const char *fmt, ...) SL_PRINTF(3, 4);

/* api.c, members.c, report.c, openapi.c */
int seg_api_routes(seg *s);
int seg_members_routes(seg *s);
int seg_report_routes(seg *s);
int seg_openapi_routes(seg *s);

/* lookup.c: registers GET /segment/user/{id}, creates the cache and
 * listens for changes. */
int seg_lookup_start(seg *s);
/* This instance changed one user / many: called after the commit and
 * before the answer, so the caller never reads the old state back. */
void seg_cache_forget(seg *s, long long user);
void seg_cache_flush(seg *s);

/* rollout.c: prepares its statements (0, or -1 after sl_fail) and
 * registers PATCH /segment/{slug}. */
int seg_rollout_prepare(seg *s);
int seg_rollout_routes(seg *s);
/* Queues, in c->tx, the statement that brings segment c->slug to exactly
 * round(c->percent% of the users) by adding members in the sticky order;
 * `fn` gets its result (rows inserted).  As sl_pg_tx_exec(). */
int seg_rollout_fill(seg_call *c, sl_pg_fn fn);

/* ttl.c */
int seg_ttl_start(seg *s);
/* Schedules `n` members "user:slug" with their expiry (epoch seconds). */
void seg_ttl_schedule(seg *s, const char *const *members, const char *const *scores, size_t n);
void seg_sweep_tick(void *arg);

/* retention.c: 0, or -1 when out of memory. */
int seg_retention_start(seg *s);

#endif
