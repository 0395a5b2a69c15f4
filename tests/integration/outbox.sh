#!/usr/bin/env bash
# The outbox module against a real PostgreSQL (harness), the embedded Kafka
# broker and kcat as the reader.  Rows are written by concurrent psql
# transactions, some rolled back; every committed row must reach Kafka at
# least once, in order per aggregate (the first copy of each row comes after
# the first copy of every earlier row of its aggregate), and the table must
# end empty, also across a SIGKILL of the relay, the broker going down, two
# relays sharing the table, relays stopped and started under load, a relay
# stalled past its lease (SIGSTOP) and resumed, SIGHUP and SIGTERM.
#
# The broker runs in its own sluiced (d0, with the kafkaprobe module for
# taking it down) so that killing a relay does not take Kafka with it; the
# relays are separate sluiced processes pointed at its address.
#
# Sizes: the concurrent case writes OB_ROWS rows (default the issue's
# 100000); tests/bench/bench_outbox.sh drains 1M with a plain build.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

work=$(t_tmpdir)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    sl_svc_stop_all
    [ -n "${SL_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

rows=${OB_ROWS:-100000}
mods=$work/mods
mkdir -p "$mods"
cp "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/_modules/outbox.so" "$mods/"
cp "$SL_BUILD/tests/modules/kafkaprobe/.libs/kafkaprobe.so" "$mods/"
port0=$(t_free_port)
port=$(t_free_port)
port2=$(t_free_port)
base0=http://127.0.0.1:$port0
base=http://127.0.0.1:$port
base2=http://127.0.0.1:$port2
bootfile=$work/bootstrap

t_case "postgres server and the broker daemon start"
sl_svc_start postgres
t_check $? -eq 0 "postgres on ${SL_PG_DSN:-nothing}"
cat > "$work/broker.conf" <<EOF
# written by tests/integration/outbox.sh: the embedded broker on its own
[core]
listen = 127.0.0.1:$port0
modules_dir = mods

[kafka]
brokers = embedded
embedded_topics = outbox.order:8, outbox.customer:8
bootstrap_file = $bootfile
admin = true

[module kafkaprobe]
produce = false
EOF
(cd "$work" && exec "$SLUICED" -c broker.conf 2>>"$work/broker.log") &
d0=$!
pids+=("$d0")
t_wait_http "$base0/healthz" 20 && t_wait_for 10 test -s "$bootfile"
t_check -s "$bootfile" "the broker daemon wrote its address: $(cat "$bootfile" 2>/dev/null)"
t_end
[ -n "${SL_PG_PORT:-}" ] && [ -s "$bootfile" ] || { t_exit; exit 1; }
broker=$(cat "$bootfile")
export OB_BROKER=$broker
psqlc() { psql -X -At "$SL_PG_DSN" -c "$1"; }
code_of() { curl -s -o /dev/null --max-time 10 -w '%{http_code}' "$@"; }

# write_conf FILE PORT [OPTION LINES]: a relay daemon.  The option lines
# replace the defaults of the same name (a key given twice is refused).
cat > "$work/conf.py" <<'EOF'
import os, sys
path, port = sys.argv[1], sys.argv[2]
extra = sys.argv[3] if len(sys.argv) > 3 else ""
opts = {"poll_interval": "1s", "lease": "4s", "retry_backoff": "200ms",
        "retry_backoff_max": "1s", "max_attempts": "1000", "delivery_timeout": "2s"}
order = list(opts)
for line in extra.splitlines():
    if "=" in line:
        k, v = (x.strip() for x in line.split("=", 1))
        if k not in opts:
            order.append(k)
        opts[k] = v
conf = """# written by tests/integration/outbox.sh
[core]
listen = 127.0.0.1:%s
modules_dir = mods
log_level = info
drain_timeout = 20s

[postgres]
dsn = %s
pool_size = 4
reconnect_max = 500ms

[kafka]
brokers = %s
rdkafka.reconnect.backoff.max.ms = 500
rdkafka.message.max.bytes = 200000

[module metrics]

[module outbox]
""" % (port, os.environ["SL_PG_DSN"], os.environ["OB_BROKER"])
conf += "".join("%s = %s\n" % (k, opts[k]) for k in order)
open(path, "w").write(conf)
EOF
write_conf() { python3 "$work/conf.py" "$@"; }

d1="" d2=""
start1() { # start1 [OPTION LINES]: the first relay, waits until it is ready
    write_conf "$work/one.conf" "$port" "${1:-}"
    (cd "$work" && exec "$SLUICED" -c one.conf 2>>"$work/one.log") &
    d1=$!
    pids+=("$d1")
    t_wait_http "$base/healthz" 20 && t_wait_until 20 '[ "$(code_of "$base/readyz")" = 200 ]'
}
start2() { # the second relay
    write_conf "$work/two.conf" "$port2" "${1:-}"
    (cd "$work" && exec "$SLUICED" -c two.conf 2>>"$work/two.log") &
    d2=$!
    pids+=("$d2")
    t_wait_http "$base2/healthz" 20 && t_wait_until 20 '[ "$(code_of "$base2/readyz")" = 200 ]'
}
stop_daemon() { # stop_daemon PID: SIGTERM, wait for the drain; its exit status
    kill -TERM "$1" 2>/dev/null
    wait "$1"
}
status() { # status BASE EXPR
    curl -s --max-time 10 "$1/outbox/status" |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2"
}
metric() { # metric BASE NAME: the value, or "absent"
    curl -s "$1/metrics" | awk -v n="$2" '$1 == n { print $2; found = 1 } END { if (!found) print "absent" }'
}
left() { psqlc "SELECT count(*) FROM outbox"; }
empty() { [ "$(left)" = 0 ]; }
# A relay claims rows by leasing the buckets they hash to (modules/outbox/
# lease.c): the rows claimed are those of buckets a relay leases.
in_leased() { # in_leased CONDITION ON THE LEASE l: rows of such buckets
    psqlc "SELECT count(*) FROM outbox o JOIN outbox_leases l
           ON l.bucket = (hashtextextended(o.aggregate_id, 0) & 63)::int WHERE $1"
}
claimed_left() { in_leased "l.owner IS NOT NULL"; }

# gen.py OUT_PREFIX WRITERS ROWS TAG ROLLBACK_EVERY: SQL files, one per
# concurrent writer, and OUT_PREFIX.expected (the committed rows).  Each
# writer owns its aggregates (as a service serialises one aggregate's
# changes), so each aggregate's seq rises with its ids.  Rolled-back rows
# carry s = -1.
cat > "$work/gen.py" <<'EOF'
import json, random, sys
prefix, writers, rows, tag, rb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
rnd = random.Random(tag)
expected = open(prefix + ".expected", "w")
per = rows // writers
for w in range(writers):
    aggs = ["%s-w%d-a%d" % (tag, w, i) for i in range(25)]
    seq = {a: 0 for a in aggs}
    out = open("%s.%d.sql" % (prefix, w), "w")
    out.write("\\set ON_ERROR_STOP 1\n")
    n = tx = 0
    while n < per:
        k = min(rnd.randint(1, 8), per - n)
        tx += 1
        commit = rb == 0 or tx % rb != 0
        vals = []
        for _ in range(k):
            a = rnd.choice(aggs)
            s = -1
            if commit:
                seq[a] += 1
                s = seq[a]
                expected.write("%s %d\n" % (a, s))
            t = "order" if int(a.split("-a")[1]) % 2 == 0 else "customer"
            p = json.dumps({"a": a, "s": s, "pad": "x" * rnd.randint(10, 100)})
            vals.append("('%s', '%s', '%s.changed', '%s')" % (t, a, t, p))
        out.write("BEGIN;\nINSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES %s;\n%s;\n"
                  % (", ".join(vals), "COMMIT" if commit else "ROLLBACK"))
        if commit:
            n += k
EOF
# write_rows PREFIX WRITERS ROWS TAG: runs the writers concurrently.
write_rows() {
    python3 "$work/gen.py" "$work/$1" "$2" "$3" "$4" "${5:-10}" || return 1
    local w p=() rc=0
    for w in $(seq 0 $(($2 - 1))); do
        psql -X -q "$SL_PG_DSN" -f "$work/$1.$w.sql" > /dev/null 2>>"$work/psql.err" &
        p+=($!)
    done
    for w in "${p[@]}"; do wait "$w" || rc=1; done
    return $rc
}

# kread: every message of the outbox topics, one line each.
kread() {
    local t
    : > "$work/all.dump"
    for t in outbox.order outbox.customer; do
        kcat -C -b "$broker" -t "$t" -e -q -o beginning -X fetch.wait.max.ms=10 \
            -f '%t\t%p\t%k\t%h\t%s\n' >> "$work/all.dump" 2>/dev/null
    done
}
# check.py DUMP EXPECTED...: counts over the stream against what was committed.
cat > "$work/check.py" <<'EOF'
import json, sys, collections
want = set()
for f in sys.argv[2:]:
    for line in open(f):
        a, s = line.split()
        want.add((a, int(s)))
tags = set(a.split("-")[0] for a, _ in want)
seen = collections.Counter()
first_max = {}
out = collections.Counter()
parts = collections.defaultdict(set)
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    topic, part, key, hdrs, value = line.rstrip("\n").split("\t", 4)
    try:
        p = json.loads(value)
    except ValueError:
        out["unparsable"] += 1
        continue
    if "a" not in p or p["a"].split("-")[0] not in tags:
        continue
    a, s = p["a"], p["s"]
    if s < 0:
        out["rolled_back_published"] += 1
        continue
    h = dict(kv.split("=", 1) for kv in hdrs.split(",") if "=" in kv)
    t = "order" if int(a.split("-a")[1]) % 2 == 0 else "customer"
    if key != a or topic != "outbox." + t or h.get("aggregate_type") != t \
            or h.get("event_type") != t + ".changed" or not h.get("event_id", "").isdigit():
        out["bad_envelope"] += 1
    parts[a].add(part)
    out["messages"] += 1
    if seen[(a, s)]:
        out["duplicates"] += 1
    else:
        # a first occurrence must come after every earlier seq's first one
        if s < first_max.get(a, 0):
            out["order_violations"] += 1
        first_max[a] = max(first_max.get(a, 0), s)
    seen[(a, s)] += 1
out["distinct"] = len(seen)
out["missing"] = len(want - set(seen))
out["expected"] = len(want)
out["aggregates_in_two_partitions"] = sum(1 for v in parts.values() if len(v) > 1)
print(json.dumps(out))
EOF
fact() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))' "$work/facts" "$1"; }
# arrived EXPECTED...: kcat holds every expected row (refreshes facts).
arrived() {
    kread
    python3 "$work/check.py" "$work/all.dump" "$@" > "$work/facts"
    [ "$(fact missing)" = 0 ]
}
# stream_ok EXPECTED...: the common checks over what kcat read.
stream_ok() {
    local t0=$SECONDS
    until arrived "$@" || [ $((SECONDS - t0)) -ge 30 ]; do sleep 1; done
    t_check "$(fact missing)" = 0 "missing: $(fact missing) of $(fact expected) committed ($(fact messages) messages read)"
    t_check "$(fact rolled_back_published)" = 0 "no rolled-back row was published"
    t_check "$(fact order_violations)" = 0 "order per aggregate kept ($(fact duplicates) duplicates)"
    t_check "$(fact bad_envelope)" = 0 "key, topic and headers (event_id, event_type, aggregate_type) right"
    t_check "$(fact aggregates_in_two_partitions)" = 0 "each aggregate in one partition"
}

