# tests/harness/flow.sh - the whole-system flow of system.sh, shared with
# container.sh (the same roles run as containers): the servers started,
# generator traffic counted exactly by the aggregator, segment changes
# counted through the outbox, SIGHUP to every instance under traffic.
#
#   . "$SL_TOP/tests/harness/flow.sh"
#
# The sourcing script sets $work (scratch dir), $chdb and $pgdsn (where the
# roles write), port[NAME] (each instance's loopback port), conf_of[NAME]
# (its config file, rewritten by hup_all), tweak_of[NAME], and $gbase,
# $sbase, $obase (the generator's, segments' and outbox's base URLs); and
# defines flow_hup NAME, which delivers SIGHUP to that instance however
# it runs (kill, podman kill).

declare -A port conf_of tweak_of

# flow_services: the case that starts PostgreSQL, Redis and ClickHouse
# (tests/harness/services.sh); non-zero when one is missing.
flow_services() {
    t_case "PostgreSQL, Redis and ClickHouse start on loopback"
    sl_svc_start postgres && sl_svc_start redis && sl_svc_start clickhouse
    t_check $? -eq 0 "services up"
    t_end
    [ -n "${SL_PG_DSN:-}" ] && [ -n "${SL_REDIS_URL:-}" ] && [ -n "${SL_CH_URL:-}" ]
}

chq() { clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" --database "$chdb" --query "$1" 2>>"$work/chc.err"; }
pgq() { psql "$pgdsn" -XAtq -c "$1" 2>>"$work/psql.err"; }
jget() { # jget URL EXPR: a Python expression over the JSON answer `j`
    curl -s --max-time 30 "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null
}
post() { # post URL [JSON]: the answer's body; the status code in $work/code
    curl -s --max-time 30 -o "$work/body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' "$1" ${2:+-d "$2"} > "$work/code"
    cat "$work/body"
}
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[$1]}/readyz")" = 200 ]; }

# ------------------------------------------------------------- the flow
# Which process serves what: set by each run below.
gbase= abase= sbase= obase=

gen() { jget "$gbase/generator/status" "$1"; }
settled() { [ "$(gen 'j["pending"] + j["rate"]["burst_pending"]')" = 0 ]; }
want_counts() { # what the generator delivered, from its own status
    read -r W_VALID W_VIEW W_BOUNCE W_BAD W_LOST < <(gen '"%d %d %d %d %d" % (j["delivered"]["view"] + j["delivered"]["bounce"], j["delivered"]["view"], j["delivered"]["bounce"], j["delivered"]["malformed"]["total"], j["failed"]["total"] + j["dropped"]["total"])')
}
raw_count() { chq "SELECT count() FROM page_views FINAL"; }
err_count() { chq "SELECT count() FROM processing_errors FINAL"; }
pages_caught_up() { [ "$(raw_count)" = "$W_VALID" ] && [ "$(err_count)" = "$W_BAD" ]; }

check_pages() { # check_pages PHASE: ClickHouse holds exactly what the generator delivered
    want_counts
    t_check "$W_LOST" = 0 "$1: the generator lost nothing on its side (failed + dropped = $W_LOST)"
    t_check "$W_VALID" -gt 0 "$1: the generator delivered $W_VALID valid and $W_BAD malformed events"
    t_wait_until 180 pages_caught_up
    t_check "$(raw_count)" = "$W_VALID" "$1: page_views holds the $W_VALID distinct valid events (got $(raw_count))"
    local got
    got=$(chq "SELECT sum(views), sum(bounces) FROM page_views_per_minute FINAL" | tr '\t' ' ')
    t_check "$got" = "$W_VIEW $W_BOUNCE" "$1: per-minute aggregates: views $W_VIEW, bounces $W_BOUNCE (got $got)"
    t_check "$(err_count)" = "$W_BAD" "$1: processing_errors holds the $W_BAD malformed (got $(err_count))"
}

# Every membership change wrote one history row (the trigger) and one
# outbox event (I or D) in its transaction: history is what must reach
# ClickHouse.  Every user created wrote one more (N).
seg_want() { pgq "SELECT count(*) FROM segment_history"; }
seg_got() { chq "SELECT count() FROM segment_events FINAL WHERE operation IN ('I', 'D')"; }
users_got() { chq "SELECT count() FROM segment_events FINAL WHERE operation = 'N'"; }
outbox_empty() { [ "$(pgq "SELECT count(*) FROM outbox")" = 0 ]; }
segs_caught_up() { outbox_empty && [ "$(seg_got)" = "$(seg_want)" ] && [ "$(users_got)" = "$(pgq "SELECT count(*) FROM users")" ]; }

