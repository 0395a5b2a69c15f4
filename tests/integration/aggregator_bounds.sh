#!/usr/bin/env bash
# The aggregator's byte budgets against a real broker and ClickHouse: what
# it buffers from Kafka is bounded in bytes, whatever the messages' sizes.
#
#   - a backlog of large valid events (64 KiB each, their rows as large:
#     analytics events whose properties are kept whole; 576 MiB in all,
#     more than twice the stated bound) is consumed with the process's RSS
#     under the bound, first with ClickHouse down (nothing leaves, so the
#     budgets are all that holds it), and lands exactly, in batches of at
#     most max_buffered_bytes (batch_interval is long, so only the bytes
#     close them: counted messages alone would hold the whole backlog);
#   - a flood of 1 MiB junk messages (20,000 by default: 20 GiB) is
#     consumed with RSS under the same bound, and every message is in
#     processing_errors with a bounded prefix of its bytes and its size.
#
# The embedded broker keeps only the last 5 MiB of a partition, so the
# backlog is spread over 128 partitions, and the flood is produced in
# rounds of two messages a partition, each round after
# the aggregator consumed the last (a total says nothing of how the unread
# ones are spread over partitions).  Messages reach chosen
# partitions by their keys (librdkafka's consistent partitioner: CRC-32 of
# the key modulo the partition count), checked after the first round.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

t_scratch

BIG_PARTS=128
BIG=${BIG:-9216}     # valid events of 64 KiB: 72 in each of 128 partitions, 576 MiB
JUNK=${JUNK:-20000}  # junk messages of 1 MiB
PARTS=64
BATCH_BYTES=16777216 # the default batch_bytes (max_buffered_bytes: twice that)
# The README's bound for the defaults (prefetch_bytes 32 MiB, batch_bytes
# 16 MiB, dedup_window 100000).  A sanitizer build keeps freed memory in a
# quarantine and shadows the heap: it is allowed what its allocator holds
# on top (quarantine_size_mb, set below, and the shadow of the bound).
BOUND_MIB=256
asan=0
if grep -q -- '-fsanitize' "$SL_BUILD/Makefile" 2>/dev/null; then
    asan=1
    BOUND_MIB=$((BOUND_MIB + 64 + BOUND_MIB / 8))
fi

