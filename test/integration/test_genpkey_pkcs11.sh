#!/usr/bin/env bash
# openssl(1) key generation on a PKCS#11 token (SoftHSM) and re-encoding of
# token keys:
#  - `openssl genpkey -propquery provider=hwkey -pkeyopt hwkey-uri:pkcs11:...`
#    makes the key on the token and writes a reference file naming it;
#  - `openssl pkey -in ref.pem -out copy.pem` writes the same reference file;
#  - a reference whose URI carries a pin-value is written back without it;
#  - `openssl pkey -text` names the token object, never a PIN.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_p11_setup

head -c 333 /dev/urandom >msg
uri_of() { sw asn1parse -in "$1" | sed -n 's/.*UTF8STRING *://p'; }

for spec in EC:group:P-256:gen-ec RSA:rsa_keygen_bits:2048:gen-rsa; do
    IFS=: read -r algo opt val label <<<"$spec"
    key=$label.pem
    ossl genpkey -propquery provider=hwkey -algorithm "$algo" -pkeyopt "$opt:$val" \
        -pkeyopt "hwkey-uri:pkcs11:token=$HW_P11_TOKEN;object=$label" -out "$key" 2>"$key.err" ||
        hw_fail "genpkey $algo on the token: $(cat "$key.err")"
    [[ $(head -1 "$key") == "-----BEGIN PKCS#11 PROVIDER URI-----" ]] ||
        hw_fail "genpkey $algo on the token wrote no reference file: $(head -1 "$key")"
    uri=$(uri_of "$key")
    [[ $uri == pkcs11:*"token=$HW_P11_TOKEN"*"object=$label"* ]] || hw_fail "reference names $uri"
    p11tool --list-objects --type privkey 2>/dev/null | grep -q "label: *$label" ||
        hw_fail "genpkey $algo: no private key '$label' on the token"

    ossl pkey -in "$key" -pubout -out "$key.pub" 2>"$key.err" || hw_fail "pkey -pubout: $(cat "$key.err")"
    ossl pkeyutl -sign -inkey "$key" -rawin -digest sha256 -in msg -out "$key.sig" 2>"$key.err" ||
        hw_fail "sign with the genpkey $algo token key: $(cat "$key.err")"
    sw pkeyutl -verify -pubin -inkey "$key.pub" -rawin -digest sha256 -in msg -sigfile "$key.sig" \
        >/dev/null || hw_fail "genpkey $algo token key: signature does not verify"

    ossl pkey -in "$key" -out "$key.copy" 2>"$key.err" || hw_fail "pkey -out: $(cat "$key.err")"
    cmp -s "$key" "$key.copy" || hw_fail "pkey -in $key -out copy: not the same file"
    ossl pkey -in "$key" -text -noout >"$key.txt" 2>"$key.err" || hw_fail "pkey -text: $(cat "$key.err")"
    grep -q "^Private key: held by a PKCS#11 token (pkcs11:.*object=$label" "$key.txt" ||
        hw_fail "pkey -text: no 'held by' line naming the object: $(tail -2 "$key.txt")"
    hw_log "genpkey $algo on the token: reference file, signs, same after pkey, -text"
done

# A PIN in the URI is used to load the key, and never written back out.
hw_p11_ref "pkcs11:token=$HW_P11_TOKEN;object=gen-ec;type=private?pin-value=$HW_P11_PIN" pin.pem
ossl pkey -in pin.pem -out pin.copy 2>pin.err || hw_fail "pkey -in pin.pem -out: $(cat pin.err)"
uri=$(uri_of pin.copy)
[[ -n $uri && $uri != *pin-value* && $uri != *"$HW_P11_PIN"* ]] ||
    hw_fail "the re-encoded reference file keeps the PIN: $uri"
[[ $uri == "pkcs11:token=$HW_P11_TOKEN;object=gen-ec;type=private" ]] ||
    hw_fail "the re-encoded reference names $uri"
ossl pkey -in pin.copy -pubout -out pin.pub 2>pin.err || hw_fail "the PIN-less copy does not load: $(cat pin.err)"
cmp -s pin.pub gen-ec.pem.pub || hw_fail "the PIN-less copy is another key"
ossl pkey -in pin.pem -text -noout 2>/dev/null | grep -q "$HW_P11_PIN\|pin-value" &&
    hw_fail "pkey -text printed the PIN"
hw_log "pin-value: used to load, dropped when the reference is written back"

echo "PASS: $HW_TEST"
