package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/wire"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/internal/charon"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
	"github.com/warden-ir/warden/providers/vsphere"
	"github.com/warden-ir/warden/providers/vsphere/vsim"
	"github.com/warden-ir/warden/rotation"
	"github.com/warden-ir/warden/store"
)

// The tunnel part of the crash matrix (issue #11). A four-site VPN
// (wireguard-go, or charon with kernel-libipsec, in each gateway's
// namespace, `warden agent` next to it), a vCenter simulator holding the
// gateways' VMs, a loopback notification receiver, and a real `warden
// serve` that a person's approval sets on respond-confirmed-compromise for
// site a. The controller reaches every agent, vCenter and the receiver
// through forwarders of the test's own (holdProxy): each passes requests
// on (terminating TLS with a certificate the controller trusts) and can
// hold one.
//
// Kill points, made by holding one request the controller sends:
//
//   - in flight: the first request of the step that changes something
//     (capture_volatile: the agent's capture; revoke_peer: the first change
//     of trust in a at a peer; rotate_credentials: the first preshared key
//     sent to a device; notify: the POST) is passed to the device or the
//     receiver, which acts on it, and its answer is held. The controller
//     is killed while it waits for that answer: the side effect happened,
//     the controller does not know.
//   - at the boundary after a step: every request is checked against the
//     run (read through the API) and the first one sent after the step is
//     recorded succeeded is held before it reaches anything. The
//     controller records a step's success and starts the next step in one
//     go, so "succeeded, next not started" is not observable from
//     outside; holding the next step's first request is the same point for
//     every side effect (nothing of the next step reached a device or the
//     receiver), while the store shows the next step begun, attempt 1.
//
// Both are exact, not timing-dependent: once the rule picks a request,
// every later request is held before it reaches anything too, so the kill
// lands between the picked request and the next. The controller restarts
// after 0.1 s and, for in-flight kills, after 5 s.

// crashTunnelCase is one cell of the matrix.
type crashTunnelCase struct {
	name string
	// step is the step the kill is about: in flight inside it, or at the
	// boundary right after it.
	step         string
	inFlight     bool
	restartAfter time.Duration
}

// crashVariant is one VPN the matrix runs on. Prefixes name the labs'
// namespaces (netlab.Options.Prefix): unique in the repository.
type crashVariant struct {
	name, kind, prefix string
	cases              []crashTunnelCase
}

// TestCrashConfirmedCompromise kills `warden serve` (SIGKILL) inside and
// right after capture_volatile, revoke_peer, rotate_credentials and notify
// of respond-confirmed-compromise, restarts it on the same store, and
// checks that the run finishes once with every side effect done once: one
// capture kept as evidence, one snapshot and one isolation (vCenter and the
// gateway's firewall), trust in a removed and a blocked once at every peer
// and a cut off from each, one new preshared key per healthy pair that is
// the vault's current key at both ends and carries traffic, one
// notification (posted a second time, under the same Idempotency-Key, only
// after a kill inside the POST), and an intact audit chain. The vSphere
// steps are TestCrashMidStepFinishesOnce's. WireGuard runs the whole
// matrix; strongSwan the kill points whose mechanism differs by VPN
// (revocation and rotation).
func TestCrashConfirmedCompromise(t *testing.T) {
	netlabtest.Skip(t, "nft")
	bin := buildWarden(t)
	const quick, slow = 100 * time.Millisecond, 5 * time.Second
	var full []crashTunnelCase
	for _, step := range []string{actions.NameCaptureVolatile, actions.NameRevokePeer, actions.NameRotateCredentials, actions.NameNotify} {
		full = append(full,
			crashTunnelCase{name: step + " in flight, restart 0.1s", step: step, inFlight: true, restartAfter: quick},
			crashTunnelCase{name: step + " in flight, restart 5s", step: step, inFlight: true, restartAfter: slow})
		if step != actions.NameNotify { // notify is the last step: no request follows it
			full = append(full, crashTunnelCase{name: step + " at boundary", step: step, restartAfter: quick})
		}
	}
	// What differs by VPN: the revocation in flight and right after it
	// (the rotation's first request held), the rotation in flight.
	tunnelOnly := slices.DeleteFunc(slices.Clone(full), func(c crashTunnelCase) bool {
		switch c.step {
		case actions.NameRevokePeer:
			return c.restartAfter == slow
		case actions.NameRotateCredentials:
			return !c.inFlight
		}
		return true
	})
	for _, v := range []crashVariant{
		{name: "wireguard", kind: inventory.KindWireGuard, prefix: "e2kw", cases: full},
		{name: "strongswan", kind: inventory.KindStrongSwan, prefix: "e2ks", cases: tunnelOnly},
	} {
		t.Run(v.name, func(t *testing.T) {
			if v.kind == inventory.KindWireGuard {
				netlabtest.SkipWireGuard(t)
			} else {
				netlabtest.SkipStrongSwan(t)
			}
			for _, tc := range v.cases {
				t.Run(tc.name, func(t *testing.T) {
					began := time.Now()
					crashConfirmedCompromise(t, bin, v, tc)
					t.Logf("case took %v", time.Since(began).Round(10*time.Millisecond))
				})
			}
		})
	}
}

