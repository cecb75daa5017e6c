package actions

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warden-ir/warden/inventory"
)

// PeerBlocker blocks a revoked gateway's addresses at another gateway
// (providers/linux's AgentPool, through that gateway's agent), so the
// revoked gateway cannot even reach the tunnel ports there. Block is
// idempotent. For a gateway it cannot reach (no agent) it returns an error
// wrapping ErrUnsupported: the revocation of the tunnel itself still
// stands, and the result says where no block is in force.
type PeerBlocker interface {
	Block(ctx context.Context, at, peer inventory.Gateway) (changed bool, err error)
	VerifyBlocked(ctx context.Context, at, peer inventory.Gateway) error
}

// TunnelRevoker removes trust in a gateway at the other end of each of its
// tunnels (rotation.Tunnels: the credential vault and the tunnel
// providers).
type TunnelRevoker interface {
	// PlanRevoke says, reading only, what RevokeTunnels would change:
	// Units is the number of gw's tunnels, Changes a line per change.
	PlanRevoke(ctx context.Context, gw string) (TunnelReport, error)
	// RevokeTunnels removes trust in gw at the other end of each of its
	// tunnels that Warden manages and marks gw's credentials revoked.
	// Idempotent: a second call reports them unchanged. Tunnels Warden
	// does not manage are named in a terminal error; when it manages none,
	// nothing runs and the error wraps ErrUnsupported.
	RevokeTunnels(ctx context.Context, gw string) (TunnelReport, error)
	// VerifyRevoked reads back that no trust in gw is left; the error
	// wraps ErrNotVerified where some is.
	VerifyRevoked(ctx context.Context, gw string) (TunnelReport, error)
}

// CredentialRotator replaces tunnel credentials make before break, canary
// first, then in waves (rotation.Tunnels).
type CredentialRotator interface {
	// PlanRotation says, reading only, what RotateCredentials would
	// change, unit by unit and wave by wave.
	PlanRotation(ctx context.Context, r Rotation) (TunnelReport, error)
	// RotateCredentials rotates the credentials of the tunnels in r's
	// scope that Warden manages and that share a secret. Idempotent per
	// r.Batch: a unit already rotated by an earlier attempt is not rotated
	// again. The first unit that does not come back stops the waves (a
	// terminal error) and every unit not yet rotated keeps its working
	// credential. Tunnels Warden does not manage are named in a terminal
	// error; when it manages none, nothing runs and the error wraps
	// ErrUnsupported.
	RotateCredentials(ctx context.Context, r Rotation) (TunnelReport, error)
	// VerifyRotation reads back that r.Batch's credentials are in use.
	VerifyRotation(ctx context.Context, r Rotation) (TunnelReport, error)
}

// Rotation is the scope and the waves of one rotate_credentials step.
type Rotation struct {
	// Gateway is the step's: its own tunnels are never in scope (it is
	// revoked, not rotated).
	Gateway string
	// PSK and SiteKeys say what rotates: the pairs' preshared keys, the
	// WireGuard site keys.
	PSK, SiteKeys bool
	// Peers limits the scope to the tunnels between Gateway's peers;
	// otherwise it is every tunnel not touching Gateway (the fleet).
	Peers bool
	// Canary is the unit rotated alone first: a tunnel
	// ("wireguard:b<->c") or, for site keys, a gateway; empty: the first.
	Canary string
	// WaveSize units rotate at once after the canary; Timeout bounds how
	// long one may take to come back.
	WaveSize int
	Timeout  time.Duration
	// Batch tags every credential the step generates: its idempotency key.
	Batch string
}

// TunnelReport is what a revocation or rotation would change (a plan) or
// did, unit by unit: a tunnel, or a gateway for site keys.
type TunnelReport struct {
	// Units is how many units are in scope.
	Units int
	// Certified counts the tunnels in scope that authenticate with
	// certificates: they share no secret to rotate.
	Certified int
	// Changes are a plan's lines.
	Changes []string
	// Statuses counts the units by status: revoked, unchanged, rotated,
	// rolled_back, failed, skipped.
	Statuses map[string]int
	// Details is the report as a step's result shows it; nil when nothing
	// ran (a scope refused, nothing managed).
	Details any
}

// NewRevokePeer returns revoke_peer: at the other end of every tunnel of
// the step's gateway (per inv), trust in it is removed (t) and its
// addresses are blocked (b; nil blocks nowhere). There is no undo: trust in
// a compromised gateway comes back only through new credentials at
// re-onboarding.
func NewRevokePeer(inv *inventory.Inventory, t TunnelRevoker, b PeerBlocker) Action {
	return &revokeAction{inv: inv, t: t, b: b}
}

type revokeAction struct {
	inv *inventory.Inventory
	t   TunnelRevoker
	b   PeerBlocker
}

func (a *revokeAction) Name() string { return NameRevokePeer }

