#!/usr/bin/env bash
# The container deployment, run for real with podman from Debian (no Docker
# engine here):
#   1. a Debian bookworm base made with debootstrap and imported as
#      debian:bookworm and debian:bookworm-slim (no registry image);
#   2. docker/Dockerfile built from the repository exactly as a user would;
#   3. every role run as a container of that image, from the image's own
#      /etc/sluice/ROLE.conf (only pointed at this run's servers and ports),
#      on the host network, as the image's non-root user with a read-only
#      root filesystem and a tmpfs /tmp: the broker role's embedded Kafka,
#      the generator, aggregator, segments and outbox against the harness's
#      PostgreSQL, Redis and ClickHouse;
#   4. the flow of system.sh (tests/harness/flow.sh) through the containers,
#      SIGHUP by `podman kill --signal HUP`, and `podman stop` draining every
#      role to exit 0 within the compose file's stop_grace_period.
# The podman store (base image and build layers) is kept per checkout in
# $SL_CONTAINER_CACHE (default .cache/container), so a second run of the
# same checkout reuses the base and every layer whose inputs did not change.
. "$(dirname "$0")/../lib.sh"
. "$SL_TOP/tests/harness/services.sh"

# Absolute: podman's store records its own path.
cache=$(mkdir -p "${SL_CONTAINER_CACHE:-$SL_TOP/.cache/container}" && cd "${SL_CONTAINER_CACHE:-$SL_TOP/.cache/container}" && pwd)
image=sluice:local
label=sluice.test=container.sh
work=$(t_tmpdir)
pids=()

# A store, lock directory and event log of this checkout's own, so that
# several checkouts on one machine never share podman state.  The runtime
# flags are the ones this kind of machine needs (see README, Deployment).
mkdir -p "$cache/tmp"
cat > "$cache/containers.conf" <<EOF
[engine]
lock_type = "file"
EOF
pod() {
    CONTAINERS_CONF=$cache/containers.conf podman --root "$cache/storage" --runroot "$cache/run" \
        --tmpdir "$cache/tmp" --storage-driver overlay --events-backend file \
        --runtime runc --cgroup-manager cgroupfs "$@"
}
ulimits=(--ulimit nofile=20000:20000 --ulimit nproc=1000:1000)
# util [OPTION...] IMAGE COMMAND...: a one-off command in a container.
util() {
    pod run --rm --network host --no-healthcheck "${ulimits[@]}" "$@"
}

