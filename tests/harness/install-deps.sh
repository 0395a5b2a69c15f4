#!/bin/bash
# tests/harness/install-deps.sh - installs the Debian packages the build and
# the integration tests need.  Idempotent: when every package is already
# installed it touches nothing (no apt-get update), so it is cheap to call
# at the start of every CI run.
set -eu

pkgs=(build-essential autoconf automake libtool pkg-config libevent-dev
      librdkafka-dev libpq-dev libhiredis-dev libcurl4-openssl-dev libssl-dev openssl
      libcjson-dev libcmocka-dev postgresql redis-server clickhouse-server
      clickhouse-client kcat prometheus wrk nginx-light curl python3
      chromium docker-compose clang libclang-rt-14-dev systemd
      jq iproute2 podman debootstrap runc clang-format zookeeper)
# chromium: tests/integration/status.sh loads the status page headless, and
# segments.sh checks /docs; docker-compose: tests/packaging/deploy.sh
# validates the compose file (`docker-compose config` needs no Docker
# engine); clang and its runtime: the libFuzzer runs; libssl-dev: TLS
# listeners and token digests; openssl: hostile.sh makes its certificates;
# systemd: systemd-analyze, which tests/packaging/systemd_unit.sh runs on
# the unit; jq: aggregator.sh reads error bodies; iproute2: ss, which
# clickhouse.sh and kafka.sh count connections and listeners with, and
# outbox_late.sh reads a connection's bytes received and unread with;
# podman, debootstrap and runc: tests/integration/container.sh makes a
# bookworm base, builds docker/Dockerfile and runs every role from the
# image (runc: this kind of machine refuses crun's cgroup handling);
# clang-format: tests/packaging/format.sh checks the layout of every C file.
# zookeeper: what the ClickHouse cluster of tests/integration/scale_clickhouse.sh
# coordinates its Replicated tables and ON CLUSTER statements through
# (ClickHouse 18.16 has no keeper of its own).
# Under CI=true a case skipped for want of a tool fails.

missing=()
for p in "${pkgs[@]}"; do
    # "install ok installed" is the only state in which the files are there;
    # a removed-but-configured package reports something else.
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] || missing+=("$p")
done
# segments.sh validates the OpenAPI document and renders /docs with npm
# packages; a Node.js from elsewhere (this machine kind ships one) will do.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#pkgs[@]} packages present"
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" = 0 ]; then
    as_root=()
else
    as_root=(sudo)
fi
# Several checkouts may install at once on one machine: wait for the dpkg
# lock instead of failing on it.
lock=(-o DPkg::Lock::Timeout=900)
"${as_root[@]}" apt-get "${lock[@]}" update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get "${lock[@]}" install -y --no-install-recommends "${missing[@]}"
