#!/usr/bin/env bash
# The aggregator's analytics handler as the analytics document describes
# it, fed with kcat and read back from ClickHouse, /aggregator/status and
# /metrics:
#   - lenient ingest: an event without `timestamp` takes the time it was
#     consumed (ts_source = 'consumed'); one without `id` takes an id
#     derived from its content (id_source = 'derived'), so a redelivered
#     copy collapses in the dedup window and, after a restart with an empty
#     window, in the ReplacingMergeTree; both counted; tables made by an
#     earlier version get the columns on start and by --init-schema;
#   - sluice_aggregator_events_total{handler,event_type}, its event types
#     capped by max_event_types (the rest count as "other", and a reload
#     does not start the count again), and the per-message histogram
#     sluice_aggregator_processing_seconds;
#   - the default route ^analytics.* does not read the aggregator's own
#     dead-letter topic (analytics.web.dlq): skipped and counted.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

t_scratch "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/_modules/aggregator.so"
port=$(t_free_port)
base=http://127.0.0.1:$port
bootfile=$work/bootstrap
daemon=""

chq() { clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" --query "$1" 2>>"$work/chc.err"; }
jget() {
    curl -s --max-time 30 "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null
}
st() { jget "$base/aggregator/status" "$1"; }
metric() {
    curl -s "$base/metrics" | awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "absent" }'
}
kput() { # kput TOPIC PARTITION VALUE
    printf '%s\n' "$3" | kcat -P -b "$(cat "$bootfile")" -t "$1" -p "$2"
}
now() { date -u +%Y-%m-%dT%H:%M:%S.000Z; }
start() {
    "$SLUICED" -c "$work/sluice.conf" 2>>"$work/sluiced.log" &
    daemon=$!
    pids+=($daemon)
    t_wait_http "$base/healthz" 20 && t_wait_for 20 test -s "$bootfile"
}
stop() {
    kill -TERM "$daemon"
    wait "$daemon"
}
# The analytics_events table as the version before ts_source and id_source.
OLD_ANALYTICS="CREATE TABLE analytics_events (id String, event_type String, user_id String,
 properties String, ts DateTime('UTC'), ts_ms UInt16, minute DateTime('UTC'), kafka_topic String,
 kafka_partition Int32, kafka_offset Int64) ENGINE = ReplacingMergeTree ORDER BY id"
columns() { chq "SELECT name FROM system.columns WHERE database = '$1' AND table = 'analytics_events' AND name LIKE '%_source' ORDER BY name" | tr '\n' ' '; }

t_case "clickhouse, an analytics_events table of the previous version, sluiced"
sl_svc_start clickhouse
t_check $? -eq 0 "clickhouse on ${SL_CH_URL:-nothing}"
chq "$OLD_ANALYTICS"
chq "INSERT INTO analytics_events (id, event_type, user_id, properties, ts, minute) VALUES ('old-1', 'click', 'u0', '{}', now(), toStartOfMinute(now()))"
cat > "$work/sluice.conf" <<EOF
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = info

[kafka]
brokers = embedded
embedded_topics = analytics.web:2, analytics.web.dlq:1, page_views:1
bootstrap_file = $bootfile

[clickhouse]
url = $SL_CH_URL

[module metrics]

# The built-in routes: page_views, ^analytics.* and segment_events.
[module aggregator]
topics = ^analytics.*, page_views
group = g_an
batch_interval = 100ms
max_event_types = 2
rdkafka.session.timeout.ms = 6000
rdkafka.heartbeat.interval.ms = 500

# A second instance holds the metric families while the first is replaced;
# it reads nothing (an instance with another retention_raw would recompute
# what this one leaves alone).
[module aggregator "b"]
topics = ^unused[.].*
group = g_b
EOF
"$SLUICED" -t -c "$work/sluice.conf" >/dev/null 2>"$work/t.out"
t_check $? -eq 0 "sluiced -t: $(head -c 200 "$work/t.out")"
start
t_check $? -eq 0 "sluiced up on $port"
t_wait_until 60 '[ "$(st "len(j[\"partitions\"])")" = 4 ]'
t_check "$(st 'len(j["partitions"])')" = 4 "the 4 partitions of 3 topics assigned"
t_end

