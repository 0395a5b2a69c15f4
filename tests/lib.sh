# tests/lib.sh - sourced by integration tests.
#
# A test file is a bash script holding one or more cases:
#
#   . "$(dirname "$0")/../lib.sh"
#   t_case "reload keeps listeners open"
#   ... commands ...; t_check "$code" = 200 "healthz answered $code"
#   t_end
#
# A case passes when it made at least one check and none failed; a case
# with no check at all fails (it proved nothing).  `t_skip REASON` marks a
# case skipped (say why: a tool is missing...); under CI=true a skip counts
# as a failure, since CI installs everything the tests need.  Results are
# appended to $SL_RESULTS, one "pass NAME", "fail NAME" or "skip NAME: REASON"
# line per case, so that the runner can total them; a script may also be
# run on its own.

set -u
SL_TOP=${SL_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
SL_BUILD=${SL_BUILD:-$SL_TOP}
SL_RESULTS=${SL_RESULTS:-/dev/null}
SLUICED=${SLUICED:-$SL_BUILD/core/sluiced}
t_name=""
t_ok=1
t_checks=0
t_skipped=""
t_failed_total=0

t_case() {
    t_name=$1
    t_ok=1
    t_checks=0
    t_skipped=""
    echo "--- case: $t_name"
}

# t_check TEST... MESSAGE: the arguments but the last are given to `test`.
t_check() {
    local msg=${*: -1}
    local args=("${@:1:$#-1}")
    t_checks=$((t_checks + 1))
    if test "${args[@]}"; then
        echo "    ok: $msg"
    else
        # The operands show what was seen, so a failure in a CI log explains itself.
        local seen="${args[*]}"
        echo "    FAILED: $msg (test ${seen:0:300})"
        t_ok=0
    fi
}

# t_skip REASON: the case cannot run here (and says why).  Checks made
# before or after still count: a failed one fails the case.
t_skip() {
    t_skipped=$1
    if [ "${CI:-}" = true ]; then
        echo "    FAILED: skipped under CI=true, where nothing may be: $1"
        t_ok=0
    else
        echo "    SKIPPED: $1"
    fi
}

t_end() {
    local why=""
    if [ "$t_ok" = 1 ] && [ -n "$t_skipped" ]; then
        echo "skip $t_name: $t_skipped" >> "$SL_RESULTS"
        echo "--- skip: $t_name"
        return
    fi
    [ -n "$t_skipped" ] && why=" (skipped: $t_skipped)"
    if [ "$t_ok" = 1 ] && [ "$t_checks" = 0 ]; then
        echo "    FAILED: the case made no check"
        t_ok=0
        why=" (made no check)"
    fi
    if [ "$t_ok" = 1 ]; then
        echo "pass $t_name" >> "$SL_RESULTS"
        echo "--- pass: $t_name"
    else
        echo "fail $t_name$why" >> "$SL_RESULTS"
        echo "--- FAIL: $t_name"
        t_failed_total=$((t_failed_total + 1))
    fi
}

# The exit status of a test file: non-zero when any case failed.
t_exit() {
    [ "$t_failed_total" = 0 ]
}

# A free TCP port on 127.0.0.1.
t_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# t_wait_http URL [SECONDS]: waits until URL answers at all.
t_wait_http() {
    local url=$1 limit=${2:-10} i=0
    while [ $i -lt $((limit * 10)) ]; do
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# t_wait_for SECONDS COMMAND...: polls a command until it succeeds.
t_wait_for() {
    local limit=$1 i=0
    shift
    while [ $i -lt $((limit * 10)) ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# A private scratch directory, removed at exit unless SL_KEEP is set.
t_tmpdir() {
    local d
    d=$(mktemp -d "${TMPDIR:-/tmp}/sluice-test.XXXXXX")
    echo "$d"
}

# t_scratch [MODULE.so...]: $work, a private directory removed at exit
# (kept with SL_KEEP), and $pids, processes killed at exit: append what you
# start.  The servers of tests/harness/services.sh, when sourced first, are
# stopped at exit too (this trap replaces its own).  With module files,
# $mods is $work/mods holding copies of them, for `modules_dir = mods`.
t_scratch() {
    work=$(t_tmpdir)
    pids=()
    trap _t_scratch_end EXIT
    if [ $# -gt 0 ]; then
        mods=$work/mods
        mkdir -p "$mods" && cp "$@" "$mods/"
    fi
}
_t_scratch_end() {
    local p
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    if declare -F sl_svc_stop_all >/dev/null; then sl_svc_stop_all; fi
    [ -n "${SL_KEEP:-}" ] || rm -rf "$work"
}

# t_wait_until SECONDS 'SHELL CONDITION': polls a condition that is
# evaluated afresh each time, e.g.
#   t_wait_until 5 '[ "$(code_of "$base/readyz")" = 200 ]'
# (t_wait_for 5 test "$(...)" = 200 would compute the value only once.)
t_wait_until() {
    local limit=$1 i=0
    while [ $i -lt $((limit * 10)) ]; do
        eval "$2" >/dev/null 2>&1 && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
