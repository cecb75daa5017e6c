package netfilter

import (
	"net/netip"
	"slices"
)

// addrRange is an inclusive range of addresses of one family.
type addrRange struct{ first, last netip.Addr }

// lastAddr returns the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// toRanges merges prefixes (of one family) into sorted, disjoint,
// non-adjacent ranges.
func toRanges(ps []netip.Prefix) []addrRange {
	rs := make([]addrRange, 0, len(ps))
	for _, p := range ps {
		p = p.Masked()
		rs = append(rs, addrRange{p.Addr(), lastAddr(p)})
	}
	slices.SortFunc(rs, func(a, b addrRange) int { return a.first.Compare(b.first) })
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			cur := &out[n-1]
			next := cur.last.Next() // invalid when cur ends at the top address
			if !next.IsValid() || r.first.Compare(next) <= 0 {
				if r.last.Compare(cur.last) > 0 {
					cur.last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// prefixes splits a range into the fewest CIDR prefixes.
func (r addrRange) prefixes() []netip.Prefix {
	var out []netip.Prefix
	first := r.first
	for first.IsValid() && first.Compare(r.last) <= 0 {
		// The widest prefix that starts at first and ends inside the range.
		for bits := 0; bits <= first.BitLen(); bits++ {
			p := netip.PrefixFrom(first, bits)
			if p.Masked().Addr() != first || lastAddr(p).Compare(r.last) > 0 {
				continue
			}
			out = append(out, p)
			first = lastAddr(p).Next()
			break
		}
	}
	return out
}

// mergePrefixes returns the fewest prefixes covering exactly the union of ps,
// sorted.
func mergePrefixes(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range toRanges(ps) {
		out = append(out, r.prefixes()...)
	}
	return out
}
