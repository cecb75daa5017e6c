package storetest

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/warden-ir/warden/store"
)

var runCases = []testCase{
	{"a run and its steps read back as inserted", runsReadBack},
	{"unknown run is ErrNotFound", runsUnknown},
	{"steps keep their idempotency keys across updates and reload", runsKeepIdemKeys},
	{"UpdateStep never changes a step's idempotency key", runsIdemKeyImmutable},
	{"UpdateStep records state, attempts, times, result, error and epoch", runsUpdateStep},
	{"UpdateRun records the mutable fields and keeps the rest", runsUpdateRun},
	{"inserting a run id twice fails and keeps the first", runsDuplicateID},
	{"ActiveRunFor finds unfinished runs only", runsActiveByState},
	{"ActiveRunFor is per incident and runbook", runsActiveScope},
	{"RecentRunFor finds the latest run the policy started for the incident since, in any state", runsRecent},
	{"EvidenceSucceeded names the actions without a succeeded step in the incident", runsEvidence},
	{"StepSucceededSince wants a succeeded step on the gateway finished at or after since", runsStepSucceededSince},
	{"CountAutoIsolations counts uncancelled automatic isolations since, fleet-wide and at the site", runsCountAutoIsolations},
	{"Runs filters by incident, gateway and state, newest first, without steps", runsList},
}

// fullRun is a run with every field set.
func fullRun() store.Run {
	r := runAt("run-1", "inc-1", "gw-1", "isolate", store.RunRunning, t0, "snapshot", "isolate")
	r.ApprovalRequired, r.ApprovalReason, r.ApprovedBy, r.ApprovedAt = true, "destructive", "alice", t0.Add(time.Second)
	r.AutoIsolation, r.OverrideReason, r.Error = true, "on call said so", "none yet"
	r.Plan = json.RawMessage(`{"steps":["snapshot","isolate"]}`)
	r.UpdatedAt, r.StartedAt, r.FinishedAt = t0.Add(2*time.Second), t0.Add(3*time.Second), t0.Add(4*time.Second)
	r.Steps[0].Params = map[string]string{"vm": "vm-17", "memory": "true"}
	r.Steps[1].Optional, r.Steps[1].Attempts, r.Steps[1].State = true, 2, store.StepFailed
	// A step stored already started (a run intake starts at once records
	// its first attempt with it): its start and epoch are kept.
	r.Steps[0].State, r.Steps[0].Attempts, r.Steps[0].Epoch, r.Steps[0].StartedAt = store.StepRunning, 1, 7, t0.Add(3*time.Second)
	return r
}

// checkStoredRun reads want.ID back from b and checks it with checkRun.
func checkStoredRun(t *testing.T, b store.Backend, where string, want store.Run) {
	t.Helper()
	got, err := b.Run(t.Context(), want.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, where, got, want)
}

func checkRun(t *testing.T, where string, got, want store.Run) {
	t.Helper()
	gotRow, wantRow := got, want
	gotRow.Steps, wantRow.Steps = nil, nil
	times := func(r store.Run) []time.Time {
		return []time.Time{r.ApprovedAt, r.CreatedAt, r.UpdatedAt, r.StartedAt, r.FinishedAt}
	}
	for i, tm := range times(gotRow) {
		if !tm.Equal(times(wantRow)[i]) {
			t.Errorf("%s: time %d of the run = %v, want %v", where, i, tm, times(wantRow)[i])
		}
	}
	gotRow.ApprovedAt, gotRow.CreatedAt, gotRow.UpdatedAt, gotRow.StartedAt, gotRow.FinishedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	wantRow.ApprovedAt, wantRow.CreatedAt, wantRow.UpdatedAt, wantRow.StartedAt, wantRow.FinishedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	gotPlan, wantPlan := string(gotRow.Plan), string(wantRow.Plan)
	gotRow.Plan, wantRow.Plan = nil, nil
	if gotPlan != wantPlan {
		t.Errorf("%s: plan = %s, want %s", where, gotPlan, wantPlan)
	}
	if !equalJSON(gotRow, wantRow) {
		t.Errorf("%s: run = %+v, want %+v", where, gotRow, wantRow)
	}
	if len(got.Steps) != len(want.Steps) {
		t.Fatalf("%s: %d steps, want %d", where, len(got.Steps), len(want.Steps))
	}
	for i, g := range got.Steps {
		w := want.Steps[i]
		if g.Run != w.Run || g.Index != w.Index || g.Name != w.Name || g.Action != w.Action || g.Optional != w.Optional ||
			g.State != w.State || g.Attempts != w.Attempts || g.IdemKey != w.IdemKey || g.Epoch != w.Epoch || g.Error != w.Error ||
			!maps.Equal(g.Params, w.Params) || string(g.Result) != string(w.Result) ||
			!g.StartedAt.Equal(w.StartedAt) || !g.FinishedAt.Equal(w.FinishedAt) {
			t.Errorf("%s: step %d = %+v, want %+v", where, i, g, w)
		}
	}
}

