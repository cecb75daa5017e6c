package netfilter

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/warden-ir/warden/agent/wire"
)

func TestSpecAllowList(t *testing.T) {
	tests := map[string]struct {
		spec     wire.QuarantineSpec
		want4    string
		want6    string
		wantErr  error
		errMatch string
	}{
		"management and forensics merged per family": {
			spec:  wire.QuarantineSpec{Management: mustPrefixes("198.19.0.0/24", "fd00:19::/64"), Forensics: mustPrefixes("198.19.0.5/32", "203.0.113.7/32")},
			want4: "[198.19.0.0/24 203.0.113.7/32]", want6: "[fd00:19::/64]",
		},
		"mapped ipv6 counts as ipv4": {
			spec:  wire.QuarantineSpec{Management: mustPrefixes("::ffff:198.19.0.0/120")},
			want4: "[198.19.0.0/24]", want6: "[]",
		},
		"no management":  {spec: wire.QuarantineSpec{Forensics: mustPrefixes("203.0.113.7/32")}, wantErr: ErrInvalidSpec, errMatch: "lock responders out"},
		"everything v4":  {spec: wire.QuarantineSpec{Management: mustPrefixes("0.0.0.0/0")}, wantErr: ErrInvalidSpec, errMatch: "allow everything"},
		"everything v6":  {spec: wire.QuarantineSpec{Management: mustPrefixes("198.19.0.0/24"), Forensics: mustPrefixes("::/0")}, wantErr: ErrInvalidSpec, errMatch: "forensics"},
		"invalid prefix": {spec: wire.QuarantineSpec{Management: []netip.Prefix{{}}}, wantErr: ErrInvalidSpec, errMatch: "not valid"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := allowListOf(tc.spec)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.errMatch) {
					t.Fatalf("allowList error = %v, want %v mentioning %q", err, tc.wantErr, tc.errMatch)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := sprint(got.v4); g != tc.want4 {
				t.Errorf("v4 = %s, want %s", g, tc.want4)
			}
			if g := sprint(got.v6); g != tc.want6 {
				t.Errorf("v6 = %s, want %s", g, tc.want6)
			}
		})
	}
}

func sprint(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return "[" + strings.Join(s, " ") + "]"
}

func TestDrift(t *testing.T) {
	full := func(allowed ...string) FamilyState {
		return FamilyState{Installed: true, Hooked: allHooks(), First: true, Loopback: true, NeighborDiscovery: true, DropsRest: true, Allowed: mustPrefixes(allowed...)}
	}
	spec := wire.QuarantineSpec{Management: mustPrefixes("198.19.0.0/24", "fd00:19::/64")}
	tests := map[string]struct {
		state       State
		quarantined bool
		want        []string
	}{
		"exact": {State{IPv4: full("198.19.0.0/24"), IPv6: full("fd00:19::/64")}, true, nil},
		"nothing installed": {State{}, false, []string{
			"ipv4: quarantine chain missing", "ipv4: input not hooked", "ipv6: quarantine chain missing",
		}},
		"extra allowed prefix is drift but still enforced": {
			State{IPv4: full("198.19.0.0/24", "203.0.113.0/24"), IPv6: full("fd00:19::/64")}, true,
			[]string{"ipv4: allows [198.19.0.0/24 203.0.113.0/24], want [198.19.0.0/24]"},
		},
		"jump below another rule": {
			State{IPv4: full("198.19.0.0/24"), IPv6: func() FamilyState { f := full("fd00:19::/64"); f.First = false; return f }()}, false,
			[]string{"ipv6: another rule is evaluated before the quarantine"},
		},
		"hand-made rule in the chain": {
			State{IPv4: func() FamilyState {
				f := full("198.19.0.0/24")
				f.Unexpected = []string{"-s 10.0.0.0/8 -j ACCEPT"}
				return f
			}(), IPv6: full("fd00:19::/64")}, false,
			[]string{`ipv4: unexpected rule "-s 10.0.0.0/8 -j ACCEPT"`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := tc.state.Drift(spec)
			if err != nil {
				t.Fatal(err)
			}
			if tc.state.Quarantined() != tc.quarantined {
				t.Errorf("Quarantined = %t, want %t", !tc.quarantined, tc.quarantined)
			}
			joined := strings.Join(got, "\n")
			for _, w := range tc.want {
				if !strings.Contains(joined, w) {
					t.Errorf("Drift = %q, want a line %q", got, w)
				}
			}
			if tc.want == nil && len(got) != 0 {
				t.Errorf("Drift = %q, want none", got)
			}
		})
	}
	if _, err := (State{}).Drift(wire.QuarantineSpec{}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("Drift with an invalid spec = %v, want ErrInvalidSpec", err)
	}
}
