#!/usr/bin/env bash
# tests/bench/bench_aggregator.sh - the aggregator end to end beside the
# naive pipe, on the same messages, in the same run.  A benchmark, not a
# test: it prints the figures and fails only on wrong row counts.
#
#   setup:     one sluiced runs the embedded broker and the generator, which
#              puts N events (its usual mix: 1% duplicates, 5% malformed)
#              into topic bench_pv, PARTS partitions, round-robin (the
#              embedded broker keeps 5 MiB per partition).
#   aggregator: a second sluiced (plain build) with the aggregator joins a
#              fresh group and reads everything: validation, de-duplication,
#              raw rows, errors, per-minute aggregates recomputed, offsets
#              committed.  Its time runs from the partitions being assigned
#              (the group join is reported apart: the reference has no
#              group, so neither side pays one) to every message settled
#              and its batch written and committed.  rate = N / that time.
#              The start is the time the aggregator logged the assignment,
#              not when a status poll first saw it, which came up to a poll
#              and a request later, with consumption already under way.
#   reference: kcat -C -e ... | clickhouse-client --query "INSERT INTO
#              bench_naive FORMAT JSONEachRow" on the same N messages (it
#              validates and aggregates nothing; malformed rows are skipped
#              with input_format_allow_errors_ratio).  rate = N / its time.
# Both sides run RUNS times alternately; medians printed.  Target: ratio
# (aggregator / reference) >= 1.0.  Peak RSS: VmHWM of the aggregator's
# sluiced, and of kcat and clickhouse-client (/usr/bin/time).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
SL_BUILD=${SL_BUILD:-$top/build}
. "$top/tests/lib.sh"
. "$top/tests/harness/services.sh"
. "$top/tests/bench/result.sh"
N=${N:-1000000}
PARTS=${PARTS:-64}
RUNS=${RUNS:-3}
BATCH=${BATCH:-100000}   # batch_size; MAXBUF sets max_buffered (default 3 x BATCH)

[ -x "$SLUICED" ] || { echo "build first: mkdir build && cd build && ../configure && make" >&2; exit 1; }
if grep -q -- '-fsanitize' "$SL_BUILD/Makefile" 2>/dev/null; then
    echo "note: $SL_BUILD is a sanitizer build; figures are not representative" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    sl_svc_stop_all
    rm -rf "$work"
}
trap cleanup EXIT

