#!/usr/bin/env bash
# Installs the systems `make bench-peers` compares Warden with, from
# Debian's packages only (apt-get, nothing else downloaded). Not part of
# `make deps`: only the peer comparison needs them. Idempotent; needs root
# (without it, it says what is missing and the comparison skips).
#
# It starts no service and leaves none enabled that it brought: the
# comparison starts each system as one process of its own, with its own
# configuration and state in a temporary folder, inside the namespace lab
# where it matters. A system fail2ban, CrowdSec or bouncer would read the
# host's logs and change the host's firewall.
set -euo pipefail

# What is installed (with --no-install-recommends), and why:
#   fail2ban                   1.0.2: its sshd jail and nftables action,
#                              the classic responder to SSH password
#                              guessing
#   python3-pyinotify          fail2ban's inotify backend (a Recommends):
#                              without it fail2ban polls its logs once a
#                              second, which would not be its best figure
#   crowdsec                   1.4.6: its LAPI (intake load) and agent
#                              (acquisition of the lab's auth.log, the
#                              ssh-bf scenario)
#   crowdsec-firewall-bouncer  0.0.25: the bouncer that turns CrowdSec's
#                              decisions into nftables drops
#   prometheus-alertmanager    0.25: the in-memory alert intake Warden's
#                              durable intake is compared with
packages=(fail2ban python3-pyinotify crowdsec crowdsec-firewall-bouncer prometheus-alertmanager)

# Every one of them ships a service Debian enables at install.
no_services_from() {
  case $1 in
  fail2ban | crowdsec | crowdsec-firewall-bouncer | prometheus-alertmanager | python3-systemd) return 0 ;;
  *) return 1 ;;
  esac
}

# crowdsec's postinst registers the machine with CrowdSec's central API
# (an online service) unless /etc/crowdsec/online_api_credentials.yaml
# exists and is not empty (Debian's README.Debian): registration cannot
# work here and is not wanted, the comparison runs a local API only. A
# package left half-configured by an earlier failed run is configured
# again by dpkg once the file is there.
before_install() {
  if [[ " $* " == *" crowdsec "* ]] && [ ! -s /etc/crowdsec/online_api_credentials.yaml ]; then
    mkdir -p /etc/crowdsec
    printf '%s\n' '# written by warden hack/install-peers.sh: no registration with the central API' \
      >/etc/crowdsec/online_api_credentials.yaml
  fi
  if dpkg-query -W -f='${Status}' crowdsec 2>/dev/null | grep -q 'half-configured\|unpacked'; then
    dpkg --configure crowdsec
  fi
}

apt_lib_name=install-peers
# shellcheck source=hack/apt-lib.sh
. "$(dirname "$0")/apt-lib.sh"
apt_install_missing "${packages[@]}"
