package linux

// The controller's side of the tunnel commands of `warden agent`: reading
// and configuring a gateway's WireGuard device, running whitelisted VICI
// commands against its charon, and blocking a revoked peer's addresses.
// AgentWireGuard and AgentVICI adapt these to the seams of
// providers/wireguard (its Client, whose methods speak only wgctrl's types)
// and providers/strongswan (internal/charon's Dialer and Conn), so the same
// providers that tests drive through local devices run in production
// through the agents. Neither provider is imported here: the composition
// root (package daemon) hands these adapters to them.
//
// Secrets (a WireGuard private or preshared key, an IPsec PSK) travel only
// in the request to the one gateway that needs them. A WireGuard preshared
// key never travels back: the agent returns a reference to it instead,
// which the controller may send back to mean "that key" (see
// wire.WGPeer.PresharedKeyRef). Errors never carry a secret, even when an
// agent echoes its request in its answer: see redactSecrets.

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/strongswan/govici/vici"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/charon"
	"github.com/warden-ir/warden/inventory"
)

// ErrUnknownGateway: a tunnel operation named a gateway the inventory does
// not hold (terminal).
var ErrUnknownGateway = errors.New("gateway not in the inventory")

// WireGuard reads or configures one WireGuard device of the gateway.
// Configure is idempotent as far as WireGuard's own UAPI semantics are:
// applying the same WGConfig twice leaves the same device.
func (c *AgentClient) WireGuard(ctx context.Context, p wire.WireGuardParams) (wire.WireGuardResult, error) {
	return call[wire.WireGuardResult](ctx, c, wire.KindWireGuard, p)
}

// VICI runs one whitelisted VICI command against the gateway's charon and
// returns its reply and, for a streamed command, its events. Whether a
// repeat is harmless is the command's own property (unload and terminate
// are; rekey queues another rekey).
func (c *AgentClient) VICI(ctx context.Context, p wire.VICIParams) (wire.VICIResult, error) {
	return call[wire.VICIResult](ctx, c, wire.KindVICI, p)
}

// Block blocks (or, with Remove, unblocks) a revoked peer's addresses on
// the gateway. Idempotent: the same block twice reports Changed=false.
func (c *AgentClient) Block(ctx context.Context, p wire.BlockParams) (wire.BlockResult, error) {
	return call[wire.BlockResult](ctx, c, wire.KindBlock, p)
}

// BlockPeer makes gw drop every packet from and to the revoked peer's
// addresses (or, with p.Remove, lifts that block) and checks the block the
// agent read back from the kernel: an error wrapping actions.ErrNotVerified
// is returned, with the result, when the agent does not report it in force
// (or, for Remove, gone). Idempotent, like the agent's block.
//
// An empty peer, a block without addresses, a prefix of length zero (every
// address) and a prefix that covers one of gw's management networks are
// refused as terminal errors before anything is sent: a block must never
// cut the controller off from the gateway.
func BlockPeer(ctx context.Context, agents Agents, gw inventory.Gateway, p wire.BlockParams) (wire.BlockResult, error) {
	want, err := agentBlockPrefixes(gw, p)
	if err != nil {
		return wire.BlockResult{}, actions.Terminal(fmt.Errorf("blocking peer %q on %s: %w", p.Peer, gw.ID, err))
	}
	c, err := agents.For(gw)
	if err != nil {
		return wire.BlockResult{}, err
	}
	res, err := c.Block(ctx, p)
	if err != nil {
		verb := "blocking"
		if p.Remove {
			verb = "unblocking"
		}
		return res, fmt.Errorf("%s peer %q on %s: %w", verb, p.Peer, gw.ID, err)
	}
	return res, agentBlockVerify(gw.ID, p, want, res)
}

// PeerBlocked reads gw's blocks back (observe, which changes nothing) and
// checks that the block p asks for is recorded and enforced by the
// kernel, with the same comparison BlockPeer applies to its answer.
func PeerBlocked(ctx context.Context, agents Agents, gw inventory.Gateway, p wire.BlockParams) error {
	want, err := agentBlockPrefixes(gw, p)
	if err != nil {
		return actions.Terminal(fmt.Errorf("checking the block of peer %q on %s: %w", p.Peer, gw.ID, err))
	}
	c, err := agents.For(gw)
	if err != nil {
		return err
	}
	st, err := c.Observe(ctx)
	if err != nil {
		return fmt.Errorf("checking the block of peer %q on %s: %w", p.Peer, gw.ID, err)
	}
	return agentBlockVerify(gw.ID, p, want, wire.BlockResult{Blocked: st.Blocked, Enforced: st.BlockEnforced})
}

