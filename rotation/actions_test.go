package rotation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/inventory"
)

// fakeBlocker records blocks per (at, peer); sites in noAgent answer
// unsupported.
type fakeBlocker struct {
	mu      sync.Mutex
	blocked map[[2]string]bool
	noAgent map[string]bool
}

func (b *fakeBlocker) Block(_ context.Context, at, peer inventory.Gateway) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.noAgent[at.ID] {
		return false, fmt.Errorf("%s has no agent: %w", at.ID, actions.ErrUnsupported)
	}
	k := [2]string{at.ID, peer.ID}
	had := b.blocked[k]
	b.blocked[k] = true
	return !had, nil
}

func (b *fakeBlocker) VerifyBlocked(_ context.Context, at, peer inventory.Gateway) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.noAgent[at.ID] {
		return actions.ErrUnsupported
	}
	if !b.blocked[[2]string{at.ID, peer.ID}] {
		return fmt.Errorf("%s does not block %s: %w", at.ID, peer.ID, actions.ErrNotVerified)
	}
	return nil
}

// meshInventory is a WireGuard full mesh between sites plus one
// strongSwan tunnel from the first to "x".
func meshInventory(sites ...string) *inventory.Inventory {
	inv := &inventory.Inventory{}
	for _, s := range append(sites, "x") {
		inv.Gateways = append(inv.Gateways, inventory.Gateway{ID: s, Site: s, Addresses: []string{"192.0.2." + fmt.Sprint(len(inv.Gateways)+1)}, Agent: "https://" + s})
	}
	for _, p := range pairsOf(inventory.KindWireGuard, sites...) {
		inv.Tunnels = append(inv.Tunnels, inventory.Tunnel{A: p.A, B: p.B, Kind: p.Kind})
	}
	inv.Tunnels = append(inv.Tunnels, inventory.Tunnel{A: sites[0], B: "x", Kind: inventory.KindStrongSwan})
	return inv
}

func request(inv *inventory.Inventory, gw, key string, params map[string]string) actions.Request {
	g, _ := inv.Gateway(gw)
	return actions.Request{IdempotencyKey: key, Incident: "inc-1", Gateway: g, Params: params}
}

