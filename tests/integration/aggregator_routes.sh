#!/usr/bin/env bash
# The aggregator's routing and middleware, fed and read with kcat: topics
# chosen by regex reach their handlers (analytics, segment_events,
# page_views); a poison message is retried (holding only its partition),
# then lands in the dead-letter topic with the error in a header while the
# consumer goes on; duplicates are dropped; valid events are forwarded;
# segment membership changes are counted per slug, minute and operation,
# exactly, de-duplicated by the event_id header.  Bad routes (and
# subscription regexes) are refused by sluiced -t, at startup and on SIGHUP
# (the running consumer carries on), each at its file:line.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

work=$(t_tmpdir)
daemon=""
cleanup() {
    [ -n "$daemon" ] && kill -9 "$daemon" 2>/dev/null
    sl_svc_stop_all
    [ -n "${SL_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

mods=$work/mods
mkdir -p "$mods"
cp "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/_modules/aggregator.so" "$mods/"
port=$(t_free_port)
base=http://127.0.0.1:$port
bootfile=$work/bootstrap

chq() { clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" --query "$1" 2>>"$work/chc.err"; }
jget() {
    curl -s --max-time 30 "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null
}
st() { jget "$base/aggregator/status" "$1"; }
metric() {
    curl -s "$base/metrics" | awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "absent" }'
}
kput() { # kput TOPIC PARTITION VALUE [HEADER=VALUE...]
    local topic=$1 part=$2 value=$3 h=()
    shift 3
    for x in "$@"; do h+=(-H "$x"); done
    printf '%s\n' "$value" | kcat -P -b "$(cat "$bootfile")" -t "$topic" -p "$part" "${h[@]}"
}
now() { date -u +%Y-%m-%dT%H:%M:%S.000Z; }
an() { printf '{"id":"%s","timestamp":"%s","eventType":"%s","userId":"%s","properties":{"k":1}}' "$1" "$(now)" "$2" "$3"; }

t_case "clickhouse and sluiced start"
sl_svc_start clickhouse
t_check $? -eq 0 "clickhouse on ${SL_CH_URL:-nothing}"
cat > "$work/sluice.conf" <<EOF
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = info

[kafka]
brokers = embedded
embedded_topics = page_views:2, analytics.web:2, analytics.app:1, segment_events:2, other.x:1, analytics.web.dlq:1, analytics.web.valid:1, analytics.app.dlq:1, analytics.app.valid:1
bootstrap_file = $bootfile

[clickhouse]
url = $SL_CH_URL

[module metrics]

[module aggregator]
topics = ^analytics[.][a-z]+$, segment_events, page_views, ^other[.].*
group = g_routes
batch_interval = 100ms
retries = 2
# The poison is held 5 + 10 s: the window in which partition 1 must flow
# and the messages behind the poison wait, even on a loaded machine.
retry_backoff = 5s
route.an = ^analytics[.][a-z]+$ -> retry, deadletter, dedup, analytics, forward
route.seg = segment_events -> recover, dedup, segment_events
route.pv = page_views -> recover, dedup, page_views
EOF
"$SLUICED" -t -c "$work/sluice.conf" 2>"$work/t.out"
t_check $? -eq 0 "sluiced -t accepts the routes: $(head -c 200 "$work/t.out")"
sed -e 's/^route.seg = .*/route.seg = segment_events -> recover, bogus, segment_events/' \
    -e 's/^route.an = .*/route.an = ^analytics([a-z]+$ -> analytics/' \
    -e 's/^topics = .*/&, ^bad(/' "$work/sluice.conf" > "$work/bad.conf"
line_seg=$(grep -n '^route.seg' "$work/bad.conf" | cut -d: -f1)
line_topics=$(grep -n '^topics' "$work/bad.conf" | cut -d: -f1)
line_an=$(grep -n '^route.an' "$work/bad.conf" | cut -d: -f1)
"$SLUICED" -t -c "$work/bad.conf" 2>"$work/bad.out"
t_check $? -eq 1 "sluiced -t refuses bad routes: exit 1"
t_check "$(grep -c "bad.conf:$line_seg: \[module aggregator\] route.seg: unknown \"bogus\" (middleware: " "$work/bad.out")" -eq 1 "an unknown middleware at its file:line: $(grep -m1 bogus "$work/bad.out" | head -c 200)"
t_check "$(grep -c "bad.conf:$line_an: \[module aggregator\] route.an: bad regex" "$work/bad.out")" -eq 1 "a bad regex at its file:line, in the same run: $(grep -m1 'route.an:' "$work/bad.out" | head -c 200)"
t_check "$(grep -c "bad.conf:$line_topics: \[module aggregator\] topics: bad regex ^bad(" "$work/bad.out")" -eq 1 "a bad subscription regex at its file:line, which librdkafka would refuse at start"
printf '[core]\nmodules_dir = mods\nlisten = 127.0.0.1:%s\n[module aggregator]\nroute.x = page_views -> recover, dedup\n' "$port" > "$work/nohandler.conf"
"$SLUICED" -t -c "$work/nohandler.conf" 2>"$work/bad.out"
t_check $? -eq 1 "a route without a handler: exit 1"
t_check "$(grep -c 'nohandler.conf:5: \[module aggregator\] route.x: no handler' "$work/bad.out")" -eq 1 "reported at nohandler.conf:5"
printf '[core]\nmodules_dir = mods\nlisten = 127.0.0.1:%s\n[module aggregator]\ndeadletter_topic = dlq/{topic}\n' "$port" > "$work/dlq.conf"
"$SLUICED" -t -c "$work/dlq.conf" 2>"$work/bad.out"
t_check $? -eq 1 "a dead-letter topic no broker would accept: exit 1"
t_check "$(grep -c "dlq.conf:5: \[module aggregator\] deadletter_topic: \"dlq/{topic}\": '/' cannot be in a topic name" "$work/bad.out")" -eq 1 "reported at dlq.conf:5: $(head -c 200 "$work/bad.out")"
timeout 60 "$SLUICED" -c "$work/bad.conf" 2>"$work/bad.out"
t_check $? -eq 1 "starting with bad routes: exit 1, before any instance starts"
t_check "$(grep -c "bad.conf:$line_seg: \[module aggregator\] route.seg: unknown \"bogus\"" "$work/bad.out")" -eq 1 "the same file:line at startup"
t_check "$(grep -c '\] started' "$work/bad.out")" -eq 0 "nothing was started"
"$SLUICED" -c "$work/sluice.conf" 2>>"$work/sluiced.log" &
daemon=$!
t_wait_http "$base/healthz" 10 && t_wait_for 10 test -s "$bootfile"
t_wait_until 30 '[ "$(st "len(j[\"partitions\"])")" = 8 ]'
t_check "$(st 'len(j["partitions"])')" = 8 "subscribed by regex and name: the 8 partitions of 5 topics assigned"
t_end

