/*
 * sink.c - batches into ClickHouse.
 *
 * Messages settle into the open batch (`cur`): valid rows per handler
 * (RowBinary), rejected messages (a bounded prefix of each), the minutes
 * they touched and, per partition, the offset to commit.  A batch closes
 * at batch_size messages, at batch_bytes of rows, or when its oldest is
 * batch_interval old, and is written as one flight:
 *
 *   schema (once)  ->  raw rows and errors, in parallel  ->  aggregates
 *   of the touched minutes recomputed from the collapsed raw rows  ->
 *   dead letters and forwards acknowledged  ->  offsets committed
 *
 * Under a backlog (when a flight's rows landed, the open batch and what
 * Kafka still holds for us make half a batch or more) the recompute and
 * the commit are deferred to the next flight, which carries the earlier
 * one's minutes and offsets (at most MAX_CARRIED flights): catching up
 * then recomputes a minute once, not once per batch, and offsets still
 * move only after their recompute.  Kafka's part matters when consuming
 * is slower than writing: the open batch is still near empty then.
 *
 * Any failure (after the connector's own retries) keeps the flight,
 * pauses every partition and replays the whole flight after a backoff:
 * every step is idempotent, so replaying is always safe.  While a flight
 * is out the next batch fills; past max_buffered messages or
 * max_buffered_bytes the loop takes no more messages until the flight
 * lands, which bounds memory: librdkafka keeps what it fetched meanwhile
 * (within prefetch_bytes), where pausing would drop it to be fetched
 * again.  Rebalances wait behind such a hold, so a failing ClickHouse
 * pauses the partitions instead.
 *
 * Tracing: a flight is one span, "aggregator batch", from its start to its
 * landing, linked to the consume span of every traced message it carries
 * (OpenTelemetry's way for work done for many traces at once: a trace of
 * its own, with links, rather than a child of one message picked at
 * random).  Its stages run with the span current, and the connectors give
 * their callbacks the context they were submitted in, so every ClickHouse
 * request of the flight, replays included, is a span under it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agg.h"
#include "rowbin.h"
#include "schema.h"

enum { ST_SCHEMA, ST_UPGRADE, ST_INSERT, ST_AGGREGATE, ST_PRODUCED, ST_DONE };

#define MAX_CARRIED 8

static void run_stage(agg *a);
static void resume_if_room(agg *a);

/* Kept for the next batch unless it grew past a batch's worth: a burst
 * of one kind must not pin its peak for good. */
static void buf_clear(jbuf *j, size_t keep)
{
    if (j->cap > keep)
        jb_free(j);
    else
        jb_reset(j);
}

/* The flight landed, or its rows did and the rest went to the next one:
 * its span ends. */
static void end_span(agg_batch *b)
{
    sl_span_end(b->span);
    b->span = NULL;
    b->nlinks = 0;
}

static void batch_clear(agg *a, agg_batch *b)
{
    end_span(b);
    /* Up to what the open batch may hold: catching up fills it to that
     * every time, and fresh pages cost the kernel a clearing each. */
    for (int h = 0; h < AGG_NHANDLERS; h++) {
        buf_clear(&b->rows[h], a->max_buffered_bytes);
        b->nrows[h] = 0;
        b->nmin[h] = 0;
    }
    buf_clear(&b->errors, a->max_buffered_bytes);
    b->nerrors = 0;
    b->unsorted = 0;
    b->ncommits = 0;
    b->msgs = 0;
}

static void batch_free(agg_batch *b)
{
    for (int h = 0; h < AGG_NHANDLERS; h++) {
        jb_free(&b->rows[h]);
        free(b->minutes[h]);
    }
    for (int h = 0; h <= AGG_NHANDLERS; h++)
        free(b->ends[h]);
    jb_free(&b->errors);
    free(b->commits);
    /* Not b->span: the state is freed as the instance's oldest resource,
     * after the core ended every span the instance still had open. */
    free(b->links);
    memset(b, 0, sizeof(*b));
}

size_t agg_buffered(const agg *a)
{
    return a->cur->msgs + (a->flight != NULL ? a->flight->msgs : 0);
}

static size_t batch_bytes(const agg_batch *b)
{
    size_t n = b->errors.len;

    for (int h = 0; h < AGG_NHANDLERS; h++)
        n += b->rows[h].len;
    return n;
}

