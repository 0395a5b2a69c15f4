#!/usr/bin/env bash
# tests/bench/bench_scale.sh - what a second instance of a role adds on this
# machine: each figure with two instances beside the same with one (the
# reference), measured in the same run.  A benchmark, not a test: it prints
# the figures and fails only when a run leaves no figure or a wrong count.
#
#   segments    GET /segment/user/{id} req/s under wrk -t2 -c64 for DURATION
#               through nginx (tests/bench/nginx_reference.sh's settings,
#               round-robin, keep-alive upstream connections) over one, then
#               two segments instances; USERS users with two segments each
#               (written by SQL), the caches warmed by random reads first.
#   outbox      rows/s: ROWS rows inserted while no relay runs, then one
#               (then two) relays started; time from the start to the table
#               empty.
#   aggregator  events/s into the ClickHouse cluster of the harness (two
#               shards, [clickhouse] cluster): N generator events in
#               page_views (64 partitions), then one (then two) aggregators in
#               a fresh group, each run into its own database; time from the
#               start to every event consumed and nothing buffered.
#
# The outbox and aggregator times include starting the daemons and joining
# the group, the same for one and two.  Each figure is one run (RUNS=3 for
# the median of three).  Two instances cannot do twice the work of one on
# 2 cores: one instance of a role already keeps a core busy at its peak, and
# PostgreSQL, ClickHouse, nginx and wrk share the same cores.  Target:
# ratio >= 1.0 (a second instance does not make it slower).
#
# Uses the optimized build in build/ (made if missing), PostgreSQL, Redis
# and the ClickHouse cluster from tests/harness/services.sh.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${SL_BUILD:-$top/build}
duration=${DURATION:-10s}
users=${USERS:-10000}
rows=${ROWS:-50000}
# The embedded broker keeps 5 MiB per partition and drops the oldest
# messages beyond it, read or not; the generator's page popularity puts a
# tenth of the events in one partition, which 200,000 events overflow.
n=${N:-100000}
runs=${RUNS:-1}
. "$top/tests/lib.sh"
. "$top/tests/harness/services.sh"
. "$top/tests/bench/result.sh"
. "$top/tests/bench/nginx_reference.sh"
. "$top/tests/bench/setup.sh"

bench_build "$build" || exit 1
build=$(cd "$build" && pwd) # the daemons run from their scratch dir
SLUICED=$build/core/sluiced
bench_need nginx wrk psql clickhouse-client
bench_scratch bench_scale
mkdir -p "$work/mods"
cp "$build"/_modules/{metrics,segments,outbox,aggregator,generator}.so "$work/mods/"

load_before=$(uptime | sed 's/.*load average: //')
sl_svc_start postgres >/dev/null
sl_svc_start redis >/dev/null
sl_svc_start chcluster >/dev/null
psqlc() { psql -X -At -q "$SL_PG_DSN" -c "$1"; }
now() { date +%s.%N; }
rate() { python3 -c "import sys; print('%.0f' % (float(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2]))))" "$@"; }

declare -A dpid
# daemon NAME PORT CONF-BODY: one sluiced from a config written here
daemon() {
    printf '[core]\nlisten = 127.0.0.1:%s\nmodules_dir = mods\nlog_level = %s\n%s\n' "$2" "${LOG_LEVEL:-warn}" "$3" > "$work/$1.conf"
    (cd "$work" && exec "$SLUICED" -c "$1.conf" 2>>"$work/$1.log") &
    dpid[$1]=$!
    pids+=($!)
    t_wait_http "http://127.0.0.1:$2/healthz" 30 || fail "$1 did not start: $(tail -3 "$work/$1.log")"
}
stop() { local n; for n in "$@"; do kill -TERM "${dpid[$n]}"; wait "${dpid[$n]}" || true; done; }

