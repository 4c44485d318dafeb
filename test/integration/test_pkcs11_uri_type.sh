#!/usr/bin/env bash
# A reference file (or a pkcs11: URI) given where a private key is expected
# but whose URI says type=cert, public, data or secret-key is refused with one
# message naming the type (issue 7.17: nginx started and served with a
# type=cert reference file, because the private key of the same label was
# found anyway).  Checked with openssl pkey / pkeyutl and with `nginx -t`;
# type=private and no type= still load (the control).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_p11_setup

hw_p11_keygen ec:P-256 tkey key-none.pem
T="pkcs11:token=$HW_P11_TOKEN;object=tkey"
hw_p11_ref "$T;type=private" key-private.pem
head -c 100 /dev/urandom >msg

# The control: the private key loads and signs with no type= and with type=private.
for f in key-none.pem key-private.pem; do
    ossl pkeyutl -sign -inkey "$f" -rawin -digest sha256 -in msg -out "$f.sig" 2>"$f.err" ||
        hw_fail "$f: pkeyutl -sign: $(cat "$f.err")"
done
ossl pkey -in key-none.pem -pubout -out pub.pem
sw pkeyutl -verify -pubin -inkey pub.pem -rawin -digest sha256 -in msg -sigfile key-private.pem.sig \
    >/dev/null || hw_fail "type=private: the signature does not verify"
ossl req -x509 -new -key key-private.pem -subj /CN=hwkey.test -days 2 -out key.crt 2>req.err ||
    hw_fail "cannot make a certificate: $(cat req.err)"

for type in cert public data secret-key; do
    f=key-$type.pem
    hw_p11_ref "$T;type=$type" "$f"
    hw_expect_fail "type=$type.*not a private key" "pkey -in reference file with type=$type" \
        ossl pkey -in "$f" -noout
    hw_expect_fail "type=$type.*not a private key" "pkeyutl -sign with type=$type" \
        ossl pkeyutl -sign -inkey "$f" -rawin -digest sha256 -in msg -out sig
    [[ ! -s sig ]] || hw_fail "type=$type: a signature was written"
    hw_log "type=$type refused as a private key: $(grep -o 'the URI says type=[^:]*:[^(]*' "$HW_LAST_ERR" | head -1)"
done

# nginx: `nginx -t` loads ssl_certificate_key and must refuse, naming the type.
NGINX=${HWKEY_TEST_NGINX:-/usr/sbin/nginx}
if [[ -x $NGINX ]]; then
    mkdir -p logs tmp www
    HW_NGINX_PORT[ec]=$(hw_free_port)
    for type in private cert; do
        hw_nginx_conf "" "ec:key.crt:key-$type.pem"
        rc=0
        timeout 60 "$NGINX" -t -p "$HW_DIR" -c "$HW_DIR/nginx.conf" -e "$HW_DIR/logs/error.log" \
            >"nginx-t.$type.log" 2>&1 || rc=$?
        hw_no_crash "$rc" "nginx-t.$type.log" "nginx -t with type=$type"
        if [[ $type == private ]]; then
            ((rc == 0)) || hw_fail "nginx -t rejects type=private: $(cat "nginx-t.$type.log")"
        else
            ((rc != 0)) || hw_fail "nginx -t accepts a type=$type reference file as the private key"
            grep -q "type=$type.*not a private key" "nginx-t.$type.log" ||
                hw_fail "nginx -t does not name type=$type: $(cat "nginx-t.$type.log")"
        fi
    done
else
    hw_log "SKIP part: $NGINX not installed (nginx -t not checked)"
fi
echo "PASS: $HW_TEST"