size_t agg_buffered_bytes(const agg *a)
{
    return batch_bytes(a->cur) + (a->flight != NULL ? batch_bytes(a->flight) : 0);
}

/* The open batch may take no more while a flight is out. */
static int buffer_full(const agg *a)
{
    return a->cur->msgs >= a->max_buffered || batch_bytes(a->cur) >= a->max_buffered_bytes;
}

/* The open batch is full: by messages or by bytes.  Or it may take no
 * more (max_buffered set below batch_size): fetching paused, it would
 * otherwise wait for batch_interval. */
static int batch_full(const agg *a)
{
    return a->cur->msgs >= a->batch_size || batch_bytes(a->cur) >= a->batch_bytes || buffer_full(a);
}

int agg_sink_idle(const agg *a)
{
    return a->flight == NULL && a->cur->msgs == 0 && a->carried == 0;
}

static void add_minute(agg_batch *b, agg_handler h, int64_t minute)
{
    for (size_t i = b->nmin[h]; i > 0; i--)
        if (b->minutes[h][i - 1] == minute)
            return;
    if (b->nmin[h] == b->capmin[h]) {
        size_t cap = b->capmin[h] != 0 ? b->capmin[h] * 2 : 16;
        int64_t *p = realloc(b->minutes[h], cap * sizeof(*p));
        if (p == NULL) {
            b->rows[h].oom = 1; /* the flight fails and says so */
            return;
        }
        b->minutes[h] = p;
        b->capmin[h] = cap;
    }
    b->minutes[h][b->nmin[h]++] = minute;
}

/* Adds (or, with `keep` 0, moves forward) a partition's offset to commit. */
static int add_commit(agg_batch *b, agg_part *p, int64_t next, int keep)
{
    for (size_t i = 0; i < b->ncommits; i++)
        if (b->commits[i].part == p) {
            if (!keep)
                b->commits[i].next = next;
            return 0;
        }
    if (b->ncommits == b->capcommits) {
        size_t cap = b->capcommits != 0 ? b->capcommits * 2 : 16;
        agg_commit *c = realloc(b->commits, cap * sizeof(*c));
        if (c == NULL)
            return -1;
        b->commits = c;
        b->capcommits = cap;
    }
    b->commits[b->ncommits].part = p;
    b->commits[b->ncommits++].next = next;
    return 0;
}

/* Moves what `from` still owes (its minutes, its offsets) into `to`;
 * offsets already in `to` are later ones and stay.  -1 when out of
 * memory (then `from` is left as it was). */
static int merge_owed(agg_batch *to, agg_batch *from)
{
    for (size_t i = 0; i < from->ncommits; i++)
        if (add_commit(to, from->commits[i].part, from->commits[i].next, 1) != 0)
            return -1;
    for (int h = 0; h < AGG_NHANDLERS; h++)
        for (size_t i = 0; i < from->nmin[h]; i++)
            add_minute(to, (agg_handler)h, from->minutes[h][i]);
    from->ncommits = 0;
    for (int h = 0; h < AGG_NHANDLERS; h++)
        from->nmin[h] = 0;
    return 0;
}

/* Row `n` (from 0) of `slot` (a handler, or AGG_NHANDLERS for the
 * errors) ends at `end`. */
static void add_end(agg_batch *b, int slot, size_t n, size_t end)
{
    if (b->unsorted)
        return;
    if (end > UINT32_MAX) {
        b->unsorted = 1;
        return;
    }
    if (n == b->capends[slot]) {
        size_t cap = n != 0 ? n * 2 : 1024;
        uint32_t *p = realloc(b->ends[slot], cap * sizeof(*p));
        if (p == NULL) {
            b->unsorted = 1;
            return;
        }
        b->ends[slot] = p;
        b->capends[slot] = cap;
    }
    b->ends[slot][n] = (uint32_t)end;
}

void agg_batch_row(agg *a, agg_handler h, int64_t minute)
{
    agg_batch *b = a->cur;

    add_end(b, h, b->nrows[h], b->rows[h].len);
    b->nrows[h]++;
    /* Not recomputed once its raw rows are deleted (retention_raw): the
     * recompute would count this row alone. */
    if (minute >= agg_retention_raw_floor(&a->retention, a->lim.now))
        add_minute(b, h, minute);
}

