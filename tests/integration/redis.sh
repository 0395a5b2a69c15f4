#!/usr/bin/env bash
# The Redis connector against a real redis-server, driven through a real
# sluiced and the redisprobe test module: values stored byte for byte,
# error replies, pipelined load, the server killed and restarted, the
# server frozen (command timeout), readiness following all of it.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

work=$(t_tmpdir)
daemon=""
frozen=""
cleanup() {
    [ -n "$frozen" ] && kill -CONT "$frozen" 2>/dev/null
    [ -n "$daemon" ] && kill -9 "$daemon" 2>/dev/null
    sl_svc_stop_all
    [ -n "${SL_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

mods=$work/mods
mkdir -p "$mods"
cp "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/tests/modules/redisprobe/.libs/redisprobe.so" "$mods/"
port=$(t_free_port)
base=http://127.0.0.1:$port
db=3

# rcli ARGS...: redis-cli on the test database.
rcli() { redis-cli -h 127.0.0.1 -p "$SL_REDIS_PORT" -n "$db" "$@"; }

# metric NAME_WITH_LABELS: its value, or "absent".
metric() {
    curl -s "$base/metrics" | awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "absent" }'
}
code_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@"; }
# json_get FIELD < json: a field of a JSON object ("null" for null).
json_get() { python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("null" if v is None else v)' "$1"; }

t_case "redis server starts"
sl_svc_start redis
t_check $? -eq 0 "redis on ${SL_REDIS_URL:-nothing}"
t_end
[ -n "${SL_REDIS_PORT:-}" ] || { t_exit; exit 1; }

cat > "$work/sluice.conf" <<EOF
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = debug

[redis]
url = $SL_REDIS_URL/$db
connect_timeout = 1s
command_timeout = 2s
reconnect_max = 500ms

[module metrics]
[module redisprobe]
EOF

# ----------------------------------------------------------------- -t
t_case "sluiced -t refuses a malformed [redis] url at its line"
sed "s|^url = .*|url = http://127.0.0.1:$SL_REDIS_PORT|" "$work/sluice.conf" > "$work/bad.conf"
line=$(grep -n '^url = http' "$work/bad.conf" | cut -d: -f1)
"$SLUICED" -t -c "$work/bad.conf" 2>"$work/t.out"
t_check $? -eq 1 "exit 1"
t_check "$(grep -c "bad.conf:$line: \[redis\] url" "$work/t.out")" = 1 "error names bad.conf:$line: $(head -c 200 "$work/t.out")"
"$SLUICED" -t -c "$work/sluice.conf" 2>"$work/t.out"
t_check $? -eq 0 "the good config passes -t"
t_end

"$SLUICED" -c "$work/sluice.conf" 2>>"$work/sluiced.log" &
daemon=$!
t_wait_http "$base/healthz" 10

t_case "ready once connected"
t_wait_until 10 '[ "$(code_of "$base/readyz")" = 200 ]'
t_check "$(code_of "$base/readyz")" = 200 "/readyz 200"
t_check "$(metric 'sluice_redis_up{module="redisprobe"}')" = 1 "sluice_redis_up 1"
t_end

# ------------------------------------------------------------ round trips
t_case "values with spaces, quotes, newlines and protocol bytes are stored verbatim"
printf 'two words' > "$work/v1"
printf 'say "hi" and '"'"'bye'"'"'' > "$work/v2"
printf 'line one\nline two\r\n\ttabbed\n' > "$work/v3"
printf '*3\r\n$3\r\nDEL\r\n$6\r\nvictim\r\n' > "$work/v4" # RESP trying to smuggle a DEL
printf 'caf\xc3\xa9 \\ backslash %%s %%n' > "$work/v5"
head -c 200000 /dev/urandom | base64 -w 0 > "$work/v6"
rcli SET victim alive >/dev/null
for i in 1 2 3 4 5 6; do
    c=$(curl -s -o "$work/set$i.out" -w '%{http_code}' --data-binary @"$work/v$i" "$base/redis/set?key=k$i")
    t_check "$c" = 200 "SET k$i answered 200: $(head -c 100 "$work/set$i.out")"
    # redis-cli --raw appends one newline to what it prints.
    rcli --raw GET "k$i" > "$work/got$i"
    printf '\n' >> "$work/v$i"
    cmp -s "$work/v$i" "$work/got$i"
    t_check $? -eq 0 "k$i holds exactly the bytes sent ($(stat -c %s "$work/v$i") with the newline)"
    truncate -s -1 "$work/v$i"
    via=$(curl -s "$base/redis/get?key=k$i" | python3 -c 'import json,sys; sys.stdout.buffer.write(json.load(sys.stdin)["value"].encode())' | cmp -s - "$work/v$i"; echo $?)
    t_check "$via" = 0 "GET k$i through the connector gives the same bytes back"
done
t_check "$(rcli GET victim)" = alive "the smuggled DEL did not run"
t_check "$(rcli DBSIZE)" = 7 "db $db holds exactly 7 keys"
t_check "$(redis-cli -h 127.0.0.1 -p "$SL_REDIS_PORT" -n 0 DBSIZE)" = 0 "db 0 untouched: the url's /$db was selected"
t_check "$(curl -s "$base/redis/get?key=missing" | json_get value)" = null "a missing key reads as null"
t_end

t_case "a value written by redis-cli reads back through the connector"
printf 'from "cli"\nwith newline' | rcli -x SET fromcli >/dev/null
t_check "$(curl -s "$base/redis/get?key=fromcli" | json_get value)" = "$(printf 'from "cli"\nwith newline')" "same text"
t_end

t_case "an error reply is a 400 carrying Redis's message, counted as error"
before=$(metric 'sluice_redis_commands_total{module="redisprobe",outcome="error"}')
out=$(curl -s -w ' %{http_code}' -d '{"args":["INCR","k1"]}' "$base/redis/cmd")
t_check "${out##* }" = 400 "status 400"
t_check "$(echo "${out% *}" | json_get error)" = "ERR value is not an integer or out of range" "message: ${out% *}"
after=$(metric 'sluice_redis_commands_total{module="redisprobe",outcome="error"}')
t_check "$after" = "$((before + 1))" "error counter $before -> $after"
out=$(curl -s -w ' %{http_code}' -d '{"args":["SUBSCRIBE","ch"]}' "$base/redis/cmd")
t_check "${out##* }" = 503 "SUBSCRIBE refused by the connector (${out})"
t_end

t_case "500 concurrent INCRs all land exactly once"
rcli DEL counter >/dev/null
seq 500 | xargs -P 25 -I{} curl -s -o /dev/null -d '{"args":["INCR","counter"]}' "$base/redis/cmd"
t_check "$(rcli GET counter)" = 500 "counter = 500"
t_check "$(curl -s -d '{"args":["INCRBY","counter","5"]}' "$base/redis/cmd" | json_get reply)" = 505 "INCRBY answers the integer 505"
lr=$(curl -s -d '{"args":["LRANGE","nolist","0","-1"]}' "$base/redis/cmd")
t_check "$lr" = '{"reply":[]}' "an empty array reply: $lr"
t_end

# ---------------------------------------------------------- kill, restart
t_case "server killed: errors at once, not ready, then back by itself"
sl_svc_kill redis
t_wait_until 10 '[ "$(code_of "$base/readyz")" = 503 ]'
t_check "$(code_of "$base/readyz")" = 503 "/readyz 503 while redis is down"
reason=$(curl -s "$base/readyz" | python3 -c 'import json,sys; print([m.get("reason","") for m in json.load(sys.stdin)["modules"] if m["module"]=="redisprobe"][0])')
t_check "$(echo "$reason" | grep -c "redis 127.0.0.1:$SL_REDIS_PORT unavailable")" = 1 "reason: $reason"
t_check "$(metric 'sluice_redis_up{module="redisprobe"}')" = 0 "sluice_redis_up 0"
set -- $(curl -s -o "$work/down.out" -w '%{http_code} %{time_total}' "$base/redis/get?key=k1")
t_check "$1" = 503 "GET answers 503 while down: $(cat "$work/down.out")"
t_check "$(grep -c 'redis not connected' "$work/down.out")" = 1 "the error says why"
# Queued behind the dead connection, it would have waited command_timeout
# (2 s) and failed saying so; how fast it came is the machine's load.
t_check "$(grep -c 'command_timeout' "$work/down.out")" = 0 "and fails at once, not after command_timeout = 2s (${2}s)"
unav=$(metric 'sluice_redis_commands_total{module="redisprobe",outcome="unavailable"}')
t_check "$unav" -ge 1 "counted as unavailable ($unav)"
# A few reconnect attempts against the closed port (reconnect_max 500ms).
t_wait_until 30 '[ "$(metric "sluice_redis_reconnects_total{module=\"redisprobe\"}")" -ge 2 ]'
sl_svc_restart redis
t_wait_until 30 '[ "$(code_of "$base/readyz")" = 200 ]'
t_check "$(code_of "$base/readyz")" = 200 "/readyz back to 200 without any action"
printf 'after restart' > "$work/v7"
t_check "$(code_of --data-binary @"$work/v7" "$base/redis/set?key=k7")" = 200 "SET works again"
t_check "$(rcli GET k7)" = "after restart" "and the value is in redis"
rec=$(metric 'sluice_redis_reconnects_total{module="redisprobe"}')
t_check "$rec" -ge 2 "reconnect attempts counted ($rec)"
t_check "$(metric 'sluice_redis_up{module="redisprobe"}')" = 1 "sluice_redis_up 1 again"
t_end

t_case "server frozen: the command times out, the connection is reset and recovers"
frozen=$(rcli INFO server | tr -d '\r' | awk -F: '$1 == "process_id" { print $2 }')
kill -STOP "$frozen"
set -- $(curl -s -o "$work/frozen.out" -w '%{http_code} %{time_total}' --max-time 30 "$base/redis/get?key=k7")
t_check "$1" = 503 "503 after the timeout"
t_check "$(grep -c 'command_timeout' "$work/frozen.out")" = 1 "the error names command_timeout: $(cat "$work/frozen.out")"
# Not before command_timeout; the upper bound only tells a timeout from a
# request that hangs until curl gives up (30 s).
t_check "$(python3 -c "print(1 if 1.9 < $2 < 20 else 0)")" = 1 "after command_timeout = 2s (${2}s)"
t_check "$(metric 'sluice_redis_commands_total{module="redisprobe",outcome="timeout"}')" = 1 "one timeout counted"
t_check "$(code_of "$base/readyz")" = 503 "not ready while frozen (a TCP connect alone is not enough)"
kill -CONT "$frozen"
frozen=""
t_wait_until 30 '[ "$(code_of "$base/readyz")" = 200 ]'
t_check "$(code_of "$base/readyz")" = 200 "ready again after thawing"
t_check "$(curl -s "$base/redis/get?key=k7" | json_get value)" = "after restart" "round trip works after thawing"
t_end

t_case "a changed [redis] replaces the instance, even with a command in flight"
probe() { curl -s --max-time 10 "$base/redis/status" | json_get "$1"; }
# The old instance must hold the command until the reload, not answer it
# by its own timeout: a first reload gives it a command_timeout far longer
# than the test can take.
reloads=$(metric sluice_reloads_total)
sed -i 's/^command_timeout = .*/command_timeout = 120s/' "$work/sluice.conf"
kill -HUP "$daemon"
t_wait_until 30 '[ "$(metric sluice_reloads_total)" != "$reloads" ] && [ "$(code_of "$base/readyz")" = 200 ]'
t_check "$(code_of "$base/readyz")" = 200 "reloaded with command_timeout = 120s, ready"
reloads=$(metric sluice_reloads_total)
old=$(probe instance)
sent=$(probe sent)
frozen=$(rcli INFO server | tr -d '\r' | awk -F: '$1 == "process_id" { print $2 }')
kill -STOP "$frozen"
curl -s -o "$work/inflight.out" -w '%{http_code}' --max-time 30 "$base/redis/get?key=k7" > "$work/inflight.code" &
inflight=$!
t_wait_until 20 '[ "$(probe sent)" != "$sent" ]'
t_check "$(probe sent)" != "$sent" "the GET was handed to the frozen connection (commands sent: $sent -> $(probe sent))"
sed -i 's/^reconnect_max = .*/reconnect_max = 400ms/' "$work/sluice.conf"
kill -HUP "$daemon"
t_wait_until 30 '[ "$(metric sluice_reloads_total)" != "$reloads" ]'
t_check "$(metric sluice_reloads_total)" != "$reloads" "the reload ran (sluice_reloads_total $reloads -> $(metric sluice_reloads_total))"
wait "$inflight"
t_check "$(cat "$work/inflight.code")" = 503 "the request waiting on the old connection is answered 503: $(cat "$work/inflight.out")"
t_check "$(grep -c command_timeout "$work/inflight.out")" = 0 "by the replacement, not by a timeout"
kill -CONT "$frozen"
frozen=""
t_wait_until 30 '[ "$(code_of "$base/readyz")" = 200 ]'
t_check "$(code_of "$base/readyz")" = 200 "the new instance is ready"
t_check "$(probe instance)" != "$old" "/redis is served by a new instance ($old -> $(probe instance))"
t_check "$(curl -s "$base/redis/get?key=k7" | json_get value)" = "after restart" "and serves round trips"
t_check "$(kill -0 "$daemon" 2>/dev/null && echo alive)" = alive "sluiced still running"
t_end

t_case "metrics pass promtool and the daemon stops cleanly"
curl -s "$base/metrics" > "$work/metrics.txt"
promtool check metrics < "$work/metrics.txt" > "$work/promtool.out" 2>&1
t_check $? -eq 0 "promtool check metrics: $(head -c 300 "$work/promtool.out")"
t_check "$(grep -c '^sluice_redis_command_duration_seconds_count{module="redisprobe"}' "$work/metrics.txt")" = 1 "latency histogram exposed"
kill -TERM "$daemon"
t_wait_for 10 bash -c "! kill -0 $daemon 2>/dev/null"
wait "$daemon"
t_check $? -eq 0 "sluiced exited 0 on SIGTERM"
daemon=""
t_check "$(grep -c '^[^ ]* error \|AddressSanitizer\|runtime error' "$work/sluiced.log")" = 0 "no errors or sanitizer reports in the log"
t_end

t_exit
