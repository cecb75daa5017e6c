#!/usr/bin/env bash
# Installs what Warden's tests need on a fresh Debian 12 machine with Go:
# Debian packages for the network-namespace labs, and the Go modules.
# Idempotent: packages already installed are not touched, and apt-get
# update runs only when something is missing. Needs root for apt-get;
# without root it says what is missing and goes on (those e2e tests skip).
set -euo pipefail

# Namespace labs and the quarantine firewall; tunnels (WireGuard userspace,
# strongSwan charon with kernel-libipsec for a data plane on kernels without
# ESP); headless Chromium and CJK fonts for the report screenshot test.
packages=(iproute2 iptables nftables conntrack iputils-ping procps
  wireguard-go wireguard-tools
  strongswan-charon strongswan-swanctl libcharon-extra-plugins
  chromium fonts-noto-cjk)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "install-deps: not root; missing Debian packages: ${missing[*]} (the namespace e2e tests will skip)" >&2
  fi
fi

go mod download