// peers lists the gateways at the other end of gw's tunnels, once each, in
// the order of the tunnels' names ("kind:a<->b", ends sorted).
func (a *revokeAction) peers(gw string) []inventory.Gateway {
	name := func(t inventory.Tunnel) string { return t.Kind + ":" + min(t.A, t.B) + "<->" + max(t.A, t.B) }
	tunnels := a.inv.TunnelsOf(gw)
	slices.SortStableFunc(tunnels, func(x, y inventory.Tunnel) int { return strings.Compare(name(x), name(y)) })
	var out []inventory.Gateway
	for _, t := range tunnels {
		if g, ok := a.inv.Gateway(t.Peer(gw)); ok && !slices.ContainsFunc(out, func(o inventory.Gateway) bool { return o.ID == g.ID }) {
			out = append(out, g)
		}
	}
	return out
}

func (a *revokeAction) Plan(ctx context.Context, req Request) (Change, error) {
	gw := req.Gateway
	plan, err := a.t.PlanRevoke(ctx, gw.ID)
	if err != nil {
		return Change{}, err
	}
	if plan.Units == 0 {
		return Change{Summary: fmt.Sprintf("%s has no tunnels: nothing to revoke", gw.ID)}, nil
	}
	changes, peers := plan.Changes, a.peers(gw.ID)
	for _, peer := range peers {
		if a.b == nil || peer.Agent == "" {
			changes = append(changes, fmt.Sprintf("at %s: cannot block %s's addresses (no agent)", peer.ID, gw.ID))
			continue
		}
		changes = append(changes, fmt.Sprintf("at %s: drop all traffic from and to %s", peer.ID, strings.Join(gw.Addresses, ", ")))
	}
	return Change{Summary: fmt.Sprintf("revoke %s at %d peer site(s) over %d tunnel(s)", gw.ID, len(peers), plan.Units), Changes: changes}, nil
}

// blockRow is one peer's block in a result.
type blockRow struct {
	Site    string `json:"site"`
	Status  string `json:"status"` // blocked, unchanged, unsupported, failed
	Changed bool   `json:"changed,omitempty"`
	Error   string `json:"error,omitempty"`
}

func (a *revokeAction) Apply(ctx context.Context, req Request) (Result, error) {
	gw := req.Gateway
	rep, err := a.t.RevokeTunnels(ctx, gw.ID)
	if rep.Details == nil {
		return Result{}, err
	}
	errs := []error{err}
	changed := rep.Statuses["revoked"] > 0
	var blocks []blockRow
	for _, peer := range a.peers(gw.ID) {
		row := a.blockAt(ctx, peer, gw)
		changed = changed || row.Changed
		if row.Status == "failed" {
			errs = append(errs, fmt.Errorf("blocking %s at %s: %s", gw.ID, peer.ID, row.Error))
		}
		blocks = append(blocks, row)
	}
	return Result{
		Changed: changed,
		Summary: fmt.Sprintf("%s revoked at %d tunnel(s) (%d already), blocked at %d site(s)", gw.ID,
			rep.Statuses["revoked"], rep.Statuses["unchanged"], countBlocks(blocks, "blocked", "unchanged")),
		Details: map[string]any{"tunnels": rep.Details, "blocks": blocks},
	}, errors.Join(errs...)
}

