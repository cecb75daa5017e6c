package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/warden-ir/warden/store"
)

var txCases = []testCase{
	{"failed fn leaves no rows and no audit entries", txFailedLeavesNothing},
	{"committed writes are visible to the reader", txCommittedVisible},
	{"writes are visible inside their own transaction", txReadsOwnWrites},
	{"failed savepoint undoes only its own writes and audit entries", txSavepointUndoesOwn},
	{"failed savepoint holding the first audit entry leaves no gap", txSavepointFirstAudit},
	{"constraint error inside a savepoint does not spoil the transaction", txSavepointConstraint},
	{"nested savepoints: a failed inner one leaves the outer going", txSavepointNested},
	{"cancelled context commits nothing", txCancelled},
	{"panic in fn commits nothing and the backend goes on", txPanicCommitsNothing},
	{"panic in fn reaches the caller at once, whatever the context", txPanicReachesCaller},
	{"write probe commits again and again", txProbeWrite},
}

// writeOneOfEach writes one record of every kind a transaction can write,
// all about incident "inc-1" on "gw-1", and one audit entry.
func writeOneOfEach(ctx context.Context, tx store.Tx) error {
	return all(
		func() error { return tx.UpsertIncident(ctx, incidentAt("inc-1", "gw-1", t0)) },
		func() error { return tx.InsertIndicator(ctx, indicatorAt("ind-1", "gw-1", "inc-1", t0)) },
		func() error {
			return tx.InsertRun(ctx, runAt("run-1", "inc-1", "gw-1", "isolate", store.RunPending, t0, "snapshot", "isolate"))
		},
		func() error { return tx.SetDesiredPosture(ctx, "gw-1", store.PostureQuarantined, "inc-1", t0) },
		func() error { return tx.TripBreaker(ctx, t0, "too many gateways") },
		func() error {
			return tx.InsertBaselineResult(ctx, store.BaselineResult{ID: "bl-1", Gateway: "gw-1", CheckedAt: t0,
				Passed: true, Source: "drift", Report: json.RawMessage(`{"checks":3}`)})
		},
		func() error {
			return tx.InsertPatchWave(ctx, store.PatchWave{ID: "wave-1", Actor: "cli", Request: json.RawMessage(`{"gateways":["gw-1"]}`),
				State: store.WaveRunning, CreatedAt: t0, UpdatedAt: t0})
		},
		func() error { return tx.Audit(ctx, entry("indicator.accepted")) },
	)
}

func txFailedLeavesNothing(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	err := b.Tx(ctx, func(tx store.Tx) error {
		if err := writeOneOfEach(ctx, tx); err != nil {
			return fmt.Errorf("writing: %w", err)
		}
		if err := tx.Audit(ctx, entry("policy.decided")); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Tx = %v, want fn's error", err)
	}
	if n, err := b.CountIndicators(ctx); err != nil || n != 0 {
		t.Errorf("CountIndicators = %d, %v; want 0", n, err)
	}
	if _, err := b.Incident(ctx, "inc-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Incident after rollback: %v, want ErrNotFound", err)
	}
	if _, err := b.Run(ctx, "run-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Run after rollback: %v, want ErrNotFound", err)
	}
	if p, err := b.Posture(ctx, "gw-1"); err != nil || p.Desired != store.PostureNormal {
		t.Errorf("Posture after rollback = %+v, %v; want normal", p, err)
	}
	if br, err := b.Breaker(ctx); err != nil || br.Tripped {
		t.Errorf("Breaker after rollback = %+v, %v; want closed", br, err)
	}
	if _, ok, err := b.LatestBaseline(ctx, "gw-1"); err != nil || ok {
		t.Errorf("LatestBaseline after rollback: found=%t, %v", ok, err)
	}
	if _, err := b.PatchWave(ctx, "wave-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PatchWave after rollback: %v, want ErrNotFound", err)
	}
	wantAudit(t, b)
}

