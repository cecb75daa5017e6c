package host

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
	"github.com/warden-ir/warden/patching"
)

// wgLab is a three-site WireGuard mesh with preshared keys, and a
// WireGuard controller bound to each gateway's namespace.
type wgLab struct {
	lab  *netlab.Lab
	mesh *netlab.WireGuardMesh
	// at holds each site's controller, built inside its gateway namespace.
	at map[string]*WireGuard
	// raw reads devices straight through wgctrl, as the test's oracle.
	raw *wgctrl.Client
}

func newWGLab(t *testing.T) *wgLab {
	t.Helper()
	netlabtest.SkipWireGuard(t)
	ctx := t.Context()
	lab := netlabtest.New(t, netlab.Options{Prefix: "ahwg", Sites: []string{"a", "b", "c"}})
	mesh, err := lab.WireGuardMesh(ctx, netlab.WireGuardOptions{PresharedKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	l := &wgLab{lab: lab, mesh: mesh, at: map[string]*WireGuard{}}
	for _, s := range lab.Sites() {
		var w *WireGuard
		if err := netlab.Do(s.Gateway.NS, func() (err error) {
			w, err = NewWireGuard()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		l.at[s.Name] = w
	}
	if l.raw, err = wgctrl.New(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.raw.Close() })
	return l
}

func (l *wgLab) device(site string) netlab.WireGuardSite {
	s, _ := l.mesh.Site(site)
	return s
}

func (l *wgLab) psk(t *testing.T, a, b string) wgtypes.Key {
	t.Helper()
	k, ok := l.mesh.PresharedKey(a, b)
	if !ok {
		t.Fatalf("no preshared key for %s-%s", a, b)
	}
	return k
}

// rawPSK reads the preshared key site holds for peer, straight from the
// device.
func (l *wgLab) rawPSK(t *testing.T, site, peer string) wgtypes.Key {
	t.Helper()
	d, err := l.raw.Device(l.device(site).Device)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Peers {
		if p.PublicKey == l.device(peer).PublicKey {
			return p.PresharedKey
		}
	}
	t.Fatalf("%s has no peer %s", site, peer)
	return wgtypes.Key{}
}

func peerOf(d wire.WGDevice, pub wgtypes.Key) (wire.WGPeer, bool) {
	i := slices.IndexFunc(d.Peers, func(p wire.WGPeer) bool { return p.PublicKey == pub.String() })
	if i < 0 {
		return wire.WGPeer{}, false
	}
	return d.Peers[i], true
}

// keyForms are the ways a key could leak into text.
func keyForms(k wgtypes.Key) []string {
	return []string{base64.StdEncoding.EncodeToString(k[:]), base64.RawStdEncoding.EncodeToString(k[:]),
		base64.URLEncoding.EncodeToString(k[:]), hex.EncodeToString(k[:])}
}

func TestWireGuardDevice(t *testing.T) {
	l := newWGLab(t)
	ctx := t.Context()
	a := l.device("a")
	dev, err := l.at["a"].Device(ctx, a.Device)
	if err != nil {
		t.Fatal(err)
	}
	if dev.Name != a.Device || dev.Type != wgtypes.Userspace.String() || dev.PublicKey != a.PublicKey.String() || dev.ListenPort != netlab.WireGuardPort {
		t.Fatalf("device %+v", dev)
	}
	var secrets []string
	raw, err := l.raw.Device(a.Device)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, keyForms(raw.PrivateKey)...)
	for _, peer := range []string{"b", "c"} {
		p, ok := peerOf(dev, l.device(peer).PublicKey)
		if !ok {
			t.Fatalf("device a has no peer %s: %+v", peer, dev.Peers)
		}
		psk := l.psk(t, "a", peer)
		secrets = append(secrets, keyForms(psk)...)
		if want := wire.WGPresharedKeyRef(a.PublicKey, l.device(peer).PublicKey, psk); p.PresharedKeyRef != want {
			t.Errorf("peer %s: ref %q, want %q", peer, p.PresharedKeyRef, want)
		}
		if len(p.AllowedIPs) != 2 || p.Endpoint != l.device(peer).Endpoint.String() {
			t.Errorf("peer %s: %+v", peer, p)
		}
	}
	b, err := json.Marshal(dev)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(string(b), s) {
			t.Fatalf("a key appears in the device's JSON: %s", b)
		}
	}
	// Reading twice changes nothing.
	again, err := l.at["a"].Device(ctx, a.Device)
	if err != nil || len(again.Peers) != len(dev.Peers) {
		t.Fatalf("second read: %+v, %v", again, err)
	}
}

func TestWireGuardRefusesForeignDevices(t *testing.T) {
	l := newWGLab(t)
	ctx := t.Context()
	// Bound to the test's own namespace, where no lab link lives.
	here, err := NewWireGuard()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { here.Close() })
	tests := map[string]struct {
		w       *WireGuard
		device  string
		wantErr error
	}{
		"another gateway's device (its UAPI socket is shared)": {l.at["a"], l.device("b").Device, agent.ErrNotFound},
		"a gateway's device from the host namespace":           {here, l.device("a").Device, agent.ErrNotFound},
		"a link that is not WireGuard":                         {l.at["a"], "lo", agent.ErrNotFound},
		"no such link":                                         {l.at["a"], "wgnothere0", agent.ErrNotFound},
		"a path, not an interface name":                        {l.at["a"], "../../tmp/x", agent.ErrInvalidParams},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := tc.w.Device(ctx, tc.device)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Device(%s) = %v, want %v", tc.device, err, tc.wantErr)
			}
			_, err = tc.w.Configure(ctx, tc.device, wire.WGConfig{Peers: []wire.WGPeerConfig{{PublicKey: l.device("c").PublicKey.String(), Remove: true}}})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Configure(%s) = %v, want %v", tc.device, err, tc.wantErr)
			}
		})
	}
	// The refused Configure removed nothing anywhere.
	for _, site := range []string{"a", "b"} {
		if d, err := l.raw.Device(l.device(site).Device); err != nil || len(d.Peers) != 2 {
			t.Fatalf("%s after refused configures: %v peers, %v", site, len(d.Peers), err)
		}
	}
}