check_segments() { # check_segments PHASE
    local want got
    t_wait_until 120 segs_caught_up
    t_check "$(pgq "SELECT count(*) FROM outbox")" = 0 "$1: the outbox table is empty"
    want=$(seg_want)
    t_check "${want:-0}" -gt 0 "$1: history recorded $want changes"
    t_check "$(seg_got)" = "$want" "$1: segment_events holds the $want changes history recorded (got $(seg_got))"
    t_check "$(users_got)" = "$(pgq "SELECT count(*) FROM users")" "$1: and one user_created per user (got $(users_got))"
    want=$(pgq "SELECT string_agg(slug || ':' || operation || ':' || n, ' ' ORDER BY slug, operation) FROM (SELECT slug, operation, count(*) AS n FROM segment_history GROUP BY 1, 2) t")
    got=$(chq "SELECT arrayStringConcat(groupArray(concat(slug, ':', operation, ':', toString(n))), ' ') FROM (SELECT slug, operation, sum(changes) AS n FROM segment_changes_per_minute FINAL WHERE operation IN ('I', 'D') GROUP BY slug, operation ORDER BY slug, operation)")
    t_check "${got:-nothing}" = "${want:-none}" "$1: per-minute changes by segment and operation match history ($want)"
}

# users and two segments; both given to every user, one taken from a third
# of them, the other deleted outright: adds and removals of both kinds.
segment_flow() { # segment_flow TAG
    local a=SYS_${1}_A b=SYS_${1}_B ids=() i id
    for i in $(seq 1 "$USERS"); do
        id=$(post "$sbase/user" | python3 -c 'import json,sys; print(json.load(sys.stdin)["user_id"])')
        ids+=("$id")
    done
    t_check "${#ids[@]}" -eq "$USERS" "$USERS users created"
    post "$sbase/segment" "{\"slug\": \"$a\"}" >/dev/null
    t_check "$(cat "$work/code")" = 201 "segment $a created"
    post "$sbase/segment" "{\"slug\": \"$b\"}" >/dev/null
    for id in "${ids[@]}"; do
        post "$sbase/segment/user" "{\"user_id\": $id, \"add_segments\": [\"$a\", \"$b\"]}" >/dev/null
    done
    for id in "${ids[@]:0:$((USERS / 3))}"; do
        post "$sbase/segment/user" "{\"user_id\": $id, \"delete_segments\": [\"$b\"]}" >/dev/null
    done
    curl -s -o /dev/null -X DELETE -H 'Content-Type: application/json' "$sbase/segment" -d "{\"slug\": \"$a\"}"
    t_check "$(jget "$sbase/segment/user/${ids[0]}" 'len(j["segments"])')" = 0 "user ${ids[0]} ends in no segment"
    t_check "$(jget "$sbase/segment/user/${ids[-1]}" '[s["slug"] for s in j["segments"]]')" = "['$b']" "user ${ids[-1]} ends in $b"
}

# Changes membership in a loop until $work/stop exists (runs in background).
churn() { # churn TAG
    local s=SYS_${1}_C id
    post "$sbase/segment" "{\"slug\": \"$s\"}" >/dev/null
    while [ ! -e "$work/stop" ]; do
        id=$(post "$sbase/user" | python3 -c 'import json,sys; print(json.load(sys.stdin)["user_id"])' 2>/dev/null)
        [ -n "$id" ] || { sleep 0.05; continue; }
        post "$sbase/segment/user" "{\"user_id\": $id, \"add_segments\": [\"$s\"]}" >/dev/null
        post "$sbase/segment/user" "{\"user_id\": $id, \"delete_segments\": [\"$s\"]}" >/dev/null
    done
}

reloads() { curl -s "http://127.0.0.1:${port[$1]}/metrics" | awk '$1 == "sluice_reloads_total" { print $2 }'; }

replaced() { grep -c 'changed; \(draining before its successor\|starting its successor\)' "$work/$1.log"; }

