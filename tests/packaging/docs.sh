#!/usr/bin/env bash
# The documentation that is generated from code is up to date, and every
# shipped config passes `sluiced -t` against the modules of the build under
# test.
. "$(dirname "$0")/../lib.sh"

t_case "the configuration reference in sluice.conf(5) matches the declared options"
bash "$SL_TOP/contrib/gen-reference.sh" --check "$SL_BUILD" > /tmp/sluice-docs.$$ 2>&1
rc=$?
head -40 /tmp/sluice-docs.$$
t_check "$(grep -c "^contrib/man/sluice.conf.5: .* stale" /tmp/sluice-docs.$$)" = 0 "sluice.conf(5)'s reference up to date"
rm -f /tmp/sluice-docs.$$
t_check "$rc" -eq 0 "gen-reference.sh --check"
# The man page holds every section the code declares.
for s in $("$SLUICED" --list-sections) $(cd "$SL_BUILD/_modules" && ls *.so | sed 's/\.so$//'); do
    case $s in core | redis | clickhouse | kafka | postgres | tracing) head="[$s]" ;; *) head="[module $s]" ;; esac
    t_check "$(grep -c -F ".SS \"$head\"" "$SL_TOP/contrib/man/sluice.conf.5")" = 1 "sluice.conf(5) documents $head"
done
t_end

t_case "every metric the code registers, the dashboard and the alerts use is in sluice-metrics(7)"
page=$SL_TOP/contrib/man/sluice-metrics.7
documented=$(grep -oE '^\.B sluice_[a-z0-9_]+$' "$page" | sed 's/^\.B //' | sort -u)
registered=$(grep -rhoE '"sluice_[a-z0-9_]+"' "$SL_TOP/core" "$SL_TOP/modules" | tr -d '"' | sort -u)
for f in "$SL_TOP/contrib/grafana/sluice.json" "$SL_TOP"/contrib/prometheus/*.yml; do
    for m in $(grep -o 'sluice_[a-z0-9_]*' "$f" | sed -E 's/_(bucket|sum|count)$//' | sort -u); do
        # Recording rules and test fixtures name series, not metrics.
        case $m in sluice_rules* | sluice_job*) continue ;; esac
        grep -qx "$m" <<< "$documented" || t_check "$m" = documented "$(basename "$f"): $m is in sluice-metrics(7)"
        grep -qx "$m" <<< "$registered" || t_check "$m" = registered "$(basename "$f"): $m is registered by core/ or modules/"
    done
done
t_check "$(wc -l <<< "$documented")" -gt 40 "sluice-metrics(7) documents $(wc -l <<< "$documented") metrics"
for m in $documented; do
    grep -qx "$m" <<< "$registered" || t_check "$m" = registered "sluice-metrics(7): $m is registered by core/ or modules/"
done
# The other way round: a metric name the code registers (a string literal
# that is not a prefix the code builds names from) is documented.
for m in $registered; do
    case $m in *_ | sluice_module) continue ;; esac # prefixes; the descriptor symbol
    grep -qx "$m" <<< "$documented" || t_check "$m" = documented "$m, registered by the code, is in sluice-metrics(7)"
done
t_end

t_case "every route a module registers is in sluice-api(7)"
page=$SL_TOP/contrib/man/sluice-api.7
documented=$(sed -n 's/^\.B [A-Z]* \(\/.*\)$/\1/p' "$page")
n=0
for dir in "$SL_TOP"/modules/*/; do
    mod=$(basename "$dir")
    # sl_route(ctx, SL_GET, "/path", ...), sl_route_scoped(...), or a module's
    # own route(x, ..., "path", ...), which prefixes /MODULE/.
    while read -r path; do
        case $path in /*) ;; *) path=/$mod/$path ;; esac
        n=$((n + 1))
        grep -qxF -- "$path" <<< "$documented" ||
            t_check "$path" = documented "$mod: $path is in sluice-api(7)'s ROUTES"
    done < <(grep -ohE '\b(sl_)?route(_scoped)?[(][a-z]+(->ctx)?, (SL_[A-Z_| ]+, )*"[^"]*"' "$dir"*.c | grep -oE '"[^"]*"$' | tr -d '"')
done
t_check "$n" -gt 20 "$n routes found in the modules' sources"
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
