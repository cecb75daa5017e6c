package storetest

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/intake/replaytest"
	"github.com/warden-ir/warden/store"
)

// ---- postures ----

var postureCases = []testCase{
	{"an unknown gateway is desired normal", postureUnknown},
	{"desired posture reads back in and out of the transaction", postureDesired},
	{"setting the same desired posture again keeps its time", postureSameKeepsTime},
	{"changing the desired posture moves its time", postureChangeMovesTime},
	{"observed posture keeps the desired one", postureObservedKeepsDesired},
	{"observed posture of an unknown gateway leaves it desired normal", postureObservedUnknown},
}

func postureUnknown(t *testing.T, h Harness) {
	b := h.Open(t)
	p, err := b.Posture(t.Context(), "gw-x")
	if err != nil || p.Gateway != "gw-x" || p.Desired != store.PostureNormal || p.Observed != "" || !p.UpdatedAt.IsZero() {
		t.Errorf("Posture(unknown) = %+v, %v; want desired normal and nothing else", p, err)
	}
}

func postureDesired(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	check := func(where string, p store.Posture, err error) {
		t.Helper()
		if err != nil || p.Gateway != "gw-1" || p.Desired != store.PostureQuarantined || p.Incident != "inc-1" || !p.UpdatedAt.Equal(t0) {
			t.Errorf("%s: Posture = %+v, %v; want quarantined for inc-1 at %v", where, p, err, t0)
		}
	}
	commit(t, b, func(tx store.Tx) error {
		if err := tx.SetDesiredPosture(ctx, "gw-1", store.PostureQuarantined, "inc-1", t0); err != nil {
			return err
		}
		p, err := tx.Posture(ctx, "gw-1")
		check("inside the transaction", p, err)
		return nil
	})
	p, err := b.Posture(ctx, "gw-1")
	check("after commit", p, err)
}

// desireTwice quarantines gw-1 for inc-1 at t0, then, in a second
// transaction an hour later, desires posture for incident, and reads gw-1
// back.
func desireTwice(t *testing.T, h Harness, posture, incident string) (store.Posture, error) {
	t.Helper()
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error {
		return tx.SetDesiredPosture(ctx, "gw-1", store.PostureQuarantined, "inc-1", t0)
	})
	commit(t, b, func(tx store.Tx) error {
		return tx.SetDesiredPosture(ctx, "gw-1", posture, incident, t0.Add(time.Hour))
	})
	return b.Posture(ctx, "gw-1")
}

func postureSameKeepsTime(t *testing.T, h Harness) {
	p, err := desireTwice(t, h, store.PostureQuarantined, "inc-2")
	if err != nil || p.Desired != store.PostureQuarantined || p.Incident != "inc-2" || !p.UpdatedAt.Equal(t0) {
		t.Errorf("Posture = %+v, %v; want quarantined for inc-2 since the first isolation (%v)", p, err, t0)
	}
}

func postureChangeMovesTime(t *testing.T, h Harness) {
	p, err := desireTwice(t, h, store.PostureReleased, "inc-1")
	if err != nil || p.Desired != store.PostureReleased || !p.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("Posture = %+v, %v; want released at %v", p, err, t0.Add(time.Hour))
	}
}

func postureObservedKeepsDesired(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error {
		return tx.SetDesiredPosture(ctx, "gw-1", store.PostureQuarantined, "inc-1", t0)
	})
	detail := json.RawMessage(`{"portgroup":"quarantine"}`)
	if err := b.SetObservedPosture(ctx, "gw-1", store.PostureQuarantined, detail, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	p, err := b.Posture(ctx, "gw-1")
	if err != nil || p.Desired != store.PostureQuarantined || p.Incident != "inc-1" || !p.UpdatedAt.Equal(t0) ||
		p.Observed != store.PostureQuarantined || string(p.ObservedDetail) != string(detail) || !p.ObservedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("Posture = %+v, %v; want desired as set and observed quarantined with its detail", p, err)
	}
}

func postureObservedUnknown(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	if err := b.SetObservedPosture(ctx, "gw-1", store.PostureNormal, nil, t0); err != nil {
		t.Fatal(err)
	}
	p, err := b.Posture(ctx, "gw-1")
	if err != nil || p.Desired != store.PostureNormal || p.Observed != store.PostureNormal || !p.ObservedAt.Equal(t0) {
		t.Errorf("Posture = %+v, %v; want desired and observed normal", p, err)
	}
}

// ---- breaker ----

var breakerCases = []testCase{
	{"a fresh backend's breaker is closed", breakerFresh},
	{"tripping twice keeps the first trip", breakerTripTwice},
	{"reset reports whether it was tripped, twice", breakerResetTwice},
}

