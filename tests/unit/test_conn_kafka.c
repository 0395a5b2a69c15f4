/*
 * test_conn_kafka.c - the Kafka producer's state machine without a server
 * (fake_daemon.h).  Against a port that refuses connections: the local
 * queue is bounded (SL_KAFKA_EQUEUEFULL, then one on_space call once
 * reports freed room), every queued message gets exactly one failed
 * report when message.timeout.ms runs out (from the loop, never inside the
 * call), the handle says why it is not ready, and it may be freed from
 * inside a report's callback.  Against the embedded broker, taken down
 * and brought back: readiness follows it and what was queued while it was
 * down is delivered after the reconnect.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "connectors/kafka/kafka_int.h"
#include "fake_daemon.h"

static sl_ctx *ctx;

static int setup_refused(void **state)
{
    (void)state;
    ctx = fake_daemon_start("[kafka]\nbrokers = 127.0.0.1:%d\n"
                            "rdkafka.reconnect.backoff.ms = 20\n"
                            "rdkafka.reconnect.backoff.max.ms = 100\n",
                            fake_refused_port());
    return ctx != NULL ? 0 : -1;
}

static int setup_embedded(void **state)
{
    (void)state;
    ctx = fake_daemon_start("[kafka]\nbrokers = embedded\nadmin = true\n"
                            "embedded_topics = t\nembedded_partitions = 1\n"
                            "rdkafka.reconnect.backoff.ms = 20\n"
                            "rdkafka.reconnect.backoff.max.ms = 100\n"
                            "# %d: no server port is needed\n",
                            0);
    return ctx != NULL ? 0 : -1;
}

typedef struct {
    int reports;
    int failed;
    int spaces;
    int free_handle;
    char errname[64];
} seen;

static void on_delivery(sl_kafka_producer *p, const sl_kafka_msg *msg, void *arg)
{
    seen *s = arg;

    s->reports++;
    if (msg->err != 0)
        s->failed++;
    snprintf(s->errname, sizeof(s->errname), "%s", msg->errname);
    if (s->free_handle)
        sl_kafka_producer_free(p);
}

static void on_space(sl_kafka_producer *p, void *arg)
{
    (void)p;
    ((seen *)arg)->spaces++;
}

static int reports_reached;

static int has_reports(const void *arg)
{
    return ((const seen *)arg)->reports >= reports_reached;
}

static void run_until_reports(seen *s, int n)
{
    reports_reached = n;
    assert_int_equal(fake_run_until(has_reports, s, 20), 0);
}

static sl_kafka_producer *producer(seen *s, const char *timeout_ms, const char *max_messages)
{
    const char *props[] = { "message.timeout.ms", timeout_ms, "queue.buffering.max.messages",
                            max_messages, NULL };
    char err[256] = "";
    sl_kafka_producer *p = sl_kafka_producer_new(ctx, on_delivery, s, props, err, sizeof(err));

    if (p == NULL)
        fail_msg("producer: %s", err);
    return p;
}

static int produce(sl_kafka_producer *p, const char *value)
{
    return sl_kafka_produce(p, "t", SL_KAFKA_PARTITION_ANY, "k", 1, value, strlen(value), NULL, 0,
                            NULL);
}

static void queue_bound_then_space(void **state)
{
    seen s = { 0 };
    sl_kafka_producer *p = producer(&s, "300", "3");

    (void)state;
    for (int i = 0; i < 3; i++)
        assert_int_equal(produce(p, "queued"), 0);
    assert_int_equal(produce(p, "one too many"), SL_KAFKA_EQUEUEFULL);
    /* librdkafka counts its own requests in flight too. */
    assert_true(sl_kafka_producer_outq(p) >= 3);
    assert_int_equal(s.reports, 0); /* never inside the call */
    sl_kafka_producer_on_space(p, on_space, &s);
    run_until_reports(&s, 3);
    assert_int_equal(s.failed, 3);
    assert_string_equal(s.errname, "_MSG_TIMED_OUT");
    assert_int_equal(fake_run_until(fake_flag, &s.spaces, 10), 0);
    assert_int_equal(s.spaces, 1);
    /* The room is there again, and the request is not repeated. */
    assert_int_equal(produce(p, "again"), 0);
    run_until_reports(&s, 4);
    assert_int_equal(s.spaces, 1);
    sl_kafka_producer_free(p);
}

/* Not ready, for want of a broker (not merely "connecting"). */
static int is_not_ready(const void *arg)
{
    const kafka_handle *h = arg;
    return !h->ready && strstr(h->why, "broker") != NULL;
}

static int is_ready(const void *arg)
{
    return ((const kafka_handle *)arg)->ready;
}

static void not_ready_while_refused(void **state)
{
    seen s = { 0 };
    sl_kafka_producer *p = producer(&s, "300", "10");
    kafka_handle *h = (kafka_handle *)p;

    (void)state;
    assert_int_equal(fake_run_until(is_not_ready, h, 20), 0);
    assert_false(h->ready);
    sl_kafka_producer_free(p);
}

static void free_inside_a_report(void **state)
{
    seen s = { .free_handle = 1 };
    sl_kafka_producer *p = producer(&s, "200", "10");
    size_t held = ctx->nresources;

    (void)state;
    for (int i = 0; i < 3; i++)
        assert_int_equal(produce(p, "doomed"), 0);
    /* The three reports come in one event; the first one's free ends
     * the batch: the others are never handed over, the instance no longer
     * holds the handle, and (under ASan) nothing of it is touched after. */
    run_until_reports(&s, 1);
    assert_int_equal(fake_run_until(fake_flag, &(int){ 0 }, 0.3), -1);
    assert_int_equal(s.reports, 1);
    assert_int_equal(ctx->nresources, held - 1);
}

static void reconnects_when_the_broker_returns(void **state)
{
    seen s = { 0 };
    sl_kafka_producer *p = producer(&s, "30000", "10");
    kafka_handle *h = (kafka_handle *)p;

    (void)state;
    assert_int_equal(produce(p, "before"), 0);
    run_until_reports(&s, 1);
    assert_int_equal(s.failed, 0);
    assert_int_equal(fake_run_until(is_ready, h, 20), 0);

    assert_int_equal(sl_kafka_embedded_broker_set(ctx, 1, 0), 0);
    assert_int_equal(fake_run_until(is_not_ready, h, 20), 0);
    assert_int_equal(produce(p, "while down"), 0);
    assert_true(sl_kafka_producer_outq(p) >= 1);
    assert_int_equal(s.reports, 1);

    assert_int_equal(sl_kafka_embedded_broker_set(ctx, 1, 1), 0);
    run_until_reports(&s, 2);
    assert_int_equal(s.failed, 0);
    assert_int_equal(fake_run_until(is_ready, h, 20), 0);
    sl_kafka_producer_free(p);
}

int main(void)
{
    const struct CMUnitTest refused[] = {
        cmocka_unit_test(queue_bound_then_space),
        cmocka_unit_test(not_ready_while_refused),
        cmocka_unit_test(free_inside_a_report),
    };
    const struct CMUnitTest embedded[] = {
        cmocka_unit_test(reconnects_when_the_broker_returns),
    };
    int failed = cmocka_run_group_tests_name("refused", refused, setup_refused, fake_daemon_stop);

    return failed +
           cmocka_run_group_tests_name("embedded", embedded, setup_embedded, fake_daemon_stop);
}
