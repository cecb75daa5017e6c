package e2e

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strongswan/govici/vici"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/internal/charon"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
	"github.com/warden-ir/warden/providers/strongswan"
	"github.com/warden-ir/warden/rotation"
	"github.com/warden-ir/warden/store"
)

// TestTunnelResponseThroughAgents proves issue #4 end to end with the real
// pieces: `warden serve` in the management namespace, `warden agent` in
// every site gateway's namespace next to its wireguard-go or charon, and a
// person starting the default runbook for a confirmed compromise of site
// a. The controller reaches every device only through the agents. The
// test asserts what the kernel and the daemons show afterwards: a is
// gone and blocked at every peer and cannot handshake or authenticate
// with any of them, every healthy pair runs on a new key Warden generated
// and still carries traffic, and no secret shows in any log, answer or
// the audit. The longest traffic gap of each healthy pair is logged.
func TestTunnelResponseThroughAgents(t *testing.T) {
	for _, v := range []tunnelVariant{
		{name: "wireguard", kind: inventory.KindWireGuard, prefix: "e2aw"},
		{name: "strongswan", kind: inventory.KindStrongSwan, prefix: "e2as"},
		// Gateways that authenticate with certificates under the CA: a
		// is refused through a CRL, and no pair has a secret to rotate.
		{name: "strongswan-certificates", kind: inventory.KindStrongSwan, prefix: "e2ac", certs: true},
	} {
		t.Run(v.name, func(t *testing.T) { agentTunnelResponse(t, v) })
	}
}

// tunnelVariant is one VPN the response is proven on.
type tunnelVariant struct {
	name, kind, prefix string
	certs              bool
}

// agentTunnelLab is one kind's lab with its processes.
type agentTunnelLab struct {
	t      *testing.T
	kind   string
	certs  bool
	lab    *netlab.Lab
	wg     *netlab.WireGuardMesh
	ss     *netlab.StrongSwanMesh
	dir    string
	bin    string
	people *crew
	api    *apiNS
	ctrl   *nsProc
	agents map[string]*nsProc
	flows  map[rotation.Pair]*netlab.Flow
}

const compromisedSite = "a"

