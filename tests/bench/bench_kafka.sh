#!/usr/bin/env bash
# tests/bench/bench_kafka.sh - producing through the Kafka connector beside
# librdkafka's own rdkafka_performance, into the same embedded broker, in
# the same run.  A benchmark, not a test: it prints a table and never fails
# on a figure.
#
#   connector: POST /kafkaprobe/produce?n=N&size=S&fixed=1 on a running
#              sluiced (produces as fast as the local queue allows, answers
#              when the last delivery report came; rate = delivered /
#              elapsed; fixed=1: one payload, like the reference's).
#   reference: rdkafka_performance -P -s S -c N -D -X linger.ms=5 against
#              the bootstrap address sluiced wrote (-D copies each payload,
#              as the connector does).
# Runs alternate, RUNS times each; the table shows every run and the
# medians.  Target: ratio >= 0.9.
#
# N=1000000 SIZE=200 RUNS=3 PARTITIONS=64 by default.  The embedded broker
# keeps 5 MiB per partition, so PARTITIONS must hold N*SIZE (DESIGN.md).
# rdkafka_performance's time includes its first metadata round trip, the
# connector's producer is already connected: the longer the run, the less
# that matters.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
SL_BUILD=${SL_BUILD:-$top}
. "$top/tests/lib.sh"
. "$top/tests/bench/result.sh"
. "$top/tests/bench/rdkafka_reference.sh"
N=${N:-1000000}
SIZE=${SIZE:-200}
RUNS=${RUNS:-3}
PARTITIONS=${PARTITIONS:-64}

[ -x "$SLUICED" ] || { echo "build first: (cd $top && autoreconf -fi && ./configure && make)" >&2; exit 1; }
probe=$SL_BUILD/tests/modules/kafkaprobe/.libs/kafkaprobe.so
[ -f "$probe" ] || { echo "$probe missing: make" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    rm -rf "$work"
}
trap cleanup EXIT

perf=$(ref_build "$work/ref")

# ------------------------------------------------------------- sluiced
mkdir -p "$work/mods"
cp "$probe" "$work/mods/"
port=$(t_free_port)
base=http://127.0.0.1:$port
cat > "$work/sluice.conf" <<EOF
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = warn

[kafka]
brokers = embedded
embedded_topics = bench_connector:$PARTITIONS, bench_reference:$PARTITIONS
bootstrap_file = $work/bootstrap
rdkafka.linger.ms = 5

[module kafkaprobe]
EOF
"$SLUICED" -c "$work/sluice.conf" 2>"$work/sluiced.log" &
pids+=($!)
t_wait_http "$base/healthz" 10 && t_wait_for 10 test -s "$work/bootstrap" ||
    { echo "sluiced did not start:" >&2; cat "$work/sluiced.log" >&2; exit 1; }
bootstrap=$(cat "$work/bootstrap")

connector_run() { # prints msgs/s
    curl -s --max-time 600 -X POST "$base/kafkaprobe/produce?topic=bench_connector&n=$N&size=$SIZE&fixed=1" |
        python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["delivered"] == int(sys.argv[1]), j; print(int(j["msgs_per_s"]))' "$N"
}
reference_run() { # prints msgs/s
    ref_rate "$perf" "$bootstrap" bench_reference "$SIZE" "$N"
}

# A short warm-up of both paths (connections, metadata, page faults).
curl -s -o /dev/null -X POST "$base/kafkaprobe/produce?topic=bench_connector&n=10000&size=$SIZE"
ref_rate "$perf" "$bootstrap" bench_reference "$SIZE" 10000 >/dev/null

echo "Kafka produce: $N messages of $SIZE B, embedded broker, linger.ms=5, $PARTITIONS partitions, $(nproc) CPUs"
printf '%-6s %22s %28s\n' run "connector msgs/s" "rdkafka_performance msgs/s"
: > "$work/c"
: > "$work/r"
for i in $(seq 1 "$RUNS"); do
    c=$(connector_run)
    r=$(reference_run)
    echo "$c" >> "$work/c"
    echo "$r" >> "$work/r"
    printf '%-6s %22s %28s\n' "$i" "$c" "$r"
done
mc=$(bench_median < "$work/c")
mr=$(bench_median < "$work/r")
printf '%-6s %22s %28s\n' median "$mc" "$mr"
awk -v c="$mc" -v r="$mr" 'BEGIN { printf "ratio connector / rdkafka_performance: %.2f (target >= 0.9)\n", c / r }'
bench_result kafka_produce "$mc" msgs/s "$mr" rdkafka_performance ">=0.9"
