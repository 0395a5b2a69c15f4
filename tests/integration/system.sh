#!/usr/bin/env bash
# The whole system, from the conf/ files users get: PostgreSQL, Redis and
# ClickHouse from the harness, then
#   1. the five roles as separate sluiced processes (broker, generator,
#      aggregator, segments, outbox), each on its own port;
#   2. the same modules in one all-in-one sluiced (conf/sluice.conf).
# Each run proves the flow: generator traffic counted exactly by the
# aggregator; segment API changes -> outbox -> segment_events -> counted
# exactly by the aggregator; a SIGHUP to every instance under traffic
# (modules replaced) changes no count; SIGTERM to all exits 0.
# The shipped files are only pointed at the local services, ports and
# temp dirs (tests/harness/conf_local.py); everything else is as shipped.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"
. "$SL_TOP/tests/harness/roles.sh"

t_scratch

N=${N:-5000}         # events per generator burst
USERS=${USERS:-30}   # users the segment flow changes
mods=$work/mods
mkdir -p "$mods"
for m in metrics generator aggregator segments outbox; do
    cp "$SL_BUILD/_modules/$m.so" "$mods/"
done

# The flow both runs below check; a SIGHUP is a kill here.
. "$SL_TOP/tests/harness/flow.sh"

# ------------------------------------------------------------ services
flow_services || { t_exit; exit 1; }

# ============================================== 1. one sluiced per role
roles_in roles
roles=(broker aggregator outbox segments generator)
for r in "${roles[@]}"; do role_conf "$r" "$r"; done

t_case "sluiced --init-schema applies the roles' schema and exits, serving nothing"
for r in aggregator segments outbox; do
    timeout 120 "$SLUICED" --init-schema -c "${conf_of[$r]}" 2>>"$work/init.log"
    t_check $? -eq 0 "$r.conf: exit 0"
done
t_check "$(chq "EXISTS TABLE page_views_per_minute")" = 1 "ClickHouse: the aggregator's tables exist"
t_check "$(pgq "SELECT count(*) FROM pg_tables WHERE tablename IN ('users', 'segments', 'user_segments', 'segment_history', 'outbox')")" = 5 \
    "PostgreSQL: the segments tables and the outbox exist"
t_check "$(pgq "SELECT count(*) FROM information_schema.columns WHERE table_name = 'outbox' AND column_name = 'claimed_by'")" = 1 \
    "the outbox has the relay's claim columns"
t_check "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[segments]}/healthz")" = 000 "nothing listened"
python3 "$SL_TOP/tests/harness/conf_local.py" "${conf_of[aggregator]}" "$work/noch.conf" "clickhouse:url=http://127.0.0.1:$(t_free_port)"
timeout 120 "$SLUICED" --init-schema -c "$work/noch.conf" 2>"$work/noch.log"
t_check $? -eq 1 "ClickHouse unreachable: exit 1"
t_check "$(grep -c 'aggregator.*schema not applied' "$work/noch.log")" -ge 1 "naming the module and why"
t_end

t_case "the five roles start from conf/ as separate processes"
roles_up "${roles[@]}"
role_bases
curl -s -o /dev/null -X POST "$gbase/generator/config/speed?eps=0"
t_end

role_flow roles R

t_case "roles: SIGTERM to all exits 0"
role_stop generator segments outbox aggregator broker
t_end

# ============================================ 2. everything in one sluiced
pgq "CREATE DATABASE allinone" >/dev/null
pgdsn="$SL_PG_DSN dbname=allinone"
redisurl=$SL_REDIS_URL/1
chdb=allinone
clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" --query "CREATE DATABASE $chdb"
boot=$work/all.bootstrap

t_case "all-in-one: conf/sluice.conf runs every module in one process"
port[all]=$(t_free_port)
conf_of[all]=$work/all.conf
localize sluice "${conf_of[all]}" "core:listen=127.0.0.1:${port[all]}"
"$SLUICED" -t -c "${conf_of[all]}" 2>>"$work/t.out"
t_check $? -eq 0 "sluice.conf passes -t"
role_start all "${conf_of[all]}"
t_check $? -eq 0 "up on ${port[all]}"
t_wait_until 60 "ready all"
t_check "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[all]}/readyz")" = 200 "ready"
gbase=http://127.0.0.1:${port[all]}
abase=$gbase sbase=$gbase obase=$gbase
curl -s -o /dev/null -X POST "$gbase/generator/config/speed?eps=0"
t_end

t_case "all-in-one: the same flow, exactly"
t_wait_until 60 settled
curl -s -o /dev/null -X POST "$gbase/generator/generate/burst?count=$N"
t_wait_until 120 settled
check_pages "all-in-one"
segment_flow A
check_segments "all-in-one"
t_end

t_case "all-in-one: GET /aggregator/analytics answers for analytics.events out of the box"
an_from=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)
an_to=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
# One full event and one without id and timestamp (taken: sluice-api(7)).
printf '%s\n' '{"id":"all-an-1","timestamp":"'"$(date -u +%Y-%m-%dT%H:%M:%S.000Z)"'","eventType":"all_signup","userId":"u-all-1","properties":{}}' \
    '{"eventType":"all_signup","userId":"u-all-2"}' | kcat -P -b "$(cat "$boot")" -t analytics.events 2>"$work/kcat-an.err"
t_check $? -eq 0 "kcat produced two events to analytics.events: $(head -c 200 "$work/kcat-an.err")"
an_count() {
    curl -s "$abase/aggregator/analytics?from=$an_from&to=$an_to&event_type=all_signup" |
        python3 -c 'import json,sys; print([(r["events"], r["unique_users"]) for r in json.load(sys.stdin)["by_type"] if r["event_type"] == "all_signup"])' 2>/dev/null
}
t_wait_until 60 '[ "$(an_count)" = "[(2, 2)]" ]'
t_check "$(an_count)" = "[(2, 2)]" "counted by type with unique users: $(an_count)"
t_end

t_case "all-in-one: every metric sluice-metrics(7) documents is exposed"
curl -s "$gbase/metrics" > "$work/metrics.txt"
missing=$(sed -n 's/^\.B \(sluice_[a-z0-9_]*\)$/\1/p' "$SL_TOP/contrib/man/sluice-metrics.7" | sort -u |
    while read -r m; do grep -q "^# TYPE $m " "$work/metrics.txt" || echo "$m"; done)
t_check "${missing:-none}" = none "families missing from /metrics: ${missing:-none}"
promtool check metrics < "$work/metrics.txt" > "$work/promtool.out" 2>&1
t_check $? -eq 0 "promtool check metrics: $(head -c 300 "$work/promtool.out")"
t_end

t_case "all-in-one: SIGHUP under traffic changes no count; SIGTERM exits 0"
tweak_of[all]="module aggregator:batch_interval=700ms;module outbox:poll_interval=1500ms;module segments:sweep_interval=300ms"
traffic_under_hup A all
check_pages "all-in-one after SIGHUP"
check_segments "all-in-one after SIGHUP"
role_stop all
t_end

t_exit
