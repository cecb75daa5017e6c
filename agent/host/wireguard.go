package host

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/wire"
)

// WireGuardSocketDir is where wireguard-go listens for UAPI (and where
// wgctrl looks for userspace devices). Every network namespace of a host
// shares it.
const WireGuardSocketDir = "/var/run/wireguard"

// WireGuard reads and configures the gateway's own WireGuard devices with
// wgctrl: kernel devices over generic netlink, wireguard-go devices over
// their UAPI socket.
//
// The UAPI socket directory is shared by every network namespace, so wgctrl
// alone would reach any namespace's userspace device. A device is therefore
// accepted only when a link of that name exists in the namespace this
// WireGuard was built in (rtnetlink bound there) and is a WireGuard link:
// kind "wireguard" answering as a kernel device, or a TUN with a UAPI
// socket of its name answering as a userspace device.
//
// Private keys are wiped as soon as they are read and never returned;
// preshared keys are returned only as references (wire.WGPresharedKeyRef).
type WireGuard struct {
	wg        *wgctrl.Client
	links     *netlink.Handle
	socketDir string
	// mu serialises Configure: it reads the device, resolves preshared
	// key references against it, then writes.
	mu sync.Mutex
}

var _ agent.WireGuardController = (*WireGuard)(nil)

// NewWireGuard binds to the calling thread's network namespace and opens
// wgctrl. Close it when done.
func NewWireGuard() (*WireGuard, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("opening rtnetlink: %w", err)
	}
	c, err := wgctrl.New()
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("opening wgctrl: %w", err)
	}
	return &WireGuard{wg: c, links: h, socketDir: WireGuardSocketDir}, nil
}

// Close releases wgctrl and the netlink socket.
func (w *WireGuard) Close() error {
	err := w.wg.Close()
	w.links.Close()
	return err
}

// Device reads the device. It changes nothing.
func (w *WireGuard) Device(ctx context.Context, name string) (wire.WGDevice, error) {
	if err := ctx.Err(); err != nil {
		return wire.WGDevice{}, err
	}
	d, err := w.read(name)
	if err != nil {
		return wire.WGDevice{}, err
	}
	return deviceToWire(d), nil
}

// Configure applies cfg in one wgctrl transaction (never ReplacePeers) and
// returns the device read back. A peer's PresharedKey that equals the
// reference of a preshared key on this device installs that key; otherwise
// it, like PrivateKey, must be a base64-encoded 32-byte key. Key material
// is wiped after use. Applying the same cfg twice leaves the device as the
// first call did.
func (w *WireGuard) Configure(ctx context.Context, name string, cfg wire.WGConfig) (wire.WGDevice, error) {
	if err := ctx.Err(); err != nil {
		return wire.WGDevice{}, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	cur, err := w.read(name)
	if err != nil {
		return wire.WGDevice{}, err
	}
	refs := presharedKeysByRef(cur)
	wipeDevice(cur)
	defer func() {
		for k := range refs {
			refs[k] = wgtypes.Key{}
		}
	}()
	c, err := toConfig(cfg, refs)
	defer wipeConfig(&c)
	if err != nil {
		return wire.WGDevice{}, err
	}
	if err := ctx.Err(); err != nil {
		return wire.WGDevice{}, err
	}
	if err := w.wg.ConfigureDevice(name, c); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return wire.WGDevice{}, fmt.Errorf("%w: WireGuard device %s went away", agent.ErrNotFound, name)
		}
		return wire.WGDevice{}, fmt.Errorf("applying the configuration: %w", err)
	}
	d, err := w.read(name)
	if err != nil {
		return wire.WGDevice{}, fmt.Errorf("reading the device back: %w", err)
	}
	return deviceToWire(d), nil
}

// read opens name through wgctrl once it has checked that name is a
// WireGuard link of this namespace, and that wgctrl reached the same kind
// of device. The caller must wipe the device.
func (w *WireGuard) read(name string) (*wgtypes.Device, error) {
	want, err := w.ownDevice(name)
	if err != nil {
		return nil, err
	}
	d, err := w.wg.Device(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: link %s does not answer as a WireGuard device", agent.ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("reading WireGuard device %s: %w", name, err)
	}
	if d.Type != want {
		wipeDevice(d)
		return nil, fmt.Errorf("%w: link %s is a %s WireGuard link but answered as a %s device (another namespace's?)", agent.ErrNotFound, name, want, d.Type)
	}
	return d, nil
}