func breakerFresh(t *testing.T, h Harness) {
	b := h.Open(t)
	if br, err := b.Breaker(t.Context()); err != nil || br.Tripped {
		t.Errorf("Breaker = %+v, %v; want closed", br, err)
	}
}

func breakerTripTwice(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error { return tx.TripBreaker(ctx, t0, "first") })
	commit(t, b, func(tx store.Tx) error { return tx.TripBreaker(ctx, t0.Add(time.Hour), "second") })
	br, err := b.Breaker(ctx)
	if err != nil || !br.Tripped || br.Reason != "first" || !br.TrippedAt.Equal(t0) {
		t.Errorf("Breaker = %+v, %v; want tripped by the first at %v", br, err, t0)
	}
}

func breakerResetTwice(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error { return tx.TripBreaker(ctx, t0, "first") })
	for i, want := range []bool{true, false} {
		commit(t, b, func(tx store.Tx) error {
			was, err := tx.ResetBreaker(ctx)
			if err == nil && was != want {
				t.Errorf("reset %d reported tripped=%t, want %t", i, was, want)
			}
			return err
		})
	}
	if br, err := b.Breaker(ctx); err != nil || br.Tripped {
		t.Errorf("Breaker after reset = %+v, %v; want closed", br, err)
	}
}

// ---- incidents ----

var incidentCases = []testCase{
	{"OpenIncidentFor finds an incident not closed, updated at or after since", incidentOpenWindow},
	{"OpenIncidentFor returns the most recently updated", incidentOpenNewest},
	{"UpsertIncident updates the mutable fields and keeps the rest", incidentUpsert},
	{"SetIncidentStatus changes status and time", incidentSetStatus},
	{"CountOpenIncidents counts all but closed", incidentCountOpen},
	{"Incidents lists newest first up to the limit", incidentList},
	{"unknown incident is ErrNotFound", incidentUnknown},
}

func incidentOpenWindow(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	contained := incidentAt("inc-contained", "gw-2", t0)
	contained.Status = store.IncidentContained
	closed := incidentAt("inc-closed", "gw-3", t0)
	closed.Status = store.IncidentClosed
	commit(t, b, func(tx store.Tx) error {
		return writeAll(ctx, tx.UpsertIncident, []store.Incident{
			incidentAt("inc-open", "gw-1", t0),
			contained,
			closed,
		})
	})
	tests := map[string]struct {
		gw    string
		since time.Time
		want  string
	}{
		"updated after since":      {"gw-1", t0.Add(-time.Hour), "inc-open"},
		"updated exactly at since": {"gw-1", t0, "inc-open"},
		"updated before since":     {"gw-1", t0.Add(us), ""},
		"contained counts":         {"gw-2", t0, "inc-contained"},
		"closed does not":          {"gw-3", t0.Add(-time.Hour), ""},
		"other gateway":            {"gw-4", t0.Add(-time.Hour), ""},
	}
	commit(t, b, func(tx store.Tx) error {
		for name, tc := range tests {
			in, ok, err := tx.OpenIncidentFor(ctx, tc.gw, tc.since)
			if err != nil {
				return err
			}
			if in.ID != tc.want || ok != (tc.want != "") {
				t.Errorf("%s: OpenIncidentFor = %q, %t; want %q", name, in.ID, ok, tc.want)
			}
		}
		return nil
	})
}

func incidentOpenNewest(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	older, newer := incidentAt("inc-older", "gw-1", t0), incidentAt("inc-newer", "gw-1", t0.Add(-time.Hour))
	newer.UpdatedAt = t0.Add(time.Minute) // opened earlier, touched later
	commit(t, b, func(tx store.Tx) error {
		return all(func() error { return tx.UpsertIncident(ctx, older) }, func() error { return tx.UpsertIncident(ctx, newer) })
	})
	commit(t, b, func(tx store.Tx) error {
		in, ok, err := tx.OpenIncidentFor(ctx, "gw-1", t0.Add(-time.Hour))
		if err == nil && (!ok || in.ID != "inc-newer") {
			t.Errorf("OpenIncidentFor = %q, %t; want inc-newer", in.ID, ok)
		}
		return err
	})
}

func checkIncident(t *testing.T, got, want store.Incident) {
	t.Helper()
	if got.ID != want.ID || got.Gateway != want.Gateway || got.Site != want.Site || got.Status != want.Status ||
		got.Severity != want.Severity || got.Title != want.Title || got.LastStatus != want.LastStatus ||
		!got.OpenedAt.Equal(want.OpenedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("incident = %+v, want %+v", got, want)
	}
}

