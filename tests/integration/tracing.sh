#!/usr/bin/env bash
# Tracing as a user meets it: a real sluiced exporting to a small OTLP/HTTP
# receiver (tests/harness/otlp_receiver.py) that records every body.  The
# caller's traceparent is continued and answered; the server span carries
# the HTTP conventions; PostgreSQL statements of POST /segment/user nest
# under its transaction span under the request span; X-Log-Level: debug
# raises the level of one request's lines only (a timer of that request
# included), not of a concurrent one; a collector answering 500 or gone
# never slows a request, its spans are dropped and counted, and export
# resumes when it is back; a batch over 1 MB goes out without waiting for
# "100 Continue"; with tracing off nothing is added.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

t_scratch "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/_modules/segments.so" "$SL_BUILD/_modules/generator.so" \
    "$SL_BUILD/tests/modules/echo/.libs/echo.so" \
    "$SL_BUILD/tests/modules/kafkaprobe/.libs/kafkaprobe.so"
port=$(t_free_port)
otlp_port=$(t_free_port)
base=http://127.0.0.1:$port
recv=$work/otlp.jsonl
control=$work/otlp.control
spans() { [ -f "$recv" ] && python3 "$SL_TOP/tests/harness/otlp_spans.py" "$recv"; }
# py EXPR: a Python expression over the list of recorded spans `S`.
py() { spans | python3 -c 'import json,sys; S=[json.loads(l) for l in sys.stdin]; print(eval(sys.argv[1]))' "$1"; }
metric() {
    curl -s "$base/metrics" | awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print 0 }'
}
start_receiver() {
    python3 "$SL_TOP/tests/harness/otlp_receiver.py" "$otlp_port" "$recv" "$control" &
    receiver=$!
    pids+=("$receiver")
    t_wait_until 10 "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", $otlp_port), 1)'"
}
# The response headers of a request: header NAME of them.
header() { tr -d '\r' < "$1" | awk -v n="$2" 'tolower($1) == tolower(n) ":" { print $2 }'; }

write_conf() { # write_conf FILE TRACING_LINES...
    local f=$1
    shift
    cat > "$f" <<CONF
# written by tests/integration/tracing.sh
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = info
access_log = access.log

[module metrics]

[module echo]
value = traced
CONF
    [ $# -gt 0 ] && printf '%s\n' '' '[tracing]' "$@" >> "$f"
    return 0
}

t_case "sluiced -t checks [tracing] with file:line"
write_conf "$work/bad.conf" "endpoint = ftp://127.0.0.1/v1/traces" "sample_ratio = 0.5"
line=$(grep -n '^endpoint' "$work/bad.conf" | cut -d: -f1)
"$SLUICED" -t -c "$work/bad.conf" 2>"$work/t.out"
t_check $? -eq 1 "a non-http endpoint: exit 1"
t_check "$(grep -c "bad.conf:$line: \[tracing\] endpoint: \"ftp://127.0.0.1/v1/traces\" is not an http" "$work/t.out")" -eq 1 \
    "reported at bad.conf:$line: $(head -c 300 "$work/t.out")"
write_conf "$work/bad.conf" "endpoint = http://127.0.0.1:1/v1/traces" "sample_ratio = 1.5"
line=$(grep -n '^sample_ratio' "$work/bad.conf" | cut -d: -f1)
"$SLUICED" -t -c "$work/bad.conf" 2>"$work/t.out"
t_check $? -eq 1 "sample_ratio 1.5: exit 1"
t_check "$(grep -c "bad.conf:$line:" "$work/t.out")" -ge 1 "reported at bad.conf:$line"
t_end

t_case "tracing off (no [tracing]): no traceparent answered, tracing metrics all zero"
write_conf "$work/off.conf"
"$SLUICED" -c "$work/off.conf" 2>>"$work/off.log" &
off=$!
pids+=("$off")
t_wait_http "$base/healthz" 15
curl -s -D "$work/h" -o /dev/null -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' "$base/echo"
t_check "$(header "$work/h" traceparent)" = "" "no traceparent header"
curl -s "$base/metrics" > "$work/off.metrics"
t_check "$(grep -c '^# TYPE sluice_tracing_' "$work/off.metrics")" -eq 3 "the three tracing families are exposed"
t_check "$(grep '^sluice_tracing_' "$work/off.metrics" | awk '$NF != 0' | wc -l)" -eq 0 \
    "every tracing series is 0: $(grep '^sluice_tracing_' "$work/off.metrics" | awk '$NF != 0' | head -3)"
kill "$off"
wait "$off" 2>/dev/null
t_end