func (a *revokeAction) blockAt(ctx context.Context, at, gw inventory.Gateway) blockRow {
	row := blockRow{Site: at.ID, Status: "unsupported"}
	if a.b == nil {
		row.Error = "no blocker configured"
		return row
	}
	changed, err := a.b.Block(ctx, at, gw)
	switch {
	case errors.Is(err, ErrUnsupported):
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

func (a *revokeAction) Verify(ctx context.Context, req Request) (Result, error) {
	gw := req.Gateway
	rep, err := a.t.VerifyRevoked(ctx, gw.ID)
	errs := []error{err}
	var blocks []blockRow
	for _, peer := range a.peers(gw.ID) {
		row := blockRow{Site: peer.ID, Status: "blocked"}
		switch {
		case a.b == nil:
			row.Status = "unsupported"
		default:
			if err := a.b.VerifyBlocked(ctx, peer, gw); errors.Is(err, ErrUnsupported) {
				row.Status, row.Error = "unsupported", err.Error()
			} else if err != nil {
				row.Status, row.Error = "failed", err.Error()
				errs = append(errs, fmt.Errorf("block of %s at %s: %w", gw.ID, peer.ID, err))
			}
		}
		blocks = append(blocks, row)
	}
	return Result{
		Summary: fmt.Sprintf("%s: no trust left at %d of %d tunnel(s); blocked at %d site(s)", gw.ID,
			rep.Statuses["revoked"], rep.Units, countBlocks(blocks, "blocked")),
		Details: map[string]any{"tunnels": rep.Details, "blocks": blocks},
	}, errors.Join(errs...)
}

// Credential sets and scopes a rotate_credentials step may name.
const (
	CredentialsPSK      = "psk"
	CredentialsSiteKeys = "site_keys"
	CredentialsAll      = "all"
	// ScopeFleet rotates every tunnel that does not touch the step's
	// gateway.
	ScopeFleet = "fleet"
	// ScopePeers rotates the tunnels between the step's gateway's peers.
	ScopePeers = "peers"
)

// NewRotateCredentials returns rotate_credentials: replace, make before
// break, the preshared keys (and with credentials=site_keys or all, the
// WireGuard site keys) of the tunnels in scope, which never include the
// step's gateway: that one is revoked, not rotated. Canary first, then
// waves; the first unit that does not come back stops the waves, and every
// unit not yet rotated keeps its working credential.
//
// Parameters: credentials (psk | site_keys | all, default psk), scope
// (fleet | peers, default fleet), wave_size (default waveSize, else 4),
// canary (a pair "kind:a<->b" or, for site keys, a gateway id) and timeout
// (per unit; default unitTimeout, else 30 s). Apply is idempotent per
// step: credentials carry the step's idempotency key.
func NewRotateCredentials(r CredentialRotator, waveSize int, unitTimeout time.Duration) Action {
	if waveSize <= 0 {
		waveSize = 4
	}
	if unitTimeout <= 0 {
		unitTimeout = 30 * time.Second
	}
	return &rotateAction{r: r, waveSize: waveSize, timeout: unitTimeout}
}

type rotateAction struct {
	r        CredentialRotator
	waveSize int
	timeout  time.Duration
}

func (a *rotateAction) Name() string { return NameRotateCredentials }

// rotation reads a step's parameters.
func (a *rotateAction) rotation(req Request) (Rotation, error) {
	r := Rotation{Gateway: req.Gateway.ID, Canary: req.Params["canary"], WaveSize: a.waveSize, Timeout: a.timeout, Batch: req.IdempotencyKey}
	switch c := req.Params["credentials"]; c {
	case "", CredentialsPSK:
		r.PSK = true
	case CredentialsSiteKeys:
		r.SiteKeys = true
	case CredentialsAll:
		r.PSK, r.SiteKeys = true, true
	default:
		return r, Terminal(fmt.Errorf("rotate_credentials: params.credentials: %q is not psk, site_keys or all", c))
	}
	switch s := req.Params["scope"]; s {
	case "", ScopeFleet:
	case ScopePeers:
		r.Peers = true
	default:
		return r, Terminal(fmt.Errorf("rotate_credentials: params.scope: %q is not fleet or peers", s))
	}
	if v := req.Params["wave_size"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return r, Terminal(fmt.Errorf("rotate_credentials: params.wave_size: %q is not a positive number", v))
		}
		r.WaveSize = n
	}
	if v := req.Params["timeout"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return r, Terminal(fmt.Errorf("rotate_credentials: params.timeout: %q is not a positive duration", v))
		}
		r.Timeout = d
	}
	return r, nil
}

func (a *rotateAction) Plan(ctx context.Context, req Request) (Change, error) {
	r, err := a.rotation(req)
	if err != nil {
		return Change{}, err
	}
	plan, err := a.r.PlanRotation(ctx, r)
	if err != nil {
		return Change{}, err
	}
	sum := fmt.Sprintf("rotate the credentials of %d tunnel(s) not touching %s, canary first, then %d at a time", plan.Units, r.Gateway, r.WaveSize)
	if plan.Units == 0 && plan.Certified > 0 {
		sum = fmt.Sprintf("the %d tunnel(s) not touching %s authenticate with certificates: nothing shared to rotate", plan.Certified, r.Gateway)
	} else if plan.Units == 0 {
		sum = fmt.Sprintf("no tunnel in scope besides %s's own: nothing to rotate", r.Gateway)
	}
	return Change{Summary: sum, Changes: plan.Changes, Destructive: true}, nil
}

func (a *rotateAction) Apply(ctx context.Context, req Request) (Result, error) {
	r, err := a.rotation(req)
	if err != nil {
		return Result{}, err
	}
	if r.Batch == "" {
		return Result{}, Terminal(errors.New("rotate_credentials: a step needs an idempotency key"))
	}
	rep, err := a.r.RotateCredentials(ctx, r)
	if rep.Details == nil {
		return Result{}, err
	}
	s := rep.Statuses
	res := Result{Changed: s["rotated"] > 0, Details: map[string]any{"reports": rep.Details},
		Summary: fmt.Sprintf("%d rotated, %d already rotated, %d rolled back, %d failed, %d not attempted",
			s["rotated"], s["unchanged"], s["rolled_back"], s["failed"], s["skipped"])}
	if rep.Certified > 0 {
		res.Summary += fmt.Sprintf("; %d authenticate with certificates (nothing shared to rotate)", rep.Certified)
	}
	if err != nil {
		return res, fmt.Errorf("%s: %w", res.Summary, err)
	}
	return res, nil
}

func (a *rotateAction) Verify(ctx context.Context, req Request) (Result, error) {
	r, err := a.rotation(req)
	if err != nil {
		return Result{}, err
	}
	rep, err := a.r.VerifyRotation(ctx, r)
	if rep.Details == nil {
		return Result{}, err
	}
	return Result{
		Summary: fmt.Sprintf("%d of %d credential(s) verified in use", rep.Statuses["rotated"], rep.Units),
		Details: map[string]any{"report": rep.Details},
	}, err
}
