package controller

import (
	"fmt"
	"testing"
	"time"

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
	h.benchC2Accepts(b, false)
}

// benchC2Accepts times one new C2 alert's Accept per iteration (each a
// new incident: endC2 after it, outside the timer); mustStartRun fails
// the benchmark when an alert starts no run.
func (h *harness) benchC2Accepts(b *testing.B, mustStartRun bool) {
	n := 0
	for b.Loop() {
		n++
		it := ind("c2_beacon", "gw-osaka")
		it.Indicator.Fingerprint = fmt.Sprintf("c2-%d", n)
		out, err := h.c.Accept(b.Context(), "test", []Item{it})
		if err != nil {
			b.Fatal(err)
		}
		if mustStartRun && out[0].RunID == "" {
			b.Fatalf("the C2 alert started no run: %+v", out[0])
		}
		b.StopTimer()
		h.endC2(b, out[0])
		b.StartTimer()
	}
}

// endC2 ends the run a C2 alert started and closes its incident, so that
// the next alert opens an incident and starts a run of its own, and
// drops the executor's wake-up (no executor runs in these benchmarks).
func (h *harness) endC2(b *testing.B, a Accepted) {
	_ = h.st.Tx(b.Context(), func(tx store.Tx) error {
		if a.RunID != "" {
			r, _ := tx.Run(b.Context(), a.RunID)
			r.State = store.RunSucceeded
			_ = tx.UpdateRun(b.Context(), r)
		}
		return tx.SetIncidentStatus(b.Context(), a.IncidentID, store.IncidentClosed, h.c.clock.Now())
	})
	select {
	case <-h.c.intake.ready:
	default:
	}
}

// BenchmarkCriticalAcceptAfterAnHourOfAlerts is one C2 alert's Accept
// after an hour's storm left 100,000 matched, firing indicators about two
// gateways within the circuit breaker's window (not enough to trip it):
// the breaker's count of gateways with firing indicators must not read
// them all (it did until schema version 7: 25 ms an Accept here).
//
//	go test -run '^$' -bench BenchmarkCriticalAcceptAfterAnHourOfAlerts -benchtime 200x ./controller/
func BenchmarkCriticalAcceptAfterAnHourOfAlerts(b *testing.B) {
	h := newHarness(b, nil)
	now := h.c.clock.Now()
	const storm = 100_000
	for i := 0; i < storm; i += 5000 {
		err := h.st.Tx(b.Context(), func(tx store.Tx) error {
			for j := i; j < i+5000; j++ {
				in := ind("port_scan", []string{"gw-hq", "gw-dc"}[j%2]).Indicator
				in.ID, in.Status, in.Severity, in.Fingerprint = fmt.Sprintf("ind-storm-%d", j), "firing", "low", fmt.Sprintf("storm-%d", j)
				rec := store.IndicatorRecord{ID: in.ID, ReceivedAt: now.Add(-time.Duration(storm-j) * 30 * time.Millisecond), Matched: true, Indicator: in}
				if err := tx.InsertIndicator(b.Context(), rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	h.benchC2Accepts(b, true)
}
