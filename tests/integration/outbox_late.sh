#!/usr/bin/env bash
# The outbox relay's marker (modules/outbox/claim.c): a read is decided
# only once a NOTIFY the relay sent itself after it comes back, so that the
# NOTIFY of every transaction the read saw has arrived first; one that
# says a row committed below where the read started (its bucket was moved
# back) has the read's rows of that bucket read again instead of taken.
# Without either step a row overtakes an earlier row of its aggregate.
#
# The race is made to happen, not waited for.  A writer (a psql session
# this script drives) inserts the first row of 64 aggregates, one per
# bucket, and keeps its transaction open; rows of other aggregates, one per
# bucket, are relayed meanwhile, so every bucket's cursor passes the open
# rows' ids.  The backend of the relay's LISTEN connection is stopped
# (SIGSTOP, while it waits for its client), so no notification reaches the
# relay, and the writer inserts each aggregate's second row and commits.
# The relay polls once an hour, so it reads again only when the script
# takes bucket 0's lease away: at its next heartbeat it takes the bucket
# back and reads every bucket, the other 63 from their cursors, finding
# the second rows above them and not the first rows below.  Then:
#   - held up: the read waits for a marker that cannot come back and gives
#     up after OB_MARKER_WAIT: nothing of it is taken.  The backend is let
#     go then (or once the second rows left the table, which is how
#     deciding reads at once fails this), and the late rows' notifications
#     bring the first rows in first.
#   - in time: the backend is let go as soon as the relay took the bucket
#     back (it logs so, then sends the read): the writer's notifications
#     arrive after the read was sent and before its marker, and the read's
#     buckets are read again.  Taking a read's rows though its bucket was
#     moved back below its start fails this (unless the machine stalls the
#     script past OB_MARKER_WAIT, when the marker's timeout saves the order).
#   - in flight: a session of the script holds the outbox table's lock
#     while the read is sent, so the read waits on the server; the backend
#     is let go then, and the lock released once the relay has read the
#     notifications off its socket (ss: bytes in, none unread).  Marking
#     only the reads returned, not the one in flight, fails this.
# Everything is then read back with kcat: in each aggregate the first row
# reaches Kafka before the second.
# The lease (15 s, a heartbeat every 5 s) is long enough that a loaded
# machine does not let it lapse: reads skip buckets whose lease ran out,
# and with polling once an hour nothing would read them again.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

t_scratch "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/_modules/outbox.so"
frozen=""
cleanup() {
    [ -n "$frozen" ] && kill -CONT "$frozen" 2>/dev/null
    _t_scratch_end
}
trap cleanup EXIT
psqlc() { psql -X -At "$SL_PG_DSN" -c "$1"; }
port=$(t_free_port)
base=http://127.0.0.1:$port
bootfile=$work/bootstrap

t_case "postgres and a relay with the embedded broker start"
sl_svc_start postgres
t_check $? -eq 0 "postgres on ${SL_PG_DSN:-nothing}"
cat > "$work/relay.conf" <<EOF
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = info

[kafka]
brokers = embedded
embedded_topics = late:1
bootstrap_file = $bootfile

[postgres]
dsn = $SL_PG_DSN
query_timeout = 60s

[module metrics]

[module outbox]
topic = late
poll_interval = 1h
lease = 15s
EOF
(cd "$work" && exec "$SLUICED" -c relay.conf 2>>"$work/relay.log") &
relay=$!
pids+=("$relay")
t_wait_until 60 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/readyz")" = 200 ] && [ -s "$bootfile" ]'
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 "the relay is ready: $(tail -n 1 "$work/relay.log")"
buckets() { curl -s "$base/metrics" | awk '$1 == "sluice_outbox_buckets" { print $2 }'; }
t_wait_until 60 '[ "$(buckets)" = 64 ]'
t_check "$(buckets)" = 64 "it owns all 64 buckets"
t_end
[ "$(buckets)" = 64 ] || {
    t_exit
    exit 1
}

