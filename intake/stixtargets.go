package intake

import (
	"net/netip"
	"slices"
	"strings"
)

// This file reduces a parsed STIX pattern (stixpattern.go) to the
// addresses and names it matches, refusing what is outside the subset.

// addrSet is what a comparison expression matches, about one object
// ("ipv4-addr", "network-traffic:dst_ref", …; "" once an OR mixes
// objects): prefixes and names, and whole types from a type test
// (network-traffic:dst_ref.type = 'ipv4-addr' matches every IPv4 address)
// until an AND narrows them.
type addrSet struct {
	object              string
	prefixes            []netip.Prefix
	domains             []string
	any4, any6, anyName bool
	// anyOff is the offset of the type test behind an any flag, -1 when
	// none is set.
	anyOff int
}

func (s addrSet) empty() bool {
	return len(s.prefixes) == 0 && len(s.domains) == 0 && !s.any4 && !s.any6 && !s.anyName
}

// observationTargets reduces an observation expression: OR is the union;
// AND and FOLLOWEDBY between observations and qualifiers are refused.
func observationTargets(n *obsNode) (addrSet, error) {
	switch n.op {
	case "[]":
		return comparisonTargets(n.cmp)
	case "OR":
		l, err := observationTargets(n.left)
		if err != nil {
			return addrSet{}, err
		}
		r, err := observationTargets(n.right)
		if err != nil {
			return addrSet{}, err
		}
		return orSets(l, r), nil
	case "AND":
		return addrSet{}, unsupported(n.off, "AND between observation expressions (a block cannot wait for a second observation)")
	case "FOLLOWEDBY":
		return addrSet{}, unsupported(n.off, "FOLLOWEDBY (a block cannot wait for a sequence of observations)")
	}
	for isQualifier(n.left.op) {
		n = n.left // name the first qualifier as written
	}
	return addrSet{}, unsupported(n.off, "%s qualifier (a block cannot count or wait)", n.op)
}

func isQualifier(op string) bool { return op == "WITHIN" || op == "REPEATS" || op == "START" }

// comparisonTargets reduces a comparison expression: OR is the union, AND
// the intersection (andSets).
func comparisonTargets(n *cmpNode) (addrSet, error) {
	if n.op == "" {
		return propTargets(n)
	}
	l, err := comparisonTargets(n.left)
	if err != nil {
		return addrSet{}, err
	}
	r, err := comparisonTargets(n.right)
	if err != nil {
		return addrSet{}, err
	}
	if n.op == "OR" {
		return orSets(l, r), nil
	}
	return andSets(n.off, l, r)
}

func orSets(a, b addrSet) addrSet {
	out := addrSet{
		object: a.object,
		// a is the caller's own, built for this OR and used once:
		// extending it in place keeps a long chain of ORs linear.
		prefixes: append(a.prefixes, b.prefixes...),
		domains:  append(a.domains, b.domains...),
		any4:     a.any4 || b.any4, any6: a.any6 || b.any6, anyName: a.anyName || b.anyName,
		anyOff: a.anyOff,
	}
	if a.object != b.object {
		out.object = ""
	}
	if out.anyOff < 0 {
		out.anyOff = b.anyOff
	}
	return out
}

// andSets intersects the two sides of an AND. Both must be about the same
// object: within one observation, comparisons on one object all hold for
// that object, so an AND of them narrows it to what every side allows
// ("dst_ref.type = 'ipv4-addr' AND dst_ref.value = '203.0.113.33/32'", the
// spec's own example, is that one address). Across objects an AND means
// "both were seen together"; blocking either alone would block more than
// the indicator says, so that is refused. Prefixes either nest or are
// disjoint, so the intersection of two is the narrower one or nothing.
func andSets(off int, a, b addrSet) (addrSet, error) {
	if a.object == "" || a.object != b.object {
		return addrSet{}, unsupported(off, "AND between comparisons on different objects (%s and %s): a block cannot require both", orDash(a.object), orDash(b.object))
	}
	out := addrSet{object: a.object, any4: a.any4 && b.any4, any6: a.any6 && b.any6, anyName: a.anyName && b.anyName, anyOff: -1}
	for _, p := range a.prefixes {
		for _, q := range b.prefixes {
			if p.Overlaps(q) {
				out.prefixes = append(out.prefixes, narrower(p, q))
			}
		}
	}
	out.prefixes = append(out.prefixes, prefixesOfFamily(a.prefixes, b.any4, b.any6)...)
	out.prefixes = append(out.prefixes, prefixesOfFamily(b.prefixes, a.any4, a.any6)...)
	for _, d := range a.domains {
		if b.anyName || slices.Contains(b.domains, d) {
			out.domains = append(out.domains, d)
		}
	}
	if a.anyName {
		out.domains = append(out.domains, b.domains...)
	}
	if out.any4 || out.any6 || out.anyName {
		out.anyOff = min(a.anyOff, b.anyOff) // both sides have a type test
	}
	if out.empty() {
		return addrSet{}, unsupported(off, "the comparisons joined by AND have no address in common")
	}
	return out, nil
}

func narrower(p, q netip.Prefix) netip.Prefix {
	if p.Bits() >= q.Bits() {
		return p
	}
	return q
}

