/*
 * pg.c - the PostgreSQL connector: a pool of libpq connections driven on
 * the daemon's loop, transactions pinned to one connection, LISTEN on a
 * dedicated one, reconnection with exponential backoff.
 *
 * Only libpq's non-blocking calls are used: PQconnectStartParams and
 * PQconnectPoll on socket readiness (the socket is looked up again after
 * every step, because libpq may switch sockets while it tries addresses),
 * then PQsendQuery*, PQflush until it returns 0, PQconsumeInput, PQisBusy
 * and PQgetResult.  libpq resolves a host name with a blocking
 * getaddrinfo() unless it is given hostaddr, so names are resolved here
 * with evdns and handed over as addresses.  PQcancel is not used because it connects
 * synchronously: a statement past its deadline costs its connection
 * instead, which is closed and opened again, and the server's
 * statement_timeout (set to query_timeout at connect) ends the work on
 * its side.
 *
 * Requests are "ops".  An op waits in the pool's queue (jobs) for a free
 * connection, or in its transaction's queue for the connection the
 * transaction holds.  A transaction enters the pool queue as its BEGIN op;
 * the connection that takes it is pinned to it until COMMIT or ROLLBACK.
 * Failures found outside a libpq callback are answered on the next loop
 * turn (the `failed` list), so that no module callback runs from inside
 * the call that queued it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <libpq-fe.h>
#include "connector.h"
#include "core.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"

#define BACKOFF_FIRST 0.1
#define TICK_SECONDS 0.1
#define MAX_PARAMS 65535 /* the protocol's limit */
#define MAX_ADDRS 8       /* addresses of one name tried per attempt */

static const sl_option pg_options[] = {
    { "dsn", SL_OPT_STRING, "",
      "libpq connection string, e.g. \"host=127.0.0.1 port=5432 user=sluice dbname=sluice\"; "
      "required by every module that uses PostgreSQL",
      0, 0, NULL },
    { "pool_size", SL_OPT_INT, "4", "connections of each handle (one handle per instance)", 1, 64,
      NULL },
    { "connect_timeout", SL_OPT_DURATION, "5s", "how long establishing a connection may take",
      0.001, 300, NULL },
    { "query_timeout", SL_OPT_DURATION, "10s",
      "how long a request may take from the call to its answer, waiting for a connection "
      "included; also the server's statement_timeout",
      0.001, 3600, NULL },
    { "tx_timeout", SL_OPT_DURATION, "30s",
      "how long a transaction may stay open before it is rolled back", 0.001, 3600, NULL },
    { "max_queue", SL_OPT_INT, "1024",
      "requests that may wait for a free connection; more fail at once", 1, 1000000, NULL },
    { "reconnect_max", SL_OPT_DURATION, "5s",
      "longest wait between reconnection attempts (the wait doubles from 100ms)", 0.1, 300,
      NULL },
    { NULL, 0, NULL, NULL, 0, 0, NULL }
};

