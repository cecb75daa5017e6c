package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/store"
)

// repeatPolicies tell people about brute force at most once per ten
// minutes of an incident; crashes are told every time (no repeat_after).
const repeatPolicies = `
policies:
  - name: brute-notify
    match: 'indicator.kind == "brute_force"'
    runbook: notify-only
    approval: auto
    guards: {budget: false, repeat_after: 10m}
  - name: crash-notify
    match: 'indicator.kind == "crash"'
    runbook: notify-only
    approval: auto
    guards: {budget: false}
`

// since0 is when repeatHarness's clock starts.
var since0 = time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)

// repeatHarness is a journaled harness deciding with repeatPolicies, and
// its clock, at since0.
func repeatHarness(t *testing.T) (*harness, *movingClock) {
	clk := &movingClock{now: since0}
	return newJournaledHarness(t, func(o *Options) {
		o.Policies = loadPolicies(t, repeatPolicies)
		o.Clock = clk
	}), clk
}

// burst is the n-th low-severity alert of kind about gw, with a
// fingerprint of its own (so not a duplicate of the others).
func burst(kind indicator.Kind, gw string, n int) Item {
	it := ind(kind, gw)
	it.Indicator.Severity = indicator.Low
	it.Indicator.Fingerprint = fmt.Sprintf("%s-%s-%d", kind, gw, n)
	return it
}

// TestRepeatAfterCoversAnIncidentsRecentRun: a policy with
// guards.repeat_after starts one run per incident per window: distinct
// alerts it decides within it are recorded against the incident and name
// the run that covers them; another policy (even with the same runbook)
// is not covered; the first alert after the window starts a new run. A
// policy without it starts a new run once the last has finished, as
// before.
func TestRepeatAfterCoversAnIncidentsRecentRun(t *testing.T) {
	h, clk := repeatHarness(t)
	first := h.accept(t, burst(indicator.BruteForce, "gw-hq", 1))[0]
	if first.RunID == "" {
		t.Fatalf("the first alert started no run: %+v", first)
	}
	if r := h.run(t, first.RunID); r.State != store.RunSucceeded {
		t.Fatalf("run %s: %s", r.State, r.Error)
	}
	notified := h.acts["notify"].calls()

	clk.set(since0.Add(5 * time.Minute))
	second := h.accept(t, burst(indicator.BruteForce, "gw-hq", 2))[0]
	if second.IncidentID != first.IncidentID || second.RunID != first.RunID {
		t.Fatalf("an alert within repeat_after: incident %s run %s; want incident %s covered by run %s", second.IncidentID, second.RunID, first.IncidentID, first.RunID)
	}
	e := lastAudit(t, h, "run.not_started")
	var data map[string]any
	if err := json.Unmarshal(e.Data, &data); err != nil {
		t.Fatal(err)
	}
	if e.Run != first.RunID || data["repeat_after"] != "10m0s" || data["runbook"] != "notify-only" {
		t.Fatalf("run.not_started: run %s, data %s; want run %s, repeat_after 10m0s, runbook notify-only", e.Run, e.Data, first.RunID)
	}

	// Bulk intake records the same on the indicator's row.
	clk.set(since0.Add(9 * time.Minute))
	out, err := h.c.Enqueue(t.Context(), "detector-1", []Item{burst(indicator.BruteForce, "gw-hq", 3)})
	if err != nil {
		t.Fatal(err)
	}
	decideUntilStored(t, h, []string{out[0].IndicatorID})
	rec := storedIndicator(t, h, first.IncidentID, out[0].IndicatorID)
	if rec.Decision == nil || rec.Decision.RecentRun != first.RunID || rec.Decision.ActiveRun != "" {
		t.Fatalf("the bulk indicator's decision %+v; want recent_run %s", rec.Decision, first.RunID)
	}
	if n := countRuns(t, h, "gw-hq"); n != 1 {
		t.Fatalf("%d runs within repeat_after, want 1", n)
	}
	if got := h.acts["notify"].calls(); got != notified {
		t.Fatalf("notified %d times within repeat_after, want %d", got, notified)
	}

	// The window is the policy's: another policy with the same runbook
	// starts its own run for the incident.
	crash := h.accept(t, burst(indicator.Crash, "gw-hq", 1))[0]
	if crash.IncidentID != first.IncidentID || crash.RunID == "" || crash.RunID == first.RunID {
		t.Fatalf("another policy's alert: incident %s run %s; want a run of its own for incident %s", crash.IncidentID, crash.RunID, first.IncidentID)
	}
	if r := h.run(t, crash.RunID); r.State != store.RunSucceeded {
		t.Fatalf("run %s: %s", r.State, r.Error)
	}

	clk.set(since0.Add(10*time.Minute + time.Second))
	third := h.accept(t, burst(indicator.BruteForce, "gw-hq", 4))[0]
	if third.IncidentID != first.IncidentID || third.RunID == "" || third.RunID == first.RunID || third.RunID == crash.RunID {
		t.Fatalf("the first alert after repeat_after: incident %s run %s; want a new run for incident %s", third.IncidentID, third.RunID, first.IncidentID)
	}

	// Without repeat_after: a new run once the last has finished.
	clk.set(since0)
	a := h.accept(t, burst(indicator.Crash, "gw-osaka", 1))[0]
	if r := h.run(t, a.RunID); r.State != store.RunSucceeded {
		t.Fatalf("run %s: %s", r.State, r.Error)
	}
	clk.set(since0.Add(time.Minute))
	if b := h.accept(t, burst(indicator.Crash, "gw-osaka", 2))[0]; b.RunID == "" || b.RunID == a.RunID || b.IncidentID != a.IncidentID {
		t.Fatalf("without repeat_after: %+v after %+v; want a new run for the same incident", b, a)
	}
}

