/*
 * connector.h - what the connectors (kafka/, pg/, redis/, clickhouse/ and
 * the curl client http/chttp.c) share: the one lifetime guard of a handle
 * that may be freed from inside its own callbacks, timers armed in
 * seconds, and the options of their section.
 *
 * Names, the same in every connector, X being its short name (kafka, pg,
 * redis, ch): what modules call is SL_API sl_X_* in <sluice/...>; what the
 * rest of the core calls is sl_X_* in connectors/NAME/NAME.h; what the
 * files of one connector share is X_* in connectors/NAME/NAME_int.h
 * (kafka_, pg_, redis_, ch_); a function of one file is static and has no
 * prefix.
 */
#ifndef SL_CONNECTOR_H
#define SL_CONNECTOR_H

#include <stddef.h>
#include <event2/event.h>
#include <sluice/sluice.h>
#include "conf/option.h"

/* The longest secret a *password_file may hold, its NUL included. */
#define SL_SECRET_MAX 1024

/*
 * A handle's owner and the frames of the handle's own code on the stack.
 * A handle is freed either by its module or by the instance's release;
 * when that happens inside one of its callbacks (depth > 0) it is only
 * marked, and the outermost frame destroys it on its way out, once no
 * library code of the handle is running any more.
 */
typedef struct {
    sl_ctx *ctx; /* NULL once freed or released */
    sl_resource *res;
    int depth;
    int freeing;
    void (*destroy)(void *obj);
    void *obj;
} sl_conn_life;

/* Records `obj` against the instance; `release` must call
 * sl_conn_released().  Returns 0 or -1 (out of memory). */
int sl_conn_track(sl_conn_life *life, sl_ctx *ctx, const char *kind, void *obj,
                  void (*destroy)(void *obj), sl_release_fn release, sl_ready_fn ready);
/* Around every entry from the loop into the handle's code.  Leave returns
 * 1 while the handle lives, 0 once it is being freed: it may be gone
 * already, so the caller must not touch it any more. */
void sl_conn_enter(sl_conn_life *life);
int sl_conn_leave(sl_conn_life *life);
/* The module frees the handle. */
void sl_conn_free(sl_conn_life *life);
/* The instance released it (from its release function). */
void sl_conn_released(sl_conn_life *life);

/* event_add() with a timeout in seconds (negative: now). */
void sl_conn_arm(struct event *ev, double seconds);

/*
 * A secret kept out of the config file: the first line of the file at
 * `path`, without its line end, in `out`.  -1 with `err` set when the
 * file cannot be read, its first line is empty, or it does not fit.
 */
int sl_conn_read_secret(const char *path, char *out, size_t outlen, char *err, size_t errlen);
/* For a section's check(): the file named by option `key` (when set) can
 * be read, else a config error at the option's line.  Returns 0 or -1. */
int sl_conn_check_secret(const sl_optset *opts, const char *section, const char *key,
                         const char *file, sl_errors *errs);

/*
 * The validated options of connector section `name` in the current
 * generation, or, when the config has no such section, its defaults
 * validated into `defaults` (which the caller frees with sl_optset_free()
 * after use).  Returns NULL with the reason in `err`.
 */
const sl_optset *sl_conn_options(const char *name, const sl_option *decl, sl_optset *defaults,
                                 char *err, size_t errlen);

#endif
