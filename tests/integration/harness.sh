#!/bin/bash
# tests/integration/harness.sh - the services harness itself: each real
# server starts, answers a real query, keeps its data and port across a
# restart (and, for postgres, across a kill -9), and stops leaving no process.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

# Pids of every process whose command line names our private dir.
svc_procs() {
    pgrep -f "$SL_SVC_ROOT/" 2>/dev/null | tr '\n' ' '
}
# ps for a pid list; empty when none alive.
alive() {
    local p out=""
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] && [ "$(awk '{print $3}' "/proc/$p/stat")" != Z ] && out="$out $p"
    done
    echo "$out"
}

t_case "postgres starts, answers, restarts with its data, stops"
if sl_svc_start postgres; then
    t_check "$(psql -X -At "$SL_PG_DSN" -c 'SELECT 20 + 22')" = 42 "psql answers on 127.0.0.1:$SL_PG_PORT"
    t_check "$(psql -X -At "$SL_PG_DSN" -c 'SELECT current_database()')" = sluice "database sluice exists"
    psql -X -q "$SL_PG_DSN" -c "CREATE TABLE h(v text); INSERT INTO h VALUES ('kept')"
    port=$SL_PG_PORT
    sl_svc_restart postgres
    t_check "$SL_PG_PORT" = "$port" "same port after restart"
    t_check "$(psql -X -At "$SL_PG_DSN" -c 'SELECT v FROM h')" = kept "row survives a clean restart"
    psql -X -q "$SL_PG_DSN" -c "INSERT INTO h VALUES ('committed')"
    old=$(head -n 1 "$SL_SVC_ROOT/postgres/data/postmaster.pid")
    sl_svc_kill postgres
    t_check -z "$(alive "$old")" "postmaster gone after kill"
    psql -X -At "$SL_PG_DSN" -c 'SELECT 1' >/dev/null 2>&1
    t_check $? != 0 "no answer while killed"
    sl_svc_restart postgres
    t_check "$(psql -X -At "$SL_PG_DSN" -c 'SELECT count(*) FROM h')" = 2 "committed rows survive kill -9"
    pids=$(svc_procs)
    t_check -n "$pids" "postgres processes found before stop ($pids)"
    sl_svc_stop postgres
    t_check -z "$(alive $pids)" "no postgres process left after stop"
else
    t_check 1 = 0 "postgres started"
fi
t_end

t_case "redis starts, answers, restarts with its data, stops"
if sl_svc_start redis; then
    t_check "$(redis-cli -u "$SL_REDIS_URL" ping)" = PONG "redis-cli ping on $SL_REDIS_URL"
    redis-cli -u "$SL_REDIS_URL" set k kept >/dev/null
    port=$SL_REDIS_PORT
    sl_svc_restart redis
    t_check "$SL_REDIS_PORT" = "$port" "same port after restart"
    t_check "$(redis-cli -u "$SL_REDIS_URL" get k)" = kept "key survives a clean restart"
    pid=$(cat "$SL_SVC_ROOT/redis/pid")
    sl_svc_stop redis
    t_check -z "$(alive "$pid")" "no redis process left after stop"
else
    t_check 1 = 0 "redis started"
fi
t_end

t_case "clickhouse starts, answers, restarts with its data, stops"
if sl_svc_start clickhouse; then
    echo "    clickhouse answered /ping ${SL_CH_START_SECONDS}s after start"
    t_check "$(curl -s "$SL_CH_URL/?query=SELECT%2020%2B22")" = 42 "HTTP query on $SL_CH_URL"
    t_check "$(clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" -q 'SELECT 7')" = 7 \
        "native protocol on $SL_CH_TCP_PORT"
    curl -s --data-binary 'CREATE TABLE h (v String) ENGINE = MergeTree ORDER BY v' "$SL_CH_URL/"
    curl -s --data-binary "INSERT INTO h VALUES ('kept')" "$SL_CH_URL/"
    port=$SL_CH_PORT
    sl_svc_restart clickhouse
    t_check "$SL_CH_PORT" = "$port" "same port after restart"
    t_check "$(curl -s "$SL_CH_URL/?query=SELECT%20v%20FROM%20h")" = kept "row survives a restart"
    pid=$(cat "$SL_SVC_ROOT/clickhouse/pid")
    sl_svc_stop clickhouse
    t_check -z "$(alive "$pid")" "no clickhouse process left after stop"
else
    t_check 1 = 0 "clickhouse started"
fi
t_end

t_case "stop_all removes the private dir and leaves nothing running"
root=$SL_SVC_ROOT
sl_svc_restart redis
pid=$(cat "$SL_SVC_ROOT/redis/pid")
sl_svc_stop_all
t_check ! -e "$root" "temp dir removed"
t_check -z "$(alive "$pid")" "server stopped by stop_all"
t_end

t_exit
