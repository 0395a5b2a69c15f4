#!/usr/bin/env bash
# Several instances of every role: from the shipped conf/ files, one
# broker and two sluiced each of aggregator (one consumer group), outbox
# relay, segments (behind nginx, round-robin) and generator, over one
# PostgreSQL, Redis and ClickHouse.  It shows what scaling out promises:
#   - the consumer group splits the partitions between the aggregators,
#     each partition read by one of them;
#   - the relays share the outbox's buckets and both publish;
#   - a change made through one segments instance is seen through the
#     other (its read cache is invalidated across instances);
#   - nothing is processed twice or lost: ClickHouse's counts equal what
#     the generators delivered and what PostgreSQL's history recorded;
#   - SIGKILL of one instance of each role mid-run changes none of that.
# It prints each instance's share of the work, as rates.
# Per instance only the listen port differs (and the relay's lease is
# shortened, so that the killed relay's buckets are taken over within the
# test's bounds; the shipped 60 s would only make the test slower).
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"
. "$SL_TOP/tests/harness/roles.sh"

t_scratch "$SL_BUILD"/_modules/{metrics,generator,aggregator,segments,outbox}.so
EPS=${EPS:-150}     # events/s per generator under traffic
WINDOW=${WINDOW:-8} # seconds over which each instance's share is measured
LEASE=6             # [module outbox] lease: the takeover bound below derives from it

. "$SL_TOP/tests/harness/flow.sh"

flow_services || {
    t_exit
    exit 1
}
roles_in twice
twice=(aggregator outbox segments generator)
names=(broker)
role_conf broker broker
for r in "${twice[@]}"; do
    for i in 1 2; do
        names+=("$r$i")
        role_conf "$r$i" "$r" "module outbox:lease=${LEASE}s"
    done
done
metric_sum() { # metric_sum NAME FAMILY: the sum of the family's samples
    curl -s --max-time 10 "$(base "$1")/metrics" | awk -v f="$2" '$1 == f || index($1, f "{") == 1 { s += $2 } END { print s + 0 }'
}

t_case "two instances of every role start from conf/, segments behind nginx"
roles_up "${names[@]}"
proxy=$(t_free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
# Round-robin over the two segments instances; a refused connection is
# retried on the other (for idempotent methods only, nginx's default).
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    fastcgi_temp_path $work/nginx;
    uwsgi_temp_path $work/nginx;
    scgi_temp_path $work/nginx;
    upstream segments {
        server 127.0.0.1:${port[segments1]};
        server 127.0.0.1:${port[segments2]};
        keepalive 8;
    }
    server {
        listen 127.0.0.1:$proxy;
        location / {
            proxy_pass http://segments;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
        }
    }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" 2>>"$work/nginx/error.log" &
pids+=($!)
t_wait_http "http://127.0.0.1:$proxy/healthz" 20
t_check "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$proxy/readyz")" = 200 "nginx on $proxy answers for the segments instances"
role_bases 1
sbase=http://127.0.0.1:$proxy
for g in generator1 generator2; do curl -s -o /dev/null -X POST "$(base "$g")/generator/config/speed?eps=0"; done
t_end

