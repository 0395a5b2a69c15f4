#!/usr/bin/env bash
# tests/run.sh - runs the suite against a configured build tree: the cmocka
# unit tests (make check), then every tests/integration/*.sh (the daemon
# against real servers), then every tests/packaging/*.sh (what ships beside
# the daemon: install layout, systemd unit, deployment files, generated
# documentation).  Ends with one line "N passed, N failed, N skipped" and
# exits non-zero on any failure.
#
#   SL_BUILD=build-asan tests/run.sh [NAME...]
#
# A NAME is a script (core, deploy) or a whole kind (unit, integration,
# packaging); with no NAME, all three kinds run.  Each script runs
# under a bound of SL_TEST_TIMEOUT seconds (default 1800): one that overruns
# is killed, counted as a failure under its name, and the suite goes on.
set -u
SL_TOP=$(cd "$(dirname "$0")/.." && pwd)
SL_BUILD=$(cd "${SL_BUILD:-$SL_TOP}" && pwd)
SL_RESULTS=$(mktemp "${TMPDIR:-/tmp}/sluice-results.XXXXXX")
export SL_TOP SL_BUILD SL_RESULTS
trap 'rm -f "$SL_RESULTS"' EXIT
# The slowest script (aggregator.sh) took 714 s on a 2-core machine
# loaded to 20; the bound is for a hang, not for a slow machine.
limit=${SL_TEST_TIMEOUT:-1800}
kinds="integration packaging"

# The unit test programs the build lists in TESTS, asked of its Makefile
# (empty when configure found no cmocka).
unit_programs() {
    printf 'sl-print-tests:\n\t@echo $(TESTS)\n' |
        make -s --no-print-directory -C "$SL_BUILD" -f Makefile -f - sl-print-tests
}

# One result per unit test program, read from the .trs file automake's
# harness writes for it.  The .log/.trs files of a previous run are removed
# first, so a program that no longer builds has no result rather than an
# old one; a program that prints its cmocka summary and then exits non-zero
# (LeakSanitizer) is a FAIL in its .trs.
unit_tests() {
    local progs p trs res src out
    echo "=== unit tests"
    progs=$(unit_programs)
    if [ -z "$progs" ]; then
        echo "fail unit tests: none in the build (is libcmocka-dev installed?)" >> "$SL_RESULTS"
        return
    fi
    for src in "$SL_TOP"/tests/unit/test_*.c; do
        p=tests/unit/$(basename "$src" .c)
        case " $progs " in
        *" $p "*) ;;
        *)
            # Built without its module (configure --disable-NAME), or
            # never added to a Makefile fragment: CI builds everything.
            if [ "${CI:-}" = true ]; then
                echo "fail unit $p: tests/unit/$(basename "$src") is not in the build's TESTS" >> "$SL_RESULTS"
            else
                echo "skip unit $p: not in this build's TESTS (a module configured out?)" >> "$SL_RESULTS"
            fi
            ;;
        esac
    done
    for p in $progs; do
        rm -f "$SL_BUILD/$p.log" "$SL_BUILD/$p.trs"
    done
    rm -f "$SL_BUILD/test-suite.log"
    out=$(mktemp "${TMPDIR:-/tmp}/sluice-check.XXXXXX")
    make -C "$SL_BUILD" -s check > "$out" 2>&1
    local mrc=$?
    for p in $progs; do
        trs=$SL_BUILD/$p.trs
        [ -f "$SL_BUILD/$p.log" ] && cat "$SL_BUILD/$p.log"
        if [ ! -f "$trs" ]; then
            echo "fail unit $p: no result (it did not build or did not run)" >> "$SL_RESULTS"
            continue
        fi
        res=$(sed -n 's/^:test-result: *//p' "$trs")
        case $res in
        PASS | XFAIL) echo "pass unit $p" >> "$SL_RESULTS" ;;
        SKIP)
            if [ "${CI:-}" = true ]; then
                echo "fail unit $p (skipped under CI=true)" >> "$SL_RESULTS"
            else
                echo "skip unit $p: the program asked to be skipped" >> "$SL_RESULTS"
            fi
            ;;
        *) echo "fail unit $p (${res:-no :test-result: line})" >> "$SL_RESULTS" ;;
        esac
    done
    if [ "$mrc" -ne 0 ]; then
        tail -40 "$out"
        echo "fail unit tests: make check exited $mrc" >> "$SL_RESULTS"
    fi
    rm -f "$out"
}

# run_script FILE: one test script under the time bound, in a process
# group of its own so that a timeout (or our own interruption) reaches
# every process it started.
run_script() {
    local t=$1 name kind before after start rc took tpid
    name=$(basename "$t" .sh)
    kind=$(basename "$(dirname "$t")")
    echo "=== $kind: $name"
    before=$(wc -l < "$SL_RESULTS")
    start=$(date +%s)
    timeout --kill-after=30 "$limit" bash "$t" &
    tpid=$!
    trap 'kill -TERM -- -$tpid 2>/dev/null; exit 130' INT TERM
    wait "$tpid"
    rc=$?
    trap - INT TERM
    took=$(($(date +%s) - start))
    after=$(wc -l < "$SL_RESULTS")
    echo "=== $name: exit $rc in ${took}s"
    if { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && [ "$took" -ge "$limit" ]; then
        echo "fail $kind/$name (timed out after ${limit}s; SL_TEST_TIMEOUT raises the bound)" >> "$SL_RESULTS"
    elif [ "$rc" -ne 0 ] && ! tail -n $((after - before)) "$SL_RESULTS" | grep -q '^fail '; then
        # A script that died before recording a failure still failed.
        echo "fail $kind/$name (exited $rc)" >> "$SL_RESULTS"
    elif [ "$after" -eq "$before" ]; then
        echo "fail $kind/$name (recorded no case)" >> "$SL_RESULTS"
    fi
}

scripts=()
[ $# -eq 0 ] && set -- unit $kinds
for arg in "$@"; do
    arg=${arg%.sh}
    if [ "$arg" = unit ]; then
        unit_tests
        continue
    fi
    if [ -d "$SL_TOP/tests/$arg" ] && [[ " $kinds " == *" $arg "* ]]; then
        scripts+=("$SL_TOP/tests/$arg"/*.sh)
        continue
    fi
    found=""
    for k in $kinds; do
        [ -f "$SL_TOP/tests/$k/$arg.sh" ] && found=$SL_TOP/tests/$k/$arg.sh
    done
    if [ -n "$found" ]; then
        scripts+=("$found")
    else
        echo "fail $arg (no tests/{${kinds// /,}}/$arg.sh)" >> "$SL_RESULTS"
    fi
done
for t in "${scripts[@]}"; do
    run_script "$t"
done

passed=$(grep -c '^pass ' "$SL_RESULTS")
failed=$(grep -c '^fail ' "$SL_RESULTS")
skipped=$(grep -c '^skip ' "$SL_RESULTS")
grep '^skip ' "$SL_RESULTS" | sed 's/^skip /SKIPPED: /'
grep '^fail ' "$SL_RESULTS" | sed 's/^fail /FAILED: /'
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
