package wgtest

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Network is a set of in-process WireGuard devices.
type Network struct {
	mu     sync.Mutex
	nodes  map[string]*Node
	closed bool
}

// Node is one device and the netstack behind it.
type Node struct {
	// Name is the device name Client uses.
	Name string
	// Addr is the node's address inside the tunnels; peers route
	// Addr/32 (or /128) to it.
	Addr netip.Addr
	// Endpoint is the node's UDP endpoint on 127.0.0.1.
	Endpoint netip.AddrPort

	dev   *device.Device
	stack *netstack.Net
}

// New returns an empty network. Close it.
func New() *Network { return &Network{nodes: map[string]*Node{}} }

// Add creates a node with a fresh private key, listening on a free port of
// 127.0.0.1.
func (n *Network) Add(name string, addr netip.Addr) (*Node, error) {
	tdev, stack, err := netstack.CreateNetTUN([]netip.Addr{addr}, nil, 1420)
	if err != nil {
		return nil, fmt.Errorf("creating netstack for %s: %w", name, err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	priv, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		dev.Close()
		return nil, err
	}
	err = dev.IpcSet("private_key=" + hex.EncodeToString(priv[:]) + "\nlisten_port=0\n")
	clear(priv[:])
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("configuring %s: %w", name, err)
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("bringing up %s: %w", name, err)
	}
	port, err := listenPort(dev)
	if err != nil {
		dev.Close()
		return nil, err
	}
	node := &Node{Name: name, Addr: addr, Endpoint: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port), dev: dev, stack: stack}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		dev.Close()
		return nil, errors.New("adding a node to a closed network")
	}
	if _, dup := n.nodes[name]; dup {
		dev.Close()
		return nil, fmt.Errorf("adding node %q: duplicate name", name)
	}
	n.nodes[name] = node
	return node, nil
}

func listenPort(dev *device.Device) (uint16, error) {
	s, err := dev.IpcGet()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			p, err := strconv.ParseUint(v, 10, 16)
			return uint16(p), err
		}
	}
	return 0, errors.New("reading the listen port: not reported")
}

// Node returns the named node.
func (n *Network) Node(name string) (*Node, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	nd, ok := n.nodes[name]
	return nd, ok
}

// Link configures a and b as peers of each other: endpoint, the other's
// address as AllowedIPs, an optional preshared key and keepalive.
func (n *Network) Link(a, b string, psk *wgtypes.Key, keepalive time.Duration) error {
	na, okA := n.Node(a)
	nb, okB := n.Node(b)
	if !okA || !okB {
		return fmt.Errorf("linking %s and %s: unknown node", a, b)
	}
	c := n.Client()
	for _, side := range [][2]*Node{{na, nb}, {nb, na}} {
		self, peer := side[0], side[1]
		d, err := c.Device(peer.Name)
		if err != nil {
			return err
		}
		pc := wgtypes.PeerConfig{
			PublicKey:         d.PublicKey,
			PresharedKey:      psk,
			Endpoint:          net.UDPAddrFromAddrPort(peer.Endpoint),
			ReplaceAllowedIPs: true,
			AllowedIPs:        []net.IPNet{hostNet(peer.Addr)},
		}
		if keepalive > 0 {
			pc.PersistentKeepaliveInterval = &keepalive
		}
		if err := c.ConfigureDevice(self.Name, wgtypes.Config{Peers: []wgtypes.PeerConfig{pc}}); err != nil {
			return fmt.Errorf("linking %s to %s: %w", self.Name, peer.Name, err)
		}
	}
	return nil
}

