/*
 * handlers.c - the built-in handlers: check a message (validate.c) and
 * render its row for the handler's raw table.  Rows carry where the
 * message came from, for tracing a number back to Kafka.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agg.h"

void agg_row_source(jbuf *row, const agg_msg *m)
{
    jb_lit(row, "\"kafka_topic\":");
    jb_jstr(row, m->topic, strlen(m->topic));
    jb_lit(row, ",\"kafka_partition\":");
    jb_int(row, m->partition);
    jb_lit(row, ",\"kafka_offset\":");
    jb_int(row, m->offset);
}

/* The row's last members: where it came from. */
static void source(jbuf *row, const agg_msg *m)
{
    jb_char(row, ',');
    agg_row_source(row, m);
    jb_char(row, '}');
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* "ts":"...","ts_ms":N,"minute":"..." and the event's minute. */
static int64_t times(jbuf *row, int64_t ts_ms)
{
    int64_t sec = floor_div(ts_ms, 1000);
    int64_t minute = floor_div(sec, 60) * 60;

    jb_lit(row, ",\"ts\":\"");
    jb_datetime(row, sec);
    jb_lit(row, "\",\"ts_ms\":");
    jb_int(row, ts_ms - sec * 1000);
    jb_lit(row, ",\"minute\":\"");
    jb_datetime(row, minute);
    jb_char(row, '"');
    return minute;
}

static void page_view(agg *a, const agg_msg *m, jbuf *row, agg_result *res)
{
    agg_page_view e;

    res->reason = agg_check_page_view(m->value, m->len, &a->lim, &e, res->detail,
                                      sizeof(res->detail));
    if (res->reason != AGG_OK)
        return;
    memcpy(res->id, e.event_id, sizeof(res->id));
    jb_lit(row, "{\"event_id\":");
    jb_jstr(row, e.event_id, strlen(e.event_id));
    jb_cstr(row, e.bounce ? ",\"event_type\":\"bounce\",\"page_id\":" : ",\"event_type\":\"view\",\"page_id\":");
    jb_jstr(row, e.page_id, strlen(e.page_id));
    jb_lit(row, ",\"user_id\":");
    jb_jstr(row, e.user_id, strlen(e.user_id));
    jb_lit(row, ",\"duration_s\":");
    jb_double(row, e.duration_s);
    res->minute = times(row, e.ts_ms);
    source(row, m);
}

static void analytics(agg *a, const agg_msg *m, jbuf *row, agg_result *res)
{
    agg_analytics e;

    res->reason = agg_check_analytics(m->value, m->len, &a->lim, &e, res->detail,
                                      sizeof(res->detail));
    if (res->reason != AGG_OK) {
        free(e.properties);
        return;
    }
    memcpy(res->id, e.id, sizeof(res->id));
    jb_lit(row, "{\"id\":");
    jb_jstr(row, e.id, strlen(e.id));
    jb_lit(row, ",\"event_type\":");
    jb_jstr(row, e.event_type, strlen(e.event_type));
    jb_lit(row, ",\"user_id\":");
    jb_jstr(row, e.user_id, strlen(e.user_id));
    jb_lit(row, ",\"properties\":");
    jb_jstr(row, e.properties, strlen(e.properties));
    free(e.properties);
    res->minute = times(row, e.ts_ms);
    source(row, m);
}

static void segment(agg *a, const agg_msg *m, jbuf *row, agg_result *res)
{
    agg_segment e;

    res->reason = agg_check_segment(m->value, m->len, m->event_id, m->event_type, &a->lim, &e,
                                    res->detail, sizeof(res->detail));
    if (res->reason != AGG_OK)
        return;
    snprintf(res->id, sizeof(res->id), "%llu", (unsigned long long)e.event_id);
    jb_lit(row, "{\"event_id\":");
    jb_int(row, (long long)e.event_id);
    jb_lit(row, ",\"user_id\":");
    jb_int(row, e.user_id);
    jb_lit(row, ",\"slug\":");
    jb_jstr(row, e.slug, strlen(e.slug));
    jb_lit(row, ",\"operation\":");
    jb_jstr(row, &e.operation, 1);
    res->minute = times(row, e.ts_ms);
    source(row, m);
}

void agg_handle(agg *a, agg_handler h, const agg_msg *m, jbuf *row, agg_result *res)
{
    res->detail[0] = '\0';
    res->id[0] = '\0';
    res->minute = 0;
    jb_reset(row);
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
    case AGG_H_PAGE_VIEWS: page_view(a, m, row, res); break;
    case AGG_H_ANALYTICS: analytics(a, m, row, res); break;
    default: segment(a, m, row, res); break;
    }
    if (res->reason == AGG_OK && row->oom) {
        res->reason = AGG_R_BAD_VALUE;
        snprintf(res->detail, sizeof(res->detail), "out of memory rendering the row");
    }
}