# ---------------------------------------------------------------- config
t_case "-t refuses a table or column name that is not a plain identifier"
write_conf "$work/bad.conf" "$port" 'table = outbox; DROP TABLE users'
line=$(grep -n '^table = outbox; DROP' "$work/bad.conf" | cut -d: -f1)
(cd "$work" && "$SLUICED" -t -c bad.conf) 2>"$work/t.out"
t_check $? -eq 1 "sluiced -t refuses it: exit 1"
t_check "$(grep -c "bad.conf:$line: \[module outbox\] table: \"outbox; DROP TABLE users\" is not a plain identifier" "$work/t.out")" -eq 1 "at bad.conf:$line: $(grep -m1 identifier "$work/t.out" | head -c 200)"
(cd "$work" && timeout 20 "$SLUICED" -c bad.conf) 2>"$work/bad.log"
t_check $? -ne 0 "sluiced refuses to run it"
t_check "$(grep -c 'not a plain identifier' "$work/bad.log")" -ge 1 "the log says why: $(grep -m1 identifier "$work/bad.log")"
t_check "$(psqlc "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'outbox%'")" = 0 "no table was created"
write_conf "$work/good.conf" "$port"
(cd "$work" && "$SLUICED" -t -c good.conf) > /dev/null 2>&1
t_check $? -eq 0 "sluiced -t accepts the relay's config"
t_end