/* libpq messages end in a newline and may span lines; logs want one. */
static void one_line(char *dst, size_t len, const char *msg)
{
    size_t n;

    snprintf(dst, len, "%s", msg != NULL && msg[0] != '\0' ? msg : "unknown error");
    for (char *p = dst; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    n = strlen(dst);
    while (n > 0 && dst[n - 1] == ' ')
        dst[--n] = '\0';
}

/* -t and every reload: a malformed dsn is a config error with its line. */
static int pg_check(const sl_optset *opts, const char *file, sl_errors *errs)
{
    const sl_optval *v = sl_optset_get(opts, "dsn");
    PQconninfoOption *parsed;
    char *msg = NULL, why[512];

    if (v == NULL || v->raw[0] == '\0')
        return 0;
    parsed = PQconninfoParse(v->raw, &msg);
    if (parsed != NULL) {
        PQconninfoFree(parsed);
        return 0;
    }
    one_line(why, sizeof(why), msg != NULL ? msg : "out of memory");
    sl_errors_add(errs, file, v->line, "[postgres] dsn: %s", why);
    PQfreemem(msg);
    return -1;
}

const sl_section_schema sl_postgres_schema = {
    "postgres", "the PostgreSQL connection pool of modules that use PostgreSQL", pg_options,
    SL_USES_POSTGRES, pg_check, NULL, NULL,
};

/* ----------------------------------------------------------------- types */

typedef enum { OP_QUERY, OP_SCRIPT, OP_BEGIN, OP_COMMIT, OP_ROLLBACK, OP_LISTEN,
               OP_UNLISTEN } op_kind;

typedef enum { OUT_OK, OUT_ERROR, OUT_TIMEOUT, OUT_UNAVAILABLE, OUT_LOST, OUT_OVERFLOW,
               OUT_ABORTED, OUT_N } outcome;
static const char *const outcome_names[OUT_N] = { "ok", "error", "timeout", "unavailable",
                                                   "lost", "overflow", "aborted" };

typedef struct conn conn;
typedef struct op op;

struct op {
    op *next;
    op_kind kind;
    char *sql;
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
    outcome out;              /* for answers given from `failed` */
    char *why;
};

struct sl_pg_tx {
    sl_pg_tx *next;           /* in pg->txs */
    sl_pg *pg;
    conn *c;                  /* the connection it holds */
    op *begin;                /* its BEGIN while that waits in the pool queue */
    op *head, *tail;          /* statements not sent yet, the end op last */
    int ended;                /* the module called commit or rollback */
    int failed;               /* rolled back after an error */
    int unbounded;            /* migrations: no deadlines */
    double deadline;
    char err[512];
    void *owned;              /* freed with the transaction (migration state) */
    void (*owned_free)(void *);
};

struct sl_pg_listener {
    sl_pg_listener *next;
    sl_pg *pg;
    char *channel;
    sl_pg_notify_fn fn;
    void *arg;
    int dead;                 /* unlistened inside a callback: unlinked later */
};

typedef enum { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY } conn_state;

struct conn {
    sl_pg *pg;
    int id;                   /* 1..pool_size; 0 for the LISTEN connection */
    PGconn *pq;
    conn_state state;
    struct event *io;
    short io_what;
    struct event *timer;      /* the connect deadline, or the wait before a retry */
    struct evdns_getaddrinfo_request *dns_req;
    double backoff;
    int attempts;             /* failed attempts since it was last up */
    int ever_up;
    op *cur;                  /* in flight */
    PGresult *res;            /* what came back for cur so far */
    int flushing;
    sl_pg_tx *tx;             /* pinned to this transaction */
    op *own, *own_tail;       /* its own statements: LISTEN, probes */
};

struct sl_pg {
    sl_conn_life life;        /* owner, and our frames on the stack */
    char *label;
    char **keys, **vals;      /* connection parameters for libpq */
    char where[300];          /* "host:port", for messages */
    char *resolve;            /* a host name we resolve ourselves, or NULL */
    char resolve_port[16];
    struct evdns_base *dns;
    int pool_size;
    double connect_timeout, query_timeout, tx_timeout, reconnect_max;
    long long max_queue;

    conn *conns;              /* pool_size of them */
    conn *lconn;              /* the LISTEN connection, once asked for */
    op *jobs, *jobs_tail;     /* waiting for a free connection */
    long long njobs;
    op *failed, *failed_tail; /* answered on the next loop turn */
    sl_pg_tx *txs;
    sl_pg_listener *listeners;
    int nup;                  /* pool connections up */
    int down;                 /* none up after a failure: requests fail fast */
    char err[512];            /* why the last connection went or did not come */

    struct event *deliver, *tick;

    sl_metric *m_latency, *m_queries, *m_reconnects, *m_up;
    sl_series *s_latency, *s_reconnects, *s_up, *s_out[OUT_N];
};

static void destroy(void *obj);
static void conn_next(conn *c);
static void conn_start(conn *c);
static void conn_drop(conn *c, outcome out, const char *why);
static void tx_fail(sl_pg_tx *tx, const char *why);
static void tx_free(sl_pg_tx *tx);

/* Frames of ours on the stack: the handle is destroyed only when none is,
 * so a module may free it from inside any of its callbacks. */
static void enter(sl_pg *pg)
{
    sl_conn_enter(&pg->life);
}

static void sweep_listeners(sl_pg *pg)
{
    sl_pg_listener **pp = &pg->listeners;

    while (*pp != NULL) {
        sl_pg_listener *l = *pp;
        if (l->dead) {
            *pp = l->next;
            free(l->channel);
            free(l);
        } else {
            pp = &l->next;
        }
    }
}

/* Listeners removed inside a callback are unlinked by the outermost frame. */
static void leave(sl_pg *pg)
{
    if (pg->life.depth == 1 && !pg->life.freeing)
        sweep_listeners(pg);
    sl_conn_leave(&pg->life);
}

/* ------------------------------------------------------------------- ops */

static void op_free(op *o)
{
    if (o == NULL)
        return;
    for (int i = 0; i < o->nparams; i++)
        free(o->params[i]);
    free(o->params);
    free(o->sql);
    free(o->why);
    free(o);
}

static op *op_new(op_kind kind, const char *sql, int nparams, const char *const *params,
                  sl_pg_fn fn, void *arg)
{
    op *o = calloc(1, sizeof(*o));

    if (o == NULL)
        return NULL;
    o->kind = kind;
    o->fn = fn;
    o->arg = arg;
    o->sql = strdup(sql);
    if (o->sql == NULL)
        goto oom;
    if (nparams > 0) {
        o->params = calloc((size_t)nparams, sizeof(*o->params));
        if (o->params == NULL)
            goto oom;
        o->nparams = nparams;
        for (int i = 0; i < nparams; i++) {
            if (params[i] != NULL && (o->params[i] = strdup(params[i])) == NULL)
                goto oom;
        }
    }
    return o;
oom:
    op_free(o);
    return NULL;
}

static void push_back(op **head, op **tail, op *o)
{
    o->next = NULL;
    if (*tail != NULL)
        (*tail)->next = o;
    else
        *head = o;
    *tail = o;
}

static op *pop_front(op **head, op **tail)
{
    op *o = *head;

    if (o != NULL) {
        *head = o->next;
        if (*head == NULL)
            *tail = NULL;
        o->next = NULL;
    }
    return o;
}

static void unlink_op(op **head, op **tail, op *o)
{
    op *prev = NULL;

    for (op *p = *head; p != NULL; prev = p, p = p->next) {
        if (p != o)
            continue;
        if (prev != NULL)
            prev->next = p->next;
        else
            *head = p->next;
        if (*tail == p)
            *tail = prev;
        p->next = NULL;
        return;
    }
}

static void count(sl_pg *pg, const op *o, outcome out)
{
    if (!o->internal && pg->s_out[out] != NULL)
        sl_series_add(pg->s_out[out], 1);
}

static void arm_tick(sl_pg *pg)
{
    if (!pg->life.freeing && !evtimer_pending(pg->tick, NULL))
        sl_conn_arm(pg->tick, TICK_SECONDS);
}

/*
 * Answers `o` on the next loop turn with `why` (NULL: success without a
 * result, a ROLLBACK that was asked for).  Internal ops are dropped.
 */
static void fail_later(sl_pg *pg, op *o, outcome out, const char *fmt, ...) SL_PRINTF(4, 5);
static void fail_later(sl_pg *pg, op *o, outcome out, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (o->internal) {
        op_free(o);
        return;
    }
    o->out = out;
    free(o->why);
    o->why = NULL;
    if (fmt != NULL) {
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        o->why = strdup(buf);
        if (o->why == NULL)
            o->why = strdup("out of memory");
    }
    push_back(&pg->failed, &pg->failed_tail, o);
    event_active(pg->deliver, 0, 0);
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
    sl_pg *pg = arg;
    op *o;

    (void)fd;
    (void)what;
    enter(pg);
    while (!pg->life.freeing && (o = pop_front(&pg->failed, &pg->failed_tail)) != NULL) {
        sl_pg_tx *ends = o->ends_tx ? o->tx : NULL;
        count(pg, o, o->out);
        if (o->fn != NULL)
            o->fn(pg, NULL, o->out == OUT_OK ? NULL : (o->why ? o->why : "failed"), o->arg);
        op_free(o);
        if (ends != NULL)
            tx_free(ends);
    }
    leave(pg);
}

/* ----------------------------------------------------------- connections */

static void on_io(evutil_socket_t fd, short what, void *arg);

/* Watches the connection's socket for `what`.  While connecting the socket
 * may change from one step to the next, possibly to a new socket with the
 * number of one libpq just closed, so `rebuild` makes a fresh event rather
 * than trusting the old one. */
static int watch(conn *c, short what, int rebuild)
{
    int fd = PQsocket(c->pq);

    if (fd < 0)
        return -1;
    if (c->io != NULL && !rebuild && c->io_what == what)
        return 0;
    if (c->io != NULL)
        event_free(c->io);
    c->io_what = what;
    c->io = event_new(sl_base, fd, what | EV_PERSIST, on_io, c);
    if (c->io == NULL || event_add(c->io, NULL) != 0)
        return -1;
    return 0;
}

static void set_up(conn *c, int up)
{
    sl_pg *pg = c->pg;

    if (pg->s_up != NULL)
        sl_series_add(pg->s_up, up ? 1 : -1);
    if (c->id > 0)
        pg->nup += up ? 1 : -1;
}

/* Closes the libpq connection; the event goes first so that libevent
 * forgets the descriptor before libpq closes it. */
static void conn_close(conn *c)
{
    if (c->dns_req != NULL) {
        evdns_getaddrinfo_cancel(c->dns_req); /* on_resolved ignores it */
        c->dns_req = NULL;
    }
    if (c->io != NULL)
        event_free(c->io);
    c->io = NULL;
    if (c->res != NULL)
        PQclear(c->res);
    c->res = NULL;
    if (c->pq != NULL)
        PQfinish(c->pq);
    c->pq = NULL;
    if (c->state == C_IDLE || c->state == C_BUSY)
        set_up(c, 0);
    c->state = C_DOWN;
    c->flushing = 0;
    evtimer_del(c->timer);
}

/* No pool connection is up and one just failed: whatever waits for a
 * connection would wait for nothing, so it fails now, and so will new
 * requests until a connection is back. */
static void pool_down(sl_pg *pg)
{
    op *o;

    if (pg->nup > 0)
        return;
    if (!pg->down)
        sl_log_core(SL_LOG_WARN, "postgres", "%s: no connection to %s: %s", pg->label, pg->where,
                    pg->err);
    pg->down = 1;
    while ((o = pop_front(&pg->jobs, &pg->jobs_tail)) != NULL) {
        pg->njobs--;
        if (o->kind == OP_BEGIN) {
            o->tx->begin = NULL;
            tx_fail(o->tx, pg->err);
            op_free(o);
        } else {
            fail_later(pg, o, OUT_UNAVAILABLE, "postgres unavailable: %s", pg->err);
        }
    }
}

/* A connection attempt failed: try again after the backoff. */
static void conn_failed(conn *c, const char *why)
{
    sl_pg *pg = c->pg;
    char msg[512];

    one_line(msg, sizeof(msg), why);
    conn_close(c);
    snprintf(pg->err, sizeof(pg->err), "%s", msg);
    c->attempts++;
    sl_log_core(c->attempts == 1 ? SL_LOG_WARN : SL_LOG_DEBUG, "postgres",
                "%s: connection %d to %s failed (attempt %d, next in %.1fs): %s", pg->label, c->id,
                pg->where, c->attempts, c->backoff, msg);
    sl_conn_arm(c->timer, c->backoff);
    c->backoff = c->backoff * 2 < pg->reconnect_max ? c->backoff * 2 : pg->reconnect_max;
    if (c->id > 0)
        pool_down(pg);
}

static void listen_queue_all(conn *c);

static void conn_up(conn *c)
{
    sl_pg *pg = c->pg;

    evtimer_del(c->timer);
    if (PQsetnonblocking(c->pq, 1) != 0 || watch(c, EV_READ, 1) != 0) {
        conn_failed(c, "cannot watch the connection's socket");
        return;
    }
    c->state = C_IDLE;
    set_up(c, 1);
    pg->down = 0;
    sl_log_core(c->ever_up || c->attempts > 0 ? SL_LOG_INFO : SL_LOG_DEBUG, "postgres",
                "%s: connection %d %s to %s", pg->label, c->id,
                c->ever_up ? "re-established" : "established", pg->where);
    c->ever_up = 1;
    c->attempts = 0;
    c->backoff = BACKOFF_FIRST;
    if (c == pg->lconn)
        listen_queue_all(c);
    conn_next(c);
}

static void connect_step(conn *c)
{
    switch (PQconnectPoll(c->pq)) {
    case PGRES_POLLING_READING:
        if (watch(c, EV_READ, 1) != 0)
            conn_failed(c, "cannot watch the connection's socket");
        break;
    case PGRES_POLLING_WRITING:
        if (watch(c, EV_WRITE, 1) != 0)
            conn_failed(c, "cannot watch the connection's socket");
        break;
    case PGRES_POLLING_OK:
        conn_up(c);
        break;
    default:
        conn_failed(c, PQerrorMessage(c->pq));
        break;
    }
}

/* Starts libpq on the configured parameters, with `hosts` and `addrs`
 * (comma separated, as many of each) in place of host and hostaddr when
 * we resolved the name. */
static void conn_open(conn *c, const char *hosts, const char *addrs)
{
    sl_pg *pg = c->pg;
    size_t n = 0;
    const char **keys, **vals;

    while (pg->keys[n] != NULL)
        n++;
    keys = calloc(n + 2, sizeof(*keys));
    vals = calloc(n + 2, sizeof(*vals));
    if (keys == NULL || vals == NULL) {
        free(keys);
        free(vals);
        conn_failed(c, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        keys[i] = pg->keys[i];
        vals[i] = hosts != NULL && strcmp(keys[i], "host") == 0 ? hosts : pg->vals[i];
    }
    if (addrs != NULL) {
        keys[n] = "hostaddr";
        vals[n] = addrs;
    }
    c->pq = PQconnectStartParams(keys, vals, 0);
    free(keys);
    free(vals);
    if (c->pq == NULL) {
        conn_failed(c, "out of memory");
        return;
    }
    if (PQstatus(c->pq) == CONNECTION_BAD) {
        conn_failed(c, PQerrorMessage(c->pq));
        return;
    }
    c->state = C_CONNECTING;
    sl_conn_arm(c->timer, pg->connect_timeout);
    /* libpq's contract: start as if PQconnectPoll had said WRITING. */
    if (watch(c, EV_WRITE, 1) != 0)
        conn_failed(c, "cannot watch the connection's socket");
}

/* Every address of the name goes to libpq, which tries them in turn as it
 * would have after its own lookup. */
static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    conn *c = arg;
    sl_pg *pg;
    char hosts[MAX_ADDRS * 256], addrs[MAX_ADDRS * (INET6_ADDRSTRLEN + 1)], ip[INET6_ADDRSTRLEN];
    size_t hl = 0, al = 0;
    int count = 0;

    if (result == EVUTIL_EAI_CANCEL) { /* from conn_close(): touch nothing */
        if (res != NULL)
            evutil_freeaddrinfo(res);
        return;
    }
    pg = c->pg;
    c->dns_req = NULL;
    enter(pg);
    for (struct evutil_addrinfo *a = res; a != NULL && count < MAX_ADDRS; a = a->ai_next) {
        const void *in = a->ai_family == AF_INET6
                             ? (const void *)&((const struct sockaddr_in6 *)(const void *)a->ai_addr)->sin6_addr
                             : (const void *)&((const struct sockaddr_in *)(const void *)a->ai_addr)->sin_addr;
        if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
            evutil_inet_ntop(a->ai_family, in, ip, sizeof(ip)) == NULL)
            continue;
        hl += (size_t)snprintf(hosts + hl, sizeof(hosts) - hl, "%s%.250s", count ? "," : "",
                               pg->resolve);
        al += (size_t)snprintf(addrs + al, sizeof(addrs) - al, "%s%s", count ? "," : "", ip);
        count++;
    }
    if (pg->life.freeing) {
        /* nothing: leave() frees */
    } else if (result != 0 || count == 0) {
        char why[512];
        snprintf(why, sizeof(why), "cannot resolve %.255s: %s", pg->resolve,
                 result != 0 ? evutil_gai_strerror(result) : "no address");
        conn_failed(c, why);
    } else {
        sl_log_core(SL_LOG_DEBUG, "postgres", "%s: connection %d: %s is %s", pg->label, c->id,
                    pg->resolve, addrs);
        conn_open(c, hosts, addrs);
    }
    if (res != NULL)
        evutil_freeaddrinfo(res);
    leave(pg);
}

