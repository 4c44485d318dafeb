#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine:
#   dependencies, autoreconf, configure --enable-werror, make, make check.
# Builds out of tree in ./build-test (BUILD_DIR overrides), apart from the
# demo's ./build, so the source tree stays clean and every object is compiled
# with this script's flags (a build directory configured with other flags is
# cleaned first: scripts/lib-build.sh).  Unit tests (CMocka) need no device; integration tests start their
# own swtpm, tpm2-abrmd and nginx on free loopback ports and stop them.
# Ends with the automake summary (# TOTAL / # PASS / ... / # FAIL); the exit
# status is make check's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src=$PWD
build=${BUILD_DIR:-$src/build-test}
jobs=${JOBS:-2}

step() { printf '\n=== %s\n' "$*"; }

step "install dependencies"
scripts/install-deps.sh

step "autoreconf -fi"
autoreconf -fi

step "configure --enable-werror (in $build)"
. "$src/scripts/lib-build.sh"
hwkey_build_configure "$src" "$build" --enable-werror
cd "$build"

step "make -j$jobs"
make -j"$jobs"

step "make check"
rc=0
make -j"$jobs" check AM_COLOR_TESTS=no || rc=$?

# A skipped test did not run: only the reasons on test/skip-allowlist pass.
if ((rc == 0)); then
    step "skipped tests (scripts/check-skips.sh)"
    "$src/scripts/check-skips.sh" "$build" || rc=1
fi

summary() {
    # The header of test-suite.log is automake's summary of every test,
    # CMocka programs and shell scripts alike (one line per result kind).
    echo "============================================================================"
    echo "Testsuite summary for hwkey (scripts/test.sh)"
    echo "============================================================================"
    grep -E '^# (TOTAL|PASS|SKIP|XFAIL|FAIL|XPASS|ERROR):' test-suite.log || true
    echo "============================================================================"
}

if ((rc != 0)); then
    step "logs of the tests that did not pass"
    if [[ -f test-suite.log ]]; then
        cat test-suite.log
    else
        echo "(no test-suite.log: the build of the tests failed)"
    fi
fi
if [[ -f test-suite.log ]]; then
    step "result"
    # CMocka programs count once each in automake's summary; show their cases too.
    cm_pass=0 cm_fail=0 cm_progs=0
    # test/unit/ mirrors src/: the logs are in its subdirectories.
    while IFS= read -r log; do
        p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
        f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
        ((p + f > 0)) || continue
        printf '%-48s %3d passed, %d failed\n' "${log%.log}" "$p" "$f"
        cm_pass=$((cm_pass + p)) cm_fail=$((cm_fail + f)) cm_progs=$((cm_progs + 1))
    done < <(find test/unit -name '*.log' | sort)
    ((cm_progs == 0)) || echo "CMocka: $cm_pass cases passed, $cm_fail failed, in $cm_progs programs"
    summary
fi
exit "$rc"