mods=$work/mods
mkdir -p "$mods"
cp "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/_modules/aggregator.so" "$mods/"
bootfile=$work/bootstrap
chc() { clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" "$@"; }
chq() { chc --query "$1" 2>>"$work/chc.err"; }
jget() { # jget URL EXPR: a Python expression over the JSON answer `j`
    curl -s --max-time 30 "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null
}
brokers() { cat "$bootfile"; }

# keyfile N: N keys that go to partitions 0..N-1 in turn.
keyfile() {
    python3 - "$1" <<'PY'
import sys, zlib
n = int(sys.argv[1])
found = {}
i = 0
while len(found) < n:
    k = 'k%d' % i
    found.setdefault(zlib.crc32(k.encode()) % n, k)
    i += 1
for p in range(n):
    print(found[p])
PY
}
produce() { # produce TOPIC < lines of KEY<TAB>VALUE
    kcat -P -b "$(brokers)" -t "$1" -K $'\t' -X partitioner=consistent \
        -X message.max.bytes=2000000 -X queue.buffering.max.kbytes=1048576 -X linger.ms=50
}
high_marks() { # high_marks TOPIC PARTITIONS: each partition's end offset, space separated
    local args=() p
    for p in $(seq 0 $(($2 - 1))); do args+=(-t "$1:$p:-1"); done
    kcat -Q -b "$(brokers)" "${args[@]}" | sed -n 's/.*\[\([0-9]*\)\] offset \([0-9-]*\).*/\1 \2/p' |
        sort -n | awk '{ printf "%s ", $2 }'
}

t_case "clickhouse and the embedded broker start"
sl_svc_start clickhouse
t_check $? -eq 0 "clickhouse on ${SL_CH_URL:-nothing}"
gport=$(t_free_port)
cat > "$work/broker.conf" <<EOF
[core]
listen = 127.0.0.1:$gport
modules_dir = mods
log_level = warn

[kafka]
brokers = embedded
embedded_topics = big:$BIG_PARTS,junk:$PARTS
bootstrap_file = $bootfile

[module metrics]
EOF
"$SLUICED" -c "$work/broker.conf" 2>>"$work/broker.log" &
pids+=($!)
t_wait_http "http://127.0.0.1:$gport/healthz" 10 && t_wait_for 10 test -s "$bootfile"
t_check -s "$bootfile" "embedded broker at $(cat "$bootfile" 2>/dev/null)"
keyfile "$PARTS" > "$work/keys"
keyfile "$BIG_PARTS" > "$work/bigkeys"
t_end
[ -n "${SL_CH_PORT:-}" ] && [ -s "$bootfile" ] || { t_exit; exit 1; }

aport=$(t_free_port)
abase=http://127.0.0.1:$aport/aggregator
start_agg() { # start_agg TOPIC HANDLER [LINE]: an aggregator with the defaults on TOPIC
    cat > "$work/agg.conf" <<EOF
[core]
listen = 127.0.0.1:$aport
modules_dir = mods
log_level = info
drain_timeout = 60s

[kafka]
brokers = file:$bootfile

[clickhouse]
url = $SL_CH_URL
timeout = 60s

[module metrics]

[module aggregator]
topics = $1
group = g_$1
route.all = $1 -> recover, dedup, $2
${3:-}
EOF
    # A sanitizer's quarantine would otherwise hold 256 MiB of freed memory.
    ASAN_OPTIONS="${ASAN_OPTIONS:-}:quarantine_size_mb=64" "$SLUICED" -c "$work/agg.conf" 2>>"$work/agg.$1.log" &
    apid=$!
    pids+=($apid)
    t_wait_http "http://127.0.0.1:$aport/healthz" 10
}
rss_mib() { awk '/VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$apid/status" 2>/dev/null; }
hwm_mib() { awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$apid/status" 2>/dev/null; }
consumed() { # cheaper than jget: polled after each round of the flood
    curl -s --max-time 30 "$abase/status" | grep -o '"consumed":{"total":[0-9]*' | grep -o '[0-9]*$'
}
metric() { # metric NAME: its value on /metrics
    curl -s --max-time 30 "http://127.0.0.1:$aport/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}
stop_agg() {
    kill -TERM "$apid"
    t_wait_until 60 "! kill -0 $apid 2>/dev/null"
    wait "$apid"
}

# ------------------------------------------------------------------ big
t_case "a backlog of $BIG valid 64 KiB events, ClickHouse down at first: RSS within the byte budgets, batches within max_buffered_bytes, counts exact"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
PROPS=$((64 * 1024)) # bytes of each event's properties, stored whole in its row
python3 - "$BIG" "$now" "$work/bigkeys" "$PROPS" <<'PY' | produce big
import sys
n, ts, props = int(sys.argv[1]), sys.argv[2], int(sys.argv[4])
keys = open(sys.argv[3]).read().split()
pad = 'x' * (props - len('{"pad":""}'))
out = sys.stdout
for i in range(n):
    out.write('%s\t{"id":"big-%d","eventType":"view","userId":"u%d","timestamp":"%s","properties":{"pad":"%s"}}\n'
              % (keys[i % len(keys)], i, i, ts, pad))
PY
per=$((BIG / BIG_PARTS))
t_check "$(high_marks big "$BIG_PARTS" | tr ' ' '\n' | sort -u | tr -d '\n')" = "$per" "$BIG events in the broker, $per in each of the $BIG_PARTS partitions ($((BIG / 16)) MiB)"
# With the sink down nothing leaves: what the aggregator holds is all its
# budgets allow (without them, its 20,000-message buffer would take the
# whole backlog).  Batches close by their bytes only: a batch_interval
# longer than the case.
sl_svc_stop clickhouse
start_agg big analytics "batch_interval = 600s"
t_wait_until 120 '[ "$(jget "$abase/status" "j[\"sink\"][\"down\"] and j[\"paused_partitions\"] == $BIG_PARTS")" = True ]'
t_check "$(jget "$abase/status" 'j["sink"]["down"] and j["paused_partitions"]')" = "$BIG_PARTS" "ClickHouse down: every partition paused, $(jget "$abase/status" 'j["buffered"]') events buffered"
hwm=$(hwm_mib)
t_check "$hwm" -le "$BOUND_MIB" "peak RSS $hwm MiB <= $BOUND_MIB MiB with the sink down"
sl_svc_restart clickhouse
t_check $? -eq 0 "clickhouse back"
t_wait_until 300 '[ "$(consumed)" = "$BIG" ]'
t_check "$(consumed)" = "$BIG" "every event consumed"
# A batch closes at batch_bytes, but while one is being written the next
# takes up to max_buffered_bytes (2 x batch_bytes): no batch holds more
# than that and a row.  The last batch is still open (only its bytes or
# the drain close it), hence one less.
row=$((PROPS + 256))
least=$((BIG * PROPS / (2 * BATCH_BYTES + row) - 1))
t_wait_until 60 '[ "$(metric sluice_aggregator_batch_size_count)" -ge "$least" ]'
got=$(metric sluice_aggregator_batch_size_count)
t_check "${got:-0}" -ge "$least" "$got batches written for $((BIG * PROPS / 1048576)) MiB of rows before the last: none beyond max_buffered_bytes ($((2 * BATCH_BYTES))) and a row (at least $least)"
hwm=$(hwm_mib)
t_check "$hwm" -le "$BOUND_MIB" "peak RSS $hwm MiB <= $BOUND_MIB MiB after $((BIG / 16)) MiB went through"
# SIGTERM drains: the open batch is written and committed before exit, so
# the count is exact without waiting out the long batch_interval.
stop_agg
t_check $? -eq 0 "the aggregator drained and exited 0"
t_check "$(chq "SELECT count() FROM analytics_events FINAL")" = "$BIG" "analytics_events holds the $BIG events"
got=$(chq "SELECT min(length(properties)) FROM analytics_events")
t_check "$got" = "$PROPS" "their properties whole ($PROPS bytes; got $got)"
t_end

# ----------------------------------------------------------------- junk
t_case "a flood of $JUNK junk messages of 1 MiB: RSS bounded, every one recorded with a bounded prefix"
chq "DROP TABLE IF EXISTS processing_errors"
# Two messages a partition a round: 2 MiB, well under the 5 MiB kept.
python3 - "$work/keys" > "$work/round" <<'PY'
import os, sys
keys = open(sys.argv[1]).read().split()
# Not JSON from its first byte; no newline or NUL inside; exactly 1 MiB.
junk = (b'junk ' + bytes(b for b in os.urandom(1 << 21) if b not in (0, 10)))[:1 << 20]
out = sys.stdout.buffer
for rep in range(2):
    for k in keys:
        out.write(k.encode() + b'\t' + junk + b'\n')
PY
per_round=$((2 * PARTS))
start_agg junk page_views
sent=0
peak=0
round_ok=1
while [ "$sent" -lt "$JUNK" ]; do
    n=$((JUNK - sent < per_round ? JUNK - sent : per_round))
    head -n "$n" "$work/round" | produce junk
    sent=$((sent + n))
    if [ "$sent" = "$per_round" ]; then
        t_check "$(high_marks junk "$PARTS" | tr ' ' '\n' | sort -u | tr -d '\n')" = 2 "the first round put two messages in each partition"
    fi
    t_wait_until 300 '[ "$(consumed)" = "$sent" ]' || { round_ok=0; break; }
    r=$(rss_mib)
    [ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r
done
t_check "$round_ok" = 1 "each round was consumed before the next ($sent sent, $(consumed) consumed)"
t_check "$(consumed)" = "$JUNK" "all $JUNK consumed ($((JUNK / 1024)) GiB)"
hwm=$(hwm_mib)
t_check "$hwm" -le "$BOUND_MIB" "peak RSS $hwm MiB (sampled after each round: $peak MiB) <= $BOUND_MIB MiB"
t_wait_until 120 '[ "$(chq "SELECT count() FROM processing_errors FINAL")" = "$JUNK" ]'
t_check "$(chq "SELECT count() FROM processing_errors FINAL")" = "$JUNK" "processing_errors holds every one of the $JUNK"
got=$(chq "SELECT min(raw_size), max(raw_size), max(length(raw)), min(length(raw)) FROM processing_errors FINAL" | tr '\t' ' ')
t_check "$got" = "1048576 1048576 4096 4096" "each with its size (1048576) and a prefix of error_raw_bytes (4096) (got $got)"
got=$(chq "SELECT count() FROM processing_errors FINAL WHERE reason = 'broken_json' AND kafka_topic = 'junk'")
t_check "$got" = "$JUNK" "each as broken_json from topic junk (got $got)"
stop_agg
t_check $? -eq 0 "the aggregator drained and exited 0"
t_check "$(cat "$work"/agg.*.log | grep -c 'ERROR\|runtime error\|AddressSanitizer')" = 0 "no errors or sanitizer reports in the aggregator's logs"
t_end

t_exit
