#!/usr/bin/env bash
# The dependency rule of ARCHITECTURE.md, checked on every #include in src/:
#   provider -> ops -> key -> backend interface (backend/backend.h) -> util
#   ops -> bulk -> util;  cli -> backend interface (and the TPM backend's
#   tss2-free CLI header tpm2_offline.h), bulk, util
#   backend/tpm2 and backend/pkcs11 include neither each other nor ops/key/provider;
#   no tss2 header outside backend/tpm2 (and util's TSS2 key-file ASN.1, which
#   uses no TSS library), no PKCS#11 header outside backend/pkcs11.
# Prints one line per violation (file:line: what) and exits 1 if any.
#   scripts/check-layering.sh [SRC_DIR]     (default: the tree's src/)
set -euo pipefail
src=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/src}
cd "$src"

# allowed LAYER: the project directories a file of LAYER may include from.
allowed() {
    case $1 in
        provider) echo "provider ops key backend/backend.h bulk util hwkey" ;;
        ops) echo "ops key backend/backend.h bulk util hwkey" ;;
        key) echo "key backend/backend.h util hwkey" ;;
        backend) echo "backend/backend.h util hwkey" ;;
        backend/tpm2) echo "backend/backend.h backend/tpm2 util hwkey" ;;
        backend/pkcs11) echo "backend/backend.h backend/pkcs11 util hwkey" ;;
        bulk) echo "bulk util hwkey" ;;
        util) echo "util hwkey" ;;
        # tpm2_offline.h: the TPM backend's narrow CLI interface (offline wrap,
        # attestation check, parent public key), free of tss2 types.
        cli) echo "cli backend/backend.h backend/tpm2/tpm2_offline.h bulk util hwkey" ;;
        *) echo "" ;;
    esac
}

bad=0
violation() { echo "$1: $2" >&2; bad=1; }

while IFS= read -r file; do
    dir=$(dirname "$file")
    dir=${dir#./}
    layer=$dir
    [[ $layer == backend/* ]] || layer=${layer%%/*}
    ok_list=$(allowed "$layer")
    [[ -n $ok_list ]] || { violation "$file" "in no layer of ARCHITECTURE.md"; continue; }
    while IFS=: read -r line inc; do
        # #include "dir/file.h": the first path part (two for backend/...) is the layer used.
        if [[ $inc =~ ^\#include\ \"([^\"]+)\" ]]; then
            path=${BASH_REMATCH[1]}
            [[ $path == */* ]] || continue         # config.h and local headers
            ok=0
            for a in $ok_list; do
                [[ $path == "$a" || $path == "$a"/* ]] && ok=1
            done
            ((ok)) || violation "$file:$line" "$layer may not include \"$path\""
        elif [[ $inc =~ ^\#include\ \<(tss2/[^>]+)\> ]]; then
            [[ $layer == backend/tpm2 || $file == ./util/tss2_keyfile.* ]] \
                || violation "$file:$line" "only backend/tpm2 includes <${BASH_REMATCH[1]}>"
        elif [[ $inc =~ ^\#include\ \<(p11-kit/[^>]+|pkcs11[^>]*)\> ]]; then
            [[ $layer == backend/pkcs11 ]] \
                || violation "$file:$line" "only backend/pkcs11 includes <${BASH_REMATCH[1]}>"
        fi
    done < <(grep -n '^#include' "$file" || true)
done < <(find . -name '*.[ch]' | sort)

# The CLI's window into the TPM backend stays free of TSS types.
if grep -n '^#include <tss2' backend/tpm2/tpm2_offline.h >/dev/null 2>&1; then
    violation "./backend/tpm2/tpm2_offline.h" "the CLI's TPM header includes a tss2 header"
fi

((bad == 0)) && echo "check-layering: every #include in $src follows the dependency rule"
exit "$bad"
