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

# The marker line identifies the policy-rc.d this script writes: a run
# killed before removing it leaves one the next run recognises and removes.
policy=/usr/sbin/policy-rc.d
policy_marker='# written by warden hack/install-deps.sh while apt-get runs'

installed_packages() {
  dpkg-query -W -f='${db:Status-Status} ${Package}\n' 2>/dev/null | awk '$1 == "installed" {print $2}' | sort -u
}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# units_of prints the systemd units and SysV init scripts package $1 ships
# (not templates: an instance must be enabled by name, none is by install).
units_of() {
  dpkg-query -L "$1" 2>/dev/null |
    sed -n -E 's#^/(usr/)?lib/systemd/system/([^/@]+\.(service|socket|timer|path))$#\2#p; s#^/etc/init\.d/([^/]+)$#\1#p'
}

# disable_units_of disables (and stops, on a running systemd) every unit of
# package $1 that is enabled. Aliases answer "alias" and go with their unit.
disable_units_of() {
  local unit state
  for unit in $(units_of "$1"); do
    if command -v systemctl >/dev/null; then
      state=$(systemctl is-enabled "$unit" 2>/dev/null) || true
      [ "$state" = enabled ] || continue
      local now=()
      [ -d /run/systemd/system ] && now=(--now)
      if ! systemctl disable "${now[@]}" --quiet "$unit"; then
        echo "install-deps: could not disable $unit (from $1); a system daemon may run beside the tests' own" >&2
        continue
      fi
    elif [ -x "/etc/init.d/$unit" ] && compgen -G "/etc/rc[2-5].d/S??$unit" >/dev/null; then
      update-rc.d "$unit" disable >/dev/null || continue
    else
      continue
    fi
    echo "install-deps: disabled $unit (from $1, installed by this run; the tests start their own daemons)"
  done
}

remove_policy() {
  if [ -f "$policy" ] && grep -qxF "$policy_marker" "$policy"; then
    rm -f "$policy"
  fi
}

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    before=$(installed_packages)

    # While apt-get runs, invoke-rc.d and deb-systemd-invoke ask
    # policy-rc.d and start nothing when it exits 101. An administrator's
    # own policy-rc.d is left alone (the disabling below still applies).
    if [ ! -e "$policy" ] || grep -qxF "$policy_marker" "$policy"; then
      trap remove_policy EXIT
      trap 'exit 130' INT
      trap 'exit 143' TERM
      printf '#!/bin/sh\n%s\nexit 101\n' "$policy_marker" >"$policy"
      chmod 0755 "$policy"
    fi
    # Debian's postgresql-15 makes a cluster "15/main" (a server on port
    # 5432 under /var/lib/postgresql) when first installed. The tests start
    # their own; none of the system's is wanted. Saying so before the
    # install, in a file of the folder createcluster.conf includes, means
    # none is made (rather than made and then stopped): postgresql-common's
    # postinst reads create_main_cluster through that include. The file
    # stays, so that a later postgresql-NN makes none either.
    if [[ " ${missing[*]} " == *" postgresql "* ]] && [ ! -e /etc/postgresql-common/createcluster.d/warden-no-main-cluster.conf ]; then
      mkdir -p /etc/postgresql-common/createcluster.d
      printf '%s\n' '# written by warden hack/install-deps.sh: the tests start private clusters' \
        'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/warden-no-main-cluster.conf
    fi
    status=0
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
    remove_policy

    # Start is prevented above, enabling at boot is not (deb-systemd-helper
    # enables regardless of policy-rc.d): undo it for what this run added,
    # also when apt-get failed halfway (a rerun would not see it as new).
    for p in $(comm -13 <(printf '%s\n' "$before") <(installed_packages)); do
      if no_services_from "$p"; then
        disable_units_of "$p"
      fi
    done
    [ "$status" -eq 0 ] || exit "$status"
  else
    echo "install-deps: not root; missing Debian packages: ${missing[*]} (the namespace e2e tests will skip)" >&2
  fi
fi

go mod download
