# tests/harness/services.sh - real PostgreSQL, Redis and ClickHouse servers
# for integration tests, each on a free loopback port in a private temp dir.
#
#   . "$SL_TOP/tests/harness/services.sh"
#   sl_svc_start postgres     # exports SL_PG_DSN, SL_PG_PORT
#   sl_svc_start redis        # exports SL_REDIS_URL, SL_REDIS_PORT
#   sl_svc_start clickhouse   # exports SL_CH_URL, SL_CH_PORT, SL_CH_TCP_PORT
#   sl_svc_start zookeeper    # exports SL_ZK_PORT
#   sl_svc_start chcluster    # two ClickHouse servers chnode1, chnode2 forming the
#                             # cluster SL_CHC_NAME over ZooKeeper (started first if
#                             # need be); exports SL_CHC_URL1/2, SL_CHC_TCP1/2.  Layout
#                             # SL_CHC_LAYOUT: shards (two shards of one replica, the
#                             # default) or replicas (one shard, two replicas)
#   sl_svc_restart NAME       # stop (or reap a killed one), start on the same port and data
#                             # (NAME: a service above, or chnode1, chnode2)
#   sl_svc_kill NAME          # SIGKILL the server (a crash), data dir kept
#   sl_svc_stop NAME          # clean shutdown
#   sl_svc_stop_all           # every server this shell started, then the temp dir
#
# Sourcing this file sets `trap sl_svc_stop_all EXIT`.  A test that sets its
# own EXIT trap replaces that one and must call sl_svc_stop_all from it.
# SL_KEEP=1 keeps the temp dir (logs, data) for a post-mortem.
#
# PostgreSQL refuses to run as root: when we are root, initdb and pg_ctl run
# as the system user $SL_SVC_USER (created on first use) through runuser.
# Every function returns non-zero after printing the reason and the
# server's log tail.

SL_SVC_USER=${SL_SVC_USER:-sluice-test}
SL_SVC_TIMEOUT=${SL_SVC_TIMEOUT:-60}
SL_SVC_ROOT=${SL_SVC_ROOT:-}

_sl_svc_err() {
    echo "services: $*" >&2
}

# The private root directory, created on first use.  Readable by the
# dedicated user, who owns the per-server directories below it.
_sl_svc_root() {
    if [ -z "$SL_SVC_ROOT" ] || [ ! -d "$SL_SVC_ROOT" ]; then
        SL_SVC_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/sluice-svc.XXXXXX") || return 1
        chmod 755 "$SL_SVC_ROOT"
    fi
}

_sl_svc_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

_sl_svc_ensure_user() {
    [ "$(id -u)" = 0 ] || return 0
    id -u "$SL_SVC_USER" >/dev/null 2>&1 && return 0
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$SL_SVC_USER" 2>/dev/null ||
        id -u "$SL_SVC_USER" >/dev/null 2>&1 || {
        _sl_svc_err "cannot create user $SL_SVC_USER"
        return 1
    }
}

# _sl_svc_as CMD...: runs CMD as the dedicated user when we are root.
_sl_svc_as() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$SL_SVC_USER" -- "$@"
    else
        "$@"
    fi
}

# _sl_svc_dir NAME: makes $SL_SVC_ROOT/NAME owned by the dedicated user.
_sl_svc_dir() {
    local d=$SL_SVC_ROOT/$1
    mkdir -p "$d" || return 1
    if [ "$(id -u)" = 0 ]; then
        chown "$SL_SVC_USER:" "$d" || return 1
    fi
    echo "$d"
}

_sl_svc_tail() {
    local f
    for f in "$@"; do
        [ -f "$f" ] || continue
        echo "services: --- last lines of $f" >&2
        tail -n 25 "$f" >&2
    done
}

