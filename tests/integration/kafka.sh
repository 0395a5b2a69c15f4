#!/usr/bin/env bash
# The Kafka connector against the embedded broker, as a module uses it: a
# real sluiced with the kafkaprobe test module, checked from outside with
# kcat and curl.  Every count is exact: a lost or duplicated message fails.
. "$(dirname "$0")/../lib.sh"

work=$(t_tmpdir)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    [ -n "${SL_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

N=${N:-2000}
mods=$work/mods
mkdir -p "$mods"
cp "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/_modules/generator.so" "$mods/"
cp "$SL_BUILD/tests/modules/kafkaprobe/.libs/kafkaprobe.so" "$mods/"
port=$(t_free_port)
base=http://127.0.0.1:$port
bootfile=$work/bootstrap

# Instance b of the split group; probe_b="" leaves it out.
section_b='[module kafkaprobe "b"]
topics = t_split
group = g_split
produce = false'
write_conf() {
    cat > "$work/sluice.conf" <<EOF
# written by tests/integration/kafka.sh
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = debug
drain_timeout = 10s

[kafka]
brokers = embedded
embedded_brokers = ${embedded_brokers:-1}
embedded_topics = t_out:4, t_in:4, t_split:8, t_down:4, t_commit:2, t_both:4, t_hold:1
bootstrap_file = $bootfile
admin = true
rdkafka.enable.idempotence = true
rdkafka.reconnect.backoff.max.ms = 500
rdkafka.statistics.interval.ms = 500
# The embedded broker waits session.timeout.ms (less 1 s) before it gives
# the partitions of a member that left to its successor; the default 45 s
# would make every replaced consumer idle that long.
rdkafka.session.timeout.ms = 6000

[module metrics]

[module kafkaprobe]
topics = t_in
group = g_in

[module kafkaprobe "a"]
topics = t_split
group = g_split
produce = false

${probe_b-$section_b}

[module kafkaprobe "c"]
topics = t_commit
group = g_commit
produce = false
auto_commit = false
tag = ${ctag:-first}

[module kafkaprobe "d"]
topics = t_hold
group = g_hold
produce = false
queued_min_messages = 100
${gen:-}
EOF
}

start_daemon() {
    "$SLUICED" -c "$work/sluice.conf" 2>>"$work/sluiced.log" &
    daemon=$!
    pids+=("$daemon")
    t_wait_http "$base/healthz" 10 && t_wait_for 10 test -s "$bootfile"
}

jget() { # jget URL EXPR: evaluates a Python expression over the JSON answer `j`
    curl -s --max-time 60 "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2"
}
jpost() { # jpost URL EXPR
    curl -s --max-time 120 -X POST "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2"
}
metric() { # metric NAME_WITH_LABELS: its value, or "absent"
    curl -s "$base/metrics" | awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "absent" }'
}
kread() { # kread TOPIC: every value of a topic, one per line, sorted
    kcat -C -b "$(cat "$bootfile")" -t "$1" -e -q -f '%s\n' | sort
}
expected() { # expected PREFIX COUNT
    seq 0 $(($2 - 1)) | sed "s/^/$1-/" | sort
}
# fence TOPIC PARTITIONS CONSUMED-URL...: a marker "fence-TOPIC-P" put in
# every partition after everything produced so far, then a wait until the
# members answering at the URLs have read them all.  A partition is read
# in order, so by then whatever came before has been delivered, a
# duplicate of it included: "nothing more arrives" needs no sleep.
fence() {
    local topic=$1 n=$2 urls=("${@:3}") p
    for ((p = 0; p < n; p++)); do
        echo "fence-$topic-$p" | kcat -P -b "$(cat "$bootfile")" -t "$topic" -p "$p"
    done
    t_wait_until 60 '[ "$(fences_read "${urls[@]}")" -ge "$n" ]'
}
fences_read() { # fences_read CONSUMED-URL...: markers read by those members
    local u
    for u in "$@"; do
        jget "$u?values=1" 'sum(v.startswith("fence-") for v in j["values"])'
    done | awk '{ s += $1 } END { print s + 0 }'
}
# unfenced CONSUMED-URL: the values a member read, markers left out, one per line
unfenced() {
    jget "$1?values=1" '"\n".join(v for v in j["values"] if not v.startswith("fence-"))'
}

