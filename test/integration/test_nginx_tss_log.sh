#!/usr/bin/env bash
# Who writes to nginx's error log about the TPM (issue 7.18): hwkey, once per
# event, never the TSS library itself.  nginx (root master, 4 workers as
# nobody) with a TPM key through the swtpm socket TCTI (no resource manager):
#   - 2,000 full handshakes: no line of tpm2-tss's own log format
#     (ERROR:esys:..., WARNING:tcti:...) in error.log
#   - swtpm stopped 5 s under load and restarted: still no such line, and
#     hwkey's own "TPM unavailable" / "TPM back" lines at most once per
#     process (and at least one of each, so the outage was seen)
# nginx clears the workers' environment: a TSS2_LOG the master set does not
# reach them, so hwkey sets the library's level in each process.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-faults.sh"
hf_setup tpm
hf_nginx_start

# tss_lines: tpm2-tss's log lines (LEVEL:module:file:line:function() text)
TSS_RE='^(ERROR|WARNING|info|debug|trace):[a-z0-9_]+:'
tss_lines() { grep -cE "$TSS_RE" "$HW_DIR/logs/error.log" || true; }
assert_no_tss_lines() {
    local n
    n=$(tss_lines)
    ((n == 0)) || hw_fail "$1: $n tpm2-tss log lines in nginx's error log, e.g. $(grep -m2 -E "$TSS_RE" "$HW_DIR/logs/error.log")"
}

hf_case_handshakes 2000
assert_no_tss_lines "2,000 handshakes"
hw_log "ok: 2,000 handshakes, no tpm2-tss line in error.log"

hf_outage outage 5
hw_log "outage: $(hf_recovery outage)"
assert_no_tss_lines "swtpm stopped 5 s and restarted"
# hwkey's own lines: "<pid>#0: ... hwkey..."? nginx prefixes nothing to a
# worker's stderr, so count per line text; each process says each event once.
lost=$(grep -c "tpm2: TPM unavailable\|tpm2: lost the TPM connection" "$HW_DIR/logs/error.log" || true)
back=$(grep -c "tpm2: TPM back through" "$HW_DIR/logs/error.log" || true)
procs=$((HF_WORKERS + 1))
((lost >= 1 && back >= 1)) || hw_fail "hwkey reported the outage $lost times and the return $back times (want at least once each): $(grep -m3 hwkey "$HW_DIR/logs/error.log")"
((lost <= procs && back <= procs)) ||
    hw_fail "hwkey reported one outage $lost times and the return $back times from $procs processes (want at most once each per process)"
hw_log "ok: outage: no tpm2-tss line; hwkey said \"unavailable\" $lost and \"back\" $back times ($procs processes)"

hf_nginx_quit
hw_log "PASS"
