#!/usr/bin/env bash
# tests/bench/bench_tracing.sh - what tracing costs the segments API,
# measured in one run on one sluiced: GET /segment/user/{id} and
# POST /segment/user under wrk -t2 -c64 with tracing off, then on at
# sample_ratio 1.0 (a server span, and a span per SQL statement and
# transaction, exported to nginx as the collector: tracing_setup.sh),
# alternating for ROUNDS rounds (4) and ending with off, so that every
# "on" run sits between two "off" runs; every GET run comes first, then
# every POST run.  Each run is printed with the load average it ran under.
# A SIGHUP switches [tracing]; the instance and its connections carry
# over, so only tracing differs.  The reference is tracing off at its
# best; target: on >= 0.9 of it (at most 10% less throughput), best
# against best, median against median, and paired: the median of each
# "on" run against its two neighbouring "off" runs.  Prints spans exported and
# dropped, each side's spread, and sluiced's CPU time per request (the
# figure the machine's other load disturbs least); never fails on a figure.
#
# Uses the optimized build in build/ (made if missing).  DURATION=10s.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${SL_BUILD:-$top/build}
duration=${DURATION:-10s}
users=${USERS:-10000}
. "$top/tests/lib.sh"
. "$top/tests/harness/services.sh"
. "$top/tests/bench/result.sh"

if [ ! -x "$build/core/sluiced" ]; then
    (cd "$top" && { [ -x configure ] || autoreconf -fi; })
    mkdir -p "$build"
    (cd "$build" && { [ -f Makefile ] || "$top/configure" --quiet; } && make -s -j"$(nproc)")
fi
command -v wrk >/dev/null || { echo "wrk missing: bash tests/harness/install-deps.sh" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    sl_svc_stop_all
    rm -rf "$work"
}
trap cleanup EXIT

. "$top/tests/bench/tracing_setup.sh"
write_conf off
"$build/core/sluiced" -c "$work/sluice.conf" 2>"$work/sluiced.log" &
daemon=$!
pids+=("$daemon")
t_wait_until 30 ready || { echo "sluiced not ready:" >&2; tail -n 20 "$work/sluiced.log" >&2; exit 1; }
# switch on|off: rewrite the config, SIGHUP, wait until the reload applied.
switch() {
    local before
    before=$(metric sluice_reloads_total)
    write_conf "$1"
    kill -HUP "$daemon"
    t_wait_until 30 "[ \"\$(metric sluice_reloads_total)\" != \"$before\" ]"
    t_wait_until 30 ready
}

seed_users "$users"
psqlc "VACUUM ANALYZE"
cat > "$work/get.lua" <<LUA
request = function()
  return wrk.format("GET", "/segment/user/" .. math.random(1, $users))
end
LUA
post_lua "$work/post.lua" "$users"
# CPU seconds sluiced has used (user + system), from /proc.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$daemon/stat"; }
# wrk SCRIPT: "requests/s p99_ms non2xx cpu_us_per_request".  CPU time per
# request is the figure the machine's other load disturbs least.
wrk_run() {
    local c0 c1
    c0=$(cpu)
    wrk -t2 -c64 -d"$duration" --latency -s "$1" "$base" > "$work/wrk.out" 2>&1
    c1=$(cpu)
    python3 - "$work/wrk.out" "$c0" "$c1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rps = re.search(r"Requests/sec:\s*([\d.]+)", t).group(1)
n = int(re.search(r"(\d+) requests in", t).group(1))
m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\b", t, re.M)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")
bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", t)
print(rps, "%.2f" % p99, bad.group(1) if bad else "0",
      "%.1f" % ((float(sys.argv[3]) - float(sys.argv[2])) * 1e6 / max(n, 1)))
PY
}

wrk -t2 -c64 -d2s -s "$work/get.lua" "$base" > /dev/null 2>&1 # warm-up
# Runs alternate off and on, so that a machine whose load drifts during
# the run does not favour one side; each side is reported at its best and
# the spread of its runs is printed (best/worst).  Every GET run comes
# before every POST run: a POST run leaves the users it changed out of
# sluiced's cache and PostgreSQL vacuuming what it wrote, so a GET run
# after one is slower whatever tracing does, and only the first GET run
# would have been spared it.
rounds=${ROUNDS:-4}
: > "$work/runs"
printf '%-5s %-4s %12s %10s %10s  %s\n' what run "req/s" "p99 ms" "us/req" "load average"
for what in get post; do
    for mode in $(for r in $(seq 1 "$rounds"); do echo off on; done) off; do
        switch "$mode"
        read -r rps p99 bad us <<< "$(wrk_run "$work/$what.lua")"
        echo "$what $mode $rps $p99 $bad $us" >> "$work/runs"
        printf '%-5s %-4s %12s %10s %10s  %s\n' "$what" "$mode" "$rps" "$p99" "$us" "$(cut -d' ' -f1-3 /proc/loadavg)"
        if [ "$mode" = on ]; then
            t_wait_until 60 '[ "$(metric sluice_tracing_spans_pending)" = 0 ]'
            exported=$(metric sluice_tracing_spans_exported_total)
            dropped=$(curl -s "$base/metrics" | awk '$1 ~ /^sluice_tracing_spans_dropped_total/ { s += $2 } END { print s + 0 }')
        fi
    done