t_case "access log in JSON on stderr: one line per answer, the token's name with auth on"
write_conf "$work/json.conf"
sed -i 's/^access_log = access.log$/log_format = json\naccess_log = stderr\ntokens_file = tokens/' "$work/json.conf"
printf 'alice read,write,admin alice-secret-0123456789\n' > "$work/tokens"
"$SLUICED" -c "$work/json.conf" 2>>"$work/json.log" &
off=$!
pids+=("$off")
t_wait_http "$base/healthz" 15
curl -s -o /dev/null -A acc -H 'Authorization: Bearer alice-secret-0123456789' -H 'X-Request-Id: acc-json-1' "$base/echo"
curl -s -o /dev/null -H 'X-Request-Id: acc-json-2' "$base/echo"
t_wait_until 10 "grep -q acc-json-2 '$work/json.log'"
line=$(grep '"request_id":"acc-json-1"' "$work/json.log" | grep '"status"')
t_check "$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["client"], j["method"], j["path"], j["status"], j["bytes"] > 0, j["duration_s"] >= 0, j["module"], j["route"], j["token"], "trace_id" in j, j["ts"][-1])' "$line")" \
    = "127.0.0.1 GET /echo 200 True True echo /echo alice False Z" "the served request: $line"
line=$(grep '"request_id":"acc-json-2"' "$work/json.log" | grep '"status"')
t_check "$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["status"], j["module"], j["route"], j["token"])' "$line")" \
    = "401 echo /echo anonymous" "the refused one, at the edge, without credentials: $line"
kill "$off"
wait "$off" 2>/dev/null
t_end

start_receiver
tp_trace=4bf92f3577b34da6a3ce929d0e0e4736
tp_span=00f067aa0ba902b7
write_conf "$work/sluice.conf" "endpoint = http://127.0.0.1:$otlp_port/v1/traces" \
    "service_name = sluice-test" "flush_interval = 100ms" "batch_size = 10" "max_queue = 50" \
    "timeout = 1s" "resource.deployment.environment = test"
"$SLUICED" -c "$work/sluice.conf" 2>>"$work/sluiced.log" &
daemon=$!
pids+=("$daemon")
t_wait_http "$base/healthz" 15

t_case "a request continues the caller's trace: answered traceparent, server span exported"
curl -s -D "$work/h" -o /dev/null -A trace-test -H "traceparent: 00-$tp_trace-$tp_span-01" \
    -H 'tracestate: rojo=00f067aa0ba902b7' "$base/echo"
answered=$(header "$work/h" traceparent)
t_check "$(cut -d- -f2 <<< "$answered")" = "$tp_trace" "same trace id answered: $answered"
t_check "$(cut -d- -f4 <<< "$answered")" = "01" "sampled flag kept"
my_span=$(cut -d- -f3 <<< "$answered")
t_check "$my_span" != "$tp_span" "a span of its own: $my_span"
t_wait_until 10 "[ \"\$(py 'len([s for s in S if s[\"span\"] == \"$my_span\"])')\" = 1 ]"
t_check "$(py "[(s['name'], s['kind'], s['parent'], s['trace']) for s in S if s['span'] == '$my_span']")" \
    = "[('GET /echo', 2, '$tp_span', '$tp_trace')]" "server span GET /echo, kind SERVER, parent the caller's"
t_check "$(py "[(s['attrs']['http.request.method'], s['attrs']['http.route'], s['attrs']['url.path'], s['attrs']['http.response.status_code'], s['attrs']['user_agent.original'], s['attrs']['client.address']) for s in S if s['span'] == '$my_span']")" \
    = "[('GET', '/echo', '/echo', 200, 'trace-test', '127.0.0.1')]" "http.* attributes"
t_check "$(py "[(s['service'], s['resource']['deployment.environment']) for s in S if s['span'] == '$my_span']")" \
    = "[('sluice-test', 'test')]" "service.name and resource.* attributes"
t_end

t_case "access log: a text line per answer, with the request's trace id; reopened on SIGHUP"
curl -s -o /dev/null -H "traceparent: 00-$tp_trace-$tp_span-01" -H 'X-Request-Id: acc-1' "$base/echo"
curl -s -o /dev/null -H 'X-Request-Id: acc-2' "$base/nothing/here%20x"
t_wait_until 10 "grep -q acc-2 '$work/access.log'"
t_check "$(grep -c 'request_id=acc-1 ' "$work/access.log")" -eq 1 "one line for the request"
t_check "$(grep 'request_id=acc-1 ' "$work/access.log" | cut -d' ' -f2-5)" = "127.0.0.1 GET /echo 200" \
    "client, method, path, status: $(grep 'request_id=acc-1 ' "$work/access.log")"
