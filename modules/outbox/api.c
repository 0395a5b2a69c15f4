/*
 * api.c - under /outbox/ (/outbox/NAME/ for a named instance):
 *
 *   GET  status          this relay's counts, the table's pending and
 *                        parked rows, the first 100 parked rows with errors
 *   POST retry[?id=N | ?aggregate_id=A]
 *                        un-parks every parked row, or only row N, or only
 *                        the rows of aggregate A: attempts reset,
 *                        published again in order; a target with no
 *                        parked row is a 404
 *
 * PostgreSQL's error texts go to the log; callers get a short reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "outbox.h"

typedef struct {
    ob *o;
    sl_req *req;
    int targeted; /* retry of one row or aggregate */
} ob_call;

static void reply_pg_error(ob_call *c, const char *err)
{
    sl_log(c->o->ctx, SL_LOG_WARN, "%s (request %s): %s", sl_req_path(c->req), sl_req_id(c->req),
           err);
    sl_reply_error(c->req, 503, "outbox table unavailable");
}

static void on_parked(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    ob_call *c = arg;
    ob *o = c->o;
    cJSON *body, *list;
    (void)pg;

    if (err != NULL) {
        reply_pg_error(c, err);
        free(c);
        return;
    }
    body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "relay", o->me);
    cJSON_AddStringToObject(body, "table", o->table);
    cJSON_AddStringToObject(body, "topic", o->topic);
    cJSON_AddBoolToObject(body, "stopping", o->stopping);
    cJSON_AddNumberToObject(body, "pending", (double)o->pending_rows);
    cJSON_AddNumberToObject(body, "parked_rows", (double)o->parked_rows);
    cJSON_AddNumberToObject(body, "inflight", (double)(o->q.queued + o->q.flying));
    cJSON_AddNumberToObject(body, "producing", (double)o->q.flying);
    cJSON_AddNumberToObject(body, "claimed", (double)o->claimed);
    cJSON_AddNumberToObject(body, "published", (double)o->published);
    cJSON_AddNumberToObject(body, "failed", (double)o->failed_n);
    cJSON_AddNumberToObject(body, "retried", (double)o->retried);
    cJSON_AddNumberToObject(body, "parked", (double)o->parked_n);
    cJSON_AddNumberToObject(body, "takeovers", (double)o->takeovers);
    cJSON_AddNumberToObject(body, "given_back_for_order", (double)o->released_blocked);
    cJSON_AddNumberToObject(body, "renewed", (double)o->renewed);
    list = cJSON_AddArrayToObject(body, "parked_list");
    for (int i = 0; i < sl_pg_nrows(res); i++) {
        cJSON *r = cJSON_CreateObject();
        const char *le = sl_pg_value(res, i, 5);
        cJSON_AddNumberToObject(r, "id", atof(sl_pg_value(res, i, 0)));
        cJSON_AddStringToObject(r, "aggregate_type", sl_pg_value(res, i, 1));
        cJSON_AddStringToObject(r, "aggregate_id", sl_pg_value(res, i, 2));
        cJSON_AddStringToObject(r, "event_type", sl_pg_value(res, i, 3));
        cJSON_AddNumberToObject(r, "attempts", atof(sl_pg_value(res, i, 4)));
        cJSON_AddStringToObject(r, "last_error", le != NULL ? le : "");
        cJSON_AddStringToObject(r, "created_at", sl_pg_value(res, i, 6));
        cJSON_AddItemToArray(list, r);
    }
    sl_reply_json(c->req, 200, body);
    free(c);
}

static void serve_status(sl_req *req, void *arg)
{
    ob *o = arg;
    ob_call *c = malloc(sizeof(*c));

    if (c == NULL)
        return sl_reply_error(req, 500, "out of memory");
    c->o = o;
    c->req = req;
    if (sl_pg_exec(o->pg, o->stmt[OB_SQL_PARKED], 0, NULL, on_parked, c) != 0) {
        free(c);
        sl_reply_error(req, 500, "cannot query the outbox table");
    }
}

