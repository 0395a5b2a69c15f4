#!/usr/bin/env bash
# The documentation that is generated from code is up to date, and every
# shipped config passes `sluiced -t` against the modules of the build under
# test.
. "$(dirname "$0")/../lib.sh"

t_case "README's configuration reference matches the declared options"
bash "$SL_TOP/contrib/gen-reference.sh" --check "$SL_BUILD" > /tmp/sluice-docs.$$ 2>&1
rc=$?
head -40 /tmp/sluice-docs.$$
rm -f /tmp/sluice-docs.$$
t_check "$rc" -eq 0 "reference up to date"
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
