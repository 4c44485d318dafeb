#!/usr/bin/env bash
# hwkey import: software EC P-256/P-384 and RSA 2048/3072 keys wrapped into
# the TPM (TPM2_Import with an outer wrapper to the parent).
#  - the imported key file's public key equals the software key's;
#  - signatures made through hwkey verify against the software public key;
#    ECDH (EC) and RSA decryption give what the software key gives;
#  - every TPM command and response is recorded with the pcap: TCTI: the
#    private scalar / the prime p never appear in it (control: tpm2-tools'
#    loadexternal, which sends the private key in the clear, is caught by the
#    same search), nor does the key's auth value;
#  - bad inputs (corrupt file, Ed25519, RSA-1024, encrypted without a
#    passphrase, wrong passphrase, unreachable TPM, existing --out): one clear
#    line, exit 1 or 2, no output file.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing tpm2_loadexternal tpm2_flushcontext od
[[ -n $(find /usr/lib /lib -name 'libtss2-tcti-pcap.so*' 2>/dev/null | head -1) ]] ||
    { echo "SKIP: tpm2-tss pcap TCTI not installed" >&2; exit 77; }
hw_setup
PCAP_TCTI="pcap:$HW_TCTI"
hw_write_cnf "$HW_DIR/openssl-pcap.cnf" "$PCAP_TCTI"
echo "message to sign $RANDOM" >msg

# hex of a capture, one line, for byte-string searches
hexdump_of() { od -An -tx1 -v "$1" | tr -d ' \n'; }
# secret_hex KEY FIELD: the hex of FIELD (priv: / prime1:) in `openssl pkey -text`,
# without separators and without the sign byte openssl prints before a high bit.
secret_hex() {
    sw pkey -in "$1" -text -noout |
        awk -v f="$2" '$0 ~ "^"f {on=1; next} on && /^[^ ]/ {on=0} on {gsub(/[ :]/, ""); printf "%s", $0}' |
        sed 's/^00//'
}
# in_hex CAPTURE HEX: how many times HEX (its first and its last 16 bytes) occurs
in_hex() {
    local cap=$1 hex=$2 dump
    dump=$(hexdump_of "$cap")
    echo $(($(grep -o -- "${hex:0:32}" <<<"$dump" | wc -l) + $(grep -o -- "${hex: -32}" <<<"$dump" | wc -l)))
}

