package report

import (
	"testing"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/store"
)

// TestBulkIndicatorDecisionInTheReport: an indicator of bulk intake,
// whose decision is kept on its row rather than in a policy.decided
// entry, still shows among the report's decisions, in time order, and
// its sender is named.
func TestBulkIndicatorDecisionInTheReport(t *testing.T) {
	st, ledger := seedDemo(t)
	at := ms(500)
	err := st.Tx(t.Context(), func(tx store.Tx) error {
		return tx.InsertIndicator(t.Context(), store.IndicatorRecord{ID: "ind-bulk-1", ReceivedAt: at, Incident: fxIncident, Matched: true,
			Indicator: indicator.Indicator{ID: "ind-bulk-1", Kind: indicator.BruteForce, Gateway: "gw-osaka", Severity: indicator.Low, Source: "bench", Status: indicator.StatusFiring},
			Sender:    "alertmanager",
			Decision:  &store.IndicatorDecision{At: at, Triage: "accepted", Policy: "brute-force-internal", Runbook: "investigate", ActiveRun: fxRun}})
	})
	if err != nil {
		t.Fatal(err)
	}
	m := loadFixture(t, st, ledger)
	var found *Decision
	for i, d := range m.Decisions {
		if i > 0 && d.At.Before(m.Decisions[i-1].At) {
			t.Errorf("decision %d at %v is before the one above it (%v)", i, d.At, m.Decisions[i-1].At)
		}
		if d.Indicator == "ind-bulk-1" {
			found = &m.Decisions[i]
		}
	}
	if found == nil || !found.Matched || found.Policy != "brute-force-internal" || found.Runbook != "investigate" || found.Approval != "auto" {
		t.Fatalf("decisions %+v: want the bulk indicator's, matched by brute-force-internal", m.Decisions)
	}
	for _, in := range m.Indicators {
		if in.ID == "ind-bulk-1" && in.Sender != "alertmanager" {
			t.Errorf("bulk indicator sender %q, want alertmanager", in.Sender)
		}
	}
}
