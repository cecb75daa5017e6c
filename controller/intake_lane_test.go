package controller

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/store"
)

// TestIntakePriorityLane: a C2 alert queued behind an alert storm is
// written in the first transaction after the one in flight, and its caller
// returns then, not after the storm; the storm is written in bounded
// batches, every request of it once.
func TestIntakePriorityLane(t *testing.T) {
	h := newHarness(t, nil)
	c := h.c.intake
	// A committer is writing: hold the lock as one would.
	c.commitMu.Lock()
	const storm = 3*MaxBatchItems + 10
	type done struct {
		label string
		out   []Accepted
		err   error
	}
	returned := make(chan done, storm+1)
	for i := range storm {
		go func() {
			it := ind("brute_force", "gw-dc")
			it.Indicator.Severity = indicator.Low
			it.Indicator.Summary = fmt.Sprintf("storm %d", i)
			it.Indicator.Labels = map[string]string{"n": fmt.Sprint(i)}
			out, err := h.c.Accept(t.Context(), "test", []Item{it})
			returned <- done{"low", out, err}
		}()
	}
	waitQueued := func(normal, urgent int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			c.qmu.Lock()
			n, u := len(c.queue), len(c.urgent)
			c.qmu.Unlock()
			if n == normal && u == urgent {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("queued %d normal and %d urgent requests, want %d and %d", n, u, normal, urgent)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitQueued(storm, 0)
	go func() {
		out, err := h.c.Accept(t.Context(), "test", []Item{ind("c2_beacon", "gw-osaka")})
		returned <- done{"c2", out, err}
	}()
	waitQueued(storm, 1)

	// The committer lets go.
	c.letGo()

	lowsBefore := 0
	ids, incidents := map[string]bool{}, map[string]bool{}
	for i := range storm + 1 {
		d := <-returned
		if d.err != nil || len(d.out) != 1 {
			t.Fatalf("%s: %+v, %v", d.label, d.out, d.err)
		}
		if d.label == "c2" {
			lowsBefore = i
			if d.out[0].RunID == "" {
				t.Errorf("the C2 alert started no run: %+v", d.out[0])
			}
			continue
		}
		ids[d.out[0].IndicatorID] = true
		incidents[d.out[0].IncidentID] = true
	}
	// At most the batch written together with the C2 alert's by the
	// caller that took the lock can have returned first.
	if lowsBefore > MaxBatchItems {
		t.Errorf("%d storm requests returned before the C2 alert's, want at most one batch (%d)", lowsBefore, MaxBatchItems)
	}
	stored := 0
	for inc := range incidents {
		recs, err := h.st.IndicatorsOfIncident(t.Context(), inc)
		if err != nil {
			t.Fatal(err)
		}
		stored += len(recs)
	}
	if len(ids) != storm || stored != storm {
		t.Errorf("%d distinct storm indicators answered, %d stored; want %d of each", len(ids), stored, storm)
	}
}

// BenchmarkCriticalDuringStorm measures the priority lane under an alert
// storm: 100,000 low-severity indicators in flight (10,000 requests of 10,
// all queued at once, on a store with sync=full), and, while they drain, a
// critical C2 indicator every few milliseconds. Each figure is one C2
// alert's Accept: decided, its run recorded and committed, its caller
// answered. Reported: p50 and p99 of those, and how long the storm took.
//
//	go test -run '^$' -bench BenchmarkCriticalDuringStorm -benchtime 3x ./controller/
func BenchmarkCriticalDuringStorm(b *testing.B) {
	var lat []time.Duration
	var stormTook []time.Duration
	for b.Loop() {
		b.StopTimer()
		h := newHarness(b, func(o *Options) {
			// Durable as a 202 promises: sync=full.
			st, err := store.Open(b.Context(), filepath.Join(b.TempDir(), "full.db"), "full")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			o.Store = st
		})
		c := h.c.intake
		c.commitMu.Lock()
		const requests, per = 10_000, 10
		stormDone := make(chan error, requests)
		for i := range requests {
			go func() {
				items := make([]Item, per)
				for j := range items {
					it := ind("brute_force", "gw-dc")
					it.Indicator.Severity = indicator.Low
					it.Indicator.Labels = map[string]string{"n": fmt.Sprint(i*per + j)}
					items[j] = it
				}
				_, err := h.c.Accept(context.Background(), "storm", items)
				stormDone <- err
			}()
		}
		for {
			c.qmu.Lock()
			n := len(c.queue)
			c.qmu.Unlock()
			if n == requests {
				break
			}
			time.Sleep(time.Millisecond)
		}
		b.StartTimer()
		start := time.Now()
		c.letGo()
		finished := make(chan struct{})
		go func() {
			for range requests {
				if err := <-stormDone; err != nil {
					b.Error(err)
				}
			}
			close(finished)
		}()
		gws := []string{"gw-hq", "gw-hq2", "gw-osaka", "gw-dc2", "gw-dc3"}
	critical:
		for n := 0; ; n++ {
			select {
			case <-finished:
				break critical
			case <-time.After(5 * time.Millisecond):
			}
			it := ind("c2_beacon", gws[n%len(gws)])
			it.Indicator.Labels = map[string]string{"n": fmt.Sprint(n)}
			t0 := time.Now()
			out, err := h.c.Accept(context.Background(), "ids", []Item{it})
			if err != nil || len(out) != 1 || !out[0].Matched {
				b.Fatalf("the C2 alert: %+v, %v", out, err)
			}
			lat = append(lat, time.Since(t0))
		}
		stormTook = append(stormTook, time.Since(start))
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(lat)), "critical-alerts")
	b.ReportMetric(q(0.5), "critical-p50-ms")
	b.ReportMetric(q(0.99), "critical-p99-ms")
	slices.Sort(stormTook)
	b.ReportMetric(float64(stormTook[len(stormTook)/2].Milliseconds()), "storm-100k-ms")
}

// TestWaiterTakesOverWhenTheCommitterLetsGo: a caller waiting for the
// commit lock takes it once the committer lets go, however the two
// interleave. (Waking waiters before releasing the lock once left a
// waiter that looked in between waiting for a wake-up nobody sent, and
// its HTTP request hung until the test binary timed out.)
func TestWaiterTakesOverWhenTheCommitterLetsGo(t *testing.T) {
	h := newHarness(t, nil)
	c := h.c.intake
	letGoPause = func() { time.Sleep(20 * time.Millisecond) }
	t.Cleanup(func() { letGoPause = nil })

	for round := range 3 {
		c.commitMu.Lock() // a committer is writing
		returned := make(chan error, 1)
		go func() {
			it := ind("brute_force", "gw-dc")
			it.Indicator.Summary = fmt.Sprintf("round %d", round)
			_, err := h.c.Accept(t.Context(), "test", []Item{it})
			returned <- err
		}()
		deadline := time.Now().Add(10 * time.Second)
		for {
			c.qmu.Lock()
			n := len(c.queue) + len(c.urgent)
			c.qmu.Unlock()
			if n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the request was never queued")
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(5 * time.Millisecond) // let it reach its wait
		c.letGo()
		select {
		case err := <-returned:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the waiting caller never took the lock the committer let go of", round)
		}
	}
}

// TestAcceptHandsNewRunsToTheExecutor: a run intake creates is handed to
// the executor directly (it starts without the executor listing the
// store first); an indicator that starts none just wakes the executor.
func TestAcceptHandsNewRunsToTheExecutor(t *testing.T) {
	h := newHarness(t, nil)
	out, err := h.c.Accept(t.Context(), "test", []Item{ind("c2_beacon", "gw-osaka")})
	if err != nil || len(out) != 1 || out[0].RunID == "" {
		t.Fatalf("C2 alert: %+v, %v; want a run", out, err)
	}
	select {
	case id := <-h.c.intake.ready:
		if id != out[0].RunID {
			t.Errorf("handed run %s to the executor, want %s", id, out[0].RunID)
		}
	default:
		t.Fatalf("run %s was not handed to the executor", out[0].RunID)
	}
	low := ind("brute_force", "gw-dc")
	low.Indicator.Severity = indicator.Low
	low.Indicator.Kind = "config_change"
	if _, err := h.c.Accept(t.Context(), "test", []Item{low}); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-h.c.intake.ready:
		t.Errorf("an indicator that started no run handed %s to the executor", id)
	default:
	}
}
