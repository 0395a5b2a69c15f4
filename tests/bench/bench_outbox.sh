#!/usr/bin/env bash
# tests/bench/bench_outbox.sh - the outbox relay draining N (1M) pre-filled
# rows to Kafka, acknowledged and deleted, beside PostgreSQL draining the
# same rows by itself, in the same run on the same PostgreSQL:
#
#   ceiling: the plain drain, DELETE FROM outbox WHERE id IN (SELECT id FROM
#       outbox ORDER BY id LIMIT B FOR UPDATE SKIP LOCKED) RETURNING *, one
#       transaction per batch, every row returned to the client.  Run at its
#       best: pgbench -M prepared, tuned once per run over (drainers, B) in
#       TUNE (default "1:1000 2:1000 2:5000": one drainer, or two together)
#       and the fastest kept; PostgreSQL alone, no Kafka at all.
#   relay SQL: the relay's own statements (its bucket read, its marker
#       NOTIFY, then the delete of what was read) in a loop from one psql
#       session, no Kafka; one
#       cursor for all buckets, and the rows are summed on the server
#       (psql's \gset), not sent.
#   relay: sluiced draining to the embedded broker, timed from its start,
#       with batches of BATCH (5000) rows.
#
# The ceiling and the relay run alternately ROUNDS (3) times, each on a
# fresh fill of the same N rows; medians are printed and the ratio relay /
# ceiling (target >= 0.5).  Then two relays drain N rows together, and the
# commit-to-ack latency: pgbench commits one row per transaction at RATE
# (1000) rows/s for LAT_SECONDS (20); p50/p99 are read off the relay's
# sluice_outbox_lag_seconds histogram (created_at, the inserting
# transaction's start, to the broker's ack), interpolated within buckets
# like Prometheus' histogram_quantile.
#
# A reference run that does not empty the table fails the benchmark (exit
# 1): a figure without its reference means nothing.  The machine's load
# average is printed with the figures.
#
# Rows: aggregate_type 'segment', AGGS (100000) users as aggregate ids,
# payloads shaped like the segments module's events (about 110 bytes).
# Use a plain (non-sanitizer) build: SL_BUILD=build bash tests/bench/bench_outbox.sh
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
SL_BUILD=$(cd "${SL_BUILD:-$top/build}" && pwd)
. "$top/tests/lib.sh"
. "$top/tests/harness/services.sh"
. "$top/tests/bench/result.sh"
N=${N:-1000000}
AGGS=${AGGS:-100000}
# The relay tuned like the ceiling: batches (batch_size, ack_batch) of 2000
# and 5000 tried on this 2-core kind, 5000 the faster (about 0.44 and 0.52
# of the ceiling); 1000 is the module's default, for latency.
BATCH=${BATCH:-5000}
ROUNDS=${ROUNDS:-3}
TUNE=${TUNE:-1:1000 2:1000 2:5000}
RATE=${RATE:-1000}
LAT_SECONDS=${LAT_SECONDS:-20}
PARTITIONS=${PARTITIONS:-64}

[ -x "$SLUICED" ] || { echo "build first: mkdir build && cd build && ../configure && make -j2" >&2; exit 1; }
[ -f "$SL_BUILD/_modules/outbox.so" ] || { echo "$SL_BUILD/_modules/outbox.so missing: make" >&2; exit 1; }
if grep -q -- '-fsanitize' "$SL_BUILD/config.log" 2>/dev/null && grep -q 'enable_sanitizers=yes\|--enable-sanitizers' "$SL_BUILD/config.log"; then
    echo "warning: $SL_BUILD looks like a sanitizer build; figures will be low" >&2
