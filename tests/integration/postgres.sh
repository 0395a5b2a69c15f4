#!/usr/bin/env bash
# The PostgreSQL connector against a real server, driven through a real
# sluiced and the pgprobe test module: parameters stored verbatim,
# prepared statements parsed once per connection and again after a
# reconnect, transactions all or nothing, LISTEN/NOTIFY, timeouts, the server stopped,
# killed and restarted under traffic with readiness following, migrations
# applied once by two daemons starting together.  Counts are exact.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

work=$(t_tmpdir)
pids=()
frozen=""
cleanup() {
    local p
    [ -n "$frozen" ] && kill -CONT $frozen 2>/dev/null
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    sl_svc_stop_all
    [ -n "${SL_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

mods=$work/mods
mkdir -p "$mods"
cp "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/tests/modules/pgprobe/.libs/pgprobe.so" "$mods/"
port=$(t_free_port)
base=http://127.0.0.1:$port

code_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 15 "$@"; }
# metric NAME_WITH_LABELS: its value, or "absent".
metric() {
    curl -s "$base/metrics" | awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "absent" }'
}
# body SQL [PARAMS_JSON]: the JSON for /pg/query, built without quoting games.
body() {
    python3 -c 'import json,sys; print(json.dumps({"sql": sys.argv[1], "params": json.loads(sys.argv[2])}))' "$1" "${2:-[]}"
}
# q SQL [PARAMS_JSON]: runs it through sluiced; prints the answer.
q() { curl -s --max-time 15 -X POST "$base/pg/query" --data-binary "$(body "$@")"; }
# py EXPR < json: a Python expression over the answer `j`.
py() { python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
psqlc() { psql -X -At "$SL_PG_DSN" -c "$1"; }
# wait_eq SECONDS WANT CMD...: runs CMD every 0.1s until it prints WANT.
wait_eq() {
    local limit=$1 want=$2 i=0
    shift 2
    while [ $i -lt $((limit * 10)) ]; do
        [ "$("$@" 2>/dev/null)" = "$want" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
readyz() { code_of "$base/readyz"; }
conns_up() { metric 'sluice_pg_connections_up{module="pgprobe"}'; }

t_case "postgres server starts"
sl_svc_start postgres
t_check $? -eq 0 "postgres on ${SL_PG_DSN:-nothing}"
t_end
[ -n "${SL_PG_PORT:-}" ] || { t_exit; exit 1; }

write_conf() { # write_conf FILE PORT MIGRATE [POSTGRES_LINES]
    cat > "$1" <<EOF
[core]
listen = 127.0.0.1:$2
modules_dir = mods
log_level = debug

[postgres]
dsn = $SL_PG_DSN
pool_size = 4
connect_timeout = 2s
query_timeout = 2s
tx_timeout = 3s
reconnect_max = 500ms
${4:-}

[module metrics]
[module pgprobe]
migrate = $3
EOF
}
write_conf "$work/sluice.conf" "$port" false

# ----------------------------------------------------------- config errors
t_case "a malformed dsn is refused by -t at its line; a missing one stops the module"
sed 's|^dsn = .*|dsn = host=127.0.0.1 port|' "$work/sluice.conf" > "$work/bad.conf"
line=$(grep -n '^dsn = ' "$work/bad.conf" | cut -d: -f1)
"$SLUICED" -t -c "$work/bad.conf" 2>"$work/t.out"
t_check $? -eq 1 "exit 1"
t_check "$(grep -c "bad.conf:$line: \[postgres\] dsn" "$work/t.out")" = 1 \
    "error names bad.conf:$line: $(head -c 200 "$work/t.out")"
"$SLUICED" -t -c "$work/sluice.conf" 2>"$work/t.out"
t_check $? -eq 0 "the good config passes -t"
grep -v '^dsn = ' "$work/sluice.conf" > "$work/nodsn.conf"
timeout 10 "$SLUICED" -c "$work/nodsn.conf" 2>"$work/nodsn.log"
t_check $? -ne 0 "sluiced without a dsn exits non-zero"
t_check "$(grep -c 'dsn is not set' "$work/nodsn.log")" -ge 1 "the log says the dsn is not set"
t_end

"$SLUICED" -c "$work/sluice.conf" 2>>"$work/sluiced.log" &
daemon=$!
pids+=("$daemon")
t_wait_http "$base/healthz" 10

t_case "ready once connected, every pool connection up"
wait_eq 5 200 readyz
t_check "$(readyz)" = 200 "/readyz 200"
wait_eq 5 4 conns_up
t_check "$(metric 'sluice_pg_connections_up{module="pgprobe"}')" = 4 "sluice_pg_connections_up 4"
t_check "$(psqlc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluiced pgprobe'")" = 4 \
    "the server sees 4 connections named 'sluiced pgprobe'"
curl -s "$base/metrics" | grep -A3 '^# HELP sluice_pg_' > "$work/pgmetrics.txt"
out=$(curl -s "$base/metrics" | promtool check metrics 2>&1)
t_check $? -eq 0 "promtool accepts /metrics: $out"
t_check "$(grep -c '^# TYPE sluice_pg_' "$work/pgmetrics.txt")" = 5 "5 sluice_pg_ families"
t_end

# ----------------------------------------------------------- round trips
evil="Robert'); DROP TABLE notes; -- \"quoted\" \\backslash \$1 é✓"
t_case "parameters round trip verbatim, SQL injection included"
q "CREATE TABLE notes (id int PRIMARY KEY, body text, n int)" > /dev/null
a=$(q 'INSERT INTO notes (id, body, n) VALUES ($1, $2, $3) RETURNING id' "[1, $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$evil"), null]")
t_check "$(echo "$a" | py 'j["rows"]')" = "[['1']]" "insert returned id 1: $a"
a=$(q 'SELECT body, n IS NULL AS null_n, $1::int * 2 AS twice FROM notes WHERE id = $2' '[21, 1]')
t_check "$(echo "$a" | py 'j["rows"][0][0]')" = "$evil" "body read back verbatim through sluiced"
t_check "$(echo "$a" | py 'j["rows"][0][1:]')" = "['t', '42']" "NULL stored as NULL, int parameter: $a"
t_check "$(psqlc "SELECT body FROM notes WHERE id = 1")" = "$evil" "psql sees the same bytes"
t_check "$(psqlc "SELECT count(*) FROM notes")" = 1 "the table still exists with one row"
t_end

t_case "server errors come back with their SQLSTATE"
a=$(q 'INSERT INTO notes (id, body) VALUES ($1, $2)' '[1, "dup"]')
t_check "$(echo "$a" | py 'j.get("sqlstate")')" = 23505 "unique violation 23505: $a"
t_check "$(code_of -X POST "$base/pg/query" --data-binary "$(body 'SELECT * FROM nowhere')")" = 422 "HTTP 422 for an error result"
t_check "$(echo "$(q 'SELECT * FROM nowhere')" | py 'j.get("sqlstate")')" = 42P01 "undefined table 42P01"
t_end

t_case "many concurrent queries through a pool of 4"
seq 101 300 | xargs -P 20 -I{} curl -s -o /dev/null -w '%{http_code}\n' --max-time 15 -X POST "$base/pg/query" \
    --data-binary '{"sql":"INSERT INTO notes (id, body) VALUES ($1, $2)","params":[{},"bulk"]}' > "$work/bulk.codes"
t_check "$(grep -c '^200$' "$work/bulk.codes")" = 200 "200 answers of 200 were 200"
t_check "$(psqlc "SELECT count(*) FROM notes WHERE body = 'bulk'")" = 200 "200 rows"
t_end

# ------------------------------------------------------------ prepared
# body_prep NAME SQL [PARAMS_JSON]: /pg/query's JSON for a prepared statement.
body_prep() {
    python3 -c 'import json,sys; print(json.dumps({"prepare": sys.argv[1], "sql": sys.argv[2], "params": json.loads(sys.argv[3])}))' "$1" "$2" "${3:-[]}"
}
qp() { curl -s --max-time 15 -X POST "$base/pg/query" --data-binary "$(body_prep "$@")"; }
prepares() { metric 'sluice_pg_prepares_total{module="pgprobe"}'; }
# The server's own account: with log_min_duration_statement = 0 it logs
# each Parse of a named statement ("parse sl_NAME") and each Execute.
srvlog=$SL_SVC_ROOT/postgres/server.log
server_says() { grep -c "$1" "$srvlog"; }
t_case "a prepared statement is parsed once per connection, then run by name"
psqlc "ALTER SYSTEM SET log_min_duration_statement = 0" > /dev/null
psqlc "SELECT pg_reload_conf()" > /dev/null
# The postmaster applies it, then signals every backend, which applies it
# before its next command.
t_wait_until 30 '[ "$(psqlc "SHOW log_min_duration_statement")" = 0 ]'
p0=$(prepares)
t_check "$p0" = 0 "sluice_pg_prepares_total starts at 0"
parse0=$(server_says 'parse sl_note_ins:')
seq 401 440 | xargs -P 8 -I{} curl -s -o /dev/null -w '%{http_code}\n' --max-time 15 -X POST "$base/pg/query" \
    --data-binary '{"prepare":"note_ins","sql":"INSERT INTO notes (id, body) VALUES ($1, $2)","params":[{},"prepared"]}' > "$work/prep.codes"
t_check "$(grep -c '^200$' "$work/prep.codes")" = 40 "40 prepared inserts answered 200"
t_check "$(psqlc "SELECT count(*) FROM notes WHERE body = 'prepared'")" = 40 "40 rows stored"
n=$(prepares)
t_check "$n" -ge 1 -a "$n" -le 4 "prepared $n times: at most once per connection of the pool of 4"
t_check "$(( $(server_says 'parse sl_note_ins:') - parse0 ))" = "$n" "the server parsed sl_note_ins $n times"
t_check "$(server_says 'execute sl_note_ins:')" = 40 "and executed it by name 40 times"
a=$(qp note_ins 'SELECT 1')
t_check "$(code_of -X POST "$base/pg/query" --data-binary "$(body_prep note_ins 'SELECT 1')")" = 400 "the same name with other SQL is refused: $a"
a=$(qp bad_sql 'SELECT body FROM nowhere WHERE id = $1' '[1]')
t_check "$(echo "$a" | py 'j.get("sqlstate")')" = 42P01 "a statement the server cannot prepare fails with its SQLSTATE: $a"
t_check "$(qp note_get 'SELECT body FROM notes WHERE id = $1' '[401]' | py 'j["rows"]')" = "[['prepared']]" "the pool carries on"
t_end

t_case "prepared statements inside a transaction: rolled back with it, still prepared after it"
a=$(curl -s --max-time 15 -X POST "$base/pg/tx" --data-binary '{"statements":[
    {"prepare":"note_ins","sql":"INSERT INTO notes (id, body) VALUES ($1, $2)","params":[501,"tx"]},
    {"prepare":"note_get","sql":"SELECT body FROM notes WHERE id = $1","params":[501]}],"end":"rollback"}')
