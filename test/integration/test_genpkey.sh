#!/usr/bin/env bash
# openssl(1) key generation and re-encoding with hwkey on swtpm:
#  - `openssl genpkey -propquery provider=hwkey` makes the key in the TPM and
#    writes a TSS2 PRIVATE KEY file, which hwkey and Debian's tpm2-openssl
#    both load and sign with (signatures verified by the default provider);
#  - `openssl pkey -in k.pem -out copy.pem` writes the same file, byte for byte;
#  - `openssl pkey -text -noout` prints the public key and where the private
#    key lives, never a private number; -pubout still works;
#  - an unsupported curve or size fails with one clear error;
#  - -pkeyopt hwkey-persist:0x81... writes a reference file naming the handle.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_setup

head -c 513 /dev/urandom >msg

tpm2_module=$(openssl version -m | sed -n 's/^MODULESDIR: "\(.*\)"$/\1/p')/tpm2.so
: >"$HW_DIR/openssl-tpm2.cnf"
# tpm2-openssl with an openssl.cnf that never loads hwkey.
tpm2ossl() {
    OPENSSL_CONF=$HW_DIR/openssl-tpm2.cnf TPM2OPENSSL_TCTI=$HW_TCTI timeout -k 5 "$HW_TIMEOUT" \
        openssl "$@"
}

check_sig() { # WHAT PUB SIG
    sw pkeyutl -verify -pubin -inkey "$2" -rawin -digest sha256 -in msg -sigfile "$3" >/dev/null ||
        hw_fail "$1: signature does not verify in software"
}

# --- genpkey, pkey round trip, text, interop --------------------------------------
for spec in EC:group:P-256 EC:group:P-384 RSA:rsa_keygen_bits:2048; do
    IFS=: read -r algo opt val <<<"$spec"
    key=gen-$algo-$val.pem
    ossl genpkey -propquery provider=hwkey -algorithm "$algo" -pkeyopt "$opt:$val" -out "$key" \
        2>"$key.err" || hw_fail "genpkey $spec: $(cat "$key.err")"
    hw_no_crash 0 "$key.err" "genpkey $spec"
    [[ $(head -1 "$key") == "-----BEGIN TSS2 PRIVATE KEY-----" ]] ||
        hw_fail "genpkey $spec wrote no TSS2 PRIVATE KEY: $(head -1 "$key")"
    ! grep -q -- "-----BEGIN PRIVATE KEY-----" "$key" || hw_fail "genpkey $spec wrote a software key"

    # The software view of the key: what every later check compares with.
    ossl pkey -in "$key" -pubout -out "$key.pub" 2>"$key.err" ||
        hw_fail "pkey -pubout $spec: $(cat "$key.err")"
    grep -q -- "-----BEGIN PUBLIC KEY-----" "$key.pub" || hw_fail "pkey -pubout $spec: no PUBLIC KEY"
    sw pkey -pubin -in "$key.pub" -noout || hw_fail "$spec: the public key is not a valid SPKI"
    if [[ $algo == EC ]]; then
        sw pkey -pubin -in "$key.pub" -text -noout | grep -q "NIST CURVE: $val" ||
            hw_fail "$spec: the key is not on $val"
    else
        sw pkey -pubin -in "$key.pub" -text -noout | grep -q "Public-Key: ($val bit)" ||
            hw_fail "$spec: the key is not $val bits"
    fi

    # hwkey signs with the generated key.
    ossl pkeyutl -sign -inkey "$key" -rawin -digest sha256 -in msg -out "$key.sig" 2>"$key.err" ||
        hw_fail "hwkey cannot sign with the genpkey $spec key: $(cat "$key.err")"
    check_sig "genpkey $spec key signed by hwkey" "$key.pub" "$key.sig"

    # Re-encoding writes the same TSS2 file, byte for byte.
    ossl pkey -in "$key" -out "$key.copy" 2>"$key.err" || hw_fail "pkey -out $spec: $(cat "$key.err")"
    cmp -s "$key" "$key.copy" || hw_fail "pkey -in $key -out copy: not the same file"
    # DER too: the same bytes as the PEM body, and hwkey reads it back.
    ossl pkey -in "$key" -outform DER -out "$key.der" 2>"$key.err" ||
        hw_fail "pkey -outform DER $spec: $(cat "$key.err")"
    sed '1d;$d' "$key" | base64 -d | cmp -s - "$key.der" ||
        hw_fail "pkey -outform DER $spec: not the TSS2 key file's DER"
    ossl pkey -inform DER -in "$key.der" -pubout -out "$key.der.pub" 2>"$key.err" ||
        hw_fail "pkey -inform DER $spec: $(cat "$key.err")"
    cmp -s "$key.pub" "$key.der.pub" || hw_fail "$spec: the DER file is another key"

    # -text: public parts and where the private key is; no private number.
    ossl pkey -in "$key" -text -noout >"$key.txt" 2>"$key.err" ||
        hw_fail "pkey -text $spec: $(cat "$key.err")"
    grep -q "^Private key: held by TPM 2.0 (TSS2 key file, parent 0x[0-9a-f]\{8\}, no auth value)" \
        "$key.txt" ||
        hw_fail "pkey -text $spec: no 'held by' line: $(cat "$key.txt")"
    if [[ $algo == EC ]]; then
        grep -q "^pub:" "$key.txt" || hw_fail "pkey -text $spec: no public point"
        ! grep -q "^priv:" "$key.txt" || hw_fail "pkey -text $spec printed a private scalar"
    else
        grep -q "^Modulus:" "$key.txt" || hw_fail "pkey -text $spec: no modulus"
        ! grep -qiE "privateExponent|prime1|exponent1|coefficient" "$key.txt" ||
            hw_fail "pkey -text $spec printed private RSA parts"
    fi

    # Debian's tpm2-openssl loads and signs with the genpkey key.
    if [[ -f $tpm2_module ]]; then
        tpm2ossl pkey -provider tpm2 -provider default -propquery '?provider=tpm2' -in "$key" \
            -pubout -out "$key.t2o.pub" 2>"$key.err" ||
            hw_fail "tpm2-openssl cannot load the genpkey $spec key: $(cat "$key.err")"
        cmp -s "$key.pub" "$key.t2o.pub" || hw_fail "$spec: tpm2-openssl and hwkey disagree on the public key"
        tpm2ossl pkeyutl -provider tpm2 -provider default -propquery '?provider=tpm2' -sign \
            -inkey "$key" -rawin -digest sha256 -in msg -out "$key.t2o.sig" 2>"$key.err" ||
            hw_fail "tpm2-openssl cannot sign with the genpkey $spec key: $(cat "$key.err")"
        check_sig "genpkey $spec key signed by tpm2-openssl" "$key.pub" "$key.t2o.sig"
    else
        hw_log "tpm2-openssl not installed ($tpm2_module): interop part skipped"
    fi
    hw_log "genpkey $spec: TSS2 file, same file after pkey, -text, signs in hwkey and tpm2-openssl"
