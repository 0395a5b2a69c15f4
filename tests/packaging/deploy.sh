#!/usr/bin/env bash
# The deployment files, checked with the tools that read them, since no
# Docker engine, Prometheus server or Grafana runs here (the image itself
# is built and run with podman by tests/integration/container.sh):
#   docker/docker-compose.yml  docker-compose config, and every service,
#                              port, config and file it names exists; data
#                              volumes where each image keeps its data;
#                              health checks that an image's init-time
#                              server cannot pass; example commands that
#                              are documented routes
#   docker/Dockerfile          bookworm stages, non-root, make install,
#                              every COPY source present
#   docker/conf/*.conf         sluiced -t (for the modules this tree has)
#   contrib/prometheus/        promtool check config / check rules / test rules;
#                              one setup (all-in-one or roles) per file
#   contrib/grafana/           valid JSON, a row per module, every query valid
#                              PromQL, provisioned by the compose file
. "$(dirname "$0")/../lib.sh"

t_scratch
compose=$SL_TOP/docker/docker-compose.yml
# Debian's docker-compose depends on python3-yaml: use that interpreter.
py=/usr/bin/python3
roles="generator aggregator segments outbox"

t_case "docker-compose config accepts the compose file"
if ! command -v docker-compose >/dev/null; then
    t_skip "docker-compose is not installed (tests/harness/install-deps.sh installs it)"
else
    docker-compose -f "$compose" config > "$work/compose.yml" 2> "$work/compose.err"
    rc=$?
    cat "$work/compose.err"
    t_check "$rc" -eq 0 "docker-compose config"
    t_check "$(docker-compose -f "$compose" config --services 2>/dev/null | sort | tr '\n' ' ')" = \
        "aggregator clickhouse generator grafana jaeger kafka kafka-init kafka-ui outbox postgres prometheus redis segments " \
        "services: Kafka, its topic init, its UI, PostgreSQL, Redis, ClickHouse, Prometheus, Grafana, Jaeger, one sluiced per role"
fi
t_end

# q PYTHON-EXPR: evaluated over the resolved compose file `c` (and os);
# P(service) lists its ports as (host_ip, published, target), whichever
# form docker-compose printed them in.
q() {
    "$py" -c 'import os, sys, yaml
def P(svc):
    out = []
    for p in svc.get("ports", []):
        if isinstance(p, dict):
            out.append((str(p.get("host_ip", "")), int(p["published"]), int(p["target"])))
        else:
            f = str(p).split("/")[0].split(":")
            out.append((":".join(f[:-2]), int(f[-2]), int(f[-1])))
    return out
c = yaml.safe_load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$work/compose.yml" "$1"
}

t_case "the compose file: real Kafka in KRaft mode, health checks, and the files it names exist"
t_check "$(q 'c["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]')" = "broker,controller" "Kafka runs KRaft (broker,controller)"
t_check "$(q '"KAFKA_ZOOKEEPER_CONNECT" in c["services"]["kafka"]["environment"]')" = False "no ZooKeeper"
t_check "$(q '[s for s, v in c["services"].items() if s != "kafka-init" and "healthcheck" not in v]')" = "[]" \
    "every long-running service has a health check"
for r in $roles; do
    t_check "$(q "' '.join(c['services']['$r']['healthcheck']['test'])")" = "CMD curl -fsS http://127.0.0.1:8080/readyz" \
        "$r: healthy when /readyz answers 200"
    t_check "$(q "c['services']['$r']['image']")" = "sluice:local" "$r: the sluice image"
    t_check "$(q "c['services']['$r']['build']['dockerfile']")" = "docker/Dockerfile" "$r: built from docker/Dockerfile"
    conf=$(q "c['services']['$r']['command'][-1]")
    t_check "$conf" = "/etc/sluice/$r.conf" "$r runs its role file"
    t_check -f "$SL_TOP/docker/conf/$r.conf" "docker/conf/$r.conf exists"
    t_check "$(q "[p[2] for p in P(c['services']['$r'])]")" = "[8080]" "$r: container port 8080"
    t_check "$(grep -c '^listen = 0.0.0.0:8080$' "$SL_TOP/docker/conf/$r.conf" 2>/dev/null)" = 1 \
        "docker/conf/$r.conf listens on 8080"
done
t_check "$(q 'len([p[1] for s in c["services"].values() for p in P(s)]) == len({p[1] for s in c["services"].values() for p in P(s)})')" = True \
    "no host port published twice"
