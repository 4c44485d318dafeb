#!/usr/bin/env bash
# scripts/check-skips.sh, which scripts/test.sh runs after `make check`:
#  1. a skip on test/skip-allowlist with a matching reason passes;
#  2. a skip not on the list fails, naming the test and its reason;
#  3. a skip that prints no "SKIP: <reason>" fails, also for a CMocka case;
#  4. no skip at all passes.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check=$top_srcdir/scripts/check-skips.sh
mkdir -p "$tmp/b/test/integration" "$tmp/b/test/unit"

skipped() { # name reason
    printf ':test-result: SKIP\n:global-test-result: SKIP\n' >"$tmp/b/test/integration/$1.trs"
    printf '%s\n' "$2" >"$tmp/b/test/integration/$1.log"
}

"$check" "$tmp/b" >"$tmp/out" 2>&1 || hw_fail "no skip at all was refused: $(cat "$tmp/out")"

skipped test_bulk "SKIP: test_bulk.sh: this CPU lacks AES-NI/PCLMULQDQ"
"$check" "$tmp/b" >"$tmp/out" 2>&1 || hw_fail "an allowed skip was refused: $(cat "$tmp/out")"
grep -q "test/integration/test_bulk: allowed" "$tmp/out" || hw_fail "allowed skip not reported"

skipped test_nginx "SKIP: /usr/sbin/nginx not installed"
if "$check" "$tmp/b" >"$tmp/out" 2>&1; then hw_fail "a skip not on the allow-list passed"; fi
grep -q "test/integration/test_nginx: not on test/skip-allowlist: SKIP: /usr/sbin/nginx not installed" \
    "$tmp/out" || hw_fail "refusal does not name test and reason: $(cat "$tmp/out")"
rm "$tmp/b/test/integration/test_nginx".*

skipped test_bulk "some other reason, no marker"
if "$check" "$tmp/b" >"$tmp/out" 2>&1; then hw_fail "a skip without a reason passed"; fi
grep -q "skipped without saying why" "$tmp/out" || hw_fail "no 'without saying why': $(cat "$tmp/out")"
rm "$tmp/b/test/integration/test_bulk".*

printf '[ RUN      ] test_a\n[  SKIPPED ] test_a\n[  SKIPPED ] 1 test(s), listed below:\n' \
    >"$tmp/b/test/unit/test_x.log"
if "$check" "$tmp/b" >"$tmp/out" 2>&1; then hw_fail "a CMocka skip without a reason passed"; fi
grep -q "test/unit/test_x skipped without saying why" "$tmp/out" || hw_fail "CMocka skip: $(cat "$tmp/out")"

echo "PASS: $HW_TEST: allowed skip passes; unlisted, reasonless and CMocka skips fail"