static void conn_start(conn *c)
{
    sl_pg *pg = c->pg;
    struct evutil_addrinfo hints;
    struct evdns_getaddrinfo_request *req;

    if (pg->resolve == NULL) {
        conn_open(c, NULL, NULL);
        return;
    }
    if (pg->dns == NULL)
        pg->dns = evdns_base_new(sl_base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (pg->dns == NULL) {
        conn_failed(c, "cannot set up name resolution");
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    c->state = C_CONNECTING; /* the connect timeout covers the lookup too */
    sl_conn_arm(c->timer, pg->connect_timeout);
    /* The callback may run before this returns (hosts file); the request
     * is then NULL. */
    req = evdns_getaddrinfo(pg->dns, pg->resolve, pg->resolve_port, &hints, on_resolved, c);
    if (c->state == C_CONNECTING && c->pq == NULL)
        c->dns_req = req;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    sl_pg *pg = c->pg;
    char why[128];

    (void)fd;
    (void)what;
    enter(pg);
    if (c->state == C_CONNECTING) {
        snprintf(why, sizeof(why), "connect timed out after %gs", pg->connect_timeout);
        conn_failed(c, why);
    } else if (c->state == C_DOWN) {
        if (c->ever_up && pg->s_reconnects != NULL)
            sl_series_add(pg->s_reconnects, 1);
        conn_start(c);
    }
    leave(pg);
}

/* ----------------------------------------------------------- transactions */

static void unpin(sl_pg_tx *tx)
{
    if (tx->c != NULL)
        tx->c->tx = NULL;
    tx->c = NULL;
}

/* Fails every statement the transaction still has queued, the end op too
 * unless `keep_end` (it must wait for the ROLLBACK still to run). */
static void tx_flush(sl_pg_tx *tx, int keep_end)
{
    sl_pg *pg = tx->pg;
    op *keep = NULL, *o;

    while ((o = pop_front(&tx->head, &tx->tail)) != NULL) {
        if (o->internal) {
            op_free(o);
        } else if (o->ends_tx && keep_end) {
            keep = o;
        } else if (o->ends_tx && o->kind == OP_ROLLBACK) {
            fail_later(pg, o, OUT_OK, NULL);
        } else if (o->ends_tx) {
            fail_later(pg, o, OUT_ABORTED, "transaction rolled back: %s", tx->err);
        } else {
            fail_later(pg, o, OUT_ABORTED, "not run, transaction rolled back: %s", tx->err);
        }
    }
    if (keep != NULL)
        push_back(&tx->head, &tx->tail, keep);
}

static void tx_fail(sl_pg_tx *tx, const char *why)
{
    sl_pg *pg = tx->pg;
    op *rb;

    if (tx->failed)
        return;
    tx->failed = 1;
    one_line(tx->err, sizeof(tx->err), why);
    if (tx->begin != NULL) {
        unlink_op(&pg->jobs, &pg->jobs_tail, tx->begin);
        pg->njobs--;
        op_free(tx->begin);
        tx->begin = NULL;
    }
    if (tx->c == NULL) {
        tx_flush(tx, 0);
        return;
    }
    /* The connection is still in the transaction: roll it back before it
     * serves anyone else; the end op, if any, is answered after that. */
    tx_flush(tx, 1);
    rb = op_new(OP_ROLLBACK, "ROLLBACK", 0, NULL, NULL, NULL);
    if (rb == NULL) {
        conn_drop(tx->c, OUT_LOST, "out of memory"); /* the server rolls back */
        return;
    }
    rb->internal = 1;
    rb->tx = tx;
    rb->next = tx->head;
    tx->head = rb;
    if (tx->tail == NULL)
        tx->tail = rb;
    conn_next(tx->c);
}

static void tx_free(sl_pg_tx *tx)
{
    sl_pg *pg = tx->pg;
    op *o;

    for (sl_pg_tx **pp = &pg->txs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == tx) {
            *pp = tx->next;
            break;
        }
    }
    unpin(tx);
    while ((o = pop_front(&tx->head, &tx->tail)) != NULL)
        op_free(o);
    if (tx->begin != NULL) {
        unlink_op(&pg->jobs, &pg->jobs_tail, tx->begin);
        pg->njobs--;
        op_free(tx->begin);
    }
    if (tx->owned_free != NULL)
        tx->owned_free(tx->owned);
    free(tx);
}

/* ------------------------------------------------------------ statements */

static void conn_flush(conn *c)
{
    int r = PQflush(c->pq);

    if (r < 0) {
        conn_drop(c, OUT_LOST, PQerrorMessage(c->pq));
        return;
    }
    c->flushing = r == 1;
    if (watch(c, c->flushing ? EV_READ | EV_WRITE : EV_READ, 0) != 0)
        conn_drop(c, OUT_LOST, "cannot watch the connection's socket");
}

static void conn_send(conn *c, op *o)
{
    int sent;

    if (o->kind == OP_QUERY)
        sent = PQsendQueryParams(c->pq, o->sql, o->nparams, NULL,
                                 (const char *const *)o->params, NULL, NULL, 0);
    else
        sent = PQsendQuery(c->pq, o->sql);
    c->cur = o;
    c->state = C_BUSY;
    o->sent = sl_now();
    /* COMMIT, ROLLBACK and our own statements are bounded from when they
     * are sent, not queued: they must run whatever came before them. */
    if (o->deadline <= 0 && (o->ends_tx || o->internal) && !(o->tx != NULL && o->tx->unbounded))
        o->deadline = o->sent + c->pg->query_timeout;
    if (!sent) {
        conn_drop(c, OUT_LOST, PQerrorMessage(c->pq));
        return;
    }
    arm_tick(c->pg);
    conn_flush(c);
}

/* The next op for an idle connection: its own (LISTEN, a probe), its
 * transaction's, or the pool's.  Ops whose deadline passed while they
 * waited fail here. */
static void conn_next(conn *c)
{
    sl_pg *pg = c->pg;
    op *o;

    while (c->state == C_IDLE && !pg->life.freeing) {
        if (c->own != NULL) {
            o = pop_front(&c->own, &c->own_tail);
        } else if (c->tx != NULL) {
            o = pop_front(&c->tx->head, &c->tx->tail);
        } else if (c == pg->lconn) {
            return;
        } else {
            o = pop_front(&pg->jobs, &pg->jobs_tail);
            if (o != NULL)
                pg->njobs--;
        }
        if (o == NULL)
            return;
        if (o->deadline > 0 && sl_now() >= o->deadline && !o->ends_tx) {
            if (o->kind == OP_BEGIN) {
                o->tx->begin = NULL;
                tx_fail(o->tx, "timed out waiting for a free connection");
                op_free(o);
            } else {
                sl_pg_tx *tx = o->tx;
                fail_later(pg, o, OUT_TIMEOUT, "timed out after %gs waiting for a connection",
                           pg->query_timeout);
                if (tx != NULL)
                    tx_fail(tx, "a statement timed out");
            }
            continue;
        }
        if (o->kind == OP_BEGIN) {
            o->tx->begin = NULL;
            o->tx->c = c;
            c->tx = o->tx;
        }
        conn_send(c, o);
    }
}

static const char *result_error(conn *c, PGresult *res, char *buf, size_t len)
{
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY)
        return NULL;
    one_line(buf, len, res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(c->pq));
    return buf;
}

