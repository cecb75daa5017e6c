package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/policies"
	"github.com/warden-ir/warden/store"
)

// fakeAction records calls and can fail on demand. It is the lowest seam
// for controller unit tests; real providers are tested against vcsim and
// namespaces elsewhere.
type fakeAction struct {
	name string
	mu   sync.Mutex
	// applied counts Apply calls per idempotency key.
	applied map[string]int
	// failures to return from Apply, in order; nil entries succeed.
	failures []error
	order    *[]string
	// orderMu guards order, which several fakes (and concurrent runs)
	// append to.
	orderMu *sync.Mutex
	// onApply, when set, runs after each Apply (outside the lock).
	onApply func()
	// onCtx, when set, is given each Apply's context first.
	onCtx func(context.Context)
}

func newFake(name string, order *[]string) *fakeAction {
	return &fakeAction{name: name, applied: map[string]int{}, order: order, orderMu: &sync.Mutex{}}
}

func (f *fakeAction) Name() string { return f.name }
func (f *fakeAction) Plan(context.Context, actions.Request) (actions.Change, error) {
	return actions.Change{Summary: "would " + f.name}, nil
}
func (f *fakeAction) Apply(ctx context.Context, req actions.Request) (actions.Result, error) {
	if f.onApply != nil {
		defer f.onApply()
	}
	if f.onCtx != nil {
		f.onCtx(ctx)
	}
	return f.apply(ctx, req)
}

func (f *fakeAction) apply(_ context.Context, req actions.Request) (actions.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failures) > 0 {
		err := f.failures[0]
		f.failures = f.failures[1:]
		if err != nil {
			return actions.Result{}, err
		}
	}
	f.applied[req.IdempotencyKey]++
	if f.order != nil {
		f.orderMu.Lock()
		*f.order = append(*f.order, f.name)
		f.orderMu.Unlock()
	}
	return actions.Result{Changed: f.applied[req.IdempotencyKey] == 1, Summary: f.name + " done",
		Details: map[string]any{"password": "hunter2-secret", "vm": req.Gateway.VM}}, nil
}
func (f *fakeAction) Verify(_ context.Context, req actions.Request) (actions.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.applied[req.IdempotencyKey] == 0 {
		return actions.Result{}, fmt.Errorf("nothing applied: %w", actions.ErrNotVerified)
	}
	return actions.Result{Summary: "verified"}, nil
}

// Undo makes every fake reversible as the catalogue may declare it.
func (f *fakeAction) Undo(context.Context, actions.Request) (actions.Result, error) {
	return actions.Result{Summary: "undone"}, nil
}

func (f *fakeAction) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.applied {
		n += c
	}
	return n
}

type instantClock struct{ now time.Time }

// AfterFunc runs f at once: no wait in these tests is real.
func (c instantClock) AfterFunc(_ time.Duration, f func()) clock.Timer {
	go f()
	return time.NewTimer(0)
}