// reloaded reads run id back with its steps, which must number n.
func reloaded(t *testing.T, b store.Backend, id string, n int) store.Run {
	t.Helper()
	r, err := b.Run(t.Context(), id)
	if err != nil {
		t.Fatalf("reading %s back: %v", id, err)
	}
	if len(r.Steps) != n {
		t.Fatalf("%s read back with %d steps, want %d", id, len(r.Steps), n)
	}
	return r
}

// equalJSON compares two values by their JSON form (time-free values only).
func equalJSON(a, b any) bool {
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && string(ja) == string(jb)
}

func runsReadBack(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	want := fullRun()
	var inTx store.Run
	commit(t, b, func(tx store.Tx) error {
		if err := tx.InsertRun(ctx, want); err != nil {
			return err
		}
		var err error
		inTx, err = tx.Run(ctx, want.ID)
		return err
	})
	checkRun(t, "inside the transaction", inTx, want)
	checkStoredRun(t, b, "after commit", want)
}

func runsUnknown(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	if _, err := b.Run(ctx, "run-x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Reader.Run(unknown) = %v, want ErrNotFound", err)
	}
	commit(t, b, func(tx store.Tx) error {
		if _, err := tx.Run(ctx, "run-x"); !errors.Is(err, store.ErrNotFound) {
			return errors.New("Tx.Run(unknown) is not ErrNotFound: " + errString(err))
		}
		return nil
	})
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

func idemKeys(r store.Run) []string {
	var out []string
	for _, s := range r.Steps {
		out = append(out, s.IdemKey)
	}
	return out
}

func runsKeepIdemKeys(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	r := runAt("run-1", "inc-1", "gw-1", "isolate", store.RunPending, t0, "snapshot", "isolate")
	want := idemKeys(r)
	commit(t, b, func(tx store.Tx) error { return tx.InsertRun(ctx, r) })
	commit(t, b, func(tx store.Tx) error {
		s := r.Steps[0]
		s.State, s.Attempts, s.StartedAt = store.StepRunning, 1, t0.Add(time.Second)
		r.State, r.StartedAt, r.UpdatedAt = store.RunRunning, t0.Add(time.Second), t0.Add(time.Second)
		return all(
			func() error { return tx.UpdateStep(ctx, s) },
			func() error { return tx.UpdateRun(ctx, r) },
		)
	})
	commit(t, b, func(tx store.Tx) error {
		s := r.Steps[0]
		s.State, s.Attempts, s.FinishedAt = store.StepSucceeded, 2, t0.Add(2*time.Second)
		r.State, r.FinishedAt = store.RunFailed, t0.Add(3*time.Second)
		return all(
			func() error { return tx.UpdateStep(ctx, s) },
			func() error { return tx.UpdateRun(ctx, r) },
		)
	})
	got := reloaded(t, b, "run-1", 2)
	if keys := idemKeys(got); !slices.Equal(keys, want) {
		t.Errorf("idempotency keys after updates = %v, want %v", keys, want)
	}
	if got.State != store.RunFailed || got.Steps[0].State != store.StepSucceeded || got.Steps[0].Attempts != 2 {
		t.Errorf("updates lost: run %s, step %s after %d attempts", got.State, got.Steps[0].State, got.Steps[0].Attempts)
	}
}

func runsIdemKeyImmutable(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	r := runAt("run-1", "inc-1", "gw-1", "isolate", store.RunPending, t0, "isolate")
	commit(t, b, func(tx store.Tx) error { return tx.InsertRun(ctx, r) })
	s := r.Steps[0]
	s.IdemKey, s.State = "someone-else", store.StepRunning
	commit(t, b, func(tx store.Tx) error { return tx.UpdateStep(ctx, s) })
	got := reloaded(t, b, "run-1", 1)
	if got.Steps[0].IdemKey != r.Steps[0].IdemKey || got.Steps[0].State != store.StepRunning {
		t.Errorf("step after UpdateStep = key %q state %s, want key %q state running", got.Steps[0].IdemKey, got.Steps[0].State, r.Steps[0].IdemKey)
	}
}