# --------------------------------------------------- migration and trigger
t_case "the migration creates the table, its claim columns, index and NOTIFY trigger"
start1 "poll_interval = 60s"
t_check $? -eq 0 "sluiced started and ready"
cols=$(psqlc "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'outbox'")
t_check "$cols" = "id,aggregate_type,aggregate_id,event_type,payload,created_at,claimed_by,claimed_at,attempts,last_error,parked,next_attempt_at,sent_at,traceparent" "columns: $cols"
t_check "$(psqlc "SELECT count(*) FROM pg_trigger WHERE tgname = 'outbox_notify'")" = 1 "insert trigger present"
t_check "$(psqlc "SELECT string_agg(version::text, ',' ORDER BY version) FROM sluice_migrations WHERE module = 'outbox:outbox'")" = 1,2,3 "each migration recorded once"
t_end

# Polling alone would leave a row waiting for up to poll_interval (60 s),
# 30 s on average: five rows all gone within a sixth of it would happen by
# chance once in (1/6)^5, about 8000 runs.  A slow machine cannot make the
# check fail unless it stalls for 10 s.
t_case "NOTIFY wakes the relay: with polling every 60 s a row leaves at once"
worst=0
for i in 1 2 3 4 5; do
    psqlc "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('order', 'ping', 'order.ping', '{\"n\": $i}')" > /dev/null
    t0=$(date +%s%N)
    t_wait_for 20 empty
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    [ "$ms" -gt "$worst" ] && worst=$ms
done
t_check "$worst" -lt 10000 "slowest of 5 rows acknowledged and deleted ${worst} ms after its commit, well within poll_interval (60 s)"
kcat -C -b "$broker" -t outbox.order -e -q -o beginning -f '%k|%h|%s\n' > "$work/ping.dump" 2>/dev/null
t_check "$(grep -c '^ping|' "$work/ping.dump")" = 5 "5 messages keyed 'ping' on outbox.order"
t_check "$(head -1 "$work/ping.dump" | grep -c 'event_id=[0-9]*,event_type=order.ping,aggregate_type=order')" = 1 "headers: $(head -1 "$work/ping.dump" | cut -d'|' -f2)"
t_check "$(metric "$base" sluice_outbox_published_total)" = 5 "sluice_outbox_published_total 5"
t_check "$(metric "$base" sluice_outbox_lag_seconds_count)" = 5 "lag histogram holds 5 samples"
t_check "$(metric "$base" 'sluice_outbox_lag_seconds_bucket{le="10"}')" = 5 "all 5 acknowledged within 10 s of their commit (sum $(metric "$base" sluice_outbox_lag_seconds_sum) s)"
stop_daemon "$d1"
t_check $? -eq 0 "SIGTERM drained and exited 0"
t_end

