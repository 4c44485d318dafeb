#!/usr/bin/env bash
# Bulk encryption (docs/bulk.md): hwkey datakey seals an AES-256 key in the
# TPM; hwkey encrypt/decrypt stream files through AES-NI GCM.
#  - round trips for 0, 1, 65535, 65536, 65537 bytes and 5 MiB, file sizes as
#    the format says (24-byte header, 16-byte tag per 64 KiB chunk);
#  - a flipped byte, a truncated or dropped last chunk, two swapped chunks,
#    an appended chunk, another data key, a non-hwkey file: decrypt fails
#    with one clear line, exit 1, and leaves no output file;
#  - the data key never appears in the TPM traffic (pcap: TCTI; control:
#    tpm2_getrandom's answer is found by the same search), nor in its file;
#  - usage errors exit 2; a signing key is refused as a data key;
#  - --progress: only progress lines on stderr, the last one the input's total
#    (decrypt used to stop at the plaintext size, short of it: issue 7.13).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing od cmp head dd tpm2_getrandom base64
[[ -n $(find /usr/lib /lib -name 'libtss2-tcti-pcap.so*' 2>/dev/null | head -1) ]] ||
    { echo "SKIP: tpm2-tss pcap TCTI not installed" >&2; exit 77; }
grep -qw aes /proc/cpuinfo && grep -qw pclmulqdq /proc/cpuinfo ||
    { echo "SKIP: $HW_TEST: this CPU lacks AES-NI/PCLMULQDQ" >&2; exit 77; }
DRIVER=$top_builddir/test/integration/datakey_driver
[[ -x $DRIVER ]] || hw_fail "$DRIVER not built (make check builds it)"
hw_setup
PCAP_TCTI="pcap:$HW_TCTI"
CHUNK=65536
REC=$((CHUNK + 16))

hexdump_of() { od -An -tx1 -v "$1" | tr -d ' \n'; }
size_of() { stat -c %s "$1"; }

# decrypt_must_fail WHAT INPUT [KEY]: exit 1, one line naming the failure, no output file.
decrypt_must_fail() {
    local what=$1 in=$2 key=${3:-dk.pem} rc=0
    rm -f out.dec
    hw_hwkey decrypt --key "$key" -in "$in" -out out.dec 2>err.txt || rc=$?
    hw_no_crash "$rc" err.txt "$what"
    ((rc == 1)) || hw_fail "$what: exit $rc, expected 1 ($(cat err.txt))"
    assert_one_error_line err.txt 'hwkey: decrypt .*: decryption failed: '
    [[ ! -e out.dec ]] || hw_fail "$what: left an output file"
    [[ -z $(find . -maxdepth 1 -name '.hwkey-tmp-*') ]] || hw_fail "$what: left a temporary file"
}

# --- data key ---------------------------------------------------------------
TCTI_PCAP_FILE=$HW_DIR/datakey.pcap HW_CLI_TCTI=$PCAP_TCTI hw_hwkey datakey --out dk.pem 2>err.txt ||
    hw_fail "hwkey datakey: $(cat err.txt)"
grep -q -- "-----BEGIN TSS2 PRIVATE KEY-----" dk.pem || hw_fail "datakey wrote no TSS2 PRIVATE KEY PEM"
sw asn1parse -in dk.pem >asn1.txt || hw_fail "the data key file is not DER in PEM"
grep -q '2.23.133.10.1.5' asn1.txt || hw_fail "the data key file is not of type sealed (2.23.133.10.1.5)"
hw_hwkey datakey --out dk2.pem 2>err.txt || hw_fail "second hwkey datakey: $(cat err.txt)"
# An existing file is not replaced without --force.
rc=0
hw_hwkey datakey --out dk.pem 2>err.txt || rc=$?
((rc == 1)) || hw_fail "datakey over an existing file: exit $rc, expected 1"
assert_one_error_line err.txt 'exists'

driver() { HWKEY_TPM2_TCTI=${HW_CLI_TCTI:-$HW_TCTI} timeout -k 5 "$HW_TIMEOUT" "$DRIVER" "$@"; }
key_hex=$(driver dk.pem 2>err.txt) || hw_fail "datakey_driver: $(cat err.txt)"
[[ $key_hex =~ ^[0-9a-f]{64}$ ]] || hw_fail "datakey_driver printed no key: $key_hex"
key2_hex=$(TCTI_PCAP_FILE=$HW_DIR/unseal.pcap HW_CLI_TCTI=$PCAP_TCTI driver dk.pem) ||
    hw_fail "datakey_driver through pcap"
[[ $key2_hex == "$key_hex" ]] || hw_fail "the same data key file unsealed to two different keys"
other_hex=$(driver dk2.pem) || hw_fail "datakey_driver dk2.pem"
[[ $other_hex != "$key_hex" ]] || hw_fail "two data keys are equal"

# The file is the key wrapped, not the key.
sed '/-----/d' dk.pem | base64 -d >dk.der
[[ $(hexdump_of dk.der) != *"${key_hex:0:32}"* && $(hexdump_of dk.der) != *"${key_hex:32}"* ]] ||
    hw_fail "the data key file holds the key in the clear"

