#!/usr/bin/env bash
# Every create, update and delete of the segments API is an event: a user
# created (POST /user, or on demand by POST /segment/user), a segment
# created, changed (PATCH /segment/{slug}) or deleted, and each membership
# added or removed.  One sluiced runs segments, the outbox relay (to
# segment_events on the embedded broker) and the aggregator over real
# PostgreSQL, Redis and ClickHouse.  Checked: each event's row is written
# in its change's transaction (none for a refused request), kcat reads
# every kind back with its event_type header, and the aggregator's
# segment_events handler counts each kind exactly in ClickHouse.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

t_scratch
cleanup() {
    _t_scratch_end
    sl_svc_stop_all
}
trap cleanup EXIT

mods=$work/mods
mkdir -p "$mods"
for m in metrics segments outbox aggregator; do cp "$SL_BUILD/_modules/$m.so" "$mods/"; done
port=$(t_free_port)
base=http://127.0.0.1:$port
bootfile=$work/bootstrap

psqlc() { psql -X -At "$SL_PG_DSN" -c "$1"; }
chq() { clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" --query "$1" 2>>"$work/chc.err"; }
# call METHOD PATH [JSON]: prints "CODE BODY"
call() {
    local out
    out=$(curl -s --max-time 20 -X "$1" -H 'Content-Type: application/json' -w '\n%{http_code}' \
        ${3:+-d "$3"} "$base$2")
    echo "${out##*$'\n'} ${out%$'\n'*}"
}
events() { # events WHERE: outbox rows written so far (kept: the relay deletes the table's)
    psqlc "SELECT count(*) FROM written WHERE $1"
}

t_case "postgres, redis, clickhouse and sluiced start"
sl_svc_start postgres && sl_svc_start redis && sl_svc_start clickhouse
t_check $? -eq 0 "services up"
cat > "$work/sluice.conf" <<EOF
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = info

[kafka]
brokers = embedded
embedded_topics = segment_events:4
bootstrap_file = $bootfile

[postgres]
dsn = $SL_PG_DSN

[redis]
url = $SL_REDIS_URL

[clickhouse]
url = $SL_CH_URL

[module metrics]

[module segments]

[module outbox]
topic = segment_events
poll_interval = 200ms

[module aggregator]
topics = segment_events
group = g_segment_events
batch_interval = 100ms
EOF
"$SLUICED" -c "$work/sluice.conf" 2>>"$work/sluiced.log" &
pids+=($!)
t_wait_http "$base/healthz" 20 && t_wait_for 20 test -s "$bootfile"
t_wait_until 60 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/readyz")" = 200 ]'
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 "/readyz 200: $(tail -n 3 "$work/sluiced.log")"
# The relay deletes what it published: a copy of every row, made by a
# trigger of the test's own, is what the checks count.
psqlc "CREATE TABLE written (LIKE outbox);
       CREATE FUNCTION keep_written() RETURNS trigger LANGUAGE plpgsql AS
         \$\$ BEGIN INSERT INTO written SELECT NEW.*; RETURN NULL; END \$\$;
       CREATE TRIGGER keep_written AFTER INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION keep_written();" >/dev/null
t_check "$(psqlc "SELECT count(*) FROM pg_trigger WHERE tgname = 'keep_written'")" = 1 "the test's copy trigger is in place"
t_end

t_case "each kind of change writes its event, in its transaction, through segments_outbox()"
r=$(call POST /user)
t_check "${r%% *}" = 201 "POST /user: $r"
u1=$(echo "${r#* }" | python3 -c 'import json,sys; print(json.load(sys.stdin)["user_id"])')
t_check "$(events "event_type = 'user_created' AND aggregate_type = 'user' AND aggregate_id = '$u1'
                   AND payload @> jsonb_build_object('user_id', $u1, 'slug', '', 'operation', 'N')")" = 1 \
    "user_created for user $u1: $(psqlc "SELECT payload FROM written WHERE aggregate_id = '$u1'")"
r=$(call POST /segment '{"slug": "EV_A"}')
t_check "${r%% *}" = 201 "POST /segment EV_A: $r"
t_check "$(events "event_type = 'segment_created' AND aggregate_type = 'segment_def' AND aggregate_id = 'EV_A'
                   AND payload @> '{\"user_id\": 0, \"slug\": \"EV_A\", \"operation\": \"C\", \"user_percent\": null}'")" = 1 \
    "segment_created: $(psqlc "SELECT payload FROM written WHERE aggregate_id = 'EV_A'")"