# --------------------------------------------------- concurrent writers
t_case "$rows rows from 8 concurrent writers (every 10th transaction rolled back): all committed arrive in order"
start1
t_check $? -eq 0 "sluiced started"
t0=$SECONDS
write_rows big 8 "$rows" big
t_check $? -eq 0 "writers done in $((SECONDS - t0))s"
t_wait_until 180 empty
t_check "$(left)" = 0 "the table ends empty after $((SECONDS - t0))s"
stream_ok "$work/big.expected"
t_check "$(promtool check metrics < <(curl -s "$base/metrics") >/dev/null 2>&1; echo $?)" = 0 "promtool accepts /metrics"
t_check "$(metric "$base" sluice_outbox_inflight)" = 0 "nothing in flight"
for m in sluice_outbox_pending sluice_outbox_parked sluice_outbox_published_total sluice_outbox_failed_total \
    sluice_outbox_retried_total sluice_outbox_takeovers_total sluice_outbox_lag_seconds_count; do
    t_check "$(metric "$base" $m)" != absent "$m = $(metric "$base" $m)"
done
t_end

# --------------------------------------------------------------- SIGKILL
t_case "SIGKILL mid-batch, restart: every row arrives, nothing stays claimed after the lease"
stop_daemon "$d1"
write_rows kill0 4 2000 kill0
start1 "batch_size = 200"
# The writers go on while it is killed, so that it dies holding work.  It
# drains as fast as they write, so it is frozen first: rows then pile up
# in its buckets.
write_rows kill 4 8000 kill &
writer=$!
t_wait_until 60 '[ "$(status "$base" "j[\"published\"]")" -gt 1000 ]'
kill -STOP "$d1"
t_wait_until 60 '[ "$(claimed_left)" -gt 0 ]'
kill -9 "$d1"
wait "$d1" 2>/dev/null
claimed=$(claimed_left)
t_check "$claimed" -gt 0 "killed with $claimed rows claimed"
wait "$writer"
start1
t_check $? -eq 0 "restarted"
t_wait_until 120 empty
t_check "$(left)" = 0 "the table ends empty"
stream_ok "$work/kill0.expected" "$work/kill.expected"
t_check "$(status "$base" 'j["takeovers"]')" -gt 0 "the new relay took over $(status "$base" 'j["takeovers"]') stale claims after the lease"
t_check "$(metric "$base" sluice_outbox_takeovers_total)" -gt 0 "sluice_outbox_takeovers_total $(metric "$base" sluice_outbox_takeovers_total)"
t_end

# --------------------------------------------------------- broker down
t_case "broker down for 20 s under two relays: rows stay, retries with backoff, claims renewed past the lease, then drain"
# A delivery timeout above the lease: a row waits longer than the lease in
# its relay, and only the renewal keeps the other relay from taking it.  A
# renewal comes every lease/3; an 8 s lease leaves a loaded machine more
# than 5 s of slack before a late one would let the other relay take over.
stop_daemon "$d1"
start1 "lease = 8s
delivery_timeout = 12s"
t_check $? -eq 0 "first relay restarted (delivery_timeout 12 s, lease 8 s)"
start2 "lease = 8s
delivery_timeout = 12s"
t_check $? -eq 0 "second relay started"
t_check "$(code_of -X POST "$base0/kafkaprobe/broker?id=-1&up=0")" = 200 "broker down"
down_at=$SECONDS
write_rows down 2 2000 down
# Either relay may hold the rows: their counters are summed.
both() { echo $(($(status "$base" "j[\"$1\"]") + $(status "$base2" "j[\"$1\"]"))); }
both_metric() { echo $(($(metric "$base" "$1") + $(metric "$base2" "$1"))); }
t_wait_until 40 '[ "$(both retried)" -gt 0 ] && [ $((SECONDS - down_at)) -ge 10 ]'
n=$(left)
t_check "$n" -ge 1500 "rows stay in the table while the broker is down: $n"
t_check "$(both failed)" -gt 0 "failed publications counted: $(status "$base" 'j["failed"]') + $(status "$base2" 'j["failed"]')"
t_check "$(both_metric sluice_outbox_failed_total)" -gt 0 "sluice_outbox_failed_total $(metric "$base" sluice_outbox_failed_total) + $(metric "$base2" sluice_outbox_failed_total)"
t_check "$(both retried)" -gt 0 "rows released with backoff for retry: $(status "$base" 'j["retried"]') + $(status "$base2" 'j["retried"]')"
t_check "$(psqlc "SELECT max(attempts) FROM outbox")" -ge 1 "attempts recorded in the table: max $(psqlc "SELECT max(attempts) FROM outbox")"
t_check "$(psqlc "SELECT count(*) FROM outbox WHERE next_attempt_at IS NOT NULL")" -gt 0 "next attempts scheduled: $(psqlc "SELECT count(*) FROM outbox WHERE next_attempt_at IS NOT NULL") rows"
while [ $((SECONDS - down_at)) -lt 20 ]; do sleep 1; done
a1=$(psqlc "SELECT coalesce(max(attempts), 0) FROM outbox")
t_check "$a1" -le 10 "backoff bounds the attempts: at most $a1 per row in 20 s"
t_check "$(both renewed)" -gt 0 "claims renewed: $(status "$base" 'j["renewed"]') + $(status "$base2" 'j["renewed"]')"
t_check "$(both takeovers)" = 0 "no live relay's claim was taken over"
# A stop while acks are outstanding: wait flush_timeout (5 s), hand back
# the rest.  Which relay holds rows at this moment is up to their race.
me1=$(status "$base" 'j["relay"]')
me2=$(status "$base2" 'j["relay"]')
held() { in_leased "l.owner = '$1'"; }
# Rows come and go as deliveries fail and claims are released: pick the
# victim from one reading and stop it right after.
victim=1 vme=$me1 vpid=$d1 vlog=$work/one.log vheld=0
for _ in $(seq 1 150); do
    h2=$(held "$me2")
    if [ "$h2" -gt 0 ]; then victim=2 vme=$me2 vpid=$d2 vlog=$work/two.log vheld=$h2; break; fi
    h1=$(held "$me1")
    if [ "$h1" -gt 0 ]; then victim=1 vme=$me1 vpid=$d1 vlog=$work/one.log vheld=$h1; break; fi
    sleep 0.1