t_check "$(echo "$a" | py '[j["ok"]] + [r.get("rows") for r in j["results"]]')" = "[True, 0, 1]" "both ran inside it: $a"
t_check "$(psqlc "SELECT count(*) FROM notes WHERE id = 501")" = 0 "the insert was rolled back"
for i in 1 2 3 4 5 6 7 8; do qp note_get 'SELECT body FROM notes WHERE id = $1' '[401]' > /dev/null; done
t_check "$(psqlc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluiced pgprobe' AND state LIKE 'idle in transaction%'")" = 0 \
    "no connection left in a transaction"
t_check "$(server_says 'prepared statement "sl_[a-z0-9_]*" already exists')" = 0 "no statement was prepared twice in one session (the server never said 'already exists')"
t_end

# ---------------------------------------------------------- transactions
tx() { curl -s --max-time 15 -X POST "$base/pg/tx" --data-binary "$1"; }
t_case "a rolled back transaction leaves nothing; a committed one everything"
q "CREATE TABLE ledger (k text PRIMARY KEY, v int)" > /dev/null
a=$(tx '{"statements":[{"sql":"INSERT INTO ledger VALUES ($1, $2)","params":["a",1]},
                       {"sql":"INSERT INTO ledger VALUES ($1, $2)","params":["b",2]},
                       {"sql":"SELECT count(*) FROM ledger"}],"end":"rollback"}')
