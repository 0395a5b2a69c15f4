#!/usr/bin/env bash
# Several brokers: the roles of conf/ (one sluiced each) on an embedded
# cluster of three brokers with every partition replicated to all three
# ([kafka] embedded_brokers = 3, embedded_replication = 3).  Under generator
# traffic and segment API changes (through the outbox), one broker is taken
# down mid-stream and brought back:
#   - the two others keep serving their partitions meanwhile;
#   - afterwards every count is exact: ClickHouse holds each event the
#     generator delivered and each change history recorded, and kcat, the
#     independent reader, finds every delivered event in page_views exactly
#     once and every outbox event in segment_events in order per aggregate;
#   - it prints how long each role's traffic of the down broker waited.
# The librdkafka 2.0.2 mock moves no leadership when a broker goes down:
# its partitions wait for it, which is what the figures measure.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"
. "$SL_TOP/tests/harness/roles.sh"

t_scratch "$SL_BUILD"/_modules/{metrics,generator,aggregator,segments,outbox}.so \
    "$SL_BUILD/tests/modules/kafkaprobe/.libs/kafkaprobe.so"
EPS=${EPS:-200} # generator events/s while the broker goes down and back

. "$SL_TOP/tests/harness/flow.sh"

flow_services || {
    t_exit
    exit 1
}
roles_in brokers
three=("kafka:embedded_brokers=3" "kafka:embedded_replication=3" "kafka:admin=true")
roles=(broker aggregator outbox segments generator)
role_conf broker broker "${three[@]}"
# The broker stays down until the states below are reached, however long a
# loaded machine takes: no attempt of the producers may time out before
# the test's own bound (tests/run.sh, 1800 s) has run out, since a timed
# out event is a failed one for the generator (async) and a row nears
# parking (max_attempts) for the relay.
role_conf aggregator aggregator
role_conf outbox outbox "module outbox:delivery_timeout=3600s"
role_conf segments segments
role_conf generator generator "module generator:delivery_timeout=3600s"
printf '\n[module kafkaprobe]\nproduce = false\n' >> "${conf_of[broker]}"

t_case "-t refuses more replicas than embedded brokers, with file:line"
localize broker "$work/bad.conf" "${three[@]}" "kafka:embedded_brokers=2"
"$SLUICED" -t -c "$work/bad.conf" 2> "$work/bad.out"
t_check $? -eq 1 "exit 1"
t_check "$(grep -c "bad.conf:[0-9]*: .*embedded_replication: 3 replicas need as many embedded_brokers (2)" "$work/bad.out")" = 1 \
    "names the line and why: $(head -c 200 "$work/bad.out")"
t_end

t_case "the roles start on three embedded brokers; every partition has three replicas"
roles_up "${roles[@]}"
role_bases
brokers=$(cat "$boot")
t_check "$(tr ',' '\n' < "$boot" | wc -l)" = 3 "the broker role wrote three addresses: $brokers"
kcat -L -b "$brokers" -t page_views > "$work/meta" 2>&1
kcat -L -b "$brokers" -t segment_events >> "$work/meta" 2>&1
t_check "$(grep -c 'replicas: 1,2,3' "$work/meta")" = $((64 + 16)) \
    "all 64 + 16 partitions of page_views and segment_events on brokers 1,2,3"
# The victim leads partitions of both topics, so that both streams wait.
victim=$(python3 - "$work/meta" <<'EOF'
import re, sys
lead = {}
topic = None
for line in open(sys.argv[1]):
    m = re.search(r'topic "([^"]+)"', line)
    if m:
        topic = m.group(1)
    m = re.search(r"partition \d+, leader (\d+)", line)
    if m:
        lead.setdefault(int(m.group(1)), set()).add(topic)
print(min(b for b, t in lead.items() if len(t) == 2))
EOF
)
t_check -n "$victim" "broker $victim leads partitions of both topics"
t_end

