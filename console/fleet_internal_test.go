package console

import (
	"fmt"
	"testing"

	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/store"
)

// TestLargeFleetsShowWhatGoesOn: a fleet too large for the picture shows
// the gateways something goes on with and their peers, at most
// mapMaxGateways; one that fits shows every gateway.
func TestLargeFleetsShowWhatGoesOn(t *testing.T) {
	var gws []controller.GatewayView
	var tunnels []inventory.Tunnel
	for i := range 500 {
		g := controller.GatewayView{Gateway: inventory.Gateway{ID: fmt.Sprintf("gw-%03d", i), Site: fmt.Sprintf("site-%03d", i)}, Posture: store.Posture{Desired: store.PostureNormal}}
		if i == 250 {
			g.Posture.Desired = store.PostureQuarantined
		}
		gws = append(gws, g)
		if i > 0 {
			tunnels = append(tunnels, inventory.Tunnel{A: "gw-000", B: g.ID}) // a hub
		}
	}
	busy := func(g controller.GatewayView) bool { return g.Posture.Desired != store.PostureNormal }
	shown := pickShown(gws, tunnels, busy)
	ids := map[string]bool{}
	for _, g := range shown {
		ids[g.ID] = true
	}
	if len(shown) > mapMaxGateways || !ids["gw-250"] || !ids["gw-000"] {
		t.Errorf("shown %d gateways (%v): want at most %d, the quarantined gw-250 and its hub gw-000", len(shown), ids, mapMaxGateways)
	}
	pic := layoutMap(shown, tunnels, map[string]bool{"gw-250": true}, nil)
	revoked := 0
	for _, l := range pic.Links {
		if l.Revoked {
			revoked++
		}
		if l.X1 < 0 || l.Y1 < 0 || l.X1 > pic.Width || l.Y1 > pic.Height {
			t.Errorf("a tunnel starts outside the picture: %+v", l)
		}
	}
	if revoked != 1 {
		t.Errorf("%d revoked tunnels drawn, want gw-250's one", revoked)
	}
	if small := pickShown(gws[:12], tunnels, busy); len(small) != 12 {
		t.Errorf("a fleet of 12 shows %d gateways", len(small))
	}
}
