/*
 * sql.c - the relay's statements and migrations, built once at start from
 * the configured table and column names.  The names are the only thing
 * ever spliced into SQL: each must be a plain identifier
 * ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes) and is double-quoted; every
 * value travels as a $n parameter.  The statements that run all the time
 * (read, acknowledge, heartbeat, gauges) are prepared (relay.c).
 *
 * Migration 1 is the table and its claim columns as the first relay made
 * them (claimed_by and claimed_at are no longer written: a migration never
 * drops a column that may hold data).  Migration 2 is what bucket
 * ownership needs (claim.c and lease.c say how it is used):
 *   - the bucket of a row, (hashtextextended(aggregate id, 0) & 63): the
 *     function PostgreSQL's hash partitioning uses, whose values it keeps
 *     stable across versions; indexed with the id, for rows not yet sent;
 *   - {T}_leases: one row per bucket, its owner and when its lease ends;
 *   - {T}_relays: the relays alive on the table (heartbeats), from which
 *     each computes its fair share;
 *   - the insert trigger's NOTIFY carries the lowest id the statement
 *     inserted, so that a relay learns at commit time of a row committed
 *     behind what it already read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "outbox.h"

/* Expands the {NAME}s of `names` in `tmpl`; malloc'd. */
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
static const char migration1_tmpl[] =
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

/* The bucket of a row (of `o` in statements), the expression the index is
 * built on, so that the planner uses it; 63 is OB_BUCKETS - 1. */
#define BUCKET_OF "((hashtextextended(o.{AID}, 0) & 63)::int)"
#define BUCKET_INDEXED "((hashtextextended({AID}, 0) & 63)::int)"

static const char migration2_tmpl[] =
        "CREATE INDEX IF NOT EXISTS {TN_bucket} ON {T} (" BUCKET_INDEXED ", {ID})\n"
        "  WHERE sent_at IS NULL;\n"
        "CREATE TABLE IF NOT EXISTS {TN_leases} (bucket int PRIMARY KEY, owner text,\n"
        "  expires_at timestamptz);\n"
        "INSERT INTO {TN_leases} (bucket) SELECT generate_series(0, 63) ON CONFLICT DO NOTHING;\n"
        "CREATE TABLE IF NOT EXISTS {TN_relays} (relay text PRIMARY KEY,\n"
        "  seen_at timestamptz NOT NULL);\n"
        "CREATE OR REPLACE FUNCTION {TN_fn}() RETURNS trigger LANGUAGE plpgsql AS\n"
        "  $sl$BEGIN PERFORM pg_notify('{CH}', coalesce((SELECT min({ID})::text FROM sl_new), "
        "''));\n"
        "  RETURN NULL; END$sl$;\n"
        "DROP TRIGGER IF EXISTS {TN_trg} ON {T};\n"
        "CREATE TRIGGER {TN_trg} AFTER INSERT ON {T} REFERENCING NEW TABLE AS sl_new\n"
        "  FOR EACH STATEMENT EXECUTE FUNCTION {TN_fn}();\n";

/* $1 relay, $2 buckets, $3 their cursors, $4 rows per bucket, $5 look up
 * predecessors.  The rows after each cursor in id order, parked and
 * waiting ones included (they block their aggregate), of buckets whose
 * lease this relay holds now: a relay that stalled past its lease reads
 * nothing more from them.  With $5, with each row the id of the row of
 * its aggregate just before it still in the table (claim.c says when it
 * is needed; CASE runs the lookup only then), and its trace context
 * (NULL without column_traceparent). */
static const char read_tmpl[] =
        "SELECT r.{ID}, b.bucket, r.{AT}, r.{AID}, r.{ET}, r.{P}::text,"
        " extract(epoch FROM r.{C})::float8, r.parked,"
        " extract(epoch FROM r.next_attempt_at - now())::float8,"
        " CASE WHEN $5::bool THEN (SELECT max(e.{ID}) FROM {T} e WHERE e.{AT} = r.{AT}"
        "   AND e.{AID} = r.{AID} AND e.{ID} < r.{ID} AND e.sent_at IS NULL) END, r.sl_tp"
        " FROM unnest($2::int[], $3::bigint[]) AS b(bucket, after)"
        " JOIN {TN_leases} l ON l.bucket = b.bucket AND l.owner = $1 AND l.expires_at > now()"
        " CROSS JOIN LATERAL (SELECT o.{ID}, o.{AT}, o.{AID}, o.{ET}, o.{P}, o.{C}, o.parked,"
        "   o.next_attempt_at, {TP_OF} AS sl_tp FROM {T} o"
        "  WHERE " BUCKET_OF " = b.bucket AND o.{ID} > b.after AND o.sent_at IS NULL"
        "  ORDER BY o.{ID} LIMIT $4::int) r";

