/*
 * schema.c - the segments schema, applied by the core's migrations runner.
 *
 * Membership changes are recorded by one trigger on user_segments: every
 * insert and delete, whichever path made it (POST /segment/user, a rollout,
 * DELETE /segment, the TTL sweeper), writes its segment_history row and its
 * outbox event (CONTRACTS.md) in the same transaction as the change, so no
 * path can forget either.  A TTL refresh is an UPDATE and records nothing:
 * membership did not change.
 *
 * The read cache of every instance (lookup.c) learns of changes from the
 * same place: a row trigger on user_segments NOTIFYs the user id of every
 * row inserted, deleted, or whose expiry changed (migration 5).  NOTIFY is
 * transactional: it is delivered at commit, never for a rollback, and
 * PostgreSQL sends a payload once per transaction however often it was
 * notified, so a request that changes three of a user's segments sends
 * one notification.  A bulk change (a rollout, DELETE /segment) first calls
 * segments_cache_all(): one "*" for the whole transaction, and the row
 * trigger stays quiet in it, so a million rows cost one notification.
 * TRUNCATE notifies "*".  Migration 3 did this with statement triggers
 * and transition tables; they ran a query on every write statement, even
 * one that changed no row, and cost POST /segment/user about a quarter of
 * its throughput, while a row trigger runs only for rows that changed.
 *
 * segments_bucket() is the sticky rollout hash, defined exactly like
 * seg_bucket() in parse.c (SHA-256 of "<user>:<slug>", first four bytes
 * big-endian, modulo 10000), so every instance and the database agree.
 */
#include <stddef.h>
#include "seg.h"