# ------------------------------------------------------------ the broker
bport=$(t_free_port)
daemon broker "$bport" "[kafka]
brokers = embedded
embedded_topics = page_views:64, bench_outbox:16
bootstrap_file = $work/bootstrap
rdkafka.linger.ms = 5
[module metrics]
[module generator]
topic = page_views
partitions = 64
strategy = async
burst_max = $n"
t_wait_for 10 test -s "$work/bootstrap" || fail "no bootstrap file"
# Paused (eps = 0 in the file would leave the mode's rate): only the burst
# below is in the topic.
curl -s -o /dev/null -X POST "http://127.0.0.1:$bport/generator/config/speed?eps=0"
brokers=$(cat "$work/bootstrap")

# -------------------------------------------------------------- segments
declare -A sport
for s in s1 s2; do
    sport[$s]=$(t_free_port)
    daemon "$s" "${sport[$s]}" "[postgres]
dsn = $SL_PG_DSN
pool_size = 8
[redis]
url = $SL_REDIS_URL/0
[module metrics]
[module segments]"
done
# The data as bench_segments.sh makes it, written by SQL: USERS users, two
# memberships each.
t_wait_until 60 '[ "$(psqlc "SELECT count(*) FROM pg_tables WHERE tablename = '"'user_segments'"'")" = 1 ]' ||
    fail "the segments schema did not appear"
psqlc "INSERT INTO users (id) SELECT generate_series(1, $users);
       SELECT setval('users_id_seq', $users);
       INSERT INTO segments (slug) VALUES ('BENCH_A'), ('BENCH_B');
       INSERT INTO user_segments (user_id, slug) SELECT u, s FROM generate_series(1, $users) u,
         unnest(ARRAY['BENCH_A', 'BENCH_B']) s" > /dev/null
psqlc "VACUUM ANALYZE"
cat > "$work/get.lua" <<EOF
request = function()
    return wrk.format("GET", "/segment/user/" .. math.random(1, $users))
end
EOF
# proxy NAME PORT SERVER-PORT...: nginx round-robin over those instances
proxy() {
    nginx_proxy_start "$work/$1" "$2" "${@:3}"
    pids+=($!)
    t_wait_http "http://127.0.0.1:$2/healthz" 10 || fail "nginx $1 did not start"
}
p1=$(t_free_port)
p2=$(t_free_port)
proxy one "$p1" "${sport[s1]}"
proxy two "$p2" "${sport[s1]}" "${sport[s2]}"
# Random reads on each instance first, many times USERS: their caches
# hold every user.
for s in s1 s2; do
    wrk -t1 -c8 -d3s -s "$work/get.lua" "http://127.0.0.1:${sport[$s]}" > /dev/null 2>&1
done
wrk_rps() { # wrk_rps PORT: requests/s, non-2xx answers refused
    wrk -t2 -c64 -d"$duration" -s "$work/get.lua" "http://127.0.0.1:$1" > "$work/wrk.out" 2>&1
    ! grep -q 'Non-2xx' "$work/wrk.out" || fail "errors under wrk: $(grep Non-2xx "$work/wrk.out")"
    awk '/^Requests\/sec:/ { printf "%.0f\n", $2 }' "$work/wrk.out"
}
: > "$work/seg1" && : > "$work/seg2"
for r in $(seq 1 "$runs"); do
    wrk_rps "$p1" >> "$work/seg1"
    wrk_rps "$p2" >> "$work/seg2"
done
seg1=$(bench_median < "$work/seg1") && seg2=$(bench_median < "$work/seg2") || fail "a wrk run left no figure"
stop s1 s2

# ---------------------------------------------------------------- outbox
declare -A oport
relay_conf() { # the body of relay NAME's config
    printf '[postgres]\ndsn = %s\npool_size = 4\n[kafka]\nbrokers = %s\nrdkafka.linger.ms = 5\n[module metrics]\n[module outbox]\ntable = outbox\ntopic = bench_outbox\npoll_interval = 1s\n' \
        "$SL_PG_DSN" "$brokers"
}
"$SLUICED" --init-schema -c <(printf '[core]\nmodules_dir = %s\n%s\n' "$work/mods" "$(relay_conf)") 2>>"$work/init.log" ||
    fail "outbox schema: $(tail -3 "$work/init.log")"
