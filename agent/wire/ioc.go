package wire

// The IoC blocklist command and the one normal form of a set of prefixes
// that the controller, the agent and the kernel read-back share: merged
// into the fewest prefixes, sorted, IPv4 first. Digests of that form are
// how the controller checks, without shipping 100,000 prefixes back, that
// a gateway holds exactly the set it asked for.

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
)

// KindIOCBlock replaces or reads back the gateway's IoC blocklist (see
// IOCBlockParams): remote addresses and networks from threat intelligence,
// detectors or an orchestrator, dropped both ways. It is independent of
// the peer blocklist (KindBlock) and of the quarantine.
const KindIOCBlock = "ioc_block"

// Limits of an ioc_block command. Only this kind may exceed
// MaxRequestBytes: a threat-intelligence set of 100,000 prefixes is 2 to 3
// MB of JSON.
const (
	// MaxIOCPrefixes is the most prefixes one IoC set may hold.
	MaxIOCPrefixes = 250_000
	// MaxIOCRequestBytes bounds an ioc_block command's body: MaxIOCPrefixes
	// of the longest IPv6 prefixes ("ffff:…:ffff/128", 46 bytes as a JSON
	// list element) and the envelope.
	MaxIOCRequestBytes = 16 << 20
)

// IOCBlockParams replaces the gateway's whole IoC set or reads it back.
type IOCBlockParams struct {
	// Set replaces the whole IoC set with Prefixes (CIDR strings;
	// addresses are /32 or /128; a bare address is taken as one). Observe
	// (Set false) only reads it back. Set with no prefixes removes the
	// set.
	Set      bool     `json:"set,omitempty"`
	Prefixes []string `json:"prefixes,omitempty"`
}

// IOCBlockResult is the IoC set as read back from the gateway's kernel
// after the command.
type IOCBlockResult struct {
	// Changed reports that the command changed the agent's record or the
	// kernel (a repair of drift counts).
	Changed bool `json:"changed"`
	// Backend is "nftables" or "iptables".
	Backend string `json:"backend"`
	// Count is how many prefixes are in force after merging, read back
	// from the kernel.
	Count int `json:"count"`
	// Digest is PrefixDigest of the set read back from the kernel.
	Digest string `json:"digest"`
	// Enforced reports that the set the agent was last told to hold is
	// installed and intact (every prefix dropped both ways at every hook,
	// nothing evaluated before the drops), or that it is empty and absent.
	Enforced bool `json:"enforced"`
	// Faults lists how the kernel differs from that (a hook missing, a
	// prefix deleted by hand); empty when Enforced.
	Faults []string `json:"faults,omitempty"`
	// Took is how long the agent spent on the command, to the millisecond.
	Took Duration `json:"took,omitzero"`
}

// AddrRange is an inclusive range of addresses of one family.
type AddrRange struct{ First, Last netip.Addr }

// NormalizePrefixes returns the normal form of the set ps stands for:
// IPv4-mapped IPv6 prefixes as IPv4 (CanonicalPrefix), host bits cleared,
// duplicates, overlapping and adjacent prefixes merged into the fewest
// prefixes that cover exactly the same addresses, sorted, IPv4 first. It
// refuses an invalid prefix, naming its index. Normalising a normal form
// returns it unchanged; the result never holds more prefixes than ps.
func NormalizePrefixes(ps []netip.Prefix) ([]netip.Prefix, error) {
	for i, p := range ps {
		if !p.IsValid() {
			return nil, fmt.Errorf("prefixes[%d]: %v is not a valid prefix", i, p)
		}
	}
	return RangePrefixes(PrefixRanges(ps)), nil
}