func crashConfirmedCompromise(t *testing.T, bin string, v crashVariant, tc crashTunnelCase) {
	ctx := t.Context()
	l := newCrashTunnelLab(t, bin, v)
	first := l.serve()
	incident, runID := l.confirmCompromise()

	// Arm the kill point, then let the run go.
	rule := l.boundaryRule(runID, tc.step)
	if tc.inFlight {
		rule = l.inFlightRule(tc.step)
	}
	l.kp.arm(rule)
	if code, body, err := l.api.as(v1.RoleApprover).do(ctx, http.MethodPost, "/v1/runs/"+runID+"/approve", []byte(`{}`)); err != nil || code != http.StatusOK {
		t.Fatalf("approving the run: %d %v %s", code, err, body)
	}
	select {
	case <-l.kp.reached:
	case <-time.After(90 * time.Second):
		r, _ := l.api.run(ctx, runID)
		t.Fatalf("the kill point was never reached; run %s, steps %s\ncontroller log:\n%s", r.State, stepStates(r), first.log)
	}
	first.kill(t)
	l.kp.disarm() // held requests end unanswered; later ones pass
	t.Logf("killed the controller holding %s", l.kp.heldRequest())

	// The kill landed where it was meant to.
	mid := l.env.storedRun(runID)
	if mid.State != store.RunRunning {
		t.Fatalf("after the kill the run is %s, want running", mid.State)
	}
	resumed := tc.step // the step the restarted controller applies again
	if tc.inFlight {
		if st := stepOf(t, mid, tc.step).State; st != store.StepRunning {
			t.Fatalf("after the kill step %s is %s, want running (in flight)", tc.step, st)
		}
	} else {
		i := slices.IndexFunc(mid.Steps, func(s store.Step) bool { return s.Action == tc.step })
		next := mid.Steps[i+1]
		if mid.Steps[i].State != store.StepSucceeded || (next.State != store.StepRunning && next.State != store.StepPending) || next.Attempts > 1 {
			t.Fatalf("after the kill: %s; want %s succeeded and %s at most begun", stepStates(mid), tc.step, next.Action)
		}
		for _, s := range mid.Steps[i+2:] {
			if s.State != store.StepPending {
				t.Fatalf("after the kill: %s; want nothing after %s begun", stepStates(mid), next.Action)
			}
		}
		resumed = ""
		if next.State == store.StepRunning {
			resumed = next.Action
		}
		t.Logf("at the kill: %s", stepStates(mid))
	}

	time.Sleep(tc.restartAfter) // the scenario, not a wait for a condition
	restarted := time.Now()
	second := l.serve()
	final := l.waitRun(runID)
	t.Logf("the restarted controller finished the run %v after it started", time.Since(restarted).Round(time.Millisecond))
	if final.State != store.RunSucceeded || final.Error != "" {
		t.Fatalf("resumed run %s %q: %s\nlog:\n%s", final.State, final.Error, stepStates(final), second.log)
	}
	for _, s := range final.Steps {
		want := 1
		if s.Action == resumed {
			want = 2 // begun before the kill, once after
		}
		if s.State != store.StepSucceeded || s.Attempts != want {
			t.Errorf("step %s: %s after %d attempt(s), want succeeded after %d", s.Name, s.State, s.Attempts, want)
		}
	}
	second.stop(t)

	l.assertEvidence(incident, stepOf(t, final, actions.NameCaptureVolatile).IdemKey)
	l.assertVM(incident)
	l.assertIsolatedOnce()
	l.assertRevokedOnce()
	l.assertRotatedOnce(stepOf(t, final, actions.NameRotateCredentials).IdemKey)
	l.assertNotifiedOnce(tc.step == actions.NameNotify && tc.inFlight)
	l.env.assertAudit(runID)
	l.assertCutOff() // last: it lifts a's own quarantine
	t.Logf("run %s: %s", runID, l.summary(tc))
}

// crashTunnelLab is one case's world.
type crashTunnelLab struct {
	*agentTunnelLab // the devices, probes and revocation checks
	env             *crashEnv
	vc              *vsim.Lab
	kp              *killPoint
	agentProxies    map[string]*holdProxy // by gateway
	vcenter, hook   *holdProxy
	hooks           *webhookCounter
	api             apiCall
	pki             string
}