/* Migration 3, with column_traceparent set: the column the writers fill
 * with the trace context of the transaction that wrote the row. */
static const char migration3_tmpl[] = "ALTER TABLE {T} ADD COLUMN IF NOT EXISTS {TP} text;\n";

/* $1 channel, $2 payload: a read's marker (claim.c).  Its commit comes
 * after the read's snapshot, so every NOTIFY of a transaction the read
 * saw is delivered before it. */
static const char mark_notify_tmpl[] = "SELECT pg_notify($1, $2)";

/* $1 ids: acknowledged by the broker, whoever owns their bucket now. */
static const char delete_tmpl[] = "DELETE FROM {T} WHERE {ID} = ANY($1::bigint[])";
static const char mark_tmpl[] =
        "UPDATE {T} SET sent_at = now() WHERE {ID} = ANY($1::bigint[]) AND sent_at IS NULL";

/* $1 ids, $2 relay, $3 error, $4 max attempts, $5 backoff, $6 backoff cap.
 * Only rows of buckets the relay still owns: after a takeover the new
 * owner decides.  Returns each row's aggregate, whether it is now parked,
 * and in how many seconds it is due again. */
static const char fail_tmpl[] =
        "UPDATE {T} o SET attempts = attempts + 1,"
        " last_error = $3, parked = attempts + 1 >= $4::int,"
        " next_attempt_at = now() + least($6::float8, $5::float8 * power(2, least(attempts, 30)))"
        "   * interval '1 second'"
        " WHERE o.{ID} = ANY($1::bigint[]) AND o.sent_at IS NULL"
        "  AND EXISTS (SELECT 1 FROM {TN_leases} l WHERE l.bucket = " BUCKET_OF " AND l.owner = $2)"
        " RETURNING o.{ID}, o.parked, extract(epoch FROM o.next_attempt_at - now())::float8";

/* $1 relay, $2 lease (s), $3 buckets handed back.  Heartbeat: the relay is
 * alive; its other leases are renewed.  Returns (0, bucket) for each bucket
 * it still owns, (1, n) the other relays alive, (2, n) the buckets free or
 * expired. */
static const char beat_tmpl[] =
        "WITH seen AS (INSERT INTO {TN_relays} (relay, seen_at) VALUES ($1, now())"
        "   ON CONFLICT (relay) DO UPDATE SET seen_at = now()),"
        " gone AS (DELETE FROM {TN_relays} WHERE relay <> $1"
        "   AND seen_at < now() - 10 * $2::float8 * interval '1 second'),"
        " handed AS (UPDATE {TN_leases} SET owner = NULL, expires_at = NULL"
        "   WHERE owner = $1 AND bucket = ANY($3::int[])),"
        " renewed AS (UPDATE {TN_leases} SET expires_at = now() + $2::float8 * interval '1 second'"
        "   WHERE owner = $1 AND bucket <> ALL($3::int[]) RETURNING bucket)"
        " SELECT 0, bucket FROM renewed"
        " UNION ALL SELECT 1, count(*)::int FROM {TN_relays}"
        "  WHERE relay <> $1 AND seen_at >= now() - $2::float8 * interval '1 second'"
        " UNION ALL SELECT 2, count(*)::int FROM {TN_leases}"
        "  WHERE owner IS NULL OR (owner <> $1 AND expires_at < now())";

/* $1 relay, $2 lease (s), $3 how many.  Takes free buckets, and those whose
 * owner stopped renewing (a takeover: the second column). */
static const char take_tmpl[] =
        "UPDATE {TN_leases} l SET owner = $1, expires_at = now() + $2::float8 * interval '1 second'"
        " FROM (SELECT bucket, owner AS prev FROM {TN_leases}"
        "  WHERE owner IS NULL OR (owner <> $1 AND expires_at < now())"
        "  ORDER BY bucket LIMIT $3::int FOR UPDATE SKIP LOCKED) f"
        " WHERE l.bucket = f.bucket RETURNING l.bucket, f.prev IS NOT NULL";