t_check "$(grep 'request_id=acc-1 ' "$work/access.log" | awk '$6 > 0 && $7 ~ /^[0-9]+\.[0-9][0-9][0-9][0-9][0-9][0-9]$/' | wc -l)" -eq 1 \
    "bytes of the body, duration in seconds"
t_check "$(grep 'request_id=acc-1 ' "$work/access.log" | cut -d' ' -f8-)" = "module=echo route=/echo request_id=acc-1 trace_id=$tp_trace" \
    "module, route, request id and the caller's trace id"
t_check "$(grep -c 'GET /nothing/here%20x 404 [0-9]* [0-9.]* module=core route=unmatched request_id=acc-2 trace_id=-$' "$work/access.log")" -eq 1 \
    "a 404 at the edge, its path as sent: $(grep acc-2 "$work/access.log")"
mv "$work/access.log" "$work/access.log.1"
kill -HUP "$daemon"
t_wait_until 10 "[ -f '$work/access.log' ]"
curl -s -o /dev/null -H 'X-Request-Id: acc-3' "$base/echo"
t_wait_until 10 "grep -q acc-3 '$work/access.log'"
t_check "$(grep -c acc-3 "$work/access.log")" -eq 1 "after SIGHUP the new file gets the lines"
t_check "$(grep -c acc-3 "$work/access.log.1")" -eq 0 "and the rotated one no more"
t_end

t_case "a request without traceparent starts a trace; a 404 of a route is answered 404 in its span"
curl -s -D "$work/h" -o /dev/null "$base/echo/item/%zz"
curl -s -D "$work/h" -o /dev/null "$base/echo"
answered=$(header "$work/h" traceparent)
t_check "$(grep -cE '^00-[0-9a-f]{32}-[0-9a-f]{16}-01$' <<< "$answered")" -eq 1 "a new sampled traceparent: $answered"
t_check "$(cut -d- -f2 <<< "$answered")" != "$tp_trace" "a trace of its own"
span2=$(cut -d- -f3 <<< "$answered")
t_wait_until 10 "[ \"\$(py 'len([s for s in S if s[\"span\"] == \"$span2\"])')\" = 1 ]"
t_check "$(py "[s['parent'] for s in S if s['span'] == '$span2']")" = "['']" "a root span"
t_end

t_case "client.address and client.port are each connection's; http.request.method each request's"
# Two connections, GETs on one (two routes) and HEADs on the other: the
# client's attributes are kept per connection and the method per route and
# method, so a span with another connection's port, or GET for a HEAD,
# would show either kept in the wrong place.
fmt='%{local_port} %{num_connects} %{url} %header{traceparent}\n'
curl -s -o /dev/null -o /dev/null -o /dev/null -w "$fmt" "$base/echo" "$base/echo/item/7" "$base/echo" \
    | sed 's/^/GET /' > "$work/conn"
curl -s -I -o /dev/null -o /dev/null -w "$fmt" "$base/echo" "$base/echo" | sed 's/^/HEAD /' >> "$work/conn"
t_check "$(awk '{ print $1, $3 }' "$work/conn" | tr '\n' ' ')" = "GET 1 GET 0 GET 0 HEAD 1 HEAD 0 " \
    "five requests over two connections: $(tr '\n' ' ' < "$work/conn")"
