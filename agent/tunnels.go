package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/warden-ir/warden/agent/wire"
)

// The commands of tunnel revocation and rotation: read or change a
// WireGuard device, run a whitelisted VICI command, block a revoked peer.
// Their parameters carry secrets (private and preshared keys, IPsec PSKs):
// nothing here logs parameters, and no error quotes a key.

// origin is where a command came from and arrived at: the ends of the
// controller↔agent path that no block may cut.
type origin struct {
	caller netip.Addr
	local  netip.Addr
	// nonce is the command's nonce when it is not on disk yet (isolate,
	// confirm); nil when it is.
	nonce *commandNonce
}

// wireGuard validates p and reads or configures the device.
func (s *Server) wireGuard(ctx context.Context, p wire.WireGuardParams) (wire.WireGuardResult, error) {
	if err := validateWireGuard(p); err != nil {
		return wire.WireGuardResult{}, badParams(err)
	}
	if s.deps.WireGuard == nil {
		return wire.WireGuardResult{}, errNoWireGuard
	}
	var dev wire.WGDevice
	var err error
	if p.Op == wire.WireGuardDevice {
		if dev, err = s.deps.WireGuard.Device(ctx, p.Device); err != nil {
			return wire.WireGuardResult{}, fmt.Errorf("reading WireGuard device %s: %w", p.Device, err)
		}
		return wire.WireGuardResult{Device: dev}, nil
	}
	if dev, err = s.deps.WireGuard.Configure(ctx, p.Device, *p.Config); err != nil {
		return wire.WireGuardResult{}, fmt.Errorf("configuring WireGuard device %s: %w", p.Device, err)
	}
	s.log.Info("WireGuard device configured", "device", p.Device, "peers_changed", len(p.Config.Peers),
		"private_key_changed", p.Config.PrivateKey != "", "listen_port_changed", p.Config.ListenPort != nil)
	return wire.WireGuardResult{Device: dev}, nil
}

// validateWireGuard checks everything that can be checked without the
// device, naming the field at fault. A key is never quoted.
func validateWireGuard(p wire.WireGuardParams) error {
	switch p.Op {
	case wire.WireGuardDevice:
		if p.Config != nil {
			return errors.New("config: only op configure takes a config")
		}
	case wire.WireGuardConfigure:
		if p.Config == nil {
			return errors.New("config: op configure needs a config")
		}
	default:
		return fmt.Errorf("op: %q is not %q or %q", p.Op, wire.WireGuardDevice, wire.WireGuardConfigure)
	}
	if err := validLinkName(p.Device); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	if p.Config == nil {
		return nil
	}
	return validateWGConfig(*p.Config)
}

func validateWGConfig(c wire.WGConfig) error {
	if c.PrivateKey != "" && !isKey(c.PrivateKey) {
		return errors.New("config.private_key: not a base64-encoded 32-byte key")
	}
	if c.ListenPort != nil && (*c.ListenPort < 0 || *c.ListenPort > 65535) {
		return fmt.Errorf("config.listen_port: %d is outside [0, 65535]", *c.ListenPort)
	}
	// A peer may appear more than once: entries apply in order in one
	// transaction, which is how a provider re-creates an entry (remove,
	// then add) or makes a peer handshake now (keepalive on, then off).
	for i, pc := range c.Peers {
		field := fmt.Sprintf("config.peers[%d]", i)
		if !isKey(pc.PublicKey) {
			return fmt.Errorf("%s.public_key: not a base64-encoded 32-byte key", field)
		}
		if pc.PresharedKey != "" && !isKey(pc.PresharedKey) {
			return fmt.Errorf("%s.preshared_key: not a base64-encoded 32-byte key or key reference", field)
		}
		if pc.Endpoint != "" {
			ap, err := netip.ParseAddrPort(pc.Endpoint)
			if err != nil || ap.Port() == 0 {
				return fmt.Errorf("%s.endpoint: %q is not an IP address and port", field, pc.Endpoint)
			}
		}
		if ka := pc.PersistentKeepalive; ka != nil && (*ka < 0 || time.Duration(*ka) > 65535*time.Second) {
			return fmt.Errorf("%s.persistent_keepalive: %s is outside [0s, 65535s]", field, time.Duration(*ka))
		}
		for j, a := range pc.AllowedIPs {
			if _, err := wire.ParseAllowedIP(a); err != nil {
				return fmt.Errorf("%s.allowed_ips[%d]: %w", field, j, err)
			}
		}
	}
	return nil
}

