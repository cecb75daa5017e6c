package wireguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/internal/clock"
)

// Client is the seam to WireGuard devices: *wgctrl.Client satisfies it (for
// kernel devices and for userspace devices behind /var/run/wireguard UAPI
// sockets), and so can a client of in-process devices or an agent proxy.
type Client interface {
	Device(name string) (*wgtypes.Device, error)
	ConfigureDevice(name string, cfg wgtypes.Config) error
}

// Site says how the provider reaches one site's device.
type Site struct {
	// Device is the WireGuard interface name at the site.
	Device string
	// Endpoint is where peers reach the site. It is given to a peer's
	// staged entry for the site's new key; when invalid, the endpoint the
	// peer last saw for the old key is used.
	Endpoint netip.AddrPort
}

// Errors the provider returns, for errors.Is.
var (
	// ErrUnknownSite: the site is not configured (terminal).
	ErrUnknownSite = errors.New("unknown WireGuard site")
	// ErrNotPeers: the two sites have no peer entry for each other
	// (terminal).
	ErrNotPeers = errors.New("WireGuard sites are not peers")
)

// kickKeepalive is the keepalive set for a moment on a re-created peer that
// has none configured (see recreatePeer).
const kickKeepalive = 25 * time.Second

// handshakeGuard is how long after a peer's previous handshake a new
// initiation from the same peer is safe from wireguard-go's protections: a
// responder rejects an initiation whose TAI64N timestamp (whitened to 2^24
// ns, ~16.8 ms) is not newer than the last one it accepted ("replay"), or
// that comes within 20 ms of the last one it consumed ("flood"). A
// rejected initiator retries only after five seconds.
const handshakeGuard = 25 * time.Millisecond

// Options tune the provider; zero values take the defaults.
type Options struct {
	Log *slog.Logger
	// Clock is the time the provider waits with (default clock.Real);
	// tests may fake it.
	Clock clock.Clock
	// HandshakeWait bounds how long a site key rotation waits for the
	// site's handshake with a peer's new entry before moving the peer's
	// AllowedIPs anyway (default 3 s).
	HandshakeWait time.Duration
	// Poll is how often devices are read while waiting (default 5 ms).
	Poll time.Duration
}

// Provider revokes and rotates WireGuard credentials across sites.
type Provider struct {
	client Client
	sites  map[string]Site
	opt    Options
	log    *slog.Logger
}

// New returns a provider for the given sites.
func New(client Client, sites map[string]Site, opt Options) (*Provider, error) {
	if client == nil {
		return nil, errors.New("creating WireGuard provider: nil client")
	}
	for name, s := range sites {
		if s.Device == "" {
			return nil, fmt.Errorf("creating WireGuard provider: site %q has no device name", name)
		}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real
	}
	if opt.HandshakeWait <= 0 {
		opt.HandshakeWait = 3 * time.Second
	}
	if opt.Poll <= 0 {
		opt.Poll = 5 * time.Millisecond
	}
	return &Provider{client: client, sites: sites, opt: opt, log: opt.Log.With("provider", "wireguard")}, nil
}

func (p *Provider) device(ctx context.Context, site string) (*wgtypes.Device, Site, error) {
	if err := ctx.Err(); err != nil {
		return nil, Site{}, err
	}
	s, ok := p.sites[site]
	if !ok {
		return nil, Site{}, actions.Terminal(fmt.Errorf("%w %q", ErrUnknownSite, site))
	}
	d, err := p.client.Device(s.Device)
	if err != nil {
		return nil, s, fmt.Errorf("reading WireGuard device %s of site %q: %w", s.Device, site, err)
	}
	// The UAPI reply includes the device's private key; nothing here needs
	// it, so it is not kept.
	clear(d.PrivateKey[:])
	return d, s, nil
}

func (p *Provider) configure(ctx context.Context, site string, cfg wgtypes.Config) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s := p.sites[site]
	if err := p.client.ConfigureDevice(s.Device, cfg); err != nil {
		// wgctrl's errors carry the UAPI errno, never the request.
		return fmt.Errorf("configuring WireGuard device %s of site %q: %w", s.Device, site, err)
	}
	return nil
}

func findPeer(d *wgtypes.Device, key wgtypes.Key) *wgtypes.Peer {
	for i := range d.Peers {
		if d.Peers[i].PublicKey == key {
			return &d.Peers[i]
		}
	}
	return nil
}

// pairView is how two sites see each other.
type pairView struct {
	aPublicKey wgtypes.Key
	bSite      Site
	// aForB is a's entry for b and bForA b's entry for a, nil where a site
	// has none; their preshared keys are not kept.
	aForB, bForA *wgtypes.Peer
}

