#!/usr/bin/env bash
# TPM keys and their auth values, and the key types the TPM has (issue 7):
# 7.2 `hwkey pubkey` needs no auth value: it prints the public key of a key
#     with one without asking, and refuses --auth-file (a wrong one would
#     seem accepted);
# 7.3 persistent keys with an auth value get it from the passphrase callback:
#     handle:0x81..., tpm2-openssl's handle:0x81...?pass and the reference
#     file of `keygen --persist --auth-file` (which records ?pass), for keys
#     made by hwkey and by tpm2-tools; ?pass without a value fails before the
#     TPM is used (the dictionary-attack counter does not move);
# 7.4 key files made by Debian 12's tpm2-tools 5.4 (tpm2_create +
#     tpm2_encodeobject, emptyAuth written backwards), under tpm2-tools'
#     default primary (RSA, recorded as 0x40000001 like hwkey's ECC primary:
#     tried second) and under the TCG SRK template persisted at 0x81000001:
#     pubkey works, an explicit empty value (-passin pass:) signs, keygen takes
#     an empty --auth-file, and the documented fix (re-encoding) lets a program
#     without a passphrase callback (HAProxy's way: PEM_read_bio_PrivateKey
#     with no callback) load and sign;
# 7.6 keygen and genpkey agree with `hwkey info`: what it lists is generated,
#     what it does not is refused with "this TPM does not support X".
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing tpm2_createprimary tpm2_create tpm2_encodeobject tpm2_evictcontrol tpm2_load \
    tpm2_flushcontext tpm2_print tpm2_dictionarylockout
hw_setup
LOADCHECK=$top_builddir/test/integration/loadcheck
[[ -x $LOADCHECK ]] || hw_fail "$LOADCHECK not built (make check builds it)"

printf 'message %s\n' "$RANDOM$RANDOM" >msg
printf 'right-%s\n' "$RANDOM$RANDOM" >pw
printf 'wrong\n' >bad
: >empty

# Without a resource manager tpm2-tools leaves its objects and sessions loaded.
tools_flush() { tpm2_flushcontext -t >/dev/null && tpm2_flushcontext -l >/dev/null && tpm2_flushcontext -s >/dev/null || hw_fail "tpm2_flushcontext"; }
# The TPM's dictionary-attack failure counter.
da_count() {
    local v
    v=$(tpm2_getcap properties-variable | awk '/TPM2_PT_LOCKOUT_COUNTER/ {print $2}')
    [[ -n $v ]] || hw_fail "cannot read TPM2_PT_LOCKOUT_COUNTER"
    echo $((v))
}
# sign_ok KEY PUBPEM WHAT [openssl args...]: signs msg through hwkey, verifies in software.
sign_ok() {
    local key=$1 pub=$2 what=$3
    shift 3
    ossl pkeyutl -sign -inkey "$key" -rawin -digest sha256 -in msg -out sig "$@" </dev/null 2>sign.err ||
        hw_fail "$what: signing failed: $(head -c 600 sign.err)"
    sw pkeyutl -verify -pubin -inkey "$pub" -rawin -digest sha256 -in msg -sigfile sig >/dev/null ||
        hw_fail "$what: the signature does not verify"
}
# cli RC ARGS...: hwkey with exit code RC, stdout in cli.out, stderr in cli.err.
cli() {
    local want=$1 rc=0
    shift
    hw_hwkey "$@" >cli.out 2>cli.err </dev/null || rc=$?
    hw_no_crash "$rc" cli.err "hwkey $*"
    ((rc == want)) || hw_fail "hwkey $*: exit $rc, expected $want: $(head -c 600 cli.err)"
}

# --- 7.2: pubkey asks for nothing -----------------------------------------------------
hw_keygen ec:P-256 authkey.pem --auth-file pw
cli 0 pubkey authkey.pem
cp cli.out authkey.pub
ossl pkey -in authkey.pem -passin file:pw -pubout -out authkey.ossl.pub 2>err </dev/null ||
    hw_fail "openssl pkey -pubout of the auth key: $(cat err)"
