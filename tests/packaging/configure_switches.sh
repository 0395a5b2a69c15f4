#!/usr/bin/env bash
# The ./configure switches that leave parts out: a build for a role that
# needs no ClickHouse (--disable-clickhouse --disable-aggregator) builds,
# passes its unit tests, has neither the aggregator nor the ClickHouse API,
# and refuses a [clickhouse] section saying why; the aggregator alone
# cannot lose its connector.
. "$(dirname "$0")/../lib.sh"

t_scratch

t_case "--disable-clickhouse --disable-aggregator builds a daemon without them"
if [ ! -x "$SL_TOP/configure" ] || [ -f "$SL_TOP/config.status" ]; then
    t_skip "needs a source tree with configure, not configured in place (autoreconf -fi)"
else
    b=$work/build
    mkdir -p "$b"
    (cd "$b" && "$SL_TOP/configure" --quiet --disable-clickhouse --disable-aggregator \
        > "$work/configure.out" 2>&1 && make -s -j2 > "$work/make.out" 2>&1)
    rc=$?
    tail -n 5 "$work/configure.out" "$work/make.out"
    t_check "$rc" -eq 0 "configure and make"
    make -C "$b" -s check > "$work/check.out" 2>&1
    rc=$?
    grep -E '^# (TOTAL|FAIL)' "$b/test-suite.log" 2> /dev/null
    t_check "$rc" -eq 0 "make check"
    t_check ! -e "$b/_modules/aggregator.so" "no aggregator module"
    t_check -e "$b/_modules/segments.so" "the other modules are built"
    t_check "$(nm -D --defined-only "$b/core/sluiced" | grep -c ' sl_ch_')" -eq 0 \
        "no ClickHouse API exported"
    t_check "$(nm -D --defined-only "$b/core/sluiced" | grep -c ' sl_pg_query$')" -eq 1 \
        "the other connectors' API is"
    printf '[core]\nlisten =\n[clickhouse]\nurl = http://127.0.0.1:8123\n' > "$work/ch.conf"
    "$b/core/sluiced" -t -c "$work/ch.conf" 2> "$work/t.out"
    rc=$?
    cat "$work/t.out"
    t_check "$rc" -eq 1 "a config with [clickhouse] is refused"
    t_check "$(grep -c 'ch.conf:3: section \[clickhouse\]: this sluiced is built without it (--disable-clickhouse)' "$work/t.out")" -eq 1 \
        "saying why, at its line"
fi
t_end

t_case "--disable-clickhouse alone is refused: the aggregator needs it"
if [ ! -x "$SL_TOP/configure" ] || [ -f "$SL_TOP/config.status" ]; then
    t_skip "needs a source tree with configure, not configured in place (autoreconf -fi)"
else
    mkdir -p "$work/refused"
    (cd "$work/refused" && "$SL_TOP/configure" --quiet --disable-clickhouse) > "$work/refused.out" 2>&1
    rc=$?
    t_check "$rc" -ne 0 "configure fails"
    t_check "$(grep -c 'the aggregator needs the ClickHouse connector: add --disable-aggregator' "$work/refused.out")" -eq 1 \
        "and says what to add"
fi
t_end

t_exit
