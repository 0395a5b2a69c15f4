#!/usr/bin/env bash
# The aggregator end to end, the generator as the source of truth: one
# sluiced runs the embedded broker and the generator, others run the
# aggregator (a consumer group) into a real ClickHouse.  After every phase
# - plain, SIGKILL mid-stream, ClickHouse stopped mid-stream, two members
# with one killed - the tables hold exactly the generator's distinct valid
# events (raw rows and per-minute aggregates) and exactly its malformed
# ones (processing_errors, kind by kind), counted with clickhouse-client.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

t_scratch

N=${N:-10000}          # events of the first burst
CH_DOWN=${CH_DOWN:-30} # seconds ClickHouse stays stopped
# The embedded broker keeps 5 MiB per partition and drops its oldest
# messages beyond that, read or not: what a stopped or rejoining consumer
# falls behind by while the stream goes on must stay well under it, however
# long a loaded machine makes the outage.  At 1000 events/s, a 90 s lag is
# about 2.8 MiB per partition of 8.
EPS=${EPS:-1000}       # events/s of the stream the faults hit
mods=$work/mods
mkdir -p "$mods"
cp "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/_modules/generator.so" \
    "$SL_BUILD/_modules/aggregator.so" "$mods/"
gport=$(t_free_port)
gbase=http://127.0.0.1:$gport
bootfile=$work/bootstrap

