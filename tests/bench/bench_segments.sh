#!/usr/bin/env bash
# tests/bench/bench_segments.sh - the segments API beside its two ceilings,
# measured in the same run on this machine.  A benchmark, not a test: it
# prints a table and never fails on a figure.
#
#   GET  /segment/user/{id}  and  POST /segment/user  under wrk -t2 -c64,
#   against (a) nginx answering a fixed JSON (the HTTP ceiling) and
#   (b) pgbench running the same SQL with the same concurrency (64
#   clients, 2 threads, extended protocol like the connector; the
#   database ceiling).  Ratio = sluiced / the lower ceiling; target >= 0.8.
#   p99 latencies from wrk --latency and from pgbench's transaction log.
#
# Uses the optimized (non-sanitizer) build in build/ (made if missing),
# PostgreSQL and Redis from tests/harness/services.sh.  10000 users, 10
# segments, about 3 memberships each.  DURATION=10s by default.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${SL_BUILD:-$top/build}
duration=${DURATION:-10s}
users=${USERS:-10000}
. "$top/tests/lib.sh"
. "$top/tests/harness/services.sh"
. "$top/tests/bench/result.sh"
. "$top/tests/bench/nginx_reference.sh"

if [ ! -x "$build/core/sluiced" ]; then
    (cd "$top" && { [ -x configure ] || autoreconf -fi; })
    mkdir -p "$build"
    (cd "$build" && { [ -f Makefile ] || "$top/configure" --quiet; } && make -s -j"$(nproc)")
fi
for tool in nginx wrk pgbench psql; do
    command -v $tool >/dev/null || { echo "$tool missing: bash tests/harness/install-deps.sh" >&2; exit 1; }
done

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

# ------------------------------------------------------------------ nginx
nport=$(t_free_port)
nginx_ref_start "$work" "$nport" "/" '{"user_id":1,"segments":[{"slug":"S1"},{"slug":"S4"},{"slug":"S7"}]}'
pids+=($!)

# ---------------------------------------------------------------- sluiced
sport=$(t_free_port)
mkdir -p "$work/mods"
cp "$build/_modules/segments.so" "$build/_modules/metrics.so" "$work/mods/"
cat > "$work/sluice.conf" <<EOF
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
EOF
"$build/core/sluiced" -c "$work/sluice.conf" 2>"$work/sluiced.log" &
pids+=($!)
t_wait_http "http://127.0.0.1:$nport/" 10
t_wait_until 30 '[ "$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$sport/readyz")" = 200 ]' ||
    { echo "sluiced not ready:" >&2; tail -n 20 "$work/sluiced.log" >&2; exit 1; }

# ------------------------------------------------------------------- data
psqlc "INSERT INTO users (id) SELECT generate_series(1, $users);
       SELECT setval('users_id_seq', $users);
       INSERT INTO segments (slug) SELECT 'S' || g FROM generate_series(0, 9) g;
       INSERT INTO user_segments (user_id, slug)
         SELECT u, 'S' || ((u + k * 3) % 10) FROM generate_series(1, $users) u, generate_series(0, 2) k" > /dev/null
psqlc "VACUUM ANALYZE"

cat > "$work/get.lua" <<EOF
request = function()
  return wrk.format("GET", "/segment/user/" .. math.random(1, $users))
end
EOF
cat > "$work/post.lua" <<EOF
local headers = { ["Content-Type"] = "application/json" }
request = function()
  local a = math.random(0, 9)
  local d = (a + math.random(1, 9)) % 10
  return wrk.format("POST", "/segment/user", headers, string.format(
    '{"user_id":%d,"add_segments":["S%d"],"delete_segments":["S%d"]}', math.random(1, $users), a, d))
end
EOF

