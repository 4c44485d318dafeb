#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer
# (clang), leak detection on:
#   scripts/asan-check.sh [BUILD_DIR [MAKE_ARGS...]]   (default /tmp/build-asan)
#   e.g. scripts/asan-check.sh /tmp/build-asan TESTS=test/integration/test_tls.sh
# hwkey.so is instrumented but openssl(1), nginx and pkcs11-tool are not, so they run
# through wrappers that LD_PRELOAD the ASan runtime (HWKEY_TEST_NGINX names the
# nginx one).  Every sanitizer report goes to BUILD_DIR/sanitizer/san.PID (so a
# test's "one error line" checks still see only the program's own stderr);
# any report fails this script.  Third-party findings are suppressed, with the
# reason, in test/asan.supp and test/lsan.supp.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src=$PWD
build=${1:-${BUILD_DIR:-/tmp/build-asan}}
shift || true
san="-fsanitize=address,undefined -fno-omit-frame-pointer"

rt=$(clang -print-file-name=libclang_rt.asan-x86_64.so)
[[ -f $rt ]] || { echo "asan-check: no ASan runtime ($rt): install libclang-rt-14-dev" >&2; exit 1; }

mkdir -p "$build"
cd "$build"
if [[ ! -f Makefile ]]; then
    "$src/configure" -q --enable-werror CC=clang CFLAGS="-O1 -g $san" LDFLAGS="$san"
fi
make -j"${JOBS:-2}" >/dev/null

wrap=$build/sanitizer-wrap
logs=$build/sanitizer
mkdir -p "$wrap" "$logs"
chmod 1777 "$logs"   # nginx workers run as nobody
rm -f "$logs"/san.*
for prog in /usr/bin/openssl /usr/sbin/nginx; do
    opts=
    [[ $prog == */nginx ]] && opts='ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" '
    printf '#!/bin/sh\n%sLD_PRELOAD=%s exec %s "$@"\n' "$opts" "$rt" "$prog" \
        >"$wrap/${prog##*/}"
    chmod +x "$wrap/${prog##*/}"
done
# pkcs11-tool too (SoftHSM's C_Initialize loads openssl.cnf, hence hwkey.so),
# without leak checks: pkcs11-tool 0.23 leaks its own argument copies.
printf '#!/bin/sh\nASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" LD_PRELOAD=%s exec %s "$@"\n' \
    "$rt" /usr/bin/pkcs11-tool >"$wrap/pkcs11-tool"
chmod +x "$wrap/pkcs11-tool"

export PATH=$wrap:$PATH HWKEY_TEST_NGINX=$wrap/nginx HW_TIMEOUT=${HW_TIMEOUT:-300}
export ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0:suppressions=$src/test/asan.supp"
export LSAN_OPTIONS="suppressions=$src/test/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/san"

rc=0
make -j"${JOBS:-2}" check AM_COLOR_TESTS=no "$@" >"$logs/make-check.log" 2>&1 || rc=$?
grep -E '^(PASS|FAIL|ERROR|SKIP|XFAIL|XPASS):' "$logs/make-check.log" || true
grep -E '^# (TOTAL|PASS|SKIP|FAIL|ERROR):' "$logs/make-check.log" || true
reports=$(find "$logs" -name 'san.*' -size +0 | sort)
if [[ -n $reports ]]; then
    echo "asan-check: sanitizer reports:" >&2
    for f in $reports; do
        echo "== $f" >&2
        grep -E 'ERROR:|runtime error|SUMMARY| in [a-z_0-9]+ /' "$f" | head -12 >&2
    done
    rc=1
fi
exit "$rc"
