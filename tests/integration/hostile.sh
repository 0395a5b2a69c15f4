#!/usr/bin/env bash
# The HTTP edge against hostile callers, on a real sluiced with the
# segments, generator and metrics modules over real PostgreSQL and Redis:
# secure by default (no anonymous listener off loopback), bearer tokens and
# scopes, cross-site and rebinding marks, content types, body, header, rate,
# time and connection limits (431, 503), HEAD without a body, request ids,
# TLS made here with openssl and rotated by SIGHUP.  Every refusal has its status and a JSON error with the
# request id, nothing is written to PostgreSQL, and the daemon keeps serving.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

t_scratch "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/_modules/segments.so" "$SL_BUILD/_modules/generator.so"
port=$(t_free_port)
mport=$(t_free_port)
base=http://127.0.0.1:$port
tbase=https://localhost:$mport

READ=read-token-0123456789abcdef
WRITE=write-token-0123456789abcdef
ADMIN=admin-token-0123456789abcdef
admin_digest=$(printf '%s' "$ADMIN" | sha256sum | cut -d' ' -f1)
cat > "$work/tokens" <<EOF
# name   scopes  secret
reader   read        $READ
writer   read,write  $WRITE
ops      admin       sha256:$admin_digest
EOF

psqlc() { psql -X -At "$SL_PG_DSN" -c "$1"; }
snapshot() {
    psqlc "SELECT (SELECT count(*) FROM users) || ',' || (SELECT count(*) FROM segments) || ',' ||
                  (SELECT count(*) FROM user_segments) || ',' || (SELECT count(*) FROM outbox)"
}
# call EXPECTED-CODE WHAT CURL-ARGS...: checks the status, that the body is a
# JSON error carrying the request id the response header names.
call() {
    local want=$1 what=$2 code id
    shift 2
    code=$(curl -s -D "$work/h" -o "$work/b" -w '%{http_code}' "$@")
    id=$(tr -d '\r' < "$work/h" | sed -n 's/^[Xx]-[Rr]equest-[Ii]d: //p')
    t_check "$code" = "$want" "$what: $want"
    if [ "$want" -ge 400 ]; then
        t_check "$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(bool(j["error"]) and j["request_id"] == sys.argv[2])' "$work/b" "$id" 2>&1)" = True \
            "$what: JSON error with the request id ($(head -c 150 "$work/b"))"
    fi
}
metric() {
    curl -s --cacert "$work/ca.pem" "$tbase/metrics" | awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print 0 }'
}
# The metrics module (/healthz, /readyz, /metrics) listens on its own TLS
# port; the segments API on [core] listen.
alive() {
    kill -0 "$daemon" 2>/dev/null && [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/ca.pem" "$tbase/healthz")" = 200 ] &&
        [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $READ" "$base/segment")" = 200 ] && echo alive
}
# mkcert NAME: a self-signed certificate for localhost and 127.0.0.1.
mkcert() {
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$work/$1.key" -out "$work/$1.crt" 2>/dev/null
}

t_case "postgres and redis start"
sl_svc_start postgres && sl_svc_start redis
t_check $? -eq 0 "postgres ${SL_PG_DSN:-none}, redis ${SL_REDIS_URL:-none}"
t_end
[ -n "${SL_PG_PORT:-}" ] && [ -n "${SL_REDIS_PORT:-}" ] || { t_exit; exit 1; }

mkcert one
cp "$work/one.crt" "$work/ca.pem"
cp "$work/one.crt" "$work/tls.crt"
cp "$work/one.key" "$work/tls.key"

write_conf() { # $core_extra: more [core] lines
    cat > "$work/sluice.conf" <<EOF
# written by tests/integration/hostile.sh
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = debug
tokens_file = tokens
max_connections = 20
request_timeout = 6s
max_header_size = 4096
access_log = access.log
${core_extra:-}

[postgres]
dsn = $SL_PG_DSN

[redis]
url = $SL_REDIS_URL

[kafka]
brokers = embedded

[module metrics]
listen = 127.0.0.1:$mport
scope = open
tls_cert = tls.crt
tls_key = tls.key
allowed_hosts = localhost

[module segments]
max_body = 2048

[module generator]
eps = 1
EOF
}

