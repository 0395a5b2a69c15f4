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

bench_result() {
    local name=$1 value=$2 unit=$3 reference=$4 against=$5 target=$6 ratio=-
    if [ "$reference" != - ]; then
        ratio=$(awk -v v="$value" -v r="$reference" 'BEGIN { if (r + 0 == 0) print "-"; else printf "%.2f", v / r }')
    fi
    printf 'RESULT bench=%s name=%s value=%s unit=%s reference=%s against=%s ratio=%s target=%s\n' \
        "${BENCH_NAME:-$(basename "$0" .sh)}" "$name" "$value" "$unit" "$reference" "${against:--}" \
        "$ratio" "${target:--}"
}
