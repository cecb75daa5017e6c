#!/usr/bin/env bash
# Installs what Warden's tests need on a fresh Debian 12 machine with Go:
# Debian packages for the network-namespace labs, and the Go modules.
# Idempotent: packages already installed are not touched, and apt-get
# update runs only when something is missing. Needs root for apt-get;
# without root it says what is missing and goes on (those e2e tests skip).
#
# It starts no service and leaves none enabled that it brought: the tests
# start their own charon (one per lab namespace, private /run), and a system
# charon from strongswan-starter.service would hold UDP 500/4500 and
# /run/charon.vici in the root namespace and come back at every boot.
set -euo pipefail

# What is installed (with --no-install-recommends), and why:
#   iproute2          `ip netns`, links and addresses: every namespace lab
#   iptables          the iptables quarantine and peer-block backends and
#                     their tests (iptables/ip6tables, -save, -restore)
#   nftables          `nft`: the nftables backends, their tests, evidence
#   conntrack         the conntrack CLI, to look at a lab's flow table by
#                     hand (the agent kills flows over netlink, not with it)
#   iputils-ping      `ping`: the Linux demo (`warden demo` on namespaces)
#   procps            `sysctl` inside lab namespaces (drift e2e tests)
#   wireguard-go      the userspace WireGuard device the tunnel labs run
#   wireguard-tools   `wg`, to look at a lab's devices by hand (the tests
#                     speak UAPI through wgctrl)
#   strongswan-charon /usr/lib/ipsec/charon, started by the strongSwan labs;
#                     it pulls in strongswan-starter (disabled below)
#   strongswan-swanctl
#                     swanctl, to look at a lab's charon by hand (the tests
#                     speak VICI through govici)
#   libcharon-extra-plugins
#                     kernel-libipsec: a userspace ESP data plane on a TUN
#                     device, so tunnels carry traffic on kernels without ESP
#   chromium          headless rendering of the HTML incident report, and the
#                     browser the web console's end-to-end test drives
#   fonts-noto-cjk    Japanese glyphs for both
#   openssh-server    a real sshd on a lab gateway, whose failed and
#                     accepted logins the agent's auth sensor reads (the
#                     test starts it in the namespace; ssh.service is
#                     disabled below)
#   postgresql        initdb and postgres (Debian 12: version 15) for the
#                     PostgreSQL store: the conformance suite, the replica
#                     e2e tests and the intake benchmark each start a
#                     private cluster in a temporary folder
#                     (store/pgtest); no cluster of the system's is made
#                     or started (below)
packages=(iproute2 iptables nftables conntrack iputils-ping procps
  wireguard-go wireguard-tools
  strongswan-charon strongswan-swanctl libcharon-extra-plugins
  chromium fonts-noto-cjk openssh-server postgresql)

# Services shipped by these packages (or the strongSwan packages they pull
# in) are disabled when this run installed the package. Debian enables
# strongswan-starter.service (the `ipsec` starter, which runs charon),
# ssh.service (an sshd on port 22 of the root namespace) and
# postgresql.service (which starts every cluster of the system's) on
# install; the others are listed in case a package starts enabling one.
no_services_from() {
  case $1 in
  strongswan* | libstrongswan* | *charon* | nftables | wireguard-tools | openssh-server | postgresql*) return 0 ;;
  *) return 1 ;;
  esac
}

# Debian's postgresql-15 makes a cluster "15/main" (a server on port 5432
# under /var/lib/postgresql) when first installed. The tests start their
# own; none of the system's is wanted. Saying so before the install, in a
# file of the folder createcluster.conf includes, means none is made
# (rather than made and then stopped): postgresql-common's postinst reads
# create_main_cluster through that include. The file stays, so that a later
# postgresql-NN makes none either.
before_install() {
  if [[ " $* " == *" postgresql "* ]] && [ ! -e /etc/postgresql-common/createcluster.d/warden-no-main-cluster.conf ]; then
    mkdir -p /etc/postgresql-common/createcluster.d
    printf '%s\n' '# written by warden hack/install-deps.sh: the tests start private clusters' \
      'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/warden-no-main-cluster.conf
  fi
}

apt_lib_name=install-deps
# shellcheck source=hack/apt-lib.sh
. "$(dirname "$0")/apt-lib.sh"
apt_install_missing "${packages[@]}"

go mod download