func runsUpdateStep(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	r := runAt("run-1", "inc-1", "gw-1", "isolate", store.RunRunning, t0, "snapshot", "isolate")
	commit(t, b, func(tx store.Tx) error { return tx.InsertRun(ctx, r) })
	s := r.Steps[1]
	s.State, s.Attempts, s.Epoch, s.Error = store.StepFailed, 3, 7, "portgroup missing"
	s.StartedAt, s.FinishedAt, s.Result = t0.Add(time.Second), t0.Add(2*time.Second), json.RawMessage(`{"moved":false}`)
	commit(t, b, func(tx store.Tx) error { return tx.UpdateStep(ctx, s) })
	want := r
	want.Steps = slices.Clone(r.Steps)
	want.Steps[1] = s
	checkStoredRun(t, b, "after UpdateStep", want)
}

func runsUpdateRun(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	orig := runAt("run-1", "inc-1", "gw-1", "isolate", store.RunAwaitingApproval, t0, "isolate")
	orig.Plan = json.RawMessage(`{"v":1}`)
	commit(t, b, func(tx store.Tx) error { return tx.InsertRun(ctx, orig) })

	upd := orig
	upd.State, upd.ApprovalRequired, upd.ApprovalReason = store.RunSucceeded, true, "destructive"
	upd.ApprovedBy, upd.ApprovedAt, upd.OverrideReason, upd.Error = "alice", t0.Add(time.Second), "override", "partial"
	upd.UpdatedAt, upd.StartedAt, upd.FinishedAt = t0.Add(2*time.Second), t0.Add(3*time.Second), t0.Add(4*time.Second)
	// Not mutable: these stay as inserted.
	changed := upd
	changed.Gateway, changed.Runbook, changed.Incident, changed.Plan, changed.CreatedAt = "gw-2", "other", "inc-2", json.RawMessage(`{"v":2}`), t0.Add(time.Hour)
	changed.Steps = nil
	commit(t, b, func(tx store.Tx) error { return tx.UpdateRun(ctx, changed) })

	checkStoredRun(t, b, "after UpdateRun", upd)
}

func runsDuplicateID(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	first := runAt("run-1", "inc-1", "gw-1", "isolate", store.RunPending, t0, "snapshot", "isolate")
	commit(t, b, func(tx store.Tx) error { return tx.InsertRun(ctx, first) })
	second := runAt("run-1", "inc-2", "gw-2", "release", store.RunPending, t0.Add(time.Second), "release")
	if err := b.Tx(ctx, func(tx store.Tx) error { return tx.InsertRun(ctx, second) }); err == nil {
		t.Fatal("inserting run-1 a second time succeeded")
	}
	checkStoredRun(t, b, "after the refused second insert", first)
}

func runsActiveByState(t *testing.T, h Harness) {
	tests := map[string]struct {
		state  string
		active bool
	}{
		"pending":           {store.RunPending, true},
		"awaiting approval": {store.RunAwaitingApproval, true},
		"running":           {store.RunRunning, true},
		"succeeded":         {store.RunSucceeded, false},
		"failed":            {store.RunFailed, false},
		"cancelled":         {store.RunCancelled, false},
	}
	b, ctx := h.Open(t), t.Context()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			inc := "inc-" + tc.state
			commit(t, b, func(tx store.Tx) error {
				return tx.InsertRun(ctx, runAt("run-"+tc.state, inc, "gw-1", "isolate", tc.state, t0, "isolate"))
			})
			commit(t, b, func(tx store.Tx) error {
				id, ok, err := tx.ActiveRunFor(ctx, inc, "isolate")
				if err != nil {
					return err
				}
				if ok != tc.active || (ok && id != "run-"+tc.state) {
					t.Errorf("ActiveRunFor = %q, %t; want active=%t", id, ok, tc.active)
				}
				return nil
			})
		})
	}
}

