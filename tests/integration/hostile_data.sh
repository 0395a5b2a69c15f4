#!/usr/bin/env bash
# The data side of sluice against a hostile caller (issue #14), on a real
# sluiced over real PostgreSQL, Redis and ClickHouse and the embedded
# broker: every request below is refused with the right status and a JSON
# error, writes nothing (checked with psql and clickhouse-client) and
# leaves the daemon serving and the next valid request working; the
# expensive aggregator query is stopped by ClickHouse and the query queue
# is bounded while ingestion goes on; passwords in every connector's url
# never show in /readyz, /status.json, /metrics, `sluiced -t` or the log.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

t_scratch
trap '_t_scratch_end; sl_svc_stop_all' EXIT
mods=$work/mods
mkdir -p "$mods"
cp "$SL_BUILD"/_modules/*.so "$mods/"
port=$(t_free_port)
base=http://127.0.0.1:$port

# req METHOD PATH [CURL ARGS...]: "CODE BODY" (bodies sent as JSON)
req() {
    local m=$1 path=$2 out
    shift 2
    out=$(curl -s --max-time 60 -X "$m" -H 'Content-Type: application/json' -w '\n%{http_code}' "$@" "$base$path")
    echo "${out##*$'\n'} ${out%$'\n'*}"
}
# is_json_error "CODE BODY": True when BODY is {"error": "...", "request_id": "..."}
is_json_error() {
    echo "${1#* }" | python3 -c 'import json,sys
try: j = json.load(sys.stdin)
except Exception: print(False); sys.exit()
print(isinstance(j, dict) and isinstance(j.get("error"), str) and j["error"] != ""
      and isinstance(j.get("request_id"), str) and j["request_id"] != "")'
}
# refused "CODE BODY" WANT WHAT: the status and a JSON error
refused() {
    t_check "${1%% *}" = "$2" "$3: $2 (${1:0:160})"
    t_check "$(is_json_error "$1")" = True "$3: JSON error"
}
psqlc() { psql -X -At "$SL_PG_DSN" -c "$1"; }
chq() { clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" --query "$1" 2>>"$work/chc.err"; }
metric() {
    curl -s "$base/metrics" | awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "absent" }'
}
# The relay of this daemon drains what earlier requests wrote (each user
# and segment created is an event): a snapshot is taken once it did, so
# that only what the requests between two snapshots wrote can differ.
snapshot() {
    t_wait_until 30 '[ "$(psqlc "SELECT count(*) FROM outbox WHERE NOT parked")" = 0 ]'
    psqlc "SELECT (SELECT count(*) FROM users) || ',' || (SELECT count(*) FROM segments) || ',' ||
                  (SELECT count(*) FROM user_segments) || ',' || (SELECT count(*) FROM segment_history) || ',' ||
                  (SELECT count(*) FROM outbox) || ',' || (SELECT last_value FROM users_id_seq)"
}
serving() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$base/healthz")" = 200 ]; }

t_case "postgres, redis and clickhouse start"
sl_svc_start postgres && sl_svc_start redis && sl_svc_start clickhouse
t_check $? -eq 0 "servers up"
t_end
[ -n "${SL_PG_PORT:-}" ] && [ -n "${SL_REDIS_PORT:-}" ] && [ -n "${SL_CH_PORT:-}" ] || { t_exit; exit 1; }

# Redis requires a password, read by sluiced from a file.
redis-cli -h 127.0.0.1 -p "$SL_REDIS_PORT" CONFIG SET requirepass redis-pw-7f3a >/dev/null
echo redis-pw-7f3a > "$work/redis_password"

cat > "$work/sluice.conf" <<EOF
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = info
drain_timeout = 10s

[kafka]
brokers = embedded
embedded_topics = page_views:4, segment_events:2

[postgres]
dsn = $SL_PG_DSN

[redis]
url = $SL_REDIS_URL
password_file = $work/redis_password

[clickhouse]
url = $SL_CH_URL

[module metrics]

[module generator]
topic = page_views
eps = 200

[module aggregator]
topics = page_views, segment_events
batch_interval = 200ms
query_timeout = 1s
query_max_rows = 5
max_queries = 2

[module segments]
max_body = 4096
history_retention = 1h
history_sweep_interval = 1s
history_delete_batch = 2

[module outbox]
topic = segment_events
EOF

t_case "the config passes sluiced -t and the daemon gets ready (Redis with a password from a file)"
"$SLUICED" -t -c "$work/sluice.conf" > "$work/t.out" 2>&1
t_check $? -eq 0 "sluiced -t: $(head -c 300 "$work/t.out")"
"$SLUICED" -c "$work/sluice.conf" 2>>"$work/sluiced.log" &
pids+=("$!")
t_wait_http "$base/healthz" 20
t_wait_until 60 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/readyz")" = 200 ]'
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 "ready: $(curl -s "$base/readyz" | head -c 300)"
t_end

# ------------------------------------------------------------- segments
t_case "segments: an id nobody can address is refused and cannot break POST /user"
r=$(req POST /segment -d '{"slug":"HOSTILE_A"}')
t_check "${r%% *}" = 201 "segment created: $r"
before=$(snapshot)
r=$(req POST /segment/user -d '{"user_id":9007199254740991,"add_segments":["HOSTILE_A"]}')
refused "$r" 400 "user_id 2^53-1 for an unknown user"
r=$(req POST /segment/user -d '{"user_id":9007199254740992,"add_segments":["HOSTILE_A"]}')
refused "$r" 400 "user_id 2^53"
r=$(req POST /segment/user -d '{"user_id":-1,"add_segments":["HOSTILE_A"]}')
refused "$r" 400 "a negative user_id"
t_check "$(snapshot)" = "$before" "nothing written, users_id_seq not moved ($before)"
for i in 1 2 3; do
    r=$(req POST /user)
    t_check "${r%% *}" = 201 "POST /user still works: $r"
done
id=$(echo "${r#* }" | python3 -c 'import json,sys; print(json.load(sys.stdin)["user_id"])')
t_check "$id" -lt 1000 "and hands out small ids (got $id)"
# The largest id a caller may create on demand leaves the sequence room.
r=$(req POST /segment/user -d '{"user_id":4503599627370495,"add_segments":["HOSTILE_A"]}')
t_check "${r%% *}" = 200 "user_id max_user_id is created: $r"
r=$(req POST /user)
id=$(echo "${r#* }" | python3 -c 'import json,sys; print(json.load(sys.stdin)["user_id"])')
t_check "${r%% *}" = 201 "POST /user after it: $r"
t_check "$(python3 -c "print(0 < $id <= 9007199254740991)")" = True "an id a client can address ($id)"
r=$(req GET "/segment/user/$id")
t_check "${r%% *}" = 200 "and it can be read back: ${r:0:120}"
t_check "$(psqlc "SELECT max_value FROM pg_sequences WHERE sequencename = 'users_id_seq'")" = 9007199254740991 \
    "users_id_seq stops at 2^53-1"
t_end

t_case "segments: oversized slugs, lists, percentages, ttls, periods, report names and bodies are refused, nothing written"
before=$(snapshot)
long=$(printf 'A%.0s' $(seq 65))
refused "$(req POST /segment -d "{\"slug\":\"$long\"}")" 400 "a 65-character slug"
refused "$(req POST /segment -d '{"slug":"HOSTILE_P","user_percent":100.01}')" 400 "user_percent over 100"
refused "$(req POST /segment -d '{"slug":"HOSTILE_P","user_percent":1e308}')" 400 "user_percent 1e308"
refused "$(req POST /segment -d '{"slug":"HOSTILE_P","user_percent":0.001}')" 400 "user_percent with three decimals"
many=$(python3 -c 'import json; print(json.dumps({"user_id": 1, "add_segments": ["S%d" % i for i in range(101)]}))')
refused "$(req POST /segment/user -d "$many")" 400 "101 segments in one request"
refused "$(req POST /segment/user -d '{"user_id":1,"add_segments":["HOSTILE_A"],"ttl":315360001}')" 400 "a ttl over ten years"
refused "$(req POST /segment/user -d '{"user_id":1,"add_segments":["HOSTILE_A"],"ttl":1e300}')" 400 "a ttl of 1e300"
refused "$(req GET '/segment/history/1?year=10000&month=1')" 400 "history year 10000"
refused "$(req GET '/segment/history/1?year=1999&month=1')" 400 "history year 1999"
refused "$(req GET '/segment/history/1?year=2026&month=13')" 400 "history month 13"
refused "$(req GET "/segment/reports/$(printf 'x%.0s' $(seq 300)).csv")" 404 "a 300-character report name"
refused "$(req GET '/segment/reports/1-2026-01-00000000000000000000000000000000.csv')" 404 "a forged report name"
big=$(python3 -c 'print("{\"slug\": \"" + "A" * 5000 + "\"}")')
refused "$(req POST /segment -d "$big")" 413 "a body over max_body"
t_check "$(snapshot)" = "$before" "nothing written ($before)"
t_check "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base/segment" -H 'Content-Type: application/json' -d '{"slug":"HOSTILE_B","user_percent":12.5}')" = 201 \
    "a valid request right after: 201"
t_end

t_case "segments: a database error reaches the log, not the client"
# A statement PostgreSQL refuses: the segments table made unwritable for a moment.
psqlc "ALTER TABLE segments ADD CONSTRAINT hostile_no CHECK (slug <> 'HOSTILE_X')" >/dev/null
r=$(req POST /segment -d '{"slug":"HOSTILE_X"}')
psqlc "ALTER TABLE segments DROP CONSTRAINT hostile_no" >/dev/null
refused "$r" 500 "a refused statement"
t_check "$(echo "$r" | grep -c 'hostile_no\|violates\|constraint')" = 0 "the answer does not quote PostgreSQL: $r"
rid=$(echo "${r#* }" | python3 -c 'import json,sys; print(json.load(sys.stdin)["request_id"])')
t_check "$(grep 'hostile_no' "$work/sluiced.log" | grep -c "request $rid")" -ge 1 "the log has PostgreSQL's reason, under the answer's request id $rid"
t_end

t_case "segments: segment_history rows older than history_retention are removed in bounded batches"
psqlc "INSERT INTO segment_history (user_id, slug, operation, executed_at)
       SELECT 777000 + g, 'OLD', 'I', now() - interval '2 hours' FROM generate_series(1, 5) g" >/dev/null
recent=$(psqlc "SELECT count(*) FROM segment_history WHERE executed_at > now() - interval '1 hour'")
t_wait_until 30 '[ "$(psqlc "SELECT count(*) FROM segment_history WHERE slug = '"'OLD'"'")" = 0 ]'
t_check "$(psqlc "SELECT count(*) FROM segment_history WHERE slug = 'OLD'")" = 0 "the five old rows are gone"
t_check "$(psqlc "SELECT count(*) FROM segment_history WHERE executed_at > now() - interval '1 hour'")" -ge "$recent" \
    "the recent rows stay ($recent)"
t_check "$(metric sluice_segments_history_removed_total)" = 5 "sluice_segments_history_removed_total 5"
t_end

# ------------------------------------------------------------ aggregator
t_case "aggregator: spans and limits are bounded with clear 400s"
from=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)
to=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
refused "$(req GET '/aggregator/query/aggregates?hours=8760&limit=1000000')" 400 "hours=8760"
refused "$(req GET '/aggregator/query/aggregates?hours=1&limit=10001')" 400 "limit=10001"
refused "$(req GET '/aggregator/query/segments?hours=745')" 400 "segments hours=745"
refused "$(req GET '/aggregator/analytics?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z')" 400 "analytics over 2000-2100"
refused "$(req GET "/aggregator/events?from=$from&to=$to&limit=1000000")" 400 "events limit=1000000"
t_check "$(req GET '/aggregator/analytics?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z' | grep -c 744)" = 1 "the error names the bound"
t_end

t_case "aggregator: ClickHouse's row limit stops an answer that is too large (no retry, no raw text)"
t_wait_until 30 '[ "$(chq "SELECT count() FROM page_views_per_minute")" -gt 5 ]'
r=$(req GET "/aggregator/query/aggregates?hours=1&limit=10000")
refused "$r" 400 "more than query_max_rows rows"
t_check "$(echo "$r" | grep -c 'DB::Exception\|Code:')" = 0 "ClickHouse's own text stays out of the answer"
t_check "$(grep -c 'Code: 158\|Code: 396\|Limit for result exceeded' "$work/sluiced.log")" -ge 1 "the log has ClickHouse's reason"
r=$(req GET "/aggregator/query/aggregates?hours=1&limit=3")
t_check "${r%% *}" = 200 "a query within the limits answers 200"
t_check "$(grep -c 'query for /aggregator/query/aggregates failed (code [0-9]*, 1 attempt(s)' "$work/sluiced.log")" -ge 1 "sent once, not retried"
t_end

t_case "aggregator: the expensive query is stopped by query_timeout and the query queue is bounded; ingestion goes on"
# Four million rows in the last month: FINAL and uniqExact over them take
# longer than the one-second query_timeout.
chq "INSERT INTO page_views SELECT concat('h', toString(number)), 'view', concat('page-', toString(number % 1000)),
     concat('u', toString(number)), 1, now() - 3600 - (number % 2000000), 0, toStartOfMinute(now() - 3600 - (number % 2000000)),
     'hostile', 0, number FROM numbers(4000000)"
wfrom=$(date -u -d '-30 days' +%Y-%m-%dT%H:%M:%SZ)
written0=$(curl -s "$base/aggregator/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sink"]["rows_written"])')
flood=()
for i in $(seq 8); do
    curl -s --max-time 60 -D "$work/h.$i" -o "$work/b.$i" -w '%{http_code}' "$base/aggregator/analytics?from=$wfrom&to=$to" > "$work/c.$i" &
    flood+=("$!")
done
wait "${flood[@]}"
for i in $(seq 8); do cat "$work/c.$i"; echo; done > "$work/codes"
codes=$(sort "$work/codes" | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ')
t_check "$(grep -vc '^504$\|^503$' "$work/codes")" = 0 "every expensive query was stopped (504) or turned away (503): $codes"
t_check "$(grep -c '^504$' "$work/codes")" -ge 1 "stopped by ClickHouse's max_execution_time: $codes"
t_check "$(grep -c '^503$' "$work/codes")" -ge 1 "more than max_queries at once: 503: $codes"
for i in $(seq 8); do
    t_check "$(is_json_error "$(cat "$work/c.$i") $(cat "$work/b.$i")")" = True "answer $i is a JSON error"
    if [ "$(cat "$work/c.$i")" = 503 ]; then
        t_check "$(grep -ci '^Retry-After: 1' "$work/h.$i")" = 1 "answer $i: Retry-After"
    fi
done
# The connector's retry counter also counts the ingestion's inserts: the
# attempts of each stopped query are read from the log instead.
t_check "$(grep -c 'query for /aggregator/analytics failed (code 159, 1 attempt(s)' "$work/sluiced.log")" -eq "$(grep -c '^504$' "$work/codes")" \
    "every query stopped by the time limit was sent once"
t_check "$(grep 'query for /aggregator/analytics failed' "$work/sluiced.log" | grep -vc ', 1 attempt(s)')" = 0 "no query attempted twice"
t_wait_until 30 '[ "$(curl -s "$base/aggregator/status" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"sink\"][\"rows_written\"])")" -gt "$written0" ]'
written1=$(curl -s "$base/aggregator/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sink"]["rows_written"])')
t_check "$written1" -gt "$written0" "ingestion went on: rows written $written0 -> $written1"
serving
t_check $? -eq 0 "the daemon still serves"
chq "ALTER TABLE page_views DELETE WHERE kafka_topic = 'hostile'"
t_end

# ------------------------------------------------------------- generator
t_case "generator: pending bursts are bounded"
# A generator of its own whose broker never answers: with one event in
# flight at most, the first one's missing ack holds the rest pending.
port3=$(t_free_port)
gbase=http://127.0.0.1:$port3
cat > "$work/gen.conf" <<EOF
[core]
listen = 127.0.0.1:$port3
modules_dir = mods
drain_timeout = 2s
[kafka]
brokers = 127.0.0.1:1
[module generator]
topic = page_views
strategy = async
inflight = 1
eps = 1
burst_max = 1000
burst_pending_max = 2000
EOF
"$SLUICED" -c "$work/gen.conf" 2>>"$work/gen.log" &
gen=$!
pids+=("$gen")
t_wait_http "$gbase/healthz" 20
greq() {
    local out
    out=$(curl -s --max-time 20 -X POST -w '\n%{http_code}' "$gbase$1")
    echo "${out##*$'\n'} ${out%$'\n'*}"
}
refused "$(greq '/generator/generate/burst?count=1001')" 400 "a burst over burst_max"
t_check "$(greq '/generator/generate/burst?count=1000' | cut -c1-3)" = 200 "a burst of 1000"
t_check "$(greq '/generator/generate/burst?count=1000' | cut -c1-3)" = 200 "another"
pending=$(curl -s "$gbase/generator/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rate"]["burst_pending"])')
refused "$(greq '/generator/generate/burst?count=1000')" 429 "a third over burst_pending_max 2000 ($pending pending)"
t_check "$(curl -s -D - -o /dev/null -X POST "$gbase/generator/generate/burst?count=1000" | grep -ci '^Retry-After:')" = 1 "with Retry-After"
# The first events of a burst take the one in-flight slot or are dropped
# at it; the rest wait, more than a third burst of 1000 leaves room for.
t_check "$pending" -gt 1000 "the two bursts are pending, but for the few sent or dropped ($pending)"
t_check "$(curl -s "$gbase/generator/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rate"]["burst_pending"])')" = "$pending" \
    "the refused bursts added nothing: $pending pending, at most burst_pending_max"
kill "$gen"
wait "$gen" 2>/dev/null
t_end

# ---------------------------------------------------------------- outbox
t_case "outbox: retry targets one row or one aggregate, bad targets refused"
before=$(psqlc "SELECT count(*) || ',' || count(*) FILTER (WHERE parked) FROM outbox")
refused "$(req POST '/outbox/retry?id=abc')" 400 "id=abc"
refused "$(req POST '/outbox/retry?aggregate_id=')" 400 "an empty aggregate_id"
refused "$(req POST "/outbox/retry?aggregate_id=$(printf 'a%.0s' $(seq 300))")" 400 "a 300-byte aggregate_id"
refused "$(req POST '/outbox/retry?id=1&aggregate_id=1')" 400 "both id and aggregate_id"
refused "$(req POST '/outbox/retry?id=987654321')" 404 "a row that is not parked"
refused "$(req POST '/outbox/retry?aggregate_id=no-such-aggregate')" 404 "an aggregate with nothing parked"
# Two parked rows of two aggregates: retrying one aggregate releases one.
psqlc "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload, parked, attempts)
       VALUES ('hostile', 'agg-1', 'x', '{}', true, 5), ('hostile', 'agg-2', 'x', '{}', true, 5)" >/dev/null
r=$(req POST '/outbox/retry?aggregate_id=agg-1')
t_check "$r" = '200 {"released":1}' "aggregate agg-1 alone released: $r"
t_check "$(psqlc "SELECT string_agg(aggregate_id, ',' ORDER BY aggregate_id) FROM outbox WHERE parked AND aggregate_type = 'hostile'")" = agg-2 \
    "agg-2 stays parked"
id=$(psqlc "SELECT id FROM outbox WHERE aggregate_id = 'agg-2'")
r=$(req POST "/outbox/retry?id=$id")
t_check "$r" = '200 {"released":1}' "row $id alone released: $r"
t_check "$(psqlc "SELECT count(*) FILTER (WHERE parked) FROM outbox")" = "${before#*,}" "no other row touched"
t_end

# --------------------------------------------------------------- secrets
t_case "passwords in every connector's url never show (readyz, status.json, metrics, -t, the log)"
port2=$(t_free_port)
cat > "$work/leak.conf" <<EOF
[core]
listen = 127.0.0.1:$port2
modules_dir = mods
log_level = debug

[kafka]
brokers = embedded
rdkafka.sasl.username = u
rdkafka.sasl.password = KAFKA-PW-1a2b

[postgres]
dsn = host=127.0.0.1 port=1 user=sluice password=PG-PW-1a2b dbname=sluice
connect_timeout = 1s

[redis]
url = redis://:REDIS-PW-1a2b@127.0.0.1:1/0

[clickhouse]
url = http://u:CH-PW-1a2b@127.0.0.1:1

[module metrics]
[module segments]
[module aggregator]
topics = page_views
EOF
"$SLUICED" -t -c "$work/leak.conf" > "$work/leak-t.out" 2>&1
sed 's|^url = redis://.*|url = redis://:REDIS-PW-1a2b@127.0.0.1:1/x|' "$work/leak.conf" > "$work/leak-bad.conf"
"$SLUICED" -t -c "$work/leak-bad.conf" >> "$work/leak-t.out" 2>&1
t_check $? -eq 1 "a bad redis url is a config error"
t_check "$(grep -c 'leak-bad.conf:.*\[redis\] url' "$work/leak-t.out")" = 1 "reported at its line: $(grep 'redis' "$work/leak-t.out" | head -1)"
sed -i "/^\[postgres\]/a password_file = $work/no-such-file" "$work/leak-bad.conf"
"$SLUICED" -t -c "$work/leak-bad.conf" >> "$work/leak-t.out" 2>&1
t_check "$(grep -c "leak-bad.conf:[0-9]*: \[postgres\] password_file: $work/no-such-file" "$work/leak-t.out")" = 1 \
    "an unreadable password_file is a config error at its line"
"$SLUICED" -c "$work/leak.conf" > "$work/leak.log" 2>&1 &
leak=$!
pids+=("$leak")
t_wait_http "http://127.0.0.1:$port2/healthz" 20
t_wait_until 20 'curl -s "http://127.0.0.1:'$port2'/readyz" | grep -q clickhouse'
curl -s "http://127.0.0.1:$port2/readyz" > "$work/leak-readyz"
curl -s "http://127.0.0.1:$port2/status.json" > "$work/leak-status"
curl -s "http://127.0.0.1:$port2/metrics" > "$work/leak-metrics"
r=$(curl -s -X POST "http://127.0.0.1:$port2/user")
q=$(curl -s "http://127.0.0.1:$port2/aggregator/query/aggregates?hours=1")
kill "$leak"
wait "$leak" 2>/dev/null
t_check "$(grep -c 'clickhouse http://u:\*\*\*@127.0.0.1:1' "$work/leak-readyz")" = 1 "readyz names the url, password masked: $(head -c 300 "$work/leak-readyz")"
t_check "$(grep -c 'clickhouse http://u:\*\*\*@' "$work/leak.log")" -ge 1 "so does the log"
for pw in KAFKA-PW-1a2b PG-PW-1a2b REDIS-PW-1a2b CH-PW-1a2b; do
    for f in leak-t.out leak-readyz leak-status leak-metrics leak.log; do
        t_check "$(grep -c "$pw" "$work/$f")" = 0 "$pw not in $f"
    done
    t_check "$(echo "$r $q" | grep -c "$pw")" = 0 "$pw not in an API answer"
done
t_check "$(echo "$r" | grep -c 'Connection refused\|port 1')" = 0 "POST /user without PostgreSQL: no libpq text ($r)"
t_check "$(echo "$q" | grep -c 'Failed to connect\|port 1')" = 0 "a query without ClickHouse: no curl text ($q)"
t_end

t_case "still serving, no sanitizer report"
serving
t_check $? -eq 0 "healthz 200"
t_check "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base/user")" = 201 "POST /user 201"
kill "${pids[0]}"
wait "${pids[0]}"
t_check $? -eq 0 "SIGTERM: exit 0"
t_check "$(cat "$work/sluiced.log" "$work/leak.log" | grep -c 'AddressSanitizer\|runtime error\|LeakSanitizer')" = 0 "no sanitizer report"
t_end

t_exit