func incidentUpsert(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	first := incidentAt("inc-1", "gw-1", t0)
	commit(t, b, func(tx store.Tx) error { return tx.UpsertIncident(ctx, first) })
	second := first
	second.Gateway, second.Site, second.OpenedAt = "gw-2", "site-b", t0.Add(time.Hour) // kept as first stored
	second.UpdatedAt, second.Status, second.Severity, second.Title, second.LastStatus = t0.Add(time.Minute), store.IncidentContained, "critical", "exfiltration", "resolved"
	commit(t, b, func(tx store.Tx) error { return tx.UpsertIncident(ctx, second) })

	want := second
	want.Gateway, want.Site, want.OpenedAt = first.Gateway, first.Site, first.OpenedAt
	got, err := b.Incident(ctx, "inc-1")
	if err != nil {
		t.Fatal(err)
	}
	checkIncident(t, got, want)
	commit(t, b, func(tx store.Tx) error {
		got, err := tx.IncidentByID(ctx, "inc-1")
		if err == nil {
			checkIncident(t, got, want)
		}
		return err
	})
}

func incidentSetStatus(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	in := incidentAt("inc-1", "gw-1", t0)
	commit(t, b, func(tx store.Tx) error { return tx.UpsertIncident(ctx, in) })
	commit(t, b, func(tx store.Tx) error {
		return tx.SetIncidentStatus(ctx, "inc-1", store.IncidentClosed, t0.Add(time.Hour))
	})
	want := in
	want.Status, want.UpdatedAt = store.IncidentClosed, t0.Add(time.Hour)
	got, err := b.Incident(ctx, "inc-1")
	if err != nil {
		t.Fatal(err)
	}
	checkIncident(t, got, want)
}

func incidentCountOpen(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	var ins []store.Incident
	for i, st := range []string{store.IncidentOpen, store.IncidentContained, store.IncidentClosed, store.IncidentOpen} {
		in := incidentAt(fmt.Sprintf("inc-%d-%s", i, st), "gw-1", t0.Add(time.Duration(i)*time.Second))
		in.Status = st
		ins = append(ins, in)
	}
	ins[3].Gateway = "gw-2"
	commit(t, b, func(tx store.Tx) error {
		if err := writeAll(ctx, tx.UpsertIncident, ins); err != nil {
			return err
		}
		n, err := tx.CountOpenIncidents(ctx, "gw-1")
		if err == nil && n != 2 {
			t.Errorf("CountOpenIncidents(gw-1) = %d, want 2 (open and contained)", n)
		}
		return err
	})
}

func incidentList(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error {
		return writeAll(ctx, tx.UpsertIncident, []store.Incident{
			incidentAt("inc-1", "gw-1", t0),
			incidentAt("inc-3", "gw-3", t0.Add(2*time.Second)),
			incidentAt("inc-2", "gw-2", t0.Add(time.Second)),
		})
	})
	for limit, want := range map[int][]string{10: {"inc-3", "inc-2", "inc-1"}, 2: {"inc-3", "inc-2"}} {
		ins, err := b.Incidents(ctx, limit)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, in := range ins {
			ids = append(ids, in.ID)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("Incidents(%d) = %v, want %v", limit, ids, want)
		}
	}
}

func incidentUnknown(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	if _, err := b.Incident(ctx, "inc-x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Reader.Incident(unknown) = %v, want ErrNotFound", err)
	}
	commit(t, b, func(tx store.Tx) error {
		if _, err := tx.IncidentByID(ctx, "inc-x"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Tx.IncidentByID(unknown) = %v, want ErrNotFound", err)
		}
		return nil
	})
}

// ---- indicators ----

var indicatorCases = []testCase{
	{"an indicator reads back whole", indicatorReadBack},
	{"unknown indicator is ErrNotFound", indicatorUnknown},
	{"inserting an indicator id twice fails", indicatorDuplicate},
	{"IndicatorsOfIncident lists oldest first", indicatorsOfIncident},
	{"RecentByFingerprint finds the newest matched one at or after since", indicatorRecentByFingerprint},
	{"counts of recent indicators and gateways", indicatorCounts},
	{"the breaker's gateways are filled from the indicators of a store older than schema 7", indicatorGatewaysBackfilled},
	{"LiveThreats lists firing, unresolved, severe enough ones after since, oldest first", indicatorLiveThreats},
	{"ResolveIndicator ends a live threat once", indicatorResolve},
	{"ResolveIndicator of an unknown indicator is ErrNotFound", indicatorResolveUnknown},
	{"IndicatorDigests are the same in and out of a transaction and change with the row", indicatorDigests},
	{"a bulk indicator's sender and decision read back and are under its digest", indicatorSenderDecision},
}