void agg_batch_error(agg *a, const agg_msg *m, agg_handler h, int routed, agg_reason r,
                     const char *detail)
{
    jbuf *e = &a->cur->errors;
    size_t len = m->value != NULL ? m->len : 0;

    agg_row_source(e, m);
    rb_cstr(e, routed ? agg_handler_name(h) : "none");
    rb_cstr(e, agg_reason_name(r));
    rb_cstr(e, detail);
    /* A prefix: a flood of huge junk costs its count, not its bytes. */
    rb_str(e, len != 0 ? m->value : "", len < a->error_raw_bytes ? len : a->error_raw_bytes);
    rb_u64(e, len);
    rb_datetime(e, (int64_t)sl_wall());
    add_end(a->cur, AGG_NHANDLERS, a->cur->nerrors, e->len);
    a->cur->nerrors++;
}

/* Keeps the current message's position, when it is traced. */
static void link_current(agg_batch *b)
{
    char tp[SL_TRACEPARENT_SIZE];

    if (b->nlinks == AGG_LINKS_MAX || sl_trace_current(tp) != 0)
        return;
    if (b->nlinks == b->caplinks) {
        size_t cap = b->caplinks != 0 ? b->caplinks * 2 : 16;
        char *l = realloc(b->links, cap * SL_TRACEPARENT_SIZE);
        if (l == NULL)
            return; /* the batch goes on, with one link fewer */
        b->links = l;
        b->caplinks = cap;
    }
    memcpy(b->links + b->nlinks++ * SL_TRACEPARENT_SIZE, tp, SL_TRACEPARENT_SIZE);
}

/* Catching up: half a batch or more is in the open batch or waiting in
 * Kafka, so the next flight comes soon and this one's recompute and
 * commit can wait for it. */
static int behind(const agg *a)
{
    int64_t waiting = (int64_t)a->cur->msgs;

    if (batch_bytes(a->cur) >= a->batch_bytes / 2)
        return 1;
    if (a->consumer != NULL)
        waiting += sl_kafka_consumer_backlog(a->consumer);
    return waiting >= (int64_t)(a->batch_size / 2);
}

/* Each table's rows of the flight `b` in its order (rowsort.h), written
 * into the buffers of `spare`, the batch the last flight left empty, so
 * that sorting takes no buffer more; a sort that fails leaves them as
 * they are, which ClickHouse then sorts itself. */
static void sort_rows(agg *a, agg_batch *b, agg_batch *spare)
{
    static const agg_key keys[AGG_NHANDLERS] = { AGG_KEY_PAGE_VIEWS, AGG_KEY_ANALYTICS,
                                                 AGG_KEY_SEGMENTS };

    if (b->unsorted)
        return;
    for (int h = 0; h < AGG_NHANDLERS; h++)
        if (!b->rows[h].oom)
            agg_rows_sort(&a->sorter, keys[h], &b->rows[h], b->ends[h], b->nrows[h],
                          &spare->rows[h]);
    if (!b->errors.oom)
        agg_rows_sort(&a->sorter, AGG_KEY_ERRORS, &b->errors, b->ends[AGG_NHANDLERS], b->nerrors,
                      &spare->errors);
    /* Entries for up to a full open batch are kept for the next flight. */
    agg_sorter_trim(&a->sorter, a->max_buffered);
}

/* A flight of the open batch; with the open batch empty, one that only
 * recomputes and commits for the flights it carries. */
static void start_flight(agg *a)
{
    agg_batch *b = a->cur;
    sl_span *span;

    if (a->flight != NULL || (b->msgs == 0 && a->carried == 0))
        return;
    /* The offsets this batch settles, per partition, then what earlier
     * flights deferred to it. */
    for (agg_part *p = a->parts; p != NULL; p = p->next) {
        if (p->pending < 0)
            continue;
        if (add_commit(b, p, p->pending, 0) != 0)
            return; /* tried again on the next tick */
        p->pending = -1;
    }
    if (a->carried > 0) {
        if (merge_owed(b, &a->carry) != 0)
            return;
        a->carried = 0;
    }
    a->flight = b;
    a->cur = b == &a->b[0] ? &a->b[1] : &a->b[0];
    sort_rows(a, b, a->cur);
    a->flight_started = sl_now();
    a->stage = a->schema_ok ? ST_INSERT : ST_SCHEMA;
    /* The open batch is empty again: whatever held consuming back is gone. */
    resume_if_room(a);
    span = sl_span_start_linked(a->ctx, SL_SPAN_INTERNAL, "aggregator batch", b->links, b->nlinks);
    b->span = span;
    sl_span_set_int(span, "messaging.batch.message_count", (long long)b->msgs);
    sl_span_enter(span);
    run_stage(a);
    if (b->span == span) /* else it landed at once, and its end left it */
        sl_span_leave(span);
}