static void notify_listening(sl_pg *pg, sl_pg_listener *l)
{
    if (l != NULL && !l->dead)
        l->fn(pg, l->channel, NULL, l->arg);
}

/* The op in flight got its last result.  State first, module code last:
 * the callback may queue, end a transaction or free the handle. */
static void finish_op(conn *c)
{
    sl_pg *pg = c->pg;
    op *o = c->cur;
    PGresult *res = c->res;
    sl_pg_tx *tx = o->tx;
    sl_pg_tx *ends = NULL;
    char buf[1024];
    const char *err = result_error(c, res, buf, sizeof(buf));

    c->cur = NULL;
    c->res = NULL;
    c->state = C_IDLE;
    if (pg->s_latency != NULL && !o->internal)
        sl_series_observe(pg->s_latency, sl_now() - o->sent);
    count(pg, o, err == NULL ? OUT_OK : OUT_ERROR);

    if (o->kind == OP_BEGIN) {
        if (err != NULL) {
            unpin(tx);
            tx_fail(tx, err);
        }
    } else if (o->ends_tx) {
        unpin(tx);
        ends = tx;
    } else if (o->internal && o->kind == OP_ROLLBACK) {
        unpin(tx);
        tx_flush(tx, 0);
    } else if (tx != NULL && err != NULL) {
        tx_fail(tx, err);
    }
    conn_next(c);

    if (o->kind == OP_LISTEN && err == NULL)
        notify_listening(pg, o->listener);
    else if (o->internal && err != NULL)
        sl_log_core(SL_LOG_WARN, "postgres", "%s: %s failed: %s", pg->label, o->sql, err);
    if (o->fn != NULL && !pg->life.freeing)
        o->fn(pg, (const sl_pg_result *)res, err, o->arg);
    if (ends != NULL)
        tx_free(ends);
    if (res != NULL)
        PQclear(res);
    op_free(o);
}