# Timed from the rows' commit, once the relays have shared the buckets
# (each holds leases, all 64 held): what two relays do once running, not
# their start.
leases_spread() {
    [ "$(psqlc "SELECT count(DISTINCT owner) || ' ' || count(owner) FROM outbox_leases WHERE owner IS NOT NULL AND expires_at > now()")" = "$1 64" ]
}
outbox_run() { # outbox_run RELAYS: rows/s
    local k t0 t1
    for k in $(seq 1 "$1"); do
        oport[r$k]=$(t_free_port)
        daemon "r$k" "${oport[r$k]}" "$(relay_conf)"
    done
    t_wait_until 120 "leases_spread $1" || fail "the $1 relay(s) did not share the buckets"
    psqlc "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
           SELECT 'order', 'a' || (i % 1000), 'order.changed', json_build_object('i', i, 'pad', repeat('x', 100))::jsonb
           FROM generate_series(1, $rows) i"
    t0=$(now)
    t_wait_until 600 '[ "$(psqlc "SELECT count(*) FROM outbox")" = 0 ]' || fail "the outbox did not drain"
    t1=$(now)
    for k in $(seq 1 "$1"); do stop "r$k"; done
    rate "$rows" "$t0" "$t1"
}
: > "$work/ob1" && : > "$work/ob2"
for r in $(seq 1 "$runs"); do
    outbox_run 1 >> "$work/ob1"
    outbox_run 2 >> "$work/ob2"
done
ob1=$(bench_median < "$work/ob1") && ob2=$(bench_median < "$work/ob2") || fail "an outbox run left no figure"

