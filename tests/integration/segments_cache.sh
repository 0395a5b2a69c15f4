#!/usr/bin/env bash
# The read cache of GET /segment/user/{id} (modules/segments/lookup.c) as
# two instances over one real PostgreSQL see it: A with the default cache
# and its TTL sweeper slowed to a minute (so that only the cache can hide
# an expired membership), B with a small cache.  Each answer is judged
# against the database or the clock, never against the cache itself:
#   - an expired membership is never served, though still in the table;
#   - a change acknowledged by A is read back from A at once, and from B
#     within the bound of 10 s (p50/p99/max of the delay printed): the
#     notification's delivery, which the bound leaves room for on a loaded
#     machine; cache_max_age (5 min) is the backstop should one be lost;
#   - so are a TTL refresh (an UPDATE), a rollout and DELETE /segment (one
#     "*" for the whole transaction), judged against the database;
#   - B stays within its entry and byte limits under a scan of many users;
#   - a PostgreSQL restart empties the cache: a row written with the
#     notification disabled (so no instance hears of it) is served stale
#     before the restart, as the check that the test can fail, and fresh
#     after it.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

t_scratch "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/_modules/segments.so"
psqlc() { psql -X -At "$SL_PG_DSN" -c "$1"; }
# metric BASE NAME: a sample's value (0 when absent)
metric() {
    curl -s "$1/metrics" | awk -v n="$2" '$1 == n { v = $2; found = 1 } END { print found ? v : "absent" }'
}
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/readyz")" = 200 ]; }

t_case "postgres and redis start"
sl_svc_start postgres && sl_svc_start redis
t_check $? -eq 0 "postgres ${SL_PG_DSN:-none}, redis ${SL_REDIS_URL:-none}"
t_end
[ -n "${SL_PG_PORT:-}" ] && [ -n "${SL_REDIS_PORT:-}" ] || { t_exit; exit 1; }

# start NAME PORT EXTRA-SEGMENTS-OPTIONS...
start() {
    local name=$1 port=$2
    shift 2
    {
        printf '[core]\nlisten = 127.0.0.1:%s\nmodules_dir = mods\nlog_level = info\n' "$port"
        printf '[postgres]\ndsn = %s\npool_size = 4\nconnect_timeout = 2s\nquery_timeout = 5s\nreconnect_max = 300ms\n' "$SL_PG_DSN"
        printf '[redis]\nurl = %s\n[module metrics]\n[module segments]\n' "$SL_REDIS_URL"
        printf '%s\n' "$@"
    } > "$work/$name.conf"
    "$SLUICED" -c "$work/$name.conf" 2>>"$work/$name.log" &
    pids+=($!)
}
pa=$(t_free_port) pb=$(t_free_port)
a=http://127.0.0.1:$pa b=http://127.0.0.1:$pb
start a "$pa" "sweep_interval = 60s"
t_wait_until 30 'ready "$a"'
start b "$pb" "sweep_interval = 60s" "cache_entries = 100" "cache_bytes = 65536" "cache_max_age = 1h"

t_case "both instances ready over one database"
t_wait_until 30 'ready "$b"'
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$a/readyz")" = 200 "A ready"
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$b/readyz")" = 200 "B ready"
psqlc "INSERT INTO segments (slug) VALUES ('C1'), ('C2'), ('C3');
       INSERT INTO users (id) SELECT generate_series(1, 3000);
       SELECT setval('users_id_seq', 3000);
       INSERT INTO user_segments (user_id, slug) SELECT u, 'C1' FROM generate_series(1, 3000) u" > /dev/null
t_check "$(psqlc 'SELECT count(*) FROM user_segments')" = 3000 "3000 users in C1"
t_end

t_case "an expired membership is never served, though the sweeper has not removed it"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$a/segment/user" -H 'Content-Type: application/json' \
    -d '{"user_id":7,"add_segments":["C2"],"ttl":5}')