cmp -s authkey.pub authkey.ossl.pub || hw_fail "pubkey of a key with an auth value differs from openssl's"
cli 2 pubkey --auth-file bad authkey.pem
assert_one_error_line cli.err "pubkey: usage error: --auth-file: the public key needs no auth value"
[[ ! -s cli.out ]] || hw_fail "pubkey --auth-file printed a key"
hw_log "7.2: pubkey of a key with an auth value asks nothing; --auth-file refused"

# --- 7.3: persistent keys with an auth value ------------------------------------------
H=0x81000020
cli 0 keygen ec:P-256 --persist "$H" --auth-file pw --out ref.pem
grep -qx "handle:$H?pass" cli.out || hw_fail "keygen --persist --auth-file printed: $(cat cli.out)"
cli 0 pubkey "handle:$H"
cp cli.out h.pub
da0=$(da_count)
for key in "handle:$H" "handle:$H?pass" ref.pem; do
    sign_ok "$key" h.pub "$key -passin file:pw" -passin file:pw
done
sign_ok "handle:$H?pass" h.pub "handle:$H?pass -passin pass:" -passin "pass:$(cat pw)"
(($(da_count) == da0)) || hw_fail "signing with the right auth value moved the DA counter"
# ?pass (and the reference file) with no value: refused before any TPM command
for key in "handle:$H?pass" ref.pem; do
    hw_expect_fail "no auth value given for the TPM key handle:$H" "$key without -passin" \
        ossl pkeyutl -sign -inkey "$key" -rawin -digest sha256 -in msg -out sig </dev/null
done
(($(da_count) == da0)) || hw_fail "a missing auth value cost a dictionary-attack strike"
# A wrong value is the TPM's to refuse (one strike, then cleared).
hw_expect_fail "authorization failed.*TPM_RC_(AUTH_FAIL|BAD_AUTH)" "handle:$H with a wrong value" \
    ossl pkeyutl -sign -inkey "handle:$H" -passin file:bad -rawin -digest sha256 -in msg -out sig
(($(da_count) == da0 + 1)) || hw_fail "a wrong auth value did not reach the TPM once"
tpm2_dictionarylockout -Q -c || hw_fail "tpm2_dictionarylockout -c"
hw_expect_fail "expected handle:0x81000000..0x81FFFFFF, optionally with \?pass" "handle:...?bogus" \
    ossl pkey -in "handle:$H?bogus" -pubout
hw_log "7.3: handle:, handle:?pass and the reference file sign with -passin; no value: no TPM use"

# a persistent key made by tpm2-tools with an auth value, DA-protected
tpm2_createprimary -Q -C o -c tools-prim.ctx || hw_fail "tpm2_createprimary"
tools_flush
tpm2_create -Q -C tools-prim.ctx -G ecc256 -p "$(cat pw)" -u tp.pub -r tp.priv || hw_fail "tpm2_create -p"
tools_flush
tpm2_load -Q -C tools-prim.ctx -u tp.pub -r tp.priv -c tp.ctx || hw_fail "tpm2_load"
tpm2_evictcontrol -Q -C o -c tp.ctx 0x81000021 || hw_fail "tpm2_evictcontrol 0x81000021"
tools_flush
tpm2_print -t TPM2B_PUBLIC -f pem tp.pub >tp.pem.pub || hw_fail "tpm2_print"
sign_ok handle:0x81000021 tp.pem.pub "tpm2-tools persistent key, -passin" -passin file:pw
sign_ok "handle:0x81000021?pass" tp.pem.pub "tpm2-tools persistent key ?pass" -passin file:pw
hw_log "7.3: a tpm2-tools persistent key with an auth value signs through handle: and ?pass"

