#!/usr/bin/env bash
# A ClickHouse cluster: two servers and ZooKeeper from the harness
# (sl_svc_start chcluster; SL_CHC_LAYOUT shards, the default: two shards of
# one replica; replicas: one shard of two, as scale_clickhouse_replicas.sh
# runs it), the aggregator role from conf/ with [clickhouse] cluster set,
# two instances in one group, fed by the generator role through the broker
# role:
#   - --init-schema creates every table on both nodes (ON CLUSTER): a
#     ReplicatedReplacingMergeTree NAME_local and a Distributed NAME;
#   - generator traffic is counted exactly through the Distributed tables;
#     two shards: each event is on one shard only; two replicas: each
#     replica holds every event;
#   - two shards: a replay of the whole topic (a new group reading from
#     the start) changes no count: the sharding key is the event id, so
#     every copy of an event lands on the shard that holds the others;
#   - the second server killed mid-stream and restarted: two shards,
#     inserts wait and are retried; two replicas, they go on through the
#     other replica and the restarted one catches up; either way nothing
#     is lost and nothing doubled;
#   - the query API's answer equals the truth;
#   - a retention sweep deletes an expired row from the nodes' local tables
#     and nothing else.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"
. "$SL_TOP/tests/harness/roles.sh"

t_scratch "$SL_BUILD"/_modules/{metrics,generator,aggregator}.so
LAYOUT=${SL_CHC_LAYOUT:-shards}
N=${N:-2000}    # events of the first burst
EPS=${EPS:-200} # generator events/s while a server goes down and back

. "$SL_TOP/tests/harness/flow.sh"

t_case "ZooKeeper and a ClickHouse cluster ($LAYOUT) start on loopback"
sl_svc_start chcluster
t_check $? -eq 0 "cluster $SL_CHC_NAME on ${SL_CHC_URL1:-none} and ${SL_CHC_URL2:-none}, ZooKeeper on ${SL_ZK_PORT:-none}"
t_end
[ -n "${SL_CHC_URL2:-}" ] || {
    t_exit
    exit 1
}
# flow.sh's checks read through the first node's Distributed tables.
SL_CH_URL=$SL_CHC_URL1
SL_CH_TCP_PORT=$SL_CHC_TCP1
chdb=sluice_c pgdsn= redisurl=
boot=$work/bootstrap
node() { # node N SQL: one node's answer
    local p=$SL_CHC_TCP1
    [ "$1" = 2 ] && p=$SL_CHC_TCP2
    clickhouse-client --host 127.0.0.1 --port "$p" --database "$chdb" --query "$2" 2>>"$work/chc.err"
}
clickhouse-client --host 127.0.0.1 --port "$SL_CHC_TCP1" --query "CREATE DATABASE $chdb ON CLUSTER $SL_CHC_NAME" > /dev/null
role_conf broker broker
for r in aggregator1 aggregator2; do role_conf "$r" aggregator "clickhouse:cluster=$SL_CHC_NAME"; done
role_conf aggregator3 aggregator "clickhouse:cluster=$SL_CHC_NAME" "module aggregator:group=replay"
role_conf generator generator

t_case "$LAYOUT: --init-schema creates a Replicated table and a Distributed one per table on both nodes"
timeout 300 "$SLUICED" --init-schema -c "${conf_of[aggregator1]}" 2>>"$work/init.log"
t_check $? -eq 0 "exit 0"
for n in 1 2; do
    t_check "$(node "$n" "SELECT count() FROM system.tables WHERE database = '$chdb' AND engine = 'ReplicatedReplacingMergeTree'")" = 6 \
        "node $n: six ReplicatedReplacingMergeTree tables"
    t_check "$(node "$n" "SELECT count() FROM system.tables WHERE database = '$chdb' AND engine = 'Distributed'")" = 6 \
        "node $n: six Distributed tables over them"