func agentTunnelResponse(t *testing.T, v tunnelVariant) {
	netlabtest.Skip(t, "nft")
	if v.kind == inventory.KindWireGuard {
		netlabtest.SkipWireGuard(t)
	} else {
		netlabtest.SkipStrongSwan(t)
	}
	ctx := t.Context()
	l := newAgentTunnelLab(t, v)

	fleet := rotation.Fleet(l.tunnels(), compromisedSite)
	for _, p := range fleet {
		l.startFlow(p)
	}
	initial := l.initialSecrets()

	// The IDS sees a beacon: policy contains a at once (reversible).
	incident, contain := l.api.submitC2(t, compromisedSite, l.lab.C2(), 1)
	if r := l.api.waitRun(t, contain, 50*time.Millisecond); r.State != store.RunSucceeded {
		t.Fatalf("automatic containment: %s %s", r.State, r.Error)
	}

	// A person confirms the compromise. First, what it will do: which
	// peers lose a, which pairs get new keys.
	var dry struct {
		Text string `json:"text"`
	}
	start, _ := json.Marshal(map[string]any{"gateway": compromisedSite, "dry_run": true})
	l.api.call(t, http.MethodPost, "/v1/runbooks/respond-confirmed-compromise/runs", start, http.StatusOK, &dry)
	wants := []string{"revoke a at 3 peer site(s)", "at b: drop all traffic from and to", "wave 0: " + fleet[0].String(), "wave 1:", "rotate the credentials of 3 tunnel(s) not touching a"}
	if v.certs {
		wants = []string{"revoke a at 3 peer site(s)", "at b: drop all traffic from and to", "at b: load a CRL from", "revoking a's certificate",
			"the 3 tunnel(s) not touching a authenticate with certificates: nothing shared to rotate"}
	}
	for _, want := range wants {
		if !strings.Contains(dry.Text, want) {
			t.Errorf("the plan does not say %q:\n%s", want, dry.Text)
		}
	}
	t.Logf("plan:\n%s", dry.Text)

	began := time.Now()
	start, _ = json.Marshal(map[string]any{"gateway": compromisedSite})
	var started store.Run
	l.api.call(t, http.MethodPost, "/v1/runbooks/respond-confirmed-compromise/runs", start, http.StatusAccepted, &started)
	run := l.api.waitRun(t, started.ID, 50*time.Millisecond)
	for _, s := range run.Steps {
		t.Logf("step %-20s %-10s %s", s.Action, s.State, s.Error)
	}
	t.Logf("the confirmed-compromise run took %v", run.FinishedAt.Sub(run.StartedAt).Round(time.Millisecond))
	if run.State != store.RunSucceeded {
		t.Fatalf("run %s: %s", run.State, run.Error)
	}
	if run.Incident != incident {
		t.Errorf("the person's run belongs to incident %q, not the open incident %q", run.Incident, incident)
	}
	for _, a := range []string{"capture_volatile", "isolate", "revoke_peer", "rotate_credentials"} {
		if st := stepOf(t, run, a); st.State != store.StepSucceeded {
			t.Fatalf("step %s: %s %s", a, st.State, st.Error)
		}
	}
	for _, p := range fleet {
		st := l.flows[p].Stats(began, time.Time{})
		t.Logf("%s: longest gap %.1f ms during the whole response (%d/%d echoes)", p, float64(st.LongestGap.Microseconds())/1000, st.Received, st.Sent)
	}

	t.Run("healthy pairs carry traffic on their new keys", func(t *testing.T) {
		for _, p := range fleet {
			if err := l.waitTraffic(ctx, p); err != nil {
				t.Errorf("%s after rotation: %v", p, err)
			}
		}
		l.assertNewKeys(t, fleet, initial)
	})

	t.Run("a is gone and blocked at every peer", func(t *testing.T) {
		l.assertRevoked(t)
		// Lift a's own quarantine by hand, as an intruder with root on a
		// would: a still cannot reach any peer, because the peers block
		// it and no longer trust its credentials.
		l.runIn(l.site(compromisedSite).Gateway.NS, "nft", "flush", "ruleset")
		for _, peer := range []string{"b", "c", "d"} {
			gw := l.site(peer).Gateway
			for _, addr := range []netip.Addr{gw.V4, gw.V6} {
				if err := l.lab.UDPEcho(ctx, l.site(compromisedSite).Gateway.NS, netip.AddrPortFrom(addr, tunnelEchoPort), cutWait); err == nil {
					t.Errorf("a reaches %s's gateway at %s through the block", peer, addr)
				}
			}
			// A healthy site still reaches it: the block is a's alone.
			if err := l.lab.UDPEcho(ctx, l.site("b").Gateway.NS, netip.AddrPortFrom(l.site("c").Gateway.V4, tunnelEchoPort), okWait); err != nil {
				t.Errorf("b no longer reaches c's gateway: %v", err)
			}
			if err := l.noTunnel(ctx, peer); err != nil {
				t.Error(err)
			}
		}
	})

	if l.wg != nil {
		t.Run("a fleet-wide rotation replaces every healthy site key", func(t *testing.T) {
			before := map[string]wgtypes.Key{}
			for _, s := range []string{"b", "c", "d"} {
				before[s] = l.device(s).PublicKey
			}
			body, _ := json.Marshal(map[string]any{"gateway": compromisedSite})
			var r store.Run
			rotating := time.Now()
			l.api.call(t, http.MethodPost, "/v1/runbooks/rotate-fleet-credentials/runs", body, http.StatusAccepted, &r)
			r = l.api.waitRun(t, r.ID, 50*time.Millisecond)
			if st := stepOf(t, r, "rotate_credentials"); r.State != store.RunSucceeded || st.State != store.StepSucceeded {
				t.Fatalf("run %s (%s), step %s: %s", r.State, r.Error, st.State, st.Error)
			}
			for _, s := range []string{"b", "c", "d"} {
				d := l.device(s)
				if d.PublicKey == before[s] {
					t.Errorf("%s still has its old key", s)
				}
				for _, o := range []string{"b", "c", "d"} {
					if o == s {
						continue
					}
					od := l.device(o)
					if peerOf(od, d.PublicKey) == nil || peerOf(od, before[s]) != nil {
						t.Errorf("%s does not list %s's new key only", o, s)
					}
				}
				if peerOf(l.device(compromisedSite), d.PublicKey) != nil {
					t.Errorf("the compromised gateway was told %s's new key", s)
				}
			}
			for _, p := range fleet {
				if err := l.waitTraffic(ctx, p); err != nil {
					t.Errorf("%s after the site key rotation: %v", p, err)
				}
				st := l.flows[p].Stats(rotating, time.Time{})
				t.Logf("%s: longest gap %.1f ms during the fleet rotation (preshared and site keys)", p, float64(st.LongestGap.Microseconds())/1000)
			}
		})
	}

	t.Run("release is gated on the rotation", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{"gateway": compromisedSite, "dry_run": true})
		var out struct {
			Plan struct {
				Gates []struct {
					Name   string `json:"name"`
					Passed bool   `json:"passed"`
				} `json:"gates"`
			} `json:"plan"`
		}
		l.api.call(t, http.MethodPost, "/v1/runbooks/release-gateway/runs", body, http.StatusOK, &out)
		i := slices.IndexFunc(out.Plan.Gates, func(g struct {
			Name   string `json:"name"`
			Passed bool   `json:"passed"`
		}) bool {
			return g.Name == "credentials-rotated"
		})
		if i < 0 || !out.Plan.Gates[i].Passed {
			t.Errorf("release gates = %+v; want credentials-rotated passed", out.Plan.Gates)
		}
	})

	l.assertNoSecrets(t, run.ID, initial)
}

