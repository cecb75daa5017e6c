package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/warden-ir/warden/internal/testsupport"
	"github.com/warden-ir/warden/store"
)

var leaseCases = []testCase{
	{"no lease is recorded on a fresh backend", leaseNoneYet},
	{"CurrentLease names the holder and its epoch", leaseCurrentNamesHolder},
	{"a second holder is refused and the refusal names the first", leaseOneHolder},
	{"the holder renews and its expiry moves on", leaseRenew},
	{"after Close the next holder gets a higher epoch", leaseNextEpoch},
	{"epochs increase strictly across holders", leaseEpochsIncrease},
	{"a holder taken over can no longer renew", leaseTakenOver},
	{"a closed holding can no longer renew", leaseRenewAfterClose},
	{"steps record the epoch they ran under", leaseStepEpochs},
	{"a step taken over under a newer epoch is not overwritten under an older one", leaseStaleStepUpdate},
}

const leaseTTL = 15 * time.Second

// holder describes a would-be holder on clock.
func holder(owner string, pid int, clock *testsupport.StepClock) store.LeaseOptions {
	return store.LeaseOptions{Owner: owner, Host: "host-a", PID: pid, TTL: leaseTTL, Clock: clock}
}

func currentLease(t *testing.T, b store.Backend) store.Lease {
	t.Helper()
	l, ok, err := b.CurrentLease(t.Context())
	if err != nil || !ok {
		t.Fatalf("CurrentLease: found=%t, %v; want a lease", ok, err)
	}
	return l
}

func leaseNoneYet(t *testing.T, h Harness) {
	b := h.Open(t)
	if l, ok, err := b.CurrentLease(t.Context()); err != nil || ok {
		t.Errorf("CurrentLease on a fresh backend = %+v, %t, %v; want none", l, ok, err)
	}
}

func leaseCurrentNamesHolder(t *testing.T, h Harness) {
	b := h.Open(t)
	clock := testsupport.NewStepClock(t0, time.Second)
	w := h.acquire(t, b, holder("first", 4242, clock))
	if w.Epoch() < 1 {
		t.Errorf("epoch = %d, want at least 1 (0 means unfenced)", w.Epoch())
	}
	l := currentLease(t, b)
	if l.Owner != "first" || l.Host != "host-a" || l.PID != 4242 || l.Epoch != w.Epoch() {
		t.Errorf("CurrentLease = %+v, want first (pid 4242 on host-a) at epoch %d", l, w.Epoch())
	}
	if !l.ExpiresAt.Equal(l.AcquiredAt.Add(leaseTTL)) || l.AcquiredAt.IsZero() {
		t.Errorf("lease acquired %v expires %v, want a TTL of %v", l.AcquiredAt, l.ExpiresAt, leaseTTL)
	}
}

func leaseOneHolder(t *testing.T, h Harness) {
	a := h.Open(t)
	b := h.reopen(t, a)
	clock := testsupport.NewStepClock(t0, time.Second)
	first := h.acquire(t, a, holder("first", 4242, clock))
	_, err := h.tryAcquire(t, b, holder("second", 4343, clock))
	var held *store.LeaseHeldError
	if !errors.As(err, &held) {
		t.Fatalf("second acquire: %v, want *store.LeaseHeldError", err)
	}
	if !held.Known || held.Holder.Owner != "first" || held.Holder.PID != 4242 || held.Holder.Epoch != first.Epoch() {
		t.Errorf("refusal names %+v (known %t), want the first holder at epoch %d", held.Holder, held.Known, first.Epoch())
	}
	if l := currentLease(t, b); l.Owner != "first" || l.Epoch != first.Epoch() {
		t.Errorf("after the refusal CurrentLease = %+v, want the first holder unchanged", l)
	}
	if err := first.Renew(t.Context()); err != nil {
		t.Errorf("the holder renewing after a refused rival: %v", err)
	}
}

func leaseRenew(t *testing.T, h Harness) {
	b := h.Open(t)
	clock := testsupport.NewStepClock(t0, time.Second)
	w := h.acquire(t, b, holder("first", 4242, clock))
	before := currentLease(t, b)
	if err := w.Renew(t.Context()); err != nil {
		t.Fatalf("renewing: %v", err)
	}
	after := currentLease(t, b)
	if !after.ExpiresAt.After(before.ExpiresAt) || !after.RenewedAt.After(before.RenewedAt) {
		t.Errorf("after renewing, renewed %v expires %v; before, renewed %v expires %v", after.RenewedAt, after.ExpiresAt, before.RenewedAt, before.ExpiresAt)
	}
	if after.Epoch != before.Epoch || after.Owner != before.Owner || !after.AcquiredAt.Equal(before.AcquiredAt) {
		t.Errorf("renewing changed the holding: %+v, was %+v", after, before)
	}
}

// handover is a holding given up on one handle of a store and the next
// taken on another handle of it.
type handover struct {
	a             store.Backend // the first holder's handle
	first, second Writer
	firstEpoch    int64 // first's epoch, read before it closed
}

// handOver has "first" acquire the lease on a handle and close it, then
// "second" acquire it on another handle of the same store.
func (h Harness) handOver(t *testing.T) handover {
	t.Helper()
	a := h.Open(t)
	b := h.reopen(t, a)
	clock := testsupport.NewStepClock(t0, time.Second)
	first := h.acquire(t, a, holder("first", 4242, clock))
	e1 := first.Epoch()
	if err := first.Close(t.Context()); err != nil {
		t.Fatalf("closing: %v", err)
	}
	return handover{a: a, first: first, second: h.acquire(t, b, holder("second", 4343, clock)), firstEpoch: e1}
}