/* Keeps the first error result of a statement, else its last result. */
static int collect(conn *c, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);

    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        PQclear(r);
        return -1;
    }
    if (c->res == NULL) {
        c->res = r;
    } else if (st == PGRES_FATAL_ERROR && PQresultStatus(c->res) != PGRES_FATAL_ERROR) {
        PQclear(c->res);
        c->res = r;
    } else {
        PQclear(r);
    }
    return 0;
}

static void dispatch_notifications(conn *c)
{
    sl_pg *pg = c->pg;
    PGnotify *n;

    while (!pg->life.freeing && c->pq != NULL && (n = PQnotifies(c->pq)) != NULL) {
        /* Listeners added by a callback are prepended, so this walk does
         * not reach them; removed ones are only marked dead meanwhile. */
        for (sl_pg_listener *l = pg->listeners; l != NULL && !pg->life.freeing; l = l->next) {
            if (c == pg->lconn && !l->dead && strcmp(l->channel, n->relname) == 0)
                l->fn(pg, l->channel, n->extra, l->arg);
        }
        PQfreemem(n);
    }
}

static void conn_io(conn *c, short what)
{
    PGresult *r;

    if ((what & EV_READ) && !PQconsumeInput(c->pq)) {
        conn_drop(c, OUT_LOST, PQerrorMessage(c->pq));
        return;
    }
    if (c->flushing) {
        conn_flush(c);
        if (c->state == C_DOWN)
            return;
    }
    dispatch_notifications(c);
    if (c->pg->life.freeing || c->state == C_DOWN)
        return;
    while (c->cur != NULL && !PQisBusy(c->pq)) {
        r = PQgetResult(c->pq);
        if (r == NULL) {
            finish_op(c);
            return;
        }
        if (collect(c, r) != 0) {
            conn_drop(c, OUT_ERROR, "COPY is not supported by this connector");
            return;
        }
    }
    if (PQstatus(c->pq) == CONNECTION_BAD)
        conn_drop(c, OUT_LOST, PQerrorMessage(c->pq));
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    sl_pg *pg = c->pg;

    (void)fd;
    enter(pg);
    if (c->state == C_CONNECTING)
        connect_step(c);
    else if (c->state == C_IDLE || c->state == C_BUSY)
        conn_io(c, what);
    leave(pg);
}

/*
 * A statement timed out: the server may be frozen or the network gone,
 * which an idle connection cannot notice by itself.  Each idle one runs
 * SELECT 1 under the same deadline, so that a dead server empties the pool,
 * and readiness says so, within one more timeout instead of one timeout
 * per request that happens to pick a stale connection.
 */
static void probe_idle(sl_pg *pg)
{
    for (int i = -1; i < pg->pool_size && !pg->life.freeing; i++) {
        conn *c = i < 0 ? pg->lconn : &pg->conns[i];
        op *o;
        if (c == NULL || c->state != C_IDLE || c->tx != NULL || c->own != NULL)
            continue;
        o = op_new(OP_SCRIPT, "SELECT 1", 0, NULL, NULL, NULL);
        if (o == NULL)
            return;
        o->internal = 1;
        push_back(&c->own, &c->own_tail, o);
        conn_next(c);
    }
}

/*
 * An established connection is gone (or abandoned: a statement past its
 * deadline).  The statement in flight fails with `out`, its transaction
 * fails, and the connection is opened again: at once after a timeout (the
 * server is fine), after the backoff otherwise.
 */
static void conn_drop(conn *c, outcome out, const char *why)
{
    sl_pg *pg = c->pg;
    op *o = c->cur;
    sl_pg_tx *tx = c->tx;
    char msg[512];

    one_line(msg, sizeof(msg), why);
    c->cur = NULL;
    conn_close(c);
    snprintf(pg->err, sizeof(pg->err), "%s", msg);
    sl_log_core(SL_LOG_WARN, "postgres", "%s: connection %d to %s %s: %s", pg->label, c->id,
                pg->where, out == OUT_TIMEOUT ? "abandoned" : "lost", msg);
    if (o != NULL) {
        if (o->ends_tx && o->kind == OP_COMMIT)
            fail_later(pg, o, out, "connection lost during COMMIT, outcome unknown: %s", msg);
        else
            fail_later(pg, o, out, "%s", msg);
    }
    if (tx != NULL) {
        unpin(tx);
        tx_fail(tx, msg);
    }
    {
        op *own;
        while ((own = pop_front(&c->own, &c->own_tail)) != NULL)
            op_free(own); /* LISTENs are queued again once it is back */
    }
    c->backoff = BACKOFF_FIRST;
    sl_conn_arm(c->timer, out == OUT_TIMEOUT ? 0 : BACKOFF_FIRST);
    if (c->id > 0)
        pool_down(pg);
    if (out == OUT_TIMEOUT)
        probe_idle(pg);
}

/* Deadlines: waiting ops, statements in flight, open transactions. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    sl_pg *pg = arg;
    double now = sl_now();
    op *o, *next;
    char why[128];

    (void)fd;
    (void)what;
    enter(pg);
    for (o = pg->jobs; o != NULL && !pg->life.freeing; o = next) {
        next = o->next;
        if (o->deadline <= 0 || now < o->deadline)
            continue;
        unlink_op(&pg->jobs, &pg->jobs_tail, o);
        pg->njobs--;
        if (o->kind == OP_BEGIN) {
            o->tx->begin = NULL;
            tx_fail(o->tx, "timed out waiting for a free connection");
            op_free(o);
        } else {
            fail_later(pg, o, OUT_TIMEOUT, "timed out after %gs waiting for a free connection",
                       pg->query_timeout);
        }
    }
    for (int i = -1; i < pg->pool_size && !pg->life.freeing; i++) {
        conn *c = i < 0 ? pg->lconn : &pg->conns[i];
        if (c == NULL || c->cur == NULL || c->cur->deadline <= 0 || now < c->cur->deadline)
            continue;
        snprintf(why, sizeof(why), "statement timed out after %gs", pg->query_timeout);
        conn_drop(c, OUT_TIMEOUT, why);
    }
    for (sl_pg_tx *tx = pg->txs; tx != NULL && !pg->life.freeing; tx = tx->next) {
        if (!tx->unbounded && !tx->failed && now >= tx->deadline) {
            snprintf(why, sizeof(why), "transaction not ended within tx_timeout (%gs)",
                     pg->tx_timeout);
            tx_fail(tx, why);
        }
    }
    if (!pg->life.freeing && (pg->jobs != NULL || pg->txs != NULL))
        arm_tick(pg);
    for (int i = -1; i < pg->pool_size && !pg->life.freeing; i++) {
        conn *c = i < 0 ? pg->lconn : &pg->conns[i];
        if (c != NULL && c->cur != NULL && c->cur->deadline > 0)
            arm_tick(pg);
    }
    leave(pg);
}

/* --------------------------------------------------------------- handle */

static void conn_init(sl_pg *pg, conn *c, int id)
{
    c->pg = pg;
    c->id = id;
    c->state = C_DOWN;
    c->backoff = BACKOFF_FIRST;
    c->timer = evtimer_new(sl_base, on_timer, c);
}

static void conn_fini(conn *c)
{
    op *o;

    if (c->timer != NULL) {
        conn_close(c);
        event_free(c->timer);
    }
    op_free(c->cur);
    while ((o = pop_front(&c->own, &c->own_tail)) != NULL)
        op_free(o);
}