void agg_sink_kick(agg *a)
{
    if (a->flight == NULL && (a->cur->msgs > 0 || a->carried > 0) && !a->sink_down &&
        (batch_full(a) || a->stopping || sl_now() - a->cur->opened >= a->batch_interval))
        start_flight(a);
}

/* No more messages until the flight lands (see the top of the file). */
static void hold_messages(agg *a, int on)
{
    if (a->consumer != NULL)
        sl_kafka_consumer_hold(a->consumer, on);
}

void agg_batch_done(agg *a, agg_part *p, int64_t offset)
{
    link_current(a->cur);
    if (a->cur->msgs++ == 0)
        a->cur->opened = sl_now();
    if (p != NULL)
        p->pending = offset + 1;
    if (batch_full(a))
        agg_sink_kick(a);
    /* A flight is out (or failing) and the next batch is full: take
     * nothing more until it lands. */
    if (buffer_full(a)) {
        if (a->sink_down)
            agg_pause_all(a, AGG_PAUSE_SINK, 1);
        else
            hold_messages(a, 1);
    }
}

/* ---------------------------------------------------------- the flight */

static void flight_failed(agg *a)
{
    a->n.flush_failures++;
    sl_series_add(sl_series_of(a->m_flushes, "failed"), 1);
    sl_log(a->ctx, a->sink_down ? SL_LOG_DEBUG : SL_LOG_WARN,
           "batch of %zu messages not written (%s); partitions paused, retrying in %.1f s",
           a->flight->msgs, a->last_error, a->sink_backoff);
    a->sink_down = 1;
    agg_pause_all(a, AGG_PAUSE_SINK, 1);
    hold_messages(a, 0);
    sl_timer_arm(a->sink_retry, a->sink_backoff);
    a->sink_backoff *= 2;
    if (a->sink_backoff > a->sink_backoff_max)
        a->sink_backoff = a->sink_backoff_max;
}

static void sink_retry(void *arg)
{
    agg *a = arg;

    if (a->flight == NULL)
        return;
    a->stage = a->schema_ok ? ST_INSERT : ST_SCHEMA;
    run_stage(a);
}

static void on_commit(sl_kafka_consumer *c, int err, const sl_kafka_tp *parts, size_t n, void *arg)
{
    agg *a = arg;

    (void)c;
    (void)parts;
    if (err != 0) {
        /* Not fatal: the rows landed, a replay of them collapses. */
        a->n.commit_failures++;
        sl_log(a->ctx, SL_LOG_WARN, "offset commit of %zu partitions failed (error %d)", n, err);
    }
}

static void commit(agg *a, agg_batch *b)
{
    sl_kafka_tp *tps;
    size_t n = 0;

    if (b->ncommits == 0 || a->consumer == NULL)
        return;
    tps = calloc(b->ncommits, sizeof(*tps));
    if (tps == NULL) {
        a->n.commit_failures++;
        return;
    }
    for (size_t i = 0; i < b->ncommits; i++) {
        agg_part *p = b->commits[i].part;
        /* A partition given away meanwhile is its new owner's to commit;
         * one rewound by a replay since is read again from there. */
        if (!p->assigned || (p->next_offset >= 0 && b->commits[i].next > p->next_offset))
            continue;
        tps[n].topic = p->topic;
        tps[n].partition = p->partition;
        tps[n++].offset = b->commits[i].next;
        p->committed = b->commits[i].next;
    }
    if (n > 0 && sl_kafka_commit(a->consumer, tps, n, on_commit, a) != 0)
        a->n.commit_failures++;
    else if (n > 0)
        a->n.commits++;
    free(tps);
}

/* Consuming resumes once the open batch has room again: it became the
 * flight, or the flight landed.  Not while ClickHouse is failing. */
