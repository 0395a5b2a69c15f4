#!/usr/bin/env bash
# Every statement the modules on the PostgreSQL connector run per request
# or per tick of a timer is a prepared statement (sluice/pg.h): parsed and
# planned once per connection, then run by name.  PostgreSQL itself is the
# witness: the daemons connect with log_statement = all (in the dsn's
# options, so that only their sessions are logged), and the server logs
# each Execute with the statement's name, "execute sl_NAME: ..." for a
# prepared one and "execute <unnamed>: ..." for one sent with its SQL.
#
# Instance A runs segments (sweeper, gauges, history retention, read cache)
# and the outbox relay (its events, to the embedded broker); instance B runs
# segments with its Redis unreachable, so that its sweeper removes expired
# memberships straight from PostgreSQL.  After every route and timer ran,
# and both daemons stopped (the relay hands its buckets back), the only
# statements logged unnamed must be those that run once per start: the
# migrations' bookkeeping, the segments secret, the relay's leave.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

t_scratch "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/_modules/segments.so" \
    "$SL_BUILD/_modules/outbox.so"
psqlc() { psql -X -At "$SL_PG_DSN" -c "$1"; }
metric() {
    curl -s "$1/metrics" | awk -v n="$2" '$1 == n { v = $2; found = 1 } END { print found ? v : "absent" }'
}
# call BASE METHOD PATH [JSON]: prints the status code
call() {
    curl -s -o /dev/null --max-time 20 -w '%{http_code}' -X "$2" -H 'Content-Type: application/json' \
        ${4:+-d "$4"} "$1$3"
}

t_case "postgres, redis and two daemons start, their sessions logging every statement"
sl_svc_start postgres && sl_svc_start redis
t_check $? -eq 0 "postgres ${SL_PG_DSN:-none}, redis ${SL_REDIS_URL:-none}"
[ -n "${SL_PG_PORT:-}" ] && [ -n "${SL_REDIS_PORT:-}" ] || {
    t_end
    t_exit
    exit 1
}
srvlog=$SL_SVC_ROOT/postgres/server.log
dsn="$SL_PG_DSN options='-c log_statement=all'"
pa=$(t_free_port) pb=$(t_free_port) dead=$(t_free_port)
a=http://127.0.0.1:$pa b=http://127.0.0.1:$pb
bootfile=$work/bootstrap
cat > "$work/a.conf" <<EOF
[core]
listen = 127.0.0.1:$pa
modules_dir = mods
log_level = info

[kafka]
brokers = embedded
embedded_topics = segment_events:2
bootstrap_file = $bootfile

[postgres]
dsn = $dsn

[redis]
url = $SL_REDIS_URL

[module metrics]

[module segments]
sweep_interval = 200ms
history_retention = 1s
history_sweep_interval = 1s

[module outbox]
topic = segment_events
poll_interval = 200ms
EOF
cat > "$work/b.conf" <<EOF
[core]
listen = 127.0.0.1:$pb
modules_dir = mods
log_level = info

[postgres]
dsn = $dsn

[redis]
url = redis://127.0.0.1:$dead

[module metrics]

[module segments]
sweep_interval = 200ms
EOF
(cd "$work" && exec "$SLUICED" -c a.conf 2>>"$work/a.log") &
da=$!
pids+=("$da")
t_wait_until 60 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$a/readyz")" = 200 ]'
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$a/readyz")" = 200 "A ready: $(tail -n 2 "$work/a.log")"
(cd "$work" && exec "$SLUICED" -c b.conf 2>>"$work/b.log") &
db=$!
pids+=("$db")
t_wait_http "$b/healthz" 30
t_check $? -eq 0 "B answers (its Redis is unreachable on port $dead)"
t_check "$(grep -c 'execute sl_' "$srvlog")" -ge 1 "the server logs the daemons' statements by name"
t_end
[ "$(curl -s -o /dev/null -w '%{http_code}' "$a/readyz")" = 200 ] || {
    t_exit
    exit 1
}

# said NAME: how many times the server ran the prepared statement sl_NAME.
said() { grep -c "LOG:  execute sl_$1: " "$srvlog"; }

t_case "the routes' statements run by name"
t_check "$(call "$a" POST /segment '{"slug":"P1"}')" = 201 "POST /segment P1"
t_check "$(call "$a" POST /segment '{"slug":"P2"}')" = 201 "POST /segment P2"
for i in 1 2 3; do
    t_check "$(call "$a" GET /segment)" = 200 "GET /segment ($i)"