# ---------------------------------------------------------------- config
t_case "-t refuses bad rdkafka properties and owned ones, with file:line"
write_conf
"$SLUICED" -t -c "$work/sluice.conf" 2>"$work/t.out"
t_check $? -eq 0 "valid config: exit 0"
t_check ! -e "$bootfile" "-t started no broker (no bootstrap file)"
sed -e 's/^rdkafka.reconnect.backoff.max.ms = 500/rdkafka.linger.ms = banana\nrdkafka.no.such.property = 1\nrdkafka.bootstrap.servers = 127.0.0.1:1/' \
    "$work/sluice.conf" > "$work/bad.conf"
"$SLUICED" -t -c "$work/bad.conf" 2>"$work/t.out"
t_check $? -eq 1 "bad config: exit 1"
for key in linger.ms no.such.property bootstrap.servers; do
    line=$(grep -n "^rdkafka.$key" "$work/bad.conf" | cut -d: -f1)
    t_check "$(grep -c "bad.conf:$line:.*rdkafka.$key" "$work/t.out")" -ge 1 "rdkafka.$key reported at bad.conf:$line"
done
t_end

# ------------------------------------------------------ produce, kcat reads
t_case "sluiced produces $N messages and kcat reads exactly those"
start_daemon
t_check -s "$bootfile" "bootstrap file written: $(cat "$bootfile" 2>/dev/null)"
t_check "$(grep -c "embedded Kafka broker listening on $(cat "$bootfile")" "$work/sluiced.log")" -ge 1 "broker address logged"
t_check "$(ss -ltn | awk '{print $4}' | grep -c "^$(cat "$bootfile")$")" -eq 1 "a real TCP listener on $(cat "$bootfile")"
got=$(jpost "$base/kafkaprobe/produce?topic=t_out&n=$N&prefix=out" '"%d %d" % (j["delivered"], j["failed"])')
t_check "$got" = "$N 0" "delivered $N, failed 0 (got: $got)"
kread t_out > "$work/out.got"
expected out "$N" > "$work/out.want"
t_check "$(wc -l < "$work/out.got")" -eq "$N" "kcat read $N messages"
t_check -z "$(diff "$work/out.want" "$work/out.got" | head -3)" "contents identical"
t_check "$(metric 'sluice_kafka_delivered_total{module="kafkaprobe",topic="t_out"}')" = "$N" "sluice_kafka_delivered_total{module=\"kafkaprobe\",topic=\"t_out\"} = $N"
t_check "$(metric 'sluice_kafka_produced_total{module="kafkaprobe",topic="t_out"}')" = "$N" "sluice_kafka_produced_total{module=\"kafkaprobe\",topic=\"t_out\"} = $N"
got=$(jpost "$base/kafkaprobe/produce?topic=t_hdr&n=3&prefix=h&key=k1&hdr=trace:abc" '"%d %d" % (j["delivered"], j["failed"])')
t_check "$got" = "3 0" "3 messages with a key and a header delivered"
t_check "$(kcat -C -b "$(cat "$bootfile")" -t t_hdr -e -q -f '%k|%h|%s\n' | sort | tr '\n' ' ')" = "k1|trace=abc|h-0 k1|trace=abc|h-1 k1|trace=abc|h-2 " \
    "kcat sees key, header and value of each"
t_end

# ------------------------------------------------ kcat produces, group reads
t_case "kcat produces $N messages and a sluiced consumer group reads exactly them"
# A slice per partition, so that every partition has offsets to commit.
for p in 0 1 2 3; do
    expected in "$N" | awk -v p=$p 'NR % 4 == p' | kcat -P -b "$(cat "$bootfile")" -t t_in -p $p -H trace=abc
