#!/usr/bin/env bash
# The generator module as a user meets it: a real sluiced with the embedded
# Kafka broker, the generator and the metrics module, read from outside by
# kcat.  What kcat reads must equal what /generator/status says was
# delivered, exactly: the count, the duplicates, the malformed events, the
# events of each origin.  Faults come from the embedded broker through the
# kafkaprobe test module's admin routes.
. "$(dirname "$0")/../lib.sh"

work=$(t_tmpdir)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    [ -n "${SL_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

mods=$work/mods
mkdir -p "$mods"
cp "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/_modules/generator.so" "$mods/"
cp "$SL_BUILD/tests/modules/kafkaprobe/.libs/kafkaprobe.so" "$mods/"
port=$(t_free_port)
base=http://127.0.0.1:$port
bootfile=$work/bootstrap

write_conf() { # the [module generator] lines come from $gen
    cat > "$work/sluice.conf" <<EOF
# written by tests/integration/generator.sh
[core]
listen = 127.0.0.1:$port
modules_dir = mods
log_level = info
drain_timeout = 20s

[kafka]
brokers = embedded
embedded_topics = page_views:8, pv_sync:4, pv_async:4, pv_batch:4
bootstrap_file = $bootfile
admin = true
rdkafka.enable.idempotence = true
rdkafka.reconnect.backoff.max.ms = 500

[module metrics]

[module kafkaprobe]
produce = false

[module generator]
trace_headers = true
$gen
EOF
}

start_daemon() {
    "$SLUICED" -c "$work/sluice.conf" 2>>"$work/sluiced.log" &
    daemon=$!
    pids+=("$daemon")
    t_wait_http "$base/healthz" 10 && t_wait_for 10 test -s "$bootfile"
}

status() { # status EXPR: a Python expression over the status JSON `j`
    curl -s --max-time 10 "$base/generator/status" |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}
post() { # post PATH: the HTTP code
    curl -s -o "$work/post.out" -w '%{http_code}' -X POST "$base$1"
}
settled() { [ "$(status 'j["pending"] + j["rate"]["burst_pending"]')" = 0 ]; }
pause() { # fixed rate 0, then wait until every event generated has ended
    post "/generator/config/speed?eps=0" >/dev/null
    t_wait_for 60 settled
}
broker() { post "/kafkaprobe/broker?id=1&up=$1"; }
metric_sum() { # metric_sum NAME: the sum of a family's series
    curl -s "$base/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { print s + 0 }'
}

# kcat reads a topic: partition, timestamp (ms), key, headers and value per line.
kread() {
    kcat -C -b "$(cat "$bootfile")" -t "$1" -e -q -o beginning -f '%p\t%T\t%k\t%h\t%s\n' > "$work/$1.dump"
}

# The stream, checked independently of the generator: malformed events are
# found by validating the content, duplicates by event ids seen before.
cat > "$work/analyze.py" <<'EOF'
import json, sys, datetime, collections
def valid(v):
    try:
        e = json.loads(v)
    except ValueError:
        return False
    if not isinstance(e, dict) or set(e) - {"pad"} != {"event_id", "event_type", "page_id", "user_id", "ts", "duration_s"}:
        return False
    if not all(isinstance(e[k], str) for k in ("event_id", "page_id", "user_id", "ts")):
        return False
    if e["event_type"] not in ("view", "bounce") or type(e["duration_s"]) is not int or e["duration_s"] < 0:
        return False
    try:
        datetime.datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return False
    return True
out = collections.Counter()
seen = set()
key_parts = collections.defaultdict(set)
origin_ts = collections.defaultdict(list)
origin_ms = collections.defaultdict(list)
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    part, ts_ms, key, hdrs, value = line.rstrip("\n").split("\t", 4)
    h = dict(kv.split("=", 1) for kv in hdrs.split(","))
    out["count"] += 1
    repeat = h["event_id"] in seen
    if repeat:
        out["duplicate"] += 1
    seen.add(h["event_id"])
    if not valid(value):
        out["malformed"] += 1
    out["origin_" + h["origin"]] += 1
    out["partitioning_" + h["partitioning"]] += 1
    out["partition_" + part] += 1
    if h["partitioning"] == "key":
        key_parts[key].add(part)
    # the message timestamp: when the producer took it, whatever the content
    origin_ms[h["origin"]].append(int(ts_ms))
    # a duplicate repeats an earlier event, its ts included
    if valid(value) and not repeat:
        origin_ts[h["origin"]].append(json.loads(value)["ts"])
out["keys"] = len(key_parts)
out["keys_in_two_partitions"] = sum(1 for p in key_parts.values() if len(p) > 1)
out["burst_distinct_ts"] = len(set(origin_ts["burst"]))
if origin_ms["night"]:
    out["night_first"] = min(origin_ms["night"]) / 1000.0
    n = sorted(origin_ms["night"])
    out["night_min_gap_ms"] = min([b - a for a, b in zip(n, n[1:])] or [10000])
if origin_ms["night"] and origin_ms["regular"]:
    out["regular_after_night"] = int(min(origin_ms["regular"]) > max(origin_ms["night"]))
# produce times in groups: a gap of more than 100 ms starts a new one
times = sorted(int(t) for ts in origin_ms.values() for t in ts)
groups = [1] if times else []
for a, b in zip(times, times[1:]):
    if b - a > 100:
        groups.append(0)
    groups[-1] += 1
out["groups"] = len(groups)
out["max_group"] = max(groups, default=0)
print(json.dumps(out))
EOF
fact() { # fact TOPIC KEY: one figure of the last analysis of TOPIC
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))' "$work/$1.facts" "$2"
}
analyze() { kread "$1" && python3 "$work/analyze.py" "$work/$1.dump" > "$work/$1.facts"; }
# accounted TOPIC: once settled, every event generated ended exactly once,
# and kcat reads from TOPIC exactly what was delivered.  Leaves g d f x.
accounted() {
    analyze "$1"
    g=$(status 'j["generated"]["total"]')
    d=$(status 'j["delivered"]["total"]')
    f=$(status 'j["failed"]["total"]')
    x=$(status 'j["dropped"]["total"]')
    t_check $((d + f + x)) = "$g" "delivered $d + failed $f + dropped $x = generated $g"
    t_check "$(fact "$1" count)" = "$d" "kcat read $(fact "$1" count) from $1 = delivered $d"
}

