#!/usr/bin/env bash
# The segments module as a user meets it: a real sluiced with the segments
# and metrics modules over real PostgreSQL and Redis, driven with curl and
# checked with psql and redis-cli.  Every endpoint's happy and error paths
# (nothing written by a refused request), the seed flow end to end, outbox
# rows per change, percentage rollout against an independent hash, TTL
# expiry through the Redis schedule and after FLUSHALL, PostgreSQL
# restarted under load, 64 concurrent clients on the same users, the
# OpenAPI document validated and held against every answer seen, /docs
# rendered by headless Chromium, metrics read by promtool.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

t_scratch "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/_modules/segments.so"
port=$(t_free_port)
base=http://127.0.0.1:$port
calls=$work/calls # "METHOD TEMPLATE CODE" of every answer, for the OpenAPI check

# npm packages for /docs and the OpenAPI validator, installed once per machine.
npm_dir=${SL_NPM_DIR:-${HOME:-/root}/.cache/sluice-npm}
if [ ! -f "$npm_dir/node_modules/swagger-ui-dist/swagger-ui-bundle.js" ] ||
    [ ! -d "$npm_dir/node_modules/@apidevtools/swagger-parser" ]; then
    mkdir -p "$npm_dir"
    (cd "$npm_dir" && { [ -f package.json ] || npm init -y >/dev/null; } &&
        npm install --no-audit --no-fund swagger-ui-dist @apidevtools/swagger-parser >/dev/null 2>&1)
fi

# req METHOD TEMPLATE PATH [CURL ARGS...]: prints "CODE BODY", records the call.
req() {
    local m=$1 tpl=$2 path=$3 out code
    shift 3
    out=$(curl -s --max-time 20 -X "$m" -H 'Content-Type: application/json' -w '\n%{http_code}' "$@" "$base$path")
    code=${out##*$'\n'}
    echo "$m $tpl $code" >> "$calls"
    python3 -c 'import json,sys; print(json.dumps({"m": sys.argv[1], "p": sys.argv[2], "c": sys.argv[3], "b": sys.argv[4]}))' \
        "$m" "$tpl" "$code" "${out%$'\n'*}" >> "$work/bodies.jsonl"
    echo "$code ${out%$'\n'*}"
}
code_of() { echo "${1%% *}"; }
body_of() { echo "${1#* }"; }
# py EXPR < json: a Python expression over the JSON `j`.
py() { python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
psqlc() { psql -X -At "$SL_PG_DSN" -c "$1"; }
rcli() { redis-cli -h 127.0.0.1 -p "$SL_REDIS_PORT" "$@"; }
metric() {
    curl -s "$base/metrics" | awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "absent" }'
}
# Rows of every table the API writes, for "nothing written" checks.
snapshot() {
    psqlc "SELECT (SELECT count(*) FROM users) || ',' || (SELECT count(*) FROM segments) || ',' ||
                  (SELECT count(*) FROM user_segments) || ',' || (SELECT count(*) FROM segment_history) || ',' ||
                  (SELECT count(*) FROM outbox)"
}

t_case "postgres and redis start"
sl_svc_start postgres && sl_svc_start redis
t_check $? -eq 0 "postgres ${SL_PG_DSN:-none}, redis ${SL_REDIS_URL:-none}"
t_end
[ -n "${SL_PG_PORT:-}" ] && [ -n "${SL_REDIS_PORT:-}" ] || { t_exit; exit 1; }

cat > "$work/sluice.conf" <<EOF
# written by tests/integration/segments.sh
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = info
drain_timeout = 10s

[postgres]
dsn = $SL_PG_DSN
pool_size = 8
connect_timeout = 2s
query_timeout = 5s
reconnect_max = 500ms

[redis]
url = $SL_REDIS_URL

[module metrics]

[module segments]
max_body = 4096
sweep_interval = 100ms
docs_dir = $npm_dir/node_modules/swagger-ui-dist
EOF

t_case "sluiced -t accepts the config and the shipped role file"
"$SLUICED" -t -c "$work/sluice.conf" 2>"$work/t.out"
t_check $? -eq 0 "test config: $(head -c 200 "$work/t.out")"
sed "s|^modules_dir = .*|modules_dir = $mods|" "$SL_TOP/conf/segments.conf" > "$work/role.conf"
"$SLUICED" -t -c "$work/role.conf" 2>"$work/t.out"
t_check $? -eq 0 "conf/segments.conf: $(head -c 200 "$work/t.out")"
sed 's/^max_body = 4096/max_body = 4096\nttl_key =/' "$work/sluice.conf" > "$work/bad.conf"
line=$(grep -n '^ttl_key =' "$work/bad.conf" | cut -d: -f1)
"$SLUICED" -t -c "$work/bad.conf" 2>"$work/t.out"
t_check $? -eq 1 "an empty ttl_key: exit 1"
t_check "$(grep -c "bad.conf:$line: \[module segments\] ttl_key: must be 1 to 200 characters" "$work/t.out")" -eq 1 "reported at bad.conf:$line"
t_end

"$SLUICED" -c "$work/sluice.conf" 2>>"$work/sluiced.log" &
daemon=$!
pids+=("$daemon")
t_wait_http "$base/healthz" 15

t_case "the schema is applied and the module gets ready"
t_wait_until 20 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/readyz")" = 200 ]'
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 "/readyz 200"
t_check "$(psqlc "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables
                  WHERE table_schema = 'public' AND table_name IN ('users','segments','user_segments','segment_history','outbox')")" \
    = "outbox,segment_history,segments,user_segments,users" "the five tables exist"
t_check "$(psqlc "SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'outbox'")" \
    = "id:bigint,aggregate_type:text,aggregate_id:text,event_type:text,payload:jsonb,created_at:timestamp with time zone,traceparent:text" \
    "outbox has the six contract columns and the writer's trace context"
t_end

# ---------------------------------------------------------------- seed flow
t_case "seed flow: create user, create segments, add two with ttl, list, history CSV"
r=$(req POST /user /user)
t_check "$(code_of "$r")" = 201 "POST /user 201: $r"
uid=$(body_of "$r" | py 'j["user_id"]')
for s in AVITO_VOICE_MESSAGES AVITO_PERFORMANCE_VAS AVITO_DISCOUNT_30; do
    r=$(req POST /segment /segment -d "{\"slug\":\"$s\"}")
    t_check "$(code_of "$r")" = 201 "POST /segment $s 201"
done
t_check "$(body_of "$r" | py '"created_at" in j')" = True "the answer has created_at: $r"
r=$(req POST /segment/user /segment/user -d "{\"user_id\":$uid,\"add_segments\":[\"AVITO_VOICE_MESSAGES\",\"AVITO_DISCOUNT_30\"],\"ttl\":86400}")
t_check "$(code_of "$r")" = 200 "POST /segment/user 200"
t_check "$(body_of "$r" | py '(j["segments_added"], j["segments_deleted"])')" = "(2, 0)" "2 added, 0 deleted: $r"
r=$(req GET /segment/user/{id} "/segment/user/$uid")
t_check "$(body_of "$r" | py '[s["slug"] for s in j["segments"]]')" = "['AVITO_DISCOUNT_30', 'AVITO_VOICE_MESSAGES']" "listed: $r"
t_check "$(body_of "$r" | py 'all("expires_at" in s for s in j["segments"])')" = True "with their expiry"
t_check "$(rcli ZSCORE sluice:segments:ttl "$uid:AVITO_DISCOUNT_30" | cut -d. -f1)" \
    = "$(psqlc "SELECT floor(extract(epoch FROM expires_at)) FROM user_segments WHERE user_id = $uid AND slug = 'AVITO_DISCOUNT_30'")" \
    "scheduled in Redis at its expires_at"
