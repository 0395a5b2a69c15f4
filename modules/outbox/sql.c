/*
 * sql.c - the relay's statements, built once at start from the configured
 * table and column names.  The names are the only thing ever spliced into
 * SQL: each must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63
 * bytes) and is double-quoted; every value travels as a $n parameter.
 *
 * Per-aggregate order, and why the claim takes three statements.
 *
 * A relay may publish row r of aggregate A only when every earlier row of A
 * (smaller id, still in the table) is either gone (acknowledged) or held by
 * this same relay: rows this relay holds go to the producer in id order,
 * with key = aggregate id (one partition) and an idempotent producer, so
 * Kafka keeps their order.  Any other earlier row blocks r:
 *   - unclaimed (waiting for its backoff, parked, or simply not claimed yet
 *     by anyone: it must go first, and another relay may take it),
 *   - claimed by another relay (it will publish it; we must not overtake),
 *     including a claim whose lease ran out but that we did not take over.
 *
 * CLAIM locks up to N ready rows (unclaimed and due, or claimed longer ago
 * than the lease: a takeover) in id order with FOR UPDATE SKIP LOCKED,
 * stamps them with our id and now(), and returns them.  Its NOT EXISTS is
 * only a pre-filter (it sees the statement's snapshot, so it cannot see
 * what a concurrent claimer is doing, and SKIP LOCKED may have skipped an
 * earlier row that another relay is claiming this instant).
 *
 * UNBLOCK is the authoritative check, run after CLAIM in the same
 * transaction with a fresh READ COMMITTED snapshot: it gives back every row
 * we just claimed that has an earlier row of its aggregate not held by us.
 * A concurrent claimer's uncommitted claim still shows that row unclaimed
 * (not ours), so it blocks: the check errs on the side of waiting.  It is
 * transitive without recursion: if r is blocked by e, every later row of
 * the aggregate has e before it too and is given back as well.  Only after
 * the COMMIT are the rows published.
 *
 * Our own claims are renewed every lease/3 while we hold them, so one of
 * ours older than the lease is one we lost track of (a claim whose COMMIT
 * reply never came): it is taken over like anyone's.  If renewals lag and
 * a row we hold comes back, claim.c drops the second copy.
 *
 * "Held by us" relies on the relay's bookkeeping (settle.c, claim.c): a row
 * that failed is released before the next claim starts, and a claim that
 * was open while a row of an aggregate failed gives back what it got of
 * that aggregate.
 *
 * A row whose transaction commits after later ids were relayed is still
 * found: readiness is a property of the row, never an id watermark.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "outbox.h"

/* Expands {T} {ID} {AT} {AID} {ET} {P} {C} {CH} {TN} in `tmpl`; malloc'd. */
static char *expand(const char *tmpl, const char *const names[][2], size_t nnames)
{
    size_t cap = strlen(tmpl) * 2 + 256, len = 0;
    char *out = malloc(cap);

    if (out == NULL)
        return NULL;
    for (const char *p = tmpl; *p != '\0';) {
        const char *val = NULL;
        size_t skip = 1;
        if (*p == '{') {
            for (size_t i = 0; i < nnames; i++) {
                size_t kl = strlen(names[i][0]);
                if (strncmp(p + 1, names[i][0], kl) == 0 && p[1 + kl] == '}') {
                    val = names[i][1];
                    skip = kl + 2;
                    break;
                }
            }
        }
        size_t vl = val != NULL ? strlen(val) : 1;
        if (len + vl + 1 > cap) {
            char *n;
            cap = (len + vl + 1) * 2;
            n = realloc(out, cap);
            if (n == NULL) {
                free(out);
                return NULL;
            }
            out = n;
        }
        memcpy(out + len, val != NULL ? val : p, vl);
        len += vl;
        p += skip;
    }
    out[len] = '\0';
    return out;
}

