#!/usr/bin/env bash
# The documentation that is generated from code is up to date, and every
# shipped config passes `sluiced -t` against the modules of the build under
# test.
. "$(dirname "$0")/../lib.sh"

t_case "the configuration reference (README, sluice.conf(5)) matches the declared options"
bash "$SL_TOP/contrib/gen-reference.sh" --check "$SL_BUILD" > /tmp/sluice-docs.$$ 2>&1
rc=$?
head -40 /tmp/sluice-docs.$$
t_check "$(grep -c "^README.md: .* stale" /tmp/sluice-docs.$$)" = 0 "README.md's reference up to date"
t_check "$(grep -c "^contrib/man/sluice.conf.5: .* stale" /tmp/sluice-docs.$$)" = 0 "sluice.conf(5)'s reference up to date"
rm -f /tmp/sluice-docs.$$
t_check "$rc" -eq 0 "gen-reference.sh --check"
# The man page holds every section the code declares.
for s in $("$SLUICED" --list-sections) $(cd "$SL_BUILD/_modules" && ls *.so | sed 's/\.so$//'); do
    case $s in core | redis | clickhouse | kafka | postgres | tracing) head="[$s]" ;; *) head="[module $s]" ;; esac
    t_check "$(grep -c -F ".SS \"$head\"" "$SL_TOP/contrib/man/sluice.conf.5")" = 1 "sluice.conf(5) documents $head"
done
t_end

t_case "every metric the dashboard and the alerts use is one the README documents and the code registers"
documented=$(grep -o '^| `sluice_[a-z0-9_]*`' "$SL_TOP/README.md" | sed 's/^| `//; s/`$//' | sort -u)
registered=$(grep -rhoE '"sluice_[a-z0-9_]+"' "$SL_TOP/core" "$SL_TOP/modules" | tr -d '"' | sort -u)
for f in "$SL_TOP/contrib/grafana/sluice.json" "$SL_TOP"/contrib/prometheus/*.yml; do
    for m in $(grep -o 'sluice_[a-z0-9_]*' "$f" | sed -E 's/_(bucket|sum|count)$//' | sort -u); do
        # Recording rules and test fixtures name series, not metrics.
        case $m in sluice_rules* | sluice_job*) continue ;; esac
        grep -qx "$m" <<< "$documented" || t_check "$m" = documented "$(basename "$f"): $m is in the README's metrics table"
        grep -qx "$m" <<< "$registered" || t_check "$m" = registered "$(basename "$f"): $m is registered by core/ or modules/"
    done
done
t_check "$(wc -l <<< "$documented")" -gt 40 "the README documents $(wc -l <<< "$documented") metrics"
for m in $documented; do
    grep -qx "$m" <<< "$registered" || t_check "$m" = registered "README: $m is registered by core/ or modules/"
done
t_end

t_case "every file in conf/ passes sluiced -t"
work=$(t_tmpdir)
for f in "$SL_TOP"/conf/*.conf; do
    # Only modules_dir differs: it names the build being tested.
    sed "s|^modules_dir = .*|modules_dir = $SL_BUILD/_modules|" "$f" > "$work/$(basename "$f")"
    "$SLUICED" -t -c "$work/$(basename "$f")" 2> "$work/out"
    rc=$?
    cat "$work/out"
    t_check "$rc" -eq 0 "$(basename "$f")"
done
rm -rf "$work"
t_end

t_exit
