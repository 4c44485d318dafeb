#!/usr/bin/env bash
# Usage: bench/run-failover-bench.sh BUILDDIR [--rounds N] [--seconds S] [--op-us LIST] [--keep]
#
# Handshakes lost when one of two tokens holding the same key is unplugged
# under load (issue 9, target 0), and the handshake rate before, during and
# after.  Two independent "HSMs" in one process: two copies of
# test/p11_latency over two copies of SoftHSM, one token each, the same EC
# P-256 key imported onto both (test/integration/lib-failover.sh); hwkey with
# pkcs11-failover = yes.  HAProxy 2.6, nbthread 2, full handshakes (no session
# cache, no tickets); wrk -t2 -c16 "Connection: close" for S seconds (default
# 16); token a is unplugged at S/4 and plugged back at S/2 + 1.
#   lost    wrk's socket errors (connect, read, write, timeout) + non-2xx answers
#   before/during/after   handshakes/s in each phase, from the two tokens'
#           operation counters (one signature per handshake)
# --op-us LIST: the tokens' latency per private-key operation, microseconds,
# comma list (default "0,2000": a local token and a network HSM at 2 ms).
# Each latency runs N rounds (default 2).  Not a test (not in make check);
# test/integration/test_pkcs11_failover.sh checks the same with one round.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)

rounds=2 secs=16 op_list=0,2000 build= keep=
while [[ $# -gt 0 ]]; do
    case $1 in
    --rounds) rounds=${2:?--rounds needs a number}; shift 2 ;;
    --seconds) secs=${2:?--seconds needs a number}; shift 2 ;;
    --op-us) op_list=${2:?--op-us needs a list}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run-failover-bench: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) build=$1; shift ;;
    esac
done
[[ -n $build ]] || { echo "usage: run-failover-bench.sh BUILDDIR [--rounds N] [--seconds S] [--op-us LIST]" >&2; exit 2; }
((secs >= 12)) || { echo "run-failover-bench: --seconds must be at least 12" >&2; exit 2; }
for cmd in wrk haproxy curl; do
    command -v "$cmd" >/dev/null || { echo "run-failover-bench: $cmd not found (scripts/install-deps.sh)" >&2; exit 1; }
done
top_builddir=$(cd "$build" && pwd) top_srcdir=$top
make -s -C "$top_builddir" test/p11_latency/p11_latency.la >/dev/null
HW_KEEP=$keep
. "$top/test/integration/lib.sh"
hw_p11_setup
. "$top/test/integration/lib-failover.sh"
. "$top/test/integration/lib-failover-load.sh"
fo_setup
fo_import_same web EC

unplug_at=$((secs / 4)) plug_at=$((secs / 2 + 1))
total_lost=0
printf 'op latency  round  requests  lost  before/s  during/s  after/s  back\n'
IFS=, read -ra ops <<<"$op_list"
for op in "${ops[@]}"; do
    for ((r = 1; r <= rounds; r++)); do
        P11_LATENCY_OP_US=$op fo_load_run "$secs" "$unplug_at" "$plug_at" >round.out ||
            hw_fail "round $r at $op us: $(cat round.out)"
        rate() { awk -v p="$1" '$1 == p { print $3 }' round.out; }
        last=$(tail -1 round.out)
        lost=$(sed -nE 's/.*lost=([0-9]+).*/\1/p' <<<"$last")
        printf '%7s us  %5d  %8s  %4s  %8s  %8s  %7s  %s\n' "$op" "$r" \
            "$(sed -nE 's/.*requests=([0-9]+).*/\1/p' <<<"$last")" "$lost" \
            "$(rate before)" "$(rate during)" "$(rate after)" \
            "$(sed -nE 's/.*used_again=([a-z]+).*/\1/p' <<<"$last")"
        total_lost=$((total_lost + lost))
    done
done
echo "handshakes lost with one of two tokens unplugged: $total_lost (target 0)"
