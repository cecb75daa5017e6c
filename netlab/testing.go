package netlab

import (
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Skip skips the test, with a message saying what is missing, unless a lab
// can be built here: running as root, network namespaces available, and the
// `ip` command (Debian: iproute2) plus any extra tools the test names (for
// example "iptables", "nft") in PATH.
//
// Building a lab or a namespace needs no external command, and Ping is pure
// Go, but `ip` stays required: Run and Lab.Run (`ip netns exec`) are how
// most lab tests run commands inside a node, and iproute2 is on every
// Debian system, so checking it here spares each caller from naming it.
func Skip(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netlab: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to build network namespaces")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("netlab: %s not found in PATH; on Debian: apt-get install --no-install-recommends iproute2 iptables nftables conntrack", tool)
		}
	}
	if err := os.MkdirAll(namespaceDir, 0o755); err != nil {
		t.Skipf("netlab: cannot create %s for named namespaces: %v", namespaceDir, err)
	}
	if err := probeNamespaces(); err != nil {
		t.Skipf("netlab: network namespaces unavailable: %v", err)
	}
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
