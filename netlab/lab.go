package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Options describe a lab.
type Options struct {
	// Prefix names everything the lab creates: namespaces are
	// "<Prefix>-wan", "<Prefix>-c2", "<Prefix>-mgmt", "<Prefix>-gw-<site>"
	// and "<Prefix>-lan-<site>". 1 to 12 lower-case letters or digits. It
	// must be unique among labs that exist at the same time (across test
	// binaries too): a lab removes any namespace named "<Prefix>-..." (and
	// ends the processes inside) before building, to clear what a crashed
	// run left behind. Names outside "<Prefix>-" are never touched.
	Prefix string
	// Sites are the VPN sites ("hq", "osaka", "dc"): 1 to 100 distinct names
	// of 1 to 9 lower-case letters or digits.
	Sites []string
}

// Node is one host of the lab: a network namespace and the addresses other
// nodes use to reach it.
type Node struct {
	// Name is the node's role in the lab: "wan", "c2", "mgmt",
	// "gw-<site>" or "lan-<site>".
	Name string
	// NS is the network namespace's name.
	NS string
	// V4 and V6 are the node's addresses.
	V4, V6 netip.Addr
}

// Addrs returns the node's IPv4 and IPv6 addresses.
func (n Node) Addrs() []netip.Addr { return []netip.Addr{n.V4, n.V6} }

// Site is one VPN site: a gateway with its WAN side on the internet bridge
// and a LAN host behind it.
type Site struct {
	Name string
	// Gateway holds the gateway's namespace and WAN-side addresses.
	Gateway Node
	// GatewayLAN is the same namespace with the gateway's LAN-side addresses.
	GatewayLAN Node
	// LAN is a host on the site's protected network.
	LAN Node
	// Prefix4 and Prefix6 are the site's protected networks.
	Prefix4, Prefix6 netip.Prefix
}

// Lab is a running laboratory. Build it with New and always Close it (in
// tests: t.Cleanup(func() { lab.Close() }) right after New succeeds).
//
// Topology: the "wan" namespace is the internet: a bridge joining the WAN
// side of every site gateway and the C2 server, and a router to the
// management network, where the "mgmt" namespace (controller, responders)
// lives. Each site gateway forwards IPv4 and IPv6 between the WAN and its LAN
// namespace. Every link carries IPv4 (inside 198.18.0.0/15) and IPv6 (inside
// fd00::/8):
//
//	internet   198.18.0.0/24     fd00:18::/64        router .1/::1, gateways .10+i, c2 .200
//	management 198.19.0.0/24     fd00:19::/64        router .1/::1, mgmt .10
//	site i LAN 198.18.(1+i).0/24 fd00:20:(1+i)::/64  gateway .1/::1, lan host .10
type Lab struct {
	prefix        string
	wan, c2, mgmt Node
	mgmt4, mgmt6  netip.Prefix
	sites         []Site

	mu         sync.Mutex
	namespaces []string // created, in creation order
	closers    []func() error
	closed     bool
}

// New builds a lab. On any error it tears down what it built. ctx bounds the
// build; the lab itself lives until Close.
func New(ctx context.Context, opt Options) (*Lab, error) {
	if err := opt.validate(); err != nil {
		return nil, err
	}
	l := plan(opt)
	// Before the first namespace is created: removing a crashed run's
	// namespaces before namespaceDir becomes a mount point unmounts the
	// originals rather than copies that would leave them shadowed.
	if err := removeStaleNamespaces(l.prefix + "-"); err != nil {
		return nil, fmt.Errorf("building lab %q: %w", l.prefix, err)
	}
	if err := l.build(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("building lab %q: %w", l.prefix, err), l.Close())
	}
	return l, nil
}

func (o Options) validate() error {
	var errs []error
	if !validName(o.Prefix, 12, false) {
		errs = append(errs, fmt.Errorf("netlab options: prefix %q must be 1 to 12 lower-case letters or digits", o.Prefix))
	}
	if len(o.Sites) == 0 || len(o.Sites) > 100 {
		errs = append(errs, fmt.Errorf("netlab options: need 1 to 100 sites, got %d", len(o.Sites)))
	}
	seen := map[string]bool{}
	for _, s := range o.Sites {
		if !validName(s, 9, false) {
			errs = append(errs, fmt.Errorf("netlab options: site %q must be 1 to 9 lower-case letters or digits", s))
		}
		if seen[s] {
			errs = append(errs, fmt.Errorf("netlab options: duplicate site %q", s))
		}
		seen[s] = true
	}
	return errors.Join(errs...)
}