# ---------------------------------------------------------------- config
t_case "-t checks the generator's options with file:line"
gen="seed = 42"
write_conf
"$SLUICED" -t -c "$work/sluice.conf" 2>"$work/t.out"
t_check $? -eq 0 "valid config: exit 0"
sed -e 's/^seed = 42/seed = 42\nmode = rush\nstrategy = maybe\neps = -5/' "$work/sluice.conf" > "$work/bad.conf"
"$SLUICED" -t -c "$work/bad.conf" 2>"$work/t.out"
t_check $? -eq 1 "bad config: exit 1"
for key in mode strategy eps; do
    line=$(grep -n "^$key = " "$work/bad.conf" | cut -d: -f1)
    t_check "$(grep -c "bad.conf:$line:.*$key" "$work/t.out")" -ge 1 "$key reported at bad.conf:$line"
done
# Syntax of the values, which only the module knows: its check().
sed -e 's/^seed = 42/seed = 42\nmix = 85,10\npartitioning = 0,0,0\npeak_burst_min = 5000\nlog_every = 500ms/' "$work/sluice.conf" > "$work/bad.conf"
"$SLUICED" -t -c "$work/bad.conf" 2>"$work/t.out"
t_check $? -eq 1 "bad weight lists, burst bounds and log interval: exit 1"
for key in mix partitioning peak_burst_min log_every; do
    line=$(grep -n "^$key = " "$work/bad.conf" | cut -d: -f1)
    t_check "$(grep -c "bad.conf:$line: \[module generator\] $key: must" "$work/t.out")" -eq 1 "$key reported at bad.conf:$line: $(grep -m1 "\] $key:" "$work/t.out" | head -c 160)"
done
t_end

