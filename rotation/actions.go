package rotation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/inventory"
)

// Blocker blocks a revoked gateway's addresses at another gateway (through
// its agent), so the revoked gateway cannot even reach the tunnel ports
// there. An implementation returns an error wrapping actions.ErrUnsupported
// for a gateway it cannot reach (no agent): the revocation of the tunnel
// itself still stands, and the result says where no block is in force.
type Blocker interface {
	Block(ctx context.Context, at, peer inventory.Gateway) (changed bool, err error)
	VerifyBlocked(ctx context.Context, at, peer inventory.Gateway) error
}

// ActionOptions are the defaults of the catalogue actions.
type ActionOptions struct {
	// WaveSize is how many pairs (or sites) rotate at once after the
	// canary, unless a step says otherwise (default 4).
	WaveSize int
	// UnitTimeout bounds how long one pair or site may take to come back
	// with its new credential (default 30 s).
	UnitTimeout time.Duration
	// Managed says whether Warden can reach a gateway's tunnels of a kind
	// (the inventory describes its device and it has an agent). Nil: every
	// gateway is. Unmanaged tunnels are left to people: the actions say so
	// and fail (or, when nothing at all is managed, report unsupported).
	Managed func(gateway, kind string) bool
}

func (o ActionOptions) managed(gw, kind string) bool { return o.Managed == nil || o.Managed(gw, kind) }

// NewRevokeAction returns the revoke_peer action: at the other end of every
// tunnel of the step's gateway, remove its WireGuard peer entry (by the key
// recorded in the vault, never by asking the gateway) or its strongSwan
// connection, SAs and shared keys, and block its addresses there. There is
// no undo: trust in a compromised gateway comes back only through new
// credentials at re-onboarding.
func NewRevokeAction(r *Rotator, inv *inventory.Inventory, b Blocker, opt ActionOptions) actions.Action {
	return &revokeAction{r: r, inv: inv, block: b, opt: opt}
}

type revokeAction struct {
	r     *Rotator
	inv   *inventory.Inventory
	block Blocker
	opt   ActionOptions
}

// split divides gw's tunnels into those whose peer end Warden manages
// (as an inventory holding only them) and the pairs it does not.
func (a *revokeAction) split(gw string) (*inventory.Inventory, []Pair) {
	managed := &inventory.Inventory{Sites: a.inv.Sites, Gateways: a.inv.Gateways}
	var unmanaged []Pair
	for _, t := range a.inv.TunnelsOf(gw) {
		if a.opt.managed(t.Peer(gw), t.Kind) {
			managed.Tunnels = append(managed.Tunnels, t)
		} else if p := PairOf(t); !slices.Contains(unmanaged, p) {
			unmanaged = append(unmanaged, p)
		}
	}
	return managed, unmanaged
}

// errUnmanaged is the failure for tunnels Warden cannot reach.
func errUnmanaged(what string, pairs []Pair) error {
	names := make([]string, len(pairs))
	for i, p := range pairs {
		names[i] = p.String()
	}
	return fmt.Errorf("%s by hand: Warden does not manage %s (the inventory gives no wireguard/strongswan section with an agent for an end)", what, strings.Join(names, ", "))
}

func (a *revokeAction) Name() string { return actions.NameRevokePeer }

// peers lists the gateways at the other end of gw's tunnels, sorted.
func (a *revokeAction) peers(gw string) []inventory.Gateway {
	var out []inventory.Gateway
	for _, p := range revokedPairs(a.inv, gw) {
		if g, ok := a.inv.Gateway(p.Other(gw)); ok && !slices.ContainsFunc(out, func(o inventory.Gateway) bool { return o.ID == g.ID }) {
			out = append(out, g)
		}
	}
	return out
}