# --- round trips ----------------------------------------------------------------
for n in 0 1 65535 65536 65537 $((5 * 1024 * 1024)); do
    head -c "$n" /dev/urandom >pt.$n
    hw_hwkey encrypt --key dk.pem -in pt.$n -out ct.$n 2>err.txt || hw_fail "encrypt $n bytes: $(cat err.txt)"
    chunks=$(((n + CHUNK - 1) / CHUNK))
    ((chunks > 0)) || chunks=1
    [[ $(size_of ct.$n) == $((24 + n + 16 * chunks)) ]] ||
        hw_fail "$n bytes: ciphertext is $(size_of ct.$n) bytes, expected $((24 + n + 16 * chunks))"
    [[ $(head -c 8 ct.$n) == HWKEYENC ]] || hw_fail "$n bytes: no HWKEYENC header"
    hw_hwkey decrypt --key dk.pem -in ct.$n -out back.$n 2>err.txt || hw_fail "decrypt $n bytes: $(cat err.txt)"
    cmp -s pt.$n back.$n || hw_fail "$n bytes: decrypt does not give the plaintext back"
done
# stdin -> stdout, and a fresh nonce per file.
hw_hwkey encrypt --key dk.pem <pt.65537 >ct.pipe 2>err.txt || hw_fail "encrypt stdin: $(cat err.txt)"
hw_hwkey decrypt --key dk.pem <ct.pipe >back.pipe 2>err.txt || hw_fail "decrypt stdin: $(cat err.txt)"
cmp -s pt.65537 back.pipe || hw_fail "stdin/stdout round trip"
[[ $(head -c 24 ct.pipe | od -An -tx1) != $(head -c 24 ct.65537 | od -An -tx1) ]] ||
    hw_fail "two encryptions of one file share a header (nonce reused)"

# --- progress reaches the total (issue 7.13) ---------------------------------------
# 4 MiB - 100 bytes: the ciphertext (header and tags) passes 4 MiB, the plaintext
# does not, so progress that counts plaintext against the input's size stops short.
n=$((4 * 1024 * 1024 - 100))
head -c "$n" /dev/urandom >pt.prog
# progress_ends_at FILE VERB TOTAL_MIB [DONE_ONLY]: FILE holds progress lines only,
# the last one the total.
progress_ends_at() {
    local file=$1 verb=$2 mib=$3 want
    if [[ ${4:-} == done-only ]]; then want="hwkey: $verb: $mib MiB"; else want="hwkey: $verb: $mib / $mib MiB"; fi
    [[ -s $file ]] || hw_fail "--progress printed nothing for $verb"
    ! grep -vqE "^hwkey: $verb: [0-9]+( / [0-9]+)? MiB\$" "$file" ||
        hw_fail "$verb --progress: unexpected stderr: $(grep -vE "^hwkey: $verb: " "$file" | head -3)"
    [[ $(tail -1 "$file") == "$want" ]] ||
        hw_fail "$verb progress ends at \"$(tail -1 "$file")\", expected \"$want\""
}
hw_hwkey encrypt --key dk.pem --progress -in pt.prog -out ct.prog 2>enc.progress ||
    hw_fail "encrypt --progress: $(cat enc.progress)"
progress_ends_at enc.progress encrypting $((n >> 20))
hw_hwkey decrypt --key dk.pem --progress -in ct.prog -out back.prog 2>dec.progress ||
    hw_fail "decrypt --progress: $(cat dec.progress)"
progress_ends_at dec.progress decrypting $(($(size_of ct.prog) >> 20))
cmp -s pt.prog back.prog || hw_fail "decrypt --progress does not give the plaintext back"
# a pipe: no size to compare with, the last line is what was read
cat ct.prog | hw_hwkey decrypt --key dk.pem --progress >back.pipe2 2>pipe.progress ||
    hw_fail "decrypt --progress from stdin: $(cat pipe.progress)"
progress_ends_at pipe.progress decrypting $(($(size_of ct.prog) >> 20)) done-only
cmp -s pt.prog back.pipe2 || hw_fail "decrypt --progress from a pipe does not give the plaintext back"
# without --progress and not on a terminal: nothing on stderr
hw_hwkey decrypt --key dk.pem -in ct.prog -out back.quiet 2>quiet.err || hw_fail "decrypt: $(cat quiet.err)"
[[ ! -s quiet.err ]] || hw_fail "decrypt printed to stderr without --progress: $(head -3 quiet.err)"
hw_log "ok: --progress ends at the input's total (encrypt, decrypt, stdin); silent without it"