// agentBlockPrefixes validates p and returns its addresses as prefixes.
func agentBlockPrefixes(gw inventory.Gateway, p wire.BlockParams) ([]netip.Prefix, error) {
	if strings.TrimSpace(p.Peer) == "" {
		return nil, errors.New("no peer named")
	}
	if p.Remove {
		return nil, nil
	}
	if len(p.Addresses) == 0 {
		return nil, errors.New("no addresses to block (an empty block is never \"everything\")")
	}
	var mgmt []netip.Prefix
	for _, m := range gw.ManagementNetworks {
		if pm, err := netip.ParsePrefix(m); err == nil {
			mgmt = append(mgmt, wire.CanonicalPrefix(pm))
		}
	}
	out := make([]netip.Prefix, 0, len(p.Addresses))
	for _, a := range p.Addresses {
		pr, err := agentBlockPrefix(a)
		if err != nil {
			return nil, err
		}
		if pr.Bits() == 0 {
			return nil, fmt.Errorf("refusing to block %s: it is every %s address", a, prefixFamilyName(pr))
		}
		for _, m := range mgmt {
			if pr.Addr().BitLen() == m.Addr().BitLen() && pr.Bits() <= m.Bits() && pr.Contains(m.Addr()) {
				return nil, fmt.Errorf("refusing to block %s: it covers the management network %s", a, m)
			}
		}
		out = append(out, pr)
	}
	return out, nil
}

func prefixFamilyName(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// agentBlockPrefix reads "192.0.2.7" or "192.0.2.0/24" as a masked prefix.
func agentBlockPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is neither an IP address nor a prefix", s)
		}
		return wire.CanonicalPrefix(p), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither an IP address nor a prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// agentBlockVerify compares the agent's read-back with what was asked.
func agentBlockVerify(gwID string, p wire.BlockParams, want []netip.Prefix, res wire.BlockResult) error {
	var entry *wire.BlockedPeer
	for i := range res.Blocked {
		if res.Blocked[i].Peer == p.Peer {
			entry = &res.Blocked[i]
		}
	}
	if p.Remove {
		if entry != nil {
			return fmt.Errorf("unblocking peer %q on %s: %w: the agent still lists its block of %s",
				p.Peer, gwID, actions.ErrNotVerified, strings.Join(entry.Addresses, ", "))
		}
		return nil
	}
	if entry == nil {
		return fmt.Errorf("blocking peer %q on %s: %w: the agent does not list the block", p.Peer, gwID, actions.ErrNotVerified)
	}
	have := map[netip.Prefix]bool{}
	for _, a := range entry.Addresses {
		if pr, err := agentBlockPrefix(a); err == nil {
			have[pr] = true
		}
	}
	var missing []string
	for _, w := range want {
		if !have[w] {
			missing = append(missing, w.String())
		}
	}
	switch {
	case len(missing) > 0:
		return fmt.Errorf("blocking peer %q on %s: %w: %s not blocked", p.Peer, gwID, actions.ErrNotVerified, strings.Join(missing, ", "))
	case !res.Enforced:
		return fmt.Errorf("blocking peer %q on %s: %w: the kernel does not drop every blocked address", p.Peer, gwID, actions.ErrNotVerified)
	}
	return nil
}

// AgentDeviceName names a WireGuard device reached through a gateway's
// agent: "<gatewayID>/<device>" ("gw-osaka/wg0"). Gateway ids never hold a
// slash, so the name splits back unambiguously.
func AgentDeviceName(gatewayID, device string) string { return gatewayID + "/" + device }

// DefaultAgentTunnelTimeout bounds one AgentWireGuard call.
const DefaultAgentTunnelTimeout = 30 * time.Second

// AgentWireGuard is a providers/wireguard Client (checked where the daemon
// hands it to wireguard.New) whose devices are on the gateways, reached
// through their agents. Device names are AgentDeviceName's. Safe for
// concurrent use.
//
// Device returns no private key (the agent never reads it out) and, for a
// preshared key, the 32 bytes of the agent's reference to it instead of the
// key. Configuring a peer with those bytes as its preshared key makes the
// agent install the referenced key: providers/wireguard copies a key
// between entries of a device without the key leaving the gateway.
// ConfigureDevice has WireGuard's own idempotence; it refuses ReplacePeers
// (which would cut every tunnel of the gateway) and FirewallMark (which the
// agent does not set).
type AgentWireGuard struct {
	agents  Agents
	inv     *inventory.Inventory
	timeout time.Duration
}