# True while pid runs (a zombie counts as gone).
_sl_svc_alive() {
    local st
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

# _sl_svc_wait_gone PID SECONDS: 0 once PID is gone.
_sl_svc_wait_gone() {
    local pid=$1 i=0
    while _sl_svc_alive "$pid"; do
        [ $i -ge $(($2 * 10)) ] && return 1
        sleep 0.1
        i=$((i + 1))
    done
    return 0
}

# _sl_svc_end PID: SIGTERM, then SIGKILL if it is still there after 30 s.
_sl_svc_end() {
    _sl_svc_alive "$1" || return 0
    kill -TERM "$1" 2>/dev/null
    _sl_svc_wait_gone "$1" 30 && return 0
    _sl_svc_err "pid $1 ignored SIGTERM for 30s, killing it"
    kill -KILL "$1" 2>/dev/null
    _sl_svc_wait_gone "$1" 5
}

# _sl_svc_crash PID: SIGKILL, as a crash would.
_sl_svc_crash() {
    _sl_svc_alive "$1" || return 0
    kill -KILL "$1" 2>/dev/null
    _sl_svc_wait_gone "$1" 10
}

# _sl_svc_wait_up SECONDS CMD...: polls CMD until it succeeds.
_sl_svc_wait_up() {
    local limit=$1 i=0
    shift
    while ! "$@" >/dev/null 2>&1; do
        [ $i -ge $((limit * 10)) ] && return 1
        sleep 0.1
        i=$((i + 1))
    done
}

# ---------------------------------------------------------------- postgres

_sl_pg_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -x "$d/initdb" ] || {
        _sl_svc_err "no PostgreSQL server binaries under /usr/lib/postgresql (install postgresql)"
        return 1
    }
    echo "$d"
}

_sl_pg_pid() {
    head -n 1 "$SL_SVC_ROOT/postgres/data/postmaster.pid" 2>/dev/null
}

_sl_pg_ready() {
    pg_isready -q -h 127.0.0.1 -p "$1" -U sluice -d postgres -t 1
}

_sl_pg_run() {
    local d=$SL_SVC_ROOT/postgres bin port
    bin=$(cat "$d/bindir") && port=$(cat "$d/port") || return 1
    # pg_ctl -w waits for the postmaster itself; the log tail says why not.
    (cd "$d" && _sl_svc_as "$bin/pg_ctl" -D "$d/data" -l "$d/server.log" -w \
        -t "$SL_SVC_TIMEOUT" start >>"$d/pg_ctl.log" 2>&1)
    if ! _sl_svc_wait_up "$SL_SVC_TIMEOUT" _sl_pg_ready "$port"; then
        _sl_svc_err "postgres did not answer on 127.0.0.1:$port within ${SL_SVC_TIMEOUT}s"
        _sl_svc_tail "$d/pg_ctl.log" "$d/server.log"
        return 1
    fi
}

_sl_pg_start() {
    local d bin port
    _sl_svc_ensure_user || return 1
    bin=$(_sl_pg_bindir) || return 1
    d=$(_sl_svc_dir postgres) || return 1
    port=$(_sl_svc_free_port) || return 1
    echo "$bin" >"$d/bindir"
    echo "$port" >"$d/port"
    mkdir -p "$d/sock" && chown "$(stat -c %U "$d"):" "$d/sock"
    if ! (cd "$d" && _sl_svc_as "$bin/initdb" -D "$d/data" -U sluice -A trust \
        -E UTF8 --locale=C --no-sync >"$d/initdb.log" 2>&1); then
        _sl_svc_err "initdb failed"
        _sl_svc_tail "$d/initdb.log"
        return 1
    fi
    # Settings live in the data dir so that a restart needs no options.
    # fsync off: a test cares about crashes of the server, not of the OS,
    # and WAL written to the page cache survives a kill -9.  Commits stay
    # synchronous (written before the COMMIT returns) for that reason.
    cat >>"$d/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$d/sock'
fsync = off
full_page_writes = off
max_connections = 100
CONF
    _sl_pg_run || return 1
    if ! psql -X -q -h 127.0.0.1 -p "$port" -U sluice -d postgres \
        -c 'CREATE DATABASE sluice' >>"$d/pg_ctl.log" 2>&1; then
        _sl_svc_err "cannot create database sluice"
        _sl_svc_tail "$d/pg_ctl.log"
        return 1
    fi
    export SL_PG_PORT=$port
    export SL_PG_DSN="host=127.0.0.1 port=$port user=sluice dbname=sluice"
}

_sl_pg_stop() {
    local d=$SL_SVC_ROOT/postgres pid
    pid=$(_sl_pg_pid)
    _sl_svc_alive "$pid" || return 0
    (cd "$d" && _sl_svc_as "$(cat "$d/bindir")/pg_ctl" -D "$d/data" -m fast -w \
        -t 30 stop >>"$d/pg_ctl.log" 2>&1) ||
        (cd "$d" && _sl_svc_as "$(cat "$d/bindir")/pg_ctl" -D "$d/data" -m immediate \
            -w -t 30 stop >>"$d/pg_ctl.log" 2>&1)
    _sl_svc_wait_gone "$pid" 30 || {
        _sl_svc_err "postgres (pid $pid) did not stop"
        return 1
    }
}

