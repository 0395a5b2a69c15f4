#!/usr/bin/env bash
# The core daemon as a user meets it: config checks, modules, HTTP, metrics,
# reloads of every kind, draining and shutdown.  Real processes throughout:
# sluiced with the metrics module and the echo test module, curl, promtool,
# wrk.
. "$(dirname "$0")/../lib.sh"

work=$(t_tmpdir)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    [ -n "${SL_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

mods=$work/mods
mkdir -p "$mods"
cp "$SL_BUILD/_modules/metrics.so" "$mods/"
cp "$SL_BUILD/tests/modules/echo/.libs/echo.so" "$mods/"
port=$(t_free_port)
port2=$(t_free_port)
base=http://127.0.0.1:$port

write_conf() { # extra lines of [module echo] come from $echo_extra
    cat > "$work/sluice.conf" <<EOF
# written by tests/integration/core.sh
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = debug
drain_timeout = ${drain:-5s}

[module metrics]

[module echo]
value = ${value:-one}
tick = 50ms
${echo_extra:-}
${second:-}
EOF
}

start_daemon() {
    "$SLUICED" -c "$work/sluice.conf" 2>>"$work/sluiced.log" &
    daemon=$!
    pids+=("$daemon")
    t_wait_http "$base/healthz" 10
}

metric() { # metric NAME_WITH_LABELS: its value, or "absent"
    curl -s "$base/metrics" | awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "absent" }'
}

# hup: SIGHUP, and wait until the reload counter moved (the core counts a
# reload, failed or not, once it has built the new generation and started
# the successors that do not wait for a drain); fails if it did not.
hup() {
    local before
    before=$(metric sluice_reloads_total)
    kill -HUP "$daemon"
    t_wait_until 30 "[ \"\$(metric sluice_reloads_total)\" != '$before' ]"
}
reload() { # hup, as a check
    hup
    t_check $? -eq 0 "SIGHUP: the reload ran (sluice_reloads_total $(metric sluice_reloads_total))"
}
# in_flight N: wait until N requests to /echo/slow are being served.
in_flight() {
    t_wait_until 30 "[ \"\$(metric sluice_echo_slow_pending)\" = $1 ]"
    t_check "$(metric sluice_echo_slow_pending)" = "$1" "$1 slow request(s) in flight"
}

json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# ------------------------------------------------------------------ -t, -V
t_case "sluiced -t accepts a valid config and refuses broken ones with file:line"
write_conf
"$SLUICED" -t -c "$work/sluice.conf" 2>"$work/t.out"
t_check $? -eq 0 "valid config: exit 0"
cp "$work/sluice.conf" "$work/bad.conf"
cat >> "$work/bad.conf" <<EOF
limit = 500
colour = blue
[module nosuchmodule]
[kafkaa]
EOF
"$SLUICED" -t -c "$work/bad.conf" 2>"$work/t.out"
t_check $? -eq 1 "broken config: exit 1"
line_limit=$(grep -n '^limit = 500' "$work/bad.conf" | cut -d: -f1)
line_colour=$(grep -n '^colour' "$work/bad.conf" | cut -d: -f1)
t_check "$(grep -c "bad.conf:$line_limit:.*limit" "$work/t.out")" -ge 1 "out-of-range value reported at bad.conf:$line_limit"
t_check "$(grep -c "bad.conf:$line_colour:.*colour" "$work/t.out")" -ge 1 "unknown key reported at bad.conf:$line_colour"
t_check "$(grep -c "nosuchmodule" "$work/t.out")" -ge 1 "missing module reported"
t_check "$(grep -c "unknown section \[kafkaa\]" "$work/t.out")" -ge 1 "unknown section reported"
"$SLUICED" -V > "$work/v.out"
t_check "$(grep -c 'librdkafka' "$work/v.out")" -eq 1 "-V prints build information"
"$SLUICED" --help-module echo -c "$work/sluice.conf" > "$work/help.out"
t_check "$(grep -c '^  limit (int, default "10", from 1 to 100)' "$work/help.out")" -eq 1 "--help-module lists declared options"
t_end