func txCommittedVisible(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error { return writeOneOfEach(ctx, tx) })

	if n, err := b.CountIndicators(ctx); err != nil || n != 1 {
		t.Errorf("CountIndicators = %d, %v; want 1", n, err)
	}
	wantIndicators(t, b, "inc-1", "ind-1")
	if in, err := b.Incident(ctx, "inc-1"); err != nil || in.Gateway != "gw-1" || in.Status != store.IncidentOpen {
		t.Errorf("Incident = %+v, %v", in, err)
	}
	if ins, err := b.Incidents(ctx, 10); err != nil || len(ins) != 1 || ins[0].ID != "inc-1" {
		t.Errorf("Incidents = %+v, %v", ins, err)
	}
	if r, err := b.Run(ctx, "run-1"); err != nil || r.State != store.RunPending || len(r.Steps) != 2 {
		t.Errorf("Run = %+v, %v; want pending with 2 steps", r, err)
	}
	if rs, err := b.Runs(ctx, store.RunFilter{Incident: "inc-1"}); err != nil || len(rs) != 1 || rs[0].ID != "run-1" {
		t.Errorf("Runs = %+v, %v", rs, err)
	}
	if p, err := b.Posture(ctx, "gw-1"); err != nil || p.Desired != store.PostureQuarantined || p.Incident != "inc-1" {
		t.Errorf("Posture = %+v, %v; want quarantined for inc-1", p, err)
	}
	if br, err := b.Breaker(ctx); err != nil || !br.Tripped || br.Reason != "too many gateways" {
		t.Errorf("Breaker = %+v, %v; want tripped", br, err)
	}
	if r, ok, err := b.LatestBaseline(ctx, "gw-1"); err != nil || !ok || r.ID != "bl-1" {
		t.Errorf("LatestBaseline = %+v, %t, %v", r, ok, err)
	}
	if w, err := b.PatchWave(ctx, "wave-1"); err != nil || w.State != store.WaveRunning {
		t.Errorf("PatchWave = %+v, %v", w, err)
	}
	wantAudit(t, b, "indicator.accepted")
}

func txReadsOwnWrites(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error {
		if err := writeOneOfEach(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.IndicatorByID(ctx, "ind-1"); err != nil {
			return fmt.Errorf("IndicatorByID: %w", err)
		}
		if _, err := tx.IncidentByID(ctx, "inc-1"); err != nil {
			return fmt.Errorf("IncidentByID: %w", err)
		}
		if r, err := tx.Run(ctx, "run-1"); err != nil || len(r.Steps) != 2 {
			return fmt.Errorf("Run = %+v, %w", r, err)
		}
		if p, err := tx.Posture(ctx, "gw-1"); err != nil || p.Desired != store.PostureQuarantined {
			return fmt.Errorf("Posture = %+v, %w", p, err)
		}
		if br, err := tx.Breaker(ctx); err != nil || !br.Tripped {
			return fmt.Errorf("Breaker = %+v, %w", br, err)
		}
		if _, ok, err := tx.LatestBaseline(ctx, "gw-1"); err != nil || !ok {
			return fmt.Errorf("LatestBaseline found=%t, %w", ok, err)
		}
		return nil
	})
}

func txSavepointUndoesOwn(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error {
		if err := writeAudited(ctx, tx, "ind-a", t0, "a"); err != nil {
			return err
		}
		if err := failSavepoint(ctx, tx,
			func() error { return writeAudited(ctx, tx, "ind-b", t0.Add(us), "b") },
			func() error { return tx.TripBreaker(ctx, t0, "b") },
		); err != nil {
			return err
		}
		return writeAudited(ctx, tx, "ind-c", t0.Add(2*us), "c")
	})
	wantIndicators(t, b, "inc-1", "ind-a", "ind-c")
	if br, err := b.Breaker(ctx); err != nil || br.Tripped {
		t.Errorf("Breaker = %+v, %v; the failed savepoint's trip stuck", br, err)
	}
	wantAudit(t, b, "a", "c")
}

// txSavepointFirstAudit: the transaction's first audit entry is written
// inside a savepoint that fails; the next entry must take its place.
func txSavepointFirstAudit(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error { return tx.Audit(ctx, entry("before")) })
	commit(t, b, func(tx store.Tx) error {
		if err := failSavepoint(ctx, tx, func() error { return tx.Audit(ctx, entry("undone")) }); err != nil {
			return err
		}
		return tx.Audit(ctx, entry("after"))
	})
	wantAudit(t, b, "before", "after")
}

func txSavepointConstraint(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error {
		if err := tx.InsertIndicator(ctx, indicatorAt("ind-a", "gw-1", "inc-1", t0)); err != nil {
			return err
		}
		err := tx.Savepoint(ctx, func() error {
			if err := tx.Audit(ctx, entry("duplicate")); err != nil {
				return err
			}
			return tx.InsertIndicator(ctx, indicatorAt("ind-a", "gw-1", "inc-1", t0.Add(us)))
		})
		if err == nil {
			return errors.New("inserting an indicator id twice succeeded")
		}
		return writeAudited(ctx, tx, "ind-c", t0.Add(2*us), "c")
	})
	wantIndicators(t, b, "inc-1", "ind-a", "ind-c")
	wantAudit(t, b, "c")
}