fi
pgbench=$(ls -d /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -n 1)
[ -x "$pgbench" ] || { echo "pgbench not found (postgresql package)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.3
    [ -n "${SL_KEEP:-}" ] && cp "$SL_SVC_ROOT/postgres/server.log" "$work/" 2>/dev/null
    sl_svc_stop_all
    [ -n "${SL_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

sl_svc_start postgres >/dev/null || { echo "postgres did not start" >&2; exit 1; }
psqlc() { psql -X -At "$SL_PG_DSN" -c "$1"; }
# More room than the harness default for a 1M-row table that is rewritten.
psqlc "ALTER SYSTEM SET max_wal_size = '2GB'" >/dev/null
[ -n "${PG_SLOW_MS:-}" ] && psqlc "ALTER SYSTEM SET log_min_duration_statement = ${PG_SLOW_MS}" >/dev/null
psqlc "SELECT pg_reload_conf()" >/dev/null

mkdir -p "$work/mods"
cp "$SL_BUILD/_modules/outbox.so" "$SL_BUILD/_modules/metrics.so" "$work/mods/"
port0=$(t_free_port)
port=$(t_free_port)
base=http://127.0.0.1:$port
cat > "$work/broker.conf" <<CONF
[core]
listen = 127.0.0.1:$port0
modules_dir = mods
log_level = warn

[kafka]
brokers = embedded
embedded_topics = segment_events:$PARTITIONS
bootstrap_file = $work/bootstrap
CONF
(cd "$work" && exec "$SLUICED" -c broker.conf 2>"$work/broker.log") &
broker_pid=$!
pids+=($!)
t_wait_for 20 test -s "$work/bootstrap" || { echo "broker did not start" >&2; cat "$work/broker.log" >&2; exit 1; }
broker=$(cat "$work/bootstrap")

relay_conf() { # the relay daemon's config
    cat > "$work/relay.conf" <<CONF
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = warn
drain_timeout = 30s

[postgres]
dsn = $SL_PG_DSN
pool_size = 4

[kafka]
brokers = $broker
rdkafka.linger.ms = 5

[module metrics]

[module outbox]
topic = segment_events
batch_size = $BATCH
max_inflight = $((BATCH * 8))
ack_batch = $BATCH
CONF
    sed "s/^listen = 127.0.0.1:$port\$/listen = 127.0.0.1:$port2/" "$work/relay.conf" > "$work/relay2.conf"
}
port2=$(t_free_port)
base2=http://127.0.0.1:$port2
relay="" relay2=""
relay2_start() {
    (cd "$work" && exec "$SLUICED" -c relay2.conf 2>>"$work/relay2.log") &
    relay2=$!
    pids+=("$relay2")
    t_wait_until 30 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base2/readyz")" = 200 ]'
}
relay2_stop() { kill -TERM "$relay2" 2>/dev/null; wait "$relay2" 2>/dev/null; }
relay_start() {
    relay_conf
    (cd "$work" && exec "$SLUICED" -c relay.conf 2>>"$work/relay.log") &
    relay=$!
    pids+=("$relay")
    t_wait_until 30 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/readyz")" = 200 ]'
}
relay_stop() { kill -TERM "$relay" 2>/dev/null; wait "$relay" 2>/dev/null; }
# Polled every 0.1 s while a drain is timed: a counter off /metrics, so
# that the polling costs neither a Python start nor /outbox/status's
# queries of the table.
published() {
    curl -s "${1:-$base}/metrics" | awk '/^sluice_outbox_published_total/ { n += $2 } END { printf "%d\n", n }'
}

# The relay creates the table (its migration), then is stopped for the fill.
relay_start || { echo "relay did not start" >&2; cat "$work/relay.log" >&2; exit 1; }
relay_stop

fill() { # N rows of segment events, ids round-robin over AGGS users
    psqlc "TRUNCATE outbox" >/dev/null
    psqlc "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
           SELECT 'segment', (i % $AGGS)::text, 'segment_added',
                  json_build_object('user_id', i % $AGGS, 'slug', 'AVITO_DISCOUNT_' || (i % 50),
                                    'operation', 'I', 'ts', '2026-11-30T14:00:00.123Z')::jsonb
           FROM generate_series(1, $N) i" >/dev/null
    psqlc "VACUUM ANALYZE outbox" >/dev/null
    [ "$(psqlc "SELECT count(*) FROM outbox")" = "$N" ] || fail "the fill did not make $N rows"
}
fail() { echo "bench_outbox: $*" >&2; exit 1; }
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

