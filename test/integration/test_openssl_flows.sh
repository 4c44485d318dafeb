#!/usr/bin/env bash
# openssl(1) with TPM keys made by `hwkey keygen`: public key, CSR, self-signed
# certificates, signatures (message and precomputed digest, every key type x
# digest, RSA-PSS salt lengths), RSA decryption (OAEP, PKCS#1 v1.5), ECDH.
# Every result is checked by the default provider alone (no hwkey loaded).
# Then all of it again with `default_properties = ?provider=default`, where
# OpenSSL prefers default-provider operations (TRAPS.md: key export).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_setup

KEYS=(ec:P-256 ec:P-384 rsa:2048 rsa:3072)
DIGESTS=(sha256 sha384 sha512)
declare -A HLEN=([sha1]=20 [sha256]=32 [sha384]=48 [sha512]=64)
declare -A MODBYTES=([rsa:2048]=256 [rsa:3072]=384)
declare -A CURVE=([ec:P-256]=prime256v1 [ec:P-384]=secp384r1)
declare -A FIELDBYTES=([ec:P-256]=32 [ec:P-384]=48)

head -c 1531 /dev/urandom >msg
cp msg msg-tampered
printf 'x' >>msg-tampered
printf 'a secret of 32 bytes for RSA...\n' >plain

keyfile() { echo "key-${1/:/-}.pem"; }

for alg in "${KEYS[@]}"; do
    hw_keygen "$alg" "$(keyfile "$alg")"
done

# The CLI's view of the public key must match what the provider exports.
for alg in "${KEYS[@]}"; do
    k=$(keyfile "$alg")
    hw_hwkey pubkey "$k" >"$k.clipub" 2>"$k.clipub.err" || hw_fail "hwkey pubkey $k: $(cat "$k.clipub.err")"
    sw pkey -pubin -in "$k.clipub" -outform DER -out "$k.clipub.der" || hw_fail "hwkey pubkey $k: not a public key PEM"
done

# rsa_pss_saltlen value -> the salt length in bytes it must produce.
pss_saltlen_bytes() {
    local alg=$1 d=$2 salt=$3
    case $salt in
        digest | -1) echo "${HLEN[$d]}" ;;
        max | -3) echo $((MODBYTES[$alg] - HLEN[$d] - 2)) ;;
        *) echo "$salt" ;;
    esac
}