// PrefixDigest is the hex SHA-256 of the normal form of ps
// (NormalizePrefixes), one prefix per line, each line ending in "\n": two
// lists that cover the same addresses have the same digest however they
// are written. Invalid prefixes, which no set can hold, are left out. The
// empty set's digest is that of no bytes.
func PrefixDigest(ps []netip.Prefix) string {
	h := sha256.New()
	var line []byte
	for _, p := range RangePrefixes(PrefixRanges(ps)) {
		line = append(p.AppendTo(line[:0]), '\n')
		h.Write(line)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// PrefixRanges merges ps into sorted, disjoint, non-adjacent ranges, IPv4
// first, canonicalising each prefix as NormalizePrefixes does. Invalid
// prefixes are skipped: validate first (NormalizePrefixes refuses them).
func PrefixRanges(ps []netip.Prefix) []AddrRange {
	var v4, v6 []numRange
	for _, p := range ps {
		if !p.IsValid() {
			continue
		}
		p = CanonicalPrefix(p)
		if p.Addr().Is4() {
			v4 = append(v4, prefixNumRange(p))
		} else {
			v6 = append(v6, prefixNumRange(p))
		}
	}
	v4, v6 = mergeNumRanges(v4, 32), mergeNumRanges(v6, 128)
	out := make([]AddrRange, 0, len(v4)+len(v6))
	for _, r := range v4 {
		out = append(out, AddrRange{r.first.addr(true), r.last.addr(true)})
	}
	for _, r := range v6 {
		out = append(out, AddrRange{r.first.addr(false), r.last.addr(false)})
	}
	return out
}

// RangePrefixes splits each range into the fewest prefixes covering it, in
// order. Ranges from PrefixRanges give the normal form.
func RangePrefixes(rs []AddrRange) []netip.Prefix {
	if len(rs) == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, len(rs))
	for _, r := range rs {
		out = r.appendPrefixes(out)
	}
	return out
}

// Prefixes splits r into the fewest prefixes covering exactly it, in
// order. A range whose ends are invalid or of different families, or whose
// last address comes before its first, covers nothing.
func (r AddrRange) Prefixes() []netip.Prefix { return r.appendPrefixes(nil) }

func (r AddrRange) appendPrefixes(out []netip.Prefix) []netip.Prefix {
	if !r.First.IsValid() || r.First.BitLen() != r.Last.BitLen() {
		return out
	}
	is4 := r.First.Is4()
	width := r.First.BitLen()
	first, last := toNum(r.First), toNum(r.Last)
	if first.cmp(last) > 0 {
		return out
	}
	for {
		// The widest aligned block that starts at first and ends inside
		// the range.
		k := min(first.trailingZeros(), width)
		for k > 0 && first.or(lowOnes(k)).cmp(last) > 0 {
			k--
		}
		out = append(out, netip.PrefixFrom(first.addr(is4), width-k))
		end := first.or(lowOnes(k))
		if end.cmp(last) >= 0 {
			return out
		}
		first = end.inc()
	}
}

// num is an address as a 128-bit number; an IPv4 address uses the low 32
// bits. Arithmetic on it, rather than on netip.Addr, keeps normalising a
// set of 100,000 prefixes to milliseconds.
type num struct{ hi, lo uint64 }

// numRange is an inclusive range of nums of one family.
type numRange struct{ first, last num }

func toNum(a netip.Addr) num {
	if a.Is4() {
		b := a.As4()
		return num{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return num{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (n num) addr(is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(n.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], n.hi)
	binary.BigEndian.PutUint64(b[8:], n.lo)
	return netip.AddrFrom16(b)
}

func (n num) cmp(o num) int { return cmp.Or(cmp.Compare(n.hi, o.hi), cmp.Compare(n.lo, o.lo)) }

func (n num) or(o num) num { return num{n.hi | o.hi, n.lo | o.lo} }

func (n num) andNot(o num) num { return num{n.hi &^ o.hi, n.lo &^ o.lo} }

// inc is n+1, wrapping at 2^128 (callers stop at the family's top first).
func (n num) inc() num {
	lo, carry := bits.Add64(n.lo, 1, 0)
	return num{n.hi + carry, lo}
}

// trailingZeros counts n's trailing zero bits; 128 for zero.
func (n num) trailingZeros() int {
	if n.lo != 0 {
		return bits.TrailingZeros64(n.lo)
	}
	if n.hi != 0 {
		return 64 + bits.TrailingZeros64(n.hi)
	}
	return 128
}

// lowOnes is the number whose k low bits are set (0 <= k <= 128).
func lowOnes(k int) num {
	switch {
	case k >= 128:
		return num{^uint64(0), ^uint64(0)}
	case k >= 64:
		return num{^uint64(0) >> (128 - k), ^uint64(0)}
	default:
		return num{0, uint64(1)<<k - 1}
	}
}

// prefixNumRange is the range a canonical, valid prefix covers.
func prefixNumRange(p netip.Prefix) numRange {
	host := lowOnes(p.Addr().BitLen() - p.Bits())
	first := toNum(p.Addr()).andNot(host)
	return numRange{first, first.or(host)}
}

// mergeNumRanges sorts ranges of one family (width bits) and merges those
// that overlap or touch.
func mergeNumRanges(rs []numRange, width int) []numRange {
	slices.SortFunc(rs, func(a, b numRange) int { return a.first.cmp(b.first) })
	top := lowOnes(width)
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			cur := &out[n-1]
			// cur swallows r when r starts inside cur or right after it;
			// a range that ends at the family's top swallows the rest.
			if cur.last == top || r.first.cmp(cur.last.inc()) <= 0 {
				if r.last.cmp(cur.last) > 0 {
					cur.last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}