// readPair reads the devices of sites a and b and how each sees the other.
func (p *Provider) readPair(ctx context.Context, a, b string) (pairView, error) {
	da, _, err := p.device(ctx, a)
	if err != nil {
		return pairView{}, err
	}
	db, sb, err := p.device(ctx, b)
	if err != nil {
		return pairView{}, err
	}
	v := pairView{aPublicKey: da.PublicKey, bSite: sb, aForB: findPeer(da, db.PublicKey), bForA: findPeer(db, da.PublicKey)}
	for _, e := range []*wgtypes.Peer{v.aForB, v.bForA} {
		if e != nil {
			clear(e.PresharedKey[:])
		}
	}
	return v, nil
}

// PublicKey returns the site device's current public key.
func (p *Provider) PublicKey(ctx context.Context, site string) (wgtypes.Key, error) {
	d, _, err := p.device(ctx, site)
	if err != nil {
		return wgtypes.Key{}, err
	}
	return d.PublicKey, nil
}

// HasPeer reports whether site's device has a peer entry for key.
func (p *Provider) HasPeer(ctx context.Context, site string, key wgtypes.Key) (bool, error) {
	d, _, err := p.device(ctx, site)
	if err != nil {
		return false, err
	}
	return findPeer(d, key) != nil, nil
}

// RevokePeer removes the peer with public key peer from site's device
// (Remove: true; the device's other peers and their sessions are not
// touched). Idempotent: when the peer is already absent it changes nothing
// and returns changed=false. The removal is read back.
func (p *Provider) RevokePeer(ctx context.Context, site string, peer wgtypes.Key) (changed bool, err error) {
	d, _, err := p.device(ctx, site)
	if err != nil {
		return false, err
	}
	if findPeer(d, peer) == nil {
		return false, nil
	}
	if err := p.configure(ctx, site, wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: peer, Remove: true}}}); err != nil {
		return false, fmt.Errorf("removing peer %s: %w", peer, err)
	}
	still, err := p.HasPeer(ctx, site, peer)
	if err != nil {
		return true, err
	}
	if still {
		return true, fmt.Errorf("removing peer %s at site %q: %w: the peer is still configured", peer, site, actions.ErrNotVerified)
	}
	p.log.InfoContext(ctx, "revoked WireGuard peer", "site", site, "peer_public_key", peer.String())
	return true, nil
}

// RotatePSK makes psk the preshared key of the tunnel between sites a and
// b. b's entry for a is updated in place: a key change does not end b's
// current session, which keeps carrying b's traffic. Then a's entry for b
// is re-created in one UAPI transaction (same endpoint, AllowedIPs and
// keepalive, new key) and given a keepalive at once, so that a starts a
// handshake with the new key immediately; b, which still has a session,
// does not initiate, so the two cannot cross. The traffic lost is what b
// sends on its old session during that one handshake. After it, every
// handshake of the pair needs psk at both ends: see VerifyHandshake.
//
// Updating a's entry in place would prove nothing: its session would carry
// traffic on keys derived from the old preshared key until the next rekey,
// up to two minutes. And a's new initiation must not come too soon after
// its previous one, or b rejects it (replay, flood) and a retries only five
// seconds later: RotatePSK waits out the rest of handshakeGuard (at most
// 25 ms) when a's last handshake was that recent.
//
// Re-applying the same key leaves the same configuration and costs one more
// handshake. The key is sent to a and b only and never logged.
func (p *Provider) RotatePSK(ctx context.Context, a, b string, psk wgtypes.Key) error {
	pair, err := p.readPair(ctx, a, b)
	if err != nil {
		return err
	}
	if pair.aForB == nil || pair.bForA == nil {
		return actions.Terminal(fmt.Errorf("rotating the preshared key of %s <-> %s: %w", a, b, ErrNotPeers))
	}
	key := psk
	defer clear(key[:])
	if err := p.configure(ctx, b, wgtypes.Config{Peers: []wgtypes.PeerConfig{{
		PublicKey: pair.aPublicKey, UpdateOnly: true, PresharedKey: &key,
	}}}); err != nil {
		return fmt.Errorf("installing the new preshared key of %s <-> %s at %q: %w", a, b, b, err)
	}
	if wait := handshakeGuard - p.opt.Clock.Now().Sub(pair.aForB.LastHandshakeTime); wait > 0 && wait <= handshakeGuard {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.opt.Clock.After(wait):
		}
	}
	if err := p.recreatePeer(ctx, a, pair.aForB, key, pair.bSite.Endpoint); err != nil {
		return fmt.Errorf("installing the new preshared key of %s <-> %s at %q: %w", a, b, a, err)
	}
	p.log.InfoContext(ctx, "rotated WireGuard preshared key", "a", a, "b", b)
	return nil
}