# ------------------------------------------------------------ aggregator
code=$(curl -s -o "$work/burst" -w '%{http_code}' -X POST "http://127.0.0.1:$bport/generator/generate/burst?count=$n")
[ "$code" = 200 ] || fail "POST generate/burst?count=$n: $code $(cat "$work/burst")"
gen() { curl -s "http://127.0.0.1:$bport/generator/status" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
t_wait_until 600 '[ "$(gen "j[\"pending\"] + j[\"rate\"][\"burst_pending\"]")" = 0 ]' || fail "the burst did not settle"
total=$(gen 'j["delivered"]["total"]')
valid=$(gen 'j["delivered"]["view"] + j["delivered"]["bounce"]')
[ "$(gen 'j["failed"]["total"] + j["dropped"]["total"]')" = 0 ] || fail "the generator lost events"
declare -A aport
agg_conf() { # the body of an aggregator's config: DATABASE GROUP
    printf '[kafka]\nbrokers = %s\n[clickhouse]\nurl = %s\ndatabase = %s\ncluster = %s\n[module metrics]\n[module aggregator]\ntopics = page_views\ngroup = %s\nbatch_size = 50000\nbatch_interval = 1s\nroute.pv = page_views -> recover, dedup, page_views\nrdkafka.fetch.wait.max.ms = 10\n' \
        "$brokers" "$SL_CHC_URL1" "$1" "$SL_CHC_NAME" "$2"
}
consumed() { curl -s "http://127.0.0.1:$1/metrics" | awk 'index($1, "sluice_aggregator_consumed_total{") == 1 { s += $2 } END { print s + 0 }'; }
buffered() { curl -s "http://127.0.0.1:$1/aggregator/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["buffered"])'; }
drained() { # all of AGGREGATORS consumed every event and hold none
    local k sum=0
    for k in $(seq 1 "$1"); do
        sum=$((sum + $(consumed "${aport[a$k]}")))
        [ "$(buffered "${aport[a$k]}")" = 0 ] || return 1
    done
    [ "$sum" -ge "$total" ]
}
# Timed from the first partitions any of them was assigned (as it logged
# it) to the last event consumed and nothing buffered: without the start
# and the group join, which are the same for one and two.
first_assigned() {
    python3 - "$@" <<'PY'
import datetime, re, sys
ts = []
for f in sys.argv[1:]:
    for line in open(f):
        m = re.match(r'(\S+Z) info  \[aggregator\] assigned \d+ partitions', line)
        if m:
            t = datetime.datetime.strptime(m.group(1), '%Y-%m-%dT%H:%M:%S.%fZ')
            ts.append(t.replace(tzinfo=datetime.timezone.utc).timestamp())
            break
print('%.3f' % min(ts) if ts else '')
PY
}
agg_run() { # agg_run AGGREGATORS RUN: events/s
    local k t0 t1 got logs=() db=bench_$1_$2
    clickhouse-client --host 127.0.0.1 --port "$SL_CHC_TCP1" --query "CREATE DATABASE $db ON CLUSTER $SL_CHC_NAME" >/dev/null
    "$SLUICED" --init-schema -c <(printf '[core]\nmodules_dir = %s\n%s\n' "$work/mods" "$(agg_conf "$db" "g_$db")") 2>>"$work/init.log" ||
        fail "cluster schema: $(tail -3 "$work/init.log")"
    for k in $(seq 1 "$1"); do
        aport[a$k]=$(t_free_port)
        : > "$work/a$k.log"
        LOG_LEVEL=info daemon "a$k" "${aport[a$k]}" "$(agg_conf "$db" "g_$db")"
        logs+=("$work/a$k.log")
    done
    t_wait_until 900 "drained $1" || fail "$1 aggregator(s) did not drain"
    t1=$(now)
    t0=$(first_assigned "${logs[@]}")
    [ -n "$t0" ] || fail "no aggregator logged its assignment"
    for k in $(seq 1 "$1"); do stop "a$k"; done
    got=$(clickhouse-client --host 127.0.0.1 --port "$SL_CHC_TCP1" --database "$db" --query "SELECT count() FROM page_views FINAL")
    [ "$got" = "$valid" ] || fail "$db holds $got events, the generator delivered $valid valid ones"
    rate "$total" "$t0" "$t1"
}
: > "$work/ag1" && : > "$work/ag2"
for r in $(seq 1 "$runs"); do
    agg_run 1 "$r" >> "$work/ag1"
    agg_run 2 "$r" >> "$work/ag2"
done
ag1=$(bench_median < "$work/ag1") && ag2=$(bench_median < "$work/ag2") || fail "an aggregator run left no figure"
stop broker
load_after=$(uptime | sed 's/.*load average: //')

printf '\nbench_scale: one instance of a role vs two (median of %s run(s); load average %s before, %s after)\n' "$runs" "$load_before" "$load_after"
printf '%-44s %12s %12s %6s\n' "figure" "one" "two" "ratio"
printf '%-44s %12s %12s %6s\n' "GET /segment/user req/s (nginx round-robin)" "$seg1" "$seg2" "$(awk -v a="$seg2" -v b="$seg1" 'BEGIN { printf "%.2f", a / b }')"
printf '%-44s %12s %12s %6s\n' "outbox rows/s ($rows rows)" "$ob1" "$ob2" "$(awk -v a="$ob2" -v b="$ob1" 'BEGIN { printf "%.2f", a / b }')"
printf '%-44s %12s %12s %6s\n' "aggregator events/s into 2 shards ($total)" "$ag1" "$ag2" "$(awk -v a="$ag2" -v b="$ag1" 'BEGIN { printf "%.2f", a / b }')"
bench_result segments_get_two_instances "$seg2" req/s "$seg1" one_instance ">=1.0"
bench_result outbox_two_relays "$ob2" rows/s "$ob1" one_relay ">=1.0"
bench_result aggregator_two_instances_cluster "$ag2" events/s "$ag1" one_instance ">=1.0"