pgbench_drain() { # pgbench_drain CLIENTS BATCH: the plain drain of the filled table; its rate
    local c=$1 b=$2 t0 t1 left
    echo "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT $b FOR UPDATE SKIP LOCKED) RETURNING *;" > "$work/drain.sql"
    t0=$(now)
    "$pgbench" -n -M prepared -c "$c" -j "$c" -t $((N / b / c + 2)) -f "$work/drain.sql" "$SL_PG_DSN" \
        > "$work/pgbench-drain.out" 2>&1 || { cat "$work/pgbench-drain.out" >&2; fail "the plain drain (pgbench) failed"; }
    t1=$(now)
    left=$(psqlc "SELECT count(*) FROM outbox")
    [ "$left" = 0 ] || fail "the plain drain left $left rows"
    rate "$N" "$t0" "$t1"
}

relay_drain() { # the relay from its start until it published N; its rate
    local t0 t1
    t0=$(now)
    relay_start || { cat "$work/relay.log" >&2; fail "relay did not start"; }
    t_wait_until 1200 '[ "$(published)" -ge "$N" ]' || fail "the relay published $(published) of $N"
    t1=$(now)
    relay_stop
    [ "$(psqlc "SELECT count(*) FROM outbox")" = 0 ] || fail "the relay left rows in the table"
    rate "$N" "$t0" "$t1"
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
# ------------------------------------------------ the ceiling, tuned
best=0 best_c=1 best_b=1000 tune_report=""
for cfg in $TUNE; do
    c=${cfg%%:*} b=${cfg##*:}
    echo "filling $N rows (tuning the plain drain: $c drainers, batches of $b)..." >&2
    fill
    r=$(pgbench_drain "$c" "$b") || exit 1
    echo "  plain drain, $c drainers x $b: $r rows/s" >&2
    tune_report+=$(printf '    %-46s %10s rows/s' "$c drainer(s), batches of $b" "$r")$'\n'
    if [ "$r" -gt "$best" ]; then best=$r best_c=$c best_b=$b; fi
done

# ------------------------------------------------ the relay's own SQL
fill
buckets=$(python3 -c "print('{' + ','.join(str(i) for i in range(64)) + '}')")
per=$(( (BATCH + 63) / 64 ))
cat > "$work/own.sql" <<SQL
WITH r AS (SELECT b.bucket, x.id, x.payload::text AS p
  FROM unnest('$buckets'::int[], array_fill(:c::bigint, ARRAY[64])) AS b(bucket, after)
  CROSS JOIN LATERAL (SELECT o.id, o.aggregate_type, o.aggregate_id, o.payload FROM outbox o
   WHERE ((hashtextextended(o.aggregate_id, 0) & 63)::int) = b.bucket AND o.id > b.after AND o.sent_at IS NULL
   ORDER BY o.id LIMIT $per) x),
 per AS (SELECT bucket, count(*) AS n, max(id) AS m FROM r GROUP BY bucket)
SELECT (SELECT coalesce(array_agg(id)::text, '{}') FROM r) AS ids,
       (SELECT sum(length(p)) FROM r) AS bytes,
       (SELECT coalesce(min(m), :c) FROM per WHERE n >= $per) AS c \gset
SELECT pg_notify('outbox', 'm bench');
DELETE FROM outbox WHERE id = ANY(:'ids'::bigint[]);
SQL
{
    echo '\set ON_ERROR_STOP 1'
    echo '\set c 0'
    # One cursor for all buckets: the least advanced bucket that filled its
    # share (what was read before it is deleted).
    for _ in $(seq 1 $((N / BATCH * 2 + 20))); do cat "$work/own.sql"; done
} > "$work/own-loop.sql"
t0=$(now)
psql -X -q "$SL_PG_DSN" -f "$work/own-loop.sql" >/dev/null || fail "the relay's SQL loop failed"
t1=$(now)
left=$(psqlc "SELECT count(*) FROM outbox")
own_rate=$(rate $((N - left)) "$t0" "$t1")
echo "relay's own SQL: $((N - left)) rows read and deleted: $own_rate rows/s" >&2

# ------------------------------------------------ alternately: ceiling, relay
ceil_runs=() relay_runs=()
for round in $(seq 1 "$ROUNDS"); do
    fill
    r=$(pgbench_drain "$best_c" "$best_b") || exit 1
    ceil_runs+=("$r")
    fill
    r=$(relay_drain) || exit 1
    relay_runs+=("$r")
    echo "round $round: ceiling ${ceil_runs[-1]} rows/s, relay ${relay_runs[-1]} rows/s ($(cut -d' ' -f1 /proc/loadavg))" >&2
done
ceiling=$(median "${ceil_runs[@]}")
relay_rate=$(median "${relay_runs[@]}")

# ------------------------------------------------ two relays together
fill
t0=$(now)
relay_start || fail "relay did not start"
relay2_start || fail "second relay did not start"
t_wait_until 1200 '[ $(( $(published) + $(published "$base2") )) -ge "$N" ]' ||
    fail "two relays published $(( $(published) + $(published "$base2") )) of $N"
t1=$(now)
two_rate=$(rate "$N" "$t0" "$t1")
echo "two relays: $(published) + $(published "$base2") rows: $two_rate rows/s" >&2
relay2_stop
relay_stop

# ------------------------------------------------ latency at RATE rows/s
relay_start || fail "relay did not start"
hist() { curl -s "$base/metrics" | grep '^sluice_outbox_lag_seconds_bucket' | sed 's/.*le="\([^"]*\)"} \(.*\)/\1 \2/'; }
psqlc "VACUUM outbox" >/dev/null
hist > "$work/h0"
cat > "$work/one.sql" <<SQL
INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
VALUES ('segment', (random() * $AGGS)::int::text, 'segment_added',
        '{"user_id": 1, "slug": "AVITO_DISCOUNT_30", "operation": "I", "ts": "2026-11-30T14:00:00.123Z"}');
SQL
"$pgbench" -n -c 4 -j 2 -R "$RATE" -T "$LAT_SECONDS" -f "$work/one.sql" "$SL_PG_DSN" > "$work/pgbench.out" 2>&1 ||
    fail "pgbench at $RATE rows/s failed"
t_wait_until 30 '[ "$(psqlc "SELECT count(*) FROM outbox")" = 0 ]'
sleep 1
hist > "$work/h1"
lat=$(python3 - "$work/h0" "$work/h1" <<'EOF'
import sys
def load(f):
    return [(float("inf") if b == "+Inf" else float(b), float(c)) for b, c in (l.split() for l in open(f))]
h0, h1 = load(sys.argv[1]), load(sys.argv[2])
d = [(b, c1 - c0) for (b, c0), (_, c1) in zip(h0, h1)]
total = d[-1][1]
def q(p):
    rank, prev_b, prev_c = p * total, 0.0, 0.0
    for b, c in d:
        if c >= rank:
            if b == float("inf"):
                return prev_b
            return prev_b + (b - prev_b) * (rank - prev_c) / max(c - prev_c, 1e-9)
        prev_b, prev_c = b, c
print("%d %.1f %.1f" % (total, q(0.5) * 1000, q(0.99) * 1000))
EOF
)
read -r lat_n p50 p99 <<< "$lat"
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.out" | head -1)
relay_stop

echo
echo "outbox relay, $N rows of ~110 B, $AGGS aggregates, relay batches of $BATCH"
echo "load average $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "  plain drain tuning (pgbench -M prepared, PostgreSQL alone, one run each):"
printf '%s' "$tune_report"
printf '  %-50s %10s rows/s   (median of %s: %s)\n' "ceiling: plain drain, $best_c drainer(s) x $best_b" "$ceiling" "$ROUNDS" "${ceil_runs[*]}"
printf '  %-50s %10s rows/s\n' "the relay's own SQL (read + delete), no Kafka" "$own_rate"
printf '  %-50s %10s rows/s   (median of %s: %s)   ratio vs the ceiling: %s\n' "relay: drained to Kafka, acked, deleted" "$relay_rate" \
    "$ROUNDS" "${relay_runs[*]}" "$(awk -v v="$relay_rate" -v r="$ceiling" 'BEGIN { printf "%.2f", v / r }')"
printf '  %-50s %10s rows/s\n' "two relays on the same table" "$two_rate"
printf '  %-50s p50 %s ms, p99 %s ms over %s rows (pgbench at %s tps)\n' "commit-to-ack at $RATE rows/s" "$p50" "$p99" "$lat_n" "${tps:-?}"
bench_result drain "$relay_rate" rows/s "$ceiling" plain_drain '>=0.5'
bench_result drain_two_relays "$two_rate" rows/s "$ceiling" plain_drain -
bench_result relay_sql "$own_rate" rows/s "$ceiling" plain_drain -
bench_result latency_p50 "$p50" ms - - -
bench_result latency_p99 "$p99" ms - - -
