#!/usr/bin/env bash
# contrib/gen-reference.sh - the configuration reference, generated from the
# options the core, the connectors and the modules declare, so that it
# cannot drift from the code.  It lives in the sluice.conf(5) man page
# contrib/man/sluice.conf.5 (roff, between .\" reference:begin/end).
#
#   contrib/gen-reference.sh [BUILD]           print it (markdown)
#   contrib/gen-reference.sh --man [BUILD]     print it (roff)
#   contrib/gen-reference.sh --update [BUILD]  rewrite the man page's section
#   contrib/gen-reference.sh --check [BUILD]   exit 1 if it is stale
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
mode=print
case "${1:-}" in
--update | --check | --man)
    mode=${1#--}
    shift
    ;;
esac
build=$(cd "${1:-$top/build}" && pwd)
sluiced=$build/core/sluiced
modules_dir=$build/_modules

# Every section's --help-module text, one after the other: sections first,
# in the order the core declares them, then modules.
help_texts() {
    local conf
    conf=$(mktemp)
    printf '[core]\nmodules_dir = %s\n' "$modules_dir" > "$conf"
    for s in $("$sluiced" --list-sections); do
        "$sluiced" --help-module "$s"
    done
    for so in "$modules_dir"/*.so; do
        "$sluiced" --help-module "$(basename "$so" .so)" -c "$conf" || { rm -f "$conf"; exit 1; }
    done
    rm -f "$conf"
}

# Markdown: each section in its own code block.
markdown() {
    awk '/^\[/ { if (open) print "```"; print "```"; open = 1 } { print } END { if (open) print "```" }'
}

# roff for man(7): a subsection per section, a tagged paragraph per option.
roff() {
    awk '
        function esc(s) {
            gsub(/\\/, "\\e", s)
            sub(/^[.\047]/, "\\\\\\&&", s)
            return s
        }
        /^\[/ {
            head = $0; desc = ""
            if (match($0, / - /)) { head = substr($0, 1, RSTART - 1); desc = substr($0, RSTART + 3) }
            printf ".SS \"%s\"\n%s\n", head, esc(desc)
            next
        }
        /^      / { sub(/^ +/, ""); print esc($0); next }
        /^  / {
            sub(/^ +/, "")
            name = $1; $1 = ""; sub(/^ /, "")
            printf ".TP\n.B %s\n%s\n.br\n", esc(name), esc($0)
        }'
}

case $mode in
print) help_texts | markdown; exit 0 ;;
man) help_texts | roff; exit 0 ;;
esac

texts=$(help_texts) || exit 1
new=$(mktemp -d)
trap 'rm -rf "$new"' EXIT
# splice FILE BEGIN END GENERATED: FILE with the lines between the marker
# lines BEGIN and END replaced.
# (Through the environment: awk -v would interpret the backslashes.)
splice() {
    BEGIN_=$2 END_=$3 GEN_=$4 awk '
        $0 == ENVIRON["BEGIN_"] { print; print ENVIRON["GEN_"]; skip = 1; next }
        $0 == ENVIRON["END_"] { skip = 0 }
        !skip { print }
    ' "$1"
}
splice "$top/contrib/man/sluice.conf.5" '.\" reference:begin' '.\" reference:end' \
    "$(printf '%s\n' "$texts" | roff)" > "$new/sluice.conf.5"

stale=0
for f in contrib/man/sluice.conf.5; do
    if [ "$mode" = check ]; then
        if ! diff -u "$top/$f" "$new/$(basename "$f")"; then
            echo "$f: the configuration reference is stale: run contrib/gen-reference.sh --update" >&2
            stale=1
        fi
    else
        cp "$new/$(basename "$f")" "$top/$f"
    fi
done
exit $stale
