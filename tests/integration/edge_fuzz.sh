#!/usr/bin/env bash
# Bounded libFuzzer runs (clang, ASan+UBSan) of the HTTP edge
# (tests/fuzz/fuzz_http.c: URI, query, routes, Authorization, Content-Type,
# Origin, Host, request ids, token lookup), of libevent's request parsing
# as the core's listener uses it (tests/fuzz/fuzz_listener.c: raw bytes of
# a client connection into a real listener with our limits), and of the
# config and tokens_file parsers (tests/fuzz/fuzz_conf.c): zero crashes,
# leaks and contract violations in SL_FUZZ_SECONDS (30 by default) each.
. "$(dirname "$0")/../lib.sh"

work=$(t_tmpdir)
cleanup() { [ -n "${SL_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
seconds=${SL_FUZZ_SECONDS:-30}
core=$SL_TOP/core
cflags=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -I"$core" -I"$core/conf" -I"$core/http" -I"$core/include")

# fuzz NAME [MIN-RUNS [LIBFUZZER-OPTION...]]: runs $work/NAME over
# $work/NAME.corpus; checks the outcome.
fuzz() {
    local name=$1 min=${2:-1000} rc runs
    shift 2
    mkdir -p "$work/$name.crashes"
    (cd "$work" && "./$name" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 -print_final_stats=1 \
        -artifact_prefix="$work/$name.crashes/" "$@" "$name.corpus" > "$work/$name.log" 2>&1)
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$name.log")
    t_check "$rc" -eq 0 "libFuzzer exit 0: $(grep -m1 -E 'ERROR|abort|deadly|never|outlived|status line' "$work/$name.log")"
    t_check "$(ls "$work/$name.crashes" | wc -l)" = 0 "no crash, leak or timeout artifact"
    t_check "${runs:-0}" -gt "$min" "${runs:-0} inputs tried"
}

t_case "the fuzz targets build with clang and libFuzzer"
clang "${cflags[@]}" "$SL_TOP/tests/fuzz/fuzz_http.c" "$core/http/router.c" "$core/http/edge.c" "$core/trace/traceparent.c" \
    "$core/http/tokens.c" "$core/conf/errors.c" "$core/daemon/redact.c" -levent -lcrypto -o "$work/fuzz_http" 2> "$work/build.log"
t_check $? -eq 0 "fuzz_http built: $(tail -n 3 "$work/build.log")"
clang "${cflags[@]}" "$SL_TOP/tests/fuzz/fuzz_conf.c" "$core/conf/conf.c" "$core/conf/option.c" \
    "$core/conf/errors.c" "$core/daemon/redact.c" "$core/http/tokens.c" "$core/http/router.c" -lcrypto -lm \
    -o "$work/fuzz_conf" 2> "$work/build.log"
t_check $? -eq 0 "fuzz_conf built: $(tail -n 3 "$work/build.log")"
# The listener target runs the whole core (and the fake daemon of the unit
# tests), compiled here with clang: the build's objects are gcc's.
lflags=(-g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE
        -I"$SL_BUILD" -I"$core/include" -I"$core" -I"$SL_TOP/tests/unit"
        '-DSL_MODULES_DIR="/nonexistent"' '-DSL_SYSCONF_DIR="/nonexistent"'
        $(pkg-config --cflags libevent rdkafka libpq hiredis libcurl libcjson))
sources=$(find "$core" -name '*.c' ! -name main.c | sort)
grep -q '^#define SL_WITH_CLICKHOUSE 1' "$SL_BUILD/config.h" || sources=$(grep -v '/connectors/clickhouse/' <<< "$sources")
mkdir -p "$work/obj"
objs=()
for src in $sources "$SL_TOP/tests/unit/fake_daemon.c"; do
    obj=$work/obj/$(basename "$(dirname "$src")")_$(basename "$src" .c).o
    objs+=("$obj")
    clang "${lflags[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj" 2>> "$work/build.log" &
    [ "$(jobs -r | wc -l)" -lt 2 ] || wait -n
done
wait
clang "${lflags[@]}" -fsanitize=fuzzer "$SL_TOP/tests/fuzz/fuzz_listener.c" "${objs[@]}" \
    $(pkg-config --libs libevent libevent_openssl libssl libcrypto rdkafka libpq hiredis libcurl libcjson) \
    -levent_pthreads -ldl -lm -lpthread -o "$work/fuzz_listener" 2>> "$work/build.log"
t_check $? -eq 0 "fuzz_listener built: $(tail -n 3 "$work/build.log")"
t_end

t_case "the request path survives ${seconds}s of fuzzing"
mkdir -p "$work/fuzz_http.corpus"
# Fields separated by NUL: URI, query, Authorization, Content-Type,
# Sec-Fetch-Site, Origin, Host, X-Request-Id.
printf '/segment/user/12?x=1\0hours=1&a=%%zz\0Bearer read-token-0123456789abcdef\0application/json\0cross-site\0http://127.0.0.1:8080\0localhost:8080\0req-1' \
    > "$work/fuzz_http.corpus/seed1"
printf '/docs/%%2e%%2e/x\0eps=1e9\0Basic dXNlcjpw\0application/merge-patch+json; charset=utf-8\0same-origin\0null\0[::1]:80\0a b' \
    > "$work/fuzz_http.corpus/seed2"
fuzz fuzz_http 1000
t_end

t_case "libevent's request parsing behind the core's listener survives ${seconds}s of fuzzing"
mkdir -p "$work/fuzz_listener.corpus"
printf 'GET /items/12?q=a%%20b HTTP/1.1\r\nHost: x\r\nX-Test: t\r\n\r\nPOST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}DELETE /items/3 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /items/4 HTTP/1.1\r\n\r\n' \
    > "$work/fuzz_listener.corpus/seed1"
printf 'GET /items/1 HTTP/1.1\r\nX-Long: %s\r\n\r\n' "$(head -c 3000 /dev/zero | tr '\0' a)" > "$work/fuzz_listener.corpus/seed2"
printf 'POST /items HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n3\r\n{"a\r\n4\r\n":2}\r\n0\r\n\r\nGET /items/%%zz HTTP/1.0\r\n\r\n' \
    > "$work/fuzz_listener.corpus/seed3"
# A connection per input, over loopback: far fewer inputs than the others.
fuzz fuzz_listener 100 -max_len=8192 -timeout=30
t_end

t_case "the config and tokens_file parsers survive ${seconds}s of fuzzing"
mkdir -p "$work/fuzz_conf.corpus"
printf '[core]\nlisten = 127.0.0.1:1, [::1]:2\nrequired = x\nmax_connections = 5\nrequest_timeout = 250ms\nrdkafka.acks = all\nallow_anonymous = yes\nlog_level = debug\nrate_limit = 2.5\n[module a "b"]\nx = "q\\"\\n${HOME}" # c\n' \
    > "$work/fuzz_conf.corpus/seed1"
printf '# name scopes secret\nci read,write sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8\nops admin abcdefghijklmnopqrstu\n' \
    > "$work/fuzz_conf.corpus/seed2"
fuzz fuzz_conf 1000
t_end

t_exit
