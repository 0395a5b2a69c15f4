/*
 * pg_int.h - what pg.c (the handle and its API), pg_connect.c (bringing
 * a connection up and down), pg_conn.c (the work on a live connection)
 * and pg_stmt.c (prepared statements' bookkeeping) share; nothing else
 * includes it but the unit test of pg_stmt.c.
 *
 * Requests are "ops".  An op waits in the pool's queue (jobs) for a free
 * connection, or in its transaction's queue for the connection the
 * transaction holds, or in a connection's own queue (LISTEN, probes).  A
 * transaction enters the pool queue as its BEGIN op; the connection that
 * takes it is pinned to it until COMMIT or ROLLBACK.  Failures found
 * outside a libpq callback are answered on the next loop turn (the
 * `failed` list), so that no module callback runs from inside the call
 * that queued it.
 */
#ifndef SL_PG_INT_H
#define SL_PG_INT_H

#include <event2/event.h>
#include <libpq-fe.h>
#include "connectors/connector.h"
#include "pg.h"
#include "trace/trace.h"

#define BACKOFF_FIRST 0.1 /* the first wait before a connection is retried */

typedef enum {
    OP_QUERY,
    OP_EXEC,
    OP_SCRIPT,
    OP_BEGIN,
    OP_COMMIT,
    OP_ROLLBACK,
    OP_LISTEN,
    OP_UNLISTEN
} op_kind;

typedef enum {
    OUT_OK,
    OUT_ERROR,
    OUT_TIMEOUT,
    OUT_UNAVAILABLE,
    OUT_LOST,
    OUT_OVERFLOW,
    OUT_ABORTED,
    OUT_N
} outcome;

typedef struct conn conn;
typedef struct op op;

/* A set of small integers (statement indexes), one byte each. */
typedef struct {
    unsigned char *has;
    size_t n;
} pg_set;

/* A prepared statement of a handle (sluice_pg.h); `index` is its place in
 * every connection's set of the statements it has prepared. */
struct sl_pg_stmt {
    sl_pg_stmt *next; /* in pg->stmts */
    const sl_pg *pg;
    int index;
    char name[56]; /* server-side: "sl_" + the caller's name */
    char *sql;
    char op[32];              /* its first keyword: its spans' name */
    sl_span_attrs span_attrs; /* its spans' own attributes, encoded once */
};

struct op {
    op *next;
    op_kind kind;
    char *sql;              /* NULL for OP_EXEC */
    const sl_pg_stmt *stmt; /* OP_EXEC */
    int nparams;
    char **params;
    sl_pg_fn fn;
    void *arg;
    sl_pg_tx *tx;             /* the transaction it belongs to */
    sl_pg_listener *listener; /* OP_LISTEN: told once listening */
    int internal;             /* ours: not counted, never answered */
    int ends_tx;              /* the module's COMMIT or ROLLBACK */
    double deadline;          /* 0: none */
    double sent;
    outcome out; /* for answers given from `failed` */
    char *why;
    sl_span *span;      /* its span, while it runs */
    sl_trace_ctx trace; /* current when it was made: its callback's */
    int carry;          /* sent with its span's position as sluice.traceparent */
};

struct sl_pg_tx {
    sl_pg_tx *next; /* in pg->txs */
    sl_pg *pg;
    conn *c;         /* the connection it holds */
    op *begin;       /* its BEGIN while that waits in the pool queue */
    op *head, *tail; /* statements not sent yet, the end op last */
    int ended;       /* the module called commit or rollback */
    int failed;      /* rolled back after an error */
    int unbounded;   /* migrations: no deadlines */
    double deadline;
    char err[512];
    void *owned; /* freed with the transaction (migration state) */
    void (*owned_free)(void *);
    sl_span *span;      /* the transaction's span */
    sl_trace_ctx trace; /* its statements' parent */
};

struct sl_pg_listener {
    sl_pg_listener *next;
    sl_pg *pg;
    char *channel;
    sl_pg_notify_fn fn;
    void *arg;
    int dead;   /* unlistened inside a callback: unlinked later */
    int active; /* LISTEN in effect on the live LISTEN connection */
};

typedef enum { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY } conn_state;

struct conn {
    sl_pg *pg;
    int id; /* 1..pool_size; 0 for the LISTEN connection */
    PGconn *pq;
    conn_state state;
    struct event *io;
    short io_what;
    struct event *timer; /* the connect deadline, or the wait before a retry */
    struct evdns_getaddrinfo_request *dns_req;
    double backoff;
    int attempts; /* failed attempts since it was last up */
    int ever_up;
    op *cur;       /* in flight */
    PGresult *res; /* what came back for cur so far */
    int flushing;
    int preparing;      /* cur's statement is being prepared first */
    int piped;          /* cur was sent in a pipeline after its trace context: PIPE_* */
    pg_set prepared;    /* statements prepared in this session */
    sl_pg_tx *tx;       /* pinned to this transaction */
    op *own, *own_tail; /* its own statements: LISTEN, probes */
};

struct sl_pg {
    sl_conn_life life; /* owner, and our frames on the stack */
    char *label;
    char **keys, **vals;      /* connection parameters for libpq */
    char where[300];          /* "host:port", for messages */
    char *resolve;            /* a host name we resolve ourselves, or NULL */
    sl_span_attrs span_attrs; /* every span's db.system, server.address..., once traced */
    char resolve_port[16];
    struct evdns_base *dns;
    int pool_size;
    double connect_timeout, query_timeout, tx_timeout, reconnect_max;
    long long max_queue;

