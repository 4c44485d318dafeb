#!/usr/bin/env bash
# Errors per provider instance (issue 6.5): hwkey loaded into two library
# contexts, the first freed, then an error in the second.  It must print
# hwkey's reason text ("invalid key file", not "reason(10)"), and valgrind
# must see no invalid read (the freed instance's core handle was used before).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
skip_if_missing valgrind

drv=$top_builddir/test/integration/two_libctx
out=$(mktemp)
trap 'rm -f "$out" "$out.vg"' EXIT

# Without valgrind first: the behaviour itself.
"$drv" "$HWKEY_SO" >"$out" 2>&1 || { cat "$out"; hw_fail "two library contexts: wrong error text"; }
grep -q 'first context after the second was freed: .*invalid key file' "$out" \
    || { cat "$out"; hw_fail "no hwkey reason text in the surviving context"; }

# Then under valgrind: no invalid access, no definite leak from hwkey.
if ! timeout -k 5 300 valgrind -q --error-exitcode=3 --leak-check=full \
    --errors-for-leak-kinds=definite --log-file="$out.vg" "$drv" "$HWKEY_SO" >"$out" 2>&1; then
    cat "$out" "$out.vg"
    hw_fail "valgrind reports errors with two library contexts"
fi
grep -q '^OK$' "$out" || { cat "$out"; hw_fail "driver did not finish under valgrind"; }
hw_log "two library contexts: errors keep their text after one is freed; valgrind clean"