# Bind mounts: every host path is in the repository.
q '"\n".join(v.split(":")[0] for s in c["services"].values() for v in s.get("volumes", []) if v.startswith("/"))' > "$work/binds"
t_check "$(wc -l < "$work/binds")" -ge 4 "bind mounts found: $(wc -l < "$work/binds")"
while read -r b; do
    t_check -e "$b" "bind-mounted $b exists"
    case $b in "$SL_TOP"/*) ;; *) t_check "$b" = "under $SL_TOP" "bind mount inside the repository" ;; esac
done < "$work/binds"
# Services the sluiced configs and Prometheus name are compose services.
for host in $(sed -n 's/.*\(host=\|\/\/\)\([a-z-]*\)[ :].*/\2/p' "$SL_TOP"/docker/conf/*.conf | sort -u) \
    $(sed -n 's/^brokers = \([a-z-]*\):.*/\1/p' "$SL_TOP"/docker/conf/*.conf | sort -u); do
    t_check "$(q "'$host' in c['services']")" = True "docker/conf names service $host"
done
for target in $(grep -o '"[a-z-]*:[0-9]*"' "$SL_TOP/docker/prometheus.yml" | tr -d '"'); do
    t_check "$(q "'${target%:*}' in c['services']")" = True "Prometheus target $target is a service"
    t_check "${target#*:}" = 8080 "Prometheus scrapes $target on the sluiced port"
done
t_end

t_case "the compose file: data in its volumes, health checks an init-time server cannot pass"
# Where each stateful image keeps its data, from the image's documentation:
# the variable that moves it, and the place without one.  A named volume
# mounted anywhere else keeps nothing when the container is recreated.
q '"\n".join("%s %s %s" % (n, v.split(":")[1], {
        "apache/kafka": lambda e: e.get("KAFKA_LOG_DIRS", "/tmp/kafka-logs"),
        "postgres": lambda e: e.get("PGDATA", "/var/lib/postgresql/data"),
        "redis": lambda e: "/data",
        "clickhouse/clickhouse-server": lambda e: "/var/lib/clickhouse",
    }.get(s["image"].rsplit(":", 1)[0], lambda e: "unknown-for-" + s["image"])(s.get("environment") or {}))
    for n, s in c["services"].items() for v in s.get("volumes", []) if v.split(":")[0] in c.get("volumes", {}))' > "$work/datadirs"
t_check "$(wc -l < "$work/datadirs")" -ge 4 "named volumes mounted: $(wc -l < "$work/datadirs")"
while read -r svc target datadir; do
    t_check "$target" = "$datadir" "$svc: its volume is mounted at its data directory $datadir"
done < "$work/datadirs"
t_check "$(q 'sorted(n for n, s in c["services"].items() if "healthcheck" in s and s["image"].rsplit(":", 1)[0] in ("apache/kafka", "postgres", "redis", "clickhouse/clickhouse-server"))')" = \
    "$(awk '{ print $1 }' "$work/datadirs" | sort -u | "$py" -c 'import sys; print(sorted(sys.stdin.read().split()))')" \
    "every stateful service keeps its data in a named volume"
# The PostgreSQL and ClickHouse entrypoints run a server of their own while
# they initialise (the database, the user): PostgreSQL's on its Unix socket
# only, ClickHouse's on 127.0.0.1 only.  A health check must reach the
# server where only the real one listens.
pg_check=$(q '" ".join(c["services"]["postgres"]["healthcheck"]["test"][1:])')
t_check -n "$(echo "$pg_check" | sed -n 's/.*pg_isready.* -h \([^ /][^ ]*\).*/\1/p')" \
    "PostgreSQL's health check goes over TCP (pg_isready -h HOST): $pg_check"
ch_check=$(q '" ".join(c["services"]["clickhouse"]["healthcheck"]["test"][1:])')
ch_hosts=$(echo "$ch_check" | grep -o '://[^:/ ]*' | cut -c4- | sort -u | tr '\n' ' ')
t_check -n "$ch_hosts" "ClickHouse's health check names a host: $ch_check"
t_check "$(echo " $ch_hosts" | grep -cE ' (127\.[0-9.]*|localhost|\[?::1\]?) ')" = 0 \
    "ClickHouse's health check is not on loopback, where the init-time server listens (hosts: $ch_hosts)"
