#!/usr/bin/env bash
# nginx (4 workers as nobody, root master) with a SoftHSM key served by
# `p11-kit server` in another process (docs/isolation.md); hwkey loads
# p11-kit-client.so, P11_KIT_SERVER_ADDRESS reaches the workers through
# `env P11_KIT_SERVER_ADDRESS;`, the socket admits only the workers' group.
# Issue 6, targets asserted:
#   - 2,000 full handshakes (TLS 1.2 and 1.3), 0 failures, every worker serves
#   - nginx -s reload under load: 0 failures
#   - the server (and the children serving each connection) killed, started
#     again 5 s later on the same socket: every worker serves again within 2 s
#     (p11-kit-client answers CKR_DEVICE_ERROR until C_Initialize again), the
#     same workers, failures while away under 1 s; 400 handshakes after, 0 failures
#   - nginx quits cleanly: exit 0, no worker killed by a signal
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-faults.sh"
# Each case runs on when an earlier one failed (hf_run); exit 1 if any failed.
hf_setup p11kit
hf_nginx_start
hf_run hf_case_handshakes 2000
hf_run hf_case_reload
hf_run hf_case_outage "p11-kit server" 5
hf_run hf_case_quit
hf_finish
