package strongswan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/strongswan/govici/vici"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/internal/charon"
	"github.com/warden-ir/warden/internal/clock"
)

// Errors the provider returns, for errors.Is.
var (
	// ErrUnknownSite: the site is not configured (terminal).
	ErrUnknownSite = errors.New("unknown strongSwan site")
	// ErrNotPeers: a site has no connection for the other (terminal).
	ErrNotPeers = errors.New("strongSwan sites are not peers")
	// ErrReauthFailed: the IKE SA did not come back authenticated with the
	// new key in time; the new key was unloaded again and the old key and
	// SAs are as they were.
	ErrReauthFailed = errors.New("reauthentication with the new key failed")
)

// Site is what the provider must know of a site besides how to reach it.
type Site struct {
	// Identity is the site's IKE identity, an owner of its shared keys.
	Identity string
}

// Options tune the provider; zero values take the defaults.
type Options struct {
	// ReauthTimeout bounds the wait for the new IKE SA (default 20 s).
	ReauthTimeout time.Duration
	// PollInterval is how often SAs are listed while waiting (default 50 ms).
	PollInterval time.Duration
	// Clock is the time the provider waits with (default clock.Real);
	// tests may fake it.
	Clock clock.Clock
	Log   *slog.Logger
}

// Provider revokes peers and rotates pre-shared keys across sites.
type Provider struct {
	dial  charon.Dialer
	sites map[string]Site
	opt   Options
	log   *slog.Logger
}