r=$(req POST /segment/user /segment/user -d "{\"user_id\":$uid,\"delete_segments\":[\"AVITO_VOICE_MESSAGES\"]}")
t_check "$(body_of "$r" | py '(j["segments_added"], j["segments_deleted"])')" = "(0, 1)" "1 deleted: $r"
r=$(req GET /segment /segment)
t_check "$(body_of "$r" | py '{s["slug"]: s["members"] for s in j["segments"]}')" \
    = "{'AVITO_DISCOUNT_30': 1, 'AVITO_PERFORMANCE_VAS': 0, 'AVITO_VOICE_MESSAGES': 0}" "GET /segment with member counts: $r"
y=$(date -u +%Y); m=$(date -u +%-m)
r=$(req GET /segment/history/{id} "/segment/history/$uid?year=$y&month=$m")
t_check "$(code_of "$r")" = 200 "history link 200: $r"
link=$(body_of "$r" | py 'j["report_link"]')
t_check "$(echo "$link" | grep -cE "^$base/segment/reports/$uid-$y-[0-9]{2}-[0-9a-f]{32}\.csv$")" = 1 "a signed link: $link"
curl -s -D "$work/csv.h" -o "$work/seed.csv" "$link"
echo "GET /segment/reports/{name} $(head -n1 "$work/csv.h" | cut -d' ' -f2)" >> "$calls"
t_check "$(head -n1 "$work/seed.csv" | tr -d '\r')" = "user_id,segment_slug,operation,executed_at" "CSV header"
t_check "$(tail -n +2 "$work/seed.csv" | tr -d '\r' | cut -d, -f1-3 | tr '\n' ' ')" \
    = "$uid,AVITO_DISCOUNT_30,I $uid,AVITO_VOICE_MESSAGES,I $uid,AVITO_VOICE_MESSAGES,D " "rows I, I, D in order"
t_check "$(grep -ci 'transfer-encoding: chunked' "$work/csv.h")" = 1 "streamed (chunked)"
t_end

t_case "every change wrote one outbox event in its transaction, shaped per CONTRACTS.md"
t_check "$(psqlc "SELECT count(*) FROM outbox WHERE aggregate_id = '$uid' AND aggregate_type = 'segment'")" = 3 "3 membership events for 3 changes"
t_check "$(psqlc "SELECT count(*) FROM outbox WHERE aggregate_id = '$uid' AND aggregate_type = 'user' AND event_type = 'user_created'")" = 1 "and the user's creation"
t_check "$(psqlc "SELECT string_agg(event_type || ':' || (payload->>'operation') || ':' || (payload->>'slug'), ',' ORDER BY id) FROM outbox WHERE aggregate_id = '$uid' AND aggregate_type = 'segment'")" \
    = "segment_added:I:AVITO_DISCOUNT_30,segment_added:I:AVITO_VOICE_MESSAGES,segment_removed:D:AVITO_VOICE_MESSAGES" "types, operations and slugs"
t_check "$(psqlc "SELECT count(*) FROM outbox WHERE aggregate_id = '$uid' AND aggregate_type = 'segment'
                  AND (payload->>'user_id')::bigint = $uid AND jsonb_typeof(payload->'user_id') = 'number'
                  AND payload->>'ts' ~ '^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$'")" = 3 \
    "aggregate_type segment, numeric user_id, RFC 3339 UTC ts: $(psqlc "SELECT payload FROM outbox WHERE aggregate_id = '$uid' LIMIT 1")"
