#!/usr/bin/env bash
# Installs everything hwkey needs to build, test and demo on Debian 12.
# Idempotent: does nothing (no network) when every package is already present;
# otherwise runs apt-get update once, then one apt-get install.
set -euo pipefail

PACKAGES=(
    # build
    build-essential autoconf automake libtool autoconf-archive pkg-config git rsync
    libssl-dev libtss2-dev libp11-kit-dev libcmocka-dev clang clang-format libclang-rt-14-dev
    # TPM test and demo tooling (never linked)
    tpm2-tools swtpm swtpm-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus dbus-daemon
    # PKCS#11 test tooling
    softhsm2 opensc p11-kit
    # interop partners and servers
    tpm2-openssl libengine-pkcs11-openssl openssl nginx curl wrk haproxy nodejs
    # used by the test scripts
    iproute2 procps valgrind gdb
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: all ${#PACKAGES[@]} packages already installed"
    exit 0
fi

SUDO=()
if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=(sudo -n)
fi

# Another apt or dpkg (unattended-upgrades at boot, a second install) holding
# the lock makes apt-get fail at once with exit 100 ("Could not get lock").
# Wait for it instead: apt's own lock timeout, and around it a retry for the
# locks that timeout does not cover (the lists lock of apt-get update), up to
# LOCK_WAIT seconds in all.
LOCK_WAIT=${HWKEY_APT_LOCK_WAIT:-900}
RETRY_SECS=${HWKEY_APT_LOCK_RETRY_SECS:-10}
APT_OPTS=(-q -o "DPkg::Lock::Timeout=$LOCK_WAIT")

apt_get() {
    local start=$SECONDS rc err
    err=$(mktemp)
    while :; do
        rc=0
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" "$@" </dev/null 2>"$err" || rc=$?
        if ((rc == 100)) && grep -q "Could not get lock" "$err" && ((SECONDS - start < LOCK_WAIT)); then
            echo "install-deps: apt is locked by another process ($(grep -m1 -o 'held by process [0-9]*.*' "$err" || echo 'unknown')); waiting"
            sleep "$RETRY_SECS"
            continue
        fi
        cat "$err" >&2
        rm -f "$err"
        return "$rc"
    done
}

echo "install-deps: installing ${missing[*]}"
apt_get update
apt_get install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
