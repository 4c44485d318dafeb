#!/usr/bin/env bash
# The dependency rule of ARCHITECTURE.md holds for every #include in src/
# (scripts/check-layering.sh), and the check catches each kind of breach
# planted in a copy of the tree: an op including a backend's internals, a
# backend including the other backend, util including key/, and a tss2 or
# pkcs11 header in ops/.  The same for the backend seam (scripts/check-seam.sh):
# ops/ and key/ code names no backend's reference kinds, TPM/PKCS#11 names,
# backend internals or scheme literals, and ops/ no bkey or backend call.
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

# --- the backend seam: src/ops and src/key name no backend (scripts/check-seam.sh) ---
seam=$top_srcdir/scripts/check-seam.sh
"$seam" "$top_srcdir/src" >/dev/null 2>"$tmp/real.err" \
    || hw_fail "src/ops or src/key name a backend: $(cat "$tmp/real.err")"

plant_seam() { # FILE LINE EXPECTED-REGEX
    rm -rf "$tmp/src" && cp -r "$top_srcdir/src" "$tmp/src"
    printf '%s\n' "$2" >>"$tmp/src/$1"
    if "$seam" "$tmp/src" >/dev/null 2>"$tmp/err"; then
        hw_fail "check-seam missed: $2 in $1"
    fi
    grep -Eq "$3" "$tmp/err" || hw_fail "check-seam said: $(cat "$tmp/err")"
}
plant_seam ops/encoder.c 'static int leak(const HWKEY_KEY *k) { return k->bkey != NULL; }' \
    '^ops/encoder.c:[0-9]+: device key handle:'
plant_seam ops/signature_ecdsa.c 'static const int leak = HWKEY_REF_TSS2_KEYFILE;' \
    '^ops/signature_ecdsa.c:[0-9]+: backend reference kind:'
plant_seam ops/keymgmt.c 'static void leak(void) { hwkey_backend_sign(0, 0, 0, 0, 0, 0); }' \
    '^ops/keymgmt.c:[0-9]+: backend call:'
plant_seam ops/decoder.c 'static unsigned long leak(void) { return CKM_ECDSA; }' \
    '^ops/decoder.c:[0-9]+: PKCS#11 name:'
plant_seam ops/keymgmt_gen.c 'static unsigned leak(void) { return TPM2_ALG_RSA; }' \
    '^ops/keymgmt_gen.c:[0-9]+: TPM or TSS name:'
plant_seam key/key.c 'static const char *leak = "handle:0x81000001";' \
    '^key/key.c:[0-9]+: scheme literal "handle:":'
plant_seam key/key_gen.c 'static int leak(void) { return hwkey_tpm2_random(0, 0, 0); }' \
    '^key/key_gen.c:[0-9]+: backend internal:'
# The exception is for its own file only.
plant_seam ops/store_handle.c 'static const char *leak = "pkcs11:token=t";' \
    '^ops/store_handle.c:[0-9]+: scheme literal "pkcs11:":'
# Comments may name devices: a planted comment is no leak.
rm -rf "$tmp/src" && cp -r "$top_srcdir/src" "$tmp/src"
printf '%s\n' '/* TPM2_Sign, CKM_ECDSA, key->bkey and "pkcs11:" in a comment */' >>"$tmp/src/ops/encoder.c"
"$seam" "$tmp/src" >/dev/null 2>"$tmp/err" || hw_fail "check-seam flagged a comment: $(cat "$tmp/err")"

echo "PASS: $HW_TEST: src/ follows the dependency rule (5 planted breaches caught); src/ops and src/key name no backend (8 planted leaks caught, comments ignored)"