_sl_pg_kill() {
    local d=$SL_SVC_ROOT/postgres pid kids k i=0
    pid=$(_sl_pg_pid)
    _sl_svc_alive "$pid" || return 0
    # The backends would notice their postmaster's death on their own, but
    # only at their next wake-up; a crash takes them all at once.
    kids=$(pgrep -P "$pid")
    kill -KILL "$pid" $kids 2>/dev/null
    _sl_svc_wait_gone "$pid" 10
    for k in $kids; do _sl_svc_wait_gone "$k" 10; done
    # A new postmaster refuses to start while the pid in postmaster.pid
    # exists, and a dead one exists as a zombie until init reaps it.  Give
    # init a moment, then drop the stale lock file ourselves: the process
    # is dead, so the lock protects nothing.
    while [ -e "/proc/$pid" ] && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ -e "/proc/$pid" ] && rm -f "$d/data/postmaster.pid"
    return 0
}

# ------------------------------------------------------------------- redis

_sl_redis_pid() {
    cat "$SL_SVC_ROOT/redis/pid" 2>/dev/null
}

_sl_redis_ready() {
    [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
}

_sl_redis_run() {
    local d=$SL_SVC_ROOT/redis port
    port=$(cat "$d/port") || return 1
    # No save points and no AOF: a clean stop saves once (SHUTDOWN SAVE), a
    # kill loses what was written, as it would with a cache-only Redis.
    redis-server --port "$port" --bind 127.0.0.1 --dir "$d" --save '' \
        --appendonly no --daemonize no --logfile "$d/server.log" \
        </dev/null >>"$d/server.log" 2>&1 &
    echo $! >"$d/pid"
    if ! _sl_svc_wait_up "$SL_SVC_TIMEOUT" _sl_redis_ready "$port"; then
        _sl_svc_err "redis did not answer on 127.0.0.1:$port within ${SL_SVC_TIMEOUT}s"
        _sl_svc_tail "$d/server.log"
        return 1
    fi
}

_sl_redis_start() {
    local d port
    _sl_svc_root || return 1
    d=$SL_SVC_ROOT/redis
    mkdir -p "$d" || return 1
    port=$(_sl_svc_free_port) || return 1
    echo "$port" >"$d/port"
    _sl_redis_run || return 1
    export SL_REDIS_PORT=$port
    export SL_REDIS_URL=redis://127.0.0.1:$port
}

_sl_redis_stop() {
    local pid
    pid=$(_sl_redis_pid)
    _sl_svc_alive "$pid" || return 0
    # SHUTDOWN SAVE writes dump.rdb even without save points, so a clean
    # restart keeps the data; SIGTERM only if redis does not answer.
    redis-cli -h 127.0.0.1 -p "$(cat "$SL_SVC_ROOT/redis/port")" shutdown save \
        >/dev/null 2>&1
    _sl_svc_wait_gone "$pid" 10 || _sl_svc_end "$pid"
}

_sl_redis_kill() {
    _sl_svc_crash "$(_sl_redis_pid)"
}

# -------------------------------------------------------------- clickhouse

# The ClickHouse functions take the server's directory name: clickhouse,
# or chnode1/chnode2 of the cluster.
_sl_ch_pid() {
    cat "$SL_SVC_ROOT/${1:-clickhouse}/pid" 2>/dev/null
}

_sl_ch_ready() {
    [ "$(curl -s --max-time 1 "http://127.0.0.1:$1/ping")" = Ok. ]
}

_sl_ch_run() {
    local d=$SL_SVC_ROOT/${1:-clickhouse} port t0
    port=$(cat "$d/http_port") || return 1
    t0=$(date +%s.%N)
    # ClickHouse 18.16 runs as root (unlike postgres), so it is started
    # directly and $! is the server itself; --pid-file is only honoured in
    # --daemon mode, which would detach it from this shell.
    (cd "$d" && exec clickhouse-server --config-file="$d/config.xml" \
        </dev/null >>"$d/stdout.log" 2>&1) &
    echo $! >"$d/pid"
    if ! _sl_svc_wait_up "$SL_SVC_TIMEOUT" _sl_ch_ready "$port"; then
        _sl_svc_err "${1:-clickhouse} did not answer on 127.0.0.1:$port within ${SL_SVC_TIMEOUT}s"
        _sl_svc_tail "$d/stdout.log" "$d/log/server.err.log"
        return 1
    fi
    SL_CH_START_SECONDS=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
    export SL_CH_START_SECONDS
}

# _sl_ch_ports DIR: free ports for a server in DIR, chosen once.
_sl_ch_ports() {
    local d=$1 f
    mkdir -p "$d" || return 1
    for f in http_port tcp_port isrv_port; do
        [ -s "$d/$f" ] || _sl_svc_free_port >"$d/$f" || return 1
    done
}

# _sl_ch_config DIR [XML]: the config files of a server in DIR, on its
# ports, with XML (cluster settings) inside <yandex>.
_sl_ch_config() {
    local d=$1 port tcp isrv
    _sl_ch_ports "$d" || return 1
    port=$(cat "$d/http_port") && tcp=$(cat "$d/tcp_port") && isrv=$(cat "$d/isrv_port") || return 1
    # Everything in the private dir; caches small (defaults are 5-8 GiB).
    cat >"$d/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>$d/log/server.log</log>
        <errorlog>$d/log/server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <http_port>$port</http_port>
    <tcp_port>$tcp</tcp_port>
    <interserver_http_port>$isrv</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>$d/data/</path>
    <tmp_path>$d/tmp/</tmp_path>
    <user_files_path>$d/user_files/</user_files_path>
    <format_schema_path>$d/format_schemas/</format_schema_path>
    <users_config>$d/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
${2:-}
</yandex>
XML
    cat >"$d/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
XML
}

_sl_ch_installed() {
    command -v clickhouse-server >/dev/null || {
        _sl_svc_err "clickhouse-server not installed"
        return 1
    }
}

_sl_ch_start() {
    local d=$SL_SVC_ROOT/clickhouse
    _sl_ch_installed && _sl_ch_config "$d" && _sl_ch_run || return 1
    export SL_CH_PORT=$(cat "$d/http_port")
    export SL_CH_TCP_PORT=$(cat "$d/tcp_port")
    export SL_CH_URL=http://127.0.0.1:$SL_CH_PORT
}

_sl_ch_stop() {
    _sl_svc_end "$(_sl_ch_pid "$1")"
}

_sl_ch_kill() {
    _sl_svc_crash "$(_sl_ch_pid "$1")"
}

# --------------------------------------------------------------- zookeeper

# What ClickHouse's Replicated tables and ON CLUSTER statements coordinate
# through.  Debian's zookeeper package: one standalone server, run by the
# JVM directly (zkServer.sh would write to /var/log and /etc).
_sl_zk_pid() {
    cat "$SL_SVC_ROOT/zookeeper/pid" 2>/dev/null
}

_sl_zk_ready() {
    local out
    out=$(exec 3<>"/dev/tcp/127.0.0.1/$1" && echo ruok >&3 && timeout 1 cat <&3) 2>/dev/null
    [ "$out" = imok ]
}

_sl_zk_run() {
    local d=$SL_SVC_ROOT/zookeeper port
    port=$(cat "$d/port") || return 1
    (cd "$d" && exec java -Xmx256m -Dzookeeper.log.dir="$d" -cp /usr/share/java/zookeeper.jar \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/zoo.cfg" \
        </dev/null >>"$d/server.log" 2>&1) &
    echo $! >"$d/pid"
    if ! _sl_svc_wait_up "$SL_SVC_TIMEOUT" _sl_zk_ready "$port"; then
        _sl_svc_err "zookeeper did not answer on 127.0.0.1:$port within ${SL_SVC_TIMEOUT}s"
        _sl_svc_tail "$d/server.log"
        return 1
    fi
}

_sl_zk_start() {
    local d=$SL_SVC_ROOT/zookeeper port
    [ -r /usr/share/java/zookeeper.jar ] || {
        _sl_svc_err "zookeeper not installed (Debian package zookeeper)"
        return 1
    }
    mkdir -p "$d/data" || return 1
    port=$(_sl_svc_free_port) || return 1
    echo "$port" >"$d/port"
    # A short tick: sessions of a killed ClickHouse expire within seconds.
    cat >"$d/zoo.cfg" <<CFG
tickTime=500
dataDir=$d/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
maxClientCnxns=0
4lw.commands.whitelist=ruok
CFG
    _sl_zk_run || return 1
    export SL_ZK_PORT=$port
}

_sl_zk_stop() {
    _sl_svc_end "$(_sl_zk_pid)"
}

_sl_zk_kill() {
    _sl_svc_crash "$(_sl_zk_pid)"
}

# -------------------------------------------------------- clickhouse cluster

_sl_chc_replica() {
    echo "<replica><host>127.0.0.1</host><port>$(cat "$SL_SVC_ROOT/chnode$1/tcp_port")</port></replica>"
}

# Both servers' ports first, since each names the other in remote_servers.
_sl_chc_start() {
    local n d shard xml remote=""
    _sl_ch_installed || return 1
    if [ ! -d "$SL_SVC_ROOT/zookeeper" ]; then
        _sl_zk_start || return 1
    fi
    for n in 1 2; do
        _sl_ch_ports "$SL_SVC_ROOT/chnode$n" || return 1
    done
    export SL_CHC_NAME=sluice
    case ${SL_CHC_LAYOUT:-shards} in
    shards)
        remote="<shard><internal_replication>true</internal_replication>$(_sl_chc_replica 1)</shard>"
        remote+="<shard><internal_replication>true</internal_replication>$(_sl_chc_replica 2)</shard>"
        ;;
    replicas)
        remote="<shard><internal_replication>true</internal_replication>$(_sl_chc_replica 1)$(_sl_chc_replica 2)</shard>"
        ;;
    *)
        _sl_svc_err "SL_CHC_LAYOUT: shards or replicas, not ${SL_CHC_LAYOUT}"
        return 1
        ;;
    esac
    for n in 1 2; do
        d=$SL_SVC_ROOT/chnode$n
        shard=$n
        [ "${SL_CHC_LAYOUT:-shards}" = replicas ] && shard=1
        xml="<remote_servers><$SL_CHC_NAME>$remote</$SL_CHC_NAME></remote_servers>
    <zookeeper><node><host>127.0.0.1</host><port>$(cat "$SL_SVC_ROOT/zookeeper/port")</port></node>
        <session_timeout_ms>6000</session_timeout_ms></zookeeper>
    <macros><shard>$shard</shard><replica>node$n</replica></macros>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>"
        _sl_ch_config "$d" "$xml" || return 1
    done
    for n in 1 2; do
        _sl_ch_run "chnode$n" || return 1
        export "SL_CHC_URL$n=http://127.0.0.1:$(cat "$SL_SVC_ROOT/chnode$n/http_port")"
        export "SL_CHC_TCP$n=$(cat "$SL_SVC_ROOT/chnode$n/tcp_port")"
    done
}