# --- control: the search finds a private key that is sent in the clear -------
sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out control.pem
ctl_hex=$(secret_hex control.pem priv:)
((${#ctl_hex} >= 48)) || hw_fail "cannot read the control key's scalar ($ctl_hex)"
TCTI_PCAP_FILE=$HW_DIR/control.pcap TPM2TOOLS_TCTI=$PCAP_TCTI OPENSSL_CONF=$HW_SW_CNF \
    timeout 60 tpm2_loadexternal -Q -C n -G ecc -r control.pem -c control.ctx ||
    hw_fail "tpm2_loadexternal (control)"
tpm2_flushcontext -t >/dev/null
(($(in_hex control.pcap "$ctl_hex") > 0)) ||
    hw_fail "control: the pcap search did not find a private scalar sent in the clear"

# --- the four key types -----------------------------------------------------
declare -A GENOPT=([ec-p256]="EC -pkeyopt ec_paramgen_curve:P-256"
    [ec-p384]="EC -pkeyopt ec_paramgen_curve:P-384"
    [rsa-2048]="RSA -pkeyopt rsa_keygen_bits:2048"
    [rsa-3072]="RSA -pkeyopt rsa_keygen_bits:3072")
for name in ec-p256 ec-p384 rsa-2048 rsa-3072; do
    # shellcheck disable=SC2086
    sw genpkey -algorithm ${GENOPT[$name]} -out "$name.soft.pem" 2>/dev/null || hw_fail "genpkey $name"
    sw pkey -in "$name.soft.pem" -pubout -out "$name.soft.pub"
    case $name in ec-*) field=priv: ;; *) field=prime1: ;; esac
    secret=$(secret_hex "$name.soft.pem" "$field")
    ((${#secret} >= 48)) || hw_fail "$name: cannot read the secret to search for"

    start=$(date +%s%N)
    TCTI_PCAP_FILE=$HW_DIR/$name.pcap HW_CLI_TCTI=$PCAP_TCTI \
        hw_hwkey import "$name.soft.pem" --out "$name.tss" 2>"$name.err" ||
        hw_fail "hwkey import $name: $(cat "$name.err")"
    ms=$((($(date +%s%N) - start) / 1000000))
    [[ ! -s $name.err ]] || hw_fail "hwkey import $name printed: $(cat "$name.err")"
    grep -q -- "-----BEGIN TSS2 PRIVATE KEY-----" "$name.tss" || hw_fail "$name: no TSS2 key file"
    ! grep -q -- "PRIVATE KEY-----" <(grep -v TSS2 "$name.tss") || hw_fail "$name: software key in the output"

    # The private part never crossed the bus in the clear.  TPM_CC_Import = 0x00000156.
    [[ $(stat -c %s "$name.pcap") -gt 500 ]] || hw_fail "$name: nothing recorded"
    hexdump_of "$name.pcap" | grep -q 00000156 || hw_fail "$name: no TPM2_Import in the recording"
    n=$(in_hex "$name.pcap" "$secret")
    ((n == 0)) || hw_fail "$name: the private key ($field) crossed the bus in the clear ($n times)"

    # Same public key, through the CLI and through the provider.
    hw_hwkey pubkey "$name.tss" >"$name.cli.pub" || hw_fail "$name: hwkey pubkey"
    cmp -s "$name.cli.pub" "$name.soft.pub" || hw_fail "$name: hwkey pubkey differs from the software key's"
    ossl pkey -in "$name.tss" -pubout -out "$name.prov.pub" || hw_fail "$name: pkey -pubout"
    cmp -s "$name.prov.pub" "$name.soft.pub" || hw_fail "$name: provider public key differs"

    # Signatures by the TPM verify against the software public key.
    ossl pkeyutl -sign -inkey "$name.tss" -rawin -digest sha256 -in msg -out "$name.sig" ||
        hw_fail "$name: signing with the imported key"
    sw pkeyutl -verify -pubin -inkey "$name.soft.pub" -rawin -digest sha256 -in msg \
        -sigfile "$name.sig" >/dev/null || hw_fail "$name: signature does not verify"

    case $name in
    ec-*)
        curve=P-256
        [[ $name == ec-p384 ]] && curve=P-384
        sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:$curve -out "$name.peer.pem"
        sw pkey -in "$name.peer.pem" -pubout -out "$name.peer.pub"
        ossl pkeyutl -derive -inkey "$name.tss" -peerkey "$name.peer.pub" -out "$name.z.hw" ||
            hw_fail "$name: ECDH with the imported key"
        sw pkeyutl -derive -inkey "$name.soft.pem" -peerkey "$name.peer.pub" -out "$name.z.sw"
        cmp -s "$name.z.hw" "$name.z.sw" || hw_fail "$name: ECDH differs from the software key's"
        ;;
    rsa-*)
        head -c 32 /dev/urandom >"$name.plain"
        sw pkeyutl -encrypt -pubin -inkey "$name.soft.pub" -pkeyopt rsa_padding_mode:oaep \
            -in "$name.plain" -out "$name.enc"
        ossl pkeyutl -decrypt -inkey "$name.tss" -pkeyopt rsa_padding_mode:oaep -in "$name.enc" \
            -out "$name.dec" || hw_fail "$name: OAEP decryption with the imported key"
        cmp -s "$name.dec" "$name.plain" || hw_fail "$name: decryption differs"
        ;;
    esac
    hw_log "$name: imported in ${ms} ms, public key, signature, $([[ $name == ec-* ]] && echo ECDH || echo decryption) and bus check pass"
done
left=$(hw_transient_handles)
[[ -z $left ]] || hw_fail "transient objects left in the TPM: $left"

# --- auth value: inside the wrapper only, and enforced ----------------------
pw="imp-auth-$RANDOM$RANDOM$RANDOM"
printf '%s\n' "$pw" >pw.txt
printf 'not-%s\n' "$pw" >badpw.txt
TCTI_PCAP_FILE=$HW_DIR/auth.pcap HW_CLI_TCTI=$PCAP_TCTI \
    hw_hwkey import ec-p256.soft.pem --out auth.tss --auth-file pw.txt 2>auth.err ||
    hw_fail "import with --auth-file: $(cat auth.err)"
n=$(grep -c -a -F -- "$pw" auth.pcap || true)
((n == 0)) || hw_fail "the auth value crossed the bus in the clear ($n times)"
ossl pkeyutl -sign -inkey auth.tss -passin file:pw.txt -rawin -digest sha256 -in msg -out auth.sig ||
    hw_fail "signing with the imported key and its auth value"
sw pkeyutl -verify -pubin -inkey ec-p256.soft.pub -rawin -digest sha256 -in msg -sigfile auth.sig \
    >/dev/null || hw_fail "auth key: signature does not verify"
hw_expect_fail 'AUTH|auth' "signing with the wrong auth value" \
    ossl pkeyutl -sign -inkey auth.tss -passin file:badpw.txt -rawin -digest sha256 -in msg -out bad.sig

# --- encrypted software keys --------------------------------------------------
echo "soft-pass-$RANDOM" >pass.txt
sw pkey -in ec-p256.soft.pem -aes256 -passout file:pass.txt -out enc.pem
hw_hwkey import enc.pem --out enc.tss --passin-file pass.txt 2>enc.err || hw_fail "import of an encrypted key: $(cat enc.err)"
hw_hwkey pubkey enc.tss | cmp -s - ec-p256.soft.pub || hw_fail "encrypted key: public key differs"
sw rsa -in rsa-2048.soft.pem -traditional -aes128 -passout file:pass.txt -out enc-trad.pem 2>/dev/null
hw_hwkey import enc-trad.pem --out enc-trad.tss --passin-file pass.txt 2>enc.err ||
    hw_fail "import of a traditional encrypted PEM: $(cat enc.err)"
sw pkey -in rsa-3072.soft.pem -outform DER -out der.der
hw_hwkey import der.der --out der.tss 2>der.err || hw_fail "import of a DER key: $(cat der.err)"
hw_hwkey pubkey der.tss | cmp -s - rsa-3072.soft.pub || hw_fail "DER key: public key differs"

# --- failures: one line, exit 1/2, no output file ----------------------------
# expect_cli_fail EXIT REGEX OUTFILE ARGS...
expect_cli_fail() {
    local want=$1 regex=$2 outfile=$3 rc=0
    shift 3
    hw_hwkey "$@" </dev/null >/dev/null 2>fail.err || rc=$?
    hw_no_crash "$rc" fail.err "hwkey $*"
    ((rc == want)) || hw_fail "hwkey $*: exit $rc, expected $want: $(cat fail.err)"
    assert_one_error_line fail.err "$regex"
    [[ ! -e $outfile ]] || hw_fail "hwkey $*: left an output file $outfile"
    ls ./.*.tmp* >/dev/null 2>&1 && hw_fail "hwkey $*: left a temporary file" || true
}
head -c 300 /dev/urandom >garbage.pem
expect_cli_fail 1 'holds no private key' out1.tss import garbage.pem --out out1.tss
{ head -2 ec-p384.soft.pem; echo "AAAA"; tail -1 ec-p384.soft.pem; } >truncated.pem
expect_cli_fail 1 'holds no private key' out1.tss import truncated.pem --out out1.tss
sw genpkey -algorithm ED25519 -out ed.pem
expect_cli_fail 1 'ED25519 keys cannot be imported' out2.tss import ed.pem --out out2.tss
sw genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa1024.pem 2>/dev/null
expect_cli_fail 1 'RSA-1024 cannot be imported' out3.tss import rsa1024.pem --out out3.tss
sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp256k1 -out k1.pem
expect_cli_fail 1 'not a TPM curve' out3.tss import k1.pem --out out3.tss
sw pkey -in ec-p256.soft.pem -pubout -out pubonly.pem
expect_cli_fail 1 'holds no private key' out4.tss import pubonly.pem --out out4.tss
expect_cli_fail 1 'encrypted: give its passphrase' out5.tss import enc.pem --out out5.tss
expect_cli_fail 1 'wrong passphrase' out5.tss import enc.pem --out out5.tss --passin-file badpw.txt
expect_cli_fail 1 'cannot open' out6.tss import missing.pem --out out6.tss
dead_port=$(hw_free_port 2)
HW_CLI_TCTI="swtpm:host=127.0.0.1,port=$dead_port" \
    expect_cli_fail 1 'unreachable|connect' out7.tss import ec-p256.soft.pem --out out7.tss
expect_cli_fail 2 'usage error' out8.tss import ec-p256.soft.pem
expect_cli_fail 2 'usage error' out8.tss import --out out8.tss
# (--uri imports into a token: test_import_pkcs11.sh; here only its usage check)
expect_cli_fail 2 'expected a pkcs11: URI' out8.tss import ec-p256.soft.pem --uri 'file:x' --out out8.tss
# An existing output file is never replaced without --force, and stays intact.
cp ec-p256.tss keep.tss
rc=0
hw_hwkey import rsa-2048.soft.pem --out keep.tss 2>keep.err || rc=$?
((rc == 1)) || hw_fail "import over an existing file: exit $rc"
assert_one_error_line keep.err 'exists; use --force'
cmp -s keep.tss ec-p256.tss || hw_fail "an existing output file was changed without --force"
hw_hwkey import rsa-2048.soft.pem --out keep.tss --force 2>keep.err || hw_fail "--force: $(cat keep.err)"
hw_hwkey pubkey keep.tss | cmp -s - rsa-2048.soft.pub || hw_fail "--force wrote another key"
hw_hwkey import --help | grep -q -- '--passin-file' || hw_fail "import --help"

# --- an RSA storage parent: the SRK at 0x81000001 (seed sent with RSA-OAEP) ---
tpm2_createprimary -Q -C o -G rsa2048:aes128cfb -g sha256 -c srk.ctx \
    -a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|decrypt|noda' ||
    hw_fail "tpm2_createprimary (RSA SRK)"
tpm2_evictcontrol -Q -C o -c srk.ctx 0x81000001 || hw_fail "tpm2_evictcontrol 0x81000001"
tpm2_flushcontext -t >/dev/null
secret=$(secret_hex ec-p384.soft.pem priv:)
TCTI_PCAP_FILE=$HW_DIR/srk.pcap HW_CLI_TCTI=$PCAP_TCTI \
    hw_hwkey import ec-p384.soft.pem --out srk.tss 2>srk.err || hw_fail "import under the RSA SRK: $(cat srk.err)"
n=$(in_hex srk.pcap "$secret")
((n == 0)) || hw_fail "RSA parent: the private scalar crossed the bus in the clear ($n times)"
sed '1d;$d' srk.tss | base64 -d | sw asn1parse -inform DER | grep -q 'INTEGER *:81000001' ||
    hw_fail "the key imported under the SRK does not record parent 0x81000001"
ossl pkeyutl -sign -inkey srk.tss -rawin -digest sha256 -in msg -out srk.sig || hw_fail "signing under the RSA SRK"
sw pkeyutl -verify -pubin -inkey ec-p384.soft.pub -rawin -digest sha256 -in msg -sigfile srk.sig \
    >/dev/null || hw_fail "RSA parent: signature does not verify"

left=$(hw_transient_handles)
[[ -z $left ]] || hw_fail "transient objects left in the TPM: $left"
echo "PASS: $HW_TEST"
