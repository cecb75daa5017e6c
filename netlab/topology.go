package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Interface names. They live inside the lab's namespaces only, so they never
// clash with the host's or another lab's.
const (
	bridgeName = "br0"  // the internet bridge, in the wan namespace
	uplinkName = "wan0" // a node's link towards the wan namespace
	lanName    = "lan0" // a gateway's link towards its LAN host
	gwName     = "gw0"  // a LAN host's link towards its gateway
)

// builder holds per-namespace netlink handles while a lab is built.
type builder struct {
	handles map[string]*netlink.Handle
	fds     map[string]netns.NsHandle
}

func (b *builder) close() {
	for _, h := range b.handles {
		h.Close()
	}
	for _, fd := range b.fds {
		_ = fd.Close()
	}
}

// build creates every namespace, link, address and route. Whatever it
// created is recorded in l.namespaces so that Close can remove it.
func (l *Lab) build(ctx context.Context) error {
	b := &builder{handles: map[string]*netlink.Handle{}, fds: map[string]netns.NsHandle{}}
	defer b.close()

	routers := map[string]bool{l.wan.NS: true}
	for _, s := range l.sites {
		routers[s.Gateway.NS] = true
	}
	for _, ns := range l.Namespaces() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := createNamespace(ns); err != nil {
			return err
		}
		l.mu.Lock()
		l.namespaces = append(l.namespaces, ns)
		l.mu.Unlock()
		if err := Do(ns, func() error { return prepareNamespace(routers[ns]) }); err != nil {
			return fmt.Errorf("preparing namespace %q: %w", ns, err)
		}
		fd, err := netns.GetFromName(ns)
		if err != nil {
			return fmt.Errorf("opening namespace %q: %w", ns, err)
		}
		b.fds[ns] = fd
		h, err := netlink.NewHandleAt(fd)
		if err != nil {
			return fmt.Errorf("opening netlink in namespace %q: %w", ns, err)
		}
		b.handles[ns] = h
	}

	wan := b.handles[l.wan.NS]
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName}}
	if err := wan.LinkAdd(br); err != nil {
		return fmt.Errorf("adding bridge %s: %w", bridgeName, err)
	}
	if err := b.configure(l.wan.NS, bridgeName, prefixAt(l.wan.V4, internet4), prefixAt(l.wan.V6, internet6)); err != nil {
		return err
	}

	// The internet: C2 and every gateway's WAN side on the bridge.
	attach := []Node{l.c2}
	for _, s := range l.sites {
		attach = append(attach, s.Gateway)
	}
	for _, n := range attach {
		if err := b.veth(l.wan.NS, n.Name, n.NS, uplinkName); err != nil {
			return err
		}
		if err := b.enslave(l.wan.NS, n.Name, bridgeName); err != nil {
			return err
		}
		if err := b.configure(n.NS, uplinkName, prefixAt(n.V4, internet4), prefixAt(n.V6, internet6)); err != nil {
			return err
		}
		if err := b.defaultRoutes(n.NS, l.wan.V4, l.wan.V6); err != nil {
			return err
		}
	}

	// The management network, routed by the wan namespace.
	if err := b.veth(l.wan.NS, l.mgmt.Name, l.mgmt.NS, uplinkName); err != nil {
		return err
	}
	router4, router6 := host(mgmtNet4, hostRouter), host(mgmtNet6, hostRouter)
	if err := b.configure(l.wan.NS, l.mgmt.Name, prefixAt(router4, mgmtNet4), prefixAt(router6, mgmtNet6)); err != nil {
		return err
	}
	if err := b.configure(l.mgmt.NS, uplinkName, prefixAt(l.mgmt.V4, mgmtNet4), prefixAt(l.mgmt.V6, mgmtNet6)); err != nil {
		return err
	}
	if err := b.defaultRoutes(l.mgmt.NS, router4, router6); err != nil {
		return err
	}

	// Each site's LAN behind its gateway; the internet routes it there.
	for _, s := range l.sites {
		if err := b.veth(s.Gateway.NS, lanName, s.LAN.NS, gwName); err != nil {
			return err
		}
		if err := b.configure(s.Gateway.NS, lanName, prefixAt(s.GatewayLAN.V4, s.Prefix4), prefixAt(s.GatewayLAN.V6, s.Prefix6)); err != nil {
			return err
		}
		if err := b.configure(s.LAN.NS, gwName, prefixAt(s.LAN.V4, s.Prefix4), prefixAt(s.LAN.V6, s.Prefix6)); err != nil {
			return err
		}
		if err := b.defaultRoutes(s.LAN.NS, s.GatewayLAN.V4, s.GatewayLAN.V6); err != nil {
			return err
		}
		for _, r := range []struct {
			dst netip.Prefix
			via netip.Addr
		}{{s.Prefix4, s.Gateway.V4}, {s.Prefix6, s.Gateway.V6}} {
			if err := wan.RouteAdd(&netlink.Route{Dst: ipNet(r.dst), Gw: ip(r.via)}); err != nil {
				return fmt.Errorf("routing %s via %s in %q: %w", r.dst, r.via, l.wan.NS, err)
			}
		}
	}
	return nil
}

