package controller

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/internal/testsupport"
	"github.com/warden-ir/warden/store"
)

// The default policies' shape: a quarantined gateway's new alerts only
// notify; otherwise a C2 beacon is contained.
const liveThreatPolicies = `
policies:
  - name: quarantined-notify
    priority: 200
    match: 'context.posture == "quarantined"'
    runbook: notify-only
    approval: auto
    guards: {budget: false}
  - name: c2-isolate
    priority: 100
    match: 'indicator.kind == "c2_beacon"'
    runbook: contain
    approval: auto
`

func newLiveThreatHarness(t *testing.T) *harness {
	t.Helper()
	pol := loadPolicies(t, liveThreatPolicies)
	return newHarness(t, func(o *Options) {
		o.Policies = pol
		o.Clock = testsupport.NewStepClock(time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC), time.Second)
	})
}

// quarantine contains gw-dc and returns the incident.
func (h *harness) quarantine(t *testing.T) string {
	t.Helper()
	res := h.accept(t, ind(indicator.C2Beacon, "gw-dc"))
	if r := h.run(t, res[0].RunID); r.State != store.RunSucceeded {
		t.Fatalf("containment: %s", r.Error)
	}
	return res[0].IncidentID
}

func (h *harness) requestRelease(t *testing.T, incident string) (store.Run, error) {
	t.Helper()
	return h.c.StartRunbook(t.Context(), StartRequest{Runbook: "release-gateway", Gateway: "gw-dc", Incident: incident,
		Actor: "alice", OverrideReason: "baseline and rotation done out of band"})
}

