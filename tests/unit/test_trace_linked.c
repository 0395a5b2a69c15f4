/*
 * Unit tests of sl_span_start_linked(), the span of a batch of messages:
 * with tracing on at sample_ratio 0, so that a recorded span can only have
 * been recorded because of its links (the collector's port refuses; no
 * export is attempted, the loop never runs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "trace/trace.h"
#include "fake_daemon.h"

static sl_ctx *ctx;

static const char sampled[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
static const char unsampled[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

static int setup(void **state)
{
    (void)state;
    ctx = fake_daemon_start("[tracing]\nendpoint = http://127.0.0.1:%d/v1/traces\n"
                            "sample_ratio = 0\n",
                            fake_refused_port());
    return ctx != NULL && sl_trace_on() && sl_trace_metrics_init() == 0 ? 0 : -1;
}

/* n traceparents, SL_TRACEPARENT_SIZE bytes each, into `out`. */
static void links_of(char *out, const char *const *tps, size_t n)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + i * SL_TRACEPARENT_SIZE, SL_TRACEPARENT_SIZE, "%s", tps[i]);
}

static void recorded_when_one_link_was_sampled(void **state)
{
    const char *tps[] = { unsampled, "not a traceparent", sampled };
    char links[3 * SL_TRACEPARENT_SIZE] = { 0 };
    sl_span *s;
    (void)state;

    links_of(links, tps, 3);
    s = sl_span_start_linked(ctx, SL_SPAN_INTERNAL, "batch", links, 3);
    assert_non_null(s);
    assert_true(s->recording);
    assert_int_equal(s->tp.flags & SL_TP_SAMPLED, SL_TP_SAMPLED);
    assert_false(s->has_parent);
    assert_int_equal(s->nlinks, 2); /* the invalid one skipped */
    assert_memory_not_equal(s->tp.trace_id, s->links[0].trace_id, 16);
    assert_memory_not_equal(s->tp.trace_id, s->links[1].trace_id, 16);
    sl_span_end(s);
}

static void a_context_of_its_own_when_none_was(void **state)
{
    const char *tps[] = { unsampled };
    char links[SL_TRACEPARENT_SIZE], tp[SL_TRACEPARENT_SIZE];
    sl_trace_ctx outer = { 0 }, saved;
    sl_span *s;
    (void)state;

    /* Opened while a message's context is current, as the aggregator
     * opens it from inside a consume callback. */
    outer.traced = 1;
    sl_tp_parse(sampled, &outer.tp);
    sl_trace_enter(&outer, &saved);
    links_of(links, tps, 1);
    s = sl_span_start_linked(ctx, SL_SPAN_INTERNAL, "batch", links, 1);
    assert_non_null(s);
    assert_false(s->recording);
    sl_span_enter(s);
    assert_int_equal(sl_trace_current(tp), 0);
    assert_memory_not_equal(tp + 3, sampled + 3, 32); /* not the message's trace */
    assert_string_equal(tp + 53, "00");               /* nor sampled */
    sl_span_leave(s);
    sl_span_end(s);
    s = sl_span_start_linked(ctx, SL_SPAN_INTERNAL, "batch", NULL, 0);
    assert_non_null(s);
    assert_false(s->recording);
    sl_span_end(s);
    sl_trace_restore(&saved);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(recorded_when_one_link_was_sampled),
        cmocka_unit_test(a_context_of_its_own_when_none_was),
    };
    return cmocka_run_group_tests(tests, setup, fake_daemon_stop);
}