t_case "a poison message holds only its partition, is retried, dead-lettered with its error, and the consumer goes on"
kput analytics.web 0 "$(an e1 click u1)"
kput analytics.web 0 "$(an e2 click u2)"
kput analytics.web 0 '{"id":"poison","timestamp":'
t_wait_until 30 '[ "$(st "j[\"retries\"]")" -ge 1 ]'
kput analytics.web 0 "$(an e3 view u1)"
kput analytics.web 0 "$(an e3 view u1)"
kput analytics.web 0 "$(an e4 view u3)"
kput analytics.web 1 "$(an e7 click u4)"
kput analytics.web 1 "$(an e8 buy u4)"
t_wait_until 30 '[ "$(chq "SELECT count() FROM analytics_events FINAL WHERE id IN ('"'e7','e8'"')")" = 2 ]'
t_check "$(chq "SELECT count() FROM analytics_events FINAL WHERE id IN ('e7','e8')")" = 2 "partition 1 flowed while partition 0 was held"
t_check "$(chq "SELECT count() FROM analytics_events FINAL WHERE id IN ('e3','e4')")" = 0 "the messages behind the poison waited"
t_check "$(st '[p["held"] for p in j["partitions"] if p["topic"] == "analytics.web" and p["partition"] == 0][0] > 0')" = True "status shows partition 0 holding messages"
t_wait_until 60 '[ "$(chq "SELECT count() FROM analytics_events FINAL")" = 6 ]'
t_check "$(chq "SELECT count() FROM analytics_events FINAL")" = 6 "then everything behind it landed: e1 e2 e3 e4 e7 e8"
t_check "$(st 'j["retries"]')" = 2 "retried twice (retries = 2)"
kcat -C -b "$(cat "$bootfile")" -t analytics.web.dlq -e -q -f '%h\t%s\n' > "$work/dlq" 2>/dev/null
t_check "$(wc -l < "$work/dlq")" = 1 "one message in analytics.web.dlq"
t_check "$(cut -f2 "$work/dlq")" = '{"id":"poison","timestamp":' "its value is the poison message"
t_check "$(grep -c 'error=broken_json: ' "$work/dlq")" = 1 "its error header says why: $(cut -f1 "$work/dlq" | head -c 200)"
t_check "$(grep -c 'source_topic=analytics.web,source_partition=0,source_offset=2,attempts=3' "$work/dlq")" = 1 "and where it came from, after 3 attempts"
t_check "$(chq "SELECT reason, handler, kafka_offset FROM processing_errors FINAL WHERE kafka_topic = 'analytics.web'" | tr '\t' ' ')" = "broken_json analytics 2" "processing_errors holds it too"
t_check "$(metric 'sluice_aggregator_dead_lettered_total{handler="analytics"}')" = 1 "sluice_aggregator_dead_lettered_total 1"
t_check "$(st 'j["duplicates"]["analytics"]')" = 1 "the repeated e3 dropped as a duplicate"
kcat -C -b "$(cat "$bootfile")" -t analytics.web.valid -e -q -f '%s\n' > "$work/fwd" 2>/dev/null
t_check "$(wc -l < "$work/fwd")" = 6 "the 6 distinct valid events forwarded to analytics.web.valid"
t_end

