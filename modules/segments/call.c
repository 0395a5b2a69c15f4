/*
 * call.c - running one request's transaction, with retries.
 *
 * An attempt is begun by c->begin(), which queues statements whose
 * callbacks may queue more, and ends with seg_tx_end().  A serialization
 * failure (40001) or deadlock (40P01) reported by PostgreSQL retries the
 * whole attempt, up to max_retries; every other failure answers: 503 when
 * the server gave no answer (down, timeout, lost connection), 500 when it
 * refused the statement, or the 4xx the handler decided inside (reject).
 * The server rolls a failed transaction back, so nothing of it is kept.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "seg.h"

int seg_stmt_failed(seg_call *c, const sl_pg_result *res, const char *err)
{
    if (err == NULL)
        return 0;
    if (!c->failed) {
        c->failed = 1;
        c->unavailable = res == NULL;
        snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", res != NULL ? sl_pg_sqlstate(res) : "");
        snprintf(c->err, sizeof(c->err), "%s", err);
    }
    return 1;
}

static int retryable(const seg_call *c)
{
    return strcmp(c->sqlstate, "40001") == 0 || strcmp(c->sqlstate, "40P01") == 0;
}

/* PostgreSQL's own text names hosts, tables and values: the log gets it,
 * the client a short reason (and the SQLSTATE, which names a class of
 * error and nothing of the installation). */
void seg_pg_error(seg_call *c, const sl_pg_result *res, const char *err)
{
    sl_log(c->s->ctx, SL_LOG_WARN, "%s %s (request %s): %s", res == NULL ? "unanswered" : "failed",
           sl_req_path(c->req), sl_req_id(c->req), err);
    if (res == NULL)
        seg_error(c, 503, "database unavailable");
    else
        seg_error(c, 500, "database error %s", sl_pg_sqlstate(res));
}

static void on_end(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg_call *c = arg;

    (void)pg;
    c->tx = NULL;
    seg_stmt_failed(c, res, err);
    if (c->reject) {
        seg_error(c, c->reject, "%s", c->reject_why);
        return;
    }
    if (!c->failed) {
        c->done(c);
        return;
    }
    if (retryable(c) && c->attempts < c->s->max_retries) {
        sl_series_add(c->s->s_retries, 1);
        seg_tx_run(c);
        return;
    }
    sl_log(c->s->ctx, SL_LOG_WARN, "%s failed after %d attempt(s) (request %s): %s",
           sl_req_path(c->req), c->attempts, sl_req_id(c->req), c->err);
    if (c->unavailable)
        seg_error(c, 503, "database unavailable");
    else if (retryable(c))
        seg_error(c, 503, "gave up after %d attempts (serialization failures or deadlocks)",
                  c->attempts);
    else
        seg_error(c, 500, "database error %s", c->sqlstate);
}

void seg_tx_end(seg_call *c)
{
    int rc = c->failed || c->reject ? sl_pg_tx_rollback(c->tx, on_end, c)
                                    : sl_pg_tx_commit(c->tx, on_end, c);
    if (rc != 0) {
        c->tx = NULL;
        seg_error(c, 503, "database unavailable: the transaction could not be ended");
    }
}

void seg_tx_reject(seg_call *c, int status, const char *fmt, ...)
{
    va_list ap;

    c->reject = status;
    va_start(ap, fmt);
    vsnprintf(c->reject_why, sizeof(c->reject_why), fmt, ap);
    va_end(ap);
    seg_tx_end(c);
}

void seg_tx_run(seg_call *c)
{
    c->attempts++;
    c->failed = c->unavailable = c->reject = 0;
    c->sqlstate[0] = c->err[0] = '\0';
    c->n1 = c->n2 = 0;
    c->tx = sl_pg_tx_begin(c->s->pg);
    if (c->tx == NULL) {
        seg_error(c, 503, "out of memory");
        return;
    }
    c->begin(c);
}

int seg_prepare(seg *s, const seg_sql *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        s->st[list[i].id] = sl_pg_prepare(s->pg, list[i].name, list[i].sql);
        if (s->st[list[i].id] == NULL)
            return sl_fail(s->ctx, "cannot prepare statement %s", list[i].name);
    }
    return 0;
}