func leaseNextEpoch(t *testing.T, h Harness) {
	ho := h.handOver(t)
	if ho.second.Epoch() <= ho.firstEpoch {
		t.Errorf("epoch after the first holder closed = %d, want more than %d", ho.second.Epoch(), ho.firstEpoch)
	}
	if l := currentLease(t, ho.a); l.Owner != "second" || l.Epoch != ho.second.Epoch() {
		t.Errorf("CurrentLease = %+v, want second at epoch %d", l, ho.second.Epoch())
	}
}

func leaseEpochsIncrease(t *testing.T, h Harness) {
	b := h.Open(t)
	clock := testsupport.NewStepClock(t0, time.Second)
	var last int64
	for i, owner := range []string{"a", "b", "a", "c"} {
		w := h.acquire(t, b, holder(owner, 100+i, clock))
		if w.Epoch() <= last {
			t.Errorf("holding %d (%s): epoch %d, want more than %d", i, owner, w.Epoch(), last)
		}
		last = w.Epoch()
		if err := w.Close(t.Context()); err != nil {
			t.Fatalf("closing holding %d: %v", i, err)
		}
	}
}

func leaseTakenOver(t *testing.T, h Harness) {
	ho := h.handOver(t)
	if err := ho.first.Renew(t.Context()); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("renewing a lease taken over: %v, want ErrLeaseLost", err)
	}
	if l := currentLease(t, ho.a); l.Owner != "second" {
		t.Errorf("the old holder's renewal changed the lease: %+v", l)
	}
}

// leaseRenewAfterClose: a holding given up stays given up. A renewal
// racing the release (the renewal loop and shutdown) must not bring the
// row back to life, or a controller on another host would be refused by a
// holder that is gone.
func leaseRenewAfterClose(t *testing.T, h Harness) {
	b := h.Open(t)
	clock := testsupport.NewStepClock(t0, time.Second)
	w := h.acquire(t, b, holder("first", 4242, clock))
	if err := w.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	closed := currentLease(t, b)
	if err := w.Renew(context.WithoutCancel(t.Context())); err == nil {
		t.Errorf("renewing a closed holding succeeded")
	}
	if l := currentLease(t, b); !l.ExpiresAt.Equal(closed.ExpiresAt) {
		t.Errorf("renewing a closed holding moved its expiry from %v to %v", closed.ExpiresAt, l.ExpiresAt)
	}
}

func leaseStepEpochs(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	clock := testsupport.NewStepClock(t0, time.Second)
	r := runAt("run-1", "inc-1", "gw-1", "isolate", store.RunRunning, t0, "snapshot", "isolate")
	commit(t, b, func(tx store.Tx) error { return tx.InsertRun(ctx, r) })

	ranUnder := func(i int, w Writer) {
		s := r.Steps[i]
		s.State, s.Attempts, s.Epoch, s.StartedAt = store.StepSucceeded, 1, w.Epoch(), clock.Now()
		commit(t, b, func(tx store.Tx) error { return tx.UpdateStep(ctx, s) })
	}
	first := h.acquire(t, b, holder("first", 4242, clock))
	ranUnder(0, first)
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	second := h.acquire(t, b, holder("second", 4343, clock))
	ranUnder(1, second)

	got := reloaded(t, b, "run-1", 2)
	if got.Steps[0].Epoch != first.Epoch() || got.Steps[1].Epoch != second.Epoch() {
		t.Errorf("step epochs = %d, %d; want %d, %d", got.Steps[0].Epoch, got.Steps[1].Epoch, first.Epoch(), second.Epoch())
	}
}

// leaseStaleStepUpdate: a deposed leader that wakes up after its
// successor took a step over cannot record over it.
func leaseStaleStepUpdate(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	r := runAt("run-1", "inc-1", "gw-1", "isolate", store.RunRunning, t0, "isolate")
	commit(t, b, func(tx store.Tx) error { return tx.InsertRun(ctx, r) })
	s := r.Steps[0]
	s.State, s.Attempts, s.Epoch, s.StartedAt = store.StepRunning, 1, 4, t0
	commit(t, b, func(tx store.Tx) error { return tx.UpdateStep(ctx, s) })
	taken := s
	taken.Attempts, taken.Epoch = 2, 5
	commit(t, b, func(tx store.Tx) error { return tx.UpdateStep(ctx, taken) })

	stale := s
	stale.State, stale.Result, stale.FinishedAt = store.StepFailed, []byte(`{"summary":"late"}`), t0.Add(time.Minute)
	err := b.Tx(ctx, func(tx store.Tx) error { return tx.UpdateStep(ctx, stale) })
	if !errors.Is(err, store.ErrStaleEpoch) {
		t.Errorf("updating under epoch 4 a step taken over at 5: %v, want ErrStaleEpoch", err)
	}
	got := reloaded(t, b, "run-1", 1).Steps[0]
	if got.Epoch != 5 || got.State != store.StepRunning || got.Attempts != 2 {
		t.Errorf("after the stale update the step is %+v, want the successor's (running, attempt 2, epoch 5)", got)
	}
	// The holder itself goes on.
	taken.State = store.StepSucceeded
	commit(t, b, func(tx store.Tx) error { return tx.UpdateStep(ctx, taken) })
}