// New returns a provider for the given sites.
func New(d charon.Dialer, sites map[string]Site, opt Options) (*Provider, error) {
	if d == nil {
		return nil, errors.New("creating strongSwan provider: nil dialer")
	}
	for name, s := range sites {
		if s.Identity == "" {
			return nil, fmt.Errorf("creating strongSwan provider: site %q has no IKE identity", name)
		}
	}
	if opt.ReauthTimeout <= 0 {
		opt.ReauthTimeout = 20 * time.Second
	}
	if opt.PollInterval <= 0 {
		opt.PollInterval = 50 * time.Millisecond
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Provider{dial: d, sites: sites, opt: opt, log: log.With("provider", "strongswan")}, nil
}

func (p *Provider) conn(ctx context.Context, site string) (charon.Conn, Site, error) {
	s, ok := p.sites[site]
	if !ok {
		return nil, Site{}, actions.Terminal(fmt.Errorf("%w %q", ErrUnknownSite, site))
	}
	c, err := p.dial.Dial(ctx, site)
	if err != nil {
		return nil, s, fmt.Errorf("connecting to charon of site %q: %w", site, err)
	}
	return c, s, nil
}

// msg builds a VICI command message. Values are strings or string lists,
// which vici.Message.Set always accepts, so its error is not checked.
func msg(kv map[string]any) *vici.Message {
	m := vici.NewMessage()
	for k, v := range kv {
		_ = m.Set(k, v)
	}
	return m
}

// connections lists the names of the connections loaded at a site.
func connections(ctx context.Context, c charon.Conn) ([]string, error) {
	r, err := c.Call(ctx, "get-conns", nil)
	if err != nil {
		return nil, fmt.Errorf("listing connections: %w", err)
	}
	return stringList(r.Get("conns")), nil
}

// sharedKeyIDs lists the ids of shared keys for peer ("peer/…").
func sharedKeyIDs(ctx context.Context, c charon.Conn, peer string) ([]string, error) {
	r, err := c.Call(ctx, "get-shared", nil)
	if err != nil {
		return nil, fmt.Errorf("listing shared keys: %w", err)
	}
	var out []string
	for _, id := range stringList(r.Get("keys")) {
		if strings.HasPrefix(id, peer+"/") {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

func stringList(v any) []string {
	switch l := v.(type) {
	case []string:
		return l
	case string:
		if l != "" {
			return []string{l}
		}
	}
	return nil
}

// ikeSA is what the provider reads of an IKE SA.
type ikeSA struct {
	conn     string
	uniqueID uint64
	state    string
	remoteID string
	children map[string]string // CHILD SA name -> state
}

// listSAs lists the site's IKE SAs, optionally only those of one
// connection.
func listSAs(ctx context.Context, c charon.Conn, conn string) ([]ikeSA, error) {
	var in *vici.Message
	if conn != "" {
		in = msg(map[string]any{"ike": conn})
	}
	evs, err := c.Stream(ctx, "list-sas", "list-sa", in)
	if err != nil {
		return nil, fmt.Errorf("listing SAs: %w", err)
	}
	var out []ikeSA
	for _, ev := range evs {
		for _, name := range ev.Keys() {
			m, ok := ev.Get(name).(*vici.Message)
			if !ok {
				continue
			}
			sa := ikeSA{conn: name, children: map[string]string{}}
			sa.uniqueID, _ = strconv.ParseUint(str(m.Get("uniqueid")), 10, 64)
			sa.state = str(m.Get("state"))
			sa.remoteID = str(m.Get("remote-id"))
			if ch, ok := m.Get("child-sas").(*vici.Message); ok {
				for _, k := range ch.Keys() {
					if cm, ok := ch.Get(k).(*vici.Message); ok {
						sa.children[str(cm.Get("name"))] = str(cm.Get("state"))
					}
				}
			}
			out = append(out, sa)
		}
	}
	return out, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// RevokePeer removes every trust site has in peer: it terminates (force)
// every IKE SA of the connection to peer or authenticated as peer's
// identity, unloads the connection, and unloads every shared key of that
// tunnel. Idempotent: when nothing is left it changes nothing and returns
// changed=false. Use VerifyRevoked to read the result back.
func (p *Provider) RevokePeer(ctx context.Context, site, peer string) (changed bool, err error) {
	c, _, err := p.conn(ctx, site)
	if err != nil {
		return false, err
	}
	defer c.Close()
	peerID := p.sites[peer].Identity

	sas, err := listSAs(ctx, c, "")
	if err != nil {
		return false, fmt.Errorf("revoking %q at %q: %w", peer, site, err)
	}
	terminated := 0
	for _, sa := range sas {
		if sa.conn != peer && (peerID == "" || sa.remoteID != peerID) {
			continue
		}
		terminated++
		// force: destroy at once, without waiting for the peer to answer
		// the DELETE. An SA gone in the meantime is not an error.
		in := msg(map[string]any{"ike-id": strconv.FormatUint(sa.uniqueID, 10), "force": "yes"})
		if _, err := c.Call(ctx, "terminate", in); err != nil && !strings.Contains(err.Error(), "no matching") {
			return changed, fmt.Errorf("revoking %q at %q: terminating IKE SA %d: %w", peer, site, sa.uniqueID, err)
		}
		changed = true
	}
	conns, err := connections(ctx, c)
	if err != nil {
		return changed, fmt.Errorf("revoking %q at %q: %w", peer, site, err)
	}
	if slices.Contains(conns, peer) {
		if _, err := c.Call(ctx, "unload-conn", msg(map[string]any{"name": peer})); err != nil {
			return changed, fmt.Errorf("revoking %q at %q: unloading its connection: %w", peer, site, err)
		}
		changed = true
	}
	ids, err := sharedKeyIDs(ctx, c, peer)
	if err != nil {
		return changed, fmt.Errorf("revoking %q at %q: %w", peer, site, err)
	}
	for _, id := range ids {
		if _, err := c.Call(ctx, "unload-shared", msg(map[string]any{"id": id})); err != nil {
			return changed, fmt.Errorf("revoking %q at %q: unloading shared key %q: %w", peer, site, id, err)
		}
		changed = true
	}
	if changed {
		p.log.InfoContext(ctx, "revoked strongSwan peer", "site", site, "peer", peer, "ike_sas", terminated, "shared_keys", len(ids))
	}
	return changed, nil
}

// VerifyRevoked reads back that site holds no connection to peer, no
// shared key for it and no IKE SA with it (by connection or by peer's
// identity): peer cannot authenticate there any more. It returns an error
// wrapping actions.ErrNotVerified otherwise.
func (p *Provider) VerifyRevoked(ctx context.Context, site, peer string) error {
	c, _, err := p.conn(ctx, site)
	if err != nil {
		return err
	}
	defer c.Close()
	peerID := p.sites[peer].Identity
	var left []string
	conns, err := connections(ctx, c)
	if err != nil {
		return err
	}
	if slices.Contains(conns, peer) {
		left = append(left, "connection "+peer)
	}
	ids, err := sharedKeyIDs(ctx, c, peer)
	if err != nil {
		return err
	}
	for _, id := range ids {
		left = append(left, "shared key "+id)
	}
	sas, err := listSAs(ctx, c, "")
	if err != nil {
		return err
	}
	for _, sa := range sas {
		if sa.conn == peer || (peerID != "" && sa.remoteID == peerID) {
			left = append(left, fmt.Sprintf("IKE SA %d (%s)", sa.uniqueID, sa.state))
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("verifying revocation of %q at %q: %w: %s remain", peer, site, actions.ErrNotVerified, strings.Join(left, ", "))
	}
	return nil
}

// RotatePSK replaces the pre-shared key of the tunnel a <-> b with psk,
// make-before-break:
//
//  1. load psk under id "<b>/<keyID>" at a and "<a>/<keyID>" at b (the
//     old keys stay loaded: both ends can still authenticate either way);
//  2. ask a to reauthenticate its IKE SA with b (rekey, reauth=yes);
//     charon builds its AUTH payload with the most recently loaded key
//     and verifies the peer's by trying every matching key, so the new
//     SA is authenticated with psk in both directions;
//  3. wait until a lists an established IKE SA with b whose unique id is
//     newer than any before, with its CHILD SAs installed (a rekey reply
//     only means "queued");
//  4. unload every other "<peer>/…" key at both ends.
//
// When step 3 fails (a peer that refuses the key, a timeout), the new key
// is unloaded at both ends and an error wrapping ErrReauthFailed is
// returned: charon keeps the old SAs when a make-before-break
// reauthentication fails, so the pair goes on with its old key. If there is
// no established IKE SA to reauthenticate, a is asked to initiate one.
// Re-applying the same keyID and psk is harmless. psk goes to a and b only
// and is never logged.
func (p *Provider) RotatePSK(ctx context.Context, a, b, keyID string, psk []byte) error {
	if keyID == "" || strings.ContainsAny(keyID, "/ ") || len(psk) == 0 {
		return actions.Terminal(errors.New("rotating a strongSwan PSK: need a key id without '/' or spaces, and a key"))
	}
	ca, sa, err := p.conn(ctx, a)
	if err != nil {
		return err
	}
	defer ca.Close()
	cb, sb, err := p.conn(ctx, b)
	if err != nil {
		return err
	}
	defer cb.Close()
	for _, end := range []struct {
		c          charon.Conn
		site, peer string
	}{{ca, a, b}, {cb, b, a}} {
		conns, err := connections(ctx, end.c)
		if err != nil {
			return fmt.Errorf("rotating the PSK of %s <-> %s at %q: %w", a, b, end.site, err)
		}
		if !slices.Contains(conns, end.peer) {
			return actions.Terminal(fmt.Errorf("rotating the PSK of %s <-> %s: %w: %q has no connection %q", a, b, ErrNotPeers, end.site, end.peer))
		}
	}

	newA, newB := b+"/"+keyID, a+"/"+keyID
	load := func(c charon.Conn, id string, owners []string) error {
		_, err := c.Call(ctx, "load-shared", msg(map[string]any{
			"id": id, "type": "IKE", "data": string(psk), "owners": owners,
		}))
		return err
	}
	unloadNew := func() error {
		bg := context.WithoutCancel(ctx)
		return errors.Join(
			unloadShared(bg, ca, newA),
			unloadShared(bg, cb, newB),
		)
	}
	if err := load(ca, newA, []string{sa.Identity, sb.Identity}); err != nil {
		return fmt.Errorf("loading the new PSK of %s <-> %s at %q: %w", a, b, a, err)
	}
	if err := load(cb, newB, []string{sb.Identity, sa.Identity}); err != nil {
		return errors.Join(fmt.Errorf("loading the new PSK of %s <-> %s at %q: %w", a, b, b, err), unloadNew())
	}

	if err := p.reauthenticate(ctx, ca, a, b); err != nil {
		return errors.Join(fmt.Errorf("rotating the PSK of %s <-> %s: %w", a, b, err), unloadNew())
	}

	var errs []error
	for _, end := range []struct {
		c          charon.Conn
		site, peer string
		keep       string
	}{{ca, a, b, newA}, {cb, b, a, newB}} {
		ids, err := sharedKeyIDs(ctx, end.c, end.peer)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, id := range ids {
			if id != end.keep {
				if err := unloadShared(ctx, end.c, id); err != nil {
					errs = append(errs, fmt.Errorf("unloading old PSK %q at %q: %w", id, end.site, err))
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rotating the PSK of %s <-> %s (the new key is in use): %w", a, b, err)
	}
	p.log.InfoContext(ctx, "rotated strongSwan PSK", "a", a, "b", b, "key_id", keyID)
	return nil
}

func unloadShared(ctx context.Context, c charon.Conn, id string) error {
	_, err := c.Call(ctx, "unload-shared", msg(map[string]any{"id": id}))
	return err
}

// reauthenticate makes site's IKE SA with peer reauthenticate and waits
// for the replacement: an ESTABLISHED IKE SA of that connection with a
// higher unique id than any before and every CHILD SA installed.
func (p *Provider) reauthenticate(ctx context.Context, c charon.Conn, site, peer string) error {
	before, err := listSAs(ctx, c, peer)
	if err != nil {
		return err
	}
	var baseline uint64
	var current *ikeSA
	for i, sa := range before {
		baseline = max(baseline, sa.uniqueID)
		if sa.state == "ESTABLISHED" && (current == nil || sa.uniqueID > current.uniqueID) {
			current = &before[i]
		}
	}
	// charon reports the replacement going down (ike-updown without
	// up=yes) when its authentication fails: watch for it, on a connection
	// of its own, before asking for the reauthentication.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var downs <-chan *vici.Message
	if wc, err := p.dial.Dial(watchCtx, site); err == nil {
		defer wc.Close()
		if w, ok := wc.(charon.EventWatcher); ok {
			if ch, err := w.Watch(watchCtx, "ike-updown"); err == nil {
				downs = ch
			}
		}
	}
	if current != nil {
		in := msg(map[string]any{"ike-id": strconv.FormatUint(current.uniqueID, 10), "reauth": "yes"})
		if _, err := c.Call(ctx, "rekey", in); err != nil {
			return fmt.Errorf("asking %q to reauthenticate IKE SA %d: %w", site, current.uniqueID, err)
		}
	} else {
		// Nothing to reauthenticate: bring the tunnel up with the new key.
		// An IKE-only initiate would leave a childless IKE SA, so every
		// CHILD SA of the connection is initiated.
		children, err := childNames(ctx, c, peer)
		if err != nil {
			return err
		}
		if len(children) == 0 {
			return fmt.Errorf("%w: %q has no IKE SA with %q and its connection has no CHILD SA to initiate", ErrReauthFailed, site, peer)
		}
		for _, child := range children {
			in := msg(map[string]any{"ike": peer, "child": child, "timeout": "-1"})
			if _, err := c.Call(ctx, "initiate", in); err != nil {
				return fmt.Errorf("%w: %q has no IKE SA with %q and initiating one failed: %w", ErrReauthFailed, site, peer, err)
			}
		}
	}

	deadline := p.opt.Clock.After(p.opt.ReauthTimeout)
	var seenNew bool
	for {
		sas, err := listSAs(ctx, c, peer)
		if err != nil {
			return err
		}
		var newest *ikeSA
		for i, sa := range sas {
			if sa.uniqueID > baseline && (newest == nil || sa.uniqueID > newest.uniqueID) {
				newest = &sas[i]
			}
		}
		if newest != nil {
			seenNew = true
			if newest.state == "ESTABLISHED" && len(newest.children) > 0 && allInstalled(newest.children) {
				return nil
			}
		} else if seenNew && current != nil {
			// The replacement came and went while the old SA stayed: it
			// failed (AUTHENTICATION_FAILED, for one).
			return fmt.Errorf("%w: the new IKE SA of %q with %q was torn down; the old SA %d remains", ErrReauthFailed, site, peer, current.uniqueID)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("%w: no new IKE SA of %q with %q within %s", ErrReauthFailed, site, peer, p.opt.ReauthTimeout)
		case ev, ok := <-downs:
			if !ok {
				downs = nil // the watch ended: rely on polling
				continue
			}
			if m, _ := ev.Get(peer).(*vici.Message); m != nil && str(ev.Get("up")) != "yes" {
				if id, _ := strconv.ParseUint(str(m.Get("uniqueid")), 10, 64); id > baseline {
					return fmt.Errorf("%w: the new IKE SA %d of %q with %q went down before it was established (authentication failed?); the old SA remains", ErrReauthFailed, id, site, peer)
				}
			}
		case <-p.opt.Clock.After(p.opt.PollInterval):
		}
	}
}

// childNames lists the CHILD SA configurations of a loaded connection.
func childNames(ctx context.Context, c charon.Conn, conn string) ([]string, error) {
	evs, err := c.Stream(ctx, "list-conns", "list-conn", msg(map[string]any{"ike": conn}))
	if err != nil {
		return nil, fmt.Errorf("listing connection %q: %w", conn, err)
	}
	var out []string
	for _, ev := range evs {
		cm, ok := ev.Get(conn).(*vici.Message)
		if !ok {
			continue
		}
		if ch, ok := cm.Get("children").(*vici.Message); ok {
			out = append(out, ch.Keys()...)
		}
	}
	slices.Sort(out)
	return out, nil
}

func allInstalled(children map[string]string) bool {
	for _, st := range children {
		if st != "INSTALLED" {
			return false
		}
	}
	return true
}

// VerifyPSK reads back that both ends hold exactly one shared key for the
// tunnel, under keyID, and that an IKE SA between them is established
// with its CHILD SAs installed. It returns an error wrapping
// actions.ErrNotVerified otherwise.
func (p *Provider) VerifyPSK(ctx context.Context, a, b, keyID string) error {
	for _, end := range [][2]string{{a, b}, {b, a}} {
		site, peer := end[0], end[1]
		c, _, err := p.conn(ctx, site)
		if err != nil {
			return err
		}
		ids, err := sharedKeyIDs(ctx, c, peer)
		if err != nil {
			_ = c.Close()
			return err
		}
		sas, err := listSAs(ctx, c, peer)
		_ = c.Close()
		if err != nil {
			return err
		}
		if want := []string{peer + "/" + keyID}; !slices.Equal(ids, want) {
			return fmt.Errorf("verifying the PSK of %s <-> %s at %q: %w: shared keys %q, want %q", a, b, site, actions.ErrNotVerified, ids, want)
		}
		up := false
		for _, sa := range sas {
			if sa.state == "ESTABLISHED" && len(sa.children) > 0 && allInstalled(sa.children) {
				up = true
			}
		}
		if !up {
			return fmt.Errorf("verifying the PSK of %s <-> %s at %q: %w: no established IKE SA with installed CHILD SAs", a, b, site, actions.ErrNotVerified)
		}
	}
	return nil
}