# hup_all NAME... : rewrite each config with the module options in
# tweak_of[NAME] (';' separated SECTION:KEY=VALUE) changed, so that those
# instances are really replaced rather than carried over, SIGHUP all at
# once, and wait until each applied it.
hup_all() {
    local n tw before=() swapped=()
    for n in "$@"; do
        before+=("$(reloads "$n")")
        swapped+=("$(replaced "$n")")
        [ -n "${tweak_of[$n]:-}" ] || continue
        IFS=';' read -ra tw <<< "${tweak_of[$n]}"
        python3 "$SL_TOP/tests/harness/conf_local.py" "${conf_of[$n]}" "${conf_of[$n]}.new" "${tw[@]}" &&
            mv "${conf_of[$n]}.new" "${conf_of[$n]}"
    done
    for n in "$@"; do flow_hup "$n"; done
    local i=0
    for n in "$@"; do
        t_wait_until 30 "[ \"\$(reloads $n)\" != '${before[$i]}' ]"
        t_check "$(reloads "$n")" != "${before[$i]}" "$n reloaded"
        if [ -n "${tweak_of[$n]:-}" ]; then
            IFS=';' read -ra tw <<< "${tweak_of[$n]}"
            t_wait_until 60 "[ \"\$(replaced $n)\" -ge $((swapped[i] + ${#tw[@]})) ]"
            t_check "$(replaced "$n")" -ge $((swapped[i] + ${#tw[@]})) "$n: ${#tw[@]} module instance(s) replaced"
        fi
        i=$((i + 1))
    done
}

delivered() { gen 'j["delivered"]["total"]'; }
flowing() { # flowing WHEN: both kinds of traffic move; their counts go to $d_at, $h_at
    local d h
    d=$(delivered)
    h=$(seg_want)
    t_wait_until 60 "[ \"\$(delivered)\" -gt ${d:-0} ] && [ \"\$(seg_want)\" -gt ${h:-0} ]"
    d_at=$(delivered)
    h_at=$(seg_want)
    t_check "${d_at:-0}" -gt "${d:-0}" "events delivered $1 ($d -> $d_at)"
    t_check "${h_at:-0}" -gt "${h:-0}" "memberships changed $1 ($h -> $h_at)"
}

traffic_under_hup() { # traffic_under_hup TAG NAME...: the SIGHUP phase
    local tag=$1 churner
    shift
    rm -f "$work/stop"
    churn "$tag" &
    churner=$!
    curl -s -o /dev/null -X POST "$gbase/generator/config/speed?eps=400"
    # Under traffic: events are delivered and memberships change right up
    # to the SIGHUP, in the reload, and after it.
    flowing "before the SIGHUP"
    hup_all "$@"
    t_check "$(delivered)" -gt "$d_at" "events delivered while the instances reloaded ($d_at -> $(delivered))"
    t_check "$(seg_want)" -gt "$h_at" "memberships changed while the instances reloaded ($h_at -> $(seg_want))"
    flowing "after the SIGHUP"
    curl -s -o /dev/null -X POST "$gbase/generator/config/speed?eps=0"
    touch "$work/stop"
    wait "$churner"
    t_wait_until 60 settled
    for n in "$@"; do
        t_wait_until 60 "ready $n"
        t_check "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[$n]}/readyz")" = 200 "$n ready after the reload"
    done
}

# role_flow PHASE TAG: the cases of a run with one instance per role
# (broker, aggregator, outbox, segments, generator): a burst counted
# exactly, segment changes counted through the outbox, then a SIGHUP to
# every instance under traffic, each replacing a module instance, after
# which both counts still hold.  $N events per burst, $USERS users.
role_flow() {
    local phase=$1 tag=$2
    t_case "$phase: generator traffic is counted exactly by the aggregator"
    t_wait_until 60 settled
    curl -s -o /dev/null -X POST "$gbase/generator/generate/burst?count=$N"
    t_wait_until 120 settled
    check_pages "$phase"
    t_end

    t_case "$phase: segment changes reach the aggregator through the outbox, exactly"
    segment_flow "$tag"
    check_segments "$phase"
    t_check "$(jget "$obase/outbox/status" 'j["published"] >= 1')" = True "the relay reports what it published"
    t_end

    t_case "$phase: SIGHUP to every instance under traffic changes no count"
    tweak_of[aggregator]="module aggregator:batch_interval=700ms"
    tweak_of[outbox]="module outbox:poll_interval=1500ms"
    tweak_of[segments]="module segments:sweep_interval=300ms"
    traffic_under_hup "$tag" broker aggregator outbox segments generator
    check_pages "$phase after SIGHUP"
    check_segments "$phase after SIGHUP"
    t_end
}