t_case "secure by default: no anonymous listener off loopback, at -t and at start"
write_conf
sed 's/^tokens_file = tokens$//; s/^listen = 127.0.0.1:'"$port"'$/listen = 0.0.0.0:'"$port"'/' "$work/sluice.conf" > "$work/open.conf"
"$SLUICED" -t -c "$work/open.conf" 2> "$work/t.out"
t_check $? -eq 1 "-t refuses 0.0.0.0 without tokens_file"
line=$(grep -n "^listen = 0.0.0.0" "$work/open.conf" | cut -d: -f1)
t_check "$(grep -c "open.conf:$line: \[core\] listen 0.0.0.0:$port is not on loopback" "$work/t.out")" = 1 "at the listen line: $(head -c 300 "$work/t.out")"
"$SLUICED" -c "$work/open.conf" 2> "$work/start.out" &
p=$!
t_wait_for 20 sh -c "! kill -0 $p 2>/dev/null"
wait $p
t_check $? -ne 0 "starting with it fails"
t_check "$(grep -c "is not on loopback" "$work/start.out")" -ge 1 "with the same error"
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$base/openapi.json")" = 000 "and nothing listens"
sed 's/^\[core\]$/[core]\nallow_anonymous = yes/' "$work/open.conf" > "$work/anon.conf"
"$SLUICED" -t -c "$work/anon.conf" 2> "$work/t.out"
t_check $? -eq 0 "allow_anonymous = yes accepts it: $(head -c 200 "$work/t.out")"
sed 's/^listen = 127.0.0.1:'"$port"'$/listen = 0.0.0.0:'"$port"'/' "$work/sluice.conf" > "$work/tok.conf"
"$SLUICED" -t -c "$work/tok.conf" 2> "$work/t.out"
t_check $? -eq 0 "so does a tokens_file: $(head -c 200 "$work/t.out")"
printf 'ok read %s\nbad reed %s\nshort read abc\n' "$READ" "$WRITE" > "$work/badtokens"
sed 's/^tokens_file = tokens$/tokens_file = badtokens/' "$work/sluice.conf" > "$work/badtok.conf"
"$SLUICED" -t -c "$work/badtok.conf" 2> "$work/t.out"
t_check $? -eq 1 "a bad tokens_file is refused"
t_check "$(grep -c "badtokens:2: scopes must be" "$work/t.out")" = 1 "scopes at badtokens:2"
t_check "$(grep -c "badtokens:3: the secret of token 'short'" "$work/t.out")" = 1 "secret at badtokens:3"
t_check "$(grep -c -- "$WRITE" "$work/t.out")" = 0 "no secret in the error"
t_end

t_case "the daemon starts with tokens and a TLS listener"
write_conf
"$SLUICED" -c "$work/sluice.conf" 2>>"$work/sluiced.log" &
daemon=$!
pids+=("$daemon")
t_wait_http "$base/openapi.json" 30
t_wait_until 30 '[ "$(curl -s -o /dev/null -w "%{http_code}" --cacert "$work/ca.pem" "$tbase/readyz")" = 200 ]'
t_check "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/ca.pem" "$tbase/readyz")" = 200 "ready; /readyz needs no token"
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$base/openapi.json")" = 200 "an open route of the core listener needs none either"
before=$(snapshot)
t_check "$before" != "" "rows counted: $before"
t_end

t_case "bearer tokens and scopes: 401, 403, and nothing written"
call 401 "no token" -X POST -H 'Content-Type: application/json' -d '{"slug":"HOSTILE_A"}' "$base/segment"
t_check "$(grep -ci '^WWW-Authenticate: Bearer' "$work/h")" = 1 "401 carries WWW-Authenticate: Bearer"
call 401 "unknown token" -H "Authorization: Bearer not-a-token-0123456789" "$base/segment"
call 401 "another scheme" -H "Authorization: Basic dXNlcjpwYXNz" "$base/segment"
call 403 "read token on a write route" -X POST -H "Authorization: Bearer $READ" -H 'Content-Type: application/json' \
    -d '{"slug":"HOSTILE_A"}' "$base/segment"