done
t_check "$(call "$a" POST /user '{}')" = 201 "POST /user"
t_check "$(call "$a" POST /segment/user '{"user_id":7,"add_segments":["P1","P2"]}')" = 200 "P1 and P2 added to user 7"
t_check "$(call "$a" GET /segment/user/7)" = 200 "GET /segment/user/7"
t_check "$(call "$a" PATCH /segment/P2 '{"user_percent":50}')" = 200 "PATCH /segment/P2 to 50%"
t_check "$(call "$a" POST /segment/user '{"user_id":8,"add_segments":["P1"],"ttl":1}')" = 200 "P1 added to user 8 for 1 s (Redis schedules it)"
t_check "$(call "$b" POST /segment/user '{"user_id":9,"add_segments":["P1"],"ttl":1}')" = 200 "P1 added to user 9 for 1 s through B"
t_check "$(said segments_segment_list)" -ge 3 "GET /segment ran sl_segments_segment_list ($(said segments_segment_list) times)"
t_end

t_case "the timers' statements run by name: sweeps, schedule rebuild, gauges, retention, the relay"
# (users 8 and 9, created on demand, may also have joined P2's rollout)
expiring() { psqlc "SELECT count(*) FROM user_segments WHERE slug = 'P1' AND user_id IN (8, 9)"; }
t_wait_until 60 '[ "$(expiring)" = 0 ]'
t_check "$(expiring)" = 0 "both expired memberships removed"
t_wait_until 60 '[ "$(said segments_ttl_remove)" -ge 1 ] && [ "$(said segments_ttl_fallback)" -ge 1 ]'
t_check "$(said segments_ttl_remove)" -ge 1 "A's sweep removed what Redis said was due: sl_segments_ttl_remove ($(said segments_ttl_remove))"
t_check "$(said segments_ttl_fallback)" -ge 1 "B's sweep, without Redis: sl_segments_ttl_fallback ($(said segments_ttl_fallback))"
t_check "$(said segments_ttl_rebuild)" -ge 1 "A rebuilt the schedule at start: sl_segments_ttl_rebuild ($(said segments_ttl_rebuild))"
t_wait_until 60 '[ "$(metric "$a" sluice_segments_history_removed_total)" != 0 ]'
t_check "$(metric "$a" sluice_segments_history_removed_total)" != 0 "history retention removed rows ($(metric "$a" sluice_segments_history_removed_total))"
t_check "$(said segments_retention)" -ge 1 "by sl_segments_retention ($(said segments_retention))"
t_wait_until 60 '[ "$(said segments_active)" -ge 1 ] && [ "$(said outbox_pending)" -ge 1 ]'
t_check "$(said segments_active)" -ge 1 "the active-memberships gauge: sl_segments_active ($(said segments_active))"
t_check "$(said outbox_pending)" -ge 1 "the outbox gauges: sl_outbox_pending ($(said outbox_pending))"
t_wait_until 60 '[ "$(psqlc "SELECT count(*) FROM outbox")" = 0 ]'
t_check "$(psqlc "SELECT count(*) FROM outbox")" = 0 "the relay published every event ($(metric "$a" sluice_outbox_published_total))"
for s in outbox_read outbox_mark outbox_ack outbox_beat outbox_take; do
    t_check "$(said $s)" -ge 1 "sl_$s ran ($(said $s))"
done
t_end

t_case "nothing else is sent unprepared but what runs once per start"
kill -TERM "$da" "$db"
wait "$da"
t_check $? -eq 0 "A drained and exited 0"
wait "$db"
t_check $? -eq 0 "B exited 0"
# The once-per-start statements: the migrations' lock, check and record
# (the connector), the segments secret, the relay's leave.
grep 'LOG:  execute <unnamed>: ' "$srvlog" | sed 's/.*LOG:  execute <unnamed>: //' |
    grep -v -e '^SELECT pg_advisory_xact_lock(' -e '^SELECT version FROM sluice_migrations ' \
        -e '^INSERT INTO sluice_migrations ' -e '^SELECT secret FROM segments_install ' \
        -e '^WITH handed AS (UPDATE "outbox_leases" ' | sort | uniq -c | sort -rn > "$work/unnamed"
t_check "$(grep -c 'LOG:  execute <unnamed>: SELECT secret FROM segments_install ' "$srvlog")" -ge 2 "the server logs unnamed statements as such (each instance's secret)"
t_check "$(grep -c 'LOG:  execute <unnamed>: WITH handed AS' "$srvlog")" -ge 1 "the relay's leave was logged unnamed"
t_check "$(wc -l < "$work/unnamed")" = 0 "no other statement unprepared: $(head -c 600 "$work/unnamed")"
t_end
t_exit