done

# RSA-3072 takes a TPM a second or more: genpkey shows that it is working
# (one '.' per 250 ms), then ends the line.  Checked only when it was slow.
t0=$(date +%s%N)
ossl genpkey -propquery provider=hwkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out rsa3072.pem \
    2>rsa3072.err || hw_fail "genpkey RSA 3072: $(cat rsa3072.err)"
ms=$((($(date +%s%N) - t0) / 1000000))
sw pkey -in rsa3072.pem -noout 2>/dev/null && hw_fail "genpkey RSA 3072 wrote a software key"
ossl pkey -in rsa3072.pem -pubout 2>/dev/null | sw pkey -pubin -text -noout | grep -q "(3072 bit)" ||
    hw_fail "genpkey RSA 3072: not a 3072-bit key"
if ((ms >= 700)); then
    grep -qE '^\.+$' rsa3072.err || hw_fail "genpkey RSA 3072 took ${ms} ms and printed no progress dots: $(cat rsa3072.err)"
    hw_log "genpkey RSA 3072: ${ms} ms, progress: $(head -1 rsa3072.err)"
else
    hw_log "genpkey RSA 3072: ${ms} ms, too fast for progress dots (not checked)"
fi

# A self-signed certificate from a genpkey key (openssl req -new -x509).
ossl req -new -x509 -key gen-EC-P-256.pem -subj /CN=genpkey -days 1 -out cert.pem 2>req.err ||
    hw_fail "req -x509 with the genpkey key: $(cat req.err)"
sw verify -CAfile cert.pem cert.pem >/dev/null || hw_fail "the self-signed certificate does not verify"

