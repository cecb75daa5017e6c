package netfilter

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestOutsideFilter(t *testing.T) {
	f := outsideFilter{keep: mustPrefixes("198.19.0.0/24", "fd00:19::/64")}
	flow := func(osrc, odst, rsrc, rdst string) *netlink.ConntrackFlow {
		var fl netlink.ConntrackFlow
		fl.Forward.SrcIP, fl.Forward.DstIP = net.ParseIP(osrc), net.ParseIP(odst)
		fl.Reverse.SrcIP, fl.Reverse.DstIP = net.ParseIP(rsrc), net.ParseIP(rdst)
		return &fl
	}
	tests := map[string]struct {
		flow *netlink.ConntrackFlow
		kill bool
	}{
		"beacon to c2":             {flow("198.18.0.10", "198.18.0.200", "198.18.0.200", "198.18.0.10"), true},
		"beacon to c2 over ipv6":   {flow("fd00:18::a", "fd00:18::c8", "fd00:18::c8", "fd00:18::a"), true},
		"management session":       {flow("198.19.0.10", "198.18.0.10", "198.18.0.10", "198.19.0.10"), false},
		"gateway to management v6": {flow("fd00:18::a", "fd00:19::a", "fd00:19::a", "fd00:18::a"), false},
		"dnat to management":       {flow("198.18.0.200", "198.18.0.10", "198.19.0.10", "198.18.0.200"), false},
		"loopback":                 {flow("127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1"), false},
		"mapped address":           {flow("::ffff:198.19.0.10", "198.18.0.10", "198.18.0.10", "::ffff:198.19.0.10"), false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := f.MatchConntrackFlow(tc.flow); got != tc.kill {
				t.Errorf("kill = %t, want %t", got, tc.kill)
			}
		})
	}
}

func addrOf(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}