// prepareNamespace runs inside the namespace, before any link exists, so
// that new links inherit the defaults: IPv6 on without duplicate address
// detection (addresses are usable at once), forwarding on routers.
func prepareNamespace(router bool) error {
	settings := [][2]string{
		{"net/ipv6/conf/all/disable_ipv6", "0"},
		{"net/ipv6/conf/default/disable_ipv6", "0"},
		{"net/ipv6/conf/all/accept_dad", "0"},
		{"net/ipv6/conf/default/accept_dad", "0"},
	}
	if router {
		settings = append(settings,
			[2]string{"net/ipv4/ip_forward", "1"},
			[2]string{"net/ipv6/conf/all/forwarding", "1"},
			[2]string{"net/ipv4/conf/all/send_redirects", "0"},
			[2]string{"net/ipv4/conf/default/send_redirects", "0"},
		)
	}
	for _, kv := range settings {
		// /proc/sys/net belongs to the namespace of the thread that opens
		// it, which Do has switched.
		if err := os.WriteFile(filepath.Join("/proc/sys", kv[0]), []byte(kv[1]), 0o644); err != nil {
			return fmt.Errorf("setting sysctl %s: %w", kv[0], err)
		}
	}
	return linkUpByName("lo")
}

// veth creates a veth pair with one end (local) in namespace a and the other
// (remote) in namespace z, without either end ever existing in the host's
// namespace.
func (b *builder) veth(a, local, z, remote string) error {
	link := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: local},
		PeerName:      remote,
		PeerNamespace: netlink.NsFd(int(b.fds[z])),
	}
	if err := b.handles[a].LinkAdd(link); err != nil {
		return fmt.Errorf("adding veth %s@%s <-> %s@%s: %w", local, a, remote, z, err)
	}
	return nil
}

func (b *builder) enslave(ns, port, bridge string) error {
	h := b.handles[ns]
	p, err := h.LinkByName(port)
	if err != nil {
		return fmt.Errorf("finding %s in %q: %w", port, ns, err)
	}
	br, err := h.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("finding %s in %q: %w", bridge, ns, err)
	}
	if err := h.LinkSetMaster(p, br); err != nil {
		return fmt.Errorf("adding %s to %s in %q: %w", port, bridge, ns, err)
	}
	if err := h.LinkSetUp(p); err != nil {
		return fmt.Errorf("bringing up %s in %q: %w", port, ns, err)
	}
	return nil
}

// configure addresses a link and brings it up.
func (b *builder) configure(ns, name string, addrs ...netip.Prefix) error {
	h := b.handles[ns]
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s in %q: %w", name, ns, err)
	}
	for _, a := range addrs {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip(a.Addr()), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}}
		if a.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("adding %s to %s in %q: %w", a, name, ns, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing up %s in %q: %w", name, ns, err)
	}
	return nil
}

func (b *builder) defaultRoutes(ns string, via4, via6 netip.Addr) error {
	h := b.handles[ns]
	var errs []error
	for _, r := range []struct {
		dst netip.Prefix
		via netip.Addr
	}{{netip.PrefixFrom(netip.IPv4Unspecified(), 0), via4}, {netip.PrefixFrom(netip.IPv6Unspecified(), 0), via6}} {
		if err := h.RouteAdd(&netlink.Route{Dst: ipNet(r.dst), Gw: ip(r.via)}); err != nil {
			errs = append(errs, fmt.Errorf("adding default route via %s in %q: %w", r.via, ns, err))
		}
	}
	return errors.Join(errs...)
}

// linkUpByName brings a link of the calling thread's namespace up.
func linkUpByName(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding link %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing up %s: %w", name, err)
	}
	return nil
}

// prefixAt is the interface address a inside network p ("198.18.0.1/24").
func prefixAt(a netip.Addr, p netip.Prefix) netip.Prefix { return netip.PrefixFrom(a, p.Bits()) }

func ip(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: ip(p.Masked().Addr()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
