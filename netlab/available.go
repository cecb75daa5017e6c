package netlab

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// UnavailableError says why a lab cannot be built on this machine, in
// words a person can act on (what is missing, which Debian package has it).
type UnavailableError struct{ Reason string }

func (e *UnavailableError) Error() string { return e.Reason }

func unavailable(format string, args ...any) error {
	return &UnavailableError{Reason: fmt.Sprintf(format, args...)}
}

// Available reports whether a lab can be built here: running as root,
// network namespaces available, and the `ip` command (Debian: iproute2)
// plus any extra tools the caller names (for example "iptables", "nft") in
// PATH. It returns nil, or an *UnavailableError saying what is missing.
// Tests skip through netlab/netlabtest, which keeps the `testing` package
// out of this one (and out of every binary that builds labs).
//
// Building a lab or a namespace needs no external command, and Ping is pure
// Go, but `ip` stays required: Run and Lab.Run (`ip netns exec`) are how
// most lab tests run commands inside a node, and iproute2 is on every
// Debian system, so checking it here spares each caller from naming it.
func Available(tools ...string) error {
	if os.Geteuid() != 0 {
		return unavailable("netlab: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to build network namespaces")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			return unavailable("netlab: %s not found in PATH; on Debian: apt-get install --no-install-recommends iproute2 iptables nftables conntrack", tool)
		}
	}
	if err := os.MkdirAll(namespaceDir, 0o755); err != nil {
		return unavailable("netlab: cannot create %s for named namespaces: %v", namespaceDir, err)
	}
	if err := probeNamespaces(); err != nil {
		return unavailable("netlab: network namespaces unavailable: %v", err)
	}
	return nil
}

// WireGuardAvailable is Available plus wireguard-go and /dev/net/tun, which
// StartWireGuard needs.
func WireGuardAvailable() error {
	if err := Available(); err != nil {
		return err
	}
	if _, err := exec.LookPath("wireguard-go"); err != nil {
		return unavailable("netlab: wireguard-go not found; on Debian: apt-get install --no-install-recommends wireguard-go wireguard-tools")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return unavailable("netlab: wireguard-go needs /dev/net/tun: %v", err)
	}
	return nil
}

// StrongSwanAvailable is Available plus charon with the kernel-libipsec
// plugin, which StartStrongSwan needs.
func StrongSwanAvailable() error {
	if err := Available(); err != nil {
		return err
	}
	for _, f := range []string{CharonPath, kernelLibipsecPlugin, "/dev/net/tun"} {
		if _, err := os.Stat(f); err != nil {
			return unavailable("netlab: %s missing; on Debian: apt-get install --no-install-recommends strongswan-charon strongswan-swanctl libcharon-extra-plugins", f)
		}
	}
	return nil
}

// probeNamespaces creates an anonymous network namespace on a throw-away
// thread: the goroutine exits still locked, so the runtime discards the
// thread instead of reusing it.
func probeNamespaces() error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- unix.Unshare(unix.CLONE_NEWNET)
	}()
	return <-errc
}