func indicatorSenderDecision(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	want := indicatorAt("ind-1", "gw-1", "inc-1", t0)
	want.Sender = "alertmanager"
	want.Decision = &store.IndicatorDecision{At: t0, Triage: "accepted", Policy: "catch-all-notify", Runbook: "notify", ActiveRun: "run-1", RecentRun: "run-0"}
	commit(t, b, func(tx store.Tx) error {
		if err := tx.InsertIndicator(ctx, want); err != nil {
			return err
		}
		return tx.InsertIndicator(ctx, indicatorAt("ind-2", "gw-1", "inc-1", t0))
	})
	var got store.IndicatorRecord
	commit(t, b, func(tx store.Tx) error {
		var err error
		got, err = tx.IndicatorByID(ctx, "ind-1")
		return err
	})
	checkIndicator(t, "IndicatorByID", got, want)
	listed, err := b.IndicatorsOfIncident(ctx, "inc-1")
	if err != nil || len(listed) != 2 {
		t.Fatalf("IndicatorsOfIncident: %d, %v; want 2", len(listed), err)
	}
	checkIndicator(t, "IndicatorsOfIncident", listed[0], want)
	if listed[1].Sender != "" || listed[1].Decision != nil {
		t.Errorf("an indicator stored without them reads back sender %q decision %+v", listed[1].Sender, listed[1].Decision)
	}
	before, err := b.IndicatorDigests(ctx, []string{"ind-1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, edit := range []string{`UPDATE indicators SET decision = '{"policy":"none"}' WHERE id = 'ind-1'`, `UPDATE indicators SET sender = 'someone' WHERE id = 'ind-1'`} {
		if _, err := b.DB().ExecContext(ctx, edit); err != nil {
			t.Fatal(err)
		}
		after, err := b.IndicatorDigests(ctx, []string{"ind-1"})
		if err != nil {
			t.Fatal(err)
		}
		if after["ind-1"] == before["ind-1"] {
			t.Errorf("after %s the digest is unchanged", edit)
		}
		before = after
	}
}

func indicatorDigests(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	var inTx map[string][32]byte
	commit(t, b, func(tx store.Tx) error {
		for _, id := range []string{"ind-1", "ind-2"} {
			if err := tx.InsertIndicator(ctx, indicatorAt(id, "gw-1", "inc-1", t0)); err != nil {
				return err
			}
		}
		var err error
		inTx, err = tx.IndicatorDigests(ctx, []string{"ind-1", "ind-2", "ind-x"})
		return err
	})
	out, err := b.IndicatorDigests(ctx, []string{"ind-1", "ind-2", "ind-x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || len(inTx) != 2 || out["ind-1"] != inTx["ind-1"] || out["ind-2"] != inTx["ind-2"] || out["ind-1"] == out["ind-2"] {
		t.Fatalf("digests %x outside, %x inside the transaction: want the same two, distinct, none for ind-x", out, inTx)
	}
	if _, err := b.DB().ExecContext(ctx, `UPDATE indicators SET reason = 'edited' WHERE id = 'ind-2'`); err != nil {
		t.Fatal(err)
	}
	after, err := b.IndicatorDigests(ctx, []string{"ind-1", "ind-2"})
	if err != nil {
		t.Fatal(err)
	}
	if after["ind-1"] != out["ind-1"] || after["ind-2"] == out["ind-2"] {
		t.Errorf("after editing ind-2: %x, was %x; want only ind-2's changed", after, out)
	}
}

func checkIndicator(t *testing.T, where string, got, want store.IndicatorRecord) {
	t.Helper()
	gotAt, wantAt := got.Indicator.ObservedAt, want.Indicator.ObservedAt
	if !got.ReceivedAt.Equal(want.ReceivedAt) || !gotAt.Equal(wantAt) {
		t.Errorf("%s: received %v observed %v, want %v and %v", where, got.ReceivedAt, gotAt, want.ReceivedAt, wantAt)
	}
	got.ReceivedAt, want.ReceivedAt = time.Time{}, time.Time{}
	got.Indicator.ObservedAt, want.Indicator.ObservedAt = time.Time{}, time.Time{}
	if !equalJSON(got, want) {
		t.Errorf("%s: indicator = %+v, want %+v", where, got, want)
	}
}

func indicatorReadBack(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	want := indicatorAt("ind-1", "gw-1", "inc-1", t0)
	want.Reason, want.Duplicate = "matched policy isolate-on-c2", true
	want.Indicator.Raw = json.RawMessage(`{"alert":{"signature_id":2027865}}`)
	commit(t, b, func(tx store.Tx) error {
		if err := tx.InsertIndicator(ctx, want); err != nil {
			return err
		}
		got, err := tx.IndicatorByID(ctx, "ind-1")
		if err == nil {
			checkIndicator(t, "inside the transaction", got, want)
		}
		return err
	})
	rs, err := b.IndicatorsOfIncident(ctx, "inc-1")
	if err != nil || len(rs) != 1 {
		t.Fatalf("IndicatorsOfIncident = %d, %v; want 1", len(rs), err)
	}
	checkIndicator(t, "after commit", rs[0], want)
}

func indicatorUnknown(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error {
		if _, err := tx.IndicatorByID(ctx, "ind-x"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("IndicatorByID(unknown) = %v, want ErrNotFound", err)
		}
		return nil
	})
}

func indicatorDuplicate(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error { return tx.InsertIndicator(ctx, indicatorAt("ind-1", "gw-1", "inc-1", t0)) })
	err := b.Tx(ctx, func(tx store.Tx) error { return tx.InsertIndicator(ctx, indicatorAt("ind-1", "gw-2", "inc-2", t0)) })
	if err == nil {
		t.Error("inserting ind-1 a second time succeeded")
	}
	wantIndicators(t, b, "inc-1", "ind-1")
}

