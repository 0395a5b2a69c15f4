/*
 * connector.c - what the connectors share; see connector.h.
 */
#include <stdio.h>
#include "connector.h"
#include "daemon/core.h"
#include "conf/errors.h"

int sl_conn_track(sl_conn_life *life, sl_ctx *ctx, const char *kind, void *obj,
                  void (*destroy)(void *obj), sl_release_fn release, sl_ready_fn ready)
{
    life->destroy = destroy;
    life->obj = obj;
    life->res = sl_track(ctx, kind, obj, release, ready);
    if (life->res == NULL)
        return -1;
    life->ctx = ctx;
    return 0;
}

void sl_conn_enter(sl_conn_life *life)
{
    life->depth++;
}

int sl_conn_leave(sl_conn_life *life)
{
    if (!life->freeing) {
        life->depth--;
        return 1;
    }
    if (--life->depth == 0)
        life->destroy(life->obj);
    return 0;
}

void sl_conn_released(sl_conn_life *life)
{
    if (life->freeing)
        return;
    life->freeing = 1;
    life->ctx = NULL;
    life->res = NULL;
    if (life->depth == 0)
        life->destroy(life->obj);
}

void sl_conn_free(sl_conn_life *life)
{
    if (life->freeing)
        return;
    if (life->ctx != NULL)
        sl_untrack(life->ctx, life->res);
    sl_conn_released(life);
}

void sl_conn_arm(struct event *ev, double seconds)
{
    struct timeval tv;

    if (seconds < 0)
        seconds = 0;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    event_add(ev, &tv);
}

const sl_optset *sl_conn_options(const char *name, const sl_option *decl, sl_optset *defaults,
                                 char *err, size_t errlen)
{
    const sl_option *const tables[] = { decl };
    const sl_optset *set = sl_cycle_section(name);
    sl_errors errs = { NULL, 0, 0 };

    if (set != NULL)
        return set;
    if (sl_options_validate(tables, 1, NULL, NULL, defaults, &errs) != 0) {
        snprintf(err, errlen, "[%s]: %s", name, errs.n > 0 ? errs.msgs[0] : "bad defaults");
        sl_errors_free(&errs);
        return NULL;
    }
    return defaults;
}
