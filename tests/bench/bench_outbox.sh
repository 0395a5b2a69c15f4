#!/usr/bin/env bash
# tests/bench/bench_outbox.sh - the outbox relay draining N (1M) pre-filled
# rows to Kafka, acknowledged and deleted, beside two references measured
# in the same run on the same PostgreSQL and embedded broker:
#
#   (a) database ceiling: the relay's own claim-and-delete statements
#       (CLAIM, UNBLOCK, COMMIT, DELETE; batches of BATCH rows, as sql.c
#       writes them) in a loop from one psql session, no Kafka at all;
#   (b) kcat -P producing the same N keys and payloads into the embedded
#       broker (idempotent, linger.ms=5, like the relay's producer).
#
# The relay's drain rate is compared with the lower of the two (target
# >= 0.7).  Then commit-to-ack latency: pgbench commits one row per
# transaction at RATE (1000) rows/s for LAT_SECONDS (20); p50/p99 are read
# off the relay's sluice_outbox_lag_seconds histogram (created_at, the
# inserting transaction's start, to the broker's ack), interpolated within
# buckets like Prometheus' histogram_quantile.
#
# The table is vacuumed after the drain, before the latency run.
#
# Rows: aggregate_type 'segment', AGGS (100000) users as aggregate ids,
# payloads shaped like the segments module's events (about 110 bytes).
# Use a plain (non-sanitizer) build: SL_BUILD=build bash tests/bench/bench_outbox.sh
# A benchmark, not a test: it prints figures and never fails on one.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
SL_BUILD=$(cd "${SL_BUILD:-$top/build}" && pwd)
. "$top/tests/lib.sh"
. "$top/tests/harness/services.sh"
if [ -f "$top/tests/bench/result.sh" ]; then
    . "$top/tests/bench/result.sh"
else
    bench_result() { # NAME VALUE UNIT REFERENCE AGAINST TARGET (tests/bench/result.sh's line)
        local ratio=-
        [ "$4" != - ] && ratio=$(awk -v v="$2" -v r="$4" 'BEGIN { if (r + 0 == 0) print "-"; else printf "%.2f", v / r }')
        printf 'RESULT bench=bench_outbox name=%s value=%s unit=%s reference=%s against=%s ratio=%s target=%s\n' \
            "$1" "$2" "$3" "$4" "$5" "$ratio" "$6"
    }
fi
N=${N:-1000000}
AGGS=${AGGS:-100000}
BATCH=${BATCH:-1000}
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
embedded_topics = segment_events:$PARTITIONS, bench_kcat:$PARTITIONS
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
}
relay=""
relay_start() {
    relay_conf
    (cd "$work" && exec "$SLUICED" -c relay.conf 2>>"$work/relay.log") &
    relay=$!
    pids+=("$relay")
    t_wait_until 30 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/readyz")" = 200 ]'
}
relay_stop() { kill -TERM "$relay" 2>/dev/null; wait "$relay" 2>/dev/null; }
published() { curl -s "$base/outbox/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["published"])'; }

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
}
now() { date +%s.%N; }
hw() { # hw TOPIC: messages in it, the partitions' high watermarks summed
    kcat -Q -b "$broker" $(for p in $(seq 0 $((PARTITIONS - 1))); do printf ' -t %s:%d:-1' "$1" "$p"; done) 2>/dev/null |
        awk '{ s += $NF } END { print s + 0 }'
}
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }

# ------------------------------------------------ (a) database ceiling
echo "filling $N rows..." >&2
fill
# The relay's statements (modules/outbox/sql.c) with literal parameters:
# relay 'bench', lease 60 s, limit BATCH.
cat > "$work/batch.sql" <<SQL
BEGIN;
WITH c AS (
 UPDATE "outbox" o SET claimed_by = 'bench', claimed_at = now()
 FROM (SELECT c.id AS cid, c.claimed_by AS prev FROM "outbox" c
  WHERE c.sent_at IS NULL AND NOT c.parked
   AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= now())
   AND (c.claimed_by IS NULL OR (c.claimed_by <> 'bench' AND c.claimed_at < now() - 60 * interval '1 second'))
   AND NOT EXISTS (SELECT 1 FROM "outbox" e WHERE e.aggregate_type = c.aggregate_type AND e.aggregate_id = c.aggregate_id
     AND e.id < c.id AND e.sent_at IS NULL
     AND (e.parked OR e.next_attempt_at > now()
          OR (e.claimed_by <> 'bench' AND e.claimed_at >= now() - 60 * interval '1 second')))
  ORDER BY c.id LIMIT $BATCH FOR UPDATE OF c SKIP LOCKED) s
 WHERE o.id = s.cid
 RETURNING o.id, s.prev IS NOT NULL AND s.prev <> 'bench', o.aggregate_type, o.aggregate_id, o.event_type,
  o.payload::text, extract(epoch FROM o.created_at)::float8)
SELECT coalesce(array_agg(id)::text, '{}') AS ids, count(*) AS n, sum(length(payload)) AS bytes FROM c \gset
UPDATE "outbox" o SET claimed_by = NULL, claimed_at = NULL
 WHERE o.id = ANY(:'ids'::bigint[]) AND o.claimed_by = 'bench'
  AND EXISTS (SELECT 1 FROM "outbox" e WHERE e.aggregate_type = o.aggregate_type AND e.aggregate_id = o.aggregate_id
   AND e.id < o.id AND e.sent_at IS NULL AND e.claimed_by IS DISTINCT FROM 'bench');