func indicatorsOfIncident(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error {
		return writeAll(ctx, tx.InsertIndicator, []store.IndicatorRecord{
			indicatorAt("ind-late", "gw-1", "inc-1", t0.Add(time.Second)),
			indicatorAt("ind-early", "gw-1", "inc-1", t0),
			indicatorAt("ind-other", "gw-1", "inc-2", t0),
		})
	})
	wantIndicators(t, b, "inc-1", "ind-early", "ind-late")
}

func indicatorRecentByFingerprint(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	withFP := func(id, incident string, at time.Time, matched bool) store.IndicatorRecord {
		r := indicatorAt(id, "gw-1", incident, at)
		r.Indicator.Fingerprint, r.Matched = "fp", matched
		return r
	}
	commit(t, b, func(tx store.Tx) error {
		return writeAll(ctx, tx.InsertIndicator, []store.IndicatorRecord{
			withFP("ind-old", "inc-1", t0, true),
			withFP("ind-new", "inc-2", t0.Add(time.Minute), true),
			withFP("ind-unmatched", "", t0.Add(time.Hour), false),
		})
	})
	tests := map[string]struct {
		fp       string
		since    time.Time
		want     string
		incident string
	}{
		"newest matched wins":            {"fp", t0.Add(-time.Hour), "ind-new", "inc-2"},
		"received exactly at since":      {"fp", t0.Add(time.Minute), "ind-new", "inc-2"},
		"received before since":          {"fp", t0.Add(time.Minute + us), "", ""},
		"unknown fingerprint":            {"other", t0.Add(-time.Hour), "", ""},
		"older one inside a wide window": {"fp", t0, "ind-new", "inc-2"},
	}
	commit(t, b, func(tx store.Tx) error {
		for name, tc := range tests {
			r, ok, err := tx.RecentByFingerprint(ctx, tc.fp, tc.since)
			if err != nil {
				return err
			}
			if r.ID != tc.want || r.Incident != tc.incident || ok != (tc.want != "") {
				t.Errorf("%s: RecentByFingerprint = %q (%q), %t; want %q (%q)", name, r.ID, r.Incident, ok, tc.want, tc.incident)
			}
			if ok && !r.ReceivedAt.Equal(t0.Add(time.Minute)) {
				t.Errorf("%s: received at %v, want %v", name, r.ReceivedAt, t0.Add(time.Minute))
			}
		}
		return nil
	})
}