t_check "$(awk '{ print $2 }' "$work/conn" | uniq | wc -l)" -eq 2 "two client ports, one per connection"
want='' got=''
while read -r method lport _ url tp; do
    sp=$(cut -d- -f3 <<< "$tp")
    path=${url#"$base"}
    route=$path
    [ "$path" = /echo/item/7 ] && route='/echo/item/{id}'
    t_wait_until 10 "[ \"\$(py 'len([s for s in S if s[\"span\"] == \"$sp\"])')\" = 1 ]"
    want+="('$method', '$route', '$path', '127.0.0.1', $lport) "
    got+="$(py "[(a['http.request.method'], a['http.route'], a['url.path'], a['client.address'], a['client.port']) for a in (s['attrs'] for s in S if s['span'] == '$sp')][0]") "
done < "$work/conn"
t_check "$got" = "$want" "method, route, path, client address and port of each span"
t_end

t_case "X-Log-Level: debug raises the level of that request's lines only, timers included"
curl -s -D "$work/hd" -o /dev/null -H 'X-Log-Level: debug' "$base/echo/slow?ms=300" &
c1=$!
curl -s -D "$work/hn" -o /dev/null "$base/echo/slow?ms=300" &
c2=$!
wait "$c1" "$c2"
dbg=$(cut -d- -f2 <<< "$(header "$work/hd" traceparent)")
plain=$(cut -d- -f2 <<< "$(header "$work/hn" traceparent)")
# (between the message and the trace id: the request's id, X-Request-Id)
t_check "$(grep -cE "debug \[echo\] slow reply in 300 ms request_id=[0-9a-f-]+ trace_id=$dbg" "$work/sluiced.log")" -eq 1 "the handler's debug line, with its trace id"
t_check "$(grep -cE "debug \[echo\] answering a slow request request_id=[0-9a-f-]+ trace_id=$dbg" "$work/sluiced.log")" -eq 1 "the timer's debug line, with the request's trace id"
t_check "$(grep -c "trace_id=$plain" "$work/sluiced.log")" -eq 0 "no line of the concurrent request without the header"
t_check "$(grep -c ' debug ' "$work/sluiced.log")" -eq 2 "no other debug line"
dspan=$(cut -d- -f3 <<< "$(header "$work/hd" traceparent)")
nspan=$(cut -d- -f3 <<< "$(header "$work/hn" traceparent)")
t_wait_until 10 "[ \"\$(py 'len([s for s in S if s[\"span\"] in (\"$dspan\", \"$nspan\")])')\" = 2 ]"
t_check "$(py "[[(e['name'], e['attrs']['log.severity'], e['attrs']['log.source'], e['attrs']['log.message']) for e in s['events']] for s in S if s['span'] == '$dspan']")" \
    = "[[('log', 'debug', 'echo', 'slow reply in 300 ms'), ('log', 'debug', 'echo', 'answering a slow request')]]" \
    "its debug lines are events of its span, the timer's included"
t_check "$(py "[s['events'] for s in S if s['span'] == '$nspan']")" = "[[]]" "none on the concurrent request's span"
t_end

t_case "collector answering 500, then gone: requests unaffected, spans dropped and counted, export resumes"
exported0=$(metric sluice_tracing_spans_exported_total)
echo 500 > "$control"
slow=0
for i in $(seq 1 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/echo") || slow=$((slow + 1))
    [ "$code" = 200 ] || slow=$((slow + 1))
done
t_check "$slow" -eq 0 "300 requests answered 200 within 2 s each while the collector refuses"
t_wait_until 10 "[ \"\$(metric 'sluice_tracing_spans_dropped_total{reason=\"export\"}')\" != 0 ]"
refused=$(metric 'sluice_tracing_spans_dropped_total{reason="export"}')
t_check "$refused" != 0 "refused batches counted: $refused"
t_check "$(grep -c 'export to .* failed' "$work/sluiced.log")" -eq 1 "the failure logged once"
kill -9 "$receiver"
wait "$receiver" 2>/dev/null
for i in $(seq 1 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/echo") || slow=$((slow + 1))
    [ "$code" = 200 ] || slow=$((slow + 1))
done
t_check "$slow" -eq 0 "600 more answered 200 within 2 s each with the collector gone"
gone=$(metric 'sluice_tracing_spans_dropped_total{reason="export"}')
t_check "$gone" -gt "$refused" "batches that found no collector counted: $gone"
# A collector that takes connections and never answers: one export waits
# its timeout while the queue fills up.
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1000); time.sleep(3600)' "$otlp_port" &
hang=$!
pids+=("$hang")
t_wait_until 10 "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", $otlp_port), 1)'"
# The queue overflows once requests end spans faster than one batch per
# export timeout leaves: one curl sends each hundred (a process per request
# is too slow for that on a loaded machine), until it did, or 6000 went
# without it (which fails below).
sent=0
while [ "$(metric 'sluice_tracing_spans_dropped_total{reason="queue"}')" = 0 ] && [ $sent -lt 6000 ]; do
    bad=$(curl -s -o /dev/null -w '%{http_code}\n' --max-time 2 "$base/echo?n=[1-100]" | grep -cv '^200$')
    slow=$((slow + bad))
    sent=$((sent + 100))
done
t_check "$slow" -eq 0 "$sent more answered 200 within 2 s each with a collector that never answers"
t_check "$(metric 'sluice_tracing_spans_dropped_total{reason="queue"}')" != 0 \
    "spans beyond max_queue dropped and counted: $(metric 'sluice_tracing_spans_dropped_total{reason="queue"}')"
kill -9 "$hang"
wait "$hang" 2>/dev/null
rm -f "$control"
start_receiver
curl -s -D "$work/h" -o /dev/null "$base/echo"
back=$(cut -d- -f3 <<< "$(header "$work/h" traceparent)")
t_wait_until 15 "[ \"\$(py 'len([s for s in S if s[\"span\"] == \"$back\"])')\" = 1 ]"
t_check "$(py "len([s for s in S if s['span'] == '$back'])")" = 1 "a span after the collector came back arrives"
t_check "$(metric sluice_tracing_spans_exported_total)" != "$exported0" "exported count moves again"
t_check "$(grep -c 'export to .* works again' "$work/sluiced.log")" -eq 1 "the recovery logged"
t_end

