package rotation

import (
	"context"
	"errors"
	"fmt"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/inventory"
)

// ImportSiteKeys records, for every gateway whose inventory entry declares
// a WireGuard public key, that key as the gateway's site key, and for every
// gateway with an IKE certificate, its serial number, unless the
// vault already knows a site key of the gateway (in any state: after a
// rotation or a revocation the vault, not the inventory, is current). It
// returns the gateways imported. This is onboarding: the key that
// revocation removes at the peers is the one recorded here, never one the
// compromised gateway reports about itself.
func (v *Vault) ImportSiteKeys(ctx context.Context, inv *inventory.Inventory) ([]string, error) {
	var imported []string
	for _, gw := range inv.Gateways {
		if serial, ok := gw.StrongSwan.Serial(); ok && gw.StrongSwan.UsesCertificate() {
			done, err := v.importOnce(ctx, Credential{Kind: KindStrongSwanCert, Site: gw.ID, PublicKey: serial.Text(16)})
			if err != nil {
				return imported, err
			}
			if done {
				imported = append(imported, gw.ID)
			}
		}
		if gw.WireGuard == nil || gw.WireGuard.PublicKey == "" {
			continue
		}
		if _, err := wgtypes.ParseKey(gw.WireGuard.PublicKey); err != nil {
			return imported, fmt.Errorf("importing the site key of %s: inventory public_key is not a WireGuard key", gw.ID)
		}
		_, err := v.Latest(ctx, KindWireGuardKey, Pair{}, gw.ID, StatePending, StateActive, StateRetired, StateRevoked, StateFailed)
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrNoCredential) {
			return imported, err
		}
		if _, err := v.Import(ctx, Credential{Kind: KindWireGuardKey, Site: gw.ID, PublicKey: gw.WireGuard.PublicKey}, Secret{}); err != nil {
			return imported, fmt.Errorf("importing the site key of %s: %w", gw.ID, err)
		}
		imported = append(imported, gw.ID)
	}
	return imported, nil
}

// importOnce records c (without a secret) unless the vault knows a
// credential of its kind for its site in any state.
func (v *Vault) importOnce(ctx context.Context, c Credential) (bool, error) {
	_, err := v.Latest(ctx, c.Kind, Pair{}, c.Site, StatePending, StateActive, StateRetired, StateRevoked, StateFailed)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, ErrNoCredential) {
		return false, err
	}
	if _, err := v.Import(ctx, c, Secret{}); err != nil {
		return false, fmt.Errorf("importing the %s of %s: %w", c.Kind, c.Site, err)
	}
	return true, nil
}