// ownDevice checks that name is a WireGuard link in the bound namespace
// and returns the kind of device wgctrl must find behind it.
func (w *WireGuard) ownDevice(name string) (wgtypes.DeviceType, error) {
	if err := checkLinkName(name); err != nil {
		return 0, fmt.Errorf("%w: device: %w", agent.ErrInvalidParams, err)
	}
	l, err := w.links.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return 0, fmt.Errorf("%w: no link %s in the agent's network namespace", agent.ErrNotFound, name)
	}
	if err != nil {
		return 0, fmt.Errorf("finding link %s: %w", name, err)
	}
	switch t := l.Type(); t {
	case "wireguard":
		return wgtypes.LinuxKernel, nil
	case "tuntap", "tun": // netlink's name for the kernel's kind "tun"
		if tt, ok := l.(*netlink.Tuntap); ok && tt.Mode == netlink.TUNTAP_MODE_TAP {
			return 0, fmt.Errorf("%w: link %s is a TAP device, not WireGuard", agent.ErrNotFound, name)
		}
		sock := filepath.Join(w.socketDir, name+".sock")
		fi, err := os.Stat(sock)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && fi.Mode().Type() != fs.ModeSocket) {
			return 0, fmt.Errorf("%w: link %s is a TUN device without a WireGuard UAPI socket", agent.ErrNotFound, name)
		}
		if err != nil {
			return 0, fmt.Errorf("finding the UAPI socket of %s: %w", name, err)
		}
		return wgtypes.Userspace, nil
	default:
		return 0, fmt.Errorf("%w: link %s is of kind %q, not WireGuard", agent.ErrNotFound, name, t)
	}
}

// checkLinkName applies the kernel's rule for interface names: 1 to 15
// bytes, not "." or "..", no slash, colon, space or control character.
// Such a name is also safe as a file name under the socket directory.
func checkLinkName(name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." ||
		strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("%q is not an interface name", name)
	}
	return nil
}

// deviceToWire converts d, with preshared keys as references, and wipes
// d's keys.
func deviceToWire(d *wgtypes.Device) wire.WGDevice {
	defer wipeDevice(d)
	out := wire.WGDevice{
		Name: d.Name, Type: d.Type.String(), PublicKey: d.PublicKey.String(),
		ListenPort: d.ListenPort, Peers: make([]wire.WGPeer, 0, len(d.Peers)),
	}
	for i := range d.Peers {
		p := &d.Peers[i]
		wp := wire.WGPeer{
			PublicKey:           p.PublicKey.String(),
			PersistentKeepalive: wire.Duration(p.PersistentKeepaliveInterval),
			LastHandshake:       p.LastHandshakeTime,
			ReceiveBytes:        p.ReceiveBytes,
			TransmitBytes:       p.TransmitBytes,
			ProtocolVersion:     p.ProtocolVersion,
		}
		if p.PresharedKey != (wgtypes.Key{}) {
			wp.PresharedKeyRef = wire.WGPresharedKeyRef(d.PublicKey, p.PublicKey, p.PresharedKey)
		}
		if p.Endpoint != nil {
			wp.Endpoint = p.Endpoint.String()
		}
		for _, n := range p.AllowedIPs {
			wp.AllowedIPs = append(wp.AllowedIPs, n.String())
		}
		out.Peers = append(out.Peers, wp)
	}
	return out
}

// presharedKeysByRef maps the reference of every preshared key on d to
// the key. The caller zeroes the map's values.
func presharedKeysByRef(d *wgtypes.Device) map[string]wgtypes.Key {
	refs := map[string]wgtypes.Key{}
	for i := range d.Peers {
		p := &d.Peers[i]
		if p.PresharedKey != (wgtypes.Key{}) {
			refs[wire.WGPresharedKeyRef(d.PublicKey, p.PublicKey, p.PresharedKey)] = p.PresharedKey
		}
	}
	return refs
}

