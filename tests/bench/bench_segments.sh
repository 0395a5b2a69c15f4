#!/usr/bin/env bash
# tests/bench/bench_segments.sh - the segments API beside its references,
# measured in the same run on this machine.  A benchmark, not a test: it
# prints a table and never fails on a figure; it fails (exit 1) when a
# reference run fails, since a ratio against a broken reference means
# nothing.
#
#   GET  /segment/user/{id}  and  POST /segment/user  under wrk -t2 -c64, against
#   (a) nginx answering a fixed JSON of the same shape (the HTTP ceiling;
#       tests/bench/nginx_reference.sh: one worker, access log off,
#       keep-alive connections never recycled), and
#   (b) pgbench running the SQL sluiced sends (a cache miss for GET, the
#       change's transaction for POST) at its best on this machine:
#       prepared statements (-M prepared), 2 threads, the best of 8, 16
#       and 64 clients, no per-transaction log.
#   Reads are judged against nginx (target >= 0.5): sluiced answers them
#   from its cache, so the database is not their ceiling.  Writes are
#   printed against the lower of the two, as before.
#
# Sides run alternately, ROUNDS times (3 by default); the table shows each
# figure's median, with the cache's hit ratio over the measured GET runs,
# and the load average before and after.  Before each GET run every user
# is read once, in order (what a long-running instance holds; the POST run
# of the round before invalidated the users it changed).  PostgreSQL is vacuumed between
# the sides that write and the sides that read.
#
# Data: USERS users (100000), 10 segments, 4 memberships each; one in
# twenty of them with a TTL: half of those a day away, half expiring
# within the first minutes of the run, so expiry is served from the
# cache while it happens.  DURATION=10s per run by default.
#
# Uses the optimized (non-sanitizer) build in build/ (made if missing),
# PostgreSQL and Redis from tests/harness/services.sh.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${SL_BUILD:-$top/build}
duration=${DURATION:-10s}
users=${USERS:-100000}
rounds=${ROUNDS:-3}
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
fail() { echo "bench_segments: $*" >&2; exit 1; }

load_before=$(uptime | sed 's/.*load average: //')
sl_svc_start postgres >/dev/null
sl_svc_start redis >/dev/null
psqlc() { psql -X -At -q "$SL_PG_DSN" -c "$1"; }

# ------------------------------------------------------------------ nginx
nport=$(t_free_port)
nginx_ref_start "$work" "$nport" "/" '{"user_id":1,"segments":[{"slug":"S1"},{"slug":"S4","expires_at":"2026-12-01T14:20:04.866285Z"},{"slug":"S7"}]}'
pids+=($!)
nmaster=$!

# ---------------------------------------------------------------- sluiced
. "$top/tests/bench/segments_setup.sh"
segments_conf > "$work/sluice.conf"
"$build/core/sluiced" -c "$work/sluice.conf" 2>"$work/sluiced.log" &
pids+=($!)
spid=$!
t_wait_http "http://127.0.0.1:$nport/" 10
# nginx answers from its one worker: its CPU is the reference's
nworker=$(pgrep -P "$nmaster" | head -n 1)
[ -n "$nworker" ] || fail "no nginx worker"
t_wait_until 30 '[ "$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$sport/readyz")" = 200 ]' ||
    { echo "sluiced not ready:" >&2; tail -n 20 "$work/sluiced.log" >&2; exit 1; }

# ------------------------------------------------------------------- data
psqlc "INSERT INTO users (id) SELECT generate_series(1, $users);
       SELECT setval('users_id_seq', $users);
       INSERT INTO segments (slug) SELECT 'S' || g FROM generate_series(0, 9) g;
       INSERT INTO user_segments (user_id, slug, expires_at)
         SELECT u, 'S' || ((u + k * 3) % 10),
                CASE WHEN (u * 4 + k) % 20 = 0 THEN now() + interval '1 day'
                     WHEN (u * 4 + k) % 20 = 10 THEN now() + (u % 600) * interval '1 second' END
         FROM generate_series(1, $users) u, generate_series(0, 3) k" > /dev/null
