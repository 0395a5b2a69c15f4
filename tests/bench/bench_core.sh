#!/usr/bin/env bash
# tests/bench/bench_core.sh - the core's figures beside their references,
# measured in the same run on this machine.  A benchmark, not a test: it
# prints a table and never fails on a figure.
#
#   1. GET /healthz requests/s: sluiced vs nginx (one worker, fixed JSON,
#      keepalive_requests raised: tests/bench/nginx_reference.sh), both
#      under the same wrk -t2 -c64 -d10s, RUNS (3) alternating runs each
#      after a warm-up of both; the medians.  Target: ratio >= 0.8.
#   2. Reload latency: SIGHUP to the new option being served.  Target < 50 ms.
#
# Uses the optimized build in build/ (made if missing).  DURATION=10s by
# default.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${SL_BUILD:-$top/build}
duration=${DURATION:-10s}
RUNS=${RUNS:-3}
. "$top/tests/lib.sh"
. "$top/tests/bench/result.sh"
. "$top/tests/bench/nginx_reference.sh"

if [ ! -x "$build/core/sluiced" ]; then
    (cd "$top" && { [ -x configure ] || autoreconf -fi; })
    mkdir -p "$build"
    (cd "$build" && { [ -f Makefile ] || "$top/configure" --quiet; } && make -s -j"$(nproc)")
fi
command -v nginx >/dev/null || { echo "nginx missing: apt-get install -y nginx-light" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    rm -rf "$work"
}
trap cleanup EXIT

# ------------------------------------------------------------------ nginx
nport=$(t_free_port)
nginx_ref_start "$work" "$nport" "= /healthz" '{"status":"ok"}'
pids+=($!)

# ---------------------------------------------------------------- sluiced
sport=$(t_free_port)
mkdir -p "$work/mods"
cp "$build/_modules/metrics.so" "$build/tests/modules/echo/.libs/echo.so" "$work/mods/"
write_conf() {
    cat > "$work/sluice.conf" <<EOF
[core]
listen = 127.0.0.1:$sport
modules_dir = mods
log_level = warn
[module metrics]
[module echo]
value = $1
EOF
}
write_conf v0
"$build/core/sluiced" -c "$work/sluice.conf" 2>"$work/sluiced.log" &
spid=$!
pids+=($spid)
t_wait_http "http://127.0.0.1:$nport/healthz" 10
t_wait_http "http://127.0.0.1:$sport/healthz" 10

rate() { # wrk's requests/s for a URL; nothing (a failed run) on any error
    wrk -t2 -c64 -d"$duration" "$1" > "$work/wrk.out" 2>&1
    if grep -q -E 'Non-2xx|Socket errors' "$work/wrk.out"; then
        echo "errors during the run against $1:" >&2
        cat "$work/wrk.out" >&2
        return
    fi
    awk '/Requests\/sec/ { print $2 }' "$work/wrk.out"
}

wrk -t2 -c64 -d2s "http://127.0.0.1:$nport/healthz" > /dev/null 2>&1 # warm-up
wrk -t2 -c64 -d2s "http://127.0.0.1:$sport/healthz" > /dev/null 2>&1
: > "$work/n"
: > "$work/s"
printf '%-6s %14s %14s\n' run "sluiced req/s" "nginx req/s"
for i in $(seq 1 "$RUNS"); do
    n=$(rate "http://127.0.0.1:$nport/healthz")
    s=$(rate "http://127.0.0.1:$sport/healthz")
    echo "$n" >> "$work/n"
    echo "$s" >> "$work/s"
    printf '%-6s %14s %14s\n' "$i" "${s:-FAILED}" "${n:-FAILED}"
done
nginx_rps=$(bench_median < "$work/n")
sluiced_rps=$(bench_median < "$work/s")
printf '%-6s %14s %14s\n' median "$sluiced_rps" "$nginx_rps"

# ----------------------------------------------------------------- reload
# Time from SIGHUP to the first answer carrying the new option, polled over
# one keep-alive connection; 20 reloads, median and worst.
reload_ms=$(python3 - "$sport" "$spid" "$work/sluice.conf" <<'EOF'
import http.client, json, os, signal, sys, time
port, pid, conf = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
text = open(conf).read()
conn = http.client.HTTPConnection("127.0.0.1", port)
def value():
    conn.request("GET", "/echo")
    return json.loads(conn.getresponse().read())["value"]
times = []
for i in range(1, 21):
    want = "v%d" % i
    with open(conf, "w") as f:
        f.write(text.replace("value = v0", "value = " + want))
    t0 = time.monotonic()
    os.kill(pid, signal.SIGHUP)
    while value() != want:
        if time.monotonic() - t0 > 5:
            sys.exit("reload did not show within 5 s")
    times.append((time.monotonic() - t0) * 1000)
times.sort()
print("%.2f %.2f" % (times[len(times) // 2], times[-1]))
EOF
)
reload_median=${reload_ms% *}
reload_worst=${reload_ms#* }

ratio=$(python3 -c "print('%.2f' % ($sluiced_rps / $nginx_rps))")
printf '\n%-40s %14s %14s %8s %8s\n' "benchmark" "sluice" "reference" "ratio" "target"
printf '%-40s %14s %14s %8s %8s\n' "GET /healthz req/s, median of $RUNS (wrk -t2 -c64 -d$duration)" "$sluiced_rps" "$nginx_rps (nginx)" "$ratio" ">= 0.8"
printf '%-40s %14s %14s %8s %8s\n' "SIGHUP to new config served, median ms" "$reload_median" "-" "-" "< 50"
printf '%-40s %14s %14s %8s %8s\n' "SIGHUP to new config served, worst ms" "$reload_worst" "-" "-" "< 50"
bench_result healthz_requests "$sluiced_rps" req/s "$nginx_rps" nginx ">=0.8"
bench_result reload_median "$reload_median" ms - - "<50"
bench_result reload_worst "$reload_worst" ms - - "<50"