func TestWireGuardConfigure(t *testing.T) {
	l := newWGLab(t)
	ctx := t.Context()
	a, b, c := l.device("a"), l.device("b"), l.device("c")
	dev, err := l.at["a"].Device(ctx, a.Device)
	if err != nil {
		t.Fatal(err)
	}
	refAB, _ := peerOf(dev, b.PublicKey)

	t.Run("a reference installs the key it stands for", func(t *testing.T) {
		cfg := wire.WGConfig{Peers: []wire.WGPeerConfig{{PublicKey: c.PublicKey.String(), UpdateOnly: true, PresharedKey: refAB.PresharedKeyRef}}}
		for range 2 { // the same change twice: the second is a no-op
			got, err := l.at["a"].Configure(ctx, a.Device, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := l.rawPSK(t, "a", "c"); got != l.psk(t, "a", "b") {
				t.Fatal("a's entry for c does not hold the a-b key")
			}
			pc, _ := peerOf(got, c.PublicKey)
			if want := wire.WGPresharedKeyRef(a.PublicKey, c.PublicKey, l.psk(t, "a", "b")); pc.PresharedKeyRef != want {
				t.Fatalf("read back ref %q, want %q", pc.PresharedKeyRef, want)
			}
		}
	})

	t.Run("malformed keys are refused without echo", func(t *testing.T) {
		notAKey := "correct-horse-battery-staple-psk"
		// A reference from another device is not a key here.
		devB, err := l.at["b"].Device(ctx, b.Device)
		if err != nil {
			t.Fatal(err)
		}
		refBC, _ := peerOf(devB, c.PublicKey)
		tests := map[string]struct {
			cfg   wire.WGConfig
			field string
		}{
			"preshared key": {wire.WGConfig{Peers: []wire.WGPeerConfig{{PublicKey: c.PublicKey.String(), PresharedKey: notAKey}}}, "config.peers[0].preshared_key"},
			"private key":   {wire.WGConfig{PrivateKey: notAKey}, "config.private_key"},
			"public key":    {wire.WGConfig{Peers: []wire.WGPeerConfig{{PublicKey: notAKey}}}, "config.peers[0].public_key"},
			"endpoint name": {wire.WGConfig{Peers: []wire.WGPeerConfig{{PublicKey: c.PublicKey.String(), Endpoint: "gw-c.example:51820"}}}, "config.peers[0].endpoint"},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				_, err := l.at["a"].Configure(ctx, a.Device, tc.cfg)
				if !errors.Is(err, agent.ErrInvalidParams) || !strings.Contains(err.Error(), tc.field) || strings.Contains(err.Error(), notAKey) {
					t.Fatalf("err = %v, want ErrInvalidParams naming %s without the value", err, tc.field)
				}
			})
		}
		// b's ref for c decodes as 32 bytes, so it is taken as a key (one
		// nobody knows): the foreign ref never resolves to b's secret.
		if _, err := l.at["a"].Configure(ctx, a.Device, wire.WGConfig{Peers: []wire.WGPeerConfig{{PublicKey: c.PublicKey.String(), PresharedKey: refBC.PresharedKeyRef}}}); err != nil {
			t.Fatal(err)
		}
		if l.rawPSK(t, "a", "c") == l.psk(t, "b", "c") {
			t.Fatal("a reference from another device resolved to that device's key")
		}
	})

	t.Run("a new preshared key on both ends carries traffic", func(t *testing.T) {
		fresh, err := wgtypes.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		for site, peer := range map[string]netlab.WireGuardSite{"a": b, "b": a} {
			cfg := wire.WGConfig{Peers: []wire.WGPeerConfig{{PublicKey: peer.PublicKey.String(), UpdateOnly: true, PresharedKey: fresh.String()}}}
			if _, err := l.at[site].Configure(ctx, l.device(site).Device, cfg); err != nil {
				t.Fatal(err)
			}
		}
		if l.rawPSK(t, "a", "b") != fresh || l.rawPSK(t, "b", "a") != fresh {
			t.Fatal("the new key is not installed at both ends")
		}
		siteA, _ := l.lab.Site("a")
		siteB, _ := l.lab.Site("b")
		deadline := time.Now().Add(15 * time.Second)
		for {
			err := l.lab.Ping(ctx, siteA.LAN.NS, siteB.LAN.V4, time.Second)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no traffic a -> b with the new key: %v", err)
			}
		}
		got, err := l.at["a"].Device(ctx, a.Device)
		if err != nil {
			t.Fatal(err)
		}
		if p, _ := peerOf(got, b.PublicKey); p.LastHandshake.IsZero() || p.PresharedKeyRef != wire.WGPresharedKeyRef(a.PublicKey, b.PublicKey, fresh) {
			t.Fatalf("peer b after the handshake: %+v", p)
		}
		// Control: a's entry for c now holds a key c does not have, and
		// no handshake gets through.
		siteC, _ := l.lab.Site("c")
		if err := l.lab.Ping(ctx, siteA.LAN.NS, siteC.LAN.V4, 2*time.Second); err == nil {
			t.Fatal("a reached c with mismatched preshared keys")
		}
	})
}

