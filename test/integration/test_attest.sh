#!/usr/bin/env bash
# hwkey attest on swtpm (docs/attestation.md):
#  - a generated key's bundle verifies (`hwkey attest --verify`), with the
#    nonce, the pinned AK (--trust-ak) and the pinned EK (--trust-ek); the
#    AK is the same on every call (a CA can pin it);
#  - openssl alone verifies the AK's signature over the TPMS_ATTEST block;
#    the EK in the bundle is byte-equal to tpm2_createek -G ecc's;
#  - credential activation with tpm2-tools (the CA's MakeCredential to the
#    bundle's EK and AK Name, offline; ActivateCredential on the TPM with the
#    AK rebuilt from its documented template) recovers the secret; a
#    credential for another AK Name does not activate;
#  - rejected, one error line naming why: one changed byte in the
#    TPMS_ATTEST, a changed signature, another nonce, a key from a second
#    swtpm (its AK is not the trusted one; another TPM's bundle for this key
#    file), an imported key (accepted only with --allow-imported, reported);
#  - a key with an auth value is certified through its HMAC session; a
#    persistent key (handle:) is certified and verified against its PEM
#    public key only (what a CA has from a CSR);
#  - a swtpm with an EK certificate (HWKEY_SWTPM_EK_CERT=1): the certificate is
#    in the bundle, chains to the swtpm local CA (openssl verify), and is for
#    the bundle's EK (RSA-2048, equal to tpm2_createek -G rsa's);
#  - bad inputs: one line, exit 1 (or 2 for usage).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing tpm2_createek tpm2_createprimary tpm2_readpublic tpm2_makecredential \
    tpm2_activatecredential tpm2_startauthsession tpm2_policysecret tpm2_flushcontext base64 sha256sum
hw_setup

# block FILE LABEL: the DER bytes of one PEM block of a bundle.
block() { sed -n "/-----BEGIN $2-----/,/-----END $2-----/p" "$1" | sed '1d;$d' | base64 -d; }
# replace_block FILE LABEL BIN OUT: FILE with that block's contents replaced by BIN.
replace_block() {
    local file=$1 label=$2 bin=$3 out=$4
    awk -v b="-----BEGIN $label-----" -v e="-----END $label-----" -v data="$(base64 -w 64 "$bin")" '
        $0 == b {print; print data; skip=1; next}
        $0 == e {skip=0}
        !skip {print}' "$file" >"$out"
}
verify() { hw_hwkey attest --verify "$@"; }

# --- a generated key: verified ------------------------------------------------
hw_keygen ec:P-256 gen.tss
nonce=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
hw_hwkey attest gen.tss --nonce "$nonce" --out gen.att 2>gen.err || hw_fail "attest: $(cat gen.err)"
[[ ! -s gen.err ]] || hw_fail "attest printed on stderr: $(cat gen.err)"
for label in "HWKEY ATTEST INFO" "HWKEY ATTEST SIGNATURE" "PUBLIC KEY" "HWKEY AK TPM2B PUBLIC" \
    "HWKEY KEY TPM2B PUBLIC" "HWKEY EK TPM2B PUBLIC"; do
    grep -q -- "-----BEGIN $label-----" gen.att || hw_fail "the bundle has no $label block"
done
verify gen.att gen.tss --nonce "$nonce" >report 2>verify.err || hw_fail "verify: $(cat verify.err)"
grep -q '^verdict: attestation valid$' report || hw_fail "no valid verdict: $(cat report)"
grep -q '^key: generated in the TPM' report || hw_fail "origin not reported: $(cat report)"
grep -q '^nonce: matches$' report || hw_fail "nonce not checked: $(cat report)"
grep -q '^AK: NOT pinned' report || hw_fail "an unpinned AK is not reported as such: $(cat report)"

# openssl alone: the AK's signature over the TPMS_ATTEST bytes.
sw pkey -pubin -in gen.att -out ak.pem || hw_fail "openssl pkey cannot read the AK from the bundle"
block gen.att "HWKEY ATTEST INFO" >attest.bin
block gen.att "HWKEY ATTEST SIGNATURE" >sig.der
sw dgst -sha256 -verify ak.pem -signature sig.der attest.bin | grep -q 'Verified OK' ||
    hw_fail "openssl dgst -verify does not verify the attestation signature"
