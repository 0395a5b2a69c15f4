#!/usr/bin/env bash
# contrib/gen-reference.sh - the configuration reference, generated from the
# options the core, the connectors and the modules declare, so that it
# cannot drift from the code.
#
#   contrib/gen-reference.sh [BUILD]           print it (markdown)
#   contrib/gen-reference.sh --update [BUILD]  rewrite README.md's section
#   contrib/gen-reference.sh --check [BUILD]   exit 1 if README.md is stale
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
mode=print
case "${1:-}" in
--update | --check)
    mode=${1#--}
    shift
    ;;
esac
build=$(cd "${1:-$top/build}" && pwd)
sluiced=$build/core/sluiced
modules_dir=$build/_modules

generate() {
    local conf
    conf=$(mktemp)
    printf '[core]\nmodules_dir = %s\n' "$modules_dir" > "$conf"
    # Sections first, in the order the core declares them, then modules.
    for s in $("$sluiced" --list-sections); do
        echo '```'
        "$sluiced" --help-module "$s"
        echo '```'
    done
    for so in "$modules_dir"/*.so; do
        echo '```'
        "$sluiced" --help-module "$(basename "$so" .so)" -c "$conf" || exit 1
        echo '```'
    done
    rm -f "$conf"
}

if [ "$mode" = print ]; then
    generate
    exit 0
fi

readme=$top/README.md
new=$(mktemp)
trap 'rm -f "$new"' EXIT
reference=$(generate) || exit 1
awk -v gen="$reference" '
    /^<!-- reference:begin -->$/ { print; print gen; skip = 1; next }
    /^<!-- reference:end -->$/ { skip = 0 }
    !skip { print }
' "$readme" > "$new"
if [ "$mode" = check ]; then
    if ! diff -u "$readme" "$new"; then
        echo "README.md's configuration reference is stale: run contrib/gen-reference.sh --update" >&2
        exit 1
    fi
    exit 0
fi
cp "$new" "$readme"