func (c instantClock) Now() time.Time { return c.now }
func (c instantClock) After(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

const testPolicies = `
policies:
  - name: c2-isolate
    priority: 100
    match: 'indicator.kind == "c2_beacon"'
    runbook: contain
    approval: auto
  - name: tamper-approve
    priority: 90
    match: 'indicator.kind == "config_tamper"'
    runbook: contain
    approval: required
  - name: crash-poweroff
    priority: 80
    match: 'indicator.kind == "crash"'
    runbook: poweroff
    approval: auto
  - name: brute-notify
    priority: 10
    match: 'indicator.kind == "brute_force"'
    runbook: notify-only
    approval: auto
    guards:
      budget: false
`

const testRunbooks = `
runbooks:
  - name: contain
    steps:
      - action: capture_volatile
        optional: true
      - action: snapshot
      - action: isolate
      - action: notify
  - name: poweroff
    steps:
      - action: power_off
  - name: notify-only
    steps:
      - action: notify
  - name: release-gateway
    steps:
      - action: release
  - name: rotate
    steps:
      - action: rotate_credentials
  - name: patch-gateway
    steps:
      - action: patch
      - action: verify_baseline
`

type harness struct {
	c     *Controller
	st    *store.Store
	acts  map[string]*fakeAction
	order *[]string
}

func testInventory() *inventory.Inventory {
	inv := &inventory.Inventory{
		Sites: []inventory.Site{{Name: "hq", TimeZone: "Asia/Tokyo"}, {Name: "osaka", TimeZone: "Asia/Tokyo"}, {Name: "dc", TimeZone: "UTC"}},
	}
	for i, s := range []string{"hq", "hq2", "osaka", "dc", "dc2", "dc3"} {
		site := strings.TrimRight(s, "23")
		inv.Gateways = append(inv.Gateways, inventory.Gateway{ID: "gw-" + s, Site: site, VM: "vm-" + s,
			Addresses: []string{fmt.Sprintf("198.51.100.%d", i+1)}, ManagementNetworks: []string{"192.0.2.0/28"}})
	}
	inv.Tunnels = []inventory.Tunnel{{Name: "hq-osaka", A: "gw-hq", B: "gw-osaka", Kind: inventory.KindWireGuard}}
	if err := inv.Validate(); err != nil {
		panic(err)
	}
	return inv
}

// loadPolicies loads the policies in yaml with the test runbooks.
func loadPolicies(t testing.TB, yaml string) *policies.Set {
	t.Helper()
	pol, err := policies.LoadFS(fstest.MapFS{
		"p.yaml": {Data: []byte(yaml)},
		"r.yaml": {Data: []byte(testRunbooks)},
	}, ".")
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

func newHarness(t testing.TB, mutate func(*Options)) *harness {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), "normal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol := loadPolicies(t, testPolicies)
	order := &[]string{}
	h := &harness{st: st, acts: map[string]*fakeAction{}, order: order}
	var list []actions.Action
	orderMu := &sync.Mutex{}
	for _, n := range []string{actions.NameCaptureVolatile, actions.NameSnapshot, actions.NameIsolate, actions.NameRelease, actions.NamePowerOff, actions.NameNotify, "rotate_credentials", actions.NamePatch, actions.NameVerifyBaseline} {
		f := newFake(n, order)
		f.orderMu = orderMu
		h.acts[n] = f
		list = append(list, f)
	}
	cat, err := actions.NewCatalogue(list...)
	if err != nil {
		t.Fatal(err)
	}
	d := config.Defaults()
	opt := Options{Store: st, Inventory: testInventory(), Policies: pol, Actions: cat,
		Intake: d.Intake, Guards: d.Guards, Executor: d.Executor, Clock: instantClock{now: time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)}}
	opt.Guards.BreakerMinGateways = 4
	opt.Guards.BreakerFraction = 0.6
	if mutate != nil {
		mutate(&opt)
	}
	// Composed as the daemon composes its catalogue: one retry layer.
	ex := opt.Executor
	opt.Actions = opt.Actions.Decorate(actions.WithRetry(actions.RetryPolicy{MaxAttempts: ex.MaxAttempts, BackoffBase: ex.BackoffBase,
		BackoffMax: ex.BackoffMax, AttemptTimeout: ex.StepTimeout, After: opt.Clock.After}))
	h.c, err = New(opt)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func ind(kind indicator.Kind, gw string) Item {
	return Item{Matched: true, Indicator: indicator.Indicator{Kind: kind, Gateway: gw, Severity: indicator.Critical, Confidence: 0.9, Source: "test",
		Observables: indicator.Observables{IPs: []string{"203.0.113.66"}}}}
}

func (h *harness) accept(t *testing.T, items ...Item) []Accepted {
	t.Helper()
	res, err := h.c.Accept(t.Context(), "test", items)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (h *harness) run(t *testing.T, id string) store.Run {
	t.Helper()
	if err := h.c.ExecuteRun(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	r, err := h.st.Run(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (h *harness) auditActions(t *testing.T) []string {
	t.Helper()
	es, err := audit.List(t.Context(), h.st.DB(), "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Action)
	}
	return out
}

func TestContainRunsStepsInOrderAndRecordsPosture(t *testing.T) {
	h := newHarness(t, nil)
	res := h.accept(t, ind(indicator.C2Beacon, "gw-osaka"))
	if res[0].RunID == "" || res[0].RunState != store.RunRunning {
		t.Fatalf("expected a run started with the decision, got %+v", res[0])
	}
	r := h.run(t, res[0].RunID)
	if r.State != store.RunSucceeded {
		t.Fatalf("run state %s: %s", r.State, r.Error)
	}
	want := []string{"capture_volatile", "snapshot", "isolate", "notify"}
	if strings.Join(*h.order, ",") != strings.Join(want, ",") {
		t.Fatalf("order %v, want %v", *h.order, want)
	}
	p, _ := h.st.Posture(t.Context(), "gw-osaka")
	if p.Desired != store.PostureQuarantined {
		t.Fatalf("desired posture %q", p.Desired)
	}
	inc, _ := h.st.Incident(t.Context(), res[0].IncidentID)
	if inc.Status != store.IncidentContained {
		t.Fatalf("incident status %q", inc.Status)
	}
	if _, err := audit.Verify(t.Context(), h.st.DB()); err != nil {
		t.Fatal(err)
	}
	// Executing a finished run again changes nothing.
	before := h.acts["isolate"].calls()
	h.run(t, r.ID)
	if h.acts["isolate"].calls() != before {
		t.Fatal("a finished run applied a step again")
	}
}

func TestIndicatorIsDurableWhenAcceptReturns(t *testing.T) {
	h := newHarness(t, nil)
	res := h.accept(t, ind(indicator.C2Beacon, "gw-hq"), Item{Indicator: indicator.Indicator{Source: "am", Gateway: "db1"}, Reason: "not a gateway"})
	// A second store on the same file sees both rows: they were committed.
	st2, err := store.Open(t.Context(), storePath(t, h.st), "normal")
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	n, err := st2.CountIndicators(t.Context())
	if err != nil || n != 2 {
		t.Fatalf("count %d, %v", n, err)
	}
	if res[1].Matched || res[1].IncidentID != "" || res[1].RunID != "" {
		t.Fatalf("unmatched alert must start nothing: %+v", res[1])
	}
}

func storePath(t *testing.T, st *store.Store) string {
	t.Helper()
	var file string
	if err := st.DB().QueryRowContext(t.Context(), `SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&file); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestDedupJoinsIncidentAndStartsNoSecondRun(t *testing.T) {
	h := newHarness(t, nil)
	first := h.accept(t, ind(indicator.C2Beacon, "gw-hq"))
	second := h.accept(t, ind(indicator.C2Beacon, "gw-hq"))
	if !second[0].Duplicate || second[0].IncidentID != first[0].IncidentID || second[0].RunID != "" {
		t.Fatalf("second alert: %+v (first %+v)", second[0], first[0])
	}
	runs, _ := h.st.Runs(t.Context(), store.RunFilter{Incident: first[0].IncidentID})
	if len(runs) != 1 {
		t.Fatalf("%d runs, want 1", len(runs))
	}
}

func TestResolvedAlertNeverReleases(t *testing.T) {
	h := newHarness(t, nil)
	first := h.accept(t, ind(indicator.C2Beacon, "gw-hq"))
	h.run(t, first[0].RunID)
	res := ind(indicator.C2Beacon, "gw-hq")
	res.Indicator.Status = indicator.StatusResolved
	out := h.accept(t, res)
	if out[0].RunID != "" || out[0].IncidentID != first[0].IncidentID {
		t.Fatalf("resolved: %+v", out[0])
	}
	if h.acts["release"].calls() != 0 {
		t.Fatal("a resolved alert released the gateway")
	}
	p, _ := h.st.Posture(t.Context(), "gw-hq")
	if p.Desired != store.PostureQuarantined {
		t.Fatalf("posture changed to %s", p.Desired)
	}
}

func TestRetriesTransientThenSucceeds(t *testing.T) {
	h := newHarness(t, nil)
	h.acts["isolate"].failures = []error{errors.New("HostCommunication"), errors.New("TaskInProgress")}
	res := h.accept(t, ind(indicator.C2Beacon, "gw-hq"))
	r := h.run(t, res[0].RunID)
	if r.State != store.RunSucceeded || r.Steps[2].Attempts != 3 {
		t.Fatalf("state %s attempts %d err %s", r.State, r.Steps[2].Attempts, r.Error)
	}
}

func TestTerminalErrorFailsRunWithCause(t *testing.T) {
	h := newHarness(t, nil)
	h.acts["isolate"].failures = []error{actions.Terminal(errors.New("portgroup warden-quarantine not found"))}
	res := h.accept(t, ind(indicator.C2Beacon, "gw-hq"))
	r := h.run(t, res[0].RunID)
	if r.State != store.RunFailed || !strings.Contains(r.Error, "portgroup warden-quarantine not found") || r.Steps[2].Attempts != 1 {
		t.Fatalf("state %s attempts %d err %q", r.State, r.Steps[2].Attempts, r.Error)
	}
	if r.Steps[3].State != store.StepPending {
		t.Fatalf("step after a failed one ran: %s", r.Steps[3].State)
	}
}

func TestOptionalStepFailureContinues(t *testing.T) {
	tests := map[string]struct {
		err  error
		want string
	}{
		"failure is recorded":     {actions.Terminal(errors.New("agent refused")), store.StepFailed},
		"unsupported is a skip":   {fmt.Errorf("no agent: %w", actions.ErrUnsupported), store.StepSkipped},
		"transient then gives up": {errors.New("timeout"), store.StepFailed},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.acts["capture_volatile"].failures = []error{tc.err, tc.err, tc.err, tc.err, tc.err}
			res := h.accept(t, ind(indicator.C2Beacon, "gw-hq"))
			r := h.run(t, res[0].RunID)
			if r.State != store.RunSucceeded || r.Steps[0].State != tc.want {
				t.Fatalf("run %s, capture %s", r.State, r.Steps[0].State)
			}
			if h.acts["isolate"].calls() != 1 {
				t.Fatal("the run did not go on after an optional step")
			}
			// A failure stays visible on the finished run; a skip is no
			// failure.
			if failed := strings.Contains(r.Error, "optional step(s) failed: capture_volatile"); failed != (tc.want == store.StepFailed) {
				t.Errorf("run error %q for a %s optional step", r.Error, tc.want)
			}
		})
	}
}

func TestApprovalGate(t *testing.T) {
	h := newHarness(t, nil)
	res := h.accept(t, ind(indicator.ConfigTamper, "gw-hq"))
	if res[0].RunState != store.RunAwaitingApproval {
		t.Fatalf("run state %s", res[0].RunState)
	}
	r := h.run(t, res[0].RunID)
	if r.State != store.RunAwaitingApproval || h.acts["isolate"].calls() != 0 {
		t.Fatal("a run waiting for approval executed")
	}
	if _, err := h.c.Approve(t.Context(), r.ID, "", ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("approve without approver: %v", err)
	}
	if _, err := h.c.Approve(t.Context(), r.ID, "alice", "looked at it"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.Approve(t.Context(), r.ID, "alice", "again"); !errors.Is(err, ErrConflict) {
		t.Fatalf("second approval: %v", err)
	}
	r = h.run(t, r.ID)
	if r.State != store.RunSucceeded || r.ApprovedBy != "alice" {
		t.Fatalf("after approval: %s by %q", r.State, r.ApprovedBy)
	}
}

func TestBlastRadiusBudget(t *testing.T) {
	tests := map[string]struct {
		gateways []string
		perSite  int
		fleet    int
		want     []string // run state per gateway, in order
	}{
		"second isolation at the same site waits": {
			gateways: []string{"gw-hq", "gw-hq2"}, perSite: 1, fleet: 10,
			want: []string{store.RunRunning, store.RunAwaitingApproval},
		},
		"different sites within fleet budget": {
			gateways: []string{"gw-hq", "gw-osaka"}, perSite: 1, fleet: 10,
			want: []string{store.RunRunning, store.RunRunning},
		},
		"fleet budget": {
			gateways: []string{"gw-hq", "gw-osaka", "gw-dc"}, perSite: 5, fleet: 2,
			want: []string{store.RunRunning, store.RunRunning, store.RunAwaitingApproval},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) {
				o.Guards.MaxAutoIsolationsPerSite, o.Guards.MaxAutoIsolationsFleet = tc.perSite, tc.fleet
				o.Guards.BreakerMinGateways = 100
			})
			for i, gw := range tc.gateways {
				res := h.accept(t, ind(indicator.C2Beacon, gw))
				if res[0].RunState != tc.want[i] {
					t.Fatalf("%s: run state %s, want %s", gw, res[0].RunState, tc.want[i])
				}
				if tc.want[i] == store.RunAwaitingApproval {
					r, _ := h.st.Run(t.Context(), res[0].RunID)
					if !strings.Contains(r.ApprovalReason, "blast-radius") {
						t.Fatalf("reason %q", r.ApprovalReason)
					}
				}
			}
		})
	}
}

func TestBudgetExemptPolicyIsNotCounted(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Guards.MaxAutoIsolationsFleet = 0 })
	res := h.accept(t, ind(indicator.BruteForce, "gw-hq"))
	if res[0].RunState != store.RunRunning {
		t.Fatalf("notify-only run should not be held by the isolation budget: %s", res[0].RunState)
	}
}

type fakePager struct {
	mu    sync.Mutex
	pages []Page
}

func (p *fakePager) Page(_ context.Context, pg Page) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pages = append(p.pages, pg)
	return nil
}

func (p *fakePager) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pages)
}

func TestCircuitBreakerTripsOnFleetBurst(t *testing.T) {
	pager := &fakePager{}
	h := newHarness(t, func(o *Options) {
		o.Pager = pager
		o.Guards.MaxAutoIsolationsPerSite, o.Guards.MaxAutoIsolationsFleet = 10, 10
		o.Guards.BreakerMinGateways, o.Guards.BreakerFraction = 3, 0.5 // 6 gateways: 3
	})
	// Brute force on three gateways (notify only) then a beacon: the
	// fourth alert sees 4 of 6 gateways firing.
	h.accept(t, ind(indicator.BruteForce, "gw-hq"), ind(indicator.BruteForce, "gw-osaka"))
	res := h.accept(t, ind(indicator.C2Beacon, "gw-dc"))
	if res[0].RunState != store.RunAwaitingApproval {
		t.Fatalf("breaker did not hold the run: %s", res[0].RunState)
	}
	br, _ := h.st.Breaker(t.Context())
	if !br.Tripped {
		t.Fatal("breaker not tripped")
	}
	h.c.Wait() // pages go out in the background
	if pager.count() != 1 || !strings.Contains(pager.pages[0].Title, "circuit breaker") {
		t.Fatalf("pages %+v", pager.pages)
	}
	// While tripped, even a single new beacon waits.
	res = h.accept(t, ind(indicator.C2Beacon, "gw-hq2"))
	if res[0].RunState != store.RunAwaitingApproval {
		t.Fatalf("run while tripped: %s", res[0].RunState)
	}
	if was, err := h.c.ResetBreaker(t.Context(), "alice", "false positive burst from a scanner"); err != nil || !was {
		t.Fatalf("reset: %v %v", was, err)
	}
	// Previewing a plan that would trip it again changes nothing and
	// pages nobody.
	if _, err := h.c.PlanDecision(t.Context(), "gw-dc2", "contain", "c2-isolate", false, true); err != nil {
		t.Fatal(err)
	}
	h.c.Wait()
	if br, _ := h.st.Breaker(t.Context()); br.Tripped || pager.count() != 1 {
		t.Fatalf("preview tripped=%t pages=%d", br.Tripped, pager.count())
	}
	if !contains(h.auditActions(t), "breaker.tripped") || !contains(h.auditActions(t), "breaker.reset") {
		t.Fatal("breaker trip and reset not audited")
	}
}

func TestEvidenceFirst(t *testing.T) {
	h := newHarness(t, nil)
	res := h.accept(t, ind(indicator.Crash, "gw-hq"))
	if res[0].RunState != store.RunAwaitingApproval {
		t.Fatalf("power_off without evidence should wait: %s", res[0].RunState)
	}
	// Even approved, execution refuses the destructive step.
	if _, err := h.c.Approve(t.Context(), res[0].RunID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	r := h.run(t, res[0].RunID)
	if r.State != store.RunFailed || !strings.Contains(r.Error, "evidence first") || h.acts["power_off"].calls() != 0 {
		t.Fatalf("state %s err %q calls %d", r.State, r.Error, h.acts["power_off"].calls())
	}
	// With a recorded override it runs once a second person approves,
	// and the reason is audited.
	run, err := h.c.StartRunbook(t.Context(), StartRequest{Runbook: "poweroff", Gateway: "gw-hq", Actor: "alice", OverrideReason: "gateway is wiping logs"})
	if err != nil {
		t.Fatal(err)
	}
	if run.State != store.RunAwaitingApproval || run.OverriddenBy != "alice" {
		t.Fatalf("an override should wait for a second person: %s overridden by %q", run.State, run.OverriddenBy)
	}
	if _, err := h.c.Approve(t.Context(), run.ID, "bob", "seen the wipe"); err != nil {
		t.Fatal(err)
	}
	r = h.run(t, run.ID)
	if r.State != store.RunSucceeded || h.acts["power_off"].calls() != 1 {
		t.Fatalf("override: %s %q", r.State, r.Error)
	}
	es, _ := audit.List(t.Context(), h.st.DB(), "")
	found := false
	for _, e := range es {
		if e.Action == "run.created" && strings.Contains(string(e.Data), "gateway is wiping logs") {
			found = true
		}
	}
	if !found {
		t.Fatal("override reason not in the audit")
	}
}

func TestEvidenceFromEarlierRunCounts(t *testing.T) {
	h := newHarness(t, nil)
	res := h.accept(t, ind(indicator.C2Beacon, "gw-hq"))
	h.run(t, res[0].RunID) // snapshot succeeded for the incident
	run, err := h.c.StartRunbook(t.Context(), StartRequest{Runbook: "poweroff", Gateway: "gw-hq", Incident: res[0].IncidentID, Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if r := h.run(t, run.ID); r.State != store.RunSucceeded {
		t.Fatalf("power off after evidence: %s %q", r.State, r.Error)
	}
}

func TestWildcardOrEmptyTargetIsAnError(t *testing.T) {
	h := newHarness(t, nil)
	for _, gw := range []string{"", "  ", "*", "gw-*", "all", "nope"} {
		if _, err := h.c.StartRunbook(t.Context(), StartRequest{Runbook: "contain", Gateway: gw, Actor: "alice"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("gateway %q: %v", gw, err)
		}
		if _, err := h.c.PlanFor(t.Context(), "contain", gw, "", ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("plan gateway %q: %v", gw, err)
		}
	}
	runs, _ := h.st.Runs(t.Context(), store.RunFilter{})
	if len(runs) != 0 {
		t.Fatalf("%d runs created", len(runs))
	}
}

func TestResumeSkipsSucceededStepsAndReappliesInFlightOne(t *testing.T) {
	h := newHarness(t, nil)
	res := h.accept(t, ind(indicator.C2Beacon, "gw-hq"))
	// Simulate a crash: steps 0 and 1 done, step 2 (isolate) in flight.
	r, _ := h.st.Run(t.Context(), res[0].RunID)
	err := h.st.Tx(t.Context(), func(tx store.Tx) error {
		r.State = store.RunRunning
		if err := tx.UpdateRun(t.Context(), r); err != nil {
			return err
		}
		for i, state := range []string{store.StepSucceeded, store.StepSucceeded, store.StepRunning} {
			s := r.Steps[i]
			s.State, s.Attempts = state, 1
			if err := tx.UpdateStep(t.Context(), s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r = h.run(t, r.ID)
	if r.State != store.RunSucceeded {
		t.Fatalf("resumed run: %s %q", r.State, r.Error)
	}
	if h.acts["snapshot"].calls() != 0 || h.acts["capture_volatile"].calls() != 0 {
		t.Fatal("a step recorded as succeeded ran again after resume")
	}
	if h.acts["isolate"].calls() != 1 || r.Steps[2].Attempts != 2 {
		t.Fatalf("isolate calls %d attempts %d", h.acts["isolate"].calls(), r.Steps[2].Attempts)
	}
	if !contains(h.auditActions(t), "run.resumed") {
		t.Fatal("resume not audited")
	}
}

func TestIdempotencyKeysAreStablePerStep(t *testing.T) {
	h := newHarness(t, nil)
	res := h.accept(t, ind(indicator.C2Beacon, "gw-hq"))
	r := h.run(t, res[0].RunID)
	seen := map[string]bool{}
	for _, s := range r.Steps {
		if s.IdemKey == "" || seen[s.IdemKey] || !strings.HasPrefix(s.IdemKey, r.ID+"/") {
			t.Fatalf("bad idempotency key %q", s.IdemKey)
		}
		seen[s.IdemKey] = true
		if h.acts[s.Action].applied[s.IdemKey] != 1 {
			t.Fatalf("step %s not applied with its own key", s.Name)
		}
	}
}

func TestSecretsAreRedactedInAudit(t *testing.T) {
	h := newHarness(t, nil)
	res := h.accept(t, ind(indicator.C2Beacon, "gw-hq"))
	h.run(t, res[0].RunID)
	es, _ := audit.List(t.Context(), h.st.DB(), "")
	for _, e := range es {
		if strings.Contains(string(e.Data), "hunter2-secret") {
			t.Fatalf("secret in audit entry %d (%s): %s", e.Seq, e.Action, e.Data)
		}
	}
	// Nor in the step results the API and reports show; but the result
	// was recorded.
	r, _ := h.st.Run(t.Context(), res[0].RunID)
	for _, st := range r.Steps {
		if strings.Contains(string(st.Result), "hunter2-secret") {
			t.Fatalf("secret in the result of step %s: %s", st.Name, st.Result)
		}
	}
	var got map[string]any
	_ = json.Unmarshal(r.Steps[1].Result, &got)
	if got["summary"] != "snapshot done" {
		t.Fatalf("result %v", got)
	}
}

func TestNewRejectsRunbookWithUnavailableAction(t *testing.T) {
	st, _ := store.Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), "normal")
	defer st.Close()
	pol := loadPolicies(t, testPolicies)
	cat, _ := actions.NewCatalogue(newFake("notify", nil))
	if _, err := New(Options{Store: st, Inventory: testInventory(), Policies: pol, Actions: cat}); err == nil || !strings.Contains(err.Error(), "not available") {
		t.Fatalf("err %v", err)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestFinishedRunDoesNotSwallowANewSign(t *testing.T) {
	h := newHarness(t, nil)
	first := h.accept(t, ind(indicator.BruteForce, "gw-hq"))
	if r := h.run(t, first[0].RunID); r.State != store.RunSucceeded {
		t.Fatal(r.Error)
	}
	other := ind(indicator.BruteForce, "gw-hq")
	other.Indicator.Observables.IPs = []string{"198.51.100.200"}
	second := h.accept(t, other)
	if second[0].IncidentID != first[0].IncidentID || second[0].RunID == "" || second[0].RunID == first[0].RunID {
		t.Fatalf("second sign in the same incident: %+v (first %+v)", second[0], first[0])
	}
	// While a run is still pending, the same policy does not start another.
	third := ind(indicator.BruteForce, "gw-hq")
	third.Indicator.Observables.IPs = []string{"198.51.100.201"}
	if got := h.accept(t, third); got[0].RunID != second[0].RunID {
		t.Fatalf("a second run started while one was pending: %+v", got[0])
	}
}

func TestEvidenceFirstOnlyHoldsCompromisedGateways(t *testing.T) {
	h := newHarness(t, nil)
	// A healthy gateway (no incident): routine destructive work runs.
	run, err := h.c.StartRunbook(t.Context(), StartRequest{Runbook: "poweroff", Gateway: "gw-dc2", Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if r := h.run(t, run.ID); r.State != store.RunSucceeded {
		t.Fatalf("routine run on a healthy gateway: %s %q", r.State, r.Error)
	}
	// A gateway with an open incident is the compromised host: the same
	// run, started without naming the incident, is held and then refused.
	h.accept(t, ind(indicator.BruteForce, "gw-dc3"))
	run, err = h.c.StartRunbook(t.Context(), StartRequest{Runbook: "poweroff", Gateway: "gw-dc3", Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if run.State != store.RunAwaitingApproval || !strings.Contains(run.ApprovalReason, "evidence-first") {
		t.Fatalf("run on a compromised gateway: %s (%s)", run.State, run.ApprovalReason)
	}
	if _, err := h.c.Approve(t.Context(), run.ID, "bob", ""); err != nil {
		t.Fatal(err)
	}
	if r := h.run(t, run.ID); r.State != store.RunFailed || !strings.Contains(r.Error, "evidence first") {
		t.Fatalf("approved without evidence: %s %q", r.State, r.Error)
	}
}
