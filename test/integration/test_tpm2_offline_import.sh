#!/usr/bin/env bash
# Offline import (docs/import.md): a software key wrapped to the TPM parent's
# public key on a machine WITHOUT the TPM, then loaded and used on it.
#  - `hwkey pubkey --parent` prints the parent's PEM (and --out-public its
#    TPM2B_PUBLIC, byte-equal to tpm2_readpublic -o);
#  - `hwkey import --parent-pub` runs with a TCTI that nothing listens on and
#    the software-only openssl.cnf: it cannot have used the TPM; the file is an
#    importable TSS2 key (OID 2.23.133.10.1.4);
#  - EC P-256, P-384, RSA-2048, from the PEM and from the TPM2B_PUBLIC: the
#    importable file signs through the provider on the swtpm (first use runs
#    TPM2_Import) and the signature verifies with the ORIGINAL software public
#    key; `hwkey import --finish` writes a loadable file (2.23.133.10.1.3)
#    that signs too;
#  - a file wrapped to another parent (a random P-256 key), or with one byte of
#    its duplicate changed, is refused by the TPM: one clear error line;
#  - bad --parent-pub inputs and option misuse: one line, exit 1 / 2;
#  - a parent that is not the standard template (a persistent SRK at
#    0x81000001 made by tpm2_createprimary): `pubkey --parent` says the PEM is
#    not enough, and the TPM2B_PUBLIC route works; an RSA storage key at
#    0x81000002 (--parent-handle; seed by RSA-OAEP) works, and a file recording
#    the wrong handle is refused at import;
#  - through tpm2-abrmd (resource manager mode) the first use imports too.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing tpm2_readpublic tpm2_createprimary tpm2_evictcontrol tpm2_flushcontext
hw_setup
echo "offline import message $RANDOM" >msg
NO_TPM="swtpm:host=127.0.0.1,port=$(hw_free_port 2)"

# The offline machine: no TPM answers, only the default provider.
offline() { HWKEY_TPM2_TCTI=$NO_TPM OPENSSL_CONF=$HW_SW_CNF timeout -k 5 "$HW_TIMEOUT" "$HWKEY_BIN" "$@"; }
oid_of() { sw asn1parse -in "$1" | awk '/OBJECT/ {print $NF; exit}' | tr -d ':'; }

# --- on the TPM machine: the parent's public key ------------------------------
hw_hwkey pubkey --parent >parent.pem 2>parent.err || hw_fail "pubkey --parent: $(cat parent.err)"
[[ ! -s parent.err ]] || hw_fail "pubkey --parent printed on stderr for the standard parent: $(cat parent.err)"
sw pkey -pubin -in parent.pem -noout 2>/dev/null || hw_fail "pubkey --parent: not a PEM public key"
hw_hwkey pubkey --parent --out-public parent.tpm2b >parent2.pem || hw_fail "pubkey --parent --out-public"
cmp -s parent.pem parent2.pem || hw_fail "the parent PEM changed between two calls"
# The owner primary from the same template, read by tpm2-tools: same TPM2B_PUBLIC.
tpm2_createprimary -Q -C o -G ecc256:null:aes128cfb -g sha256 \
    -a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt' \
    -c tools-primary.ctx >/dev/null 2>&1 || hw_fail "tpm2_createprimary (reference)"
tpm2_readpublic -Q -c tools-primary.ctx -o tools-primary.tpm2b >/dev/null || hw_fail "tpm2_readpublic"
tpm2_flushcontext -t >/dev/null
cmp -s parent.tpm2b tools-primary.tpm2b ||
    hw_fail "--out-public differs from tpm2_readpublic -o of the standard primary"

# --- on the offline machine: wrap -------------------------------------------
declare -A GENOPT=([ec-p256]="EC -pkeyopt ec_paramgen_curve:P-256"
    [ec-p384]="EC -pkeyopt ec_paramgen_curve:P-384"
    [rsa-2048]="RSA -pkeyopt rsa_keygen_bits:2048")
