#!/usr/bin/env bash
# Installs everything hwkey needs to build, test and demo on Debian 12.
# Idempotent: does nothing (no network) when every package is already present;
# otherwise runs apt-get update once, then one apt-get install.
set -euo pipefail

PACKAGES=(
    # build
    build-essential autoconf automake libtool autoconf-archive pkg-config git rsync
    libssl-dev libtss2-dev libp11-kit-dev libcmocka-dev clang libclang-rt-14-dev
    # TPM test and demo tooling (never linked)
    tpm2-tools swtpm swtpm-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus dbus-daemon
    # PKCS#11 test tooling
    softhsm2 opensc p11-kit
    # interop partners and servers
    tpm2-openssl libengine-pkcs11-openssl openssl nginx curl wrk haproxy
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

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" </dev/null
