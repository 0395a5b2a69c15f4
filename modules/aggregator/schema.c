/*
 * schema.c - tables and aggregate statements (schema.h).  ClickHouse
 * 18.16 is the oldest server this runs against: no DateTime64, so times
 * are a DateTime('UTC') plus their milliseconds.
 */
#include <stdlib.h>
#include "schema.h"

const char *const agg_raw_tables[AGG_NHANDLERS] = { "page_views", "analytics_events",
                                                    "segment_events" };

const char *const agg_raw_columns[AGG_NHANDLERS] = {
    "event_id, event_type, page_id, user_id, duration_s, ts, ts_ms, minute, kafka_topic, "
    "kafka_partition, kafka_offset",
    "id, event_type, user_id, properties, ts, ts_ms, minute, kafka_topic, kafka_partition, "
    "kafka_offset, ts_source, id_source",
    "event_id, user_id, slug, operation, ts, ts_ms, minute, kafka_topic, kafka_partition, "
    "kafka_offset",
};

#define SOURCE_COLUMNS "kafka_topic String, kafka_partition Int32, kafka_offset Int64"
#define TIME_COLUMNS "ts DateTime('UTC'), ts_ms UInt16, minute DateTime('UTC')"
/* Where an analytics event's time and id came from: 'event' (its own
 * fields) or 'consumed' / 'derived' (validate.h); rows written before the
 * columns existed had both. */
#define TS_SOURCE_COLUMN "ts_source String DEFAULT 'event'"
#define ID_SOURCE_COLUMN "id_source String DEFAULT 'event'"
#define ANALYTICS_SOURCE_COLUMNS TS_SOURCE_COLUMN ", " ID_SOURCE_COLUMN

/* One table, from which both the one-server statement and the cluster's
 * pair (a Replicated table on every node, a Distributed one over them)
 * are made. */
typedef struct {
    const char *name;
    const char *columns;
    const char *version; /* ReplacingMergeTree's version column, or NULL */
    const char *keys;    /* PARTITION BY and ORDER BY */
    /* The Distributed sharding key: a function of the table's ORDER BY
     * key, so that every copy of a row (a replay, a recompute) lands on the
     * shard that holds the others and FINAL collapses them there. */
    const char *shard_key;
} agg_table;

static const agg_table tables[] = {
    { "page_views",
      "event_id String, event_type String, page_id String, user_id String, duration_s Float64, "
      "" TIME_COLUMNS ", " SOURCE_COLUMNS,
      NULL, "PARTITION BY toYYYYMM(minute) ORDER BY (minute, page_id, event_id)",
      "sipHash64(event_id)" },
    { "page_views_per_minute",
      "page_id String, minute DateTime('UTC'), views UInt64, bounces UInt64, unique_users UInt64, "
      "avg_duration_s Float64, p95_duration_s Float64, version UInt64",
      "version", "PARTITION BY toYYYYMM(minute) ORDER BY (page_id, minute)", "sipHash64(page_id)" },
    { "analytics_events",
      "id String, event_type String, user_id String, properties String, " TIME_COLUMNS
      ", " SOURCE_COLUMNS ", " ANALYTICS_SOURCE_COLUMNS,
      NULL, "ORDER BY id", "sipHash64(id)" },
    { "segment_events",
      "event_id UInt64, user_id Int64, slug String, operation String, " TIME_COLUMNS
      ", " SOURCE_COLUMNS,
      NULL, "PARTITION BY toYYYYMM(minute) ORDER BY (minute, slug, event_id)", "event_id" },
    { "segment_changes_per_minute",
      "slug String, minute DateTime('UTC'), operation String, changes UInt64, users UInt64, "
      "version UInt64",
      "version", "PARTITION BY toYYYYMM(minute) ORDER BY (slug, minute, operation)",
      "sipHash64(slug)" },
    { "processing_errors",
      SOURCE_COLUMNS ", handler String, reason String, detail String, raw String, raw_size UInt64, "
                     "received_at DateTime('UTC')",
      NULL, "ORDER BY (kafka_topic, kafka_partition, kafka_offset)",
      "cityHash64(kafka_topic, kafka_partition, kafka_offset)" },
};
#define NTABLES (sizeof(tables) / sizeof(tables[0]))

size_t agg_schema_count(const sl_ch *ch)
{
    return sl_ch_cluster(ch)[0] != '\0' ? 2 * NTABLES : NTABLES;
}

void agg_schema_sql(const sl_ch *ch, size_t i, jbuf *sql)
{
    const char *cluster = sl_ch_cluster(ch);
    const char *db = sl_ch_database(ch);
    const agg_table *t = &tables[i % NTABLES];

    jb_reset(sql);
    if (cluster[0] == '\0') {
        jb_printf(sql, "CREATE TABLE IF NOT EXISTS %s (%s) ENGINE = ReplacingMergeTree%s%s%s %s",
                  t->name, t->columns, t->version != NULL ? "(" : "",
                  t->version != NULL ? t->version : "", t->version != NULL ? ")" : "", t->keys);
    } else if (i < NTABLES) {
        /* The replication path names the shard (a macro of each node's
         * config), so that the replicas of one shard share it. */
        jb_printf(sql,
                  "CREATE TABLE IF NOT EXISTS `%s_local` ON CLUSTER `%s` (%s) ENGINE = "
                  "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/%s.%s', "
                  "'{replica}'%s%s) %s",
                  t->name, cluster, t->columns, db, t->name, t->version != NULL ? ", " : "",
                  t->version != NULL ? t->version : "", t->keys);
    } else {
        jb_printf(sql,
                  "CREATE TABLE IF NOT EXISTS `%s` ON CLUSTER `%s` (%s) ENGINE = "
                  "Distributed('%s', '%s', '%s_local', %s)",
                  t->name, cluster, t->columns, cluster, db, t->name, t->shard_key);
    }
}

/* ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS. */
static const char *const upgrades[] = {
    /* raw became a bounded prefix: the message's own size is kept apart. */
    "ALTER TABLE processing_errors ADD COLUMN raw_size UInt64 AFTER raw",
    /* analytics events without a timestamp or an id are taken (validate.h) */
    "ALTER TABLE analytics_events ADD COLUMN " TS_SOURCE_COLUMN,
    "ALTER TABLE analytics_events ADD COLUMN " ID_SOURCE_COLUMN, NULL
};
/* A cluster's tables were all made by a version with every column. */
static const char *const no_upgrades[] = { NULL };

const char *const *agg_schema_upgrades(const sl_ch *ch)
{
    return sl_ch_cluster(ch)[0] != '\0' ? no_upgrades : upgrades;
}

static void minute_list(jbuf *sql, const int64_t *minutes, size_t n)
{
    jb_lit(sql, " FINAL WHERE minute IN (");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            jb_char(sql, ',');
        jb_lit(sql, "toDateTime(");
        jb_int(sql, minutes[i]);
        jb_char(sql, ')');
    }
    jb_char(sql, ')');
}

int agg_recompute_sql(agg_handler h, const int64_t *minutes, size_t n, uint64_t version, jbuf *sql)
{
    jb_reset(sql);
    if (n == 0 || h == AGG_H_ANALYTICS)
        return 0;
    if (h == AGG_H_PAGE_VIEWS) {
        jb_lit(sql, "INSERT INTO page_views_per_minute (page_id, minute, views, bounces, "
                    "unique_users, avg_duration_s, p95_duration_s, version) "
                    "SELECT page_id, minute, countIf(event_type = 'view'), "
                    "countIf(event_type = 'bounce'), uniqExact(user_id), avg(duration_s), "
                    "quantileExact(0.95)(duration_s), toUInt64(");
        jb_int(sql, (long long)version);
        jb_lit(sql, ") FROM page_views");
        minute_list(sql, minutes, n);
        jb_lit(sql, " GROUP BY page_id, minute");
    } else {
        jb_lit(sql, "INSERT INTO segment_changes_per_minute (slug, minute, operation, changes, "
                    "users, version) SELECT slug, minute, operation, count(), uniqExact(user_id), "
                    "toUInt64(");
        jb_int(sql, (long long)version);
        jb_lit(sql, ") FROM segment_events");
        minute_list(sql, minutes, n);
        jb_lit(sql, " GROUP BY slug, minute, operation");
    }
    return 1;
}

/* `sluiced --init-schema`: the statements start() runs, one after the
 * other (the creates, then the upgrades), then a retention sweep
 * (retention.h); the first error ends it. */
typedef struct {
    sl_ctx *ctx;
    size_t next; /* over the creates, then the upgrades */
    jbuf sql;
    agg_retention retention;
} schema_run;

static void retention_done(agg_retention *ret, const char *err, void *arg)
{
    schema_run *r = arg;

    (void)ret;
    sl_schema_done(r->ctx, err);
}

static void schema_run_free(void *p)
{
    schema_run *r = p;

    jb_free(&r->sql);
    free(r);
}

static void schema_step(sl_ch *ch, const sl_ch_result *res, void *arg)
{
    schema_run *r = arg;
    size_t ncreate = agg_schema_count(ch);
    const char *sql;

    if (res != NULL && res->error != NULL &&
        !(r->next > ncreate && res->code == AGG_CH_DUPLICATE_COLUMN)) {
        sl_schema_done(r->ctx, res->error);
        return;
    }
    if (r->next < ncreate) {
        agg_schema_sql(ch, r->next, &r->sql);
        sql = r->sql.oom ? NULL : r->sql.p;
        if (sql == NULL) {
            sl_schema_done(r->ctx, "out of memory");
            return;
        }
    } else {
        sql = agg_schema_upgrades(ch)[r->next - ncreate];
    }
    if (sql == NULL) {
        sl_log(r->ctx, SL_LOG_INFO, "%zu ClickHouse statements applied", r->next);
        /* then what the retention options delete */
        agg_retention_init(&r->retention, r->ctx);
        agg_retention_sweep(&r->retention, ch, retention_done, r);
        return;
    }
    r->next++;
    if (sl_ch_exec(ch, sql, schema_step, r) != 0)
        sl_schema_done(r->ctx, "cannot submit a statement (out of memory?)");
}

int agg_init_schema(sl_ctx *ctx)
{
    schema_run *r = calloc(1, sizeof(*r));
    sl_ch *ch;

    if (r == NULL)
        return sl_fail(ctx, "out of memory");
    if (sl_track(ctx, "schema run", r, schema_run_free, NULL) == NULL) {
        free(r);
        return sl_fail(ctx, "out of memory");
    }
    r->ctx = ctx;
    ch = sl_ch_new(ctx);
    if (ch == NULL)
        return sl_fail(ctx, "no ClickHouse handle: is [clickhouse] configured?");
    schema_step(ch, NULL, r);
    return 0;
}
