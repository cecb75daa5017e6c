package rotation

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/inventory"
)

// revokedPairs lists the distinct pairs of compromised's tunnels, sorted.
func revokedPairs(inv *inventory.Inventory, compromised string) []Pair {
	var pairs []Pair
	seen := map[Pair]bool{}
	for _, t := range inv.TunnelsOf(compromised) {
		p := PairOf(t)
		if !seen[p] {
			seen[p] = true
			pairs = append(pairs, p)
		}
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].String() < pairs[j].String() })
	return pairs
}

// VerifyRevoked reads back, at the other end of every tunnel of
// compromised, that no trust in it is left: no WireGuard peer entry with
// its recorded key, no strongSwan connection, shared key or IKE SA. It
// changes nothing. Rows are "revoked" when verified and "failed" with the
// reason otherwise; the error wraps actions.ErrNotVerified when something
// is left.
func (r *Rotator) VerifyRevoked(ctx context.Context, inv *inventory.Inventory, compromised string) (Report, error) {
	rep := Report{Operation: "verify_revoke"}
	wgKey, wgKeyErr := r.compromisedWireGuardKey(ctx, compromised)
	var errs []error
	for _, p := range revokedPairs(inv, compromised) {
		peer := p.Other(compromised)
		row := Row{Pair: p, Site: peer, Status: StatusRevoked}
		var err error
		switch p.Kind {
		case inventory.KindWireGuard:
			row.Credential = KindWireGuardKey
			switch {
			case wgKeyErr != nil:
				err = wgKeyErr
			case r.Providers.WireGuard == nil:
				err = ErrNoProvider
			default:
				row.OldCredential = wgKey.cred.ID
				var has bool
				if has, err = r.Providers.WireGuard.HasPeer(ctx, peer, wgKey.key); err == nil && has {
					err = fmt.Errorf("%w: %s still has a peer entry for %s", actions.ErrNotVerified, peer, compromised)
				}
			}
		case inventory.KindStrongSwan:
			row.Credential = KindStrongSwanPSK
			if r.Providers.StrongSwan == nil {
				err = ErrNoProvider
				break
			}
			err = r.Providers.StrongSwan.VerifyRevoked(ctx, peer, compromised)
			if c, cerr := r.Vault.Latest(ctx, KindStrongSwanCert, Pair{}, compromised, StateRevoked, StateActive); cerr == nil && err == nil {
				row.Credential, row.OldCredential = KindStrongSwanCert, c.ID
				serial, serr := serialOf(c)
				switch {
				case serr != nil:
					err = serr
				case r.CA == nil:
					err = fmt.Errorf("%w: no CA configured to check the CRL at %s", actions.ErrNotVerified, peer)
				default:
					err = r.Providers.StrongSwan.VerifyCRL(ctx, peer, r.CA.Certificate(), serial)
				}
			}
		default:
			err = fmt.Errorf("unknown tunnel kind %q", p.Kind)
		}
		if err != nil {
			row.Status, row.Error = StatusFailed, errorText(err)
			errs = append(errs, fmt.Errorf("revocation of %s at %s: %w", compromised, peer, err))
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep, errors.Join(errs...)
}

// VerifyRotated reads back that every pair runs on a preshared key that
// the rotation tagged batch generated, and that the key is in use:
// WireGuard, both ends saw a handshake since the key was generated (their
// entries were re-created with it, so no older key can have made it);
// strongSwan, an established IKE SA authenticated after the key was
// loaded (see StrongSwan.VerifyPSK). With siteKeys, every WireGuard site
// of pairs must also hold a site key of the batch that each of its peers
// lists. It changes nothing; the error wraps actions.ErrNotVerified.
func (r *Rotator) VerifyRotated(ctx context.Context, pairs []Pair, batch string, psk, siteKeys bool) (Report, error) {
	rep := Report{Operation: "verify_rotation"}
	var errs []error
	fail := func(row Row, err error) Row {
		row.Status, row.Error = StatusFailed, errorText(err)
		errs = append(errs, err)
		return row
	}
	// ofBatch reads the credential now in force for (kind, p, site) into
	// row and checks that this rotation generated it; what names the
	// credential in errors and holding says what still holds an old one.
	ofBatch := func(row *Row, kind string, p Pair, site, what, holding string) (Credential, error) {
		c, err := r.Vault.Current(ctx, kind, p, site)
		if err != nil {
			return c, fmt.Errorf("%w: %s: %w", actions.ErrNotVerified, what, err)
		}
		row.NewCredential = c.ID
		if c.Batch != batch {
			return c, fmt.Errorf("%w: %s %s, not a key of this rotation", actions.ErrNotVerified, holding, c.ID)
		}
		return c, nil
	}
	if psk {
		for _, p := range pairs {
			kind, err := pskKind(p.Kind)
			row := Row{Pair: p, Credential: kind, Status: StatusRotated}
			if err != nil {
				rep.Rows = append(rep.Rows, fail(row, err))
				continue
			}
			c, err := ofBatch(&row, kind, p, "", p.String(), p.String()+" still runs on")
			if err != nil {
				rep.Rows = append(rep.Rows, fail(row, err))
				continue
			}
			switch {
			case p.Kind == inventory.KindWireGuard && r.Providers.WireGuard != nil:
				err = r.Providers.WireGuard.VerifyHandshake(ctx, p.A, p.B, c.CreatedAt)
			case p.Kind == inventory.KindStrongSwan && r.Providers.StrongSwan != nil:
				err = r.Providers.StrongSwan.VerifyPSK(ctx, p.A, p.B, c.ID)
			default:
				err = ErrNoProvider
			}
			if err != nil {
				row = fail(row, fmt.Errorf("%s: %w", p, err))
			}
			rep.Rows = append(rep.Rows, row)
		}
	}
	if siteKeys {
		for _, site := range Sites(pairs, inventory.KindWireGuard) {
			row := Row{Site: site, Credential: KindWireGuardKey, Status: StatusRotated}
			c, err := ofBatch(&row, KindWireGuardKey, Pair{}, site, "site key of "+site, site+" still has site key")
			if err != nil {
				rep.Rows = append(rep.Rows, fail(row, err))
				continue
			}
			pub, err := wgtypes.ParseKey(c.PublicKey)
			if err != nil || r.Providers.WireGuard == nil {
				rep.Rows = append(rep.Rows, fail(row, errors.Join(err, ErrNoProvider)))
				continue
			}
			var left []error
			for _, p := range pairs {
				if p.Kind != inventory.KindWireGuard || !p.Has(site) {
					continue
				}
				has, err := r.Providers.WireGuard.HasPeer(ctx, p.Other(site), pub)
				if err == nil && !has {
					err = fmt.Errorf("%w: %s does not list the new key of %s", actions.ErrNotVerified, p.Other(site), site)
				}
				if err != nil {
					left = append(left, err)
				}
			}
			if err := errors.Join(left...); err != nil {
				row = fail(row, err)
			}
			rep.Rows = append(rep.Rows, row)
		}
	}
	return rep, errors.Join(errs...)
}