# TPMS_ATTEST: magic TPM_GENERATED_VALUE ff544347, type TPM_ST_ATTEST_CERTIFY 8017.
[[ $(od -An -tx1 -N6 attest.bin | tr -d ' \n') == ff5443478017 ]] || hw_fail "attest.bin is not a TPMS_ATTEST of TPM2_Certify"

# The AK is the same key every time: a CA can pin it.
hw_hwkey attest gen.tss --out gen2.att || hw_fail "second attest"
sw pkey -pubin -in gen2.att -out ak2.pem
cmp -s ak.pem ak2.pem || hw_fail "the AK changed between two attestations"
verify gen2.att gen.tss --trust-ak ak.pem >report2 || hw_fail "verify with --trust-ak"
grep -q '^AK: the trusted one' report2 || hw_fail "--trust-ak not reported: $(cat report2)"

# The EK is tpm2-tools' default ECC EK, so a CA can use tpm2-tools with it.
tpm2_createek -Q -G ecc -c ek.ctx -u ek.tpm2b >/dev/null 2>&1 || hw_fail "tpm2_createek"
tpm2_createek -Q -G ecc -c ek2.ctx -u ek.pem -f pem >/dev/null 2>&1 || hw_fail "tpm2_createek -f pem"
tpm2_flushcontext -t >/dev/null
block gen.att "HWKEY EK TPM2B PUBLIC" >bundle-ek.tpm2b
cmp -s ek.tpm2b bundle-ek.tpm2b || hw_fail "the bundle's EK differs from tpm2_createek -G ecc's"
verify gen.att gen.tss --trust-ek ek.pem >report3 || hw_fail "verify with --trust-ek"
grep -q '^EK: the trusted one' report3 || hw_fail "--trust-ek not reported: $(cat report3)"

# Credential activation with tpm2-tools (docs/attestation.md): the CA encrypts a
# secret to the EK for the bundle's AK Name, offline; only the TPM holding both
# recovers it, which binds the AK to the EK.  The AK is rebuilt from its
# documented template by tpm2_createprimary: the same key as hwkey's.
block gen.att "HWKEY AK TPM2B PUBLIC" >ak.tpm2b
ak_name=000b$(tail -c +3 ak.tpm2b | sha256sum | cut -c1-64)
head -c 32 /dev/urandom >cred-secret.bin
tpm2_makecredential -Q -T none -u bundle-ek.tpm2b -s cred-secret.bin -n "$ak_name" -o cred.out \
    >/dev/null 2>&1 || hw_fail "tpm2_makecredential (offline, CA side)"
tpm2_createek -Q -G ecc -c ek-act.ctx >/dev/null 2>&1 || hw_fail "tpm2_createek"
tpm2_flushcontext -t >/dev/null
tpm2_createprimary -Q -C e -g sha256 -G ecc256:ecdsa-sha256:null \
    -a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign' -c ak-act.ctx >/dev/null ||
    hw_fail "tpm2_createprimary (AK from the documented template)"
tpm2_readpublic -Q -c ak-act.ctx -o ak-tools.tpm2b >/dev/null || hw_fail "tpm2_readpublic (AK)"
tpm2_flushcontext -t >/dev/null
cmp -s ak.tpm2b ak-tools.tpm2b || hw_fail "the documented AK template does not rebuild hwkey's AK"
activate() {
    tpm2_startauthsession -Q --policy-session -S act.session >/dev/null || hw_fail "tpm2_startauthsession"
    tpm2_policysecret -Q -S act.session -c e >/dev/null || hw_fail "tpm2_policysecret"
    local rc=0
    tpm2_activatecredential -Q -c ak-act.ctx -C ek-act.ctx -i "$1" -o "$2" -P session:act.session \
        >/dev/null 2>&1 || rc=$?
    tpm2_flushcontext act.session >/dev/null 2>&1 || true
    tpm2_flushcontext -t >/dev/null
    return $rc
}
activate cred.out cred-recovered.bin || hw_fail "tpm2_activatecredential of the CA's credential"
cmp -s cred-secret.bin cred-recovered.bin || hw_fail "credential activation returned another secret"
# A credential for another AK Name does not activate with this AK.
tpm2_makecredential -Q -T none -u bundle-ek.tpm2b -s cred-secret.bin -n "000b$(head -c 32 /dev/urandom |
    od -An -tx1 | tr -d ' \n')" -o cred-other.out >/dev/null 2>&1 || hw_fail "tpm2_makecredential (other name)"