func runsActiveScope(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error {
		return writeAll(ctx, tx.InsertRun, []store.Run{
			runAt("run-done", "inc-1", "gw-1", "isolate", store.RunSucceeded, t0, "isolate"),
			runAt("run-live", "inc-1", "gw-1", "isolate", store.RunRunning, t0.Add(us), "isolate"),
		})
	})
	tests := map[string]struct {
		incident, runbook string
		want              string
	}{
		"same incident and runbook": {"inc-1", "isolate", "run-live"},
		"other runbook":             {"inc-1", "release", ""},
		"other incident":            {"inc-2", "isolate", ""},
	}
	commit(t, b, func(tx store.Tx) error {
		for name, tc := range tests {
			id, ok, err := tx.ActiveRunFor(ctx, tc.incident, tc.runbook)
			if err != nil {
				return err
			}
			if id != tc.want || ok != (tc.want != "") {
				t.Errorf("%s: ActiveRunFor = %q, %t; want %q", name, id, ok, tc.want)
			}
		}
		return nil
	})
}

func runsRecent(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	by := func(r store.Run, policy string) store.Run { r.Policy = policy; return r }
	commit(t, b, func(tx store.Tx) error {
		return writeAll(ctx, tx.InsertRun, []store.Run{
			by(runAt("run-old", "inc-1", "gw-1", "investigate", store.RunSucceeded, t0, "investigate"), "crash-investigate"),
			by(runAt("run-mid", "inc-1", "gw-1", "investigate", store.RunFailed, t0.Add(time.Minute), "investigate"), "crash-investigate"),
			by(runAt("run-new", "inc-1", "gw-1", "investigate", store.RunCancelled, t0.Add(2*time.Minute), "investigate"), "crash-investigate"),
			by(runAt("run-other-policy", "inc-1", "gw-1", "investigate", store.RunSucceeded, t0.Add(3*time.Minute), "investigate"), "traffic-investigate"),
			by(runAt("run-by-hand", "inc-1", "gw-1", "investigate", store.RunSucceeded, t0.Add(3*time.Minute), "investigate"), ""),
			by(runAt("run-other-incident", "inc-2", "gw-1", "investigate", store.RunSucceeded, t0.Add(3*time.Minute), "investigate"), "crash-investigate"),
		})
	})
	tests := map[string]struct {
		incident, policy string
		since            time.Time
		want             string
	}{
		"the latest of several":        {"inc-1", "crash-investigate", t0, "run-new"},
		"created exactly at since":     {"inc-1", "crash-investigate", t0.Add(2 * time.Minute), "run-new"},
		"none created since":           {"inc-1", "crash-investigate", t0.Add(2*time.Minute + us), ""},
		"other policy, same runbook":   {"inc-1", "traffic-investigate", t0, "run-other-policy"},
		"other incident, other policy": {"inc-2", "traffic-investigate", t0, ""},
		"unknown incident":             {"inc-3", "crash-investigate", t0, ""},
	}
	commit(t, b, func(tx store.Tx) error {
		for name, tc := range tests {
			id, created, ok, err := tx.RecentRunFor(ctx, tc.incident, tc.policy, tc.since)
			if err != nil {
				return err
			}
			if id != tc.want || ok != (tc.want != "") {
				t.Errorf("%s: RecentRunFor = %q, %t; want %q", name, id, ok, tc.want)
			}
			if id == "run-new" && !created.Equal(t0.Add(2*time.Minute)) {
				t.Errorf("%s: created %v, want %v", name, created, t0.Add(2*time.Minute))
			}
		}
		return nil
	})
}

func runsEvidence(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	mine := runAt("run-1", "inc-1", "gw-1", "evidence", store.RunFailed, t0, "capture", "snapshot")
	mine.Steps[0].State, mine.Steps[1].State = store.StepSucceeded, store.StepFailed
	other := runAt("run-2", "inc-2", "gw-1", "evidence", store.RunSucceeded, t0, "snapshot", "memory")
	other.Steps[0].State, other.Steps[1].State = store.StepSucceeded, store.StepSucceeded
	commit(t, b, func(tx store.Tx) error {
		return all(func() error { return tx.InsertRun(ctx, mine) }, func() error { return tx.InsertRun(ctx, other) })
	})
	tests := map[string]struct {
		actions, missing []string
	}{
		"one present, two missing, in the order asked": {[]string{"memory", "capture", "snapshot"}, []string{"memory", "snapshot"}},
		"all present":   {[]string{"capture"}, nil},
		"nothing asked": {nil, nil},
	}
	commit(t, b, func(tx store.Tx) error {
		for name, tc := range tests {
			missing, err := tx.EvidenceSucceeded(ctx, "inc-1", tc.actions)
			if err != nil {
				return err
			}
			if !slices.Equal(missing, tc.missing) {
				t.Errorf("%s: EvidenceSucceeded(%v) = %v, want %v", name, tc.actions, missing, tc.missing)
			}
		}
		return nil
	})
}

