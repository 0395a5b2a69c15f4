#!/usr/bin/env bash
# contrib/quickstart.sh - from a fresh Debian machine to a running sluiced,
# or to the whole test suite, in one command.
#
#   contrib/quickstart.sh run    install, build (build/), run conf/sluice.conf
#   contrib/quickstart.sh test   install, build with ASan+UBSan (build-asan/),
#                                run every test; ends "N passed, N failed"
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
    exec build/core/sluiced -c conf/sluice.conf
fi

mkdir -p build-asan
(cd build-asan && { [ -f Makefile ] || ../configure --quiet --enable-sanitizers --enable-werror; } &&
    make -j"$(nproc)" -s)
# Leaks in the modules' dlclose()d images cannot be symbolized; fast_unwind
# keeps LeakSanitizer's stacks cheap.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:fast_unwind_on_malloc=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
SL_BUILD=build-asan exec bash tests/run.sh