func newCrashTunnelLab(t *testing.T, bin string, v crashVariant) *crashTunnelLab {
	t.Helper()
	ctx := t.Context()
	lab, err := netlab.New(ctx, netlab.Options{Prefix: v.prefix, Sites: tunnelSites})
	if err != nil {
		t.Fatalf("building the lab: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	base := &agentTunnelLab{t: t, kind: v.kind, lab: lab, dir: t.TempDir(), bin: bin,
		agents: map[string]*nsProc{}, flows: map[rotation.Pair]*netlab.Flow{}}
	for _, s := range lab.Sites() {
		for _, ns := range []string{s.LAN.NS, s.Gateway.NS} {
			if _, err := lab.ServeEcho(ns, netip.AddrPortFrom(netip.IPv6Unspecified(), tunnelEchoPort)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v.kind == inventory.KindWireGuard {
		if base.wg, err = lab.WireGuardMesh(ctx, netlab.WireGuardOptions{PresharedKeys: true}); err != nil {
			t.Fatalf("starting the WireGuard mesh: %v", err)
		}
	} else {
		if base.ss, err = lab.StrongSwanMesh(ctx, netlab.StrongSwanOptions{Dir: t.TempDir()}); err != nil {
			t.Fatalf("starting the strongSwan mesh: %v", err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				for _, s := range tunnelSites {
					t.Logf("charon %s:\n%s", s, base.ss.Log(s))
				}
			}
		})
	}
	l := &crashTunnelLab{agentTunnelLab: base, kp: newKillPoint(), agentProxies: map[string]*holdProxy{}, pki: filepath.Join(base.dir, "pki")}
	var all []rotation.Pair
	for _, tun := range l.tunnels() {
		all = append(all, rotation.PairOf(tun))
	}
	l.eachPair(all, "before the incident", func(p rotation.Pair) error { return l.waitTraffic(ctx, p) })

	// The agents' certificate also names 127.0.0.1, where the controller
	// meets the forwarders that present it.
	initArgs := []string{"agent", "init", "--dir", l.pki, "--ip", "127.0.0.1"}
	for _, s := range lab.Sites() {
		initArgs = append(initArgs, "--ip", s.Gateway.V4.String(), "--ip", s.Gateway.V6.String())
	}
	l.warden(initArgs...)
	l.warden("credentials", "init-key", "--file", filepath.Join(l.dir, "master.key"))
	for _, s := range lab.Sites() {
		socket := ""
		if l.ss != nil {
			ss, _ := l.ss.Site(s.Name)
			socket = ss.Socket
		}
		l.agents[s.Name] = startInNS(t, "agent-"+s.Name, s.Gateway.NS, bin, "agent",
			"--listen", "[::]:"+fmt.Sprint(agentPort),
			"--cert", filepath.Join(l.pki, agent.AgentCertFile), "--key", filepath.Join(l.pki, agent.AgentKeyFile),
			"--client-ca", filepath.Join(l.pki, agent.CAFile), "--state-dir", filepath.Join(l.dir, "agent-"+s.Name),
			"--confirm-window", "5s", "--heal-interval", "1h", "--backend", "nftables", "--block-backend", "nftables",
			"--vici-socket="+socket, "--log-level", "debug")
	}

	var vms []string
	for _, s := range tunnelSites {
		vms = append(vms, crashVM(s))
	}
	if l.vc, err = vsim.Start(ctx, vsim.Options{Gateways: vms}); err != nil {
		t.Fatalf("starting the simulator: %v", err)
	}
	t.Cleanup(l.vc.Close)

	serverCert, err := tls.LoadX509KeyPair(filepath.Join(l.pki, agent.AgentCertFile), filepath.Join(l.pki, agent.AgentKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	clientCert, err := tls.LoadX509KeyPair(filepath.Join(l.pki, agent.ControllerCertFile), filepath.Join(l.pki, agent.ControllerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	agentRoots := certPool(t, filepath.Join(l.pki, agent.CAFile))
	for _, s := range lab.Sites() {
		// From the management network, as the controller would.
		c := nsHTTPClient(lab.Mgmt().NS, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: agentRoots, Certificates: []tls.Certificate{clientCert}})
		c.Timeout = 90 * time.Second
		l.agentProxies[s.Name] = startHoldProxy(t, l.kp, proxyTarget{name: "agent " + s.Name, gateway: s.Name,
			upstream: "https://" + netip.AddrPortFrom(s.Gateway.V4, agentPort).String(), client: c}, &serverCert)
	}
	vcURL := *l.vc.URL
	vcURL.User, vcURL.Path = nil, ""
	l.vcenter = startHoldProxy(t, l.kp, proxyTarget{name: "vcenter", upstream: vcURL.String(), client: &http.Client{Timeout: 90 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certPool(t, l.vc.CAFile)}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, &serverCert)
	l.hooks = startWebhookCounter(t)
	l.hook = startHoldProxy(t, l.kp, proxyTarget{name: "notify", upstream: l.hooks.url, client: &http.Client{Timeout: 30 * time.Second}}, nil)
	t.Cleanup(l.kp.disarm) // registered after the forwarders' own cleanups: runs before them

	l.env = l.writeCrashConfig(bin)
	l.api = l.env.api
	for _, s := range tunnelSites {
		l.waitAgent(s)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			for _, s := range tunnelSites {
				t.Logf("agent %s log:\n%s", s, l.agents[s].log.String())
			}
		}
	})
	return l
}

func crashVM(site string) string { return "vm-" + site }

func certPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", file)
	}
	return pool
}

// writeCrashConfig describes the lab to the controller: every gateway's
// agent, vCenter and the notification channel behind the forwarders, the
// vault's master key.
func (l *crashTunnelLab) writeCrashConfig(bin string) *crashEnv {
	t := l.t
	inv := l.inventory(func(s netlab.Site) string { return l.agentProxies[s.Name].url() })
	for i, gw := range inv.Gateways {
		inv.Gateways[i].VM = crashVM(gw.Site)
	}
	vc := l.vc.Config()
	cfg := config.Defaults()
	cfg.Server.Listen = freeAddr(t)
	people := labControllerAuth(t, &cfg, l.dir, l.pki)
	cfg.Store.Path = filepath.Join(l.dir, "warden.db")
	cfg.Evidence.Dir = filepath.Join(l.dir, "evidence")
	cfg.Credentials.MasterKeyFile = filepath.Join(l.dir, "master.key")
	cfg.Credentials.WaveSize, cfg.Credentials.UnitTimeout = 2, 20*time.Second
	cfg.VSphere = vsphereConfig(vc)
	cfg.VSphere.URL, cfg.VSphere.CAFile = l.vcenter.url()+"/sdk", filepath.Join(l.pki, agent.CAFile)
	cfg.Notify = config.Notify{Default: "default", Channels: []config.Channel{{Name: "default", URL: l.hook.url()}}}
	cfg.Inventory = inv
	cfg.Reconcile.Interval = time.Hour
	cfg.Drift.Interval = 0
	cfg.Executor.BackoffBase, cfg.Executor.BackoffMax, cfg.Executor.MaxAttempts = 10*time.Millisecond, 100*time.Millisecond, 3
	cfgPath := writeConfig(t, l.dir, cfg)
	return &crashEnv{t: t, bin: bin, cfgPath: cfgPath, dbPath: cfg.Store.Path, env: []string{"WARDEN_VSPHERE_PASSWORD=" + vc.Password},
		api: apiCall{base: "http://" + cfg.Server.Listen, people: people}}
}

// waitAgent waits until site's agent answers.
func (l *crashTunnelLab) waitAgent(site string) {
	l.t.Helper()
	c := newAgentCaller(l.t, l.lab.Mgmt().NS, l.pki, "https://"+netip.AddrPortFrom(l.site(site).Gateway.V4, agentPort).String())
	waitFor(l.t, "agent "+site, 30*time.Second, func() (bool, error) {
		_, err := c.send(l.t.Context(), wire.KindObserve, nil, nil)
		return err == nil, err
	})
}

// serve starts a controller and waits until it is ready.
func (l *crashTunnelLab) serve() *proc {
	l.t.Helper()
	p := l.env.serve()
	l.t.Cleanup(func() {
		if l.t.Failed() || os.Getenv("E2E_LOGS") != "" {
			l.t.Logf("controller log:\n%s", p.log.String())
		}
	})
	return p
}

func (l *crashTunnelLab) waitRun(id string) store.Run {
	l.t.Helper()
	return l.api.waitRun(l.t, id, 90*time.Second)
}

// confirmCompromise reports a tampered file on a: the policy proposes
// respond-confirmed-compromise and waits for a person's approval. It
// returns the incident and the run.
func (l *crashTunnelLab) confirmCompromise() (incident, run string) {
	l.t.Helper()
	body, _ := json.Marshal(map[string]any{
		"kind": "integrity_violation", "gateway": compromisedSite, "severity": "critical", "confidence": 0.9, "source": "e2e-fim",
		"summary": "tunnel configuration changed outside change control on " + compromisedSite,
	})
	code, data, err := l.api.as(v1.RoleIntake).do(l.t.Context(), http.MethodPost, "/v1/indicators", body)
	if err != nil || code != http.StatusAccepted {
		l.t.Fatalf("posting the indicator: %d %v %s", code, err, data)
	}
	var out struct {
		Results []struct {
			IncidentID string `json:"incident_id"`
			RunID      string `json:"run_id"`
		} `json:"results"`
	}
	if err := json.Unmarshal(data, &out); err != nil || len(out.Results) != 1 || out.Results[0].RunID == "" {
		l.t.Fatalf("the indicator started no run: %v %s", err, data)
	}
	r, err := l.api.run(l.t.Context(), out.Results[0].RunID)
	if err != nil || r.State != store.RunAwaitingApproval || r.Runbook != "respond-confirmed-compromise" {
		l.t.Fatalf("the indicator's run: %v %s %s, want respond-confirmed-compromise awaiting approval", err, r.Runbook, r.State)
	}
	return out.Results[0].IncidentID, r.ID
}

// viciRevocations are the VICI commands that remove trust at a peer.
var viciRevocations = []string{"terminate", "unload-conn", "unload-shared"}

// inFlightRule holds the answer to the first request of step that changes
// something on a device or at the receiver.
func (l *crashTunnelLab) inFlightRule(step string) holdRule {
	aKey := ""
	if l.wg != nil {
		aKey = l.siteKey(compromisedSite).String()
	}
	return func(_ context.Context, r upstreamRequest) holdMode {
		var hit bool
		switch step {
		case actions.NameCaptureVolatile:
			hit = r.gateway == compromisedSite && r.kind == wire.KindCapture
		case actions.NameRevokePeer:
			hit = (aKey != "" && slices.Contains(r.removed, aKey)) ||
				(r.gateway != compromisedSite && slices.Contains(viciRevocations, r.vici))
		case actions.NameRotateCredentials:
			hit = len(r.psks) > 0
		case actions.NameNotify:
			hit = r.to == "notify"
		}
		if hit {
			return holdAfter
		}
		return pass
	}
}

// boundaryRule holds, before it reaches anything, the first request sent
// after step is recorded succeeded (read through the API).
func (l *crashTunnelLab) boundaryRule(runID, step string) holdRule {
	return func(ctx context.Context, _ upstreamRequest) holdMode {
		r, err := l.api.run(ctx, runID)
		if err != nil {
			return pass
		}
		for _, s := range r.Steps {
			if s.Action == step && s.State == store.StepSucceeded {
				return holdBefore
			}
		}
		return pass
	}
}

func (l *crashTunnelLab) siteKey(site string) wgtypes.Key {
	ws, _ := l.wg.Site(site)
	return ws.PublicKey
}

// eachPair runs check on every pair at once and fails the test with every
// error.
func (l *crashTunnelLab) eachPair(pairs []rotation.Pair, when string, check func(rotation.Pair) error) {
	l.t.Helper()
	errs := make([]error, len(pairs))
	var wg sync.WaitGroup
	for i, p := range pairs {
		wg.Go(func() {
			if err := check(p); err != nil {
				errs[i] = fmt.Errorf("%s %s: %w", p, when, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		l.t.Fatal(err)
	}
}

// assertEvidence: the capture is kept once, complete (its manifest last).
func (l *crashTunnelLab) assertEvidence(incident, captureKey string) {
	l.t.Helper()
	st, err := store.Open(l.t.Context(), l.env.dbPath, "normal")
	if err != nil {
		l.t.Fatal(err)
	}
	defer st.Close()
	ledger, err := evidence.Open(l.t.Context(), st.DB(), filepath.Join(l.dir, "evidence"))
	if err != nil {
		l.t.Fatal(err)
	}
	recs, err := ledger.List(l.t.Context(), incident)
	if err != nil {
		l.t.Fatal(err)
	}
	manifests, captured := 0, map[string]int{}
	for _, r := range recs {
		if r.Kind != evidence.KindVolatile {
			continue
		}
		captured[r.Note]++
		if strings.HasPrefix(r.Name, "manifest") {
			manifests++
		}
	}
	if manifests != 1 || len(captured) != 1 || captured["capture:"+captureKey] == 0 {
		l.t.Errorf("volatile evidence of incident %s: %d manifests, artefacts per capture %v; want one capture, under key %s", incident, manifests, captured, captureKey)
	}
}

// assertVM: vCenter took one snapshot and reconfigured the VM once.
func (l *crashTunnelLab) assertVM(incident string) {
	l.t.Helper()
	ctx := l.t.Context()
	vm := crashVM(compromisedSite)
	tasks, err := l.vc.Tasks(ctx, vm)
	if err != nil {
		l.t.Fatal(err)
	}
	count := map[string]int{}
	for _, ti := range tasks {
		count[ti.Name]++
		if ti.State != types.TaskInfoStateSuccess {
			l.t.Errorf("%s task %s: %s", ti.Name, ti.Key, ti.State)
		}
	}
	if count[vsim.TaskCreateSnapshot] != 1 || count[vsim.TaskReconfigure] != 1 {
		l.t.Errorf("vCenter tasks on %s: %v; want one %s and one %s", vm, count, vsim.TaskCreateSnapshot, vsim.TaskReconfigure)
	}
	p, err := vsphere.Connect(ctx, l.vc.Config(), nil)
	if err != nil {
		l.t.Fatal(err)
	}
	defer p.Close(context.Background())
	st, err := p.ObserveVM(ctx, vm)
	if err != nil {
		l.t.Fatal(err)
	}
	if len(st.Snapshots) != 1 || st.Snapshots[0].Name != "warden-"+incident || !st.Quarantined {
		l.t.Errorf("%s: snapshots %+v, quarantined %t; want only warden-%s, quarantined", vm, st.Snapshots, st.Quarantined, incident)
	}
}

// assertIsolatedOnce: a's agent put its quarantine in force once.
func (l *crashTunnelLab) assertIsolatedOnce() {
	l.t.Helper()
	changes := 0
	for _, c := range l.agentProxies[compromisedSite].calls() {
		if c.kind == wire.KindIsolate && c.changed {
			changes++
		}
	}
	if changes != 1 {
		l.t.Errorf("a's agent changed its quarantine %d times, want 1", changes)
	}
}

// assertRevokedOnce: every peer dropped a's key (WireGuard) or unloaded its
// connection (strongSwan) once and blocked a once, and nothing of a is
// left there.
func (l *crashTunnelLab) assertRevokedOnce() {
	l.t.Helper()
	aKey := ""
	if l.wg != nil {
		aKey = l.siteKey(compromisedSite).String()
	}
	for _, peer := range []string{"b", "c", "d"} {
		removals, blocks := 0, 0
		for _, c := range l.agentProxies[peer].calls() {
			if c.ok && ((aKey != "" && slices.Contains(c.removed, aKey)) || (c.vici == "unload-conn" && c.viciName == compromisedSite)) {
				removals++
			}
			if c.kind == wire.KindBlock && c.changed {
				blocks++
			}
		}
		if removals != 1 || blocks != 1 {
			l.t.Errorf("%s: a's tunnel removed %d times, a blocked %d times; want once each", peer, removals, blocks)
		}
	}
	l.assertRevoked(l.t)
}

// assertRotatedOnce: each healthy pair got one new preshared key, the one
// the vault holds as current for the step's batch, at both ends, and it
// carries traffic.
func (l *crashTunnelLab) assertRotatedOnce(batch string) {
	t := l.t
	ctx := t.Context()
	v, closeVault := l.openVault(t, l.env.dbPath)
	defer closeVault()
	list, err := v.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kind := rotation.KindWireGuardPSK
	if l.ss != nil {
		kind = rotation.KindStrongSwanPSK
	}
	fleet := rotation.Fleet(l.tunnels(), compromisedSite)
	for _, p := range fleet {
		var ours []string
		for _, c := range list {
			if c.Batch == batch && c.Pair == p {
				ours = append(ours, c.ID+" ("+string(c.State)+")")
			}
		}
		cur, err := v.Current(ctx, kind, p, "")
		if err != nil {
			t.Errorf("%s: no current preshared key in the vault: %v", p, err)
			continue
		}
		if len(ours) != 1 || cur.Batch != batch {
			t.Errorf("%s: the rotation left credentials %v, current %s; want exactly one, current", p, ours, cur.ID)
		}
		secret, err := v.Secret(ctx, cur.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := sha256.Sum256(secret.Bytes())
		for _, end := range [][2]string{{p.A, p.B}, {p.B, p.A}} {
			site, other := end[0], end[1]
			if l.wg != nil {
				e := peerOf(l.device(site), l.device(other).PublicKey)
				if e == nil || sha256.Sum256(e.PresharedKey[:]) != want {
					t.Errorf("%s: %s does not hold the vault's current key %s", p, site, cur.ID)
				}
			} else if ids := l.sharedKeys(site, other); len(ids) != 1 || ids[0] != other+"/"+cur.ID {
				// Which bytes each id carried is checked below, on
				// what the agent accepted.
				t.Errorf("%s: %s holds shared keys %v, want only %s/%s", p, site, ids, other, cur.ID)
			}
			sent := l.agentProxies[site].pskSent(l.pskTarget(other))
			if len(sent) != 1 || sent[0] != want {
				t.Errorf("%s: %s was sent %d distinct preshared keys, want one (the vault's)", p, site, len(sent))
			}
		}
	}
	l.eachPair(fleet, "after the rotation", func(p rotation.Pair) error { return l.waitTraffic(ctx, p) })
}

// pskTarget names, the way the forwarders record preshared keys, a site's
// key for peer: WireGuard by peer's public key, strongSwan by the shared
// key id's prefix.
func (l *crashTunnelLab) pskTarget(peer string) string {
	if l.wg != nil {
		return l.device(peer).PublicKey.String()
	}
	return peer + "/"
}

// assertNotifiedOnce: the receiver took one notification. After a kill
// inside the POST the restarted controller posts again under the same
// Idempotency-Key (the sender remembers deliveries in memory only), and a
// receiver drops the copy by that key: then one key, posted twice.
func (l *crashTunnelLab) assertNotifiedOnce(duplicateAllowed bool) {
	l.t.Helper()
	posts := l.hooks.posts()
	want := 1
	if duplicateAllowed {
		want = 2
	}
	if len(posts) != 1 {
		l.t.Errorf("notifications per Idempotency-Key %v, want one key", posts)
	}
	for key, n := range posts {
		if key == "" || n != want {
			l.t.Errorf("notification %q posted %d times, want %d", key, n, want)
		}
	}
}

// assertCutOff lifts a's own quarantine by hand, as an intruder with root
// on a would, and checks, as TestTunnelResponseThroughAgents does, that a
// still reaches no peer's gateway and brings up no tunnel with any.
func (l *crashTunnelLab) assertCutOff() {
	t := l.t
	ctx := t.Context()
	l.runIn(l.site(compromisedSite).Gateway.NS, "nft", "flush", "ruleset")
	var wg sync.WaitGroup
	for _, peer := range []string{"b", "c", "d"} {
		wg.Go(func() {
			gw := l.site(peer).Gateway
			for _, addr := range []netip.Addr{gw.V4, gw.V6} {
				if err := l.lab.UDPEcho(ctx, l.site(compromisedSite).Gateway.NS, netip.AddrPortFrom(addr, tunnelEchoPort), cutWait); err == nil {
					t.Errorf("a reaches %s's gateway at %s through the block", peer, addr)
				}
			}
			if err := l.noTunnel(ctx, peer); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := l.lab.UDPEcho(ctx, l.site("b").Gateway.NS, netip.AddrPortFrom(l.site("c").Gateway.V4, tunnelEchoPort), okWait); err != nil {
		t.Errorf("b no longer reaches c's gateway: %v", err)
	}
}

// summary says what each side saw, for the matrix's log.
func (l *crashTunnelLab) summary(tc crashTunnelCase) string {
	captures := 0
	for _, c := range l.agentProxies[compromisedSite].calls() {
		if c.kind == wire.KindCapture {
			captures++
		}
	}
	return fmt.Sprintf("%d capture command(s) reached a (read-only), notification posts per key %v; restart after %v",
		captures, l.hooks.posts(), tc.restartAfter)
}

func stepStates(r store.Run) string {
	var out []string
	for _, s := range r.Steps {
		out = append(out, fmt.Sprintf("%s=%s/%d", s.Action, s.State, s.Attempts))
	}
	return strings.Join(out, " ")
}

// holdMode is what the kill point does with a request.
type holdMode int

const (
	pass       holdMode = iota
	holdBefore          // hold it before it reaches the upstream
	holdAfter           // pass it on, hold the upstream's answer
)

// upstreamRequest is what the kill point and the checks see of a request:
// where it goes and, for agent commands, what it changes. It holds no
// secret: preshared keys are kept as SHA-256 only.
type upstreamRequest struct {
	to      string // "agent b", "vcenter", "notify"
	gateway string // behind an agent forwarder
	kind    string // the agent command's kind
	// removed are the public keys a WireGuard configure removes.
	removed []string
	// vici is a VICI command's name; viciName its "name" (unload-conn).
	vici, viciName string
	// psks holds the SHA-256 of every preshared key the command sets:
	// WireGuard by peer public key, strongSwan (load-shared) by id.
	psks map[string][sha256.Size]byte
}

func (r upstreamRequest) String() string {
	s := r.to
	if r.kind != "" {
		s += " " + r.kind
	}
	if r.vici != "" {
		s += " " + r.vici
	}
	if len(r.removed) > 0 {
		s += " removing " + strings.Join(r.removed, ",")
	}
	if len(r.psks) > 0 {
		s += fmt.Sprintf(" setting %d preshared key(s)", len(r.psks))
	}
	return s
}

// holdRule picks the request to kill at.
type holdRule func(ctx context.Context, r upstreamRequest) holdMode

// killPoint is consulted by every forwarder. Once its rule picked a
// request, every later request is held before it reaches anything, so the
// kill lands exactly there.
type killPoint struct {
	mu      sync.Mutex
	rule    holdRule
	fired   bool
	held    string
	reached chan struct{} // closed when the picked request is held
	once    sync.Once
	off     chan struct{} // closed by disarm: held requests end unanswered
	offOnce sync.Once
}

func newKillPoint() *killPoint {
	return &killPoint{reached: make(chan struct{}), off: make(chan struct{})}
}

func (k *killPoint) arm(rule holdRule) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rule = rule
}

// disarm releases every held request (unanswered) and passes the rest.
func (k *killPoint) disarm() {
	k.offOnce.Do(func() { close(k.off) })
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rule = nil
}

// decide returns what to do with r, and whether r is the picked request.
func (k *killPoint) decide(ctx context.Context, r upstreamRequest) (holdMode, bool) {
	k.mu.Lock()
	rule, fired := k.rule, k.fired
	k.mu.Unlock()
	switch {
	case rule == nil:
		return pass, false
	case fired:
		return holdBefore, false
	}
	m := rule(ctx, r)
	if m == pass {
		return pass, false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fired || k.rule == nil {
		return holdBefore, false
	}
	k.fired, k.held = true, r.String()
	return m, true
}

// hold blocks a request until its client is gone or the point is
// disarmed, then aborts it. picked says it is the request the rule chose.
func (k *killPoint) hold(ctx context.Context, picked bool) {
	if picked {
		k.once.Do(func() { close(k.reached) })
	}
	select {
	case <-ctx.Done():
	case <-k.off:
	}
	panic(http.ErrAbortHandler) // no answer, as if the connection broke
}

func (k *killPoint) heldRequest() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.held
}

// agentCall is one command a forwarder passed to an agent and its outcome,
// as far as the checks need them (no secret).
type agentCall struct {
	upstreamRequest
	ok      bool // 200, and charon did not refuse a VICI command
	changed bool // the agent's answer said it changed something
}

// holdProxy stands between the controller and one upstream (a gateway's
// agent, vCenter, the notification receiver). It terminates TLS (when
// given a certificate) with one the controller trusts, passes every
// request on over its own client, and records what agent commands did.
// The kill point may hold a request.
type holdProxy struct {
	name, gateway, upstream string
	client                  *http.Client
	kp                      *killPoint
	srv                     *httptest.Server
	mu                      sync.Mutex
	log                     []agentCall
}

// proxyTarget is what a holdProxy forwards to.
type proxyTarget struct {
	name, gateway, upstream string
	client                  *http.Client
}

func startHoldProxy(t *testing.T, kp *killPoint, p proxyTarget, cert *tls.Certificate) *holdProxy {
	t.Helper()
	hp := &holdProxy{name: p.name, gateway: p.gateway, upstream: p.upstream, client: p.client, kp: kp}
	hp.srv = httptest.NewUnstartedServer(hp)
	hp.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // connections cut by the kill
	if cert != nil {
		hp.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}}
		hp.srv.StartTLS()
	} else {
		hp.srv.Start()
	}
	t.Cleanup(hp.srv.Close)
	return hp
}

func (p *holdProxy) url() string { return p.srv.URL }

var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length"}

func (p *holdProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Read first: the server notices a client that went away only once
	// the body is consumed.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	req := p.describe(body)
	mode, picked := p.kp.decide(r.Context(), req)
	if mode == holdBefore {
		p.kp.hold(r.Context(), picked)
	}
	// The upstream gets the whole request even if the controller dies
	// meanwhile, as it would over a network that delivered it.
	out, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), r.Method, p.upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	resp, err := p.client.Do(out)
	if err != nil {
		http.Error(w, "forwarding to "+p.name+": "+err.Error(), http.StatusBadGateway)
		return
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		http.Error(w, "reading "+p.name+"'s answer: "+err.Error(), http.StatusBadGateway)
		return
	}
	if p.gateway != "" {
		p.record(req, resp.StatusCode, answer)
	}
	if mode == holdAfter {
		p.kp.hold(r.Context(), picked)
	}
	for k, vs := range resp.Header {
		if !slices.Contains(hopHeaders, k) {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}

// describe reads what an agent command changes.
func (p *holdProxy) describe(body []byte) upstreamRequest {
	req := upstreamRequest{to: p.name, gateway: p.gateway}
	var cmd wire.Command
	if p.gateway == "" || json.Unmarshal(body, &cmd) != nil {
		return req
	}
	req.kind = cmd.Kind
	switch cmd.Kind {
	case wire.KindWireGuard:
		var wg wire.WireGuardParams
		if json.Unmarshal(cmd.Params, &wg) != nil || wg.Config == nil {
			return req
		}
		for _, pc := range wg.Config.Peers {
			if pc.Remove {
				req.removed = append(req.removed, pc.PublicKey)
			}
			if raw, err := base64.StdEncoding.DecodeString(pc.PresharedKey); err == nil && len(raw) > 0 {
				req.setPSK(pc.PublicKey, raw)
				clear(raw)
			}
		}
	case wire.KindVICI:
		var vp wire.VICIParams
		if json.Unmarshal(cmd.Params, &vp) != nil {
			return req
		}
		req.vici = vp.Command
		m, err := charon.FromWire(vp.Message)
		if err != nil || m == nil {
			return req
		}
		req.viciName, _ = m.Get("name").(string)
		if data, ok := m.Get("data").(string); ok && vp.Command == "load-shared" {
			id, _ := m.Get("id").(string)
			req.setPSK(id, []byte(data))
		}
	}
	return req
}

func (r *upstreamRequest) setPSK(target string, key []byte) {
	if r.psks == nil {
		r.psks = map[string][sha256.Size]byte{}
	}
	r.psks[target] = sha256.Sum256(key)
}

func (p *holdProxy) record(req upstreamRequest, status int, answer []byte) {
	c := agentCall{upstreamRequest: req, ok: status == http.StatusOK}
	if c.ok {
		var res struct {
			Changed bool             `json:"changed"`
			Reply   wire.VICIMessage `json:"reply"`
		}
		_ = json.Unmarshal(answer, &res)
		c.changed = res.Changed
		if req.vici != "" {
			m, err := charon.FromWire(res.Reply)
			c.ok = err == nil && (m == nil || m.Err() == nil)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, c)
}

func (p *holdProxy) calls() []agentCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.log)
}

// pskSent lists the distinct preshared keys (SHA-256) the agent accepted
// for target: a WireGuard peer's public key, or a strongSwan shared key id
// prefix ("b/").
func (p *holdProxy) pskSent(target string) [][sha256.Size]byte {
	var out [][sha256.Size]byte
	for _, c := range p.calls() {
		if !c.ok {
			continue
		}
		for id, h := range c.psks {
			if (id == target || strings.HasSuffix(target, "/") && strings.HasPrefix(id, target)) && !slices.Contains(out, h) {
				out = append(out, h)
			}
		}
	}
	return out
}