static void free_params(sl_pg *pg)
{
    for (size_t i = 0; pg->keys != NULL && pg->keys[i] != NULL; i++) {
        free(pg->keys[i]);
        free(pg->vals[i]);
    }
    free(pg->keys);
    free(pg->vals);
}

static void destroy(void *obj)
{
    sl_pg *pg = obj;
    op *o;

    for (int i = 0; pg->conns != NULL && i < pg->pool_size; i++)
        conn_fini(&pg->conns[i]);
    free(pg->conns);
    if (pg->lconn != NULL) {
        conn_fini(pg->lconn);
        free(pg->lconn);
    }
    while (pg->txs != NULL)
        tx_free(pg->txs);
    while ((o = pop_front(&pg->jobs, &pg->jobs_tail)) != NULL)
        op_free(o);
    /* Every transaction is gone already, those whose end op waits here too. */
    while ((o = pop_front(&pg->failed, &pg->failed_tail)) != NULL)
        op_free(o);
    for (sl_pg_listener *l = pg->listeners; l != NULL; l = l->next)
        l->dead = 1;
    sweep_listeners(pg);
    if (pg->dns != NULL)
        evdns_base_free(pg->dns, 0);
    free(pg->resolve);
    if (pg->deliver != NULL)
        event_free(pg->deliver);
    if (pg->tick != NULL)
        event_free(pg->tick);
    sl_metric_release(pg->m_latency);
    sl_metric_release(pg->m_queries);
    sl_metric_release(pg->m_reconnects);
    sl_metric_release(pg->m_up);
    free_params(pg);
    free(pg->label);
    free(pg);
}

/* The instance's release: it does not call module code. */
static void release(void *obj)
{
    sl_conn_released(&((sl_pg *)obj)->life);
}

static int conn_is_up(const conn *c)
{
    return c->state == C_IDLE || c->state == C_BUSY;
}

static int is_ready(const sl_pg *pg)
{
    return pg->nup > 0 && (pg->lconn == NULL || conn_is_up(pg->lconn));
}

static int ready(void *obj, char *why, size_t whylen)
{
    const sl_pg *pg = obj;

    if (is_ready(pg))
        return 1;
    if (pg->nup == 0) {
        snprintf(why, whylen, "postgres %s %s%s%s", pg->where,
                 pg->down ? "unavailable" : "connecting", pg->err[0] ? ": " : "", pg->err);
        return 0;
    }
    snprintf(why, whylen, "postgres %s: LISTEN connection down%s%s", pg->where,
             pg->err[0] ? ": " : "", pg->err);
    return 0;
}

static const double latency_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1, 0.25, 0.5, 1, 2.5, 5, 10 };

static void register_metrics(sl_pg *pg, const char *module, const char *instance)
{
    pg->m_latency = sl_metric_register(
        SL_METRIC_HISTOGRAM, "sluice_pg_query_duration_seconds",
        "Time from sending a PostgreSQL statement to its last result", "module", latency_bounds,
        sizeof(latency_bounds) / sizeof(latency_bounds[0]), instance);
    pg->m_queries = sl_metric_register(
        SL_METRIC_COUNTER, "sluice_pg_queries_total",
        "PostgreSQL requests by outcome (ok, error: refused by the server, timeout, "
        "unavailable: no connection, lost: connection lost in flight, overflow: queue full, "
        "aborted: not run because its transaction was rolled back)",
        "module,outcome", NULL, 0, instance);
    pg->m_reconnects = sl_metric_register(SL_METRIC_COUNTER, "sluice_pg_reconnects_total",
                                          "Attempts to re-establish a lost PostgreSQL connection",
                                          "module", NULL, 0, instance);
    pg->m_up = sl_metric_register(SL_METRIC_GAUGE, "sluice_pg_connections_up",
                                  "PostgreSQL connections established (pool and LISTEN)",
                                  "module", NULL, 0, instance);
    if (pg->m_latency != NULL)
        pg->s_latency = sl_series_of(pg->m_latency, module);
    if (pg->m_reconnects != NULL)
        pg->s_reconnects = sl_series_of(pg->m_reconnects, module);
    if (pg->m_up != NULL)
        pg->s_up = sl_series_of(pg->m_up, module);
    for (int i = 0; i < OUT_N && pg->m_queries != NULL; i++)
        pg->s_out[i] = sl_series_of(pg->m_queries, module, outcome_names[i]);
}

/* A host that libpq would look up: not a socket directory, not an
 * address. */
static int is_name(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return host[0] != '\0' && host[0] != '/' && host[0] != '@' &&
           inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1;
}

/*
 * libpq parameters from the dsn, plus ours: statement_timeout appended to
 * `options` so that the server stops what the client gave up on, and a
 * fallback application_name naming the instance in pg_stat_activity.
 */