t_case "a broker down mid-stream and back: the others serve meanwhile, the roles resume"
curl -s -o /dev/null -X POST "$gbase/generator/config/speed?eps=$EPS"
rm -f "$work/stop"
churn B &
churner=$!
flowing "before the broker goes down"
code=$(curl -s -o "$work/admin" -w '%{http_code}' -X POST "http://127.0.0.1:${port[broker]}/kafkaprobe/broker?id=$victim&up=0")
t0=$(date +%s.%N)
t_check "$code" = 200 "broker $victim taken down: $(cat "$work/admin")"
# States that only a down broker explains: a second of traffic held in the
# generator, and ten users' changes (three rows each) held in the outbox.
# Each check is of the value the wait saw: rows and events bound for the
# other brokers keep leaving, so a second reading may be lower.
held=0
t_wait_until 120 "held=\$(gen 'j[\"pending\"]'); [ \"\$held\" -ge $EPS ]"
t_check "$held" -ge "$EPS" "the generator holds the events of broker $victim's partitions ($held)"
held=0
t_wait_until 120 'held=$(pgq "SELECT count(*) FROM outbox"); [ "$held" -ge 30 ]'
t_check "$held" -ge 30 "the outbox holds the rows of broker $victim's partitions ($held)"
flowing "while broker $victim is down (the other two serve theirs)"
t1pg=$(pgq "SELECT now()")
code=$(curl -s -o "$work/admin" -w '%{http_code}' -X POST "http://127.0.0.1:${port[broker]}/kafkaprobe/broker?id=$victim&up=1")
t1=$(date +%s.%N)
t_check "$code" = 200 "broker $victim back up"
# How long each role's traffic of the down broker waited, from the moment
# it came back: everything generated before is delivered; no outbox row
# written before is left; ClickHouse holds as many valid events as were
# delivered by then.
since() { python3 -c "import sys, time; print('%.1f' % (time.time() - float(sys.argv[1])))" "$1"; }
before=$(gen 'j["generated"]["total"]')
t_wait_until 120 "[ \"\$(delivered)\" -ge $before ]"
gen_s=$(since "$t1")
t_check "$(delivered)" -ge "$before" "the generator delivered the $before events generated before the broker came back"
t_wait_until 120 "[ \"\$(pgq \"SELECT count(*) FROM outbox WHERE created_at <= '$t1pg'\")\" = 0 ]"
out_s=$(since "$t1")
t_check "$(pgq "SELECT count(*) FROM outbox WHERE created_at <= '$t1pg'")" = 0 "the outbox published every row written before"
want_counts
t_wait_until 180 "[ \"\$(raw_count)\" -ge $W_VALID ]"
agg_s=$(since "$t1")
t_check "$(raw_count)" -ge "$W_VALID" "the aggregator caught up with the $W_VALID valid events delivered by then"
down_s=$(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$t1")
echo "    figures (eps $EPS, load $(cut -d' ' -f1 /proc/loadavg)): broker $victim down ${down_s} s; after it came back" \
    "the generator's held events were delivered in ${gen_s} s, the outbox's held rows published in ${out_s} s," \
    "the aggregator caught up in ${agg_s} s"
flowing "after broker $victim came back"
curl -s -o /dev/null -X POST "$gbase/generator/config/speed?eps=0"
touch "$work/stop"
wait "$churner"
t_wait_until 60 settled
t_end

t_case "after the outage every count is exact, in ClickHouse and for kcat"
check_pages "three brokers"
check_segments "three brokers"
kcat -C -b "$brokers" -t page_views -e -q -o beginning -X fetch.wait.max.ms=10 -f '%s\n' > "$work/pv.dump"
t_check "$(wc -l < "$work/pv.dump")" = "$(delivered)" \
    "kcat reads the $(delivered) events the generator delivered, each once (got $(wc -l < "$work/pv.dump"))"
kcat -C -b "$brokers" -t segment_events -e -q -o beginning -X fetch.wait.max.ms=10 -f '%k\t%h\n' > "$work/se.dump"
read -r distinct disorder < <(python3 - "$work/se.dump" <<'EOF'
import re, sys
first, last, disorder = set(), {}, 0
for line in open(sys.argv[1]):
    key, hdrs = line.rstrip("\n").split("\t", 1)
    m = re.search(r"(?:^|,)event_id=(\d+)", hdrs)
    if m is None:
        continue
    i = int(m.group(1))
    if i in first:
        continue  # a redelivery (at least once): order is judged on first copies
    first.add(i)
    if i < last.get(key, 0):
        disorder += 1
    last[key] = i
print(len(first), disorder)
EOF
)
chdistinct=$(chq "SELECT uniqExact(event_id) FROM segment_events")
t_check "${distinct:-0}" -gt 0 "kcat found $distinct distinct outbox events in segment_events"
t_check "${distinct:-0}" = "${chdistinct:-none}" "ClickHouse's segment_events holds those $distinct (got $chdistinct)"
t_check "${disorder:-x}" = 0 "per aggregate, each event's first copy follows the one before it"
t_end

t_case "SIGTERM to all exits 0"
role_stop generator segments outbox aggregator broker
t_end

t_exit