func indicatorCounts(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	resolved := indicatorAt("ind-r", "gw-3", "inc-3", t0)
	resolved.Indicator.Status = indicator.StatusResolved
	unmatched := indicatorAt("ind-u", "gw-4", "", t0)
	unmatched.Matched = false
	commit(t, b, func(tx store.Tx) error {
		return writeAll(ctx, tx.InsertIndicator, []store.IndicatorRecord{
			indicatorAt("ind-1", "gw-1", "inc-1", t0),
			indicatorAt("ind-2", "gw-1", "inc-1", t0.Add(time.Second)),
			indicatorAt("ind-old", "gw-2", "inc-2", t0.Add(-time.Hour)),
			resolved,
			unmatched,
		})
	})
	// The breaker's count follows what was committed: an indicator whose
	// savepoint rolled back does not count (gw-5), and one written after
	// such a rollback does, even at an earlier time than the rolled-back
	// one (gw-7); an older indicator written after a newer one leaves the
	// gateway counted (gw-1).
	commit(t, b, func(tx store.Tx) error {
		for _, gw := range []string{"gw-5", "gw-7"} {
			err := tx.Savepoint(ctx, func() error {
				if err := tx.InsertIndicator(ctx, indicatorAt("ind-sp-"+gw, gw, "", t0.Add(5*time.Second))); err != nil {
					return err
				}
				return errors.New("refused")
			})
			if err == nil {
				return errors.New("the savepoint did not fail")
			}
		}
		if err := writeAll(ctx, tx.InsertIndicator, []store.IndicatorRecord{
			indicatorAt("ind-7", "gw-7", "", t0.Add(time.Second)),
			indicatorAt("ind-1-old", "gw-1", "inc-1", t0.Add(-2*time.Hour)),
			indicatorAt("ind-8", "gw-8", "", t0.Add(time.Second)),
		}); err != nil {
			return err
		}
		// A count inside a savepoint that then rolls back: what the count
		// wrote is undone, and gw-8, stored before the savepoint, must
		// still be counted once the transaction commits.
		err := tx.Savepoint(ctx, func() error {
			if _, err := tx.CountGatewaysWithIndicators(ctx, t0, ""); err != nil {
				return err
			}
			return errors.New("refused")
		})
		if err == nil {
			return errors.New("the savepoint did not fail")
		}
		return nil
	})
	commit(t, b, func(tx store.Tx) error {
		if n, err := tx.CountRecentIndicators(ctx, "gw-1", t0); err != nil || n != 2 {
			t.Errorf("CountRecentIndicators(gw-1) = %d, %v; want 2", n, err)
		}
		if n, err := tx.CountRecentIndicators(ctx, "gw-2", t0); err != nil || n != 0 {
			t.Errorf("CountRecentIndicators(gw-2) = %d, %v; want 0 (too old)", n, err)
		}
		for also, want := range map[string]int{"": 3, "gw-1": 3, "gw-9": 4} {
			if n, err := tx.CountGatewaysWithIndicators(ctx, t0, also); err != nil || n != want {
				t.Errorf("CountGatewaysWithIndicators(also %q) = %d, %v; want %d (gw-1, gw-7 and gw-8 matched, firing, recent; and also)", also, n, err, want)
			}
		}
		if n, err := tx.CountGatewaysWithIndicators(ctx, t0.Add(2*time.Second), ""); err != nil || n != 0 {
			t.Errorf("CountGatewaysWithIndicators(since the last) = %d, %v; want 0", n, err)
		}
		return nil
	})
	if n, err := b.CountIndicators(ctx); err != nil || n != 8 {
		t.Errorf("CountIndicators = %d, %v; want 8 (matched or not)", n, err)
	}
}

func indicatorGatewaysBackfilled(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error {
		return writeAll(ctx, tx.InsertIndicator, []store.IndicatorRecord{
			indicatorAt("ind-1", "gw-1", "inc-1", t0),
			indicatorAt("ind-2", "gw-2", "inc-2", t0.Add(-time.Hour)),
			indicatorAt("ind-3", "gw-2", "inc-2", t0.Add(time.Second)),
			indicatorAt("ind-4", "gw-3", "inc-3", t0.Add(-time.Hour)),
		})
	})
	// As a store of schema version 6 was: no gateway_firing.
	for _, q := range []string{`DROP TABLE gateway_firing`, `DROP INDEX runs_recent`, `DELETE FROM schema_migrations WHERE version >= 7`} {
		if _, err := b.DB().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	b = h.reopen(t, b)
	commit(t, b, func(tx store.Tx) error {
		if n, err := tx.CountGatewaysWithIndicators(ctx, t0, ""); err != nil || n != 2 {
			t.Errorf("CountGatewaysWithIndicators after the upgrade = %d, %v; want 2 (gw-1, and gw-2's latest)", n, err)
		}
		return nil
	})
}

func indicatorLiveThreats(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	mk := func(id, gw string, at time.Time, sev indicator.Severity, edit func(*store.IndicatorRecord)) store.IndicatorRecord {
		r := indicatorAt(id, gw, "inc-1", at)
		r.Indicator.Severity = sev
		if edit != nil {
			edit(&r)
		}
		return r
	}
	recs := []store.IndicatorRecord{
		mk("ind-critical", "gw-1", t0.Add(2*time.Second), indicator.Critical, nil),
		mk("ind-high", "gw-1", t0.Add(time.Second), indicator.High, nil),
		mk("ind-dup", "gw-1", t0.Add(3*time.Second), indicator.High, func(r *store.IndicatorRecord) { r.Duplicate = true }),
		mk("ind-low", "gw-1", t0.Add(time.Second), indicator.Low, nil),
		mk("ind-at-since", "gw-1", t0, indicator.High, nil),
		mk("ind-resolved-alert", "gw-1", t0.Add(time.Second), indicator.High, func(r *store.IndicatorRecord) { r.Indicator.Status = indicator.StatusResolved }),
		mk("ind-unmatched", "gw-1", t0.Add(time.Second), indicator.High, func(r *store.IndicatorRecord) { r.Matched = false }),
		mk("ind-other-gw", "gw-2", t0.Add(time.Second), indicator.High, nil),
	}
	commit(t, b, func(tx store.Tx) error { return writeAll(ctx, tx.InsertIndicator, recs) })
	commit(t, b, func(tx store.Tx) error {
		lt, err := tx.LiveThreats(ctx, "gw-1", t0, indicator.High)
		if err != nil {
			return err
		}
		var ids []string
		for _, l := range lt {
			ids = append(ids, l.ID)
		}
		if want := []string{"ind-high", "ind-critical", "ind-dup"}; !slices.Equal(ids, want) {
			t.Errorf("LiveThreats = %v, want %v", ids, want)
		}
		if len(lt) > 0 && (lt[0].Kind != indicator.C2Beacon || lt[0].Severity != indicator.High || lt[0].Incident != "inc-1" ||
			lt[0].Fingerprint != "fp-ind-high" || !lt[0].ReceivedAt.Equal(t0.Add(time.Second))) {
			t.Errorf("LiveThreats[0] = %+v", lt[0])
		}
		return nil
	})
}