/* The claim columns are always these; they are added to an existing table. */
static const char migration_tmpl[] =
    "CREATE TABLE IF NOT EXISTS {T} (\n"
    "  {ID} bigserial PRIMARY KEY,\n"
    "  {AT} text NOT NULL,\n"
    "  {AID} text NOT NULL,\n"
    "  {ET} text NOT NULL,\n"
    "  {P} jsonb,\n"
    "  {C} timestamptz NOT NULL DEFAULT now());\n"
    "ALTER TABLE {T}\n"
    "  ADD COLUMN IF NOT EXISTS {C} timestamptz NOT NULL DEFAULT now(),\n"
    "  ADD COLUMN IF NOT EXISTS claimed_by text,\n"
    "  ADD COLUMN IF NOT EXISTS claimed_at timestamptz,\n"
    "  ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0,\n"
    "  ADD COLUMN IF NOT EXISTS last_error text,\n"
    "  ADD COLUMN IF NOT EXISTS parked boolean NOT NULL DEFAULT false,\n"
    "  ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz,\n"
    "  ADD COLUMN IF NOT EXISTS sent_at timestamptz;\n"
    "CREATE INDEX IF NOT EXISTS {TN_agg} ON {T} ({AT}, {AID}, {ID});\n"
    "CREATE OR REPLACE FUNCTION {TN_fn}() RETURNS trigger LANGUAGE plpgsql AS\n"
    "  $sl$BEGIN PERFORM pg_notify('{CH}', ''); RETURN NULL; END$sl$;\n"
    "DROP TRIGGER IF EXISTS {TN_trg} ON {T};\n"
    "CREATE TRIGGER {TN_trg} AFTER INSERT ON {T}\n"
    "  FOR EACH STATEMENT EXECUTE FUNCTION {TN_fn}();\n";

/* $1 relay, $2 lease (s), $3 limit.  Returns each row, and whether it was
 * someone else's stale claim (a takeover). */
static const char claim_tmpl[] =
    "UPDATE {T} o SET claimed_by = $1, claimed_at = now()"
    " FROM (SELECT c.{ID} AS cid, c.claimed_by AS prev FROM {T} c"
    "  WHERE c.sent_at IS NULL AND NOT c.parked"
    "   AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= now())"
    "   AND (c.claimed_by IS NULL OR c.claimed_at < now() - $2::float8 * interval '1 second')"
    "   AND NOT EXISTS (SELECT 1 FROM {T} e WHERE e.{AT} = c.{AT} AND e.{AID} = c.{AID}"
    "     AND e.{ID} < c.{ID} AND e.sent_at IS NULL"
    "     AND (e.parked OR e.next_attempt_at > now()"
    "          OR (e.claimed_by <> $1 AND e.claimed_at >= now() - $2::float8 * interval '1 second')))"
    "  ORDER BY c.{ID} LIMIT $3::int FOR UPDATE OF c SKIP LOCKED) s"
    " WHERE o.{ID} = s.cid"
    " RETURNING o.{ID}, s.prev IS NOT NULL AND s.prev <> $1, o.{AT}, o.{AID}, o.{ET}, o.{P}::text,"
    "  extract(epoch FROM o.{C})::float8";

/* $1 ids just claimed, $2 relay */
static const char unblock_tmpl[] =
    "UPDATE {T} o SET claimed_by = NULL, claimed_at = NULL"
    " WHERE o.{ID} = ANY($1::bigint[]) AND o.claimed_by = $2"
    "  AND EXISTS (SELECT 1 FROM {T} e WHERE e.{AT} = o.{AT} AND e.{AID} = o.{AID}"
    "   AND e.{ID} < o.{ID} AND e.sent_at IS NULL AND e.claimed_by IS DISTINCT FROM $2)"
    " RETURNING o.{ID}";

/* $1 ids held, $2 relay */
static const char renew_tmpl[] =
    "UPDATE {T} SET claimed_at = now() WHERE {ID} = ANY($1::bigint[]) AND claimed_by = $2";

/* $1 ids, $2 relay */
static const char delete_tmpl[] =
    "DELETE FROM {T} WHERE {ID} = ANY($1::bigint[]) AND claimed_by = $2";
static const char mark_tmpl[] =
    "UPDATE {T} SET sent_at = now(), claimed_by = NULL, claimed_at = NULL"
    " WHERE {ID} = ANY($1::bigint[]) AND claimed_by = $2";

/* $1 ids, $2 relay, $3 error, $4 max attempts, $5 backoff, $6 backoff cap.
 * Returns whether each row is now parked, and in how many seconds it is
 * due again. */
static const char fail_tmpl[] =
    "UPDATE {T} SET claimed_by = NULL, claimed_at = NULL, attempts = attempts + 1,"
    " last_error = $3, parked = attempts + 1 >= $4::int,"
    " next_attempt_at = now() + least($6::float8, $5::float8 * power(2, least(attempts, 30)))"
    "   * interval '1 second'"
    " WHERE {ID} = ANY($1::bigint[]) AND claimed_by = $2"
    " RETURNING parked, extract(epoch FROM next_attempt_at - now())::float8";

