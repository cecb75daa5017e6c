package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/store"
)

var concurrencyCases = []testCase{
	{"concurrent transactions lose nothing and keep one chain", concurrentOneHandle},
	{"two handles see each other's commits", concurrentTwoHandlesSee},
	{"two handles committing at once keep one chain", concurrentTwoHandlesChain},
}

// commitFrom commits, from workers goroutines over handles round-robin,
// txs transactions each: one indicator and its audit entry per
// transaction. It returns the indicator ids.
func commitFrom(t *testing.T, handles []store.Backend, workers, txs int) []string {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ids  []string
		errs []error
	)
	for w := range workers {
		b := handles[w%len(handles)]
		wg.Go(func() {
			for i := range txs {
				id := fmt.Sprintf("ind-%d-%d", w, i)
				at := t0.Add(time.Duration(w*txs+i) * us)
				err := b.Tx(t.Context(), func(tx store.Tx) error {
					return all(
						func() error { return tx.InsertIndicator(t.Context(), indicatorAt(id, "gw-1", "inc-1", at)) },
						func() error {
							return tx.Audit(t.Context(), audit.Entry{At: at, Actor: "controller", Action: "indicator.accepted", Subject: id})
						},
					)
				})
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("worker %d, transaction %d: %w", w, i, err))
				} else {
					ids = append(ids, id)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	return ids
}

// checkAllThere checks that b holds exactly ids, each with one audit
// entry, in one verified chain.
func checkAllThere(t *testing.T, b store.Backend, ids []string) {
	t.Helper()
	if n, err := b.CountIndicators(t.Context()); err != nil || n != len(ids) {
		t.Errorf("CountIndicators = %d, %v; want %d", n, err, len(ids))
	}
	rep := verified(t, b)
	if rep.Entries != int64(len(ids)) {
		t.Errorf("audit chain has %d entries, want %d", rep.Entries, len(ids))
	}
	es, err := audit.List(t.Context(), b.DB(), "")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range es {
		seen[e.Subject] = true
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("no audit entry for %s", id)
		}
	}
}

func concurrentOneHandle(t *testing.T, h Harness) {
	b := h.Open(t)
	ids := commitFrom(t, []store.Backend{b}, 8, 25)
	if len(ids) != 200 {
		t.Errorf("%d of 200 transactions committed", len(ids))
	}
	checkAllThere(t, b, ids)
}

func concurrentTwoHandlesSee(t *testing.T, h Harness) {
	a := h.Open(t)
	b := h.reopen(t, a)
	ctx := t.Context()
	commit(t, a, func(tx store.Tx) error { return tx.UpsertIncident(ctx, incidentAt("inc-a", "gw-1", t0)) })
	if in, err := b.Incident(ctx, "inc-a"); err != nil || in.Gateway != "gw-1" {
		t.Errorf("the second handle reads %+v, %v; want inc-a", in, err)
	}
	commit(t, b, func(tx store.Tx) error {
		return all(
			func() error { return tx.SetIncidentStatus(ctx, "inc-a", store.IncidentContained, t0.Add(time.Second)) },
			func() error { return tx.Audit(ctx, entry("incident.contained")) },
		)
	})
	if in, err := a.Incident(ctx, "inc-a"); err != nil || in.Status != store.IncidentContained {
		t.Errorf("the first handle reads %+v, %v; want inc-a contained", in, err)
	}
	if rep := verified(t, a); rep.Entries != 1 {
		t.Errorf("the first handle's chain has %d entries, want 1", rep.Entries)
	}
}

func concurrentTwoHandlesChain(t *testing.T, h Harness) {
	a := h.Open(t)
	b := h.reopen(t, a)
	ids := commitFrom(t, []store.Backend{a, b}, 8, 10)
	if len(ids) != 80 {
		t.Errorf("%d of 80 transactions committed", len(ids))
	}
	checkAllThere(t, a, ids)
	checkAllThere(t, b, ids)
}