t_case "sluiced -t runs each module's check(): what start() would refuse, at the key's file:line"
echo_extra="ratio = 2/3" write_conf
"$SLUICED" -t -c "$work/sluice.conf" 2>"$work/t.out"
t_check $? -eq 0 "a ratio check() accepts: exit 0 ($(head -c 200 "$work/t.out"))"
second='[module echo "b"]
ratio = 3/0
check_fail = true' echo_extra="ratio = 3 of 4" write_conf
cp "$work/sluice.conf" "$work/bad.conf"
line_ratio=$(grep -n '^ratio = 3 of 4' "$work/bad.conf" | cut -d: -f1)
line_b=$(grep -n '^ratio = 3/0' "$work/bad.conf" | cut -d: -f1)
line_sec=$(grep -n '^\[module echo "b"\]' "$work/bad.conf" | cut -d: -f1)
"$SLUICED" -t -c "$work/bad.conf" 2>"$work/t.out"
t_check $? -eq 1 "a value check() refuses: exit 1"
t_check "$(grep -c "bad.conf:$line_ratio: \[module echo\] ratio: \"3 of 4\" is not N/M with M > 0" "$work/t.out")" -eq 1 "reported at the key's line: $(grep -m1 'ratio' "$work/t.out" | head -c 200)"
t_check "$(grep -c "bad.conf:$line_b: \[module echo \"b\"\] ratio: \"3/0\"" "$work/t.out")" -eq 1 "a named instance's error carries its label and line"
t_check "$(grep -c "bad.conf:$line_sec: \[module echo \"b\"\] told to fail its check" "$work/t.out")" -eq 1 "sl_fail() in check() is reported at the section's line"
t_check "$(grep -c 'test failed' "$work/t.out")" -eq 1 "says the test failed"
"$SLUICED" -c "$work/bad.conf" 2>"$work/start.out"
t_check $? -eq 1 "starting with it: exit 1"
t_check "$(grep -c "bad.conf:$line_ratio: \[module echo\] ratio" "$work/start.out")" -eq 1 "with the same file:line"
t_check "$(grep -c '\] started' "$work/start.out")" -eq 0 "and nothing was started"
echo_extra="check_grab = true" write_conf
"$SLUICED" -t -c "$work/sluice.conf" 2>"$work/t.out"
t_check $? -eq 1 "a check() that asks for a timer: exit 1"
t_check "$(grep -c 'check() tried to acquire a timer, which it may not (a bug in module echo)' "$work/t.out")" -eq 1 "refused and reported as a module bug"
t_check "$(grep -c 'handed check() a timer' "$work/t.out")" -eq 0 "the timer was not handed out"
t_end

t_case "--init-schema runs every module's schema step and exits 0 only when all applied"
schema_conf() { # schema_conf HOW...: one echo instance per HOW, and the metrics module
    printf '[core]\nmodules_dir = mods\nlisten = 127.0.0.1:%s\n[module metrics]\n' "$port" > "$work/schema.conf"
    local i=0
    for how in "$@"; do
        i=$((i + 1))
        printf '[module echo "s%s"]\nschema = %s\n' "$i" "$how" >> "$work/schema.conf"
    done
}
schema_conf ok ok
timeout 20 "$SLUICED" --init-schema -c "$work/schema.conf" 2>"$work/s.out"
t_check $? -eq 0 "two instances applied: exit 0"
t_check "$(grep -c 'schema step finished' "$work/s.out")" -eq 2 "each instance's step ran"
t_check "$(grep -c 'schema of every module in place' "$work/s.out")" -eq 1 "says so"
t_check "$(grep -c 'echo/s1.* started' "$work/s.out")" -eq 0 "no module was started"
curl -s -o /dev/null "$base/healthz"
t_check $? -ne 0 "nothing listened"
schema_conf ok fail
timeout 20 "$SLUICED" --init-schema -c "$work/schema.conf" 2>"$work/s.out"
t_check $? -eq 1 "a failing step: exit 1"
t_check "$(grep -c 'echo/s2.*schema not applied: told to fail' "$work/s.out")" -eq 1 "names the instance and the reason"
schema_conf refuse ok
timeout 20 "$SLUICED" --init-schema -c "$work/schema.conf" 2>"$work/s.out"
t_check $? -eq 1 "a refused step: exit 1"
t_check "$(grep -c 'schema step finished' "$work/s.out")" -eq 1 "the other instance still applied"
schema_conf hang
# The last run's s.out says "applying its schema" too: read before this
# one's shell has truncated it, it let the TERM below reach that shell
# before it became sluiced, and the shell ran this script's exit trap
# (which removed $work), on a loaded machine.
rm -f "$work/s.out"
"$SLUICED" --init-schema -c "$work/schema.conf" 2>"$work/s.out" &
hung=$!
t_wait_for 60 grep -q 'applying its schema' "$work/s.out"
t_check $? -eq 0 "the hanging step began"
kill -TERM "$hung"
wait "$hung"
t_check $? -eq 1 "SIGTERM during a step: exit 1"
printf '[core]\nmodules_dir = mods\ncolour = blue\n' > "$work/schema.conf"
"$SLUICED" --init-schema -c "$work/schema.conf" 2>"$work/s.out"
t_check $? -eq 1 "an invalid config: exit 1"
t_check "$(grep -c 'schema.conf:3' "$work/s.out")" -eq 1 "with file:line"
t_end