// approvedRelease quarantines gw-dc, then requests and approves its
// release, and returns the release run (not yet executed).
func (h *harness) approvedRelease(t *testing.T) store.Run {
	t.Helper()
	rel, err := h.requestRelease(t, h.quarantine(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.Approve(t.Context(), rel.ID, "bob", "ok"); err != nil {
		t.Fatal(err)
	}
	return rel
}

func c2Again(fingerprintTag string) Item {
	it := ind(indicator.C2Beacon, "gw-dc")
	it.Indicator.Observables.IPs = []string{"203.0.113." + fingerprintTag}
	return it
}

func (h *harness) hasAudit(t *testing.T, action, contains string) bool {
	t.Helper()
	es, err := audit.List(t.Context(), h.st.DB(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Action == action && strings.Contains(string(e.Data), contains) {
			return true
		}
	}
	return false
}

func (h *harness) pendingContainment(t *testing.T) []store.Run {
	t.Helper()
	runs, err := h.st.Runs(t.Context(), store.RunFilter{States: []string{store.RunPending, store.RunAwaitingApproval}, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Run
	for _, r := range runs {
		if r.Runbook == "contain" && r.Gateway == "gw-dc" {
			out = append(out, r)
		}
	}
	return out
}

// TestReleaseRefusedWhileAThreatIsLive: a critical C2 alert that arrives
// after the release was requested stops it at approval; one that arrives
// after the approval stops it right before the release step. Neither can
// be overridden; a person resolving the alert can.
func TestReleaseRefusedWhileAThreatIsLive(t *testing.T) {
	t.Run("arrives before the approval", func(t *testing.T) {
		h := newLiveThreatHarness(t)
		inc := h.quarantine(t)
		rel, err := h.requestRelease(t, inc)
		if err != nil {
			t.Fatal(err)
		}
		fresh := h.accept(t, c2Again("77"))
		_, err = h.c.Approve(t.Context(), rel.ID, "bob", "looks fine")
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "no person resolved") {
			t.Fatalf("approving while a C2 alert is live: %v", err)
		}
		r, _ := h.st.Run(t.Context(), rel.ID)
		if r.State != store.RunCancelled || !strings.Contains(r.Error, "at approval") {
			t.Fatalf("release run %s (%s), want cancelled at approval", r.State, r.Error)
		}
		if !h.hasAudit(t, "run.cancelled", "release refused at approval") {
			t.Fatal("no audit entry says why the release was cancelled")
		}
		if p, _ := h.st.Posture(t.Context(), "gw-dc"); p.Desired != store.PostureQuarantined || h.acts["release"].calls() != 0 {
			t.Fatalf("gateway released: posture %s, release calls %d", p.Desired, h.acts["release"].calls())
		}
		// Asking again is refused at once, override or not.
		if _, err := h.requestRelease(t, inc); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), fresh[0].IndicatorID) {
			t.Fatalf("second request while the alert is live: %v", err)
		}
		// A person looks at it and resolves it: now the release can go.
		if err := h.c.ResolveIndicator(t.Context(), fresh[0].IndicatorID, "carol", "the beacon was the blocked retry of the known implant"); err != nil {
			t.Fatal(err)
		}
		rel, err = h.requestRelease(t, inc)
		if err != nil {
			t.Fatalf("release after the alert was resolved: %v", err)
		}
		if _, err := h.c.Approve(t.Context(), rel.ID, "bob", "ok"); err != nil {
			t.Fatal(err)
		}
		if r := h.run(t, rel.ID); r.State != store.RunSucceeded || h.acts["release"].calls() != 1 {
			t.Fatalf("release run %s (%s), %d calls", r.State, r.Error, h.acts["release"].calls())
		}
	})

	t.Run("arrives after the approval", func(t *testing.T) {
		h := newLiveThreatHarness(t)
		rel := h.approvedRelease(t)
		h.accept(t, c2Again("78"))
		r := h.run(t, rel.ID)
		if r.State != store.RunCancelled || !strings.Contains(r.Error, "before the release step") || h.acts["release"].calls() != 0 {
			t.Fatalf("release run %s (%s), %d release calls; want cancelled before the step", r.State, r.Error, h.acts["release"].calls())
		}
	})

	t.Run("isolating again does not restart the clock", func(t *testing.T) {
		h := newLiveThreatHarness(t)
		inc := h.quarantine(t)
		fresh := h.accept(t, c2Again("81"))
		// A person runs the containment again on the quarantined gateway.
		again, err := h.c.StartRunbook(t.Context(), StartRequest{Runbook: "contain", Gateway: "gw-dc", Incident: inc, Actor: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if r := h.run(t, again.ID); r.State != store.RunSucceeded {
			t.Fatalf("second containment: %s %s", r.State, r.Error)
		}
		if _, err := h.requestRelease(t, inc); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), fresh[0].IndicatorID) {
			t.Fatalf("release after a second isolation, with an alert from before it still live: %v", err)
		}
	})

	t.Run("a low-severity alert does not block", func(t *testing.T) {
		h := newLiveThreatHarness(t)
		inc := h.quarantine(t)
		it := c2Again("79")
		it.Indicator.Severity = indicator.Low
		h.accept(t, it)
		if _, err := h.requestRelease(t, inc); err != nil {
			t.Fatalf("release with only a low-severity alert since the quarantine: %v", err)
		}
	})
}

// TestIndicatorDuringReleaseIsDecidedAgainstTheNewPosture: an alert that
// arrives while the release step runs met the quarantine and only
// notified; when the release finishes it is decided again and contains
// the gateway. An alert re-sent after the release is no duplicate either.
func TestIndicatorDuringReleaseIsDecidedAgainstTheNewPosture(t *testing.T) {
	t.Run("during the release step", func(t *testing.T) {
		h := newLiveThreatHarness(t)
		rel := h.approvedRelease(t)
		var during []Accepted
		h.acts["release"].onApply = func() {
			if during == nil {
				during = h.accept(t, c2Again("80"))
			}
		}
		if r := h.run(t, rel.ID); r.State != store.RunSucceeded {
			t.Fatalf("release: %s %s", r.State, r.Error)
		}
		if len(during) != 1 || during[0].Policy != "quarantined-notify" {
			t.Fatalf("the alert during the release was decided as %+v, want quarantined-notify", during)
		}
		if got := h.pendingContainment(t); len(got) != 1 {
			t.Fatalf("containment runs after the release: %d, want 1", len(got))
		}
		if !h.hasAudit(t, "indicator.redecided", during[0].IndicatorID) {
			t.Fatal("no audit entry for the second decision")
		}
	})

	t.Run("re-sent after the release", func(t *testing.T) {
		h := newLiveThreatHarness(t)
		rel := h.approvedRelease(t)
		if r := h.run(t, rel.ID); r.State != store.RunSucceeded {
			t.Fatalf("release: %s %s", r.State, r.Error)
		}
		// The very alert that caused the quarantine, sent again.
		again := h.accept(t, ind(indicator.C2Beacon, "gw-dc"))
		if again[0].Duplicate || again[0].Policy != "c2-isolate" || again[0].RunID == "" {
			t.Fatalf("re-sent alert after release: %+v, want a new containment", again[0])
		}
	})
}
