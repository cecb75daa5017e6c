package rotation

import (
	"context"
	"errors"
	"fmt"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/inventory"
)

// Revoke removes every trust the other sites place in the compromised
// gateway and reads it back, tunnel by tunnel:
//
//   - WireGuard: the compromised site's public key (from the vault: the
//     compromised device itself is not asked, it could lie) is removed
//     from the peer's device, and its absence checked;
//   - strongSwan: the peer terminates every SA with it, unloads the
//     connection and its shared keys, and VerifyRevoked checks nothing is
//     left, so it cannot complete IKE authentication there.
//
// Credentials the compromised gateway held (its site key, the preshared
// keys of its pairs) are marked revoked in the vault. Every tunnel is tried
// even when one fails; the error joins the failures. Idempotent: a second
// run reports "unchanged" rows.
func (r *Rotator) Revoke(ctx context.Context, inv *inventory.Inventory, compromised string) (Report, error) {
	rep := Report{Operation: "revoke"}
	pairs := revokedPairs(inv, compromised)

	var errs []error
	wgKey, wgKeyErr := r.compromisedWireGuardKey(ctx, compromised)
	for _, p := range pairs {
		row := r.revokeAt(ctx, p, compromised, wgKey, wgKeyErr)
		if row.Status == StatusFailed {
			errs = append(errs, fmt.Errorf("revoking %s at %s: %s", compromised, row.Site, row.Error))
		}
		rep.Rows = append(rep.Rows, row)
	}
	if wgKeyErr == nil && wgKey.cred.State != StateRevoked {
		if err := r.Vault.SetState(ctx, wgKey.cred.ID, StateRevoked); err != nil {
			errs = append(errs, err)
		}
	}
	for _, row := range rep.Rows {
		r.log().InfoContext(ctx, "revocation", "pair", row.Pair.String(), "site", row.Site, "status", string(row.Status), "error", row.Error)
	}
	return rep, errors.Join(errs...)
}

type wireGuardKey struct {
	cred Credential
	key  wgtypes.Key
}

func (r *Rotator) compromisedWireGuardKey(ctx context.Context, site string) (wireGuardKey, error) {
	// A revoked key counts: a second run must find what the first revoked.
	c, err := r.Vault.Latest(ctx, KindWireGuardKey, Pair{}, site, StateActive, StateRevoked)
	if err != nil {
		return wireGuardKey{}, fmt.Errorf("finding the WireGuard public key of %s (import it into the vault before an incident): %w", site, err)
	}
	k, err := wgtypes.ParseKey(c.PublicKey)
	if err != nil {
		return wireGuardKey{}, fmt.Errorf("parsing the stored public key of %s: %w", site, err)
	}
	return wireGuardKey{cred: c, key: k}, nil
}

// revokeAt removes trust in compromised at the other end of p. The row is
// a named result so that the deferred vault update can record its error.
func (r *Rotator) revokeAt(ctx context.Context, p Pair, compromised string, wg wireGuardKey, wgErr error) (row Row) {
	peer := p.Other(compromised)
	row = Row{Pair: p, Site: peer, Status: StatusFailed}
	psk, _ := pskKind(p.Kind)
	if c, err := r.Vault.Current(ctx, psk, p, ""); err == nil {
		row.OldCredential = c.ID
		defer func() {
			if row.Status != StatusFailed {
				if err := r.Vault.SetState(ctx, c.ID, StateRevoked); err != nil {
					row.Error = errorText(err)
				}
			}
		}()
	}
	var changed bool
	var err error
	switch p.Kind {
	case inventory.KindWireGuard:
		row.Credential = KindWireGuardKey
		if wgErr != nil {
			row.Error = errorText(wgErr)
			return row
		}
		if r.Providers.WireGuard == nil {
			row.Error = errorText(ErrNoProvider)
			return row
		}
		row.OldCredential = wg.cred.ID
		changed, err = r.Providers.WireGuard.RevokePeer(ctx, peer, wg.key)
		if err == nil {
			var has bool
			if has, err = r.Providers.WireGuard.HasPeer(ctx, peer, wg.key); err == nil && has {
				err = fmt.Errorf("verifying: %s still has a peer entry for %s", peer, compromised)
			}
		}
	case inventory.KindStrongSwan:
		row.Credential = KindStrongSwanPSK
		if r.Providers.StrongSwan == nil {
			row.Error = errorText(ErrNoProvider)
			return row
		}
		changed, err = r.Providers.StrongSwan.RevokePeer(ctx, peer, compromised)
		if err == nil {
			err = r.Providers.StrongSwan.VerifyRevoked(ctx, peer, compromised)
		}
	default:
		row.Error = fmt.Sprintf("unknown tunnel kind %q", p.Kind)
		return row
	}
	if err != nil {
		row.Error = errorText(err)
		return row
	}
	row.Status = StatusRevoked
	if !changed {
		row.Status = StatusUnchanged
	}
	return row
}
