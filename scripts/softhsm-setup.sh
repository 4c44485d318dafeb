#!/bin/sh
# Creates a fresh SoftHSM token store in DIR and one token "hwkey-test"
# (user PIN 1234, SO PIN 5678), so tests never touch /var/lib/softhsm.
#
#   eval "$(scripts/softhsm-setup.sh DIR)"     # exports SOFTHSM2_CONF
#
# Options through the environment:
#   HWKEY_SOFTHSM_LABEL           token label (default hwkey-test)
#   HWKEY_SOFTHSM_PIN / _SO_PIN   PINs (default 1234 / 5678)
#   HWKEY_SOFTHSM_RESET_ON_FORK   true: SoftHSM resets its state in a forked
#                                 child, like a remote HSM would (default false)
# Prints "export SOFTHSM2_CONF=...; export HWKEY_SOFTHSM_MODULE=..." on stdout.
# Exit 77 when SoftHSM is not installed (the test-suite's "skip").
set -eu

dir=${1:?usage: softhsm-setup.sh DIR}
label=${HWKEY_SOFTHSM_LABEL:-hwkey-test}
pin=${HWKEY_SOFTHSM_PIN:-1234}
so_pin=${HWKEY_SOFTHSM_SO_PIN:-5678}
reset=${HWKEY_SOFTHSM_RESET_ON_FORK:-false}
module=/usr/lib/softhsm/libsofthsm2.so

if ! command -v softhsm2-util >/dev/null 2>&1 || [ ! -f "$module" ]; then
    echo "softhsm-setup: SoftHSM (softhsm2-util, $module) is not installed" >&2
    exit 77
fi

mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
cat >"$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
slots.mechanisms = ALL
library.reset_on_fork = $reset
CONF
SOFTHSM2_CONF=$dir/softhsm2.conf
export SOFTHSM2_CONF
softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$so_pin" >/dev/null
echo "export SOFTHSM2_CONF='$SOFTHSM2_CONF'; export HWKEY_SOFTHSM_MODULE='$module'"
