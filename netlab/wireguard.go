package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// WireGuardSocketDir is where wireguard-go (and wgctrl) keep UAPI sockets.
// It is shared by every network namespace: interface names must therefore
// be unique machine-wide, which WireGuardMesh ensures.
const WireGuardSocketDir = "/var/run/wireguard"

// WireGuardPort is the UDP port every mesh device listens on (each in its
// own namespace).
const WireGuardPort = 51820

// WireGuardOptions describe a WireGuard mesh.
type WireGuardOptions struct {
	// Sites joined by the mesh (default: every site of the lab). Every pair
	// of them gets a tunnel.
	Sites []string
	// PresharedKeys gives every pair a random preshared key.
	PresharedKeys bool
	// Keepalive is the persistent keepalive of every peer (0: none).
	Keepalive time.Duration
}

// WireGuardSite is one site's WireGuard device.
type WireGuardSite struct {
	Site string
	// Device is the interface name, also the UAPI socket's name.
	Device string
	// Endpoint is where peers send to (the gateway's WAN address).
	Endpoint netip.AddrPort
	// PublicKey is the device's key at mesh creation.
	PublicKey wgtypes.Key
	// Networks are the site's LAN prefixes: its peers' AllowedIPs for it,
	// routed into the tunnel at every other site.
	Networks []netip.Prefix
}

// WireGuardMesh is a full mesh of userspace WireGuard tunnels between site
// gateways: one wireguard-go per gateway namespace, configured through its
// UAPI socket, with routes that send each LAN's traffic for another LAN
// through the tunnel. Close kills the daemons and removes their sockets; the
// lab's Close does it too.
type WireGuardMesh struct {
	mesh[WireGuardSite]
	psks map[[2]string]wgtypes.Key
	logs map[string]*syncBuffer // guarded by mu
}

// WireGuardMesh starts wireguard-go in every chosen site's gateway namespace
// and configures a full mesh. Needs the Debian package wireguard-go (see
// WireGuardAvailable). On error everything started is torn down.
func (l *Lab) WireGuardMesh(ctx context.Context, opt WireGuardOptions) (*WireGuardMesh, error) {
	if _, err := exec.LookPath("wireguard-go"); err != nil {
		return nil, fmt.Errorf("starting WireGuard mesh: wireguard-go not found: %w", err)
	}
	names := l.meshSiteNames(opt.Sites)
	m := &WireGuardMesh{
		psks: map[[2]string]wgtypes.Key{},
		logs: map[string]*syncBuffer{},
	}
	l.onClose(m.Close)
	privs := map[string]wgtypes.Key{}
	for _, name := range names {
		idx := -1
		for i, s := range l.sites {
			if s.Name == name {
				idx = i
			}
		}
		if idx < 0 {
			return nil, errors.Join(fmt.Errorf("starting WireGuard mesh: unknown site %q", name), m.Close())
		}
		s := l.sites[idx]
		priv, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			return nil, errors.Join(fmt.Errorf("generating a key for %s: %w", name, err), m.Close())
		}
		privs[name] = priv
		m.add(name, WireGuardSite{
			Site:      name,
			Device:    tunnelIfName("wg", l.prefix, idx),
			Endpoint:  netip.AddrPortFrom(s.Gateway.V4, WireGuardPort),
			PublicKey: priv.PublicKey(),
			Networks:  []netip.Prefix{s.Prefix4, s.Prefix6},
		})
	}
	for _, p := range sitePairs(names) {
		if opt.PresharedKeys {
			k, err := wgtypes.GenerateKey()
			if err != nil {
				return nil, errors.Join(fmt.Errorf("generating a preshared key: %w", err), m.Close())
			}
			m.psks[p] = k
		}
	}
	if err := m.start(ctx, l, privs, opt); err != nil {
		return nil, errors.Join(err, m.Close())
	}
	for _, k := range privs {
		clear(k[:])
	}
	return m, nil
}