# sluiced needs no writable root (container.sh runs every role that way).
for r in $roles; do
    t_check "$(q "c['services']['$r'].get('read_only')")" = True "$r: read-only root filesystem"
    t_check "$(q "c['services']['$r'].get('tmpfs')")" = "['/tmp']" "$r: a tmpfs /tmp"
done
t_end

t_case "the compose file's example commands are routes the roles serve"
# Each `curl` in the header comment, by the port it names: the segments
# API against its OpenAPI document (method, path, body keys), the other
# roles against the routes their module registers.
sed -n 's/^#   \(curl [^#]*\).*/\1/p' "$compose" > "$work/examples"
t_check "$(wc -l < "$work/examples")" -ge 3 "examples: $(wc -l < "$work/examples")"
while read -r ex; do
    hp=$(echo "$ex" | grep -o 'localhost:[0-9]*' | head -1)
    svc=$(q "' '.join(s for s, v in c['services'].items() if ${hp#localhost:} in [p[1] for p in P(v)])")
    path=$(echo "$ex" | sed -n "s|.*$hp\\([^ ]*\\).*|\\1|p")
    method=$(echo "$ex" | sed -n 's/.*-X \([A-Z]*\).*/\1/p')
    body=$(echo "$ex" | sed -n "s/.*-d '\\([^']*\\)'.*/\\1/p")
    if [ "$svc" != segments ]; then
        route=${path#/"$svc"/}
        t_check "$(grep -lE "route[a-z_]*\(.*\"$route\"" "$SL_TOP/modules/$svc"/*.c 2>/dev/null | wc -l)" -ge 1 \
            "${svc:-no service}: $ex names a route modules/$svc registers ($route)"
        continue
    fi
    "$py" "$SL_TOP/tests/harness/openapi_call.py" "$SL_TOP/modules/segments/openapi.json" \
        "${method:-GET}" "$path" "$body" > "$work/ex.out" 2>&1
    t_check $? -eq 0 "segments: $ex: $(tail -1 "$work/ex.out")"
done < "$work/examples"
t_end

t_case "the Dockerfile: bookworm stages, make install, non-root user, COPY sources present"
df=$SL_TOP/docker/Dockerfile
t_check "$(grep -c '^FROM debian:bookworm' "$df")" = 2 "two stages on Debian bookworm"
t_check "$(grep -c 'make install DESTDIR=' "$df")" = 1 "installed with make install"
t_check "$(grep '^USER ' "$df" | awk '{print $2}')" = sluice "runs as user sluice"
t_check "$(grep -c '^HEALTHCHECK' "$df")" = 1 "image health check (/healthz)"
for src in $(awk '$1 == "COPY" && $2 !~ /^--from/ { for (i = 2; i < NF; i++) print $i }' "$df"); do
    t_check -e "$SL_TOP/$src" "COPY source $src exists"
done
# The runtime packages exist in bookworm (the apt lists here are bookworm's).
for p in $(sed -n '/^FROM debian:bookworm-slim/,$p' "$df" | grep -o 'lib[a-z0-9.-]*[0-9]' | sort -u); do
    t_check -n "$(apt-cache show "$p" 2>/dev/null | head -1)" "runtime package $p known to apt"
done
# Every library sluiced and its modules link directly comes from one of
# the runtime stage's packages (libc6 is in every image; the sanitizer
# runtimes only in a test build).
runtime=$(sed -n '/^FROM debian:bookworm-slim/,$p' "$df" | grep -o 'lib[a-z0-9.-]*[0-9]' | sort -u | tr '\n' ' ')
for f in "$SLUICED" "$SL_BUILD"/_modules/*.so; do
    readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'
done | sort -u > "$work/needed"
while read -r so; do
    path=$(ldconfig -p | awk -v s="$so" '$1 == s && /x86-64/ { print $NF; exit }')
    pkg=$(dpkg -S "/usr$path" 2>/dev/null || dpkg -S "$path" 2>/dev/null)
    pkg=${pkg%%:*}
    case $pkg in libc6 | gcc-*-base | libasan* | libubsan*) continue ;; esac
    t_check "$(echo " $runtime" | grep -c " $pkg ")" = 1 "$so ($pkg) installed by the runtime stage"
done < "$work/needed"
t_end

t_case "docker/conf/*.conf pass sluiced -t (modules this tree builds)"
for f in "$SL_TOP"/docker/conf/*.conf; do
    name=$(basename "$f")
    missing=""
    for m in $(sed -n 's/^\[module \([a-z]*\).*/\1/p' "$f"); do
        # A module whose source is not in this tree yet is checked once it
        # is; one whose source is here must be built.
        [ -d "$SL_TOP/modules/$m" ] || missing="$missing $m"
    done
    if [ -n "$missing" ]; then
        echo "    (not checked: $name needs modules not in this tree:$missing)"
        continue
    fi
    # The secrets are compose secrets at run time: stand-ins here.
    mkdir -p "$work/secrets"
    for s in postgres clickhouse redis; do echo "stand-in-$s" > "$work/secrets/${s}_password"; done
    sed -e "s|^modules_dir = .*|modules_dir = $SL_BUILD/_modules|" \
        -e "s|/run/secrets/|$work/secrets/|" "$f" > "$work/$name"
    "$SLUICED" -t -c "$work/$name" > "$work/t.out" 2>&1
    rc=$?
    cat "$work/t.out"
    t_check "$rc" -eq 0 "$name"
done
t_end

t_case "the compose file publishes only what users call, on loopback, with no password in a file"
# Published ports: the four roles' APIs, Grafana, Prometheus and the Jaeger
# UI, each bound to ${SLUICE_BIND:-127.0.0.1}; nothing of Kafka, PostgreSQL,
# Redis, ClickHouse.
t_check "$(q 'sorted(s for s, v in c["services"].items() if v.get("ports"))')" = \
    "['aggregator', 'generator', 'grafana', 'jaeger', 'kafka-ui', 'outbox', 'prometheus', 'segments']" "only the APIs, Grafana, Prometheus, the Jaeger UI and the Kafka UI are published"
t_check "$(q 'sorted({p[0] for s in c["services"].values() for p in P(s)})')" = "['127.0.0.1']" \
    "every published port is bound to 127.0.0.1 by default"
t_check "$(grep -c 'SLUICE_BIND:-127.0.0.1' "$compose")" -ge 8 "the bind address is one variable (SLUICE_BIND)"
# No password in the compose file, the role files or the image's inputs.
t_check "$(grep -niE '(password|passwd|secret)[a-z_]*["]?[:=] *["]?[A-Za-z0-9]' "$compose" | grep -vE '_FILE|password_file|secrets/|requirepass|AUTH' | wc -l)" = 0 \
    "no password written in docker-compose.yml"
t_check "$(grep -nE '^password *=|^dsn *=.*password *=|^url *=.*://[^/@]*@|^rdkafka\.[a-z.]*password *=' "$SL_TOP"/docker/conf/*.conf | wc -l)" = 0 \
    "no password in docker/conf/*.conf (dsn, url or password =)"
t_check "$(grep -c '^password_file = /run/secrets/' "$SL_TOP/docker/conf/sluice.conf")" = 3 \
    "sluice.conf reads the PostgreSQL, Redis and ClickHouse passwords from compose secrets"
t_check "$(q 'sorted(c.get("secrets", {}))')" = "['clickhouse_password', 'grafana_password', 'kafka_ui_password', 'postgres_password', 'redis_password']" \
    "five compose secrets"
t_check "$(q 'all(v["file"].startswith(os.path.join(os.path.dirname(sys.argv[1]), "")) or "secrets" in v["file"] for v in c["secrets"].values())')" = True \
    "secrets are files in docker/secrets/"
t_check "$(git -C "$SL_TOP" ls-files docker/secrets | wc -l)" = 0 "no secret file tracked by git"
t_check "$(grep -cx 'docker/secrets' "$SL_TOP/docker/Dockerfile.dockerignore")" = 1 "docker/secrets is out of the image's build context"
t_check "$(grep -ciE 'password|secret' "$SL_TOP/docker/Dockerfile")" = 0 "the Dockerfile sets no password"
t_check "$(q 'c["services"]["postgres"]["environment"].get("POSTGRES_PASSWORD_FILE")')" = /run/secrets/postgres_password "PostgreSQL reads its password from the secret"
# Grafana: a login, no anonymous access, no sign-up.
t_check "$(q 'c["services"]["grafana"]["environment"].get("GF_AUTH_ANONYMOUS_ENABLED")')" = false "Grafana: anonymous access off"
t_check "$(q 'c["services"]["grafana"]["environment"].get("GF_USERS_ALLOW_SIGN_UP")')" = false "Grafana: no sign-up"
t_check "$(q 'c["services"]["grafana"]["environment"].get("GF_SECURITY_ADMIN_PASSWORD__FILE")')" = /run/secrets/grafana_password "Grafana: admin password from the secret"
t_end

t_case "Docker: /docs served from assets in the image, a Kafka UI behind a login, the analytics topic read"
# /docs: the segments configs name a docs_dir the Dockerfile fills with
# every asset the module serves, from a download pinned by its checksum.
assets=$(sed -n 's/^ *{ "\([a-z0-9.-]*\)", "[a-z]*\/[a-z]*" },$/\1/p' "$SL_TOP/modules/segments/openapi.c" | sort)
t_check "$(echo $assets)" = "favicon-32x32.png swagger-ui-bundle.js swagger-ui.css" "the module serves three assets from docs_dir"
for f in segments.conf sluice.conf; do
    dir=$(sed -n 's/^docs_dir = //p' "$SL_TOP/docker/conf/$f")
    t_check -n "$dir" "docker/conf/$f sets docs_dir ($dir)"
    t_check "$(grep -c "mkdir -p /out$dir\b" "$df")" = 1 "the Dockerfile creates $dir in the image"
    t_check "$(grep -c -- "-C /out$dir " "$df")" = 1 "and unpacks Swagger UI there"
done
for a in $assets; do
    t_check "$(grep -c "package/$a\b" "$df")" = 1 "the Dockerfile unpacks $a"
done
t_check "$(grep -cE '^ARG SWAGGER_UI_SHA256=[0-9a-f]{64}$' "$df")/$(grep -c 'sha256sum -c' "$df")" = 1/1 "the download is checked against a pinned SHA-256"
# Kafka UI: on the compose Kafka, published like the other UIs, a login
# whose password is a compose secret.
t_check "$(q 'c["services"]["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"]')" = kafka:9092 "Kafka UI reads the compose Kafka"
t_check "$(q 'P(c["services"]["kafka-ui"])')" = "[('127.0.0.1', 8086, 8086)]" "Kafka UI on 127.0.0.1:8086 by default (its own port inside too)"
t_check "$(q 'c["services"]["kafka-ui"]["environment"]["AUTH_TYPE"]')" = LOGIN_FORM "Kafka UI needs a login"
t_check "$(q '[(x["source"], x["target"]) for x in c["services"]["kafka-ui"]["secrets"]]')" = "[('kafka_ui_password', 'spring.security.user.password')]" \
    "its password is the kafka_ui_password secret, read as a Spring property"
t_check "$(q 'c["services"]["kafka-ui"]["environment"]["SPRING_CONFIG_IMPORT"]')" = "optional:configtree:/run/secrets/" "which Spring reads from /run/secrets"
# The analytics topic: every aggregator config subscribes to analytics.events
# (but not to its dead letters) and routes it to the analytics handler; the
# topic exists wherever the config runs.
for f in conf/sluice.conf conf/aggregator.conf docker/conf/sluice.conf docker/conf/aggregator.conf; do
    t_check "$("$py" - "$SL_TOP/$f" <<'PY'
import re, sys
conf = dict(l.split(" = ", 1) for l in open(sys.argv[1]).read().splitlines() if " = " in l and not l.startswith("#"))
def matches(pat, topic):
    return re.search(pat, topic) is not None if pat.startswith("^") else pat == topic
subs = [t.strip() for t in conf["topics"].split(",")]
routes = [v for k, v in conf.items() if k.startswith("route.")]
sub = any(matches(p, "analytics.events") for p in subs) and not any(matches(p, "analytics.events.dlq") for p in subs)
route = [r for r in routes if matches(r.split(" -> ")[0], "analytics.events")]
print(sub and len(route) > 0 and route[0].rstrip().endswith(", analytics"))
PY
)" = True "$f reads analytics.events (not its .dlq) into the analytics handler"
done
for f in conf/sluice.conf conf/broker.conf; do
    t_check "$(grep -c '^embedded_topics = .*analytics.events:[0-9]' "$SL_TOP/$f")" = 1 "$f's embedded broker has analytics.events"
done
t_check "$(q '" ".join(c["services"]["kafka-init"]["command"])' | grep -o -- '--topic [a-z_.]*' | sort | tr '\n' ' ')" = \
    "--topic analytics.events --topic analytics.events.dlq --topic page_views --topic segment_events " \
    "kafka-init creates analytics.events and its dead-letter topic (the broker creates none itself)"
t_end

t_case "Prometheus: scrape configs and alert rules pass promtool"
for cfg in contrib/prometheus/prometheus.yml contrib/prometheus/all-in-one.yml docker/prometheus.yml; do
    # The compose file mounts the rules beside docker/prometheus.yml.
    mkdir -p "$work/prom"
    cp "$SL_TOP/$cfg" "$work/prom/prometheus.yml"
    cp "$SL_TOP/contrib/prometheus/sluice.rules.yml" "$work/prom/"
    promtool check config "$work/prom/prometheus.yml" > "$work/p.out" 2>&1
    rc=$?
    cat "$work/p.out"
    t_check "$rc" -eq 0 "promtool check config $cfg"
done
# One setup per file: SluicedDown fires for every target that does not
# answer, so a file scraping both the all-in-one and the roles of conf/
# alerts forever for whichever set is not running.
aio=$(sed -n 's/^listen = //p' "$SL_TOP/conf/sluice.conf")
role_targets=$(for r in broker generator aggregator segments outbox; do
    sed -n 's/^listen = //p' "$SL_TOP/conf/$r.conf"
done | sort | tr '\n' ' ')
for cfg in prometheus.yml all-in-one.yml; do
    targets=$(grep -o '"[0-9.]*:[0-9]*"' "$SL_TOP/contrib/prometheus/$cfg" | tr -d '"' | sort | tr '\n' ' ')
    t_check "$targets" = "$aio " -o "$targets" = "$role_targets" "contrib/prometheus/$cfg scrapes one setup: $targets"
done
t_check "$(cat "$SL_TOP"/contrib/prometheus/{prometheus,all-in-one}.yml | grep -o '"[0-9.]*:[0-9]*"' | sort -u | wc -l)" = \
    "$(echo "$aio $role_targets" | wc -w)" "the two files cover the all-in-one and every role of conf/"
promtool check rules "$SL_TOP/contrib/prometheus/sluice.rules.yml"
t_check $? -eq 0 "promtool check rules"
(cd "$SL_TOP/contrib/prometheus" && promtool test rules sluice.rules.test.yml)
t_check $? -eq 0 "promtool test rules: every alert fires on its case"
for a in SluicedNotReady SluiceReloadFailed SluiceConsumerLagHigh SluiceOutboxBacklog; do
    t_check "$(grep -c "alert: $a$" "$SL_TOP/contrib/prometheus/sluice.rules.yml")" = 1 "alert $a"
done
t_end

t_case "Grafana: the dashboard is valid JSON with a row per module, valid queries, provisioned"
dash=$SL_TOP/contrib/grafana/sluice.json
t_check "$("$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(p["title"] for p in d["panels"] if p["type"] == "row"))' "$dash")" = \
    "core generator aggregator outbox segments metrics" "rows: core generator aggregator outbox segments metrics"