# ------------------------------------------- async: status equals the stream
t_case "async at 300 events/s plus a burst of 500: kcat reads exactly what status says was delivered"
gen="seed = 42
eps = 300
partitions = 8
burst_max = 5000
peak_every = 2s"
write_conf
start_daemon
t_check $? -eq 0 "sluiced started"
t_wait_until 30 '[ "$(status "j[\"by_origin\"][\"fixed\"][\"delivered\"]")" -ge 600 ]'
t_check "$(post '/generator/generate/burst?count=500')" = 200 "burst of 500 accepted"
t_wait_until 30 '[ "$(status "j[\"by_origin\"][\"burst\"][\"delivered\"]")" = 500 ]'
pause
analyze page_views
gen_n=$(status 'j["generated"]["total"]')
t_check "$gen_n" -gt 900 "generated $gen_n events"
t_check "$(status 'j["delivered"]["total"]')" = "$gen_n" "delivered = generated (nothing failed or dropped)"
t_check "$(status 'j["delivered"]["total"] + j["failed"]["total"] + j["dropped"]["total"]')" = "$gen_n" "delivered + failed + dropped = generated"
t_check "$(fact page_views count)" = "$gen_n" "kcat read $(fact page_views count), status says $gen_n delivered"
t_check "$(fact page_views duplicate)" = "$(status 'j["delivered"]["duplicate"]')" "duplicates: kcat $(fact page_views duplicate), status $(status 'j["delivered"]["duplicate"]')"
t_check "$(fact page_views malformed)" = "$(status 'j["delivered"]["malformed"]["total"]')" "malformed: kcat $(fact page_views malformed), status $(status 'j["delivered"]["malformed"]["total"]')"
t_check "$(status 'min(j["delivered"]["malformed"][k] for k in ("missing_field","wrong_type","broken_json","negative_duration","bad_timestamp"))')" -gt 0 "every malformed kind delivered at least once"
t_check "$(fact page_views origin_burst)" = 500 "the stream holds exactly 500 burst events"
t_check "$(fact page_views burst_distinct_ts)" = 1 "every fresh burst event was due at one instant (their ts)"
t_check "$(fact page_views origin_fixed)" = "$(status 'j["by_origin"]["fixed"]["delivered"]')" "events of the fixed rate: kcat = status"
t_check "$(status 'j["latency_s"]["p99"] > 0 and j["latency_s"]["last"] > 0')" = True "send latency reported (p99 $(status 'j["latency_s"]["p99"]') s)"
t_end

t_case "key partitioning keeps every page in one partition; the other strategies spread"
t_check "$(fact page_views keys)" -gt 50 "$(fact page_views keys) pages sent by key"
t_check "$(fact page_views keys_in_two_partitions)" = 0 "no page sent by key is in two partitions"
for p in 0 1 2 3 4 5 6 7; do
    t_check "$(fact page_views partition_$p)" -gt 0 "partition $p holds $(fact page_views partition_$p)"
done
n=$(fact page_views count)
share() { python3 -c "print(abs($(fact page_views "partitioning_$1") / $n - $2) < 0.05)"; }
t_check "$(share key 0.70)" = True "by key: $(fact page_views partitioning_key) of $n (70% wanted)"
t_check "$(share round_robin 0.20)" = True "round-robin: $(fact page_views partitioning_round_robin) of $n (20% wanted)"
t_check "$(share random 0.10)" = True "random: $(fact page_views partitioning_random) of $n (10% wanted)"
t_end