done
python3 "$SL_TOP/tests/harness/conf_local.py" "${conf_of[aggregator1]}" "$work/bad.conf" "clickhouse:cluster=no-such"
"$SLUICED" -t -c "$work/bad.conf" 2> "$work/bad.out"
t_check $? -eq 1 "-t refuses a cluster that is not a name"
t_check "$(grep -c 'bad.conf:[0-9]*: \[clickhouse\] cluster: "no-such" is not a name' "$work/bad.out")" = 1 \
    "with file:line: $(head -c 200 "$work/bad.out")"
t_end

parts() { jget "$(base "$1")/aggregator/status" "len([q for q in j['partitions'] if q['topic'] == 'page_views'])"; }
t_case "$LAYOUT: the roles start: one broker, two aggregators in one group, a generator"
roles_up broker aggregator1 aggregator2 generator
gbase=$(base generator)
abase=$(base aggregator1)
curl -s -o /dev/null -X POST "$gbase/generator/config/speed?eps=0"
t_wait_until 120 '[ "$(parts aggregator1)" -gt 0 ] && [ "$(parts aggregator2)" -gt 0 ]'
t_check "$(parts aggregator1)" -gt 0 "aggregator1 reads $(parts aggregator1) partitions"
t_check "$(parts aggregator2)" -gt 0 "aggregator2 reads $(parts aggregator2) partitions"
t_end

local_count() { node "$1" "SELECT count() FROM page_views_local FINAL"; }
# Two shards: each holds its own events only, the local tables' counts add
# up to the distinct count read through the Distributed table.  Two
# replicas: each holds them all, once replication has caught up.
placed() { # placed PHASE
    local one two
    if [ "$LAYOUT" = shards ]; then
        one=$(local_count 1) two=$(local_count 2)
        t_check "${one:-0}" -gt 0 "$1: shard 1 holds $one events"
        t_check "${two:-0}" -gt 0 "$1: shard 2 holds $two events"
        t_check "$((one + two))" = "$(raw_count)" "$1: $one + $two = $(raw_count), no event on both shards"
    else
        t_wait_until 120 '[ "$(local_count 1)" = "$(raw_count)" ] && [ "$(local_count 2)" = "$(raw_count)" ]'
        t_check "$(local_count 1)" = "$(raw_count)" "$1: replica 1 holds all $(raw_count) events"
        t_check "$(local_count 2)" = "$(raw_count)" "$1: replica 2 holds all $(raw_count) events"
    fi
}

t_case "$LAYOUT: a burst is counted exactly through the Distributed tables"
curl -s -o /dev/null -X POST "$gbase/generator/generate/burst?count=$N"
t_wait_until 120 settled
check_pages "cluster"
placed "cluster"
t_end

consumed() { # messages of page_views the aggregator NAME consumed
    curl -s --max-time 10 "$(base "$1")/metrics" |
        awk 'index($1, "sluice_aggregator_consumed_total{") == 1 && index($1, "handler=\"page_views\"") { s += $2 } END { print s + 0 }'
}
# The sharding key only matters with shards: one shard holds every copy.
if [ "$LAYOUT" = shards ]; then
    t_case "$LAYOUT: a replay of the whole topic by a new group changes no count"
    roles_up aggregator3
    t_wait_until 120 "[ \"\$(consumed aggregator3)\" -ge \"\$(delivered)\" ] && [ \"\$(jget \$(base aggregator3)/aggregator/status 'j[\"buffered\"]')\" = 0 ]"
    t_check "$(consumed aggregator3)" -ge "$(delivered)" "the replaying aggregator read all $(delivered) events again"
    t_wait_until 60 "[ \"\$(jget \$(base aggregator3)/aggregator/status 'j[\"buffered\"]')\" = 0 ]"
    role_stop aggregator3
    check_pages "cluster after the replay"
    placed "cluster after the replay"
    t_end
fi

