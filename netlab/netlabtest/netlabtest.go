// Package netlabtest holds the test helpers of netlab: skipping a test,
// with the reason, when a lab cannot be built on this machine, and building
// a lab that is closed when the test ends.
//
// It owns only those helpers. It is the one place that pairs netlab with
// the `testing` package, so netlab itself (linked into the warden binary by
// the demo) must never import it; only tests do.
package netlabtest

import (
	"testing"

	"github.com/warden-ir/warden/netlab"
)

// Skip skips the test, with a message saying what is missing, unless a lab
// can be built here (see netlab.Available): root, network namespaces, `ip`,
// and the extra tools named (for example "iptables", "nft") in PATH.
func Skip(t testing.TB, tools ...string) {
	t.Helper()
	if err := netlab.Available(tools...); err != nil {
		t.Skip(err.Error())
	}
}

// SkipWireGuard skips the test, saying what is missing, unless a lab can be
// built (see Skip) and wireguard-go is installed.
func SkipWireGuard(t testing.TB) {
	t.Helper()
	if err := netlab.WireGuardAvailable(); err != nil {
		t.Skip(err.Error())
	}
}

// SkipStrongSwan skips the test, saying what is missing, unless a lab can be
// built (see Skip) and charon with the kernel-libipsec plugin is installed.
func SkipStrongSwan(t testing.TB) {
	t.Helper()
	if err := netlab.StrongSwanAvailable(); err != nil {
		t.Skip(err.Error())
	}
}

// New builds a lab for the test and closes it when the test ends, failing
// the test if either goes wrong. It does not skip: call Skip (or
// SkipWireGuard, SkipStrongSwan) first.
func New(t testing.TB, opts netlab.Options) *netlab.Lab {
	t.Helper()
	lab, err := netlab.New(t.Context(), opts)
	if err != nil {
		t.Fatalf("building lab: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("closing lab: %v", err)
		}
	})
	return lab
}