/* $1 relay: the drain is over. */
static const char leave_tmpl[] =
        "WITH handed AS (UPDATE {TN_leases} SET owner = NULL, expires_at = NULL WHERE owner = $1)"
        " DELETE FROM {TN_relays} WHERE relay = $1";

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
static const char *const ident_opts[7] = { "table",
                                           "column_id",
                                           "column_aggregate_type",
                                           "column_aggregate_id",
                                           "column_event_type",
                                           "column_payload",
                                           "column_created_at" };

int ob_names_check(sl_ctx *ctx)
{
    int rc = 0;

    for (size_t i = 0; i < 7; i++)
        if (!ob_ident_ok(sl_opt_str(ctx, ident_opts[i])))
            rc = sl_fail_opt(
                    ctx, ident_opts[i],
                    "\"%s\" is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes)",
                    sl_opt_str(ctx, ident_opts[i]));
    if (sl_opt_str(ctx, "column_traceparent")[0] != '\0' &&
        !ob_ident_ok(sl_opt_str(ctx, "column_traceparent")))
        rc = sl_fail_opt(ctx, "column_traceparent",
                         "\"%s\" is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 "
                         "bytes), nor empty",
                         sl_opt_str(ctx, "column_traceparent"));
    if (rc == 0 && strlen(sl_opt_str(ctx, "table")) > 50)
        rc = sl_fail_opt(ctx, "table", "\"%s\" is longer than 50 bytes", sl_opt_str(ctx, "table"));
    return rc;
}

int ob_sql_build(ob *o)
{
    char q[7][70], tn[6][80], tp[70], tp_of[80];
    const char *table = sl_opt_str(o->ctx, "table");
    const char *tpcol = sl_opt_str(o->ctx, "column_traceparent");
    static const char *const suffix[6] = { "aggregate_idx", "notify", "notify",
                                           "bucket_idx",    "leases", "relays" };

    if (ob_names_check(o->ctx) != 0)
        return -1;
    for (size_t i = 0; i < 7; i++)
        snprintf(q[i], sizeof(q[i]), "\"%s\"", sl_opt_str(o->ctx, ident_opts[i]));
    for (size_t i = 0; i < 6; i++)
        snprintf(tn[i], sizeof(tn[i]), "\"%s_%s\"", table, suffix[i]);
    snprintf(o->channel, sizeof(o->channel), "%s", table);
    snprintf(tp, sizeof(tp), "\"%s\"", tpcol);
    snprintf(tp_of, sizeof(tp_of), tpcol[0] != '\0' ? "o.%s" : "NULL::text", tp);
    o->traced_column = tpcol[0] != '\0';
    const char *const names[][2] = {
        { "T", q[0] },          { "ID", q[1] },         { "AT", q[2] },      { "AID", q[3] },
        { "ET", q[4] },         { "P", q[5] },          { "C", q[6] },       { "CH", o->channel },
        { "TN_agg", tn[0] },    { "TN_fn", tn[1] },     { "TN_trg", tn[2] }, { "TN_bucket", tn[3] },
        { "TN_leases", tn[4] }, { "TN_relays", tn[5] }, { "TP", tp },        { "TP_OF", tp_of },
    };
    const size_t nn = sizeof(names) / sizeof(names[0]);
    const char *const tmpls[OB_NSQL] = { read_tmpl,      o->mark ? mark_tmpl : delete_tmpl,
                                         fail_tmpl,      beat_tmpl,
                                         take_tmpl,      leave_tmpl,
                                         pending_tmpl,   parked_tmpl,
                                         retry_tmpl,     retry_one_tmpl,
                                         retry_agg_tmpl, mark_notify_tmpl };

    o->migration[0] = expand(migration1_tmpl, names, nn);
    o->migration[1] = expand(migration2_tmpl, names, nn);
    o->migration[2] = expand(migration3_tmpl, names, nn);
    for (int i = 0; i < OB_NSQL; i++)
        o->sql[i] = expand(tmpls[i], names, nn);
    for (int i = 0; i < OB_NSQL; i++)
        if (o->sql[i] == NULL || o->migration[0] == NULL || o->migration[1] == NULL ||
            o->migration[2] == NULL)
            return sl_fail(o->ctx, "out of memory");
    return 0;
}

void ob_sql_free(ob *o)
{
    for (int i = 0; i < OB_NSQL; i++) {
        free(o->sql[i]);
        o->sql[i] = NULL;
    }
    for (int i = 0; i < 3; i++) {
        free(o->migration[i]);
        o->migration[i] = NULL;
    }
}