done
t_check "$vheld" -gt 0 "relay $victim holds $vheld rows"
vstops=$(grep -c 'outbox relay stopped' "$vlog")
stop_daemon "$vpid"
t_check $? -eq 0 "SIGTERM on relay $victim with the broker down: exit 0"
# Whether a delivery was still outstanding at that instant is timing; that
# the relay reported its stop is not.
t_check "$(grep -c 'outbox relay stopped' "$vlog")" -gt "$vstops" \
    "relay $victim reported its stop: $(grep 'outbox relay stopped\|within flush_timeout' "$vlog" | tail -2 | sed 's/.*\[outbox\] //' | paste -sd';')"
t_check "$(held "$vme")" = 0 "and handed back every row it held"
t_check "$(code_of -X POST "$base0/kafkaprobe/broker?id=-1&up=1")" = 200 "broker up after $((SECONDS - down_at)) s"
t_wait_until 90 empty
t_check "$(left)" = 0 "drained after the broker came back"
stream_ok "$work/down.expected"
t_end

# --------------------------------------------------------- two relays
t_case "two relays at once share the work with per-aggregate order"
if [ "$victim" = 2 ]; then start2; else start1; fi
t_check $? -eq 0 "relay $victim started again"
p1=$(status "$base" 'j["published"]')
p2=$(status "$base2" 'j["published"]')
write_rows two 8 10000 two
t_wait_until 120 empty
t_check "$(left)" = 0 "the table ends empty"
stream_ok "$work/two.expected"
n1=$(( $(status "$base" 'j["published"]') - p1 ))
n2=$(( $(status "$base2" 'j["published"]') - p2 ))
t_check "$n1" -gt 0 "the first relay published $n1"
t_check "$n2" -gt 0 "the second relay published $n2"
t_check "$(status "$base" 'isinstance(j["given_back_for_order"], int)')" = True \
    "status counts rows given back because the other relay held an earlier row: $(status "$base" 'j["given_back_for_order"]') + $(status "$base2" 'j["given_back_for_order"]')"
stop_daemon "$d2"
t_check $? -eq 0 "second relay drained on SIGTERM"
t_end

# --------------------------------------------------------- parking
t_case "a row the broker refuses is parked after max_attempts, listed, holds its aggregate, released by retry"
stop_daemon "$d1"
start1 "max_attempts = 3
retry_backoff = 50ms
poll_interval = 200ms"
psqlc "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('order', 'bad-a0', 'order.changed', json_build_object('a', 'bad-a0', 's', 1, 'pad', repeat('x', 300000))::jsonb), ('order', 'bad-a0', 'order.changed', '{\"a\": \"bad-a0\", \"s\": 2}')" > /dev/null
t_wait_until 30 '[ "$(psqlc "SELECT count(*) FROM outbox WHERE parked")" = 1 ]'
t_check "$(psqlc "SELECT attempts FROM outbox WHERE parked")" = 3 "parked after 3 attempts"
# A row of another aggregate, inserted now, is published by a read over
# every bucket the relay owns: once it is gone, that read has passed the
# later row too, and left it.
psqlc "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('order', 'fence-a0', 'order.changed', '{\"a\": \"fence-a0\", \"s\": 1}')" > /dev/null
t_wait_until 30 '[ "$(psqlc "SELECT count(*) FROM outbox WHERE aggregate_id = '"'fence-a0'"'")" = 0 ]'
t_check "$(psqlc "SELECT count(*) FROM outbox WHERE aggregate_id = 'fence-a0'")" = 0 "a row of another aggregate inserted after the parking was published"
t_check "$(left)" = 2 "the later row of its aggregate waits behind it (published in the same claim, it would have overtaken)"
t_check "$(status "$base" 'len(j["parked_list"])')" = 1 "GET /outbox/status lists it"
t_check "$(status "$base" 'isinstance(j["parked_list"][0]["last_error"], str) and j["parked_list"][0]["last_error"] != ""')" = True \
    "with its error: $(status "$base" 'j["parked_list"][0]["last_error"]')"
t_wait_until 12 '[ "$(metric "$base" sluice_outbox_parked)" = 1 ]'
t_check "$(metric "$base" sluice_outbox_parked)" = 1 "sluice_outbox_parked 1"
t_check "$(metric "$base" sluice_outbox_parked_total)" = 1 "sluice_outbox_parked_total 1"
psqlc "UPDATE outbox SET payload = '{\"a\": \"bad-a0\", \"s\": 1}' WHERE parked" > /dev/null
a=$(curl -s -X POST "$base/outbox/retry")
t_check "$a" = '{"released":1}' "POST /outbox/retry released it: $a"
t_wait_until 10 empty
t_check "$(left)" = 0 "both rows published after the retry"
printf 'bad-a0 1\nbad-a0 2\n' > "$work/bad.expected"
stream_ok "$work/bad.expected"
t_check "$(code_of -X POST "$base/outbox/retry?id=abc")" = 400 "retry?id=abc is a 400"
t_end

