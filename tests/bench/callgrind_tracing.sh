#!/usr/bin/env bash
# tests/bench/callgrind_tracing.sh - what tracing costs the segments API in
# instructions per request: sluiced runs under valgrind's callgrind, which
# counts the instructions it executes whatever else loads the machine, so
# the figure is repeatable on a busy machine where bench_tracing.sh's
# requests per second are not.  The figure covers sluiced only: what
# PostgreSQL or the collector do on its behalf is not in it, so the
# statement and round-trip counts per request are printed too (from the
# calls callgrind saw), to show that tracing adds none.
#
# For GET /segment/user/{id} (every id read once before counting, so that
# each counted request is a cache hit) and POST /segment/user, with tracing
# off, then on at sample_ratio 1.0 exporting to nginx as the collector
# (tracing_setup.sh): a fresh sluiced per case, its counters zeroed
# once it is warm, N requests (N=2000) sent over C keep-alive connections
# (C=8), then the counters dumped SETTLE seconds later (4), once every
# span has been exported, so that the export of a request's spans is
# counted with it.  Prints
# instructions per request off and on and their ratio (target: on <= 1.1
# of off), and keeps each case's callgrind file in OUT (a temporary
# directory unless set) for callgrind_annotate.
#
# Uses the optimized build in build/ (SL_BUILD to change).  Not part of
# run-all.sh: it takes a few minutes and reports no throughput.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${SL_BUILD:-$top/build}
n=${N:-2000}
conns=${C:-8}
users=${USERS:-1000}
. "$top/tests/lib.sh"
. "$top/tests/harness/services.sh"
. "$top/tests/bench/result.sh"

for tool in valgrind callgrind_control callgrind_annotate; do
    command -v "$tool" >/dev/null || { echo "$tool missing (Debian package valgrind)" >&2; exit 1; }
done
[ -x "$build/core/sluiced" ] || { echo "no $build/core/sluiced: build it first" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-cg.XXXXXX")
out=${OUT:-$work/out}
mkdir -p "$out"
pids=()
daemon=
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    sl_svc_stop_all
    [ -n "${OUT:-}" ] || rm -rf "$work"
    return 0
}
trap cleanup EXIT

POOL=${POOL:-4}
# A batch leaves when it holds batch_size spans, never on the timer, so
# that the same requests make the same batches whatever the timing: N
# GETs make N spans and N POSTs 7N, so N a multiple of 500 leaves none
# pending (the run warns otherwise).
TRACING_EXTRA=$'batch_size = 500\nflush_interval = 3600s'
# Work done per second, not per request, is made rare: the status page's
# history renders every metric every sample_interval (about a million
# instructions), the TTL sweeper asks Redis every sweep_interval; counted
# with the requests, the slower of two runs would pay for more of it.
METRICS_EXTRA='sample_interval = 3600s'
SEGMENTS_EXTRA='sweep_interval = 60s'
. "$top/tests/bench/tracing_setup.sh"

# A first sluiced makes the schema; then the users and their segments.
write_conf off
"$build/core/sluiced" -c "$work/sluice.conf" 2>"$work/init.log" &
daemon=$!
t_wait_until 60 ready || { tail -n 20 "$work/init.log" >&2; exit 1; }
kill "$daemon"
wait "$daemon" || true
daemon=
seed_users "$users"