t_check "$(echo "$a" | py 'j["ok"]')" = True "rollback reported ok: $a"
t_check "$(echo "$a" | py '[r.get("rows") for r in j["results"]]')" = "[0, 0, 1]" "the statements ran inside it"
t_check "$(psqlc "SELECT count(*) FROM ledger")" = 0 "no row after rollback"
a=$(tx '{"statements":[{"sql":"INSERT INTO ledger VALUES ($1, $2)","params":["a",1]},
                       {"sql":"INSERT INTO ledger VALUES ($1, $2)","params":["b",2]}],"end":"commit"}')
t_check "$(echo "$a" | py 'j["ok"]')" = True "commit ok: $a"
t_check "$(psqlc "SELECT string_agg(k || v, ',' ORDER BY k) FROM ledger")" = "a1,b2" "both rows after commit"
t_end

t_case "an error inside a transaction rolls all of it back"
a=$(tx '{"statements":[{"sql":"INSERT INTO ledger VALUES ($1, $2)","params":["c",3]},
                       {"sql":"INSERT INTO ledger VALUES ($1, $2)","params":["a",9]},
                       {"sql":"INSERT INTO ledger VALUES ($1, $2)","params":["d",4]}],"end":"commit"}')
t_check "$(echo "$a" | py 'j["ok"]')" = False "commit reports failure"
t_check "$(echo "$a" | py '"duplicate key" in j["error"]')" = True "with the cause: $(echo "$a" | py 'j["error"]')"
t_check "$(echo "$a" | py '["rows" in r for r in j["results"]]')" = "[True, False, False]" \
    "first ran, second failed, third not run"