# ------------------------------------------------------------ modes
t_case "night, then regular, then peak: each visible in the delivered stream"
night_at=$(date +%s.%N)
code=$(post '/generator/config/mode?mode=night')
t_check "$code" = 200 "mode night ($code)"
# Night sends one event every 10 s: the first comes 10 s after the switch,
# the next one 10 s later.  Wait for the first, then leave night (a loaded
# machine may see it late enough for a second one to come).
t_wait_until 30 '[ "$(status "j[\"by_origin\"][\"night\"][\"generated\"]")" -ge 1 ]'
t_check "$(status 'j["by_origin"]["night"]["generated"]')" -ge 1 "night: its first event seen $(python3 -c "print(round($(date +%s.%N) - $night_at, 1))") s after the switch"
t_check "$(status 'j["rate"]["target_eps"]')" = 0.1 "night target 0.1 events/s"
code=$(post '/generator/config/mode?mode=regular')
t_check "$code" = 200 "mode regular ($code)"
target=$(status 'j["rate"]["target_eps"]')
t_check "$(python3 -c "print(1 <= $target <= 10 and $target == int($target))")" = True "regular target $target events/s, from 1 to 10"
t_wait_until 30 '[ "$(status "j[\"by_origin\"][\"regular\"][\"delivered\"]")" -ge 1 ]'
peak_mark=$(wc -l < "$work/sluiced.log")
t_check "$(post '/generator/config/mode?mode=peak')" = 200 "mode peak"
# Bursts come every peak_every (2 s): wait until the first one logged has
# been delivered whole; a later one may have started meanwhile.
peak_sizes() { tail -n +"$((peak_mark + 1))" "$work/sluiced.log" | sed -n 's/.*peak burst of \([0-9]*\) events.*/\1/p'; }
first_peak_done() {
    local first
    first=$(peak_sizes | head -1)
    [ -n "$first" ] && [ "$(status 'j["by_origin"]["peak_burst"]["delivered"]')" -ge "$first" ]
}
t_wait_until 60 first_peak_done
pause
analyze page_views
night_n=$(status 'j["by_origin"]["night"]["delivered"]')
t_check "$(fact page_views origin_night)" = "${night_n:-none}" "the stream holds the $night_n night event(s) status says were delivered"
t_check "$(fact page_views origin_night)" -ge 1 "at least one"
t_check "$(fact page_views night_min_gap_ms)" -ge 9900 "night events 10 s apart (closest $(fact page_views night_min_gap_ms) ms)"
after=$(python3 -c "print(int(($(fact page_views night_first) - $night_at) * 1000))")
t_check "$(python3 -c "print(9900 <= $after < 20000)")" = True "it was sent $after ms after the switch to night: at 10 s, before the second slot (20 s)"
t_check "$(fact page_views origin_regular)" = "$(status 'j["by_origin"]["regular"]["delivered"]')" "regular events: kcat $(fact page_views origin_regular) = status"
t_check "$(fact page_views origin_regular)" -ge 1 "regular events came"
t_check "$(fact page_views regular_after_night)" = 1 "every regular event came after the night events"
pb=$(status 'j["by_origin"]["peak_burst"]["delivered"]')
t_check "$(fact page_views origin_peak_burst)" = "$pb" "peak burst: kcat $(fact page_views origin_peak_burst) = status $pb"
sizes=$(peak_sizes | tr '\n' ' ')
t_check -n "$sizes" "peak bursts logged: $sizes"
t_check "$(python3 -c "s = [int(x) for x in '$sizes'.split()]; print(bool(s) and all(100 <= x <= 1000 for x in s))")" = True "every peak burst had 100 to 1000 events ($sizes)"
t_check "$(python3 -c "s = [int(x) for x in '$sizes'.split()]; print(bool(s) and s[0] <= $pb <= sum(s))")" = True "the stream holds the first burst whole and no more than the bursts logged ($pb)"
t_check "$(fact page_views count)" = "$(status 'j["delivered"]["total"]')" "kcat count = delivered ($(fact page_views count))"
t_end

# --------------------------------------------------------------- the API
t_case "the control API refuses invalid values with 400 saying what is allowed"
check_400() { # check_400 PATH TEXT
    local code
    code=$(post "$1")
    t_check "$code" = 400 "$1 -> $code"
    t_check "$(grep -c "$2" "$work/post.out")" -eq 1 "  says: $(cat "$work/post.out")"
}
check_400 "/generator/config/speed?eps=-1" "eps must be a number from 0 to"
check_400 "/generator/config/speed?eps=fast" "eps must be a number from 0 to"
check_400 "/generator/config/speed" "eps must be a number from 0 to"
check_400 "/generator/config/mode?mode=rush" "mode must be one of regular, peak, night"
check_400 "/generator/generate/burst?count=0" "count must be an integer from 1 to 5000"
check_400 "/generator/generate/burst?count=5001" "count must be an integer from 1 to 5000"
check_400 "/generator/generate/burst?count=1.5" "count must be an integer from 1 to 5000"
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/generator/config/mode?mode=night")
t_check "$code" = 405 "GET on a POST route -> $code"
t_check "$(grep -c 'fixed rate 0 events/s' "$work/sluiced.log")" -ge 1 "changes are logged"
t_end