func indicatorResolve(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error {
		return writeAll(ctx, tx.InsertIndicator, []store.IndicatorRecord{
			indicatorAt("ind-1", "gw-1", "inc-1", t0.Add(time.Second)),
			indicatorAt("ind-2", "gw-1", "inc-1", t0.Add(2*time.Second)),
		})
	})
	commit(t, b, func(tx store.Tx) error {
		return tx.ResolveIndicator(ctx, "ind-1", "alice", "false positive", t0.Add(time.Hour))
	})
	err := b.Tx(ctx, func(tx store.Tx) error { return tx.ResolveIndicator(ctx, "ind-1", "bob", "again", t0.Add(2*time.Hour)) })
	if !errors.Is(err, store.ErrAlreadyResolved) {
		t.Errorf("resolving twice = %v, want ErrAlreadyResolved", err)
	}
	commit(t, b, func(tx store.Tx) error {
		lt, err := tx.LiveThreats(ctx, "gw-1", t0, indicator.Low)
		if err == nil && (len(lt) != 1 || lt[0].ID != "ind-2") {
			t.Errorf("LiveThreats after resolving ind-1 = %+v, want only ind-2", lt)
		}
		return err
	})
}

func indicatorResolveUnknown(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	err := b.Tx(ctx, func(tx store.Tx) error { return tx.ResolveIndicator(ctx, "ind-x", "alice", "gone", t0) })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("resolving an unknown indicator = %v, want ErrNotFound", err)
	}
}

// ---- patch waves ----

var waveCases = []testCase{
	{"a wave reads back and is listed while running", waveReadBack},
	{"FinishPatchWave records the end", waveFinish},
	{"FinishPatchWave of an unknown wave is ErrNotFound", waveFinishUnknown},
	{"PatchWaves lists oldest first, by state", waveList},
	{"unknown wave is ErrNotFound", waveUnknown},
}

func waveAt(id string, at time.Time) store.PatchWave {
	return store.PatchWave{ID: id, Actor: "cli", Request: json.RawMessage(`{"gateways":["gw-1","gw-2"]}`),
		State: store.WaveRunning, CreatedAt: at, UpdatedAt: at}
}

func checkWave(t *testing.T, got, want store.PatchWave) {
	t.Helper()
	if got.ID != want.ID || got.Actor != want.Actor || string(got.Request) != string(want.Request) || got.State != want.State ||
		string(got.Report) != string(want.Report) || got.Error != want.Error ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("wave = %+v, want %+v", got, want)
	}
}

func waveReadBack(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	w := waveAt("wave-1", t0)
	commit(t, b, func(tx store.Tx) error { return tx.InsertPatchWave(ctx, w) })
	got, err := b.PatchWave(ctx, "wave-1")
	if err != nil {
		t.Fatal(err)
	}
	checkWave(t, got, w)
	running, err := b.PatchWaves(ctx, store.WaveRunning)
	if err != nil || len(running) != 1 || running[0].ID != "wave-1" {
		t.Errorf("PatchWaves(running) = %+v, %v; want wave-1", running, err)
	}
}

func waveFinish(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	w := waveAt("wave-1", t0)
	commit(t, b, func(tx store.Tx) error { return tx.InsertPatchWave(ctx, w) })
	report := json.RawMessage(`{"stopped_at":"gw-2"}`)
	commit(t, b, func(tx store.Tx) error {
		return tx.FinishPatchWave(ctx, "wave-1", store.WaveStopped, report, "gw-2 failed to verify", t0.Add(time.Hour))
	})
	want := w
	want.State, want.Report, want.Error, want.UpdatedAt = store.WaveStopped, report, "gw-2 failed to verify", t0.Add(time.Hour)
	got, err := b.PatchWave(ctx, "wave-1")
	if err != nil {
		t.Fatal(err)
	}
	checkWave(t, got, want)
	if running, err := b.PatchWaves(ctx, store.WaveRunning); err != nil || len(running) != 0 {
		t.Errorf("PatchWaves(running) after the end = %+v, %v; want none", running, err)
	}
}

