package capture

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

type routeRecord struct {
	Family   string   `json:"family"`
	Table    int      `json:"table"`
	Type     string   `json:"type"`
	Dst      string   `json:"dst"`
	Src      string   `json:"src,omitempty"`
	Gateway  string   `json:"gateway,omitempty"`
	Device   string   `json:"device,omitempty"`
	Protocol string   `json:"protocol"`
	Scope    string   `json:"scope"`
	Metric   int      `json:"metric,omitempty"`
	Nexthops []string `json:"nexthops,omitempty"`
}

type ruleRecord struct {
	Family   string `json:"family"`
	Priority int    `json:"priority"`
	Table    int    `json:"table"`
	Text     string `json:"text"`
}

type routesReport struct {
	Routes     []routeRecord `json:"routes"`
	Rules      []ruleRecord  `json:"rules"`
	Incomplete []string      `json:"incomplete,omitempty"`
}

type linkRecord struct {
	Index     int      `json:"index"`
	Name      string   `json:"name"`
	Type      string   `json:"type"`
	MTU       int      `json:"mtu"`
	Flags     string   `json:"flags"`
	OperState string   `json:"oper_state"`
	MAC       string   `json:"mac,omitempty"`
	Master    string   `json:"master,omitempty"`
	Addresses []string `json:"addresses"`
}

type addressesReport struct {
	Links      []linkRecord `json:"links"`
	Incomplete []string     `json:"incomplete,omitempty"`
}

type neighbourRecord struct {
	Family string `json:"family"`
	Device string `json:"device"`
	IP     string `json:"ip"`
	MAC    string `json:"mac,omitempty"`
	State  string `json:"state"`
}

type neighboursReport struct {
	Neighbours []neighbourRecord `json:"neighbours"`
	Incomplete []string          `json:"incomplete,omitempty"`
}

type captureFamily struct {
	name string
	nl   int
}

func captureFamilies() []captureFamily {
	return []captureFamily{{"ipv4", netlink.FAMILY_V4}, {"ipv6", netlink.FAMILY_V6}}
}

// dumpUninterrupted runs a netlink dump, retrying while the kernel reports it was
// interrupted by a concurrent change; a still-interrupted dump is kept and
// noted.
func dumpUninterrupted[T any](what string, dump func() ([]T, error), incomplete *[]string) ([]T, error) {
	var (
		out []T
		err error
	)
	for range 3 {
		if out, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	switch {
	case errors.Is(err, netlink.ErrDumpInterrupted):
		*incomplete = append(*incomplete, what+" dump interrupted three times; kept the last")
	case err != nil:
		return nil, fmt.Errorf("dumping %s: %w", what, err)
	}
	return out, nil
}

// dumpPerFamily runs a dump (see dumpUninterrupted) for IPv4, then for
// IPv6, and hands add every item with its family.
func dumpPerFamily[T any](what string, dump func(family int) ([]T, error), incomplete *[]string, add func(captureFamily, T)) error {
	for _, fam := range captureFamilies() {
		items, err := dumpUninterrupted(fam.name+" "+what, func() ([]T, error) { return dump(fam.nl) }, incomplete)
		if err != nil {
			return err
		}
		for _, it := range items {
			add(fam, it)
		}
	}
	return nil
}

// captureLinkNames maps interface indexes to names for the calling thread's
// namespace.
func captureLinkNames(incomplete *[]string) (map[int]string, []netlink.Link, error) {
	links, err := dumpUninterrupted("links", netlink.LinkList, incomplete)
	if err != nil {
		return nil, nil, err
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	return names, links, nil
}

func linkNameOf(names map[int]string, idx int) string {
	if idx == 0 {
		return ""
	}
	if n, ok := names[idx]; ok {
		return n
	}
	return "if" + strconv.Itoa(idx)
}

// collectRoutes dumps routes of every table (main, local, and any policy
// routing table such as strongSwan's 220) and the policy rules that select
// them, for IPv4 and IPv6.
func collectRoutes() (routesReport, error) {
	var rep routesReport
	names, _, err := captureLinkNames(&rep.Incomplete)
	if err != nil {
		return rep, err
	}
	err = dumpPerFamily("routes", func(family int) ([]netlink.Route, error) {
		return netlink.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	}, &rep.Incomplete, func(fam captureFamily, r netlink.Route) {
		rec := routeRecord{
			Family:   fam.name,
			Table:    r.Table,
			Type:     routeTypeName(r.Type),
			Dst:      ipNetOrDefault(r.Dst, fam.nl),
			Src:      ipString(r.Src),
			Gateway:  ipString(r.Gw),
			Device:   linkNameOf(names, r.LinkIndex),
			Protocol: r.Protocol.String(),
			Scope:    r.Scope.String(),
			Metric:   r.Priority,
		}
		for _, nh := range r.MultiPath {
			rec.Nexthops = append(rec.Nexthops, fmt.Sprintf("via %s dev %s weight %d", ipString(nh.Gw), linkNameOf(names, nh.LinkIndex), nh.Hops+1))
		}
		rep.Routes = append(rep.Routes, rec)
	})
	if err != nil {
		return rep, err
	}
	err = dumpPerFamily("rules", netlink.RuleList, &rep.Incomplete, func(fam captureFamily, r netlink.Rule) {
		rep.Rules = append(rep.Rules, ruleRecord{Family: fam.name, Priority: r.Priority, Table: r.Table, Text: r.String()})
	})
	return rep, err
}

// collectAddresses dumps every link with its IPv4 and IPv6 addresses.
func collectAddresses() (addressesReport, error) {
	var rep addressesReport
	names, links, err := captureLinkNames(&rep.Incomplete)
	if err != nil {
		return rep, err
	}
	addrs, err := dumpUninterrupted("addresses", func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_ALL) }, &rep.Incomplete)
	if err != nil {
		return rep, err
	}
	byLink := make(map[int][]string)
	for _, a := range addrs {
		s := a.IPNet.String()
		if a.Peer != nil {
			s += " peer " + a.Peer.String()
		}
		byLink[a.LinkIndex] = append(byLink[a.LinkIndex], s)
	}
	for _, l := range links {
		at := l.Attrs()
		rec := linkRecord{
			Index:     at.Index,
			Name:      at.Name,
			Type:      l.Type(),
			MTU:       at.MTU,
			Flags:     at.Flags.String(),
			OperState: at.OperState.String(),
			Master:    linkNameOf(names, at.MasterIndex),
			Addresses: byLink[at.Index],
		}
		if len(at.HardwareAddr) > 0 {
			rec.MAC = at.HardwareAddr.String()
		}
		if rec.Addresses == nil {
			rec.Addresses = []string{}
		}
		rep.Links = append(rep.Links, rec)
	}
	return rep, nil
}

