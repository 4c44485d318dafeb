#!/usr/bin/env bash
# The set-up scripts (issue 7.14), without network or devices:
#   - install-deps.sh waits while another apt/dpkg holds the lock: apt-get
#     (a stub first in PATH) answers "Could not get lock" (exit 100) twice,
#     then succeeds; install-deps.sh retries and exits 0, passing apt's own
#     lock timeout too; any other apt failure is not retried (exit non-zero)
#   - scripts/test.sh's configure step (scripts/lib-build.sh) in a build
#     directory configured and built before without --enable-werror (as
#     scripts/demo.sh leaves it): the objects are removed, so the next make
#     compiles everything with -Werror; reconfiguring with the same flags
#     keeps them
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing make find
HW_DIR=$(mktemp -d "${TMPDIR:-/tmp}/hwkey-$HW_TEST.XXXXXX")
trap hw_cleanup EXIT
cd "$HW_DIR"

# --- install-deps.sh and the apt lock ------------------------------------------------
mkdir stub
# dpkg-query: every package installed but swtpm
cat >stub/dpkg-query <<'STUB'
#!/bin/sh
for last; do :; done
[ "$last" = swtpm ] && { echo "deinstall ok config-files"; exit 0; }
echo "install ok installed"
STUB
# apt-get: logs its arguments; "locked" while the counter file has fewer than
# $LOCKED_CALLS lines, then $FINAL_RC with $FINAL_MSG
cat >stub/apt-get <<'STUB'
#!/bin/sh
echo "$*" >>"$STUB_DIR/calls.log"
n=$(wc -l <"$STUB_DIR/calls.log")
if [ "$n" -le "${LOCKED_CALLS:-0}" ]; then
    echo "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)" >&2
    exit 100
fi
[ -z "${FINAL_MSG:-}" ] || echo "$FINAL_MSG" >&2
exit "${FINAL_RC:-0}"
STUB
chmod +x stub/dpkg-query stub/apt-get

run_deps() { # RC: install-deps.sh with the stubs, as root (no sudo)
    local want=$1 rc=0
    : >calls.log
    env PATH="$HW_DIR/stub:$PATH" STUB_DIR="$HW_DIR" HWKEY_APT_LOCK_RETRY_SECS=0 \
        "$top_srcdir/scripts/install-deps.sh" >deps.out 2>&1 || rc=$?
    ((rc == want)) || hw_fail "install-deps.sh: exit $rc, expected $want: $(tail -5 deps.out)"
}
((EUID == 0)) || { echo "SKIP: $HW_TEST: install-deps.sh needs root (else sudo)" >&2; exit 77; }
LOCKED_CALLS=2 run_deps 0
grep -q "install .*swtpm" calls.log || hw_fail "install-deps.sh never installed the missing package: $(cat calls.log)"
(($(grep -c . calls.log) >= 3)) || hw_fail "install-deps.sh did not retry while apt was locked: $(cat calls.log)"
grep -q "DPkg::Lock::Timeout=" calls.log || hw_fail "install-deps.sh does not pass apt's lock timeout: $(cat calls.log)"
grep -q "waiting" deps.out || hw_fail "install-deps.sh did not say it waits for the lock: $(cat deps.out)"
LOCKED_CALLS=0 FINAL_RC=100 FINAL_MSG="E: Unable to locate package swtpm" run_deps 100
(($(grep -c . calls.log) == 1)) || hw_fail "install-deps.sh retried a failure that is not the lock: $(cat calls.log)"
hw_log "ok: install-deps.sh waits for a held apt lock and does not retry other failures"

# --- test.sh's build: its own flags ----------------------------------------------------
. "$top_srcdir/scripts/lib-build.sh"
[[ -x $top_srcdir/configure ]] || hw_fail "$top_srcdir/configure missing (autoreconf -fi)"
b=$HW_DIR/b
hwkey_build_configure "$top_srcdir" "$b" >conf1.out 2>&1 || hw_fail "configure: $(tail -5 conf1.out)"
! grep -q -- "-Werror" "$b/Makefile" || hw_fail "configured without --enable-werror, the Makefile has -Werror"
make -C "$b" V=1 src/util/log.lo >make1.out 2>&1 || hw_fail "building an object: $(tail -5 make1.out)"
! grep -q -- "-Werror" make1.out || hw_fail "compiled with -Werror before --enable-werror"
obj=$(find "$b" -name '*.o' -print -quit)
[[ -n $obj ]] || hw_fail "no object was built"
hwkey_build_configure "$top_srcdir" "$b" --enable-werror >conf2.out 2>&1 || hw_fail "configure --enable-werror: $(tail -5 conf2.out)"
grep -q -- "-Werror" "$b/Makefile" || hw_fail "--enable-werror: no -Werror in the Makefile"
[[ ! -e $obj ]] || hw_fail "objects built without -Werror survived the reconfiguration: $obj"
grep -q "make clean" conf2.out || hw_fail "the reconfiguration did not say it cleans: $(tail -3 conf2.out)"
make -C "$b" V=1 src/util/log.lo >make2.out 2>&1 || hw_fail "rebuilding: $(tail -5 make2.out)"
grep -q -- "-Werror.*log\.c" make2.out || hw_fail "log.c was not compiled again with -Werror: $(tail -3 make2.out)"
obj=$(find "$b" -name '*.o' -print -quit)
hwkey_build_configure "$top_srcdir" "$b" --enable-werror >conf3.out 2>&1 || hw_fail "configure again: $(tail -5 conf3.out)"
[[ -e $obj ]] || hw_fail "reconfiguring with the same flags removed the objects"
hw_log "ok: test.sh's configure step cleans a build made with other flags, keeps one made with its own"
hw_log "PASS"