t_case "a batch over 1 MB is sent at once, without Expect: 100-continue"
# libcurl asks a body over 1 MB to wait for "100 Continue", which this
# receiver, like some collectors, never answers: a second lost per batch.
# A second sluiced batches 2,000 spans of requests with 600-byte paths.
big_port=$(t_free_port)
write_conf "$work/big.conf" "endpoint = http://127.0.0.1:$otlp_port/v1/traces" \
    "batch_size = 2000" "max_queue = 4000" "flush_interval = 3600s"
sed -i "s/^listen = .*/listen = 127.0.0.1:$big_port/; s/^access_log = .*/access_log = off/" "$work/big.conf"
"$SLUICED" -c "$work/big.conf" 2>>"$work/big.log" &
big=$!
pids+=("$big")
t_wait_http "http://127.0.0.1:$big_port/healthz" 15
big_exported() {
    curl -s "http://127.0.0.1:$big_port/metrics" | awk '$1 == "sluice_tracing_spans_exported_total" { print $2 }'
}
pad=$(printf 'p%.0s' $(seq 1 600))
bad=$(curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$big_port/echo/item/$pad[1-2000]" | grep -cv '^200$')
t_check "$bad" -eq 0 "2,000 requests answered 200"
t_wait_until 30 '[ "$(big_exported)" -ge 2000 ]'
t_check "$(big_exported)" -ge 2000 "a batch of 2,000 spans exported"
t_check "$(awk '{ if (length($0) > n) n = length($0) } END { print n + 0 }' "$recv")" -gt 1048576 \
    "the receiver got a body over 1 MB"
t_check "$(cat "$recv.expect" 2>/dev/null | wc -l)" -eq 0 "no request carried Expect: $(head -c 100 "$recv.expect" 2>/dev/null)"
kill "$big"
wait "$big" 2>/dev/null
t_end

t_case "postgres and redis start"
sl_svc_start postgres && sl_svc_start redis
t_check $? -eq 0 "postgres ${SL_PG_DSN:-none}, redis ${SL_REDIS_URL:-none}"
t_end
[ -n "${SL_PG_PORT:-}" ] && [ -n "${SL_REDIS_PORT:-}" ] || { t_exit; exit 1; }

cat >> "$work/sluice.conf" <<CONF

[postgres]
dsn = $SL_PG_DSN

[redis]
url = $SL_REDIS_URL

[module segments]
CONF
kill -HUP "$daemon"
t_wait_until 30 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/readyz")" = 200 ]'

t_case "POST /segment/user: SQL statements nest under its transaction under the request span"
curl -s -o /dev/null -X POST -H 'Content-Type: application/json' "$base/user" -d '{"user_id": 41}'
curl -s -o /dev/null -X POST -H 'Content-Type: application/json' "$base/segment" -d '{"slug": "TRACE_ME"}'
# change_traced BODY: POST /segment/user under the caller's span $tp_span
# of trace $trace; sets req_span to the request's span.
change_traced() {
    local code
    code=$(curl -s -D "$work/h" -o "$work/b" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        "$base/segment/user" -H "traceparent: 00-$trace-$tp_span-01" -d "$1")
    t_check "$code" = 200 "POST /segment/user 200: $(cat "$work/b")"
    req_span=$(cut -d- -f3 <<< "$(header "$work/h" traceparent)")
}
trace=1111222233334444aaaabbbbccccdddd
change_traced '{"user_id": 41, "add_segments": ["TRACE_ME"]}'
t_wait_until 10 "[ \"\$(py 'len([s for s in S if s[\"trace\"] == \"$trace\" and s[\"name\"] == \"COMMIT\"])')\" = 1 ]"
t_check "$(py "[s['name'] for s in S if s['span'] == '$req_span']")" = "['POST /segment/user']" "the request span"
tx=$(py "[s['span'] for s in S if s['trace'] == '$trace' and s['name'] == 'transaction']")
t_check "$(py "[(s['parent'], s['kind'], s['attrs']['db.system']) for s in S if s['trace'] == '$trace' and s['name'] == 'transaction']")" \
    = "[('$req_span', 3, 'postgresql')]" "one transaction span, CLIENT, under the request span"
txid=$(py "[s['span'] for s in S if s['trace'] == '$trace' and s['name'] == 'transaction'][0]")
stmts=$(py "sorted(set(s['name'] for s in S if s['trace'] == '$trace' and s['parent'] == '$txid'))")
t_check "$(py "all(s['attrs']['db.system'] == 'postgresql' and s['attrs']['db.query.text'] and s['kind'] == 3 for s in S if s['trace'] == '$trace' and s['parent'] == '$txid')")" \
    = True "every statement of it: CLIENT, db.system postgresql, db.query.text ($stmts)"