func txSavepointNested(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	commit(t, b, func(tx store.Tx) error {
		return tx.Savepoint(ctx, func() error {
			if err := writeAudited(ctx, tx, "ind-outer", t0, "outer"); err != nil {
				return err
			}
			if err := failSavepoint(ctx, tx,
				func() error { return writeAudited(ctx, tx, "ind-inner", t0.Add(us), "inner") },
			); err != nil {
				return fmt.Errorf("inner: %w", err)
			}
			return writeAudited(ctx, tx, "ind-later", t0.Add(2*us), "later")
		})
	})
	wantIndicators(t, b, "inc-1", "ind-outer", "ind-later")
	wantAudit(t, b, "outer", "later")
}

func txCancelled(t *testing.T, h Harness) {
	b := h.Open(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := b.Tx(ctx, func(tx store.Tx) error {
		return writeAudited(ctx, tx, "ind-1", t0, "a")
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Tx with a cancelled context = %v, want context.Canceled", err)
	}
	if n, err := b.CountIndicators(t.Context()); err != nil || n != 0 {
		t.Errorf("CountIndicators = %d, %v; want 0", n, err)
	}
	wantAudit(t, b)
}

// panicInTx starts a transaction whose fn writes, then panics, in a
// goroutine of its own. panicking is closed just before the panic; done
// carries what the panic brought out of Tx once Tx gives it back.
func panicInTx(ctx context.Context, b store.Backend) (panicking <-chan struct{}, done <-chan any) {
	p, d := make(chan struct{}), make(chan any, 1)
	go func() {
		defer func() { d <- recover() }()
		_ = b.Tx(ctx, func(tx store.Tx) error {
			_ = tx.InsertIndicator(ctx, indicatorAt("ind-panic", "gw-1", "inc-1", t0))
			_ = tx.Audit(ctx, entry("panic"))
			close(p)
			panic(errBoom)
		})
	}()
	return p, d
}

// txPanicCommitsNothing: the panic reaches the caller (at the latest once
// the transaction's context ends, as a request's does), nothing fn wrote
// is committed, and the backend goes on.
func txPanicCommitsNothing(t *testing.T, h Harness) {
	b := h.Open(t)
	ctx, cancel := context.WithCancel(t.Context())
	panicking, done := panicInTx(ctx, b)
	<-panicking
	cancel()
	select {
	case got := <-done:
		if got != errBoom {
			t.Fatalf("recovered %v from Tx, want fn's panic", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Tx with a panicking fn did not give the panic back after its context ended")
	}
	checkUsableAfterPanic(t, b)
}

// txPanicReachesCaller: a panic recovered further up (an HTTP server's
// recovery, a worker's) must come back at once, the transaction rolled
// back, whatever the context: a Tx that waits for its context to end holds
// the database meanwhile.
func txPanicReachesCaller(t *testing.T, h Harness) {
	b := h.Open(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, done := panicInTx(ctx, b)
	select {
	case got := <-done:
		if got != errBoom {
			t.Fatalf("recovered %v from Tx, want fn's panic", got)
		}
	case <-time.After(2 * time.Second):
		cancel() // let it go, to clean up
		<-done
		t.Fatal("Tx with a panicking fn neither returned nor panicked within 2s: it waits for its context to end")
	}
	checkUsableAfterPanic(t, b)
}

// checkUsableAfterPanic checks that the panicking transaction left nothing
// and that the backend commits again.
func checkUsableAfterPanic(t *testing.T, b store.Backend) {
	t.Helper()
	ctx, stop := context.WithTimeout(t.Context(), 5*time.Second)
	defer stop()
	err := b.Tx(ctx, func(tx store.Tx) error {
		return writeAudited(ctx, tx, "ind-next", t0.Add(us), "next")
	})
	if err != nil {
		t.Fatalf("Tx after a panicking one: %v", err)
	}
	wantIndicators(t, b, "inc-1", "ind-next")
	wantAudit(t, b, "next")
}

func txProbeWrite(t *testing.T, h Harness) {
	b := h.Open(t)
	for i := range 3 {
		if err := b.ProbeWrite(t.Context(), t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatalf("probe %d: %v", i, err)
		}
	}
}
