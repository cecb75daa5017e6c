package report

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/internal/testsupport"
	"github.com/warden-ir/warden/policies"
	"github.com/warden-ir/warden/store"
)

// These tests drive the real controller (the default policies and
// runbooks, fake actions at the lowest seam) and check what Load makes of
// what it recorded.

// fakeAction succeeds, or is unsupported like capture_volatile without an
// agent. Its summaries have the shapes the real actions write, so that a
// report in Japanese can be checked for English left over; its details
// carry a secret that must never reach a report.
type fakeAction struct {
	name        string
	unsupported bool
	mu          sync.Mutex
	applied     map[string]bool
}

// fakeSummaries are what the real actions say on Apply and on Verify.
var fakeSummaries = map[string][2]string{
	actions.NameSnapshot:          {`took snapshot "warden-{incident}" of {vm}`, `snapshot "warden-{incident}" of {vm} exists (memory: true)`},
	actions.NameIsolate:           {"isolated {vm}", "{vm} is quarantined"},
	actions.NameKillFlows:         {"{gateway} has no agent: its sessions were cut with its VM's network", "{gateway} has no agent"},
	actions.NameRelease:           {"released {vm}", "{vm} is released"},
	actions.NameNotify:            {"notified channel default (HTTP 204 after 1 attempt(s))", "channel default accepted the notification (HTTP 204)"},
	actions.NameVerifyBaseline:    {"baseline of {gateway} passes (remediated: [])", "baseline verdict recorded"},
	actions.NamePatch:             {"patched 1 package(s) on {gateway}", "installed versions at or above target"},
	actions.NameRevokePeer:        {"{gateway} revoked at 2 tunnel(s) (0 already), blocked at 2 site(s)", "{gateway}: no trust left at 2 of 2 tunnel(s); blocked at 2 site(s)"},
	actions.NameRotateCredentials: {"2 rotated, 0 already rotated, 0 rolled back, 0 failed, 0 not attempted", "2 of 2 credential(s) verified in use"},
}

func (f *fakeAction) say(i int, req actions.Request) string {
	return strings.NewReplacer("{incident}", req.Incident, "{vm}", req.Gateway.VM, "{gateway}", req.Gateway.ID).Replace(fakeSummaries[f.name][i])
}

func (f *fakeAction) Name() string { return f.name }
func (f *fakeAction) Plan(context.Context, actions.Request) (actions.Change, error) {
	return actions.Change{Summary: "would " + f.name}, nil
}
func (f *fakeAction) Apply(_ context.Context, req actions.Request) (actions.Result, error) {
	if f.unsupported {
		return actions.Result{}, fmt.Errorf("%s on gateway %s: no warden agent configured (agents.cert_file): %w", f.name, req.Gateway.ID, actions.ErrUnsupported)
	}
	f.mu.Lock()
	f.applied[req.IdempotencyKey] = true
	f.mu.Unlock()
	d := map[string]any{"vm": req.Gateway.VM, "password": fxSecretStep}
	switch f.name {
	case actions.NameSnapshot:
		d["snapshot"], d["memory_requested"] = "warden-"+req.Incident, true
	case actions.NameIsolate:
		d["quarantined"] = true
	}
	return actions.Result{Changed: true, Summary: f.say(0, req), Details: d}, nil
}
func (f *fakeAction) Verify(_ context.Context, req actions.Request) (actions.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.applied[req.IdempotencyKey] {
		return actions.Result{}, fmt.Errorf("nothing applied: %w", actions.ErrNotVerified)
	}
	if f.name == actions.NameSnapshot {
		return actions.Result{Summary: f.say(1, req), Details: map[string]any{"snapshot": "warden-" + req.Incident, "memory": true}}, nil
	}
	return actions.Result{Summary: f.say(1, req)}, nil
}

type flow struct {
	c      *controller.Controller
	st     *store.Store
	ledger *evidence.Ledger
}

func newFlow(t *testing.T) *flow {
	t.Helper()
	return newFlowWith(t, config.Defaults().Guards)
}