// Addressing plan (see Lab).
var (
	internet4 = netip.MustParsePrefix("198.18.0.0/24")
	internet6 = netip.MustParsePrefix("fd00:18::/64")
	mgmtNet4  = netip.MustParsePrefix("198.19.0.0/24")
	mgmtNet6  = netip.MustParsePrefix("fd00:19::/64")
)

const (
	hostRouter  = 1
	hostGateway = 10 // + site index, on the internet
	hostC2      = 200
	hostMgmt    = 10
	hostLANGW   = 1
	hostLAN     = 10
)

// plan computes names and addresses; it touches nothing.
func plan(opt Options) *Lab {
	p := opt.Prefix
	l := &Lab{
		prefix: p,
		wan:    Node{Name: "wan", NS: p + "-wan", V4: host(internet4, hostRouter), V6: host(internet6, hostRouter)},
		c2:     Node{Name: "c2", NS: p + "-c2", V4: host(internet4, hostC2), V6: host(internet6, hostC2)},
		mgmt:   Node{Name: "mgmt", NS: p + "-mgmt", V4: host(mgmtNet4, hostMgmt), V6: host(mgmtNet6, hostMgmt)},
		mgmt4:  mgmtNet4,
		mgmt6:  mgmtNet6,
	}
	for i, name := range opt.Sites {
		p4 := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(1 + i), 0}), 24)
		b := [16]byte{0xfd, 0x00, 0x00, 0x20, byte((1 + i) >> 8), byte(1 + i)}
		p6 := netip.PrefixFrom(netip.AddrFrom16(b), 64)
		gw := Node{Name: "gw-" + name, NS: p + "-gw-" + name, V4: host(internet4, hostGateway+i), V6: host(internet6, hostGateway+i)}
		l.sites = append(l.sites, Site{
			Name:       name,
			Gateway:    gw,
			GatewayLAN: Node{Name: gw.Name, NS: gw.NS, V4: host(p4, hostLANGW), V6: host(p6, hostLANGW)},
			LAN:        Node{Name: "lan-" + name, NS: p + "-lan-" + name, V4: host(p4, hostLAN), V6: host(p6, hostLAN)},
			Prefix4:    p4,
			Prefix6:    p6,
		})
	}
	return l
}

// host returns the n-th address of p (n < 256 for IPv4, < 65536 for IPv6).
func host(p netip.Prefix, n int) netip.Addr {
	if p.Addr().Is4() {
		b := p.Addr().As4()
		b[3] = byte(n)
		return netip.AddrFrom4(b)
	}
	b := p.Addr().As16()
	b[14], b[15] = byte(n>>8), byte(n)
	return netip.AddrFrom16(b)
}

// Prefix returns the lab's name prefix.
func (l *Lab) Prefix() string { return l.prefix }

// WAN returns the internet router (and bridge) node.
func (l *Lab) WAN() Node { return l.wan }

// C2 returns the attacker's server on the internet.
func (l *Lab) C2() Node { return l.c2 }

// Mgmt returns the controller/responder host on the management network.
func (l *Lab) Mgmt() Node { return l.mgmt }

// ManagementPrefixes returns the management network (IPv4 and IPv6) that a
// gateway's quarantine must keep reachable.
func (l *Lab) ManagementPrefixes() []netip.Prefix { return []netip.Prefix{l.mgmt4, l.mgmt6} }

// Sites returns every site, in the order of Options.Sites.
func (l *Lab) Sites() []Site { return slices.Clone(l.sites) }

// Site returns the named site.
func (l *Lab) Site(name string) (Site, bool) {
	for _, s := range l.sites {
		if s.Name == name {
			return s, true
		}
	}
	return Site{}, false
}

// Namespaces lists every namespace of the lab.
func (l *Lab) Namespaces() []string {
	out := []string{l.wan.NS, l.c2.NS, l.mgmt.NS}
	for _, s := range l.sites {
		out = append(out, s.Gateway.NS, s.LAN.NS)
	}
	return out
}

