package wire

import (
	"net/netip"
	"slices"
)

// QuarantineSpec is the quarantine a gateway keeps in force: everything is
// dropped except loopback (and IPv6 neighbour discovery) and these
// networks, in both directions. The agent builds it from an isolate
// (IsolateParams plus its own management networks and the caller's
// address) and hands it to its firewall seam; the netfilter backends
// validate and install it.
type QuarantineSpec struct {
	// Management holds the controller's and the declared management
	// networks: always reachable, in both directions. At least one is
	// required.
	Management []netip.Prefix
	// Forensics holds extra allowed networks (forensic collectors).
	Forensics []netip.Prefix
}

// Keep returns every prefix the quarantine lets through: the flows to keep
// when killing established ones.
func (s QuarantineSpec) Keep() []netip.Prefix {
	return append(slices.Clone(s.Management), s.Forensics...)
}

// CanonicalPrefix turns an IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104)
// into its IPv4 form and clears host bits, so that both sides compare
// networks in one form.
func CanonicalPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}
