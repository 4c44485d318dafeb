#!/usr/bin/env bash
# Every C file in the tree follows .clang-format (clang-format --dry-run
# -Werror), and the check itself catches a misformatted file planted in a
# copy.  Fix a failure with:
#   git ls-files '*.c' '*.h' | xargs clang-format -i
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
skip_if_missing clang-format git

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$top_srcdir"
mapfile -t files < <(git ls-files '*.c' '*.h' 2>/dev/null || find src test bench include -name '*.[ch]')
((${#files[@]} > 100)) || hw_fail "found only ${#files[@]} C files: not the tree"
bad=()
for f in "${files[@]}"; do
    [[ -f $f ]] || continue
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
((${#bad[@]} == 0)) ||
    hw_fail "${#bad[@]} file(s) not clang-formatted: ${bad[*]:0:10} (run: git ls-files '*.c' '*.h' | xargs clang-format -i)"

# The check can fail: a function squeezed onto one line is caught.
cp .clang-format "$tmp/"
printf 'int f(void) { return 1; }\n' >"$tmp/bad.c"
if (cd "$tmp" && clang-format --dry-run -Werror bad.c >/dev/null 2>&1); then
    hw_fail "clang-format accepted a misformatted file: the check is broken"
fi
echo "PASS: $HW_TEST: ${#files[@]} C files follow .clang-format; a misformatted one is caught"