psqlc "VACUUM ANALYZE"
members=$(psqlc "SELECT count(*) || ' memberships, ' || count(expires_at) || ' with a TTL' FROM user_segments")

cat > "$work/get.lua" <<EOF
request = function()
  return wrk.format("GET", "/segment/user/" .. math.random(1, $users))
end
EOF
# One read of every user, in order, from FROM on: what a long-running
# instance would hold (fill(), below).
cat > "$work/fill.lua" <<EOF
n = tonumber(os.getenv("FROM"))
request = function()
  n = n + 1
  return wrk.format("GET", "/segment/user/" .. ((n - 1) % $users + 1))
end
EOF
post_lua "$work/post.lua" "$users"

# The connector's statements as pgbench scripts, verbatim but for the
# variables.  GET: what a cache miss reads (modules/segments/lookup.c);
# POST: the change's transaction (modules/segments/members.c).
cat > "$work/get.sql" <<EOF
\set uid random(1, $users)
SELECT us.slug, (extract(epoch FROM us.expires_at) * 1000000)::bigint FROM users u LEFT JOIN user_segments us ON us.user_id = u.id AND (us.expires_at IS NULL OR us.expires_at > now()) WHERE u.id = :uid ORDER BY us.slug;
EOF
cat > "$work/post.sql" <<EOF
\set uid random(1, $users)
\set a random(0, 9)
\set d (:a + random(1, 9)) % 10
BEGIN;
WITH u AS (INSERT INTO users (id) SELECT :uid::bigint WHERE :uid::bigint <= 4503599627370495 ON CONFLICT (id) DO NOTHING RETURNING id), m AS (INSERT INTO user_segments (user_id, slug) SELECT u.id, s.slug FROM u, segments s WHERE s.user_percent IS NOT NULL AND segments_bucket(u.id, s.slug) < round(s.user_percent * 100) ORDER BY s.slug) SELECT setval('users_id_seq', :uid::bigint) WHERE :uid::bigint > (SELECT last_value FROM users_id_seq) AND :uid::bigint <= 4503599627370495;
SELECT (SELECT s FROM unnest(ARRAY['S' || :a, 'S' || :d]) AS s WHERE NOT EXISTS (SELECT 1 FROM segments WHERE slug = s) ORDER BY s LIMIT 1) FROM users WHERE id = :uid FOR NO KEY UPDATE;
WITH d AS (DELETE FROM user_segments WHERE user_id = :uid AND (expires_at <= now() OR slug = ANY (ARRAY['S' || :d])) RETURNING expires_at) SELECT count(*) FILTER (WHERE expires_at IS NULL OR expires_at > now()) FROM d;
INSERT INTO user_segments (user_id, slug, expires_at) SELECT :uid, s, CASE WHEN 0 > 0 THEN now() + make_interval(secs => 0) END FROM unnest(ARRAY['S' || :a]) AS s ORDER BY s ON CONFLICT (user_id, slug) DO UPDATE SET expires_at = EXCLUDED.expires_at RETURNING xmax = 0, slug, extract(epoch FROM expires_at);
COMMIT;
EOF

# CPU time (user + system, seconds) process PID has used so far
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
# wrk PID URL [SCRIPT]: "requests/s p99_ms errors cpu_us" (errors: non-2xx
# answers plus socket errors; cpu_us: the CPU time process PID spent per
# request, which other work on the machine disturbs far less than the rate)
wrk_run() {
    local c0 c1
    c0=$(cpu_of "$1")
    wrk -t2 -c64 -d"$duration" --latency ${3:+-s "$3"} "$2" > "$work/wrk.out" 2>&1 || true
    c1=$(cpu_of "$1")
    python3 - "$work/wrk.out" "$c0" "$c1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
n = re.search(r"(\d+) requests in", t)
cpu = (float(sys.argv[3]) - float(sys.argv[2])) * 1e6 / int(n.group(1)) if n and int(n.group(1)) else float("nan")
m = re.search(r"Requests/sec:\s*([\d.]+)", t)
rps = m.group(1) if m else "0"
m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\b", t, re.M)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")
bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", t)
errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", t))
print(rps, "%.2f" % p99, (int(bad.group(1)) if bad else 0) + errs, "%.1f" % cpu)
PY
}
# pgbench SCRIPT CLIENTS: "tps latency_avg_ms failed"; fails on an error
pgb_one() {
    pgbench -n -M prepared -c "$2" -j 2 -T "${duration%s}" -f "$1" "$SL_PG_DSN" > "$work/pgb.out" 2>&1 ||
        { cat "$work/pgb.out" >&2; fail "pgbench $1 with $2 clients failed"; }
    python3 - "$work/pgb.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", t) or re.search(r"tps = ([\d.]+)", t)
