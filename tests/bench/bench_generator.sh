#!/usr/bin/env bash
# tests/bench/bench_generator.sh - the generator's maximum sustained rate
# into the embedded broker beside librdkafka's rdkafka_performance -P on
# the same broker, in the same run.  A benchmark, not a test: it prints a
# table and never fails on a figure.
#
#   generator: strategy async, eps far above reach (10M/s), 200-byte events,
#              the realistic mix on (duplicates, malformed events, Zipf
#              pages, key/round-robin/random partitioning, headers), for
#              SECONDS_ seconds at full speed.
#   reference: rdkafka_performance -P -s 200 -c N -D -X linger.ms=5, run
#              twice: bare, and with the three headers every generator
#              message carries (event_type, a 36-byte event_id, generator),
#              which is the like-for-like figure: librdkafka allocates and
#              encodes headers per message, whoever produces them.
# The same clock for both: a whole run, from the request that starts it
# to the moment the last message was acknowledged, read by this script.
# For the generator: from the speed request until /generator/status shows
# nothing pending after the speed went back to 0 (delivered events /
# that time: ramp-up and the final flush included).  For the reference:
# the process's run, launch to exit (N / that time), which includes its
# own start and connection; that fixed cost (a run of one message) is
# printed beside it.  rdkafka_performance's own figure, which leaves both
# out, is printed for information.  And the same length: each reference
# run produces as many messages as it sends in the generator's run time
# at the rate a calibration run (CAL messages) measured, so neither side
# is timed over a longer stretch than the other.
# Runs alternate, RUNS times each; the table shows every run and the
# medians.  Target: ratio >= 0.7.
#
# SECONDS_=4 CAL=1000000 RUNS=3 PARTITIONS=64 by default; N=COUNT fixes
# the reference's message count instead.  The embedded
# broker keeps the last 5 MiB per partition; nothing here reads back, so
# older data may go.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
SL_BUILD=${SL_BUILD:-$top}
. "$top/tests/lib.sh"
. "$top/tests/bench/result.sh"
. "$top/tests/bench/rdkafka_reference.sh"
DURATION=${SECONDS_:-4}
N=${N:-}
CAL=${CAL:-1000000}
RUNS=${RUNS:-3}
PARTITIONS=${PARTITIONS:-64}
SIZE=200

[ -x "$SLUICED" ] || { echo "build first: (cd $top && autoreconf -fi && ./configure && make)" >&2; exit 1; }
[ -f "$SL_BUILD/_modules/generator.so" ] || { echo "$SL_BUILD/_modules/generator.so missing: make" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    rm -rf "$work"
}
trap cleanup EXIT

perf=$(ref_build "$work/ref")

mkdir -p "$work/mods"
cp "$SL_BUILD/_modules/generator.so" "$work/mods/"
port=$(t_free_port)
base=http://127.0.0.1:$port
cat > "$work/sluice.conf" <<CONF
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = warn

[kafka]
brokers = embedded
embedded_topics = bench_generator:$PARTITIONS, bench_reference:$PARTITIONS
bootstrap_file = $work/bootstrap
rdkafka.linger.ms = 5

[module generator]
topic = bench_generator
strategy = async
partitions = $PARTITIONS
event_size = $SIZE
inflight = 1000000
CONF
"$SLUICED" -c "$work/sluice.conf" 2>"$work/sluiced.log" &
pids+=($!)
t_wait_http "$base/generator/status" 10 && t_wait_for 10 test -s "$work/bootstrap" ||
    { echo "sluiced did not start:" >&2; cat "$work/sluiced.log" >&2; exit 1; }
bootstrap=$(cat "$work/bootstrap")

