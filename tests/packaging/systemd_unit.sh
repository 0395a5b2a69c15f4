#!/usr/bin/env bash
# The systemd unit shipped in contrib/systemd: what `make` generates from
# sluiced@.service.in is a Type=notify unit reloaded by SIGHUP, hardened,
# and passes `systemd-analyze verify`.  That sluiced speaks the notify
# protocol the unit relies on is tests/integration/systemd.sh.
. "$(dirname "$0")/../lib.sh"

t_scratch

t_case "sluiced@.service: Type=notify, reload by SIGHUP, passes systemd-analyze verify"
unit=$SL_BUILD/contrib/systemd/sluiced@.service
t_check -f "$unit" "make generated $unit"
t_check "$(grep -c '^Type=notify$' "$unit" 2>/dev/null)" = 1 "Type=notify"
t_check "$(grep -c '^ExecReload=/bin/kill -HUP \$MAINPID$' "$unit" 2>/dev/null)" = 1 "ExecReload sends SIGHUP"
t_check "$(grep -c '^ExecStart=.*/sluiced -c .*/%i.conf$' "$unit" 2>/dev/null)" = 1 "one config per role (%i)"
for opt in NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes DynamicUser=yes; do
    t_check "$(grep -c "^$opt$" "$unit" 2>/dev/null)" = 1 "hardening: $opt"
done
if command -v systemd-analyze >/dev/null; then
    # The unit names the installed sluiced; point it at the one under
    # test, and give man(1) the pages its Documentation= names.
    mkdir -p "$work/unit" "$work/man/man5" "$work/man/man8"
    sed "s|^\(Exec[A-Za-z]*=\)[^ ]*/sluiced |\1$SLUICED |" "$unit" > "$work/unit/sluiced@.service"
    cp "$SL_TOP/contrib/man/sluice.conf.5" "$work/man/man5/"
    cp "$SL_TOP/contrib/man/sluiced.8" "$work/man/man8/"
    MANPATH=$work/man systemd-analyze verify "$work/unit/sluiced@.service" > "$work/verify.out" 2>&1
    rc=$?
    cat "$work/verify.out"
    t_check "$rc" -eq 0 "systemd-analyze verify"
    t_check ! -s "$work/verify.out" "no warning"
else
    t_skip "systemd-analyze is not installed (tests/harness/install-deps.sh installs systemd)"
fi
t_end

t_exit