chc() { clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" "$@"; }
chq() { chc --query "$1" 2>>"$work/chc.err"; }
jget() { # jget URL EXPR: a Python expression over the JSON answer `j`
    curl -s --max-time 30 "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null
}
gen() { jget "$gbase/generator/status" "$1"; }
code_of() { curl -s -o "$work/body" -w '%{http_code}' --max-time 30 "$@"; }

t_case "clickhouse and the generator's broker start"
sl_svc_start clickhouse
t_check $? -eq 0 "clickhouse on ${SL_CH_URL:-nothing}"
cat > "$work/gen.conf" <<EOF
[core]
listen = 127.0.0.1:$gport
modules_dir = mods
log_level = info

[kafka]
brokers = embedded
embedded_topics = page_views:8
bootstrap_file = $bootfile
rdkafka.linger.ms = 5

[module metrics]

[module generator]
topic = page_views
mode = night
strategy = async
seed = 4242
partitions = 8
EOF
"$SLUICED" -c "$work/gen.conf" 2>>"$work/gen.log" &
pids+=($!)
t_wait_http "$gbase/healthz" 10 && t_wait_for 10 test -s "$bootfile"
t_check -s "$bootfile" "embedded broker at $(cat "$bootfile" 2>/dev/null)"
curl -s -X POST "$gbase/generator/config/speed?eps=0" >/dev/null
t_end
[ -n "${SL_CH_PORT:-}" ] && [ -s "$bootfile" ] || { t_exit; exit 1; }

# ------------------------------------------------------------ helpers
agg_conf() { # agg_conf NAME PORT
    cat > "$work/$1.conf" <<EOF
[core]
listen = 127.0.0.1:$2
modules_dir = mods
log_level = info
drain_timeout = 20s

[kafka]
# The generator's sluiced wrote its embedded broker's address there.
brokers = file:$bootfile

[clickhouse]
url = $SL_CH_URL
timeout = 10s
retries = 2
ping_interval = 500ms

[module metrics]

[module aggregator]
topics = page_views
group = g_agg
batch_size = 2000
batch_interval = 200ms
sink_backoff = 200ms
sink_backoff_max = 2s
# The embedded broker gives a departed member's partitions away only
# after session.timeout.ms; the default 45 s would stall the kill cases.
rdkafka.session.timeout.ms = 6000
rdkafka.heartbeat.interval.ms = 500
EOF
}
declare -A apid aport
start_agg() { # start_agg NAME
    local p=${aport[$1]:-}
    [ -n "$p" ] || { p=$(t_free_port); aport[$1]=$p; }
    agg_conf "$1" "$p"
    "$SLUICED" -c "$work/$1.conf" 2>>"$work/$1.log" &
    apid[$1]=$!
    pids+=($!)
    t_wait_http "http://127.0.0.1:$p/healthz" 10
}
ast() { jget "http://127.0.0.1:${aport[$1]}/aggregator/status" "$2"; }

burst() { # burst N: N more events, then wait until the generator settled them
    curl -s -X POST "$gbase/generator/generate/burst?count=$1" >/dev/null
    t_wait_until 120 '[ "$(gen "j[\"pending\"] + j[\"rate\"][\"burst_pending\"]")" = 0 ]'
}

stream() { # stream EPS: the generator at a steady rate (0 stops it and waits until it settled)
    curl -s -X POST "$gbase/generator/config/speed?eps=$1" >/dev/null
    [ "$1" != 0 ] || t_wait_until 120 '[ "$(gen "j[\"pending\"] + j[\"rate\"][\"burst_pending\"]")" = 0 ]'
}
grows() { # grows NAME BY: checks that member NAME consumes BY more messages than now
    local c0 c1
    c0=$(ast "$1" 'j["consumed"]["total"]')
    t_wait_until 60 "[ \"\$(ast $1 'j[\"consumed\"][\"total\"]')\" -gt $((${c0:-0} + $2)) ]"
    c1=$(ast "$1" 'j["consumed"]["total"]')
    t_check "${c1:-0}" -gt $((${c0:-0} + $2)) "$1 consumes: ${c0:-nothing} -> ${c1:-nothing} (more than $2 more)"
}

# What the generator delivered: distinct valid, views, bounces, duplicates, malformed.
want_counts() {
    read -r W_VALID W_VIEW W_BOUNCE W_DUP W_BAD W_LOST < <(gen '"%d %d %d %d %d %d" % (j["delivered"]["view"] + j["delivered"]["bounce"], j["delivered"]["view"], j["delivered"]["bounce"], j["delivered"]["duplicate"], j["delivered"]["malformed"]["total"], j["failed"]["total"] + j["dropped"]["total"])')
}
raw_count() { chq "SELECT count() FROM page_views FINAL"; }
err_count() { chq "SELECT count() FROM processing_errors FINAL"; }
caught_up() { [ "$(raw_count)" = "$W_VALID" ] && [ "$(err_count)" = "$W_BAD" ]; }

# Every table exact against the generator; $1 names the phase.
check_exact() {
    local got
    t_check "${W_LOST:-unknown}" = 0 "$1: the generator lost nothing on its side (failed + dropped = $W_LOST)"
    t_check "${W_VALID:-0}" -gt 0 "$1: the generator delivered $W_VALID valid and $W_BAD malformed events"
    t_wait_until 120 caught_up
    t_check "$(raw_count)" = "$W_VALID" "$1: page_views holds the $W_VALID distinct valid events (got $(raw_count))"
    t_check "$(chq "SELECT uniqExact(event_id) FROM page_views")" = "$W_VALID" "$1: as many distinct event_ids"
    got=$(chq "SELECT sum(views), sum(bounces), sum(views) + sum(bounces) FROM page_views_per_minute FINAL" | tr '\t' ' ')
    t_check "$got" = "$W_VIEW $W_BOUNCE $W_VALID" "$1: aggregates hold views $W_VIEW, bounces $W_BOUNCE (got $got)"
    t_check "$(err_count)" = "$W_BAD" "$1: processing_errors holds the $W_BAD malformed (got $(err_count))"
    for kind in missing_field wrong_type broken_json negative_duration bad_timestamp; do
        local w g
        w=$(gen "j['delivered']['malformed']['$kind']")
        g=$(chq "SELECT count() FROM processing_errors FINAL WHERE reason = '$kind'")
        t_check "${g:-nothing}" = "${w:-unknown}" "$1: $kind: $w generated, $g stored"
    done
    got=$(chq "SELECT count() FROM processing_errors FINAL WHERE raw = '' OR kafka_topic != 'page_views' OR kafka_offset < 0")
    t_check "$got" = 0 "$1: every error row has its topic, offset and raw payload"
}

# ---------------------------------------------------------- phase 1
t_case "N events with 1% duplicates and 5% malformed land exactly"
start_agg a1
t_check $? -eq 0 "aggregator a1 up on ${aport[a1]}"
burst "$N"
want_counts
t_check "$W_DUP" -gt 0 "the generator sent duplicates ($W_DUP) and malformed events ($W_BAD)"
check_exact "plain"
t_wait_until 30 '[ "$(ast a1 "j[\"buffered\"]")" = 0 ]'
total=$(gen 'j["delivered"]["total"]')
t_check "$(ast a1 'j["consumed"]["page_views"]')" = "$total" "status: consumed $total (every delivered message)"
t_check "$(ast a1 'j["valid"]["page_views"]')" = "$W_VALID" "status: valid $W_VALID"
t_check "$(ast a1 'j["duplicates"]["page_views"]')" = "$W_DUP" "status: duplicates dropped $W_DUP"
t_check "$(ast a1 'j["invalid"]["total"]')" = "$W_BAD" "status: invalid $W_BAD"
got=$(ast a1 'j["invalid"]["by_reason"]["broken_json"]')
want=$(gen "j['delivered']['malformed']['broken_json']")
t_check "${got:-nothing}" = "${want:-unknown}" "status: invalid by reason (broken_json $want, got $got)"
t_check "$(ast a1 'j["sink"]["flushes"] > 0 and j["last_flush"]["rows"] > 0')" = True "status: last flush reported"
t_end

t_case "query API: aggregates, analytics, events; 400 JSON on bad parameters"
b=http://127.0.0.1:${aport[a1]}/aggregator
got=$(jget "$b/query/aggregates?hours=1&limit=10000" 'sum(r["views"] + r["bounces"] for r in j["rows"])')
t_check "$got" = "$W_VALID" "query/aggregates?hours=1 sums to $W_VALID (got $got)"
page=$(chq "SELECT page_id FROM page_views_per_minute FINAL GROUP BY page_id ORDER BY sum(views) DESC LIMIT 1")
want=$(chq "SELECT sum(views) FROM page_views_per_minute FINAL WHERE page_id = '$page'")
got=$(jget "$b/query/aggregates?hours=1&page_id=$page" 'sum(r["views"] for r in j["rows"])')
t_check "${got:-nothing}" = "${want:-unknown}" "page_id=$page: views $want (got $got)"
got=$(jget "$b/query/aggregates?hours=1&page_id=$page" 'all(0 <= r["avg_duration_s"] <= r["p95_duration_s"] + 1e-9 or r["views"] == 0 for r in j["rows"])')
t_check "$got" = True "rows carry avg and p95 durations"
from=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)
to=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
got=$(jget "$b/analytics?from=$from&to=$to" 'sorted((r["event_type"], r["events"]) for r in j["by_type"])')
t_check "$got" = "[('*', $W_VALID), ('bounce', $W_BOUNCE), ('view', $W_VIEW)]" "analytics counts by type (got $got)"
want=$(chq "SELECT uniqExact(user_id) FROM page_views FINAL")
got=$(jget "$b/analytics?from=$from&to=$to" '[r["unique_users"] for r in j["by_type"] if r["event_type"] == "*"][0]')
t_check "${got:-nothing}" = "${want:-unknown}" "analytics unique users $want (got $got)"
got=$(jget "$b/events?from=$from&to=$to&event_type=bounce&limit=5" '"%d %s" % (len(j["events"]), all(e["event_type"] == "bounce" for e in j["events"]))')
t_check "$got" = "5 True" "events?event_type=bounce&limit=5 (got $got)"
for q in "query/aggregates" "query/aggregates?hours=0" "query/aggregates?hours=abc" "query/aggregates?hours=1&page_id=x'y" \
    "analytics?from=$from" "analytics?from=yesterday&to=$to" "analytics?from=$to&to=$from" "events?from=$from&to=$to&limit=0" \
    "events?from=$from&to=$to&event_type=a%20b"; do
    c=$(code_of "$b/$q")
    t_check "$c $(jq -r 'has("error")' < "$work/body" 2>/dev/null)" = "400 true" "GET $q: 400 with an error ($(head -c 120 "$work/body"))"
