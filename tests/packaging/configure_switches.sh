#!/usr/bin/env bash
# The ./configure switches that leave parts out: a build for a role that
# needs no ClickHouse (--disable-clickhouse --disable-aggregator) builds,
# passes its unit tests, has neither the aggregator nor the ClickHouse API,
# and refuses a [clickhouse] section saying why; the aggregator alone
# cannot lose its connector.  A module added to a copy of the tree as a
# folder plus one line in Makefile.am gets its --disable switch, builds and
# loads.
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
    t_check "$(readelf -d "$b/core/sluiced" | grep -c 'NEEDED.*libcurl')" -eq 1 \
        "libcurl still linked, as the README says: the tracing exporter uses the core's curl client"
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

t_case "a new module is its folder plus one line: configure makes its switch"
if ! command -v autoreconf > /dev/null || ! git -C "$SL_TOP" rev-parse --git-dir > /dev/null 2>&1 ||
    [ ! -x "$SL_BUILD/core/sluiced" ]; then
    t_skip "needs autoreconf, a git checkout and a build"
else
    # A copy of the tree (tracked and new files, no builds) gets a module
    # folder and one include line in Makefile.am, nothing else.
    tree=$work/tree
    mkdir -p "$tree/modules/throwaway"
    (cd "$SL_TOP" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$tree")
    cat > "$tree/modules/throwaway/throwaway.c" <<'EOF'
#include <sluice/sluice.h>

static int start(sl_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static void stop(sl_ctx *ctx)
{
    sl_stopped(ctx);
}

static const sl_option options[] = { { NULL, 0, NULL, NULL, 0, 0, NULL } };

SL_API const sl_module sluice_module = {
    .abi_version = SL_ABI_VERSION,
    .name = "throwaway",
    .description = "a module added by configure_switches.sh",
    .options = options,
    .start = start,
    .stop = stop,
};
EOF
    cat > "$tree/modules/throwaway/Makefile.inc" <<'EOF'
if MODULE_THROWAWAY
pkglib_LTLIBRARIES += modules/throwaway/throwaway.la
endif
modules_throwaway_throwaway_la_SOURCES = modules/throwaway/throwaway.c
modules_throwaway_throwaway_la_LDFLAGS = $(MODULE_LDFLAGS)
EOF
    sed -i 's|^include modules/segments/Makefile.inc$|&\ninclude modules/throwaway/Makefile.inc|' "$tree/Makefile.am"
    t_check "$(cd "$SL_TOP" && diff -r -q . "$tree" 2>/dev/null | grep -v '^Only in \.' | wc -l)" -eq 2 \
        "the copy differs by Makefile.am and the new folder: $(cd "$SL_TOP" && diff -r -q . "$tree" 2>/dev/null | grep -v '^Only in \.' | tr '\n' ' ')"
    (cd "$tree" && autoreconf -fi) > "$work/autoreconf.out" 2>&1
    t_check $? -eq 0 "autoreconf -fi: $(tail -n 3 "$work/autoreconf.out")"
    t_check "$("$tree/configure" --help | grep -c -- '--disable-throwaway *do not build the throwaway module')" -eq 1 \
        "configure --help offers --disable-throwaway"
    mkdir -p "$work/with" "$work/without"
    (cd "$work/with" && "$tree/configure" --quiet && make -s modules/throwaway/throwaway.la) > "$work/with.out" 2>&1
    t_check $? -eq 0 "configure and make build it: $(tail -n 3 "$work/with.out")"
    printf '[core]\nlisten =\nmodules_dir = %s\n' "$work/with/modules/throwaway/.libs" > "$work/throwaway.conf"
    "$SL_BUILD/core/sluiced" -c "$work/throwaway.conf" --help-module throwaway > "$work/help.out" 2>&1
    t_check "$(grep -c 'added by configure_switches.sh' "$work/help.out")" -eq 1 \
        "sluiced loads it: $(head -c 200 "$work/help.out")"
    (cd "$work/without" && "$tree/configure" --quiet --disable-throwaway) > "$work/without.out" 2>&1
    t_check $? -eq 0 "configure --disable-throwaway: $(tail -n 3 "$work/without.out")"
    t_check "$(make -C "$work/without" -s -n all-local 2>&1 | grep -c 'throwaway')" -eq 0 \
        "which leaves it out of the build"
    t_check "$(make -C "$work/with" -s -n all-local 2>&1 | grep -c 'throwaway')" -ge 1 \
        "that includes it otherwise"
fi
t_end

t_exit