// recreatePeer replaces site's entry old with a fresh one holding psk and
// makes site start a handshake with it at once: a fresh peer given a
// keepalive sends one immediately. A peer without a configured keepalive
// gets one for that moment only.
func (p *Provider) recreatePeer(ctx context.Context, site string, old *wgtypes.Peer, psk wgtypes.Key, configured netip.AddrPort) error {
	ka, kicked := old.PersistentKeepaliveInterval, false
	if ka <= 0 {
		ka, kicked = kickKeepalive, true
	}
	if err := p.configure(ctx, site, wgtypes.Config{Peers: []wgtypes.PeerConfig{
		{PublicKey: old.PublicKey, Remove: true},
		{
			PublicKey:                   old.PublicKey,
			PresharedKey:                &psk,
			Endpoint:                    endpoint(old.Endpoint, configured),
			PersistentKeepaliveInterval: &ka,
			ReplaceAllowedIPs:           true,
			AllowedIPs:                  old.AllowedIPs,
		},
	}}); err != nil {
		return fmt.Errorf("re-creating the peer entry %s: %w", old.PublicKey, err)
	}
	if kicked {
		off := time.Duration(0)
		if err := p.configure(ctx, site, wgtypes.Config{Peers: []wgtypes.PeerConfig{{
			PublicKey: old.PublicKey, UpdateOnly: true, PersistentKeepaliveInterval: &off,
		}}}); err != nil {
			return fmt.Errorf("clearing the temporary keepalive of %s: %w", old.PublicKey, err)
		}
	}
	return nil
}

// endpoint prefers what the peer last saw, then the configured endpoint.
func endpoint(seen *net.UDPAddr, configured netip.AddrPort) *net.UDPAddr {
	if seen != nil {
		return seen
	}
	if configured.IsValid() {
		return net.UDPAddrFromAddrPort(configured)
	}
	return nil
}