# ---------------------------------------------- reload, then sync faults
t_case "SIGHUP to sync under load: the old instance drains without losing an event"
drained_before=$(grep -c '\[generator\] drained' "$work/sluiced.log")
post "/generator/config/speed?eps=5000" >/dev/null
t_wait_until 30 '[ "$(status "j[\"rate\"][\"measured_eps\"] > 1000")" = True ]'
t_check "$(status 'j["rate"]["measured_eps"] > 1000')" = True "generating at $(status 'int(j["rate"]["measured_eps"])') events/s when the SIGHUP comes"
gen="seed = 7
topic = pv_sync
strategy = sync
eps = 20
delivery_timeout = 1s
retry_backoff = 200ms"
write_conf
kill -HUP "$daemon"
drained() { [ "$(grep -c '\[generator\] drained' "$work/sluiced.log")" -gt "$drained_before" ]; }
t_wait_for 20 drained
line=$(grep '\[generator\] drained' "$work/sluiced.log" | tail -1)
t_check -n "$line" "drain logged: ${line#*drained: }"
read -r n d f x <<< "$(echo "$line" | sed -n 's/.*generated \([0-9]*\), delivered \([0-9]*\), failed \([0-9]*\), dropped \([0-9]*\).*/\1 \2 \3 \4/p')"
t_check "${n:-0}" -gt 0 "the old instance generated $n"
t_check "$d:$f:$x" = "$n:0:0" "and delivered every one (delivered $d, failed $f, dropped $x)"
analyze page_views
t_check "$(fact page_views count)" = "$d" "page_views holds exactly $d"
t_check "$(status 'j["strategy"]')" = sync "the successor runs sync"
t_end

# An attempt fails when librdkafka times the message out (message.timeout.ms
# = delivery_timeout, a topic-level property): the connector must hand the
# producer's topic-level properties to its topics, or the attempt waits for
# librdkafka's default 300 s and no retry happens within this case.
t_case "sync: the broker down means retries, then recovery; every event accounted for"
t_wait_until 30 '[ "$(status "j[\"delivered\"][\"total\"]")" -gt 0 ]'
t_check "$(broker 0)" = 200 "broker 1 down"
# One event's 5 attempts take about 8 s (1 s each, 0.2+0.4+0.8+1.6 s apart).
t_wait_until 60 '[ "$(status "j[\"failed\"][\"total\"]")" -ge 1 ] && [ "$(status "j[\"queued\"]")" -gt 0 ]'
t_check "$(status 'j["queued"]')" -gt 0 "events wait in the backlog ($(status 'j["queued"]'))"
t_check "$(status 'j["retries"]')" -ge 4 "attempts failed and were retried ($(status 'j["retries"]') retries)"
t_check "$(status 'j["failed"]["total"]')" -ge 1 "an event failed after 5 attempts ($(status 'j["failed"]["total"]'))"
t_check "$(grep -c 'failed after 5 attempts' "$work/sluiced.log")" -ge 1 "and was logged"
t_check "$(broker 1)" = 200 "broker 1 up"
caught_up() { [ "$(status 'j["queued"]')" -le 1 ]; }
t_wait_for 60 caught_up
pause
accounted pv_sync
t_check "$d" -gt 0 "deliveries resumed"
t_check "$(metric_sum sluice_generator_retries_total)" = "$(status 'j["retries"]')" "sluice_generator_retries_total = status retries"
t_end

