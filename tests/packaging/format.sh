#!/usr/bin/env bash
# Every C source and header is as .clang-format lays it out, so that a
# change's diff holds only what it changes.  The fix is
# `clang-format -i FILE` (clang-format 14, from Debian's clang-format).
. "$(dirname "$0")/../lib.sh"

t_case "every C file is formatted by .clang-format"
t_check -f "$SL_TOP/.clang-format" "the formatting config is in the tree"
if ! command -v clang-format > /dev/null; then
    t_skip "clang-format is not installed"
else
    files=$(cd "$SL_TOP" && find core modules tests -name '*.[ch]' -not -path '*/build*' | sort)
    t_check "$(echo "$files" | grep -c .)" -gt 100 "the C files were found"
    unformatted=$(cd "$SL_TOP" && for f in $files; do
        clang-format --dry-run -Werror "$f" > /dev/null 2>&1 || echo "$f"
    done)
    [ -n "$unformatted" ] && echo "$unformatted" | sed 's/^/      not formatted: /'
    t_check -z "$unformatted" "no file differs from clang-format's layout"
fi
t_end
t_exit
