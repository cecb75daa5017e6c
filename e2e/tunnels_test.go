package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strongswan/govici/vici"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/internal/charon"
	"github.com/warden-ir/warden/internal/testsupport"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
	"github.com/warden-ir/warden/providers/strongswan"
	"github.com/warden-ir/warden/providers/wireguard"
	"github.com/warden-ir/warden/providers/wireguard/wgtest"
	"github.com/warden-ir/warden/rotation"
	"github.com/warden-ir/warden/store"
)

// The tunnel tests build real VPN meshes between site gateways in network
// namespaces (wireguard-go; charon with kernel-libipsec), compromise site
// a, revoke it everywhere, and rotate every credential of the remaining
// pairs while 40 Hz flows between the other sites' LANs measure the
// longest gap each healthy pair sees. They assert outcomes only; the gaps
// are reported with t.Log.

const (
	tunnelEchoPort = 7
	flowInterval   = 25 * time.Millisecond // 40 Hz
	probeTimeout   = 400 * time.Millisecond
)

var tunnelSites = []string{"a", "b", "c", "d"}

// tunnelEnv is what both tests share: the lab, a store with the vault,
// captured logs, probes and flows.
type tunnelEnv struct {
	lab   *netlab.Lab
	st    *store.Store
	vault *rotation.Vault
	logs  *testsupport.SyncBuffer
	log   *slog.Logger
	flows map[rotation.Pair]*netlab.Flow
	// texts collects every output a secret must never appear in.
	texts []string
}

func newTunnelEnv(t *testing.T, prefix string) *tunnelEnv {
	t.Helper()
	lab, err := netlab.New(t.Context(), netlab.Options{Prefix: prefix, Sites: tunnelSites})
	if err != nil {
		t.Fatalf("building lab: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("closing lab: %v", err)
		}
	})
	for _, s := range lab.Sites() {
		if _, err := lab.ServeEcho(s.LAN.NS, netip.AddrPortFrom(netip.IPv6Unspecified(), tunnelEchoPort)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "warden.db"), "normal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mk, err := rotation.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	vault, err := rotation.OpenVault(t.Context(), st.DB(), mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.SyncBuffer{}
	return &tunnelEnv{
		lab: lab, st: st, vault: vault, logs: logs,
		log:   slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		flows: map[rotation.Pair]*netlab.Flow{},
	}
}

func (e *tunnelEnv) site(name string) netlab.Site {
	s, _ := e.lab.Site(name)
	return s
}

// Probe is the rotation's traffic check: one UDP echo from the pair's
// first LAN to the second's, through the tunnel.
func (e *tunnelEnv) Probe(ctx context.Context, p rotation.Pair) error {
	return e.lab.UDPEcho(ctx, e.site(p.A).LAN.NS, netip.AddrPortFrom(e.site(p.B).LAN.V4, tunnelEchoPort), probeTimeout)
}

// Watch is the rotation's gap meter: the pair's flow over the unit's run.
func (e *tunnelEnv) Watch(p rotation.Pair) func() time.Duration {
	f := e.flows[p]
	if f == nil {
		return func() time.Duration { return 0 }
	}
	start := time.Now()
	return func() time.Duration { return f.Stats(start, time.Time{}).LongestGap }
}

// startFlow runs a flow from the second LAN of p to the first.
func (e *tunnelEnv) startFlow(t *testing.T, p rotation.Pair) *netlab.Flow {
	t.Helper()
	f, err := e.lab.StartFlow(e.site(p.B).LAN.NS, netip.AddrPortFrom(e.site(p.A).LAN.V4, tunnelEchoPort), flowInterval)
	if err != nil {
		t.Fatal(err)
	}
	e.flows[p] = f
	return f
}

// waitTraffic polls the probe until it passes or 10 s have gone by.
func (e *tunnelEnv) waitTraffic(ctx context.Context, p rotation.Pair) error {
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if err = e.Probe(ctx, p); err == nil {
			return nil
		}
	}
	return err
}

