#!/usr/bin/env bash
# nginx (4 workers as nobody, root master) with a TPM key through tpm2-abrmd
# (tabrmd: TCTI, the keep-keys-loaded path: one TPM command per signature).
# tpm2-abrmd runs on a private D-Bus bus that admits the workers' user, in
# front of the test's swtpm.  Issue 6, targets asserted:
#   - 2,000 full handshakes (TLS 1.2 and 1.3), 0 failures, every worker serves
#     (the master loads the key; no connection made before fork is used after)
#   - nginx -s reload under load: 0 failures
#   - the TPM behind tpm2-abrmd stopped 5 s and restarted (same state; its
#     loaded objects are gone) together with tpm2-abrmd, which does not recover
#     from its TPM restarting (lib-faults.sh, hf_device_start): every worker
#     serves again within 2 s, the same workers, failures while away under 1 s;
#     400 handshakes after, 0 failures
#   - tpm2-abrmd itself killed, restarted 5 s later: the same
#   - nginx quits cleanly; no transient object left in the TPM
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-faults.sh"
# Each case runs on when an earlier one failed (hf_run); exit 1 if any failed.
hf_setup tabrmd
hf_nginx_start
hf_run hf_case_handshakes 2000
hf_run hf_case_reload
hf_run hf_case_outage "swtpm behind tpm2-abrmd" 5
HF_PATH=tabrmd-rm hf_run hf_case_outage tpm2-abrmd 5
hf_run hf_case_quit
hf_run hf_assert_no_transient "after nginx quit"
hf_finish
