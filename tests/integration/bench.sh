#!/usr/bin/env bash
# tests/bench/run-all.sh, on stand-in benchmarks (the real ones take many
# minutes and are not part of the suite): it runs each bench_*.sh, collects
# their RESULT lines into one table with the ratios, flags a benchmark that
# failed or reported nothing, and exits non-zero for it.  The real
# benchmarks must all print RESULT lines through result.sh.
. "$(dirname "$0")/../lib.sh"

t_scratch
mkdir -p "$work/benches" "$work/logs"
cat > "$work/benches/bench_alpha.sh" <<'B'
. "$SL_TOP/tests/bench/result.sh"
echo "some table of its own"
bench_result requests 8000 req/s 10000 nginx ">=0.8"
bench_result reload_median 3.5 ms - - "<50"
B
cat > "$work/benches/bench_beta.sh" <<'B'
echo "crashed before its figures" >&2
exit 3
B
# A reference run that failed: its median of nothing, or a nan.
cat > "$work/benches/bench_gamma.sh" <<'B'
. "$SL_TOP/tests/bench/result.sh"
printf '5000\n\n' > "$BENCH_TMP/runs"
if m=$(bench_median < "$BENCH_TMP/runs"); then echo "median of a failed run: $m"; fi
bench_result requests 8000 req/s nan nginx ">=0.8"
echo "after a nan reference: not reached"
B
export SL_TOP

t_case "run-all.sh: one table of every benchmark's RESULT lines, with ratios"
BENCH_DIR=$work/benches BENCH_LOGS=$work/logs bash "$SL_TOP/tests/bench/run-all.sh" alpha > "$work/out" 2>&1
rc=$?
cat "$work/out"
t_check "$rc" -eq 0 "exit 0 when every benchmark reported"
t_check "$(awk '$1 == "alpha" && $2 == "requests" { print $3, $4, $5, $6, $7, $8 }' "$work/out")" = \
    "8000 req/s 10000 (nginx) 0.80 >=0.8" "figure, reference and ratio 0.80"
t_check "$(awk '$1 == "alpha" && $2 == "reload_median" { print $3, $4, $5, $6, $7 }' "$work/out")" = \
    "3.5 ms - - <50" "a figure without a reference"
t_check -s "$work/logs/bench_alpha.log" "the benchmark's own output kept"
t_end

t_case "run-all.sh: a failed benchmark shows in the table and fails the run"
BENCH_DIR=$work/benches BENCH_LOGS=$work/logs bash "$SL_TOP/tests/bench/run-all.sh" alpha beta > "$work/out" 2>&1
rc=$?
cat "$work/out"
t_check "$rc" -ne 0 "non-zero exit"
t_check "$(grep -c '^beta .*FAILED(exit_3,no_figures)' "$work/out")" = 1 "beta's row says it failed and printed nothing"
t_check "$(grep -c '^alpha .* ok$' "$work/out")" = 2 "alpha's figures still listed, from a run that finished"
t_end

t_case "a failed reference run fails the benchmark instead of becoming nan"
BENCH_TMP=$work BENCH_DIR=$work/benches BENCH_LOGS=$work/logs bash "$SL_TOP/tests/bench/run-all.sh" gamma > "$work/out" 2>&1
rc=$?
cat "$work/out" "$work/logs/bench_gamma.log"
t_check "$rc" -ne 0 "run-all.sh exits non-zero"
t_check "$(grep -c '^gamma .*FAILED(exit_1)' "$work/out")" = 1 "gamma's row says it failed (not that it printed nothing)"
t_check "$(awk '$1 == "gamma" && $2 == "requests" { print $7, $9 }' "$work/out")" = "FAILED failed(exit_1)" \
    "its figure is marked as from a run that failed"
t_check "$(grep -c '^RESULT .*ratio=FAILED' "$work/logs/bench_gamma.log")" = 1 "its RESULT line says FAILED, not a ratio"
t_check "$(grep -c "reference 'nan' is not a number" "$work/logs/bench_gamma.log")" = 1 "and why"
t_check "$(grep -c 'median of a failed run\|not reached' "$work/logs/bench_gamma.log")" = 0 "bench_median refused a run with no figure; bench_result stopped the benchmark"
t_end

t_case "every real benchmark reports through result.sh"
for b in "$SL_TOP"/tests/bench/bench_*.sh; do
    t_check "$(grep -c '^bench_result ' "$b")" -ge 1 "$(basename "$b") prints RESULT lines"
done
t_end

t_exit