t_case "a second topic by the same regex; page_views by name; an unrouted topic"
kput analytics.app 0 "$(an x1 open u9)"
kput page_views 0 '{"event_id":"pv1","event_type":"view","page_id":"page-1","user_id":"user-1","ts":"'"$(now)"'","duration_s":30}'
kput page_views 1 '{"event_id":"pv2","event_type":"bounce","page_id":"page-1","user_id":"user-2","ts":"2099-01-01T00:00:00Z","duration_s":1}'
kput other.x 0 'hello'
t_wait_until 20 '[ "$(chq "SELECT count() FROM processing_errors FINAL")" = 3 ]'
t_check "$(chq "SELECT count() FROM analytics_events FINAL WHERE kafka_topic = 'analytics.app'")" = 1 "analytics.app reached the analytics handler"
t_check "$(chq "SELECT event_id FROM page_views FINAL")" = pv1 "page_views reached its handler"
t_check "$(chq "SELECT reason FROM processing_errors FINAL WHERE kafka_topic = 'page_views'")" = future_timestamp "a timestamp far in the future is rejected"
t_check "$(chq "SELECT reason, handler FROM processing_errors FINAL WHERE kafka_topic = 'other.x'" | tr '\t' ' ')" = "no_route none" "a subscribed topic without a route is recorded as no_route"
from=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)
to=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
got=$(jget "$base/aggregator/analytics?from=$from&to=$to" 'sorted((r["event_type"], r["events"], r["unique_users"]) for r in j["by_type"])')
t_check "$got" = "[('*', 8, 6), ('buy', 1, 1), ('click', 3, 3), ('open', 1, 1), ('view', 3, 3)]" "analytics: counts by type and unique users over both stores ($got)"
got=$(jget "$base/aggregator/events?from=$from&to=$to&event_type=click" 'sorted(e["id"] for e in j["events"])')
t_check "$got" = "['e1', 'e2', 'e7']" "events?event_type=click ($got)"
t_end

t_case "segment_events: counted per slug, minute and operation, exactly, de-duplicated by event_id"
seg() { # seg ID USER SLUG OP [TYPE]
    local type=${5:-$([ "$4" = I ] && echo segment_added || echo segment_removed)}
    kput segment_events $(($2 % 2)) "{\"user_id\":$2,\"slug\":\"$3\",\"operation\":\"$4\",\"ts\":\"$(now)\"}" \
        "event_id=$1" "event_type=$type" "aggregate_type=segment"
}
seg 1 1 AVITO_DISCOUNT_30 I
seg 2 2 AVITO_DISCOUNT_30 I
seg 3 3 AVITO_DISCOUNT_30 I
seg 3 3 AVITO_DISCOUNT_30 I
seg 4 1 AVITO_DISCOUNT_30 D
seg 5 1 AVITO_VOICE I
seg 5 1 AVITO_VOICE I
seg 6 2 AVITO_VOICE D segment_added
kput segment_events 0 '{"user_id":7,"slug":"AVITO_VOICE","operation":"I","ts":"2026-11-30T14:00:00Z"}'
seg 8 4 AVITO_VOICE X
t_wait_until 20 '[ "$(chq "SELECT count() FROM processing_errors FINAL WHERE kafka_topic = '"'segment_events'"'")" = 3 ]'
got=$(chq "SELECT slug, operation, sum(changes), sum(users) FROM segment_changes_per_minute FINAL GROUP BY slug, operation ORDER BY slug, operation" | tr '\t\n' ' ')
t_check "$got" = "AVITO_DISCOUNT_30 D 1 1 AVITO_DISCOUNT_30 I 3 3 AVITO_VOICE I 1 1 " "changes per slug and operation: $got"
got=$(chq "SELECT reason FROM processing_errors FINAL WHERE kafka_topic = 'segment_events' ORDER BY reason" | tr '\n' ' ')
t_check "$got" = "bad_value bad_value missing_event_id " "rejected: contradicting event_type, unknown operation, no event_id ($got)"
t_check "$(st 'j["duplicates"]["segment_events"]')" = 2 "two redelivered events dropped by the window"
got=$(jget "$base/aggregator/query/segments?hours=1&slug=AVITO_DISCOUNT_30" 'sorted((r["operation"], r["changes"]) for r in j["rows"])')
t_check "$got" = "[('D', 1), ('I', 3)]" "query/segments ($got)"
t_end

