#!/usr/bin/env bash
# Usage: bench/run-pkcs11-bench.sh [BUILDDIR] [--uri] [--keep] [-- PKCS11_SIGN_BENCH_OPTIONS]
#
# Runs bench/pkcs11_sign_bench (bench/README.md, "PKCS#11") on a fresh SoftHSM
# token: EC P-256 and RSA-2048 key pairs made by pkcs11-tool, hwkey configured
# through the environment (HWKEY_PKCS11_MODULE, HWKEY_PKCS11_PIN_SOURCE=file:),
# the keys handed to hwkey as PEM reference files ("PKCS#11 PROVIDER URI", what
# nginx's ssl_certificate_key takes).  Builds nothing: BUILDDIR (default .)
# must hold a built tree (bench/pkcs11_sign_bench, .libs/hwkey.so).  The token
# lives in a mktemp -d directory, removed on exit; no process is started.
#   --uri    give hwkey the pkcs11: URIs themselves instead of reference files
#   --keep   keep the work directory (token, reference files, PIN file)
# Options after -- go to pkcs11_sign_bench, e.g. `-- --quick` or `-- -t 10`.
# Exit: pkcs11_sign_bench's status; 77 when SoftHSM or pkcs11-tool is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)

build=.
use_uri=0
keep=0
if [[ $# -gt 0 && $1 != -* ]]; then build=$1; shift; fi
while [[ $# -gt 0 ]]; do
    case $1 in
    --uri) use_uri=1; shift ;;
    --keep) keep=1; shift ;;
    --) shift; break ;;
    -h | --help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-pkcs11-bench: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
build=$(cd "$build" && pwd)
bench=$build/bench/pkcs11_sign_bench
provider=$build/.libs/hwkey.so
for f in "$bench" "$provider"; do
    [[ -e $f ]] || { echo "run-pkcs11-bench: $f not found: build the tree first (make bench)" >&2; exit 1; }
done
command -v pkcs11-tool >/dev/null 2>&1 || { echo "run-pkcs11-bench: pkcs11-tool (opensc) missing" >&2; exit 77; }

work=$(mktemp -d /tmp/hwkey-p11bench.XXXXXX)
cleanup() {
    if ((keep)); then echo "run-pkcs11-bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

token=hwkey-bench
pin=1234
setup=$(HWKEY_SOFTHSM_LABEL=$token HWKEY_SOFTHSM_PIN=$pin "$top/scripts/softhsm-setup.sh" "$work/hsm") || exit $?
eval "$setup" # exports SOFTHSM2_CONF and HWKEY_SOFTHSM_MODULE
module=$HWKEY_SOFTHSM_MODULE
(umask 077 && printf '%s\n' "$pin" >"$work/pin")

tool=(pkcs11-tool --module "$module" --token-label "$token" --login --pin "$pin")
"${tool[@]}" --keypairgen --key-type EC:prime256v1 --label ec256 --id 01 >"$work/keygen.log" 2>&1 \
    && "${tool[@]}" --keypairgen --key-type rsa:2048 --label rsa2048 --id 02 >>"$work/keygen.log" 2>&1 \
    || { cat "$work/keygen.log" >&2; echo "run-pkcs11-bench: pkcs11-tool --keypairgen failed" >&2; exit 1; }

# A reference file as pkcs11-provider writes it:
#   SEQUENCE { desc VisibleString, uri UTF8String } in a "PKCS#11 PROVIDER URI" PEM block.
write_reference() { # URI FILE
    printf 'asn1=SEQUENCE:ref\n[ref]\ndesc=VISIBLESTRING:PKCS\\#11 Provider URI v1.0\nuri=UTF8:%s\n' \
        "$1" >"$2.cnf"
    openssl asn1parse -genconf "$2.cnf" -noout -out "$2.der"
    { echo "-----BEGIN PKCS#11 PROVIDER URI-----"; base64 -w 64 "$2.der"
      echo "-----END PKCS#11 PROVIDER URI-----"; } >"$2"
}
ec_uri="pkcs11:token=$token;object=ec256;type=private"
rsa_uri="pkcs11:token=$token;object=rsa2048;type=private"
if ((use_uri)); then
    ec_key=$ec_uri rsa_key=$rsa_uri
else
    write_reference "$ec_uri" "$work/ec256.pem"
    write_reference "$rsa_uri" "$work/rsa2048.pem"
    ec_key=$work/ec256.pem rsa_key=$work/rsa2048.pem
fi

# hwkey's configuration, as ARCHITECTURE.md §5 allows instead of openssl.cnf.
export HWKEY_PKCS11_MODULE=$module
export HWKEY_PKCS11_PIN_SOURCE=file:$work/pin
unset HWKEY_PKCS11_QUIRKS OPENSSL_CONF

status=0
"$bench" --provider "$provider" --module "$module" --token "$token" --pin-file "$work/pin" \
    --ec-label ec256 --rsa-label rsa2048 --ec-key "$ec_key" --rsa-key "$rsa_key" "$@" || status=$?
exit "$status"