# The connector's statements as pgbench scripts, verbatim but for the
# time format's colons, which pgbench would take for variables.
cat > "$work/get.sql" <<EOF
\set uid random(1, $users)
SELECT us.slug, to_char(us.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.US"Z"') FROM users u LEFT JOIN user_segments us ON us.user_id = u.id AND (us.expires_at IS NULL OR us.expires_at > now()) WHERE u.id = :uid ORDER BY us.slug;
EOF
cat > "$work/post.sql" <<EOF
\set uid random(1, $users)
\set a random(0, 9)
\set d (:a + random(1, 9)) % 10
BEGIN;
WITH u AS (INSERT INTO users (id) VALUES (:uid::bigint) ON CONFLICT (id) DO NOTHING RETURNING id) INSERT INTO user_segments (user_id, slug) SELECT u.id, s.slug FROM u, segments s WHERE s.user_percent IS NOT NULL AND segments_bucket(u.id, s.slug) < round(s.user_percent * 100) ORDER BY s.slug;
SELECT setval('users_id_seq', :uid::bigint) WHERE :uid::bigint > (SELECT last_value FROM users_id_seq);
SELECT 1 FROM users WHERE id = :uid FOR NO KEY UPDATE;
SELECT s FROM unnest(ARRAY['S' || :a, 'S' || :d]) AS s WHERE NOT EXISTS (SELECT 1 FROM segments WHERE slug = s) ORDER BY s LIMIT 1;
DELETE FROM user_segments WHERE user_id = :uid AND expires_at <= now();
DELETE FROM user_segments WHERE user_id = :uid AND slug = ANY (ARRAY['S' || :d]);
INSERT INTO user_segments (user_id, slug, expires_at) SELECT :uid, s, CASE WHEN 0 > 0 THEN now() + make_interval(secs => 0) END FROM unnest(ARRAY['S' || :a]) AS s ORDER BY s ON CONFLICT (user_id, slug) DO UPDATE SET expires_at = EXCLUDED.expires_at RETURNING xmax = 0, slug, extract(epoch FROM expires_at);
COMMIT;
EOF

# wrk URL [SCRIPT]: "requests/s p99_ms non2xx"
wrk_run() {
    wrk -t2 -c64 -d"$duration" --latency ${2:+-s "$2"} "$1" > "$work/wrk.out" 2>&1
    python3 - "$work/wrk.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rps = re.search(r"Requests/sec:\s*([\d.]+)", t).group(1)
m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\b", t, re.M)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")
bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", t)
err = re.search(r"Socket errors:.*", t)
print(rps, "%.2f" % p99, (bad.group(1) if bad else "0") + ("/" + err.group(0).replace(" ", "") if err else ""))
PY
}
# pgbench SCRIPT: "tps p99_ms failed"
pgb_run() {
    rm -f "$work"/pgb.*
    pgbench -n -M extended -c 64 -j 2 -T "${duration%s}" -f "$1" -l --log-prefix="$work/pgb" "$SL_PG_DSN" > "$work/pgb.out" 2>&1 || true
    python3 - "$work/pgb.out" "$work" <<'PY'
import glob, re, sys
t = open(sys.argv[1]).read()
m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", t) or re.search(r"tps = ([\d.]+)", t)
lat = []
for f in glob.glob(sys.argv[2] + "/pgb.*"):
    for line in open(f):
        p = line.split()
        if len(p) > 2 and p[2].isdigit():
            lat.append(int(p[2]))
lat.sort()
p99 = lat[int(len(lat) * 0.99)] / 1000 if lat else float("nan")
fails = re.search(r"number of failed transactions: (\d+)", t)
print(m.group(1) if m else "nan", "%.2f" % p99, fails.group(1) if fails else "?")
PY
}

base=http://127.0.0.1:$sport
wrk -t2 -c64 -d2s "http://127.0.0.1:$nport/" > /dev/null 2>&1 # warm-ups
wrk -t2 -c64 -d2s -s "$work/get.lua" "$base" > /dev/null 2>&1
read -r nginx_rps nginx_p99 nginx_bad <<< "$(wrk_run "http://127.0.0.1:$nport/segment/user/1")"
read -r get_rps get_p99 get_bad <<< "$(wrk_run "$base" "$work/get.lua")"
read -r pget_tps pget_p99 pget_fail <<< "$(pgb_run "$work/get.sql")"
read -r post_rps post_p99 post_bad <<< "$(wrk_run "$base" "$work/post.lua")"
read -r ppost_tps ppost_p99 ppost_fail <<< "$(pgb_run "$work/post.sql")"

ratio() { python3 -c "nan = float('nan'); a, b, c = $1, $2, $3; print('%.2f (%s)' % (a / min(b, c), 'nginx' if b < c else 'pgbench'))"; }
printf '\n%-34s %12s %9s %12s %12s %9s %9s %16s\n' "benchmark (wrk -t2 -c64 -d$duration)" "sluiced/s" "p99 ms" "nginx/s" "pgbench/s" "pg p99" "non-2xx" "ratio to lower"
printf '%-34s %12s %9s %12s %12s %9s %9s %16s\n' "GET /segment/user/{id}" "$get_rps" "$get_p99" "$nginx_rps" "$pget_tps" "$pget_p99" "$get_bad" "$(ratio "$get_rps" "$nginx_rps" "$pget_tps")"
printf '%-34s %12s %9s %12s %12s %9s %9s %16s\n' "POST /segment/user (1 add, 1 del)" "$post_rps" "$post_p99" "$nginx_rps" "$ppost_tps" "$ppost_p99" "$post_bad" "$(ratio "$post_rps" "$nginx_rps" "$ppost_tps")"
echo "nginx p99 ${nginx_p99} ms; pgbench failed transactions: get ${pget_fail}, post ${ppost_fail}; sluiced pool_size ${POOL:-16}; target ratio >= 0.8"
lower() { python3 -c "print(min($1, $2))"; }
lower_name() { python3 -c "print('nginx' if $1 < $2 else 'pgbench')"; }
bench_result get_segment_user "$get_rps" req/s "$(lower "$nginx_rps" "$pget_tps")" "$(lower_name "$nginx_rps" "$pget_tps")" ">=0.8"
bench_result post_segment_user "$post_rps" req/s "$(lower "$nginx_rps" "$ppost_tps")" "$(lower_name "$nginx_rps" "$ppost_tps")" ">=0.8"
bench_result get_segment_user_p99 "$get_p99" ms - - -
bench_result post_segment_user_p99 "$post_p99" ms - - -