# ------------------------------------------------------------------ public

_sl_svc_fn() {
    case $1 in
    postgres) echo _sl_pg ;;
    redis) echo _sl_redis ;;
    clickhouse | chnode1 | chnode2) echo _sl_ch ;;
    zookeeper) echo _sl_zk ;;
    chcluster) echo _sl_chc ;;
    *)
        _sl_svc_err "unknown service '$1' (postgres|redis|clickhouse|zookeeper|chcluster|chnode1|chnode2)"
        return 1
        ;;
    esac
}

sl_svc_start() {
    local f
    f=$(_sl_svc_fn "$1") || return 1
    _sl_svc_root || return 1
    if [ -e "$SL_SVC_ROOT/$1" ]; then
        _sl_svc_err "$1 already started in this shell (use sl_svc_restart)"
        return 1
    fi
    "${f}_start"
}

sl_svc_stop() {
    local f
    f=$(_sl_svc_fn "$1") || return 1
    [ -n "$SL_SVC_ROOT" ] && [ -d "$SL_SVC_ROOT/$1" ] || return 0
    "${f}_stop" "$1"
}

sl_svc_kill() {
    local f
    f=$(_sl_svc_fn "$1") || return 1
    [ -n "$SL_SVC_ROOT" ] && [ -d "$SL_SVC_ROOT/$1" ] || return 0
    "${f}_kill" "$1"
}

# Same port, same data directory; works after a stop or a kill.
sl_svc_restart() {
    local f
    f=$(_sl_svc_fn "$1") || return 1
    [ -n "$SL_SVC_ROOT" ] && [ -d "$SL_SVC_ROOT/$1" ] || {
        _sl_svc_err "$1 was never started"
        return 1
    }
    "${f}_stop" "$1" || return 1
    "${f}_run" "$1"
}

sl_svc_stop_all() {
    local s
    [ -n "$SL_SVC_ROOT" ] && [ -d "$SL_SVC_ROOT" ] || return 0
    for s in postgres redis clickhouse chnode1 chnode2 zookeeper; do
        [ -d "$SL_SVC_ROOT/$s" ] && sl_svc_stop "$s"
    done
    if [ -z "${SL_KEEP:-}" ]; then
        rm -rf "$SL_SVC_ROOT"
    else
        echo "services: kept $SL_SVC_ROOT" >&2
    fi
    SL_SVC_ROOT=
}

trap sl_svc_stop_all EXIT
