#!/usr/bin/env bash
# tests/bench/bench_tracing.sh - what tracing costs the segments API,
# measured in one run on one sluiced: GET /segment/user/{id} and
# POST /segment/user under wrk -t2 -c64 with tracing off, then on at
# sample_ratio 1.0 (a server span, and a span per SQL statement and
# transaction, exported to tests/harness/otlp_receiver.py in its discarding
# mode), then off again (the spread between the two "off" runs is the
# noise).  A SIGHUP switches [tracing]; the instance and its connections
# carry over, so only tracing differs between runs.  The reference is the
# first "off" run; target: on >= 0.9 of it (at most 10% less throughput).
# Prints spans exported and dropped; never fails on a figure.
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

sl_svc_start postgres >/dev/null
sl_svc_start redis >/dev/null
psqlc() { psql -X -At -q "$SL_PG_DSN" -c "$1"; }

oport=$(t_free_port)
python3 "$top/tests/harness/otlp_receiver.py" "$oport" - "$work/control" &
pids+=($!)

sport=$(t_free_port)
base=http://127.0.0.1:$sport
mkdir -p "$work/mods"
cp "$build/_modules/segments.so" "$build/_modules/metrics.so" "$work/mods/"
write_conf() { # write_conf on|off
    cat > "$work/sluice.conf" <<CONF
[core]
listen = 127.0.0.1:$sport
modules_dir = mods
log_level = warn
[postgres]
dsn = $SL_PG_DSN
pool_size = ${POOL:-16}
max_queue = 4096
[redis]
url = $SL_REDIS_URL
[module metrics]
[module segments]
CONF
    [ "$1" = on ] && printf '%s\n' '[tracing]' "endpoint = http://127.0.0.1:$oport/v1/traces" \
        'sample_ratio = 1' 'max_queue = 65536' >> "$work/sluice.conf"
    return 0
}
write_conf off
"$build/core/sluiced" -c "$work/sluice.conf" 2>"$work/sluiced.log" &
daemon=$!
pids+=("$daemon")
t_wait_until 30 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/readyz")" = 200 ]' ||
    { echo "sluiced not ready:" >&2; tail -n 20 "$work/sluiced.log" >&2; exit 1; }
metric() { curl -s "$base/metrics" | awk -v n="$1" '$1 == n { print $2; f = 1 } END { if (!f) print 0 }'; }
# switch on|off: rewrite the config, SIGHUP, wait until the reload applied.
switch() {
    local before
    before=$(metric sluice_reloads_total)
    write_conf "$1"
    kill -HUP "$daemon"
    t_wait_until 30 "[ \"\$(metric sluice_reloads_total)\" != \"$before\" ]"
    t_wait_until 30 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/readyz")" = 200 ]'
}

psqlc "INSERT INTO users (id) SELECT generate_series(1, $users);
       SELECT setval('users_id_seq', $users);
       INSERT INTO segments (slug) SELECT 'S' || g FROM generate_series(0, 9) g;
       INSERT INTO user_segments (user_id, slug)
         SELECT u, 'S' || ((u + k * 3) % 10) FROM generate_series(1, $users) u, generate_series(0, 2) k" > /dev/null
psqlc "VACUUM ANALYZE"
cat > "$work/get.lua" <<LUA
request = function()
  return wrk.format("GET", "/segment/user/" .. math.random(1, $users))
end
LUA
cat > "$work/post.lua" <<LUA
local headers = { ["Content-Type"] = "application/json" }
request = function()
  local a = math.random(0, 9)
  local d = (a + math.random(1, 9)) % 10
  return wrk.format("POST", "/segment/user", headers, string.format(
    '{"user_id":%d,"add_segments":["S%d"],"delete_segments":["S%d"]}', math.random(1, $users), a, d))
end
LUA
# wrk SCRIPT: "requests/s p99_ms non2xx"
wrk_run() {
    wrk -t2 -c64 -d"$duration" --latency -s "$1" "$base" > "$work/wrk.out" 2>&1
    python3 - "$work/wrk.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rps = re.search(r"Requests/sec:\s*([\d.]+)", t).group(1)
m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\b", t, re.M)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")
bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", t)
print(rps, "%.2f" % p99, bad.group(1) if bad else "0")
PY
}

wrk -t2 -c64 -d2s -s "$work/get.lua" "$base" > /dev/null 2>&1 # warm-up
read -r get_off get_off_p99 get_off_bad <<< "$(wrk_run "$work/get.lua")"
read -r post_off post_off_p99 post_off_bad <<< "$(wrk_run "$work/post.lua")"
switch on
read -r get_on get_on_p99 get_on_bad <<< "$(wrk_run "$work/get.lua")"
read -r post_on post_on_p99 post_on_bad <<< "$(wrk_run "$work/post.lua")"
t_wait_until 30 '[ "$(metric sluice_tracing_spans_pending)" = 0 ]'
exported=$(metric sluice_tracing_spans_exported_total)
dropped=$(curl -s "$base/metrics" | awk '$1 ~ /^sluice_tracing_spans_dropped_total/ { s += $2 } END { print s + 0 }')
switch off
read -r get_off2 get_off2_p99 get_off2_bad <<< "$(wrk_run "$work/get.lua")"
read -r post_off2 post_off2_p99 post_off2_bad <<< "$(wrk_run "$work/post.lua")"

pct() { python3 -c "print('%.2f' % ($1 / $2))"; }
printf '\n%-26s %12s %9s %12s %9s %12s %9s %9s %9s\n' "wrk -t2 -c64 -d$duration" "off req/s" "p99 ms" "on(1.0)/s" "p99 ms" "off again/s" "p99 ms" "on/off" "off2/off"
printf '%-26s %12s %9s %12s %9s %12s %9s %9s %9s\n' "GET /segment/user/{id}" "$get_off" "$get_off_p99" "$get_on" "$get_on_p99" "$get_off2" "$get_off2_p99" "$(pct "$get_on" "$get_off")" "$(pct "$get_off2" "$get_off")"
printf '%-26s %12s %9s %12s %9s %12s %9s %9s %9s\n' "POST /segment/user" "$post_off" "$post_off_p99" "$post_on" "$post_on_p99" "$post_off2" "$post_off2_p99" "$(pct "$post_on" "$post_off")" "$(pct "$post_off2" "$post_off")"
echo "non-2xx: get $get_off_bad/$get_on_bad/$get_off2_bad, post $post_off_bad/$post_on_bad/$post_off2_bad; spans exported $exported, dropped $dropped; load average $(cut -d' ' -f1-3 /proc/loadavg); target on/off >= 0.9"
bench_result get_segment_user_traced "$get_on" req/s "$get_off" tracing_off ">=0.9"
bench_result post_segment_user_traced "$post_on" req/s "$post_off" tracing_off ">=0.9"
bench_result get_segment_user_off_again "$get_off2" req/s "$get_off" tracing_off -
bench_result post_segment_user_off_again "$post_off2" req/s "$post_off" tracing_off -