func runsStepSucceededSince(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	done := t0.Add(time.Minute)
	r := runAt("run-1", "inc-1", "gw-1", "baseline", store.RunSucceeded, t0, "verify_baseline", "patch")
	commit(t, b, func(tx store.Tx) error { return tx.InsertRun(ctx, r) })
	ok, failed := r.Steps[0], r.Steps[1]
	ok.State, ok.FinishedAt = store.StepSucceeded, done
	failed.State, failed.FinishedAt = store.StepFailed, done
	commit(t, b, func(tx store.Tx) error {
		return all(func() error { return tx.UpdateStep(ctx, ok) }, func() error { return tx.UpdateStep(ctx, failed) })
	})
	tests := map[string]struct {
		gw, action string
		since      time.Time
		want       bool
	}{
		"finished after since":       {"gw-1", "verify_baseline", done.Add(-time.Second), true},
		"finished exactly at since":  {"gw-1", "verify_baseline", done, true},
		"finished before since":      {"gw-1", "verify_baseline", done.Add(us), false},
		"other gateway":              {"gw-2", "verify_baseline", t0, false},
		"other action":               {"gw-1", "isolate", t0, false},
		"failed step does not count": {"gw-1", "patch", t0, false},
	}
	commit(t, b, func(tx store.Tx) error {
		for name, tc := range tests {
			got, err := tx.StepSucceededSince(ctx, tc.gw, tc.action, tc.since)
			if err != nil {
				return err
			}
			if got != tc.want {
				t.Errorf("%s: StepSucceededSince = %t, want %t", name, got, tc.want)
			}
		}
		return nil
	})
}

func runsCountAutoIsolations(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	auto := func(id, site, state string, at time.Time, isAuto bool) store.Run {
		r := runAt(id, "inc-"+id, "gw-"+id, "isolate", state, at, "isolate")
		r.Site, r.AutoIsolation = site, isAuto
		return r
	}
	runs := []store.Run{
		auto("a1", "site-a", store.RunSucceeded, t0, true),
		auto("a2", "site-a", store.RunPending, t0.Add(time.Second), true),
		auto("b1", "site-b", store.RunRunning, t0, true),
		auto("cancelled", "site-a", store.RunCancelled, t0, true),
		auto("manual", "site-a", store.RunSucceeded, t0, false),
		auto("old", "site-a", store.RunSucceeded, t0.Add(-us), true),
	}
	commit(t, b, func(tx store.Tx) error { return writeAll(ctx, tx.InsertRun, runs) })
	commit(t, b, func(tx store.Tx) error {
		fleet, atSite, err := tx.CountAutoIsolations(ctx, t0, "site-a")
		if err != nil {
			return err
		}
		if fleet != 3 || atSite != 2 {
			t.Errorf("CountAutoIsolations = fleet %d, site %d; want 3 and 2", fleet, atSite)
		}
		return nil
	})
}

func runsList(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	runs := []store.Run{
		runAt("run-1", "inc-1", "gw-1", "isolate", store.RunSucceeded, t0, "isolate"),
		runAt("run-2", "inc-1", "gw-1", "release", store.RunPending, t0.Add(time.Second), "release"),
		runAt("run-3", "inc-2", "gw-2", "isolate", store.RunRunning, t0.Add(2*time.Second), "isolate"),
	}
	commit(t, b, func(tx store.Tx) error { return writeAll(ctx, tx.InsertRun, runs) })
	tests := map[string]struct {
		filter store.RunFilter
		want   []string
	}{
		"all, newest first": {store.RunFilter{}, []string{"run-3", "run-2", "run-1"}},
		"by incident":       {store.RunFilter{Incident: "inc-1"}, []string{"run-2", "run-1"}},
		"by gateway":        {store.RunFilter{Gateway: "gw-2"}, []string{"run-3"}},
		"by states":         {store.RunFilter{States: []string{store.RunPending, store.RunRunning}}, []string{"run-3", "run-2"}},
		"limited":           {store.RunFilter{Limit: 1}, []string{"run-3"}},
	}
	for name, tc := range tests {
		got, err := b.Runs(ctx, tc.filter)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var ids []string
		for _, r := range got {
			ids = append(ids, r.ID)
			if len(r.Steps) != 0 {
				t.Errorf("%s: Runs returned %s with %d steps, want none", name, r.ID, len(r.Steps))
			}
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("%s: Runs = %v, want %v", name, ids, tc.want)
		}
	}
}
