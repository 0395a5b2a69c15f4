/*
 * sluice/clickhouse.h - the ClickHouse connector (HTTP interface), for
 * modules.
 *
 * A handle talks to the server named by [clickhouse] url over keep-alive
 * HTTP connections (at most max_connections at once), on the daemon's loop.
 * It belongs to the instance that created it and is released with it.
 * Readiness (/readyz) follows a periodic GET /ping.
 *
 * Every request is retried, with exponential backoff, up to `retries` more
 * times when the server could not be reached, the connection broke, or the
 * server answered 5xx with an error that is not about the request itself
 * (overload, memory, too many parts).  Errors that retrying cannot fix
 * (syntax, unknown table, unparsable rows) are reported at once with
 * ClickHouse's own message; so is a request that took longer than
 * `timeout` (another attempt would only add load).  A retried insert may
 * be applied twice when the first attempt was applied but its answer was
 * lost: use a table engine that deduplicates (ReplacingMergeTree,
 * Replicated*) where that matters.
 *
 * Callbacks run on the loop, exactly once per accepted request, never from
 * inside the call that submitted it.
 */
#ifndef SLUICE_CLICKHOUSE_H
#define SLUICE_CLICKHOUSE_H

#include <stddef.h>
#include <sluice/sluice.h>

typedef struct sl_ch sl_ch;
typedef struct sl_ch_batch sl_ch_batch;

/* The outcome of one request; valid only during the callback. */
typedef struct {
    const char *error; /* NULL on success; else ClickHouse's message (the
                              first line of its answer) or why no answer came */
    long status;       /* HTTP status of the last attempt; 0 when none came */
    int code;          /* ClickHouse's exception code ("Code: 60"); 0 if none */
    const cJSON *json; /* sl_ch_query() on success: the FORMAT JSON document
                              ({"meta":[...],"data":[...],"rows":N,...}) */
    const char *body;  /* the raw answer of the last attempt, NUL-terminated */
    size_t len;
    unsigned attempts;
    double elapsed; /* seconds from submission to this callback */
} sl_ch_result;

typedef void (*sl_ch_fn)(sl_ch *ch, const sl_ch_result *res, void *arg);

/* A handle configured by [clickhouse].  Returns NULL after logging why. */
SL_API sl_ch *sl_ch_new(sl_ctx *ctx);

/* Cancels what is in flight (without calling its callbacks) and frees the
 * handle.  Safe inside one of its own callbacks. */
SL_API void sl_ch_free(sl_ch *ch);

/* 1 when the last /ping succeeded. */
SL_API int sl_ch_ready(const sl_ch *ch);

/*
 * INSERT INTO `table` FORMAT JSONEachRow with `rows`: JSON objects, one per
 * line.  `table` is "name" or "database.name", each part an identifier
 * ([A-Za-z_][A-Za-z0-9_]*); anything else is refused.  The rows are copied.
 * Returns 0 when `fn` will be called, -1 (bad table name, out of memory,
 * handle being freed) when it will not.  `fn` may be NULL.
 */
SL_API int sl_ch_insert(sl_ch *ch, const char *table, const char *rows, size_t len, sl_ch_fn fn,
                        void *arg);

/*
 * INSERT INTO `table` (`columns`) FORMAT `format` with `len` bytes of rows
 * in that format, sent as they are: e.g. RowBinary, which neither side
 * escapes and the server parses several times faster than JSONEachRow.
 * `columns` is a list of identifiers separated by commas (NULL: every
 * column in the table's order), `format` an identifier.  The rows are NOT
 * copied: they must stay valid and unchanged until `fn` (required) is
 * called, or until the handle is freed, which cancels the request without
 * calling it.  Returns 0 when `fn` will be called, -1 (a name refused, out
 * of memory, handle being freed) when it will not.
 */
SL_API int sl_ch_insert_rows(sl_ch *ch, const char *table, const char *columns, const char *format,
                             const void *rows, size_t len, sl_ch_fn fn, void *arg);

/* A batch of rows being built for one insert. */
SL_API sl_ch_batch *sl_ch_batch_new(void);
/* Appends one row, serialized from a JSON object.  Returns 0 or -1. */
SL_API int sl_ch_batch_append_json(sl_ch_batch *b, const cJSON *row);
/* Appends one row already serialized as a JSON object on one line (no
 * newline inside; the caller is responsible for its escaping). */
SL_API int sl_ch_batch_append_raw(sl_ch_batch *b, const char *row, size_t len);
SL_API size_t sl_ch_batch_rows(const sl_ch_batch *b);
SL_API size_t sl_ch_batch_bytes(const sl_ch_batch *b);
SL_API void sl_ch_batch_free(sl_ch_batch *b);
/* Inserts the batch without copying it.  Takes ownership of `b` whatever
 * it returns; otherwise like sl_ch_insert(). */
SL_API int sl_ch_insert_batch(sl_ch *ch, const char *table, sl_ch_batch *b, sl_ch_fn fn, void *arg);

/* Runs a SELECT (without FORMAT: " FORMAT JSON" is appended) and hands
 * the parsed document to `fn` as res->json.  The document is parsed on
 * the loop, so an answer over 16 MiB is not held: the request fails with
 * "answer larger than 16777216 bytes" (aggregate or LIMIT in SQL).  An
 * exception ClickHouse raised after it had begun to send rows (status
 * 200) fails the request with that exception's message and code. */
SL_API int sl_ch_query(sl_ch *ch, const char *sql, sl_ch_fn fn, void *arg);

/* What ClickHouse may spend on a query run on behalf of a caller (an HTTP
 * request): every field must be set (at least 1). */
typedef struct {
    double max_execution_time; /* seconds, whole seconds sent */
    unsigned long long max_result_rows;
    unsigned long long max_result_bytes; /* also bounds the answer held here */
} sl_ch_limits;

/*
 * sl_ch_query() for a caller: sent with readonly=1 (nothing can be
 * written), max_execution_time, max_result_rows and max_result_bytes with
 * result_overflow_mode=throw, so ClickHouse stops the query at a limit
 * instead of returning a truncated answer.  An answer longer than
 * max_result_bytes is not held: the request fails with "answer larger
 * than N bytes".  Attempted again only when no answer came (connection
 * refused or broken); never after ClickHouse answered, since a query that
 * hit a limit (TIMEOUT_EXCEEDED, MEMORY_LIMIT_EXCEEDED, TOO_MANY_ROWS ...)
 * would only hit it again.  Returns -1 when `lim` is incomplete.
 */
SL_API int sl_ch_query_limited(sl_ch *ch, const char *sql, const sl_ch_limits *lim, sl_ch_fn fn,
                               void *arg);

/* Runs a statement whose answer is not needed (CREATE TABLE, ALTER ...). */
SL_API int sl_ch_exec(sl_ch *ch, const char *sql, sl_ch_fn fn, void *arg);

/* [clickhouse] cluster: the name of the cluster the tables live on, or ""
 * for one server.  On a cluster a module creates its tables ON CLUSTER
 * (the name and the database are checked to be identifiers), writes and
 * reads through Distributed tables, and gets every insert back only once
 * each shard holds its rows (insert_distributed_sync). */
SL_API const char *sl_ch_cluster(const sl_ch *ch);
/* [clickhouse] database: where unqualified table names are. */
SL_API const char *sl_ch_database(const sl_ch *ch);

/* 1 when `name` is acceptable as a table name for sl_ch_insert(). */
SL_API int sl_ch_valid_table(const char *name);

#endif