call 403 "write token on an admin route" -X POST -H "Authorization: Bearer $WRITE" "$base/generator/config/speed?eps=10000000"
call 403 "read token on DELETE" -X DELETE -H "Authorization: Bearer $READ" \
    -H 'Content-Type: application/json' -d '{"slug":"HOSTILE_A"}' "$base/segment"
call 401 "no token on the admin route" -X POST "$base/generator/generate/burst?count=100000"
t_check "$(snapshot)" = "$before" "nothing written"
call 200 "read token reads" -H "Authorization: Bearer $READ" "$base/segment"
call 200 "admin token (stored as sha256) operates" -X POST -H "Authorization: Bearer $ADMIN" "$base/generator/config/speed?eps=1"
call 201 "write token writes" -X POST -H "Authorization: Bearer $WRITE" -H 'Content-Type: application/json' \
    -d '{"slug":"HOSTILE_OK"}' "$base/segment"
t_check "$(psqlc "SELECT count(*) FROM segments WHERE slug = 'HOSTILE_OK'")" = 1 "and the write landed"
before=$(snapshot)
t_check "$(grep -c "(reader): .* refused 403" "$work/sluiced.log")" -ge 1 "the log names the token, never its secret"
t_check "$(grep -c -- "$WRITE\|$READ\|$ADMIN" "$work/sluiced.log")" = 0 "no secret in the log"
t_check "$(metric 'sluice_http_auth_failures_total{module="segments",reason="missing"}')" -ge 1 "missing counted"
t_check "$(metric 'sluice_http_auth_failures_total{module="segments",reason="invalid"}')" -ge 2 "invalid counted"
t_check "$(metric 'sluice_http_auth_failures_total{module="segments",reason="scope"}')" -ge 1 "scope counted"
t_end

t_case "cross-site, content type, body size, host: 403, 415, 413, 421"
W=(-H "Authorization: Bearer $WRITE")
call 403 "Sec-Fetch-Site: cross-site" -X POST "${W[@]}" -H 'Sec-Fetch-Site: cross-site' -H 'Content-Type: application/json' \
    -d '{"slug":"HOSTILE_B"}' "$base/segment"
call 403 "a foreign Origin" -X POST "${W[@]}" -H 'Origin: http://evil.example' -H 'Content-Type: application/json' \
    -d '{"slug":"HOSTILE_B"}' "$base/segment"
call 403 "a foreign Origin on a body-less control POST" -X POST -H "Authorization: Bearer $ADMIN" \
    -H 'Origin: http://evil.example' "$base/generator/config/speed?eps=10000000"
call 415 "JSON sent as text/plain" -X POST "${W[@]}" -H 'Content-Type: text/plain' -d '{"slug":"HOSTILE_B"}' "$base/segment"
call 415 "JSON sent as a form" -X POST "${W[@]}" -d '{"slug":"HOSTILE_B"}' "$base/segment"
head -c 4000 /dev/zero | tr '\0' 'x' > "$work/big"
call 413 "a body over the route's limit" -X POST "${W[@]}" -H 'Content-Type: application/json' \
    --data-binary @"$work/big" "$base/segment"
call 421 "a Host not in allowed_hosts (DNS rebinding)" --cacert "$work/ca.pem" -H 'Host: evil.example' "$tbase/metrics"
t_check "$(snapshot)" = "$before" "nothing written"
call 201 "same-origin Origin is fine" -X POST "${W[@]}" -H "Origin: http://127.0.0.1:$port" \
    -H 'Content-Type: application/json; charset=utf-8' -d '{"slug":"HOSTILE_C"}' "$base/segment"
before=$(snapshot)
t_end