done
t_wait_until 30 '[ "$(jget "$base/kafkaprobe/consumed" "j[\"count\"]")" -ge "$N" ]'
fence t_in 4 "$base/kafkaprobe/consumed"
t_check $? -eq 0 "a marker put in each partition after the $N was read: nothing else can still be on its way"
t_check "$(jget "$base/kafkaprobe/consumed" 'j["count"], j["distinct"], j["headers"]')" = "($((N + 4)), $((N + 4)), $N)" "consumed $N and the 4 markers, all distinct, each of the $N with its header trace=abc"
unfenced "$base/kafkaprobe/consumed" | sort > "$work/in.got"
t_check -z "$(expected in "$N" | diff - "$work/in.got" | head -3)" "contents identical to what kcat produced"
t_check "$(metric 'sluice_kafka_consumed_total{module="kafkaprobe",topic="t_in"}')" = "$((N + 4))" "sluice_kafka_consumed_total{module=\"kafkaprobe\",topic=\"t_in\"} = $N + 4 markers"
# The lag gauge comes from librdkafka's statistics, once offsets are committed.
lag_zero() {
    curl -s "$base/metrics" | awk '/^sluice_kafka_consumer_lag\{module="kafkaprobe",topic="t_in"/ && $0 !~ /instance_name/ { n++; s += $2 }
        END { exit !(n == 4 && s == 0) }'
}
t_wait_for 15 lag_zero
t_check $? -eq 0 "sluice_kafka_consumer_lag: 4 partitions of t_in, all 0"
lag_zero || curl -s "$base/metrics" | grep '^sluice_kafka_consumer_lag'   # why, when not
t_end

# ------------------------------------- two modules producing one topic
t_case "two modules producing one topic keep their own series (label module)"
gen=$'[module generator]\ntopic = t_both\neps = 20' write_conf
kill -HUP "$daemon"
snap() { curl -s "$base/metrics" > "$work/both.metrics"; }
val() { # val NAME_WITH_LABELS: its value in the last snap, or "absent"
    awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "absent" }' "$work/both.metrics"
}
gen_series='sluice_kafka_delivered_total{module="generator",topic="t_both"}'
t_wait_until 30 'snap; [ "$(val "$gen_series")" != absent ] && [ "$(val "$gen_series")" -gt 0 ]'
got=$(jpost "$base/kafkaprobe/produce?topic=t_both&n=10&prefix=both" '"%d %d" % (j["delivered"], j["failed"])')
t_check "$got" = "10 0" "kafkaprobe delivered 10 to t_both while the generator produces there ($got)"
snap
t_check "$(val 'sluice_kafka_delivered_total{module="kafkaprobe",topic="t_both"}')" = 10 "kafkaprobe's delivered series counts its own 10 only"
t_check "$(val 'sluice_kafka_produced_total{module="kafkaprobe",topic="t_both"}')" = 10 "kafkaprobe's produced series counts its own 10 only"
t_check "$(val "$gen_series")" -gt 0 "the generator has its own series: $(val "$gen_series")"
t_check "$(grep '^sluice_kafka_' "$work/both.metrics" | grep -vc '^sluice_kafka_[a-z_]*{module="')" = 0 \
    "every sluice_kafka_ series has module as its first label"
# The generator leaves; its series keeps its final count (kafkaprobe still
# holds the family), and the two together are what the topic holds.
write_conf
kill -HUP "$daemon"
gen_gone() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/generator/status")" = 404 ]; }
t_wait_for 30 gen_gone
t_check $? -eq 0 "the generator stopped"
snap
gd=$(val "$gen_series")
t_check "$gd" -gt 0 "the generator's series outlived it: $gd"
t_check "$(kread t_both | wc -l)" = "$((10 + gd))" "kcat reads 10 + $gd messages in t_both: each counted in its module's series only"
t_end

# -------------------------------------------- two members split partitions
t_case "two instances in one group split 8 partitions and read every message once"
split_ready() {
    local a b
    a=$(jget "$base/kafkaprobe/a/consumed" 'j["assigned"]')
    b=$(jget "$base/kafkaprobe/b/consumed" 'j["assigned"]')
    [ "$a" -gt 0 ] && [ "$b" -gt 0 ] && [ $((a + b)) -eq 8 ]
}
t_wait_for 30 split_ready
t_check $? -eq 0 "assignment: a=$(jget "$base/kafkaprobe/a/consumed" 'j["assigned"]') b=$(jget "$base/kafkaprobe/b/consumed" 'j["assigned"]')"
# One slice per partition: keyless messages would stick to one partition
# per batch (librdkafka's sticky partitioner) and might all go to one member.
expected split "$N" > "$work/split.want"
for p in 0 1 2 3 4 5 6 7; do
    awk -v p=$p 'NR % 8 == p' "$work/split.want" | kcat -P -b "$(cat "$bootfile")" -t t_split -p $p