t_check "$(echo "$a" | py '"not run" in j["results"][2]["error"]')" = True "the third says it did not run"
t_check "$(psqlc "SELECT string_agg(k || v, ',' ORDER BY k) FROM ledger")" = "a1,b2" "c was rolled back"
t_check "$(psqlc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluiced pgprobe' AND state LIKE 'idle in transaction%'")" = 0 \
    "no connection left idle in a transaction"
t_end

t_case "a transaction not ended within tx_timeout is rolled back"
a=$(tx '{"statements":[{"sql":"INSERT INTO ledger VALUES ($1, $2)","params":["held",5]}],
         "end":"commit","hold":4}')
t_check "$(echo "$a" | py 'j["ok"]')" = False "its commit fails"
t_check "$(echo "$a" | py '"tx_timeout" in j["error"]')" = True "saying why: $(echo "$a" | py 'j["error"]')"
t_check "$(echo "$a" | py 'j["results"][0].get("rows")')" = 0 "the insert had run inside it"
t_check "$(psqlc "SELECT count(*) FROM ledger WHERE k = 'held'")" = 0 "and is gone"
t_check "$(psqlc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluiced pgprobe' AND state LIKE 'idle in transaction%'")" = 0 \
    "its connection is not left idle in a transaction"
t_check "$(q 'SELECT count(*) FROM ledger' | py 'j["rows"]')" = "[['2']]" "the pool serves the next request"
t_end

t_case "a statement past query_timeout fails, and the pool carries on"
t0=$(date +%s.%N)
a=$(q 'SELECT pg_sleep(10)')
dt=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
# The server's statement_timeout and the client's deadline are both
# query_timeout; either may answer first.
t_check "$(echo "$a" | py '"timed out" in j["error"] or "statement timeout" in j["error"]')" = True \
    "timeout reported: $a"
# Without the timeout the answer would be pg_sleep's own, after 10 s, and
# no error: the error above says it ended early, this that it was not
# before query_timeout.
t_check "$(python3 -c "print($dt >= 1.9)")" = True "after ${dt}s (query_timeout 2s)"
t_check "$(echo "$(q 'SELECT 1 AS one')" | py 'j["rows"]')" = "[['1']]" "next query fine"
t_end

# ---------------------------------------------------------------- notify
notes() { curl -s --max-time 5 "$base/pg/notes?channel=$1"; }
established() { notes jobs | py 'j["established"]'; }
npayloads() { notes jobs | py 'len(j["payloads"])'; }
t_case "NOTIFY reaches the module"
t_check "$(code_of -X POST "$base/pg/listen?channel=jobs")" = 200 "listening on jobs"
wait_eq 5 1 established
t_check "$(notes jobs | py 'j["established"]')" = 1 "told once that listening is established"
psqlc "NOTIFY jobs, 'one'; NOTIFY other, 'x'" > /dev/null
psqlc "SELECT pg_notify('jobs', \$\$it's \"two\"\$\$)" > /dev/null
psqlc "NOTIFY jobs, 'three'" > /dev/null
wait_eq 5 3 npayloads
t_check "$(notes jobs | py 'j["payloads"]')" = "['one', 'it\\'s \"two\"', 'three']" "3 payloads in order: $(notes jobs)"
t_check "$(metric 'sluice_pg_connections_up{module="pgprobe"}')" = 5 "pool plus the LISTEN connection up"
t_end