# The writer (fd 3) and a lock holder (fd 4): psql sessions fed through
# fifos; `wsql SQL` and `lsql SQL` return once their session ran it (its
# \echo after it is out).
for f in 3 4; do
    mkfifo "$work/s$f.fifo"
    psql -X -At -v ON_ERROR_STOP=1 "$SL_PG_DSN" < "$work/s$f.fifo" > "$work/s$f.out" 2>&1 &
    pids+=($!)
    eval "exec $f> \"\$work/s$f.fifo\""
done
nsql=0
ssql() { # ssql FD SQL
    nsql=$((nsql + 1))
    printf '%s\n\\echo step-%d\n' "$2" "$nsql" >&"$1"
    t_wait_until 60 "grep -qx 'step-$nsql' '$work/s$1.out'"
}
wsql() { ssql 3 "$1"; }
lsql() { ssql 4 "$1"; }
# aggs NAME: a table NAME of one aggregate id per bucket (the relay's hash, sql.c)
aggs() {
    psqlc "CREATE TABLE $1 AS SELECT DISTINCT ON (b) b, aid FROM
             (SELECT (hashtextextended('$1-' || g, 0) & 63)::int AS b, '$1-' || g AS aid
              FROM generate_series(1, 5000) g) x ORDER BY b, aid" > /dev/null
    psqlc "SELECT count(*) FROM $1"
}
insert() { # insert TABLE SEQ: one row of each aggregate of TABLE
    echo "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
          SELECT 'late', aid, 'late.changed', json_build_object('a', aid, 's', $2) FROM $1 ORDER BY b;"
}
left() { psqlc "SELECT count(*) FROM outbox WHERE $1"; }
seconds_left() { left "payload->>'s' = '2'"; }
took() { grep -c 'took 1 buckets' "$work/relay.log"; }
# relay_read_waits: the relay's reads waiting for a lock
relay_read_waits() {
    psqlc "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'sluiced%'
           AND wait_event_type = 'Lock' AND query LIKE '%unnest(\$2::int[]%'"
}
# sock PORT: the relay's side of its connection from PORT: "Recv-Q bytes_received"
sock() {
    ss -tniH state established "( sport = :$1 )" |
        awk 'NR == 1 { q = $1 } { for (i = 1; i <= NF; i++) if ($i ~ /^bytes_received:/) { split($i, a, ":"); b = a[2] } }
             END { print q + 0, b + 0 }'
}
warned() { grep -c 'marker did not come back' "$work/relay.log"; }