func (m *WireGuardMesh) start(ctx context.Context, l *Lab, privs map[string]wgtypes.Key, opt WireGuardOptions) error {
	for _, name := range m.order {
		ws := m.sites[name]
		site, _ := l.Site(name)
		sock := filepath.Join(WireGuardSocketDir, ws.Device+".sock")
		if c, err := net.Dial("unix", sock); err == nil {
			_ = c.Close()
			return fmt.Errorf("starting wireguard-go %s: a live device of that name already exists (left by another run?)", ws.Device)
		}
		_ = os.Remove(sock) // stale socket of a dead process
		buf := &syncBuffer{}
		d, err := startDaemon(daemonSpec{
			name:   "wireguard-go " + ws.Device,
			ns:     site.Gateway.NS,
			argv:   []string{"wireguard-go", "-f", ws.Device},
			env:    []string{"WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
			output: buf,
		})
		if err != nil {
			return err
		}
		m.mu.Lock()
		m.started(name, d)
		m.logs[name] = buf
		m.mu.Unlock()
		if err := waitForSocket(ctx, d, sock, 10*time.Second); err != nil {
			return fmt.Errorf("%w; output: %s", err, buf.String())
		}
	}
	c, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("opening wgctrl: %w", err)
	}
	defer c.Close()
	port := WireGuardPort
	for _, name := range m.order {
		ws := m.sites[name]
		priv := privs[name]
		cfg := wgtypes.Config{PrivateKey: &priv, ListenPort: &port}
		for _, peer := range m.order {
			if peer == name {
				continue
			}
			ps := m.sites[peer]
			pc := wgtypes.PeerConfig{
				PublicKey:         ps.PublicKey,
				Endpoint:          net.UDPAddrFromAddrPort(ps.Endpoint),
				ReplaceAllowedIPs: true,
				AllowedIPs:        ipNets(ps.Networks),
			}
			if k, ok := m.psks[pairKey(name, peer)]; ok {
				pc.PresharedKey = &k
			}
			if opt.Keepalive > 0 {
				ka := opt.Keepalive
				pc.PersistentKeepaliveInterval = &ka
			}
			cfg.Peers = append(cfg.Peers, pc)
		}
		if err := c.ConfigureDevice(ws.Device, cfg); err != nil {
			return fmt.Errorf("configuring WireGuard device %s: %w", ws.Device, err)
		}
		site, _ := l.Site(name)
		err := Do(site.Gateway.NS, func() error {
			link, err := netlink.LinkByName(ws.Device)
			if err != nil {
				return fmt.Errorf("finding %s: %w", ws.Device, err)
			}
			if err := netlink.LinkSetUp(link); err != nil {
				return fmt.Errorf("bringing up %s: %w", ws.Device, err)
			}
			for _, peer := range m.order {
				if peer == name {
					continue
				}
				for _, p := range m.sites[peer].Networks {
					r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(p)}
					if err := netlink.RouteReplace(r); err != nil {
						return fmt.Errorf("routing %s into %s: %w", p, ws.Device, err)
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("configuring %s in %q: %w", ws.Device, site.Gateway.NS, err)
		}
	}
	return nil
}

func pairKey(a, b string) [2]string {
	if b < a {
		a, b = b, a
	}
	return [2]string{a, b}
}

func ipNets(ps []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, 0, len(ps))
	for _, p := range ps {
		out = append(out, *ipNet(p))
	}
	return out
}

// PresharedKey returns the preshared key the mesh gave the pair a, b, if
// any. It is a secret: tests use it to seed a credential store and to check
// that it never leaks.
func (m *WireGuardMesh) PresharedKey(a, b string) (wgtypes.Key, bool) {
	k, ok := m.psks[pairKey(a, b)]
	return k, ok
}

// Output returns what a site's wireguard-go printed (for failing tests).
func (m *WireGuardMesh) Output(site string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, ok := m.logs[site]; ok {
		return b.String()
	}
	return ""
}

// Close stops every wireguard-go of the mesh and removes their UAPI
// sockets. It is idempotent.
func (m *WireGuardMesh) Close() error {
	return m.stop(3*time.Second, func(s WireGuardSite) string { return filepath.Join(WireGuardSocketDir, s.Device+".sock") })
}

// syncBuffer is a bytes.Buffer safe for a daemon's output and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil // bounded: a chatty daemon must not eat memory
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