// isKey reports whether s is the standard base64 of 32 bytes, the form of
// every WireGuard key and of a preshared key reference.
func isKey(s string) bool {
	if len(s) != base64.StdEncoding.EncodedLen(32) {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	ok := err == nil && len(b) == 32
	clear(b)
	return ok
}

// validLinkName applies the kernel's rule for interface names
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no slash, colon or
// whitespace. Such a name is also safe as a UAPI socket's file name.
func validLinkName(name string) error {
	switch {
	case name == "":
		return errors.New("an interface name is required")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("%q is not an interface name", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '/' || c == ':' || c <= ' ' || c == 0x7f {
			return fmt.Errorf("interface name %q has a slash, colon, space or control character", name)
		}
	}
	return nil
}

// vici validates p against the whitelist, fills in the event of a streamed
// command and runs it.
func (s *Server) vici(ctx context.Context, p wire.VICIParams) (wire.VICIResult, error) {
	event, ok := wire.VICICommands()[p.Command]
	if !ok {
		allowed := make([]string, 0, len(wire.VICICommands()))
		for c := range wire.VICICommands() {
			allowed = append(allowed, c)
		}
		slices.Sort(allowed)
		return wire.VICIResult{}, badParams(fmt.Errorf("command: %q is not allowed (allowed: %s)", p.Command, strings.Join(allowed, ", ")))
	}
	switch {
	case event == "" && p.Event != "":
		return wire.VICIResult{}, badParams(fmt.Errorf("event: command %s streams no event", p.Command))
	case event != "" && p.Event == "":
		p.Event = event
	case p.Event != event:
		return wire.VICIResult{}, badParams(fmt.Errorf("event: command %s streams %s, not %q", p.Command, event, p.Event))
	}
	if err := wire.CheckVICIMessage(p.Command, p.Message); err != nil {
		return wire.VICIResult{}, badParams(err)
	}
	if s.deps.VICI == nil {
		return wire.VICIResult{}, errNoVICI
	}
	res, err := s.deps.VICI.Run(ctx, p)
	if err != nil {
		return wire.VICIResult{}, fmt.Errorf("running VICI command %s: %w", p.Command, err)
	}
	return res, nil
}

// block records a revoked peer's block (or lifts it) and makes the
// kernel's blocklist the recorded one. A peer's block is exactly the
// addresses of its latest block command. The record is written before the
// kernel changes, so a crash in between is repaired at start. Blocking
// what is already blocked changes nothing.
func (s *Server) block(ctx context.Context, p wire.BlockParams, o origin) (wire.BlockResult, error) {
	if err := validPeerID(p.Peer); err != nil {
		return wire.BlockResult{}, badParams(err)
	}
	switch {
	case p.Remove && len(p.Addresses) > 0:
		return wire.BlockResult{}, badParams(errors.New("addresses: must be empty when remove is set"))
	case !p.Remove && len(p.Addresses) == 0:
		return wire.BlockResult{}, badParams(errors.New("addresses: at least one address or network is required"))
	}
	prefixes := make([]netip.Prefix, 0, len(p.Addresses))
	for i, a := range p.Addresses {
		pfx, err := parseBlockPrefix(strings.TrimSpace(a))
		if err != nil {
			return wire.BlockResult{}, badParams(fmt.Errorf("addresses[%d]: %w", i, err))
		}
		prefixes = append(prefixes, pfx)
	}
	if s.deps.Blocker == nil {
		return wire.BlockResult{}, errNoBlocker
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return wire.BlockResult{}, errStopping
	}
	keep := s.keptLocked(o)
	for i, pfx := range prefixes {
		for _, k := range keep {
			if pfx.Overlaps(k) {
				return wire.BlockResult{}, badParams(fmt.Errorf("addresses[%d]: %s overlaps %s, which stays reachable (loopback, management, forensics or the controller↔agent path)", i, pfx, k))
			}
		}
	}
	next := s.blocks.clone()
	if p.Remove {
		delete(next.Peers, p.Peer)
	} else {
		if next.Peers == nil {
			next.Peers = map[string][]string{}
		}
		next.Peers[p.Peer] = prefixStrings(prefixes)
	}
	var res wire.BlockResult
	prev := s.blocks
	if !next.equal(prev) {
		if err := saveBlocks(s.cfg.StateDir, next); err != nil {
			return res, err
		}
		s.blocks = next
		res.Changed = true
	}
	changed, enforced, err := s.enforceBlocksLocked(ctx)
	if err != nil && res.Changed && errors.Is(err, ErrInvalidParams) {
		// The kernel side refused the new set as such (it would cut the
		// host off, say): forget it rather than fail every restart on it.
		if rerr := saveBlocks(s.cfg.StateDir, prev); rerr != nil {
			err = errors.Join(err, fmt.Errorf("forgetting the refused block: %w", rerr))
		} else {
			s.blocks, res.Changed = prev, false
		}
	}
	if res.Changed {
		if p.Remove {
			s.log.Info("peer block lifted", "peer", p.Peer)
		} else {
			s.log.Info("peer block recorded", "peer", p.Peer, "addresses", next.Peers[p.Peer])
		}
	}
	res.Blocked = s.blocks.view()
	if res.Blocked == nil {
		res.Blocked = []wire.BlockedPeer{}
	}
	if err != nil {
		return res, err
	}
	res.Changed = res.Changed || changed
	res.Enforced = enforced
	return res, nil
}

// keptLocked lists the networks no block may touch: loopback, everything
// an isolate would keep (the agent's management networks and the caller),
// the agent's own address on this connection, and the networks of a
// quarantine in force.
func (s *Server) keptLocked(o origin) []netip.Prefix {
	keep := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	if sr, err := s.buildSpec(wire.IsolateParams{}, o.caller); err == nil {
		if sp, err := sr.spec(); err == nil {
			keep = append(keep, sp.Management...)
		}
	}
	if o.local.IsValid() {
		keep = append(keep, netip.PrefixFrom(o.local, o.local.BitLen()))
	}
	if s.rec.Quarantined {
		if sp, err := s.rec.Spec.spec(); err == nil {
			keep = append(keep, sp.Keep()...)
		}
	}
	return keep
}

// enforceBlocksLocked sets the kernel's blocklist to the recorded one and
// reads it back.
func (s *Server) enforceBlocksLocked(ctx context.Context) (changed, enforced bool, err error) {
	want, err := s.blocks.prefixes()
	if err != nil {
		return false, false, err
	}
	if changed, err = s.deps.Blocker.Set(ctx, want); err != nil {
		return false, false, fmt.Errorf("applying the blocklist: %w", err)
	}
	obs, err := s.deps.Blocker.Observe(ctx)
	if err != nil {
		return changed, false, fmt.Errorf("reading the blocklist back: %w", err)
	}
	return changed, blocksEnforced(obs, want), nil
}

// blocksEnforced reports that the kernel drops exactly want.
func blocksEnforced(obs BlockObservation, want []netip.Prefix) bool {
	if !slices.Equal(sortPrefixes(obs.Prefixes), want) {
		return false
	}
	return len(want) == 0 || obs.Enforced
}

// restoreBlocks re-applies the recorded blocklist when the agent starts
// (fail closed), and lifts blocks the kernel still holds but the record no
// longer does (a crash after an unblock was recorded). Failures are logged;
// the agent serves regardless so the controller can act.
func (s *Server) restoreBlocks(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	peers := len(s.blocks.Peers)
	if s.deps.Blocker == nil {
		if peers > 0 {
			s.log.Error("blocks are recorded but this agent has no blocker: the peers are NOT blocked", "peers", peers)
		}
		return
	}
	if peers == 0 {
		obs, err := s.deps.Blocker.Observe(ctx)
		if err != nil {
			s.log.Error("reading the blocklist at start", "error", err.Error())
			return
		}
		if len(obs.Prefixes) == 0 {
			return
		}
	}
	changed, enforced, err := s.enforceBlocksLocked(ctx)
	if err != nil {
		s.log.Error("re-applying recorded blocks at start", "peers", peers, "error", err.Error())
		return
	}
	s.log.Info("re-applied recorded blocks at start", "peers", peers, "changed", changed, "enforced", enforced)
}

// blockedState is the recorded blocks and whether the kernel enforces
// exactly them (read back now; false when there is no blocker).
func (s *Server) blockedState(ctx context.Context) ([]wire.BlockedPeer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	view := s.blocks.view()
	if len(view) == 0 || s.deps.Blocker == nil {
		return view, false
	}
	want, err := s.blocks.prefixes()
	if err != nil {
		return view, false
	}
	obs, err := s.deps.Blocker.Observe(ctx)
	if err != nil {
		s.log.Warn("reading the blocklist back", "error", err.Error())
		return view, false
	}
	return view, blocksEnforced(obs, want)
}

// healBlocksLocked puts the recorded blocks back when the kernel lost
// them (a rule deleted by hand, a flushed ruleset).
func (s *Server) healBlocksLocked(ctx context.Context) {
	if s.deps.Blocker == nil || len(s.blocks.Peers) == 0 {
		return
	}
	changed, enforced, err := s.enforceBlocksLocked(ctx)
	switch {
	case err != nil:
		s.log.Error("repairing the blocklist", "error", err.Error())
	case changed:
		s.log.Warn("blocklist drifted; re-applied", "peers", len(s.blocks.Peers), "enforced", enforced)
	}
}
