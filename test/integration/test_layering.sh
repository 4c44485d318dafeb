#!/usr/bin/env bash
# The dependency rule of ARCHITECTURE.md holds for every #include in src/
# (scripts/check-layering.sh), and the check catches each kind of breach
# planted in a copy of the tree: an op including a backend's internals, a
# backend including the other backend, util including key/, and a tss2 or
# pkcs11 header in ops/.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

check=$top_srcdir/scripts/check-layering.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$check" "$top_srcdir/src" >/dev/null 2>"$tmp/real.err" \
    || hw_fail "src/ breaks the dependency rule: $(cat "$tmp/real.err")"

plant() { # FILE LINE EXPECTED-REGEX
    rm -rf "$tmp/src" && cp -r "$top_srcdir/src" "$tmp/src"
    printf '%s\n' "$2" >>"$tmp/src/$1"
    if "$check" "$tmp/src" >/dev/null 2>"$tmp/err"; then
        hw_fail "check-layering missed: $2 in $1"
    fi
    grep -Eq "$3" "$tmp/err" || hw_fail "check-layering said: $(cat "$tmp/err")"
}
plant ops/signature.c '#include "backend/tpm2/tpm2_internal.h"' 'ops may not include "backend/tpm2/tpm2_internal.h"'
plant backend/tpm2/tpm2_sign.c '#include "backend/pkcs11/p11_internal.h"' 'backend/tpm2 may not include'
plant util/log.c '#include "key/key.h"' 'util may not include "key/key.h"'
plant ops/keyexch_ecdh.c '#include <tss2/tss2_esys.h>' 'only backend/tpm2 includes <tss2/tss2_esys.h>'
plant key/key.c '#include <p11-kit/pkcs11.h>' 'only backend/pkcs11 includes <p11-kit/pkcs11.h>'
echo "PASS: $HW_TEST: src/ follows the dependency rule; 5 planted breaches caught"