sl_svc_start clickhouse >/dev/null || { echo "clickhouse did not start" >&2; exit 1; }
chq() { clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" --query "$1"; }
jget() {
    curl -s --max-time 30 "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2"
}

mkdir -p "$work/mods"
cp "$SL_BUILD/_modules/generator.so" "$SL_BUILD/_modules/aggregator.so" "$SL_BUILD/_modules/metrics.so" "$work/mods/"
gport=$(t_free_port)
bootfile=$work/bootstrap
cat > "$work/gen.conf" <<EOF
[core]
listen = 127.0.0.1:$gport
modules_dir = mods
log_level = warn

[kafka]
brokers = embedded
embedded_topics = bench_pv:$PARTS
bootstrap_file = $bootfile
rdkafka.linger.ms = 5
# Room for the whole burst: a full local queue would drop events.
rdkafka.queue.buffering.max.messages = 2000000
rdkafka.queue.buffering.max.kbytes = 2097151

[module generator]
topic = bench_pv
mode = night
inflight = 2000000
strategy = async
seed = 7
partitions = $PARTS
partitioning = 0,1,0
page_skew = 0
burst_max = $N
EOF
"$SLUICED" -c "$work/gen.conf" 2>>"$work/gen.log" &
pids+=($!)
t_wait_http "http://127.0.0.1:$gport/generator/status" 10 && t_wait_for 10 test -s "$bootfile"
curl -s -X POST "http://127.0.0.1:$gport/generator/config/speed?eps=0" >/dev/null
curl -s -X POST "http://127.0.0.1:$gport/generator/generate/burst?count=$N" >/dev/null
t_wait_until 600 '[ "$(jget "http://127.0.0.1:$gport/generator/status" "j[\"pending\"] + j[\"rate\"][\"burst_pending\"]")" = 0 ]'
read -r total valid bad dup < <(jget "http://127.0.0.1:$gport/generator/status" '"%d %d %d %d" % (j["delivered"]["total"], j["delivered"]["view"] + j["delivered"]["bounce"], j["delivered"]["malformed"]["total"], j["delivered"]["duplicate"])')
[ "$total" = "$N" ] || { echo "the generator delivered $total of $N" >&2; exit 1; }
bytes=$(kcat -C -b "$(cat "$bootfile")" -t bench_pv -e -q -f '%S\n' | awk '{ s += $1 } END { print s }')
echo "in Kafka: $N messages ($valid distinct valid, $dup duplicates, $bad malformed), $((bytes / 1048576)) MiB over $PARTS partitions"

# For scale: a consumer-group read alone (what the aggregator has to do
# before anything else), group join included, output thrown away.
t0=$(date +%s.%N)
kcat -b "$(cat "$bootfile")" -G bench_kcat_group -o beginning -e -q -X fetch.wait.max.ms=10 \
    -X auto.offset.reset=earliest -f '%s\n' bench_pv | wc -l > "$work/kcatg.count"
t1=$(date +%s.%N)
echo "for scale: kcat -G (consumer group, read only) took $(python3 -c "print('%.2f' % ($t1 - $t0))") s for $(cat "$work/kcatg.count") messages, group join included"

# And the reference's first half alone: how much of the pipe is kcat.
t0=$(date +%s.%N)
kcat -C -b "$(cat "$bootfile")" -t bench_pv -o beginning -e -q -X fetch.wait.max.ms=10 -f '%s\n' | wc -l > "$work/kcatc.count"
t1=$(date +%s.%N)
echo "for scale: kcat -C (the reference's reader alone, output thrown away) took $(python3 -c "print('%.2f' % ($t1 - $t0))") s for $(cat "$work/kcatc.count") messages"

chq "CREATE TABLE bench_naive (event_id String, event_type String, page_id String, user_id String, ts String, duration_s Float64) ENGINE = MergeTree ORDER BY event_id"

# Each side starts on a quiet server: the other side's rows gone and no
# merge of them still running (otherwise whichever side runs second pays
# for the first one's background merges).
quiesce() {
    local t
    for t in page_views page_views_per_minute processing_errors analytics_events segment_events segment_changes_per_minute; do
        chq "DROP TABLE IF EXISTS $t"
    done
    chq "TRUNCATE TABLE IF EXISTS bench_naive"
    t_wait_until 120 '[ "$(chq "SELECT count() FROM system.merges")" = 0 ]'
}

run_aggregator() { # run_aggregator I: prints "seconds join_seconds rss_kib"
    local port group=bench_$1 t0 t1 t2 pid
    port=$(t_free_port)
    quiesce
    cat > "$work/agg.conf" <<EOF
[core]
listen = 127.0.0.1:$port
modules_dir = mods
# info: the assignment's log line is where the timing starts.
log_level = info
drain_timeout = 60s

[kafka]
brokers = file:$bootfile

[clickhouse]
url = $SL_CH_URL
timeout = 120s

[module metrics]

[module aggregator]
topics = bench_pv
group = $group
route.pv = bench_pv -> recover, dedup, page_views
batch_size = $BATCH
batch_interval = 1s
max_buffered = ${MAXBUF:-$((3 * BATCH))}
dedup_window = 1000000
EOF
    t0=$(date +%s.%N)
    "$SLUICED" -c "$work/agg.conf" 2>"$work/agg.$1.log" &
    pid=$!
    pids+=($pid)
    t_wait_http "http://127.0.0.1:$port/aggregator/status" 20
    t_wait_until 60 '[ "$(jget "http://127.0.0.1:$port/aggregator/status" "len(j[\"partitions\"])")" = '"$PARTS"' ]'
    t1=$(python3 - "$work/agg.$1.log" "$PARTS" <<'PY'
import datetime, re, sys
for line in open(sys.argv[1]):
    m = re.match(r'(\S+Z) info  \[aggregator\] assigned (\d+) partitions', line)
    if m and m.group(2) == sys.argv[2]:
        t = datetime.datetime.strptime(m.group(1), '%Y-%m-%dT%H:%M:%S.%fZ')
        print('%.3f' % t.replace(tzinfo=datetime.timezone.utc).timestamp())
        break
PY
)
    [ -n "$t1" ] || { echo "aggregator run $1: no assignment logged" >&2; exit 1; }
    if [ -n "${PERF:-}" ]; then # PERF=1: where the aggregator's time goes
        perf record -F 499 -g -p "$pid" -o "$work/perf.data" >/dev/null 2>&1 &
        perfpid=$!
    fi
    tc=""
    while :; do
        st=$(jget "http://127.0.0.1:$port/aggregator/status" '"%d %d" % (j["consumed"]["total"], j["buffered"])')
        [ -n "$tc" ] || [ "${st% *}" != "$N" ] || tc=$(date +%s.%N)
        [ "$st" != "$N 0" ] || break
        sleep 0.05
    done
    t2=$(date +%s.%N)
    # When the last message was consumed, apart from when it had landed.
    python3 -c "print('run $1: every message consumed after %.2f s, landed and committed after %.2f s' % ($tc - $t1, $t2 - $t1))" >> "$work/flushes"
    rss=$(awk '/VmHWM/ { print $2 }' /proc/$pid/status)
    awk '{ printf "cpu %.1fs ", ($14 + $15) / 100 }' /proc/$pid/stat >> "$work/flushes"
    curl -s "http://127.0.0.1:$port/metrics" | grep -E '^sluice_aggregator_(flush_latency_seconds|batch_size)_(sum|count)' | tr '\n' ' ' >> "$work/flushes"
    echo >> "$work/flushes"
    if [ -n "${PERF:-}" ]; then
        kill -INT "$perfpid"; wait "$perfpid" || true
        perf report -i "$work/perf.data" --stdio --no-children --percent-limit 1.5 2>/dev/null | grep -E '^ +[0-9]' > "$work/perf.txt" || true
    fi
    kill -TERM "$pid"
    wait "$pid" || true
    got=$(chq "SELECT count() FROM page_views FINAL")
    [ "$got" = "$valid" ] || { echo "aggregator run $1: $got rows, want $valid" >&2; exit 1; }
    got=$(chq "SELECT sum(views) + sum(bounces) FROM page_views_per_minute FINAL")
    [ "$got" = "$valid" ] || { echo "aggregator run $1: aggregates hold $got, want $valid" >&2; exit 1; }
    got=$(chq "SELECT count() FROM processing_errors FINAL")
    [ "$got" = "$bad" ] || { echo "aggregator run $1: $got errors, want $bad" >&2; exit 1; }
    python3 -c "print('%.3f %.3f %s' % ($t2 - $t1, $t1 - $t0, '$rss'))"
}

run_reference() { # prints "seconds kcat_rss clickhouse_client_rss"
    local t0 t1
    quiesce
    t0=$(date +%s.%N)
    /usr/bin/time -f %M -o "$work/kcat.rss" kcat -C -b "$(cat "$bootfile")" -t bench_pv -o beginning -e -q \
        -X fetch.wait.max.ms=10 -f '%s\n' |
        /usr/bin/time -f %M -o "$work/chc.rss" clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" \
            --input_format_allow_errors_ratio=0.5 --input_format_allow_errors_num=$N \
            --query "INSERT INTO bench_naive FORMAT JSONEachRow"
    t1=$(date +%s.%N)
    got=$(chq "SELECT count() FROM bench_naive")
    [ "$got" -ge "$valid" ] || { echo "reference: $got rows, want at least $valid" >&2; exit 1; }
    python3 -c "print('%.3f %s %s %s' % ($t1 - $t0, '$(cat "$work/kcat.rss")', '$(cat "$work/chc.rss")', '$got'))"
}

printf '%-4s %-12s %12s %10s %12s | %12s %12s %10s\n' run side seconds rows/s rss_MiB side seconds rows/s
: > "$work/agg.times"
: > "$work/ref.times"
: > "$work/agg.rss"
for i in $(seq 1 "$RUNS"); do
    read -r as aj arss < <(run_aggregator "$i")
    echo "$arss" >> "$work/agg.rss"
    read -r rs krss crss rrows < <(run_reference)
    echo "$as" >> "$work/agg.times"
    echo "$rs" >> "$work/ref.times"
    printf '%-4s %-12s %12s %10.0f %12.1f | %12s %12s %10.0f   (group join %ss; reference stored %s rows; kcat %.1f MiB, clickhouse-client %.1f MiB)\n' \
        "$i" aggregator "$as" "$(python3 -c "print($N / $as)")" "$(python3 -c "print($arss / 1024)")" \
        kcat\|chc "$rs" "$(python3 -c "print($N / $rs)")" "$aj" "$rrows" \
        "$(python3 -c "print($krss / 1024)")" "$(python3 -c "print($crss / 1024)")"
done
echo "aggregator batches (per run):"
cat "$work/flushes"
[ -z "${PERF:-}" ] || { echo "aggregator profile (last run):"; cat "$work/perf.txt"; }
python3 - "$N" "$work/agg.times" "$work/ref.times" <<'EOF'
import statistics, sys
n = int(sys.argv[1])
a = statistics.median(float(x) for x in open(sys.argv[2]))
r = statistics.median(float(x) for x in open(sys.argv[3]))
print("median: aggregator %.0f msgs/s (%.2f s), naive pipe %.0f msgs/s (%.2f s), ratio %.2f (target >= 1.0)"
      % (n / a, a, n / r, r, r / a))
EOF
median_of() { python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in open(sys.argv[1])))' "$1"; }
bench_result end_to_end_rate "$(python3 -c "print(round($N / $(median_of "$work/agg.times")))")" msgs/s \
    "$(python3 -c "print(round($N / $(median_of "$work/ref.times")))")" kcat_pipe_clickhouse-client ">=1.0"
bench_result peak_rss "$(python3 -c "print(round($(sort -n "$work/agg.rss" | tail -1) / 1024, 1))")" MiB - - -