t_case "analytics events without id or timestamp: taken, derived id and consumed time, collapsed"
before=$(date -u +%s)
noid='{"timestamp":"'"$(now)"'","eventType":"signup","userId":"u1","properties":{"plan":"pro","seats":3}}'
kput analytics.web 0 "$noid"
# the same event redelivered, and re-serialised in another member order
kput analytics.web 1 "$noid"
kput analytics.web 1 "$(printf '%s' "$noid" | python3 -c 'import json,sys; e=json.load(sys.stdin); print(json.dumps(dict(reversed(list(e.items())))))')"
kput analytics.web 0 '{"id":"nots-1","eventType":"click","userId":"u2"}'
kput analytics.web 0 '{"eventType":"click","userId":"u3","timestamp":null}'
kput analytics.web 0 '{"id":"bad-ts","eventType":"click","userId":"u4","timestamp":"yesterday"}'
t_wait_until 60 '[ "$(chq "SELECT count() FROM analytics_events FINAL WHERE kafka_topic = '"'analytics.web'"'")" = 3 ]'
after=$(($(date -u +%s) + 1))
t_check "$(chq "SELECT count() FROM analytics_events FINAL WHERE kafka_topic = 'analytics.web'")" = 3 "three events stored: signup, nots-1, the bare click"
t_check "$(columns default)" = "id_source ts_source " "the old table got ts_source and id_source on start"
t_check "$(chq "SELECT ts_source, id_source FROM analytics_events WHERE id = 'old-1'" | tr '\t' ' ')" = "event event" "its older rows read as 'event'"
got=$(chq "SELECT ts_source, id_source, match(id, '^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\$') FROM analytics_events FINAL WHERE event_type = 'signup'" | tr '\t' ' ')
t_check "$got" = "event derived 1" "no id: a UUID derived from the content, id_source = derived ($got)"
signup_id=$(chq "SELECT id FROM analytics_events FINAL WHERE event_type = 'signup'")
got=$(chq "SELECT ts_source, id_source, toUnixTimestamp(ts) BETWEEN $before AND $after FROM analytics_events FINAL WHERE id = 'nots-1'" | tr '\t' ' ')
t_check "$got" = "consumed event 1" "no timestamp: the time it was consumed, ts_source = consumed ($got)"
got=$(chq "SELECT ts_source, id_source FROM analytics_events FINAL WHERE user_id = 'u3'" | tr '\t' ' ')
t_check "$got" = "consumed derived" "neither (timestamp null): both filled ($got)"
t_check "$(st 'j["duplicates"]["analytics"]')" = 2 "the redelivered copy and the re-serialised one dropped by the dedup window"
t_check "$(chq "SELECT reason FROM processing_errors FINAL WHERE kafka_topic = 'analytics.web'")" = bad_timestamp "a timestamp that is there must still be one"
t_check "$(st 'j["analytics_filled"]["ids_derived"], j["analytics_filled"]["timestamps_consumed"]')" = "(2, 2)" "status counts 2 derived ids and 2 consumed times"
t_check "$(metric 'sluice_aggregator_analytics_filled_total{field="id"}')" = 2 "sluice_aggregator_analytics_filled_total{field=id} 2"
t_check "$(metric 'sluice_aggregator_analytics_filled_total{field="timestamp"}')" = 2 "sluice_aggregator_analytics_filled_total{field=timestamp} 2"
t_end