t_case "a module built for a newer or a retired ABI is refused"
cat > "$work/oldabi.c" <<'EOF'
#include <sluice/sluice.h>
static int start(sl_ctx *ctx) { (void)ctx; return 0; }
SL_API const sl_module sluice_module = { 999, "oldabi", "wrong ABI", 0, 0, start, 0 };
EOF
${CC:-cc} -shared -fPIC -I"$SL_TOP/core/include" -o "$mods/oldabi.so" "$work/oldabi.c"
printf '[core]\nmodules_dir = mods\nlisten =\n[module oldabi]\n' > "$work/abi.conf"
"$SLUICED" -t -c "$work/abi.conf" 2>"$work/t.out"
t_check $? -eq 1 "exit 1"
t_check "$(grep -c 'ABI version 999, newer than this sluiced' "$work/t.out")" -eq 1 "says which ABI it has"
sed -i 's/{ 999,/{ 1,/' "$work/oldabi.c"
${CC:-cc} -shared -fPIC -I"$SL_TOP/core/include" -o "$mods/oldabi.so" "$work/oldabi.c"
"$SLUICED" -t -c "$work/abi.conf" 2>"$work/t.out"
t_check $? -eq 1 "an ABI older than the oldest loaded: exit 1"
t_check "$(grep -c 'ABI version 1, which this sluiced no longer loads (it loads 2 to 3)' "$work/t.out")" -eq 1 \
    "says which it loads"
rm -f "$mods/oldabi.so"
t_end

t_case "a module built for an older ABI loads, without the hooks added since"
cp "$SL_BUILD/tests/modules/abitwo/.libs/abitwo.so" "$mods/"
abiport=$(t_free_port)
printf '[core]\nmodules_dir = mods\nlisten = 127.0.0.1:%s\n[module abitwo]\nvalue = old\n' "$abiport" > "$work/abi2.conf"
"$SLUICED" -t -c "$work/abi2.conf" 2>"$work/t2.out"
t_check $? -eq 0 "-t accepts it"
"$SLUICED" -c "$work/abi2.conf" 2>"$work/abi2.log" &
abipid=$!
pids+=("$abipid")
t_wait_http "http://127.0.0.1:$abiport/abitwo" 10
t_check "$(curl -s "http://127.0.0.1:$abiport/abitwo")" = old "it serves its route with its options"
t_check "$(grep -c 'module abitwo is built for module ABI 2: loaded without the hooks ABI 3 added' "$work/abi2.log")" -eq 1 \
    "the log says it runs without the newer hooks"
kill -TERM "$abipid"
wait "$abipid"
t_check $? -eq 0 "and it drains and exits 0"
rm -f "$mods/abitwo.so"
t_end