r=$(call POST /segment/user '{"user_id": 777001, "add_segments": ["EV_A"]}')
t_check "${r%% *}" = 200 "a user created on demand by POST /segment/user: $r"
t_check "$(events "event_type = 'user_created' AND aggregate_id = '777001'")" = 1 "user_created for 777001 too"
r=$(call PATCH /segment/EV_A '{"description": "first test segment"}')
t_check "${r%% *}" = 200 "PATCH /segment/EV_A description: $r"
t_check "$(events "event_type = 'segment_updated' AND aggregate_id = 'EV_A'
                   AND payload @> '{\"operation\": \"U\", \"description\": \"first test segment\", \"previous\": {\"description\": null}}'")" = 1 \
    "segment_updated with the new and the previous values"
r=$(call PATCH /segment/EV_A '{"description": "first test segment"}')
t_check "$(events "event_type = 'segment_updated' AND aggregate_id = 'EV_A'")" = 1 "a PATCH that changes nothing is no event ($r)"
call POST /segment/user "{\"user_id\": $u1, \"add_segments\": [\"EV_A\"]}" >/dev/null
call POST /segment/user "{\"user_id\": $u1, \"delete_segments\": [\"EV_A\"]}" >/dev/null
t_check "$(events "event_type = 'segment_added' AND payload->>'slug' = 'EV_A'")" = 2 "segment_added twice"
t_check "$(events "event_type = 'segment_removed' AND payload->>'slug' = 'EV_A'")" = 1 "segment_removed once"
r=$(call DELETE /segment '{"slug": "EV_A"}')
t_check "$(echo "${r#* }" | python3 -c 'import json,sys; print(json.load(sys.stdin)["memberships_removed"])')" = 1 "DELETE /segment EV_A: $r"
t_check "$(psqlc "SELECT string_agg(event_type, ',' ORDER BY id) FROM written WHERE payload->>'slug' = 'EV_A'
                  AND id >= (SELECT max(id) FROM written WHERE event_type = 'segment_removed' AND aggregate_id = '777001')")" \
    = "segment_removed,segment_deleted" "the member's removal, then segment_deleted, in one transaction's order"
t_check "$(psqlc "SELECT count(DISTINCT created_at) FROM written WHERE payload->>'slug' = 'EV_A'
                  AND id >= (SELECT max(id) FROM written WHERE event_type = 'segment_removed' AND aggregate_id = '777001')")" \
    = 1 "both stamped with the same transaction time"
t_check "$(psqlc "SELECT count(*) FROM written WHERE payload->>'ts' !~ '^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$'")" \
    = 0 "every payload's ts is RFC 3339 UTC with milliseconds"
# Refused requests write nothing.
before=$(events true)
call POST /segment '{"slug": "EV_B"}' >/dev/null
r=$(call POST /segment '{"slug": "EV_B"}')
t_check "${r%% *}" = 409 "creating EV_B again: 409"
r=$(call PATCH /segment/NO_SUCH '{"user_percent": 5}')
t_check "${r%% *}" = 404 "PATCH of an unknown segment: 404 ($r)"
r=$(call POST /segment/user '{"user_id": 777002, "add_segments": ["NO_SUCH"]}')
t_check "${r%% *}" = 404 "an unknown slug in POST /segment/user: 404, its user not created ($r)"
t_check "$(events true)" = $((before + 1)) "only EV_B's creation was written by these four requests"
t_check "$(psqlc "SELECT count(*) FROM users WHERE id = 777002")" = 0 "user 777002 rolled back with its event"
# No SQL of the module inserts into the outbox but segments_outbox().
t_check "$(grep -l 'INSERT INTO outbox' "$SL_TOP"/modules/segments/*.c | xargs -n1 basename | tr '\n' ' ')" = "schema.c " \
    "only schema.c names INSERT INTO outbox"
t_check "$(psqlc "SELECT count(*) FROM pg_proc WHERE proname IN ('segments_membership_change', 'segments_user_created', 'segments_segment_change')
                  AND prosrc LIKE '%segments_outbox(%' AND prosrc NOT LIKE '%INSERT INTO outbox%'")" = 3 \
    "the three triggers write through segments_outbox()"
t_end

t_case "a rollout segment: its creation, its change and every membership are events"
for i in $(seq 1 40); do call POST /user >/dev/null; done
r=$(call POST /segment '{"slug": "EV_R", "user_percent": 50}')
t_check "${r%% *}" = 201 "POST /segment EV_R at 50%: $r"
nusers=$(psqlc "SELECT count(*) FROM users")
want=$(python3 -c "from decimal import Decimal as D, ROUND_HALF_UP as H; print(int((D($nusers) * 50 / 100).quantize(D(1), H)))")
t_check "$(events "event_type = 'segment_added' AND payload->>'slug' = 'EV_R'")" = "$want" "$want segment_added for round(50% of $nusers)"
r=$(call PATCH /segment/EV_R '{"user_percent": 25}')
want2=$(python3 -c "from decimal import Decimal as D, ROUND_HALF_UP as H; print(int((D($nusers) * 25 / 100).quantize(D(1), H)))")
t_check "$(events "event_type = 'segment_removed' AND payload->>'slug' = 'EV_R'")" = $((want - want2)) \
    "shrunk to 25%: $((want - want2)) segment_removed ($r)"
t_check "$(events "event_type = 'segment_updated' AND aggregate_id = 'EV_R'
                   AND payload @> '{\"user_percent\": 25, \"previous\": {\"user_percent\": 50}}'")" = 1 "segment_updated 50 -> 25"
t_end

t_case "kcat reads every kind from segment_events with its event_type header"
t_wait_until 60 '[ "$(psqlc "SELECT count(*) FROM outbox")" = 0 ]'
t_check "$(psqlc "SELECT count(*) FROM outbox")" = 0 "the relay published every row"
kcat -C -b "$(cat "$bootfile")" -t segment_events -e -q -o beginning -X fetch.wait.max.ms=10 \
    -f '%k|%h|%s\n' > "$work/topic.dump" 2>"$work/kcat.err"
got=$(python3 - "$work/topic.dump" <<'PY'
import collections, json, sys
n = collections.Counter()
for line in open(sys.argv[1]):
    key, headers, value = line.rstrip("\n").split("|", 2)
    h = dict(x.split("=", 1) for x in headers.split(","))
    p = json.loads(value)
    n[(h["event_type"], p["operation"])] += 1
print(" ".join(f"{t}:{o}:{c}" for (t, o), c in sorted(n.items())))
PY
)
want=$(psqlc "SELECT string_agg(t || ':' || o || ':' || c, ' ' ORDER BY t, o) FROM
              (SELECT event_type t, payload->>'operation' o, count(*) c FROM written GROUP BY 1, 2) x")
t_check "$got" = "$want" "per event_type and operation, the topic holds what was written: $got"
for k in user_created segment_created segment_updated segment_deleted segment_added segment_removed; do
    t_check "$(echo "$got" | grep -c "$k:")" = 1 "$k is among them"
done
t_end

t_case "the aggregator's segment_events handler counts each kind exactly"
want=$(psqlc "SELECT string_agg(o || ':' || c, ' ' ORDER BY o) FROM
              (SELECT payload->>'operation' o, count(*) c FROM written GROUP BY 1) x")
counted() {
    chq "SELECT arrayStringConcat(groupArray(concat(operation, ':', toString(n))), ' ') FROM
         (SELECT operation, sum(changes) AS n FROM segment_changes_per_minute FINAL GROUP BY operation ORDER BY operation)"
}
t_wait_until 60 '[ "$(counted)" = "$want" ]'
t_check "$(counted)" = "$want" "per-minute changes by operation equal the events written: $want"
t_check "$(chq "SELECT count() FROM segment_events FINAL")" = "$(events true)" "one raw row per event"
t_check "$(chq "SELECT count() FROM processing_errors")" = 0 "none refused: $(chq "SELECT reason, detail FROM processing_errors LIMIT 3")"
t_check "$(chq "SELECT count() FROM segment_events FINAL WHERE operation = 'N' AND slug = '' AND user_id = 777001")" = 1 \
    "user 777001's creation stored with no slug"
t_end

t_case "SIGTERM: sluiced exits 0"
kill -TERM "${pids[0]}"
wait "${pids[0]}"
t_check $? -eq 0 "exit 0"
pids=()
t_end
t_exit
