#!/usr/bin/env bash
# key/ is the only route from an operation to a device (docs/architecture.md, section 3):
# the code of src/ops/ and src/key/ names nothing that belongs to one backend, so
# a third backend touches no file there.  Checked on the code with comments
# stripped (comments may say "TPM"; code may not act on it):
#   ops/ and key/: no backend's reference kind (HWKEY_REF_TSS2_KEYFILE ...), no
#     TSS/ESAPI or TPM structure names (TPM2_, TPMT_, TSS2_, Esys_, Tss2_), no
#     PKCS#11 names (CKA_, CKM_, CKR_, CKO_, CKK_, CK_), no backend internals
#     (hwkey_tpm2_*, hwkey_p11_*, the backends' vtables), no TSS2 key-file parsing (hwkey_tss2_*,
#     HWKEY_TSS2_*, HWKEY_PEM_TSS2_*), no reference-scheme literals ("handle:",
#     "pkcs11:");
#   ops/ only: no key->bkey, no ->backend, no hwkey_backend_* call (ops ask key/).
# Exceptions, each for one file and one rule, with the reason:
#   ops/store_pkcs11.c  "pkcs11:" - the OSSL_STORE loader registered for the
#       pkcs11: URI scheme: the scheme is its name; resolving goes through key/.
#   ops/store_handle.c  "handle:" - the same for the handle: scheme.
# Prints one line per leak (file:line: rule: code) and exits 1 if any.
#   scripts/check-seam.sh [SRC_DIR]     (default: the tree's src/)
set -euo pipefail
src=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/src}
cd "$src"
cpp=${CPP_FOR_SEAM:-cpp}

# Each rule: a name, a grep -E pattern, the directories it applies to.
names=() res=() dirs=()
rule() { names+=("$1"); res+=("$2"); dirs+=("$3"); }
rule "backend reference kind" '\bHWKEY_REF_[A-Z0-9_]+' "ops key"
rule "TPM or TSS name" '\b(TPM2B?_|TPM[A-Z]_|TSS2_|Tss2_|Esys_|ESYS_)' "ops key"
rule "PKCS#11 name" '\bCK[AMROK]?_[A-Z]' "ops key"
rule "backend internal" '\b(hwkey_(tpm2|p11)_|hwkey_(tpm2|pkcs11)_backend\b)' "ops key"
rule "TSS2 key-file parsing" '\b(hwkey_tss2_|HWKEY_TSS2_|HWKEY_PEM_TSS2_)' "ops key"
rule 'scheme literal "handle:"' '"handle:' "ops key"
rule 'scheme literal "pkcs11:"' '"pkcs11:' "ops key"
rule "device key handle" '->bkey\b' "ops"
rule "backend vtable" '->backend\b' "ops"
rule "backend call" '\bhwkey_backend_[a-z_]+[[:space:]]*\(' "ops"

# file + rule name: legitimate, see the top of this file.
exceptions=(
    'ops/store_pkcs11.c:scheme literal "pkcs11:"'
    'ops/store_handle.c:scheme literal "handle:"'
)
excepted() {
    local e
    for e in "${exceptions[@]}"; do
        [[ $e == "$1:$2" ]] && return 0
    done
    return 1
}

bad=0
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for dir in ops key; do
    for file in "$dir"/*.[ch]; do
        # -fpreprocessed: strip comments, expand nothing.  The "# N" line markers it
        # leaves give each code line its number in the file.  HWKEY_REF_KIND, the
        # neutral type of every reference kind, is no leak.
        "$cpp" -fpreprocessed -dD -x c "$file" 2>/dev/null |
            awk -v f="$file" '/^# [0-9]+ / { line = $2 - 1; next } { line++; print f ":" line ": " $0 }' |
            sed 's/HWKEY_REF_KIND//g' >"$tmp"
        [[ -s $tmp ]] || { echo "$file: cannot strip its comments with $cpp" >&2; bad=1; continue; }
        for i in "${!names[@]}"; do
            [[ " ${dirs[$i]} " == *" $dir "* ]] || continue
            excepted "$file" "${names[$i]}" && continue
            hits=$(grep -E -- "^[^:]+:[0-9]+: .*${res[$i]}" "$tmp" || true)
            [[ -z $hits ]] && continue
            while IFS= read -r hit; do
                echo "${hit%%: *}: ${names[$i]}: ${hit#*: }" >&2
            done <<<"$hits"
            bad=1
        done
    done
done
((bad == 0)) && echo "check-seam: src/ops and src/key name no backend"
exit "$bad"