t_case "request ids: taken when sane, made otherwise, logged with the reason"
curl -s -D "$work/h" -o /dev/null -H 'X-Request-Id: client-id-42' "$base/openapi.json"
t_check "$(tr -d '\r' < "$work/h" | sed -n 's/^X-Request-Id: //p')" = client-id-42 "a sane id is echoed"
curl -s -D "$work/h" -o /dev/null -H 'X-Request-Id: bad id with spaces' "$base/openapi.json"
id=$(tr -d '\r' < "$work/h" | sed -n 's/^X-Request-Id: //p')
t_check "$(grep -cE '^[0-9a-f]{16}-[0-9a-f]{16}$' <<< "$id")" = 1 "an insane one is replaced: $id"
call 401 "refused with a client id" -H 'X-Request-Id: trace-me-1' "$base/segment"
t_check "$(grep -c '"request_id":"trace-me-1"' "$work/b")" = 1 "the error carries it"
t_wait_for 5 grep -q 'request trace-me-1 .*refused 401' "$work/sluiced.log"
t_check $? -eq 0 "the log has the reason under the same id"
t_end

t_case "header size: 431 with a JSON error, however the head arrives; the daemon unharmed"
big=$(head -c 6000 /dev/zero | tr '\0' 'a')
call 431 "headers over max_header_size" -H "X-Big: $big" "$base/openapi.json"
t_check "$(grep -ci '^Connection: close' "$work/h")" = 1 "and the connection is closed"
# Answered before any request was read: no method, path or route known,
# the caller (auth is on) unknown; its request id and body size logged.
id=$(tr -d '\r' < "$work/h" | sed -n 's/^[Xx]-[Rr]equest-[Ii]d: //p')
t_check "$(grep "request_id=$id " "$work/access.log" | cut -d' ' -f2-6,8-)" \
    = "127.0.0.1 - - 431 $(stat -c %s "$work/b") module=core route=- request_id=$id trace_id=- token=-" \
    "the access log has the 431: $(grep "request_id=$id " "$work/access.log")"
call 200 "headers just under it" -H "X-Big: ${big:0:3900}" "$base/openapi.json"
# Line by line (so libevent has consumed most of the head before the
# limit is crossed), and pipelined behind a request already answered.
python3 - "$port" > "$work/heads.out" <<'PY'
import socket, sys, time
def statuses(chunks):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    for c in chunks:
        s.sendall(c)
        time.sleep(0.01)
    s.settimeout(10)
    data = b""
    while True:
        try:
            c = s.recv(65536)
        except OSError:
            break
        if not c:
            break
        data += c
    return ",".join(part.split(b" ")[0].decode() for part in data.split(b"HTTP/1.1 ")[1:])
line = b"X-Line: " + b"b" * 90 + b"\r\n"
get = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n"
print(statuses([get] + [line] * 50 + [b"\r\n"]), statuses([get + b"\r\n" + get + line * 50 + b"\r\n"]))
PY
read -r linewise pipelined < "$work/heads.out"
t_check "$linewise" = 431 "a head sent line by line: $linewise"
t_check "$pipelined" = 200,431 "an over-long head pipelined behind a good request: $pipelined"
t_check "$(metric 'sluice_http_connections_dropped_total{listener="127.0.0.1:'"$port"'",reason="header_too_large"}')" -ge 3 "counted as header_too_large"
t_check "$(alive)" = alive "still serving"
t_end