func TestRevokeAction(t *testing.T) {
	f := newFixture(t, "a", "b", "c")
	inv := meshInventory("a", "b", "c")
	inv.Gateways[3].Agent = "" // x has no agent: nothing can block there
	blk := &fakeBlocker{blocked: map[[2]string]bool{}, noAgent: map[string]bool{"x": true}}
	act := actions.NewRevokePeer(inv, &Tunnels{Rotator: f.r, Inventory: inv}, blk)
	req := request(inv, "a", "run-1/step-3", nil)

	plan, err := act.Plan(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan.Changes, "\n")
	for _, want := range []string{"at b: remove WireGuard peer a", "at c: remove WireGuard peer a", "at x: terminate the IKE SAs with a",
		"at b: drop all traffic from and to 192.0.2.1", "at x: cannot block"} {
		if !strings.Contains(text, want) {
			t.Errorf("plan lacks %q:\n%s", want, text)
		}
	}
	if plan.Destructive {
		t.Error("revoking a compromised gateway destroys no evidence, yet the plan says destructive")
	}
	if len(f.wg.calls) != 0 {
		t.Errorf("Plan changed something: %v", f.wg.calls)
	}

	if _, err := act.Verify(t.Context(), req); !errors.Is(err, actions.ErrNotVerified) {
		t.Errorf("Verify before Apply = %v, want ErrNotVerified", err)
	}
	res, err := act.Apply(t.Context(), req)
	if err != nil || !res.Changed {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	for _, s := range []string{"b", "c"} {
		if f.wg.peers[s][f.wg.pub["a"]] {
			t.Errorf("%s still lists a", s)
		}
		if !blk.blocked[[2]string{s, "a"}] {
			t.Errorf("%s does not block a", s)
		}
	}
	if !f.ss.revoked[[2]string{"x", "a"}] {
		t.Error("x still trusts a")
	}
	if res, err := act.Verify(t.Context(), req); err != nil {
		t.Fatalf("Verify after Apply = %+v, %v", res, err)
	}
	if res, err := act.Apply(t.Context(), req); err != nil || res.Changed {
		t.Errorf("second Apply = %+v, %v; want unchanged", res, err)
	}

	// Someone puts the compromised gateway's key back at c: Verify sees it.
	f.wg.mu.Lock()
	f.wg.peers["c"][f.wg.pub["a"]] = true
	f.wg.mu.Unlock()
	if _, err := act.Verify(t.Context(), req); !errors.Is(err, actions.ErrNotVerified) || !strings.Contains(err.Error(), "c still has a peer entry for a") {
		t.Errorf("Verify with a's key back at c = %v", err)
	}
}

func countCredentials(t *testing.T, v *Vault) int {
	t.Helper()
	l, err := v.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return len(l)
}

func TestRotateActionRotatesTheFleetButNotTheCompromisedGateway(t *testing.T) {
	f := newFixture(t, "a", "b", "c", "d")
	inv := meshInventory("a", "b", "c", "d")
	act := actions.NewRotateCredentials(&Tunnels{Rotator: f.r, Inventory: inv}, 2, 0)
	req := request(inv, "a", "run-1/step-4", map[string]string{"canary": "wireguard:c<->d"})

	plan, err := act.Plan(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Destructive {
		t.Error("rotation must be marked destructive (evidence first)")
	}
	if len(plan.Changes) != 3 || !strings.HasPrefix(plan.Changes[0], "wave 0: wireguard:c<->d") {
		t.Errorf("plan = %q; want the three pairs without a, canary c<->d first", plan.Changes)
	}
	for _, c := range plan.Changes {
		if strings.Contains(c, "a<->") || strings.Contains(c, "<->a") {
			t.Errorf("plan rotates a tunnel of the compromised gateway: %s", c)
		}
	}

	if _, err := act.Verify(t.Context(), req); !errors.Is(err, actions.ErrNotVerified) {
		t.Errorf("Verify before Apply = %v, want ErrNotVerified", err)
	}
	res, err := act.Apply(t.Context(), req)
	if err != nil || !res.Changed {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	if res, err := act.Verify(t.Context(), req); err != nil {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
	for _, p := range pairsOf(inventory.KindWireGuard, "a", "b", "c", "d") {
		c, err := f.v.Current(t.Context(), KindWireGuardPSK, p, "")
		if p.Has("a") {
			if err != nil || c.Origin != "imported" {
				t.Errorf("%s: the compromised gateway's pair was rotated: %+v %v", p, c, err)
			}
			continue
		}
		if err != nil || c.Batch != req.IdempotencyKey {
			t.Errorf("%s: current key %+v, %v; want one of this rotation", p, c, err)
		}
	}

	// The step is retried after a crash: nothing is rotated again.
	n := countCredentials(t, f.v)
	res, err = act.Apply(t.Context(), req)
	if err != nil || res.Changed {
		t.Errorf("Apply again = %+v, %v; want unchanged", res, err)
	}
	if m := countCredentials(t, f.v); m != n {
		t.Errorf("Apply again generated %d credentials", m-n)
	}
	// Another rotation (another step) is not verified by this one's keys.
	if _, err := act.Verify(t.Context(), request(inv, "a", "run-2/step-4", nil)); !errors.Is(err, actions.ErrNotVerified) {
		t.Errorf("Verify of another step = %v, want ErrNotVerified", err)
	}
	f.assertNoSecrets(t, Report{}, err)
}

func TestRotateActionStopsAndKeepsTheRestWorking(t *testing.T) {
	f := newFixture(t, "a", "b", "c", "d")
	inv := meshInventory("a", "b", "c", "d")
	f.wg.refuse["c"] = true
	act := actions.NewRotateCredentials(&Tunnels{Rotator: f.r, Inventory: inv}, 1, 0)
	req := request(inv, "a", "run-1/step-4", map[string]string{"canary": "wireguard:b<->c"})
	res, err := act.Apply(t.Context(), req)
	if !actions.IsTerminal(err) || !errors.Is(err, ErrStopped) {
		t.Fatalf("Apply with a refusing canary = %v; want a terminal stop", err)
	}
	if !strings.Contains(res.Summary, "1 rolled back") || !strings.Contains(res.Summary, "2 not attempted") {
		t.Errorf("summary = %q", res.Summary)
	}
	for _, p := range []Pair{NewPair(inventory.KindWireGuard, "b", "d"), NewPair(inventory.KindWireGuard, "c", "d")} {
		if c, err := f.v.Current(t.Context(), KindWireGuardPSK, p, ""); err != nil || c.Origin != "imported" {
			t.Errorf("%s was touched after the stop: %+v %v", p, c, err)
		}
		if err := f.wg.VerifyHandshake(t.Context(), p.A, p.B, f.r.clock().Now()); err != nil {
			t.Errorf("%s does not work after the stop: %v", p, err)
		}
	}
	f.assertNoSecrets(t, Report{}, err)
}

func TestRotateActionSiteKeys(t *testing.T) {
	f := newFixture(t, "a", "b", "c", "d")
	inv := meshInventory("a", "b", "c", "d")
	act := actions.NewRotateCredentials(&Tunnels{Rotator: f.r, Inventory: inv}, 0, 0)
	req := request(inv, "a", "run-1/step-5", map[string]string{"credentials": "site_keys", "scope": "peers"})
	before := f.wg.pub["b"]
	res, err := act.Apply(t.Context(), req)
	if err != nil || !res.Changed {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	if f.wg.pub["b"] == before {
		t.Error("b's site key did not change")
	}
	if f.wg.peers["a"][f.wg.pub["b"]] {
		t.Error("the compromised gateway was told b's new key")
	}
	if res, err := act.Verify(t.Context(), req); err != nil {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}

func TestRotateActionParams(t *testing.T) {
	f := newFixture(t, "a", "b", "c")
	inv := meshInventory("a", "b", "c")
	act := actions.NewRotateCredentials(&Tunnels{Rotator: f.r, Inventory: inv}, 0, 0)
	for _, tc := range []struct {
		params map[string]string
		field  string
	}{
		{map[string]string{"credentials": "certs"}, "params.credentials"},
		{map[string]string{"scope": "everything"}, "params.scope"},
		{map[string]string{"wave_size": "0"}, "params.wave_size"},
		{map[string]string{"wave_size": "many"}, "params.wave_size"},
		{map[string]string{"timeout": "-1s"}, "params.timeout"},
		{map[string]string{"canary": "wireguard:a<->b"}, "params.canary"},
		{map[string]string{"credentials": "site_keys", "canary": "wireguard:b<->c"}, "params.canary"},
	} {
		t.Run(tc.field+"="+fmt.Sprint(tc.params), func(t *testing.T) {
			for name, call := range map[string]func() error{
				"plan":  func() error { _, err := act.Plan(t.Context(), request(inv, "a", "k", tc.params)); return err },
				"apply": func() error { _, err := act.Apply(t.Context(), request(inv, "a", "k", tc.params)); return err },
			} {
				err := call()
				if !actions.IsTerminal(err) || !strings.Contains(err.Error(), tc.field) {
					t.Errorf("%s: err = %v; want a terminal error naming %s", name, err, tc.field)
				}
			}
		})
	}
	if len(f.wg.calls) != 0 {
		t.Errorf("a refused step reached the provider: %v", f.wg.calls)
	}
}

func TestImportSiteKeys(t *testing.T) {
	f := newFixture(t, "a")
	inv := meshInventory("a", "b")
	newKey := f.wg.pub["a"] // any valid key
	inv.Gateways[0].WireGuard = &inventory.WireGuardEnd{Device: "wg0", PublicKey: "not-a-key"}
	if _, err := f.v.ImportSiteKeys(t.Context(), inv); err == nil || strings.Contains(err.Error(), "not-a-key") {
		t.Errorf("a bad key = %v; want an error that does not echo it", err)
	}
	inv.Gateways[0].WireGuard.PublicKey = newKey.String()
	inv.Gateways[1].WireGuard = &inventory.WireGuardEnd{Device: "wg0", PublicKey: newKey.String()}
	got, err := f.v.ImportSiteKeys(t.Context(), inv)
	if err != nil || len(got) != 1 || got[0] != "b" {
		t.Fatalf("ImportSiteKeys = %v, %v; want only b (a is known)", got, err)
	}
	if got, err := f.v.ImportSiteKeys(t.Context(), inv); err != nil || len(got) != 0 {
		t.Errorf("second ImportSiteKeys = %v, %v; want nothing", got, err)
	}
}

func TestActionsLeaveUnmanagedTunnelsToPeople(t *testing.T) {
	f := newFixture(t, "a", "b", "c")
	inv := meshInventory("a", "b", "c")
	blk := &fakeBlocker{blocked: map[[2]string]bool{}}
	none := &Tunnels{Rotator: f.r, Inventory: inv, Managed: func(string, string) bool { return false }}
	notC := &Tunnels{Rotator: f.r, Inventory: inv, Managed: func(gw, _ string) bool { return gw != "c" }}
	req := request(inv, "a", "run-1/step-3", nil)

	if _, err := actions.NewRevokePeer(inv, none, blk).Apply(t.Context(), req); !errors.Is(err, actions.ErrUnsupported) {
		t.Errorf("revoke with nothing managed = %v; want unsupported", err)
	}
	if _, err := actions.NewRotateCredentials(none, 0, 0).Apply(t.Context(), req); !errors.Is(err, actions.ErrUnsupported) {
		t.Errorf("rotate with nothing managed = %v; want unsupported", err)
	}

	rev := actions.NewRevokePeer(inv, notC, blk)
	plan, err := rev.Plan(t.Context(), req)
	if err != nil || !strings.Contains(strings.Join(plan.Changes, "\n"), "revoke by hand: Warden does not manage wireguard:a<->c") {
		t.Errorf("plan = %q, %v", plan.Changes, err)
	}
	_, err = rev.Apply(t.Context(), req)
	if !actions.IsTerminal(err) || !strings.Contains(err.Error(), "wireguard:a<->c") {
		t.Errorf("revoke with c unmanaged = %v; want a terminal error naming a<->c", err)
	}
	if f.wg.peers["b"][f.wg.pub["a"]] {
		t.Error("b, which is managed, still lists a")
	}
	if !f.wg.peers["c"][f.wg.pub["a"]] {
		t.Error("c is not managed, yet it was changed")
	}
}
