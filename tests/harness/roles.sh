# tests/harness/roles.sh - sluiced processes run from the shipped role
# files in conf/, shared by system.sh and the scale-out tests.
#
#   . "$SL_TOP/tests/harness/roles.sh"
#   roles_in CHDB                                where the roles write (sets $pgdsn, $redisurl,
#                                                $chdb, $boot); creates ClickHouse database CHDB
#   localize ROLE FILE [SECTION:KEY=VALUE...]   conf/ROLE.conf pointed at this run
#   role_conf NAME ROLE [SECTION:KEY=VALUE...]  port[NAME] and conf_of[NAME], a localized
#                                                conf/ROLE.conf listening on that port
#   base NAME                                    its base URL
#   role_bases [SUFFIX]                          $gbase $abase $sbase $obase: those of the
#                                                generator, aggregator, segments, outbox (+SUFFIX)
#   role_start NAME CONF                         one sluiced, waited for until it answers
#   roles_up NAME...                             checks each conf_of[NAME] with -t, starts
#                                                it, then waits until every one is ready
#   role_stop NAME...                            SIGTERM to each; checks each exits 0
#
# The sourcing script sets $work, $pids and $mods (t_scratch with the
# modules), and sources tests/harness/flow.sh (port and conf_of) and
# services.sh (the servers) first.
# pid[NAME] holds each instance's process id; its stderr goes to
# $work/NAME.log.

declare -A pid

roles_in() {
    pgdsn=$SL_PG_DSN
    redisurl=$SL_REDIS_URL/0
    chdb=$1
    clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" --query "CREATE DATABASE $chdb"
    boot=$work/$chdb.bootstrap
}

localize() {
    local role=$1 out=$2
    shift 2
    python3 "$SL_TOP/tests/harness/conf_local.py" "$SL_TOP/conf/$role.conf" "$out" \
        "core:modules_dir=$mods" "postgres:dsn=$pgdsn" "redis:url=$redisurl" \
        "clickhouse:url=$SL_CH_URL" "clickhouse:database=$chdb" \
        "module segments:docs_dir=" \
        "module aggregator:rdkafka.session.timeout.ms=6000" \
        "module aggregator:rdkafka.heartbeat.interval.ms=500" \
        "$@" --replace "/tmp/sluice-bootstrap=$boot"
}

role_conf() {
    local n=$1 role=$2
    shift 2
    port[$n]=$(t_free_port)
    conf_of[$n]=$work/$n.conf
    localize "$role" "${conf_of[$n]}" "core:listen=127.0.0.1:${port[$n]}" "$@"
}

base() { echo "http://127.0.0.1:${port[$1]}"; }

role_bases() {
    gbase=$(base "generator${1:-}")
    abase=$(base "aggregator${1:-}")
    sbase=$(base "segments${1:-}")
    obase=$(base "outbox${1:-}")
}

# Every role runs as its own process: SIGHUP (flow.sh's hup_all) is a kill.
flow_hup() { kill -HUP "${pid[$1]}"; }

role_start() {
    "$SLUICED" -c "$2" 2>>"$work/$1.log" &
    pid[$1]=$!
    pids+=($!)
    t_wait_http "http://127.0.0.1:${port[$1]}/healthz" 20
}

# A NAME that starts with "broker" runs the embedded broker: the others
# wait until it has written its address.
roles_up() {
    local r
    for r in "$@"; do
        "$SLUICED" -t -c "${conf_of[$r]}" 2>>"$work/t.out"
        t_check $? -eq 0 "$r: ${conf_of[$r]##*/} passes -t"
        role_start "$r" "${conf_of[$r]}"
        t_check $? -eq 0 "$r up on ${port[$r]}"
        case $r in broker*) t_wait_for 10 test -s "$boot" ;; esac
    done
    for r in "$@"; do
        t_wait_until 60 "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:${port[$r]}/readyz)\" = 200 ]"
        t_check "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[$r]}/readyz")" = 200 "$r ready"
    done
}

role_stop() {
    local n rc
    for n in "$@"; do kill -TERM "${pid[$n]}"; done
    for n in "$@"; do
        wait "${pid[$n]}"
        rc=$?
        t_check "$rc" -eq 0 "$n exited $rc"
    done
    t_check "$(cat "$work"/*.log | grep -c 'ERROR: AddressSanitizer\|runtime error:')" -eq 0 "no sanitizer report"
}