t_check "$(py "len([s for s in S if s['trace'] == '$trace' and s['parent'] == '$txid' and 'user_segments' in s['attrs']['db.query.text']])")" \
    -ge 1 "the user_segments change among them"
t_check "$(py "len([s for s in S if s['trace'] == '$trace' and s['parent'] not in ('$req_span', '$txid', '$tp_span')])")" \
    = 0 "nothing of the trace hangs elsewhere"
t_end

cat >> "$work/sluice.conf" <<CONF

[kafka]
brokers = embedded
bootstrap_file = $work/bootstrap

[module kafkaprobe]
topics = traced
CONF
kill -HUP "$daemon"
t_wait_until 30 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/readyz")" = 200 ] && [ -s "$work/bootstrap" ]'

t_case "Kafka: a produce span from enqueue to delivery, the traceparent header sent, a consume span continuing it"
trace=5555666677778888999900001111aaaa
code=$(curl -s -D "$work/h" -o "$work/b" -w '%{http_code}' -X POST \
    -H "traceparent: 00-$trace-$tp_span-01" "$base/kafkaprobe/produce?topic=traced&n=1&key=k1")
t_check "$code" = 200 "produced: $(cat "$work/b")"
req_span=$(cut -d- -f3 <<< "$(header "$work/h" traceparent)")
t_wait_until 20 "[ \"\$(py 'len([s for s in S if s[\"trace\"] == \"$trace\" and s[\"kind\"] == 5])')\" = 1 ]"
t_check "$(py "[(s['name'], s['parent'], s['attrs']['messaging.system'], s['attrs']['messaging.destination.name']) for s in S if s['trace'] == '$trace' and s['kind'] == 4]")" \
    = "[('send traced', '$req_span', 'kafka', 'traced')]" "one PRODUCER span under the request span"
send=$(py "[s['span'] for s in S if s['trace'] == '$trace' and s['kind'] == 4][0]")
t_check "$(py "[s['attrs']['messaging.kafka.offset'] >= 0 for s in S if s['span'] == '$send']")" = "[True]" \
    "it ended at the delivery report (offset known)"
t_check "$(kcat -C -b "$(cat "$work/bootstrap")" -t traced -e -q -f '%h\n')" = "traceparent=00-$trace-$send-01" \
    "kcat sees the traceparent header naming the produce span"
t_check "$(py "[(s['name'], s['parent'], s['attrs']['messaging.consumer.group.name'], s['attrs']['messaging.kafka.message.key']) for s in S if s['trace'] == '$trace' and s['kind'] == 5]")" \
    = "[('process traced', '$send', 'kafkaprobe', 'k1')]" "one CONSUMER span under the produce span"
t_end

t_case "Kafka: a traceparent header given by the module (an outbox row's) is continued, not the request's"
row=aaaabbbbccccddddeeeeffff00001111
curl -s -o "$work/b" -X POST "$base/kafkaprobe/produce?topic=traced&n=1&hdr=traceparent:00-$row-$tp_span-01"
t_wait_until 20 "[ \"\$(py 'len([s for s in S if s[\"trace\"] == \"$row\" and s[\"kind\"] == 5])')\" = 1 ]"
t_check "$(py "[s['parent'] for s in S if s['trace'] == '$row' and s['kind'] == 4]")" = "['$tp_span']" \
    "the produce span's parent is the given header"
t_check "$(kcat -C -b "$(cat "$work/bootstrap")" -t traced -e -q -f '%h\n' | grep -c "traceparent=00-$row-")" -eq 1 \
    "the message carries the row's trace"
t_check "$(kcat -C -b "$(cat "$work/bootstrap")" -t traced -e -q -f '%h\n' | grep -c "$tp_span")" -eq 0 \
    "with the produce span's position, not the given one"
t_end

t_case "clickhouse starts"
sl_svc_start clickhouse
t_check $? -eq 0 "clickhouse on ${SL_CH_URL:-nothing}"
t_end
[ -n "${SL_CH_URL:-}" ] || { t_exit; exit 1; }
cp "$SL_BUILD/_modules/outbox.so" "$SL_BUILD/_modules/aggregator.so" "$mods/"
cat >> "$work/sluice.conf" <<CONF

[clickhouse]
url = $SL_CH_URL

[module outbox]
topic = segment_events
poll_interval = 100ms

[module aggregator]
topics = segment_events
group = g_traced
batch_interval = 100ms
CONF
kill -HUP "$daemon"
t_wait_until 60 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/readyz")" = 200 ]'

