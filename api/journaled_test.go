package api_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/journal"
	"github.com/warden-ir/warden/store"
)

// newJournaledStack is newStack with the intake journal in a temporary
// folder and, when decide, the decider running until the test ends.
func newJournaledStack(tb testing.TB, decide bool) *stack {
	tb.Helper()
	s := newStack(tb, nil, nil)
	j, err := journal.Open(filepath.Join(tb.TempDir(), "intake"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = j.Close() })
	if err := s.d.Controller.UseJournal(j); err != nil {
		tb.Fatal(err)
	}
	if decide {
		ctx, cancel := context.WithCancel(tb.Context())
		done := make(chan error, 1)
		go func() { done <- s.d.Controller.RunDecider(ctx) }()
		tb.Cleanup(func() { cancel(); <-done })
	}
	return s
}

// TestIndicatorsJournaled: with the intake journal, a low indicator is
// answered queued with the id it is then stored under (by the decider),
// a critical one and a request with ?wait=decided name their incident,
// and an unknown wait is a 400 naming the field.
func TestIndicatorsJournaled(t *testing.T) {
	s := newJournaledStack(t, true)

	r := s.call(t, "POST", "/v1/indicators", []byte(indicatorJSON("brute_force", "gw-hq", "low")))
	expectStatus(t, r, http.StatusAccepted)
	queued := decodeReply[intakeReply](t, r).Results[0]
	if !queued.Queued || queued.IndicatorID == "" || queued.IncidentID != "" {
		t.Fatalf("low indicator answered %+v, want queued with an id", queued)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rec store.IndicatorRecord
		err := s.d.Store.Tx(t.Context(), func(tx store.Tx) error {
			var err error
			rec, err = tx.IndicatorByID(t.Context(), queued.IndicatorID)
			return err
		})
		if err == nil {
			if rec.Incident == "" {
				t.Fatalf("decided indicator %+v joined no incident", rec)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queued indicator %s never stored: %v", queued.IndicatorID, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	for _, tc := range []struct{ path, severity string }{
		{"/v1/indicators", "critical"},
		{"/v1/indicators?wait=decided", "low"},
	} {
		r := s.call(t, "POST", tc.path, []byte(indicatorJSON("brute_force", "gw-factory", tc.severity)))
		expectStatus(t, r, http.StatusAccepted)
		got := decodeReply[intakeReply](t, r).Results[0]
		if got.Queued || got.IncidentID == "" {
			t.Errorf("%s (%s) answered %+v, want decided with its incident", tc.path, tc.severity, got)
		}
	}
	r = s.call(t, "POST", "/v1/indicators?wait=forever", []byte(indicatorJSON("brute_force", "gw-hq", "low")))
	expectStatus(t, r, http.StatusBadRequest)
	if !strings.Contains(string(r.body), "wait") {
		t.Errorf("bad wait answered %s, want the field named", r)
	}
}
