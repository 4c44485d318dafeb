#!/usr/bin/env bash
# Dispatch tables are checked by the compiler (src/ops/dispatch.h):
#  1. a function whose type does not match its slot does not compile, even
#     without -Werror (an import function in the export slot);
#  2. the matching entry compiles;
#  3. in every X_FN(ID, name, fn) entry, name is ID in lower case (so the
#     slot id and the type checked are the same slot);
#  4. no (void (*)(void)) cast remains outside dispatch.h.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
skip_if_missing cc

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cflags=(-fsyntax-only -I"$top_srcdir/src" $(pkg-config --cflags libcrypto 2>/dev/null))

cat >"$tmp/table.c" <<'C'
#include "ops/dispatch.h"
static OSSL_FUNC_keymgmt_import_fn my_import;
static OSSL_FUNC_keymgmt_export_fn my_export;
static int my_import(void *k, int s, const OSSL_PARAM p[]) { (void)k; (void)s; (void)p; return 0; }
static int my_export(void *k, int s, OSSL_CALLBACK *cb, void *a) { (void)k; (void)s; (void)cb; (void)a; return 0; }
const OSSL_DISPATCH table[] = {
    HWKEY_KEYMGMT_FN(IMPORT, import, my_import),
    HWKEY_KEYMGMT_FN(EXPORT, export, SLOT_FN),
    {0, NULL}};
C
cc "${cflags[@]}" -DSLOT_FN=my_export "$tmp/table.c" 2>"$tmp/ok.err" \
    || { cat "$tmp/ok.err"; hw_fail "a correct dispatch table does not compile"; }
if cc "${cflags[@]}" -DSLOT_FN=my_import "$tmp/table.c" 2>"$tmp/bad.err"; then
    hw_fail "an import function in the export slot compiled"
fi
grep -q 'hwkey_dispatch_function_type_does_not_match_its_slot' "$tmp/bad.err" \
    || { cat "$tmp/bad.err"; hw_fail "the compile error does not name the mismatch"; }

# 3. ID and name agree in every table entry of the sources.
bad=$(grep -rhoE --exclude=dispatch.h 'HWKEY_[A-Z_]+_FN\([A-Z_0-9]+, [a-z_0-9]+,' "$top_srcdir/src" \
    | grep -v 'HWKEY_CHECKED_FN' \
    | awk -F'[(, ]+' '{ if (tolower($2) != $3) print }')
[[ -z $bad ]] || hw_fail "slot id and type name differ: $bad"
n=$(grep -rhoE --exclude=dispatch.h 'HWKEY_[A-Z_]+_FN\([A-Z_0-9]+, [a-z_0-9]+,' "$top_srcdir/src" | wc -l)
((n > 50)) || hw_fail "only $n checked dispatch entries found (expected every table)"

# 4. No unchecked casts left.
left=$(grep -rn '(void (\*)(void))' "$top_srcdir/src" | grep -v 'src/ops/dispatch.h' || true)
[[ -z $left ]] || hw_fail "unchecked dispatch casts: $left"
hw_log "$n dispatch entries checked by the compiler; a wrong slot fails to build"