# ------------------------------------------------------- server restarts
traffic() { # inserts rows k0..kN one at a time, one answer code per line
    local i=0
    while [ ! -e "$work/stop-traffic" ]; do
        curl -s -o /dev/null -w "%{http_code} $i\n" --max-time 15 -X POST "$base/pg/query" \
            --data-binary "{\"sql\":\"INSERT INTO ledger VALUES (\$1, \$2)\",\"params\":[\"k$i\",$i]}"
        i=$((i + 1))
        sleep 0.02
    done > "$work/traffic.codes"
}

t_case "server stopped under traffic: errors at once, not ready, then recovery"
unavail0=$(metric 'sluice_pg_queries_total{module="pgprobe",outcome="unavailable"}')
traffic &
tpid=$!
pids+=("$tpid")
t_wait_until 30 '[ "$(grep -c "^200 " "$work/traffic.codes" 2>/dev/null)" -ge 5 ]'
sl_svc_stop postgres
wait_eq 5 503 readyz
t_check "$(readyz)" = 503 "/readyz 503 while the server is down"
a=$(curl -s --max-time 15 -w '\n%{time_total}' -X POST "$base/pg/query" --data-binary '{"sql":"SELECT 1"}')
dt=$(echo "$a" | tail -n 1)
a=$(echo "$a" | head -n 1)
t_check "$(echo "$a" | py '"unavailable" in j["error"]')" = True "a query fails with a clear error: $a"
t_check "$(echo "$a" | py '"timed out" not in j["error"]')" = True "at once, not after query_timeout (2 s) as a timeout (${dt}s)"
# A few reconnect attempts against the closed port (reconnect_max 500ms).
reconnects() { metric 'sluice_pg_reconnects_total{module="pgprobe"}' | cut -d. -f1; }
t_wait_until 30 '[ "$(reconnects)" -ge 5 ]'
sl_svc_restart postgres
t_check $? -eq 0 "postgres back on port $SL_PG_PORT"
wait_eq 10 200 readyz
t_check "$(readyz)" = 200 "/readyz 200 again"
ok_at=$(grep -c '^200 ' "$work/traffic.codes")
t_wait_until 30 "[ \$(grep -c '^200 ' '$work/traffic.codes') -ge $((ok_at + 3)) ]"
touch "$work/stop-traffic"
wait "$tpid"
rm -f "$work/stop-traffic"
ok=$(grep -c '^200 ' "$work/traffic.codes")
bad=$(grep -c '^503 ' "$work/traffic.codes")
total=$(wc -l < "$work/traffic.codes")
t_check "$((ok + bad))" = "$total" "every one of $total requests answered 200 ($ok) or 503 ($bad), none hung"
t_check "$bad" -gt 0 "some failed while the server was down"
t_check "$(tail -n 3 "$work/traffic.codes" | grep -c '^200 ')" = 3 "the last ones succeeded"
t_check "$(psqlc "SELECT count(*) FROM ledger WHERE k LIKE 'k%'")" = "$ok" "exactly the $ok acknowledged inserts are stored"
t_check "$(python3 -c "print($(metric 'sluice_pg_queries_total{module="pgprobe",outcome="unavailable"}') > $unavail0)")" = True \
    "sluice_pg_queries_total{outcome=unavailable} went up"
t_check "$(python3 -c "print($(metric 'sluice_pg_reconnects_total{module="pgprobe"}') >= 5)")" = True \
    "sluice_pg_reconnects_total counts the reconnections ($(metric 'sluice_pg_reconnects_total{module="pgprobe"}'))"
t_end