done
t_end

# ---------------------------------------------------------- phase 2
t_case "SIGKILL mid-stream, restart: still exact"
stream "$EPS"
# The stream flows and a1 consumes it: the kill lands mid-stream.
grows a1 $((EPS / 2))
kill -9 "${apid[a1]}"
wait "${apid[a1]}" 2>/dev/null
start_agg a1
grows a1 $((EPS / 2))
stream 0
want_counts
check_exact "after SIGKILL"
t_end

# ---------------------------------------------------------- phase 3
t_case "ClickHouse stopped ${CH_DOWN}s mid-stream: pauses, resumes, still exact"
stream "$EPS"
grows a1 $((EPS / 2))
sl_svc_stop clickhouse
t0=$(date +%s)
t_wait_until 60 '[ "$(ast a1 "j[\"sink\"][\"down\"]")" = True ]'
t_check "$(ast a1 'j["sink"]["down"]')" = True "status says the sink is down: $(ast a1 'j["sink"]["last_error"]' | head -c 150)"
t_check "$(ast a1 'j["sink"]["last_error"]' | grep -cE '^(ClickHouse refused the batch \(code [0-9]+\)|ClickHouse answered HTTP [0-9]+|no answer from ClickHouse)')" = 1 \
    "with a summary of ours, not ClickHouse's or curl's text"
