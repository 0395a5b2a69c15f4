/*
 * migrate.c - versioned schema migrations for modules, over sl_pg.
 *
 * One transaction does everything: it takes a transaction-scoped advisory
 * lock (so a second instance starting at the same moment waits, then sees
 * what the first applied), creates sluice_migrations if missing, reads the
 * versions this module already has, and runs the missing ones in order,
 * recording each.  All or nothing: a failing migration rolls back the
 * whole run, recorded versions included.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daemon/core.h"
#include "daemon/log.h"
#include "pg.h"

/* One lock for every module's migrations ("SLUICE" and 1): runs are short
 * and rare, and one lock also serialises the CREATE TABLE IF NOT EXISTS,
 * which is not safe against a concurrent twin. */
#define MIGRATE_LOCK_KEY "6002266176527597569"

typedef struct {
    sl_pg *pg;
    sl_pg_tx *tx;
    char *module;
    sl_pg_migration *list; /* copies */
    size_t n;
    int applied;
    char err[768]; /* the first failure, with what it was */
    sl_pg_migrate_fn fn;
    void *arg;
} migration_run;

static void run_free(void *obj)
{
    migration_run *m = obj;

    for (size_t i = 0; i < m->n; i++)
        free((char *)m->list[i].sql);
    free(m->list);
    free(m->module);
    free(m);
}

static void note_error(migration_run *m, const char *what, const char *err)
{
    if (err != NULL && m->err[0] == '\0')
        snprintf(m->err, sizeof(m->err), "%s: %s", what, err);
}

static void on_committed(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    migration_run *m = arg;

    (void)res;
    note_error(m, "commit", err);
    if (m->err[0] != '\0') {
        sl_log_core(SL_LOG_ERROR, "postgres", "%s: migrations of %s failed: %s", sl_pg_label(pg),
                    m->module, m->err);
        m->fn(pg, 0, m->err, m->arg);
        return;
    }
    if (m->applied > 0)
        sl_log_core(SL_LOG_INFO, "postgres", "%s: applied %d migration(s) of %s", sl_pg_label(pg),
                    m->applied, m->module);
    m->fn(pg, m->applied, NULL, m->arg);
    /* The transaction frees `m` once this returns. */
}

static void on_step(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    (void)pg;
    (void)res;
    note_error(arg, "preparing sluice_migrations", err);
}

static void on_migration(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    migration_run *m = arg;
    char what[64];

    (void)pg;
    (void)res;
    if (err != NULL && m->err[0] == '\0') {
        /* The first failing statement is the migration itself or its
         * record; either way the count says which one. */
        snprintf(what, sizeof(what), "migration %d", m->list[m->applied].version);
        note_error(m, what, err);
    }
}

static void on_recorded(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    migration_run *m = arg;

    (void)pg;
    (void)res;
    if (err == NULL && m->err[0] == '\0')
        m->applied++;
}

/* The versions recorded for the module arrived: queue what is missing. */
static void on_versions(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    migration_run *m = arg;
    int rows = sl_pg_nrows(res);
    char module_version[16];
    const char *params[2] = { m->module, module_version };
    size_t todo = 0;

    (void)pg;
    note_error(m, "reading sluice_migrations", err);
    if (err == NULL) {
        /* Keep only the missing ones, in order, so that list[applied] is
         * the one running when on_migration sees an error. */
        for (size_t i = 0; i < m->n; i++) {
            int have = 0;
            for (int r = 0; r < rows && !have; r++)
                have = atoi(sl_pg_value(res, r, 0)) == m->list[i].version;
            if (have)
                free((char *)m->list[i].sql);
            else
                m->list[todo++] = m->list[i];
        }
        m->n = todo;
    }
    for (size_t i = 0; err == NULL && i < m->n; i++) {
        snprintf(module_version, sizeof(module_version), "%d", m->list[i].version);
        if (sl_pg_tx_script(m->tx, m->list[i].sql, on_migration, m) != 0 ||
            sl_pg_tx_query(m->tx, "INSERT INTO sluice_migrations (module, version) VALUES ($1, $2)",
                           2, params, on_recorded, m) != 0) {
            note_error(m, "queueing migrations", "out of memory");
            break;
        }
    }
    /* The commit reports the outcome, and rolls back what a failure left. */
    if (m->err[0] != '\0')
        sl_pg_tx_rollback(m->tx, on_committed, m);
    else
        sl_pg_tx_commit(m->tx, on_committed, m);
}

int sl_pg_migrate_start(sl_pg *pg, const char *module, const sl_pg_migration *migrations, size_t n,
                        sl_pg_migrate_fn fn, void *arg)
{
    static const char create[] = "CREATE TABLE IF NOT EXISTS sluice_migrations ("
                                 " module text NOT NULL,"
                                 " version integer NOT NULL,"
                                 " applied_at timestamptz NOT NULL DEFAULT now(),"
                                 " PRIMARY KEY (module, version))";
    const char *lock[] = { MIGRATE_LOCK_KEY };
    const char *module_param[] = { module };
    migration_run *m;

    if (pg == NULL || module == NULL || fn == NULL || (n > 0 && migrations == NULL))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (migrations[i].sql == NULL || migrations[i].version <= 0 ||
            (i > 0 && migrations[i].version <= migrations[i - 1].version)) {
            sl_log_core(SL_LOG_ERROR, "postgres",
                        "%s: migrations of %s: versions must be positive and ascending, "
                        "each with SQL (entry %zu)",
                        sl_pg_label(pg), module, i);
            return -1;
        }
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -1;
    m->pg = pg;
    m->fn = fn;
    m->arg = arg;
    m->module = strdup(module);
    m->list = calloc(n + 1, sizeof(*m->list));
    if (m->module == NULL || m->list == NULL) {
        run_free(m);
        return -1;
    }
    for (size_t i = 0; i < n; i++, m->n++) {
        m->list[i].version = migrations[i].version;
        m->list[i].sql = strdup(migrations[i].sql);
        if (m->list[i].sql == NULL) {
            run_free(m);
            return -1;
        }
    }
    m->tx = sl_pg_tx_begin_unbounded(pg);
    if (m->tx == NULL) {
        run_free(m);
        return -1;
    }
    sl_pg_tx_own(m->tx, m, run_free);
    /* on_versions goes on from there; whatever fails on the way shows in
     * the error the commit reports. */
    if (sl_pg_tx_script(m->tx, "SET LOCAL statement_timeout = 0", on_step, m) != 0 ||
        sl_pg_tx_query(m->tx, "SELECT pg_advisory_xact_lock($1::bigint)", 1, lock, on_step, m) !=
                0 ||
        sl_pg_tx_script(m->tx, create, on_step, m) != 0 ||
        sl_pg_tx_query(m->tx, "SELECT version FROM sluice_migrations WHERE module = $1", 1,
                       module_param, on_versions, m) != 0) {
        note_error(m, "queueing migrations", "out of memory");
        /* Ends the transaction; `fn` hears of it.  If even that cannot be
         * queued, the transaction (owning `m`) goes with the handle. */
        return sl_pg_tx_rollback(m->tx, on_committed, m);
    }
    return 0;
}