static void resume_if_room(agg *a)
{
    if (!a->sink_down && !buffer_full(a)) {
        agg_pause_all(a, AGG_PAUSE_SINK, 0);
        hold_messages(a, 0);
    }
}

static void flight_done(agg *a)
{
    agg_batch *b = a->flight;
    double latency = sl_now() - a->flight_started;
    size_t rows = b->nerrors;

    for (int h = 0; h < AGG_NHANDLERS; h++)
        rows += b->nrows[h];
    commit(a, b);
    a->n.flushes++;
    a->n.rows_written += rows;
    sl_series_add(sl_series_of(a->m_flushes, "ok"), 1);
    if (b->msgs > 0)
        sl_series_observe(sl_series_of(a->m_batch), (double)b->msgs);
    sl_series_observe(sl_series_of(a->m_latency), latency);
    if (a->sink_down)
        sl_log(a->ctx, SL_LOG_INFO, "ClickHouse accepts batches again; resuming");
    a->last_flush_at = sl_wall();
    a->last_flush_rows = rows;
    a->last_flush_latency = latency;
    batch_clear(a, b);
    a->flight = NULL;
    a->sink_down = 0;
    a->sink_backoff = a->sink_backoff_base;
    resume_if_room(a);
    if (batch_full(a) || a->stopping)
        agg_sink_kick(a);
    if (a->stopping)
        agg_drain_check(a);
}

static void stage_done(agg *a)
{
    if (a->stage_failed) {
        flight_failed(a);
        return;
    }
    if (a->stage == ST_UPGRADE)
        a->schema_ok = 1;
    if (a->stage == ST_INSERT && a->flight->msgs > 0 && !a->stopping && a->carried < MAX_CARRIED &&
        behind(a) && merge_owed(&a->carry, a->flight) == 0) {
        /* Behind: let the next flight recompute and commit for this one. */
        agg_batch *b = a->flight;
        size_t rows = b->nerrors;
        for (int h = 0; h < AGG_NHANDLERS; h++)
            rows += b->nrows[h];
        a->n.rows_written += rows;
        sl_series_observe(sl_series_of(a->m_batch), (double)b->msgs);
        a->carried++;
        batch_clear(a, b);
        a->flight = NULL;
        /* Half a batch or more goes at once; less waits to fill, and the
         * carried work is due a batch interval from now at the latest. */
        if (a->cur->msgs == 0)
            a->cur->opened = sl_now();
        if (a->cur->msgs >= a->batch_size / 2 || batch_bytes(a->cur) >= a->batch_bytes / 2)
            start_flight(a);
        /* The full batch that held consuming back is the flight now:
         * without this, consuming stayed held for the whole next flight,
         * recompute and commit included, with the open batch empty. */
        resume_if_room(a);
        return;
    }
    a->stage++;
    if (a->stage == ST_DONE)
        flight_done(a);
    else
        run_stage(a);
}

static void on_result(sl_ch *ch, const sl_ch_result *res, void *arg)
{
    agg *a = arg;

    (void)ch;
    if (res->error != NULL && !(a->stage == ST_UPGRADE && res->code == AGG_CH_DUPLICATE_COLUMN)) {
        a->stage_failed = 1;
        /* last_error is shown to clients (/aggregator/status): a summary
         * of our own; ClickHouse's text goes to the log only. */
        sl_log(a->ctx, a->sink_down ? SL_LOG_DEBUG : SL_LOG_WARN, "ClickHouse (HTTP %ld): %s",
               res->status, res->error);
        if (res->code != 0)
            snprintf(a->last_error, sizeof(a->last_error),
                     "ClickHouse refused the batch (code %d); the log has its message", res->code);
        else if (res->status != 0)
            snprintf(a->last_error, sizeof(a->last_error),
                     "ClickHouse answered HTTP %ld; the log has its message", res->status);
        else
            snprintf(a->last_error, sizeof(a->last_error), "no answer from ClickHouse");
        /* Unknown table (60) or column (16): somebody dropped a table;
         * create the schema again before the replay. */
        if (res->code == 60 || res->code == 16)
            a->schema_ok = 0;
    }
    if (--a->outstanding == 0)
        stage_done(a);
}

