#!/usr/bin/env bash
# tests/bench/bench_clickhouse.sh - bulk inserts through the ClickHouse
# connector beside curl sending the same bytes, into the same table of the
# same server, in the same run.  A benchmark, not a test: it prints a table
# and never fails on a figure (only on wrong row counts).
#
#   connector: POST /ch/generate?table=bench&rows=N&batch=BATCH&parallel=PAR
#              on a running sluiced with the chprobe module; the rows are
#              built first, the time covers only the inserts (first request
#              sent to last answer).  rows/s = N / that time.
#   reference: curl --data-binary @part '<url>/?query=INSERT INTO bench
#              FORMAT JSONEachRow', the parts holding exactly the rows the
#              connector sends (GET /ch/rows serves them) cut into the same
#              batches of BATCH rows, PAR curls at a time (xargs -P PAR);
#              rows/s = N / the time from the first curl's start to the
#              last one's exit (one curl: its time_total).
# Runs alternate, RUNS times each, after a warm-up of both; the table shows
# every run and the medians.  Target: ratio >= 0.9.
#
# N=1000000 BATCH=1000000 PAR=1 RUNS=5 by default: one request of the same
# payload on each side.  Smaller BATCH with PAR > 1 shows the connector's
# batching with several keep-alive connections.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
SL_BUILD=${SL_BUILD:-$top}
. "$top/tests/lib.sh"
. "$top/tests/bench/result.sh"
. "$top/tests/harness/services.sh"
N=${N:-1000000}
BATCH=${BATCH:-$N}
PAR=${PAR:-1}
RUNS=${RUNS:-5}

[ -x "$SLUICED" ] || { echo "build first: (cd $top && autoreconf -fi && ./configure && make)" >&2; exit 1; }
probe=$SL_BUILD/tests/modules/chprobe/.libs/chprobe.so
[ -f "$probe" ] || { echo "$probe missing: make" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
daemon=""
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null || true
    sl_svc_stop_all
    rm -rf "$work"
}
trap cleanup EXIT

sl_svc_start clickhouse >/dev/null || { echo "clickhouse did not start" >&2; exit 1; }
chc() { clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" "$@"; }
chc --query "CREATE TABLE bench (id UInt64, user_id String, page_id String, event_type String, duration_s Float64) ENGINE = MergeTree ORDER BY id"
# Background merges of earlier runs' parts would steal CPU from later runs
# at random; with them stopped every run meets the same server.
chc --query "SYSTEM STOP MERGES bench"

mkdir -p "$work/mods"
cp "$probe" "$work/mods/"
port=$(t_free_port)
base=http://127.0.0.1:$port
cat > "$work/sluice.conf" <<EOF
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = warn

[clickhouse]
url = $SL_CH_URL
timeout = 600s
max_connections = $PAR

[module chprobe]
EOF
"$SLUICED" -c "$work/sluice.conf" 2>"$work/sluiced.log" &
daemon=$!
t_wait_http "$base/healthz" 10 && t_wait_until 10 '[ "$(curl -s "$base/ch/status")" = '"'"'{"ready":true}'"'"' ]' ||
    { echo "sluiced did not get ready:" >&2; cat "$work/sluiced.log" >&2; exit 1; }

curl -s -o "$work/rows.ndjson" "$base/ch/rows?rows=$N"
[ "$(wc -l < "$work/rows.ndjson")" = "$N" ] || { echo "/ch/rows did not serve $N rows" >&2; exit 1; }
bytes=$(stat -c %s "$work/rows.ndjson")
mkdir -p "$work/parts"
split -l "$BATCH" -d -a 6 "$work/rows.ndjson" "$work/parts/p"
insert_url="$SL_CH_URL/?query=INSERT%20INTO%20bench%20FORMAT%20JSONEachRow"

count() { chc --query "SELECT count() FROM bench"; }
echo 0 > "$work/expect" # runs happen in $( ) subshells: the tally lives in a file
check_count() { # the table grew by exactly N
    local expect got
    expect=$(($(cat "$work/expect") + N))
    echo "$expect" > "$work/expect"
    got=$(count)
    [ "$got" = "$expect" ] || { echo "bench holds $got rows, expected $expect" >&2; exit 1; }
}
connector_run() { # prints rows/s
    curl -s --max-time 900 -X POST "$base/ch/generate?table=bench&rows=$N&batch=$BATCH&parallel=$PAR" |
        python3 -c 'import json,sys; j=json.load(sys.stdin); assert j.get("rows") == int(sys.argv[1]), j; print(int(j["rows"] / j["seconds"]))' "$N"
    check_count
}
reference_run() { # prints rows/s
    local out t1 t2
    if [ "$PAR" = 1 ] && [ "$BATCH" = "$N" ]; then
        out=$(curl -s -o "$work/ref.out" -w '%{http_code} %{time_total}' --max-time 900 \
            -H 'Expect:' --data-binary @"$work/rows.ndjson" "$insert_url")
        [ "${out% *}" = 200 ] || { echo "curl insert failed: $out $(head -c 300 "$work/ref.out")" >&2; exit 1; }
        python3 -c "print(int($N / ${out#* }))"
    else
        t1=$(date +%s.%N)
        (cd "$work/parts" && ls) | xargs -P "$PAR" -I{} curl -s -o /dev/null -w '%{http_code}\n' --max-time 900 \
            -H 'Expect:' --data-binary @"$work/parts/{}" "$insert_url" > "$work/ref.codes"
        t2=$(date +%s.%N)
        [ "$(grep -vc '^200$' "$work/ref.codes")" = 0 ] || { echo "curl inserts failed: $(sort "$work/ref.codes" | uniq -c)" >&2; exit 1; }
        python3 -c "print(int($N / ($t2 - $t1)))"
    fi
    check_count
}

# Warm-up: connections, page cache, the server's first parts.
connector_run >/dev/null
reference_run >/dev/null

echo "ClickHouse $(chc --query 'SELECT version()') insert, JSONEachRow: $N rows ($bytes B) per run, batches of $BATCH, $PAR in parallel on both sides, $(nproc) CPUs"
printf '%-6s %18s %18s\n' run "connector rows/s" "curl rows/s"
: > "$work/c"
: > "$work/r"
for i in $(seq 1 "$RUNS"); do
    c=$(connector_run)
    r=$(reference_run)
    echo "$c" >> "$work/c"
    echo "$r" >> "$work/r"
    printf '%-6s %18s %18s\n' "$i" "$c" "$r"
done
mc=$(bench_median < "$work/c")
mr=$(bench_median < "$work/r")
printf '%-6s %18s %18s\n' median "$mc" "$mr"
awk -v c="$mc" -v r="$mr" 'BEGIN { printf "ratio connector / curl: %.2f (target >= 0.9)\n", c / r }'
bench_result clickhouse_insert "$mc" rows/s "$mr" curl ">=0.9"
echo "rows in bench: $(count) (= $(( (RUNS + 1) * 2 )) runs x $N)"