// NewAgentWireGuard returns a client of the inventory's gateways' WireGuard
// devices. wgctrl's interface has no context, so each call is bounded by
// timeout instead (DefaultAgentTunnelTimeout when zero or less).
func NewAgentWireGuard(agents Agents, inv *inventory.Inventory, timeout time.Duration) *AgentWireGuard {
	if timeout <= 0 {
		timeout = DefaultAgentTunnelTimeout
	}
	return &AgentWireGuard{agents: agents, inv: inv, timeout: timeout}
}

// resolve splits an AgentDeviceName and finds the gateway's agent.
func (a *AgentWireGuard) resolve(name string) (string, string, *AgentClient, error) {
	gwID, dev, ok := strings.Cut(name, "/")
	if !ok || gwID == "" || dev == "" || strings.Contains(dev, "/") {
		return "", "", nil, actions.Terminal(fmt.Errorf("reaching WireGuard device %q: want \"<gateway>/<device>\"", name))
	}
	c, err := agentOfGateway(a.agents, a.inv, gwID)
	if err != nil {
		return gwID, dev, nil, fmt.Errorf("reaching WireGuard device %s on %s: %w", dev, gwID, err)
	}
	return gwID, dev, c, nil
}

// agentOfGateway finds gwID in the inventory and returns its agent's client.
func agentOfGateway(agents Agents, inv *inventory.Inventory, gwID string) (*AgentClient, error) {
	if inv == nil {
		return nil, actions.Terminal(fmt.Errorf("%w %q: no inventory", ErrUnknownGateway, gwID))
	}
	gw, ok := inv.Gateway(gwID)
	if !ok {
		return nil, actions.Terminal(fmt.Errorf("%w %q", ErrUnknownGateway, gwID))
	}
	// A gateway without an agent gets actions.ErrUnsupported, terminal.
	return agents.For(gw)
}