# late_case TAG held|in-time|in-flight
late_case() {
    local tag=$1 mode=$2 lpid took0 warned0 i cport q0 b0 q b
    t_check "$(aggs "${tag}_late") $(aggs "${tag}_past")" = "64 64" "an aggregate of each kind in every bucket"
    wsql "BEGIN; $(insert "${tag}_late" 1)"
    t_check $? -eq 0 "the writer inserted the first row of 64 aggregates and keeps its transaction open"
    psqlc "$(insert "${tag}_past" 1)" > /dev/null
    t_wait_until 60 '[ "$(left true)" = 0 ]'
    t_check "$(left true)" = 0 "64 rows of other aggregates relayed past them meanwhile"
    # Stopped while it waits for its client (wait_event ClientRead), the
    # backend holds no lock that the writers' NOTIFYs need.
    lpid=$(psqlc "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'sluiced%' AND query LIKE 'LISTEN %'")
    for i in $(seq 1 50); do
        kill -STOP "$lpid" && frozen=$lpid
        [ "$(psqlc "SELECT wait_event FROM pg_stat_activity WHERE pid = $lpid")" = ClientRead ] && break
        kill -CONT "$lpid" && frozen=""
        sleep 0.1
    done
    t_check "${frozen:-none}" = "$lpid" "the relay's LISTEN backend (pid $lpid) stopped while idle"
    warned0=$(warned)
    wsql "$(insert "${tag}_late" 2) COMMIT;"
    t_check $? -eq 0 "the writer inserted the second rows and committed"
    t_check "$(left "aggregate_id LIKE '${tag}_late-%'")" = 128 "first and second rows committed"
    took0=$(took)
    # in-flight: the read blocks on a lock of the outbox table until the
    # relay has the notifications (nothing else may read the table then).
    [ "$mode" = in-flight ] && lsql "BEGIN; LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE;"
    psqlc "UPDATE outbox_leases SET owner = NULL, expires_at = NULL WHERE bucket = 0" > /dev/null
    if [ "$mode" = in-flight ]; then
        t_wait_until 60 '[ "$(relay_read_waits)" = 1 ]'
        t_check "$(relay_read_waits)" = 1 "bucket 0 taken away and back: the relay's read waits for the table's lock"
        cport=$(psqlc "SELECT client_port FROM pg_stat_activity WHERE pid = $lpid")
        read -r q0 b0 <<< "$(sock "$cport")"
        kill -CONT "$lpid" && frozen=""
        # The relay reads a notification off its socket and hands it to
        # the relay in one go (pg_conn.c): bytes in, none left to read.
        t_wait_until 60 'read -r q b <<< "$(sock "$cport")" && [ "$b" -gt "$b0" ] && [ "$q" = 0 ]'
        read -r q b <<< "$(sock "$cport")"
        t_check "$b" -gt "$b0" -a "$q" = 0 "the notifications reached the relay while its read waited ($b0 -> $b bytes received on port $cport, $q unread)"
        lsql "COMMIT;"
        t_check $? -eq 0 "the lock released: the read goes on"
    elif [ "$mode" = held ]; then
        # Until the read gives up on its marker, or (deciding at once) its
        # rows were relayed.
        t_wait_until 60 '[ "$(warned)" -gt "$warned0" ] || [ "$(seconds_left)" = 0 ]'
        t_check "$(warned)" -gt "$warned0" -o "$(seconds_left)" = 0 "bucket 0 taken away and back; the read's marker given up ($(($(warned) - warned0))) or $((64 - $(seconds_left))) second rows relayed"
    else
        t_wait_until 60 '[ "$(took)" -gt "$took0" ]'
        t_check "$(took)" -gt "$took0" "bucket 0 taken away and back: $(grep 'took 1 buckets' "$work/relay.log" | tail -n 1 | cut -c1-100)"
    fi
    [ -n "$frozen" ] && kill -CONT "$lpid" && frozen=""
    t_wait_until 60 '[ "$(left true)" = 0 ]'
    t_check "$(left true)" = 0 "the backend let go: every row relayed"
    kcat -C -b "$(cat "$bootfile")" -t late -e -q -o beginning -f '%s\n' > "$work/$tag.dump" 2>/dev/null
    read -r msgs both over <<< "$(python3 - "$work/$tag.dump" "${tag}_late-" <<'PY'
import json, sys
seen = {}
for line in open(sys.argv[1]):
    p = json.loads(line)
    if p["a"].startswith(sys.argv[2]) and p["s"] not in seen.setdefault(p["a"], []):
        seen[p["a"]].append(p["s"])
print(sum(len(s) for s in seen.values()), sum(sorted(s) == [1, 2] for s in seen.values()),
      sum(s[:1] != [1] for s in seen.values()))
PY
)"
    t_check "$both" = 64 "kcat read both rows of all 64 aggregates"
    t_check "$over" = 0 "no second row reached Kafka before its aggregate's first ($over overtook; marker waits given up: $(($(warned) - warned0)))"
}

t_case "notifications held up past a read's marker: the read is not trusted, first rows go first"
late_case a held
t_end

t_case "notifications arriving between a read and its marker: the buckets moved back are read again"
late_case b in-time
t_end

t_case "notifications arriving while a read is in flight: the buckets moved back are read again"
late_case c in-flight
t_end

t_case "the relay drains on SIGTERM"
exec 3>&- 4>&-
kill -TERM "$relay"
wait "$relay"
t_check $? -eq 0 "exit 0"
t_end
t_exit