# --- tampering ----------------------------------------------------------------------
big=ct.$((5 * 1024 * 1024))
cp ct.65537 t.flip && hw_flip_byte t.flip 1000
decrypt_must_fail "one flipped ciphertext byte" t.flip
cp ct.65537 t.hdr && hw_flip_byte t.hdr 20
decrypt_must_fail "one flipped nonce byte in the header" t.hdr
cp ct.65537 t.tag && hw_flip_byte t.tag $(($(size_of ct.65537) - 1))
decrypt_must_fail "one flipped tag byte" t.tag
head -c $((24 + REC)) ct.65537 >t.cut
decrypt_must_fail "last chunk dropped" t.cut
head -c $(($(size_of ct.65537) - 1)) ct.65537 >t.short
decrypt_must_fail "last chunk truncated by one byte" t.short
head -c $(($(size_of $big) - REC)) $big >t.cutbig
decrypt_must_fail "last of 80 full chunks dropped" t.cutbig
head -c 24 ct.1 >t.hdronly
decrypt_must_fail "header only" t.hdronly
# swap chunks 1 and 2 of the 5 MiB file
{ head -c $((24 + REC)) $big; dd if=$big bs=1 skip=$((24 + 2 * REC)) count=$REC status=none
  dd if=$big bs=1 skip=$((24 + REC)) count=$REC status=none; tail -c +$((24 + 3 * REC + 1)) $big; } >t.swap
[[ $(size_of t.swap) == $(size_of $big) ]] || hw_fail "test bug: swapped file has another size"
decrypt_must_fail "two chunks swapped" t.swap
{ cat ct.65537; tail -c 17 ct.1; } >t.append
decrypt_must_fail "a chunk appended" t.append
decrypt_must_fail "another data key" ct.65537 dk2.pem
decrypt_must_fail "not an hwkey file" pt.65537
rc=0
hw_hwkey decrypt --key dk.pem <t.swap >/dev/null 2>err.txt || rc=$?
((rc == 1)) || hw_fail "decrypt of a swapped file to stdout: exit $rc, expected 1"
assert_one_error_line err.txt 'chunk 1 does not authenticate'

# --- the key is never on the bus -----------------------------------------------------
TCTI_PCAP_FILE=$HW_DIR/encrypt.pcap HW_CLI_TCTI=$PCAP_TCTI hw_hwkey encrypt --key dk.pem -in pt.1 -out ct.pcap 2>err.txt ||
    hw_fail "encrypt through pcap: $(cat err.txt)"
TCTI_PCAP_FILE=$HW_DIR/decrypt.pcap HW_CLI_TCTI=$PCAP_TCTI hw_hwkey decrypt --key dk.pem -in ct.pcap -out back.pcap 2>err.txt ||
    hw_fail "decrypt through pcap: $(cat err.txt)"
cmp -s pt.1 back.pcap || hw_fail "round trip through pcap"
# Control: a TPM answer sent in the clear is found by the same search.
TCTI_PCAP_FILE=$HW_DIR/control.pcap TPM2TOOLS_TCTI=$PCAP_TCTI timeout 60 tpm2_getrandom 32 -o rnd.bin ||
    hw_fail "tpm2_getrandom"
[[ $(hexdump_of control.pcap) == *"$(hexdump_of rnd.bin)"* ]] ||
    hw_fail "control: the pcap search does not find tpm2_getrandom's clear-text answer"
for cap in datakey.pcap unseal.pcap encrypt.pcap decrypt.pcap; do
    [[ $(size_of $cap) -gt 500 ]] || hw_fail "$cap: nothing recorded"
    dump=$(hexdump_of $cap)
    # TPM_CC_Create 0x153 in datakey, TPM_CC_Unseal 0x15e in the others
    [[ $cap == datakey.pcap ]] && want=00000153 || want=0000015e
    [[ $dump == *"$want"* ]] || hw_fail "$cap: no command $want recorded"
    [[ $dump != *"${key_hex:0:32}"* && $dump != *"${key_hex:32}"* ]] ||
        hw_fail "$cap: the data key crossed the bus in the clear"
done

# --- wrong inputs -------------------------------------------------------------------
hw_keygen ec:P-256 sign.pem
rc=0
hw_hwkey encrypt --key sign.pem -in pt.1 -out x.enc 2>err.txt || rc=$?
((rc == 1)) || hw_fail "a signing key as data key: exit $rc, expected 1"
assert_one_error_line err.txt 'not a sealed data key'
[[ ! -e x.enc ]] || hw_fail "a failed encrypt left its output file"
rc=0
hw_hwkey encrypt -in pt.1 -out x.enc 2>err.txt || rc=$?
((rc == 2)) || hw_fail "encrypt without --key: exit $rc, expected 2"
assert_one_error_line err.txt 'usage error'
rc=0
hw_hwkey decrypt --key dk.pem --bogus 2>err.txt || rc=$?
((rc == 2)) || hw_fail "unknown option: exit $rc, expected 2"
hw_hwkey encrypt --help | grep -q -- '--key FILE' || hw_fail "encrypt --help"
hw_hwkey datakey --help | grep -q -- '--out FILE' || hw_fail "datakey --help"
[[ -z $(hw_transient_handles) ]] || hw_fail "transient objects left in the TPM: $(hw_transient_handles | tr '\n' ' ')"

echo "PASS: $HW_TEST"