# --------------------------------------------- async with a full queue
t_case "async with a full in-flight queue while the broker is down: drops counted, then recovery"
gen="seed = 9
topic = pv_async
strategy = async
eps = 200
inflight = 50"
write_conf
kill -HUP "$daemon"
replaced() { [ "$(status 'j["topic"]')" = pv_async ]; }
t_wait_for 20 replaced
t_check $? -eq 0 "the successor writes to pv_async"
t_wait_until 30 '[ "$(status "j[\"delivered\"][\"total\"]")" -gt 0 ]'
t_check "$(broker 0)" = 200 "broker 1 down"
t_wait_until 60 '[ "$(status "j[\"inflight\"]")" = 50 ] && [ "$(status "j[\"dropped_by_reason\"][\"inflight_limit\"]")" -ge 1 ] && [ "$(status "j[\"rate\"][\"missed\"]")" -gt 0 ]'
t_check "$(status 'j["inflight"]')" = 50 "50 events in flight, the limit"
t_check "$(status 'j["dropped_by_reason"]["inflight_limit"]')" -ge 1 "drops counted by reason inflight_limit ($(status 'j["dropped_by_reason"]["inflight_limit"]'))"
t_check "$(status 'j["rate"]["missed"]')" -gt 0 "slots the paused generator skipped are counted ($(status 'j["rate"]["missed"]'))"
d_up=$(status 'j["delivered"]["total"]')
t_check "$(broker 1)" = 200 "broker 1 up"
t_wait_until 60 "[ \"\$(status 'j[\"delivered\"][\"total\"]')\" -gt $((d_up + 50)) ]"
pause
accounted pv_async
t_check "$x" = "$(status 'j["dropped_by_reason"]["inflight_limit"]')" "every drop is an in-flight-limit drop"
t_check "$d" -gt 50 "deliveries resumed after the broker came back"
t_end

# ----------------------------------------------------------------- batch
t_case "batch: 100 events or 1 s, whichever first; every event accounted for"
gen="seed = 11
topic = pv_batch
strategy = batch
eps = 150
batch_size = 100
batch_interval = 1s"
write_conf
kill -HUP "$daemon"
replaced() { [ "$(status 'j["topic"]')" = pv_batch ]; }
t_wait_for 20 replaced
t_check $? -eq 0 "the successor writes to pv_batch"
t_wait_until 60 '[ "$(status "j[\"delivered\"][\"total\"]")" -ge 400 ]'
pause
accounted pv_batch
t_check "$d" = "$g" "delivered $d = generated $g"
t_check "$(fact pv_batch max_group)" -le 100 "sent in groups of at most 100 (largest $(fact pv_batch max_group))"
t_check "$(fact pv_batch groups)" -ge $((d / 100)) "$(fact pv_batch groups) groups for $d events"
t_check "$(fact pv_batch groups)" -le $((d / 100 + 2)) "  no more than one per 100 events, plus the interval's"
t_end

# --------------------------------------------------------------- metrics
t_case "metrics pass promtool and add up across the instances"
curl -s "$base/metrics" > "$work/metrics.txt"
promtool check metrics < "$work/metrics.txt" > "$work/promtool.out" 2>&1
t_check $? -eq 0 "promtool check metrics: $(head -3 "$work/promtool.out" | tr '\n' ' ')"
for m in events_total malformed_events_total delivered_total failed_total dropped_total retries_total \
    send_latency_seconds_count mode target_events_per_second inflight schedule_missed_total; do
    t_check "$(grep -c "^sluice_generator_$m" "$work/metrics.txt")" -ge 1 "sluice_generator_$m exported"
done
generated=$(metric_sum sluice_generator_events_total)
ended=$(( $(metric_sum sluice_generator_delivered_total) + $(metric_sum sluice_generator_failed_total) + $(metric_sum sluice_generator_dropped_total) ))
t_check "$generated" = "$ended" "four instances: events_total $generated = delivered + failed + dropped $ended"
all=$(( $(fact page_views count) + $(fact pv_sync count) + $(fact pv_async count) + $(fact pv_batch count) ))
t_check "$(metric_sum sluice_generator_delivered_total)" = "$all" "delivered_total = everything kcat read ($all)"
t_check "$(grep -c '^sluice_generator_mode{mode="regular"} 1' "$work/metrics.txt")" = 1 "mode gauge: regular"
t_end