for name in ec-p256 ec-p384 rsa-2048; do
    # shellcheck disable=SC2086
    sw genpkey -algorithm ${GENOPT[$name]} -out "$name.soft.pem" 2>/dev/null || hw_fail "genpkey $name"
    sw pkey -in "$name.soft.pem" -pubout -out "$name.soft.pub"
    for form in pem tpm2b; do
        f=$name.$form.imp
        offline import "$name.soft.pem" --parent-pub "parent.$form" --out "$f" 2>"$f.err" ||
            hw_fail "offline import $name ($form parent): $(cat "$f.err")"
        [[ ! -s $f.err ]] || hw_fail "offline import $name printed: $(cat "$f.err")"
        [[ $(oid_of "$f") == 2.23.133.10.1.4 ]] || hw_fail "$f: not an importable key file ($(oid_of "$f"))"

        # On the TPM machine: first use imports it; signature checked in software.
        hw_hwkey pubkey "$f" | cmp -s - "$name.soft.pub" || hw_fail "$f: public key differs from the software key's"
        ossl pkeyutl -sign -inkey "$f" -rawin -digest sha256 -in msg -out "$f.sig" 2>"$f.err" ||
            hw_fail "$f: signing on the TPM: $(cat "$f.err")"
        sw pkeyutl -verify -pubin -inkey "$name.soft.pub" -rawin -digest sha256 -in msg \
            -sigfile "$f.sig" >/dev/null || hw_fail "$f: signature does not verify with the original public key"
    done
    # --finish: once, to a regular loadable key file.
    hw_hwkey import --finish "$name.pem.imp" --out "$name.tss" 2>"$name.err" ||
        hw_fail "import --finish $name: $(cat "$name.err")"
    [[ $(oid_of "$name.tss") == 2.23.133.10.1.3 ]] || hw_fail "$name.tss: not a loadable key file"
    ossl pkeyutl -sign -inkey "$name.tss" -rawin -digest sha256 -in msg -out "$name.sig" ||
        hw_fail "$name: signing with the finished key file"
    sw pkeyutl -verify -pubin -inkey "$name.soft.pub" -rawin -digest sha256 -in msg \
        -sigfile "$name.sig" >/dev/null || hw_fail "$name: finished key: signature does not verify"
    hw_log "$name: wrapped offline (PEM and TPM2B_PUBLIC parent), imported, signature verifies"
done
left=$(hw_transient_handles)
[[ -z $left ]] || hw_fail "transient objects left in the TPM: $left"

# --- with an auth value -------------------------------------------------------
printf 'offline-pw-%s\n' "$RANDOM" >pw.txt
offline import ec-p256.soft.pem --parent-pub parent.pem --out auth.imp --auth-file pw.txt ||
    hw_fail "offline import with --auth-file"
ossl pkeyutl -sign -inkey auth.imp -passin file:pw.txt -rawin -digest sha256 -in msg -out auth.sig ||
    hw_fail "signing with the offline-imported key and its auth value"
sw pkeyutl -verify -pubin -inkey ec-p256.soft.pub -rawin -digest sha256 -in msg -sigfile auth.sig \
    >/dev/null || hw_fail "auth key: signature does not verify"

# --- refused by the TPM: another parent, a changed duplicate -------------------
sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other-parent.key
sw pkey -in other-parent.key -pubout -out other-parent.pem
offline import ec-p256.soft.pem --parent-pub other-parent.pem --out other.imp || hw_fail "wrap to another parent"
hw_expect_fail 'TPM2_Import.*(INTEGRITY|integrity|ECC_POINT|VALUE|value|SIZE|this TPM)' \
    "an importable file of another parent" ossl pkeyutl -sign -inkey other.imp -rawin -digest sha256 -in msg -out x.sig
hw_hwkey import --finish other.imp --out other.tss 2>other.err && hw_fail "--finish of another parent's file succeeded"
assert_one_error_line other.err 'TPM2_Import'
[[ ! -e other.tss ]] || hw_fail "--finish left an output file after failing"

sw asn1parse -in ec-p256.pem.imp -out tampered.der -noout
hw_flip_byte tampered.der $(($(stat -c %s tampered.der) - 20)) # inside the duplicate (privkey, last)
hw_expect_fail 'TPM2_Import' "a changed duplicate" \
    ossl pkeyutl -sign -inkey tampered.der -rawin -digest sha256 -in msg -out x.sig

# --- bad inputs on the offline side --------------------------------------------
offline import ec-p256.soft.pem --parent-pub missing.pem --out x.imp 2>e1 && hw_fail "missing parent file accepted"
assert_one_error_line e1 'parent public key missing.pem'
head -c 300 /dev/urandom >garbage.bin
offline import ec-p256.soft.pem --parent-pub garbage.bin --out x.imp 2>e2 && hw_fail "garbage parent accepted"
assert_one_error_line e2 'neither a PEM public key nor a marshalled TPM2B_PUBLIC'
sw pkey -in rsa-2048.soft.pem -pubout -out rsa-parent.pem
offline import ec-p256.soft.pem --parent-pub rsa-parent.pem --out x.imp 2>e3 && hw_fail "RSA PEM parent accepted"
assert_one_error_line e3 'not an EC P-256 key.*TPM2B_PUBLIC'
rc=0
offline import ec-p256.soft.pem --parent-pub parent.pem 2>e4 || rc=$?
((rc == 2)) || hw_fail "--parent-pub without --out: exit $rc, expected 2"
rc=0
offline import ec-p256.soft.pem --parent-pub parent.pem --out x.imp --parent-handle 0x1234 2>e5 || rc=$?
((rc == 2)) || hw_fail "--parent-handle 0x1234: exit $rc, expected 2"
[[ ! -e x.imp ]] || hw_fail "a failed offline import left x.imp"
hw_hwkey import --finish ec-p256.tss --out y.tss 2>e6 && hw_fail "--finish of a loadable file succeeded"
assert_one_error_line e6 'already loadable'