done
# best WHAT MODE: the best req/s of those runs, its p99, best/worst, and
# the least CPU microseconds per request.
best() {
    awk -v w="$1" -v m="$2" '$1 == w && $2 == m {
            if ($3 > b) { b = $3; p = $4 } if (lo == "" || $3 < lo) lo = $3
            if (c == "" || $6 < c) c = $6 }
        END { printf "%s %s %.2f %s\n", b, p, b / lo, c }' "$work/runs"
}
read -r get_off get_off_p99 get_off_spread get_off_cpu <<< "$(best get off)"
read -r get_on get_on_p99 get_on_spread get_on_cpu <<< "$(best get on)"
read -r post_off post_off_p99 post_off_spread post_off_cpu <<< "$(best post off)"
read -r post_on post_on_p99 post_on_spread post_on_cpu <<< "$(best post on)"
bad=$(awk '$1 == "get" { g += $5 } $1 == "post" { p += $5 } END { print g "/" p }' "$work/runs")
# median WHAT MODE COLUMN: the median of that column over those runs; less
# moved than the best by one run the machine favoured.
median() {
    awk -v w="$1" -v m="$2" -v c="$3" '$1 == w && $2 == m { print $c }' "$work/runs" | sort -g |
        awk '{ v[NR] = $1 } END { printf "%.2f\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
get_off_med=$(median get off 3) get_on_med=$(median get on 3)
post_off_med=$(median post off 3) post_on_med=$(median post on 3)
get_off_cpu_med=$(median get off 6) get_on_cpu_med=$(median get on 6)
# paired WHAT COLUMN: each "on" run against the mean of the "off" runs
# just before and after it, which cancels a load that drifts through the
# run; the median of those ratios.  The best and the median above compare
# runs minutes apart, and one run the machine favoured or slowed moves them.
paired() {
    awk -v w="$1" -v c="$2" '$1 == w { m[++n] = $2; v[n] = $c }
        END { for (i = 2; i < n; i++) if (m[i] == "on") print v[i] / ((v[i - 1] + v[i + 1]) / 2) }' "$work/runs" |
        sort -g | awk '{ v[NR] = $1 } END { printf "%.3f\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
get_paired=$(paired get 3) post_paired=$(paired post 3)
get_cpu_paired=$(paired get 6) post_cpu_paired=$(paired post 6)

pct() { python3 -c "print('%.2f' % ($1 / $2))"; }
printf '\n%-28s %12s %9s %8s %12s %9s %8s %8s\n' "wrk -t2 -c64 -d$duration on x$rounds" "off best/s" "p99 ms" "spread" "on(1.0)/s" "p99 ms" "spread" "on/off"
printf '%-28s %12s %9s %8s %12s %9s %8s %8s\n' "GET /segment/user/{id}" "$get_off" "$get_off_p99" "$get_off_spread" "$get_on" "$get_on_p99" "$get_on_spread" "$(pct "$get_on" "$get_off")"
printf '%-28s %12s %9s %8s %12s %9s %8s %8s\n' "POST /segment/user" "$post_off" "$post_off_p99" "$post_off_spread" "$post_on" "$post_on_p99" "$post_on_spread" "$(pct "$post_on" "$post_off")"
printf '%-28s %12s %9s %8s %12s %9s %8s %8s\n' "GET median req/s" "$get_off_med" "" "" "$get_on_med" "" "" "$(pct "$get_on_med" "$get_off_med")"
printf '%-28s %12s %9s %8s %12s %9s %8s %8s\n' "POST median req/s" "$post_off_med" "" "" "$post_on_med" "" "" "$(pct "$post_on_med" "$post_off_med")"
printf '%-28s %12s %9s %8s %12s %9s %8s %8s\n' "CPU us/request, GET" "$get_off_cpu" "" "" "$get_on_cpu" "" "" "$(pct "$get_on_cpu" "$get_off_cpu")"
printf '%-28s %12s %9s %8s %12s %9s %8s %8s\n' "CPU us/request, POST" "$post_off_cpu" "" "" "$post_on_cpu" "" "" "$(pct "$post_on_cpu" "$post_off_cpu")"
printf '%-28s %12s %9s %8s %12s %9s %8s %8s\n' "GET paired, median" "" "" "" "" "" "" "$get_paired"
printf '%-28s %12s %9s %8s %12s %9s %8s %8s\n' "POST paired, median" "" "" "" "" "" "" "$post_paired"
printf '%-28s %12s %9s %8s %12s %9s %8s %8s\n' "CPU us/request paired, GET" "" "" "" "" "" "" "$get_cpu_paired"
printf '%-28s %12s %9s %8s %12s %9s %8s %8s\n' "CPU us/request paired, POST" "" "" "" "" "" "" "$post_cpu_paired"
echo "non-2xx (get/post) $bad; spans exported $exported, dropped $dropped; load average $(cut -d' ' -f1-3 /proc/loadavg); target on/off >= 0.9"
echo "a spread (best/worst of one side's runs) larger than the on/off gap means the machine's noise hides the cost"
bench_result get_segment_user_traced "$get_on" req/s "$get_off" tracing_off ">=0.9"
bench_result post_segment_user_traced "$post_on" req/s "$post_off" tracing_off ">=0.9"
bench_result get_segment_user_traced_median "$get_on_med" req/s "$get_off_med" tracing_off ">=0.9"
bench_result post_segment_user_traced_median "$post_on_med" req/s "$post_off_med" tracing_off ">=0.9"
bench_result get_segment_user_traced_paired "$get_paired" on/off - neighbouring_tracing_off_runs ">=0.9"
bench_result post_segment_user_traced_paired "$post_paired" on/off - neighbouring_tracing_off_runs ">=0.9"
bench_result get_segment_user_cpu_traced_median "$get_on_cpu_med" us/req "$get_off_cpu_med" tracing_off "<=1.1"
bench_result get_segment_user_cpu_traced "$get_on_cpu" us/req "$get_off_cpu" tracing_off "<=1.1"
bench_result post_segment_user_cpu_traced "$post_on_cpu" us/req "$post_off_cpu" tracing_off "<=1.1"