t_check "$(psqlc "SELECT count(*) FROM outbox o JOIN segment_history h ON h.user_id::text = o.aggregate_id
                  AND h.slug = o.payload->>'slug' AND h.operation = o.payload->>'operation'
                  AND to_char(h.executed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') = o.payload->>'ts'
                  WHERE o.aggregate_id = '$uid'")" = 3 "each event matches its history row and time"
t_end

# ------------------------------------------------------------- bad input
t_case "bad input: 4xx JSON naming the problem, nothing written"
before=$(snapshot)
long=$(printf 'A%.0s' $(seq 1 65))
big=$(python3 -c 'print("{\"slug\": \"" + "A" * 5000 + "\"}")')
while IFS='|' read -r m tpl path want needle body; do
    [ -n "$m" ] || continue
    if [ -n "$body" ]; then
        r=$(req "$m" "$tpl" "$path" --data-binary "$body")
    else
        r=$(req "$m" "$tpl" "$path")
    fi
    ok=$(body_of "$r" | python3 -c 'import json,sys
try:
    j = json.load(sys.stdin); print(isinstance(j.get("error"), str) and sys.argv[1].lower() in j["error"].lower())
except Exception: print(False)' "$needle")
    t_check "$(code_of "$r")/$ok" = "$want/True" "$m $path $(echo "$body" | head -c 80) -> $(echo "$r" | head -c 160)"
done <<EOF
POST|/segment|/segment|400|malformed JSON|{"slug": "A"
POST|/segment|/segment|400|JSON object|["A"]
POST|/segment|/segment|400|empty body|
POST|/segment|/segment|400|slug must be a string|{"slug": 5}
POST|/segment|/segment|400|must not be empty|{"slug": ""}
POST|/segment|/segment|400|at most 64|{"slug": "$long"}
POST|/segment|/segment|400|A-Z, 0-9 and _|{"slug": "avito_lower"}
POST|/segment|/segment|400|A-Z, 0-9 and _|{"slug": "X'; DROP TABLE users; --"}
POST|/segment|/segment|400|A-Z, 0-9 and _|{"slug": "../../etc/passwd"}
POST|/segment|/segment|400|user_percent|{"slug": "P1", "user_percent": -1}
POST|/segment|/segment|400|user_percent|{"slug": "P1", "user_percent": 100.5}
POST|/segment|/segment|400|user_percent|{"slug": "P1", "user_percent": "50"}
POST|/segment|/segment|400|two decimals|{"slug": "P1", "user_percent": 33.333}
POST|/segment|/segment|400|unknown field|{"slug": "P1", "percent": 5}
POST|/segment|/segment|400|slug is required|{}
POST|/segment|/segment|409|already exists|{"slug": "AVITO_DISCOUNT_30"}
DELETE|/segment|/segment|404|no segment|{"slug": "NOPE"}
PATCH|/segment/{slug}|/segment/NOPE|404|no segment NOPE|{"user_percent": 5}
PATCH|/segment/{slug}|/segment/avito_lower|400|A-Z, 0-9 and _|{"user_percent": 5}
PATCH|/segment/{slug}|/segment/AVITO_DISCOUNT_30|400|nothing to change|{}
PATCH|/segment/{slug}|/segment/AVITO_DISCOUNT_30|400|malformed JSON|{"user_percent": 5
PATCH|/segment/{slug}|/segment/AVITO_DISCOUNT_30|400|user_percent|{"user_percent": 100.5}
PATCH|/segment/{slug}|/segment/AVITO_DISCOUNT_30|400|two decimals|{"user_percent": 1.234}
PATCH|/segment/{slug}|/segment/AVITO_DISCOUNT_30|400|user_percent|{"user_percent": "5"}
PATCH|/segment/{slug}|/segment/AVITO_DISCOUNT_30|400|unknown field|{"slug": "OTHER"}
PATCH|/segment/{slug}|/segment/AVITO_DISCOUNT_30|400|description must be|{"description": 5}
PATCH|/segment/{slug}|/segment/AVITO_DISCOUNT_30|400|control characters|{"description": "a\u0001b"}
PATCH|/segment/{slug}|/segment/AVITO_DISCOUNT_30|400|at most 500|{"description": "$(printf 'd%.0s' $(seq 1 501))"}
DELETE|/segment|/segment|400|A-Z, 0-9 and _|{"slug": "a b"}
POST|/user|/user|400|unknown field|{"id": 5}
POST|/segment/user|/segment/user|400|user_id must be an integer|{"user_id": "1", "add_segments": ["AVITO_DISCOUNT_30"]}
POST|/segment/user|/segment/user|400|user_id must be an integer|{"user_id": 1.5, "add_segments": ["AVITO_DISCOUNT_30"]}
POST|/segment/user|/segment/user|400|user_id must be an integer|{"user_id": -3, "add_segments": ["AVITO_DISCOUNT_30"]}
POST|/segment/user|/segment/user|400|user_id is required|{"add_segments": ["AVITO_DISCOUNT_30"]}
POST|/segment/user|/segment/user|400|must be an array|{"user_id": 900001, "add_segments": "AVITO_DISCOUNT_30"}
POST|/segment/user|/segment/user|400|must be a string|{"user_id": 900001, "add_segments": [7]}
POST|/segment/user|/segment/user|400|A-Z, 0-9 and _|{"user_id": 900001, "add_segments": ["1' OR '1'='1"]}
POST|/segment/user|/segment/user|400|both add_segments and delete_segments|{"user_id": 900001, "add_segments": ["AVITO_DISCOUNT_30"], "delete_segments": ["AVITO_DISCOUNT_30"]}
POST|/segment/user|/segment/user|400|listed twice|{"user_id": 900001, "add_segments": ["AVITO_DISCOUNT_30", "AVITO_DISCOUNT_30"]}
POST|/segment/user|/segment/user|400|both empty|{"user_id": 900001}
POST|/segment/user|/segment/user|400|ttl must be|{"user_id": 900001, "add_segments": ["AVITO_DISCOUNT_30"], "ttl": -1}
POST|/segment/user|/segment/user|400|ttl must be|{"user_id": 900001, "add_segments": ["AVITO_DISCOUNT_30"], "ttl": 0}
POST|/segment/user|/segment/user|400|ttl must be|{"user_id": 900001, "add_segments": ["AVITO_DISCOUNT_30"], "ttl": 1e12}
POST|/segment/user|/segment/user|400|ttl must be|{"user_id": 900001, "add_segments": ["AVITO_DISCOUNT_30"], "ttl": "60"}
POST|/segment/user|/segment/user|400|ttl must be|{"user_id": 900001, "add_segments": ["AVITO_DISCOUNT_30"], "ttl": 1.5}
POST|/segment/user|/segment/user|400|unknown field|{"user_id": 900001, "add_segments": ["AVITO_DISCOUNT_30"], "tll": 5}
POST|/segment/user|/segment/user|404|no segment NOPE_MISSING|{"user_id": 900001, "add_segments": ["AVITO_DISCOUNT_30", "NOPE_MISSING"], "ttl": 60}
POST|/segment/user|/segment/user|404|no segment NOPE_MISSING|{"user_id": 900001, "delete_segments": ["NOPE_MISSING"]}
POST|/segment/user|/segment/user|413|over the limit|$big
GET|/segment/user/{id}|/segment/user/abc|400|user id must be|
GET|/segment/user/{id}|/segment/user/0|400|user id must be|
GET|/segment/user/{id}|/segment/user/99999999999999999|400|user id must be|
GET|/segment/user/{id}|/segment/user/1%27%20OR%201=1|400|user id must be|
GET|/segment/user/{id}|/segment/user/900001|404|no user 900001|
GET|/segment/history/{id}|/segment/history/$uid?year=1999&month=1|400|year must be|
GET|/segment/history/{id}|/segment/history/$uid?year=2026&month=13|400|month must be|
GET|/segment/history/{id}|/segment/history/$uid?year=2026|400|month must be|
GET|/segment/reports/{name}|/segment/reports/..%2F..%2F..%2Fetc%2Fpasswd|404|no such report|
GET|/segment/reports/{name}|/segment/reports/$uid-$y-$(printf %02d "$m")-00000000000000000000000000000000.csv|404|no such report|
GET|/segment/reports/{name}|/segment/reports/$((uid + 1))-$y-$(printf %02d "$m")-${link: -36:32}.csv|404|no such report|
GET|/segment/reports/{name}|/segment/reports/$uid-$y-$(printf %02d "$m")-${link: -36:32}.csv.txt|404|no such report|
EOF
t_check "$(snapshot)" = "$before" "no table changed (users,segments,memberships,history,outbox = $before)"
t_check "$(psqlc "SELECT count(*) FROM users WHERE id = 900001")" = 0 "the user of the refused requests was not created"
t_check "$(psqlc "SELECT count(*) FROM pg_tables WHERE tablename = 'users'")" = 1 "injection strings did nothing"
t_end

# ---------------------------------------------------------------- rollout
t_case "percentage rollout: exactly round(p% x users) at creation, sticky hash for later users"
for i in $(seq 1 199); do curl -s -o /dev/null -X POST "$base/user"; done
nusers=$(psqlc "SELECT count(*) FROM users")
r=$(req POST /segment /segment -d '{"slug":"ROLLOUT_25","user_percent":25}')
want=$(python3 -c "from decimal import Decimal, ROUND_HALF_UP; print(int((Decimal($nusers) * 25 / 100).quantize(Decimal(1), ROUND_HALF_UP)))")
t_check "$(body_of "$r" | py 'j["users_assigned"]')" = "$want" "users_assigned = round(25% of $nusers) = $want: $r"
t_check "$(psqlc "SELECT count(*) FROM user_segments WHERE slug = 'ROLLOUT_25'")" = "$want" "$want memberships stored"
t_check "$(psqlc "SELECT count(*) FROM outbox WHERE payload->>'slug' = 'ROLLOUT_25' AND event_type = 'segment_added'")" = "$want" "and $want outbox events"
r=$(req POST /segment /segment -d '{"slug":"ROLLOUT_EDGE","user_percent":12.34}')
want=$(python3 -c "from decimal import Decimal, ROUND_HALF_UP; print(int((Decimal($nusers) * Decimal('12.34') / 100).quantize(Decimal(1), ROUND_HALF_UP)))")
t_check "$(body_of "$r" | py 'j["users_assigned"]')" = "$want" "12.34% of $nusers -> $want"
for i in $(seq 1 100); do curl -s -X POST "$base/user"; echo; done > "$work/new_users"
# The same bucket computed independently: SHA-256("<id>:<slug>"), first 4 bytes, mod 10000.
mismatch=$(python3 - "$work/new_users" <<'PY'
import hashlib, json, subprocess, sys, os
bad = 0
ids = [json.loads(l)["user_id"] for l in open(sys.argv[1]) if l.strip()]
for slug, pct in (("ROLLOUT_25", 2500), ("ROLLOUT_EDGE", 1234)):
    want = {u for u in ids if int.from_bytes(hashlib.sha256(f"{u}:{slug}".encode()).digest()[:4], "big") % 10000 < pct}
    out = subprocess.run(["psql", "-X", "-At", os.environ["SL_PG_DSN"], "-c",
                          f"SELECT user_id FROM user_segments WHERE slug = '{slug}' AND user_id >= {min(ids)}"],
                         capture_output=True, text=True).stdout.split()
    got = {int(x) for x in out}
    bad += len(want ^ got)
    print(f"{slug}: {len(got)} of {len(ids)} new users", file=sys.stderr)
print(bad)
PY
)
t_check "$mismatch" = 0 "new users' memberships equal the independent hash (mismatches: $mismatch)"
t_check "$(psqlc "SELECT segments_bucket(42, 'ROLLOUT_25')")" = "$(python3 -c 'import hashlib; print(int.from_bytes(hashlib.sha256(b"42:ROLLOUT_25").digest()[:4], "big") % 10000)')" \
    "segments_bucket() in SQL equals the hash"
for u in 990001 990002 990003 990004 990005 990006 990007 990008; do
    curl -s -H 'Content-Type: application/json' -o /dev/null -X POST "$base/segment/user" -d "{\"user_id\":$u,\"add_segments\":[\"AVITO_DISCOUNT_30\"]}"
done
implicit=$(python3 - <<'PY'
import hashlib, os, subprocess
bad = 0
for u in range(990001, 990009):
    want = int.from_bytes(hashlib.sha256(f"{u}:ROLLOUT_25".encode()).digest()[:4], "big") % 10000 < 2500
    got = subprocess.run(["psql", "-X", "-At", os.environ["SL_PG_DSN"], "-c",
                          f"SELECT count(*) FROM user_segments WHERE user_id = {u} AND slug = 'ROLLOUT_25'"],
                         capture_output=True, text=True).stdout.strip() == "1"
    bad += want != got
print(bad)
PY
)
t_check "$implicit" = 0 "users created by POST /segment/user join by the same hash (mismatches: $implicit)"
t_check "$(python3 -c "print($(metric 'sluice_segments_percent_assignments_total{when="new_user"}') > 0)")" = True \
    "percent assignments counted for new users"
t_end

# ------------------------------------------------------------ PATCH rollout
t_case "PATCH /segment/{slug}: a rollout grows and shrinks exactly, stickily, each change in history"
# rnd N P: round(P% of N), half up like PostgreSQL's round()
rnd() { python3 -c "from decimal import Decimal as D, ROUND_HALF_UP as H; print(int((D($1) * D('$2') / 100).quantize(D(1), H)))"; }
members() { psqlc "SELECT string_agg(user_id::text, ',' ORDER BY user_id) FROM user_segments WHERE slug = 'ROLLOUT_P'"; }
# first N: the first N users in the sticky order, computed apart from the
# server (SHA-256 bucket, then id), as a sorted list
first() {
    psqlc "SELECT id FROM users" | python3 -c '
import hashlib, sys
ids = [int(x) for x in sys.stdin.read().split()]
key = lambda u: (int.from_bytes(hashlib.sha256(f"{u}:ROLLOUT_P".encode()).digest()[:4], "big") % 10000, u)
print(",".join(str(u) for u in sorted(sorted(ids, key=key)[:int(sys.argv[1])])))' "$1"
}
hist() { psqlc "SELECT count(*) FROM segment_history WHERE slug = 'ROLLOUT_P' AND operation = '$1'"; }
nusers=$(psqlc "SELECT count(*) FROM users")
r=$(req POST /segment /segment -d '{"slug":"ROLLOUT_P","user_percent":10}')
w1=$(rnd "$nusers" 10)
t_check "$(members)" = "$(first "$w1")" "created at 10%: the first $w1 of $nusers users in the sticky order ($r)"
before=$(members)
r=$(req PATCH '/segment/{slug}' /segment/ROLLOUT_P -d '{"user_percent":30.5}')
w2=$(rnd "$nusers" 30.5)
t_check "$(code_of "$r")" = 200 "PATCH to 30.5%: $r"
t_check "$(body_of "$r" | py '(j["users_added"], j["users_removed"], j["members"], j["user_percent"])')" = "($((w2 - w1)), 0, $w2, 30.5)" \
    "grown by exactly $((w2 - w1)) to $w2"
t_check "$(members)" = "$(first "$w2")" "the members are the first $w2 in the sticky order"
t_check "$(comm -23 <(echo "$before" | tr ',' '\n' | sort) <(members | tr ',' '\n' | sort) | wc -l)" = 0 "every earlier member stayed"
r=$(req PATCH '/segment/{slug}' /segment/ROLLOUT_P -d '{"user_percent":5}')
w3=$(rnd "$nusers" 5)
t_check "$(body_of "$r" | py '(j["users_added"], j["users_removed"], j["members"])')" = "(0, $((w2 - w3)), $w3)" "shrunk to 5%: $((w2 - w3)) removed ($r)"
t_check "$(members)" = "$(first "$w3")" "the last members in the sticky order left: the first $w3 remain"
t_check "$(hist I)/$(hist D)" = "$w2/$((w2 - w3))" "history: $w2 I rows (creation and growth), $((w2 - w3)) D rows"
t_check "$(psqlc "SELECT count(*) FROM outbox WHERE payload->>'slug' = 'ROLLOUT_P' AND event_type = 'segment_removed'")" = $((w2 - w3)) \
    "a segment_removed event per removal"
t_check "$(psqlc "SELECT string_agg((payload->>'user_percent') || '<' || (payload->'previous'->>'user_percent'), ' ' ORDER BY id)
                  FROM outbox WHERE aggregate_id = 'ROLLOUT_P' AND event_type = 'segment_updated'")" = "30.50<10.00 5.00<30.50" \
    "each change of the percent is a segment_updated event with the previous value"
r=$(req PATCH '/segment/{slug}' /segment/ROLLOUT_P -d '{"user_percent":30.5}')
t_check "$(members)" = "$(first "$w2")" "grown again to 30.5%: the same $w2 users as before (deterministic)"
r=$(req PATCH '/segment/{slug}' /segment/ROLLOUT_P -d '{"user_percent":30.5}')
t_check "$(body_of "$r" | py '(j["users_added"], j["users_removed"])')" = "(0, 0)" "the same percent again changes nothing: $r"
r=$(req PATCH '/segment/{slug}' /segment/ROLLOUT_P -d '{"description":"Spring campaign, 2nd wave"}')
t_check "$(body_of "$r" | py '(j["description"], j["user_percent"], j["users_added"], j["users_removed"], j["members"])')" \
    = "('Spring campaign, 2nd wave', 30.5, 0, 0, $w2)" "a description alone moves no member: $r"
r=$(req GET /segment /segment)
t_check "$(body_of "$r" | py '[(s["description"], s["user_percent"]) for s in j["segments"] if s["slug"] == "ROLLOUT_P"]')" \
    = "[('Spring campaign, 2nd wave', 30.5)]" "GET /segment lists the description"
r=$(req PATCH '/segment/{slug}' /segment/ROLLOUT_P -d '{"user_percent":null,"description":null}')
t_check "$(body_of "$r" | py '(j["description"], j["user_percent"], j["members"])')" = "(None, None, $w2)" "null ends the rollout and clears the description; members stay: $r"
nu=$(curl -s -X POST "$base/user" | py 'j["user_id"]')
t_check "$(psqlc "SELECT count(*) FROM user_segments WHERE slug = 'ROLLOUT_P' AND user_id = $nu")" = 0 "a new user no longer joins it"
t_check "$(metric 'sluice_segments_percent_assignments_total{when="update"}')" = $((w2 - w1 + w2 - w3)) \
    "assignments by PATCH counted"
t_end

# -------------------------------------------------------------------- TTL
t_case "TTL: the sweeper removes the membership after its expiry, recorded like a manual removal"
removals0=$(metric 'sluice_segments_ttl_removals_total')
r=$(req POST /segment/user /segment/user -d "{\"user_id\":$uid,\"add_segments\":[\"AVITO_PERFORMANCE_VAS\"],\"ttl\":2}")
t_check "$(code_of "$r")" = 200 "added with ttl 2: $r"
t_wait_until 10 '[ "$(psqlc "SELECT count(*) FROM segment_history WHERE user_id = $uid AND slug = '"'AVITO_PERFORMANCE_VAS'"' AND operation = '"'D'"'")" = 1 ]'
lag=$(psqlc "SELECT extract(epoch FROM h.executed_at - (SELECT max(executed_at) FROM segment_history WHERE user_id = $uid AND slug = 'AVITO_PERFORMANCE_VAS' AND operation = 'I') - interval '2 seconds')
             FROM segment_history h WHERE h.user_id = $uid AND h.slug = 'AVITO_PERFORMANCE_VAS' AND h.operation = 'D'")
# Not before its expiry; how soon after is the machine's load as much as
# the sweeper's (it looks every 100 ms): that the sweeper removed it, and
# nothing else (a read, a rebuild), is what its counter says.
t_check "$(python3 -c "print(0 <= ${lag:--1})")" = True "removed ${lag}s after its expiry, not before"
t_check "$(psqlc "SELECT count(*) FROM outbox WHERE aggregate_id = '$uid' AND event_type = 'segment_removed' AND payload->>'slug' = 'AVITO_PERFORMANCE_VAS'")" = 1 "with its outbox event"
t_check "$(rcli ZSCORE sluice:segments:ttl "$uid:AVITO_PERFORMANCE_VAS")" = "" "and gone from the schedule"
t_check "$(metric 'sluice_segments_ttl_removals_total')" = "$((removals0 + 1))" "by the sweeper: sluice_segments_ttl_removals_total counts it ($removals0 before)"
t_end

t_case "an expired membership is never returned, even with no sweeper behind it"
psqlc "INSERT INTO user_segments (user_id, slug, expires_at) VALUES ($uid, 'AVITO_VOICE_MESSAGES', now() - interval '1 hour')" > /dev/null
r=$(req GET /segment/user/{id} "/segment/user/$uid")
t_check "$(body_of "$r" | py '[s["slug"] for s in j["segments"] if s["slug"].startswith("AVITO")]')" = "['AVITO_DISCOUNT_30']" "not listed: $r"
r=$(req POST /segment/user /segment/user -d "{\"user_id\":$uid,\"add_segments\":[\"AVITO_VOICE_MESSAGES\"]}")
t_check "$(body_of "$r" | py 'j["segments_added"]')" = 1 "adding it again is a real add: $r"
t_check "$(psqlc "SELECT string_agg(operation, '' ORDER BY id) FROM segment_history WHERE user_id = $uid AND slug = 'AVITO_VOICE_MESSAGES'")" = "IDIDI" \
    "history: I, D (manual), I (direct), D (expired), I"
t_end

t_case "Redis FLUSHALL mid-run: the schedule is rebuilt from expires_at, TTLs still honoured"
rebuilds0=$(metric 'sluice_segments_ttl_rebuilds_total')
removals0=$(metric 'sluice_segments_ttl_removals_total')
for u in 700001 700002 700003; do
    curl -s -H 'Content-Type: application/json' -o /dev/null -X POST "$base/segment/user" -d "{\"user_id\":$u,\"add_segments\":[\"AVITO_DISCOUNT_30\",\"AVITO_PERFORMANCE_VAS\"],\"ttl\":3}"
done
curl -s -H 'Content-Type: application/json' -o /dev/null -X POST "$base/segment/user" -d '{"user_id":700004,"add_segments":["AVITO_DISCOUNT_30"],"ttl":3600}'
t_check "$(rcli ZCARD sluice:segments:ttl)" -ge 7 "7 scheduled"
rcli FLUSHALL > /dev/null
t_wait_until 5 '[ "$(rcli ZCARD sluice:segments:ttl)" -ge 7 ]'
t_check "$(rcli ZCARD sluice:segments:ttl)" -ge 7 "rebuilt after FLUSHALL ($(rcli ZCARD sluice:segments:ttl) scheduled)"
t_check "$(python3 -c "print($(metric 'sluice_segments_ttl_rebuilds_total') > $rebuilds0)")" = True "sluice_segments_ttl_rebuilds_total went up"
# (new users may also hold rollout segments: only the ttl'd ones count)
short="SELECT count(*) FROM user_segments WHERE user_id BETWEEN 700001 AND 700003 AND expires_at IS NOT NULL"
t_wait_until 10 '[ "$(psqlc "$short")" = 0 ]'
t_check "$(psqlc "$short")" = 0 "the 6 short memberships expired"
t_check "$(psqlc "SELECT count(*) FROM segment_history WHERE user_id BETWEEN 700001 AND 700003 AND operation = 'D'")" = 6 "6 D rows"
late=$(psqlc "SELECT max(extract(epoch FROM h.executed_at - i.executed_at)) FROM segment_history h JOIN segment_history i
              ON i.user_id = h.user_id AND i.slug = h.slug AND i.operation = 'I' WHERE h.operation = 'D' AND h.user_id BETWEEN 700001 AND 700003")
t_check "$(python3 -c "print(3 <= ${late:-0})")" = True "each removed after its expiry (the last ${late}s after the add, ttl 3)"
t_check "$(metric 'sluice_segments_ttl_removals_total')" = "$((removals0 + 6))" "all 6 by the rebuilt schedule's sweeper ($removals0 removals before)"
t_check "$(psqlc "SELECT count(*) FROM user_segments WHERE user_id = 700004 AND expires_at IS NOT NULL")" = 1 "the long one stays"
t_check "$(rcli ZRANGE sluice:segments:ttl 0 -1 | grep -c '^70000[123]:')" = 0 "the swept ones are gone from the schedule"
t_end

t_case "Redis down: due memberships still leave (swept from PostgreSQL), the schedule is rebuilt when it returns"
rcli ZREM sluice:segments:ttl 700004:AVITO_DISCOUNT_30 > /dev/null # rebuilt only if read from PostgreSQL
sl_svc_stop redis
r=$(req POST /segment/user /segment/user -d '{"user_id":710001,"add_segments":["AVITO_DISCOUNT_30"],"ttl":1}')
t_check "$(code_of "$r")" = 200 "a change with ttl needs no Redis: $r"
t_wait_until 10 '[ "$(psqlc "SELECT count(*) FROM segment_history WHERE user_id = 710001 AND operation = '"'D'"'")" = 1 ]'
t_check "$(psqlc "SELECT count(*) FROM segment_history WHERE user_id = 710001 AND operation = 'D'")" = 1 "removed while Redis is down, with its D row"
t_check "$(psqlc "SELECT count(*) FROM outbox WHERE aggregate_id = '710001' AND event_type = 'segment_removed'")" = 1 "and its outbox event"
sl_svc_restart redis
t_check $? -eq 0 "redis back"
t_wait_until 10 '[ -n "$(rcli ZSCORE sluice:segments:ttl 700004:AVITO_DISCOUNT_30)" ]'
t_check "$(rcli ZSCORE sluice:segments:ttl 700004:AVITO_DISCOUNT_30 | cut -d. -f1)" \
    = "$(psqlc "SELECT floor(extract(epoch FROM expires_at)) FROM user_segments WHERE user_id = 700004 AND slug = 'AVITO_DISCOUNT_30'")" \
    "the schedule is rebuilt from expires_at"
t_end

# ------------------------------------------------------------- concurrency
t_case "64 concurrent clients on the same users: no lost update, no crash, history replays to the state"
for s in C0 C1 C2 C3 C4 C5; do curl -s -H 'Content-Type: application/json' -o /dev/null -X POST "$base/segment" -d "{\"slug\":\"$s\"}"; done
python3 - > "$work/conc.bodies" <<'PY'
import json, random
random.seed(7)
slugs = ["C%d" % i for i in range(6)]
for n in range(1280):
    random.shuffle(slugs)
    k = random.randint(1, 5)
    a, d = slugs[:random.randint(0, k)], slugs[k:k + random.randint(0, 6 - k)]
    if not a and not d:
        a = [slugs[0]]
    print(json.dumps({"user_id": 800001 + n % 4, "add_segments": a, "delete_segments": d}))
PY
retries0=$(metric 'sluice_segments_tx_retries_total')
tr '\n' '\0' < "$work/conc.bodies" | xargs -0 -P 64 -I{} curl -s -H 'Content-Type: application/json' -o /dev/null -w '%{http_code}\n' --max-time 30 \
    -X POST "$base/segment/user" --data-binary {} > "$work/conc.codes"
t_check "$(grep -c '^200$' "$work/conc.codes")" = 1280 "all 1280 answered 200 ($(sort "$work/conc.codes" | uniq -c | tr '\n' ' '))"
t_check "$(kill -0 "$daemon" 2>/dev/null && echo alive)" = alive "sluiced still running"
replay=$(psqlc "WITH last AS (SELECT DISTINCT ON (user_id, slug) user_id, slug, operation FROM segment_history
                              WHERE user_id BETWEEN 800001 AND 800004 ORDER BY user_id, slug, id DESC)
                SELECT (SELECT count(*) FROM last l WHERE (l.operation = 'I') <> EXISTS
                          (SELECT 1 FROM user_segments us WHERE us.user_id = l.user_id AND us.slug = l.slug))
                     + (SELECT count(*) FROM user_segments us WHERE us.user_id BETWEEN 800001 AND 800004
                          AND NOT EXISTS (SELECT 1 FROM last l WHERE l.user_id = us.user_id AND l.slug = us.slug))")
t_check "$replay" = 0 "history replayed equals user_segments ($replay differences)"
t_check "$(psqlc "SELECT count(*) FROM (SELECT user_id, slug, string_agg(operation, '' ORDER BY id) ops FROM segment_history
                  WHERE user_id BETWEEN 800001 AND 800004 GROUP BY 1, 2) t WHERE ops ~ '(II|DD)' OR ops !~ '^I'")" = 0 \
    "per membership the history alternates I, D, I... (no lost or doubled change)"
t_check "$(psqlc "SELECT (SELECT count(*) FROM segment_history WHERE user_id BETWEEN 800001 AND 800004) =
                         (SELECT count(*) FROM outbox WHERE aggregate_type = 'segment' AND aggregate_id IN ('800001','800002','800003','800004'))")" = t \
    "one outbox event per history row"
t_check "$(grep -c 'deadlock\|ERROR' "$work/sluiced.log")" = 0 "no error logged (retries: $(metric 'sluice_segments_tx_retries_total'))"
t_end

t_case "a deadlock with another transaction is retried, not answered as an error"
# psql takes the membership row, then, once the request waits for it
# (holding the user row), the user row: PostgreSQL picks the request, which
# waited first, as the deadlock victim.  Its deadlock check may still come
# second on a loaded machine and pick psql instead, so up to three tries.
psql_holds() { # psql has deleted the membership and waits for the request
    [ "$(psqlc "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active'
                AND query LIKE '%until the request waits%'")" = 1 ]
}
retried=0
for try in 1 2 3; do
    curl -s -H 'Content-Type: application/json' -o /dev/null -X POST "$base/segment/user" -d '{"user_id":800010,"add_segments":["C1"]}'
    r0=$(metric 'sluice_segments_tx_retries_total')
    psql -X -q "$SL_PG_DSN" > "$work/deadlock.out" 2>&1 <<'SQL' &
BEGIN;
DELETE FROM user_segments WHERE user_id = 800010 AND slug = 'C1';
DO $$ BEGIN -- until the request waits for a lock (at most 30 s)
    FOR i IN 1..3000 LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND wait_event_type = 'Lock');
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
SELECT 1 FROM users WHERE id = 800010 FOR UPDATE;
SELECT pg_sleep(0.5);
ROLLBACK;
SQL
    ppid=$!
    t_wait_until 30 psql_holds
    r=$(req POST /segment/user /segment/user -d '{"user_id":800010,"delete_segments":["C1"]}')
    wait "$ppid"
    if [ "$(python3 -c "print($(metric 'sluice_segments_tx_retries_total') > $r0)")" = True ]; then
        retried=1
        break
    fi
done
t_check "$retried" = 1 "sluice_segments_tx_retries_total went up (try $try; psql: $(grep -m1 ERROR "$work/deadlock.out"))"
t_check "$(code_of "$r")" = 200 "the request succeeded after its retry: $r"
t_check "$(body_of "$r" | py 'j["segments_deleted"]')" = 1 "and deleted the membership"
t_check "$(psqlc "SELECT string_agg(operation, '' ORDER BY id) FROM segment_history WHERE user_id = 800010 AND slug = 'C1'")" \
    = "$(python3 -c "print('ID' * $try)")" "history holds one I and one D per try, nothing of the aborted attempt"
t_end

# --------------------------------------------------- PostgreSQL restarted
t_case "PostgreSQL restarted under load: 503 JSON, then recovery, no partial writes"
curl -s -H 'Content-Type: application/json' -o /dev/null -X POST "$base/segment" -d '{"slug":"R1"}'
curl -s -H 'Content-Type: application/json' -o /dev/null -X POST "$base/segment" -d '{"slug":"R2"}'
rm -f "$work/stop-load"
( i=0
  while [ ! -e "$work/stop-load" ]; do
      u=$((600000 + i))
      curl -s -H 'Content-Type: application/json' -o "$work/load.body" -w "%{http_code} $u " --max-time 15 -X POST "$base/segment/user" \
          -d "{\"user_id\":$u,\"add_segments\":[\"R1\",\"R2\"],\"ttl\":86400}"
      head -c 200 "$work/load.body"; echo
      i=$((i + 1))
      sleep 0.02
  done > "$work/load.codes" ) &
lpid=$!
pids+=("$lpid")
t_wait_until 30 '[ "$(grep -c "^200 " "$work/load.codes")" -ge 3 ]'
sl_svc_stop postgres
t_wait_until 10 'grep -q "^503 " "$work/load.codes"'
r=$(req GET /segment /segment)
t_check "$(code_of "$r")" = 503 "503 while down: $r"
t_check "$(body_of "$r" | py '"unavailable" in j["error"]')" = True "JSON naming the problem"
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 503 "/readyz 503"
sl_svc_restart postgres
t_check $? -eq 0 "postgres back"
t_wait_until 20 '[ "$(tail -n 3 "$work/load.codes" | grep -c "^200 ")" = 3 ]'
touch "$work/stop-load"
wait "$lpid"
ok=$(grep -c '^200 ' "$work/load.codes"); bad=$(grep -c '^503 ' "$work/load.codes"); total=$(wc -l < "$work/load.codes")
t_check "$((ok + bad))" = "$total" "all $total answered 200 ($ok) or 503 ($bad)"
t_check "$bad" -gt 0 "some 503 while down"
t_check "$(grep '^503 ' "$work/load.codes" | grep -vc '"error"')" = 0 "every 503 is JSON with an error"
t_check "$(tail -n 3 "$work/load.codes" | grep -c '^200 ')" = 3 "recovered by itself"
t_check "$(psqlc "SELECT count(*) FROM (SELECT user_id FROM user_segments WHERE user_id >= 600000 AND user_id < 700000 AND slug IN ('R1', 'R2') GROUP BY user_id HAVING count(*) <> 2) t")" = 0 \
    "no user with one of its two segments: no partial write"
t_check "$(psqlc "SELECT count(*) FROM users u WHERE id >= 600000 AND id < 700000 AND NOT EXISTS (SELECT 1 FROM user_segments us WHERE us.user_id = u.id AND us.slug = 'R1')")" = 0 \
    "no user created without its segments"
missing=0
for u in $(grep '^200 ' "$work/load.codes" | cut -d' ' -f2); do
    [ "$(psqlc "SELECT count(*) FROM user_segments WHERE user_id = $u AND slug IN ('R1', 'R2')")" = 2 ] || missing=$((missing + 1))
done
t_check "$missing" = 0 "every acknowledged change is stored ($ok checked)"
t_check "$(psqlc "SELECT count(*) FROM outbox WHERE aggregate_type = 'segment' AND aggregate_id ~ '^6[0-9]{5}$'")" = \
    "$(psqlc "SELECT count(*) FROM user_segments WHERE user_id BETWEEN 600000 AND 699999")" "outbox rows match the memberships"
t_end

# --------------------------------------------------------- DELETE /segment
t_case "DELETE /segment removes it from every user, each removal in history and outbox"
members=$(psqlc "SELECT count(*) FROM user_segments WHERE slug = 'ROLLOUT_25'")
r=$(req DELETE /segment /segment -d '{"slug":"ROLLOUT_25"}')
t_check "$(body_of "$r" | py '(j["message"], j["memberships_removed"])')" = "('ok', $members)" "$r"
t_check "$(psqlc "SELECT count(*) FROM segment_history WHERE slug = 'ROLLOUT_25' AND operation = 'D'")" = "$members" "$members D rows"
t_check "$(psqlc "SELECT count(*) FROM outbox WHERE payload->>'slug' = 'ROLLOUT_25' AND event_type = 'segment_removed'")" = "$members" "$members removal events"
t_check "$(psqlc "SELECT count(*) FROM segments WHERE slug = 'ROLLOUT_25'")" = 0 "the segment is gone"
t_end

# ------------------------------------------------------------ big report
t_case "a report of 200000 rows streams whole; a client leaving mid-stream ends it"
psqlc "INSERT INTO users (id) VALUES (950000);
       INSERT INTO segment_history (user_id, slug, operation, executed_at)
       SELECT 950000, 'BULK', CASE WHEN g % 2 = 0 THEN 'I' ELSE 'D' END, '2024-02-01'::timestamptz + g * interval '1 second'
       FROM generate_series(0, 199999) g" > /dev/null
link=$(curl -s "$base/segment/history/950000?year=2024&month=2" | py 'j["report_link"]')
curl -s -o "$work/big.csv" "$link"
t_check "$(wc -l < "$work/big.csv")" = 200001 "header and 200000 rows"
t_check "$(tail -n +2 "$work/big.csv" | cut -d, -f4 | tr -d '\r' | sort -c && echo sorted)" = sorted "in time order"
t_check "$(tail -n1 "$work/big.csv" | tr -d '\r')" = "950000,BULK,D,2024-02-03T07:33:19.000000Z" "the last row"
ended=$(metric 'sluice_segments_requests_total{route="report",code="200"}')
curl -s -o /dev/null --limit-rate 20k --max-time 1 "$link"
t_wait_until 10 '[ "$(metric '"'"'sluice_segments_requests_total{route="report",code="200"}'"'"')" -gt "$ended" ]'
t_check "$(metric 'sluice_segments_requests_total{route="report",code="200"}')" -gt "$ended" \
    "a client leaving after 1 s of ~10 MB ends the stream on the server"
t_end

# ----------------------------------------------------------------- OpenAPI
t_case "GET /openapi.json: a valid OpenAPI 3 document that lists every answer seen"
r=$(req GET /openapi.json /openapi.json)
t_check "$(code_of "$r")" = 200 "200"
body_of "$r" > "$work/openapi.json"
out=$(cd "$npm_dir" && node -e '
const p = require("@apidevtools/swagger-parser");
p.validate(process.argv[1]).then(a => console.log("valid " + a.openapi)).catch(e => { console.log("INVALID " + e.message); process.exit(1); });' "$work/openapi.json" 2>&1)
t_check "$out" = "valid 3.0.3" "swagger-parser: $out"
r=$(req GET /docs /docs)
undocumented=$(python3 - "$work/openapi.json" "$calls" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
seen = set(tuple(l.split()) for l in open(sys.argv[2]) if l.strip())
bad = [f"{m} {p} {c}" for m, p, c in sorted(seen)
       if str(c) not in doc["paths"].get(p, {}).get(m.lower(), {}).get("responses", {})]
print(" ".join(bad) or "none")
PY
)
# Every JSON body seen must match the schema the document gives for its
# route and status (OpenAPI 3.0 "nullable" read as JSON Schema's null type).
out=$(cd "$npm_dir" && node - "$work/openapi.json" "$work/bodies.jsonl" <<'JS' 2>&1
const fs = require("fs");
const Ajv = require("ajv");
const parser = require("@apidevtools/swagger-parser");
const nullable = (s) => {
  if (s && typeof s === "object") {
    if (s.nullable === true && s.type) { s.type = [s.type, "null"]; }
    delete s.nullable; delete s.example;
    for (const k of Object.keys(s)) nullable(s[k]);
  }
  return s;
};
parser.dereference(process.argv[2]).then((doc) => {
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  let checked = 0, bad = [];
  for (const line of fs.readFileSync(process.argv[3], "utf8").split("\n")) {
    if (!line.trim()) continue;
    const e = JSON.parse(line);
    let body;
    try { body = JSON.parse(e.b); } catch (x) { continue; } // CSV, HTML
    const r = (((doc.paths[e.p] || {})[e.m.toLowerCase()] || {}).responses || {})[e.c];
    const s = r && r.content && r.content["application/json"] && r.content["application/json"].schema;
    if (!s) { bad.push(`${e.m} ${e.p} ${e.c}: no schema`); continue; }
    const v = ajv.compile(nullable(JSON.parse(JSON.stringify(s))));
    checked++;
    if (!v(body)) bad.push(`${e.m} ${e.p} ${e.c}: ${ajv.errorsText(v.errors)} in ${e.b.slice(0, 120)}`);
  }
  console.log(bad.length ? bad.join("; ") : `all ${checked} bodies match`);
}).catch((x) => console.log("ERROR " + x.message));
JS
)
t_check "$(echo "$out" | grep -c '^all [0-9]* bodies match$')" = 1 "response bodies match their schemas: $out"
t_check "$undocumented" = none "every (method, path, status) answered in this test is documented ($(sort -u "$calls" | wc -l) seen)"
t_end

t_case "/docs: Swagger UI served by the module renders the API in headless Chromium"
t_check "$(code_of "$r")" = 200 "/docs 200"
t_check "$(body_of "$r" | grep -oE '(src|href)="[^"]*"' | grep -vc '="/docs/')" = 0 "every asset is local: $(body_of "$r" | grep -oE '(src|href)="[^"]*"' | tr '\n' ' ')"
for a in swagger-ui.css swagger-ui-bundle.js init.js; do
    t_check "$(curl -s -o /dev/null -w '%{http_code}' "$base/docs/$a")" = 200 "/docs/$a 200"
done
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$base/docs/..%2Fpackage.json")" = 404 "/docs/..%2Fpackage.json 404"
if command -v chromium > /dev/null; then
    timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --user-data-dir="$work/chrome" \
        --virtual-time-budget=15000 --dump-dom "$base/docs" > "$work/docs.dom" 2> "$work/chrome.log"
    ops=$(grep -o 'opblock-summary-path' "$work/docs.dom" | wc -l)
    t_check "$ops" -ge 10 "Chromium rendered $ops operations"
    t_check "$(grep -c 'sluice segments API' "$work/docs.dom")" -ge 1 "with the document's title"
else
    t_skip "chromium is not installed (tests/harness/install-deps.sh installs it)"
fi
t_end

# ----------------------------------------------------------------- metrics
t_case "metrics: requests by route and code, latency, memberships, sweeper, rollout"
t_wait_until 5 '[ "$(metric sluice_segments_active_memberships)" != absent ]'
curl -s "$base/metrics" > "$work/metrics.txt"
out=$(promtool check metrics < "$work/metrics.txt" 2>&1)
t_check $? -eq 0 "promtool accepts /metrics: $out"
for f in sluice_segments_requests_total sluice_segments_request_duration_seconds sluice_segments_active_memberships \
    sluice_segments_ttl_sweeper_lag_seconds sluice_segments_ttl_removals_total sluice_segments_ttl_rebuilds_total \
    sluice_segments_ttl_scheduled sluice_segments_percent_assignments_total sluice_segments_tx_retries_total; do
    t_check "$(grep -c "^# TYPE $f " "$work/metrics.txt")" = 1 "$f present"
done
t_check "$(metric 'sluice_segments_requests_total{route="segment_user",code="200"}')" -ge 1280 "segment_user 200 counted"
t_check "$(metric 'sluice_segments_requests_total{route="segment_user",code="400"}')" -ge 10 "segment_user 400 counted"
t_check "$(metric 'sluice_segments_active_memberships')" = "$(psqlc "SELECT count(*) FROM user_segments WHERE expires_at IS NULL OR expires_at > now()")" \
    "active memberships equals the database's count"
t_end

t_case "SIGHUP with a changed option under load: the successor serves without refusing a request"
# wrk runs until the reloads are done (SIGINT makes it print its figures);
# each SIGHUP waits for the previous reload, since signals that arrive
# during one are merged.
done0=$(grep -c 'reload complete' "$work/sluiced.log")
wrk -t2 -c16 -d600s "$base/segment/user/$uid" > "$work/wrk.out" 2>&1 &
wpid=$!
t_wait_until 30 '[ "$(ss -Htn state established "( dport = :$port )" | wc -l)" -gt 0 ]'
for i in 1 2 3 4 5 6; do
    sed -i "s/^sweep_interval = .*/sweep_interval = $((100 + i))ms/" "$work/sluice.conf"
    kill -HUP "$daemon"
    t_wait_until 30 "[ \$(grep -c 'reload complete' '$work/sluiced.log') -ge $((done0 + i)) ]"
done
t_check "$(kill -0 $wpid 2>/dev/null && echo running)" = running "wrk ran through the reloads"
kill -INT "$wpid"
wait "$wpid"
t_check "$(grep -c 'reload complete' "$work/sluiced.log")" -ge $((done0 + 6)) "6 reloads completed"
t_check "$(grep -c 'Non-2xx\|Socket errors' "$work/wrk.out")" = 0 "no non-2xx answer, no socket error ($(grep 'Requests/sec' "$work/wrk.out"))"
t_check "$(awk '/requests in/ { print $1 }' "$work/wrk.out")" -gt 100 "requests were served meanwhile"
t_end

t_case "SIGTERM: sluiced exits 0"
kill -TERM "$daemon"
wait "$daemon"
t_check $? -eq 0 "exit 0"
pids=()
t_check "$(grep -c 'AddressSanitizer\|runtime error' "$work/sluiced.log")" = 0 "no sanitizer report"
t_end

t_case "PostgreSQL down at start: 503 JSON until the schema is in place, then served"
sl_svc_stop postgres
port2=$(t_free_port)
sed "s|^listen = .*|listen = 127.0.0.1:$port2|" "$work/sluice.conf" > "$work/second.conf"
"$SLUICED" -c "$work/second.conf" 2>>"$work/second.log" &
second=$!
pids+=("$second")
t_wait_http "http://127.0.0.1:$port2/healthz" 15
r=$(curl -s -w ' %{http_code}' -X POST "http://127.0.0.1:$port2/user")
t_check "${r##* }" = 503 "POST /user 503: $r"
t_check "$(echo "${r% *}" | py '"unavailable" in j["error"]')" = True "JSON naming the problem"
t_check "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port2/readyz")" = 503 "/readyz 503"
sl_svc_restart postgres
t_wait_until 20 '[ "$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$port2/readyz")" = 200 ]'
t_check "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port2/readyz")" = 200 "ready once the server is back"
t_check "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port2/user")" = 201 "POST /user 201"
t_check "$(psqlc "SELECT string_agg(version::text, ',' ORDER BY version) FROM sluice_migrations WHERE module = 'segments'")" = 1,2,3,4,5,6 "each migration is recorded once"
kill -TERM "$second"
wait "$second"
t_check $? -eq 0 "exit 0"
pids=()
t_check "$(grep -c 'AddressSanitizer\|runtime error' "$work/second.log")" = 0 "no sanitizer report"
t_end

t_exit