t_case "metrics: counters by handler and reason, histograms, paused gauges"
curl -s "$base/metrics" > "$work/metrics"
for m in 'sluice_aggregator_consumed_total{handler="analytics"}' 'sluice_aggregator_invalid_total{handler="segment_events",reason="bad_value"}' \
    'sluice_aggregator_batch_size_count' 'sluice_aggregator_flush_latency_seconds_count' 'sluice_aggregator_paused_partitions' \
    'sluice_aggregator_retries_total{handler="analytics"}' 'sluice_aggregator_forwarded_total' 'sluice_kafka_consumer_lag{module="aggregator",topic="analytics.web",partition="0"}'; do
    t_check "$(awk -v n="$m" '$1 == n { print "present" }' "$work/metrics" | head -1)" = present "$m"
done
# status reads its lag back from that gauge: -1 would mean it found no series.
got=$(st '[p["lag"] for p in j["partitions"] if p["topic"] == "analytics.web" and p["partition"] == 0][0]')
t_check "${got%.*}" -ge 0 "status shows partition 0's lag from the gauge ($got)"
if command -v promtool >/dev/null; then
    promtool check metrics < "$work/metrics" > "$work/promtool.out" 2>&1
    t_check $? -eq 0 "promtool accepts /metrics: $(head -c 200 "$work/promtool.out")"
else
    t_skip "promtool is not installed (tests/harness/install-deps.sh installs prometheus)"
fi
t_check "$(grep -c 'ERROR\|runtime error\|AddressSanitizer' "$work/sluiced.log")" = 0 "no errors or sanitizer reports in the log"
t_end

t_case "SIGHUP with a bad route: the running aggregator keeps consuming; the failure is counted and logged with file:line"
cp "$work/sluice.conf" "$work/good.conf"
sed 's/^route.pv = .*/route.pv = page_views -> recover, nosuch, page_views/' "$work/good.conf" > "$work/sluice.conf"
line_pv=$(grep -n '^route.pv' "$work/sluice.conf" | cut -d: -f1)
t_check "$(metric sluice_reload_failures_total)" = 0 "no reload failure before"
kill -HUP "$daemon"
t_wait_until 20 '[ "$(metric sluice_reload_failures_total)" = 1 ]'
t_check "$(metric sluice_reload_failures_total)" = 1 "sluice_reload_failures_total 1"
t_check "$(metric sluice_config_last_reload_successful)" = 0 "sluice_config_last_reload_successful 0"
t_check "$(grep -c "sluice.conf:$line_pv: \[module aggregator\] route.pv: unknown \"nosuch\"" "$work/sluiced.log")" -eq 1 "logged with file:line and the reason"
t_check "$(grep -c 'aggregator\] changed\|aggregator\] stopping' "$work/sluiced.log")" -eq 0 "the running aggregator was not touched"
kput page_views 0 '{"event_id":"pv3","event_type":"view","page_id":"page-2","user_id":"user-3","ts":"'"$(now)"'","duration_s":12}'
t_wait_until 20 '[ "$(chq "SELECT count() FROM page_views FINAL WHERE event_id = '"'pv3'"'")" = 1 ]'
t_check "$(chq "SELECT count() FROM page_views FINAL WHERE event_id = 'pv3'")" = 1 "the old generation still consumes and stores"
cp "$work/good.conf" "$work/sluice.conf"
kill -HUP "$daemon"
t_wait_until 20 '[ "$(metric sluice_config_last_reload_successful)" = 1 ]'
t_check "$(metric sluice_config_last_reload_successful)" = 1 "the good config reloads afterwards"
t_end

t_exit