# ------------------------------------------------------ fatal producer
t_case "a fatal error of the idempotent producer: the relay replaces it, nothing parked, nothing lost"
# The broker answers Produce with OUT_OF_ORDER_SEQUENCE_NUMBER: librdkafka
# declares the idempotent producer dead.  (max_attempts is still 3 here.)
t_check "$(code_of -X POST "$base0/kafkaprobe/errors?api=0&err=45&count=3")" = 200 "Produce errors injected"
write_rows fatal 2 1000 fatal 0
t_wait_until 60 empty
t_check "$(left)" = 0 "the table ends empty"
t_check "$(grep -c 'producer failed fatally: replacing it' "$work/one.log")" -ge 1 "the producer was replaced: $(grep -m1 'replacing it' "$work/one.log" | sed 's/.*\[outbox\] //')"
t_check "$(status "$base" 'j["parked"]')" = 1 "no row parked (the one parked before stays the only one)"
stream_ok "$work/fatal.expected"
t_end

# ------------------------------------------------------- late commit
t_case "a transaction that commits after later ids were relayed: its lower id is still relayed"
mkfifo "$work/late.fifo"
psql -X -q "$SL_PG_DSN" < "$work/late.fifo" > /dev/null 2>>"$work/psql.err" &
late_psql=$!
exec 3>"$work/late.fifo"
seq0=$(psqlc "SELECT last_value FROM outbox_id_seq")
echo "BEGIN; INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('order', 'late-a0', 'order.changed', '{\"a\": \"late-a0\", \"s\": 1}');" >&3
t_wait_until 10 '[ "$(psqlc "SELECT last_value FROM outbox_id_seq")" -gt "$seq0" ]'
write_rows after 2 200 after 0
t_wait_until 30 empty
t_check "$(left)" = 0 "200 later rows relayed while the first transaction is open"
echo "COMMIT;" >&3
exec 3>&-
wait "$late_psql"
t_wait_until 15 empty
t_check "$(left)" = 0 "the late row left the table"
printf 'late-a0 1\n' > "$work/late.expected"
stream_ok "$work/late.expected" "$work/after.expected"
late_id=$(awk -F'\t' '$3 == "late-a0" { print $4 }' "$work/all.dump" | sed 's/.*event_id=\([0-9]*\).*/\1/' | head -1)
after_min=$(awk -F'\t' '$3 ~ /^after-/ { print $4 }' "$work/all.dump" | sed 's/.*event_id=\([0-9]*\).*/\1/' | sort -n | head -1)
t_check "${late_id:-0}" -gt 0 -a "${late_id:-0}" -lt "${after_min:-0}" "the late row's id $late_id is below every later row's (from $after_min)"
t_end

# ------------------------------------------------------- trace context
t_case "a row's traceparent column goes out as the message's traceparent header; a row without none"
tp=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
psqlc "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload, traceparent) VALUES ('order', 'tp-a0', 'order.changed', '{\"a\": \"tp-a0\", \"s\": 1}', '$tp'), ('order', 'tp-a1', 'order.changed', '{\"a\": \"tp-a1\", \"s\": 1}', NULL)" > /dev/null
t_wait_until 15 empty
kread
t_check "$(awk -F'\t' '$3 == "tp-a0" { print $4 }' "$work/all.dump" | grep -c "traceparent=$tp")" -ge 1 \
    "the row's context is the header: $(awk -F'\t' '$3 == "tp-a0" { print $4 }' "$work/all.dump" | head -1)"
t_check "$(awk -F'\t' '$3 == "tp-a1" { print $4 }' "$work/all.dump" | grep -c traceparent)" -eq 0 \
    "a row without one has no traceparent header"
t_end

