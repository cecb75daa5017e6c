package netfilter

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestMergePrefixes(t *testing.T) {
	tests := map[string]struct {
		in   []string
		want string
	}{
		"empty":              {nil, "[]"},
		"single host":        {[]string{"198.19.0.10/32"}, "[198.19.0.10/32]"},
		"host bits cleared":  {[]string{"198.19.0.77/24"}, "[198.19.0.0/24]"},
		"contained":          {[]string{"10.0.0.0/8", "10.1.0.0/16"}, "[10.0.0.0/8]"},
		"adjacent halves":    {[]string{"198.19.0.128/25", "198.19.0.0/25"}, "[198.19.0.0/24]"},
		"overlap to odd end": {[]string{"10.0.0.0/24", "10.0.1.0/25"}, "[10.0.0.0/24 10.0.1.0/25]"},
		"duplicates":         {[]string{"fd00:19::/64", "fd00:19::/64", "fd00:19::1/128"}, "[fd00:19::/64]"},
		"top of space":       {[]string{"255.255.255.0/24", "255.255.254.0/24"}, "[255.255.254.0/23]"},
		"ipv6 sorted":        {[]string{"fd00:19::/64", "2001:db8::/32"}, "[2001:db8::/32 fd00:19::/64]"},
		"ipv6 top of space":  {[]string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120"}, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120]"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var ps []netip.Prefix
			for _, s := range tc.in {
				ps = append(ps, netip.MustParsePrefix(s))
			}
			if got := fmt.Sprint(mergePrefixes(ps)); got != tc.want {
				t.Errorf("mergePrefixes(%v) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestRangePrefixes(t *testing.T) {
	tests := map[string]struct {
		first, last string
		want        string
	}{
		"aligned block": {"10.0.0.0", "10.0.0.255", "[10.0.0.0/24]"},
		"one address":   {"10.0.0.7", "10.0.0.7", "[10.0.0.7/32]"},
		"unaligned":     {"10.0.0.1", "10.0.0.6", "[10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32]"},
		"to the top":    {"255.255.255.254", "255.255.255.255", "[255.255.255.254/31]"},
		"ipv6":          {"fd00::", "fd00::ffff", "[fd00::/112]"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := addrRange{netip.MustParseAddr(tc.first), netip.MustParseAddr(tc.last)}
			if got := fmt.Sprint(r.prefixes()); got != tc.want {
				t.Errorf("prefixes = %s, want %s", got, tc.want)
			}
		})
	}
}