const sl_pg_migration seg_migrations[] = {
    { 1, "CREATE TABLE IF NOT EXISTS users ("
         "  id bigserial PRIMARY KEY,"
         "  created_at timestamptz NOT NULL DEFAULT now());"
         "CREATE TABLE IF NOT EXISTS segments ("
         "  slug text PRIMARY KEY CHECK (slug ~ '^[A-Z0-9_]{1,64}$'),"
         "  user_percent numeric(5,2) CHECK (user_percent BETWEEN 0 AND 100),"
         "  created_at timestamptz NOT NULL DEFAULT now());"
         "CREATE TABLE IF NOT EXISTS user_segments ("
         "  user_id bigint NOT NULL REFERENCES users (id),"
         "  slug text NOT NULL REFERENCES segments (slug),"
         "  expires_at timestamptz,"
         "  added_at timestamptz NOT NULL DEFAULT now(),"
         "  PRIMARY KEY (user_id, slug));"
         "CREATE INDEX IF NOT EXISTS user_segments_slug ON user_segments (slug);"
         "CREATE INDEX IF NOT EXISTS user_segments_expires ON user_segments (expires_at)"
         "  WHERE expires_at IS NOT NULL;"
         "CREATE TABLE IF NOT EXISTS segment_history ("
         "  id bigserial PRIMARY KEY,"
         "  user_id bigint NOT NULL,"
         "  slug text NOT NULL,"
         "  operation char(1) NOT NULL CHECK (operation IN ('I', 'D')),"
         "  executed_at timestamptz NOT NULL DEFAULT now());"
         "CREATE INDEX IF NOT EXISTS segment_history_user ON segment_history"
         "  (user_id, executed_at, id);"
         /* CONTRACTS.md: these six columns (migration 4 adds traceparent);
       * the outbox module adds its claim columns, index and trigger
       * itself. */
         "CREATE TABLE IF NOT EXISTS outbox ("
         "  id bigserial PRIMARY KEY,"
         "  aggregate_type text NOT NULL,"
         "  aggregate_id text NOT NULL,"
         "  event_type text NOT NULL,"
         "  payload jsonb,"
         "  created_at timestamptz NOT NULL DEFAULT now());"
         /* The per-install secret that signs report names, shared by every
       * instance over the same database. */
         "CREATE TABLE IF NOT EXISTS segments_install ("
         "  id int PRIMARY KEY CHECK (id = 1),"
         "  secret text NOT NULL);"
         "INSERT INTO segments_install (id, secret) VALUES (1,"
         "  replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''))"
         "  ON CONFLICT (id) DO NOTHING;"
         "CREATE OR REPLACE FUNCTION segments_bucket(uid bigint, slug text) RETURNS int"
         "  LANGUAGE sql IMMUTABLE STRICT AS $$"
         "  SELECT (('x' || encode(substr(sha256(convert_to(uid::text || ':' || slug, 'UTF8')),"
         "          1, 4), 'hex'))::bit(32)::bigint % 10000)::int $$;"
         "CREATE OR REPLACE FUNCTION segments_membership_change() RETURNS trigger"
         "  LANGUAGE plpgsql AS $$"
         "DECLARE uid bigint; s text; op char(1);"
         "BEGIN"
         "  IF TG_OP = 'INSERT' THEN uid := NEW.user_id; s := NEW.slug; op := 'I';"
         "  ELSE uid := OLD.user_id; s := OLD.slug; op := 'D'; END IF;"
         "  INSERT INTO segment_history (user_id, slug, operation) VALUES (uid, s, op);"
         "  INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)"
         "  VALUES ('segment', uid::text,"
         "          CASE op WHEN 'I' THEN 'segment_added' ELSE 'segment_removed' END,"
         "          jsonb_build_object('user_id', uid, 'slug', s, 'operation', op, 'ts',"
         "            to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')));"
         "  RETURN NULL;"
         "END $$;"
         "DROP TRIGGER IF EXISTS user_segments_change ON user_segments;"
         "CREATE TRIGGER user_segments_change AFTER INSERT OR DELETE ON user_segments"
         "  FOR EACH ROW EXECUTE FUNCTION segments_membership_change();" },
    /* The sequence stops at the largest id a client can address (2^53 - 1,
     * a JSON number exactly) instead of handing out ids no request can
     * name; a database whose sequence already passed it is left alone.
     * history_retention deletes by age: an index on it. */
    { 2, "DO $$ BEGIN"
         "  IF (SELECT last_value FROM users_id_seq) <= 9007199254740991 THEN"
         "    ALTER SEQUENCE users_id_seq MAXVALUE 9007199254740991;"
         "  END IF;"
         "END $$;"
         "CREATE INDEX IF NOT EXISTS segment_history_executed ON segment_history (executed_at);" },
    { 3, "CREATE OR REPLACE FUNCTION segments_cache_notify() RETURNS trigger"
         "  LANGUAGE plpgsql AS $$"
         "DECLARE n bigint; ids text;"
         "BEGIN"
         "  IF TG_OP = 'TRUNCATE' THEN"
         "    PERFORM pg_notify('segments_cache', '*'); RETURN NULL;"
         "  ELSIF TG_OP = 'INSERT' THEN"
         "    SELECT count(DISTINCT user_id), string_agg(DISTINCT user_id::text, ',')"
         "      INTO n, ids FROM changed_new;"
         "  ELSIF TG_OP = 'DELETE' THEN"
         "    SELECT count(DISTINCT user_id), string_agg(DISTINCT user_id::text, ',')"
         "      INTO n, ids FROM changed_old;"
         "  ELSE"
         "    SELECT count(DISTINCT user_id), string_agg(DISTINCT user_id::text, ',') INTO n, ids"
         "      FROM (SELECT user_id FROM changed_old UNION ALL SELECT user_id FROM changed_new) b;"
         "  END IF;"
         /* 200 ids of 16 digits stay well within NOTIFY's 8000 bytes */
         "  IF n > 200 THEN ids := '*'; END IF;"
         "  IF n > 0 THEN PERFORM pg_notify('segments_cache', ids); END IF;"
         "  RETURN NULL;"
         "END $$;"
         "DROP TRIGGER IF EXISTS user_segments_cache_insert ON user_segments;"
         "DROP TRIGGER IF EXISTS user_segments_cache_update ON user_segments;"
         "DROP TRIGGER IF EXISTS user_segments_cache_delete ON user_segments;"
         "DROP TRIGGER IF EXISTS user_segments_cache_truncate ON user_segments;"
         "CREATE TRIGGER user_segments_cache_insert AFTER INSERT ON user_segments"
         "  REFERENCING NEW TABLE AS changed_new"
         "  FOR EACH STATEMENT EXECUTE FUNCTION segments_cache_notify();"
         "CREATE TRIGGER user_segments_cache_update AFTER UPDATE ON user_segments"
         "  REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new"
         "  FOR EACH STATEMENT EXECUTE FUNCTION segments_cache_notify();"
         "CREATE TRIGGER user_segments_cache_delete AFTER DELETE ON user_segments"
         "  REFERENCING OLD TABLE AS changed_old"
         "  FOR EACH STATEMENT EXECUTE FUNCTION segments_cache_notify();"
         "CREATE TRIGGER user_segments_cache_truncate AFTER TRUNCATE ON user_segments"
         "  FOR EACH STATEMENT EXECUTE FUNCTION segments_cache_notify();" },
    /* Every create, update and delete is an event (sluice-api(7) lists
     * them): users and segments get row triggers like memberships, so
     * that no path (POST /user, a user created on demand, PATCH, a
     * rollout) can forget its event or write it outside its transaction.
     * Every outbox row is written by segments_outbox(), the one place
     * that knows the outbox's columns. */
    { 4,
      "ALTER TABLE segments ADD COLUMN IF NOT EXISTS description text;"
      "CREATE OR REPLACE FUNCTION segments_outbox(p_aggregate_type text, p_aggregate_id text,"
      "  p_event_type text, p_payload jsonb) RETURNS void LANGUAGE sql AS $$"
      "  INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)"
      "  VALUES (p_aggregate_type, p_aggregate_id, p_event_type, p_payload) $$;"
      "CREATE OR REPLACE FUNCTION segments_event_ts() RETURNS text LANGUAGE sql STABLE AS $$"
      "  SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') $$;"
      "CREATE OR REPLACE FUNCTION segments_membership_change() RETURNS trigger"
      "  LANGUAGE plpgsql AS $$"
      "DECLARE uid bigint; s text; op char(1);"
      "BEGIN"
      "  IF TG_OP = 'INSERT' THEN uid := NEW.user_id; s := NEW.slug; op := 'I';"
      "  ELSE uid := OLD.user_id; s := OLD.slug; op := 'D'; END IF;"
      "  INSERT INTO segment_history (user_id, slug, operation) VALUES (uid, s, op);"
      "  PERFORM segments_outbox('segment', uid::text,"
      "          CASE op WHEN 'I' THEN 'segment_added' ELSE 'segment_removed' END,"
      "          jsonb_build_object('user_id', uid, 'slug', s, 'operation', op,"
      "                             'ts', segments_event_ts()));"
      "  RETURN NULL;"
      "END $$;"
      "CREATE OR REPLACE FUNCTION segments_user_created() RETURNS trigger"
      "  LANGUAGE plpgsql AS $$"
      "BEGIN"
      "  PERFORM segments_outbox('user', NEW.id::text, 'user_created',"
      "          jsonb_build_object('user_id', NEW.id, 'slug', '', 'operation', 'N',"
      "                             'ts', segments_event_ts()));"
      "  RETURN NULL;"
      "END $$;"
      "DROP TRIGGER IF EXISTS users_created ON users;"
      "CREATE TRIGGER users_created AFTER INSERT ON users"
      "  FOR EACH ROW EXECUTE FUNCTION segments_user_created();"
      /* A segment's own events: aggregate segment_def keyed by its slug
       * (aggregate segment stays keyed by user id, as it always was);
       * user_id 0, since no user is concerned. */
      "CREATE OR REPLACE FUNCTION segments_segment_change() RETURNS trigger"
      "  LANGUAGE plpgsql AS $$"
      "BEGIN"
      "  IF TG_OP = 'INSERT' THEN"
      "    PERFORM segments_outbox('segment_def', NEW.slug, 'segment_created',"
      "            jsonb_build_object('user_id', 0, 'slug', NEW.slug, 'operation', 'C',"
      "                               'user_percent', NEW.user_percent,"
      "                               'description', NEW.description, 'ts', segments_event_ts()));"
      "  ELSIF TG_OP = 'UPDATE' THEN"
      "    PERFORM segments_outbox('segment_def', NEW.slug, 'segment_updated',"
      "            jsonb_build_object('user_id', 0, 'slug', NEW.slug, 'operation', 'U',"
      "                               'user_percent', NEW.user_percent,"
      "                               'description', NEW.description,"
      "                               'previous', jsonb_build_object("
      "                                 'user_percent', OLD.user_percent,"
      "                                 'description', OLD.description),"
      "                               'ts', segments_event_ts()));"
      "  ELSE"
      "    PERFORM segments_outbox('segment_def', OLD.slug, 'segment_deleted',"
      "            jsonb_build_object('user_id', 0, 'slug', OLD.slug, 'operation', 'X',"
      "                               'ts', segments_event_ts()));"
      "  END IF;"
      "  RETURN NULL;"
      "END $$;"
      "DROP TRIGGER IF EXISTS segments_change ON segments;"
      /* an UPDATE that changes nothing is no event */
      "CREATE TRIGGER segments_change AFTER INSERT OR DELETE ON segments"
      "  FOR EACH ROW EXECUTE FUNCTION segments_segment_change();"
      "DROP TRIGGER IF EXISTS segments_update ON segments;"
      "CREATE TRIGGER segments_update AFTER UPDATE ON segments"
      "  FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW)"
      "  EXECUTE FUNCTION segments_segment_change();" },
    /* Row-level invalidation in place of migration 3's statement triggers
     * (see the top of this file); its TRUNCATE trigger stays. */
    { 5,
      "CREATE OR REPLACE FUNCTION segments_cache_row() RETURNS trigger"
      "  LANGUAGE plpgsql AS $$"
      "BEGIN"
      "  IF current_setting('sluice.segments_cache_all', true) = 'on' THEN RETURN NULL; END IF;"
      "  IF TG_OP <> 'INSERT' THEN PERFORM pg_notify('segments_cache', OLD.user_id::text); END IF;"
      "  IF TG_OP <> 'DELETE' THEN PERFORM pg_notify('segments_cache', NEW.user_id::text); END IF;"
      "  RETURN NULL;"
      "END $$;"
      "CREATE OR REPLACE FUNCTION segments_cache_all() RETURNS void"
      "  LANGUAGE sql AS $$"
      "  SELECT set_config('sluice.segments_cache_all', 'on', true);"
      "  SELECT pg_notify('segments_cache', '*') $$;"
      "DROP TRIGGER IF EXISTS user_segments_cache_insert ON user_segments;"
      "DROP TRIGGER IF EXISTS user_segments_cache_update ON user_segments;"
      "DROP TRIGGER IF EXISTS user_segments_cache_delete ON user_segments;"
      "DROP TRIGGER IF EXISTS user_segments_cache ON user_segments;"
      "DROP TRIGGER IF EXISTS user_segments_cache_expiry ON user_segments;"
      "CREATE TRIGGER user_segments_cache AFTER INSERT OR DELETE ON user_segments"
      "  FOR EACH ROW EXECUTE FUNCTION segments_cache_row();"
      /* an upsert that leaves the row as it was changes no answer */
      "CREATE TRIGGER user_segments_cache_expiry AFTER UPDATE ON user_segments FOR EACH ROW"
      "  WHEN ((OLD.user_id, OLD.slug, OLD.expires_at)"
      "        IS DISTINCT FROM (NEW.user_id, NEW.slug, NEW.expires_at))"
      "  EXECUTE FUNCTION segments_cache_row();" },
    /* The writer's trace context with every outbox row: the pg connector
     * sets sluice.traceparent in every transaction begun under a trace,
     * and for every statement sent under one outside a transaction, and
     * segments_outbox() (migration 4: the one function that writes this
     * module's outbox rows, from the row triggers) stores it; the relay
     * sends it as the message's traceparent header.  NULL for work done
     * with no trace (the TTL sweeper). */
    { 6, "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS traceparent text;"
         "CREATE OR REPLACE FUNCTION segments_outbox(p_aggregate_type text, p_aggregate_id text,"
         "  p_event_type text, p_payload jsonb) RETURNS void LANGUAGE sql AS $$"
         "  INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload, traceparent)"
         "  VALUES (p_aggregate_type, p_aggregate_id, p_event_type, p_payload,"
         "          nullif(current_setting('sluice.traceparent', true), '')) $$;" },
};

const size_t seg_nmigrations = sizeof(seg_migrations) / sizeof(seg_migrations[0]);

static void schema_applied(sl_pg *pg, int applied, const char *err, void *arg)
{
    sl_ctx *ctx = arg;

    (void)pg;
    if (err == NULL)
        sl_log(ctx, SL_LOG_INFO, "applied %d migration(s)", applied);
    sl_schema_done(ctx, err);
}

/* `sluiced --init-schema`: the same migrations start() applies, once. */
int seg_init_schema(sl_ctx *ctx)
{
    sl_pg *pg = sl_pg_new(ctx);

    if (pg == NULL)
        return sl_fail(ctx, "no PostgreSQL handle: is [postgres] configured?");
    if (sl_pg_migrate(pg, "segments", seg_migrations, seg_nmigrations, schema_applied, ctx) != 0)
        return sl_fail(ctx, "cannot queue the migrations");
    return 0;
}
