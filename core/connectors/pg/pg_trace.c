/*
 * pg_trace.c - spans of PostgreSQL work: one per statement a module sends
 * (from submission to its result, queue wait included, as the caller sees
 * it) and one per transaction, the statements of a transaction nested
 * under it.  Only work done for a traced request or message gets spans:
 * a relay's idle polling would otherwise start a trace per poll.
 * Attribute names are OpenTelemetry's database conventions; both
 * db.system (older collectors) and db.system.name are set, the text only
 * as db.query.text (it is the largest part of a statement's span).
 *
 * SQL run for a traced request can store the request's context with what
 * it writes (an outbox row): sluice.traceparent holds the position of the
 * span that wrote it.  In a transaction, the transaction's (set with its
 * BEGIN); a statement outside any (its own implicit transaction, like
 * POST /user's insert, whose trigger writes user_created) is sent in a
 * pipeline behind a set_config() local to that implicit transaction, in
 * the same round trip, with its own span's position (pg_conn.c).  A
 * statement that starts with SELECT is taken to write nothing and is sent
 * alone: reads, the most frequent statements, pay nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pg_int.h"

/* The statement's first keyword, the span's name ("SELECT", "INSERT"). */
static void operation(const char *sql, char *out, size_t len)
{
    size_t n = 0;

    while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '\r' || *sql == '(')
        sql++;
    while (n + 1 < len && ((*sql >= 'A' && *sql <= 'Z') || (*sql >= 'a' && *sql <= 'z'))) {
        char c = *sql++;
        out[n++] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
    }
    out[n] = '\0';
    if (n == 0)
        snprintf(out, len, "postgresql");
}

/* The attributes every span of the handle has, encoded at its first
 * span: a POST /segment/user has seven. */
static void common(sl_pg *pg, sl_span *s)
{
    sl_span_attrs *a = &pg->span_attrs;

    if (a->len == 0) {
        int rc = sl_span_attrs_add(a, "db.system", "postgresql");
        rc |= sl_span_attrs_add(a, "db.system.name", "postgresql");
        rc |= sl_span_attrs_add(a, "server.address", pg->where);
        for (int i = 0; pg->keys[i] != NULL; i++)
            if (strcmp(pg->keys[i], "dbname") == 0 && pg->vals[i] != NULL && pg->vals[i][0] != '\0')
                rc |= sl_span_attrs_add(a, "db.namespace", pg->vals[i]);
        if (rc != 0) { /* out of memory: encoded again at the next span */
            free(a->json);
            memset(a, 0, sizeof(*a));
            return;
        }
    }
    sl_span_set_attrs(s, a);
}

/* Set on every statement that is not a prepared one (a COMMIT, a
 * module's query) and on each reply. */
static sl_span_key k_operation = { "db.operation.name", 's', 0, "" },
                   k_text = { "db.query.text", 's', 0, "" },
                   k_prepared = { "db.postgresql.prepared_statement", 's', 0, "" },
                   k_rows = { "db.response.returned_rows", 'i', 0, "" },
                   k_state = { "db.response.status_code", 's', 0, "" };

void pg_trace_statement(sl_pg *pg, op *o)
{
    const sl_trace_ctx *parent = o->tx != NULL ? &o->tx->trace : &o->trace;
    char name[32];

    if (!sl_trace_on() || o->internal || !parent->traced)
        return;
    if (o->stmt != NULL)
        memcpy(name, o->stmt->op, sizeof(name));
    else
        operation(o->sql, name, sizeof(name));
    o->span = sl_span_begin(parent, SL_SPAN_CLIENT, name, NULL);
    if (o->span == NULL)
        return;
    common(pg, o->span);
    if (o->stmt != NULL && o->stmt->span_attrs.len > 0) {
        sl_span_set_attrs(o->span, &o->stmt->span_attrs);
    } else {
        sl_span_put(o->span, &k_operation, name);
        /* Parameters are bound, never spliced: the text holds no values. */
        sl_span_put(o->span, &k_text, o->stmt != NULL ? o->stmt->sql : o->sql);
        if (o->stmt != NULL)
            sl_span_put(o->span, &k_prepared, o->stmt->name);
    }
    o->carry = o->tx == NULL && strcmp(name, "SELECT") != 0;
}

void pg_trace_stmt(sl_pg_stmt *st)
{
    sl_span_attrs *a = &st->span_attrs;
    int rc;

    operation(st->sql, st->op, sizeof(st->op));
    rc = sl_span_attrs_add(a, "db.operation.name", st->op);
    rc |= sl_span_attrs_add(a, "db.query.text", st->sql);
    rc |= sl_span_attrs_add(a, "db.postgresql.prepared_statement", st->name);
    if (rc != 0) { /* out of memory: each span encodes its own */
        free(a->json);
        memset(a, 0, sizeof(*a));
    }
}

int pg_trace_carried(const op *o, char *tp)
{
    if (!o->carry || o->span == NULL)
        return -1;
    sl_tp_format(&o->span->tp, tp);
    return 0;
}

void pg_trace_done(op *o, const PGresult *res, const char *err)
{
    if (o->span == NULL)
        return;
    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK)
        sl_span_put_int(o->span, &k_rows, PQntuples(res));
    if (err != NULL) {
        sl_span_put(o->span, &k_state,
                    res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL);
        sl_span_fail(o->span, "%s", err);
    }
    sl_span_end(o->span);
    o->span = NULL;
}

void pg_trace_tx_begin(sl_pg *pg, sl_pg_tx *tx, char begin[PG_TRACE_BEGIN_MAX])
{
    static const char set[] = "BEGIN;SET LOCAL sluice.traceparent='";
    _Static_assert(sizeof(set) - 1 + SL_TP_LEN + sizeof("'") <= PG_TRACE_BEGIN_MAX,
                   "PG_TRACE_BEGIN_MAX holds the traced BEGIN");

    tx->trace = sl_trace_cur;
    memcpy(begin, "BEGIN", sizeof("BEGIN"));
    if (!sl_trace_on() || !tx->trace.traced)
        return;
    tx->span = sl_span_begin(NULL, SL_SPAN_CLIENT, "transaction", &tx->trace.tp);
    tx->trace.traced = 1;
    common(pg, tx->span);
    /* Spliced, not bound: a simple query takes no parameters, and the
     * value is ours, hex digits and dashes only.  Copied, not printed: a
     * formatted print cost as much as the rest of opening the span. */
    memcpy(begin, set, sizeof(set) - 1);
    sl_tp_format(&tx->trace.tp, begin + sizeof(set) - 1);
    memcpy(begin + sizeof(set) - 1 + SL_TP_LEN, "'", 2);
}

void pg_trace_tx_end(sl_pg_tx *tx)
{
    if (tx->span == NULL)
        return;
    if (tx->failed)
        sl_span_fail(tx->span, "rolled back: %s", tx->err);
    sl_span_end(tx->span);
    tx->span = NULL;
}

void pg_call(sl_pg *pg, op *o, const PGresult *res, const char *err)
{
    sl_trace_ctx saved;

    pg_trace_done(o, res, err);
    if (o->fn == NULL)
        return;
    sl_trace_enter(&o->trace, &saved);
    o->fn(pg, (const sl_pg_result *)res, err, o->arg);
    sl_trace_restore(&saved);
}
