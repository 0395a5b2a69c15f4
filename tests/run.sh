#!/usr/bin/env bash
# tests/run.sh - runs the whole suite against a configured build tree:
# the cmocka unit tests (make check), then every tests/integration/*.sh.
# Ends with one line "N passed, N failed" and exits non-zero on any failure.
#
#   SL_BUILD=build-asan tests/run.sh [integration-test-name...]
set -u
SL_TOP=$(cd "$(dirname "$0")/.." && pwd)
SL_BUILD=$(cd "${SL_BUILD:-$SL_TOP}" && pwd)
SL_RESULTS=$(mktemp "${TMPDIR:-/tmp}/sluice-results.XXXXXX")
export SL_TOP SL_BUILD SL_RESULTS
trap 'rm -f "$SL_RESULTS"' EXIT

passed=0
failed=0

if [ $# -eq 0 ]; then
    echo "=== unit tests"
    make -C "$SL_BUILD" -s check >/dev/null 2>&1
    for log in "$SL_BUILD"/tests/unit/test_*.log; do
        [ -f "$log" ] || continue
        cat "$log"
        p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
        f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
        if [ -z "$p" ] && [ -z "$f" ]; then
            echo "unit test $(basename "$log" .log) did not run to its summary"
            failed=$((failed + 1))
        fi
        passed=$((passed + ${p:-0}))
        failed=$((failed + ${f:-0}))
    done
    if ! ls "$SL_BUILD"/tests/unit/test_*.log >/dev/null 2>&1; then
        echo "no unit test ran (is libcmocka-dev installed?)"
        failed=$((failed + 1))
    fi
    set -- "$SL_TOP"/tests/integration/*.sh
else
    set -- "${@/#/$SL_TOP/tests/integration/}"
    set -- "${@/%/.sh}"
    set -- "${@//.sh.sh/.sh}"
fi

for t in "$@"; do
    name=$(basename "$t" .sh)
    echo "=== integration: $name"
    before=$(wc -l < "$SL_RESULTS")
    start=$(date +%s)
    bash "$t"
    rc=$?
    after=$(wc -l < "$SL_RESULTS")
    echo "=== $name: exit $rc in $(( $(date +%s) - start ))s"
    # A script that died before recording a failure still failed.
    if [ "$rc" -ne 0 ] && ! tail -n $((after - before)) "$SL_RESULTS" | grep -q '^fail '; then
        echo "fail $name (exited $rc)" >> "$SL_RESULTS"
    fi
done

ip=$(grep -c '^pass ' "$SL_RESULTS")
if_=$(grep -c '^fail ' "$SL_RESULTS")
grep '^fail ' "$SL_RESULTS" | sed 's/^fail /FAILED: /'
passed=$((passed + ip))
failed=$((failed + if_))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