func hostNet(a netip.Addr) net.IPNet {
	return net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

// Close shuts every device down. It is idempotent.
func (n *Network) Close() error {
	n.mu.Lock()
	nodes := n.nodes
	n.nodes, n.closed = map[string]*Node{}, true
	n.mu.Unlock()
	for _, nd := range nodes {
		nd.dev.Close()
	}
	return nil
}

// Client returns a wireguard.Client for the network's devices, speaking
// the same UAPI text protocol wgctrl speaks to wireguard-go sockets.
func (n *Network) Client() *Client { return &Client{n: n} }

// Client configures and reads the network's devices by name. Wrap it to
// inject faults.
type Client struct{ n *Network }

// Device reads a device's state (like wgctrl, it includes keys: callers
// must not print it).
func (c *Client) Device(name string) (*wgtypes.Device, error) {
	nd, ok := c.n.Node(name)
	if !ok {
		return nil, os.ErrNotExist
	}
	s, err := nd.dev.IpcGet()
	if err != nil {
		return nil, err
	}
	d, err := parseUAPI(s)
	if err != nil {
		return nil, err
	}
	d.Name = name
	return d, nil
}

// ConfigureDevice applies cfg in one UAPI set operation.
func (c *Client) ConfigureDevice(name string, cfg wgtypes.Config) error {
	nd, ok := c.n.Node(name)
	if !ok {
		return os.ErrNotExist
	}
	var b strings.Builder
	if cfg.PrivateKey != nil {
		fmt.Fprintf(&b, "private_key=%s\n", hex.EncodeToString(cfg.PrivateKey[:]))
	}
	if cfg.ListenPort != nil {
		fmt.Fprintf(&b, "listen_port=%d\n", *cfg.ListenPort)
	}
	if cfg.ReplacePeers {
		b.WriteString("replace_peers=true\n")
	}
	for _, p := range cfg.Peers {
		fmt.Fprintf(&b, "public_key=%s\n", hex.EncodeToString(p.PublicKey[:]))
		if p.Remove {
			b.WriteString("remove=true\n")
			continue
		}
		if p.UpdateOnly {
			b.WriteString("update_only=true\n")
		}
		if p.PresharedKey != nil {
			fmt.Fprintf(&b, "preshared_key=%s\n", hex.EncodeToString(p.PresharedKey[:]))
		}
		if p.Endpoint != nil {
			fmt.Fprintf(&b, "endpoint=%s\n", p.Endpoint.AddrPort())
		}
		if p.PersistentKeepaliveInterval != nil {
			fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", int(p.PersistentKeepaliveInterval.Seconds()))
		}
		if p.ReplaceAllowedIPs {
			b.WriteString("replace_allowed_ips=true\n")
		}
		for _, ipn := range p.AllowedIPs {
			fmt.Fprintf(&b, "allowed_ip=%s\n", ipn.String())
		}
	}
	if err := nd.dev.IpcSet(b.String()); err != nil {
		// wireguard-go's error names the failing key, never its value.
		return fmt.Errorf("configuring %s: %w", name, err)
	}
	return nil
}

// deviceKey reports whether k may appear before the first peer.
func deviceKey(k string) bool {
	switch k {
	case "private_key", "listen_port", "fwmark", "public_key", "errno":
		return true
	}
	return false
}

func parseUAPI(s string) (*wgtypes.Device, error) {
	d := &wgtypes.Device{Type: wgtypes.Userspace}
	var peer *wgtypes.Peer
	var hsSec, hsNsec int64
	flush := func() {
		if peer != nil && (hsSec != 0 || hsNsec != 0) {
			peer.LastHandshakeTime = time.Unix(hsSec, hsNsec)
		}
		hsSec, hsNsec = 0, 0
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok || (peer == nil && !deviceKey(k)) {
			continue
		}
		num := func() int64 { x, _ := strconv.ParseInt(v, 10, 64); return x }
		key := func() wgtypes.Key {
			var out wgtypes.Key
			_, _ = hex.Decode(out[:], []byte(v))
			return out
		}
		switch k {
		case "private_key":
			d.PrivateKey = key()
			d.PublicKey = d.PrivateKey.PublicKey()
		case "listen_port":
			d.ListenPort = int(num())
		case "public_key":
			flush()
			d.Peers = append(d.Peers, wgtypes.Peer{PublicKey: key()})
			peer = &d.Peers[len(d.Peers)-1]
		case "preshared_key":
			peer.PresharedKey = key()
		case "endpoint":
			if ap, err := netip.ParseAddrPort(v); err == nil {
				peer.Endpoint = net.UDPAddrFromAddrPort(ap)
			}
		case "persistent_keepalive_interval":
			peer.PersistentKeepaliveInterval = time.Duration(num()) * time.Second
		case "last_handshake_time_sec":
			hsSec = num()
		case "last_handshake_time_nsec":
			hsNsec = num()
		case "rx_bytes":
			peer.ReceiveBytes = num()
		case "tx_bytes":
			peer.TransmitBytes = num()
		case "allowed_ip":
			if p, err := netip.ParsePrefix(v); err == nil {
				peer.AllowedIPs = append(peer.AllowedIPs, hostNetPrefix(p))
			}
		case "errno":
			if num() != 0 {
				return nil, fmt.Errorf("UAPI get failed with errno %s", v)
			}
		}
	}
	flush()
	return d, sc.Err()
}

func hostNetPrefix(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// ServeEcho runs a UDP echo server on the node's tunnel address.
func (nd *Node) ServeEcho(port uint16) (stop func(), err error) {
	c, err := nd.stack.ListenUDPAddrPort(netip.AddrPortFrom(nd.Addr, port))
	if err != nil {
		return nil, fmt.Errorf("listening on %s:%d: %w", nd.Addr, port, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo(buf[:n], from)
		}
	}()
	return func() { _ = c.Close(); <-done }, nil
}

// Flow is a continuous UDP probe through the tunnel from a node to an echo
// server, recording when each echo came back.
type Flow struct {
	conn interface {
		Write([]byte) (int, error)
		Read([]byte) (int, error)
		Close() error
	}
	mu      sync.Mutex
	replies []time.Time
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// StartFlow sends a datagram from nd to to every interval.
func (nd *Node) StartFlow(to netip.AddrPort, interval time.Duration) (*Flow, error) {
	c, err := nd.stack.DialUDPAddrPort(netip.AddrPortFrom(nd.Addr, 0), to)
	if err != nil {
		return nil, fmt.Errorf("dialling %s from %s: %w", to, nd.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Flow{conn: c, cancel: cancel}
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		buf := make([]byte, 8)
		for seq := uint64(1); ; seq++ {
			binary.BigEndian.PutUint64(buf, seq)
			_, _ = c.Write(buf)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	go func() {
		defer f.wg.Done()
		buf := make([]byte, 64)
		for {
			if _, err := c.Read(buf); err != nil {
				if ctx.Err() != nil {
					return
				}
				continue
			}
			now := time.Now()
			f.mu.Lock()
			f.replies = append(f.replies, now)
			f.mu.Unlock()
		}
	}()
	return f, nil
}

// LongestGap is the longest time without an echo between from and to,
// counting from from to the first echo and from the last echo to to.
func (f *Flow) LongestGap(from, to time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	prev, gap := from, time.Duration(0)
	i := sort.Search(len(f.replies), func(i int) bool { return !f.replies[i].Before(from) })
	for ; i < len(f.replies) && !f.replies[i].After(to); i++ {
		gap = max(gap, f.replies[i].Sub(prev))
		prev = f.replies[i]
	}
	return max(gap, to.Sub(prev))
}

// Received counts echoes so far.
func (f *Flow) Received() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.replies)
}

// Stop ends the flow. It is idempotent.
func (f *Flow) Stop() {
	f.cancel()
	_ = f.conn.Close()
	f.wg.Wait()
}

// Echo sends one datagram from nd to an echo server and waits for it.
func (nd *Node) Echo(ctx context.Context, to netip.AddrPort, timeout time.Duration) error {
	c, err := nd.stack.DialUDPAddrPort(netip.AddrPortFrom(nd.Addr, 0), to)
	if err != nil {
		return fmt.Errorf("dialling %s from %s: %w", to, nd.Name, err)
	}
	defer c.Close()
	dl := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = c.SetDeadline(dl)
	msg := []byte("wgtest-echo")
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("echo from %s to %s: %w", nd.Name, to, err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("echo from %s to %s: %w", nd.Name, to, err)
	}
	if string(buf[:n]) != string(msg) {
		return fmt.Errorf("echo from %s to %s: wrong reply", nd.Name, to)
	}
	return nil
}