t_case "the default ^analytics.* route does not read its own dead-letter topic"
kput analytics.web.dlq 0 '{"id":"from-dlq","timestamp":"'"$(now)"'","eventType":"click","userId":"u9"}'
t_wait_until 60 '[ "$(st "j[\"own_output_skipped\"]")" = 1 ]'
t_check "$(st 'j["own_output_skipped"]')" = 1 "status: 1 message of analytics.web.dlq skipped"
t_check "$(chq "SELECT count() FROM analytics_events WHERE id = 'from-dlq'")" = 0 "not stored as an analytics event"
t_check "$(chq "SELECT count() FROM processing_errors WHERE kafka_topic = 'analytics.web.dlq'")" = 0 "nor as an error"
got=$(st '[p["committed"] for p in j["partitions"] if p["topic"] == "analytics.web.dlq"][0]')
t_wait_until 30 '[ "$(st "[p[\"committed\"] for p in j[\"partitions\"] if p[\"topic\"] == \"analytics.web.dlq\"][0]")" = 1 ]'
t_check "$(st '[p["committed"] for p in j["partitions"] if p["topic"] == "analytics.web.dlq"][0]')" = 1 "its offset is committed: read once"
t_check "$(grep -c 'analytics.web.dlq is a dead-letter or forward topic' "$work/sluiced.log")" -ge 1 "and the log says why"
t_end

t_case "events by handler and type, capped by max_event_types; processing-time histogram"
kput page_views 0 '{"event_id":"pv1","event_type":"view","page_id":"page-1","user_id":"user-1","ts":"'"$(now)"'","duration_s":12}'
kput analytics.web 0 '{"id":"p1","eventType":"purchase","userId":"u5"}'
kput analytics.web 0 '{"id":"w1","eventType":"weird type!","userId":"u5"}'
kput analytics.web 0 '{"id":"c2","eventType":"click","userId":"u6"}'
t_wait_until 60 '[ "$(chq "SELECT count() FROM analytics_events FINAL WHERE kafka_topic = '"'analytics.web'"'")" = 6 ]'
t_wait_until 30 '[ "$(metric "sluice_aggregator_events_total{handler=\"page_views\",event_type=\"view\"}")" = 1 ]'
curl -s "$base/metrics" > "$work/metrics"
m() { awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "absent" }' "$work/metrics"; }
t_check "$(m 'sluice_aggregator_events_total{handler="analytics",event_type="signup"}')" = 1 "signup 1"
t_check "$(m 'sluice_aggregator_events_total{handler="analytics",event_type="click"}')" = 3 "click 3"
t_check "$(m 'sluice_aggregator_events_total{handler="analytics",event_type="other"}')" = 2 "other 2: purchase past max_event_types 2, and a type no label may hold"
t_check "$(m 'sluice_aggregator_events_total{handler="analytics",event_type="purchase"}')" = absent "no series for purchase"
t_check "$(m 'sluice_aggregator_events_total{handler="page_views",event_type="view"}')" = 1 "page_views view 1"
consumed=$(st 'j["consumed"]["analytics"]')
t_check "$(m 'sluice_aggregator_processing_seconds_count{handler="analytics"}')" = "$consumed" "one processing time observed per analytics message consumed ($consumed)"
t_check "$(m 'sluice_aggregator_processing_seconds_count{handler="page_views"}')" = 1 "and per page view"
if command -v promtool >/dev/null; then
    promtool check metrics < "$work/metrics" > "$work/promtool.out" 2>&1
    t_check $? -eq 0 "promtool accepts /metrics: $(head -c 200 "$work/promtool.out")"
else
    t_skip "promtool is not installed (tests/harness/install-deps.sh installs prometheus)"
fi
# A reload that replaces the instance keeps the bound: its series live on
# in the family instance b holds, and the successor reads the types they
# expose instead of admitting two more.
sed -i 's/^batch_interval = 100ms/batch_interval = 150ms/' "$work/sluice.conf"
kill -HUP "$daemon"
t_wait_until 60 '[ "$(grep -c "as group g_an," "$work/sluiced.log")" = 2 ]'
t_check "$(grep -c "as group g_an," "$work/sluiced.log")" = 2 "the instance was replaced"
kput analytics.web 1 '{"id":"z1","eventType":"zoom","userId":"u7"}'
t_wait_until 120 '[ "$(metric "sluice_aggregator_events_total{handler=\"analytics\",event_type=\"other\"}")" = 3 ]'
t_check "$(metric 'sluice_aggregator_events_total{handler="analytics",event_type="other"}')" = 3 "after the reload a new type still counts as other"
t_check "$(metric 'sluice_aggregator_events_total{handler="analytics",event_type="zoom"}')" = absent "no series for zoom"
t_end

