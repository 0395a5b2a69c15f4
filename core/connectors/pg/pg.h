/*
 * pg.h - what the core knows of the PostgreSQL connector; modules use
 * <sluice/pg.h>.
 */
#ifndef SL_PG_H
#define SL_PG_H

#include "conf/section.h"
#include <sluice/pg.h>

/* The [postgres] section: dsn, pool size, timeouts, queue bound. */
extern const sl_section_schema sl_postgres_schema;

/*
 * For the migrations runner: a transaction whose statements have no client
 * deadline and that tx_timeout does not end (migrations may take long; the
 * advisory lock may be held by a peer for as long as its migrations run).
 */
sl_pg_tx *sl_pg_tx_begin_unbounded(sl_pg *pg);

/* Runs `sql`, which may hold several statements and no parameters, in a
 * transaction (the simple query protocol); otherwise like sl_pg_tx_query. */
int sl_pg_tx_script(sl_pg_tx *tx, const char *sql, sl_pg_fn fn, void *arg);

/* Makes the transaction own `obj`: free_fn(obj) runs when the transaction
 * is freed, after its end callback or with the handle, so that state a
 * chain of callbacks shares is never leaked. */
void sl_pg_tx_own(sl_pg_tx *tx, void *obj, void (*free_fn)(void *));

/* sl_pg_migrate() itself, in migrate.c. */
int sl_pg_migrate_start(sl_pg *pg, const char *module, const sl_pg_migration *migrations, size_t n,
                        sl_pg_migrate_fn fn, void *arg);

/* The handle's owner, for log lines: "module" or "module/instance". */
const char *sl_pg_label(const sl_pg *pg);

#endif