# Only what this script started: its containers carry $label.
remove_containers() {
    local ids
    ids=$(pod ps -aq --filter "label=$label" 2>/dev/null)
    [ -z "$ids" ] || pod rm -f -t 0 $ids >/dev/null 2>&1
}
cleanup() {
    remove_containers
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    sl_svc_stop_all
    [ -n "${SL_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
command -v podman >/dev/null && remove_containers

N=${N:-3000}         # events per generator burst
USERS=${USERS:-20}   # users the segment flow changes

# ------------------------------------------------------------ the image
t_case "a Debian bookworm base from debootstrap, imported as debian:bookworm and debian:bookworm-slim"
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null || ! command -v runc >/dev/null; then
    t_skip "podman, debootstrap or runc is missing (tests/harness/install-deps.sh installs them)"
elif [ "$(id -u)" != 0 ]; then
    t_skip "debootstrap and podman's store here need root"
else
    start=$(date +%s)
    if pod image exists debian:bookworm; then
        echo "    (the base is cached in $cache)"
    else
        rm -rf "$cache/rootfs"
        debootstrap --variant=minbase bookworm "$cache/rootfs" > "$work/debootstrap.log" 2>&1
        rc=$?
        [ "$rc" -eq 0 ] || tail -20 "$work/debootstrap.log"
        t_check "$rc" -eq 0 "debootstrap --variant=minbase bookworm"
        tar -C "$cache/rootfs" -c . | pod import - debian:bookworm > "$work/import.log" 2>&1
        t_check $? -eq 0 "podman import as debian:bookworm"
        rm -rf "$cache/rootfs"
    fi
    pod tag debian:bookworm debian:bookworm-slim
    t_check "$(pod image inspect --format '{{.Id}}' debian:bookworm-slim 2>/dev/null)" = \
        "$(pod image inspect --format '{{.Id}}' debian:bookworm 2>/dev/null)" "debian:bookworm-slim is the same base"
    t_check "$(util debian:bookworm sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>&1)" = bookworm \
        "the base runs and is bookworm ($(($(date +%s) - start)) s)"
fi
t_end

t_case "podman builds docker/Dockerfile from the repository"
if ! pod image exists debian:bookworm 2>/dev/null; then
    t_check no = base "the base image exists (see the case above)"
else
    start=$(date +%s)
    # --format docker keeps the HEALTHCHECK (the OCI format has none);
    # --pull=never: the base is the local one, never a registry's.
    # The build downloads Swagger UI over HTTPS: with this machine's CA
    # bundle, which also trusts a TLS-intercepting proxy if there is one.
    ca=${CURL_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
    (cd "$SL_TOP" && pod build --network host "${ulimits[@]}" --format docker --pull=never \
        -v "$ca:/run/build-ca.crt:ro" --build-arg SWAGGER_UI_CACERT=/run/build-ca.crt \
        -f docker/Dockerfile -t "$image" .) > "$work/build.log" 2>&1
    rc=$?
    [ "$rc" -eq 0 ] || tail -40 "$work/build.log"
    t_check "$rc" -eq 0 "podman build -f docker/Dockerfile ($(($(date +%s) - start)) s, $(grep -c -- '--> Using cache' "$work/build.log") steps from the cache)"
    # Layers of earlier sources stay cached for a day, then go.
    pod image prune -f --filter until=24h > /dev/null 2>&1
    size=$(pod image inspect --format '{{.Size}}' "$image" 2>/dev/null)
    t_check "${size:-0}" -gt 0 "image size: $((${size:-0} / 1000000)) MB ($image on the debootstrap base)"
    t_check "$(pod image inspect --format '{{.Config.User}}' "$image" 2>/dev/null)" = sluice "the image runs as user sluice"
    t_check "$(pod image inspect --format '{{json .Config.Healthcheck.Test}}' "$image" 2>/dev/null)" = \
        '["CMD-SHELL","curl -fsS http://127.0.0.1:8080/healthz || exit 1"]' "the image keeps its HEALTHCHECK"
    # The modules the repository builds are the ones installed.
    want=$(cd "$SL_TOP/modules" && for m in */Makefile.inc; do echo "${m%/*}.so"; done | sort | tr '\n' ' ')
    got=$(util --entrypoint ls "$image" /usr/lib/sluice 2>&1 | sort | tr '\n' ' ')
    t_check "$got" = "$want" "the image holds every module of the tree: $got"
fi
t_end
pod image exists "$image" 2>/dev/null || { t_exit; exit 1; }

# ------------------------------------------------------------ services
. "$SL_TOP/tests/harness/flow.sh"
flow_hup() { pod kill --signal HUP "sluice-$1" > /dev/null; }
flow_services || { t_exit; exit 1; }

pgdsn=$SL_PG_DSN
chdb=containers
clickhouse-client --host 127.0.0.1 --port "$SL_CH_TCP_PORT" --query "CREATE DATABASE $chdb"

# Spans from every role go to a recording OTLP receiver.
otlp_port=$(t_free_port)
python3 "$SL_TOP/tests/harness/otlp_receiver.py" "$otlp_port" "$work/spans.jsonl" "$work/otlp.control" &
pids+=($!)

# role_conf ROLE [SECTION:KEY=VALUE...]: the image's /etc/sluice/ROLE.conf,
# pointed at this run, in $work/etc/ROLE/ (mounted as the container's
# /etc/sluice).  The harness's servers have no passwords and ClickHouse
# only its default user; everything else stays as the image ships it.
role_conf() {
    local role=$1
    shift
    mkdir -p "$work/etc/$role"
    conf_of[$role]=$work/etc/$role/$role.conf
    port[$role]=$(t_free_port)
    util --entrypoint cat "$image" "/etc/sluice/$role.conf" > "$work/$role.image.conf"
    python3 "$SL_TOP/tests/harness/conf_local.py" "$work/$role.image.conf" "${conf_of[$role]}" \
        "core:listen=127.0.0.1:${port[$role]}" \
        "postgres:dsn=$pgdsn" "postgres:password_file=" \
        "redis:url=$SL_REDIS_URL/0" "redis:password_file=" \
        "clickhouse:url=$SL_CH_URL" "clickhouse:user=default" "clickhouse:password_file=" \
        "clickhouse:database=$chdb" \
        "tracing:endpoint=http://127.0.0.1:$otlp_port/v1/traces" \
        "module aggregator:rdkafka.session.timeout.ms=6000" \
        "module aggregator:rdkafka.heartbeat.interval.ms=500" \
        "$@"
}

# ct_args ROLE [NETWORK]: how every sluiced of the image runs here, the
# way a deployment runs it: host network (or NETWORK), the image's user, a
# read-only root and a tmpfs /tmp, ROLE's file as /etc/sluice; the image's
# health check runs when asked (podman's timers need systemd).
# start_ct ROLE starts one in the background (container sluice-ROLE, its
# log in $work/ROLE.log) and waits until it answers.
ct_args() {
    echo --network "${2:-host}" --read-only --read-only-tmpfs=false --tmpfs /tmp:rw,size=16m,mode=1777 \
        --health-interval disable --label "$label" -v "$work/etc/$1:/etc/sluice:ro"
}
start_ct() {
    local role=$1
    pod run -d --name "sluice-$role" $(ct_args "$role") "${ulimits[@]}" \
        --log-driver k8s-file --log-opt "path=$work/$role.log" \
        "$image" -c "/etc/sluice/$role.conf" > /dev/null 2> "$work/$role.run.err" || {
        cat "$work/$role.run.err"
        return 1
    }
    t_wait_http "http://127.0.0.1:${port[$role]}/healthz" 30
}

roles=(aggregator outbox segments generator)

t_case "the broker role: the image's broker.conf, its embedded Kafka on the host network"
role_conf broker
start_ct broker
t_check $? -eq 0 "broker container up on ${port[broker]}"
bootstrap() { pod exec sluice-broker cat /tmp/sluice-bootstrap 2>/dev/null; }
t_wait_until 30 '[ -n "$(bootstrap)" ]'
kafka=$(bootstrap)
t_check -n "$kafka" "the broker wrote its address in its tmpfs /tmp: $kafka"
t_wait_until 60 "ready broker"
t_check "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[broker]}/readyz")" = 200 "broker ready"
t_check "$(kcat -L -b "$kafka" -t page_views 2>/dev/null | grep -c 'partition ')" = 64 "kcat sees page_views with its 64 partitions"
t_end

t_case "every role runs from the image's own /etc/sluice, as the non-root user on a read-only root"
for r in "${roles[@]}"; do
    role_conf "$r" "kafka:brokers=$kafka"
    pod run --rm $(ct_args "$r") "${ulimits[@]}" "$image" -t -c "/etc/sluice/$r.conf" > "$work/$r.t" 2>&1
    t_check $? -eq 0 "$r.conf passes sluiced -t in the container: $(tail -1 "$work/$r.t")"
done
for r in aggregator segments outbox; do
    pod run --rm $(ct_args "$r") "${ulimits[@]}" "$image" --init-schema -c "/etc/sluice/$r.conf" >> "$work/init.log" 2>&1
    t_check $? -eq 0 "$r: sluiced --init-schema in a container exits 0"
done
for r in "${roles[@]}"; do
    start_ct "$r"
    t_check $? -eq 0 "$r container up on ${port[$r]}"
done
for r in broker "${roles[@]}"; do
    t_wait_until 60 "ready $r"
    t_check "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[$r]}/readyz")" = 200 "$r ready"
done
sluice_uid=$(util --entrypoint id "$image" -u sluice 2>/dev/null)
for r in broker "${roles[@]}"; do
    uid=$(pod exec "sluice-$r" awk '/^Uid:/ { print $2 }' /proc/1/status 2>/dev/null)
    t_check "${uid:-none}" = "${sluice_uid:-?}" "$r: sluiced runs as sluice (uid ${uid:-none}), not root"
    t_check "$(pod inspect --format '{{.HostConfig.ReadonlyRootfs}}' "sluice-$r")" = true "$r: the root filesystem is read-only"
done
t_check "$(pod exec sluice-generator sh -c 'touch /etc/sluice-w 2>&1; echo $?' | tail -1)" != 0 "nothing outside /tmp is writable"
gbase=http://127.0.0.1:${port[generator]}
sbase=http://127.0.0.1:${port[segments]}
obase=http://127.0.0.1:${port[outbox]}
curl -s -o /dev/null -X POST "$gbase/generator/config/speed?eps=0"
t_end

t_case "the image's HEALTHCHECK passes with sluiced on the image's port 8080"
# In a network of its own, where 8080 is free: the broker role (it needs
# no server) listening where the image's HEALTHCHECK looks.
mkdir -p "$work/etc/hc"
python3 "$SL_TOP/tests/harness/conf_local.py" "$work/broker.image.conf" "$work/etc/hc/broker.conf" "core:listen=127.0.0.1:8080"
pod run -d --name sluice-hc $(ct_args hc none) "${ulimits[@]}" "$image" -c /etc/sluice/broker.conf > "$work/hc.run" 2>&1
t_check $? -eq 0 "started: $(tail -1 "$work/hc.run")"
t_wait_until 60 'pod healthcheck run sluice-hc'
pod healthcheck run sluice-hc > "$work/health.out" 2>&1
t_check $? -eq 0 "podman healthcheck run: healthy $(head -c 80 "$work/health.out")"
pod stop -t 30 sluice-hc > /dev/null 2>&1
t_check "$(pod inspect --format '{{.State.ExitCode}}' sluice-hc 2>/dev/null)" = 0 "stopped, exit 0"
t_end

t_case "the compose file's example commands answer (on these ports)"
# Its header names each role by the host port the file publishes it on
# (the services built on the x-sluiced anchor; others may use 8080 too).
declare -A published
while read -r svc hostport; do
    published[$hostport]=$svc
done < <(awk '/^  [a-z-]+:$/ { svc = substr($1, 1, length($1) - 1); sl = 0 }
    /^    <<: \*sluiced$/ { sl = 1 }
    sl && /^      - ".*:8080"$/ { n = split($0, f, ":"); print svc, f[n - 1] }' "$SL_TOP/docker/docker-compose.yml")
t_check "${#published[@]}" = 4 "the compose file publishes the four roles: ${published[*]}"
n=0
while read -r cmd; do
    hp=$(echo "$cmd" | grep -o 'localhost:[0-9]*' | head -1)
    role=${published[${hp#localhost:}]:-}
    [ -n "$role" ] || continue
    cmd=${cmd//$hp/127.0.0.1:${port[$role]}}
    code=$(eval "${cmd/curl -s/curl -s -o /dev/null -w '%{http_code}'}")
    t_check "${code:0:1}" = 2 "$role: ${cmd#curl -s } answered $code"
    n=$((n + 1))
done < <(sed -n 's/^#   \(curl [^#]*\).*/\1/p' "$SL_TOP/docker/docker-compose.yml")
t_check "$n" -ge 3 "$n example commands in the header"
t_end

t_case "the image serves /docs (Swagger UI) and its aggregator reads analytics.events"
for f in "" /swagger-ui.css /swagger-ui-bundle.js /favicon-32x32.png /init.js; do
    t_check "$(curl -s -o /dev/null -w '%{http_code}' "$sbase/docs$f")" = 200 "segments: GET /docs$f answers 200"
done
t_check "$(curl -s "$sbase/docs/swagger-ui-bundle.js" | head -c 100000 | grep -c 'SwaggerUIBundle')" -ge 1 \
    "the bundle is Swagger UI's, from the image's docs_dir"
# One analytics event into the topic every shipped aggregator config reads.
abase=http://127.0.0.1:${port[aggregator]}
an_from=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)
an_to=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
printf '{"id":"ct-analytics-1","timestamp":"%s","eventType":"ct_signup","userId":"u-ct","properties":{}}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%S.000Z)" | kcat -P -b "$kafka" -t analytics.events 2> "$work/kcat-an.err"
t_check $? -eq 0 "kcat produced one event to analytics.events: $(head -c 200 "$work/kcat-an.err")"
an_count() {
    curl -s "$abase/aggregator/analytics?from=$an_from&to=$an_to&event_type=ct_signup" |
        python3 -c 'import json,sys; print([r["events"] for r in json.load(sys.stdin)["by_type"] if r["event_type"] == "ct_signup"])' 2>/dev/null
}
t_wait_until 60 '[ "$(an_count)" = "[1]" ]'
t_check "$(an_count)" = "[1]" "GET /aggregator/analytics counts it: $(curl -s "$abase/aggregator/analytics?from=$an_from&to=$an_to&event_type=ct_signup" | head -c 300)"
t_end

# The flow of system.sh; its SIGHUPs go through podman kill.
role_flow containers C

t_case "containers: every role exported spans to the OTLP endpoint of its file"
for r in "${roles[@]}"; do
    t_check "$(grep -c "\"sluice-$r\"" "$work/spans.jsonl" 2>/dev/null)" -ge 1 "spans of service sluice-$r received"
done
t_end

t_case "podman stop drains every role, each exits 0 within the compose stop_grace_period"
grace=$(sed -n 's/^ *stop_grace_period: *\([0-9]*\)s$/\1/p' "$SL_TOP/docker/docker-compose.yml" | head -1)
t_check "${grace:-0}" -gt 0 "the compose grace period: ${grace:-none} s"
# podman stop sends SIGTERM, then SIGKILL once the grace period is over:
# exit 0 is a drain finished in time (a kill would be 137).  The generator
# is stopped while it sends, so that its drain has deliveries to wait for.
d=$(delivered)
curl -s -o /dev/null -X POST "$gbase/generator/config/speed?eps=400"
t_wait_until 30 "[ \"\$(delivered)\" -gt ${d:-0} ]"
t_check "$(delivered)" -gt "${d:-0}" "the generator is sending ($d -> $(delivered) delivered)"
for r in generator segments outbox aggregator broker; do
    pod stop -t "${grace:-30}" "sluice-$r" > /dev/null 2>&1
    t_check "$(pod inspect --format '{{.State.ExitCode}}' "sluice-$r" 2>/dev/null)" = 0 "$r exited 0"
    t_check "$(grep -c 'shutting down: draining' "$work/$r.log")" -ge 1 "$r logged its drain"
done
t_end

t_exit