// newFlowWith is a flow whose controller has guards g. The store knows
// the detector that submits its alerts (user:suricata, role intake).
func newFlowWith(t *testing.T, g config.Guards) *flow {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), "normal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol, err := policies.LoadDir(filepath.Join("..", "policies", "default"))
	if err != nil {
		t.Fatal(err)
	}
	var list []actions.Action
	for _, n := range []string{actions.NameCaptureVolatile, actions.NameSnapshot, actions.NameIsolate, actions.NameKillFlows, actions.NameRelease, actions.NameNotify, actions.NameVerifyBaseline, actions.NamePatch, actions.NameRevokePeer, actions.NameRotateCredentials, actions.NameInvestigate, actions.NameCapture} {
		list = append(list, &fakeAction{name: n, unsupported: n == actions.NameCaptureVolatile || n == actions.NameInvestigate, applied: map[string]bool{}})
	}
	cat, err := actions.NewCatalogue(list...)
	if err != nil {
		t.Fatal(err)
	}
	d := config.Defaults()
	c, err := controller.New(controller.Options{Store: st, Inventory: demoInventory(t), Policies: pol, Actions: cat,
		Intake: d.Intake, Guards: g, Executor: d.Executor, Clock: testsupport.NewStepClock(fxT0, 5*time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := evidence.Open(t.Context(), st.DB(), filepath.Join(t.TempDir(), "evidence"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Tx(t.Context(), func(tx store.Tx) error {
		return tx.InsertUser(t.Context(), store.User{Name: "suricata", Role: "intake", CreatedAt: fxT0, CreatedBy: "user:admin", UpdatedAt: fxT0})
	}); err != nil {
		t.Fatal(err)
	}
	return &flow{c: c, st: st, ledger: ledger}
}

// accept submits an alert of kind as the detector.
func (f *flow) accept(t *testing.T, kind indicator.Kind) controller.Accepted {
	t.Helper()
	return f.acceptAs(t, "user:suricata", kind)
}

// acceptAs submits an alert of kind as actor.
func (f *flow) acceptAs(t *testing.T, actor string, kind indicator.Kind) controller.Accepted {
	t.Helper()
	res, err := f.c.Accept(t.Context(), actor, []controller.Item{{Matched: true, Indicator: indicator.Indicator{
		Kind: kind, Gateway: "gw-osaka", Severity: indicator.Critical, Confidence: 0.9, Source: "suricata",
		Summary: "sample " + string(kind), Observables: indicator.Observables{IPs: []string{"203.0.113.66"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

// releaseByOverride has requester ask to release the incident's gateway
// (gw-osaka) with an override reason, approver approve it, and the run
// execute; it returns the run as created.
func (f *flow) releaseByOverride(t *testing.T, incident, requester, reason, approver, comment string) store.Run {
	t.Helper()
	run, err := f.c.StartRunbook(t.Context(), controller.StartRequest{Runbook: "release-gateway", Gateway: "gw-osaka", Incident: incident,
		Actor: requester, OverrideReason: reason})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Approve(t.Context(), run.ID, approver, comment); err != nil {
		t.Fatal(err)
	}
	if err := f.c.ExecuteRun(t.Context(), run.ID); err != nil {
		t.Fatal(err)
	}
	return run
}

func (f *flow) load(t *testing.T, incident string) Model {
	t.Helper()
	return f.loadWith(t, incident)
}

func (f *flow) loadWith(t *testing.T, incident string, opts ...Option) Model {
	t.Helper()
	m, err := Load(t.Context(), f.st, demoInventory(t), f.ledger, incident, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mustRender renders m in lang and format; an error fails the test.
func mustRender(t *testing.T, m Model, lang, format string) []byte {
	t.Helper()
	b, err := Render(m, lang, format)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkSays fails the test for each of want that text lacks and each of
// notWant it has; what names text in the failures.
func checkSays(t *testing.T, what, text string, want, notWant []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
	for _, w := range notWant {
		if strings.Contains(text, w) {
			t.Errorf("%s says %q", what, w)
		}
	}
}

func render(t *testing.T, m Model) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, lang := range []string{LangJapanese, LangEnglish} {
		for _, format := range []string{FormatMarkdown, FormatHTML} {
			b := mustRender(t, m, lang, format)
			if loc := secretLike.FindIndex(b); loc != nil {
				t.Errorf("%s/%s leaks %q", lang, format, b[loc[0]:loc[1]])
			}
			out[lang+"."+format] = string(b)
		}
	}
	return out
}

func TestReportOfAutomaticContainment(t *testing.T) {
	f := newFlow(t)
	a := f.accept(t, indicator.C2Beacon)
	if a.Policy != "c2-or-exfil-isolate" || a.RunID == "" {
		t.Fatalf("accepted %+v", a)
	}
	if err := f.c.ExecuteRun(t.Context(), a.RunID); err != nil {
		t.Fatal(err)
	}
	m := f.load(t, a.IncidentID)
	if !m.Containment.Contained || !m.Containment.Verified || m.Containment.TimeToContain <= 0 {
		t.Errorf("containment %+v", m.Containment)
	}
	if len(m.Decisions) != 1 || m.Decisions[0].Policy != "c2-or-exfil-isolate" || m.Decisions[0].Reason != "matched" {
		t.Errorf("decisions %+v", m.Decisions)
	}
	if len(m.Approvals) != 1 || !m.Approvals[0].Automatic || !strings.Contains(m.Approvals[0].Detail, "automatic by policy") {
		t.Errorf("approvals %+v", m.Approvals)
	}
	if len(m.Snapshots) != 1 || !m.Snapshots[0].Memory {
		t.Errorf("snapshots %+v", m.Snapshots)
	}
	// isolate (flows kept), capture_volatile (skipped: no agent),
	// snapshot, kill_flows, investigate (skipped: no agent), notify.
	if len(m.Runs) != 1 || len(m.Runs[0].Steps) != 6 || m.Runs[0].Steps[1].State != store.StepSkipped || m.Runs[0].Duration <= 0 {
		t.Errorf("runs %+v", m.Runs)
	}
	for _, s := range m.Runs[0].Steps {
		if s.State == store.StepSkipped {
			continue
		}
		if s.Duration <= 0 || s.Verified == "" {
			t.Errorf("step %s: duration %v, verified %q", s.Name, s.Duration, s.Verified)
		}
	}
	if !m.Audit.OK || len(m.Peers) != 2 {
		t.Errorf("audit %+v peers %+v", m.Audit, m.Peers)
	}
	out := render(t, m)
	if !strings.Contains(out["ja.md"], "【封じ込め済み】") || !strings.Contains(out["en.md"], "CONTAINED") {
		t.Error("the banner does not say the gateway is contained")
	}
	if !strings.Contains(out["ja.md"], "隔離解除（業務再開）のご承認") {
		t.Error("the Japanese report does not ask for the release decision")
	}
}

func TestReportOfContainmentWaitingForApproval(t *testing.T) {
	f := newFlow(t)
	a := f.accept(t, indicator.ConfigTamper)
	if a.Policy != "tamper-contain-with-approval" || a.RunState != store.RunAwaitingApproval {
		t.Fatalf("accepted %+v", a)
	}
	m := f.load(t, a.IncidentID)
	if m.Containment.Contained || !anyWaiting(m) {
		t.Fatalf("containment %+v approvals %+v", m.Containment, m.Approvals)
	}
	out := render(t, m)
	if !strings.Contains(out["ja.md"], "【未封じ込め・承認待ち】") || !strings.Contains(out["en.md"], "NOT CONTAINED") {
		t.Error("the banner does not say containment waits for approval")
	}
	if !strings.Contains(out["ja.md"], "1. **対応処理 "+a.RunID) || !strings.Contains(out["en.md"], "1. **Approve or reject "+a.RunID) {
		t.Error("approving the waiting run is not the first decision")
	}
	summary, _, _ := strings.Cut(out["ja.md"], "\n---\n")
	if strings.Contains(summary, "requires a person's approval") || !strings.Contains(summary, "ポリシー tamper-contain-with-approval は責任者の承認を必要とします") {
		t.Error("the Japanese summary does not explain in Japanese why the run waits")
	}
	if !strings.Contains(summary, "まだ保全していません") {
		t.Error("the summary claims evidence that does not exist")
	}

	if _, err := f.c.Approve(t.Context(), a.RunID, "alice", "confirmed with the change board"); err != nil {
		t.Fatal(err)
	}
	if err := f.c.ExecuteRun(t.Context(), a.RunID); err != nil {
		t.Fatal(err)
	}
	m = f.load(t, a.IncidentID)
	if !m.Containment.Contained {
		t.Fatalf("after approval: %+v", m.Containment)
	}
	ap := m.Approvals[0]
	if ap.Automatic || ap.Waiting || ap.By != "alice" || ap.Comment != "confirmed with the change board" || ap.At.IsZero() {
		t.Errorf("approval %+v", ap)
	}
	var approved bool
	for _, ms := range m.Milestones {
		approved = approved || (ms.Kind == MilestoneApproval && ms.Detail == "alice")
	}
	if !approved {
		t.Errorf("no approval milestone: %+v", m.Milestones)
	}
	out = render(t, m)
	if !strings.Contains(out["ja.md"], "alice が承認") || !strings.Contains(out["en.html"], "confirmed with the change board") {
		t.Error("the approver and comment are not in the report")
	}
}

func TestReportOfInvestigationWithoutIsolation(t *testing.T) {
	f := newFlow(t)
	a := f.accept(t, indicator.TrafficSpike)
	if a.RunID == "" {
		t.Fatalf("accepted %+v", a)
	}
	if err := f.c.ExecuteRun(t.Context(), a.RunID); err != nil {
		t.Fatal(err)
	}
	m := f.load(t, a.IncidentID)
	if m.Containment.Contained || m.Containment.Verified {
		t.Fatalf("containment %+v", m.Containment)
	}
	out := render(t, m)
	if !strings.Contains(out["ja.md"], "【隔離なし】") || !strings.Contains(out["en.md"], "Isolate gw-osaka?") {
		t.Error("an investigation without isolation must say so and ask whether to isolate")
	}
}
