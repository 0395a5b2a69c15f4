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
N=${N:-1000000}
SIZE=${SIZE:-200}
RUNS=${RUNS:-3}
PARTITIONS=${PARTITIONS:-64}

[ -x "$SLUICED" ] || { echo "build first: (cd $top && autoreconf -fi && ./configure && make)" >&2; exit 1; }
probe=$SL_BUILD/tests/modules/kafkaprobe/.libs/kafkaprobe.so
[ -f "$probe" ] || { echo "$probe missing: make" >&2; exit 1; }
example=/usr/share/doc/librdkafka-dev/examples/rdkafka_performance.c
[ -f "$example" ] || { echo "$example missing: apt-get install -y librdkafka-dev" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    rm -rf "$work"
}
trap cleanup EXIT

# --------------------------------------------- the reference, as shipped
# The example includes a few headers of librdkafka's source tree
# ("../src/rd.h", "rdtime.h"); rdkafka_shim/ stands in for them.
mkdir -p "$work/examples" "$work/src"
cp "$example" "$work/examples/"
cp "$top/tests/bench/rdkafka_shim/rd.h" "$top/tests/bench/rdkafka_shim/rdtime.h" "$work/src/"
gcc -O2 -w -I"$work/src" -I/usr/include/librdkafka "$work/examples/rdkafka_performance.c" \
    -o "$work/rdkafka_performance" -lrdkafka -lm

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
reference_run() { # prints msgs/s from the tool's final line
    "$work/rdkafka_performance" -P -t bench_reference -b "$bootstrap" -s "$SIZE" -c "$N" -D \
        -X linger.ms=5 2>&1 |
        awk -v n="$N" '/messages produced/ && / delivered/ { line = $0 }
            END { if (match(line, /[0-9]+ delivered/) && substr(line, RSTART, RLENGTH - 10) + 0 == n &&
                      match(line, /: [0-9]+ msgs\/s/)) print substr(line, RSTART + 2, RLENGTH - 8) + 0;
                  else { print "rdkafka_performance did not deliver everything: " line > "/dev/stderr"; exit 1 } }'
}

# A short warm-up of both paths (connections, metadata, page faults).
curl -s -o /dev/null -X POST "$base/kafkaprobe/produce?topic=bench_connector&n=10000&size=$SIZE"
"$work/rdkafka_performance" -P -t bench_reference -b "$bootstrap" -s "$SIZE" -c 10000 -D -X linger.ms=5 >/dev/null 2>&1

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