# ------------------------------------------------- Debezium table, mark
t_case "a Debezium-style table (aggregatetype, aggregateid, type) relayed with on_ack = mark"
stop_daemon "$d1"
psqlc "CREATE TABLE dbz_outbox (id bigserial PRIMARY KEY, aggregatetype text NOT NULL, aggregateid text NOT NULL, type text NOT NULL, payload jsonb)" > /dev/null
psqlc "INSERT INTO dbz_outbox (aggregatetype, aggregateid, type, payload) SELECT 'order', 'dbz-a' || (i % 10 * 2), 'order.changed', json_build_object('a', 'dbz-a' || (i % 10 * 2), 's', i / 10 + 1) FROM generate_series(0, 299) i" > /dev/null
python3 -c 'print("\n".join("dbz-a%d %d" % (i % 10 * 2, i // 10 + 1) for i in range(300)))' > "$work/dbz.expected"
start1 "table = dbz_outbox
column_aggregate_type = aggregatetype
column_aggregate_id = aggregateid
column_event_type = type
column_traceparent =
on_ack = mark"
t_check $? -eq 0 "relay started on dbz_outbox (column_traceparent empty: the table has none)"
t_wait_until 30 '[ "$(psqlc "SELECT count(*) FROM dbz_outbox WHERE sent_at IS NULL")" = 0 ]'
t_check "$(psqlc "SELECT count(*) FROM dbz_outbox WHERE sent_at IS NOT NULL AND claimed_by IS NULL")" = 300 "all 300 rows marked sent, none deleted"
t_check "$(psqlc "SELECT count(*) FROM information_schema.columns WHERE table_name = 'dbz_outbox' AND column_name IN ('created_at', 'claimed_by', 'parked')")" = 3 "created_at and the claim columns were added"
t_check "$(psqlc "SELECT count(*) FROM information_schema.columns WHERE table_name = 'dbz_outbox' AND column_name = 'traceparent'")" = 0 "no traceparent column added"
stream_ok "$work/dbz.expected"
psqlc "INSERT INTO dbz_outbox (aggregatetype, aggregateid, type, payload) VALUES ('order', 'dbz-a0', 'order.changed', '{\"a\": \"dbz-a0\", \"s\": 31}')" > /dev/null
echo "dbz-a0 31" >> "$work/dbz.expected"
t_wait_until 10 '[ "$(psqlc "SELECT count(*) FROM dbz_outbox WHERE sent_at IS NULL")" = 0 ]'
stream_ok "$work/dbz.expected"
t_check "$(grep -c $'\tdbz-a0\t' "$work/all.dump")" = 31 "sent rows are not sent again (31 messages for dbz-a0)"
stop_daemon "$d1"
t_check $? -eq 0 "drained on SIGTERM"
start1
t_end

# ------------------------------------------------------ SIGHUP, SIGTERM
t_case "SIGHUP with a changed relay config drains the old relay under load; SIGTERM hands back the rest"
write_rows hup 4 8000 hup &
writer=$!
t_wait_until 30 '[ "$(status "$base" "j[\"claimed\"]")" -gt 0 ]'
# A writer kept open across the reload, so that rows keep coming while the
# old relay drains and its successor starts, however fast the bulk writers
# are: one row now, one once the old relay stopped.
mkfifo "$work/hup.fifo"
psql -X -q -v ON_ERROR_STOP=1 "$SL_PG_DSN" < "$work/hup.fifo" > /dev/null 2>>"$work/psql.err" &
hup_psql=$!
exec 4>"$work/hup.fifo"
hup_row() { # hup_row SEQ: one row of aggregate hupx-w0-a0 (an order), through the open writer
    echo "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('order', 'hupx-w0-a0', 'order.changed', '{\"a\": \"hupx-w0-a0\", \"s\": $1}');" >&4
    echo "hupx-w0-a0 $1" >> "$work/hupx.expected"
}
hup_row 1
old_me=$(status "$base" 'j["relay"]')
write_conf "$work/one.conf" "$port" "batch_size = 300"
stops=$(grep -c 'outbox relay stopped' "$work/one.log")
kill -HUP "$d1"
t_wait_until 30 '[ "$(grep -c "outbox relay stopped" "$work/one.log")" -gt "$stops" ]'
t_check "$(grep -c 'outbox relay stopped' "$work/one.log")" -gt "$stops" "the old relay drained: $(grep 'outbox relay stopped' "$work/one.log" | tail -1 | sed 's/.*stopped: //')"
t_check "$(grep 'outbox relay stopped' "$work/one.log" | tail -1 | sed -n 's/.*stopped: \([0-9]*\) published.*/\1/p')" -gt 0 \
    "the old relay was publishing when SIGHUP came"
t_check "$(grep -c 'changed; draining before its successor starts' "$work/one.log")" -ge 1 "drained before its successor started (exclusive module)"
hup_row 2
t_wait_until 30 '[ "$(status "$base" "j[\"relay\"]")" != "$old_me" ] && [ -n "$(status "$base" "j[\"relay\"]")" ]'
new_me=$(status "$base" 'j["relay"]')
t_check "${new_me:-none}" != "$old_me" "the successor answers as a new relay ($new_me)"
# The marker: a row written once the successor serves, which only it can publish.
hup_row 3
t_wait_until 60 '[ "$(psqlc "SELECT count(*) FROM outbox WHERE aggregate_id = '\''hupx-w0-a0'\''")" = 0 ]'
t_check "$(psqlc "SELECT count(*) FROM outbox WHERE aggregate_id = 'hupx-w0-a0'")" = 0 "the marker row written after the reload left the table"
t_check "$(status "$base" 'j["published"]')" -gt 0 "the new relay publishes ($(status "$base" 'j["published"]'))"
exec 4>&-
wait "$hup_psql"
t_check $? -eq 0 "the open writer committed its 3 rows"
wait "$writer"
t_check $? -eq 0 "writers done"
stop_daemon "$d1"
rc=$?
t_check $rc -eq 0 "SIGTERM: drained and exited 0"
t_check "$(claimed_left)" = 0 "no claim left behind ($(left) rows wait for the next relay)"
start1
t_wait_until 60 empty
t_check "$(left)" = 0 "the next relay drained the table"
stream_ok "$work/hup.expected" "$work/hupx.expected"
stop_daemon "$d1"
t_check $? -eq 0 "SIGTERM on an idle relay: exit 0"
t_check "$(claimed_left)" = 0 "no claim left behind"
t_end