t_check "$code" = 200 "C2 added to user 7 with a TTL of 5 s"
# The sweepers remove what the Redis schedule says is due; taken off it, the
# row outlives its expiry for certain, and only the cache could serve it.
t_wait_until 30 '[ -n "$(redis-cli -u "$SL_REDIS_URL" ZSCORE sluice:segments:ttl 7:C2)" ]'
t_check "$(redis-cli -u "$SL_REDIS_URL" ZREM sluice:segments:ttl 7:C2)" = 1 "its expiry taken off the sweepers' schedule"
h0=$(metric "$a" sluice_segments_cache_hits_total)
# Polls A over one keep-alive connection until past the expiry: every
# answer asked for at or after expires_at must lack C2.
out=$(python3 - "$pa" <<'PY'
import datetime, http.client, json, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
def get():
    c.request("GET", "/segment/user/7"); r = c.getresponse(); return json.loads(r.read())
exp = None
for s in get()["segments"]:
    if s["slug"] == "C2":
        exp = datetime.datetime.strptime(s["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
if exp is None:
    print("C2 not served before its expiry"); sys.exit()
seen_before = bad = after = 0
# Past the expiry by 1.5 s and by 20 answers, however slow the machine.
while time.time() < exp + 1.5 or (after < 20 and time.time() < exp + 60):
    t = time.time()
    has = any(s["slug"] == "C2" for s in get()["segments"])
    if t >= exp:
        after += 1
        bad += has
    elif has:
        seen_before += 1
print("served-before-expiry=%d answers-after=%d expired-served=%d" % (seen_before, after, bad))
PY
)
h1=$(metric "$a" sluice_segments_cache_hits_total)
t_check "$(echo "$out" | grep -c 'expired-served=0$')" -eq 1 "no expired membership served: $out"
t_check "$(echo "$out" | grep -o 'answers-after=[0-9]*' | cut -d= -f2)" -gt 10 "answers after the expiry were asked for"
t_check "$(psqlc "SELECT count(*) FROM user_segments WHERE user_id = 7 AND slug = 'C2'")" = 1 \
    "the expired row is still in the table"
t_check "$(python3 -c "print(int($h1 - $h0 > 100))")" = 1 "answered from the cache ($h0 -> $h1 hits)"
t_end

t_case "a change is read back at once from its instance, and from the other within the bound"
out=$(python3 - "$pa" "$pb" <<'PY'
import http.client, json, sys, time
ca = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
cb = http.client.HTTPConnection("127.0.0.1", int(sys.argv[2]), timeout=10)
def get(c, uid):
    c.request("GET", "/segment/user/%d" % uid); r = c.getresponse()
    return sorted(s["slug"] for s in json.loads(r.read())["segments"])
def change(c, uid, add, dele):
    body = json.dumps({"user_id": uid, "add_segments": add, "delete_segments": dele})
    c.request("POST", "/segment/user", body, {"Content-Type": "application/json"})
    r = c.getresponse(); r.read(); assert r.status == 200, r.status
stale_a = lost = 0
delays = []
for i in range(200):
    if lost >= 3:
        break                                  # no use waiting 10 s for each of the rest
    uid = 100 + i % 20
    have = get(cb, uid); get(ca, uid)          # both instances hold the user
    add, dele = (["C3"], []) if "C3" not in have else ([], ["C3"])
    want = sorted(set(have) - set(dele) | set(add))
    change(ca, uid, add, dele)
    t0 = time.time()
    if get(ca, uid) != want:
        stale_a += 1
    while get(cb, uid) != want:
        if time.time() - t0 > 10:
            lost += 1
            break
    else:
        delays.append(time.time() - t0)
delays.sort()
q = lambda p: delays[min(len(delays) - 1, int(len(delays) * p))] * 1000 if delays else float("nan")
print("stale-from-A=%d lost=%d n=%d p50=%.1fms p99=%.1fms max=%.1fms" % (stale_a, lost, len(delays), q(0.5), q(0.99), delays[-1] * 1000 if delays else float("nan")))
PY
)
echo "    $out"
t_check "$(echo "$out" | grep -c '^stale-from-A=0 lost=0 n=200 ')" -eq 1 "200 changes through A: none read stale from A, all seen by B"
t_check "$(metric "$b" 'sluice_segments_cache_invalidations_total{reason="change"}')" != absent "B counted invalidations by change"
t_end

t_case "a TTL refresh, a rollout and DELETE /segment: read back at once from A, from B within the bound"
out=$(python3 - "$pa" "$pb" "$SL_PG_DSN" <<'PY'
import http.client, json, subprocess, sys, time
ca = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
cb = http.client.HTTPConnection("127.0.0.1", int(sys.argv[2]), timeout=10)
dsn = sys.argv[3]
users = range(300, 340)
def call(c, method, path, body=None):
    c.request(method, path, json.dumps(body) if body is not None else None,
              {"Content-Type": "application/json"} if body is not None else {})
    r = c.getresponse(); data = r.read()
    return r.status, data
def get(c, uid):
    st, data = call(c, "GET", "/segment/user/%d" % uid)
    return sorted((s["slug"], s.get("expires_at")) for s in json.loads(data)["segments"])
def db():
    q = ("SELECT user_id, slug, to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
         " FROM user_segments WHERE user_id BETWEEN %d AND %d AND (expires_at IS NULL OR expires_at > now())"
         % (users[0], users[-1]))
    rows = subprocess.run(["psql", "-X", "-At", "-F", "|", dsn, "-c", q], capture_output=True, text=True, check=True).stdout
    want = {u: [] for u in users}
    for line in rows.splitlines():
        u, slug, exp = line.split("|")
        want[int(u)].append((slug, exp or None))
    return {u: sorted(v) for u, v in want.items()}
stale_a = []
def reach(what):
    """Seconds until B answers every user as the database has them (None
    past 10 s); A, whose change it was, must answer so at once."""
    from_a = {u: get(ca, u) for u in users}     # before anything else can
    want, t0 = db(), time.time()                  # have told A (its own NOTIFY)
    stale_a.extend("%s: user %d" % (what, u) for u in users if from_a[u] != want[u])
    while any(get(cb, u) != want[u] for u in users):
        if time.time() - t0 > 10:
            bad = [u for u in users if get(cb, u) != want[u]]
            print("%s: B stale for %d users, e.g. %d: %s, database %s" % (what, len(bad), bad[0], get(cb, bad[0]), want[bad[0]]))
            return None
    return time.time() - t0
res = []
for u in users:
    get(ca, u); get(cb, u)                        # both hold them all
st, _ = call(ca, "POST", "/segment/user", {"user_id": 305, "add_segments": ["C2"], "ttl": 3600})
assert st == 200, st
res.append(("ttl-add", reach("ttl-add")))     # B now holds the first expiry,
st, _ = call(ca, "POST", "/segment/user", {"user_id": 305, "add_segments": ["C2"], "ttl": 7200})
assert st == 200, st                          # which only the UPDATE's notification drops
res.append(("ttl-refresh", reach("ttl-refresh")))
st, _ = call(ca, "POST", "/segment", {"slug": "R1", "user_percent": 50})
assert st == 201, st
res.append(("rollout", reach("rollout")))
st, _ = call(ca, "DELETE", "/segment", {"slug": "R1"})
assert st == 200, st
res.append(("delete-segment", reach("delete-segment")))
print(" ".join("%s=%s" % (k, "lost" if v is None else "%.0fms" % (v * 1000)) for k, v in res),
      "stale-from-A=%d%s" % (len(stale_a), " (" + ", ".join(stale_a[:3]) + ")" if stale_a else ""))
PY
)
echo "    $out"
t_check "$(echo "$out" | tail -n 1 | grep -c lost)" -eq 0 "every change seen by B within 10 s: $out"
t_check "$(echo "$out" | tail -n 1 | grep -c 'stale-from-A=0$')" -eq 1 "A answered each change at once"
t_check "$(psqlc "SELECT count(*) FROM user_segments WHERE user_id = 305 AND slug = 'C2' AND expires_at > now() + interval '1 hour'")" = 1 \
    "the refreshed TTL is in the database"
t_end

t_case "the cache stays within its limits under a scan of many users"
bad=$(python3 - "$pb" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
bad = []
for uid in range(1, 3001):
    c.request("GET", "/segment/user/%d" % uid); r = c.getresponse(); r.read()
    if r.status != 200:
        bad.append("user %d: %d" % (uid, r.status))
    if uid % 250 == 0:
        c.request("GET", "/metrics"); m = c.getresponse().read().decode()
        v = {l.split()[0]: float(l.split()[1]) for l in m.splitlines() if l.startswith("sluice_segments_cache_")}
        if v.get("sluice_segments_cache_entries", 1e9) > 100 or v.get("sluice_segments_cache_bytes", 1e9) > 65536:
            bad.append("at user %d: %d entries, %d bytes" % (uid, v.get("sluice_segments_cache_entries", -1), v.get("sluice_segments_cache_bytes", -1)))
print("; ".join(bad[:5]) or "ok")
PY
)
t_check "$bad" = ok "3000 users read, entries <= 100 and bytes <= 65536 at every sample"
ev=$(metric "$b" sluice_segments_cache_evictions_total)
t_check "$(python3 -c "print(int($ev >= 2800))")" = 1 "users evicted to stay within the limits: $ev"
entries=$(metric "$b" sluice_segments_cache_entries)
t_check "$(python3 -c "print(int(0 < $entries <= 100))")" = 1 "$entries entries held at the end"
t_end

t_case "a PostgreSQL restart empties the cache"
curl -s "$a/segment/user/42" > /dev/null
curl -s "$a/segment/user/42" > /dev/null
# Written where no instance hears of it: the notification disabled.
psqlc "ALTER TABLE user_segments DISABLE TRIGGER user_segments_cache;
       INSERT INTO user_segments (user_id, slug) VALUES (42, 'C2');
       ALTER TABLE user_segments ENABLE TRIGGER user_segments_cache" > /dev/null
stale=$(curl -s "$a/segment/user/42")
t_check "$stale" = '{"user_id":42,"segments":[{"slug":"C1"}]}' "before the restart the cache still serves what it read: $stale"
c0=$(metric "$a" 'sluice_segments_cache_invalidations_total{reason="connection"}')
sl_svc_restart postgres > /dev/null
# A notices the restart when its connections see the server go: wait for
# that (the LISTEN connection back, the cache emptied), not for a guess.
t_wait_until 30 '[ "$(python3 -c "print(int($(metric "$a" "sluice_segments_cache_invalidations_total{reason=\"connection\"}") > $c0))")" = 1 ] && ready "$a"'
fresh=$(curl -s "$a/segment/user/42")
t_check "$fresh" = '{"user_id":42,"segments":[{"slug":"C1"},{"slug":"C2"}]}' "after the restart: $fresh"
c1=$(metric "$a" 'sluice_segments_cache_invalidations_total{reason="connection"}')
t_check "$(python3 -c "print(int($c1 > $c0))")" = 1 "counted as invalidations by connection: $c0 -> $c1"
t_end

t_exit