// toConfig converts a wire configuration. Errors name the field, never the
// value of a key.
func toConfig(c wire.WGConfig, refs map[string]wgtypes.Key) (wgtypes.Config, error) {
	var out wgtypes.Config
	if c.PrivateKey != "" {
		k, err := decodeKey(c.PrivateKey)
		if err != nil {
			return out, fmt.Errorf("%w: config.private_key: %w", agent.ErrInvalidParams, err)
		}
		out.PrivateKey = &k
	}
	if c.ListenPort != nil {
		port := *c.ListenPort
		if port < 0 || port > 65535 {
			return out, fmt.Errorf("%w: config.listen_port: %d is outside [0, 65535]", agent.ErrInvalidParams, port)
		}
		out.ListenPort = &port
	}
	for i, pc := range c.Peers {
		field := fmt.Sprintf("config.peers[%d]", i)
		pub, err := decodeKey(pc.PublicKey)
		if err != nil {
			return out, fmt.Errorf("%w: %s.public_key: %w", agent.ErrInvalidParams, field, err)
		}
		p := wgtypes.PeerConfig{PublicKey: pub, Remove: pc.Remove, UpdateOnly: pc.UpdateOnly, ReplaceAllowedIPs: pc.ReplaceAllowedIPs}
		if pc.PresharedKey != "" {
			k, ok := refs[pc.PresharedKey]
			if !ok {
				if k, err = decodeKey(pc.PresharedKey); err != nil {
					return out, fmt.Errorf("%w: %s.preshared_key: %w (nor the reference of a preshared key on this device)", agent.ErrInvalidParams, field, err)
				}
			}
			p.PresharedKey = &k
		}
		if pc.Endpoint != "" {
			ap, err := netip.ParseAddrPort(pc.Endpoint)
			if err != nil || ap.Port() == 0 {
				return out, fmt.Errorf("%w: %s.endpoint: %q is not an IP address and port", agent.ErrInvalidParams, field, pc.Endpoint)
			}
			p.Endpoint = net.UDPAddrFromAddrPort(ap)
		}
		if pc.PersistentKeepalive != nil {
			d := time.Duration(*pc.PersistentKeepalive)
			if d < 0 || d > 65535*time.Second {
				return out, fmt.Errorf("%w: %s.persistent_keepalive: %s is outside [0s, 65535s]", agent.ErrInvalidParams, field, d)
			}
			p.PersistentKeepaliveInterval = &d
		}
		for j, a := range pc.AllowedIPs {
			n, err := parseAllowedIP(a)
			if err != nil {
				return out, fmt.Errorf("%w: %s.allowed_ips[%d]: %w", agent.ErrInvalidParams, field, j, err)
			}
			p.AllowedIPs = append(p.AllowedIPs, n)
		}
		out.Peers = append(out.Peers, p)
	}
	return out, nil
}

// decodeKey decodes a standard base64 32-byte key, wiping the scratch
// bytes. Its error never contains the input.
func decodeKey(s string) (wgtypes.Key, error) {
	var k wgtypes.Key
	if len(s) != base64.StdEncoding.EncodedLen(wgtypes.KeyLen) {
		return k, errors.New("not a base64-encoded 32-byte key")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	defer clear(b)
	if err != nil || len(b) != wgtypes.KeyLen {
		return k, errors.New("not a base64-encoded 32-byte key")
	}
	copy(k[:], b)
	return k, nil
}

// parseAllowedIP parses a network (host bits cleared) or a bare address.
func parseAllowedIP(s string) (net.IPNet, error) {
	p, err := wire.ParseAllowedIP(s)
	if err != nil {
		return net.IPNet{}, err
	}
	p = p.Masked()
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, nil
}

func wipeDevice(d *wgtypes.Device) {
	clear(d.PrivateKey[:])
	for i := range d.Peers {
		clear(d.Peers[i].PresharedKey[:])
	}
}

func wipeConfig(c *wgtypes.Config) {
	if c.PrivateKey != nil {
		clear(c.PrivateKey[:])
	}
	for i := range c.Peers {
		if k := c.Peers[i].PresharedKey; k != nil {
			clear(k[:])
		}
	}
}