! activate cred-other.out cred-other.bin || hw_fail "a credential for another AK Name was activated"

# A persistent key (handle:), verified against its PEM public key alone, as a CA
# holding only the CSR does; another key's PEM is refused.
hw_hwkey keygen ec:P-256 --persist 0x81000010 --out persist.ref >/dev/null 2>persist.err ||
    hw_fail "keygen --persist: $(cat persist.err)"
hw_hwkey pubkey handle:0x81000010 >persist.pub || hw_fail "pubkey handle:0x81000010"
hw_hwkey attest handle:0x81000010 --nonce "$nonce" --out persist.att || hw_fail "attest handle:0x81000010"
verify persist.att persist.pub --nonce "$nonce" --trust-ak ak.pem >report5 || hw_fail "verify against a PEM public key"
grep -q '^verdict: attestation valid$' report5 || hw_fail "handle key: $(cat report5)"

# --- rejected -----------------------------------------------------------------
# rejected WHAT REGEX ARGS...: exit 1, one error line matching REGEX, no report on stdout.
rejected() {
    local what=$1 regex=$2 rc=0
    shift 2
    verify "$@" >rej.out 2>rej.err || rc=$?
    ((rc == 1)) || hw_fail "$what: exit $rc, expected 1 ($(cat rej.err))"
    assert_one_error_line rej.err "attestation rejected.*$regex"
    [[ ! -s rej.out ]] || hw_fail "$what: printed a report: $(cat rej.out)"
}
cp attest.bin tampered.bin
hw_flip_byte tampered.bin 40
replace_block gen.att "HWKEY ATTEST INFO" tampered.bin tampered.att
rejected "one changed byte in TPMS_ATTEST" 'signature does not verify' tampered.att gen.tss
cp sig.der badsig.der
hw_flip_byte badsig.der 12
replace_block gen.att "HWKEY ATTEST SIGNATURE" badsig.der badsig.att
rejected "a changed signature" 'signature does not verify' badsig.att gen.tss
rejected "another nonce" 'nonce' gen.att gen.tss --nonce 00ff00ff
hw_hwkey pubkey gen.tss >gen.pub || hw_fail "pubkey gen.tss"
rejected "a PEM public key of another key" 'another key' persist.att gen.pub

# A key of a second TPM.
out=$("$top_srcdir/scripts/swtpm-start.sh" "$HW_DIR/swtpm2") || hw_fail "cannot start a second swtpm"
read -r port2 pid2 <<<"$out"
hw_register_pid "$pid2"
HW_CLI_TCTI="swtpm:host=127.0.0.1,port=$port2" hw_keygen ec:P-256 other.tss
HW_CLI_TCTI="swtpm:host=127.0.0.1,port=$port2" hw_hwkey attest other.tss --out other.att ||
    hw_fail "attest on the second TPM"
verify other.att other.tss >/dev/null || hw_fail "the second TPM's own bundle does not verify unpinned"
rejected "a key of another TPM, AK pinned" 'another AK than the trusted one' other.att other.tss --trust-ak ak.pem
rejected "a key of another TPM, EK pinned" 'EK is not the trusted one' other.att other.tss --trust-ek ek.pem
rejected "another TPM's bundle for this key file" 'another key' other.att gen.tss
hw_expect_fail 'does not belong to this TPM|TPM_RC_INTEGRITY|integrity' "attesting another TPM's key" \
    hw_hwkey attest other.tss --out x.att
[[ ! -e x.att ]] || hw_fail "a failed attest left its --out file"

# An imported key: certified, but not born in the TPM.
sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out soft.pem 2>/dev/null
hw_hwkey import soft.pem --out imp.tss || hw_fail "import"
hw_hwkey attest imp.tss --out imp.att || hw_fail "attest of an imported key"
rejected "an imported key" 'imported, not generated in the TPM' imp.att imp.tss
verify imp.att imp.tss --allow-imported >report4 || hw_fail "verify --allow-imported"
grep -q '^key: imported, not generated in the TPM' report4 || hw_fail "imported key not reported: $(cat report4)"

