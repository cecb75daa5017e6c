package wireguard_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/providers/wireguard"
	"github.com/warden-ir/warden/providers/wireguard/wgtest"
)

const echoPort = 7

// wgctrl's client (kernel and /var/run/wireguard UAPI devices) and the
// in-process test network are both Clients.
var (
	_ wireguard.Client = (*wgctrl.Client)(nil)
	_ wireguard.Client = (*wgtest.Client)(nil)
)

// mesh is an in-process full mesh of real WireGuard devices (no root).
type mesh struct {
	net   *wgtest.Network
	nodes map[string]*wgtest.Node
	psks  map[string]wgtypes.Key
	logs  *bytes.Buffer
	prov  *wireguard.Provider
}

func newMesh(t *testing.T, client func(*wgtest.Client) wireguard.Client, names ...string) *mesh {
	t.Helper()
	m := &mesh{net: wgtest.New(), nodes: map[string]*wgtest.Node{}, psks: map[string]wgtypes.Key{}, logs: &bytes.Buffer{}}
	t.Cleanup(func() { _ = m.net.Close() })
	sites := map[string]wireguard.Site{}
	for i, n := range names {
		nd, err := m.net.Add(n, netip.AddrFrom4([4]byte{10, 9, 0, byte(1 + i)}))
		if err != nil {
			t.Fatal(err)
		}
		m.nodes[n] = nd
		sites[n] = wireguard.Site{Device: n, Endpoint: nd.Endpoint}
		stop, err := nd.ServeEcho(echoPort)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
	}
	for i, a := range names {
		for _, b := range names[i+1:] {
			k, err := wgtypes.GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			m.psks[a+b] = k
			if err := m.net.Link(a, b, &k, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	var c wireguard.Client = m.net.Client()
	if client != nil {
		c = client(m.net.Client())
	}
	prov, err := wireguard.New(c, sites, wireguard.Options{Log: slog.New(slog.NewJSONHandler(m.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	m.prov = prov
	return m
}

// echo checks one round trip from a to b through the tunnel.
func (m *mesh) echo(ctx context.Context, a, b string, timeout time.Duration) error {
	return m.nodes[a].Echo(ctx, netip.AddrPortFrom(m.nodes[b].Addr, echoPort), timeout)
}

func (m *mesh) mustEcho(t *testing.T, a, b string) {
	t.Helper()
	if err := m.echo(t.Context(), a, b, 5*time.Second); err != nil {
		t.Fatalf("%s -> %s: %v", a, b, err)
	}
}

// waitHandshake polls VerifyHandshake until it passes or the deadline.
func waitHandshake(ctx context.Context, m *mesh, a, b string, since time.Time) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		_ = m.echo(ctx, a, b, 200*time.Millisecond)
		err := m.prov.VerifyHandshake(ctx, a, b, since)
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}

// mustRotateToNewPSK rotates the preshared key of a <-> b to a fresh one;
// it returns the key and a time just before the rotation.
func mustRotateToNewPSK(t *testing.T, m *mesh, a, b string) (wgtypes.Key, time.Time) {
	t.Helper()
	psk, err := wgtypes.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	if err := m.prov.RotatePSK(t.Context(), a, b, psk); err != nil {
		t.Fatalf("RotatePSK: %v", err)
	}
	return psk, since
}

func TestRevokePeer(t *testing.T) {
	m := newMesh(t, nil, "a", "b", "c")
	m.mustEcho(t, "a", "b")
	m.mustEcho(t, "b", "c")
	ctx := t.Context()
	aKey, err := m.prov.PublicKey(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []bool{true, false} { // the second call is a no-op
		for _, site := range []string{"b", "c"} {
			changed, err := m.prov.RevokePeer(ctx, site, aKey)
			if err != nil {
				t.Fatalf("RevokePeer(%s): %v", site, err)
			}
			if changed != want {
				t.Errorf("RevokePeer(%s) changed = %v, want %v", site, changed, want)
			}
		}
	}
	for _, peer := range []string{"b", "c"} {
		if has, err := m.prov.HasPeer(ctx, peer, aKey); err != nil || has {
			t.Errorf("HasPeer(%s, a) = %v, %v; want false", peer, has, err)
		}
		if err := m.echo(ctx, "a", peer, 300*time.Millisecond); err == nil {
			t.Errorf("a -> %s still passes traffic after revocation", peer)
		}
	}
	m.mustEcho(t, "b", "c")
}

func TestRotatePSK(t *testing.T) {
	m := newMesh(t, nil, "a", "b", "c")
	m.mustEcho(t, "b", "c")
	m.mustEcho(t, "a", "b")
	for i := range 2 { // applying twice must work twice
		t.Run(fmt.Sprint("apply ", i+1), func(t *testing.T) {
			psk, since := mustRotateToNewPSK(t, m, "b", "c")
			if err := waitHandshake(t.Context(), m, "b", "c", since); err != nil {
				t.Fatalf("no handshake with the new key: %v", err)
			}
			m.mustEcho(t, "b", "c")
			m.mustEcho(t, "c", "b")
			m.mustEcho(t, "a", "b")
			d, err := m.net.Client().Device("c")
			if err != nil {
				t.Fatal(err)
			}
			bKey, _ := m.prov.PublicKey(t.Context(), "b")
			for _, p := range d.Peers {
				if p.PublicKey == bKey && p.PresharedKey != psk {
					t.Error("c's entry for b does not hold the new key")
				}
			}
			assertNoSecret(t, m.logs.String(), psk[:])
		})
	}
}

func TestRotatePSKRefusedThenRestored(t *testing.T) {
	// c is given a different preshared key than asked for whenever one is
	// set: the peer "refuses" the new key.
	var refuse *wgtest.RefusingClient
	m := newMesh(t, func(c *wgtest.Client) wireguard.Client {
		refuse = wgtest.NewRefusingClient(c)
		refuse.Refuse("c")
		return refuse
	}, "a", "b", "c")
	m.mustEcho(t, "b", "c")
	_, since := mustRotateToNewPSK(t, m, "b", "c")
	err := m.prov.VerifyHandshake(t.Context(), "b", "c", since)
	for deadline := time.Now().Add(time.Second); err == nil && time.Now().Before(deadline); {
		err = m.prov.VerifyHandshake(t.Context(), "b", "c", since)
	}
	if !errors.Is(err, actions.ErrNotVerified) {
		t.Fatalf("VerifyHandshake with a refused key = %v, want ErrNotVerified", err)
	}
	if err := m.echo(t.Context(), "b", "c", 300*time.Millisecond); err == nil {
		t.Fatal("b -> c passes traffic although c refused the new key")
	}
	// Restoring the old key (what rotation does on failure) brings it back.
	refuse.Refuse("")
	old := m.psks["bc"]
	since = time.Now()
	if err := m.prov.RotatePSK(t.Context(), "b", "c", old); err != nil {
		t.Fatal(err)
	}
	if err := waitHandshake(t.Context(), m, "b", "c", since); err != nil {
		t.Fatal(err)
	}
	m.mustEcho(t, "b", "c")
}

func TestRotateSiteKey(t *testing.T) {
	// s3 plays a revoked gateway: it is not in the peer list, so it must
	// never learn the hub's new key.
	m := newMesh(t, nil, "hub", "s1", "s2", "s3")
	for _, s := range []string{"s1", "s2", "s3"} {
		m.mustEcho(t, s, "hub")
	}
	m.mustEcho(t, "s1", "s2")
	ctx := t.Context()
	old, err := m.prov.PublicKey(ctx, "hub")
	if err != nil {
		t.Fatal(err)
	}
	next, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	for i := range 2 { // the second run finds everything done
		if err := m.prov.RotateSiteKey(ctx, "hub", []string{"s1", "s2"}, old, next); err != nil {
			t.Fatalf("RotateSiteKey run %d: %v", i+1, err)
		}
	}
	if got, _ := m.prov.PublicKey(ctx, "hub"); got != next.PublicKey() {
		t.Fatalf("hub public key = %s, want the new one", got)
	}
	for _, s := range []string{"s1", "s2"} {
		if has, _ := m.prov.HasPeer(ctx, s, old); has {
			t.Errorf("%s still has the hub's old key", s)
		}
		if err := waitHandshake(ctx, m, s, "hub", since); err != nil {
			t.Errorf("%s <-> hub: %v", s, err)
		}
		m.mustEcho(t, "hub", s)
	}
	if has, _ := m.prov.HasPeer(ctx, "s3", next.PublicKey()); has {
		t.Error("s3, not a listed peer, was given the hub's new key")
	}
	if err := m.echo(ctx, "s3", "hub", 300*time.Millisecond); err == nil {
		t.Error("s3 still reaches the hub after the hub's key changed")
	}
	m.mustEcho(t, "s1", "s2")
	assertNoSecret(t, m.logs.String(), next[:])
}

func TestRotateSiteKeyResumes(t *testing.T) {
	// A peer that fails stage 3 once: the rotation errors, and a second run
	// finishes the job.
	failures := 1
	var fc *flakyClient
	m := newMesh(t, func(c *wgtest.Client) wireguard.Client {
		fc = &flakyClient{Client: c, device: "s2", failures: &failures}
		return fc
	}, "hub", "s1", "s2")
	ctx := t.Context()
	old, _ := m.prov.PublicKey(ctx, "hub")
	next, _ := wgtypes.GeneratePrivateKey()
	fc.armed = true
	if err := m.prov.RotateSiteKey(ctx, "hub", []string{"s1", "s2"}, old, next); err == nil {
		t.Fatal("RotateSiteKey with a failing peer: no error")
	}
	if err := m.prov.RotateSiteKey(ctx, "hub", []string{"s1", "s2"}, old, next); err != nil {
		t.Fatalf("resuming: %v", err)
	}
	for _, s := range []string{"s1", "s2"} {
		m.mustEcho(t, s, "hub")
	}
}

// flakyClient fails the first *failures configurations of device that move
// AllowedIPs (stage 3) once armed.
type flakyClient struct {
	wireguard.Client
	device   string
	armed    bool
	failures *int
}

func (f *flakyClient) ConfigureDevice(name string, cfg wgtypes.Config) error {
	if f.armed && name == f.device && *f.failures > 0 && len(cfg.Peers) == 2 && cfg.Peers[1].Remove {
		*f.failures--
		return errors.New("injected failure")
	}
	return f.Client.ConfigureDevice(name, cfg)
}

func TestErrors(t *testing.T) {
	m := newMesh(t, nil, "a", "b")
	ctx := t.Context()
	k, _ := wgtypes.GenerateKey()
	tests := map[string]struct {
		call func() error
		is   error
	}{
		"revoke at unknown site": {func() error { _, err := m.prov.RevokePeer(ctx, "zz", k); return err }, wireguard.ErrUnknownSite},
		"psk with unknown site":  {func() error { return m.prov.RotatePSK(ctx, "a", "zz", k) }, wireguard.ErrUnknownSite},
		"verify unknown site":    {func() error { return m.prov.VerifyHandshake(ctx, "zz", "a", time.Now()) }, wireguard.ErrUnknownSite},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.is) || !actions.IsTerminal(err) {
				t.Fatalf("error = %v, want terminal %v", err, tc.is)
			}
		})
	}
	t.Run("not peers", func(t *testing.T) {
		if _, err := m.net.Add("lonely", netip.MustParseAddr("10.9.0.99")); err != nil {
			t.Fatal(err)
		}
		p, err := wireguard.New(m.net.Client(), map[string]wireguard.Site{"a": {Device: "a"}, "lonely": {Device: "lonely"}}, wireguard.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.RotatePSK(ctx, "a", "lonely", k); !errors.Is(err, wireguard.ErrNotPeers) {
			t.Fatalf("RotatePSK between non-peers = %v, want ErrNotPeers", err)
		}
	})
}

// assertNoSecret fails if text holds the key raw, in base64 or in hex.
func assertNoSecret(t *testing.T, text string, key []byte) {
	t.Helper()
	for _, form := range []string{string(key), base64.StdEncoding.EncodeToString(key), hex.EncodeToString(key)} {
		if strings.Contains(text, form) {
			t.Fatalf("secret found in output")
		}
	}
}