/* $1 ids, $2 relay: handed back unpublished (stop, claim given up) */
static const char release_tmpl[] =
    "UPDATE {T} SET claimed_by = NULL, claimed_at = NULL"
    " WHERE {ID} = ANY($1::bigint[]) AND claimed_by = $2";

static const char pending_tmpl[] =
    "SELECT count(*) FILTER (WHERE NOT parked), count(*) FILTER (WHERE parked)"
    " FROM {T} WHERE sent_at IS NULL";

static const char parked_tmpl[] =
    "SELECT {ID}, {AT}, {AID}, {ET}, attempts, last_error, {C}::text FROM {T}"
    " WHERE parked AND sent_at IS NULL ORDER BY {ID} LIMIT 100";

static const char retry_tmpl[] =
    "UPDATE {T} SET parked = false, attempts = 0, next_attempt_at = NULL"
    " WHERE parked AND sent_at IS NULL";
static const char retry_one_tmpl[] =
    "UPDATE {T} SET parked = false, attempts = 0, next_attempt_at = NULL"
    " WHERE parked AND sent_at IS NULL AND {ID} = $1::bigint";
static const char retry_agg_tmpl[] =
    "UPDATE {T} SET parked = false, attempts = 0, next_attempt_at = NULL"
    " WHERE parked AND sent_at IS NULL AND {AID} = $1";

/* The names spliced into the SQL: every column option a plain identifier,
 * the table short enough for the names derived from it.  Each bad one is
 * reported at its key. */
static const char *const ident_opts[7] = { "table", "column_id", "column_aggregate_type",
                                           "column_aggregate_id", "column_event_type",
                                           "column_payload", "column_created_at" };

int ob_names_check(sl_ctx *ctx)
{
    int rc = 0;

    for (size_t i = 0; i < 7; i++)
        if (!ob_ident_ok(sl_opt_str(ctx, ident_opts[i])))
            rc = sl_fail_opt(ctx, ident_opts[i],
                             "\"%s\" is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes)",
                             sl_opt_str(ctx, ident_opts[i]));
    if (rc == 0 && strlen(sl_opt_str(ctx, "table")) > 50)
        rc = sl_fail_opt(ctx, "table", "\"%s\" is longer than 50 bytes", sl_opt_str(ctx, "table"));
    return rc;
}

int ob_sql_build(ob *o)
{
    char q[7][70], tn[3][80];
    const char *table = sl_opt_str(o->ctx, "table");

    if (ob_names_check(o->ctx) != 0)
        return -1;
    for (size_t i = 0; i < 7; i++)
        snprintf(q[i], sizeof(q[i]), "\"%s\"", sl_opt_str(o->ctx, ident_opts[i]));
    snprintf(tn[0], sizeof(tn[0]), "\"%s_aggregate_idx\"", table);
    snprintf(tn[1], sizeof(tn[1]), "\"%s_notify\"", table);
    snprintf(tn[2], sizeof(tn[2]), "\"%s_notify\"", table);
    snprintf(o->channel, sizeof(o->channel), "%s", table);
    const char *const names[][2] = {
        { "T", q[0] },       { "ID", q[1] },      { "AT", q[2] },      { "AID", q[3] },
        { "ET", q[4] },      { "P", q[5] },       { "C", q[6] },       { "CH", o->channel },
        { "TN_agg", tn[0] }, { "TN_fn", tn[1] },  { "TN_trg", tn[2] },
    };
    const size_t nn = sizeof(names) / sizeof(names[0]);
    const char *const tmpls[OB_NSQL] = { claim_tmpl,   unblock_tmpl,
                                         o->mark ? mark_tmpl : delete_tmpl, fail_tmpl,
                                         release_tmpl, renew_tmpl, pending_tmpl, parked_tmpl,
                                         retry_tmpl, retry_one_tmpl, retry_agg_tmpl };

    o->migration = expand(migration_tmpl, names, nn);
    for (int i = 0; i < OB_NSQL; i++)
        o->sql[i] = expand(tmpls[i], names, nn);
    for (int i = 0; i < OB_NSQL; i++)
        if (o->sql[i] == NULL || o->migration == NULL)
            return sl_fail(o->ctx, "out of memory");
    return 0;
}

void ob_sql_free(ob *o)
{
    for (int i = 0; i < OB_NSQL; i++) {
        free(o->sql[i]);
        o->sql[i] = NULL;
    }
    free(o->migration);
    o->migration = NULL;
}
