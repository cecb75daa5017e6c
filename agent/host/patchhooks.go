package host

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/patching"
)

// handshakeFresh is how recent a WireGuard handshake must be for the
// session to count as up: WireGuard rejects a session older than 180 s
// (REJECT_AFTER_TIME).
const handshakeFresh = 180 * time.Second

// PatchHookOptions say what the patch verify hooks look at.
type PatchHookOptions struct {
	// VICI is charon's socket seam (nil: the gateway runs no strongSwan).
	VICI *VICI
	// WireGuard reads the gateway's own WireGuard devices (nil: none).
	WireGuard *WireGuard
	// Wait bounds how long the tunnels check waits for tunnels to come
	// back after a restart (default 30 s); Poll is how often it looks
	// (default 500 ms).
	Wait, Poll time.Duration
	// Clock reads handshake ages and waits between looks (default
	// clock.Real).
	Clock clock.Clock
}

// PatchHooks returns the checks a patch must pass beyond package versions:
// the tunnel services answer (charon over VICI, each WireGuard device over
// its UAPI), and every tunnel is re-established (an ESTABLISHED IKE SA for
// every loaded connection; a WireGuard handshake within 180 s with every
// peer), waiting up to Wait for daemons that the upgrade restarted. A
// gateway that runs neither passes both.
func PatchHooks(o PatchHookOptions) patching.VerifyHooks {
	if o.Wait <= 0 {
		o.Wait = 30 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = 500 * time.Millisecond
	}
	if o.Clock == nil {
		o.Clock = clock.Real
	}
	services := func(ctx context.Context) error {
		var errs []error
		if o.VICI != nil {
			if _, err := o.VICI.Run(ctx, wire.VICIParams{Command: "get-conns"}); err != nil && !errors.Is(err, errNoDaemon) {
				errs = append(errs, fmt.Errorf("charon does not answer: %w", err))
			}
		}
		if o.WireGuard != nil {
			names, err := o.WireGuard.devices()
			if err != nil {
				errs = append(errs, err)
			}
			for _, n := range names {
				if _, err := o.WireGuard.Device(ctx, n); err != nil {
					errs = append(errs, fmt.Errorf("WireGuard device %s does not answer: %w", n, err))
				}
			}
		}
		return errors.Join(errs...)
	}
	tunnels := func(ctx context.Context) error {
		deadline := o.Clock.Now().Add(o.Wait)
		for {
			err := tunnelsUp(ctx, o)
			if err == nil || !o.Clock.Now().Before(deadline) {
				return err
			}
			select {
			case <-ctx.Done():
				return errors.Join(ctx.Err(), err)
			case <-o.Clock.After(o.Poll):
			}
		}
	}
	return patching.VerifyHooks{Services: services, Tunnels: tunnels}
}

func tunnelsUp(ctx context.Context, o PatchHookOptions) error {
	var down []string
	if o.VICI != nil {
		conns, err := o.VICI.Run(ctx, wire.VICIParams{Command: "get-conns"})
		switch {
		case errors.Is(err, errNoDaemon):
		case err != nil:
			return err
		default:
			sas, err := o.VICI.Run(ctx, wire.VICIParams{Command: "list-sas"})
			if err != nil {
				return err
			}
			var established []string
			for _, ev := range sas.Events {
				for _, sa := range ev {
					for _, f := range sa.Section {
						if f.Key == "state" && f.Text() == "ESTABLISHED" {
							established = append(established, sa.Key)
						}
					}
				}
			}
			for _, el := range conns.Reply {
				if el.Key != "conns" {
					continue
				}
				for _, c := range el.List {
					if !slices.Contains(established, c) {
						down = append(down, "IKE connection "+c)
					}
				}
			}
		}
	}
	if o.WireGuard != nil {
		names, err := o.WireGuard.devices()
		if err != nil {
			return err
		}
		for _, n := range names {
			d, err := o.WireGuard.Device(ctx, n)
			if err != nil {
				return err
			}
			for _, p := range d.Peers {
				if p.LastHandshake.IsZero() || o.Clock.Now().Sub(p.LastHandshake) > handshakeFresh {
					down = append(down, fmt.Sprintf("WireGuard %s peer %s", n, p.PublicKey))
				}
			}
		}
	}
	if len(down) > 0 {
		return fmt.Errorf("not re-established: %s", strings.Join(down, ", "))
	}
	return nil
}

// devices lists the WireGuard devices among this namespace's links.
func (w *WireGuard) devices() ([]string, error) {
	links, err := w.links.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	var out []string
	for _, l := range links {
		name := l.Attrs().Name
		if _, err := w.ownDevice(name); err == nil {
			out = append(out, name)
		}
	}
	return out, nil
}