# The two generators' status as one: flow.sh's checks compare against the
# sums of their counts.  A generator no longer running counts with its last
# status ($work/NAME.final).
status_of() { # status_of NAME: its status JSON
    if [ -s "$work/$1.final" ]; then
        cat "$work/$1.final"
    else
        curl -s --max-time 30 "$(base "$1")/generator/status"
    fi
}
gen_of() { status_of "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null; }
gen() {
    python3 -c '
import json, sys
def add(a, b):
    if isinstance(a, dict):
        return {k: add(v, b.get(k, 0)) for k, v in a.items()}
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return a + b
    return a
j = add(json.loads(sys.argv[2]), json.loads(sys.argv[3]))
print(eval(sys.argv[1]))' "$1" "$(status_of generator1)" "$(status_of generator2)" 2>/dev/null
}
speed() { # speed EPS NAME...
    local g eps=$1
    shift
    for g in "$@"; do curl -s -o /dev/null -X POST "$(base "$g")/generator/config/speed?eps=$eps"; done
}

# parts NAME: the page_views partitions the aggregator owns, sorted
parts() { jget "$(base "$1")/aggregator/status" "' '.join(str(p) for p in sorted(q['partition'] for q in j['partitions'] if q['topic'] == 'page_views'))"; }
split_ok() { # both own some, together all 64, none twice
    local a b
    a=$(parts aggregator1) b=$(parts aggregator2)
    [ -n "$a" ] && [ -n "$b" ] && [ "$(printf '%s %s' "$a" "$b" | wc -w)" = 64 ] &&
        [ "$(printf '%s\n' $a $b | sort -un | wc -l)" = 64 ]
}

t_case "the consumer group splits page_views' 64 partitions between the two aggregators"
t_wait_until 120 split_ok
a=$(parts aggregator1) b=$(parts aggregator2)
t_check "$(printf '%s\n' $a | wc -l)" -gt 0 "aggregator1 reads $(printf '%s\n' $a | wc -l) partitions"
t_check "$(printf '%s\n' $b | wc -l)" -gt 0 "aggregator2 reads $(printf '%s\n' $b | wc -l) partitions"
t_check "$(printf '%s\n' $a $b | sort -un | wc -l)" = 64 "together all 64"
t_check "$(printf '%s\n' $a $b | wc -l)" = 64 "none read by both"
t_end

# mark NAME... then report NAME...: each instance's increase of the metric
# family $fam since the mark, in $incs, and as "NAME RATE/s" words in $line
# (over the time between its own two readings).
declare -A at0 t0_of
mark() {
    local n
    for n in "$@"; do
        t0_of[$n]=$(date +%s.%N)
        at0[$n]=$(metric_sum "$n" "$fam")
    done
}
report() {
    local n d
    incs=()
    line=""
    for n in "$@"; do
        d=$(($(metric_sum "$n" "$fam") - ${at0[$n]}))
        incs+=("$d")
        line+="$n $(python3 -c "import time; print('%.0f' % ($d / (time.time() - ${t0_of[$n]})))")/s  "
    done
}

t_case "under traffic every instance does part of the work; every count exact"
speed "$EPS" generator1 generator2
rm -f "$work/stop"
churn S &
churner=$!
flowing "with two of each"
declare -A fam_of=([generator]=sluice_generator_delivered_total [aggregator]=sluice_aggregator_consumed_total
    [outbox]=sluice_outbox_published_total [segments]=sluice_segments_requests_total)
for r in "${twice[@]}"; do
    fam=${fam_of[$r]}
    mark "${r}1" "${r}2"
done
sleep "$WINDOW"
shares=""
for r in "${twice[@]}"; do
    fam=${fam_of[$r]}
    report "${r}1" "${r}2"
    shares+="$line| "
    t_check "${incs[0]}" -gt 0 "${r}1 did part of the work (${incs[0]} in about ${WINDOW} s)"
    t_check "${incs[1]}" -gt 0 "${r}2 did part of the work (${incs[1]} in about ${WINDOW} s)"
done
echo "    per instance over about ${WINDOW} s (generators at $EPS eps each, load $(cut -d' ' -f1 /proc/loadavg)): $shares"
owners=$(pgq "SELECT count(DISTINCT owner) FROM outbox_leases WHERE owner IS NOT NULL")
t_check "$owners" = 2 "the outbox's buckets are leased by both relays"
speed 0 generator1 generator2
touch "$work/stop"
wait "$churner"
t_wait_until 60 settled
check_pages "two of each"
check_segments "two of each"
t_end

# seg_of NAME USER: the user's segments as one instance serves them
seg_of() { jget "$(base "$1")/segment/user/$2" "' '.join(sorted(s['slug'] for s in j['segments']))"; }
t_case "a change through one segments instance is seen through the other"
uid=$(post "$sbase/user" | python3 -c 'import json,sys; print(json.load(sys.stdin)["user_id"])')
post "$sbase/segment" '{"slug": "SCALE_CACHE"}' >/dev/null
t_check "$(seg_of segments2 "$uid")" = "" "segments2 serves user $uid with no segment (now in its cache)"
inv0=$(metric_sum segments2 sluice_segments_cache_invalidations_total)
post "$(base segments1)/segment/user" "{\"user_id\": $uid, \"add_segments\": [\"SCALE_CACHE\"]}" >/dev/null
t_check "$(cat "$work/code")" = 200 "segments1 added SCALE_CACHE"
t_check "$(seg_of segments1 "$uid")" = SCALE_CACHE "segments1 serves it at once"
# The notification's delivery bound of segments_cache.sh.
t_wait_until 10 "[ \"\$(seg_of segments2 $uid)\" = SCALE_CACHE ]"
t_check "$(seg_of segments2 "$uid")" = SCALE_CACHE "segments2 serves it too (its cache entry was invalidated)"
t_check "$(metric_sum segments2 sluice_segments_cache_invalidations_total)" -gt "$inv0" "segments2 counted the invalidation"
t_end

t_case "SIGKILL of one instance of each role mid-run changes no count"
# The killed generator is idle, so that its last status is the truth of
# what it delivered (a running one's undelivered events die with it).
t_wait_until 60 "[ \"\$(gen_of generator2 'j[\"pending\"]')\" = 0 ]"
curl -s --max-time 30 "$(base generator2)/generator/status" > "$work/generator2.final"
t_check "$(gen_of generator2 'j["pending"]')" = 0 "generator2 idle, its counts kept"
speed "$EPS" generator1
rm -f "$work/stop"
churn K &
churner=$!
flowing "before the kills"
took0=$(metric_sum outbox1 sluice_outbox_takeovers_total)
kill -9 "${pid[aggregator2]}" "${pid[outbox2]}" "${pid[segments2]}" "${pid[generator2]}"
for n in aggregator2 outbox2 segments2 generator2; do wait "${pid[$n]}" 2>/dev/null; done
t_check "$(pgq "SELECT count(*) FROM outbox_leases WHERE owner IS NOT NULL AND owner <> '$(jget "$obase/outbox/status" 'j["relay"]')'")" -gt 0 \
    "outbox2 died holding buckets"
flowing "after the kills (through the survivors and nginx)"
# The survivors take over: aggregator1 all 64 partitions once the group's
# session timeout (6 s) has passed, outbox1 every bucket once the lease
# ($LEASE s) has run out.
t_wait_until 120 '[ "$(parts aggregator1 | wc -w)" = 64 ]'
t_check "$(parts aggregator1 | wc -w)" = 64 "aggregator1 reads all 64 partitions"
t_wait_until $((LEASE * 10)) "[ \"\$(metric_sum outbox1 sluice_outbox_takeovers_total)\" -gt $took0 ]"
t_check "$(metric_sum outbox1 sluice_outbox_takeovers_total)" -gt "$took0" "outbox1 took over outbox2's buckets"
speed 0 generator1
touch "$work/stop"
wait "$churner"
t_wait_until 60 settled
check_pages "after the kills"
check_segments "after the kills"
t_end

t_case "SIGTERM to the survivors exits 0"
kill -TERM "$(cat "$work/nginx/nginx.pid")"
role_stop generator1 segments1 outbox1 aggregator1 broker
t_end

t_exit