status() { curl -s "$base/generator/status" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
settled() { [ "$(status 'j["pending"]')" = 0 ]; }

generator_run() { # prints delivered msgs/s over a whole run of DURATION seconds at full speed, then its length
    local d1 t1 d2 t2
    d1=$(status 'j["delivered"]["total"]')
    t1=$(date +%s.%N)
    curl -s -o /dev/null -X POST "$base/generator/config/speed?eps=10000000"
    sleep "$DURATION"
    curl -s -o /dev/null -X POST "$base/generator/config/speed?eps=0"
    t_wait_until 120 settled || { echo "the generator did not settle" >&2; return 1; }
    t2=$(date +%s.%N)
    d2=$(status 'j["delivered"]["total"]')
    python3 -c "print(int(($d2 - $d1) / ($t2 - $t1)), round($t2 - $t1, 2))"
}
ref_run() { # ref_run COUNT ARG...: prints msgs/s over the process's whole run, then its own figure
    local n=$1 t1 t2 own
    shift
    t1=$(date +%s.%N)
    own=$(ref_rate "$perf" "$bootstrap" bench_reference "$SIZE" "$n" "$@") || return 1
    t2=$(date +%s.%N)
    python3 -c "print(int($n / ($t2 - $t1)), $own)"
}
count_for() { # count_for RATE SECONDS: the messages for a run that long (N when set)
    if [ -n "$N" ]; then echo "$N"; else python3 -c "print(max(10000, int($1 * $2)))"; fi
}
ref_rate "$perf" "$bootstrap" bench_reference "$SIZE" 10000 >/dev/null
t1=$(date +%s.%N)
ref_rate "$perf" "$bootstrap" bench_reference "$SIZE" 1 >/dev/null
startup_ms=$(python3 -c "print(int(($(date +%s.%N) - $t1) * 1000))")

echo "Generator vs rdkafka_performance: $SIZE B events, embedded broker, linger.ms=5, $PARTITIONS partitions, $(nproc) CPUs"
headers=(-H event_type=view -H event_id=0b5e2f6a-3c1d-4e8f-9a7b-2d4c6e8f0a1b -H generator=generator)
read -r cal_h _ < <(ref_run "$CAL" "${headers[@]}")
read -r cal_b _ < <(ref_run "$CAL")
[ -n "${cal_h:-}" ] && [ -n "${cal_b:-}" ] || { echo "the calibration runs of rdkafka_performance failed" >&2; exit 1; }
ref_count="as many messages as its calibrated rate ($cal_h with headers, $cal_b bare) sends in the run time of the generator"
echo "generator: async, realistic mix, ${DURATION}s at full speed per run; reference: ${N:-$ref_count}"
echo "every figure: messages acknowledged / the whole run (reference launch to exit; its start alone, a run of 1 message: ${startup_ms} ms)"
printf '%-6s %18s %30s %30s\n' run "generator msgs/s" "reference, headers (own)" "reference, bare (own)"
: > "$work/g"
: > "$work/rh"
: > "$work/r"
for i in $(seq 1 "$RUNS"); do
    read -r g gsecs < <(generator_run)
    read -r rh rh_own < <(ref_run "$(count_for "$cal_h" "${gsecs:-$DURATION}")" "${headers[@]}")
    read -r r r_own < <(ref_run "$(count_for "$cal_b" "${gsecs:-$DURATION}")")
    echo "${g:-}" >> "$work/g"
    echo "${rh:-}" >> "$work/rh"
    echo "${r:-}" >> "$work/r"
    printf '%-6s %18s %30s %30s\n' "$i" "${g:-FAILED} (${gsecs:-?} s)" "${rh:-FAILED} (${rh_own:-})" "${r:-FAILED} (${r_own:-})"
done
mg=$(bench_median < "$work/g")
mrh=$(bench_median < "$work/rh")
mr=$(bench_median < "$work/r")
printf '%-6s %18s %30s %30s\n' median "$mg" "$mrh" "$mr"
awk -v g="$mg" -v rh="$mrh" -v r="$mr" 'BEGIN {
    printf "ratio generator / rdkafka_performance with the same headers: %.2f (target >= 0.7)\n", g / rh
    printf "ratio generator / rdkafka_performance bare: %.2f\n", g / r }'
bench_result generator_max_rate "$mg" events/s "$mrh" rdkafka_performance_same_headers ">=0.7"
bench_result generator_max_rate_bare_reference "$mg" events/s "$mr" rdkafka_performance_bare -
echo "generator totals: $(status '"generated %d, delivered %d, failed %d, dropped %d %s" % (j["generated"]["total"], j["delivered"]["total"], j["failed"]["total"], j["dropped"]["total"], j["dropped_by_reason"])')"
