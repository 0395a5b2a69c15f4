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
#              fresh group and reads everything: validation, de-duplication
#              (a window of 1M ids), raw rows, errors, per-minute aggregates
#              recomputed, offsets committed.
#   reference: kcat -C -e ... | clickhouse-client --query "INSERT INTO
#              bench_naive FORMAT JSONEachRow" on the same N messages (it
#              validates and aggregates nothing; malformed rows are skipped
#              with input_format_allow_errors_ratio).  At its best: kcat
#              with fetch.wait.max.ms=10 (its 500 ms default wait at the log
#              end slows it), clickhouse-client with its defaults (blocks of
#              up to 1M rows).
#
# Equal clocks: neither side is timed over its fixed startup.  The
# aggregator's time runs from its partitions being assigned (the time it
# logged) to every message settled and its batch written and committed;
# its start and group join are reported apart (the reference joins no
# group).  The pipe's time runs from its launch to its exit minus its own
# fixed startup and exit, measured as the median of three runs of the same
# pipe on a topic with as many partitions holding one message (printed).  rate = N /
# time.  The times from launch are printed too.
#
# Both sides run RUNS times, the side going first alternating between runs;
# the median and the worst run are printed, with the load average before
# and after (the machine may be shared).  Targets: median ratio (aggregator
# rate / pipe rate) >= 1.2, no run below 1.0, peak RSS <= 256 MiB.  Also
# printed: the consumption rate (every message consumed, before the last
# batch landed) beside kcat -C alone; CPU seconds per million messages of
# the aggregator's process, of the pipe's two processes, and of the
# ClickHouse server while each side ran; peak RSS (VmHWM) of sluiced, kcat
# and clickhouse-client.  PERF=1 profiles the aggregator's loop thread
# (perf record -g -t) and prints its top entries.
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
AGG_OPTS=${AGG_OPTS:-}   # more "key = value" lines for [module aggregator], ';' separated

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
secs_since() { python3 -c "import sys; print('%.3f' % ($(date +%s.%N) - float(sys.argv[1])))" "$1"; }
median_of() { python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.stdin))'; }
ch_cpu() { # CPU seconds the ClickHouse server used so far
    awk '{ printf "%.2f\n", ($14 + $15) / 100 }' "/proc/$(cat "$SL_SVC_ROOT/clickhouse/pid")/stat"
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
embedded_topics = bench_pv:$PARTS,bench_one:$PARTS
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
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# One message: the pipe then does everything once (an insert of nothing
# fails in clickhouse-client).
echo '{"event_id":"one","event_type":"view","page_id":"p","user_id":"u","ts":"2026-01-01T00:00:00Z","duration_s":1}' |
    kcat -P -b "$(cat "$bootfile")" -t bench_one -p 0

kcat_c() { # kcat_c TOPIC: the reference's reader, as tuned for it
    kcat -C -b "$(cat "$bootfile")" -t "$1" -o beginning -e -q -X fetch.wait.max.ms=10 -f '%s\n'
}
pipe() { # pipe TOPIC: the whole reference, each process's CPU and peak RSS kept
    /usr/bin/time -f '%U %S %M' -o "$work/kcat.time" \
        kcat -C -b "$(cat "$bootfile")" -t "$1" -o beginning -e -q -X fetch.wait.max.ms=10 -f '%s\n' |
        /usr/bin/time -f '%U %S %M' -o "$work/chc.time" \
            clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" \
            --input_format_allow_errors_ratio=0.5 --input_format_allow_errors_num="$N" \
            --query "INSERT INTO bench_naive FORMAT JSONEachRow"
}

# For scale: a consumer-group read alone (what the aggregator has to do
# before anything else), group join included, output thrown away.
t0=$(date +%s.%N)
kcat -b "$(cat "$bootfile")" -G bench_kcat_group -o beginning -e -q -X fetch.wait.max.ms=10 \
    -X auto.offset.reset=earliest -f '%s\n' bench_pv | wc -l > "$work/kcatg.count"
echo "for scale: kcat -G (consumer group, read only) took $(secs_since "$t0") s for $(cat "$work/kcatg.count") messages, group join included"

# The reference's reader alone, its fixed startup (the one-message topic) apart.
for i in 1 2 3; do
    t0=$(date +%s.%N)
    kcat_c bench_one | wc -l >/dev/null
    secs_since "$t0"
done | median_of > "$work/kcat.fixed"
t0=$(date +%s.%N)
kcat_c bench_pv | wc -l > "$work/kcatc.count"
kcat_s=$(python3 -c "print('%.3f' % ($(secs_since "$t0") - $(cat "$work/kcat.fixed")))")
echo "for scale: kcat -C alone (output thrown away) read $(cat "$work/kcatc.count") messages in $kcat_s s after its fixed $(cat "$work/kcat.fixed") s (one-message topic)"

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

# The pipe's fixed cost: start, connect, read every partition to its end,
# insert the one message, exit.
quiesce
for i in 1 2 3; do
    t0=$(date +%s.%N)
    pipe bench_one
    secs_since "$t0"
done | median_of > "$work/pipe.fixed"
echo "the pipe's fixed startup and exit (a topic of $PARTS partitions and one message, median of 3): $(cat "$work/pipe.fixed") s, subtracted from its times"

run_aggregator() { # run_aggregator I: prints "timed join consumed rss_kib cpu ch_cpu"
    local port group=bench_$1 t0 t1 t2 tc pid perfpid="" st ch0 ch1 cpu rss got
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
$(echo "$AGG_OPTS" | tr ';' '\n')
EOF
    ch0=$(ch_cpu)
    t0=$(date +%s.%N)
    "$SLUICED" -c "$work/agg.conf" 2>"$work/agg.$1.log" &
    pid=$!
    pids+=($pid)
    if [ -n "${PERF:-}" ]; then # the loop thread: the process's first
        perf record -F 999 -g -t "$pid" -o "$work/perf.data" >/dev/null 2>&1 &
        perfpid=$!
    fi
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
    tc=""
    while :; do
        # curl and sed, not a Python per poll: on two cores the poller
        # would take CPU from the side it times.
        st=$(curl -s --max-time 30 "http://127.0.0.1:$port/aggregator/status" |
            sed -n 's/.*"consumed":{"total":\([0-9]*\).*"buffered":\([0-9]*\).*/\1 \2/p')
        [ -n "$tc" ] || [ "${st% *}" != "$N" ] || tc=$(date +%s.%N)
        [ "$st" != "$N 0" ] || break
        sleep 0.05
    done
    t2=$(date +%s.%N)
    ch1=$(ch_cpu)
    rss=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
    cpu=$(awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$pid/stat")
    { printf 'run %s: ' "$1"
      curl -s "http://127.0.0.1:$port/metrics" |
          grep -E '^sluice_aggregator_(flush_latency_seconds|batch_size)_(sum|count)' | tr '\n' ' '
      echo; } >> "$work/flushes"
    if [ -n "$perfpid" ]; then
        kill -INT "$perfpid"
        wait "$perfpid" || true
        # The module runs from a deleted copy: perf finds it by build id.
        perf buildid-cache -a "$work/mods/aggregator.so" 2>/dev/null || true
        perf report -i "$work/perf.data" --stdio --no-children --sort dso,sym --percent-limit 1 \
            2>/dev/null | grep -E '^ +[0-9]' > "$work/perf.txt" || true
    fi
    kill -TERM "$pid"
    wait "$pid" || true
    got=$(chq "SELECT count() FROM page_views FINAL")
    [ "$got" = "$valid" ] || { echo "aggregator run $1: $got rows, want $valid" >&2; exit 1; }
    got=$(chq "SELECT sum(views) + sum(bounces) FROM page_views_per_minute FINAL")
    [ "$got" = "$valid" ] || { echo "aggregator run $1: aggregates hold $got, want $valid" >&2; exit 1; }
    got=$(chq "SELECT count() FROM processing_errors FINAL")
    [ "$got" = "$bad" ] || { echo "aggregator run $1: $got errors, want $bad" >&2; exit 1; }
    python3 -c "print('%.3f %.3f %.3f %s %s %.2f' % ($t2 - $t1, $t1 - $t0, $tc - $t1, '$rss', '$cpu', $ch1 - $ch0))"
}

run_reference() { # prints "timed from_launch kcat_rss chc_rss cpu ch_cpu rows"
    local t0 t1 ch0 ch1 got ku ks km cu cs cm
    quiesce
    ch0=$(ch_cpu)
    t0=$(date +%s.%N)
    pipe bench_pv
    t1=$(date +%s.%N)
    ch1=$(ch_cpu)
    got=$(chq "SELECT count() FROM bench_naive")
    [ "$got" -ge "$valid" ] || { echo "reference: $got rows, want at least $valid" >&2; exit 1; }
    read -r ku ks km < "$work/kcat.time"
    read -r cu cs cm < "$work/chc.time"
    python3 -c "print('%.3f %.3f %s %s %.2f %.2f %s' % ($t1 - $t0 - $(cat "$work/pipe.fixed"), $t1 - $t0, $km, $cm, $ku + $ks + $cu + $cs, $ch1 - $ch0, $got))"
}

printf '%-4s %8s %8s %6s | %13s %11s | %8s %9s %9s | %10s %9s\n' run agg_s pipe_s ratio \
    agg_launch pipe_launch agg_MiB agg_cpu/M ch_cpu/M pipe_cpu/M ch_cpu/M
: > "$work/runs"
: > "$work/flushes"
for i in $(seq 1 "$RUNS"); do
    # The side going first alternates.
    if [ $((i % 2)) = 1 ]; then
        read -r as aj ac arss acpu achcpu < <(run_aggregator "$i")
        read -r rs rl krss crss rcpu rchcpu rrows < <(run_reference)
    else
        read -r rs rl krss crss rcpu rchcpu rrows < <(run_reference)
        read -r as aj ac arss acpu achcpu < <(run_aggregator "$i")
    fi
    echo "$as $rs $ac $arss $acpu $achcpu $rcpu $rchcpu $krss $crss" >> "$work/runs"
    python3 - "$N" "$i" "$as" "$rs" "$aj" "$rl" "$arss" "$acpu" "$achcpu" "$rcpu" "$rchcpu" \
        "$krss" "$crss" "$rrows" <<'PY'
import sys
n = int(sys.argv[1]) / 1e6
i, a, r, aj, rl, arss, acpu, achcpu, rcpu, rchcpu, krss, crss, rrows = sys.argv[2:]
a, r = float(a), float(r)
print('%-4s %8.2f %8.2f %6.2f | %13s %11.2f | %8.1f %9.2f %9.2f | %10.2f %9.2f   '
      '(kcat %.0f MiB, clickhouse-client %.0f MiB; reference stored %s rows)'
      % (i, a, r, r / a, '%.2f+%.2f' % (float(aj), a), float(rl), int(arss) / 1024,
         float(acpu) / n, float(achcpu) / n, float(rcpu) / n, float(rchcpu) / n,
         int(krss) / 1024, int(crss) / 1024, rrows))
PY
done
echo "(agg_launch: start and group join + timed; pipe_launch: including its fixed startup)"
echo "aggregator batches per run:"
cat "$work/flushes"
if [ -n "${PERF:-}" ]; then
    echo "aggregator loop thread profile (last run; perf record -g -t, self time, >= 1%):"
    cat "$work/perf.txt"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$N" "$work/runs" "$kcat_s" > "$work/summary" <<'PY'
import statistics, sys
n = int(sys.argv[1])
runs = [[float(x) for x in l.split()] for l in open(sys.argv[2])]
kcat = float(sys.argv[3])
def med(k):
    return statistics.median(r[k] for r in runs)
a, r, c = med(0), med(1), med(2)
worst = min(runs, key=lambda x: x[1] / x[0])
m = n / 1e6
rss = max(x[3] for x in runs) / 1024
print("median: aggregator %.0f msgs/s (%.2f s), naive pipe %.0f msgs/s (%.2f s), ratio %.2f "
      "(target >= 1.2); worst run: ratio %.2f (target >= 1.0)"
      % (n / a, a, n / r, r, r / a, worst[1] / worst[0]))
print("consumption (median): every message consumed after %.2f s (%.0f msgs/s); kcat -C alone "
      "%.2f s (%.0f msgs/s)" % (c, n / c, kcat, n / kcat))
print("CPU seconds per million messages (median): aggregator %.2f + ClickHouse %.2f; pipe "
      "(kcat + clickhouse-client) %.2f + ClickHouse %.2f" % (med(4) / m, med(5) / m, med(6) / m, med(7) / m))
print("peak RSS: aggregator %.1f MiB (highest of %d runs; target <= 256); pipe: kcat %.1f + "
      "clickhouse-client %.1f MiB" % (rss, len(runs), med(8) / 1024, med(9) / 1024))
print("VALUES %d %d %d %d %d %d %.2f %.2f %.2f %.2f %.1f %.1f"
      % (n / a, n / r, n / worst[0], n / worst[1], n / c, n / kcat, med(4) / m, med(6) / m,
         med(5) / m, med(7) / m, rss, (med(8) + med(9)) / 1024))
PY
grep -v '^VALUES' "$work/summary"
read -r _ ar rr aw rw ac kc acpu rcpu achcpu rchcpu arss rrss < <(grep '^VALUES' "$work/summary")
bench_result end_to_end_rate "$ar" msgs/s "$rr" kcat_pipe_clickhouse-client ">=1.2"
bench_result end_to_end_rate_worst_run "$aw" msgs/s "$rw" kcat_pipe_clickhouse-client ">=1.0"
bench_result consumption_rate "$ac" msgs/s "$kc" kcat_-C_alone -
bench_result cpu_seconds_per_million "$acpu" s "$rcpu" kcat+clickhouse-client "<=1.0"
bench_result clickhouse_cpu_seconds_per_million "$achcpu" s "$rchcpu" clickhouse_under_the_pipe "<=1.0"
bench_result peak_rss "$arss" MiB "$rrss" kcat+clickhouse-client "value<=256"
