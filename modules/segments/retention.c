/*
 * retention.c - segment_history rows older than history_retention are
 * removed by a periodic delete of at most history_delete_batch rows, so
 * the table stays bounded without one long statement holding locks: a
 * full batch is followed at once by the next, a partial one ends the
 * round until history_sweep_interval has passed.  Several instances over
 * one database skip the rows another is deleting.
 */
#include <stdio.h>
#include "seg.h"

/* $1 the age (s), $2 the most rows removed by one statement. */
static const char SQL_RETENTION[] =
        "DELETE FROM segment_history WHERE id IN ("
        " SELECT id FROM segment_history"
        " WHERE executed_at < now() - make_interval(secs => $1::double precision)"
        " ORDER BY executed_at LIMIT $2::int FOR UPDATE SKIP LOCKED)";

static void on_deleted(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    seg *s = arg;
    long long n;

    (void)pg;
    if (err != NULL) {
        sl_log(s->ctx, SL_LOG_WARN, "history retention: %s", err);
        sl_timer_arm(s->retention_timer, s->retention_interval);
        return;
    }
    n = sl_pg_affected(res);
    sl_series_add(s->s_history_removed, (double)n);
    sl_timer_arm(s->retention_timer, n >= s->retention_batch ? 0.01 : s->retention_interval);
}

static void retention_tick(void *arg)
{
    seg *s = arg;
    char age[32], batch[24];
    const char *p[2] = { age, batch };

    if (!s->migrated) {
        sl_timer_arm(s->retention_timer, s->retention_interval);
        return;
    }
    snprintf(age, sizeof(age), "%.0f", s->retention);
    snprintf(batch, sizeof(batch), "%lld", s->retention_batch);
    if (sl_pg_exec(s->pg, s->st[SEG_ST_RETENTION], 2, p, on_deleted, s) != 0)
        sl_timer_arm(s->retention_timer, s->retention_interval);
}

int seg_retention_start(seg *s)
{
    static const seg_sql sql[] = {
        { SEG_ST_RETENTION, "segments_retention", SQL_RETENTION },
    };
    sl_metric *m;

    s->retention = sl_opt_seconds(s->ctx, "history_retention");
    s->retention_batch = sl_opt_int(s->ctx, "history_delete_batch");
    s->retention_interval = sl_opt_seconds(s->ctx, "history_sweep_interval");
    m = sl_counter(s->ctx, "sluice_segments_history_removed_total",
                   "segment_history rows removed by history_retention", NULL);
    if (m == NULL)
        return -1;
    s->s_history_removed = sl_series_of(m);
    sl_series_add(s->s_history_removed, 0);
    if (s->retention <= 0)
        return 0;
    if (seg_prepare(s, sql, 1) != 0)
        return -1;
    s->retention_timer = sl_timer_new(s->ctx, s->retention_interval, 0, retention_tick, s);
    return s->retention_timer != NULL ? 0 : -1;
}