# write_loop TAG: batches of 8 concurrent writers (1500 rows each batch,
# tagged TAG0, TAG1...) until $work/TAG.stop exists.  The stop file is what
# ends it: a loaded machine makes the relays' rounds slow, and the writers
# must outlast them.  The count only keeps a writer orphaned by a dead
# script from writing forever.
write_loop() {
    local i=0
    while [ ! -e "$work/$1.stop" ] && [ $i -lt 1000 ]; do
        write_rows "$1$i" 8 1500 "$1$i" || return 1
        i=$((i + 1))
    done
}

# ------------------------------------------------ relays come and go
t_case "two relays start and stop repeatedly while 8 writers insert: nothing lost, order per aggregate kept"
write_loop churn &
writer=$!
start1
start2
rounds=0 stops_ok=0
# Each round stops one relay (SIGTERM: it drains and hands its buckets
# over) and starts it again, while the other one runs; the writers go on.
while [ $rounds -lt 6 ]; do
    # Rows published since the last restart before the next stop (a
    # restarted relay counts from 0, so the sum is read afresh each round).
    pb=$(both published)
    t_wait_until 30 '[ "$(both published)" -gt "$pb" ]'
    if [ $((rounds % 2)) = 0 ]; then
        stop_daemon "$d1" && stops_ok=$((stops_ok + 1))
        start1
    else
        stop_daemon "$d2" && stops_ok=$((stops_ok + 1))
        start2
    fi
    rounds=$((rounds + 1))
done
t_check "$(kill -0 "$writer" 2>/dev/null && echo writing)" = writing "the writers were still writing after $rounds stops and restarts"
touch "$work/churn.stop"
wait "$writer"
t_check $? -eq 0 "writers done: $(cat "$work"/churn*.expected | wc -l) rows in $(ls "$work"/churn*.expected | wc -l) batches"
t_check "$stops_ok" = "$rounds" "every stop drained and exited 0"
t_wait_until 120 empty
t_check "$(left)" = 0 "the table ends empty"
stream_ok "$work"/churn*.expected
t_end

# --------------------------------------------------------- a stalled relay
buckets_of() { metric "$1" sluice_outbox_buckets; }
t_case "a relay that stalls (SIGSTOP) loses its buckets to the other; resumed, it publishes nothing out of order"
t_wait_until 20 '[ "$(buckets_of "$base")" -gt 0 ] && [ "$(buckets_of "$base2")" -gt 0 ]'
b1=$(buckets_of "$base")
t_check "$b1" -gt 0 -a "$(buckets_of "$base2")" -gt 0 "both relays own buckets: $b1 and $(buckets_of "$base2")"
take0=$(status "$base2" 'j["takeovers"]')
write_loop stall &
writer=$!
t_wait_until 30 '[ "$(status "$base" "j[\"published\"]")" -gt 0 ]'
kill -STOP "$d1"
stopped_at=$SECONDS
# lease = 4s: the other relay takes the stalled one's buckets after it.
t_wait_until 30 '[ "$(buckets_of "$base2")" = 64 ]'
t_check "$(buckets_of "$base2")" = 64 "the other relay owns all 64 buckets $((SECONDS - stopped_at)) s after the stall"
t_check "$(( $(status "$base2" 'j["takeovers"]') - take0 ))" -gt 0 "taken over from the stalled relay: $(( $(status "$base2" 'j["takeovers"]') - take0 )) buckets"
t_check "$(psqlc "SELECT count(*) FROM outbox_leases WHERE owner = '$(status "$base2" 'j["relay"]')'")" = 64 "the lease table agrees"
p2=$(status "$base2" 'j["published"]')
t_wait_until 20 '[ "$(status "$base2" "j[\"published\"]")" -gt "$p2" ]'
t_check "$(status "$base2" 'j["published"]')" -gt "$p2" "the other relay publishes meanwhile"
kill -CONT "$d1"
t_check "$(code_of "$base/healthz")" = 200 "the stalled relay runs again"
# The writers go on until the resumed relay has found out what it lost.
t_wait_until 30 'grep -q "were taken over by another relay" "$work/one.log"'
touch "$work/stall.stop"
wait "$writer"
t_check $? -eq 0 "writers done: $(cat "$work"/stall*.expected | wc -l) rows"
t_wait_until 120 empty
t_check "$(left)" = 0 "the table ends empty"
stream_ok "$work"/stall*.expected
t_check "$(grep -c 'were taken over by another relay' "$work/one.log")" -ge 1 "the resumed relay saw it had lost them: $(grep -m1 'taken over by another' "$work/one.log" | sed 's/.*\[outbox\] //')"
t_wait_until 20 '[ "$(buckets_of "$base")" -gt 0 ]'
t_check "$(buckets_of "$base")" -gt 0 "and got a share back: $(buckets_of "$base") + $(buckets_of "$base2")"
stop_daemon "$d1"
t_check $? -eq 0 "SIGTERM: first relay drained"
stop_daemon "$d2"
t_check $? -eq 0 "SIGTERM: second relay drained"
t_check "$(claimed_left)" = 0 "no bucket left leased"
t_end

t_case "ASan and UBSan found nothing"
t_check "$(grep -c 'ERROR: AddressSanitizer\|runtime error:\|ERROR: LeakSanitizer' "$work"/one.log "$work"/two.log | awk -F: '{s += $2} END {print s}')" = 0 "no sanitizer report in the relays' logs"
t_end

t_exit
