/*
 * handlers.c - the built-in handlers: check a message (validate.c) and
 * render its row for the handler's raw table, in RowBinary with the
 * columns of agg_raw_columns (schema.c) in that order.  Rows carry where
 * the message came from, for tracing a number back to Kafka.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agg.h"
#include "rowbin.h"

void agg_row_source(jbuf *row, const agg_msg *m)
{
    rb_cstr(row, m->topic);
    rb_i32(row, m->partition);
    rb_i64(row, m->offset);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* ts, ts_ms, minute; returns the minute. */
static int64_t times(jbuf *row, int64_t ts_ms)
{
    int64_t sec = floor_div(ts_ms, 1000);
    int64_t minute = floor_div(sec, 60) * 60;

    rb_datetime(row, sec);
    rb_u16(row, (uint16_t)(ts_ms - sec * 1000));
    rb_datetime(row, minute);
    return minute;
}

static void id_hash(const agg_dedup *dedup, const char *id, size_t len, agg_result *res)
{
    if (dedup != NULL)
        res->id_hash = agg_dedup_prepare(dedup, id, len);
}

static void page_view(agg *a, const agg_dedup *dedup, const agg_msg *m, jbuf *row, agg_result *res)
{
    agg_page_view e;
    size_t idlen;

    res->reason =
            agg_check_page_view(m->value, m->len, &a->lim, &e, res->detail, sizeof(res->detail));
    if (res->reason != AGG_OK)
        return;
    idlen = strlen(e.event_id);
    id_hash(dedup, e.event_id, idlen, res);
    rb_str(row, e.event_id, idlen);
    rb_cstr(row, e.bounce ? "bounce" : "view");
    rb_cstr(row, e.page_id);
    rb_cstr(row, e.user_id);
    rb_f64(row, e.duration_s);
    res->minute = times(row, e.ts_ms);
    agg_row_source(row, m);
    res->type = a->s_pv_types[e.bounce];
}

static void analytics(agg *a, const agg_dedup *dedup, const agg_msg *m, jbuf *row, agg_result *res)
{
    agg_analytics e;

    res->reason =
            agg_check_analytics(m->value, m->len, &a->lim, &e, res->detail, sizeof(res->detail));
    if (res->reason != AGG_OK) {
        free(e.properties);
        return;
    }
    id_hash(dedup, e.id, strlen(e.id), res);
    rb_cstr(row, e.id);
    rb_cstr(row, e.event_type);
    rb_cstr(row, e.user_id);
    rb_cstr(row, e.properties);
    free(e.properties);
    res->minute = times(row, e.ts_ms);
    agg_row_source(row, m);
    rb_cstr(row, e.ts_consumed ? "consumed" : "event");
    rb_cstr(row, e.id_derived ? "derived" : "event");
    res->filled = (e.id_derived ? AGG_FILLED_ID : 0) | (e.ts_consumed ? AGG_FILLED_TS : 0);
    res->type = agg_evtype_series(&a->evtypes, agg_handler_name(AGG_H_ANALYTICS), 1, e.event_type);
}

static void segment(agg *a, const agg_dedup *dedup, const agg_msg *m, jbuf *row, agg_result *res)
{
    agg_segment e;
    char id[24];

    res->reason = agg_check_segment(m->value, m->len, m->event_id, m->event_type, &a->lim, &e,
                                    res->detail, sizeof(res->detail));
    if (res->reason != AGG_OK)
        return;
    id_hash(dedup, id, (size_t)snprintf(id, sizeof(id), "%llu", (unsigned long long)e.event_id),
            res);
    rb_u64(row, e.event_id);
    rb_i64(row, e.user_id);
    rb_cstr(row, e.slug);
    rb_str(row, &e.operation, 1);
    res->minute = times(row, e.ts_ms);
    agg_row_source(row, m);
    res->type = agg_evtype_series(&a->evtypes, agg_handler_name(AGG_H_SEGMENTS), 0, e.event_type);
}

void agg_handle(agg *a, agg_handler h, const agg_dedup *dedup, const agg_msg *m, jbuf *row,
                agg_result *res)
{
    res->detail[0] = '\0';
    res->minute = 0;
    res->type = NULL;
    res->filled = 0;
    if (m->value == NULL || m->len == 0) {
        res->reason = AGG_R_EMPTY;
        snprintf(res->detail, sizeof(res->detail), "the message has no value");
        return;
    }
    if (m->len > a->max_message_bytes) {
        res->reason = AGG_R_TOO_LARGE;
        snprintf(res->detail, sizeof(res->detail), "%zu bytes, more than max_message_bytes %zu",
                 m->len, a->max_message_bytes);
        return;
    }
    switch (h) {
    case AGG_H_PAGE_VIEWS:
        page_view(a, dedup, m, row, res);
        break;
    case AGG_H_ANALYTICS:
        analytics(a, dedup, m, row, res);
        break;
    default:
        segment(a, dedup, m, row, res);
        break;
    }
}
