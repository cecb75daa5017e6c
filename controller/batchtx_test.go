package controller

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/store"
)

// TestBatchTxKnowsEveryWrite: every method of store.Tx is either one
// batchTx keeps true itself or one named here as unable to change what
// it remembers (the gateway's recent-indicator count and its posture). A
// method added to store.Tx fails this test until someone decides which.
func TestBatchTxKnowsEveryWrite(t *testing.T) {
	handled := map[string]bool{"CountRecentIndicators": true, "InsertIndicator": true, "Posture": true, "SetDesiredPosture": true, "Savepoint": true,
		"IncidentByID": true, "OpenIncidentFor": true, "CountOpenIncidents": true, "UpsertIncident": true, "SetIncidentStatus": true}
	cannotChange := map[string]bool{
		// reads
		"IndicatorByID": true, "IndicatorDigests": true, "RecentByFingerprint": true, "CountGatewaysWithIndicators": true, "LiveThreats": true,
		"Run": true, "ActiveRunFor": true, "RecentRunFor": true, "CountAutoIsolations": true,
		"EvidenceSucceeded": true, "StepSucceededSince": true, "Breaker": true, "LatestBaseline": true, "User": true, "Users": true,
		"CountUsers": true, "BlockByRef": true, "BlockByNumber": true, "Blocks": true,
		// writes to other tables, or to columns neither read looks at
		// (resolving an indicator leaves it matched)
		"Audit": true, "ResolveIndicator": true, "InsertRun": true, "UpdateRun": true,
		"UpdateStep": true, "TripBreaker": true, "ResetBreaker": true, "InsertBaselineResult": true, "InsertPatchWave": true,
		"FinishPatchWave": true, "InsertUser": true, "InsertBlock": true, "SetBlockState": true, "ExpireBlocks": true,
		"SetUserDisabled": true, "InsertToken": true, "RevokeTokens": true, "InsertSession": true, "DeleteSession": true,
		"DeleteSessionsOf": true, "DeleteExpiredSessions": true,
	}
	typ := reflect.TypeFor[store.Tx]()
	for i := range typ.NumMethod() {
		name := typ.Method(i).Name
		if !handled[name] && !cannotChange[name] {
			t.Errorf("store.Tx.%s: say in batchtx.go whether it can change a gateway's recent-indicator count or posture", name)
		}
	}
	for name := range handled {
		if _, ok := reflect.TypeFor[*batchTx]().MethodByName(name); !ok {
			t.Errorf("batchTx does not define %s", name)
		}
	}
}

