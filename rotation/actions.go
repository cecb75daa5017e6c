package rotation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/inventory"
)

// Tunnels is what the catalogue's revoke_peer and rotate_credentials need
// from the rotator: which tunnels a step acts on, which of them Warden
// manages, and the rotator's procedures over them.
type Tunnels struct {
	Rotator   *Rotator
	Inventory *inventory.Inventory
	// Managed says whether Warden can reach a gateway's tunnels of a kind
	// (the inventory describes its device and it has an agent). Nil: every
	// gateway is. Unmanaged tunnels are left to people: the steps say so
	// and fail (or, when nothing at all is managed, report unsupported).
	Managed func(gateway, kind string) bool
}

var (
	_ actions.TunnelRevoker     = (*Tunnels)(nil)
	_ actions.CredentialRotator = (*Tunnels)(nil)
)

func (t *Tunnels) managed(gw, kind string) bool { return t.Managed == nil || t.Managed(gw, kind) }

// split divides gw's tunnels into those whose peer end Warden manages
// (as an inventory holding only them) and the pairs it does not.
func (t *Tunnels) split(gw string) (*inventory.Inventory, []Pair) {
	managed := &inventory.Inventory{Sites: t.Inventory.Sites, Gateways: t.Inventory.Gateways}
	var unmanaged []Pair
	for _, tu := range t.Inventory.TunnelsOf(gw) {
		if t.managed(tu.Peer(gw), tu.Kind) {
			managed.Tunnels = append(managed.Tunnels, tu)
		} else if p := PairOf(tu); !slices.Contains(unmanaged, p) {
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

// tunnelReport is reports as a step's result shows them: details, and
// their rows counted by status.
func tunnelReport(details any, reports ...Report) actions.TunnelReport {
	out := actions.TunnelReport{Statuses: map[string]int{}, Details: details}
	for _, rep := range reports {
		out.Units += len(rep.Rows)
		for _, r := range rep.Rows {
			out.Statuses[string(r.Status)]++
		}
	}
	return out
}

// PlanRevoke implements actions.TunnelRevoker.
func (t *Tunnels) PlanRevoke(ctx context.Context, gw string) (actions.TunnelReport, error) {
	pairs := revokedPairs(t.Inventory, gw)
	if len(pairs) == 0 {
		return actions.TunnelReport{}, nil
	}
	managed, unmanaged := t.split(gw)
	var changes []string
	if len(unmanaged) > 0 {
		changes = append(changes, errUnmanaged("revoke", unmanaged).Error())
	}
	r := t.Rotator
	for _, p := range revokedPairs(managed, gw) {
		peer := p.Other(gw)
		switch p.Kind {
		case inventory.KindWireGuard:
			what := "its recorded public key (none recorded: revocation will fail until it is imported)"
			if c, err := r.Vault.Latest(ctx, KindWireGuardKey, Pair{}, gw, StateActive, StateRevoked); err == nil {
				what = fmt.Sprintf("key %s (%s)", c.PublicKey, c.ID)
			}
			changes = append(changes, fmt.Sprintf("at %s: remove WireGuard peer %s, %s", peer, gw, what))
		case inventory.KindStrongSwan:
			changes = append(changes, fmt.Sprintf("at %s: terminate the IKE SAs with %s, unload connection %s and its shared keys %s/*", peer, gw, gw, gw))
			if c, err := r.Vault.Latest(ctx, KindStrongSwanCert, Pair{}, gw, StateActive, StateRevoked); err == nil {
				if r.CA == nil {
					changes = append(changes, fmt.Sprintf("at %s: cannot refuse %s's certificate (serial %s): no CA configured to sign a CRL", peer, gw, c.PublicKey))
				} else {
					changes = append(changes, fmt.Sprintf("at %s: load a CRL from %s revoking %s's certificate (serial %s)", peer, r.CA.Certificate().Subject, gw, c.PublicKey))
				}
			}
		}
		if psk, err := pskKind(p.Kind); err == nil {
			if c, err := r.Vault.Current(ctx, psk, p, ""); err == nil {
				changes = append(changes, fmt.Sprintf("mark %s %s of %s revoked", psk, c.ID, p))
			}
		}
	}
	return actions.TunnelReport{Units: len(pairs), Changes: changes}, nil
}

// RevokeTunnels implements actions.TunnelRevoker with Revoke.
func (t *Tunnels) RevokeTunnels(ctx context.Context, gw string) (actions.TunnelReport, error) {
	managed, unmanaged := t.split(gw)
	if len(managed.Tunnels) == 0 && len(unmanaged) > 0 {
		return actions.TunnelReport{}, fmt.Errorf("%w: %w", actions.ErrUnsupported, errUnmanaged("revoke", unmanaged))
	}
	rep, err := t.Rotator.Revoke(ctx, managed, gw)
	if len(unmanaged) > 0 {
		err = errors.Join(err, actions.Terminal(errUnmanaged("revoke", unmanaged)))
	}
	return tunnelReport(rep.Rows, rep), err
}

// VerifyRevoked implements actions.TunnelRevoker.
func (t *Tunnels) VerifyRevoked(ctx context.Context, gw string) (actions.TunnelReport, error) {
	managed, unmanaged := t.split(gw)
	rep, err := t.Rotator.VerifyRevoked(ctx, managed, gw)
	if len(unmanaged) > 0 {
		err = errors.Join(err, fmt.Errorf("%w: %w", actions.ErrNotVerified, errUnmanaged("revoke", unmanaged)))
	}
	return tunnelReport(rep.Rows, rep), err
}

// scope is the tunnels of a rotation, checked.
type scope struct {
	pairs     []Pair // in scope and managed
	unmanaged []Pair // in scope, left to people
	certified []Pair // in scope, authenticated by certificates: nothing shared
	waves     WaveOptions
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

func (t *Tunnels) scope(ctx context.Context, rot actions.Rotation) (scope, error) {
	gw := rot.Gateway
	pairs := Fleet(t.Inventory.Tunnels, gw)
	if rot.Peers {
		peers := map[string]bool{}
		for _, tu := range t.Inventory.TunnelsOf(gw) {
			peers[tu.Peer(gw)] = true
		}
		pairs = slices.DeleteFunc(pairs, func(p Pair) bool { return !peers[p.A] || !peers[p.B] })
	}
	var sc scope
	for _, p := range pairs {
		switch {
		case t.Rotator.usesCertificates(ctx, p):
			sc.certified = append(sc.certified, p)
		case t.managed(p.A, p.Kind) && t.managed(p.B, p.Kind):
			sc.pairs = append(sc.pairs, p)
		default:
			sc.unmanaged = append(sc.unmanaged, p)
		}
	}
	sc.waves = WaveOptions{WaveSize: rot.WaveSize, Timeout: rot.Timeout, Canary: rot.Canary, Batch: rot.Batch}
	if c := rot.Canary; c != "" {
		isPair := slices.ContainsFunc(sc.pairs, func(p Pair) bool { return p.String() == c })
		isSite := slices.Contains(Sites(sc.pairs, inventory.KindWireGuard), c)
		if (rot.PSK && !isPair) || (!rot.PSK && !isSite) {
			return sc, actions.Terminal(fmt.Errorf("rotate_credentials: params.canary: %q is not one of the %s in scope", c, map[bool]string{true: "pairs", false: "sites"}[rot.PSK]))
		}
	}
	return sc, nil
}

// PlanRotation implements actions.CredentialRotator.
func (t *Tunnels) PlanRotation(ctx context.Context, rot actions.Rotation) (actions.TunnelReport, error) {
	sc, err := t.scope(ctx, rot)
	if err != nil {
		return actions.TunnelReport{}, err
	}
	var changes []string
	if len(sc.unmanaged) > 0 {
		changes = append(changes, errUnmanaged("rotate", sc.unmanaged).Error())
	}
	for _, p := range sc.certified {
		changes = append(changes, fmt.Sprintf("%s: authenticated by certificates, no shared secret to rotate (a compromised gateway's certificate is revoked by revoke_peer)", p))
	}
	if rot.PSK {
		byName := map[string]Pair{}
		for _, p := range sc.pairs {
			byName[p.String()] = p
		}
		for _, u := range PlanPSKWaves(sc.pairs, sc.waves) {
			p := byName[u.Name]
			kind, _ := pskKind(p.Kind)
			current := "none known"
			if c, err := t.Rotator.Vault.Current(ctx, kind, p, ""); err == nil {
				current = c.ID
			}
			changes = append(changes, fmt.Sprintf("wave %d: %s: replace %s %s with a new key, make before break", u.Wave, p, kind, current))
		}
	}
	if rot.SiteKeys {
		for _, u := range PlanSiteKeyWaves(Sites(sc.pairs, inventory.KindWireGuard), sc.pairs, sc.waves) {
			current := "the key the device has"
			if c, err := t.Rotator.Vault.Current(ctx, KindWireGuardKey, Pair{}, u.Name); err == nil {
				current = c.ID
			}
			changes = append(changes, fmt.Sprintf("wave %d: site %s: replace WireGuard key %s (staged at its peers first; never in the same wave as a peer)", u.Wave, u.Name, current))
		}
	}
	return actions.TunnelReport{Units: len(sc.pairs), Certified: len(sc.certified), Changes: changes}, nil
}

// RotateCredentials implements actions.CredentialRotator with Rotate and
// RotateSiteKeys.
func (t *Tunnels) RotateCredentials(ctx context.Context, rot actions.Rotation) (actions.TunnelReport, error) {
	sc, err := t.scope(ctx, rot)
	if err != nil {
		return actions.TunnelReport{}, err
	}
	if len(sc.pairs) == 0 && len(sc.unmanaged) > 0 {
		return actions.TunnelReport{}, fmt.Errorf("%w: %w", actions.ErrUnsupported, errUnmanaged("rotate", sc.unmanaged))
	}
	reports := []Report{}
	var errs []error
	if rot.PSK {
		rep, err := t.Rotator.Rotate(ctx, sc.pairs, sc.waves)
		reports, errs = append(reports, rep), append(errs, err)
	}
	if rot.SiteKeys && errors.Join(errs...) == nil {
		rep, err := t.Rotator.RotateSiteKeys(ctx, Sites(sc.pairs, inventory.KindWireGuard), sc.pairs, sc.waves)
		reports, errs = append(reports, rep), append(errs, err)
	}
	if len(sc.unmanaged) > 0 && errors.Join(errs...) == nil {
		errs = append(errs, actions.Terminal(errUnmanaged("rotate", sc.unmanaged)))
	}
	err = errors.Join(errs...)
	if errors.Is(err, ErrStopped) {
		// A person decides what happens to a unit that did not come
		// back; retrying blindly would only hit it again.
		err = actions.Terminal(err)
	}
	out := tunnelReport(reports, reports...)
	out.Certified = len(sc.certified)
	return out, err
}

// VerifyRotation implements actions.CredentialRotator with VerifyRotated.
func (t *Tunnels) VerifyRotation(ctx context.Context, rot actions.Rotation) (actions.TunnelReport, error) {
	sc, err := t.scope(ctx, rot)
	if err != nil {
		return actions.TunnelReport{}, err
	}
	rep, err := t.Rotator.VerifyRotated(ctx, sc.pairs, rot.Batch, rot.PSK, rot.SiteKeys)
	if len(sc.unmanaged) > 0 {
		err = errors.Join(err, fmt.Errorf("%w: %w", actions.ErrNotVerified, errUnmanaged("rotate", sc.unmanaged)))
	}
	return tunnelReport(rep, rep), err
}
