#!/usr/bin/env bash
# The ClickHouse connector against a real clickhouse-server, driven through
# a real sluiced and the chprobe test module: batched JSONEachRow inserts
# counted with clickhouse-client, FORMAT JSON queries, ClickHouse's own
# error messages, keep-alive, per-request timeout, the server killed and
# restarted (retries, readiness).
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

work=$(t_tmpdir)
daemon=""
cleanup() {
    [ -n "$daemon" ] && kill -9 "$daemon" 2>/dev/null
    sl_svc_stop_all
    [ -n "${SL_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

mods=$work/mods
mkdir -p "$mods"
cp "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/tests/modules/chprobe/.libs/chprobe.so" "$mods/"
port=$(t_free_port)
base=http://127.0.0.1:$port

chc() { clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" "$@"; }
metric() {
    curl -s "$base/metrics" | awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "absent" }'
}
code_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 30 "$@"; }
# jq_of FILTER < json
jq_of() { jq -r "$1"; }

t_case "clickhouse server starts"
sl_svc_start clickhouse
t_check $? -eq 0 "clickhouse on ${SL_CH_URL:-nothing} (started in ${SL_CH_START_SECONDS:-?}s)"
t_end
[ -n "${SL_CH_PORT:-}" ] || { t_exit; exit 1; }

cat > "$work/sluice.conf" <<EOF
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = debug

[clickhouse]
url = $SL_CH_URL
database = default
timeout = 2s
retries = 6
max_connections = 4
ping_interval = 250ms

[module metrics]
[module chprobe]
EOF

t_case "sluiced -t refuses a [clickhouse] url that is not http at its line"
sed "s|^url = .*|url = ftp://127.0.0.1:$SL_CH_PORT|" "$work/sluice.conf" > "$work/bad.conf"
line=$(grep -n '^url = ftp' "$work/bad.conf" | cut -d: -f1)
"$SLUICED" -t -c "$work/bad.conf" 2>"$work/t.out"
t_check $? -eq 1 "exit 1"
t_check "$(grep -c "bad.conf:$line: \[clickhouse\] url" "$work/t.out")" = 1 "error names bad.conf:$line: $(head -c 200 "$work/t.out")"
t_end

"$SLUICED" -c "$work/sluice.conf" 2>>"$work/sluiced.log" &
daemon=$!
t_wait_http "$base/healthz" 10

t_case "ready once /ping answers"
t_wait_until 5 '[ "$(code_of "$base/readyz")" = 200 ]'
t_check "$(code_of "$base/readyz")" = 200 "/readyz 200"
t_check "$(metric 'sluice_clickhouse_up{module="chprobe"}')" = 1 "sluice_clickhouse_up 1"
t_end

t_case "a batch of 10000 rows lands exactly once"
c=$(code_of --data-binary "CREATE TABLE events (id UInt64, user_id String, page_id String, event_type String, duration_s Float64) ENGINE = MergeTree ORDER BY id" "$base/ch/exec")
t_check "$c" = 200 "CREATE TABLE through the connector"
sent0=$(metric 'sluice_clickhouse_sent_bytes_total{module="chprobe"}')
curl -s -X POST "$base/ch/generate?table=events&rows=10000&batch=1000&parallel=4" > "$work/gen.json"
t_check "$(jq_of .rows < "$work/gen.json")" = 10000 "generate answered: $(cat "$work/gen.json")"
sent=$(metric 'sluice_clickhouse_sent_bytes_total{module="chprobe"}')
t_check "$(chc --query 'SELECT count(), uniqExact(id), sum(id), countIf(event_type = '"'bounce'"') FROM events' | tr '\t' ' ')" = "10000 10000 49995000 1000" "clickhouse-client counts 10000 distinct rows, ids 0..9999, 1000 bounces"
q=$(curl -s --data-binary "SELECT count() AS n, max(id) AS top FROM events" "$base/ch/query")
t_check "$(echo "$q" | jq_of '.data[0].n')" = 10000 "FORMAT JSON through the connector: n = 10000 (a number)"
t_check "$(echo "$q" | jq_of '.data[0].top')" = 9999 "max(id) = 9999"
body=$(curl -s "$base/ch/rows?rows=10000" | wc -c)
t_check "$((sent - sent0))" = "$body" "bytes sent counted: $((sent - sent0)) = the $body bytes of the rows /ch/rows serves"
t_end

t_case "connections are kept alive and bounded by max_connections (+1 for /ping)"
curl -s -X POST "$base/ch/generate?table=events&rows=20000&batch=200&parallel=8" > "$work/gen2.json"
t_check "$(jq_of .batches < "$work/gen2.json")" = 100 "100 batches sent: $(cat "$work/gen2.json")"
conns=$(ss -Htn state established "( dport = :$SL_CH_PORT )" | wc -l)
t_check "$conns" -ge 1 "connections to ClickHouse left open ($conns)"
t_check "$conns" -le 5 "at most max_connections = 4, plus the /ping's ($conns)"
t_check "$(chc --query 'SELECT count() FROM events')" = 30000 "30000 rows in all"
t_end

t_case "rows with quotes, newlines and unicode are stored verbatim"
chc --query "CREATE TABLE texts (id UInt32, s String) ENGINE = MergeTree ORDER BY id"
python3 - "$work/texts.ndjson" <<'EOF'
import json, sys
vals = ['two words', 'say "hi"', "it's", 'line\nbreak\ttab', 'café ✓', 'back\\slash', '{"json":1}', "'); DROP TABLE texts; --"]
with open(sys.argv[1], 'w') as f:
    for i, v in enumerate(vals):
        f.write(json.dumps({'id': i, 's': v}) + '\n')
EOF
c=$(code_of --data-binary @"$work/texts.ndjson" "$base/ch/insert?table=texts")
t_check "$c" = 200 "insert answered 200"
curl -s --data-binary "SELECT id, s FROM texts ORDER BY id" "$base/ch/query" > "$work/texts.json"
same=$(python3 - "$work/texts.ndjson" "$work/texts.json" <<'EOF'
import json, sys
sent = [json.loads(l) for l in open(sys.argv[1])]
got = json.load(open(sys.argv[2]))['data']
print(1 if [(r['id'], r['s']) for r in sent] == [(r['id'], r['s']) for r in got] else 0)
EOF
)
t_check "$same" = 1 "every string reads back exactly as sent"
t_check "$(chc --query 'SELECT count() FROM texts')" = 8 "8 rows"
t_end

t_case "errors carry ClickHouse's message and are not retried"
retries0=$(metric 'sluice_clickhouse_retries_total{module="chprobe"}')
curl -s -o "$work/e1" -w '%{http_code}' --data-binary "SELEC 1" "$base/ch/query" > "$work/e1.code"
t_check "$(cat "$work/e1.code")" = 400 "a syntax error answers 400"
t_check "$(jq_of .code < "$work/e1")" = 62 "code 62 (SYNTAX_ERROR)"
t_check "$(jq_of .error < "$work/e1" | grep -c '^Code: 62, .*Syntax error')" = 1 "message is ClickHouse's first line: $(jq_of .error < "$work/e1" | head -c 120)"
t_check "$(jq_of .error < "$work/e1" | wc -l)" = 1 "one line only"
curl -s -o "$work/e2" -w '%{http_code}' --data-binary "SELECT * FROM nosuchtable" "$base/ch/query" > "$work/e2.code"
t_check "$(cat "$work/e2.code")" = 400 "an unknown table answers 400"
t_check "$(jq_of .status < "$work/e2")" = 404 "ClickHouse said 404"
t_check "$(jq_of .error < "$work/e2" | grep -c "nosuchtable.*doesn't exist")" = 1 "message: $(jq_of .error < "$work/e2" | head -c 120)"
curl -s -o "$work/e3" -w '%{http_code}' --data-binary '{"id":"not a number","s":"x"}' "$base/ch/insert?table=texts" > "$work/e3.code"
t_check "$(cat "$work/e3.code")" = 400 "unparsable rows answer 400 (ClickHouse said $(jq_of .status < "$work/e3"))"
t_check "$(jq_of .attempts < "$work/e3")" = 1 "a 500 about the data is not retried"
t_check "$(metric 'sluice_clickhouse_retries_total{module="chprobe"}')" = "$retries0" "no retry counted"
curl -s -o "$work/e4" -w '%{http_code}' --data-binary "SELECT number, throwIf(number = 300000) AS t FROM system.numbers LIMIT 400000" "$base/ch/query" > "$work/e4.code"
e4rc=$?
t_check "$(cat "$work/e4.code")" = 400 "an exception after rows were streamed (HTTP 200 already sent) is still an error (got $(cat "$work/e4.code"), curl exit $e4rc)"
[ "$(cat "$work/e4.code")" = 400 ] || tail -n 20 "$work/sluiced.log"
t_check "$(jq_of .code < "$work/e4")" = 395 "code 395 from the end of the body: $(jq_of .error < "$work/e4" | head -c 120)"
# About 30 MB of FORMAT JSON: more than a query's answer may hold.
curl -s -o "$work/e5" --max-time 60 --data-binary "SELECT number FROM numbers(1000000)" "$base/ch/query"
t_check "$(jq_of .error < "$work/e5")" = "answer larger than 16777216 bytes" "an answer over 16 MiB is refused, not parsed: $(head -c 200 "$work/e5")"
t_check "$(jq_of .attempts < "$work/e5")" = 1 "and not retried"
t_check "$(code_of --data-binary '{"id":1}' "$base/ch/insert?table=texts%3B%20DROP")" = 400 "a table name that is not an identifier is refused"
t_check "$(chc --query 'SELECT count() FROM texts')" = 8 "texts unchanged"
t_end

t_case "a request slower than timeout fails once, as a timeout"
set -- $(curl -s -o "$work/slow" -w '%{http_code} %{time_total}' --max-time 60 --data-binary "SELECT sleep(3)" "$base/ch/query")
t_check "$1" = 503 "503, not the query's answer: $(cat "$work/slow")"
t_check "$(grep -c 'timed out' "$work/slow")" = 1 "as a timeout"
# Not before the timeout; a loaded machine may answer later, and the 503
# above already says it did not wait for the query.
t_check "$(python3 -c "print(1 if 1.9 < $2 else 0)")" = 1 "after timeout = 2s (${2}s)"
t_check "$(jq_of .attempts < "$work/slow")" = 1 "not retried"
t_check "$(metric 'sluice_clickhouse_requests_total{module="chprobe",outcome="timeout"}')" = 1 "one timeout counted"
# 8 queries of 1.2 s on 4 connections: the second four wait for a free
# connection, and that wait does not count against their 2 s timeout.
qp=()
for i in 1 2 3 4 5 6 7 8; do
    curl -s -o "$work/q$i" -w '%{http_code}' --data-binary "SELECT sleep(1.2) AS s" "$base/ch/query" > "$work/q$i.code" &
    qp+=($!)
done
wait "${qp[@]}"
t_check "$(cat "$work"/q?.code | tr -d '\n')" = 200200200200200200200200 "all 8 answered 200: $(cat "$work"/q?.code | tr '\n' ' ')"
t_check "$(metric 'sluice_clickhouse_requests_total{module="chprobe",outcome="timeout"}')" = 1 "no new timeout"
t_end

t_case "server killed: not ready, requests retried then failed; restarted: ready and an in-flight insert gets through"
sl_svc_kill clickhouse
t_wait_until 5 '[ "$(code_of "$base/readyz")" = 503 ]'
t_check "$(code_of "$base/readyz")" = 503 "/readyz 503 while ClickHouse is down"
t_check "$(metric 'sluice_clickhouse_up{module="chprobe"}')" = 0 "sluice_clickhouse_up 0"
retries0=$(metric 'sluice_clickhouse_retries_total{module="chprobe"}')
set -- $(curl -s -o "$work/down" -w '%{http_code} %{time_total}' --data-binary "SELECT 1" "$base/ch/query")
t_check "$1" = 503 "503 while down: $(cat "$work/down")"
t_check "$(jq_of .attempts < "$work/down")" = 7 "1 + retries = 7 attempts"
t_check "$(python3 -c "print(1 if 4 < $2 else 0)")" = 1 "with exponential backoff in between (${2}s: 0.1+0.2+...+3.2 with jitter)"
t_check "$(metric 'sluice_clickhouse_retries_total{module="chprobe"}')" = "$((retries0 + 6))" "6 retries counted"
# An insert started while the server is down succeeds once it is back.
retries0=$(metric 'sluice_clickhouse_retries_total{module="chprobe"}')
curl -s -X POST "$base/ch/generate?table=events&rows=500&batch=500&parallel=1" > "$work/late.json" &
late=$!
t_wait_until 30 '[ "$(metric "sluice_clickhouse_retries_total{module=\"chprobe\"}")" -gt "$retries0" ]'
t_check "$(metric 'sluice_clickhouse_retries_total{module="chprobe"}')" -gt "$retries0" "the insert is being retried while the server is down"
sl_svc_restart clickhouse
wait "$late"
t_check "$(jq_of .rows < "$work/late.json")" = 500 "the insert issued while down got through: $(cat "$work/late.json")"
t_wait_until 10 '[ "$(code_of "$base/readyz")" = 200 ]'
t_check "$(code_of "$base/readyz")" = 200 "/readyz back to 200 by itself"
t_check "$(chc --query 'SELECT count() FROM events')" = 30500 "30500 rows: nothing lost, nothing doubled"
t_check "$(code_of --data-binary '{"id":100,"s":"after"}' "$base/ch/insert?table=texts")" = 200 "inserts work again"
t_end

t_case "a changed [clickhouse] replaces the instance, even with a query in flight"
# The old instance must still hold the query when the reload comes, not
# answer it by its own timeout: a first reload gives it a timeout far
# longer than the query, which runs 20 s (one row a second).
reloads=$(metric sluice_reloads_total)
sed -i 's/^timeout = .*/timeout = 120s/' "$work/sluice.conf"
kill -HUP "$daemon"
t_wait_until 30 '[ "$(metric sluice_reloads_total)" != "$reloads" ] && [ "$(code_of "$base/readyz")" = 200 ]'
t_check "$(code_of "$base/readyz")" = 200 "reloaded with timeout = 120s, ready"
reloads=$(metric sluice_reloads_total)
curl -s -o "$work/inflight.out" -w '%{http_code}' --max-time 60 --data-binary "SELECT sleepEachRow(1) FROM numbers(20) SETTINGS max_block_size = 1" "$base/ch/query" > "$work/inflight.code" &
inflight=$!
running() { chc --query "SELECT count() FROM system.processes WHERE query LIKE '%sleepEachRow%' AND query NOT LIKE '%system.processes%'"; }
t_wait_until 30 '[ "$(running)" = 1 ]'
t_check "$(running)" = 1 "the query is running in ClickHouse"
sed -i 's/^ping_interval = .*/ping_interval = 200ms/' "$work/sluice.conf"
kill -HUP "$daemon"
t_wait_until 30 '[ "$(metric sluice_reloads_total)" != "$reloads" ]'
t_check "$(metric sluice_reloads_total)" != "$reloads" "the reload ran"
wait "$inflight"
t_check "$(cat "$work/inflight.code")" = 503 "the query of the old instance is answered 503: $(cat "$work/inflight.out")"
t_check "$(grep -c 'stopped before answering' "$work/inflight.out")" = 1 "by the replacement, not by a timeout"
t_wait_until 30 '[ "$(code_of "$base/readyz")" = 200 ]'
t_check "$(code_of "$base/readyz")" = 200 "the new instance is ready"
t_check "$(curl -s --data-binary "SELECT count() AS n FROM texts" "$base/ch/query" | jq_of '.data[0].n')" = 9 "and answers queries"
t_end

t_case "metrics pass promtool and the daemon stops cleanly"
curl -s "$base/metrics" > "$work/metrics.txt"
promtool check metrics < "$work/metrics.txt" > "$work/promtool.out" 2>&1
t_check $? -eq 0 "promtool check metrics: $(head -c 300 "$work/promtool.out")"
t_check "$(grep -c '^sluice_clickhouse_request_duration_seconds_count{module="chprobe"}' "$work/metrics.txt")" = 1 "latency histogram exposed"
kill -TERM "$daemon"
wait "$daemon"
t_check $? -eq 0 "sluiced exited 0 on SIGTERM"
daemon=""
t_check "$(grep -c '^[^ ]* error \|AddressSanitizer\|runtime error' "$work/sluiced.log")" = 0 "no errors or sanitizer reports in the log"
t_end

t_exit
