#!/usr/bin/env bash
# nginx (4 workers as nobody:softhsm, root master) with a SoftHSM key loaded
# in-process (reference file in ssl_certificate_key).  The token store has
# Debian's permissions (root:softhsm, 2770 directories, group-readable files),
# applied again after the key was made, as an operator must.  Issue 6,
# targets asserted:
#   - 2,000 full handshakes (TLS 1.2 and 1.3), 0 failures, every worker serves
#   - nginx -s reload under load: 0 failures
#   - the token leaves for 5 s and returns (its store moved away and back, a
#     token pulled out and put back): every worker serves again within 2 s,
#     the same workers (no crash), failures while away under 1 s; 400
#     handshakes after, 0 failures
#   - nginx quits cleanly: exit 0, no worker killed by a signal (SoftHSM's
#     own teardown at exit)
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-faults.sh"
# Each case runs on when an earlier one failed (hf_run); exit 1 if any failed.
hf_setup p11
hf_nginx_start
hf_run hf_case_handshakes 2000
hf_run hf_case_reload
hf_run hf_case_outage "SoftHSM token store" 5
hf_run hf_case_quit
hf_finish
