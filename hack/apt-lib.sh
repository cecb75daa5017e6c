# Helpers for Warden's install scripts (hack/install-deps.sh,
# hack/install-peers.sh), sourced, not run. They install Debian packages
# with apt-get without starting any service the packages ship, and disable
# afterwards the units that a package enables at install, so that what the
# tests and benchmarks start themselves is all that runs.
#
# A script sets `packages` (the list) and defines `no_services_from NAME`
# (exit 0 for a package whose services must not be left enabled), then
# calls apt_install_missing.

# The marker line identifies the policy-rc.d these scripts write: a run
# killed before removing it leaves one the next run recognises and removes.
policy=/usr/sbin/policy-rc.d
policy_marker='# written by warden hack/install-deps.sh while apt-get runs'

installed_packages() {
  dpkg-query -W -f='${db:Status-Status} ${Package}\n' 2>/dev/null | awk '$1 == "installed" {print $2}' | sort -u
}

# missing_packages prints those of its arguments that are not installed.
missing_packages() {
  local p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      echo "$p"
    fi
  done
}

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
        echo "$apt_lib_name: could not disable $unit (from $1); a system daemon may run beside the tests' own" >&2
        continue
      fi
    elif [ -x "/etc/init.d/$unit" ] && compgen -G "/etc/rc[2-5].d/S??$unit" >/dev/null; then
      update-rc.d "$unit" disable >/dev/null || continue
    else
      continue
    fi
    echo "$apt_lib_name: disabled $unit (from $1, installed by this run; the tests start their own daemons)"
  done
}

remove_policy() {
  if [ -f "$policy" ] && grep -qxF "$policy_marker" "$policy"; then
    rm -f "$policy"
  fi
}

# apt_install_missing installs the missing ones of "$@" with
# --no-install-recommends, no service started while apt-get runs, and
# disables afterwards the units of what it added for which
# no_services_from says so. before_install (if defined) runs first, with
# the missing packages as arguments. Returns apt-get's status.
apt_install_missing() {
  local missing before status=0 p
  mapfile -t missing < <(missing_packages "$@")
  [ ${#missing[@]} -gt 0 ] || return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "$apt_lib_name: not root; missing Debian packages: ${missing[*]} (what needs them will skip)" >&2
    return 0
  fi
  echo "$apt_lib_name: installing ${missing[*]}"
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
  if declare -F before_install >/dev/null; then
    before_install "${missing[@]}"
  fi
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
  return "$status"
}