# A key with an auth value: Certify through the key's HMAC session.
printf 'attest-pw-%s\n' "$RANDOM" >pw.txt
hw_keygen ec:P-256 auth.tss --auth-file pw.txt
hw_hwkey attest auth.tss --auth-file pw.txt --out auth.att || hw_fail "attest of a key with an auth value"
verify auth.att auth.tss --trust-ak ak.pem >/dev/null || hw_fail "verify (key with auth value)"
printf 'wrong\n' >bad.txt
hw_expect_fail 'AUTH|auth' "attest with the wrong auth value" hw_hwkey attest auth.tss --auth-file bad.txt --out y.att

# A TPM with an EK certificate (swtpm_setup --create-ek-cert: RSA-2048 EK, certificate at
# NV 0x01c00002 from a local CA): the bundle carries the certificate, its key is the bundle's
# EK (tpm2_createek -G rsa's), the chain verifies with openssl, and --trust-ek with the
# certificate's public key passes.
out=$(HWKEY_SWTPM_EK_CERT=1 "$top_srcdir/scripts/swtpm-start.sh" "$HW_DIR/swtpm3") ||
    hw_fail "cannot start a swtpm with an EK certificate"
read -r port3 pid3 <<<"$out"
hw_register_pid "$pid3"
T3=swtpm:host=127.0.0.1,port=$port3
HW_CLI_TCTI=$T3 hw_keygen ec:P-256 cert.tss
HW_CLI_TCTI=$T3 hw_hwkey attest cert.tss --out cert.att || hw_fail "attest on the TPM with an EK certificate"
grep -q -- '-----BEGIN CERTIFICATE-----' cert.att || hw_fail "the EK certificate is not in the bundle"
sw x509 -in cert.att -out ekcert.pem || hw_fail "openssl x509 cannot read the EK certificate"
sw x509 -in ekcert.pem -noout -pubkey >ekcert.pub
ca=$HW_DIR/swtpm3/localca
sw verify -CAfile "$ca/swtpm-localca-rootca-cert.pem" -untrusted "$ca/issuercert.pem" ekcert.pem \
    >/dev/null || hw_fail "the EK certificate does not verify against the swtpm local CA"
TPM2TOOLS_TCTI=$T3 tpm2_createek -Q -G rsa -c ek3.ctx -u ek3.tpm2b >/dev/null 2>&1 || hw_fail "tpm2_createek -G rsa"
TPM2TOOLS_TCTI=$T3 tpm2_flushcontext -t >/dev/null
block cert.att "HWKEY EK TPM2B PUBLIC" >cert-ek.tpm2b
cmp -s ek3.tpm2b cert-ek.tpm2b || hw_fail "the bundle's EK is not the RSA EK its certificate is for"
verify cert.att cert.tss --trust-ek ekcert.pub >report6 || hw_fail "verify --trust-ek with the certificate's key"
grep -q '^EK: the trusted one' report6 || hw_fail "EK certificate key: $(cat report6)"
rejected "another TPM's EK certificate key" 'EK is not the trusted one' gen.att gen.tss --trust-ek ekcert.pub

left=$(hw_transient_handles)
[[ -z $left ]] || hw_fail "transient objects left in the TPM: $left"

# --- bad inputs -----------------------------------------------------------------
head -c 500 /dev/urandom >garbage.att
hw_hwkey attest --verify garbage.att gen.tss 2>e1 && hw_fail "a garbage bundle verified"
assert_one_error_line e1 'no "HWKEY ATTEST INFO" block'
hw_hwkey attest --verify missing.att gen.tss 2>e2 && hw_fail "a missing bundle verified"
assert_one_error_line e2 'missing.att'
hw_hwkey attest --verify gen.att gen.tss --trust-ak garbage.att 2>e3 && hw_fail "a garbage --trust-ak accepted"
assert_one_error_line e3 'no PEM public key'
rc=0
hw_hwkey attest gen.tss --nonce xyz 2>e4 || rc=$?
((rc == 2)) || hw_fail "--nonce xyz: exit $rc, expected 2"
rc=0
hw_hwkey attest gen.tss --trust-ak ak.pem 2>e5 || rc=$?
((rc == 2)) || hw_fail "--trust-ak without --verify: exit $rc, expected 2"
echo "PASS: $HW_TEST"
