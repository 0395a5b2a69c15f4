#!/usr/bin/env bash
# tests/bench/run-all.sh - runs every benchmark (tests/bench/bench_*.sh) one
# after the other and prints one table: each figure beside its reference,
# measured in the same run, and the ratio.  The figures come from the
# RESULT lines each benchmark prints (tests/bench/result.sh, described in
# tests/bench/README).  A benchmark that failed or printed none has a row
# saying which (its exit status, "no_figures"), and the figures of one that
# failed after printing them say so in the last column, since its run did
# not finish.  Like the benchmarks, it never fails on a figure: it exits
# non-zero only when a benchmark failed or printed no RESULT line.
#
#   tests/bench/run-all.sh                  every bench_*.sh
#   tests/bench/run-all.sh core kafka       bench_core.sh and bench_kafka.sh
#
# SL_BUILD (default build/, an optimized build made if missing) and each
# benchmark's own variables (RUNS, N, DURATION, ...) pass through.  Each
# benchmark's whole output is kept in $BENCH_LOGS (default
# $SL_BUILD/tests/bench-logs/NAME.log).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
bench_dir=${BENCH_DIR:-$top/tests/bench}
export SL_BUILD=${SL_BUILD:-$top/build}

if [ -z "${BENCH_DIR:-}" ] && [ ! -x "$SL_BUILD/core/sluiced" ]; then
    echo "building $SL_BUILD (optimized)"
    (cd "$top" && { [ -x configure ] || autoreconf -fi; }) &&
        mkdir -p "$SL_BUILD" &&
        (cd "$SL_BUILD" && { [ -f Makefile ] || "$top/configure" --quiet; } && make -s -j"$(nproc)") ||
        { echo "build failed" >&2; exit 1; }
fi
# Absolute for the benchmarks; stand-ins (BENCH_DIR) may run without a build.
[ ! -d "$SL_BUILD" ] || SL_BUILD=$(cd "$SL_BUILD" && pwd)
logs=${BENCH_LOGS:-$SL_BUILD/tests/bench-logs}
mkdir -p "$logs"

if [ $# -eq 0 ]; then
    set -- "$bench_dir"/bench_*.sh
else
    set -- "${@/#/$bench_dir/bench_}"
    set -- "${@/%/.sh}"
fi

rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
failed=0
for b in "$@"; do
    name=$(basename "$b" .sh)
    log=$logs/$name.log
    start=$(date +%s)
    printf '%-22s ' "$name"
    bash "$b" > "$log" 2>&1
    rc=$?
    n=$(grep -c '^RESULT ' "$log")
    printf 'exit %d in %ds, %d figures (log: %s)\n' "$rc" "$(( $(date +%s) - start ))" "$n" "$log"
    why=""
    [ "$rc" -eq 0 ] || why=exit_$rc
    [ "$n" -gt 0 ] || why=${why:+$why,}no_figures
    if [ -n "$why" ]; then
        failed=$((failed + 1))
        printf 'RESULT bench=%s name=%s value=- unit=- reference=- against=- ratio=- target=- run=failed(%s)\n' \
            "${name#bench_}" "FAILED($why):_see_log" "$why" >> "$rows"
    fi
    grep '^RESULT ' "$log" | sed "${why:+s/\$/ run=failed($why)/}" >> "$rows"
done

echo
awk '
    function field(k,    i, kv) {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) return substr($i, length(k) + 2) }
        return "-"
    }
    BEGIN { printf "%-12s %-22s %14s %-8s %14s %-20s %7s %8s  %s\n", "bench", "figure", "value", "unit",
            "reference", "(against)", "ratio", "target", "run" }
    /^RESULT / {
        b = field("bench"); sub(/^bench_/, "", b)
        printf "%-12s %-22s %14s %-8s %14s %-20s %7s %8s  %s\n", b, field("name"), field("value"), field("unit"),
               field("reference"), field("against") == "-" ? "" : "(" field("against") ")", field("ratio"),
               field("target"), field("run") == "-" ? "ok" : field("run")
    }' "$rows"
[ "$failed" -eq 0 ]