lat = re.search(r"latency average = ([\d.]+) ms", t)
fails = re.search(r"number of failed transactions: (\d+)", t)
print(m.group(1) if m else "0", lat.group(1) if lat else "nan", fails.group(1) if fails else "0")
PY
}
# pgbench SCRIPT: the best of 8, 16 and 64 clients: "tps latency_ms clients"
pgb_best() {
    local c tps lat failed best=0 bestlat=nan bestc=0
    for c in 8 16 64; do
        read -r tps lat failed <<< "$(pgb_one "$1" "$c")"
        [ "$failed" = 0 ] && python3 -c "import sys; sys.exit(0 if $tps > 0 else 1)" ||
            fail "pgbench $1 with $c clients: $failed failed transactions, $tps tps"
        if python3 -c "import sys; sys.exit(0 if $tps > $best else 1)"; then
            best=$tps bestlat=$lat bestc=$c
        fi
    done
    echo "$best $bestlat $bestc"
}
metric() {
    curl -s "http://127.0.0.1:$sport/metrics" | awk -v n="$1" '$1 == n { v = $2 } END { print v + 0 }'
}
# Reads every user once, in 5-second runs that go on where the last one's
# answers ended (a few ids may be read twice, none skipped).
fill() {
    local from=0 done
    while [ "$from" -lt "$users" ]; do
        done=$(FROM=$from wrk -t1 -c32 -d5s -s "$work/fill.lua" "$base" | awk '/requests in/ { print $1 }')
        [ "${done:-0}" -gt 0 ] || fail "filling the cache: no answer"
        from=$((from + done))
    done
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
vacuum() { psqlc "VACUUM ANALYZE" > /dev/null; }

base=http://127.0.0.1:$sport
ng=() ngp=() ngc=() gc=() pc=() gr=() gp=() pg=() pgl=() pgc=() pr=() pp=() ppg=() ppgl=() ppgc=() hits=0 misses=0 gbad=0 pbad=0
for r in $(seq 1 "$rounds"); do
    read -r rps p99 bad cpu <<< "$(wrk_run "$nworker" "http://127.0.0.1:$nport/segment/user/1")"
    [ "$bad" = 0 ] && python3 -c "import sys; sys.exit(0 if $rps > 0 else 1)" ||
        fail "the nginx reference failed: $bad errors, $rps req/s"
    ng+=("$rps") ngp+=("$p99") ngc+=("$cpu")
    fill
    h0=$(metric sluice_segments_cache_hits_total) m0=$(metric sluice_segments_cache_misses_total)
    read -r rps p99 bad cpu <<< "$(wrk_run "$spid" "$base" "$work/get.lua")"
    hits=$((hits + $(metric sluice_segments_cache_hits_total) - h0))
    misses=$((misses + $(metric sluice_segments_cache_misses_total) - m0))
    gr+=("$rps") gp+=("$p99") gc+=("$cpu") gbad=$((gbad + bad))
    read -r tps lat c <<< "$(pgb_best "$work/get.sql")"
    pg+=("$(printf %.0f "$tps")") pgl+=("$lat") pgc+=("$c")
    read -r rps p99 bad cpu <<< "$(wrk_run "$spid" "$base" "$work/post.lua")"
    pr+=("$rps") pp+=("$p99") pc+=("$cpu") pbad=$((pbad + bad))
    vacuum
    read -r tps lat c <<< "$(pgb_best "$work/post.sql")"
    ppg+=("$(printf %.0f "$tps")") ppgl+=("$lat") ppgc+=("$c")
    vacuum
    echo "round $r: nginx ${ng[-1]}/s, GET ${gr[-1]}/s (p99 ${gp[-1]} ms), pgbench GET ${pg[-1]}/s (${pgc[-1]} clients), POST ${pr[-1]}/s (p99 ${pp[-1]} ms), pgbench POST ${ppg[-1]}/s (${ppgc[-1]} clients); CPU per request nginx ${ngc[-1]} us, GET ${gc[-1]} us, POST ${pc[-1]} us; load $(cut -d' ' -f1-3 /proc/loadavg)"
done
load_after=$(uptime | sed 's/.*load average: //')

m_ng=$(median "${ng[@]}") m_ngp=$(median "${ngp[@]}")
m_gr=$(median "${gr[@]}") m_gp=$(median "${gp[@]}") m_pg=$(median "${pg[@]}") m_pgl=$(median "${pgl[@]}")
m_pr=$(median "${pr[@]}") m_pp=$(median "${pp[@]}") m_ppg=$(median "${ppg[@]}") m_ppgl=$(median "${ppgl[@]}")
hit_ratio=$(python3 -c "print('%.3f' % ($hits / max(1, $hits + $misses)))")
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
lower() { python3 -c "print(min($1, $2))"; }
lower_name() { python3 -c "print('nginx' if $1 < $2 else 'pgbench')"; }

printf '\n%s users, %s; median of %s rounds, wrk -t2 -c64 -d%s\n' "$users" "$members" "$rounds" "$duration"
printf '%-34s %10s %8s %10s %8s %12s %10s %9s %14s\n' "benchmark" "sluiced/s" "p99 ms" "nginx/s" \
    "nginx p99" "pgbench/s" "pg avg ms" "errors" "ratio"
printf '%-34s %10s %8s %10s %8s %12s %10s %9s %14s\n' "GET /segment/user/{id}" "$m_gr" "$m_gp" "$m_ng" \
    "$m_ngp" "$m_pg" "$m_pgl" "$gbad" "$(ratio "$m_gr" "$m_ng") (nginx)"
printf '%-34s %10s %8s %10s %8s %12s %10s %9s %14s\n' "POST /segment/user (1 add, 1 del)" "$m_pr" "$m_pp" \
    "$m_ng" "$m_ngp" "$m_ppg" "$m_ppgl" "$pbad" "$(ratio "$m_pr" "$(lower "$m_ng" "$m_ppg")") ($(lower_name "$m_ng" "$m_ppg"))"
echo "GET cache hit ratio over the measured runs: $hit_ratio ($hits hits, $misses misses)"
echo "pgbench: -M prepared -j 2, best of 8/16/64 clients per round: GET ${pgc[*]}, POST ${ppgc[*]}; sluiced pool_size ${POOL:-16}"
m_ngc=$(median "${ngc[@]}") m_gc=$(median "${gc[@]}") m_pc=$(median "${pc[@]}")
echo "CPU per request (user + system, median): nginx $m_ngc us, sluiced GET $m_gc us ($(ratio "$m_ngc" "$m_gc") of nginx's rate per CPU second), POST $m_pc us"
echo "load average before: $load_before; after: $load_after"
echo "target: GET ratio to nginx >= 0.5"
bench_result get_segment_user "$m_gr" req/s "$m_ng" nginx ">=0.5"
bench_result get_segment_user_pgbench "$m_pg" tps - - -
bench_result post_segment_user "$m_pr" req/s "$(lower "$m_ng" "$m_ppg")" "$(lower_name "$m_ng" "$m_ppg")" -
bench_result get_segment_user_p99 "$m_gp" ms - - -
bench_result post_segment_user_p99 "$m_pp" ms - - -
bench_result get_segment_user_cache_hit_ratio "$hit_ratio" ratio - - -
bench_result get_segment_user_cpu "$m_gc" us/req "$m_ngc" nginx -