func waveFinishUnknown(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	err := b.Tx(ctx, func(tx store.Tx) error {
		return tx.FinishPatchWave(ctx, "wave-x", store.WaveFailed, nil, "", t0)
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("finishing an unknown wave = %v, want ErrNotFound", err)
	}
}

func waveList(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error {
		return writeAll(ctx, tx.InsertPatchWave, []store.PatchWave{
			waveAt("wave-2", t0.Add(time.Second)),
			waveAt("wave-1", t0),
			waveAt("wave-3", t0.Add(2*time.Second)),
		})
	})
	commit(t, b, func(tx store.Tx) error {
		return tx.FinishPatchWave(ctx, "wave-2", store.WaveSucceeded, json.RawMessage(`{}`), "", t0.Add(time.Hour))
	})
	tests := map[string]struct {
		state string
		want  []string
	}{
		"every wave": {"", []string{"wave-1", "wave-2", "wave-3"}},
		"running":    {store.WaveRunning, []string{"wave-1", "wave-3"}},
		"succeeded":  {store.WaveSucceeded, []string{"wave-2"}},
		"failed":     {store.WaveFailed, nil},
	}
	for name, tc := range tests {
		ws, err := b.PatchWaves(ctx, tc.state)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var ids []string
		for _, w := range ws {
			ids = append(ids, w.ID)
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("%s: PatchWaves(%q) = %v, want %v", name, tc.state, ids, tc.want)
		}
	}
}

func waveUnknown(t *testing.T, h Harness) {
	b := h.Open(t)
	if _, err := b.PatchWave(t.Context(), "wave-x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PatchWave(unknown) = %v, want ErrNotFound", err)
	}
}

// ---- baselines ----

var baselineCases = []testCase{
	{"no result yet", baselineNone},
	{"LatestBaseline returns the newest result of the gateway", baselineLatest},
}

func baselineNone(t *testing.T, h Harness) {
	b := h.Open(t)
	if r, ok, err := b.LatestBaseline(t.Context(), "gw-1"); err != nil || ok {
		t.Errorf("LatestBaseline on a fresh backend = %+v, %t, %v; want none", r, ok, err)
	}
}

func baselineLatest(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	res := func(id, gw string, at time.Time, passed bool) store.BaselineResult {
		r := store.BaselineResult{ID: id, Gateway: gw, CheckedAt: at, Passed: passed, Source: "drift", Report: json.RawMessage(`{"id":"` + id + `"}`)}
		if !passed {
			r.Failed, r.Errored = 2, 1
		}
		return r
	}
	want := res("bl-new", "gw-1", t0.Add(time.Hour), false)
	commit(t, b, func(tx store.Tx) error {
		return all(
			func() error { return tx.InsertBaselineResult(ctx, res("bl-old", "gw-1", t0, true)) },
			func() error { return tx.InsertBaselineResult(ctx, want) },
			func() error { return tx.InsertBaselineResult(ctx, res("bl-other", "gw-2", t0.Add(2*time.Hour), true)) },
		)
	})
	check := func(where string, got store.BaselineResult, ok bool, err error) {
		t.Helper()
		if err != nil || !ok || got.ID != want.ID || got.Gateway != want.Gateway || !got.CheckedAt.Equal(want.CheckedAt) ||
			got.Passed != want.Passed || got.Failed != want.Failed || got.Errored != want.Errored || got.Source != want.Source ||
			string(got.Report) != string(want.Report) {
			t.Errorf("%s: LatestBaseline = %+v, %t, %v; want %+v", where, got, ok, err, want)
		}
	}
	got, ok, err := b.LatestBaseline(ctx, "gw-1")
	check("reader", got, ok, err)
	commit(t, b, func(tx store.Tx) error {
		got, ok, err := tx.LatestBaseline(ctx, "gw-1")
		check("transaction", got, ok, err)
		return nil
	})
}

// ---- replay ----

var replayCases = []testCase{
	{"a signature is fresh once, then seen before", replaySeenBefore},
	{"the replay ledger contract", replayLedger},
}

func replaySeenBefore(t *testing.T, h Harness) {
	b := h.Open(t)
	d := sha256.Sum256([]byte("t=1741921200,v1=abc"))
	for i, want := range []bool{true, false, false} {
		fresh, err := b.RememberSignature(t.Context(), d[:], t0.Add(5*time.Minute), t0.Add(time.Duration(i)*time.Second))
		if err != nil || fresh != want {
			t.Errorf("use %d: fresh=%t, %v; want %t", i, fresh, err, want)
		}
	}
}

// replayLedger: the backend is the intake's replay ledger, so it passes
// that contract's own suite too.
func replayLedger(t *testing.T, h Harness) {
	replaytest.Run(t, func(t *testing.T) intake.ReplayLedger { return h.Open(t) })
}
