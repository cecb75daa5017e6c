package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/journal"
	"github.com/warden-ir/warden/store"
)

func lowItem(gw string, n int) Item {
	it := ind("brute_force", gw)
	it.Indicator.Severity = indicator.Low
	it.Indicator.Summary = fmt.Sprintf("bulk %d", n)
	it.Indicator.Fingerprint = fmt.Sprintf("bulk-%d", n)
	return it
}

// decidedCounts counts the decisions recorded for each indicator: its
// policy.decided audit entries, and the decision on its row (bulk intake
// records one there instead of an entry). It fails the test when an
// indicator is in more than one intake batch entry.
func decidedCounts(t *testing.T, st *store.Store) map[string]int {
	t.Helper()
	es, err := audit.List(t.Context(), st.DB(), "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	batched := map[string]int{}
	for _, e := range es {
		switch e.Action {
		case "policy.decided":
			var d struct {
				Indicator string `json:"indicator"`
			}
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Fatal(err)
			}
			out[d.Indicator]++
		case BatchAction:
			var d batchData
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Fatal(err)
			}
			for _, id := range d.Indicators {
				if batched[id]++; batched[id] > 1 {
					t.Fatalf("indicator %s is in %d intake batch entries, want one", id, batched[id])
				}
			}
		}
	}
	rows, err := st.DB().QueryContext(t.Context(), `SELECT id, decision FROM indicators WHERE decision != ''`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, raw string
		if err := rows.Scan(&id, &raw); err != nil {
			t.Fatal(err)
		}
		var d store.IndicatorDecision
		if err := json.Unmarshal([]byte(raw), &d); err != nil {
			t.Fatal(err)
		}
		if d.Triage == "accepted" {
			out[id]++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// newJournaledHarness is newHarness with an intake journal in a
// temporary folder, closed when the test ends.
func newJournaledHarness(t *testing.T, mutate func(*Options)) *harness {
	t.Helper()
	j, err := journal.Open(filepath.Join(t.TempDir(), "intake"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return newHarness(t, func(o *Options) {
		o.Journal = j
		if mutate != nil {
			mutate(o)
		}
	})
}

// decideUntilStored runs the decider until every id is stored.
func decideUntilStored(t *testing.T, h *harness, ids []string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.c.RunDecider(ctx) }()
	waitStored(t, h.st, ids)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// waitStored waits until every id is a stored indicator.
func waitStored(t *testing.T, st *store.Store, ids []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range ids {
		for {
			var err error
			_ = st.Tx(t.Context(), func(tx store.Tx) error { _, err = tx.IndicatorByID(t.Context(), id); return nil })
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("indicator %s was answered as queued but is not stored: %v", id, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestJournaledIntakeDecidesEachOnceAcrossRestarts: bulk alerts are
// answered queued, with the id they are then stored under; the decider
// decides each once; a second decider over the same journal (a restart
// that read it from the start) decides none again; and a critical alert
// is decided before its answer.
func TestJournaledIntakeDecidesEachOnceAcrossRestarts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "intake")
	j, err := journal.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(o *Options) { o.Journal = j })
	var ids []string
	for n := range 40 {
		out, err := h.c.Enqueue(t.Context(), "test", []Item{lowItem([]string{"gw-hq", "gw-dc"}[n%2], n)})
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 1 || !out[0].Queued || out[0].IndicatorID == "" || out[0].IncidentID != "" {
			t.Fatalf("bulk answer %+v, want queued with an indicator id", out)
		}
		ids = append(ids, out[0].IndicatorID)
	}
	crit, err := h.c.Enqueue(t.Context(), "test", []Item{ind("c2_beacon", "gw-osaka")})
	if err != nil || len(crit) != 1 || crit[0].Queued || crit[0].RunID == "" {
		t.Fatalf("critical answer %+v, %v: want decided, with its run", crit, err)
	}

	runDecider := func() (stop func()) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- h.c.RunDecider(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
	stop := runDecider()
	waitStored(t, h.st, ids)
	stop()
	counts := decidedCounts(t, h.st)
	for _, id := range ids {
		if counts[id] != 1 {
			t.Errorf("indicator %s decided %d times, want once", id, counts[id])
		}
	}
	// The same journal read again from its start by a new process.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2, err := journal.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if err := h.c.UseJournal(j2); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(h.c.m.IntakeBacklog); got != 40 {
		t.Errorf("backlog after reopening: %v, want the 40 journaled records kept", got)
	}
	more, err := h.c.Enqueue(t.Context(), "test", []Item{lowItem("gw-hq", 1000)})
	if err != nil {
		t.Fatal(err)
	}
	stop = runDecider()
	waitStored(t, h.st, []string{more[0].IndicatorID})
	stop()
	counts = decidedCounts(t, h.st)
	for _, id := range append(ids, more[0].IndicatorID) {
		if counts[id] != 1 {
			t.Errorf("after the restart, indicator %s decided %d times, want once", id, counts[id])
		}
	}
	if got := testutil.ToFloat64(h.c.m.IntakeBacklog); got != 0 {
		t.Errorf("backlog once decided: %v, want 0", got)
	}
	n, err := h.st.CountIndicators(t.Context())
	if err != nil || n != len(ids)+2 {
		t.Fatalf("%d indicators stored (%v), want %d", n, err, len(ids)+2)
	}
	if _, err := audit.Verify(t.Context(), h.st.DB()); err != nil {
		t.Fatalf("audit: %v", err)
	}

	// Each journaled indicator is kept by its batch's Merkle root, and
	// proves its membership; editing one stored row is found.
	checked, err := VerifyIntakeBatches(t.Context(), h.st)
	if err != nil || checked != len(ids)+1 {
		t.Fatalf("VerifyIntakeBatches: %d checked, %v; want %d, nil", checked, err, len(ids)+1)
	}
	p, err := ProveIndicator(t.Context(), h.st, ids[7])
	if err != nil || !p.Valid || p.AuditSeq == 0 {
		t.Fatalf("proof of %s: %+v, %v; want valid", ids[7], p, err)
	}
	if _, err := ProveIndicator(t.Context(), h.st, crit[0].IndicatorID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("proof of the critical indicator (decided before its answer, no batch): %v, want not found", err)
	}
	if _, err := h.st.DB().ExecContext(t.Context(), `UPDATE indicators SET body = replace(body, 'bulk 7', 'bulk 8') WHERE id = ?`, ids[7]); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyIntakeBatches(t.Context(), h.st); err == nil || !strings.Contains(err.Error(), "changed") || !errors.As(err, new(*audit.BrokenError)) {
		t.Fatalf("VerifyIntakeBatches after editing %s: %v, want the change found", ids[7], err)
	}
	if p, err := ProveIndicator(t.Context(), h.st, ids[7]); err != nil || p.Valid {
		t.Fatalf("proof of the edited %s: %+v, %v; want invalid", ids[7], p, err)
	}
}

// TestJournaledItemThatCannotBeDecidedIsKept: a journaled item whose
// gateway left the inventory before it was decided spoils none of the
// items decided with it, and is stored as unmatched with the reason.
func TestJournaledItemThatCannotBeDecidedIsKept(t *testing.T) {
	h := newJournaledHarness(t, nil)
	var ids []string
	for n, gw := range []string{"gw-hq", "gw-gone", "gw-hq"} {
		out, err := h.c.Enqueue(t.Context(), "test", []Item{lowItem(gw, n)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, out[0].IndicatorID)
	}
	decideUntilStored(t, h, ids)
	_ = h.st.Tx(t.Context(), func(tx store.Tx) error {
		for i, id := range ids {
			rec, err := tx.IndicatorByID(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if want := i != 1; rec.Matched != want || (i == 1 && !strings.Contains(rec.Reason, "could not be decided")) {
				t.Errorf("indicator %d: matched %v, reason %q; want matched %v", i, rec.Matched, rec.Reason, want)
			}
		}
		return nil
	})
	if counts := decidedCounts(t, h.st); counts[ids[0]] != 1 || counts[ids[2]] != 1 {
		t.Errorf("the decidable items decided %d and %d times, want once each", counts[ids[0]], counts[ids[2]])
	}
}

// BenchmarkCriticalDuringJournaledStorm is BenchmarkCriticalDuringStorm
// with the intake journal: 100,000 low-severity indicators (10,000
// requests of 10) are answered queued first, then the decider takes them
// off the journal while a critical C2 indicator arrives every few
// milliseconds through Enqueue (decided before its answer). Reported: the
// C2 alerts' p50 and p99 (decided, run recorded, committed, answered),
// how long answering the storm took and how long deciding it took.
//
//	go test -run '^$' -bench BenchmarkCriticalDuringJournaledStorm -benchtime 3x ./controller/
func BenchmarkCriticalDuringJournaledStorm(b *testing.B) {
	var lat, answered, decided []time.Duration
	for b.Loop() {
		b.StopTimer()
		j, err := journal.Open(filepath.Join(b.TempDir(), "intake"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = j.Close() })
		h := newHarness(b, func(o *Options) {
			st, err := store.Open(b.Context(), filepath.Join(b.TempDir(), "full.db"), "full")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			o.Store, o.Journal = st, j
		})
		b.StartTimer()
		const requests, per = 10_000, 10
		start := time.Now()
		errs := make(chan error, requests)
		for i := range requests {
			go func() {
				items := make([]Item, per)
				for k := range items {
					items[k] = lowItem("gw-dc", i*per+k)
				}
				_, err := h.c.Enqueue(context.Background(), "storm", items)
				errs <- err
			}()
		}
		for range requests {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		answered = append(answered, time.Since(start))
		start = time.Now()
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error, 1)
		go func() { done <- h.c.RunDecider(ctx) }()
		gws := []string{"gw-hq", "gw-hq2", "gw-osaka", "gw-dc2", "gw-dc3"}
		for n := 0; testutil.ToFloat64(h.c.m.IntakeBacklog) > 0; n++ {
			time.Sleep(5 * time.Millisecond)
			it := ind("c2_beacon", gws[n%len(gws)])
			it.Indicator.Labels = map[string]string{"n": fmt.Sprint(n)}
			t0 := time.Now()
			out, err := h.c.Enqueue(context.Background(), "ids", []Item{it})
			if err != nil || len(out) != 1 || out[0].Queued || !out[0].Matched {
				b.Fatalf("the C2 alert: %+v, %v", out, err)
			}
			lat = append(lat, time.Since(t0))
		}
		decided = append(decided, time.Since(start))
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	med := func(d []time.Duration) float64 { slices.Sort(d); return float64(d[len(d)/2].Milliseconds()) }
	b.ReportMetric(float64(len(lat)), "critical-alerts")
	b.ReportMetric(q(0.5), "critical-p50-ms")
	b.ReportMetric(q(0.99), "critical-p99-ms")
	b.ReportMetric(med(answered), "storm-answered-ms")
	b.ReportMetric(med(decided), "storm-decided-ms")
}

// movingClock is instantClock whose time a test moves.
type movingClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *movingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}
func (c *movingClock) set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }
func (c *movingClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return instantClock{now: c.Now()}.AfterFunc(d, f)
}
func (c *movingClock) After(d time.Duration) <-chan time.Time {
	return instantClock{now: c.Now()}.After(d)
}

// TestJournaledIndicatorIsReceivedWhenAnswered: an indicator answered from
// the journal is recorded as received when it was answered, not when the
// decider came to it (after a restart, that can be much later), so that
// deduplication and incident windows, and the report's times, count from
// its arrival.
func TestJournaledIndicatorIsReceivedWhenAnswered(t *testing.T) {
	answered := time.Date(2026, 11, 25, 3, 0, 0, 123456789, time.UTC)
	clk := &movingClock{now: answered}
	h := newJournaledHarness(t, func(o *Options) { o.Clock = clk })
	out, err := h.c.Enqueue(t.Context(), "test", []Item{lowItem("gw-hq", 1)})
	if err != nil || len(out) != 1 || !out[0].Queued {
		t.Fatalf("answer %+v, %v", out, err)
	}
	clk.set(answered.Add(time.Hour)) // the decider comes to it an hour later
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.c.RunDecider(ctx) }()
	waitStored(t, h.st, []string{out[0].IndicatorID})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var rec store.IndicatorRecord
	if err := h.st.Tx(t.Context(), func(tx store.Tx) (err error) {
		rec, err = tx.IndicatorByID(t.Context(), out[0].IndicatorID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if want := answered.Truncate(time.Microsecond); !rec.ReceivedAt.Equal(want) {
		t.Errorf("received at %v, want %v (when it was answered)", rec.ReceivedAt, want)
	}
}

// TestBulkIndicatorIsRecordedOnItsRow: an indicator of bulk intake that
// starts no run gets no audit entries of its own: who sent it and what
// the policies decided are on its row, under its batch entry's root. One
// that starts a run is recorded in full, as before.
func TestBulkIndicatorIsRecordedOnItsRow(t *testing.T) {
	h := newJournaledHarness(t, nil)
	var ids []string
	for n := range 6 {
		out, err := h.c.Enqueue(t.Context(), "detector-1", []Item{lowItem("gw-hq", n)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, out[0].IndicatorID)
	}
	decideUntilStored(t, h, ids)
	es, err := audit.List(t.Context(), h.st.DB(), "")
	if err != nil {
		t.Fatal(err)
	}
	mentions := map[string][]string{} // indicator id → actions of entries naming it, besides the batch's
	for _, e := range es {
		if e.Action == BatchAction {
			continue
		}
		for _, id := range ids {
			if strings.Contains(string(e.Data), id) {
				mentions[id] = append(mentions[id], e.Action)
			}
		}
	}
	compact, full := 0, 0
	_ = h.st.Tx(t.Context(), func(tx store.Tx) error {
		for _, id := range ids {
			rec, err := tx.IndicatorByID(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Decision == nil {
				full++
				if !slices.Contains(mentions[id], "policy.decided") || !slices.Contains(mentions[id], "indicator.accepted") {
					t.Errorf("indicator %s has no decision on its row and entries %v; want indicator.accepted and policy.decided", id, mentions[id])
				}
				continue
			}
			compact++
			if len(mentions[id]) > 0 {
				t.Errorf("indicator %s has its decision on its row and entries %v too; want none", id, mentions[id])
			}
			d := rec.Decision
			if rec.Sender != "detector-1" || d.Triage != "accepted" || d.Policy == "" || d.At.IsZero() {
				t.Errorf("indicator %s: sender %q decision %+v; want the sender and the policy that decided", id, rec.Sender, *d)
			}
		}
		return nil
	})
	if compact == 0 {
		t.Fatalf("no indicator was recorded compactly (%d in full)", full)
	}
	if _, err := audit.Verify(t.Context(), h.st.DB()); err != nil {
		t.Fatalf("audit: %v", err)
	}
	if n, err := VerifyIntakeBatches(t.Context(), h.st); err != nil || n != len(ids) {
		t.Fatalf("VerifyIntakeBatches: %d, %v; want %d", n, err, len(ids))
	}
	// The decision on a row is under the batch's root.
	if _, err := h.st.DB().ExecContext(t.Context(), `UPDATE indicators SET decision = replace(decision, '"accepted"', '"duplicate"') WHERE decision != ''`); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyIntakeBatches(t.Context(), h.st); err == nil {
		t.Fatal("editing the decisions on the rows went unnoticed")
	}
}

// TestJournaledRunIsLeftPending: a run the decider's batch starts is not
// handed to the executor (its next pass takes it), so it is recorded
// pending, its first attempt recorded only when the executor takes it
// (never a run.resumed for a run nobody started).
func TestJournaledRunIsLeftPending(t *testing.T) {
	h := newJournaledHarness(t, nil)
	out, err := h.c.Enqueue(t.Context(), "detector-1", []Item{lowItem("gw-hq", 0)})
	if err != nil {
		t.Fatal(err)
	}
	decideUntilStored(t, h, []string{out[0].IndicatorID})
	runs, err := h.st.Runs(t.Context(), store.RunFilter{Gateway: "gw-hq", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 {
		t.Fatalf("%d runs, want the one the bulk indicator started", len(runs))
	}
	r, err := h.st.Run(t.Context(), runs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != store.RunPending || r.Steps[0].State != store.StepPending || r.Steps[0].Attempts != 0 {
		t.Fatalf("the decider's run: %s, first step %s after %d attempts; want pending, untaken", r.State, r.Steps[0].State, r.Steps[0].Attempts)
	}
	if r = h.run(t, r.ID); r.State != store.RunSucceeded {
		t.Fatalf("run %s: %s", r.State, r.Error)
	}
	if slices.Contains(h.auditActions(t), "run.resumed") {
		t.Fatal("the executor resumed a run nobody had started")
	}
}
