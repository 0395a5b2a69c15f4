# tests/bench/result.sh - sourced by every bench_*.sh: the one
# machine-readable line per figure that tests/bench/run-all.sh collects
# into its table (the convention is described in tests/bench/README).
#
#   bench_result NAME VALUE UNIT REFERENCE AGAINST TARGET
#
# prints
#
#   RESULT bench=<script> name=<NAME> value=<VALUE> unit=<UNIT> reference=<REFERENCE> against=<AGAINST> ratio=<VALUE/REFERENCE> target=<TARGET>
#
# Fields are space separated key=value, and no value holds a space (use
# '_').  REFERENCE is the reference's figure measured in the same run, or
# '-' when the figure has none (then ratio=-); AGAINST names the reference
# (nginx, rdkafka_performance, ...); TARGET is what the ratio (or, without
# a reference, the value) should be, e.g. '>=0.8' or '<50', or '-'.

#
# A figure that is not a number (a run that failed and left nothing, or a
# nan) is no figure: bench_result then prints the line with ratio=FAILED,
# says why on stderr and exits 1, so that the benchmark fails rather than
# report it.  VALUE must be a number >= 0, REFERENCE '-' or a number > 0.
#
#   bench_median < FILE
#
# prints the median of one figure per line, and fails (printing nothing)
# when there is none or one of them is not a number > 0: every run's figure
# must exist for the median of the runs to mean anything.

bench_is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?([eE][+-]?[0-9]+)?$ ]]; }

bench_result() {
    local name=$1 value=$2 unit=$3 reference=$4 against=$5 target=$6 ratio=- why=""
    if ! bench_is_number "$value"; then
        why="value '$value' is not a number"
    elif [ "$reference" != - ] && { ! bench_is_number "$reference" || awk -v r="$reference" 'BEGIN { exit !(r + 0 == 0) }'; }; then
        why="reference '$reference' is not a number > 0 (did the reference run fail?)"
    elif [ "$reference" != - ]; then
        ratio=$(awk -v v="$value" -v r="$reference" 'BEGIN { printf "%.2f", v / r }')
    fi
    [ -z "$why" ] || ratio=FAILED
    printf 'RESULT bench=%s name=%s value=%s unit=%s reference=%s against=%s ratio=%s target=%s\n' \
        "${BENCH_NAME:-$(basename "$0" .sh)}" "$name" "${value:--}" "$unit" "${reference:--}" "${against:--}" \
        "$ratio" "${target:--}"
    if [ -n "$why" ]; then
        echo "bench_result $name: $why" >&2
        exit 1
    fi
}

bench_median() {
    sort -g | awk 'function bad(why) { print "bench_median: " why > "/dev/stderr"; failed = 1; exit 1 }
        { if ($0 !~ /^[0-9]+([.][0-9]+)?([eE][+-]?[0-9]+)?$/ || $0 + 0 <= 0) bad("a run has no figure: \"" $0 "\"")
          v[NR] = $0 + 0 }
        END { if (failed) exit 1
              if (NR == 0) bad("no run has a figure")
              print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