# --- 7.4: key files of tpm2-tools 5.4 --------------------------------------------------
# tools_key NAME PARENT [tpm2_create args]: NAME.pub/.priv under PARENT, NAME.pem as
# tpm2_encodeobject writes it without -p, NAME.fixed.pem with -p (5.4's inversion).
tools_key() {
    local name=$1 parent=$2
    shift 2
    tpm2_create -Q -C "$parent" -G ecc256 "$@" -u "$name.pub" -r "$name.priv" || hw_fail "tpm2_create $name"
    tools_flush
    tpm2_encodeobject -Q -C "$parent" -u "$name.pub" -r "$name.priv" -o "$name.pem" ||
        hw_fail "tpm2_encodeobject $name"
    tools_flush
    tpm2_encodeobject -Q -C "$parent" -u "$name.pub" -r "$name.priv" -p -o "$name.fixed.pem" ||
        hw_fail "tpm2_encodeobject -p $name"
    tools_flush
    tpm2_print -t TPM2B_PUBLIC -f pem "$name.pub" >"$name.tools.pub" || hw_fail "tpm2_print $name"
}
# the TCG SRK template (ECC P-256, AES-128-CFB, noDA), persistent at 0x81000001
tpm2_createprimary -Q -C o -g sha256 -G ecc256:null:aes128cfb -c srk.ctx \
    -a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt' ||
    hw_fail "tpm2_createprimary (TCG SRK template)"
tpm2_evictcontrol -Q -C o -c srk.ctx 0x81000001 || hw_fail "tpm2_evictcontrol 0x81000001"
tools_flush
tools_key srk-noauth 0x81000001
tools_key srk-auth 0x81000001 -p "$(cat pw)"
# tpm2-tools' default primary (RSA 2048), recorded as the owner hierarchy 0x40000001
tools_key dflt-noauth tools-prim.ctx
sw asn1parse -in srk-noauth.pem | grep -A1 'cont \[ 0 \]' | grep -q 'BOOLEAN *:0' ||
    hw_fail "tpm2_encodeobject no longer writes emptyAuth FALSE for a key without auth: revisit docs/tpm2.md"

for name in srk-noauth srk-auth dflt-noauth; do
    for f in "$name.pem" "$name.fixed.pem"; do
        cli 0 pubkey "$f"
        cmp -s cli.out "$name.tools.pub" || hw_fail "hwkey pubkey $f differs from tpm2_print's"
    done
done
hw_log "7.4: pubkey of every tpm2-tools file, no auth asked"

da0=$(da_count)
# no auth value, file says one is needed: an explicit empty value signs
sign_ok srk-noauth.pem srk-noauth.tools.pub "tpm2-tools file, -passin pass:" -passin pass:
# with an auth value, file says none: the file is wrong; the encoding without -p is right
sign_ok srk-auth.pem srk-auth.tools.pub "tpm2-tools file with auth" -passin file:pw
(($(da_count) == da0)) || hw_fail "tpm2-tools files with the right values moved the DA counter"
# The documented fix for programs without a passphrase callback (HAProxy): the
# file re-encoded with -p (5.4's inversion) says emptyAuth TRUE; it loads as
# PEM_read_bio_PrivateKey(..., NULL, NULL) and signs.
out=$(timeout -k 5 "$HW_TIMEOUT" "$LOADCHECK" pem srk-noauth.fixed.pem 2>lc.err </dev/null) ||
    hw_fail "re-encoded tpm2-tools file without a callback: $out $(head -c 400 lc.err)"
[[ $out == "provider=hwkey sign=ok" ]] || hw_fail "re-encoded tpm2-tools file: $out"
# ... while the file as written cannot be used without a value, and says why
out=$(timeout -k 5 "$HW_TIMEOUT" "$LOADCHECK" pem srk-noauth.pem 2>lc.err </dev/null) && 
    hw_fail "a file that says it needs an auth value loaded without any: $out"
grep -q "needs an auth value\|no auth value given" lc.err || hw_fail "no reason given: $(head -c 400 lc.err)"
(($(da_count) == da0)) || hw_fail "refusing a file without a value cost a DA strike"
hw_log "7.4: TCG SRK template: explicit empty value and re-encoded file sign, no DA strike"
# Under tpm2-tools' default (RSA) primary the file records 0x40000001 like
# hwkey's and tpm2-openssl's ECC primary: the second template is tried.
sign_ok dflt-noauth.pem dflt-noauth.tools.pub "tpm2-tools default primary, -passin pass:" -passin pass:
out=$(timeout -k 5 "$HW_TIMEOUT" "$LOADCHECK" pem dflt-noauth.fixed.pem 2>lc.err </dev/null) ||
    hw_fail "re-encoded default-primary file without a callback: $out $(head -c 400 lc.err)"