# ------------------------------------------------------ a second instance
t_case "a second instance runs beside the first, with its own routes, counts and metric series"
second='[module generator "b"]
trace_headers = true
log_every = 1s
topic = pv_b
seed = 5
eps = 100'
write_conf
printf '\n%s\n' "$second" >> "$work/sluice.conf"
kill -HUP "$daemon"
b_up() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/generator/b/status")" = 200 ]; }
t_wait_for 20 b_up
t_check $? -eq 0 "/generator/b/status answers"
t_wait_until 30 '[ "$(curl -s "$base/generator/b/status" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"delivered\"][\"total\"])")" -gt 0 ]'
t_check "$(post '/generator/b/config/speed?eps=0')" = 200 "instance b paused through its own route"
b_settled() { [ "$(curl -s "$base/generator/b/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pending"])')" = 0 ]; }
t_wait_for 30 b_settled
bd=$(curl -s "$base/generator/b/status" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["delivered"]["total"], j["generator"])')
analyze pv_b
t_check "$(fact pv_b count) b" = "$bd" "kcat read $(fact pv_b count) from pv_b = b delivered (${bd% *})"
t_check "$(curl -s "$base/metrics" | grep -c '^sluice_generator_delivered_total{instance_name="b"}')" = 1 "b has its own series (instance_name=\"b\")"
t_check "$(status 'j["topic"]')" = pv_batch "the first instance carried over untouched"
t_end

# ----------------------------------------------------- log_every
t_case "log_every: instance b logs its rate and totals every second; the first, without it, never"
reports() { grep -F '[generator/b] rate ' "$work/sluiced.log"; }
t_check "$(grep -F '[generator] rate ' "$work/sluiced.log" | wc -l)" = 0 "off by default: no report from the first instance"
n0=$(reports | wc -l)
t_check "$(post '/generator/b/config/speed?eps=50')" = 200 "instance b at 50 events/s"
t_wait_until 30 '[ "$(reports | wc -l)" -ge $((n0 + 4)) ]'
# Two consecutive reports: the rate printed is the growth of "generated"
# over the interval printed, and both grow.
t_check "$(reports | tail -n 3 | python3 -c '
import re, sys
rows = [tuple(float(x) for x in re.search(r"rate ([0-9.]+) events/s over the last ([0-9.]+) s .* generated ([0-9]+) ", l).groups()) for l in sys.stdin]
ok = all(abs(b[0] * b[1] - (b[2] - a[2])) <= 0.1 * b[1] + 1 and b[2] > a[2] for a, b in zip(rows, rows[1:]))
print(ok and any(r[0] > 0 for r in rows))')" = True "rate = growth of generated / interval: $(reports | tail -n 1 | cut -c1-220)"
t_check "$(post '/generator/b/config/speed?eps=0')" = 200 "instance b paused"
t_wait_for 30 b_settled
want=$(curl -s "$base/generator/b/status" | python3 -c 'import json,sys; j=json.load(sys.stdin); print("generated %d (view %d, bounce %d, duplicate %d, malformed %d), delivered %d, failed %d, dropped %d, pending 0" % (j["generated"]["total"], j["generated"]["view"], j["generated"]["bounce"], j["generated"]["duplicate"], j["generated"]["malformed"]["total"], j["delivered"]["total"], j["failed"]["total"], j["dropped"]["total"]))')
t_wait_until 10 '[ "$(reports | tail -n 1 | grep -cF "totals: $want")" = 1 ]'
t_check "$(reports | tail -n 1 | grep -cF "totals: $want")" = 1 "the last report's totals equal the status: $want"
t_end

# -------------------------------------------------------------- shutdown
t_case "SIGTERM drains the generator and exits 0"
g0=$(status 'j["generated"]["total"]')
post "/generator/config/speed?eps=100" >/dev/null
t_wait_until 30 "[ \"\$(status 'j[\"generated\"][\"total\"]')\" -gt $g0 ]"
kill -TERM "$daemon"
wait "$daemon"
t_check $? -eq 0 "sluiced exited 0"
line=$(grep '\[generator\] drained' "$work/sluiced.log" | tail -1)
t_check "$(echo "$line" | python3 -c 'import re,sys; g,d,f,x = map(int, re.search(r"generated (\d+), delivered (\d+), failed (\d+), dropped (\d+)", sys.stdin.read()).groups()); print(g == d + f + x and g > 0)')" = True "last drain: ${line#*drained: }"
t_check "$(grep -c 'did not finish draining' "$work/sluiced.log")" -eq 0 "drained in time"
t_end

t_exit