# --- a non-standard persistent SRK: the TPM2B_PUBLIC route ---------------------
tpm2_createprimary -Q -C o -G ecc256 -c srk.ctx >/dev/null || hw_fail "tpm2_createprimary (SRK)"
tpm2_evictcontrol -Q -C o -c srk.ctx 0x81000001 >/dev/null || hw_fail "tpm2_evictcontrol 0x81000001"
tpm2_flushcontext -t >/dev/null
hw_hwkey pubkey --parent >srk.pem 2>srk.err || hw_fail "pubkey --parent (SRK): $(cat srk.err)"
grep -q 'not made from the standard ECC P-256 SRK template' srk.err ||
    hw_fail "pubkey --parent does not say the SRK needs its TPM2B_PUBLIC: $(cat srk.err)"
hw_hwkey pubkey --parent --out-public srk.tpm2b >/dev/null || hw_fail "pubkey --parent --out-public (SRK)"
tpm2_readpublic -Q -c 0x81000001 -o srk-tools.tpm2b >/dev/null || hw_fail "tpm2_readpublic 0x81000001"
cmp -s srk.tpm2b srk-tools.tpm2b || hw_fail "--out-public differs from tpm2_readpublic -o 0x81000001"
offline import rsa-2048.soft.pem --parent-pub srk.tpm2b --out srk.imp || hw_fail "offline import to the SRK"
ossl pkeyutl -sign -inkey srk.imp -rawin -digest sha256 -in msg -out srk.sig 2>srk.err ||
    hw_fail "signing with a key wrapped to the SRK: $(cat srk.err)"
sw pkeyutl -verify -pubin -inkey rsa-2048.soft.pub -rawin -digest sha256 -in msg -sigfile srk.sig \
    >/dev/null || hw_fail "SRK key: signature does not verify"
hw_log "non-standard SRK 0x81000001: PEM refused with a note, TPM2B_PUBLIC route works"

# An RSA storage key at another handle (seed encrypted with RSA-OAEP), named by --parent-handle.
tpm2_createprimary -Q -C o -G rsa2048 -c rsa-srk.ctx >/dev/null || hw_fail "tpm2_createprimary (RSA)"
tpm2_evictcontrol -Q -C o -c rsa-srk.ctx 0x81000002 >/dev/null || hw_fail "tpm2_evictcontrol 0x81000002"
tpm2_flushcontext -t >/dev/null
tpm2_readpublic -Q -c 0x81000002 -o rsa-srk.tpm2b >/dev/null || hw_fail "tpm2_readpublic 0x81000002"
offline import ec-p256.soft.pem --parent-pub rsa-srk.tpm2b --parent-handle 0x81000002 --out rsa-srk.imp ||
    hw_fail "offline import to an RSA parent"
hw_hwkey import --finish rsa-srk.imp --out rsa-srk.tss 2>rsa-srk.err || hw_fail "--finish under 0x81000002: $(cat rsa-srk.err)"
ossl pkeyutl -sign -inkey rsa-srk.tss -rawin -digest sha256 -in msg -out rsa-srk.sig ||
    hw_fail "signing with a key wrapped to the RSA parent"
sw pkeyutl -verify -pubin -inkey ec-p256.soft.pub -rawin -digest sha256 -in msg -sigfile rsa-srk.sig \
    >/dev/null || hw_fail "RSA parent: signature does not verify"
# Recorded for 0x81000002: the file of another parent handle fails on this one.
offline import ec-p256.soft.pem --parent-pub rsa-srk.tpm2b --out rsa-srk-default.imp ||
    hw_fail "offline import to an RSA parent (default handle)"
hw_expect_fail 'TPM2_Import' "a file wrapped to 0x81000002 but recorded for 0x81000001" \
    ossl pkeyutl -sign -inkey rsa-srk-default.imp -rawin -digest sha256 -in msg -out x.sig
hw_log "RSA parent 0x81000002 (--parent-handle): imported, signature verifies"
# Through a resource manager (tpm2-abrmd: keys stay loaded), the first use imports too.
if command -v tpm2-abrmd >/dev/null && command -v dbus-daemon >/dev/null; then
    hw_tabrmd
    hw_write_cnf "$HW_DIR/openssl-tabrmd.cnf" "$HW_TABRMD_TCTI"
    offline import ec-p384.soft.pem --parent-pub parent.pem --out rm.imp || hw_fail "offline import (RM)"
    OPENSSL_CONF=$HW_DIR/openssl-tabrmd.cnf ossl pkeyutl -sign -inkey rm.imp -rawin -digest sha256 \
        -in msg -out rm.sig 2>rm.err || hw_fail "signing through tpm2-abrmd: $(cat rm.err)"
    sw pkeyutl -verify -pubin -inkey ec-p384.soft.pub -rawin -digest sha256 -in msg -sigfile rm.sig \
        >/dev/null || hw_fail "RM: signature does not verify"
    hw_log "through tpm2-abrmd: imported at first use, signature verifies"
else
    hw_log "tpm2-abrmd or dbus-daemon missing: resource-manager case not run"
fi
echo "PASS: $HW_TEST"