// Run executes argv inside ns with `ip netns exec`; see the package-level Run.
func (l *Lab) Run(ctx context.Context, ns string, argv ...string) ([]byte, error) {
	return Run(ctx, ns, argv...)
}

// Do runs fn on a locked OS thread switched into ns; see the package-level Do.
func (l *Lab) Do(ns string, fn func() error) error { return Do(ns, fn) }

// TCPConnect opens and closes a TCP connection from ns to addr.
func (l *Lab) TCPConnect(ctx context.Context, ns string, addr netip.AddrPort, timeout time.Duration) error {
	return TCPConnect(ctx, ns, addr, timeout)
}

// UDPEcho sends one datagram from ns to the echo server at addr and waits for
// it to come back.
func (l *Lab) UDPEcho(ctx context.Context, ns string, addr netip.AddrPort, timeout time.Duration) error {
	return UDPEcho(ctx, ns, addr, timeout)
}

// Ping sends one ICMP (or ICMPv6) echo request from ns to addr.
func (l *Lab) Ping(ctx context.Context, ns string, addr netip.Addr, timeout time.Duration) error {
	return Ping(ctx, ns, addr, timeout)
}

// ServeEcho starts TCP and UDP echo servers on addr inside ns (listen on
// [::]:port for both families). They stop when stop is called or the lab is
// closed.
func (l *Lab) ServeEcho(ns string, addr netip.AddrPort) (stop func(), err error) {
	srv, err := ServeEcho(ns, addr)
	if err != nil {
		return nil, err
	}
	l.onClose(srv.Close)
	return func() { _ = srv.Close() }, nil
}

// OpenSession opens a long-lived TCP session from ns to an echo server at
// addr. It is closed with the lab if the caller does not close it first.
func (l *Lab) OpenSession(ctx context.Context, ns string, addr netip.AddrPort) (*Session, error) {
	s, err := OpenSession(ctx, ns, addr)
	if err != nil {
		return nil, err
	}
	l.onClose(s.Close)
	return s, nil
}

func (l *Lab) onClose(fn func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closers = append(l.closers, fn)
}

// Close stops the lab's servers and sessions and deletes every namespace it
// created (which destroys their links), ending any process still inside
// them. It is idempotent.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	closers, namespaces := l.closers, l.namespaces
	l.closers, l.namespaces = nil, nil
	l.mu.Unlock()

	var errs []error
	for _, c := range closers {
		// Servers and sessions may already be closed by their owner.
		_ = c()
	}
	for i := len(namespaces) - 1; i >= 0; i-- {
		if _, err := deleteNamespace(namespaces[i]); err != nil {
			errs = append(errs, fmt.Errorf("deleting namespace %q: %w", namespaces[i], err))
		}
	}
	return errors.Join(errs...)
}

// C2Public are the addresses AddC2Public gives the C2 server: in the
// documentation ranges (RFC 5737, RFC 3849), which nothing real uses, so
// that a block of them is not refused as private or reserved the way the
// lab's own 198.18.0.0/15 and fd00::/8 addresses are.
var C2Public = []netip.Addr{netip.MustParseAddr("203.0.113.66"), netip.MustParseAddr("2001:db8:c2::66")}

// AddC2Public gives the C2 server the C2Public addresses as well and routes
// them from the internet router to it, so every site reaches them through
// its gateway as it would reach a host on the internet.
func (l *Lab) AddC2Public() error {
	err := Do(l.c2.NS, func() error {
		link, err := netlink.LinkByName(uplinkName)
		if err != nil {
			return fmt.Errorf("finding %s: %w", uplinkName, err)
		}
		for _, a := range C2Public {
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip(a), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}
			if a.Is6() {
				addr.Flags = unix.IFA_F_NODAD
			}
			if err := netlink.AddrAdd(link, addr); err != nil {
				return fmt.Errorf("adding %s: %w", a, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("public address of the C2 server in %q: %w", l.c2.NS, err)
	}
	return Do(l.wan.NS, func() error {
		for _, a := range C2Public {
			via := l.c2.V4
			if a.Is6() {
				via = l.c2.V6
			}
			if err := netlink.RouteAdd(&netlink.Route{Dst: ipNet(netip.PrefixFrom(a, a.BitLen())), Gw: ip(via)}); err != nil {
				return fmt.Errorf("routing %s via %s in %q: %w", a, via, l.wan.NS, err)
			}
		}
		return nil
	})
}