func (a *revokeAction) Plan(ctx context.Context, req actions.Request) (actions.Change, error) {
	gw := req.Gateway
	pairs := revokedPairs(a.inv, gw.ID)
	if len(pairs) == 0 {
		return actions.Change{Summary: fmt.Sprintf("%s has no tunnels: nothing to revoke", gw.ID)}, nil
	}
	managed, unmanaged := a.split(gw.ID)
	var changes []string
	if len(unmanaged) > 0 {
		changes = append(changes, errUnmanaged("revoke", unmanaged).Error())
	}
	for _, p := range revokedPairs(managed, gw.ID) {
		peer := p.Other(gw.ID)
		switch p.Kind {
		case inventory.KindWireGuard:
			what := "its recorded public key (none recorded: revocation will fail until it is imported)"
			if c, err := a.r.Vault.Latest(ctx, KindWireGuardKey, Pair{}, gw.ID, StateActive, StateRevoked); err == nil {
				what = fmt.Sprintf("key %s (%s)", c.PublicKey, c.ID)
			}
			changes = append(changes, fmt.Sprintf("at %s: remove WireGuard peer %s, %s", peer, gw.ID, what))
		case inventory.KindStrongSwan:
			changes = append(changes, fmt.Sprintf("at %s: terminate the IKE SAs with %s, unload connection %s and its shared keys %s/*", peer, gw.ID, gw.ID, gw.ID))
			if c, err := a.r.Vault.Latest(ctx, KindStrongSwanCert, Pair{}, gw.ID, StateActive, StateRevoked); err == nil {
				if a.r.CA == nil {
					changes = append(changes, fmt.Sprintf("at %s: cannot refuse %s's certificate (serial %s): no CA configured to sign a CRL", peer, gw.ID, c.PublicKey))
				} else {
					changes = append(changes, fmt.Sprintf("at %s: load a CRL from %s revoking %s's certificate (serial %s)", peer, a.r.CA.Certificate().Subject, gw.ID, c.PublicKey))
				}
			}
		}
		if psk, err := pskKind(p.Kind); err == nil {
			if c, err := a.r.Vault.Current(ctx, psk, p, ""); err == nil {
				changes = append(changes, fmt.Sprintf("mark %s %s of %s revoked", psk, c.ID, p))
			}
		}
	}
	for _, peer := range a.peers(gw.ID) {
		if a.block == nil || peer.Agent == "" {
			changes = append(changes, fmt.Sprintf("at %s: cannot block %s's addresses (no agent)", peer.ID, gw.ID))
			continue
		}
		changes = append(changes, fmt.Sprintf("at %s: drop all traffic from and to %s", peer.ID, strings.Join(gw.Addresses, ", ")))
	}
	return actions.Change{
		Summary: fmt.Sprintf("revoke %s at %d peer site(s) over %d tunnel(s)", gw.ID, len(a.peers(gw.ID)), len(pairs)),
		Changes: changes,
	}, nil
}

// blockRow is one peer's block in a result.
type blockRow struct {
	Site    string `json:"site"`
	Status  string `json:"status"` // blocked, unchanged, unsupported, failed
	Changed bool   `json:"changed,omitempty"`
	Error   string `json:"error,omitempty"`
}

func (a *revokeAction) Apply(ctx context.Context, req actions.Request) (actions.Result, error) {
	gw := req.Gateway
	managed, unmanaged := a.split(gw.ID)
	if len(managed.Tunnels) == 0 && len(unmanaged) > 0 {
		return actions.Result{}, fmt.Errorf("%w: %w", actions.ErrUnsupported, errUnmanaged("revoke", unmanaged))
	}
	rep, err := a.r.Revoke(ctx, managed, gw.ID)
	errs := []error{err}
	if len(unmanaged) > 0 {
		errs = append(errs, actions.Terminal(errUnmanaged("revoke", unmanaged)))
	}
	changed := rep.Count(StatusRevoked) > 0
	var blocks []blockRow
	for _, peer := range a.peers(gw.ID) {
		row := a.blockAt(ctx, peer, gw)
		changed = changed || row.Changed
		if row.Status == "failed" {
			errs = append(errs, fmt.Errorf("blocking %s at %s: %s", gw.ID, peer.ID, row.Error))
		}
		blocks = append(blocks, row)
	}
	res := actions.Result{
		Changed: changed,
		Summary: fmt.Sprintf("%s revoked at %d tunnel(s) (%d already), blocked at %d site(s)", gw.ID,
			rep.Count(StatusRevoked), rep.Count(StatusUnchanged), countBlocks(blocks, "blocked", "unchanged")),
		Details: map[string]any{"tunnels": rep.Rows, "blocks": blocks},
	}
	return res, errors.Join(errs...)
}