run_flows() {
    local label=$1 alg k pub d salt n other md pad
    hw_log "flows with $label"
    for alg in "${KEYS[@]}"; do
        k=$(keyfile "$alg")
        pub=$k.$label.pub
        ossl pkey -in "$k" -pubout -out "$pub" || hw_fail "$label $alg: openssl pkey -pubout"
        if [[ $alg == ec:* ]]; then
            sw pkey -pubin -in "$pub" -text -noout | grep -q "ASN1 OID: ${CURVE[$alg]}" ||
                hw_fail "$label $alg: public key is not on ${CURVE[$alg]}"
        else
            sw pkey -pubin -in "$pub" -text -noout | grep -q "Public-Key: (${alg#rsa:} bit)" ||
                hw_fail "$label $alg: public key is not ${alg#rsa:} bits"
        fi
        sw pkey -pubin -in "$pub" -outform DER -out "$pub.der"
        cmp -s "$pub.der" "$k.clipub.der" || hw_fail "$label $alg: openssl pkey -pubout differs from hwkey pubkey"

        # CSR and self-signed certificates, checked in software.
        ossl req -new -key "$k" -subj /CN=x -out "$k.csr" || hw_fail "$label $alg: openssl req -new"
        sw req -verify -in "$k.csr" -noout 2>&1 | grep -q 'verify OK' ||
            hw_fail "$label $alg: CSR self-signature does not verify"
        ossl req -x509 -new -key "$k" -subj /CN=x -days 2 -out "$k.crt" || hw_fail "$label $alg: openssl req -x509"
        ossl x509 -req -in "$k.csr" -signkey "$k" -days 2 -out "$k.x509.crt" 2>"$k.x509.err" ||
            hw_fail "$label $alg: openssl x509 -req -signkey: $(cat "$k.x509.err")"
        for crt in "$k.crt" "$k.x509.crt"; do
            sw verify -CAfile "$crt" "$crt" >/dev/null || hw_fail "$label $alg: $crt does not verify"
            sw x509 -in "$crt" -noout -pubkey | sw pkey -pubin -outform DER | cmp -s - "$pub.der" ||
                hw_fail "$label $alg: $crt holds another public key"
        done

        # Signatures: message hashed by openssl, and a precomputed digest.
        for d in "${DIGESTS[@]}"; do
            ossl pkeyutl -sign -inkey "$k" -rawin -digest "$d" -in msg -out sig ||
                hw_fail "$label $alg $d: pkeyutl -sign -rawin"
            sw pkeyutl -verify -pubin -inkey "$pub" -rawin -digest "$d" -in msg -sigfile sig >/dev/null ||
                hw_fail "$label $alg $d: -rawin signature does not verify in software"
            if sw pkeyutl -verify -pubin -inkey "$pub" -rawin -digest "$d" -in msg-tampered -sigfile sig >/dev/null 2>&1; then
                hw_fail "$label $alg $d: the software verifier accepted a tampered message"
            fi
            sw dgst "-$d" -binary -out dig msg
            ossl pkeyutl -sign -inkey "$k" -in dig -pkeyopt "digest:$d" -out sig2 ||
                hw_fail "$label $alg $d: pkeyutl -sign on a digest"
            sw dgst "-$d" -verify "$pub" -signature sig2 msg >/dev/null ||
                hw_fail "$label $alg $d: digest signature does not verify in software"
        done

        if [[ $alg == rsa:* ]]; then
            # RSA-PSS: the salt length asked for is the one used.
            for d in "${DIGESTS[@]}"; do
                # -1/-3: the numeric forms the default provider accepts (issue 7.10).
                for salt in digest max 32 -1 -3; do
                    ossl pkeyutl -sign -inkey "$k" -rawin -digest "$d" -in msg -out pss \
                        -pkeyopt rsa_padding_mode:pss -pkeyopt "rsa_pss_saltlen:$salt" ||
                        hw_fail "$label $alg $d: PSS sign saltlen:$salt"
                    sw pkeyutl -verify -pubin -inkey "$pub" -rawin -digest "$d" -in msg -sigfile pss \
                        -pkeyopt rsa_padding_mode:pss -pkeyopt "rsa_pss_saltlen:$salt" >/dev/null ||
                        hw_fail "$label $alg $d: PSS saltlen:$salt does not verify in software"
                    n=$(pss_saltlen_bytes "$alg" "$d" "$salt")
                    sw pkeyutl -verify -pubin -inkey "$pub" -rawin -digest "$d" -in msg -sigfile pss \
                        -pkeyopt rsa_padding_mode:pss -pkeyopt "rsa_pss_saltlen:$n" >/dev/null ||
                        hw_fail "$label $alg $d: PSS saltlen:$salt did not use a $n-byte salt"
                    other=$((n == 20 ? 21 : 20))
                    if sw pkeyutl -verify -pubin -inkey "$pub" -rawin -digest "$d" -in msg -sigfile pss \
                        -pkeyopt rsa_padding_mode:pss -pkeyopt "rsa_pss_saltlen:$other" >/dev/null 2>&1; then
                        hw_fail "$label $alg $d: PSS saltlen:$salt also verifies with a $other-byte salt"
                    fi
                done
            done
            # -2 (auto): whatever salt the signer chose, an auto verifier accepts it;
            # dgst -sigopt takes the same strings as pkeyutl -pkeyopt.
            ossl dgst -sha256 -sign "$k" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-2 \
                -out pss msg || hw_fail "$label $alg: dgst -sigopt rsa_pss_saltlen:-2"
            sw dgst -sha256 -verify "$pub" -signature pss -sigopt rsa_padding_mode:pss \
                -sigopt rsa_pss_saltlen:auto msg >/dev/null ||
                hw_fail "$label $alg: PSS saltlen:-2 does not verify in software"
            # Decryption of data encrypted in software.
            for pad in oaep:sha1 oaep:sha256 pkcs1; do
                local opts=(-pkeyopt "rsa_padding_mode:${pad%%:*}")
                if [[ $pad == oaep:* ]]; then
                    md=${pad#oaep:}
                    opts+=(-pkeyopt "rsa_oaep_md:$md" -pkeyopt "rsa_mgf1_md:$md")
                fi
                sw pkeyutl -encrypt -pubin -inkey "$pub" "${opts[@]}" -in plain -out ct
                rm -f dec
                ossl pkeyutl -decrypt -inkey "$k" "${opts[@]}" -in ct -out dec ||
                    hw_fail "$label $alg: decrypt $pad"
                cmp -s dec plain || hw_fail "$label $alg: decrypt $pad returned other data"
            done
            # A damaged OAEP ciphertext must be rejected, not "decrypted".
            sw pkeyutl -encrypt -pubin -inkey "$pub" -pkeyopt rsa_padding_mode:oaep -in plain -out ct
            hw_flip_byte ct 17
            hw_expect_fail '.' "$label $alg: decrypt of a damaged OAEP ciphertext" \
                ossl pkeyutl -decrypt -inkey "$k" -pkeyopt rsa_padding_mode:oaep -in ct -out dec
        else
            # ECDH against a software peer: both sides derive the same secret.
            sw genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:${CURVE[$alg]}" -out peer.pem
            sw pkey -in peer.pem -pubout -out peer.pub
            rm -f z-tpm z-sw
            ossl pkeyutl -derive -inkey "$k" -peerkey peer.pub -out z-tpm || hw_fail "$label $alg: ECDH derive"
            sw pkeyutl -derive -inkey peer.pem -peerkey "$pub" -out z-sw
            [[ $(stat -c %s z-tpm) == "${FIELDBYTES[$alg]}" ]] || hw_fail "$label $alg: ECDH secret has the wrong size"
            cmp -s z-tpm z-sw || hw_fail "$label $alg: ECDH secret differs from the software side's"
        fi
        hw_log "$label $alg: ok"
    done
}

run_flows plain
hw_write_cnf "$HW_DIR/openssl-prefer-default.cnf" "$HW_TCTI" '?provider=default'
export OPENSSL_CONF=$HW_DIR/openssl-prefer-default.cnf
run_flows prefer-default

[[ -z $(hw_transient_handles) ]] || hw_fail "transient objects left in the TPM: $(hw_transient_handles | tr '\n' ' ')"
echo "PASS: $HW_TEST"