// TestRepeatAfterCountsEveryEndAndNoOtherIncident: a run that failed or
// was cancelled still covers its window (a person can start another), and
// the window is per incident: another gateway's incident
// starts its own run.
func TestRepeatAfterCountsEveryEndAndNoOtherIncident(t *testing.T) {
	for _, end := range []string{store.RunFailed, store.RunCancelled} {
		t.Run(end, func(t *testing.T) {
			h, clk := repeatHarness(t)
			first := h.accept(t, burst(indicator.BruteForce, "gw-hq", 1))[0]
			if end == store.RunCancelled {
				if _, err := h.c.Cancel(t.Context(), first.RunID, "alice", "noise"); err != nil {
					t.Fatal(err)
				}
			} else {
				h.acts["notify"].failures = []error{actions.Terminal(errors.New("the chat is down"))}
				if r := h.run(t, first.RunID); r.State != store.RunFailed {
					t.Fatalf("run %s, want failed", r.State)
				}
			}
			clk.set(since0.Add(time.Minute))
			if again := h.accept(t, burst(indicator.BruteForce, "gw-hq", 2))[0]; again.RunID != first.RunID {
				t.Fatalf("after a %s run: %+v; want it covered by %s", end, again, first.RunID)
			}
			if other := h.accept(t, burst(indicator.BruteForce, "gw-osaka", 1))[0]; other.RunID == "" || other.RunID == first.RunID {
				t.Fatalf("another gateway's incident: %+v; want a run of its own", other)
			}
		})
	}
}

func lastAudit(t *testing.T, h *harness, action string) audit.Entry {
	t.Helper()
	es, err := audit.List(t.Context(), h.st.DB(), "")
	if err != nil {
		t.Fatal(err)
	}
	for i := len(es) - 1; i >= 0; i-- {
		if es[i].Action == action {
			return es[i]
		}
	}
	t.Fatalf("no %s in the audit", action)
	return audit.Entry{}
}

func storedIndicator(t *testing.T, h *harness, incident, id string) store.IndicatorRecord {
	t.Helper()
	recs, err := h.st.IndicatorsOfIncident(t.Context(), incident)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("indicator %s is not in incident %s", id, incident)
	return store.IndicatorRecord{}
}

func countRuns(t *testing.T, h *harness, gw string) int {
	t.Helper()
	runs, err := h.st.Runs(t.Context(), store.RunFilter{Gateway: gw, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return len(runs)
}
