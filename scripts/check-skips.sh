#!/usr/bin/env bash
# After `make check` in BUILD_DIR: fails (exit 1) when a test was skipped
# without a reason, or for a reason test/skip-allowlist does not allow.
# Covers whole tests (automake's SKIP, exit 77) and CMocka cases (skip()),
# whose logs must carry a "SKIP: <reason>" line.
#   scripts/check-skips.sh BUILD_DIR
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:?usage: check-skips.sh BUILD_DIR}
allow=$src/test/skip-allowlist

# allowed TEST REASON: 0 if a line of the allow-list matches both.
allowed() {
    local test=$1 reason=$2 t pattern rest
    while IFS='|' read -r t pattern rest; do
        t=$(sed 's/^ *//; s/ *$//' <<<"$t")
        [[ -z $t || $t == \#* ]] && continue
        pattern=$(echo "$pattern" | sed 's/^ *//; s/ *$//')
        [[ $t == "$test" ]] && grep -Eq -- "$pattern" <<<"$reason" && return 0
    done <"$allow"
    return 1
}

bad=0 seen=0
check() {
    local test=$1 log=$2 reason
    seen=$((seen + 1))
    reason=$(grep -m1 -o 'SKIP: .*' "$log" 2>/dev/null || true)
    if [[ -z $reason ]]; then
        echo "check-skips: $test skipped without saying why (no \"SKIP: <reason>\" in $log)" >&2
        bad=1
    elif allowed "$test" "$reason"; then
        echo "check-skips: $test: allowed: $reason"
    else
        echo "check-skips: $test: not on test/skip-allowlist: $reason" >&2
        bad=1
    fi
}

while IFS= read -r trs; do
    grep -q '^:test-result: SKIP' "$trs" || continue
    t=${trs#"$build"/}
    check "${t%.trs}" "${trs%.trs}.log"
done < <(find "$build/test" -name '*.trs' | sort)

# CMocka programs pass when a case calls skip(); its summary line says so.
while IFS= read -r log; do
    grep -q '^\[  SKIPPED \]' "$log" || continue
    t=${log#"$build"/}
    check "${t%.log}" "$log"
done < <(find "$build/test/unit" -name '*.log' 2>/dev/null | sort)

echo "check-skips: $seen skipped, $([[ $bad == 0 ]] && echo "all allowed" || echo "NOT ALL ALLOWED")"
exit "$bad"