t_wait_until 30 '[ "$(ast a1 "j[\"paused_partitions\"]")" -gt 0 ]'
t_check "$(ast a1 'j["paused_partitions"]')" -gt 0 "partitions paused ($(ast a1 'j["paused_partitions"]'))"
t_check "$(curl -s "http://127.0.0.1:${aport[a1]}/metrics" | grep -c '^sluice_aggregator_partition_paused{.*} 1')" -gt 0 "sluice_aggregator_partition_paused shows them"
b1=$(ast a1 'j["buffered"]')
sleep $((CH_DOWN - ($(date +%s) - t0) > 0 ? CH_DOWN - ($(date +%s) - t0) : 0))
b2=$(ast a1 'j["buffered"]')
t_check "$b2" -le 10000 "memory bounded: $b1 then $b2 messages buffered while $((EPS * CH_DOWN)) were sent (max_buffered 4000, plus the batch in flight and what was fetched before the pause)"
t_check "$(kill -0 "${apid[a1]}" 2>/dev/null && echo alive)" = alive "the aggregator stayed up"
# The stream ends with the outage, so the backlog is what the outage left
# (at least EPS x CH_DOWN messages), however slowly ClickHouse comes back.
stream 0
sl_svc_restart clickhouse
t_check $? -eq 0 "clickhouse back after $(($(date +%s) - t0)) s"
grows a1 $((EPS / 2))
want_counts
check_exact "after ClickHouse outage"
t_wait_until 30 '[ "$(ast a1 "j[\"paused_partitions\"]")" = 0 ]'
t_check "$(ast a1 'j["paused_partitions"]')" = 0 "partitions resumed by themselves"
t_check "$(ast a1 'j["sink"]["flush_failures"]')" -gt 0 "the failed flushes were counted"
t_end

# ---------------------------------------------------------- phase 4
t_case "two members of one group, one SIGKILLed mid-stream: still exact"
start_agg a2
t_wait_until 60 "[ \"\$(ast a2 'len(j[\"partitions\"])')\" -gt 0 ] && [ \"\$(ast a1 'len(j[\"partitions\"])')\" -gt 0 ] && [ \$((\$(ast a1 'len(j[\"partitions\"])') + \$(ast a2 'len(j[\"partitions\"])'))) = 8 ]"
p1=$(ast a1 'len(j["partitions"])')
p2=$(ast a2 'len(j["partitions"])')
t_check "${p1:-0}" -gt 0 "a1 has partitions ($p1)"
t_check "${p2:-0}" -gt 0 "a2 has partitions ($p2)"
t_check "$((${p1:-0} + ${p2:-0}))" = 8 "the 8 partitions are shared: $p1 + $p2"
stream "$EPS"
grows a2 $((EPS / 4))
kill -9 "${apid[a2]}"
wait "${apid[a2]}" 2>/dev/null
t_wait_until 60 '[ "$(ast a1 "len(j[\"partitions\"])")" = 8 ]'
grows a1 $((EPS / 2))
stream 0
want_counts
check_exact "after a member died"
t_wait_until 30 '[ "$(ast a1 "len(j[\"partitions\"])")" = 8 ]'
t_check "$(ast a1 'len(j["partitions"])')" = 8 "the survivor took every partition"
t_end

t_case "drain on SIGTERM commits: a restarted member has nothing to replay"
kill -TERM "${apid[a1]}"
t_wait_until 30 "! kill -0 ${apid[a1]} 2>/dev/null"
wait "${apid[a1]}"
t_check $? -eq 0 "exit 0 after the drain"
start_agg a1
t_wait_until 30 '[ "$(ast a1 "len(j[\"partitions\"])")" = 8 ]'
# K new events after the restart: in each partition a replay of what was
# not committed would come before them, so once the member consumed as
# many messages as were delivered since, it consumed no old one.
before=$(gen 'j["delivered"]["total"]')
burst 100
delta=$(($(gen 'j["delivered"]["total"]') - before))
t_wait_until 60 "[ \"\$(ast a1 'j[\"consumed\"][\"total\"]')\" -ge $delta ]"
t_check "$delta" -gt 0 "$delta events delivered after the restart"
t_check "$(ast a1 'j["consumed"]["total"]')" = "$delta" "the restarted member consumed exactly those: every earlier offset was committed"
t_check "$(cat "$work"/a*.log | grep -c 'ERROR\|runtime error\|AddressSanitizer')" = 0 "no errors or sanitizer reports in the aggregators' logs"
t_end

t_exit