t_case "answers libevent gives itself (400, 413, 501) are lines of the access log too"
# A head that does not parse, a body over [core] max_body (1 MiB here),
# a method no route can have: evhttp answers them before any dispatch.
python3 - "$port" > "$work/own.out" <<'PY'
import socket, sys
def answer(raw):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(raw)
    s.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < length(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, body = data.split(b"\r\n\r\n", 1)
    return "%s:%d" % (head.split(b" ")[1].decode(), len(body))
def length(data):
    head = data.split(b"\r\n\r\n", 1)[0]
    return int(([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")] or [b"0"])[0])
print(answer(b"GARBAGE\r\n\r\n"),
      answer(b"POST /segment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n"),
      answer(b"OPTIONS /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"))
PY
read -r bad big method < "$work/own.out"
t_check "${bad%%:*} ${big%%:*} ${method%%:*}" = "400 413 501" "libevent's own answers: $bad $big $method"
for a in "$bad" "$big" "$method"; do
    t_check "$(grep -cE "^[^ ]+ 127\.0\.0\.1 - - ${a%%:*} ${a##*:} [0-9.]+ module=core route=- request_id=- trace_id=- token=-\$" "$work/access.log")" -ge 1 \
        "${a%%:*} logged with its body's ${a##*:} bytes: $(grep -E " - - ${a%%:*} " "$work/access.log" | tail -1)"
done
t_check "$(alive)" = alive "still serving"
t_end

t_case "HEAD: the headers of GET, with its Content-Length, and no body"
python3 - "$port" > "$work/head.out" <<'PY'
import socket, sys
# HEAD then GET on one connection: a body after HEAD's headers would be
# read as the start of the second answer.
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"HEAD /openapi.json HTTP/1.1\r\nHost: x\r\n\r\nGET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
s.settimeout(10)
data = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    data += c
head, rest = data.split(b"\r\n\r\n", 1)
def length(h):
    return int([l.split(b":")[1] for l in h.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
head2, body2 = rest.split(b"\r\n\r\n", 1)
print(head.split(b" ")[1].decode(), length(head), rest[:8].decode(errors="replace"), length(head2), len(body2))
PY
read -r hstatus hlen next glen gbody < "$work/head.out"
t_check "$hstatus" = 200 "HEAD answered 200"
t_check "$next" = HTTP/1.1 "the next answer starts right after HEAD's headers (no body): $(head -c 80 "$work/head.out")"
t_check "$hlen" = "$glen" "HEAD's Content-Length ($hlen) is GET's ($glen)"
t_check "$gbody" = "$glen" "and GET sends that many bytes"
t_end

t_case "rate limit per token: 429 with Retry-After"
core_extra=$'rate_limit = 0.2\nrate_burst = 3' write_conf
kill -HUP "$daemon"
t_wait_for 20 grep -q 'reload complete' "$work/sluiced.log"
codes=""
for i in 1 2 3 4 5; do
    codes="$codes $(curl -s -D "$work/h" -o "$work/b" -w '%{http_code}' -H "Authorization: Bearer $READ" "$base/segment")"
done
t_check "$codes" = " 200 200 200 429 429" "burst of 3, then 429:$codes"
t_check "$(tr -d '\r' < "$work/h" | sed -n 's/^Retry-After: //p')" -ge 1 "Retry-After given"
t_check "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["error"])' "$work/b")" = "too many requests" "JSON error"
t_check "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $WRITE" "$base/segment")" = 200 "another token has its own allowance"
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$base/openapi.json")" = 200 "open routes are not limited"
write_conf
kill -HUP "$daemon"
t_wait_until 20 '[ "$(grep -c "reload complete" "$work/sluiced.log")" -ge 2 ]'
t_end

t_case "a trickling client is cut at request_timeout; a flood beyond max_connections is answered 503"
# One byte every 0.5 s would take a minute for the whole request; the
# server must close the connection itself, at request_timeout.
python3 - "$port" > "$work/trickle.out" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
req = b"HEAD /openapi.json HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
closed_by_server = False
for b in req:
    try:
        s.send(bytes([b]))
    except OSError:
        closed_by_server = True
        break
    s.settimeout(0.5)
    try:
        if s.recv(100) == b"":
            closed_by_server = True
            break
    except socket.timeout:
        pass
    except OSError:
        closed_by_server = True
        break
print("closed" if closed_by_server else "completed")
PY
t_check "$(cat "$work/trickle.out")" = closed "the server closed the trickling connection"
t_check "$(metric 'sluice_http_connections_dropped_total{listener="127.0.0.1:'"$port"'",reason="deadline"}')" -ge 1 "counted as deadline"
python3 - "$port" > "$work/flood.out" <<'PY'
import json, select, socket, sys, time
port = int(sys.argv[1])
def get(s):
    # A route no module serves: the core's 404, a small JSON body of known length.
    s.sendall(b"GET /no/such/route HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            return "eof"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            return "eof"
        body += chunk
    return head.split(b" ")[1].decode()
keep = socket.create_connection(("127.0.0.1", port))
first = get(keep)
flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
# Those over the cap are answered 503 without a request being read, then
# closed; the others stay silent, waiting for a request.  Wait for the 41
# over the cap to be answered and closed rather than for a guessed time
# (30 s bounds a failure).
def refused_503(s):
    s.settimeout(5)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    if b"\r\n\r\n" not in data:
        return False
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    return lines[0].startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in lines and bool(json.loads(body)["error"])
refused, waiting = 0, list(flood)
deadline = time.monotonic() + 30
while refused < 41 and waiting and time.monotonic() < deadline:
    readable, _, _ = select.select(waiting, [], [], 0.5)
    for s in readable:
        waiting.remove(s)
        if refused_503(s):
            refused += 1
second = get(keep)
print(first, second, refused)
for s in flood:
    s.close()
PY
read -r first second refused < "$work/flood.out"
t_check "$first $second" = "404 404" "a connection open before the flood still served"
t_check "$refused" -ge 41 "of 60 flooding connections, $refused answered 503 with Retry-After and a JSON error, then closed (cap 20)"
t_check "$(metric 'sluice_http_connections_dropped_total{listener="127.0.0.1:'"$port"'",reason="over_capacity"}')" -ge 41 "counted as over_capacity"
t_check "$(grep -cE '^[^ ]+ 127\.0\.0\.1 - - 503 [1-9][0-9]* [0-9.]+ module=core route=- request_id=[^ -][^ ]* trace_id=- token=-$' "$work/access.log")" -ge "$refused" \
    "each 503 of the flood is a line of the access log, with its request id"
t_wait_until 10 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/openapi.json")" = 200 ]'
t_check "$(alive)" = alive "serving again once the flood is gone"
t_end

t_case "TLS: a self-signed certificate, rotated by SIGHUP without closing the listener"
t_check "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/ca.pem" "$tbase/metrics")" = 200 "HTTPS with the first certificate"
t_check "$(curl -s -o /dev/null -w '%{http_code}' "http://localhost:$mport/metrics")" != 200 "no plain HTTP on the TLS listener"
t_check "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/ca.pem" "$tbase/healthz")" = 200 "scope = open: no token needed there"
mkcert two
cp "$work/two.crt" "$work/tls.crt"
cp "$work/two.key" "$work/tls.key"
reloads=$(grep -c "reload complete" "$work/sluiced.log")
kill -HUP "$daemon"
t_wait_until 20 '[ "$(grep -c "reload complete" "$work/sluiced.log")" -gt '"$reloads"' ]'
t_check "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/two.crt" "$tbase/metrics")" = 200 "the rotated certificate serves"
cp "$work/two.crt" "$work/ca.pem"
t_check "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/one.crt" "$tbase/metrics")" = 000 "the old one no longer"
t_check "$(grep -c "closed listener 127.0.0.1:$mport" "$work/sluiced.log")" = 0 "the listener was kept"
cp "$work/one.crt" "$work/tls.crt" # a certificate that does not match the key
kill -HUP "$daemon"
t_wait_for 20 grep -q "tls_key .*\(does not match\|mismatch\)" "$work/sluiced.log"
t_check $? -eq 0 "a mismatched pair fails the reload: $(grep -m1 'tls_key .*mismatch' "$work/sluiced.log" | head -c 200)"
t_check "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/two.crt" "$tbase/metrics")" = 200 "and the running certificate stays"
t_end

t_case "after all of it: nothing written, still serving"
t_check "$(snapshot)" = "$before" "rows unchanged by every refusal"
t_check "$(alive)" = alive "sluiced serving"
kill -TERM "$daemon"
wait "$daemon"
t_check $? -eq 0 "SIGTERM: exit 0"
t_check "$(grep -c 'ERROR: AddressSanitizer\|runtime error' "$work/sluiced.log")" = 0 "sanitizer-clean"
t_end

t_exit
