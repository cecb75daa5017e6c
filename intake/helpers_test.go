package intake

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/warden-ir/warden/inventory"
)

// testNow is the intake time used throughout the tests.
var testNow = time.Date(2025, 3, 14, 3, 10, 0, 0, time.UTC)

// testInventory is a four-site VPN: hq, an HA pair in osaka, a factory and
// an empty data-centre site.
func testInventory(tb testing.TB) *inventory.Inventory {
	tb.Helper()
	inv := &inventory.Inventory{
		Sites: []inventory.Site{
			{Name: "hq", TimeZone: "Asia/Tokyo"},
			{Name: "osaka", TimeZone: "Asia/Tokyo"},
			{Name: "factory", TimeZone: "Asia/Tokyo"},
			{Name: "dc"},
		},
		Gateways: []inventory.Gateway{
			{ID: "gw-hq", Site: "hq", VM: "gw-hq", Hostname: "gw-hq.corp.example",
				Addresses: []string{"203.0.113.10", "10.10.0.1", "2001:db8:10::1"}, ManagementNetworks: []string{"192.168.100.0/24"}},
			{ID: "gw-osaka-a", Site: "osaka", Hostname: "gw-osaka-a.corp.example",
				Addresses: []string{"203.0.113.20", "10.20.0.1"}, ManagementNetworks: []string{"192.168.100.0/24"}},
			{ID: "gw-osaka-b", Site: "osaka", Hostname: "gw-osaka-b.corp.example",
				Addresses: []string{"203.0.113.21", "10.20.0.2"}, ManagementNetworks: []string{"192.168.100.0/24"}},
			{ID: "gw-factory", Site: "factory",
				Addresses: []string{"203.0.113.30", "10.30.0.1", "2001:db8:30::1"}, ManagementNetworks: []string{"192.168.100.0/24"}},
		},
		Tunnels: []inventory.Tunnel{
			{A: "gw-hq", B: "gw-osaka-a", Kind: inventory.KindWireGuard},
			{A: "gw-hq", B: "gw-osaka-b", Kind: inventory.KindWireGuard},
			{A: "gw-hq", B: "gw-factory", Kind: inventory.KindStrongSwan},
		},
	}
	if err := inv.Validate(); err != nil {
		tb.Fatalf("test inventory: %v", err)
	}
	return inv
}

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func testdataFiles(tb testing.TB, pattern string) map[string][]byte {
	tb.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(names) == 0 {
		tb.Fatalf("no testdata matches %s: %v", pattern, err)
	}
	out := map[string][]byte{}
	for _, n := range names {
		out[filepath.Base(n)] = readTestdata(tb, filepath.Base(n))
	}
	return out
}

// checkEachInput runs fn, named name in messages, on every input of tests
// in a subtest of its own, wanting the value tests gives for it.
func checkEachInput[T ~string](t *testing.T, name string, fn func(string) T, tests map[string]T) {
	t.Helper()
	for in, want := range tests {
		t.Run(in, func(t *testing.T) {
			if got := fn(in); got != want {
				t.Errorf("%s(%q) = %q, want %q", name, in, got, want)
			}
		})
	}
}
