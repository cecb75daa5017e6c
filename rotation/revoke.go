package rotation

import (
	"context"
	"errors"
	"fmt"
	"math/big"

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
	cert, hasCert, err := r.compromisedCertificate(ctx, compromised)
	if err != nil {
		errs = append(errs, err)
	}
	var crl []byte // signed once, loaded at every peer that lacks it
	for _, p := range pairs {
		row := r.revokeAt(ctx, p, compromised, wgKey, wgKeyErr)
		if row.Status != StatusFailed && hasCert && p.Kind == inventory.KindStrongSwan {
			row = r.revokeCertAt(ctx, row, cert, &crl)
		}
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

// compromisedCertificate finds the IKE certificate of site and marks it
// revoked (it belongs on every CRL from now on). has is false when site
// authenticates with pre-shared keys.
func (r *Rotator) compromisedCertificate(ctx context.Context, site string) (c Credential, has bool, err error) {
	c, err = r.Vault.Latest(ctx, KindStrongSwanCert, Pair{}, site, StateActive, StateRevoked)
	if errors.Is(err, ErrNoCredential) {
		return Credential{}, false, nil
	}
	if err != nil {
		return Credential{}, false, err
	}
	if c.State != StateRevoked {
		if err := r.Vault.SetState(ctx, c.ID, StateRevoked); err != nil {
			return c, true, err
		}
		c.State = StateRevoked
	}
	return c, true, nil
}

func serialOf(c Credential) (*big.Int, error) {
	n, ok := new(big.Int).SetString(c.PublicKey, 16)
	if !ok {
		return nil, fmt.Errorf("the stored serial number of %s's certificate is not hex", c.Site)
	}
	return n, nil
}

// revokedSerials lists the serial numbers of every revoked certificate.
func (r *Rotator) revokedSerials(ctx context.Context) ([]*big.Int, error) {
	list, err := r.Vault.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []*big.Int
	for _, c := range list {
		if c.Kind == KindStrongSwanCert && c.State == StateRevoked {
			n, err := serialOf(c)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
	}
	return out, nil
}

// revokeCertAt makes the peer of row refuse the compromised gateway's
// certificate: a CRL from Warden's CA listing it (and every certificate
// revoked before) is loaded there unless one already revokes it. Even a
// connection restored by hand, or one that accepts any certificate of the
// CA, then fails to authenticate the gateway.
func (r *Rotator) revokeCertAt(ctx context.Context, row Row, cert Credential, crl *[]byte) Row {
	row.Credential, row.OldCredential = KindStrongSwanCert, cert.ID
	fail := func(err error) Row {
		row.Status, row.Error = StatusFailed, errorText(err)
		return row
	}
	if r.CA == nil {
		return fail(fmt.Errorf("cannot revoke the certificate of %s at %s: no CA configured to sign a CRL (credentials.ca_cert_file, credentials.ca_key_file)", cert.Site, row.Site))
	}
	serial, err := serialOf(cert)
	if err != nil {
		return fail(err)
	}
	ss := r.Providers.StrongSwan
	if ss.VerifyCRL(ctx, row.Site, r.CA.Certificate(), serial) == nil {
		return row // already refused there
	}
	if *crl == nil {
		serials, err := r.revokedSerials(ctx)
		if err != nil {
			return fail(err)
		}
		now := r.clock().Now()
		if *crl, err = r.CA.CRL(serials, big.NewInt(now.UnixNano()), now); err != nil {
			return fail(err)
		}
	}
	if err := ss.LoadCRL(ctx, row.Site, *crl); err != nil {
		return fail(fmt.Errorf("loading the CRL at %s: %w", row.Site, err))
	}
	if err := ss.VerifyCRL(ctx, row.Site, r.CA.Certificate(), serial); err != nil {
		return fail(err)
	}
	row.Status = StatusRevoked
	return row
}