# send.py get|post|warm|readyz: the requests, C connections at once;
# prints the number answered 2xx.  The ids are drawn from a fixed seed so
# that every case sends the same requests.
cat > "$work/send.py" <<'PY'
import http.client, json, random, sys, threading
what, port, n, conns, users = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ok = [0] * conns
def run(t):
    rnd = random.Random(t)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for i in range(t, n, conns):
        if what == "readyz":
            c.request("GET", "/readyz")
        elif what == "warm":
            c.request("GET", "/segment/user/%d" % (i % users + 1))
        elif what == "get":
            c.request("GET", "/segment/user/%d" % rnd.randint(1, users))
        else:
            a = rnd.randint(0, 9)
            body = json.dumps({"user_id": rnd.randint(1, users), "add_segments": ["S%d" % a],
                               "delete_segments": ["S%d" % ((a + rnd.randint(1, 9)) % 10)]})
            c.request("POST", "/segment/user", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        ok[t] += 200 <= r.status < 300
threads = [threading.Thread(target=run, args=(t,)) for t in range(conns)]
for t in threads: t.start()
for t in threads: t.join()
print(sum(ok))
PY

# count.py DUMP N: instructions per request, and statements sent (any
# PQsend* or pipeline sync) and flushes per request, from the calls the
# dump records (names are compressed: "(id) name" once, "(id)" after).
cat > "$work/count.py" <<'PY'
import re, sys
names, total, sends, flushes, cfn = {}, 0, 0, 0, None
send = {"PQsendQuery", "PQsendQueryParams", "PQsendQueryPrepared", "PQsendPrepare", "PQpipelineSync"}
for line in open(sys.argv[1]):
    if line.startswith("totals:"):
        total = int(line.split()[1])
    elif line.startswith(("cfn=", "fn=")):
        m = re.match(r"(\w+)=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
        if m and m.group(3) is not None:
            names[m.group(2)] = m.group(3)
        if m and m.group(1) == "cfn":
            cfn = names.get(m.group(2))
    elif line.startswith("calls=") and cfn is not None:
        k = int(line[6:].split()[0])
        sends += k if cfn in send else 0
        flushes += k if cfn == "PQflush" else 0
n = float(sys.argv[2])
print("%d %.2f %.2f" % (total / n, sends / n, flushes / n))
PY

printf '%-6s %-4s %9s %14s %10s %10s\n' case mode requests "instr/request" "PQsend*/r" "PQflush/r"
for what in get post; do
    for mode in off on; do
        write_conf "$mode"
        f=$out/$mode-$what.cg
        # glibc copies large blocks with `rep movsb`, which callgrind
        # counts as one instruction per byte where the processor moves
        # tens of bytes a cycle: libcurl copying an export batch into its
        # upload buffer counted as much as encoding it.  With the
        # threshold out of reach glibc copies with vector moves, counted
        # as what they are, on both sides.
        GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=1073741824 \
            valgrind --tool=callgrind --callgrind-out-file="$f" --dump-instr=no \
            "$build/core/sluiced" -c "$work/sluice.conf" 2>"$work/$mode-$what.log" &
        daemon=$!
        t_wait_until 300 ready || { tail -n 20 "$work/$mode-$what.log" >&2; exit 1; }
        [ "$what" = get ] && python3 "$work/send.py" warm "$sport" "$users" "$conns" "$users" > /dev/null
        if [ "$mode" = on ]; then
            # Empty the queue before counting: the readiness checks, the
            # warm-up and the /metrics answer read here (a span too) left
            # some; as many /readyz (one span each) as make a full batch
            # send them.
            queued=$(($(metric sluice_tracing_spans_pending) + 1))
            python3 "$work/send.py" readyz "$sport" $(((500 - queued % 500) % 500)) 1 "$users" > /dev/null
            sleep "${SETTLE:-4}"
        fi
        callgrind_control -z "$daemon" > /dev/null 2>&1
        okn=$(python3 "$work/send.py" "$what" "$sport" "$n" "$conns" "$users")
        # The last batch is sent: the collector's batches are part of what
        # a request costs.  Waited for by time, not by polling /metrics,
        # whose answers would be counted too; checked after the dump.
        sleep "${SETTLE:-4}"
        callgrind_control -d "$daemon" > /dev/null 2>&1
        if [ "$mode" = on ] && [ "$(metric sluice_tracing_spans_pending)" != 0 ]; then
            echo "warning: spans still pending at the dump (N not a multiple of 500, or raise SETTLE)" >&2
        fi
        kill "$daemon"
        wait "$daemon" || true
        daemon=
        dump=$(ls -t "$f".* 2>/dev/null | head -n 1)
        read -r per sends flushes <<< "$(python3 "$work/count.py" "$dump" "$n")"
        eval "${what}_${mode}=$per"
        printf '%-6s %-4s %9s %14s %10s %10s\n' "$what" "$mode" "$okn/$n" "$per" "$sends" "$flushes"
        [ "$okn" = "$n" ] || echo "warning: $((n - okn)) requests not answered 2xx" >&2
    done
done
echo "callgrind files in $out (callgrind_annotate --inclusive=yes FILE); load average $(cut -d' ' -f1-3 /proc/loadavg)"
bench_result get_segment_user_instr_traced "$get_on" instr/req "$get_off" tracing_off "<=1.1"
bench_result post_segment_user_instr_traced "$post_on" instr/req "$post_off" tracing_off "<=1.1"