// viciLab is a two-site strongSwan mesh, tunnels established.
func viciLab(t *testing.T) *netlab.StrongSwanMesh {
	t.Helper()
	netlabtest.SkipStrongSwan(t)
	lab := netlabtest.New(t, netlab.Options{Prefix: "ahvici", Sites: []string{"a", "b"}})
	m, err := lab.StrongSwanMesh(t.Context(), netlab.StrongSwanOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func str(s string) *string { return &s }

// wireValue finds a top-level value of a VICI message.
func wireValue(m wire.VICIMessage, key string) (string, bool) {
	for _, el := range m {
		if el.Key == key && el.Value != nil {
			return *el.Value, true
		}
	}
	return "", false
}

func wireKeys(m wire.VICIMessage) []string {
	out := make([]string, 0, len(m))
	for _, el := range m {
		out = append(out, el.Key)
	}
	return out
}

func TestVICIRun(t *testing.T) {
	m := viciLab(t)
	site, _ := m.Site("a")
	v := NewVICI(site.Socket)
	ctx := t.Context()

	t.Run("get-conns", func(t *testing.T) {
		res, err := v.Run(ctx, wire.VICIParams{Command: "get-conns"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Reply) != 1 || res.Reply[0].Key != "conns" || !slices.Equal(res.Reply[0].List, []string{"b"}) {
			t.Fatalf("reply %+v, want conns [b]", res.Reply)
		}
	})
	t.Run("list-sas streams its events", func(t *testing.T) {
		res, err := v.Run(ctx, wire.VICIParams{Command: "list-sas", Event: "list-sa"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Events) != 1 || !slices.Equal(wireKeys(res.Events[0]), []string{"b"}) {
			t.Fatalf("events %+v, want one IKE SA named b", res.Events)
		}
		sa := res.Events[0][0].Section
		if st, _ := wireValue(sa, "state"); st != "ESTABLISHED" {
			t.Fatalf("IKE SA state %q, want ESTABLISHED", st)
		}
	})
	t.Run("load, read and unload a shared key", func(t *testing.T) {
		secret := "rotation-test-psk-0123456789"
		load := wire.VICIParams{Command: "load-shared", Message: wire.VICIMessage{
			{Key: "id", Value: str("b/rot1")}, {Key: "type", Value: str("IKE")}, {Key: "data", Value: str(secret)},
			{Key: "owners", List: []string{"a.gw.test", "b.gw.test"}, IsList: true},
		}}
		for range 2 { // the same key again replaces it
			if res, err := v.Run(ctx, load); err != nil {
				t.Fatal(err)
			} else if ok, _ := wireValue(res.Reply, "success"); ok != "yes" {
				t.Fatalf("load-shared reply %+v", res.Reply)
			}
		}
		res, err := v.Run(ctx, wire.VICIParams{Command: "get-shared"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(res)
		if !strings.Contains(string(b), "b/rot1") || strings.Contains(string(b), secret) {
			t.Fatalf("get-shared %s: want the id, never the key", b)
		}
		if _, err := v.Run(ctx, wire.VICIParams{Command: "unload-shared", Message: wire.VICIMessage{{Key: "id", Value: str("b/rot1")}}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("charon's refusal carries its message", func(t *testing.T) {
		tests := map[string]struct {
			p    wire.VICIParams
			want string
		}{
			"terminate a missing connection": {wire.VICIParams{Command: "terminate", Message: wire.VICIMessage{{Key: "ike", Value: str("nosuchconn")}, {Key: "force", Value: str("yes")}}},
				"charon refused terminate: no matching SAs to terminate found"},
			"unload a missing connection": {wire.VICIParams{Command: "unload-conn", Message: wire.VICIMessage{{Key: "name", Value: str("nosuchconn")}}},
				"charon refused unload-conn: unload: connection 'nosuchconn' not found"},
			"unload-shared without an id": {wire.VICIParams{Command: "unload-shared"}, "charon refused unload-shared: unique identifier missing"},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				_, err := v.Run(ctx, tc.p)
				if err == nil || !actions.IsTerminal(err) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want a terminal error containing %q", err, tc.want)
				}
			})
		}
		// strongSwan 5.9.8 unloads an id it does not hold without
		// complaint: unload-shared is idempotent.
		res, err := v.Run(ctx, wire.VICIParams{Command: "unload-shared", Message: wire.VICIMessage{{Key: "id", Value: str("b/never-loaded")}}})
		if ok, _ := wireValue(res.Reply, "success"); err != nil || ok != "yes" {
			t.Fatalf("unload-shared of a missing id: %+v, %v", res.Reply, err)
		}
	})
	t.Run("refused before charon", func(t *testing.T) {
		tests := map[string]wire.VICIParams{
			"load-conn is not whitelisted": {Command: "load-conn", Message: wire.VICIMessage{{Key: "x", IsSection: true}}},
			"reload-settings":              {Command: "reload-settings"},
			"wrong event":                  {Command: "list-sas", Event: "ike-updown"},
			"malformed message":            {Command: "get-conns", Message: wire.VICIMessage{{Key: "x"}}},
		}
		for name, p := range tests {
			t.Run(name, func(t *testing.T) {
				if _, err := v.Run(ctx, p); !errors.Is(err, agent.ErrInvalidParams) {
					t.Fatalf("err = %v, want ErrInvalidParams", err)
				}
			})
		}
		// get-conns shows no connection was loaded.
		res, err := v.Run(ctx, wire.VICIParams{Command: "get-conns"})
		if err != nil || !slices.Equal(res.Reply[0].List, []string{"b"}) {
			t.Fatalf("get-conns after refusals: %+v, %v", res.Reply, err)
		}
	})
}

func TestVICIRunWithoutDaemon(t *testing.T) {
	v := NewVICI(filepath.Join(t.TempDir(), "absent.vici"))
	_, err := v.Run(t.Context(), wire.VICIParams{Command: "get-conns"})
	if !errors.Is(err, agent.ErrUnavailable) || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("err = %v, want ErrUnavailable saying strongSwan is not running", err)
	}
}

func TestPatchHooksWaitForWireGuardTunnels(t *testing.T) {
	l := newWGLab(t)
	ctx := t.Context()
	hooksAt := func(site string) patching.VerifyHooks {
		return PatchHooks(PatchHookOptions{WireGuard: l.at[site], Wait: 200 * time.Millisecond, Poll: 20 * time.Millisecond})
	}
	if err := hooksAt("a").Services(ctx); err != nil {
		t.Fatalf("services of a: %v", err)
	}
	// No traffic yet, so no handshake: the tunnels are not up.
	if err := hooksAt("a").Tunnels(ctx); err == nil || !strings.Contains(err.Error(), "not re-established") {
		t.Fatalf("tunnels of a before any handshake = %v; want not re-established", err)
	}
	for _, p := range [][2]string{{"a", "b"}, {"a", "c"}, {"b", "c"}} {
		from, _ := l.lab.Site(p[0])
		to, _ := l.lab.Site(p[1])
		if err := l.lab.Ping(ctx, from.LAN.NS, to.LAN.V4, 5*time.Second); err != nil {
			t.Fatalf("ping %s -> %s through the tunnel: %v", p[0], p[1], err)
		}
	}
	for _, s := range []string{"a", "b", "c"} {
		if err := hooksAt(s).Tunnels(ctx); err != nil {
			t.Errorf("tunnels of %s after handshakes: %v", s, err)
		}
	}
	none := PatchHooks(PatchHookOptions{VICI: NewVICI(filepath.Join(t.TempDir(), "no-charon.vici"))})
	if err := errors.Join(none.Services(ctx), none.Tunnels(ctx)); err != nil {
		t.Errorf("a gateway without tunnels fails the hooks: %v", err)
	}
}
