package e2e

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/api/client"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/demo"
	"github.com/warden-ir/warden/providers/vsphere"
	"github.com/warden-ir/warden/providers/vsphere/vsim"
	"github.com/warden-ir/warden/store"
)

// stack is a real Warden (daemon, HTTP API on loopback) against a real
// vCenter simulator speaking SOAP, with a client per person (people_test.go).
type stack struct {
	lab    *vsim.Lab
	d      *daemon.Daemon
	base   string
	people *crew
	// admin is the bootstrap admin; intake the detector posting alerts;
	// responder asks for runs and releases; approver approves them.
	admin, intake, responder, approver *client.Client
}

// vsphereConfig is the controller's vSphere section for a simulator: its
// quarantine portgroup, moved by portgroup, tagged warden/quarantined.
// The password is left to the caller (the environment or the config).
func vsphereConfig(vc vsphere.Config) config.VSphere {
	return config.VSphere{URL: vc.URL, Username: vc.Username, CAFile: vc.CAFile,
		QuarantinePortgroup: vc.QuarantinePortgroup, QuarantineMode: "portgroup", TagCategory: "warden", Tag: "quarantined"}
}

func startStack(t testing.TB, mutate func(*config.Config)) *stack {
	t.Helper()
	ctx := t.Context()
	lab, err := vsim.Start(ctx, vsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	vc := lab.Config()
	cfg := config.Defaults()
	dir := t.TempDir()
	people := bootstrapAdmin(t, &cfg, dir)
	cfg.Store.Path = filepath.Join(dir, "warden.db")
	cfg.Store.Sync = "normal"
	cfg.Inventory = demo.Inventory()
	cfg.VSphere = vsphereConfig(vc)
	cfg.VSphere.Password = vc.Password
	cfg.Executor.BackoffBase, cfg.Executor.BackoffMax, cfg.Executor.MaxAttempts = 10*time.Millisecond, 50*time.Millisecond, 3
	cfg.Reconcile.Interval = time.Hour // tests call ReconcileOnce themselves
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Build(ctx, cfg, daemon.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := d.Listen("127.0.0.1:0")
	if err != nil {
		d.Close(context.Background())
		t.Fatal(err)
	}
	// Taking the lease makes the bootstrap admin now, before the first
	// request (Serve would do it as it starts).
	if err := d.AcquireWriter(ctx); err != nil {
		d.Close(context.Background())
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = d.Serve(sctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); d.Close(context.Background()) })
	s := &stack{lab: lab, d: d, base: "http://" + addr, people: people}
	people.add(t, s.base)
	for c, token := range map[**client.Client]string{&s.admin: people.admin, &s.intake: people.intake, &s.responder: people.responder, &s.approver: people.approver} {
		if *c, err = client.New(s.base, token); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// post sends body to path as the person of c and wants the status want;
// it returns the answer's JSON, or the API's error as {"error": ...,
// "field": ...}.
func (s *stack) post(t testing.TB, c *client.Client, path string, body []byte, want int) map[string]any {
	t.Helper()
	var out map[string]any
	code, err := c.Call(t.Context(), http.MethodPost, path, body, &out)
	var ce *client.Error
	if errors.As(err, &ce) {
		code, out = ce.StatusCode, map[string]any{"error": ce.Message, "field": ce.Field}
	} else if err != nil {
		t.Fatal(err)
	}
	if code != want {
		t.Fatalf("POST %s: %d, want %d: %v", path, code, want, out)
	}
	return out
}

// alert submits the demo's Alertmanager alert as the detector and returns
// the first matched result.
func (s *stack) alert(t testing.TB) (incident, run string, dup bool) {
	t.Helper()
	out, err := s.intake.SubmitAlertmanager(t.Context(), demo.SampleAlert(time.Now()))
	if err != nil {
		t.Fatalf("submitting the alert: %v", err)
	}
	for _, r := range out.Results {
		if r.Matched {
			return r.IncidentID, r.RunID, r.Duplicate
		}
	}
	t.Fatal("no matched alert")
	return
}

// liveIndicators lists the firing, unresolved indicators about gw since its
// quarantine, as the release gate sees them.
func (s *stack) liveIndicators(t testing.TB, gw string) []string {
	t.Helper()
	p, err := s.d.Store.Posture(t.Context(), gw)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	err = s.d.Store.Tx(t.Context(), func(tx store.Tx) error {
		threats, err := tx.LiveThreats(t.Context(), gw, p.UpdatedAt, controller.ReleaseThreatSeverity)
		for _, th := range threats {
			ids = append(ids, th.ID)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) == 0 {
		t.Fatal("no live indicator to resolve")
	}
	return ids
}

func (s *stack) wait(t testing.TB, run string) store.Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r, err := s.d.Controller.WaitRun(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (s *stack) vm(t testing.TB, name string) actions.VMState {
	t.Helper()
	st, err := s.d.VSphere.ObserveVM(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func networks(st actions.VMState) string {
	var parts []string
	for _, n := range st.NICs {
		parts = append(parts, n.Network)
	}
	return strings.Join(parts, ",")
}

func TestAlertToVerifiedContainmentAndRelease(t *testing.T) {
	s := startStack(t, nil)
	before := s.vm(t, "gw-osaka")
	if before.Quarantined || networks(before) != "vpn-transit,vpn-lan" {
		t.Fatalf("lab not as expected: %+v", before)
	}
	incident, run, _ := s.alert(t)
	r := s.wait(t, run)
	if r.State != store.RunSucceeded {
		t.Fatalf("run %s: %s", r.State, r.Error)
	}

	after := s.vm(t, "gw-osaka")
	if !after.Quarantined || networks(after) != "warden-quarantine,warden-quarantine" {
		t.Fatalf("VM not quarantined: %+v", after)
	}
	for _, n := range after.NICs {
		if n.StartConnected {
			t.Fatalf("NIC %s would reconnect at boot", n.Label)
		}
	}
	if !strings.Contains(strings.Join(after.Tags, ","), "warden/quarantined") {
		t.Fatalf("tags %v", after.Tags)
	}
	snap := false
	for _, sn := range after.Snapshots {
		if sn.Name == "warden-"+incident && sn.Memory {
			snap = true
		}
	}
	if !snap {
		t.Fatalf("no memory snapshot named after the incident: %+v", after.Snapshots)
	}
	// The snapshot and the configuration change are evidence, with hashes.
	recs, err := s.d.Ledger.List(t.Context(), incident)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, r := range recs {
		kinds[r.Kind] = r.Name
	}
	if kinds["snapshot"] == "" || kinds["config"] != "isolate-configuration-change.json" {
		t.Fatalf("evidence after containment: %v", kinds)
	}
	// Peers untouched.
	if hq := s.vm(t, "gw-hq"); hq.Quarantined || networks(hq) != "vpn-transit,vpn-lan" {
		t.Fatalf("a healthy gateway was touched: %+v", hq)
	}

	// The same alert again joins the incident and starts nothing.
	inc2, run2, dup := s.alert(t)
	if !dup || inc2 != incident || run2 != "" {
		t.Fatalf("repeat alert: incident %s run %q dup %t", inc2, run2, dup)
	}
	if n := len(s.vm(t, "gw-osaka").Snapshots); n != 1 {
		t.Fatalf("%d snapshots after a repeated alert", n)
	}

	// Someone reconnects a NIC by hand: reconcile puts the quarantine back.
	if err := s.lab.SetNICNetwork(t.Context(), "gw-osaka", "Network adapter 1", "vpn-transit"); err != nil {
		t.Fatal(err)
	}
	if s.vm(t, "gw-osaka").Quarantined {
		t.Fatal("drift was not created")
	}
	repairs, err := s.d.Controller.ReconcileOnce(t.Context())
	if err != nil || len(repairs) != 1 || repairs[0].Gateway != "gw-osaka" {
		t.Fatalf("repairs %+v err %v", repairs, err)
	}
	if !s.vm(t, "gw-osaka").Quarantined {
		t.Fatal("reconcile did not restore the quarantine")
	}
	if again, _ := s.d.Controller.ReconcileOnce(t.Context()); len(again) != 0 {
		t.Fatalf("reconcile is not idempotent: %+v", again)
	}

	// Release must be earned: with no baseline check and no rotation on
	// record it is refused, naming what is missing.
	// The repeated alert is still firing and no person has looked at it:
	// that alone refuses the release, and no override lifts it.
	refused := s.post(t, s.responder, "/v1/runbooks/release-gateway/runs", []byte(`{"gateway":"gw-osaka","incident":"`+incident+`","override_reason":"rebuilt from the golden image; keys replaced by hand"}`), http.StatusConflict)
	if msg, _ := refused["error"].(string); !strings.Contains(msg, "no person resolved") {
		t.Fatalf("refusal does not name the live alert: %v", refused)
	}
	for _, id := range s.liveIndicators(t, "gw-osaka") {
		s.post(t, s.approver, "/v1/indicators/"+id+"/resolve", []byte(`{"reason":"the repeat of the beacon the quarantine already blocks"}`), http.StatusOK)
	}
	refused = s.post(t, s.responder, "/v1/runbooks/release-gateway/runs", []byte(`{"gateway":"gw-osaka","incident":"`+incident+`"}`), http.StatusConflict)
	if msg, _ := refused["error"].(string); !strings.Contains(msg, "baseline") || !strings.Contains(msg, "credentials-rotated") {
		t.Fatalf("refusal does not list the unmet gates: %v", refused)
	}
	if !s.vm(t, "gw-osaka").Quarantined {
		t.Fatal("a refused release changed the VM")
	}
	// This VM has no agent to check its baseline: a person overrides with
	// a recorded reason, and another approves.
	out := s.post(t, s.responder, "/v1/runbooks/release-gateway/runs", []byte(`{"gateway":"gw-osaka","incident":"`+incident+`","override_reason":"rebuilt from the golden image; keys replaced by hand"}`), http.StatusAccepted)
	if out["state"] != "awaiting_approval" {
		t.Fatalf("release did not wait for approval: %v", out["state"])
	}
	s.post(t, s.approver, "/v1/runs/"+out["id"].(string)+"/approve", []byte(`{}`), http.StatusOK)
	rr := s.wait(t, out["id"].(string))
	if rr.State != store.RunSucceeded {
		t.Fatalf("release %s: %s", rr.State, rr.Error)
	}
	if rr.RequestedBy != "user:"+responderName || rr.OverriddenBy != "user:"+responderName || rr.ApprovedBy != "user:"+approverName {
		t.Fatalf("release requested by %q, overridden by %q, approved by %q: want the people whose tokens did it", rr.RequestedBy, rr.OverriddenBy, rr.ApprovedBy)
	}
	rel := s.vm(t, "gw-osaka")
	if rel.Quarantined || networks(rel) != networks(before) {
		t.Fatalf("release did not restore: %+v", rel)
	}
	for i, n := range rel.NICs {
		if n.StartConnected != before.NICs[i].StartConnected || n.Connected != before.NICs[i].Connected {
			t.Fatalf("NIC %s flags not restored: %+v vs %+v", n.Label, n, before.NICs[i])
		}
	}
	if strings.Contains(strings.Join(rel.Tags, ","), "quarantined") {
		t.Fatalf("tag left behind: %v", rel.Tags)
	}
	p, _ := s.d.Store.Posture(t.Context(), "gw-osaka")
	if p.Desired != store.PostureReleased {
		t.Fatalf("posture %s", p.Desired)
	}
	if _, err := audit.Verify(t.Context(), s.d.Store.DB()); err != nil {
		t.Fatal(err)
	}
}

func TestTransientVCenterFaultIsRetried(t *testing.T) {
	s := startStack(t, nil)
	s.lab.FailMethod("ReconfigVM_Task", 1, &types.HostCommunication{})
	_, run, _ := s.alert(t)
	r := s.wait(t, run)
	if r.State != store.RunSucceeded {
		t.Fatalf("run %s: %s", r.State, r.Error)
	}
	var iso store.Step
	for _, st := range r.Steps {
		if st.Action == actions.NameIsolate {
			iso = st
		}
	}
	if iso.Attempts != 2 {
		t.Fatalf("isolate attempts %d, want 2 (one fault, one retry)", iso.Attempts)
	}
	if !s.vm(t, "gw-osaka").Quarantined {
		t.Fatal("not quarantined after the retry")
	}
}

func TestPersistentVCenterFaultFailsRunAndReportsRealState(t *testing.T) {
	s := startStack(t, nil)
	s.lab.FailMethod("ReconfigVM_Task", 0, &types.HostCommunication{})
	_, run, _ := s.alert(t)
	r := s.wait(t, run)
	if r.State != store.RunFailed || !strings.Contains(r.Error, "isolate") {
		t.Fatalf("run %s: %q", r.State, r.Error)
	}
	var iso store.Step
	for _, st := range r.Steps {
		if st.Action == actions.NameIsolate {
			iso = st
		}
	}
	if iso.State != store.StepFailed || iso.Attempts != 3 || iso.Error == "" {
		t.Fatalf("isolate step %+v", iso)
	}
	// The VM is reported as it is: not quarantined, NICs where they were.
	vm := s.vm(t, "gw-osaka")
	if vm.Quarantined || networks(vm) != "vpn-transit,vpn-lan" {
		t.Fatalf("VM state %+v", vm)
	}
	p, _ := s.d.Store.Posture(t.Context(), "gw-osaka")
	if p.Desired == store.PostureQuarantined {
		t.Fatal("posture claims a quarantine that did not happen")
	}
	s.lab.ClearFaults()
	if _, err := s.d.Controller.ReconcileOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	p, _ = s.d.Store.Posture(t.Context(), "gw-osaka")
	if p.Observed != store.PostureNormal {
		t.Fatalf("observed %q, want normal", p.Observed)
	}
}