func (a *revokeAction) blockAt(ctx context.Context, at, gw inventory.Gateway) blockRow {
	row := blockRow{Site: at.ID, Status: "unsupported"}
	if a.block == nil {
		row.Error = "no blocker configured"
		return row
	}
	changed, err := a.block.Block(ctx, at, gw)
	switch {
	case errors.Is(err, actions.ErrUnsupported):
		row.Error = err.Error()
	case err != nil:
		row.Status, row.Error = "failed", err.Error()
	case changed:
		row.Status, row.Changed = "blocked", true
	default:
		row.Status = "unchanged"
	}
	return row
}

func countBlocks(rows []blockRow, statuses ...string) int {
	n := 0
	for _, r := range rows {
		if slices.Contains(statuses, r.Status) {
			n++
		}
	}
	return n
}

func (a *revokeAction) Verify(ctx context.Context, req actions.Request) (actions.Result, error) {
	gw := req.Gateway
	managed, unmanaged := a.split(gw.ID)
	rep, err := a.r.VerifyRevoked(ctx, managed, gw.ID)
	errs := []error{err}
	if len(unmanaged) > 0 {
		errs = append(errs, fmt.Errorf("%w: %w", actions.ErrNotVerified, errUnmanaged("revoke", unmanaged)))
	}
	var blocks []blockRow
	for _, peer := range a.peers(gw.ID) {
		row := blockRow{Site: peer.ID, Status: "blocked"}
		switch {
		case a.block == nil:
			row.Status = "unsupported"
		default:
			if err := a.block.VerifyBlocked(ctx, peer, gw); errors.Is(err, actions.ErrUnsupported) {
				row.Status, row.Error = "unsupported", err.Error()
			} else if err != nil {
				row.Status, row.Error = "failed", err.Error()
				errs = append(errs, fmt.Errorf("block of %s at %s: %w", gw.ID, peer.ID, err))
			}
		}
		blocks = append(blocks, row)
	}
	return actions.Result{
		Summary: fmt.Sprintf("%s: no trust left at %d of %d tunnel(s); blocked at %d site(s)", gw.ID,
			rep.Count(StatusRevoked), len(rep.Rows), countBlocks(blocks, "blocked")),
		Details: map[string]any{"tunnels": rep.Rows, "blocks": blocks},
	}, errors.Join(errs...)
}

// Credential sets a rotate_credentials step may name.
const (
	CredentialsPSK      = "psk"
	CredentialsSiteKeys = "site_keys"
	CredentialsAll      = "all"
)

// Scopes of a rotate_credentials step.
const (
	// ScopeFleet rotates every tunnel that does not touch the step's
	// gateway.
	ScopeFleet = "fleet"
	// ScopePeers rotates the tunnels between the step's gateway's peers.
	ScopePeers = "peers"
)

// NewRotateAction returns the rotate_credentials action: replace, make
// before break, the preshared keys (and with credentials=site_keys or all,
// the WireGuard site keys) of the tunnels in scope, which never include
// the step's gateway: that one is revoked, not rotated. Canary first, then
// waves; the first unit that does not come back stops the waves, and every
// unit not yet rotated keeps its working credential.
//
// Parameters: credentials (psk | site_keys | all, default psk), scope
// (fleet | peers, default fleet), wave_size, canary (a pair "kind:a<->b"
// or, for site keys, a gateway id) and timeout (per unit). Apply is
// idempotent per step: credentials carry the step's idempotency key, and a
// unit already rotated by an earlier attempt is not rotated again.
func NewRotateAction(r *Rotator, inv *inventory.Inventory, opt ActionOptions) actions.Action {
	if opt.WaveSize <= 0 {
		opt.WaveSize = 4
	}
	if opt.UnitTimeout <= 0 {
		opt.UnitTimeout = 30 * time.Second
	}
	return &rotateAction{r: r, inv: inv, opt: opt}
}

type rotateAction struct {
	r   *Rotator
	inv *inventory.Inventory
	opt ActionOptions
}

func (a *rotateAction) Name() string { return actions.NameRotateCredentials }

// rotateParams is a step's parameters, checked.
type rotateParams struct {
	psk, siteKeys bool
	pairs         []Pair // in scope and managed
	unmanaged     []Pair // in scope, left to people
	certified     []Pair // in scope, authenticated by certificates: nothing shared
	waves         WaveOptions
}

// usesCertificates reports whether both ends of a strongSwan pair
// authenticate with certificates (recorded in the vault at onboarding):
// such a pair shares no secret to rotate.
func (r *Rotator) usesCertificates(ctx context.Context, p Pair) bool {
	if p.Kind != inventory.KindStrongSwan {
		return false
	}
	for _, end := range []string{p.A, p.B} {
		if _, err := r.Vault.Current(ctx, KindStrongSwanCert, Pair{}, end); err != nil {
			return false
		}
	}
	return true
}

