/*
 * pg_connect.c - bringing a PostgreSQL connection up and down: name
 * resolution, the non-blocking connect, the session set up once it is up,
 * retries after a backoff, and closing; pg_conn.c runs the work on it.
 *
 * Only libpq's non-blocking calls are used: PQconnectStartParams and
 * PQconnectPoll on socket readiness (the socket is looked up again after
 * every step, because libpq may switch sockets while it tries addresses).
 * libpq resolves a host name with a blocking getaddrinfo() unless it is
 * given hostaddr, so names are resolved here with evdns and handed over as
 * addresses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <event2/dns.h>
#include <event2/util.h>
#include "daemon/core.h"
#include "daemon/log.h"
#include "metrics/metrics.h"
#include "pg_int.h"

#define MAX_ADDRS 8 /* addresses of one name tried per attempt */

/* ----------------------------------------------------------- connections */

static void on_io(evutil_socket_t fd, short what, void *arg);

/* Watches the connection's socket for `what`.  While connecting the socket
 * may change from one step to the next, possibly to a new socket with the
 * number of one libpq just closed, so `rebuild` makes a fresh event rather
 * than trusting the old one. */
int pg_watch(conn *c, short what, int rebuild)
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

    pg->epoch++;
    if (pg->s_up != NULL)
        sl_series_add(pg->s_up, up ? 1 : -1);
    if (!up && c == pg->lconn)
        for (sl_pg_listener *l = pg->listeners; l != NULL; l = l->next)
            l->active = 0;
    if (c->id > 0)
        pg->nup += up ? 1 : -1;
}

/* Closes the libpq connection; the event goes first so that libevent
 * forgets the descriptor before libpq closes it. */
void pg_conn_close(conn *c)
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
    /* A new session has nothing prepared: each statement is prepared
     * again on its first use there. */
    c->preparing = 0;
    c->piped = PIPE_OFF;
    pg_set_clear(&c->prepared);
    evtimer_del(c->timer);
}

/* No pool connection is up and one just failed: whatever waits for a
 * connection would wait for nothing, so it fails now, and so will new
 * requests until a connection is back. */
void pg_pool_down(sl_pg *pg)
{
    op *o;

    if (pg->nup > 0)
        return;
    if (!pg->down)
        sl_log_core(SL_LOG_WARN, "postgres", "%s: no connection to %s: %s", pg->label, pg->where,
                    pg->err);
    pg->down = 1;
    while ((o = pg_pop_front(&pg->jobs, &pg->jobs_tail)) != NULL) {
        pg->njobs--;
        if (o->kind == OP_BEGIN) {
            o->tx->begin = NULL;
            pg_tx_fail(o->tx, pg->err);
            pg_op_free(o);
        } else {
            pg_fail_later(pg, o, OUT_UNAVAILABLE, "postgres unavailable: %s", pg->err);
        }
    }
}

/* A connection attempt failed: try again after the backoff. */
static void conn_failed(conn *c, const char *why)
{
    sl_pg *pg = c->pg;
    char msg[512];

    pg_one_line(msg, sizeof(msg), why);
    pg_conn_close(c);
    snprintf(pg->err, sizeof(pg->err), "%s", msg);
    c->attempts++;
    sl_log_core(c->attempts == 1 ? SL_LOG_WARN : SL_LOG_DEBUG, "postgres",
                "%s: connection %d to %s failed (attempt %d, next in %.1fs): %s", pg->label, c->id,
                pg->where, c->attempts, c->backoff, msg);
    sl_conn_arm(c->timer, c->backoff);
    c->backoff = c->backoff * 2 < pg->reconnect_max ? c->backoff * 2 : pg->reconnect_max;
    if (c->id > 0)
        pg_pool_down(pg);
}

/* A new LISTEN connection listens to nothing yet: every channel asked
 * for is listened to again. */
static void listen_queue_all(conn *c)
{
    for (sl_pg_listener *l = c->pg->listeners; l != NULL; l = l->next)
        if (!l->dead)
            pg_listen_queue(c, OP_LISTEN, l, l->channel);
}

static void conn_up(conn *c)
{
    sl_pg *pg = c->pg;

    evtimer_del(c->timer);
    if (PQsetnonblocking(c->pq, 1) != 0 || pg_watch(c, EV_READ, 1) != 0) {
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
    pg_conn_next(c);
}

static void connect_step(conn *c)
{
    switch (PQconnectPoll(c->pq)) {
    case PGRES_POLLING_READING:
        if (pg_watch(c, EV_READ, 1) != 0)
            conn_failed(c, "cannot watch the connection's socket");
        break;
    case PGRES_POLLING_WRITING:
        if (pg_watch(c, EV_WRITE, 1) != 0)
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
    if (pg_watch(c, EV_WRITE, 1) != 0)
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

    if (result == EVUTIL_EAI_CANCEL) { /* from pg_conn_close(): touch nothing */
        if (res != NULL)
            evutil_freeaddrinfo(res);
        return;
    }
    pg = c->pg;
    c->dns_req = NULL;
    pg_enter(pg);
    for (struct evutil_addrinfo *a = res; a != NULL && count < MAX_ADDRS; a = a->ai_next) {
        const void *in =
                a->ai_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)(const void *)a->ai_addr)
                                  ->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)(const void *)a->ai_addr)
                                  ->sin_addr;
        if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
            evutil_inet_ntop(a->ai_family, in, ip, sizeof(ip)) == NULL)
            continue;
        hl += (size_t)snprintf(hosts + hl, sizeof(hosts) - hl, "%s%.250s", count ? "," : "",
                               pg->resolve);
        al += (size_t)snprintf(addrs + al, sizeof(addrs) - al, "%s%s", count ? "," : "", ip);
        count++;
    }
    if (pg->life.freeing) {
        /* nothing: pg_leave() frees */
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
    pg_leave(pg);
}

void pg_conn_start(conn *c)
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
    pg_enter(pg);
    if (c->state == C_CONNECTING) {
        snprintf(why, sizeof(why), "connect timed out after %gs", pg->connect_timeout);
        conn_failed(c, why);
    } else if (c->state == C_DOWN) {
        if (c->ever_up && pg->s_reconnects != NULL)
            sl_series_add(pg->s_reconnects, 1);
        pg_conn_start(c);
    }
    pg_leave(pg);
}

/* Socket readiness: the next step of the connect while connecting, the
 * connection's work (pg_conn.c) once it is up. */
static void on_io(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    sl_pg *pg = c->pg;

    (void)fd;
    pg_enter(pg);
    if (c->state == C_CONNECTING)
        connect_step(c);
    else if (c->state == C_IDLE || c->state == C_BUSY)
        pg_conn_io(c, what);
    pg_leave(pg);
}

/* ---------------------------------------------------------------- set up */

void pg_conn_init(sl_pg *pg, conn *c, int id)
{
    c->pg = pg;
    c->id = id;
    c->state = C_DOWN;
    c->backoff = BACKOFF_FIRST;
    c->timer = evtimer_new(sl_base, on_timer, c);
}

void pg_conn_fini(conn *c)
{
    op *o;

    if (c->timer != NULL) {
        pg_conn_close(c);
        event_free(c->timer);
    }
    pg_op_free(c->cur);
    while ((o = pg_pop_front(&c->own, &c->own_tail)) != NULL)
        pg_op_free(o);
    pg_set_free(&c->prepared);
}