// TestBatchTxCountsWhatItInserts: the remembered count of a gateway's
// recent indicators is what the store would say after the batch's own
// inserts, and a savepoint rolled back forgets it.
func TestBatchTxCountsWhatItInserts(t *testing.T) {
	h := newHarness(t, nil)
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	since := now.Add(-time.Hour)
	insert := func(tx store.Tx, id, gw string, at time.Time, matched bool) error {
		return tx.InsertIndicator(t.Context(), store.IndicatorRecord{ID: id, ReceivedAt: at, Matched: matched,
			Indicator: indicator.Indicator{ID: id, Kind: indicator.BruteForce, Gateway: gw, Severity: indicator.Low, Source: "test"}})
	}
	err := h.st.Tx(t.Context(), func(stx store.Tx) error {
		b := newBatchTx(stx)
		check := func(when string) {
			t.Helper()
			for _, gw := range []string{"gw-hq", "gw-dc"} {
				got, err := b.CountRecentIndicators(t.Context(), gw, since)
				if err != nil {
					t.Fatal(err)
				}
				want, err := stx.CountRecentIndicators(t.Context(), gw, since)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("%s: %s counted %d, the store says %d", when, gw, got, want)
				}
			}
		}
		check("empty")
		for i, c := range []struct {
			gw      string
			at      time.Time
			matched bool
		}{{"gw-hq", now, true}, {"gw-hq", now, false}, {"gw-hq", since.Add(-time.Second), true}, {"gw-dc", now, true}} {
			if err := insert(b, "ind-"+string(rune('a'+i)), c.gw, c.at, c.matched); err != nil {
				t.Fatal(err)
			}
			check("after an insert")
		}
		err := b.Savepoint(t.Context(), func() error {
			if err := insert(b, "ind-x", "gw-hq", now, true); err != nil {
				return err
			}
			check("inside a savepoint")
			return errTest
		})
		if !errors.Is(err, errTest) {
			t.Fatalf("savepoint: %v", err)
		}
		check("after the savepoint rolled back")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var errTest = errTestType("rolled back on purpose")

type errTestType string

func (e errTestType) Error() string { return string(e) }

// TestBatchTxIncidentsAreWhatTheStoreSays: through opening, touching,
// closing and reopening incidents of two gateways, what batchTx answers
// about incidents is what the store answers.
func TestBatchTxIncidentsAreWhatTheStoreSays(t *testing.T) {
	h := newHarness(t, nil)
	t0 := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	since := t0.Add(-time.Hour)
	err := h.st.Tx(t.Context(), func(stx store.Tx) error {
		b := newBatchTx(stx)
		ids := []string{"inc-a", "inc-b", "inc-c"}
		check := func(when string) {
			t.Helper()
			for _, gw := range []string{"gw-hq", "gw-dc"} {
				for _, s := range []time.Time{since, t0.Add(2 * time.Minute)} {
					gi, gf, err := b.OpenIncidentFor(t.Context(), gw, s)
					if err != nil {
						t.Fatal(err)
					}
					wi, wf, err := stx.OpenIncidentFor(t.Context(), gw, s)
					if err != nil {
						t.Fatal(err)
					}
					if gf != wf || gi.ID != wi.ID || !gi.UpdatedAt.Equal(wi.UpdatedAt) || gi.Status != wi.Status || gi.Severity != wi.Severity {
						t.Errorf("%s: OpenIncidentFor(%s, %v) = %+v %v, the store says %+v %v", when, gw, s, gi, gf, wi, wf)
					}
				}
				gn, _ := b.CountOpenIncidents(t.Context(), gw)
				wn, _ := stx.CountOpenIncidents(t.Context(), gw)
				if gn != wn {
					t.Errorf("%s: CountOpenIncidents(%s) = %d, the store says %d", when, gw, gn, wn)
				}
			}
			for _, id := range ids {
				gi, gerr := b.IncidentByID(t.Context(), id)
				wi, werr := stx.IncidentByID(t.Context(), id)
				if (gerr == nil) != (werr == nil) || gi.ID != wi.ID || !gi.UpdatedAt.Equal(wi.UpdatedAt) || !gi.OpenedAt.Equal(wi.OpenedAt) || gi.Status != wi.Status || gi.LastStatus != wi.LastStatus {
					t.Errorf("%s: IncidentByID(%s) = %+v %v, the store says %+v %v", when, id, gi, gerr, wi, werr)
				}
			}
		}
		inc := func(id, gw string, at time.Time, status string) store.Incident {
			return store.Incident{ID: id, Gateway: gw, Site: "s", OpenedAt: at, UpdatedAt: at, Status: status, Severity: "low", Title: id}
		}
		touch := func(id string, at time.Time, status, last string) {
			t.Helper()
			in, err := b.IncidentByID(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			in.UpdatedAt, in.Status, in.LastStatus, in.Severity = at, status, last, "high"
			in.OpenedAt = at // not an updated column: the stored one stays
			if err := b.UpsertIncident(t.Context(), in); err != nil {
				t.Fatal(err)
			}
		}
		check("empty")
		for i, step := range []func(){
			func() { _ = b.UpsertIncident(t.Context(), inc("inc-a", "gw-hq", t0, store.IncidentOpen)) },
			func() { touch("inc-a", t0.Add(time.Minute), store.IncidentOpen, "firing") },
			func() {
				_ = b.UpsertIncident(t.Context(), inc("inc-b", "gw-hq", t0.Add(3*time.Minute), store.IncidentOpen))
			},
			func() { touch("inc-a", t0.Add(4*time.Minute), store.IncidentContained, "firing") },
			func() { touch("inc-b", t0.Add(5*time.Minute), store.IncidentClosed, "resolved") },
			func() { _ = b.UpsertIncident(t.Context(), inc("inc-c", "gw-dc", t0, store.IncidentOpen)) },
			func() { touch("inc-c", t0.Add(time.Second), store.IncidentOpen, "firing") },
			func() { _ = b.SetIncidentStatus(t.Context(), "inc-a", store.IncidentClosed, t0.Add(6*time.Minute)) },
			func() { touch("inc-b", t0.Add(7*time.Minute), store.IncidentOpen, "firing") },
		} {
			step()
			check(fmt.Sprintf("after step %d", i+1))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