t_case "server killed: LISTEN re-established, NOTIFY after recovery delivered"
sl_svc_kill postgres
wait_eq 5 503 readyz
t_check "$(readyz)" = 503 "/readyz 503 after kill -9"
t_check "$(conns_up)" = 0 "sluice_pg_connections_up 0"
sl_svc_restart postgres
wait_eq 10 200 readyz
t_check "$(readyz)" = 200 "/readyz 200 after restart"
wait_eq 5 3 established
t_check "$(established)" = 3 "listening re-established after each of the two outages"
psqlc "NOTIFY jobs, 'after'" > /dev/null
wait_eq 5 4 npayloads
t_check "$(notes jobs | py 'j["payloads"][3:]')" = "['after']" "the notification after recovery arrived once"
wait_eq 5 5 conns_up
t_check "$(conns_up)" = 5 "all 5 connections up again"
t_check "$(psqlc "SELECT string_agg(k || v, ',' ORDER BY k) FROM ledger WHERE k IN ('a', 'b')")" = "a1,b2" \
    "committed data survived the kill"
p0=$(prepares)
for i in 1 2 3 4 5 6 7 8; do
    a=$(qp note_get 'SELECT body FROM notes WHERE id = $1' '[401]')
    [ "$(echo "$a" | py 'j.get("rows")')" = "[['prepared']]" ] || break
done
t_check "$(echo "$a" | py 'j.get("rows")')" = "[['prepared']]" "a prepared statement kept across the restarts answers: $a"
t_check "$(prepares)" -gt "$p0" "it was prepared again on the new connections ($p0 -> $(prepares))"
t_check "$(server_says 'prepared statement "sl_[a-z0-9_]*" already exists')" = 0 "never twice in one session"
t_end

t_case "server frozen: statements and connects time out instead of hanging, then recovery"
timeouts0=$(metric 'sluice_pg_queries_total{module="pgprobe",outcome="timeout"}')
pm=$(head -n 1 "$SL_SVC_ROOT/postgres/data/postmaster.pid")
frozen="$pm $(pgrep -P "$pm" | tr '\n' ' ')"
kill -STOP $frozen
a=$(curl -s --max-time 15 -w '\n%{time_total}' -X POST "$base/pg/query" --data-binary '{"sql":"SELECT 1"}')
dt=$(echo "$a" | tail -n 1)
a=$(echo "$a" | head -n 1)
t_check "$(echo "$a" | py '"timed out" in j["error"]')" = True "the query times out: $a"
# Not before query_timeout (2 s, checked every 0.1 s); that it came at
# all, and as a timeout, is what says nothing hung.
t_check "$(python3 -c "print(1.5 < $dt)")" = True "after ${dt}s (query_timeout 2s, checked every 0.1s)"
wait_eq 10 503 readyz
t_check "$(readyz)" = 503 "/readyz 503 while frozen (connects time out too)"
kill -CONT $frozen
frozen=""
wait_eq 10 200 readyz
t_check "$(readyz)" = 200 "/readyz 200 once the server runs again"
t_check "$(q 'SELECT 2 AS two' | py 'j["rows"]')" = "[['2']]" "queries work again"
t_check "$(python3 -c "print($(metric 'sluice_pg_queries_total{module="pgprobe",outcome="timeout"}') > $timeouts0)")" = True \
    "sluice_pg_queries_total{outcome=timeout} went up"
wait_eq 5 5 conns_up
t_check "$(conns_up)" = 5 "all 5 connections up again"
t_end

t_case "SIGHUP with a changed [postgres] replaces the instance and its pool"
# The new dsn names its host: the connector must resolve it without libpq's
# blocking lookup.
sed -i 's/^pool_size = 4/pool_size = 2/; s/host=127.0.0.1/host=localhost/' "$work/sluice.conf"
kill -HUP "$daemon"
wait_eq 10 2 conns_up
t_check "$(conns_up)" = 2 "sluice_pg_connections_up 2 (the new pool, no LISTEN yet)"
wait_eq 5 2 psqlc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluiced pgprobe'"
t_check "$(psqlc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluiced pgprobe'")" = 2 \
    "the server sees 2 connections: the old pool and LISTEN connection are closed"
t_check "$(q 'SELECT count(*) FROM ledger WHERE k IN ($1, $2)' '["a", "b"]' | py 'j["rows"]')" = "[['2']]" \
    "the new pool answers"