// noTraffic checks that nothing gets through p, both ways, twice.
func (e *tunnelEnv) noTraffic(ctx context.Context, p rotation.Pair) error {
	for range 2 {
		if err := e.Probe(ctx, p); err == nil {
			return fmt.Errorf("%s passes traffic %s -> %s", p, p.A, p.B)
		}
		if err := e.Probe(ctx, rotation.Pair{A: p.B, B: p.A, Kind: p.Kind}); err == nil {
			return fmt.Errorf("%s passes traffic %s -> %s", p, p.B, p.A)
		}
	}
	return nil
}

// record keeps a JSON rendering of v (and an error's text) for the secret
// scan, and logs the report's rows with their gaps.
func (e *tunnelEnv) record(t *testing.T, what string, rep rotation.Report, err error) {
	t.Helper()
	js, jerr := json.Marshal(rep)
	if jerr != nil {
		t.Fatal(jerr)
	}
	e.texts = append(e.texts, string(js))
	if err != nil {
		e.texts = append(e.texts, err.Error())
	}
	for _, row := range rep.Rows {
		t.Logf("%-16s %-24s site %-2s wave %d %-11s longest gap %7.1f ms %s", what, row.Pair, row.Site, row.Wave, row.Status,
			float64(row.LongestGap.Microseconds())/1000, firstLine(row.Error))
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// flowGaps logs the longest gap of every flow over a window.
func (e *tunnelEnv) flowGaps(t *testing.T, what string, from time.Time) {
	t.Helper()
	for p, f := range e.flows {
		st := f.Stats(from, time.Time{})
		t.Logf("%-16s flow %-24s longest gap %7.1f ms (%d/%d echoes over the flow's life)", what, p, float64(st.LongestGap.Microseconds())/1000, st.Received, st.Sent)
	}
}

// assertNoSecrets scans logs, reports, errors and the vault's listings for
// every secret, raw, in base64 and in hex.
func (e *tunnelEnv) assertNoSecrets(t *testing.T, extra ...[]byte) {
	t.Helper()
	ctx := t.Context()
	list, err := e.vault.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(list)
	texts := append([]string{e.logs.String(), string(js)}, e.texts...)
	secrets := extra
	for _, c := range list {
		s, err := e.vault.Secret(ctx, c.ID)
		if errors.Is(err, rotation.ErrNoSecret) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, s.Bytes())
	}
	if len(secrets) < 6 {
		t.Fatalf("only %d secrets to look for: the scan proves nothing", len(secrets))
	}
	for i, s := range secrets {
		for _, form := range []string{string(s), base64.StdEncoding.EncodeToString(s), base64.RawStdEncoding.EncodeToString(s), hex.EncodeToString(s)} {
			for _, text := range texts {
				if strings.Contains(text, form) {
					t.Fatalf("secret %d appears in logs, a report, an error or the credential inventory", i)
				}
			}
		}
	}
	t.Logf("no secret among %d (raw, base64, hex) in %d bytes of logs, reports and errors", len(secrets), len(strings.Join(texts, "")))
}

// importPSKs records every tunnel's initial preshared key (psk(tun)) in
// the vault and returns copies of them for the secret scan.
func (e *tunnelEnv) importPSKs(ctx context.Context, t *testing.T, kind string, inv *inventory.Inventory, psk func(inventory.Tunnel) []byte) [][]byte {
	t.Helper()
	var initial [][]byte
	for _, tun := range inv.Tunnels {
		key := psk(tun)
		if _, err := e.vault.Import(ctx, rotation.Credential{Kind: kind, Pair: rotation.PairOf(tun)}, rotation.SecretFrom(key)); err != nil {
			t.Fatal(err)
		}
		initial = append(initial, append([]byte(nil), key...))
	}
	return initial
}

// rotator rotates through providers, probing and measuring gaps with e.
func (e *tunnelEnv) rotator(providers rotation.Providers) *rotation.Rotator {
	return &rotation.Rotator{Vault: e.vault, Providers: providers, Probe: e, Gaps: e, Log: e.log}
}

// startFleet waits for every tunnel of inv to carry traffic before the
// incident, then starts a flow on each pair that does not involve the
// compromised site a and waits for it: the fleet the rotations work on.
func (e *tunnelEnv) startFleet(ctx context.Context, t *testing.T, inv *inventory.Inventory, how string) []rotation.Pair {
	t.Helper()
	for _, tun := range inv.Tunnels {
		if err := e.waitTraffic(ctx, rotation.PairOf(tun)); err != nil {
			t.Fatalf("%s before the incident%s: %v", rotation.PairOf(tun), how, err)
		}
	}
	fleet := rotation.Fleet(inv.Tunnels, "a") // b<->c, b<->d, c<->d
	for _, p := range fleet {
		e.startFlow(t, p)
	}
	for _, p := range fleet {
		if err := e.waitTraffic(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	return fleet
}

// revokeA revokes the compromised site a at its three peers.
func (e *tunnelEnv) revokeA(ctx context.Context, t *testing.T, r *rotation.Rotator, inv *inventory.Inventory) {
	t.Helper()
	revokedAt := time.Now()
	rep, err := r.Revoke(ctx, inv, "a")
	e.record(t, "revoke", rep, err)
	if err != nil || rep.Count(rotation.StatusRevoked) != 3 {
		t.Fatalf("Revoke = %v, %+v", err, rep)
	}
	e.flowGaps(t, "revoke", revokedAt)
}

// rotateWhileDRefuses rotates the fleet's preshared keys one pair a wave
// while site d refuses every new key: the waves must stop at the first
// pair with d, which goes back to its old key, and every pair must keep
// passing traffic (check adds what the tunnel kind can show of it).
func (e *tunnelEnv) rotateWhileDRefuses(ctx context.Context, t *testing.T, r *rotation.Rotator, kind string, fleet []rotation.Pair, timeout time.Duration, check func(p rotation.Pair)) {
	t.Helper()
	start := time.Now()
	rep, err := r.Rotate(ctx, fleet, rotation.WaveOptions{Canary: kind + ":b<->c", WaveSize: 1, Timeout: timeout})
	e.record(t, "rotate (d refuses)", rep, err)
	if !errors.Is(err, rotation.ErrStopped) || rep.StoppedAt != kind+":b<->d" {
		t.Fatalf("Rotate with d refusing = %v, stopped at %q; want ErrStopped at %s:b<->d", err, rep.StoppedAt, kind)
	}
	wantStatus := map[string]rotation.Status{kind + ":b<->c": rotation.StatusRotated, kind + ":b<->d": rotation.StatusRolledBack, kind + ":c<->d": rotation.StatusSkipped}
	for _, row := range rep.Rows {
		if row.Status != wantStatus[row.Pair.String()] {
			t.Errorf("%s: %s, want %s", row.Pair, row.Status, wantStatus[row.Pair.String()])
		}
	}
	for _, p := range fleet {
		if err := e.waitTraffic(ctx, p); err != nil {
			t.Errorf("%s does not pass traffic with its current key after the stopped rotation: %v", p, err)
		}
		if check != nil {
			check(p)
		}
	}
	e.flowGaps(t, "rotate (d refuses)", start)
}

// rotatePSKs rotates every preshared key of the fleet, two pairs a wave
// after the canary b<->c.
func (e *tunnelEnv) rotatePSKs(ctx context.Context, t *testing.T, r *rotation.Rotator, kind string, fleet []rotation.Pair, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	rep, err := r.Rotate(ctx, fleet, rotation.WaveOptions{Canary: kind + ":b<->c", WaveSize: 2, Timeout: timeout})
	e.record(t, "rotate psk", rep, err)
	if err != nil || rep.Count(rotation.StatusRotated) != len(fleet) {
		t.Fatalf("Rotate = %v, %+v", err, rep)
	}
	e.flowGaps(t, "rotate psk", start)
}

// assertNoSecretsLeft adds the vault's credential inventory of inv to what
// must hold no secret, then scans everything for the initial keys and
// every secret in the vault.
func (e *tunnelEnv) assertNoSecretsLeft(ctx context.Context, t *testing.T, inv *inventory.Inventory, initial [][]byte) {
	t.Helper()
	invCreds, err := e.vault.Inventory(ctx, inv.Tunnels)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(invCreds)
	e.texts = append(e.texts, string(js))
	e.assertNoSecrets(t, initial...)
}

func meshInventory(kind string) *inventory.Inventory {
	inv := &inventory.Inventory{}
	for i, a := range tunnelSites {
		for _, b := range tunnelSites[i+1:] {
			inv.Tunnels = append(inv.Tunnels, inventory.Tunnel{A: a, B: b, Kind: kind})
		}
	}
	return inv
}

func TestWireGuardRevokeAndRotate(t *testing.T) {
	netlabtest.SkipWireGuard(t)
	ctx := t.Context()
	e := newTunnelEnv(t, "e2wg")
	mesh, err := e.lab.WireGuardMesh(ctx, netlab.WireGuardOptions{PresharedKeys: true})
	if err != nil {
		t.Fatalf("starting the WireGuard mesh: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range tunnelSites {
				t.Logf("wireguard-go %s: %s", s, mesh.Output(s))
			}
		}
	})
	wc, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	client := wgtest.NewRefusingClient(wc)
	sites := map[string]wireguard.Site{}
	for _, s := range mesh.Sites() {
		sites[s.Site] = wireguard.Site{Device: s.Device, Endpoint: s.Endpoint}
		if _, err := e.vault.Import(ctx, rotation.Credential{Kind: rotation.KindWireGuardKey, Site: s.Site, PublicKey: s.PublicKey.String()}, rotation.Secret{}); err != nil {
			t.Fatal(err)
		}
	}
	inv := meshInventory(inventory.KindWireGuard)
	initial := e.importPSKs(ctx, t, rotation.KindWireGuardPSK, inv, func(tun inventory.Tunnel) []byte {
		k, _ := mesh.PresharedKey(tun.A, tun.B)
		client.Allow(k)
		return k[:]
	})
	prov, err := wireguard.New(client, sites, wireguard.Options{Log: e.log})
	if err != nil {
		t.Fatal(err)
	}
	r := e.rotator(rotation.Providers{WireGuard: prov})

	fleet := e.startFleet(ctx, t, inv, "")

	// Site a is compromised: revoke it at b, c and d.
	e.revokeA(ctx, t, r, inv)
	t.Run("a can no longer reach or handshake with its peers", func(t *testing.T) {
		aPub := mesh.Sites()[0].PublicKey
		for _, peer := range []string{"b", "c", "d"} {
			if has, err := prov.HasPeer(ctx, peer, aPub); err != nil || has {
				t.Errorf("%s still lists a: %v %v", peer, has, err)
			}
			if err := e.noTraffic(ctx, rotation.NewPair(inventory.KindWireGuard, "a", peer)); err != nil {
				t.Error(err)
			}
		}
		// The attacker on a re-creates its peers to force fresh handshakes:
		// none may complete.
		aDev := sites["a"].Device
		d, err := wc.Device(aDev)
		if err != nil {
			t.Fatal(err)
		}
		var cfg wgtypes.Config
		for _, p := range d.Peers {
			ka := 1 * time.Second
			cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: p.PublicKey, Remove: true},
				wgtypes.PeerConfig{PublicKey: p.PublicKey, PresharedKey: &p.PresharedKey, Endpoint: p.Endpoint, PersistentKeepaliveInterval: &ka, ReplaceAllowedIPs: true, AllowedIPs: p.AllowedIPs})
		}
		if err := wc.ConfigureDevice(aDev, cfg); err != nil {
			t.Fatal(err)
		}
		forced := time.Now()
		_ = e.noTraffic(ctx, rotation.NewPair(inventory.KindWireGuard, "a", "b")) // traffic, and over a second of keepalives
		d, err = wc.Device(aDev)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range d.Peers {
			if p.LastHandshakeTime.After(forced) {
				t.Errorf("a completed a handshake with peer %s after revocation", p.PublicKey)
			}
		}
	})

	// d refuses every new key: the waves stop at the first pair with d,
	// which goes back to its old key, and every other pair keeps working.
	client.Refuse(sites["d"].Device)
	e.rotateWhileDRefuses(ctx, t, r, inventory.KindWireGuard, fleet, 3*time.Second, func(p rotation.Pair) {
		assertDevicePSK(t, e, wc, sites, p)
	})

	// Without the fault, the fleet runbook rotates every preshared key, then
	// every healthy site's key with the staged procedure.
	client.Refuse("")
	e.rotatePSKs(ctx, t, r, inventory.KindWireGuard, fleet, 5*time.Second)
	start := time.Now()
	rep, err := r.RotateSiteKeys(ctx, []string{"b", "c", "d"}, fleet, rotation.WaveOptions{Canary: "b", Timeout: 5 * time.Second})
	e.record(t, "rotate site keys", rep, err)
	if err != nil || rep.Count(rotation.StatusRotated) != 2*len(fleet) {
		t.Fatalf("RotateSiteKeys = %v, %+v", err, rep)
	}
	e.flowGaps(t, "rotate site keys", start)

	t.Run("every healthy pair carries traffic with its new keys", func(t *testing.T) {
		for _, p := range fleet {
			if err := e.waitTraffic(ctx, p); err != nil {
				t.Errorf("%s: %v", p, err)
			}
			if err := prov.VerifyHandshake(ctx, p.A, p.B, start); err != nil {
				t.Errorf("%s: %v", p, err)
			}
			assertDevicePSK(t, e, wc, sites, p)
		}
		for _, s := range []string{"b", "c", "d"} {
			cur, err := e.vault.Current(ctx, rotation.KindWireGuardKey, rotation.Pair{}, s)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := prov.PublicKey(ctx, s)
			if err != nil || pub.String() != cur.PublicKey || cur.Origin != "generated" {
				t.Errorf("site %s: device key %s, vault's active key %s (%s)", s, pub, cur.PublicKey, cur.Origin)
			}
			if has, _ := prov.HasPeer(ctx, "a", pub); has {
				t.Errorf("the revoked site a was told %s's new key", s)
			}
		}
	})

	e.assertNoSecretsLeft(ctx, t, inv, initial)
}