done
split_done() {
    [ $(( $(jget "$base/kafkaprobe/a/consumed" 'j["count"]') + $(jget "$base/kafkaprobe/b/consumed" 'j["count"]') )) -ge "$N" ]
}
t_wait_for 30 split_done
fence t_split 8 "$base/kafkaprobe/a/consumed" "$base/kafkaprobe/b/consumed"
t_check $? -eq 0 "a marker put in each partition after the $N was read by a or b"
unfenced "$base/kafkaprobe/a/consumed" > "$work/split.a"
unfenced "$base/kafkaprobe/b/consumed" > "$work/split.b"
ca=$(grep -c . "$work/split.a")
cb=$(grep -c . "$work/split.b")
t_check $((ca + cb)) -eq "$N" "a read $ca, b read $cb: $N together"
t_check "$ca" -gt 0 "a read some"
t_check "$cb" -gt 0 "b read some"
cat "$work/split.a" "$work/split.b" | sort > "$work/split.got"
t_check -z "$(diff "$work/split.want" "$work/split.got" | head -3)" "the union is every message exactly once"
# Lag is reported by the member that reads a partition, and only by it: a
# member whose partition was moved away by the rebalance must not keep
# exposing its last lag for it.
lag_readers() { # who reads which partition, as lag_owners prints it
    for m in a b; do
        curl -s --max-time 60 "$base/kafkaprobe/$m/consumed" | python3 -c 'import json,sys
for p in json.load(sys.stdin)["partitions"]: print(p.split("/")[1] + sys.argv[1])' "$m" 2>/dev/null
    done | sort | tr '\n' ' '
}
lag_once() { # every partition's lag, each from the member that reads it
    [ "$(lag_owners)" = "$(lag_readers)" ] && [ "$(lag_owners | wc -w)" -eq 8 ]
}
lag_owners() {
    curl -s "$base/metrics" | grep '^sluice_kafka_consumer_lag{module="kafkaprobe",topic="t_split",' |
        sed 's/.*partition="\([0-9]*\)",instance_name="\(.\)".*/\1\2/' | sort | tr '\n' ' '
}
t_wait_for 10 lag_once
t_check $? -eq 0 "one lag series per partition: $(lag_owners)"
# b leaves (a reload removes it), a takes all 8; b comes back and takes 4
# of them from a.
probe_b="" write_conf
kill -HUP "$daemon"
t_wait_for 30 bash -c "[ \"\$(curl -s $base/kafkaprobe/a/consumed | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"assigned\"])')\" = 8 ]"
t_check $? -eq 0 "with b removed a reads all 8 partitions"
t_wait_for 10 lag_once
t_check $? -eq 0 "one lag series per partition, all a's: $(lag_owners)"
write_conf
kill -HUP "$daemon"
t_wait_for 30 split_ready
t_check $? -eq 0 "with b back the partitions are split again"
t_wait_for 10 lag_once
t_check $? -eq 0 "one lag series per partition again: $(lag_owners), readers: $(lag_readers)"
t_end

