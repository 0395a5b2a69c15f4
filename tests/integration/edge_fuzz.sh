#!/usr/bin/env bash
# Bounded libFuzzer runs (clang, ASan+UBSan) of the HTTP edge
# (tests/fuzz/fuzz_http.c: URI, query, routes, Authorization, Content-Type,
# Origin, Host, request ids, token lookup) and of the config and tokens_file
# parsers (tests/fuzz/fuzz_conf.c): zero crashes and zero contract
# violations in SL_FUZZ_SECONDS (30 by default) each.
. "$(dirname "$0")/../lib.sh"

work=$(t_tmpdir)
cleanup() { [ -n "${SL_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
seconds=${SL_FUZZ_SECONDS:-30}
core=$SL_TOP/core
cflags=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -I"$core" -I"$core/conf" -I"$core/http" -I"$core/include")

# fuzz NAME: runs $work/NAME over $work/NAME.corpus; checks the outcome.
fuzz() {
    local name=$1 rc runs
    mkdir -p "$work/$name.crashes"
    (cd "$work" && "./$name" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 -print_final_stats=1 \
        -artifact_prefix="$work/$name.crashes/" "$name.corpus" > "$work/$name.log" 2>&1)
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$name.log")
    t_check "$rc" -eq 0 "libFuzzer exit 0: $(grep -m1 -E 'ERROR|abort|deadly' "$work/$name.log")"
    t_check "$(ls "$work/$name.crashes" | wc -l)" = 0 "no crash or timeout artifact"
    t_check "${runs:-0}" -gt 1000 "${runs:-0} inputs tried"
}

t_case "the fuzz targets build with clang and libFuzzer"
clang "${cflags[@]}" "$SL_TOP/tests/fuzz/fuzz_http.c" "$core/http/router.c" "$core/http/edge.c" \
    "$core/http/tokens.c" "$core/conf/errors.c" "$core/daemon/redact.c" -levent -lcrypto -o "$work/fuzz_http" 2> "$work/build.log"
t_check $? -eq 0 "fuzz_http built: $(tail -n 3 "$work/build.log")"
clang "${cflags[@]}" "$SL_TOP/tests/fuzz/fuzz_conf.c" "$core/conf/conf.c" "$core/conf/option.c" \
    "$core/conf/errors.c" "$core/daemon/redact.c" "$core/http/tokens.c" "$core/http/router.c" -lcrypto -lm \
    -o "$work/fuzz_conf" 2> "$work/build.log"
t_check $? -eq 0 "fuzz_conf built: $(tail -n 3 "$work/build.log")"
t_end

t_case "the request path survives ${seconds}s of fuzzing"
mkdir -p "$work/fuzz_http.corpus"
# Fields separated by NUL: URI, query, Authorization, Content-Type,
# Sec-Fetch-Site, Origin, Host, X-Request-Id.
printf '/segment/user/12?x=1\0hours=1&a=%%zz\0Bearer read-token-0123456789abcdef\0application/json\0cross-site\0http://127.0.0.1:8080\0localhost:8080\0req-1' \
    > "$work/fuzz_http.corpus/seed1"
printf '/docs/%%2e%%2e/x\0eps=1e9\0Basic dXNlcjpw\0application/merge-patch+json; charset=utf-8\0same-origin\0null\0[::1]:80\0a b' \
    > "$work/fuzz_http.corpus/seed2"
fuzz fuzz_http
t_end

t_case "the config and tokens_file parsers survive ${seconds}s of fuzzing"
mkdir -p "$work/fuzz_conf.corpus"
printf '[core]\nlisten = 127.0.0.1:1, [::1]:2\nrequired = x\nmax_connections = 5\nrequest_timeout = 250ms\nrdkafka.acks = all\nallow_anonymous = yes\nlog_level = debug\nrate_limit = 2.5\n[module a "b"]\nx = "q\\"\\n${HOME}" # c\n' \
    > "$work/fuzz_conf.corpus/seed1"
printf '# name scopes secret\nci read,write sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8\nops admin abcdefghijklmnopqrstu\n' \
    > "$work/fuzz_conf.corpus/seed2"
fuzz fuzz_conf
t_end

t_exit
