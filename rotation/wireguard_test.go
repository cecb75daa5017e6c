package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/providers/strongswan"
	"github.com/warden-ir/warden/providers/wireguard"
	"github.com/warden-ir/warden/providers/wireguard/wgtest"
)

// This file drives rotation against real WireGuard devices running in the
// test process (wireguard-go with a netstack TUN, UDP on 127.0.0.1): real
// handshakes and real traffic, no root.

const wgEchoPort = 7

// The providers satisfy the interfaces rotation defines.
var (
	_ WireGuard  = (*wireguard.Provider)(nil)
	_ StrongSwan = (*strongswan.Provider)(nil)
)

// wgNet is an in-process WireGuard network with a vault that knows its
// credentials as found (public keys and preshared keys imported).
type wgNet struct {
	net   *wgtest.Network
	nodes map[string]*wgtest.Node
	prov  *wireguard.Provider
	vault *Vault
	pairs []Pair
}

// newWGNet builds nodes and links every pair given (each with a preshared
// key); client may wrap the devices' client to inject faults.
func newWGNet(tb testing.TB, names []string, links [][2]string, client func(wireguard.Client) wireguard.Client) *wgNet {
	tb.Helper()
	ctx := context.Background()
	n := &wgNet{net: wgtest.New(), nodes: map[string]*wgtest.Node{}}
	tb.Cleanup(func() { _ = n.net.Close() })
	sites := map[string]wireguard.Site{}
	for i, name := range names {
		nd, err := n.net.Add(name, netip.AddrFrom4([4]byte{10, 20, byte(i / 250), byte(1 + i%250)}))
		if err != nil {
			tb.Fatal(err)
		}
		n.nodes[name] = nd
		sites[name] = wireguard.Site{Device: name, Endpoint: nd.Endpoint}
		stop, err := nd.ServeEcho(wgEchoPort)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(stop)
	}
	n.vault, _, _ = newVault(tb)
	var c wireguard.Client = n.net.Client()
	if client != nil {
		c = client(c)
	}
	prov, err := wireguard.New(c, sites, wireguard.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	n.prov = prov
	for _, name := range names {
		pub, err := prov.PublicKey(ctx, name)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := n.vault.Import(ctx, Credential{Kind: KindWireGuardKey, Site: name, PublicKey: pub.String()}, Secret{}); err != nil {
			tb.Fatal(err)
		}
	}
	for _, l := range links {
		k, err := wgtypes.GenerateKey()
		if err != nil {
			tb.Fatal(err)
		}
		if err := n.net.Link(l[0], l[1], &k, 0); err != nil {
			tb.Fatal(err)
		}
		p := NewPair(inventory.KindWireGuard, l[0], l[1])
		if _, err := n.vault.Import(ctx, Credential{Kind: KindWireGuardPSK, Pair: p}, SecretFrom(k[:])); err != nil {
			tb.Fatal(err)
		}
		n.pairs = append(n.pairs, p)
	}
	return n
}

// Probe sends one echo from the pair's first end to the second.
func (n *wgNet) Probe(ctx context.Context, p Pair) error {
	return n.nodes[p.A].Echo(ctx, netip.AddrPortFrom(n.nodes[p.B].Addr, wgEchoPort), 250*time.Millisecond)
}

// flows is a GapMeter: a continuous 50 Hz UDP flow per pair, from the
// pair's second end to its first.
type flows struct {
	mu sync.Mutex
	m  map[Pair]*wgtest.Flow
}

func (n *wgNet) startFlows(tb testing.TB, pairs []Pair) *flows {
	tb.Helper()
	f := &flows{m: map[Pair]*wgtest.Flow{}}
	for _, p := range pairs {
		fl, err := n.nodes[p.B].StartFlow(netip.AddrPortFrom(n.nodes[p.A].Addr, wgEchoPort), 20*time.Millisecond)
		if err != nil {
			tb.Fatal(err)
		}
		f.m[p] = fl
		tb.Cleanup(fl.Stop)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, fl := range f.m {
		for fl.Received() == 0 {
			if time.Now().After(deadline) {
				tb.Fatal("flows did not start")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return f
}

func (f *flows) Watch(p Pair) func() time.Duration {
	f.mu.Lock()
	fl := f.m[p]
	f.mu.Unlock()
	if fl == nil {
		return func() time.Duration { return 0 }
	}
	start := time.Now()
	// A gap still open when the unit ends counts up to that moment.
	return func() time.Duration { return fl.LongestGap(start, time.Now()) }
}

func meshLinks(names []string) [][2]string {
	var out [][2]string
	for i, a := range names {
		for _, b := range names[i+1:] {
			out = append(out, [2]string{a, b})
		}
	}
	return out
}

func TestFleetRunbookWithRealWireGuard(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e"}
	var refuse *wgtest.RefusingClient
	n := newWGNet(t, names, meshLinks(names), func(c wireguard.Client) wireguard.Client {
		refuse = wgtest.NewRefusingClient(c)
		return refuse
	})
	ctx := t.Context()
	for _, p := range n.pairs {
		if err := waitProbe(ctx, n, p); err != nil {
			t.Fatalf("%s before: %v", p, err)
		}
	}
	inv := &inventory.Inventory{}
	for _, p := range n.pairs {
		inv.Tunnels = append(inv.Tunnels, inventory.Tunnel{A: p.A, B: p.B, Kind: p.Kind})
	}
	fleet := Fleet(inv.Tunnels, "a") // 6 pairs among b..e
	gaps := n.startFlows(t, fleet)
	r := &Rotator{Vault: n.vault, Providers: Providers{WireGuard: n.prov}, Probe: n, Gaps: gaps, Log: slog.New(slog.DiscardHandler)}

	rep, err := r.Revoke(ctx, inv, "a")
	if err != nil || rep.Count(StatusRevoked) != 4 {
		t.Fatalf("Revoke = %+v, %v", rep, err)
	}
	for _, peer := range []string{"b", "c", "d", "e"} {
		if err := n.Probe(ctx, NewPair(inventory.KindWireGuard, "a", peer)); err == nil {
			t.Errorf("a still reaches %s after revocation", peer)
		}
	}

	// e refuses new keys: the waves stop at the first pair with e, which is
	// rolled back to its old key; every other pair works on its current key.
	for _, p := range fleet {
		c, _ := n.vault.Current(ctx, KindWireGuardPSK, p, "")
		s, _ := n.vault.Secret(ctx, c.ID)
		k, _ := wgtypes.NewKey(s.b)
		refuse.Allow(k)
	}
	refuse.Refuse("e")
	rep, err = r.Rotate(ctx, fleet, WaveOptions{Canary: "wireguard:b<->c", WaveSize: 2, Timeout: 3 * time.Second})
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("Rotate with a refusing peer = %v, want ErrStopped", err)
	}
	for _, row := range rep.Rows {
		t.Logf("%-18s wave %d %-11s gap %6.1f ms  %s", row.Pair, row.Wave, row.Status, float64(row.LongestGap.Microseconds())/1000, row.Error)
		if row.Pair.Has("e") && row.Status == StatusRotated {
			t.Errorf("%s rotated although e refuses new keys", row.Pair)
		}
	}
	if rep.Count(StatusRolledBack) == 0 || rep.Count(StatusSkipped) == 0 {
		t.Errorf("want a rolled-back pair and skipped ones: %+v", rep)
	}
	for _, p := range fleet {
		if err := waitProbe(ctx, n, p); err != nil {
			t.Errorf("%s does not pass traffic after the stopped rotation: %v", p, err)
		}
	}

	// Without the fault, the whole fleet rotates: preshared keys, then
	// every healthy site's key (staged), a left out.
	refuse.Refuse("")
	rep, err = r.Rotate(ctx, fleet, WaveOptions{WaveSize: 3, Timeout: 3 * time.Second})
	if err != nil || rep.Count(StatusRotated) != len(fleet) {
		t.Fatalf("Rotate = %+v, %v", rep, err)
	}
	rep, err = r.RotateSiteKeys(ctx, Sites(fleet, inventory.KindWireGuard), fleet, WaveOptions{Timeout: 3 * time.Second})
	if err != nil || rep.Count(StatusRotated) != 2*len(fleet) {
		t.Fatalf("RotateSiteKeys = %+v, %v", rep, err)
	}
	for _, row := range rep.Rows {
		t.Logf("site %s %-18s %-8s gap %6.1f ms", row.Site, row.Pair, row.Status, float64(row.LongestGap.Microseconds())/1000)
	}
	for _, p := range fleet {
		if err := waitProbe(ctx, n, p); err != nil {
			t.Errorf("%s after site key rotation: %v", p, err)
		}
	}
	aPub, _ := n.prov.PublicKey(ctx, "a")
	for _, s := range []string{"b", "c", "d", "e"} {
		if has, _ := n.prov.HasPeer(ctx, s, aPub); has {
			t.Errorf("%s lists a again", s)
		}
	}
}

func waitProbe(ctx context.Context, n *wgNet, p Pair) error {
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if err = n.Probe(ctx, p); err == nil {
			return nil
		}
	}
	return err
}

// BenchmarkRotate100Peers rotates the preshared keys of 100 WireGuard pairs
// in a hub-and-spoke network (one hub, 100 spokes, each spoke paired with
// the hub only): canary first, then waves of 10, each pair verified by a
// handshake with the new key at both ends and an echo through the tunnel,
// while every spoke sends a 50 Hz flow to the hub. It reports the worst
// gap any pair's flow saw.
func BenchmarkRotate100Peers(b *testing.B) {
	benchmarkHub(b, func(ctx context.Context, r *Rotator, n *wgNet) (Report, error) {
		return r.Rotate(ctx, n.pairs, WaveOptions{WaveSize: 10, Timeout: 5 * time.Second})
	})
}

// BenchmarkRotateHubKey100Peers rotates the hub's own key with the staged
// procedure across its 100 peers (one unit touching all 100 pairs).
func BenchmarkRotateHubKey100Peers(b *testing.B) {
	benchmarkHub(b, func(ctx context.Context, r *Rotator, n *wgNet) (Report, error) {
		return r.RotateSiteKeys(ctx, []string{"hub"}, n.pairs, WaveOptions{Timeout: 5 * time.Second})
	})
}

func benchmarkHub(b *testing.B, rotate func(context.Context, *Rotator, *wgNet) (Report, error)) {
	names := []string{"hub"}
	var links [][2]string
	for i := range 100 {
		s := fmt.Sprintf("s%03d", i)
		names = append(names, s)
		links = append(links, [2]string{"hub", s})
	}
	n := newWGNet(b, names, links, nil)
	ctx := context.Background()
	for _, p := range n.pairs {
		if err := waitProbe(ctx, n, p); err != nil {
			b.Fatalf("%s: %v", p, err)
		}
	}
	gaps := n.startFlows(b, n.pairs)
	r := &Rotator{Vault: n.vault, Providers: Providers{WireGuard: n.prov}, Probe: n, Gaps: gaps}
	var worst time.Duration
	b.ResetTimer()
	for range b.N {
		rep, err := rotate(ctx, r, n)
		if err != nil {
			b.Fatalf("rotating: %v", err)
		}
		for _, row := range rep.Rows {
			if row.Status != StatusRotated {
				b.Fatalf("%s: %s %s", row.Pair, row.Status, row.Error)
			}
			worst = max(worst, row.LongestGap)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-gap-ms")
	b.ReportMetric(float64(len(n.pairs)), "pairs")
}