func (a *rotateAction) params(ctx context.Context, req actions.Request) (rotateParams, error) {
	var rp rotateParams
	switch c := req.Params["credentials"]; c {
	case "", CredentialsPSK:
		rp.psk = true
	case CredentialsSiteKeys:
		rp.siteKeys = true
	case CredentialsAll:
		rp.psk, rp.siteKeys = true, true
	default:
		return rp, actions.Terminal(fmt.Errorf("rotate_credentials: params.credentials: %q is not psk, site_keys or all", c))
	}
	gw := req.Gateway.ID
	switch s := req.Params["scope"]; s {
	case "", ScopeFleet:
		rp.pairs = Fleet(a.inv.Tunnels, gw)
	case ScopePeers:
		peers := map[string]bool{}
		for _, t := range a.inv.TunnelsOf(gw) {
			peers[t.Peer(gw)] = true
		}
		for _, p := range Fleet(a.inv.Tunnels, gw) {
			if peers[p.A] && peers[p.B] {
				rp.pairs = append(rp.pairs, p)
			}
		}
	default:
		return rp, actions.Terminal(fmt.Errorf("rotate_credentials: params.scope: %q is not fleet or peers", s))
	}
	var managed []Pair
	for _, p := range rp.pairs {
		switch {
		case a.r.usesCertificates(ctx, p):
			rp.certified = append(rp.certified, p)
		case a.opt.managed(p.A, p.Kind) && a.opt.managed(p.B, p.Kind):
			managed = append(managed, p)
		default:
			rp.unmanaged = append(rp.unmanaged, p)
		}
	}
	rp.pairs = managed
	rp.waves = WaveOptions{WaveSize: a.opt.WaveSize, Timeout: a.opt.UnitTimeout, Canary: req.Params["canary"], Batch: req.IdempotencyKey}
	if v := req.Params["wave_size"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return rp, actions.Terminal(fmt.Errorf("rotate_credentials: params.wave_size: %q is not a positive number", v))
		}
		rp.waves.WaveSize = n
	}
	if v := req.Params["timeout"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return rp, actions.Terminal(fmt.Errorf("rotate_credentials: params.timeout: %q is not a positive duration", v))
		}
		rp.waves.Timeout = d
	}
	if c := rp.waves.Canary; c != "" {
		isPair := slices.ContainsFunc(rp.pairs, func(p Pair) bool { return p.String() == c })
		isSite := slices.Contains(Sites(rp.pairs, inventory.KindWireGuard), c)
		if (rp.psk && !isPair) || (!rp.psk && !isSite) {
			return rp, actions.Terminal(fmt.Errorf("rotate_credentials: params.canary: %q is not one of the %s in scope", c, map[bool]string{true: "pairs", false: "sites"}[rp.psk]))
		}
	}
	return rp, nil
}

func (a *rotateAction) Plan(ctx context.Context, req actions.Request) (actions.Change, error) {
	rp, err := a.params(ctx, req)
	if err != nil {
		return actions.Change{}, err
	}
	var changes []string
	if len(rp.unmanaged) > 0 {
		changes = append(changes, errUnmanaged("rotate", rp.unmanaged).Error())
	}
	for _, p := range rp.certified {
		changes = append(changes, fmt.Sprintf("%s: authenticated by certificates, no shared secret to rotate (a compromised gateway's certificate is revoked by revoke_peer)", p))
	}
	if rp.psk {
		byName := map[string]Pair{}
		for _, p := range rp.pairs {
			byName[p.String()] = p
		}
		for _, u := range PlanPSKWaves(rp.pairs, rp.waves) {
			p := byName[u.Name]
			kind, _ := pskKind(p.Kind)
			current := "none known"
			if c, err := a.r.Vault.Current(ctx, kind, p, ""); err == nil {
				current = c.ID
			}
			changes = append(changes, fmt.Sprintf("wave %d: %s: replace %s %s with a new key, make before break", u.Wave, p, kind, current))
		}
	}
	if rp.siteKeys {
		for _, u := range PlanSiteKeyWaves(Sites(rp.pairs, inventory.KindWireGuard), rp.pairs, rp.waves) {
			current := "the key the device has"
			if c, err := a.r.Vault.Current(ctx, KindWireGuardKey, Pair{}, u.Name); err == nil {
				current = c.ID
			}
			changes = append(changes, fmt.Sprintf("wave %d: site %s: replace WireGuard key %s (staged at its peers first; never in the same wave as a peer)", u.Wave, u.Name, current))
		}
	}
	sum := fmt.Sprintf("rotate the credentials of %d tunnel(s) not touching %s, canary first, then %d at a time", len(rp.pairs), req.Gateway.ID, rp.waves.WaveSize)
	if len(rp.pairs) == 0 && len(rp.certified) > 0 {
		sum = fmt.Sprintf("the %d tunnel(s) not touching %s authenticate with certificates: nothing shared to rotate", len(rp.certified), req.Gateway.ID)
	} else if len(rp.pairs) == 0 {
		sum = fmt.Sprintf("no tunnel in scope besides %s's own: nothing to rotate", req.Gateway.ID)
	}
	return actions.Change{Summary: sum, Changes: changes, Destructive: true}, nil
}

