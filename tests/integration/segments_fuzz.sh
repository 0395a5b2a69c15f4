#!/usr/bin/env bash
# A bounded libFuzzer run (clang, ASan+UBSan) of the segments module's
# request parsers (tests/fuzz/fuzz_segments.c): zero crashes and zero
# contract violations in SL_FUZZ_SECONDS (30 by default).
. "$(dirname "$0")/../lib.sh"

work=$(t_tmpdir)
cleanup() { [ -n "${SL_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
seconds=${SL_FUZZ_SECONDS:-30}

t_case "the fuzz target builds with clang and libFuzzer"
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$SL_TOP/modules/segments" "$SL_TOP/tests/fuzz/fuzz_segments.c" \
    "$SL_TOP/modules/segments/parse.c" "$SL_TOP/modules/segments/sha256.c" \
    -lcjson -lm -o "$work/fuzz_segments" 2> "$work/build.log"
t_check $? -eq 0 "built: $(tail -n 3 "$work/build.log")"
t_end

t_case "the request parsers survive ${seconds}s of fuzzing"
mkdir -p "$work/corpus" "$work/crashes"
i=0
for seed in '{"user_id": 1, "add_segments": ["AVITO_DISCOUNT_30", "B"], "delete_segments": ["C"], "ttl": 86400}' \
    '{"slug": "AVITO_DISCOUNT_30", "user_percent": 12.5}' '{"slug": "X"}' '9007199254740991' \
    '2023&9' '7-2026-11-54f98821281e145b36789466e717148a.csv' '{"user_id": 1e300, "add_segments": [null]}'; do
    printf '%s' "$seed" > "$work/corpus/seed$i"
    i=$((i + 1))
done
(cd "$work" && ./fuzz_segments -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$work/crashes/" corpus > "$work/fuzz.log" 2>&1)
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log")
t_check "$rc" -eq 0 "libFuzzer exit 0: $(grep -m1 -E 'ERROR|abort|deadly' "$work/fuzz.log")"
t_check "$(ls "$work/crashes" | wc -l)" = 0 "no crash or timeout artifact"
t_check "${runs:-0}" -gt 1000 "${runs:-0} inputs tried"
t_end

t_exit
