/*
 * sluice/pg.h - the PostgreSQL connector, for modules.
 *
 * A handle (sl_pg) is a small pool of connections to the server named by
 * [postgres] dsn, driven on the daemon's loop: nothing here ever blocks.
 * It belongs to the instance that created it and is released with it; the
 * module may also free it earlier.  Lost connections are re-established
 * with exponential backoff.  While no connection is up the handle is not
 * ready (/readyz) and requests fail at once with an error instead of
 * waiting; a request that is not answered within [postgres] query_timeout
 * (counted from the call) fails with a timeout.
 *
 * SQL is always a constant with $1..$n placeholders; values travel apart
 * from it as text parameters (NULL for SQL NULL), so no value can change
 * the statement.  There is deliberately no quoting or formatting helper.
 *
 *     const char *p[] = { user_id, slug };
 *     sl_pg_query(pg, "INSERT INTO user_segments (user_id, slug) VALUES ($1, $2)",
 *                 2, p, on_added, state);
 *
 * Every callback runs on the loop, never from inside the call that queued
 * it, and exactly once per accepted request, unless the handle is freed
 * first: freeing drops whatever is still queued without calling back.
 */
#ifndef SLUICE_PG_H
#define SLUICE_PG_H

#include <stddef.h>
#include <sluice/sluice.h>

typedef struct sl_pg sl_pg;
typedef struct sl_pg_tx sl_pg_tx;
typedef struct sl_pg_listener sl_pg_listener;

/*
 * A result, read-only and borrowed: valid only during the callback it is
 * handed to (the connector frees it when the callback returns).  Borrowed
 * rather than owned because a result a module must free is a result a
 * module can leak, and modules do not link libpq: copy what you keep.
 * Values are in PostgreSQL's text format.
 */
typedef struct sl_pg_result sl_pg_result;

/*
 * The outcome of one request.  On success `err` is NULL and `res` holds the
 * rows (or none).  When the server refused the statement, `res` is that
 * error result (see sl_pg_sqlstate) and `err` the server's message.  When
 * there was no answer (not connected, queue full, timeout, connection lost)
 * `res` is NULL and `err` says why.  Neither may be kept after returning.
 */
typedef void (*sl_pg_fn)(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg);

/* A pool configured by [postgres] for this instance; connecting starts at
 * once.  Returns NULL after logging why (dsn not set or malformed, out of
 * memory). */
SL_API sl_pg *sl_pg_new(sl_ctx *ctx);

/* Closes every connection (an open transaction is rolled back by the
 * server) and frees the handle, its transactions and listeners; pending
 * callbacks are not called.  Safe inside one of the handle's callbacks. */
SL_API void sl_pg_free(sl_pg *pg);

/* 1 while at least one connection (and the LISTEN one, if any) is up. */
SL_API int sl_pg_ready(const sl_pg *pg);

/*
 * Runs one statement with `nparams` text parameters (each may be NULL for
 * SQL NULL; copied before this returns) on any free connection.  Returns
 * 0 when `fn` will be called, -1 (bad arguments, out of memory) when it
 * will not.  `fn` may be NULL to ignore the outcome.
 */
SL_API int sl_pg_query(sl_pg *pg, const char *sql, int nparams, const char *const *params,
                       sl_pg_fn fn, void *arg);

/*
 * Prepared statements, for SQL that runs on every request or claim: parsed
 * and planned once per connection instead of on every call.
 *
 *     const sl_pg_stmt *get = sl_pg_prepare(pg, "user_segments",
 *         "SELECT slug FROM user_segments WHERE user_id = $1");      (at start)
 *     sl_pg_exec(pg, get, 1, p, on_segments, state);                 (per request)
 *
 * sl_pg_prepare() only records the statement in the handle; nothing is sent.
 * Each connection prepares it (Parse, under the server-side name "sl_" +
 * `name`) the first time it runs it, then runs it by name (Bind/Execute).
 * A connection that is re-established has nothing prepared and prepares
 * again on first use, so a statement is kept across reconnects and
 * server restarts without the module doing anything.  A statement that the
 * server refuses to prepare (a syntax error, a missing table) fails the
 * call that wanted it, with the server's error and SQLSTATE, like
 * sl_pg_query(); the next call tries again.  Prepared statements are not
 * transactional, so one first prepared inside a transaction that is rolled
 * back stays prepared.  Server-side plans follow PostgreSQL's plan cache:
 * DDL on the tables re-plans them; a change of the result's columns
 * (SELECT * after ALTER TABLE) makes PostgreSQL refuse the statement
 * (SQLSTATE 0A000) until the connection is re-established, so name the
 * columns.
 *
 * `name` is [a-z0-9_], 1 to 50 bytes, unique within the handle; preparing a
 * name again with the same SQL returns the same statement (so a module may
 * prepare where it first needs one), with other SQL NULL.  The SQL is
 * copied.  The statement belongs to the handle and lives until the handle
 * is freed.  NULL on bad arguments or out of memory.
 *
 * sl_pg_exec() and sl_pg_tx_exec() behave exactly like sl_pg_query() and
 * sl_pg_tx_query() (parameters, deadlines, callbacks, return value) with a
 * statement of this handle in place of the SQL.
 */
typedef struct sl_pg_stmt sl_pg_stmt;
SL_API const sl_pg_stmt *sl_pg_prepare(sl_pg *pg, const char *name, const char *sql);
SL_API int sl_pg_exec(sl_pg *pg, const sl_pg_stmt *stmt, int nparams, const char *const *params,
                      sl_pg_fn fn, void *arg);