t_check "$(readyz)" = 200 "/readyz 200"
t_check "$(grep -c 'pgprobe: connection [12]: localhost is 127.0.0.1' "$work/sluiced.log")" = 2 \
    "both connections resolved localhost on the loop and connected by address"
t_end

# ------------------------------------------------------------- migrations
t_case "two daemons starting together apply each migration once"
pa=$(t_free_port)
pb=$(t_free_port)
# a: one connection and room for two waiting requests, for the overflow case.
write_conf "$work/a.conf" "$pa" true "max_queue = 2"
sed -i 's/^pool_size = .*/pool_size = 1/; s/^query_timeout = .*/query_timeout = 5s/' "$work/a.conf"
write_conf "$work/b.conf" "$pb" true
"$SLUICED" -c "$work/a.conf" 2>>"$work/a.log" &
pids+=($!)
"$SLUICED" -c "$work/b.conf" 2>>"$work/b.log" &
pids+=($!)
mig() { curl -s --max-time 5 "http://127.0.0.1:$1/pg/migrations"; }
mig_done() { mig "$1" | py 'j["done"]'; }
wait_eq 15 True mig_done "$pa"
wait_eq 15 True mig_done "$pb"
t_check "$(mig "$pa" | py 'j["error"]')$(mig "$pb" | py 'j["error"]')" = NoneNone "no error in either"
t_check "$(( $(mig "$pa" | py 'j["applied"]') + $(mig "$pb" | py 'j["applied"]') ))" = 3 \
    "3 applied in all (a: $(mig "$pa" | py 'j["applied"]'), b: $(mig "$pb" | py 'j["applied"]'))"
t_check "$(psqlc "SELECT string_agg(version::text, ',' ORDER BY version) FROM sluice_migrations WHERE module = 'pgprobe'")" = "1,2,3" \
    "sluice_migrations holds versions 1,2,3 once each"
t_check "$(psqlc "SELECT count(*) FROM probe_items WHERE name = 'seed'")" = 1 "the seed row (migration 3) exists once"
t_check "$(psqlc "SELECT count(*) FROM information_schema.columns WHERE table_name = 'probe_items' AND column_name = 'note'")" = 1 \
    "migration 2 added its column"
t_check "$(code_of "http://127.0.0.1:$pa/readyz")$(code_of "http://127.0.0.1:$pb/readyz")" = 200200 "both ready"
t_end

t_case "a restarted daemon applies nothing again"
a=$(curl -s --max-time 10 -X POST "http://127.0.0.1:$pa/pg/migrate")
t_check "$(echo "$a" | py 'j["applied"]')" = 0 "0 applied: $a"
t_check "$(psqlc "SELECT count(*) FROM sluice_migrations WHERE module = 'pgprobe'")" = 3 "still 3 recorded"
t_check "$(psqlc "SELECT count(*) FROM probe_items WHERE name = 'seed'")" = 1 "still one seed"
t_end

t_case "requests beyond max_queue fail at once"
seq 1 10 | xargs -P 10 -I{} curl -s -o /dev/null -w '%{http_code}\n' --max-time 15 -X POST \
    "http://127.0.0.1:$pa/pg/query" --data-binary '{"sql":"SELECT pg_sleep(1)"}' > "$work/over.codes"
t_check "$(grep -c '^200$' "$work/over.codes")" = 3 "3 served: one running, two waiting"
t_check "$(grep -c '^503$' "$work/over.codes")" = 7 "7 refused with 503"
t_check "$(curl -s "http://127.0.0.1:$pa/metrics" | awk '$1 == "sluice_pg_queries_total{module=\"pgprobe\",outcome=\"overflow\"}" { print $2 }')" = 7 \
    "sluice_pg_queries_total{outcome=overflow} 7"
t_end

t_case "SIGTERM: sluiced exits 0 and closes its connections"
for p in "${pids[@]}"; do
    [ "$p" = "$tpid" ] && continue
    kill -TERM "$p" 2>/dev/null
done
rc=0
for p in "${pids[@]}"; do
    [ "$p" = "$tpid" ] && continue
    wait "$p" || rc=$?
done
pids=()
t_check "$rc" = 0 "every sluiced exited 0"
wait_eq 5 0 psqlc "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'sluiced %'"
t_check "$(psqlc "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'sluiced %'")" = 0 \
    "no sluiced connection left on the server"
t_end

t_exit
