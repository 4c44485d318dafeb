#!/usr/bin/env bash
# Interop with Debian's tpm2-openssl provider, which writes and reads the same
# TSS2 PRIVATE KEY format:
#  - keys made by tpm2-openssl (openssl genpkey -provider tpm2) load and sign
#    in hwkey;
#  - keys made by `hwkey keygen` load and sign in tpm2-openssl.
# tpm2-openssl runs with its own openssl.cnf that does not load hwkey; every
# signature is verified by the default provider alone.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing openssl
tpm2_module=$(openssl version -m | sed -n 's/^MODULESDIR: "\(.*\)"$/\1/p')/tpm2.so
if [[ ! -f $tpm2_module ]]; then
    echo "SKIP: tpm2-openssl not installed ($tpm2_module)" >&2
    exit 77
fi
hw_setup

head -c 777 /dev/urandom >msg

# tpm2-openssl: an openssl.cnf that loads nothing (the providers come from
# -provider tpm2 -provider default on each command line), never hwkey.
: >"$HW_DIR/openssl-tpm2.cnf"
tpm2ossl() {
    OPENSSL_CONF=$HW_DIR/openssl-tpm2.cnf TPM2OPENSSL_TCTI=$HW_TCTI timeout -k 5 "$HW_TIMEOUT" \
        openssl "$@"
}

check_sig() { # WHAT PUB DIGEST SIG
    sw pkeyutl -verify -pubin -inkey "$2" -rawin -digest "$3" -in msg -sigfile "$4" >/dev/null ||
        hw_fail "$1: signature does not verify in software"
}

# 1. tpm2-openssl keys in hwkey.
for spec in EC:group:P-256 EC:group:P-384 RSA:bits:2048; do
    IFS=: read -r algo opt val <<<"$spec"
    key=t2o-$algo-$val.pem
    [[ $opt == group ]] && pkeyopt="group:$val" || pkeyopt="bits:$val"
    tpm2ossl genpkey -provider tpm2 -provider default -propquery '?provider=tpm2' -algorithm "$algo" -pkeyopt "$pkeyopt" -out "$key" 2>"$key.err" ||
        hw_fail "tpm2-openssl genpkey $spec: $(cat "$key.err")"
    grep -q -- "-----BEGIN TSS2 PRIVATE KEY-----" "$key" || hw_fail "tpm2-openssl did not write a TSS2 PRIVATE KEY"
    tpm2ossl pkey -provider tpm2 -provider default -in "$key" -pubout -out "$key.t2o.pub" ||
        hw_fail "tpm2-openssl cannot read back its own key $key"

    ossl pkey -in "$key" -pubout -out "$key.hw.pub" 2>"$key.err" ||
        hw_fail "hwkey cannot load the tpm2-openssl key ($spec): $(cat "$key.err")"
    cmp -s "$key.hw.pub" "$key.t2o.pub" || hw_fail "$spec: hwkey and tpm2-openssl disagree on the public key"
    ossl pkeyutl -sign -inkey "$key" -rawin -digest sha256 -in msg -out "$key.sig" 2>"$key.err" ||
        hw_fail "hwkey cannot sign with the tpm2-openssl key ($spec): $(cat "$key.err")"
    check_sig "tpm2-openssl $spec key signed by hwkey" "$key.t2o.pub" sha256 "$key.sig"
    hw_log "tpm2-openssl $spec key: loads and signs in hwkey"
done

# 2. hwkey keys in tpm2-openssl.
for alg in ec:P-256 ec:P-384 rsa:2048; do
    key=hw-${alg/:/-}.pem
    hw_keygen "$alg" "$key"
    ossl pkey -in "$key" -pubout -out "$key.hw.pub" || hw_fail "$alg: hwkey pkey -pubout"
    tpm2ossl pkey -provider tpm2 -provider default -propquery '?provider=tpm2' -in "$key" -pubout \
        -out "$key.t2o.pub" 2>"$key.err" ||
        hw_fail "tpm2-openssl cannot load the hwkey $alg key: $(cat "$key.err")"
    cmp -s "$key.hw.pub" "$key.t2o.pub" || hw_fail "$alg: tpm2-openssl and hwkey disagree on the public key"
    tpm2ossl pkeyutl -provider tpm2 -provider default -propquery '?provider=tpm2' -sign -inkey "$key" \
        -rawin -digest sha256 -in msg -out "$key.sig" 2>"$key.err" ||
        hw_fail "tpm2-openssl cannot sign with the hwkey $alg key: $(cat "$key.err")"
    check_sig "hwkey $alg key signed by tpm2-openssl" "$key.hw.pub" sha256 "$key.sig"
    hw_log "hwkey $alg key: loads and signs in tpm2-openssl"
done

[[ -z $(hw_transient_handles) ]] || hw_fail "transient objects left in the TPM: $(hw_transient_handles | tr '\n' ' ')"
echo "PASS: $HW_TEST"