static void on_retried(sl_pg *pg, const sl_pg_result *res, const char *err, void *arg)
{
    ob_call *c = arg;
    cJSON *body;
    (void)pg;

    if (err != NULL) {
        reply_pg_error(c, err);
        free(c);
        return;
    }
    if (c->targeted && sl_pg_affected(res) == 0) {
        sl_reply_error(c->req, 404, "no parked row matches");
        free(c);
        return;
    }
    body = cJSON_CreateObject();
    cJSON_AddNumberToObject(body, "released", (double)sl_pg_affected(res));
    sl_reply_json(c->req, 200, body);
    ob_relay_kick(c->o);
    free(c);
}

static void serve_retry(sl_req *req, void *arg)
{
    ob *o = arg;
    const char *id = sl_req_query(req, "id"), *agg = sl_req_query(req, "aggregate_id");
    ob_call *c;
    int rc;

    if (id != NULL && agg != NULL)
        return sl_reply_error(req, 400, "give id or aggregate_id, not both");
    if (id != NULL && (id[0] == '\0' || strspn(id, "0123456789") != strlen(id) || strlen(id) > 18))
        return sl_reply_error(req, 400, "id must be a row id (digits)");
    if (agg != NULL && (agg[0] == '\0' || strlen(agg) > OB_AGGREGATE_ID_MAX))
        return sl_reply_error(req, 400, "aggregate_id must be 1 to %d bytes", OB_AGGREGATE_ID_MAX);
    c = malloc(sizeof(*c));
    if (c == NULL)
        return sl_reply_error(req, 500, "out of memory");
    c->o = o;
    c->req = req;
    c->targeted = id != NULL || agg != NULL;
    if (id != NULL)
        rc = sl_pg_exec(o->pg, o->stmt[OB_SQL_RETRY_ONE], 1, &id, on_retried, c);
    else if (agg != NULL)
        rc = sl_pg_exec(o->pg, o->stmt[OB_SQL_RETRY_AGG], 1, &agg, on_retried, c);
    else
        rc = sl_pg_exec(o->pg, o->stmt[OB_SQL_RETRY], 0, NULL, on_retried, c);
    if (rc != 0) {
        free(c);
        sl_reply_error(req, 500, "cannot query the outbox table");
    }
}

static int route(ob *o, unsigned methods, const char *what, sl_route_fn fn)
{
    char path[256];
    const char *inst = sl_instance_name(o->ctx);

    if (inst[0] != '\0')
        snprintf(path, sizeof(path), "/outbox/%s/%s", inst, what);
    else
        snprintf(path, sizeof(path), "/outbox/%s", what);
    /* Releasing parked rows is operating the daemon. */
    return sl_route_scoped(o->ctx, methods, path,
                           methods == SL_GET ? SL_SCOPE_READ : SL_SCOPE_ADMIN, 0, fn, o);
}

int ob_api_start(ob *o)
{
    /* Each request runs one of these: prepared like the relay's own. */
    static const struct {
        ob_sql which;
        const char *name;
    } sql[] = { { OB_SQL_PARKED, "outbox_parked" },
                { OB_SQL_RETRY, "outbox_retry" },
                { OB_SQL_RETRY_ONE, "outbox_retry_one" },
                { OB_SQL_RETRY_AGG, "outbox_retry_agg" } };

    for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
        o->stmt[sql[i].which] = sl_pg_prepare(o->pg, sql[i].name, o->sql[sql[i].which]);
        if (o->stmt[sql[i].which] == NULL)
            return sl_fail(o->ctx, "cannot prepare %s", sql[i].name);
    }
    if (route(o, SL_GET, "status", serve_status) != 0 ||
        route(o, SL_POST, "retry", serve_retry) != 0)
        return sl_fail(o->ctx, "cannot register routes");
    return 0;
}