# -------------------------------------------------------------- serving
t_case "routes, JSON errors and metrics that promtool accepts"
write_conf
start_daemon
t_check $? -eq 0 "daemon answers"
t_check "$(curl -s "$base/echo" | json_field value)" = one "GET /echo"
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$base/nope")" = 404 "unknown route: 404"
t_check "$(curl -s "$base/nope" | json_field error)" = "no such route" "404 body is JSON"
t_check "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$base/echo")" = 405 "wrong method: 405"
t_check "$(curl -s -o /dev/null -w '%{http_code}' -I "$base/echo")" = 200 "HEAD where GET is"
t_check "$(curl -s "$base/echo/item/a%20b" | json_field id)" = "a b" "path parameter decoded"
t_check "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d '{"a":' "$base/echo/body")" = 400 "malformed JSON: 400"
t_check "$(curl -s -o /dev/null -w '%{http_code}' -d '{"a":1}' "$base/echo/body")" = 415 "a JSON body sent as a form: 415"
head -c 2000000 /dev/zero | tr '\0' 'x' > "$work/big"
t_check "$(curl -s -o /dev/null -w '%{http_code}' --data-binary @"$work/big" "$base/echo/body")" = 413 "body over the limit: 413"
t_check "$(curl -s "$base/readyz" | json_field ready)" = True "ready"
curl -s "$base/metrics" > "$work/metrics.txt"
promtool check metrics < "$work/metrics.txt" > "$work/promtool.out" 2>&1
t_check $? -eq 0 "promtool check metrics: $(head -c 300 "$work/promtool.out")"
# GET and HEAD /echo answered 200 so far: two requests.
t_check "$(grep -c '^sluice_http_requests_total{module="echo",route="/echo",code="200"} 2$' "$work/metrics.txt")" -eq 1 "per-route request counter"
t_check "$(grep -c '^sluice_http_requests_total{module="core",route="unmatched",code="404"} 2$' "$work/metrics.txt")" -eq 1 "unmatched requests counted"
t_check "$(grep -c '^sluice_http_request_duration_seconds_bucket{module="echo",route="/echo",le="+Inf"} 2$' "$work/metrics.txt")" -eq 1 "per-route latency histogram"
for m in sluice_build_info sluice_uptime_seconds sluice_reloads_total sluice_reload_failures_total sluice_config_last_reload_successful sluice_modules_loaded sluice_event_loop_lag_seconds_count; do
    t_check "$(grep -c "^$m" "$work/metrics.txt")" -ge 1 "core metric $m"
done
t_end

# -------------------------------------------------------------- reloads
t_case "reload with a changed option replaces the instance"
value=two write_conf
reload
t_check "$(curl -s "$base/echo" | json_field value)" = two "new option served"
t_check "$(metric sluice_config_last_reload_successful)" = 1 "reload successful"
t_check "$(grep -c '\[echo\] changed; starting its successor' "$work/sluiced.log")" -eq 1 "logged as a replacement"
t_end

# refused_reload LINE FAILURES PATTERN: a reload with LINE added to
# [module echo] fails, leaves the running instance alone, is counted (the
# FAILURES-th) and logged as sluice.conf:N followed by PATTERN.
refused_reload() {
    local line
    value=three echo_extra="$1" write_conf
    line=$(grep -n -x -F "$1" "$work/sluice.conf" | cut -d: -f1)
    reload
    t_check "$(curl -s "$base/echo" | json_field value)" = two "old option still served"
    t_check "$(metric sluice_reload_failures_total)" = "$2" "failure counted"
    t_check "$(metric sluice_config_last_reload_successful)" = 0 "last reload unsuccessful"
    t_check "$(grep -c "sluice.conf:$line:$3" "$work/sluiced.log")" -ge 1 "logged at sluice.conf:$line: $(grep "sluice.conf:$line:$3" "$work/sluiced.log" | tail -1 | cut -c1-200)"
    t_check "$(grep -c '\[echo\] changed' "$work/sluiced.log")" -eq 1 "the running instance was not replaced"
    value=two write_conf
    reload
    t_check "$(metric sluice_config_last_reload_successful)" = 1 "a good config afterwards succeeds"
}

t_case "reload with a broken config keeps the old generation and counts the failure"
refused_reload "limit = 0" 1 ".*limit"
t_end

t_case "reload with a value the module's check() refuses keeps the old generation"
refused_reload "ratio = 1/0" 2 ' \[module echo\] ratio: "1/0" is not N/M with M > 0'
t_end

t_case "reload after the .so was rebuilt runs the new code"
t_check "$(curl -s "$base/echo" | json_field build)" = 1 "build 1 before"
${CC:-cc} -shared -fPIC -DECHO_BUILD=2 -I"$SL_TOP/core/include" -o "$work/echo2.so" \
    "$SL_TOP/tests/modules/echo/echo.c" -lcjson
mv "$work/echo2.so" "$mods/echo.so"
reload
t_check "$(curl -s "$base/echo" | json_field build)" = 2 "build 2 served after SIGHUP"
t_check "$(curl -s "$base/echo" | json_field value)" = two "options kept"
t_end

t_case "an exclusive module drains before its successor starts"
${CC:-cc} -shared -fPIC -DECHO_BUILD=3 -DECHO_FLAGS=SL_MODULE_EXCLUSIVE -I"$SL_TOP/core/include" \
    -o "$work/echo3.so" "$SL_TOP/tests/modules/echo/echo.c" -lcjson