func newAgentTunnelLab(t *testing.T, v tunnelVariant) *agentTunnelLab {
	t.Helper()
	kind := v.kind
	lab, err := netlab.New(t.Context(), netlab.Options{Prefix: v.prefix, Sites: tunnelSites})
	if err != nil {
		t.Fatalf("building the lab: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	l := &agentTunnelLab{t: t, kind: kind, certs: v.certs, lab: lab, dir: t.TempDir(), bin: buildWarden(t), agents: map[string]*nsProc{}, flows: map[rotation.Pair]*netlab.Flow{}}
	for _, s := range lab.Sites() {
		for _, ns := range []string{s.LAN.NS, s.Gateway.NS} {
			if _, err := lab.ServeEcho(ns, netip.AddrPortFrom(netip.IPv6Unspecified(), tunnelEchoPort)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if kind == inventory.KindWireGuard {
		if l.wg, err = lab.WireGuardMesh(t.Context(), netlab.WireGuardOptions{PresharedKeys: true}); err != nil {
			t.Fatalf("starting the WireGuard mesh: %v", err)
		}
	} else {
		if l.ss, err = lab.StrongSwanMesh(t.Context(), netlab.StrongSwanOptions{Dir: t.TempDir(), Certificates: v.certs}); err != nil {
			t.Fatalf("starting the strongSwan mesh: %v", err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				for _, s := range tunnelSites {
					t.Logf("charon %s:\n%s", s, l.ss.Log(s))
				}
			}
		})
	}
	for _, tun := range l.tunnels() {
		if err := l.waitTraffic(t.Context(), rotation.PairOf(tun)); err != nil {
			t.Fatalf("%s before the incident: %v", rotation.PairOf(tun), err)
		}
	}

	pki := filepath.Join(l.dir, "pki")
	initArgs := []string{"agent", "init", "--dir", pki}
	for _, s := range lab.Sites() {
		initArgs = append(initArgs, "--ip", s.Gateway.V4.String(), "--ip", s.Gateway.V6.String())
	}
	l.warden(initArgs...)
	l.warden("credentials", "init-key", "--file", filepath.Join(l.dir, "master.key"))
	l.writeConfig(pki)

	for _, s := range lab.Sites() {
		socket := ""
		if l.ss != nil {
			ss, _ := l.ss.Site(s.Name)
			socket = ss.Socket
		}
		l.agents[s.Name] = startInNS(t, "agent-"+s.Name, s.Gateway.NS, l.bin, "agent",
			"--listen", "[::]:"+fmt.Sprint(agentPort),
			"--cert", filepath.Join(pki, agent.AgentCertFile), "--key", filepath.Join(pki, agent.AgentKeyFile),
			"--client-ca", filepath.Join(pki, agent.CAFile), "--state-dir", filepath.Join(l.dir, "agent-"+s.Name),
			"--confirm-window", "5s", "--heal-interval", "1h", "--backend", "nftables", "--block-backend", "nftables",
			"--vici-socket="+socket, "--log-level", "debug")
	}
	mgmt := lab.Mgmt().NS
	l.api = &apiNS{base: "http://" + netip.AddrPortFrom(lab.Mgmt().V4, apiPort).String(), people: l.people, c: nsHTTPClient(mgmt, nil)}
	l.ctrl = startInNS(t, "controller", mgmt, l.bin, "serve", "-c", filepath.Join(l.dir, "warden.yaml"), "--log-level", "debug")
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			t.Logf("controller log:\n%s", l.ctrl.log.String())
			for name, p := range l.agents {
				t.Logf("agent %s log:\n%s", name, p.log.String())
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if l.ctrl.exited() {
			t.Fatalf("controller exited: %v\n%s", l.ctrl.err, l.ctrl.log.String())
		}
		code, _, err := l.api.as(v1.RoleAdmin).do(t.Context(), http.MethodGet, "/readyz", nil)
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("controller not ready: %d %v", code, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.people.add(t, l.api.base, client.WithHTTPClient(l.api.c))
	return l
}

func (l *agentTunnelLab) warden(args ...string) {
	l.t.Helper()
	out, err := exec.CommandContext(l.t.Context(), l.bin, args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("warden %v: %v\n%s", args, err, out)
	}
}

func (l *agentTunnelLab) runIn(ns string, argv ...string) {
	l.t.Helper()
	if out, err := l.lab.Run(l.t.Context(), ns, argv...); err != nil {
		l.t.Fatalf("%v in %s: %v\n%s", argv, ns, err, out)
	}
}

func (l *agentTunnelLab) site(name string) netlab.Site {
	s, ok := l.lab.Site(name)
	if !ok {
		l.t.Fatalf("no site %q", name)
	}
	return s
}

// tunnels is the full mesh between the lab's sites.
func (l *agentTunnelLab) tunnels() []inventory.Tunnel {
	var out []inventory.Tunnel
	for i, a := range tunnelSites {
		for _, b := range tunnelSites[i+1:] {
			out = append(out, inventory.Tunnel{A: a, B: b, Kind: l.kind})
		}
	}
	return out
}

// inventory is the VPN: the full mesh of tunnels, gateways named after
// their sites (strongSwan connections are named after the peer's id), the
// agent at agentURL(site) on each, the WireGuard device and its onboarded
// public key or the IKE identity (and certificate, in a certificate mesh).
func (l *agentTunnelLab) inventory(agentURL func(netlab.Site) string) inventory.Inventory {
	var mgmt []string
	for _, p := range l.lab.ManagementPrefixes() {
		mgmt = append(mgmt, p.String())
	}
	inv := inventory.Inventory{Tunnels: l.tunnels()}
	for _, s := range l.lab.Sites() {
		inv.Sites = append(inv.Sites, inventory.Site{Name: s.Name, TimeZone: "UTC", Networks: []string{s.Prefix4.String(), s.Prefix6.String()}})
		gw := inventory.Gateway{ID: s.Name, Site: s.Name, Addresses: []string{s.Gateway.V4.String(), s.Gateway.V6.String()}, ManagementNetworks: mgmt,
			Agent: agentURL(s)}
		if l.wg != nil {
			ws, _ := l.wg.Site(s.Name)
			gw.WireGuard = &inventory.WireGuardEnd{Device: ws.Device, Endpoint: ws.Endpoint.String(), PublicKey: ws.PublicKey.String()}
		} else {
			ss, _ := l.ss.Site(s.Name)
			gw.StrongSwan = &inventory.StrongSwanEnd{Identity: ss.Identity}
			if cert, ok := l.ss.Certificate(s.Name); ok {
				gw.StrongSwan.Auth, gw.StrongSwan.CertificateSerial = inventory.AuthPubkey, cert.SerialNumber.Text(16)
			}
		}
		inv.Gateways = append(inv.Gateways, gw)
	}
	return inv
}

// openVault opens the controller's credential vault in the store at db
// with the lab's master key, to read what a response left behind; done
// closes the store.
func (l *agentTunnelLab) openVault(t *testing.T, db string) (v *rotation.Vault, done func()) {
	t.Helper()
	st, err := store.Open(t.Context(), db, "normal")
	if err != nil {
		t.Fatal(err)
	}
	key, err := rotation.LoadMasterKeyFile(filepath.Join(l.dir, "master.key"))
	if err == nil {
		v, err = rotation.OpenVault(t.Context(), st.DB(), key, nil)
	}
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	return v, func() { st.Close() }
}

// writeConfig describes the VPN to the controller: gateways named after
// their sites (strongSwan connections are named after the peer's id), an
// agent on each, the WireGuard device and its onboarded public key or the
// IKE identity, and the master key file.
func (l *agentTunnelLab) writeConfig(pki string) {
	l.t.Helper()
	inv := l.inventory(func(s netlab.Site) string { return "https://" + netip.AddrPortFrom(s.Gateway.V4, agentPort).String() })
	cfg := config.Defaults()
	cfg.Server.Listen = netip.AddrPortFrom(l.lab.Mgmt().V4, apiPort).String()
	cfg.Store.Path = filepath.Join(l.dir, "warden.db")
	l.people = labControllerAuth(l.t, &cfg, l.dir, pki)
	cfg.Credentials.MasterKeyFile = filepath.Join(l.dir, "master.key")
	if l.certs {
		// The company CA the gateways' certificates chain to: Warden signs
		// the CRL that revokes a with it.
		caCert, caKey := l.ss.CA()
		keyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
		if err != nil {
			l.t.Fatal(err)
		}
		cfg.Credentials.CACertFile, cfg.Credentials.CAKeyFile = filepath.Join(l.dir, "ca.pem"), filepath.Join(l.dir, "ca-key.pem")
		if err := os.WriteFile(cfg.Credentials.CACertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}), 0o644); err != nil {
			l.t.Fatal(err)
		}
		if err := os.WriteFile(cfg.Credentials.CAKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
			l.t.Fatal(err)
		}
	}
	cfg.Credentials.WaveSize, cfg.Credentials.UnitTimeout = 2, 20*time.Second
	cfg.Inventory = inv
	cfg.Reconcile.Interval = time.Hour
	cfg.Executor.BackoffBase, cfg.Executor.BackoffMax, cfg.Executor.MaxAttempts = 50*time.Millisecond, 500*time.Millisecond, 3
	if err := cfg.Validate(); err != nil {
		l.t.Fatalf("lab configuration: %v", err)
	}
	writeConfig(l.t, l.dir, cfg)
}

// probe sends one UDP echo from p.A's LAN to p.B's, through the tunnel.
func (l *agentTunnelLab) probe(ctx context.Context, from, to string) error {
	return l.lab.UDPEcho(ctx, l.site(from).LAN.NS, netip.AddrPortFrom(l.site(to).LAN.V4, tunnelEchoPort), probeTimeout)
}

func (l *agentTunnelLab) waitTraffic(ctx context.Context, p rotation.Pair) error {
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if err = l.probe(ctx, p.A, p.B); err == nil {
			return nil
		}
	}
	return err
}

func (l *agentTunnelLab) startFlow(p rotation.Pair) {
	l.t.Helper()
	f, err := l.lab.StartFlow(l.site(p.B).LAN.NS, netip.AddrPortFrom(l.site(p.A).LAN.V4, tunnelEchoPort), flowInterval)
	if err != nil {
		l.t.Fatal(err)
	}
	l.flows[p] = f
}

// initialSecrets are the mesh's keys before the incident, keyed by pair.
func (l *agentTunnelLab) initialSecrets() map[rotation.Pair][]byte {
	out := map[rotation.Pair][]byte{}
	for _, tun := range l.tunnels() {
		p := rotation.PairOf(tun)
		if l.wg != nil {
			k, _ := l.wg.PresharedKey(p.A, p.B)
			out[p] = append([]byte(nil), k[:]...)
		} else if k, ok := l.ss.PresharedKey(p.A, p.B); ok {
			out[p] = k
		}
	}
	return out
}

// device reads a site's WireGuard device directly (the test's own view,
// not the agent's).
func (l *agentTunnelLab) device(site string) *wgtypes.Device {
	l.t.Helper()
	c, err := wgctrl.New()
	if err != nil {
		l.t.Fatal(err)
	}
	defer c.Close()
	ws, _ := l.wg.Site(site)
	d, err := c.Device(ws.Device)
	if err != nil {
		l.t.Fatal(err)
	}
	return d
}

func peerOf(d *wgtypes.Device, key wgtypes.Key) *wgtypes.Peer {
	for i := range d.Peers {
		if d.Peers[i].PublicKey == key {
			return &d.Peers[i]
		}
	}
	return nil
}

// assertNewKeys checks, on the devices themselves, that both ends of every
// healthy pair hold the same new key, not the one they had.
func (l *agentTunnelLab) assertNewKeys(t *testing.T, fleet []rotation.Pair, initial map[rotation.Pair][]byte) {
	t.Helper()
	if l.certs {
		// Certificates authenticate these pairs: no shared key was loaded.
		for _, p := range fleet {
			if ids := l.sharedKeys(p.A, p.B); len(ids) != 0 {
				t.Errorf("%s: shared keys %v loaded on a certificate pair", p, ids)
			}
		}
		return
	}
	for _, p := range fleet {
		if l.wg != nil {
			da, db := l.device(p.A), l.device(p.B)
			ea, eb := peerOf(da, db.PublicKey), peerOf(db, da.PublicKey)
			if ea == nil || eb == nil {
				t.Errorf("%s: the ends no longer list each other", p)
				continue
			}
			if ea.PresharedKey != eb.PresharedKey || slices.Equal(ea.PresharedKey[:], initial[p]) || ea.PresharedKey == (wgtypes.Key{}) {
				t.Errorf("%s: preshared keys not rotated to one new key", p)
			}
			continue
		}
		for _, end := range [][2]string{{p.A, p.B}, {p.B, p.A}} {
			ids := l.sharedKeys(end[0], end[1])
			if len(ids) != 1 || !strings.HasPrefix(ids[0], end[1]+"/cred-") {
				t.Errorf("%s: %s holds shared keys %v for %s; want exactly one Warden generated", p, end[0], ids, end[1])
			}
		}
	}
}

// sharedKeys lists the shared-key ids site's charon holds for peer.
func (l *agentTunnelLab) sharedKeys(site, peer string) []string {
	l.t.Helper()
	ss, _ := l.ss.Site(site)
	return viciSharedKeys(l.t, ss.Socket, peer)
}

// assertRevoked checks every peer, from the daemons' own state: no entry
// for a's key (WireGuard) or no connection, key or SA for a (strongSwan).
func (l *agentTunnelLab) assertRevoked(t *testing.T) {
	t.Helper()
	for _, peer := range []string{"b", "c", "d"} {
		if l.wg != nil {
			ws, _ := l.wg.Site(compromisedSite)
			if peerOf(l.device(peer), ws.PublicKey) != nil {
				t.Errorf("%s still lists a's key", peer)
			}
			continue
		}
		ss, _ := l.ss.Site(peer)
		if ids := viciSharedKeys(t, ss.Socket, compromisedSite); len(ids) != 0 {
			t.Errorf("%s still holds shared keys for a: %v", peer, ids)
		}
		if n := len(ikeSAs(t, ss.Socket, compromisedSite)); n != 0 {
			t.Errorf("%s holds %d IKE SAs with a", peer, n)
		}
		if slices.Contains(viciConns(t, ss.Socket), compromisedSite) {
			t.Errorf("%s still has a connection to a", peer)
		}
		if l.certs {
			caCert, _ := l.ss.CA()
			cert, _ := l.ss.Certificate(compromisedSite)
			if !slices.ContainsFunc(viciCRLs(t, ss.Socket), func(der []byte) bool { return strongswan.CRLRevokes(der, caCert, cert.SerialNumber) }) {
				t.Errorf("%s holds no CRL from the CA revoking a's certificate", peer)
			}
		}
	}
}

// viciCRLs lists the CRLs a charon holds (DER).
func viciCRLs(t *testing.T, socket string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, ev := range viciStream(t, socket, "list-certs", "list-cert", map[string]any{"type": "X509_CRL"}) {
		if d, ok := ev.Get("data").(string); ok {
			out = append(out, []byte(d))
		}
	}
	return out
}

// noTunnel tries to bring a tunnel from a to peer up and shows it fails:
// WireGuard, traffic from a's LAN makes a's device initiate with its old
// entry, and peer never completes a handshake with a; strongSwan, a's
// charon initiates and is refused.
func (l *agentTunnelLab) noTunnel(ctx context.Context, peer string) error {
	if l.wg != nil {
		before := time.Now()
		if err := l.probe(ctx, compromisedSite, peer); err == nil {
			return fmt.Errorf("a's LAN reaches %s's LAN after the revocation", peer)
		}
		d := l.device(compromisedSite)
		pd := l.device(peer)
		if e := peerOf(d, pd.PublicKey); e != nil && e.LastHandshakeTime.After(before) {
			return fmt.Errorf("a completed a handshake with %s after the revocation", peer)
		}
		return nil
	}
	if err := l.ss.Initiate(ctx, compromisedSite, peer); err == nil {
		return fmt.Errorf("a established an IKE SA with %s after the revocation", peer)
	}
	if !l.certs {
		return nil
	}
	// The certificate alone must keep a out: lift the block at peer and
	// restore its connection to a, as a person restoring a backup would;
	// a still cannot authenticate, because its certificate is revoked.
	if out, err := l.lab.Run(ctx, l.site(peer).Gateway.NS, "nft", "delete", "table", "inet", "warden_block"); err != nil {
		return fmt.Errorf("lifting the block at %s: %v: %s", peer, err, out)
	}
	if err := l.ss.LoadConnection(ctx, peer, compromisedSite); err != nil {
		return err
	}
	// The first attempt may still be retransmitting: a new initiate
	// would join it. Wait until a has given up.
	as, _ := l.ss.Site(compromisedSite)
	for deadline := time.Now().Add(20 * time.Second); len(ikeSAs(l.t, as.Socket, peer)) > 0; {
		if time.Now().After(deadline) {
			return fmt.Errorf("a still holds an IKE SA with %s", peer)
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := strings.Count(l.ss.Log(peer), "certificate was revoked")
	if err := l.ss.Initiate(ctx, compromisedSite, peer); err == nil {
		return fmt.Errorf("a authenticated at %s with its revoked certificate", peer)
	}
	if strings.Count(l.ss.Log(peer), "certificate was revoked") <= before {
		return fmt.Errorf("%s refused a, but its log does not say the certificate was revoked", peer)
	}
	return nil
}

// assertNoSecrets stops the controller and the agents, then looks for
// every secret of the lab (the mesh's keys and every key the vault holds,
// raw, base64, hex) in the processes' logs, the run, and the audit log.
func (l *agentTunnelLab) assertNoSecrets(t *testing.T, runID string, initial map[rotation.Pair][]byte) {
	t.Helper()
	var texts []string
	_, runJSON, err := l.api.do(t.Context(), http.MethodGet, "/v1/runs/"+runID, nil)
	if err != nil {
		t.Fatal(err)
	}
	texts = append(texts, string(runJSON))
	l.ctrl.stop()
	for _, p := range l.agents {
		p.stop()
	}
	texts = append(texts, l.ctrl.log.String())
	for _, p := range l.agents {
		texts = append(texts, p.log.String())
	}
	audit, err := exec.CommandContext(t.Context(), l.bin, "audit", "export", "--db", filepath.Join(l.dir, "warden.db")).Output()
	if err != nil || len(audit) == 0 {
		t.Fatalf("warden audit export: %v", err)
	}
	texts = append(texts, string(audit))
	credsOut, err := exec.CommandContext(t.Context(), l.bin, "credentials", "list", "--json", "-c", filepath.Join(l.dir, "warden.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("warden credentials list: %v\n%s", err, credsOut)
	}
	texts = append(texts, string(credsOut))
	t.Logf("credential inventory after the response:\n%s", credsOut)

	var secrets [][]byte
	for _, k := range initial {
		secrets = append(secrets, k)
	}
	v, closeVault := l.openVault(t, filepath.Join(l.dir, "warden.db"))
	defer closeVault()
	list, err := v.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	generated := 0
	for _, c := range list {
		s, err := v.Secret(t.Context(), c.ID)
		if errors.Is(err, rotation.ErrNoSecret) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		secrets, generated = append(secrets, s.Bytes()), generated+1
	}
	if l.ss != nil && !l.certs {
		l.assertCharonHoldsTheVaultKey(t, v, rotation.NewPair(inventory.KindStrongSwan, "b", "c"))
	}
	if l.wg != nil {
		// The key sealed in the vault is the one both devices hold.
		for _, p := range rotation.Fleet(l.tunnels(), compromisedSite) {
			cred, err := v.Current(t.Context(), rotation.KindWireGuardPSK, p, "")
			if err != nil {
				t.Fatal(err)
			}
			secret, err := v.Secret(t.Context(), cred.ID)
			if err != nil {
				t.Fatal(err)
			}
			da, db := l.device(p.A), l.device(p.B)
			for _, e := range []*wgtypes.Peer{peerOf(da, db.PublicKey), peerOf(db, da.PublicKey)} {
				if e == nil || !slices.Equal(e.PresharedKey[:], secret.Bytes()) {
					t.Errorf("%s: a device does not hold the vault's key %s", p, cred.ID)
				}
			}
		}
	}
	if l.certs {
		_, caKey := l.ss.CA()
		der, err := x509.MarshalPKCS8PrivateKey(caKey)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, der)
	} else if generated < 3 {
		t.Fatalf("the vault holds %d generated secrets; want one per healthy pair at least", generated)
	}
	for i, s := range secrets {
		for _, form := range []string{string(s), base64.StdEncoding.EncodeToString(s), base64.RawStdEncoding.EncodeToString(s), hex.EncodeToString(s)} {
			for _, text := range texts {
				if strings.Contains(text, form) {
					t.Fatalf("secret %d of %d appears in a log, the run, the audit or the credential inventory", i, len(secrets))
				}
			}
		}
	}
	t.Logf("no secret among %d (raw, base64, hex) in %d bytes of logs, run, audit and inventory", len(secrets), len(strings.Join(texts, "")))
}

// viciSharedKeys lists the shared-key ids a charon holds for peer.
func viciSharedKeys(t *testing.T, socket, peer string) []string {
	t.Helper()
	r := viciCall(t, socket, "get-shared", nil)
	keys, _ := r.Get("keys").([]string)
	var out []string
	for _, k := range keys {
		if strings.HasPrefix(k, peer+"/") {
			out = append(out, k)
		}
	}
	return out
}

// viciConns lists the connections a charon has loaded.
func viciConns(t *testing.T, socket string) []string {
	t.Helper()
	conns, _ := viciCall(t, socket, "get-conns", nil).Get("conns").([]string)
	return conns
}

func viciCall(t *testing.T, socket, cmd string, kv map[string]any) *vici.Message {
	t.Helper()
	c := viciDial(t, socket)
	defer c.Close()
	r, err := c.Call(t.Context(), cmd, viciMessage(t, kv))
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return r
}

// viciStream runs a streamed VICI command and returns its events.
func viciStream(t *testing.T, socket, cmd, event string, kv map[string]any) []*vici.Message {
	t.Helper()
	c := viciDial(t, socket)
	defer c.Close()
	evs, err := c.Stream(t.Context(), cmd, event, viciMessage(t, kv))
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return evs
}

func viciDial(t *testing.T, socket string) charon.Conn {
	t.Helper()
	c, err := strongswan.SocketDialer{"x": socket}.Dial(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// viciMessage builds a message from kv (nil for none).
func viciMessage(t *testing.T, kv map[string]any) *vici.Message {
	t.Helper()
	if kv == nil {
		return nil
	}
	m := vici.NewMessage()
	for k, v := range kv {
		if err := m.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// assertCharonHoldsTheVaultKey proves that the key Warden sealed in its
// vault is, byte for byte, the key b's charon authenticates p with (the
// key crossed the controller, the agent and VICI): c's copy is replaced by
// the vault's secret, the pair's SAs are torn down at both ends, and b must
// authenticate afresh against it.
func (l *agentTunnelLab) assertCharonHoldsTheVaultKey(t *testing.T, v *rotation.Vault, p rotation.Pair) {
	t.Helper()
	ctx := t.Context()
	cred, err := v.Current(ctx, rotation.KindStrongSwanPSK, p, "")
	if err != nil {
		t.Fatal(err)
	}
	secret, err := v.Secret(ctx, cred.ID)
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := l.ss.Site(p.A)
	sb, _ := l.ss.Site(p.B)
	id := p.A + "/" + cred.ID
	viciCall(t, sb.Socket, "unload-shared", map[string]any{"id": id})
	viciCall(t, sb.Socket, "load-shared", map[string]any{"id": id, "type": "IKE", "data": string(secret.Bytes()), "owners": []string{sb.Identity, sa.Identity}})
	// Both ends may hold SAs of the pair (or one end none: charon then
	// answers "no matching SAs"). Terminating one end sends a DELETE that
	// can remove the other end's SA between listing and terminating it, so
	// that answer is expected here too.
	for _, end := range [][2]string{{sa.Socket, p.B}, {sb.Socket, p.A}} {
		if len(ikeSAs(t, end[0], end[1])) == 0 {
			continue
		}
		c := viciDial(t, end[0])
		_, err := c.Call(ctx, "terminate", viciMessage(t, map[string]any{"ike": end[1], "force": "yes"}))
		c.Close()
		if err != nil && !strings.Contains(err.Error(), "no matching SAs") {
			t.Fatalf("terminate: %v", err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); len(ikeSAs(t, sa.Socket, p.B))+len(ikeSAs(t, sb.Socket, p.A)) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: SAs not gone after terminate", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := l.ss.Initiate(ctx, p.A, p.B); err != nil {
		t.Fatalf("%s: %s does not authenticate against the vault's key: %v", p, p.A, err)
	}
}