t_case "after a restart, with an empty dedup window: the derived id collapses a copy in ClickHouse"
stop
t_check $? -eq 0 "SIGTERM: exit 0"
start
t_check $? -eq 0 "started again: the embedded broker is empty, the dedup window too"
t_wait_until 120 '[ "$(st "len(j[\"partitions\"])")" = 4 ]'
kput analytics.web 1 "$noid"
t_wait_until 120 '[ "$(st "j[\"valid\"][\"analytics\"]")" = 1 ]'
t_check "$(st 'j["valid"]["analytics"], j["duplicates"]["analytics"]')" = "(1, 0)" "the copy was stored again, not dropped"
t_wait_until 30 '[ "$(st "j[\"buffered\"]")" = 0 ]'
t_check "$(chq "SELECT count() FROM analytics_events FINAL WHERE event_type = 'signup'")" = 1 "and collapses into one row"
t_check "$(chq "SELECT id FROM analytics_events FINAL WHERE event_type = 'signup'")" = "$signup_id" "under the same derived id"
t_check "$(grep -c 'ERROR\|runtime error\|AddressSanitizer' "$work/sluiced.log")" = 0 "no errors or sanitizer reports in the log"
t_end

t_case "retention: rows past retention_raw, _aggregates, _errors deleted at start; a SIGHUP changes it"
ago() { echo "toDateTime(now() - $1 * 86400)"; }
chq "INSERT INTO page_views (event_id, event_type, page_id, user_id, ts, minute) VALUES ('old-pv10', 'view', 'page-old', 'u', $(ago 10), toStartOfMinute($(ago 10)))"
chq "INSERT INTO analytics_events (id, event_type, user_id, properties, ts, minute) VALUES ('old-an3', 'click', 'u', '{}', $(ago 3), toStartOfMinute($(ago 3)))"
chq "INSERT INTO page_views_per_minute (page_id, minute, views, version) VALUES ('page-old', toStartOfMinute($(ago 10)), 1, 1)"
chq "INSERT INTO processing_errors (kafka_topic, kafka_partition, kafka_offset, reason, received_at) VALUES ('old', 0, 1, 'broken_json', $(ago 10))"
old_rows() { chq "SELECT (SELECT count() FROM page_views WHERE event_id = 'old-pv10'), (SELECT count() FROM analytics_events WHERE id = 'old-an3'), (SELECT count() FROM page_views_per_minute WHERE page_id = 'page-old'), (SELECT count() FROM processing_errors WHERE kafka_topic = 'old')" | tr '\t' ' '; }
t_check "$(old_rows)" = "1 1 1 1" "a page view 10 days old, an analytics event 3 days old, an aggregate and an error 10 days old"
cp "$work/sluice.conf" "$work/keep.conf"
sed -i 's/^max_event_types = 2/&\nretention_raw = 5\nretention_aggregates = 3/' "$work/sluice.conf"
line=$(grep -n '^retention_aggregates' "$work/sluice.conf" | cut -d: -f1)
"$SLUICED" -t -c "$work/sluice.conf" >/dev/null 2>"$work/t.out"
t_check $? -eq 1 "sluiced -t refuses aggregates kept shorter than raw events"
t_check "$(grep -c "sluice.conf:$line: \[module aggregator\] retention_aggregates: 3 days is shorter than retention_raw" "$work/t.out")" = 1 "at its file:line: $(head -c 300 "$work/t.out")"
sed -i 's/^retention_aggregates = 3/retention_aggregates = 30/' "$work/sluice.conf"
kill -HUP "$daemon"
t_wait_until 120 '[ "$(old_rows)" = "0 1 1 1" ]'
t_check "$(old_rows)" = "0 1 1 1" "on start with retention_raw 5: the 10-day page view is gone, the rest kept"
t_check "$(st '(j["retention"]["raw_days"], j["retention"]["aggregates_days"], j["retention"]["errors_days"], j["retention"]["rows_deleted"])')" = "(5, 30, 0, 1)" "status shows the retention and 1 row deleted"
t_check "$(metric 'sluice_aggregator_retention_deleted_rows_total{table="page_views"}')" = 1 "sluice_aggregator_retention_deleted_rows_total{table=page_views} 1"
sed -i -e 's/^retention_raw = 5/retention_raw = 2/' -e 's/^retention_aggregates = 30/retention_aggregates = 7\nretention_errors = 7/' "$work/sluice.conf"
kill -HUP "$daemon"
t_wait_until 120 '[ "$(old_rows)" = "0 0 0 0" ]'
t_check "$(old_rows)" = "0 0 0 0" "after a SIGHUP with raw 2, aggregates 7, errors 7 days: every old row is gone"
t_check "$(st '(j["retention"]["raw_days"], j["retention"]["aggregates_days"], j["retention"]["errors_days"])')" = "(2, 7, 7)" "status shows the new retention"
# A late page view older than the raw retention is stored (and deleted by
# the next sweep) but its minute is not recomputed from the rows left.
kput page_views 0 '{"event_id":"late3","event_type":"view","page_id":"page-late","user_id":"u","ts":"'"$(date -u -d '3 days ago' +%Y-%m-%dT%H:%M:%S.000Z)"'","duration_s":1}'
kput page_views 0 '{"event_id":"now1","event_type":"view","page_id":"page-now","user_id":"u","ts":"'"$(now)"'","duration_s":1}'
t_wait_until 60 '[ "$(chq "SELECT count() FROM page_views_per_minute FINAL WHERE page_id = '"'page-now'"'")" = 1 ]'
t_check "$(chq "SELECT count() FROM page_views_per_minute FINAL WHERE page_id = 'page-now'")" = 1 "a page view of now is aggregated"
t_check "$(chq "SELECT count() FROM page_views FINAL WHERE event_id = 'late3'")" = 1 "the late one is stored"
t_check "$(chq "SELECT count() FROM page_views_per_minute FINAL WHERE page_id = 'page-late'")" = 0 "but its expired minute is not recomputed"
t_end