[[ $out == "provider=hwkey sign=ok" ]] || hw_fail "re-encoded default-primary file: $out"
(($(da_count) == da0)) || hw_fail "the default-primary files moved the DA counter"
hw_log "7.4: tpm2-tools default primary: the key loads under its RSA primary and signs"

# keygen: an empty --auth-file is an explicit "no auth value"
cli 0 keygen ec:P-256 --auth-file empty --out emptyauth.pem
sw asn1parse -in emptyauth.pem | grep -A1 'cont \[ 0 \]' | grep -q 'BOOLEAN *:255' ||
    hw_fail "keygen --auth-file EMPTY did not write emptyAuth TRUE"
cli 0 pubkey emptyauth.pem
cp cli.out emptyauth.pub
sign_ok emptyauth.pem emptyauth.pub "keygen with an empty --auth-file"

# --- 7.6: key types: keygen and genpkey agree with hwkey info --------------------------
cli 0 info
keygen_line=$(sed -n 's/^ *hwkey keygen: //p' cli.out)
[[ " $keygen_line " == *" ec:P-256 "* ]] || hw_fail "info: no 'hwkey keygen:' line with ec:P-256: $(cat cli.out)"
curves=$(sed -n 's/^ *ecc curves: //p' cli.out)
sizes=$(sed -n 's/^ *rsa key sizes: //p' cli.out)
for alg in ec:P-521 rsa:4096; do
    listed=0
    [[ " $keygen_line " == *" $alg "* ]] && listed=1
    # the keygen line agrees with the TPM's own lists
    case $alg in
    ec:*) in_caps=0; [[ ",$curves," == *"NIST ${alg#ec:},"* ]] && in_caps=1
          gen=(-algorithm EC -pkeyopt "group:${alg#ec:}") ;;
    rsa:*) in_caps=0; [[ " $sizes " == *" ${alg#rsa:} "* ]] && in_caps=1
           gen=(-algorithm RSA -pkeyopt "rsa_keygen_bits:${alg#rsa:}") ;;
    esac
    ((listed == in_caps)) || hw_fail "info: 'hwkey keygen: $keygen_line' disagrees with the TPM's lists on $alg"
    f=gen-${alg/:/-}
    if ((listed)); then
        cli 0 keygen "$alg" --out "$f.cli.pem"
        cli 0 pubkey "$f.cli.pem"
        cp cli.out "$f.pub"
        sign_ok "$f.cli.pem" "$f.pub" "keygen $alg"
        ossl genpkey -propquery provider=hwkey "${gen[@]}" -out "$f.gen.pem" 2>gen.err ||
            hw_fail "genpkey $alg (listed by hwkey info): $(cat gen.err)"
        hw_log "7.6: $alg listed by hwkey info: keygen, genpkey and a signature work"
    else
        cli 1 keygen "$alg" --out "$f.cli.pem"
        assert_one_error_line cli.err "^hwkey: keygen $alg: unsupported algorithm: this TPM does not support $alg \(hwkey info"
        [[ ! -e $f.cli.pem ]] || hw_fail "a refused keygen $alg left a file"
        hw_expect_fail "this TPM does not support $alg" "genpkey $alg" \
            ossl genpkey -propquery provider=hwkey "${gen[@]}" -out "$f.gen.pem"
        hw_log "7.6: $alg not listed by hwkey info: keygen and genpkey say so"
    fi
done
cli 1 keygen ed25519 --out ed.pem
assert_one_error_line cli.err "this TPM does not support ed25519"
hw_hwkey keygen --help | grep -q "hwkey info lists its curves and RSA sizes" || hw_fail "keygen --help does not point at hwkey info"

left=$(hw_transient_handles)
[[ -z $left ]] || hw_fail "transient objects left in the TPM: $left"
hw_log "ok"