# ------------------------------------------------- commit, pause, resume
t_case "explicit commits are where a successor resumes; a paused partition waits"
cbase=$base/kafkaprobe/c
kput() { # kput PREFIX FROM COUNT PARTITION
    seq "$2" $(($2 + $3 - 1)) | sed "s/^/$1-/" | kcat -P -b "$(cat "$bootfile")" -t t_commit -p "$4"
}
t_wait_until 30 '[ "$(jget "$cbase/consumed" "j[\"assigned\"]")" -eq 2 ]'
kput c1 0 50 0
kput c1 50 50 1
t_wait_until 30 '[ "$(jget "$cbase/consumed" "j[\"count\"]")" -ge 100 ]'
got=$(jpost "$cbase/commit" '"%d %d" % (j["err"], j["committed"])')
t_check "$got" = "0 2" "offsets of 2 partitions committed after 100 messages (got: $got)"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$cbase/pause?topic=t_commit&partition=1&pause=1")
t_check "$code" = 200 "partition 1 paused ($code)"
# Partition 1's messages go first: both partitions are fetched from the one
# broker together, so once partition 0's 10 arrived, partition 1's would
# have come with them or before, were it not paused.
kput c2 10 10 1
kput c2 0 10 0
t_wait_until 30 '[ "$(jget "$cbase/consumed" "j[\"count\"]")" -ge 110 ]'
t_check "$(jget "$cbase/consumed" 'j["count"]')" -eq 110 "110 read: partition 1's new messages wait while paused"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$cbase/pause?topic=t_commit&partition=1&pause=0")
t_check "$code" = 200 "partition 1 resumed ($code)"
t_wait_until 30 '[ "$(jget "$cbase/consumed" "j[\"count\"]")" -ge 120 ]'
t_check "$(jget "$cbase/consumed" 'j["count"], j["distinct"]')" = "(120, 120)" "all 120 read after resume, once each"
# The successor (a changed option replaces the instance) starts at the
# committed offsets: it reads again exactly the 20 read but not committed,
# then a marker put in each partition after the reload; once it has both
# markers it has read everything it would re-read.
ctag=second write_conf
kill -HUP "$daemon"
t_wait_until 60 '[ "$(jget "$cbase/consumed" "j[\"tag\"]")" = second ] && [ "$(jget "$cbase/consumed" "j[\"assigned\"]")" -eq 2 ]'
t_check "$(jget "$cbase/consumed" 'j["tag"]')" = second "the successor (tag = second) serves and has its partitions"
kput c3 0 1 0
kput c3 1 1 1
t_wait_until 30 '[ "$(jget "$cbase/consumed?values=1" "{\"c3-0\", \"c3-1\"} <= set(j[\"values\"])")" = True ]'
jget "$cbase/consumed?values=1" '"\n".join(v for v in j["values"] if not v.startswith("c3-"))' > "$work/commit.got"
t_check "$(jget "$cbase/consumed?values=1" '{"c3-0", "c3-1"} <= set(j["values"])')" = True "the successor read the markers put in both partitions after the reload"
t_check "$(wc -l < "$work/commit.got")" -eq 20 "before it, the successor read 20 messages (not 120)"
t_check -z "$(expected c2 20 | diff - "$work/commit.got" | head -3)" "exactly the uncommitted c2-0..19"
t_end

# ------------------------------------------------------- hold, fetch restart
t_case "a held consumer hands nothing over while librdkafka fetches; a drained queue restarts fetching"
dbase=$base/kafkaprobe/d
t_wait_until 30 '[ "$(jget "$dbase/consumed" "j[\"assigned\"]")" -eq 1 ]'
# One message read first: the backlog counts from the position it leaves.
echo h-0 | kcat -P -b "$(cat "$bootfile")" -t t_hold -p 0
t_wait_until 30 '[ "$(jget "$dbase/consumed" "j[\"count\"]")" -eq 1 ]'
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$dbase/hold?hold=1")
t_check "$code" = 200 "consumer d held ($code)"
seq 1 5000 | sed 's/^/h-/' | kcat -P -b "$(cat "$bootfile")" -t t_hold -p 0
# librdkafka fetches until its queue holds queued.min.messages (100) and
# learns the log end from the responses: then 100 or more are waiting.
t_wait_until 30 '[ "$(jget "$dbase/consumed" "j[\"backlog\"]")" -ge 100 ]'
got=$(jget "$dbase/consumed" '"%d %d" % (j["backlog"] >= 100, j["count"])')
t_check "$got" = "1 1" "held: 100 or more fetched and waiting, none handed over (got: $got, backlog $(jget "$dbase/consumed" 'j["backlog"]'))"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$dbase/hold?hold=0")
t_check "$code" = 200 "consumer d released ($code)"
t_wait_until 60 '[ "$(jget "$dbase/consumed" "j[\"count\"]")" -ge 5001 ]'
t_check "$(jget "$dbase/consumed" 'j["count"], j["distinct"], j["backlog"]')" = "(5001, 5001, 0)" "released: all 5001 read, once each, nothing waiting"
restarts=$(metric 'sluice_kafka_fetch_restarts_total{module="kafkaprobe",reason="drained",instance_name="d"}')
t_check "${restarts:-0}" -gt 0 "fetching restarted once the loop drained a queue that had reached queued.min.messages (${restarts:-none})"
t_end