t_case "$LAYOUT: the second server killed mid-stream and restarted: nothing lost, nothing doubled"
curl -s -o /dev/null -X POST "$gbase/generator/config/speed?eps=$EPS"
flowing_pages() { # events delivered and stored move on
    local d s
    d=$(delivered) s=$(raw_count)
    t_wait_until 60 "[ \"\$(delivered)\" -gt ${d:-0} ] && [ \"\$(raw_count)\" -gt ${s:-0} ]"
    t_check "$(delivered)" -gt "${d:-0}" "events delivered $1"
    t_check "$(raw_count)" -gt "${s:-0}" "events stored $1"
}
flowing_pages "before the kill"
sl_svc_kill chnode2
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$SL_CHC_URL2/ping")" = 000 "chnode2 killed"
if [ "$LAYOUT" = shards ]; then
    # Inserts reach shard 2 no more: the aggregators' sinks report it.
    sink_down() { [ "$(jget "$(base aggregator1)/aggregator/status" 'j["sink"]["down"]')" = True ] || [ "$(jget "$(base aggregator2)/aggregator/status" 'j["sink"]["down"]')" = True ]; }
    t_wait_until 120 sink_down
    t_check "$(sink_down && echo down)" = down "an aggregator's sink is down: $(jget "$abase/aggregator/status" 'j["sink"]["last_error"]' | head -c 160)"
else
    flowing_pages "while chnode2 is down (through the other replica)"
fi
sl_svc_restart chnode2
t_check $? -eq 0 "chnode2 restarted on its port and data"
flowing_pages "after the restart"
curl -s -o /dev/null -X POST "$gbase/generator/config/speed?eps=0"
t_wait_until 60 settled
check_pages "cluster after the kill"
placed "cluster after the kill"
t_end

t_case "$LAYOUT: the query API's answer equals the truth"
want_counts
got=$(jget "$abase/aggregator/query/aggregates?hours=24" '"%d %d" % (sum(r["views"] for r in j["rows"]), sum(r["bounces"] for r in j["rows"]))')
t_check "$got" = "$W_VIEW $W_BOUNCE" "GET /aggregator/query/aggregates: views and bounces $W_VIEW $W_BOUNCE (got $got)"
t_end

t_case "$LAYOUT: retention on a cluster deletes expired rows on every node, and nothing else"
# An event of 2020 reaches its shard through the Distributed table; a sweep
# (--init-schema runs one) with retention_raw = 30 days must delete it from
# the local tables, where the mutation runs, and leave this run's events.
old="(event_id, event_type, page_id, user_id, duration_s, ts, ts_ms, minute, kafka_topic, kafka_partition, kafka_offset)"
node 1 "INSERT INTO page_views $old VALUES ('expired-1', 'view', 'page-old', 'u-old', 1, toDateTime('2020-01-01 00:00:00'), 0, toDateTime('2020-01-01 00:00:00'), 'old', 0, 0)"
expired() { chq "SELECT count() FROM page_views WHERE event_id = 'expired-1'"; }
t_wait_until 60 '[ "$(expired)" = 1 ]'
t_check "$(expired)" = 1 "the event of 2020 is stored"
role_conf aggregator4 aggregator "clickhouse:cluster=$SL_CHC_NAME" "module aggregator:retention_raw=30" "module aggregator:retention_aggregates=30"
timeout 300 "$SLUICED" --init-schema -c "${conf_of[aggregator4]}" 2>>"$work/retention.log"
t_check $? -eq 0 "--init-schema with retention_raw = 30 exits 0"
t_check "$(grep -c 'deleting 1 rows of page_views' "$work/retention.log")" = 1 "the sweep found the one expired row"
t_wait_until 120 '[ "$(expired)" = 0 ]'
t_check "$(expired)" = 0 "the event of 2020 is deleted from every node"
check_pages "cluster after the retention sweep"
t_end

t_case "$LAYOUT: SIGTERM to all exits 0"
role_stop generator aggregator1 aggregator2 broker
t_end

t_exit