    conn *conns;          /* pool_size of them */
    conn *lconn;          /* the LISTEN connection, once asked for */
    op *jobs, *jobs_tail; /* waiting for a free connection */
    long long njobs;
    op *failed, *failed_tail; /* answered on the next loop turn */
    sl_pg_tx *txs;
    sl_pg_listener *listeners;
    sl_pg_stmt *stmts;
    int nstmts;
    int nup;                  /* pool connections up */
    unsigned long long epoch; /* connections established or lost (sl_pg_epoch) */
    int down;                 /* none up after a failure: requests fail fast */
    char err[512];            /* why the last connection went or did not come */

    struct event *deliver, *tick;

    sl_metric *m_latency, *m_queries, *m_reconnects, *m_up, *m_prepares;
    sl_series *s_latency, *s_reconnects, *s_up, *s_prepares, *s_out[OUT_N];
};

/* -------------------------------------- pg_conn.c for pg.c and pg_connect.c */

/* Around every entry into the handle's code; the outermost leave() frees
 * a handle freed meanwhile, and unlinks listeners removed meanwhile. */
void pg_enter(sl_pg *pg);
void pg_leave(sl_pg *pg);
void pg_sweep_listeners(sl_pg *pg);

/* libpq's multi-line messages as one line. */
/* Spans (pg_trace.c): a statement's, opened once it is submitted (its
 * transaction set); ended, and the callback run in the context the op was
 * made in, by pg_call(); a transaction's, from begin to free. */
void pg_trace_statement(sl_pg *pg, op *o);
void pg_trace_done(op *o, const PGresult *res, const char *err);
/* Where the results of a statement sent with its trace context are:
 * those of the SET, then the statement's, then the pipeline's sync. */
enum { PIPE_OFF, PIPE_SET, PIPE_STMT, PIPE_SYNC };
/* Writes the position `o` carries into `tp` (SL_TP_LEN + 1 bytes):
 * 0, or -1 when it carries none. */
int pg_trace_carried(const op *o, char *tp);
/* The longest BEGIN pg_trace_tx_begin() writes. */
#define PG_TRACE_BEGIN_MAX 96
/* Opens the transaction's span and writes into `begin` what opens the
 * transaction: "BEGIN", plus, under a trace, a SET LOCAL of
 * sluice.traceparent to the transaction span's position, in the same
 * round trip, so that SQL run in it (an outbox trigger) can store the
 * context with what it writes. */
void pg_trace_tx_begin(sl_pg *pg, sl_pg_tx *tx, char begin[PG_TRACE_BEGIN_MAX]);
void pg_trace_tx_end(sl_pg_tx *tx);
/* Encodes a new statement's span name and attributes, once. */
void pg_trace_stmt(sl_pg_stmt *st);
void pg_call(sl_pg *pg, op *o, const PGresult *res, const char *err);

void pg_one_line(char *dst, size_t len, const char *msg);

/* An op with copies of `sql` and the parameters; NULL when out of memory. */
op *pg_op_new(op_kind kind, const char *sql, int nparams, const char *const *params, sl_pg_fn fn,
              void *arg);
void pg_op_free(op *o);
void pg_push_back(op **head, op **tail, op *o);
op *pg_pop_front(op **head, op **tail);
/* Answers `o` on the next loop turn with the reason (NULL fmt: success
 * without a result, a ROLLBACK that was asked for). */
void pg_fail_later(sl_pg *pg, op *o, outcome out, const char *fmt, ...) SL_PRINTF(4, 5);
void pg_arm_tick(sl_pg *pg);
/* Event callbacks: answers of `failed`, and deadlines. */
void pg_on_deliver(evutil_socket_t fd, short what, void *arg);
void pg_on_tick(evutil_socket_t fd, short what, void *arg);

/* Rolls the transaction back and fails what it still has queued. */
void pg_tx_fail(sl_pg_tx *tx, const char *why);
void pg_tx_free(sl_pg_tx *tx);

/* Gives an idle connection its next op, if any. */
void pg_conn_next(conn *c);
/* Reads and writes a connection that is up, on socket readiness `what`. */
void pg_conn_io(conn *c, short what);
/* Queues LISTEN or UNLISTEN on the LISTEN connection when it is up. */
void pg_listen_queue(conn *c, op_kind kind, sl_pg_listener *l, const char *channel);

/* ------------------------------------------ pg_stmt.c (pure, unit tested) */

/* A statement name a module may give: [a-z0-9_], 1 to 50 bytes. */
int pg_stmt_name_ok(const char *name);
/* The statement of `list` named `name` (the caller's name), or NULL. */
sl_pg_stmt *pg_stmt_find(sl_pg_stmt *list, const char *name);
/* A new statement (not linked); NULL when out of memory. */
sl_pg_stmt *pg_stmt_new(const sl_pg *pg, int index, const char *name, const char *sql);
void pg_stmt_free(sl_pg_stmt *st);

/* Makes room for members below `n` (-1: out of memory); then add never
 * fails for them. */
int pg_set_reserve(pg_set *s, size_t n);
int pg_set_has(const pg_set *s, int i);
void pg_set_add(pg_set *s, int i);
void pg_set_clear(pg_set *s);
void pg_set_free(pg_set *s);

/* -------------------------------------- pg_connect.c for pg.c and pg_conn.c */

void pg_conn_init(sl_pg *pg, conn *c, int id);
void pg_conn_fini(conn *c);
/* Resolves the host name if need be, then connects; retried after a
 * backoff until it is up. */
void pg_conn_start(conn *c);
/* Watches the socket for `what`; `rebuild` makes a fresh event. */
int pg_watch(conn *c, short what, int rebuild);
/* Closes the libpq connection (and cancels a lookup); the state is down. */
void pg_conn_close(conn *c);
/* With no pool connection up, fails what waits for one. */
void pg_pool_down(sl_pg *pg);

#endif
