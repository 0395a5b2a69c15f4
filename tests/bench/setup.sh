# tests/bench/setup.sh - sourced by a benchmark after tests/lib.sh and
# tests/harness/services.sh: what it needs before it measures.
#
#   bench_build DIR      an optimized build in DIR, configured and made when
#                        it has no sluiced yet
#   bench_need TOOL...   exits, pointing at install-deps.sh, when one is missing
#   bench_scratch NAME   $work, a scratch dir removed at exit; $pids, the
#                        processes killed at exit (append what you start);
#                        the harness's servers stopped at exit; and
#                        fail MESSAGE, which exits 1 with "NAME: MESSAGE"
bench_build() {
    local top
    top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    [ -x "$1/core/sluiced" ] && return 0
    (cd "$top" && { [ -x configure ] || autoreconf -fi; }) &&
        mkdir -p "$1" &&
        (cd "$1" && { [ -f Makefile ] || "$top/configure" --quiet; } && make -s -j"$(nproc)")
}

bench_need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || {
            echo "$tool missing: bash tests/harness/install-deps.sh" >&2
            exit 1
        }
    done
}

bench_scratch() {
    bench_name=$1
    work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
    pids=()
    trap _bench_cleanup EXIT
}
_bench_cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    sl_svc_stop_all
    rm -rf "$work"
}
fail() {
    echo "$bench_name: $*" >&2
    exit 1
}