// prefixesOfFamily keeps the IPv4 prefixes of ps when v4, the IPv6 ones
// when v6.
func prefixesOfFamily(ps []netip.Prefix, v4, v6 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4() && v4 || p.Addr().Is6() && v6 {
			out = append(out, p)
		}
	}
	return out
}

// addressProperty is a supported object path: the object it is about and
// what its values are.
type addressProperty struct {
	object string
	// family is "ipv4", "ipv6", "domain", "any" (an address of either
	// family or a name) or "type" (a type test).
	family string
}

var addressProperties = map[string]addressProperty{
	"ipv4-addr:value":               {"ipv4-addr", "ipv4"},
	"ipv6-addr:value":               {"ipv6-addr", "ipv6"},
	"domain-name:value":             {"domain-name", "domain"},
	"network-traffic:dst_ref.value": {"network-traffic:dst_ref", "any"},
	"network-traffic:src_ref.value": {"network-traffic:src_ref", "any"},
	"network-traffic:dst_ref.type":  {"network-traffic:dst_ref", "type"},
	"network-traffic:src_ref.type":  {"network-traffic:src_ref", "type"},
}

// narrowingProperties are network-traffic properties that would narrow a
// block to a port or protocol.
var narrowingProperties = []string{"dst_port", "src_port", "protocols"}

// propTargets reduces one comparison.
func propTargets(n *cmpNode) (addrSet, error) {
	path := n.path.String()
	prop, ok := addressProperties[path]
	if !ok {
		return addrSet{}, unsupportedPath(n.path)
	}
	switch {
	case n.cmpOp == "EXISTS":
		return addrSet{}, unsupported(n.off, "EXISTS")
	case n.not || n.cmpOp == "!=" || n.cmpOp == "<>":
		return addrSet{}, unsupported(n.off, "negated comparison on %s (it matches almost every address)", path)
	case n.cmpOp == "LIKE" || n.cmpOp == "MATCHES" || n.cmpOp == "ISSUPERSET":
		return addrSet{}, unsupported(n.off, "%s on %s", n.cmpOp, path)
	case n.cmpOp == "<" || n.cmpOp == ">" || n.cmpOp == "<=" || n.cmpOp == ">=":
		return addrSet{}, unsupported(n.off, "ordering comparison %s on %s", n.cmpOp, path)
	case n.cmpOp == "ISSUBSET" && (prop.family == "domain" || prop.family == "type"):
		return addrSet{}, unsupported(n.off, "ISSUBSET on %s (it takes a network)", path)
	}
	set := addrSet{object: prop.object, anyOff: -1}
	for _, v := range n.values {
		if v.kind != tokString {
			return addrSet{}, malformed(v.off, "%s is compared with %s, not a string", path, clip(v.text, 40))
		}
		if err := addValue(&set, prop, path, v); err != nil {
			return addrSet{}, err
		}
	}
	if set.empty() {
		return addrSet{}, unsupported(n.off, "IN with an empty set on %s (it matches nothing)", path)
	}
	return set, nil
}

// unsupportedPath names an object path outside the subset.
func unsupportedPath(p objectPath) *PatternError {
	switch {
	case p.objType == "network-traffic" && len(p.props) == 1 && slices.Contains(narrowingProperties, p.props[0]):
		return unsupported(p.off, "network-traffic:%s narrows the block to a port or protocol; Warden blocks whole addresses", p.props[0])
	case p.objType == "ipv4-addr" || p.objType == "ipv6-addr" || p.objType == "domain-name" || p.objType == "network-traffic":
		return unsupported(p.off, "object path %s", clip(p.String(), 80))
	}
	return unsupported(p.off, "object type %s (Warden blocks ipv4-addr, ipv6-addr and network-traffic addresses; domain-name is recorded)", clip(p.objType, 40))
}

// addValue adds one string value of a comparison to set.
func addValue(set *addrSet, prop addressProperty, path string, v token) error {
	if prop.family == "type" {
		switch v.val {
		case "ipv4-addr":
			set.any4 = true
		case "ipv6-addr":
			set.any6 = true
		case "domain-name":
			set.anyName = true
		default:
			return unsupported(v.off, "%s = '%s' (only ipv4-addr, ipv6-addr and domain-name)", path, clip(v.val, 40))
		}
		set.anyOff = v.off
		return nil
	}
	if prop.family != "domain" {
		if p, ok := parseAddressValue(v.val); ok {
			if prop.family == "ipv4" && !p.Addr().Is4() || prop.family == "ipv6" && !p.Addr().Is6() {
				return malformed(v.off, "%s: '%s' is not an %s address", path, clip(v.val, 64), strings.ToUpper(prop.family[:2])+prop.family[2:])
			}
			set.prefixes = append(set.prefixes, p)
			return nil
		}
		if prop.family != "any" {
			return malformed(v.off, "%s: '%s' is not an address or CIDR", path, clip(v.val, 64))
		}
	}
	d, ok := observableDomain(v.val)
	switch {
	case !ok && prop.family == "domain":
		return malformed(v.off, "%s: '%s' is not a domain name", path, clip(v.val, 64))
	case !ok:
		return malformed(v.off, "%s: '%s' is not an address, CIDR or domain name", path, clip(v.val, 64))
	}
	set.domains = append(set.domains, d)
	return nil
}

// parseAddressValue reads an address (as a /32 or /128) or a CIDR; a zone
// is refused.
func parseAddressValue(s string) (netip.Prefix, bool) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	return netip.Prefix{}, false
}
