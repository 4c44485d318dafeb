#!/usr/bin/env bash
# PKCS#11 keys through unchanged openssl(1), on a fresh SoftHSM token, the
# provider active only through openssl.cnf (default + hwkey, pkcs11-module,
# pkcs11-pin-source = file:PIN).  Keys made by pkcs11-tool (reference files
# written by hand) and by `hwkey keygen --uri` (reference file it writes).
# Every signature is verified, every decryption and ECDH result checked, by
# the default provider alone (a separate openssl.cnf without hwkey).
#   - EC P-256/P-384/P-521, RSA 2048/3072/4096 x sha256/384/512 with
#     `openssl dgst -sign` and `openssl pkeyutl -sign`
#   - RSA-PSS salt lengths digest, max, 32; OAEP (sha1) and PKCS#1 v1.5
#     decryption; ECDH against a software peer; EdDSA when it lands
#   - wrong PIN, missing object, missing module, locked user PIN: a clear
#     error, non-zero exit, no crash
#   - `openssl pkey -in 'pkcs11:...'` once a pkcs11: store exists (else SKIP)
# Every case runs; the failures are listed at the end.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_p11_setup

FAILS=()
bad() { printf 'FAIL: %s: %s\n' "$HW_TEST" "$*" >&2; FAILS+=("$*"); }
# ok WHAT: logs success only if no case failed since the last mark.
MARK=0
mark() { MARK=${#FAILS[@]}; }
ok() { ((${#FAILS[@]} == MARK)) && hw_log "ok: $*"; mark; }
T="pkcs11:token=$HW_P11_TOKEN"

head -c 3000 /dev/urandom >msg
printf 'hwkey OAEP secret %s\n' "$RANDOM$RANDOM" >secret.txt

# --- keys -------------------------------------------------------------------
# pkcs11-tool: every type (the CLI has no rsa:4096 / ec:P-521 yet).
declare -A P11SPEC=([t-ec256]=EC:prime256v1 [t-ec384]=EC:secp384r1 [t-ec521]=EC:secp521r1
    [t-rsa2048]=rsa:2048 [t-rsa3072]=rsa:3072 [t-rsa4096]=rsa:4096)
KEYS=()
id=10   # pkcs11-tool --id is hex: t-ec256 gets 11, ...
for label in t-ec256 t-ec384 t-ec521 t-rsa2048 t-rsa3072 t-rsa4096; do
    id=$((id + 1))
    p11tool --keypairgen --key-type "${P11SPEC[$label]}" --label "$label" --id "$id" \
        >"$label.gen" 2>&1 || hw_fail "pkcs11-tool keypairgen ${P11SPEC[$label]}: $(tail -3 "$label.gen")"
    hw_p11_ref "$T;object=$label;type=private" "$label.pem"
    KEYS+=("$label")
done
# the same P-256 key named by its id only (percent-encoded)
hw_p11_ref "$T;id=%11;type=private" t-ec256-byid.pem
# hwkey keygen --uri: what the CLI offers
for alg in ec:P-256 ec:P-384 rsa:2048 rsa:3072; do
    label=h-${alg//:/-}
    hw_p11_keygen "$alg" "$label" "$label.pem"
    KEYS+=("$label")
done
for alg in ec:P-521 rsa:4096; do
    if hw_p11_hwkey keygen "$alg" --uri "$T;object=h-${alg//:/-}" --out "h-${alg//:/-}.pem" \
        >/dev/null 2>cli.err; then
        KEYS+=("h-${alg//:/-}")
    else
        hw_log "NOTE: hwkey keygen $alg --uri not supported: $(cat cli.err); covered by pkcs11-tool keys"
    fi
done

# Keys made by hwkey must be sensitive and never extractable.
p11tool --list-objects --type privkey >objects.txt 2>&1 || hw_fail "pkcs11-tool --list-objects: $(tail -3 objects.txt)"
for label in h-ec-P-256 h-rsa-2048; do
    attrs=$(awk -v l="label:      $label" '$0 ~ l {f=1} f && /Access:/ {print; exit}' objects.txt)
    [[ $attrs == *sensitive* && $attrs == *never\ extractable* && $attrs != *,\ extractable* ]] ||
        bad "$label: not sensitive/never extractable: '$attrs'"
done

# Public keys through hwkey; RSA ones cross-checked against pkcs11-tool's own export.
for k in "${KEYS[@]}"; do
    ossl pkey -in "$k.pem" -pubout -out "$k.pub" 2>"$k.puberr" ||
        hw_fail "openssl pkey -in $k.pem (reference file) does not load: $(head -3 "$k.puberr")"
done
ossl pkey -in t-ec256-byid.pem -pubout | cmp -s - t-ec256.pub || bad "key by id= differs from key by object="
for label in t-rsa2048 t-rsa3072 t-rsa4096; do
    p11tool --read-object --type pubkey --label "$label" -o "$label.p11.der" >/dev/null 2>&1 ||
        hw_fail "pkcs11-tool --read-object $label"
    sw pkey -pubin -inform DER -in "$label.p11.der" | cmp -s - "$label.pub" ||
        bad "$label: public key through hwkey differs from pkcs11-tool's"
done

is_rsa() { [[ $1 == *rsa* ]]; }

# --- signatures ---------------------------------------------------------------
mark
for k in "${KEYS[@]}"; do
    mark
    for md in sha256 sha384 sha512; do
        rm -f s1 s2
        if ! ossl dgst "-$md" -sign "$k.pem" -out s1 msg 2>err; then
            bad "$k $md: dgst -sign: $(head -3 err)"
        elif ! sw dgst "-$md" -verify "$k.pub" -signature s1 msg >/dev/null 2>&1; then
            bad "$k $md: dgst -sign signature does not verify in software"
        fi
        sw dgst "-$md" -binary msg >dg
        if ! ossl pkeyutl -sign -inkey "$k.pem" -in dg -out s2 -pkeyopt "digest:$md" 2>err; then
            bad "$k $md: pkeyutl -sign: $(head -3 err)"
        elif ! sw pkeyutl -verify -pubin -inkey "$k.pub" -in dg -sigfile s2 -pkeyopt "digest:$md" \
            >/dev/null 2>&1; then
            bad "$k $md: pkeyutl -sign signature does not verify in software"
        fi
    done
    ok "$k: dgst -sign and pkeyutl -sign, sha256/384/512, verified by the default provider"
done
# the verifier can fail: a changed message must not verify
ossl dgst -sha256 -sign t-ec256.pem -out neg.sig msg || hw_fail "t-ec256: sign"
printf x >>msg.neg; cat msg >>msg.neg
if sw dgst -sha256 -verify t-ec256.pub -signature neg.sig msg.neg >/dev/null 2>&1; then
    bad "a signature verified over a different message: the check proves nothing"
fi

# RSA-PSS: the salt length asked for is the one in the signature.
for k in "${KEYS[@]}"; do
    is_rsa "$k" || continue
    mark
    for md in sha256 sha512; do
        for salt in digest max 32; do
            rm -f pss.sig
            if ! ossl dgst "-$md" -sign "$k.pem" -sigopt rsa_padding_mode:pss \
                -sigopt "rsa_pss_saltlen:$salt" -out pss.sig msg 2>err; then
                bad "$k $md PSS salt $salt: sign: $(head -3 err)"
            elif ! sw dgst "-$md" -verify "$k.pub" -sigopt rsa_padding_mode:pss \
                -sigopt "rsa_pss_saltlen:$salt" -signature pss.sig msg >/dev/null 2>&1; then
                bad "$k $md PSS salt $salt: no software verification with that exact salt length"
            fi
        done
    done
    # a salt of 32 must not verify as a digest-length salt under sha512
    ossl dgst -sha512 -sign "$k.pem" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
        -out pss32.sig msg 2>/dev/null &&
        sw dgst -sha512 -verify "$k.pub" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest \
            -signature pss32.sig msg >/dev/null 2>&1 &&
        bad "$k: PSS salt 32 verified as salt 64: the salt length was not honoured"
    ok "$k: RSA-PSS salt digest/max/32"
done

# RSA decryption: OAEP (sha1) and PKCS#1 v1.5, encrypted in software.
for k in "${KEYS[@]}"; do
    is_rsa "$k" || continue
    mark
    sw pkeyutl -encrypt -pubin -inkey "$k.pub" -in secret.txt -out ct.oaep \
        -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 || hw_fail "software OAEP encrypt"
    if ! ossl pkeyutl -decrypt -inkey "$k.pem" -in ct.oaep -out pt.oaep \
        -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 2>err; then
        bad "$k: OAEP decrypt: $(head -3 err)"
    else
        cmp -s pt.oaep secret.txt || bad "$k: OAEP decrypt gave the wrong plaintext"
    fi
    sw pkeyutl -encrypt -pubin -inkey "$k.pub" -in secret.txt -out ct.v15 \
        -pkeyopt rsa_padding_mode:pkcs1 || hw_fail "software PKCS#1 encrypt"
    if ! ossl pkeyutl -decrypt -inkey "$k.pem" -in ct.v15 -out pt.v15 -pkeyopt rsa_padding_mode:pkcs1 2>err; then
        bad "$k: PKCS#1 v1.5 decrypt: $(head -3 err)"
    else
        cmp -s pt.v15 secret.txt || bad "$k: PKCS#1 v1.5 decrypt gave the wrong plaintext"
    fi
    ok "$k: OAEP and PKCS#1 v1.5 decryption"
done

# ECDH against a software peer: both sides derive the same secret.
declare -A CURVE=([t-ec256]=P-256 [t-ec384]=P-384 [t-ec521]=P-521 [h-ec-P-256]=P-256
    [h-ec-P-384]=P-384 [h-ec-P-521]=P-521)
for k in "${KEYS[@]}"; do
    [[ -n ${CURVE[$k]:-} ]] || continue
    mark
    sw genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:${CURVE[$k]}" -out peer.key
    sw pkey -in peer.key -pubout -out peer.pub
    rm -f z.dev z.sw
    if ! ossl pkeyutl -derive -inkey "$k.pem" -peerkey peer.pub -out z.dev 2>err; then
        bad "$k: ECDH derive: $(head -3 err)"
        continue
    fi
    sw pkeyutl -derive -inkey peer.key -peerkey "$k.pub" -out z.sw
    [[ -s z.dev ]] && cmp -s z.dev z.sw || bad "$k: ECDH secret differs from the software derivation"
    ok "$k: ECDH with a software ${CURVE[$k]} peer"
done

# --- EdDSA (when Ed25519 lands) ------------------------------------------------
mark
if p11tool --keypairgen --key-type EC:edwards25519 --label t-ed25519 --id 99 >ed.gen 2>&1; then
    hw_p11_ref "$T;object=t-ed25519;type=private" t-ed25519.pem
    if ossl pkey -in t-ed25519.pem -pubout -out t-ed25519.pub 2>ed.err; then
        if ! ossl pkeyutl -sign -inkey t-ed25519.pem -rawin -in msg -out ed.sig 2>err; then
            bad "Ed25519: pkeyutl -sign: $(head -3 err)"
        elif ! sw pkeyutl -verify -pubin -inkey t-ed25519.pub -rawin -in msg -sigfile ed.sig >/dev/null 2>&1; then
            bad "Ed25519: signature does not verify in software"
        else
            ok "Ed25519: pkeyutl -sign verified in software"
        fi
    else
        hw_log "SKIP (EdDSA): an Ed25519 token key does not load through hwkey yet: $(head -2 ed.err | tr '\n' ' ')"
    fi
else
    hw_log "SKIP (EdDSA): SoftHSM/pkcs11-tool cannot make Ed25519 keys: $(tail -2 ed.gen)"
fi

# --- keys named by pkcs11: URIs (OSSL_STORE) ------------------------------------
if hw_p11_store_supported "$T;object=t-ec256;type=private"; then
    for k in t-ec256 t-rsa2048; do
        uri="$T;object=$k;type=private"
        if ! ossl pkey -in "$uri" -pubout -out "$k.uri.pub" 2>err; then
            bad "openssl pkey -in '$uri': $(head -3 err)"
        else
            cmp -s "$k.uri.pub" "$k.pub" || bad "$k: public key by URI differs from by reference file"
        fi
        if ! ossl dgst -sha256 -sign "$uri" -out uri.sig msg 2>err; then
            bad "openssl dgst -sign '$uri': $(head -3 err)"
        else
            sw dgst -sha256 -verify "$k.pub" -signature uri.sig msg >/dev/null 2>&1 ||
                bad "$k: signature with the key named by URI does not verify"
        fi
    done
    ok "keys named by pkcs11: URIs (OSSL_STORE)"
else
    hw_log "SKIP (store): openssl pkey -in 'pkcs11:...' is not supported yet (no pkcs11: OSSL_STORE loader): $(grep -m1 -o 'unregistered scheme.*scheme=pkcs11' store-probe.err || head -1 store-probe.err)"
fi

# --- a reference file that names its module and PIN source, no pkcs11 config ------
mark
hw_write_p11_cnf noconf.cnf noconf
hw_p11_ref "$T;object=t-ec256;type=private?module-path=$HW_P11_MODULE&pin-source=file:$HW_P11_PIN_FILE" self.pem
rm -f self.sig
if ! OPENSSL_CONF=$HW_DIR/noconf.cnf ossl dgst -sha256 -sign self.pem -out self.sig msg 2>err; then
    bad "reference file with module-path and pin-source, no pkcs11-module configured: dgst -sign: $(head -2 err)"
elif ! sw dgst -sha256 -verify t-ec256.pub -signature self.sig msg >/dev/null 2>&1; then
    bad "reference file with module-path: signature does not verify"
fi
ok "reference file naming module-path and pin-source, with no pkcs11 parameter in openssl.cnf"

# --- CloudHSM quirks (docs/cloudhsm.md), on SoftHSM ------------------------------
mark
for k in t-ec384 t-rsa2048; do
    rm -f q.sig
    if ! HWKEY_PKCS11_QUIRKS=no-session-callbacks,no-operation-state,single-part-only \
        ossl dgst -sha256 -sign "$k.pem" -out q.sig msg 2>err; then
        bad "$k with the CloudHSM quirks: dgst -sign: $(head -3 err)"
    elif ! sw dgst -sha256 -verify "$k.pub" -signature q.sig msg >/dev/null 2>&1; then
        bad "$k with the CloudHSM quirks: signature does not verify"
    fi
done
ok "signing with pkcs11-quirks=no-session-callbacks,no-operation-state,single-part-only"

# --- errors ----------------------------------------------------------------------
# expect_error REGEX WHAT CMD...: non-zero, no crash, stderr matches REGEX.
expect_error() {
    local regex=$1 what=$2 rc=0
    shift 2
    mark
    "$@" >/dev/null 2>err.txt || rc=$?
    if ((rc == 0)); then bad "$what: succeeded, expected a failure"; return; fi
    if ((rc >= 124)) || grep -qiE 'segmentation fault|core dumped|aborted|assertion' err.txt; then
        bad "$what: crashed or hung (exit $rc): $(tail -3 err.txt)"
        return
    fi
    grep -qE "$regex" err.txt || { bad "$what: message does not name the failure (/$regex/): $(head -c 400 err.txt)"; return; }
    ok "$what: $(grep -m1 -E "$regex" err.txt)"
}

printf '0000\n' >wrong.pin
hw_write_p11_cnf wrongpin.cnf after "$HW_P11_MODULE" "file:$HW_DIR/wrong.pin"
OPENSSL_CONF=$HW_DIR/wrongpin.cnf expect_error CKR_PIN_INCORRECT "wrong PIN, openssl dgst -sign" \
    ossl dgst -sha256 -sign t-ec256.pem -out x.sig msg
OPENSSL_CONF=$HW_DIR/wrongpin.cnf expect_error CKR_PIN_INCORRECT "wrong PIN, openssl pkey" \
    ossl pkey -in h-rsa-2048.pem -pubout
HWKEY_PKCS11_MODULE=$HW_P11_MODULE HWKEY_PKCS11_PIN_SOURCE=file:$HW_DIR/wrong.pin \
    expect_error CKR_PIN_INCORRECT "wrong PIN, hwkey list" timeout 60 "$HWKEY_BIN" list --uri "$T"
# (hwkey pubkey reads the key pair's public object: it needs no PIN, test_cli_pkcs11.sh)

hw_p11_ref "$T;object=no-such-key;type=private" missing.pem
expect_error 'no-such-key|not found|NOT_FOUND' "missing object, openssl dgst -sign" \
    ossl dgst -sha256 -sign missing.pem -out x.sig msg
expect_error 'no-such-key|not found|NOT_FOUND' "missing object, hwkey pubkey" \
    hw_p11_hwkey pubkey missing.pem

hw_write_p11_cnf nomodule.cnf after "$HW_DIR/no/such/libpkcs11.so"
OPENSSL_CONF=$HW_DIR/nomodule.cnf expect_error 'no/such/libpkcs11\.so' "missing module, openssl dgst -sign" \
    ossl dgst -sha256 -sign t-ec256.pem -out x.sig msg
HWKEY_PKCS11_MODULE=$HW_DIR/no/such/libpkcs11.so HWKEY_PKCS11_PIN_SOURCE=file:$HW_P11_PIN_FILE \
    expect_error 'no/such/libpkcs11\.so' "missing module, hwkey pubkey" timeout 60 "$HWKEY_BIN" pubkey t-ec256.pem

# pin-user-password: a PIN that is not user:password is refused before any login.
HWKEY_PKCS11_QUIRKS=pin-user-password expect_error 'user:password' \
    "quirk pin-user-password with PIN 1234, hwkey list" hw_p11_hwkey list --uri "$T"

# Locked user PIN.  SoftHSM 2.6 counts wrong logins (CKF_USER_PIN_COUNT_LOW)
# but never locks: check that, then lock the token the way a token that does
# reports it (CKF_USER_PIN_LOCKED in SoftHSM's stored token flags).
token_flags() { OPENSSL_CONF=$HW_SW_CNF pkcs11-tool --module "$HW_P11_MODULE" --token-label "$HW_P11_TOKEN" -T 2>/dev/null | sed -n 's/.*token flags *: *//p'; }
for i in $(seq 1 12); do
    OPENSSL_CONF=$HW_SW_CNF pkcs11-tool --module "$HW_P11_MODULE" --token-label "$HW_P11_TOKEN" \
        --login --pin 0000 --list-objects >/dev/null 2>&1 || true
done
flags=$(token_flags)
if [[ $flags == *"user PIN locked"* ]]; then
    hw_log "SoftHSM locked the user PIN after 12 wrong logins"
else
    hw_log "NOTE: SoftHSM never locks the user PIN (12 wrong logins, flags: $flags); simulating the lock"
    tokfile=$(ls "$HW_DIR"/softhsm/tokens/*/token.object 2>/dev/null | head -1)
    # SoftHSM's file store: attribute CKA_VENDOR_DEFINED+0x534b (token flags),
    # kind 2 (CK_ULONG), an 8-byte big-endian value.  Set CKF_USER_PIN_LOCKED.
    [[ -n $tokfile ]] && perl -e 'local $/; open(my $f, "+<", $ARGV[0]) or die; binmode $f; my $d = <$f>;
        my $i = index($d, "\x00\x00\x00\x00\x80\x00\x53\x4b\x00\x00\x00\x00\x00\x00\x00\x02");
        die "token flags not found\n" if $i < 0; my $v = unpack("Q>", substr($d, $i + 16, 8));
        seek($f, $i + 16, 0); print $f pack("Q>", $v | 0x40000); close $f' "$tokfile" ||
        hw_fail "cannot set CKF_USER_PIN_LOCKED in SoftHSM's token file"
    flags=$(token_flags)
fi
if [[ $flags != *"user PIN locked"* ]]; then
    hw_log "SKIP (locked token): cannot get a locked token (flags: $flags)"
else
    expect_error 'LOCKED|[Ll]ocked' "locked user PIN, openssl dgst -sign" \
        ossl dgst -sha256 -sign t-ec256.pem -out x.sig msg
    expect_error 'LOCKED|[Ll]ocked' "locked user PIN, hwkey list" hw_p11_hwkey list --uri "$T"
fi

if ((${#FAILS[@]} > 0)); then
    printf 'FAIL: %s: %d case(s) failed:\n' "$HW_TEST" "${#FAILS[@]}" >&2
    printf '  - %s\n' "${FAILS[@]}" >&2
    exit 1
fi
echo "PASS: $HW_TEST"