COMMIT;
DELETE FROM "outbox" WHERE id = ANY(:'ids'::bigint[]) AND claimed_by = 'bench';
SQL
{
    echo '\set ON_ERROR_STOP 1'
    for _ in $(seq 1 $((N / BATCH + 1))); do cat "$work/batch.sql"; done
} > "$work/ceiling.sql"
t0=$(now)
psql -X -q "$SL_PG_DSN" -f "$work/ceiling.sql" >/dev/null || echo "the ceiling loop failed" >&2
t1=$(now)
left=$(psqlc "SELECT count(*) FROM outbox")
db_rate=$(rate $((N - left)) "$t0" "$t1")
echo "(a) database ceiling: $((N - left)) rows claimed and deleted in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s: $db_rate rows/s" >&2

# ------------------------------------------------ (b) kcat -P
fill
psql -X -At -F $'\t' "$SL_PG_DSN" -c "SELECT aggregate_id, payload::text FROM outbox ORDER BY id" > "$work/payloads.tsv"
t0=$(now)
# From stdin: one message per line (a file argument would be one message).
kcat -P -b "$broker" -t bench_kcat -K $'\t' -X linger.ms=5 -X enable.idempotence=true \
    < "$work/payloads.tsv" 2>"$work/kcat.err"
t1=$(now)
kcat_n=$(hw bench_kcat)
[ "$kcat_n" = "$N" ] || echo "kcat -P: the topic holds $kcat_n messages, not $N: $(head -3 "$work/kcat.err")" >&2
kcat_rate=$(rate "$kcat_n" "$t0" "$t1")
echo "(b) kcat -P: $N messages in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s: $kcat_rate msgs/s" >&2

# ------------------------------------------------ the relay
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null; }
# Every postgres process's CPU, exited backends included (cutime/cstime of
# the postmaster's children are counted once they are reaped).
pg_cpu() {
    local pm
    pm=$(head -1 "$SL_SVC_ROOT/postgres/data/postmaster.pid" 2>/dev/null)
    { ps -o pid= --ppid "$pm"; echo "$pm"; } | while read -r p; do
        awk '{ print $14 + $15 + $16 + $17 }' "/proc/$p/stat" 2>/dev/null
    done | awk -v hz="$(getconf CLK_TCK)" '{ s += $1 } END { printf "%.1f", s / hz }'
}
broker_cpu0=$(cpu "$broker_pid")
pg_cpu0=$(pg_cpu)
t0=$(now)
relay_start || { echo "relay did not start" >&2; cat "$work/relay.log" >&2; exit 1; }
t_wait_until 1200 '[ "$(published)" -ge "$N" ]'
t1=$(now)
sleep 1 # the last delete batch
left=$(psqlc "SELECT count(*) FROM outbox")
got=$(published)
relay_rate=$(rate "$got" "$t0" "$t1")
# Where the CPU went during the drain (2 cores shared by all of it).
echo "CPU seconds during the drain: relay $(cpu "$relay"), broker $(awk -v a="$broker_cpu0" -v b="$(cpu "$broker_pid")" 'BEGIN { printf "%.1f", b - a }'), postgres $(awk -v a="$pg_cpu0" -v b="$(pg_cpu)" 'BEGIN { printf "%.1f", b - a }') (wall $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}'))" >&2
echo "relay: $got rows published, acknowledged and deleted in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s (start included): $relay_rate rows/s; $left left in the table" >&2
echo "segment_events holds $(hw segment_events) messages (high watermarks summed)" >&2

# ------------------------------------------------ latency at RATE rows/s
hist() { curl -s "$base/metrics" | grep '^sluice_outbox_lag_seconds_bucket' | sed 's/.*le="\([^"]*\)"} \(.*\)/\1 \2/'; }
# Steady state: the drain left a million dead rows behind, and until they
# are vacuumed every claim walks their index entries (autovacuum would get
# there; this does not wait for it).
psqlc "VACUUM outbox" >/dev/null
hist > "$work/h0"
cat > "$work/one.sql" <<SQL
INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
VALUES ('segment', (random() * $AGGS)::int::text, 'segment_added',
        '{"user_id": 1, "slug": "AVITO_DISCOUNT_30", "operation": "I", "ts": "2026-11-30T14:00:00.123Z"}');
SQL
"$pgbench" -n -c 4 -j 2 -R "$RATE" -T "$LAT_SECONDS" -f "$work/one.sql" "$SL_PG_DSN" > "$work/pgbench.out" 2>&1
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

lower=$db_rate
against=database_ceiling
if [ "$kcat_rate" -lt "$db_rate" ]; then lower=$kcat_rate; against=kcat_-P; fi
echo
echo "outbox relay, $N rows of ~110 B, $AGGS aggregates, batches of $BATCH"
printf '  %-44s %12s rows/s\n' "(a) claim-and-delete SQL, no Kafka" "$db_rate"
printf '  %-44s %12s msgs/s\n' "(b) kcat -P, same keys and payloads" "$kcat_rate"
printf '  %-44s %12s rows/s   ratio vs the lower (%s): %s\n' "relay: drained to Kafka, acked, deleted" "$relay_rate" \
    "$against" "$(awk -v v="$relay_rate" -v r="$lower" 'BEGIN { printf "%.2f", v / r }')"
printf '  %-44s p50 %s ms, p99 %s ms over %s rows (pgbench at %s tps)\n' "commit-to-ack at $RATE rows/s" "$p50" "$p99" "$lat_n" "${tps:-?}"
bench_result drain "$relay_rate" rows/s "$lower" "$against" '>=0.7'
bench_result db_ceiling "$db_rate" rows/s - - -
bench_result kcat_produce "$kcat_rate" msgs/s - - -
bench_result latency_p50 "$p50" ms - - -
bench_result latency_p99 "$p99" ms - - -
