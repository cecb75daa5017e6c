package controller

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/inventory"
)

// specialRange is an address range a block never covers without a
// person's approval: blocking it would cut a site off from itself, from
// its management, or from the network's own machinery.
type specialRange struct {
	prefix netip.Prefix
	why    string
}

// specialRanges are the IANA special-purpose ranges (RFC 6890 and its
// successors) that automation must not block. The documentation ranges
// (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are
// deliberately not here: nothing real lives there, so blocking them harms
// nothing, and threat-intelligence examples use them.
var specialRanges = func() []specialRange {
	var out []specialRange
	for _, r := range []struct{ cidr, why string }{
		{"0.0.0.0/8", "reserved (this network)"},
		{"10.0.0.0/8", "private (RFC 1918)"},
		{"100.64.0.0/10", "shared address space (carrier-grade NAT)"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local"},
		{"172.16.0.0/12", "private (RFC 1918)"},
		{"192.0.0.0/24", "reserved (IETF protocol assignments)"},
		{"192.168.0.0/16", "private (RFC 1918)"},
		{"198.18.0.0/15", "reserved (benchmarking)"},
		{"224.0.0.0/4", "multicast"},
		{"240.0.0.0/4", "reserved (future use and broadcast)"},
		{"::/127", "unspecified or loopback"},
		{"::ffff:0:0/96", "IPv4-mapped"},
		{"64:ff9b::/96", "NAT64 (translates every IPv4 address)"},
		{"100::/64", "reserved (discard-only)"},
		{"2001::/23", "reserved (IETF protocol assignments)"},
		{"2002::/16", "6to4 (carries IPv4 traffic)"},
		{"fc00::/7", "private (unique local)"},
		{"fe80::/10", "link-local"},
		{"ff00::/8", "multicast"},
	} {
		out = append(out, specialRange{netip.MustParsePrefix(r.cidr), r.why})
	}
	return out
}()

// blockJudge says why blocking a prefix at every gateway needs a
// person's approval. It is pure: the inventory and the configuration, read
// once when it is made, are all it knows.
type blockJudge struct {
	cfg       config.Blocks
	protected []specialRange
}

func newBlockJudge(inv *inventory.Inventory, cfg config.Blocks) blockJudge {
	return blockJudge{cfg: cfg, protected: append(slices.Clone(specialRanges), protectedOf(inv, cfg)...)}
}

// unsafe lists why p needs approval; nothing when automation may block it
// alone.
func (j blockJudge) unsafe(p netip.Prefix) []string {
	p = p.Masked()
	var why []string
	family, limit := 4, j.cfg.MaxAutoPrefixV4
	if p.Addr().Is6() {
		family, limit = 6, j.cfg.MaxAutoPrefixV6
	}
	if p.Bits() < limit {
		why = append(why, fmt.Sprintf("%s is wider than /%d (blocks.max_auto_prefix_v%d)", p, limit, family))
	}
	for _, r := range j.protected {
		if r.prefix.Overlaps(p) {
			why = append(why, fmt.Sprintf("%s overlaps %s: %s", p, r.prefix, r.why))
		}
	}
	return why
}

// protectedOf lists the fleet's own ranges: every gateway's addresses
// (tunnel endpoints), WireGuard endpoints, management networks, site
// networks, and blocks.protected.
func protectedOf(inv *inventory.Inventory, cfg config.Blocks) []specialRange {
	var out []specialRange
	add := func(s, why string) {
		if p, err := wire.ParseAllowedIP(s); err == nil {
			out = append(out, specialRange{wire.CanonicalPrefix(p), why})
		}
	}
	for _, gw := range inv.Gateways {
		for _, a := range gw.Addresses {
			add(a, "an address of gateway "+gw.ID+" (a tunnel endpoint)")
		}
		if gw.WireGuard != nil && gw.WireGuard.Endpoint != "" {
			host, _, err := net.SplitHostPort(gw.WireGuard.Endpoint)
			if err != nil {
				host = gw.WireGuard.Endpoint
			}
			add(host, "the WireGuard endpoint of gateway "+gw.ID)
		}
		for _, m := range gw.ManagementNetworks {
			add(m, "a management network of gateway "+gw.ID)
		}
	}
	for _, s := range inv.Sites {
		for _, n := range s.Networks {
			add(n, "a network of site "+s.Name)
		}
	}
	for _, p := range cfg.Protected {
		add(p, "protected (blocks.protected)")
	}
	return out
}

// FleetOwns says whether p touches the fleet's own networks or addresses:
// a site's or management network, a gateway's address, blocks.protected.
func (c *blocker) FleetOwns(p netip.Prefix) bool {
	for _, r := range protectedOf(c.inv, c.opt.Blocks) {
		if r.prefix.Overlaps(p) {
			return true
		}
	}
	return false
}