static int build_params(sl_pg *pg, const char *dsn, char *err, size_t errlen)
{
    PQconninfoOption *parsed;
    char *msg = NULL;
    char extra[64], appname[200];
    const char *options = NULL, *host = NULL, *port = NULL;
    size_t n = 0, k = 0;
    int hostaddr = 0;

    parsed = PQconninfoParse(dsn, &msg);
    if (parsed == NULL) {
        one_line(err, errlen, msg != NULL ? msg : "out of memory");
        PQfreemem(msg);
        return -1;
    }
    for (PQconninfoOption *o = parsed; o->keyword != NULL; o++)
        n += o->val != NULL;
    pg->keys = calloc(n + 3, sizeof(*pg->keys));
    pg->vals = calloc(n + 3, sizeof(*pg->vals));
    if (pg->keys == NULL || pg->vals == NULL)
        goto oom;
    for (PQconninfoOption *o = parsed; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        if (strcmp(o->keyword, "options") == 0) {
            options = o->val;
            continue;
        }
        if (strcmp(o->keyword, "host") == 0 || (host == NULL && strcmp(o->keyword, "hostaddr") == 0))
            host = o->val;
        hostaddr |= strcmp(o->keyword, "hostaddr") == 0;
        if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        if (strcmp(o->keyword, "fallback_application_name") == 0)
            continue;
        pg->keys[k] = strdup(o->keyword);
        pg->vals[k] = strdup(o->val);
        if (pg->keys[k] == NULL || pg->vals[k] == NULL)
            goto oom;
        k++;
    }
    snprintf(extra, sizeof(extra), "-c statement_timeout=%lld",
             (long long)(pg->query_timeout * 1000) + 1);
    snprintf(appname, sizeof(appname), "sluiced %s", pg->label);
    pg->keys[k] = strdup("options");
    pg->vals[k] = malloc((options ? strlen(options) : 0) + strlen(extra) + 2);
    if (pg->keys[k] == NULL || pg->vals[k] == NULL)
        goto oom;
    sprintf(pg->vals[k], "%s%s%s", options ? options : "", options ? " " : "", extra);
    k++;
    pg->keys[k] = strdup("fallback_application_name");
    pg->vals[k] = strdup(appname);
    if (pg->keys[k] == NULL || pg->vals[k] == NULL)
        goto oom;
    snprintf(pg->where, sizeof(pg->where), "%s:%s", host ? host : "(default host)",
             port ? port : "5432");
    if (!hostaddr && host != NULL && is_name(host)) {
        if (strchr(host, ',') != NULL || (port != NULL && strchr(port, ',') != NULL)) {
            sl_log_core(SL_LOG_WARN, "postgres",
                        "%s: libpq resolves a list of host names with a blocking lookup that "
                        "stalls the loop; give their addresses (hostaddr) instead",
                        pg->label);
        } else if ((pg->resolve = strdup(host)) == NULL) {
            goto oom;
        } else {
            snprintf(pg->resolve_port, sizeof(pg->resolve_port), "%s", port ? port : "5432");
        }
    }
    PQconninfoFree(parsed);
    return 0;
oom:
    PQconninfoFree(parsed);
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* The [postgres] options of the current generation, or the defaults. */
static int load_options(sl_pg *pg, char *err, size_t errlen)
{
    sl_optset defaults = { NULL, 0 };
    const sl_optset *set = sl_conn_options("postgres", pg_options, &defaults, err, errlen);
    const char *dsn;
    int rc = -1;

    if (set == NULL)
        return -1;
    dsn = sl_optset_get(set, "dsn")->raw;
    pg->pool_size = (int)sl_optset_get(set, "pool_size")->i;
    pg->connect_timeout = sl_optset_get(set, "connect_timeout")->d;
    pg->query_timeout = sl_optset_get(set, "query_timeout")->d;
    pg->tx_timeout = sl_optset_get(set, "tx_timeout")->d;
    pg->max_queue = sl_optset_get(set, "max_queue")->i;
    pg->reconnect_max = sl_optset_get(set, "reconnect_max")->d;
    if (dsn[0] == '\0')
        snprintf(err, errlen, "[postgres] dsn is not set; this module needs a PostgreSQL server");
    else
        rc = build_params(pg, dsn, err, errlen);
    sl_optset_free(&defaults);
    return rc;
}

SL_API sl_pg *sl_pg_new(sl_ctx *ctx)
{
    sl_pg *pg = calloc(1, sizeof(*pg));
    char err[512];

    if (pg == NULL) {
        sl_log(ctx, SL_LOG_ERROR, "postgres: out of memory");
        return NULL;
    }
    pg->label = strdup(ctx->label != NULL ? ctx->label : sl_module_name(ctx));
    if (pg->label == NULL || load_options(pg, err, sizeof(err)) != 0) {
        sl_log(ctx, SL_LOG_ERROR, "postgres: %s", pg->label == NULL ? "out of memory" : err);
        free_params(pg);
        free(pg->label);
        free(pg);
        return NULL;
    }
    pg->conns = calloc((size_t)pg->pool_size, sizeof(*pg->conns));
    pg->deliver = event_new(sl_base, -1, 0, on_deliver, pg);
    pg->tick = evtimer_new(sl_base, on_tick, pg);
    if (pg->conns == NULL || pg->deliver == NULL || pg->tick == NULL)
        goto oom;
    for (int i = 0; i < pg->pool_size; i++) {
        conn_init(pg, &pg->conns[i], i + 1);
        if (pg->conns[i].timer == NULL)
            goto oom;
    }
    register_metrics(pg, sl_module_name(ctx), sl_instance_name(ctx));
    if (sl_conn_track(&pg->life, ctx, "postgres pool", pg, destroy, release, ready) != 0)
        goto oom;
    sl_ctx_uses(ctx, SL_USES_POSTGRES);
    enter(pg);
    for (int i = 0; i < pg->pool_size; i++)
        conn_start(&pg->conns[i]);
    leave(pg);
    return pg;
oom:
    sl_log(ctx, SL_LOG_ERROR, "postgres: out of memory");
    destroy(pg);
    return NULL;
}

SL_API void sl_pg_free(sl_pg *pg)
{
    if (pg != NULL)
        sl_conn_free(&pg->life);
}

SL_API int sl_pg_ready(const sl_pg *pg)
{
    return pg != NULL && is_ready(pg);
}

const char *sl_pg_label(const sl_pg *pg)
{
    return pg->label;
}

/* Puts a request in the pool queue, or fails it at once (next loop turn)
 * when no connection is up or the queue is full. */
static void submit(sl_pg *pg, op *o)
{
    enter(pg);
    if (pg->down || pg->njobs >= pg->max_queue) {
        int full = !pg->down;
        if (o->kind == OP_BEGIN) {
            o->tx->begin = NULL;
            tx_fail(o->tx, full ? "queue full" : pg->err);
            op_free(o);
        } else if (full) {
            fail_later(pg, o, OUT_OVERFLOW, "postgres queue full (max_queue %lld)",
                       pg->max_queue);
        } else {
            fail_later(pg, o, OUT_UNAVAILABLE, "postgres unavailable: %s", pg->err);
        }
        leave(pg);
        return;
    }
    push_back(&pg->jobs, &pg->jobs_tail, o);
    pg->njobs++;
    arm_tick(pg);
    for (int i = 0; i < pg->pool_size && pg->jobs != NULL; i++)
        conn_next(&pg->conns[i]);
    leave(pg);
}

static int bad_args(const char *sql, int nparams, const char *const *params)
{
    return sql == NULL || nparams < 0 || nparams > MAX_PARAMS || (nparams > 0 && params == NULL);
}

SL_API int sl_pg_query(sl_pg *pg, const char *sql, int nparams, const char *const *params,
                       sl_pg_fn fn, void *arg)
{
    op *o;

    if (pg == NULL || pg->life.freeing || bad_args(sql, nparams, params))
        return -1;
    o = op_new(OP_QUERY, sql, nparams, params, fn, arg);
    if (o == NULL)
        return -1;
    o->deadline = sl_now() + pg->query_timeout;
    submit(pg, o);
    return 0;
}

static sl_pg_tx *tx_begin(sl_pg *pg, int unbounded)
{
    sl_pg_tx *tx;
    op *b;

    if (pg == NULL || pg->life.freeing)
        return NULL;
    tx = calloc(1, sizeof(*tx));
    b = op_new(OP_BEGIN, "BEGIN", 0, NULL, NULL, NULL);
    if (tx == NULL || b == NULL) {
        free(tx);
        op_free(b);
        return NULL;
    }
    tx->pg = pg;
    tx->unbounded = unbounded;
    tx->deadline = sl_now() + pg->tx_timeout;
    tx->next = pg->txs;
    pg->txs = tx;
    b->internal = 1;
    b->tx = tx;
    if (!unbounded)
        b->deadline = sl_now() + pg->query_timeout;
    tx->begin = b;
    submit(pg, b);
    return tx;
}

SL_API sl_pg_tx *sl_pg_tx_begin(sl_pg *pg)
{
    return tx_begin(pg, 0);
}

sl_pg_tx *sl_pg_tx_begin_unbounded(sl_pg *pg)
{
    return tx_begin(pg, 1);
}

/* Queues a statement of the transaction, or fails it at once when the
 * transaction was already rolled back. */
static int tx_add(sl_pg_tx *tx, op *o)
{
    sl_pg *pg = tx->pg;

    enter(pg);
    o->tx = tx;
    if (!tx->unbounded && !o->ends_tx)
        o->deadline = sl_now() + pg->query_timeout;
    if (tx->failed && (tx->c == NULL || !o->ends_tx)) {
        if (o->ends_tx && o->kind == OP_ROLLBACK)
            fail_later(pg, o, OUT_OK, NULL);
        else if (o->ends_tx)
            fail_later(pg, o, OUT_ABORTED, "transaction rolled back: %s", tx->err);
        else
            fail_later(pg, o, OUT_ABORTED, "not run, transaction rolled back: %s", tx->err);
    } else {
        push_back(&tx->head, &tx->tail, o);
        arm_tick(pg);
        if (tx->c != NULL)
            conn_next(tx->c);
    }
    leave(pg);
    return 0;
}

SL_API int sl_pg_tx_query(sl_pg_tx *tx, const char *sql, int nparams, const char *const *params,
                          sl_pg_fn fn, void *arg)
{
    op *o;

    if (tx == NULL || tx->ended || tx->pg->life.freeing || bad_args(sql, nparams, params))
        return -1;
    o = op_new(OP_QUERY, sql, nparams, params, fn, arg);
    return o != NULL ? tx_add(tx, o) : -1;
}

int sl_pg_tx_script(sl_pg_tx *tx, const char *sql, sl_pg_fn fn, void *arg)
{
    op *o;

    if (tx == NULL || tx->ended || tx->pg->life.freeing || sql == NULL)
        return -1;
    o = op_new(OP_SCRIPT, sql, 0, NULL, fn, arg);
    return o != NULL ? tx_add(tx, o) : -1;
}

void sl_pg_tx_own(sl_pg_tx *tx, void *obj, void (*free_fn)(void *))
{
    tx->owned = obj;
    tx->owned_free = free_fn;
}

static int tx_end(sl_pg_tx *tx, op_kind kind, sl_pg_fn fn, void *arg)
{
    op *o;

    if (tx == NULL || tx->ended || tx->pg->life.freeing)
        return -1;
    o = op_new(kind, kind == OP_COMMIT ? "COMMIT" : "ROLLBACK", 0, NULL, fn, arg);
    if (o == NULL)
        return -1;
    o->ends_tx = 1;
    tx->ended = 1;
    return tx_add(tx, o);
}

SL_API int sl_pg_tx_commit(sl_pg_tx *tx, sl_pg_fn fn, void *arg)
{
    return tx_end(tx, OP_COMMIT, fn, arg);
}

SL_API int sl_pg_tx_rollback(sl_pg_tx *tx, sl_pg_fn fn, void *arg)
{
    return tx_end(tx, OP_ROLLBACK, fn, arg);
}

/* The entry point lives here, with the rest of the API, and not in
 * migrate.c: sluiced links the core as a static library, which brings in
 * only the objects something references, and no core code calls the
 * runner but this. */
SL_API int sl_pg_migrate(sl_pg *pg, const char *module, const sl_pg_migration *migrations,
                         size_t n, sl_pg_migrate_fn fn, void *arg)
{
    return sl_pg_migrate_start(pg, module, migrations, n, fn, arg);
}

/* ---------------------------------------------------------------- listen */

/* Queues LISTEN (or UNLISTEN) for one channel on the LISTEN connection.
 * The channel is an identifier, not a value: it is quoted by libpq. */
static void listen_queue(conn *c, op_kind kind, sl_pg_listener *l, const char *channel)
{
    char *quoted, *sql;
    op *o;

    if (c->pq == NULL || (c->state != C_IDLE && c->state != C_BUSY))
        return; /* queued again when the connection is up */
    quoted = PQescapeIdentifier(c->pq, channel, strlen(channel));
    if (quoted == NULL)
        return;
    sql = malloc(strlen(quoted) + 10);
    if (sql != NULL) {
        sprintf(sql, "%s %s", kind == OP_LISTEN ? "LISTEN" : "UNLISTEN", quoted);
        o = op_new(kind, sql, 0, NULL, NULL, NULL);
        if (o != NULL) {
            o->internal = 1;
            o->listener = l;
            push_back(&c->own, &c->own_tail, o);
        }
        free(sql);
    }
    PQfreemem(quoted);
    conn_next(c);
}

static void listen_queue_all(conn *c)
{
    for (sl_pg_listener *l = c->pg->listeners; l != NULL; l = l->next)
        if (!l->dead)
            listen_queue(c, OP_LISTEN, l, l->channel);
}

SL_API sl_pg_listener *sl_pg_listen(sl_pg *pg, const char *channel, sl_pg_notify_fn fn,
                                    void *arg)
{
    sl_pg_listener *l;

    if (pg == NULL || pg->life.freeing || channel == NULL || channel[0] == '\0' || fn == NULL)
        return NULL;
    l = calloc(1, sizeof(*l));
    if (l == NULL || (l->channel = strdup(channel)) == NULL) {
        free(l);
        return NULL;
    }
    if (pg->lconn == NULL) {
        pg->lconn = calloc(1, sizeof(*pg->lconn));
        if (pg->lconn != NULL)
            conn_init(pg, pg->lconn, 0);
        if (pg->lconn == NULL || pg->lconn->timer == NULL) {
            free(pg->lconn);
            pg->lconn = NULL;
            free(l->channel);
            free(l);
            return NULL;
        }
    }
    l->pg = pg;
    l->fn = fn;
    l->arg = arg;
    l->next = pg->listeners;
    pg->listeners = l;
    enter(pg);
    if (pg->lconn->state == C_DOWN && !evtimer_pending(pg->lconn->timer, NULL))
        conn_start(pg->lconn); /* its LISTENs are queued once it is up */
    else
        listen_queue(pg->lconn, OP_LISTEN, l, channel);
    leave(pg);
    return l;
}

SL_API void sl_pg_unlisten(sl_pg_listener *l)
{
    sl_pg *pg;
    conn *c;
    int others = 0;

    if (l == NULL || l->dead)
        return;
    pg = l->pg;
    c = pg->lconn;
    l->dead = 1;
    /* A LISTEN still queued or in flight must not call it back. */
    for (op *o = c->own; o != NULL; o = o->next)
        if (o->listener == l)
            o->listener = NULL;
    if (c->cur != NULL && c->cur->listener == l)
        c->cur->listener = NULL;
    for (sl_pg_listener *p = pg->listeners; p != NULL; p = p->next)
        others += !p->dead && strcmp(p->channel, l->channel) == 0;
    enter(pg);
    if (!others)
        listen_queue(c, OP_UNLISTEN, NULL, l->channel);
    leave(pg); /* unlinks and frees it unless inside a callback */
}

/* --------------------------------------------------------------- results */

/* sl_pg_result is libpq's PGresult under a name modules can see. */
static const PGresult *pq(const sl_pg_result *res)
{
    return (const PGresult *)(const void *)res;
}

SL_API int sl_pg_nrows(const sl_pg_result *res)
{
    return res != NULL ? PQntuples(pq(res)) : 0;
}

SL_API int sl_pg_ncols(const sl_pg_result *res)
{
    return res != NULL ? PQnfields(pq(res)) : 0;
}

SL_API const char *sl_pg_colname(const sl_pg_result *res, int col)
{
    return res != NULL ? PQfname(pq(res), col) : NULL;
}

SL_API int sl_pg_colnum(const sl_pg_result *res, const char *name)
{
    /* PQfnumber folds unquoted names to lower case; exact names here. */
    if (res == NULL || name == NULL)
        return -1;
    for (int i = 0; i < PQnfields(pq(res)); i++)
        if (strcmp(PQfname(pq(res), i), name) == 0)
            return i;
    return -1;
}

SL_API const char *sl_pg_value(const sl_pg_result *res, int row, int col)
{
    const PGresult *r = pq(res);

    if (res == NULL || row < 0 || col < 0 || row >= PQntuples(r) || col >= PQnfields(r) ||
        PQgetisnull(r, row, col))
        return NULL;
    return PQgetvalue(r, row, col);
}

SL_API long long sl_pg_affected(const sl_pg_result *res)
{
    const char *n = res != NULL ? PQcmdTuples((PGresult *)(void *)res) /* not const in libpq */ : "";

    return n[0] != '\0' ? strtoll(n, NULL, 10) : -1;
}

SL_API const char *sl_pg_sqlstate(const sl_pg_result *res)
{
    const char *s = res != NULL ? PQresultErrorField(pq(res), PG_DIAG_SQLSTATE) : NULL;

    return s != NULL ? s : "";
}