# ------------------------------------------------------------ broker down
t_case "an embedded broker down and back during production: nothing lost"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base/kafkaprobe/broker?id=1&up=0")
t_check "$code" = 200 "broker 1 taken down ($code)"
curl -s --max-time 120 -X POST "$base/kafkaprobe/produce?topic=t_down&n=$N&prefix=down" > "$work/down.json" &
producer=$!
pids+=("$producer")
not_ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 503 ]; }
t_wait_for 15 not_ready
t_check $? -eq 0 "/readyz says 503 while the broker is down"
# The produce request may not have reached sluiced yet on a loaded machine.
t_wait_until 30 '[ "$(jget "$base/kafkaprobe/status" "j[\"outq\"]")" -gt 0 ]'
outq=$(jget "$base/kafkaprobe/status" 'j["outq"]')
t_check "$outq" -gt 0 "messages wait in the producer ($outq) while the broker is down"
t_check "$(kill -0 $producer 2>/dev/null && echo running)" = running "the produce run has not finished"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base/kafkaprobe/broker?id=1&up=1")
t_check "$code" = 200 "broker 1 back up ($code)"
wait $producer
got=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["delivered"], j["failed"])' "$work/down.json")
t_check "$got" = "$N 0" "delivered $N, failed 0 (got: $got)"
kread t_down > "$work/down.got"
t_check "$(wc -l < "$work/down.got")" -eq "$N" "kcat read exactly $N (no duplicates)"
t_check "$(sort -u "$work/down.got" | wc -l)" -eq "$N" "$N distinct"
t_check -z "$(expected down "$N" | diff - "$work/down.got" | head -3)" "contents identical"
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ]; }
t_wait_for 15 ready
t_check $? -eq 0 "/readyz back to 200"
t_end

