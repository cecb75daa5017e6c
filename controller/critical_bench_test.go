package controller

import (
	"fmt"
	"testing"

	"github.com/warden-ir/warden/store"
)

// BenchmarkCriticalAcceptAsRunsAccumulate is one C2 alert's Accept (a
// new incident, decided, its containment run recorded and committed) on a
// store that keeps every earlier one's run and incident: the cost must
// not grow with them (the blast-radius budget's count of automatic
// isolations read every run ever recorded until schema version 5).
//
//	go test -run '^$' -bench BenchmarkCriticalAcceptAsRunsAccumulate -benchtime 2000x ./controller/
func BenchmarkCriticalAcceptAsRunsAccumulate(b *testing.B) {
	h := newHarness(b, nil)
	n := 0
	for b.Loop() {
		n++
		it := ind("c2_beacon", "gw-osaka")
		it.Indicator.Fingerprint = fmt.Sprintf("c2-%d", n)
		out, err := h.c.Accept(b.Context(), "test", []Item{it})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		// The run ends and the incident closes, so the next alert opens
		// an incident and starts a run of its own.
		_ = h.st.Tx(b.Context(), func(tx store.Tx) error {
			if out[0].RunID != "" {
				r, _ := tx.Run(b.Context(), out[0].RunID)
				r.State = store.RunSucceeded
				_ = tx.UpdateRun(b.Context(), r)
			}
			return tx.SetIncidentStatus(b.Context(), out[0].IncidentID, store.IncidentClosed, h.c.clock.Now())
		})
		select {
		case <-h.c.intake.ready:
		default:
		}
		b.StartTimer()
	}
}