// Device reads the device through its gateway's agent.
func (a *AgentWireGuard) Device(name string) (*wgtypes.Device, error) {
	gwID, dev, c, err := a.resolve(name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	res, err := c.WireGuard(ctx, wire.WireGuardParams{Op: wire.WireGuardDevice, Device: dev})
	if err != nil {
		return nil, fmt.Errorf("reading WireGuard device %s on %s through its agent: %w", dev, gwID, err)
	}
	if res.Device.Name != "" && res.Device.Name != dev {
		return nil, actions.Terminal(fmt.Errorf("reading WireGuard device %s on %s: the agent answered for device %q", dev, gwID, res.Device.Name))
	}
	d, err := wgDeviceFromWire(res.Device)
	if err != nil {
		return nil, actions.Terminal(fmt.Errorf("reading WireGuard device %s on %s: the agent's answer: %w", dev, gwID, err))
	}
	d.Name = name
	return d, nil
}

// ConfigureDevice applies cfg through the gateway's agent, in one UAPI
// transaction there.
func (a *AgentWireGuard) ConfigureDevice(name string, cfg wgtypes.Config) error {
	wc, secrets, err := wgConfigToWire(cfg)
	if err != nil {
		return actions.Terminal(fmt.Errorf("configuring WireGuard device %q: %w", name, err))
	}
	gwID, dev, c, err := a.resolve(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	_, err = c.WireGuard(ctx, wire.WireGuardParams{Op: wire.WireGuardConfigure, Device: dev, Config: &wc})
	if err != nil {
		return fmt.Errorf("configuring WireGuard device %s on %s through its agent: %w", dev, gwID, redactSecrets(err, secrets...))
	}
	return nil
}

// wgDeviceFromWire converts the agent's device. Errors name public keys
// only.
func wgDeviceFromWire(w wire.WGDevice) (*wgtypes.Device, error) {
	d := &wgtypes.Device{Name: w.Name, Type: agentWGDeviceType(w.Type), ListenPort: w.ListenPort}
	var err error
	if d.PublicKey, err = agentWireKey(w.PublicKey, true); err != nil {
		return nil, fmt.Errorf("device public key: %w", err)
	}
	d.Peers = make([]wgtypes.Peer, 0, len(w.Peers))
	for i, wp := range w.Peers {
		p := wgtypes.Peer{
			PersistentKeepaliveInterval: time.Duration(wp.PersistentKeepalive),
			ReceiveBytes:                wp.ReceiveBytes,
			TransmitBytes:               wp.TransmitBytes,
			ProtocolVersion:             wp.ProtocolVersion,
		}
		if p.PublicKey, err = agentWireKey(wp.PublicKey, false); err != nil {
			return nil, fmt.Errorf("peer %d public key: %w", i, err)
		}
		if p.PresharedKey, err = agentWireKey(wp.PresharedKeyRef, true); err != nil {
			return nil, fmt.Errorf("preshared key reference of peer %s: %w", p.PublicKey, err)
		}
		if wp.Endpoint != "" {
			ap, err := netip.ParseAddrPort(wp.Endpoint)
			if err != nil {
				return nil, fmt.Errorf("endpoint of peer %s: %q is not address:port", p.PublicKey, wp.Endpoint)
			}
			p.Endpoint = net.UDPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
		// wgctrl reports "never" as the zero time; an agent that sends the
		// Unix epoch means the same.
		if t := wp.LastHandshake; !t.IsZero() && t.Unix() > 0 {
			p.LastHandshakeTime = t
		}
		for _, s := range wp.AllowedIPs {
			n, err := agentIPNetFromWire(s)
			if err != nil {
				return nil, fmt.Errorf("allowed IPs of peer %s: %w", p.PublicKey, err)
			}
			p.AllowedIPs = append(p.AllowedIPs, n)
		}
		d.Peers = append(d.Peers, p)
	}
	return d, nil
}

// agentWireKey reads a base64 key of 32 bytes. Its errors never quote the
// input: a preshared key field may hold a secret.
func agentWireKey(s string, emptyOK bool) (wgtypes.Key, error) {
	if s == "" {
		if emptyOK {
			return wgtypes.Key{}, nil
		}
		return wgtypes.Key{}, errors.New("missing")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return wgtypes.Key{}, errors.New("not base64")
	}
	if len(b) != wgtypes.KeyLen {
		return wgtypes.Key{}, fmt.Errorf("%d bytes, want %d", len(b), wgtypes.KeyLen)
	}
	return wgtypes.Key(b), nil
}

// agentWGDeviceType maps the agent's type name (wgctrl's DeviceType.String) back.
func agentWGDeviceType(s string) wgtypes.DeviceType {
	for _, t := range []wgtypes.DeviceType{wgtypes.LinuxKernel, wgtypes.OpenBSDKernel, wgtypes.FreeBSDKernel, wgtypes.WindowsKernel, wgtypes.Userspace} {
		if strings.EqualFold(s, t.String()) {
			return t
		}
	}
	return wgtypes.Unknown
}

func agentIPNetFromWire(s string) (net.IPNet, error) {
	p, err := agentAllowedIP(s)
	if err != nil {
		return net.IPNet{}, err
	}
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, nil
}

// agentAllowedIP reads a CIDR (or a bare address, a single host) without
// masking it: what the device holds is passed on as it is.
func agentAllowedIP(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
	}
	return wire.CanonicalPrefix(p), nil
}

// agentIPNetToWire writes a net.IPNet as a CIDR, IPv4 in dotted form even when
// held in 16 bytes.
func agentIPNetToWire(n net.IPNet) (string, error) {
	ones, bits := n.Mask.Size()
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok || bits == 0 {
		return "", fmt.Errorf("%s is not an address with a CIDR mask", n.String())
	}
	switch {
	case a.Is4In6() && bits == 128:
		if ones < 96 {
			return "", fmt.Errorf("%s mixes an IPv4 address with a short IPv6 mask", n.String())
		}
		ones -= 96
		a = a.Unmap()
	case a.Is4In6():
		a = a.Unmap()
	}
	if a.BitLen() != bits && !(a.Is4() && bits == 32) {
		return "", fmt.Errorf("%s: the mask does not fit the address", n.String())
	}
	return netip.PrefixFrom(a, ones).String(), nil
}

// wgConfigToWire converts a wgctrl configuration for the agent. It also
// returns every secret it wrote (in the forms an agent might echo), for
// redactSecrets. Its errors name public keys only.
func wgConfigToWire(cfg wgtypes.Config) (wire.WGConfig, []string, error) {
	if cfg.ReplacePeers {
		return wire.WGConfig{}, nil, errors.New("ReplacePeers would cut every tunnel of the gateway at once; the agent does not offer it (remove peers one by one)")
	}
	if cfg.FirewallMark != nil {
		return wire.WGConfig{}, nil, fmt.Errorf("setting a firewall mark through the agent: %w", actions.ErrUnsupported)
	}
	var secrets []string
	secret := func(k wgtypes.Key) string {
		s := k.String()
		secrets = append(secrets, s, hex.EncodeToString(k[:]))
		return s
	}
	var w wire.WGConfig
	if cfg.PrivateKey != nil {
		w.PrivateKey = secret(*cfg.PrivateKey)
	}
	if cfg.ListenPort != nil {
		port := *cfg.ListenPort
		if port < 0 || port > 65535 {
			return wire.WGConfig{}, secrets, fmt.Errorf("listen port %d out of range", port)
		}
		w.ListenPort = &port
	}
	for _, pc := range cfg.Peers {
		wp := wire.WGPeerConfig{
			PublicKey:         pc.PublicKey.String(),
			Remove:            pc.Remove,
			UpdateOnly:        pc.UpdateOnly,
			ReplaceAllowedIPs: pc.ReplaceAllowedIPs,
		}
		if pc.PresharedKey != nil {
			// A new key, or the 32 bytes of a reference read by Device:
			// the agent tells them apart.
			wp.PresharedKey = secret(*pc.PresharedKey)
		}
		if pc.Endpoint != nil {
			ap := pc.Endpoint.AddrPort()
			if !ap.Addr().IsValid() {
				return wire.WGConfig{}, secrets, fmt.Errorf("endpoint of peer %s has no address", pc.PublicKey)
			}
			wp.Endpoint = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
		}
		if pc.PersistentKeepaliveInterval != nil {
			ka := *pc.PersistentKeepaliveInterval
			if ka < 0 {
				return wire.WGConfig{}, secrets, fmt.Errorf("keepalive of peer %s is negative", pc.PublicKey)
			}
			d := wire.Duration(ka)
			wp.PersistentKeepalive = &d
		}
		for _, n := range pc.AllowedIPs {
			s, err := agentIPNetToWire(n)
			if err != nil {
				return wire.WGConfig{}, secrets, fmt.Errorf("allowed IPs of peer %s: %w", pc.PublicKey, err)
			}
			wp.AllowedIPs = append(wp.AllowedIPs, s)
		}
		w.Peers = append(w.Peers, wp)
	}
	return w, secrets, nil
}

// AgentVICI is a charon.Dialer whose sites are gateways (by inventory
// id), reached through their agents. Its connections are stateless: each
// command is one agent request, and Close does nothing. It does not offer
// charon.EventWatcher, so the provider polls while waiting for a
// reauthentication. Safe for concurrent use.
type AgentVICI struct {
	agents Agents
	inv    *inventory.Inventory
}

var _ charon.Dialer = (*AgentVICI)(nil)

// NewAgentVICI returns a dialer of the inventory's gateways' charons.
func NewAgentVICI(agents Agents, inv *inventory.Inventory) *AgentVICI {
	return &AgentVICI{agents: agents, inv: inv}
}

// Dial finds the gateway's agent; it sends nothing.
func (a *AgentVICI) Dial(ctx context.Context, site string) (charon.Conn, error) {
	c, err := agentOfGateway(a.agents, a.inv, site)
	if err != nil {
		return nil, fmt.Errorf("reaching charon on %s: %w", site, err)
	}
	return &agentVICIConn{client: c, gateway: site}, nil
}

type agentVICIConn struct {
	client  *AgentClient
	gateway string
}

var _ charon.Conn = (*agentVICIConn)(nil)

// Call runs cmd through the agent. charon's refusal (success=no) is an
// error whose text holds charon's errmsg, whether the agent reports it as
// its own error or returns the reply.
func (c *agentVICIConn) Call(ctx context.Context, cmd string, in *vici.Message) (*vici.Message, error) {
	res, err := c.run(ctx, cmd, "", in)
	if err != nil {
		return nil, err
	}
	return c.reply(cmd, res)
}

// Stream runs a streamed command through the agent and returns its events.
func (c *agentVICIConn) Stream(ctx context.Context, cmd, event string, in *vici.Message) ([]*vici.Message, error) {
	if want, ok := wire.VICICommands()[cmd]; ok && want != event {
		return nil, actions.Terminal(fmt.Errorf("running VICI %s on %s: it streams %q events, not %q", cmd, c.gateway, want, event))
	}
	res, err := c.run(ctx, cmd, event, in)
	if err != nil {
		return nil, err
	}
	if _, err := c.reply(cmd, res); err != nil {
		return nil, err
	}
	out := make([]*vici.Message, 0, len(res.Events))
	for i, ev := range res.Events {
		m, err := charon.FromWire(ev)
		if err != nil {
			return nil, actions.Terminal(fmt.Errorf("running VICI %s on %s: event %d of the agent's answer: %w", cmd, c.gateway, i, err))
		}
		if m == nil {
			m = vici.NewMessage()
		}
		out = append(out, m)
	}
	return out, nil
}

// Close does nothing: there is no connection to close.
func (c *agentVICIConn) Close() error { return nil }

func (c *agentVICIConn) run(ctx context.Context, cmd, event string, in *vici.Message) (wire.VICIResult, error) {
	if _, ok := wire.VICICommands()[cmd]; !ok {
		return wire.VICIResult{}, actions.Terminal(fmt.Errorf("running VICI %s on %s: the agent does not run this command: %w", cmd, c.gateway, actions.ErrUnsupported))
	}
	res, err := c.client.VICI(ctx, wire.VICIParams{Command: cmd, Event: event, Message: charon.ToWire(in)})
	if err != nil {
		return res, fmt.Errorf("running VICI %s on %s through its agent: %w", cmd, c.gateway, redactSecrets(err, agentVICISecrets(in)...))
	}
	return res, nil
}

func (c *agentVICIConn) reply(cmd string, res wire.VICIResult) (*vici.Message, error) {
	m, err := charon.FromWire(res.Reply)
	if err != nil {
		return nil, actions.Terminal(fmt.Errorf("running VICI %s on %s: the agent's answer: %w", cmd, c.gateway, err))
	}
	if m == nil {
		m = vici.NewMessage()
	}
	if err := m.Err(); err != nil {
		return nil, fmt.Errorf("running VICI %s on %s: charon refused: %w", cmd, c.gateway, err)
	}
	return m, nil
}

// agentVICISecrets returns the secret values of a command message (a shared
// key's "data"), in the forms an agent might echo them.
func agentVICISecrets(in *vici.Message) []string {
	if in == nil {
		return nil
	}
	s, ok := in.Get("data").(string)
	if !ok || s == "" {
		return nil
	}
	j, _ := json.Marshal(s)
	return []string{s, strings.Trim(string(j), `"`), base64.StdEncoding.EncodeToString([]byte(s)), hex.EncodeToString([]byte(s))}
}

// redactedError stands for an agent error whose text held a secret: the
// text with the secret blanked, and the classification of the original
// (terminal, unsupported, the agent's status) but not its chain, which
// still holds the secret.
type redactedError struct {
	msg  string
	kind []error
}

func (e *redactedError) Error() string   { return e.msg }
func (e *redactedError) Unwrap() []error { return e.kind }

// redactSecrets returns err unchanged unless its text holds one of the
// secrets (or, where the agent's message was cut short, the start of one);
// then it returns a redactedError.
func redactSecrets(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg, hit := blankSecrets(err.Error(), secrets)
	if !hit {
		return err
	}
	r := &redactedError{msg: msg}
	var ae *AgentError
	if errors.As(err, &ae) {
		m, _ := blankSecrets(ae.Message, secrets)
		r.kind = append(r.kind, &AgentError{Status: ae.Status, Message: m})
	}
	if errors.Is(err, actions.ErrUnsupported) {
		r.kind = append(r.kind, actions.ErrUnsupported)
	}
	if actions.IsTerminal(err) {
		return actions.Terminal(r)
	}
	return r
}

// blankSecrets replaces every secret in msg, and the start of one that
// ends a message classifyAgentAnswer cut short ("…").
func blankSecrets(msg string, secrets []string) (string, bool) {
	const blank = "[redacted]"
	hit := false
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(msg, s) {
			msg, hit = strings.ReplaceAll(msg, s, blank), true
		}
		if body, ok := strings.CutSuffix(msg, "…"); ok {
			for k := len(s) - 1; k > 0; k-- {
				if strings.HasSuffix(body, s[:k]) {
					msg, hit = body[:len(body)-k]+blank+"…", true
					break
				}
			}
		}
	}
	return msg, hit
}
