#!/usr/bin/env bash
# Usage: bench/run-fault-bench.sh BUILDDIR [--paths LIST] [--outage S] [--seconds S] [--keep]
#
# What a device outage costs nginx, for each path from nginx's workers to the
# device holding the key (LIST, comma-separated, default all four):
#   tpm      TPM direct (swtpm socket TCTI, no resource manager; like /dev/tpm0)
#   tabrmd   TPM through tpm2-abrmd (tabrmd: TCTI); the outage stops the swtpm behind it
#   p11      SoftHSM in-process; the outage moves the token store away and back
#   p11kit   SoftHSM behind `p11-kit server` (p11-kit-client.so); the outage
#            kills the server (and its per-connection children) and starts it again
# Each path gets its own devices and its own nginx 1.22 (root master, 4 workers
# as nobody, TLS 1.2 + 1.3 alternating, no session cache nor tickets: every
# connection a full handshake; reuseport; `add_header X-Worker $pid`), set up by
# test/integration/lib-faults.sh exactly as test_nginx_faults_*.sh do.  The load
# is test/integration/hs_client, 4 threads, one full handshake + GET per connection.
#
#   rate before  full handshakes/s over S seconds (default 5) before the outage
#   lost         handshakes that failed from the device's stop until every
#                worker served again (away: while it was stopped; after: after it
#                returned)
#   first, last  ms from the device's return to the end of the first successful
#                handshake of the first / of the last of the 4 workers to serve
#                again ("never" if one did not within 20 s); each worker is told
#                by its pid in the X-Worker response header
#   last fail    ms from the return to the start of the last failed handshake
#   slowest fail the longest a failing handshake took while the device was away
#   rate after   full handshakes/s over S seconds after the recovery
#   crashed      workers that exited on a signal during the run
# The device stays away --outage S seconds (default 5).
# Needs root (nginx workers switch to nobody), a built tree (BUILDDIR with
# .libs/hwkey.so, hwkey and test/integration/hs_client: `make check` or
# `make test/integration/hs_client`).  Everything runs in mktemp -d directories
# on free loopback ports and is stopped by pid.  Not a test; a path whose
# set-up fails is reported and the others still run.  Exit 0 when every path
# gave figures, 1 otherwise, 2 on a usage error.  --keep keeps the directories.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)

paths=tpm,tabrmd,p11,p11kit
outage=5
secs=5
keep=
build=
while [[ $# -gt 0 ]]; do
    case $1 in
    --paths) paths=${2:?--paths needs a list}; shift 2 ;;
    --outage) outage=${2:?--outage needs seconds}; shift 2 ;;
    --seconds) secs=${2:?--seconds needs seconds}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,37p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run-fault-bench: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) build=$1; shift ;;
    esac
done
[[ -n $build ]] || { echo "usage: run-fault-bench.sh BUILDDIR [--paths LIST] [--outage S] [--seconds S] [--keep]" >&2; exit 2; }
[[ $outage =~ ^[1-9][0-9]*$ && $secs =~ ^[1-9][0-9]*$ ]] || { echo "run-fault-bench: --outage/--seconds take positive integers" >&2; exit 2; }
build=$(cd "$build" && pwd) || exit 2
for p in ${paths//,/ }; do
    case $p in tpm | tabrmd | p11 | p11kit) ;; *) echo "run-fault-bench: unknown path $p" >&2; exit 2 ;; esac
done
[[ -x $build/test/integration/hs_client ]] ||
    { echo "run-fault-bench: $build/test/integration/hs_client not built (make test/integration/hs_client)" >&2; exit 1; }
((EUID == 0)) || { echo "run-fault-bench: run as root (nginx workers switch to nobody)" >&2; exit 1; }

results=$(mktemp "${TMPDIR:-/tmp}/hwkey-fault-bench.XXXXXX")
trap 'rm -f "$results" "$results".*' EXIT

# one_path PATH: in a subshell (lib.sh's traps, cd and exit stay there);
# appends "PATH key=value..." to $results
one_path() {
    local path=$1
    (
        export top_builddir=$build top_srcdir=$top
        [[ -z $keep ]] || export HW_KEEP=1
        # lib.sh names its directory and messages after the script
        . "$top/test/integration/lib.sh"
        HW_TEST=fault-bench-$path
        . "$top/test/integration/lib-faults.sh"
        HF_RECOVERY_WAIT=20
        hf_setup "$path"
        hf_nginx_start
        hf_hs before -d "$secs" -c 4 -t 5000 || true
        hf_outage outage "$outage"
        rec=$(hf_recovery outage)
        hf_hs after -d "$secs" -c 4 -t 5000 || true
        crashed=$(hf_crashes | wc -l)
        hf_nginx_quit || true
        echo "$path $rec before=$(hf_field before rate) before_failed=$(hf_field before failed)" \
            "after=$(hf_field after rate) after_failed=$(hf_field after failed) crashed=$crashed" >>"$results"
    ) >"$results.$path.log" 2>&1
    local rc=$?
    if ((rc == 77)); then
        echo "$path skipped $(grep -m1 SKIP "$results.$path.log")" >>"$results"
    elif ! grep -q "^$path " "$results"; then
        echo "$path failed $(grep -m1 'FAIL' "$results.$path.log" | cut -c1-200)" >>"$results"
    fi
}

for p in ${paths//,/ }; do
    echo "run-fault-bench: $p ..." >&2
    one_path "$p"
done

val() { sed -nE "s/.*\\b$2=([^ ]+).*/\\1/p" <<<"$1"; }
echo
echo "nginx 1.22, 4 workers, full handshakes (hs_client, 4 threads), device away ${outage} s, rates over ${secs} s"
printf '%-8s %12s %6s %6s %6s %9s %9s %10s %12s %12s %8s\n' path "rate before" lost away after "first ms" "last ms" "last fail" "slowest fail" "rate after" crashed
status=0
while read -r line; do
    p=${line%% *}
    if [[ $line == "$p failed"* || $line == "$p skipped"* ]]; then
        printf '%-8s %s\n' "$p" "${line#* }"
        status=1
        continue
    fi
    printf '%-8s %12s %6s %6s %6s %9s %9s %10s %12s %12s %8s\n' "$p" \
        "$(val "$line" before)/s" "$(val "$line" lost)" "$(val "$line" lost_away)" "$(val "$line" lost_after)" \
        "$(val "$line" first_ms)" "$(val "$line" last_ms)" "$(val "$line" lastfail_ms)" \
        "$(val "$line" slowest_fail_ms)" "$(val "$line" after)/s" "$(val "$line" crashed)"
    [[ $(val "$line" before_failed) == 0 ]] || echo "         ($p: $(val "$line" before_failed) handshakes failed before the outage)"
    [[ $(val "$line" after_failed) == 0 ]] || echo "         ($p: $(val "$line" after_failed) handshakes failed after the recovery)"
done <"$results"
exit "$status"