mv "$work/echo3.so" "$mods/echo.so"
# The slow request keeps the old instance draining for 15 s (within the
# drain_timeout of 30 s): the window in which a request must find the route
# restarting, wide enough for a loaded machine to log the drain and send
# that request inside it.
drain=30s value=two write_conf
curl -s "$base/echo/slow?ms=15000" > "$work/slow.out" &
slow=$!
in_flight 1
mark=$(wc -l < "$work/sluiced.log")
kill -HUP "$daemon"
t_wait_until 30 "tail -n +$((mark + 1)) '$work/sluiced.log' | grep -q '\[echo\] changed; draining before its successor starts'"
during=$(curl -s -o /dev/null -w '%{http_code}' "$base/echo")
t_check "$(kill -0 $slow 2>/dev/null && echo draining)" = draining "the old instance was still draining then"
wait $slow
t_wait_until 30 "curl -s $base/echo | grep -q '\"build\":3'"
t_check "$during" = 503 "requests during the drain: 503 (the route is restarting)"
t_check "$(json_field build < "$work/slow.out")" = 2 "in-flight request answered by the old build"
order=$(tail -n +"$((mark + 1))" "$work/sluiced.log" | grep -E '\[echo\] (stopped|started)' | awk '{ print $4 }' | tr '\n' ' ')
t_check "$order" = "stopped started " "old stopped before the successor started ($order)"
t_check "$(curl -s "$base/echo" | json_field build)" = 3 "successor serves"
# Back to an ordinary build for the cases below.
${CC:-cc} -shared -fPIC -DECHO_BUILD=2 -I"$SL_TOP/core/include" -o "$work/echo2.so" \
    "$SL_TOP/tests/modules/echo/echo.c" -lcjson
mv "$work/echo2.so" "$mods/echo.so"
reload
t_end

t_case "a module removed and added back; its own listener opens and closes"
second="[module echo \"b\"]
listen = 127.0.0.1:$port2
value = bee" value=two write_conf
reload
t_check "$(curl -s "http://127.0.0.1:$port2/echo" | json_field value)" = bee "added instance serves on its own port"
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$base/echo")" = 200 "core port unaffected"
t_check "$(metric sluice_modules_loaded)" = 3 "3 instances"
t_check "$(metric 'sluice_echo_requests_total{instance_name="b"}')" = 1 "the added instance's series exposed"
value=two write_conf
reload
t_wait_until 30 "! curl -s -o /dev/null --max-time 2 http://127.0.0.1:$port2/echo"
curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port2/echo"
t_check $? -eq 7 "removed instance's port is closed (curl exit 7)"
t_check "$(metric sluice_modules_loaded)" = 2 "2 instances"
t_check "$(metric 'sluice_echo_requests_total{instance_name="b"}')" = absent "the removed instance's series no longer exposed"
t_check "$(metric sluice_echo_requests_total)" != absent "the remaining instance's series still are"
t_wait_until 30 "grep -q 'unloading module echo' '$work/sluiced.log'"
t_check "$(grep -c 'unloading module echo' "$work/sluiced.log")" -ge 1 "an unused image was unloaded"
t_end

t_case "a module that fails to start is reported; the others keep running"
second='[module echo "broken"]
fail = true' value=two write_conf
reload
t_check "$(grep -c '\[echo/broken\] failed to start: told to fail' "$work/sluiced.log")" -eq 1 "reason logged"
t_check "$(metric 'sluice_module_start_failures_total{module="echo"}')" = 1 "counted"
t_check "$(curl -s "$base/echo" | json_field value)" = two "others still serve"
value=two write_conf
reload
t_end

t_case "readiness reports who is not ready"
echo_extra="ready = false" value=two write_conf
reload
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 503 "503 when a module is not ready"
t_check "$(curl -s "$base/readyz" | grep -c 'configured not ready')" -eq 1 "body says why"
value=two write_conf
reload
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 "200 again"
t_end

t_case "a replaced instance finishes its in-flight requests"
curl -s "$base/echo/slow?ms=5000" > "$work/slow.out" &
slow=$!
in_flight 1
value=four write_conf
reload
t_check "$(curl -s "$base/echo" | json_field value)" = four "successor serves at once"
t_check "$(kill -0 $slow 2>/dev/null && echo waiting)" = waiting "while the old instance still holds the slow request"
wait $slow
t_check "$(json_field value < "$work/slow.out")" = two "in-flight request answered by the old instance"
t_end