# Every query as a recording rule: promtool then parses it as PromQL.
"$py" - "$dash" "$work/queries.yml" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
rules = []
for p in d["panels"]:
    if p["type"] == "row":
        continue
    assert p["datasource"]["uid"] == "prometheus", p["title"]
    assert p["targets"], p["title"]
    for t in p["targets"]:
        rules.append({"record": "dashboard:q%d" % len(rules),
                      "expr": t["expr"].replace("$__rate_interval", "1m")})
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[2], "w"))
print(len(rules), "queries")
EOF
t_check $? -eq 0 "every panel has queries on the prometheus datasource"
promtool check rules "$work/queries.yml" > "$work/q.out" 2>&1
rc=$?
tail -3 "$work/q.out"
t_check "$rc" -eq 0 "every dashboard query is valid PromQL"
t_check "$(grep -c 'uid: prometheus' "$SL_TOP/contrib/grafana/provisioning/datasources/prometheus.yml")" = 1 \
    "the provisioned datasource has the dashboard's uid"
t_check "$(grep -c 'path: /var/lib/grafana/dashboards/sluice$' "$SL_TOP/contrib/grafana/provisioning/dashboards/sluice.yml")" = 1 \
    "the dashboard provider reads /var/lib/grafana/dashboards/sluice"
t_check "$(q '[v for v in c["services"]["grafana"]["volumes"] if v.endswith(":/var/lib/grafana/dashboards/sluice/sluice.json:ro")] != []')" = True \
    "the compose file mounts the dashboard there"
t_end

t_exit
