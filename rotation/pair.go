package rotation

import (
	"sort"

	"github.com/warden-ir/warden/inventory"
)

// Pair is one tunnel between two gateways, with its ends in sorted order
// so that the same tunnel always has the same Pair.
type Pair struct {
	A    string `json:"a"`
	B    string `json:"b"`
	Kind string `json:"kind"` // inventory.KindWireGuard or inventory.KindStrongSwan
}

// NewPair returns the pair of kind between x and y.
func NewPair(kind, x, y string) Pair {
	if y < x {
		x, y = y, x
	}
	return Pair{A: x, B: y, Kind: kind}
}

// PairOf returns the pair of an inventory tunnel.
func PairOf(t inventory.Tunnel) Pair { return NewPair(t.Kind, t.A, t.B) }

// String is "kind:a<->b".
func (p Pair) String() string { return p.Kind + ":" + p.A + "<->" + p.B }

// subject is the pair's key in the credential table.
func (p Pair) subject() string { return p.Kind + ":" + p.A + "|" + p.B }

// Has reports whether gw is an end of the pair.
func (p Pair) Has(gw string) bool { return p.A == gw || p.B == gw }

// Other returns the end that is not gw.
func (p Pair) Other(gw string) string {
	if p.A == gw {
		return p.B
	}
	return p.A
}

// Fleet lists the pairs of tunnels that do not touch compromised, sorted:
// what a fleet runbook rotates once compromised has been revoked. Duplicate
// tunnels collapse into one pair.
func Fleet(tunnels []inventory.Tunnel, compromised string) []Pair {
	seen := map[Pair]bool{}
	var out []Pair
	for _, t := range tunnels {
		p := PairOf(t)
		if p.Has(compromised) || seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Sites lists the distinct ends of pairs of the given kind, sorted.
func Sites(pairs []Pair, kind string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range pairs {
		if p.Kind != kind {
			continue
		}
		for _, s := range []string{p.A, p.B} {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	sort.Strings(out)
	return out
}