# --- refusals: one clear error each ----------------------------------------------------
# (P-521 and RSA-4096 are the TPM's to answer: test_tpm2_keyauth.sh)
for bad in "EC group:brainpoolP256r1 brainpoolP256r1" "EC group:secp256k1 secp256k1" \
    "RSA rsa_keygen_bits:8192 8192" "RSA rsa_keygen_bits:1024 1024"; do
    read -r algo opt word <<<"$bad"
    hw_expect_fail "hwkey.*$word.*(P-256|2048)" "genpkey $algo $opt" \
        ossl genpkey -propquery provider=hwkey -algorithm "$algo" -pkeyopt "$opt" -out bad.pem
    n=$(grep -c "hwkey" "$HW_LAST_ERR" || true)
    ((n == 1)) || hw_fail "genpkey $algo $opt: $n hwkey error lines, expected one: $(cat "$HW_LAST_ERR")"
    [[ ! -s bad.pem ]] || hw_fail "genpkey $algo $opt left a key file behind"
done
hw_expect_fail "hwkey.*group:P-256" "genpkey EC without a curve" \
    ossl genpkey -propquery provider=hwkey -algorithm EC -out bad.pem
# A key file is not re-wrapped under a passphrase, and not silently written in the clear.
hw_expect_fail "hwkey.*cipher" "pkey -aes256" \
    ossl pkey -in gen-EC-P-256.pem -aes256 -passout pass:secret -out bad.pem
[[ ! -s bad.pem ]] || hw_fail "pkey -aes256 wrote a key file"
hw_log "unsupported curve/size, missing curve, -aes256: one clear error each"

# --- a persistent key: the file names the handle -----------------------------------------
ossl genpkey -propquery provider=hwkey -algorithm EC -pkeyopt group:P-256 \
    -pkeyopt hwkey-persist:0x81000a01 -out persist.pem 2>persist.err ||
    hw_fail "genpkey hwkey-persist: $(cat persist.err)"
grep -q -- "-----BEGIN HWKEY KEY URI-----" persist.pem ||
    hw_fail "genpkey hwkey-persist wrote no HWKEY KEY URI reference: $(head -1 persist.pem)"
persistent=$(TPM2TOOLS_TCTI=$HW_TCTI timeout 30 tpm2_getcap handles-persistent 2>&1) || true
grep -qi 0x81000a01 <<<"$persistent" ||
    hw_fail "genpkey hwkey-persist: no key at 0x81000a01 (tpm2_getcap: $persistent)"
ossl pkey -in persist.pem -out persist.copy 2>persist.err || hw_fail "pkey persist.pem: $(cat persist.err)"
cmp -s persist.pem persist.copy || hw_fail "pkey -in persist.pem -out copy: not the same file"
ossl pkey -in persist.pem -text -noout 2>persist.err | grep -q "held by TPM 2.0 (persistent handle:0x81000a01)" ||
    hw_fail "pkey -text persist.pem: no 'held by' line naming the handle"
ossl pkey -in persist.pem -pubout -out persist.pub || hw_fail "pkey -pubout persist.pem"
ossl pkeyutl -sign -inkey persist.pem -rawin -digest sha256 -in msg -out persist.sig 2>persist.err ||
    hw_fail "sign with the persistent genpkey key: $(cat persist.err)"
check_sig "persistent genpkey key" persist.pub persist.sig
hw_log "genpkey hwkey-persist: reference file, same after pkey, signs"
# Which handles are persistent is the TPM backend's to say (ops/ parses a number only).
if ossl genpkey -propquery provider=hwkey -algorithm EC -pkeyopt group:P-256 \
    -pkeyopt hwkey-persist:0x01000a01 -out badpersist.pem 2>badpersist.err; then
    hw_fail "genpkey hwkey-persist:0x01000a01 succeeded"
fi
grep -q "0x01000a01 is not a persistent handle (0x81000000 .. 0x81ffffff)" badpersist.err ||
    hw_fail "genpkey with a non-persistent handle: $(head -c 400 badpersist.err)"
[[ ! -s badpersist.pem ]] || hw_fail "genpkey with a bad handle wrote a key file"
hw_log "genpkey hwkey-persist: a handle outside the persistent range is refused by the TPM backend"

[[ -z $(hw_transient_handles) ]] || hw_fail "transient objects left in the TPM: $(hw_transient_handles | tr '\n' ' ')"
echo "PASS: $HW_TEST"