// assertDevicePSK checks that both ends of p hold the vault's active
// preshared key for it, without printing either.
func assertDevicePSK(t *testing.T, e *tunnelEnv, wc *wgctrl.Client, sites map[string]wireguard.Site, p rotation.Pair) {
	t.Helper()
	cur, err := e.vault.Current(t.Context(), rotation.KindWireGuardPSK, p, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.vault.Secret(t.Context(), cur.ID)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := wgtypes.NewKey(s.Bytes())
	for _, end := range [][2]string{{p.A, p.B}, {p.B, p.A}} {
		d, err := wc.Device(sites[end[0]].Device)
		if err != nil {
			t.Fatal(err)
		}
		peer, err := wc.Device(sites[end[1]].Device)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, pe := range d.Peers {
			if pe.PublicKey == peer.PublicKey {
				found = true
				if pe.PresharedKey != want {
					t.Errorf("%s: %s does not hold the vault's active key %s", p, end[0], cur.ID)
				}
			}
		}
		if !found {
			t.Errorf("%s: %s has no entry for %s", p, end[0], end[1])
		}
	}
}

// refusingDialer makes one site's charon load a random key instead of any
// new shared key (ids other than the lab's initial "<peer>/lab").
type refusingDialer struct {
	charon.Dialer
	mu   sync.Mutex
	site string
}

func (d *refusingDialer) refuse(site string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.site = site
}

func (d *refusingDialer) Dial(ctx context.Context, site string) (charon.Conn, error) {
	c, err := d.Dialer.Dial(ctx, site)
	d.mu.Lock()
	refusing := site == d.site
	d.mu.Unlock()
	if err != nil || !refusing {
		return c, err
	}
	return refusingConn{c}, nil
}

type refusingConn struct{ charon.Conn }

func (c refusingConn) Call(ctx context.Context, cmd string, in *vici.Message) (*vici.Message, error) {
	if cmd != "load-shared" || in == nil {
		return c.Conn.Call(ctx, cmd, in)
	}
	if id, _ := in.Get("id").(string); !strings.HasSuffix(id, "/lab") {
		if err := in.Set("data", rand.Text()); err != nil {
			return nil, err
		}
	}
	return c.Conn.Call(ctx, cmd, in)
}

// ikeSAs lists a site's IKE SAs with peer: unique id -> state.
func ikeSAs(t *testing.T, socket, peer string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, ev := range viciStream(t, socket, "list-sas", "list-sa", map[string]any{"ike": peer}) {
		if m, ok := ev.Get(peer).(*vici.Message); ok {
			id, _ := m.Get("uniqueid").(string)
			st, _ := m.Get("state").(string)
			out[id] = st
		}
	}
	return out
}

func TestStrongSwanRevokeAndRotate(t *testing.T) {
	netlabtest.SkipStrongSwan(t)
	ctx := t.Context()
	e := newTunnelEnv(t, "e2ss")
	mesh, err := e.lab.StrongSwanMesh(ctx, netlab.StrongSwanOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("starting the strongSwan mesh: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range tunnelSites {
				t.Logf("charon %s:\n%s", s, mesh.Log(s))
			}
		}
	})
	dialer := &refusingDialer{Dialer: strongswan.SocketDialer{}}
	sites := map[string]strongswan.Site{}
	for _, s := range mesh.Sites() {
		dialer.Dialer.(strongswan.SocketDialer)[s.Site] = s.Socket
		sites[s.Site] = strongswan.Site{Identity: s.Identity}
	}
	inv := meshInventory(inventory.KindStrongSwan)
	initial := e.importPSKs(ctx, t, rotation.KindStrongSwanPSK, inv, func(tun inventory.Tunnel) []byte {
		k, _ := mesh.PresharedKey(tun.A, tun.B)
		return k
	})
	prov, err := strongswan.New(dialer, sites, strongswan.Options{Log: e.log, ReauthTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := e.rotator(rotation.Providers{StrongSwan: prov})

	fleet := e.startFleet(ctx, t, inv, " (ESP through kernel-libipsec)")

	e.revokeA(ctx, t, r, inv)
	t.Run("a can no longer authenticate with any peer", func(t *testing.T) {
		for _, peer := range []string{"b", "c", "d"} {
			if err := prov.VerifyRevoked(ctx, peer, "a"); err != nil {
				t.Error(err)
			}
			if err := mesh.Initiate(ctx, "a", peer); err == nil {
				t.Errorf("a established a tunnel with %s after revocation", peer)
			} else {
				t.Logf("a -> %s: %v", peer, err)
			}
			if n := len(ikeSAs(t, mesh.Sites()[0].Socket, peer)); n != 0 {
				t.Errorf("a holds %d IKE SAs with %s", n, peer)
			}
			if err := e.noTraffic(ctx, rotation.NewPair(inventory.KindStrongSwan, "a", peer)); err != nil {
				t.Error(err)
			}
		}
	})

	dialer.refuse("d")
	e.rotateWhileDRefuses(ctx, t, r, inventory.KindStrongSwan, fleet, 10*time.Second, nil)

	dialer.refuse("")
	e.rotatePSKs(ctx, t, r, inventory.KindStrongSwan, fleet, 10*time.Second)

	t.Run("every healthy pair authenticates with its new key and carries traffic", func(t *testing.T) {
		for _, p := range fleet {
			cur, err := e.vault.Current(ctx, rotation.KindStrongSwanPSK, p, "")
			if err != nil {
				t.Fatal(err)
			}
			// Only the new key is loaded at either end ...
			if err := prov.VerifyPSK(ctx, p.A, p.B, cur.ID); err != nil {
				t.Error(err)
			}
			// ... so one more reauthentication, which must bring up an IKE
			// SA with a new unique id, can only authenticate with it.
			sock := mustSite(t, mesh, p.A).Socket
			before := ikeSAs(t, sock, p.B)
			if err := prov.RotatePSK(ctx, p.A, p.B, cur.ID, mustSecret(t, e, cur.ID)); err != nil {
				t.Errorf("%s: reauthenticating with the new key: %v", p, err)
			}
			after := ikeSAs(t, sock, p.B)
			fresh := false
			for id, st := range after {
				if _, old := before[id]; !old && st == "ESTABLISHED" {
					fresh = true
				}
			}
			if !fresh {
				t.Errorf("%s: no new IKE SA after reauthentication (before %v, after %v)", p, before, after)
			}
			if err := e.waitTraffic(ctx, p); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
	})

	e.assertNoSecretsLeft(ctx, t, inv, initial)
}

func mustSite(t *testing.T, m *netlab.StrongSwanMesh, name string) netlab.StrongSwanSite {
	t.Helper()
	s, ok := m.Site(name)
	if !ok {
		t.Fatalf("no site %s", name)
	}
	return s
}

func mustSecret(t *testing.T, e *tunnelEnv, id string) []byte {
	t.Helper()
	s, err := e.vault.Secret(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s.Bytes()
}