static void on_flushed(sl_kafka_producer *p, int remaining, void *arg)
{
    agg *a = arg;

    (void)p;
    if (remaining != 0) {
        a->stage_failed = 1;
        snprintf(a->last_error, sizeof(a->last_error),
                 "%d dead letters or forwards not acknowledged yet", remaining);
    }
    if (--a->outstanding == 0)
        stage_done(a);
}

static void submit(agg *a, int rc)
{
    if (rc == 0) {
        a->outstanding++;
    } else {
        a->stage_failed = 1;
        snprintf(a->last_error, sizeof(a->last_error), "cannot submit a request (out of memory?)");
    }
}

static void run_stage(agg *a)
{
    agg_batch *b = a->flight;

    a->stage_failed = 0;
    a->outstanding = 1; /* held while submitting, so no callback ends the stage early */
    switch (a->stage) {
    case ST_SCHEMA:
        for (size_t i = 0; i < agg_schema_count(a->ch); i++) {
            agg_schema_sql(a->ch, i, &a->scratch);
            submit(a, a->scratch.oom ? -1 : sl_ch_exec(a->ch, a->scratch.p, on_result, a));
        }
        break;
    case ST_UPGRADE: {
        const char *const *up = agg_schema_upgrades(a->ch);
        for (size_t i = 0; up[i] != NULL; i++)
            submit(a, sl_ch_exec(a->ch, up[i], on_result, a));
        break;
    }
    case ST_INSERT:
        for (int h = 0; h < AGG_NHANDLERS; h++) {
            if (b->nrows[h] == 0)
                continue;
            if (b->rows[h].oom) {
                a->stage_failed = 1;
                snprintf(a->last_error, sizeof(a->last_error), "out of memory building rows");
                continue;
            }
            /* Not copied: the flight keeps its rows until it landed. */
            submit(a, sl_ch_insert_rows(a->ch, agg_raw_tables[h], agg_raw_columns[h], "RowBinary",
                                        b->rows[h].p, b->rows[h].len, on_result, a));
        }
        if (b->nerrors > 0)
            submit(a, b->errors.oom ? -1
                                    : sl_ch_insert_rows(a->ch, AGG_ERRORS_TABLE, AGG_ERRORS_COLUMNS,
                                                        "RowBinary", b->errors.p, b->errors.len,
                                                        on_result, a));
        break;
    case ST_AGGREGATE: {
        /* One version for the whole flight: microseconds of the wall
         * clock at submission, so the latest recompute of a minute (which
         * saw every row landed before it) wins in FINAL. */
        uint64_t version = (uint64_t)(sl_wall() * 1e6);
        for (int h = 0; h < AGG_NHANDLERS; h++)
            if (agg_recompute_sql((agg_handler)h, b->minutes[h], b->nmin[h], version, &a->scratch))
                submit(a, a->scratch.oom ? -1 : sl_ch_exec(a->ch, a->scratch.p, on_result, a));
        break;
    }
    case ST_PRODUCED:
        if (a->producer != NULL && sl_kafka_producer_outq(a->producer) > 0) {
            a->outstanding++;
            sl_kafka_producer_flush(a->producer, 30, on_flushed, a);
        }
        break;
    }
    if (--a->outstanding == 0)
        stage_done(a);
}

/* -------------------------------------------------------------- start */

static void tick(void *arg)
{
    agg *a = arg;

    sl_series_set(sl_series_of(a->m_buffered), (double)agg_buffered(a));
    agg_sink_kick(a);
}

int agg_sink_start(agg *a)
{
    double every = a->batch_interval / 4;

    a->cur = &a->b[0];
    a->ch = sl_ch_new(a->ctx);
    if (a->ch == NULL)
        return sl_fail(a->ctx, "cannot create the ClickHouse handle (see the log)");
    a->sink_backoff = a->sink_backoff_base;
    a->sink_retry = sl_timer_new(a->ctx, a->sink_backoff, 0, sink_retry, a);
    a->tick = sl_timer_new(a->ctx, every < 0.01 ? 0.01 : every, 1, tick, a);
    if (a->sink_retry == NULL || a->tick == NULL)
        return sl_fail(a->ctx, "out of memory");
    sl_timer_disarm(a->sink_retry);
    return 0;
}

void agg_sink_free(agg *a)
{
    batch_free(&a->b[0]);
    batch_free(&a->b[1]);
    batch_free(&a->carry);
    agg_sorter_free(&a->sorter);
}
