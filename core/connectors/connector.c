/*
 * connector.c - what the connectors share; see connector.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
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

int sl_conn_read_secret(const char *path, char *out, size_t outlen, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fgets(out, (int)outlen, f) == NULL)
        out[0] = '\0';
    fclose(f);
    n = strcspn(out, "\r\n");
    if (out[n] == '\0' && n == outlen - 1) {
        out[0] = '\0';
        snprintf(err, errlen, "%s: the first line is longer than %zu bytes", path, outlen - 2);
        return -1;
    }
    out[n] = '\0';
    if (n == 0) {
        snprintf(err, errlen, "%s: the first line is empty", path);
        return -1;
    }
    return 0;
}

int sl_conn_check_secret(const sl_optset *opts, const char *section, const char *key,
                         const char *file, sl_errors *errs)
{
    const sl_optval *v = sl_optset_get(opts, key);
    char secret[SL_SECRET_MAX], err[512];
    int rc;

    if (v == NULL || v->raw[0] == '\0')
        return 0;
    rc = sl_conn_read_secret(v->raw, secret, sizeof(secret), err, sizeof(err));
    memset(secret, 0, sizeof(secret));
    if (rc == 0)
        return 0;
    sl_errors_add(errs, file, v->line, "[%s] %s: %s", section, key, err);
    return -1;
}