t_case "one segment change followed end to end: request, SQL, outbox row, relay, aggregator, ClickHouse"
# A known traceparent in; every span of the change carries its trace id,
# each hung on the span that caused it: the relay's produce span on the
# transaction that wrote the outbox row (the row's traceparent column),
# the aggregator's consume span on the produce span (the Kafka header).
# The batch that carried the message to ClickHouse is a trace of its own
# (it carries other changes too), linked to the consume span; the
# ClickHouse insert is a span under the batch.
# The user and segment exist first: the traced change writes one outbox
# row (creating them writes their own, user_created and segment_created).
curl -s -o /dev/null -X POST -H 'Content-Type: application/json' "$base/user" -d '{"user_id": 42}'
curl -s -o /dev/null -X POST -H 'Content-Type: application/json' "$base/segment" -d '{"slug": "FOLLOW_ME"}'
trace=0af7651916cd43dd8448eb211c80319c
change_traced '{"user_id": 42, "add_segments": ["FOLLOW_ME"], "ttl": 3600}'
chc() { clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" "$@"; }
t_wait_until 60 "[ \"\$(chc --query \"SELECT count() FROM segment_events WHERE user_id = 42 AND slug = 'FOLLOW_ME'\" 2>/dev/null)\" = 1 ]"
t_check "$(chc --query "SELECT count() FROM segment_events WHERE user_id = 42 AND slug = 'FOLLOW_ME'")" = 1 "the change reached ClickHouse"
# until every message sent in the trace was consumed in it
t_wait_until 30 "[ \"\$(py 'len([s for s in S if s[\"trace\"] == \"$trace\" and s[\"kind\"] == 5]) >= len([s for s in S if s[\"trace\"] == \"$trace\" and s[\"kind\"] == 4]) >= 1')\" = True ]"
# of EXPR COND: EXPR of the spans of the trace for which COND holds, a list.
of() { py "[$1 for s in S if s['trace'] == '$trace' and ($2)]"; }
t_check "$(of "s['parent']" "s['span'] == '$req_span'")" = "['$tp_span']" "the request span, child of the caller's"
t_check "$(of "s['parent']" "s['name'] == 'transaction'")" = "['$req_span']" "one transaction span under it"
tx=$(py "[s['span'] for s in S if s['trace'] == '$trace' and s['name'] == 'transaction'][0]")
t_check "$(py "len([s for s in S if s['trace'] == '$trace' and s['parent'] == '$tx' and 'user_segments' in s['attrs'].get('db.query.text', '')])")" \
    -ge 1 "SQL statements nest under the transaction"
# Every outbox row the transaction wrote (the membership's, and any other
# event of the change) is relayed under it, and consumed under its send.
t_check "$(py "sorted(set(s['parent'] for s in S if s['trace'] == '$trace' and s['kind'] == 4 and s['name'] == 'send segment_events'))")" = "['$tx']" \
    "the relay's produce spans: children of the transaction that wrote the outbox rows"
sends=$(py "sorted(s['span'] for s in S if s['trace'] == '$trace' and s['kind'] == 4)")
t_check "$(py "sorted(s['parent'] for s in S if s['trace'] == '$trace' and s['kind'] == 5 and s['name'] == 'process segment_events')")" = "$sends" \
    "the aggregator's consume spans: one under each produce span"
t_check "$(of "(s['parent'], s['kind'], s['attrs']['db.system'])" "s['name'] == 'ZADD'")" = "[('$req_span', 3, 'redis')]" \
    "the ttl's Redis command: one ZADD span, CLIENT, db.system redis, under the request span"
consumes=$(py "sorted(s['span'] for s in S if s['trace'] == '$trace' and s['kind'] == 5)")
# batches: the batch spans linked to the followed trace
batches="[b for b in S if b['name'] == 'aggregator batch' and any(l[0] == '$trace' for l in b['links'])]"
# inserts: the ClickHouse inserts of segment_events under those batches
inserts="[s for s in S for b in $batches if s['trace'] == b['trace'] and s['parent'] == b['span'] and s['name'] == 'INSERT segment_events']"
t_wait_until 30 "[ \"\$(py \"sorted(set(l[1] for b in $batches for l in b['links'] if l[0] == '$trace')) == $consumes and len($inserts) >= 1\")\" = True ]"
t_check "$(py "sorted(set(l[1] for b in $batches for l in b['links'] if l[0] == '$trace'))")" = "$consumes" \
    "the aggregator's batch spans link to every consume span of the trace"
t_check "$(py "sorted(set((b['kind'], b['parent'], b['trace'] != '$trace', b['attrs']['messaging.batch.message_count'] >= len(b['links'])) for b in $batches))")" \
    = "[(1, '', True, True)]" "each a root INTERNAL span of a trace of its own, counting the messages it carries"
t_check "$(py "sorted(set((s['kind'], s['attrs']['db.system'], s['attrs']['db.collection.name']) for s in $inserts))")" \
    = "[(3, 'clickhouse', 'segment_events')]" "the ClickHouse insert: a CLIENT span under the batch"
t_end

t_case "outbox rows written by triggers carry the request's context, in a transaction or not"
# POST /user inserts the user in one statement outside any transaction;
# the users trigger writes user_created.  POST /segment writes
# segment_created from a transaction.  Each row is relayed under the span
# that wrote it, and consumed under that send.
# follow_row PATH BODY STATUS: sends it under the caller's span of trace
# $trace; sets req_span, and writer to the span under the request that
# the relay's produce span hangs on.
follow_row() {
    local code
    code=$(curl -s -D "$work/h" -o "$work/b" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        "$base$1" -H "traceparent: 00-$trace-$tp_span-01" -d "$2")
    t_check "$code" = "$3" "POST $1 $3: $(cat "$work/b")"
    req_span=$(cut -d- -f3 <<< "$(header "$work/h" traceparent)")
    t_wait_until 30 "[ \"\$(py 'len([s for s in S if s[\"trace\"] == \"$trace\" and s[\"kind\"] == 5])')\" -ge 1 ]"
    writer=$(py "sorted(set(s['parent'] for s in S if s['trace'] == '$trace' and s['kind'] == 4))")
    send=$(py "[s['span'] for s in S if s['trace'] == '$trace' and s['kind'] == 4]")
    t_check "$send" != "[]" "POST $1: its row relayed in the trace"
    t_check "$(py "[s['parent'] for s in S if s['trace'] == '$trace' and s['kind'] == 5]")" = "$send" \
        "POST $1: its row consumed under the relay's send"
}
trace=2222333344445555666677778888aaaa
follow_row /user '{}' 201
t_check "$(py "[(s['parent'], s['kind'], 'INSERT INTO users' in s['attrs']['db.query.text']) for s in S if [s['span']] == $writer]")" \
    = "[('$req_span', 3, True)]" "user_created: relayed under the statement that inserted the user, under the request"
t_check "$(py "len([s for s in S if s['trace'] == '$trace' and s['name'] == 'transaction'])")" = 0 "(no transaction there)"
trace=3333444455556666777788889999bbbb
follow_row /segment '{"slug": "ROW_TRACED"}' 201
t_check "$(py "[(s['name'], s['parent']) for s in S if [s['span']] == $writer]")" = "[('transaction', '$req_span')]" \
    "segment_created: relayed under the transaction that wrote it, under the request"
t_end

t_case "generator: traces started on its share of events, recorded at [tracing] sample_ratio"
# Every event starts a trace; a quarter of the traces are recorded.  Each
# is decided independently, so the count is binomial: 2000 draws at 0.25
# give 500 with a standard deviation of 19.4; the bounds are 5 of them.
sed -i 's/^sample_ratio = .*//; s/^max_queue = .*/max_queue = 100000/; s/^batch_size = .*/batch_size = 512/; s/^\[tracing\]$/[tracing]\nsample_ratio = 0.25/' "$work/sluice.conf"
cat >> "$work/sluice.conf" <<CONF

[module generator]
topic = gen_traced
mode = night
eps = 0.001
trace_share = 1
CONF
kill -HUP "$daemon"
t_wait_until 30 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/generator/status")" = 200 ]'
curl -s -o /dev/null -X POST "$base/generator/generate/burst?count=2000"
t_wait_until 60 "[ \"\$(curl -s $base/generator/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"delivered\"][\"total\"])')\" -ge 2000 ]"
t_wait_until 30 '[ "$(metric sluice_tracing_spans_pending)" = 0 ]'
delivered=$(curl -s "$base/generator/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["delivered"]["total"])')
n=$(py "len([s for s in S if s['name'] == 'generate'])")
t_check "$n" -ge 403 "recorded traces $n of $delivered events: at least 403"
t_check "$n" -le 597 "recorded traces $n of $delivered events: at most 597"
t_check "$(py "len(set(s['trace'] for s in S if s['name'] == 'generate')) == len([s for s in S if s['name'] == 'generate']) and all(s['parent'] == '' for s in S if s['name'] == 'generate')")" \
    = True "each a root of its own trace"
gens=$(py "len([s for s in S if s['name'] == 'send gen_traced' and s['parent'] in set(g['span'] for g in S if g['name'] == 'generate')])")
t_check "$gens" = "$n" "each with its produce span under it ($gens)"
t_end

kill "$daemon"
wait "$daemon" 2>/dev/null
t_exit