func (a *rotateAction) Apply(ctx context.Context, req actions.Request) (actions.Result, error) {
	rp, err := a.params(ctx, req)
	if err != nil {
		return actions.Result{}, err
	}
	if req.IdempotencyKey == "" {
		return actions.Result{}, actions.Terminal(errors.New("rotate_credentials: a step needs an idempotency key"))
	}
	if len(rp.pairs) == 0 && len(rp.unmanaged) > 0 {
		return actions.Result{}, fmt.Errorf("%w: %w", actions.ErrUnsupported, errUnmanaged("rotate", rp.unmanaged))
	}
	var reports []Report
	var errs []error
	if rp.psk {
		rep, err := a.r.Rotate(ctx, rp.pairs, rp.waves)
		reports, errs = append(reports, rep), append(errs, err)
	}
	if rp.siteKeys && errors.Join(errs...) == nil {
		sites := Sites(rp.pairs, inventory.KindWireGuard)
		rep, err := a.r.RotateSiteKeys(ctx, sites, rp.pairs, rp.waves)
		reports, errs = append(reports, rep), append(errs, err)
	}
	res := actions.Result{Details: map[string]any{"reports": reports}}
	var rotated, unchanged, rolledBack, failed, skipped int
	for _, rep := range reports {
		rotated += rep.Count(StatusRotated)
		unchanged += rep.Count(StatusUnchanged)
		rolledBack += rep.Count(StatusRolledBack)
		failed += rep.Count(StatusFailed)
		skipped += rep.Count(StatusSkipped)
	}
	res.Changed = rotated > 0
	res.Summary = fmt.Sprintf("%d rotated, %d already rotated, %d rolled back, %d failed, %d not attempted", rotated, unchanged, rolledBack, failed, skipped)
	if len(rp.certified) > 0 {
		res.Summary += fmt.Sprintf("; %d authenticate with certificates (nothing shared to rotate)", len(rp.certified))
	}
	if len(rp.unmanaged) > 0 && errors.Join(errs...) == nil {
		errs = append(errs, actions.Terminal(errUnmanaged("rotate", rp.unmanaged)))
	}
	if err := errors.Join(errs...); err != nil {
		if errors.Is(err, ErrStopped) {
			// A person decides what happens to a unit that did not come
			// back; retrying blindly would only hit it again.
			return res, actions.Terminal(fmt.Errorf("%s: %w", res.Summary, err))
		}
		return res, fmt.Errorf("%s: %w", res.Summary, err)
	}
	return res, nil
}

func (a *rotateAction) Verify(ctx context.Context, req actions.Request) (actions.Result, error) {
	rp, err := a.params(ctx, req)
	if err != nil {
		return actions.Result{}, err
	}
	rep, err := a.r.VerifyRotated(ctx, rp.pairs, req.IdempotencyKey, rp.psk, rp.siteKeys)
	if len(rp.unmanaged) > 0 {
		err = errors.Join(err, fmt.Errorf("%w: %w", actions.ErrNotVerified, errUnmanaged("rotate", rp.unmanaged)))
	}
	return actions.Result{
		Summary: fmt.Sprintf("%d of %d credential(s) verified in use", rep.Count(StatusRotated), len(rep.Rows)),
		Details: map[string]any{"report": rep},
	}, err
}