// collectNeighbours dumps the ARP and NDP tables.
func collectNeighbours() (neighboursReport, error) {
	var rep neighboursReport
	names, _, err := captureLinkNames(&rep.Incomplete)
	if err != nil {
		return rep, err
	}
	err = dumpPerFamily("neighbours", func(family int) ([]netlink.Neigh, error) { return netlink.NeighList(0, family) }, &rep.Incomplete, func(fam captureFamily, n netlink.Neigh) {
		rec := neighbourRecord{Family: fam.name, Device: linkNameOf(names, n.LinkIndex), IP: ipString(n.IP), State: neighStateName(n.State)}
		if len(n.HardwareAddr) > 0 {
			rec.MAC = n.HardwareAddr.String()
		}
		rep.Neighbours = append(rep.Neighbours, rec)
	})
	if err != nil {
		return rep, err
	}
	if rep.Neighbours == nil {
		rep.Neighbours = []neighbourRecord{}
	}
	return rep, nil
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}

func ipNetOrDefault(n *net.IPNet, family int) string {
	if n == nil {
		if family == netlink.FAMILY_V6 {
			return "::/0"
		}
		return "0.0.0.0/0"
	}
	return n.String()
}

func routeTypeName(t int) string {
	switch t {
	case unix.RTN_UNICAST:
		return "unicast"
	case unix.RTN_LOCAL:
		return "local"
	case unix.RTN_BROADCAST:
		return "broadcast"
	case unix.RTN_ANYCAST:
		return "anycast"
	case unix.RTN_MULTICAST:
		return "multicast"
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	case unix.RTN_THROW:
		return "throw"
	case unix.RTN_NAT:
		return "nat"
	}
	return "type" + strconv.Itoa(t)
}

func neighStateName(s int) string {
	switch s {
	case netlink.NUD_INCOMPLETE:
		return "INCOMPLETE"
	case netlink.NUD_REACHABLE:
		return "REACHABLE"
	case netlink.NUD_STALE:
		return "STALE"
	case netlink.NUD_DELAY:
		return "DELAY"
	case netlink.NUD_PROBE:
		return "PROBE"
	case netlink.NUD_FAILED:
		return "FAILED"
	case netlink.NUD_NOARP:
		return "NOARP"
	case netlink.NUD_PERMANENT:
		return "PERMANENT"
	case netlink.NUD_NONE:
		return "NONE"
	}
	return "state" + strconv.Itoa(s)
}