t_case "injected produce errors are retried: nothing lost, nothing doubled"
# Kafka API 0 is Produce; error 7 is REQUEST_TIMED_OUT, which librdkafka retries.
# One key, so one partition: librdkafka sends one request per partition, and
# the 3 failures then hit 3 requests in a row, each retried after 100 ms.
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base/kafkaprobe/errors?api=0&err=7&count=3")
t_check "$code" = 200 "3 Produce errors injected ($code)"
curl -s --max-time 60 -X POST "$base/kafkaprobe/produce?topic=t_inj&n=100&prefix=inj&key=one" > "$work/inj.json"
got=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["delivered"], j["failed"], "%.3f" % j["elapsed_s"])' "$work/inj.json")
t_check "${got% *}" = "100 0" "delivered 100, failed 0 (got: ${got% *})"
t_check "$(echo "${got##* } >= 0.25" | bc)" = 1 "took ${got##* } s: the 3 errors were hit, each retried after retry.backoff.ms (100 ms)"
kread t_inj > "$work/inj.got"
t_check -z "$(expected inj 100 | diff - "$work/inj.got" | head -3)" "kcat reads exactly the 100, once each"
t_end

# ---------------------------------------------------------------- reload
t_case "a reload that leaves [kafka] alone keeps the broker and its data"
before=$(cat "$bootfile")
reloads=$(curl -s "$base/metrics" | awk '$1 == "sluice_reloads_total" { print $2 }')
sed -i 's/^log_level = debug/log_level = info/' "$work/sluice.conf"
kill -HUP "$daemon"
t_wait_until 30 '[ "$(curl -s "$base/metrics" | awk "\$1 == \"sluice_reloads_total\" { print \$2 }")" != "$reloads" ]'
t_check "$(curl -s "$base/metrics" | awk '$1 == "sluice_reloads_total" { print $2 }')" != "$reloads" "the reload ran"
t_check "$(cat "$bootfile")" = "$before" "same bootstrap address"
t_check "$(kread t_out | wc -l)" -eq "$N" "t_out still holds $N messages"
got=$(jpost "$base/kafkaprobe/produce?topic=t_out&n=10&prefix=more" '"%d %d" % (j["delivered"], j["failed"])')
t_check "$got" = "10 0" "the carried-over producer still delivers"
t_end

t_case "admin off refuses the broker route; a changed [kafka] replaces the handles"
old=$(jget "$base/kafkaprobe/status" 'j["instance"]')
sed -i 's/^admin = true/admin = false/' "$work/sluice.conf"
kill -HUP "$daemon"
t_wait_until 60 '[ "$(jget "$base/kafkaprobe/status" "j[\"instance\"]")" != "$old" ] && [ -n "$(jget "$base/kafkaprobe/status" "j[\"instance\"]")" ]'
t_check "$(jget "$base/kafkaprobe/status" 'j["instance"]')" != "$old" "kafkaprobe was replaced ($old -> $(jget "$base/kafkaprobe/status" 'j["instance"]'))"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base/kafkaprobe/broker?id=1&up=0")
t_check "$code" = 403 "broker route refused with admin = false ($code)"
got=$(jpost "$base/kafkaprobe/produce?topic=t_out&n=10&prefix=after" '"%d %d" % (j["delivered"], j["failed"])')
t_check "$got" = "10 0" "the successor's producer delivers"
t_end

t_case "a new embedded_brokers count starts a new cluster; the old one stops after its handles"
old=$(cat "$bootfile")
embedded_brokers=2 ctag=second write_conf
kill -HUP "$daemon"
t_wait_for 10 bash -c "[ \"\$(cat '$bootfile')\" != '$old' ]"
t_check "$(tr ',' '\n' < "$bootfile" | wc -l)" -eq 2 "bootstrap file names 2 brokers: $(cat "$bootfile")"
t_wait_for 15 grep -q "embedded Kafka broker on $old stopped" "$work/sluiced.log"
t_check $? -eq 0 "the old cluster ($old) stopped"
t_check "$(ss -ltn | awk '{print $4}' | grep -c "^$old$")" -eq 0 "nothing listens on $old any more"
got=$(jpost "$base/kafkaprobe/produce?topic=t_out&n=10&prefix=new" '"%d %d" % (j["delivered"], j["failed"])')
t_check "$got" = "10 0" "the replaced producer delivers to the new cluster"
t_check "$(kread t_out | tr '\n' ' ')" = "$(expected new 10 | tr '\n' ' ')" "the new cluster holds exactly those 10"
t_end

t_case "a second process uses the first one's broker through its bootstrap_file"
port2=$(t_free_port)
mkdir -p "$work/second"
cat > "$work/second/sluice.conf" <<EOF
[core]
listen = 127.0.0.1:$port2
modules_dir = ../mods
[kafka]
brokers = $(cat "$bootfile")
rdkafka.session.timeout.ms = 6000
[module kafkaprobe]
topics = t_out
group = g_second
EOF
"$SLUICED" -c "$work/second/sluice.conf" 2>>"$work/second.log" &
second=$!
pids+=("$second")
t_wait_http "http://127.0.0.1:$port2/healthz" 10
t_wait_until 30 '[ "$(jget "http://127.0.0.1:$port2/kafkaprobe/consumed" "j[\"count\"]")" -ge 10 ]'
fence t_out 4 "http://127.0.0.1:$port2/kafkaprobe/consumed"
t_check $? -eq 0 "a marker put in each partition of t_out after the 10 was read by the second process"
t_check "$(unfenced "http://127.0.0.1:$port2/kafkaprobe/consumed" | sort | tr '\n' ' ')" = \
    "$(expected new 10 | tr '\n' ' ')" "before the markers, the second process read exactly the 10 messages of t_out"
t_check "$(grep -c 'embedded Kafka broker listening' "$work/second.log")" -eq 0 "no embedded broker in the second process"
kill -TERM "$second"
wait "$second"
t_check $? -eq 0 "the second process exited 0"
t_end

# --------------------------------------------------------------- shutdown
t_case "SIGTERM: every handle closed, broker stopped, exit 0"
kill -TERM "$daemon"
for _ in $(seq 1 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
wait "$daemon"
t_check $? -eq 0 "sluiced exited 0"
t_check ! -e "$bootfile" "bootstrap file removed"
t_check "$(grep -c 'did not finish draining' "$work/sluiced.log")" -eq 0 "every instance drained in time"
t_check "$(grep -c 'embedded Kafka broker on .* stopped' "$work/sluiced.log")" -ge 1 "embedded broker stopped"
# [kafka] sets producer-only (enable.idempotence) and consumer-only
# (session.timeout.ms) properties; each kind of handle got only its own.
t_check "$(grep -c CONFWARN "$work/sluiced.log")" -eq 0 "no librdkafka warning about a property of the other kind: $(grep -m1 CONFWARN "$work/sluiced.log" | head -c 200)"
t_end

t_exit
