package rotation

import (
	"context"
	"errors"
	"fmt"
	"slices"

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
		var creds []Credential
		if serial, ok := gw.StrongSwan.Serial(); ok && gw.StrongSwan.UsesCertificate() {
			creds = append(creds, Credential{Kind: KindStrongSwanCert, Site: gw.ID, PublicKey: serial.Text(16)})
		}
		if gw.WireGuard != nil && gw.WireGuard.PublicKey != "" {
			if _, err := wgtypes.ParseKey(gw.WireGuard.PublicKey); err != nil {
				return imported, fmt.Errorf("importing the site key of %s: inventory public_key is not a WireGuard key", gw.ID)
			}
			creds = append(creds, Credential{Kind: KindWireGuardKey, Site: gw.ID, PublicKey: gw.WireGuard.PublicKey})
		}
		for _, c := range creds {
			done, err := v.importOnce(ctx, c)
			if err != nil {
				return imported, err
			}
			if done && !slices.Contains(imported, gw.ID) {
				imported = append(imported, gw.ID)
			}
		}
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