t_case "an instance that does not drain in time is cut off with 503"
drain=1s value=five write_conf
reload
code_file=$work/cut.out
curl -s -o /dev/null -w '%{http_code}' "$base/echo/slow?ms=8000" > "$code_file" &
slow=$!
in_flight 1
drain=1s value=six write_conf
reload
wait $slow
t_check "$(cat "$code_file")" = 503 "request answered 503 by the core"
t_check "$(grep -c 'did not finish draining in time' "$work/sluiced.log")" -ge 1 "logged with what it owned"
t_end

t_case "100 SIGHUPs under wrk load: no error, no refused connection, no leak growth"
value=a write_conf
reload
cat > "$work/mix.lua" <<'EOF'
local paths = { "/healthz", "/echo" }
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", paths[i % 2 + 1])
end
EOF
rss_before=$(awk '/VmRSS/ { print $2 }' /proc/$daemon/status)
# wrk runs until the 100 reloads are done (SIGINT makes it print its
# figures); each SIGHUP waits for the reload before it, since signals
# that arrive during a reload are merged into one.
before=$(metric sluice_reloads_total)
wrk -t2 -c32 -d600s -s "$work/mix.lua" "$base" > "$work/wrk.out" 2>&1 &
wrk_pid=$!
t_wait_until 30 "[ \"\$(metric 'sluice_http_requests_total{module=\"core\",route=\"/healthz\",code=\"200\"}')\" != absent ]"
unapplied=0
for i in $(seq 1 100); do
    if [ $((i % 2)) = 0 ]; then value=a; else value=b; fi
    value=$value write_conf
    hup || unapplied=$((unapplied + 1))
done
t_check "$unapplied" = 0 "every SIGHUP was applied before the next ($unapplied not)"
t_check "$(kill -0 $wrk_pid 2>/dev/null && echo running)" = running "wrk ran through all 100 reloads"
kill -INT $wrk_pid
wait $wrk_pid
rss_after=$(awk '/VmRSS/ { print $2 }' /proc/$daemon/status)
cat "$work/wrk.out"
requests=$(awk '/requests in/ { print $1 }' "$work/wrk.out")
t_check "${requests:-0}" -gt 1000 "wrk made ${requests:-0} requests"
t_check "$(grep -c 'Non-2xx' "$work/wrk.out")" -eq 0 "zero non-2xx responses"
t_check "$(grep -c 'Socket errors' "$work/wrk.out")" -eq 0 "zero socket errors"
reloads=$(metric sluice_reloads_total)
t_check "$((${reloads%.*} - ${before%.*}))" = 100 "100 reloads counted ($before -> $reloads)"
t_check "$(metric sluice_reload_failures_total)" = 2 "no new reload failure (two cases above failed on purpose)"
growth=$((rss_after - rss_before))
echo "    RSS before ${rss_before} kB, after ${rss_after} kB"
# AddressSanitizer's quarantine holds freed memory on purpose, so RSS says
# nothing there; LeakSanitizer's report at exit (checked below) does.
if ldd "$SLUICED" | grep -q libasan; then
    echo "    sanitizer build: leak growth is judged by LeakSanitizer at exit"
else
    t_check "$growth" -lt 8192 "RSS grew by ${growth} kB (< 8 MB)"
fi
t_end

t_case "SIGTERM drains in-flight work and exits 0, sanitizer-clean"
curl -s "$base/echo/slow?ms=700" > "$work/last.out" &
slow=$!
in_flight 1
kill -TERM "$daemon"
wait "$daemon"
rc=$?
wait $slow
t_check "$rc" -eq 0 "exit status 0"
t_check "$(json_field value < "$work/last.out")" = a "in-flight request answered before exit"
t_check "$(grep -c -E 'AddressSanitizer|LeakSanitizer|runtime error' "$work/sluiced.log")" -eq 0 "no sanitizer report"
t_end

t_case "JSON log format"
printf '[core]\nlisten = 127.0.0.1:%s\nmodules_dir = mods\nlog_format = json\n[module metrics]\n' "$port" > "$work/json.conf"
"$SLUICED" -c "$work/json.conf" 2>"$work/json.log" &
jd=$!
pids+=("$jd")
t_wait_http "$base/healthz" 10
kill -TERM $jd
wait $jd
t_check "$(python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]; print("ok")' "$work/json.log")" = ok "every line is JSON"
t_check "$(grep -c '"module":"metrics","msg":"started"' "$work/json.log")" -eq 1 "fields present"
t_end

t_exit
