#!/usr/bin/env bash
# `make install DESTDIR=...` from the build under test: what lands where,
# and that the installed daemon runs from the installed files alone (its
# modules and the installed configs, whose modules_dir was rewritten).
. "$(dirname "$0")/../lib.sh"

t_scratch
dest=$work/dest

t_case "make install DESTDIR puts the binary, modules, configs, man pages and the unit in place"
make -C "$SL_BUILD" -s install DESTDIR="$dest" > "$work/install.out" 2>&1
rc=$?
tail -5 "$work/install.out"
t_check "$rc" -eq 0 "make install"
prefix=$(sed -n 's/^prefix = //p' "$SL_BUILD/Makefile")
sysconfdir=$(sed -n 's/^sysconfdir = //p' "$SL_BUILD/Makefile" | sed "s|\${prefix}|$prefix|")
unitdir=$(sed -n 's/^systemdsystemunitdir = //p' "$SL_BUILD/Makefile" | sed "s|\${prefix}|$prefix|")
echo "    what landed (prefix $prefix):"
(cd "$dest" && find . -type f | sort | sed 's/^/      /')
root=$dest$prefix
t_check -x "$root/sbin/sluiced" "sbin/sluiced"
for m in "$SL_BUILD"/_modules/*.so; do
    t_check -f "$root/lib/sluice/$(basename "$m")" "module $(basename "$m")"
done
for c in "$SL_TOP"/conf/*.conf; do
    t_check -f "$dest$sysconfdir/sluice/$(basename "$c")" "config $(basename "$c")"
done
t_check -f "$root/share/man/man8/sluiced.8" "man page sluiced(8)"
t_check -f "$root/share/man/man5/sluice.conf.5" "man page sluice.conf(5)"
t_check -f "$root/share/man/man7/sluice-api.7" "man page sluice-api(7)"
t_check -f "$root/share/man/man7/sluice-metrics.7" "man page sluice-metrics(7)"
t_check -f "$root/share/man/man7/sluice-security.7" "man page sluice-security(7)"
t_check -f "$root/share/man/man7/sluice-tracing.7" "man page sluice-tracing(7)"
t_check -f "$dest$unitdir/sluiced@.service" "systemd unit in $unitdir"
t_check "$(grep -c "^ExecStart=$prefix/sbin/sluiced -c $sysconfdir/sluice/%i.conf$" "$dest$unitdir/sluiced@.service" 2>/dev/null)" = 1 \
    "the unit runs the installed sluiced with $sysconfdir/sluice/%i.conf"
for h in sluice kafka pg redis clickhouse; do
    t_check -f "$root/include/sluice/$h.h" "include/sluice/$h.h"
done
t_end

t_case "the installed man pages render without warnings"
for page in man8/sluiced.8 man5/sluice.conf.5 man7/sluice-api.7 man7/sluice-metrics.7 \
    man7/sluice-security.7 man7/sluice-tracing.7; do
    out=$(MANWIDTH=80 man --warnings -l "$root/share/man/$page" 2>&1 >/dev/null)
    t_check -z "$out" "$page: no warning${out:+: $out}"
    t_check "$(MANWIDTH=80 man -l "$root/share/man/$page" 2>/dev/null | wc -l)" -gt 50 "$page renders"
done
t_check "$(MANWIDTH=80 man -l "$root/share/man/man5/sluice.conf.5" 2>/dev/null | grep -c -E '^ +(listen|brokers|sample_interval)')" -ge 3 \
    "sluice.conf(5) holds the option reference"
t_end

t_case "the installed configs check against the installed modules"
for c in "$dest$sysconfdir"/sluice/*.conf; do
    # modules_dir names the final location; under DESTDIR it is elsewhere.
    t_check "$(grep -c "^modules_dir = $prefix/lib/sluice$" "$c")" = 1 "$(basename "$c"): modules_dir = $prefix/lib/sluice"
    sed "s|^modules_dir = .*|modules_dir = $root/lib/sluice|" "$c" > "$work/$(basename "$c")"
    "$root/sbin/sluiced" -t -c "$work/$(basename "$c")" > "$work/t.out" 2>&1
    rc=$?
    cat "$work/t.out"
    t_check "$rc" -eq 0 "installed sluiced -t $(basename "$c")"
done
t_end

t_case "make uninstall removes what install put there"
make -C "$SL_BUILD" -s uninstall DESTDIR="$dest" > "$work/uninstall.out" 2>&1
t_check $? -eq 0 "make uninstall"
left=$(cd "$dest" && find . -type f | grep -v '\.la$' | sort)
t_check -z "$left" "no file left${left:+: $left}"
t_end

t_exit