/*
 * Transactions: statements run in order on one connection as one unit.
 *
 *     sl_pg_tx *tx = sl_pg_tx_begin(pg);
 *     sl_pg_tx_query(tx, "INSERT INTO users (id) VALUES ($1)", 1, p, NULL, NULL);
 *     sl_pg_tx_query(tx, "INSERT INTO outbox (...) VALUES (...)", n, q, NULL, NULL);
 *     sl_pg_tx_commit(tx, on_committed, state);
 *
 * sl_pg_tx_begin() returns at once; queries may be queued straight away
 * (they wait for a connection) or later from a callback of an earlier one,
 * so a transaction can read, decide, then write.  When any statement fails
 * (error, timeout, lost connection) the transaction is rolled back at once,
 * that statement's callback gets the error, every later statement of it
 * fails without running, and the commit's callback reports the error.
 *
 * The module ends every transaction with exactly one sl_pg_tx_commit() or
 * sl_pg_tx_rollback(); the handle is invalid after that call, and its
 * callback comes once the end is known (err NULL: committed, or rolled
 * back as asked).  A transaction not ended within [postgres] tx_timeout
 * of its begin is rolled back and its commit will report so.
 *
 * A transaction begun under a trace (a request's, a message's) has the
 * setting sluice.traceparent (SET LOCAL) holding the W3C traceparent of
 * its transaction span, so that SQL it runs can store the context with
 * what it writes: current_setting('sluice.traceparent', true) is that
 * value, or NULL/'' outside a traced transaction or with tracing off.
 *
 * sl_pg_tx_begin() returns NULL only when out of memory.  The others return
 * 0 when `fn` will be called, -1 (bad arguments, out of memory, the
 * transaction already ended) when it will not.
 */
SL_API sl_pg_tx *sl_pg_tx_begin(sl_pg *pg);
SL_API int sl_pg_tx_query(sl_pg_tx *tx, const char *sql, int nparams, const char *const *params,
                          sl_pg_fn fn, void *arg);
SL_API int sl_pg_tx_exec(sl_pg_tx *tx, const sl_pg_stmt *stmt, int nparams,
                         const char *const *params, sl_pg_fn fn, void *arg);
SL_API int sl_pg_tx_commit(sl_pg_tx *tx, sl_pg_fn fn, void *arg);
SL_API int sl_pg_tx_rollback(sl_pg_tx *tx, sl_pg_fn fn, void *arg);

/*
 * LISTEN/NOTIFY on a dedicated connection of the handle.  `fn` gets every
 * notification on `channel` (case-sensitive: the channel is quoted, so
 * `NOTIFY jobs` reaches "jobs", not "Jobs") with its payload.  It is also
 * called with payload NULL each time listening is (re)established, the
 * first time and after every reconnect: notifications sent while the
 * connection was down are lost, so a module should then look for work it
 * may have missed.  Returns NULL on bad arguments or out of memory.
 */
typedef void (*sl_pg_notify_fn)(sl_pg *pg, const char *channel, const char *payload, void *arg);
SL_API sl_pg_listener *sl_pg_listen(sl_pg *pg, const char *channel, sl_pg_notify_fn fn, void *arg);
/* Stops the callbacks at once; safe inside one. */
SL_API void sl_pg_unlisten(sl_pg_listener *l);
/* 1 while `l`'s channel is listened to: from the callback with payload
 * NULL until the LISTEN connection is lost (notifications are then missed
 * until the next such callback). */
SL_API int sl_pg_listening(const sl_pg_listener *l);

/*
 * A number that changes each time a connection of the handle (the LISTEN
 * one included) is established or lost.  What a module keeps from what it
 * read (a cache) holds only while the number stays the same: a connection
 * that comes back may reach another server (a failover, with commits the
 * old one had and the new one lacks, or the other way round), and
 * notifications sent while one was down are lost.  Cheap: a field read.
 */
SL_API unsigned long long sl_pg_epoch(const sl_pg *pg);

/*
 * Migrations: versioned SQL (one or more statements each, no parameters)
 * applied in ascending version order, each exactly once per module, in one
 * transaction that holds a cluster-wide advisory lock, so that instances
 * starting together apply them once.  Applied versions are recorded in the
 * table sluice_migrations (module, version, applied_at), created if
 * missing.  Versions must be positive and strictly ascending.  Migrations
 * are not bound by query_timeout (an index build may take long).
 *
 * `fn` gets the number of migrations this call applied, or err set when
 * none was (all or nothing).  The SQL is copied.  Returns 0 when `fn` will
 * be called, -1 (bad list, out of memory) when it will not.
 */
typedef struct {
    int version;
    const char *sql;
} sl_pg_migration;
typedef void (*sl_pg_migrate_fn)(sl_pg *pg, int applied, const char *err, void *arg);
SL_API int sl_pg_migrate(sl_pg *pg, const char *module, const sl_pg_migration *migrations, size_t n,
                         sl_pg_migrate_fn fn, void *arg);

/* ------------------------------------------------------------- results */

SL_API int sl_pg_nrows(const sl_pg_result *res);
SL_API int sl_pg_ncols(const sl_pg_result *res);
/* A column's name; NULL when out of range. */
SL_API const char *sl_pg_colname(const sl_pg_result *res, int col);
/* The index of the column named `name`, or -1. */
SL_API int sl_pg_colnum(const sl_pg_result *res, const char *name);
/* A value as text, NUL-terminated; NULL for SQL NULL or out of range. */
SL_API const char *sl_pg_value(const sl_pg_result *res, int row, int col);
/* The row count of the command tag: rows inserted, updated, deleted or
 * returned; -1 for commands without one (CREATE, SET...). */
SL_API long long sl_pg_affected(const sl_pg_result *res);
/* The SQLSTATE of an error result ("23505" for a unique violation), or "". */
SL_API const char *sl_pg_sqlstate(const sl_pg_result *res);

#endif
