#!/usr/bin/env bash
# nginx (4 workers as nobody, root master) with a TPM key through the swtpm
# socket TCTI: no resource manager, as /dev/tpm0 (3 transient object slots
# shared by every process).  Issue 6, targets asserted:
#   - 2,000 full handshakes (TLS 1.2 and 1.3), 0 failures, every worker serves
#   - nginx -s reload under load: 0 failures
#   - 6 workers SIGKILLed under load inside a TPM call (test stop point
#     tpm2-object-loaded: the key is loaded, its command not sent), then
#     1,000 handshakes with 0 failures
#   - swtpm stopped 5 s and restarted (same state): every worker serves again
#     within 2 s of its return, the same workers (no crash, no respawn),
#     failures while it is away take under 1 s each; 400 handshakes after, 0 failures
#   - nginx quits cleanly (exit 0, no worker killed by a signal but the 6) and
#     leaves no transient object in the TPM
# Handshakes are counted client-side by hs_client (libssl, exact).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-faults.sh"
# Each case runs on when an earlier one failed (hf_run); exit 1 if any failed.
hf_setup tpm
hf_nginx_start
hf_run hf_case_handshakes 2000
hf_run hf_case_reload
hf_run hf_case_kill_workers 6
hf_run hf_case_hooks_off # the stop point off again, every stopped worker woken
hf_run hf_case_outage swtpm 5
hf_run hf_case_quit
hf_run hf_assert_no_transient "after nginx quit"
hf_finish