// VerifyHandshake checks that a and b each see a handshake with the other
// at or after since (both ends' view, read back from the devices). After
// RotatePSK or RotateSiteKey such a handshake can only have been made with
// the new credential: a's entry for b was created afresh with it. It returns
// an error wrapping actions.ErrNotVerified while that is not so yet (the
// caller polls; a handshake needs traffic or a keepalive).
func (p *Provider) VerifyHandshake(ctx context.Context, a, b string, since time.Time) error {
	pair, err := p.readPair(ctx, a, b)
	if err != nil {
		return err
	}
	pa, pb := pair.aForB, pair.bForA
	if pa == nil || pb == nil {
		return fmt.Errorf("verifying the handshake of %s <-> %s: %w: %w", a, b, actions.ErrNotVerified, ErrNotPeers)
	}
	if pa.LastHandshakeTime.Before(since) || pb.LastHandshakeTime.Before(since) {
		return fmt.Errorf("verifying the handshake of %s <-> %s: %w: latest handshakes %s (at %s), %s (at %s), want at or after %s",
			a, b, actions.ErrNotVerified, stamp(pa.LastHandshakeTime), a, stamp(pb.LastHandshakeTime), b, since.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

func stamp(t time.Time) string {
	if t.IsZero() || t.Unix() <= 0 {
		return "never"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// RotateSiteKey replaces site's private key with next, in stages that leave
// every other pair alone and never use ReplacePeers:
//
//  1. at every peer, add an entry for next's public key with the old
//     entry's preshared key and keepalive, the site's endpoint and no
//     AllowedIPs (the old entry keeps routing the peer's traffic, over its
//     old session, which the site can still decrypt);
//  2. switch the site's private key (this stops the site sending on its
//     old sessions) and make it initiate a handshake with every peer at
//     once: the peers' new entries accept it; they carry no traffic, so
//     the peers do not initiate themselves and no two handshakes cross
//     (crossed initiations both fail, and wireguard-go retries only after
//     five seconds);
//  3. at each peer, as soon as its new entry shows the handshake (or after
//     Options.HandshakeWait), move the AllowedIPs from the old entry to the
//     new one and remove the old entry, in one UAPI transaction.
//
// The site's traffic to a peer is lost from stage 2 until that peer's
// stage 3 (one handshake, typically milliseconds).
//
// peers are the sites to update: the healthy peers of site. Any other site
// (a revoked gateway, above all) is not told the new key. old is the site's
// public key before the rotation. The procedure is idempotent and
// resumable: run again after a failure in stage 3, it skips what is done
// and finishes. A failure before stage 2 removes the staged entries again.
// next is sent to site only and never logged.
func (p *Provider) RotateSiteKey(ctx context.Context, site string, peers []string, old, next wgtypes.Key) error {
	ds, ss, err := p.device(ctx, site)
	if err != nil {
		return err
	}
	nextPub := next.PublicKey()
	type peerState struct {
		site       string
		publicKey  wgtypes.Key // the peer's own key, as site lists it
		allowed    []net.IPNet
		hasOld     bool
		hasNext    bool
		staged     bool
		endpoint   *net.UDPAddr
		keepalive  time.Duration
		presharedA wgtypes.Key
	}
	var states []*peerState
	for _, name := range sortedUnique(peers, site) {
		d, _, err := p.device(ctx, name)
		if err != nil {
			return fmt.Errorf("reading the peers of %q: %w", site, err)
		}
		eo, en := findPeer(d, old), findPeer(d, nextPub)
		if eo == nil && en == nil {
			continue // not a peer of site
		}
		ps := &peerState{site: name, publicKey: d.PublicKey, hasOld: eo != nil, hasNext: en != nil}
		if eo != nil {
			ps.allowed, ps.endpoint, ps.keepalive, ps.presharedA = eo.AllowedIPs, eo.Endpoint, eo.PersistentKeepaliveInterval, eo.PresharedKey
		} else {
			ps.allowed = en.AllowedIPs
		}
		for i := range d.Peers {
			clear(d.Peers[i].PresharedKey[:])
		}
		states = append(states, ps)
	}
	defer func() {
		for _, ps := range states {
			clear(ps.presharedA[:])
		}
	}()

	unstage := func() error {
		var errs []error
		for _, ps := range states {
			if ps.staged {
				if err := p.configure(context.WithoutCancel(ctx), ps.site, wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: nextPub, Remove: true}}}); err != nil {
					errs = append(errs, err)
				}
			}
		}
		return errors.Join(errs...)
	}

	// Stage 1, at every peer in parallel.
	err = forEach(ctx, states, func(ps *peerState) error {
		if ps.hasNext || !ps.hasOld {
			return nil
		}
		pc := wgtypes.PeerConfig{
			PublicKey:         nextPub,
			Endpoint:          endpoint(nil, ss.Endpoint),
			ReplaceAllowedIPs: true,
		}
		if pc.Endpoint == nil {
			pc.Endpoint = ps.endpoint
		}
		if ps.presharedA != (wgtypes.Key{}) {
			k := ps.presharedA
			pc.PresharedKey = &k
		}
		if ps.keepalive > 0 {
			ka := ps.keepalive
			pc.PersistentKeepaliveInterval = &ka
		}
		err := p.configure(ctx, ps.site, wgtypes.Config{Peers: []wgtypes.PeerConfig{pc}})
		if pc.PresharedKey != nil {
			clear(pc.PresharedKey[:])
		}
		if err != nil {
			return fmt.Errorf("staging the new key of %q at %q: %w", site, ps.site, err)
		}
		ps.staged = true
		return nil
	})
	if err != nil {
		return errors.Join(err, unstage())
	}

	// Stage 2: the key switch and the handshakes in one transaction.
	var moving []*peerState
	for _, ps := range states {
		if ps.hasOld {
			moving = append(moving, ps)
		}
	}
	// Handshake times before the switch, to see the new ones by.
	if ds, _, err = p.device(ctx, site); err != nil {
		return errors.Join(err, unstage())
	}
	baseline := map[wgtypes.Key]time.Time{}
	for _, e := range ds.Peers {
		baseline[e.PublicKey] = e.LastHandshakeTime
		clear(e.PresharedKey[:])
	}
	cfg := wgtypes.Config{Peers: kickPeers(ds, moving, func(ps *peerState) wgtypes.Key { return ps.publicKey })}
	if ds.PublicKey != nextPub {
		if ds.PublicKey != old {
			return errors.Join(actions.Terminal(fmt.Errorf("rotating the key of %q: its public key is %s, neither the old key %s nor the new one", site, ds.PublicKey, old)), unstage())
		}
		key := next
		defer clear(key[:])
		cfg.PrivateKey = &key
	}
	if err := p.configure(ctx, site, cfg); err != nil {
		if cfg.PrivateKey != nil {
			return errors.Join(fmt.Errorf("switching the private key of %q: %w", site, err), unstage())
		}
		return fmt.Errorf("starting handshakes from %q: %w", site, err)
	}

	// Stage 3, at each peer as soon as its new entry has confirmed the
	// handshake (the peer marks it on the site's first packet after the
	// response). After a first round that reads every peer (a resumed
	// rotation may find them confirmed already), the site's own device,
	// read once per round, says which peers have answered; only those are
	// read.
	move := func(ps *peerState) error {
		if err := p.configure(ctx, ps.site, wgtypes.Config{Peers: []wgtypes.PeerConfig{
			{PublicKey: nextPub, UpdateOnly: true, ReplaceAllowedIPs: true, AllowedIPs: ps.allowed},
			{PublicKey: old, Remove: true},
		}}); err != nil {
			return fmt.Errorf("moving AllowedIPs to the new key of %q at %q: %w", site, ps.site, err)
		}
		return nil
	}
	deadline := p.opt.Clock.After(p.opt.HandshakeWait)
	var errs []error
	for round := 0; len(moving) > 0; round++ {
		answered := moving
		if round > 0 {
			d, _, err := p.device(ctx, site)
			if err != nil {
				return err
			}
			answered = nil
			for _, ps := range moving {
				if e := findPeer(d, ps.publicKey); e != nil && e.LastHandshakeTime.After(baseline[ps.publicKey]) {
					answered = append(answered, ps)
				}
			}
		}
		var mu sync.Mutex
		done := map[*peerState]bool{}
		err = forEach(ctx, answered, func(ps *peerState) error {
			pd, _, err := p.device(ctx, ps.site)
			if err != nil {
				return err
			}
			e := findPeer(pd, nextPub)
			for i := range pd.Peers {
				clear(pd.Peers[i].PresharedKey[:])
			}
			if e != nil && e.LastHandshakeTime.IsZero() {
				return nil // not confirmed yet
			}
			mu.Lock()
			done[ps] = true
			mu.Unlock()
			return move(ps)
		})
		if err != nil {
			errs = append(errs, err)
		}
		moving = slices.DeleteFunc(moving, func(ps *peerState) bool { return done[ps] })
		if len(moving) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			p.log.WarnContext(ctx, "no handshake with the new WireGuard site key yet; moving AllowedIPs anyway", "site", site, "peers", len(moving))
			errs = append(errs, forEach(ctx, moving, move))
			moving = nil
		case <-p.opt.Clock.After(p.opt.Poll):
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.log.InfoContext(ctx, "rotated WireGuard site key", "site", site, "old_public_key", old.String(), "new_public_key", nextPub.String(), "peers", len(states))
	return nil
}

// maxParallel bounds the devices configured at once.
const maxParallel = 256

// forEach runs fn for every item, maxParallel at a time, and joins the
// errors.
func forEach[T any](ctx context.Context, items []T, fn func(T) error) error {
	sem := make(chan struct{}, maxParallel)
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i, it := range items {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(it)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// kickPeers returns peer configurations that make a device start a
// handshake with each of the given peers at once, in the same transaction:
// a keepalive set on a peer that had none a moment before is sent
// immediately. A configured keepalive is switched off and on again; a peer
// without one gets one and loses it again.
func kickPeers[T any](d *wgtypes.Device, peers []T, key func(T) wgtypes.Key) []wgtypes.PeerConfig {
	var out []wgtypes.PeerConfig
	for _, it := range peers {
		k := key(it)
		e := findPeer(d, k)
		if e == nil {
			continue
		}
		zero, kk := time.Duration(0), kickKeepalive
		if ka := e.PersistentKeepaliveInterval; ka > 0 {
			out = append(out,
				wgtypes.PeerConfig{PublicKey: k, UpdateOnly: true, PersistentKeepaliveInterval: &zero},
				wgtypes.PeerConfig{PublicKey: k, UpdateOnly: true, PersistentKeepaliveInterval: &ka})
			continue
		}
		out = append(out,
			wgtypes.PeerConfig{PublicKey: k, UpdateOnly: true, PersistentKeepaliveInterval: &kk},
			wgtypes.PeerConfig{PublicKey: k, UpdateOnly: true, PersistentKeepaliveInterval: &zero})
	}
	return out
}

// sortedUnique returns names without duplicates and without self, sorted.
func sortedUnique(names []string, self string) []string {
	out := slices.Clone(names)
	out = slices.DeleteFunc(out, func(n string) bool { return n == self })
	slices.Sort(out)
	return slices.Compact(out)
}
