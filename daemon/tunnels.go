package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/providers/linux"
	"github.com/warden-ir/warden/providers/strongswan"
	"github.com/warden-ir/warden/providers/wireguard"
	"github.com/warden-ir/warden/rotation"
)

// masterKey loads the credential vault's key from the configured file or,
// without one, the configured environment variable. ok is false when
// neither is set: the tunnel actions are then unavailable. A key that is
// configured but unreadable is an error.
func masterKey(c config.Credentials) (k rotation.MasterKey, ok bool, err error) {
	if c.MasterKeyFile != "" {
		k, err = rotation.LoadMasterKeyFile(c.MasterKeyFile)
		return k, err == nil, err
	}
	if c.MasterKeyEnv == "" {
		return k, false, nil
	}
	if v, set := os.LookupEnv(c.MasterKeyEnv); !set || v == "" {
		return k, false, nil
	}
	k, err = rotation.LoadMasterKeyEnv(c.MasterKeyEnv)
	return k, err == nil, err
}

// tunnelActions builds revoke_peer and rotate_credentials: the credential
// vault in the store, the WireGuard and strongSwan providers reaching each
// gateway's device through its agent, and the agents blocking revoked
// peers.
func (d *Daemon) tunnelActions(ctx context.Context, cfg config.Config, inv *inventory.Inventory, log *slog.Logger) ([]actions.Action, error) {
	names := []string{actions.NameRevokePeer, actions.NameRotateCredentials}
	key, ok, err := masterKey(cfg.Credentials)
	if err != nil {
		return nil, fmt.Errorf("loading the credential master key: %w", err)
	}
	if !ok {
		return unavailable("no credential master key (credentials.master_key_file, or the variable credentials.master_key_env names)", names...), nil
	}
	if d.Agents == nil {
		return unavailable("no warden agent configured (agents.cert_file): tunnels are reached through the gateways' agents", names...), nil
	}
	vault, err := rotation.OpenVault(ctx, d.Store.DB(), key, nil)
	if err != nil {
		return nil, err
	}
	imported, err := vault.ImportSiteKeys(ctx, inv)
	if err != nil {
		return nil, err
	}
	if len(imported) > 0 {
		log.Info("recorded WireGuard site keys from the inventory", "gateways", imported)
	}

	wgSites := map[string]wireguard.Site{}
	ssSites := map[string]strongswan.Site{}
	for _, gw := range inv.Gateways {
		if gw.Agent == "" {
			continue
		}
		if wg := gw.WireGuard; wg != nil {
			s := wireguard.Site{Device: linux.AgentDeviceName(gw.ID, wg.Device)}
			if wg.Endpoint != "" {
				s.Endpoint, _ = netip.ParseAddrPort(wg.Endpoint) // validated with the inventory
			}
			wgSites[gw.ID] = s
		}
		if ss := gw.StrongSwan; ss != nil {
			ssSites[gw.ID] = strongswan.Site{Identity: ss.Identity}
		}
	}
	r := &rotation.Rotator{Vault: vault, Log: log.With("component", "rotation")}
	if c := cfg.Credentials; c.CACertFile != "" {
		if r.CA, err = rotation.LoadCAFiles(c.CACertFile, c.CAKeyFile); err != nil {
			return nil, fmt.Errorf("loading the IPsec CA: %w", err)
		}
	}
	if len(wgSites) > 0 {
		p, err := wireguard.New(linux.NewAgentWireGuard(d.Agents, inv, cfg.Credentials.UnitTimeout), wgSites, wireguard.Options{Log: log})
		if err != nil {
			return nil, err
		}
		r.Providers.WireGuard = p
	}
	if len(ssSites) > 0 {
		p, err := strongswan.New(linux.NewAgentVICI(d.Agents, inv), ssSites, strongswan.Options{ReauthTimeout: cfg.Credentials.UnitTimeout, Log: log})
		if err != nil {
			return nil, err
		}
		r.Providers.StrongSwan = p
	}
	tunnels := &rotation.Tunnels{Rotator: r, Inventory: inv, Managed: func(gw, kind string) bool {
		switch kind {
		case inventory.KindWireGuard:
			_, ok := wgSites[gw]
			return ok
		case inventory.KindStrongSwan:
			_, ok := ssSites[gw]
			return ok
		}
		return false
	}}
	d.Vault = vault
	return []actions.Action{
		actions.NewRevokePeer(inv, tunnels, d.Agents),
		actions.NewRotateCredentials(tunnels, cfg.Credentials.WaveSize, cfg.Credentials.UnitTimeout),
	}, nil
}