t_case "--init-schema adds the columns to a table of the previous version and applies the retention"
chq "CREATE DATABASE old1"
chq "$(printf '%s' "$OLD_ANALYTICS" | sed 's/CREATE TABLE /CREATE TABLE old1./')"
python3 "$SL_TOP/tests/harness/conf_local.py" "$work/sluice.conf" "$work/old1.conf" "clickhouse:database=old1"
chq "CREATE TABLE old1.processing_errors (kafka_topic String, kafka_partition Int32, kafka_offset Int64, handler String, reason String, detail String, raw String, received_at DateTime('UTC')) ENGINE = ReplacingMergeTree ORDER BY (kafka_topic, kafka_partition, kafka_offset)"
chq "INSERT INTO old1.processing_errors (kafka_topic, kafka_partition, kafka_offset, received_at) VALUES ('old', 0, 1, $(ago 10)), ('new', 0, 1, now())"
timeout 120 "$SLUICED" --init-schema -c "$work/old1.conf" 2>"$work/init.log"
t_check $? -eq 0 "exit 0: $(tail -c 200 "$work/init.log")"
t_check "$(columns old1)" = "id_source ts_source " "old1.analytics_events has ts_source and id_source"
t_wait_until 60 '[ "$(chq "SELECT count() FROM old1.processing_errors WHERE kafka_topic = '"'old'"'")" = 0 ]'
t_check "$(chq "SELECT groupArray(kafka_topic) FROM old1.processing_errors")" = "['new']" "and applied retention_errors 7: the 10-day error is gone, today's kept"
t_end

stop
t_exit
