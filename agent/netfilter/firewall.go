package netfilter

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/warden-ir/warden/agent/wire"
)

// Quarantine is the quarantine rule set in the gateway's kernel, as the
// agent's firewall seam (agent.Firewall, adapted by agent/host) drives it.
// IPTables and NFTables implement it. Every method is idempotent and safe
// for concurrent use.
type Quarantine interface {
	// Apply installs or repairs the quarantine for spec: IPv4 and IPv6,
	// evaluated before any other rule on input, output and forward, dropping
	// everything but loopback, IPv6 neighbour discovery and the spec's
	// prefixes. Apply may be called multiple times with identical specs; it
	// reports changed=false when the rules already matched and then changes
	// nothing. Established flows are not touched: call KillFlows afterwards.
	Apply(ctx context.Context, spec wire.QuarantineSpec) (changed bool, err error)
	// Remove removes exactly what Apply added and nothing else; changed is
	// false when there was nothing to remove.
	Remove(ctx context.Context) (changed bool, err error)
	// Observe reads the rules back from the kernel.
	Observe(ctx context.Context) (State, error)
}

// Backends, by the names operators choose them with. Both rule sets have
// both, and each rule set's backend is chosen on its own.
const (
	BackendNFTables = "nftables"
	BackendIPTables = "iptables"
)

// Family is an IP family.
type Family string

// Families.
const (
	IPv4 Family = "ipv4"
	IPv6 Family = "ipv6"
)

// Hook is a netfilter hook the quarantine must cover.
type Hook string

// Hooks.
const (
	HookInput   Hook = "input"
	HookOutput  Hook = "output"
	HookForward Hook = "forward"
)

func allHooks() []Hook { return []Hook{HookInput, HookOutput, HookForward} }

// ErrInvalidSpec is wrapped by Apply for a spec it refuses (no management
// network, a /0 or invalid prefix). It is terminal: retrying cannot help.
var ErrInvalidSpec = errors.New("invalid quarantine spec")

// ErrUnavailable is wrapped by the constructors when the backend's tools or
// kernel support are missing. It is terminal.
var ErrUnavailable = errors.New("firewall backend unavailable")

// State is the quarantine as read back from the kernel.
type State struct {
	// Backend is "iptables" or "nftables".
	Backend string
	IPv4    FamilyState
	IPv6    FamilyState
}

// FamilyState describes one family's quarantine rules.
type FamilyState struct {
	// Installed reports that Warden's quarantine chain exists.
	Installed bool
	// Hooked lists the hooks whose traffic reaches the quarantine chain.
	Hooked []Hook
	// First reports that in every hooked chain the quarantine is evaluated
	// before any other rule, so no ESTABLISHED accept can let a packet past
	// it (iptables: exactly one jump, at position 1; nftables: the jump is
	// the first rule of Warden's base chains, and an accept in another table
	// cannot override a drop).
	First bool
	// Loopback reports that loopback traffic is accepted.
	Loopback bool
	// NeighborDiscovery reports that IPv6 neighbour solicitations and
	// advertisements (hop limit 255) are accepted: without them no IPv6
	// neighbour, management's router included, can be resolved.
	NeighborDiscovery bool
	// Allowed lists the prefixes accepted in both directions, merged into
	// the fewest prefixes and sorted.
	Allowed []netip.Prefix
	// DropsRest reports that the chain ends in an unconditional drop.
	DropsRest bool
	// Unexpected lists rules found in Warden's chains that Warden would not
	// have written (an accept added by hand, a one-way allow).
	Unexpected []string
}

// Enforced reports that this family's quarantine is fully in force: every
// hook covered first, ending in a drop, with no foreign rule in it.
func (f FamilyState) Enforced() bool {
	return f.Installed && len(f.Hooked) == len(allHooks()) && f.First && f.DropsRest && len(f.Unexpected) == 0
}

// Quarantined reports that both families are enforced.
func (s State) Quarantined() bool { return s.IPv4.Enforced() && s.IPv6.Enforced() }

// Absent reports that no trace of Warden's rules remains.
func (s State) Absent() bool {
	return !s.IPv4.Installed && !s.IPv6.Installed && len(s.IPv4.Hooked) == 0 && len(s.IPv6.Hooked) == 0
}

// Drift lists how the observed state differs from what Apply(spec) installs;
// it is empty when they match.
func (s State) Drift(spec wire.QuarantineSpec) ([]string, error) {
	want, err := allowListOf(spec)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range []struct {
		fam   Family
		got   FamilyState
		allow []netip.Prefix
	}{{IPv4, s.IPv4, want.v4}, {IPv6, s.IPv6, want.v6}} {
		if !f.got.Installed {
			out = append(out, fmt.Sprintf("%s: quarantine chain missing", f.fam))
		}
		for _, h := range allHooks() {
			if !slices.Contains(f.got.Hooked, h) {
				out = append(out, fmt.Sprintf("%s: %s not hooked to the quarantine", f.fam, h))
			}
		}
		if !f.got.Installed {
			continue
		}
		if !f.got.First {
			out = append(out, fmt.Sprintf("%s: another rule is evaluated before the quarantine", f.fam))
		}
		if !f.got.Loopback {
			out = append(out, fmt.Sprintf("%s: loopback not accepted", f.fam))
		}
		if f.fam == IPv6 && !f.got.NeighborDiscovery {
			out = append(out, fmt.Sprintf("%s: neighbour discovery not accepted", f.fam))
		}
		if !slices.Equal(f.got.Allowed, f.allow) {
			out = append(out, fmt.Sprintf("%s: allows %v, want %v", f.fam, f.got.Allowed, f.allow))
		}
		if !f.got.DropsRest {
			out = append(out, fmt.Sprintf("%s: does not end in a drop", f.fam))
		}
		for _, r := range f.got.Unexpected {
			out = append(out, fmt.Sprintf("%s: unexpected rule %q", f.fam, r))
		}
	}
	return out, nil
}

// allowList is a spec's prefixes per family, merged and sorted.
type allowList struct{ v4, v6 []netip.Prefix }

// allowListOf validates the spec and normalises its prefixes: IPv4-mapped
// IPv6 prefixes become IPv4, host bits are cleared, overlapping and adjacent
// prefixes are merged.
func allowListOf(s wire.QuarantineSpec) (allowList, error) {
	if len(s.Management) == 0 {
		return allowList{}, fmt.Errorf("%w: no management network: the quarantine would lock responders out", ErrInvalidSpec)
	}
	var v4, v6 []netip.Prefix
	for _, group := range []struct {
		name string
		ps   []netip.Prefix
	}{{"management", s.Management}, {"forensics", s.Forensics}} {
		for _, p := range group.ps {
			if !p.IsValid() {
				return allowList{}, fmt.Errorf("%w: %s prefix %v is not valid", ErrInvalidSpec, group.name, p)
			}
			p = wire.CanonicalPrefix(p)
			if p.Bits() == 0 {
				return allowList{}, fmt.Errorf("%w: %s prefix %v would allow everything", ErrInvalidSpec, group.name, p)
			}
			if p.Addr().Is4() {
				v4 = append(v4, p)
			} else {
				v6 = append(v6, p)
			}
		}
	}
	return allowList{v4: mergePrefixes(v4), v6: mergePrefixes(v6)}, nil
}

// family returns the prefixes of one family.
func (a allowList) family(f Family) []netip.Prefix {
	if f == IPv4 {
		return a.v4
	}
	return a.v6
}
