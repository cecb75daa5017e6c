package netfilter

import (
	"net/netip"

	"github.com/warden-ir/warden/agent/wire"
)

// Prefix arithmetic (merging, splitting ranges into prefixes) is package
// wire's, the one implementation the controller, the agent and the kernel
// read-back share, so that a set compares and digests the same on both
// sides.

// mergePrefixes returns the fewest prefixes covering exactly the union of
// ps, sorted, IPv4 first (wire's normal form). Every caller passes valid
// prefixes: validated, or read back from the kernel.
func mergePrefixes(ps []netip.Prefix) []netip.Prefix {
	return wire.RangePrefixes(wire.PrefixRanges(ps))
}

// maxAddr is the highest address of like's family.
func maxAddr(like netip.Addr) netip.Addr {
	if like.Is4() {
		return netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	var all [16]byte
	for i := range all {
		all[i] = 0xff
	}
	return netip.AddrFrom16(all)
}
