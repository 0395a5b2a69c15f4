#!/usr/bin/env bash
# contrib/quickstart.sh - from a fresh Debian machine to a running sluiced,
# or to the whole test suite, in one command.
#
#   contrib/quickstart.sh run    install, build (build/), start PostgreSQL,
#                                Redis and ClickHouse on loopback (a temp
#                                dir, stopped on exit), run conf/sluice.conf
#                                (every module, embedded broker) on them
#   contrib/quickstart.sh test   install, build with ASan+UBSan (build-asan/),
#                                run every test; ends
#                                "N passed, N failed, N skipped"
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

mode=${1:-}
case "$mode" in
run | test) ;;
*)
    echo "usage: $0 run|test" >&2
    exit 2
    ;;
esac

bash tests/harness/install-deps.sh

[ -x configure ] || autoreconf -fi
if [ -f config.status ]; then
    echo "this source tree was configured in place; run 'make distclean' first" >&2
    exit 1
fi

if [ "$mode" = run ]; then
    mkdir -p build
    (cd build && { [ -f Makefile ] || ../configure --quiet; } && make -j"$(nproc)" -s)
    # The servers run as long as sluiced does: Ctrl-C drains sluiced, then
    # the EXIT trap services.sh sets stops them.
    . tests/harness/services.sh
    sl_svc_start postgres && sl_svc_start redis && sl_svc_start clickhouse
    python3 tests/harness/conf_local.py conf/sluice.conf build/quickstart.conf \
        "core:modules_dir=$top/build/_modules" "postgres:dsn=$SL_PG_DSN" \
        "redis:url=$SL_REDIS_URL/0" "clickhouse:url=$SL_CH_URL"
    echo "quickstart: PostgreSQL $SL_PG_DSN, Redis $SL_REDIS_URL, ClickHouse $SL_CH_URL"
    echo "quickstart: sluiced on http://127.0.0.1:8080 (build/quickstart.conf); Ctrl-C stops everything"
    build/core/sluiced -c build/quickstart.conf
    exit
fi

mkdir -p build-asan
(cd build-asan && { [ -f Makefile ] || ../configure --quiet --enable-sanitizers --enable-werror; } &&
    make -j"$(nproc)" -s)
# Leaks in the modules' dlclose()d images cannot be symbolized; fast_unwind
# keeps LeakSanitizer's stacks cheap.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:fast_unwind_on_malloc=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
SL_BUILD=build-asan exec bash tests/run.sh
