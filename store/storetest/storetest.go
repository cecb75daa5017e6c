// Package storetest is the conformance suite for store.Backend: every
// backend (SQLite today, PostgreSQL later) must pass it, so that the
// controller relies on the seam's contract rather than on one database.
//
// It owns the contract's tests and nothing else; only tests import it. It
// speaks to a backend through the seam (store.Backend, store.Reader,
// store.Tx), to its writer lease through the small Writer interface, and to
// its audit chain through audit.Verify and audit.List over Backend.DB(). It
// touches a backend's tables directly only to tamper with the audit chain,
// as an attacker would, in plain SQL both databases accept.
//
// Times in the suite are whole microseconds: the contract does not promise
// a finer resolution.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/store"
)

// Harness is what a backend gives the suite.
type Harness struct {
	// Open returns a fresh, empty backend. The harness closes it when t
	// ends.
	Open func(t *testing.T) store.Backend

	// Reopen returns another handle on the database behind b, as a second
	// controller process would open it; the harness closes it when t
	// ends. Nil skips the cases that need two handles.
	Reopen func(t *testing.T, b store.Backend) store.Backend

	// AcquireWriter takes the writer lease of the database behind b for
	// the holder opt describes (Owner, Host, PID, TTL and the clock Now).
	// While another holder has it, it fails with a *store.LeaseHeldError
	// naming that holder. Nil skips the lease cases.
	AcquireWriter func(ctx context.Context, b store.Backend, opt store.LeaseOptions) (Writer, error)

	// KnownFailures names the cases ("group/case", as the suite's
	// subtests are named before Go rewrites spaces) that this backend is
	// known to fail, with why. They are skipped with the reason shown, so
	// that a known bug keeps the suite green without going unseen; remove
	// the entry with the fix.
	KnownFailures map[string]string
}

// Writer is one holding of a backend's writer lease: what the controller
// needs of it. *store.Writer implements it.
type Writer interface {
	// Epoch is the epoch of this holding; it increases strictly from one
	// holding to the next and is never 0 (0 marks a step run unfenced).
	Epoch() int64
	// Renew extends the holding; it fails with store.ErrLeaseLost once
	// another holder has taken the lease over.
	Renew(ctx context.Context) error
	// Close gives the lease up so that the next holder starts at once.
	Close(ctx context.Context) error
}

var _ Writer = (*store.Writer)(nil)

// testCase is one behaviour of the contract.
type testCase struct {
	name string
	run  func(t *testing.T, h Harness)
}

// Run checks the store.Backend contract against the backends h opens.
// Cases run in parallel, each on its own fresh backend.
func Run(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("storetest: Harness.Open is required")
	}
	groups := []struct {
		name  string
		cases []testCase
	}{
		{"tx", txCases},
		{"runs", runCases},
		{"lease", leaseCases},
		{"audit", auditCases},
		{"concurrency", concurrencyCases},
		{"postures", postureCases},
		{"breaker", breakerCases},
		{"incidents", incidentCases},
		{"indicators", indicatorCases},
		{"patch waves", waveCases},
		{"baselines", baselineCases},
		{"replay", replayCases},
		{"users", userCases},
		{"sessions", sessionCases},
		{"blocks", blockCases},
		{"replicas", replicaCases},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) {
					if why, ok := h.KnownFailures[g.name+"/"+c.name]; ok {
						t.Skip("known failure of this backend: " + why)
					}
					t.Parallel()
					c.run(t, h)
				})
			}
		})
	}
}

// reopen is a second handle on b's database, skipping without one.
func (h Harness) reopen(t *testing.T, b store.Backend) store.Backend {
	t.Helper()
	if h.Reopen == nil {
		t.Skip("the harness offers no second handle on one database")
	}
	return h.Reopen(t, b)
}

// acquire takes b's writer lease for owner, failing the test if it cannot.
func (h Harness) acquire(t *testing.T, b store.Backend, opt store.LeaseOptions) Writer {
	t.Helper()
	w, err := h.tryAcquire(t, b, opt)
	if err != nil {
		t.Fatalf("acquiring the writer lease for %s: %v", opt.Owner, err)
	}
	return w
}

// tryAcquire takes b's writer lease and releases it when t ends.
func (h Harness) tryAcquire(t *testing.T, b store.Backend, opt store.LeaseOptions) (Writer, error) {
	t.Helper()
	if h.AcquireWriter == nil {
		t.Skip("the harness offers no writer lease")
	}
	w, err := h.AcquireWriter(t.Context(), b, opt)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	return w, nil
}

// ---- fixtures ----

// t0 is the suite's "now": a whole number of microseconds, in UTC.
var t0 = time.Date(2026, 3, 14, 3, 0, 0, 123456000, time.UTC)

const us = time.Microsecond

var errBoom = errors.New("boom")

// commit runs fn in one transaction of b and fails the test if it does not
// commit. fn returns errors rather than failing the test itself: a test
// that stops inside fn would leave the transaction open.
func commit(t *testing.T, b store.Backend, fn func(tx store.Tx) error) {
	t.Helper()
	if err := b.Tx(t.Context(), fn); err != nil {
		t.Fatalf("committing: %v", err)
	}
}

// all runs fns in order and stops at the first error.
func all(fns ...func() error) error {
	for _, f := range fns {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// writeAudited inserts indicator id of inc-1 at at and the audit entry
// action in tx: a write to a table and to the chain, which the
// transaction tests commit or undo together.
func writeAudited(ctx context.Context, tx store.Tx, id string, at time.Time, action string) error {
	return all(
		func() error { return tx.InsertIndicator(ctx, indicatorAt(id, "gw-1", "inc-1", at)) },
		func() error { return tx.Audit(ctx, entry(action)) },
	)
}

// failSavepoint runs steps in a savepoint of tx that then fails with
// errBoom, and returns an error unless Savepoint hands that failure back.
func failSavepoint(ctx context.Context, tx store.Tx, steps ...func() error) error {
	err := tx.Savepoint(ctx, func() error {
		if err := all(steps...); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		return fmt.Errorf("Savepoint = %v, want fn's error", err)
	}
	return nil
}

// indicatorAt is a matched, firing, high-severity indicator about gw.
func indicatorAt(id, gw, incident string, at time.Time) store.IndicatorRecord {
	return store.IndicatorRecord{
		ID: id, ReceivedAt: at, Incident: incident, Matched: true,
		Indicator: indicator.Indicator{
			ID: id, Kind: indicator.C2Beacon, Gateway: gw, Severity: indicator.High, Confidence: 0.9,
			Observables: indicator.Observables{IPs: []string{"203.0.113.7"}},
			ObservedAt:  at, Source: "suricata", Summary: "beacon to 203.0.113.7",
			Status: indicator.StatusFiring, Fingerprint: "fp-" + id, Labels: map[string]string{"rule": "2027865"},
		},
	}
}

func incidentAt(id, gw string, at time.Time) store.Incident {
	return store.Incident{ID: id, Gateway: gw, Site: "site-a", OpenedAt: at, UpdatedAt: at,
		Status: store.IncidentOpen, Severity: "high", Title: "C2 beacon", LastStatus: "firing"}
}

// runAt is a run of runbook with one pending step per action; step i's
// idempotency key is "<run>/<i>/<action>".
func runAt(id, incident, gw, runbook, state string, at time.Time, actions ...string) store.Run {
	r := store.Run{ID: id, Incident: incident, Gateway: gw, Site: "site-a", Runbook: runbook, Policy: "isolate-on-c2",
		Trigger: "policy", State: state, CreatedAt: at, UpdatedAt: at}
	for i, a := range actions {
		r.Steps = append(r.Steps, store.Step{Run: id, Index: i, Name: a, Action: a, State: store.StepPending,
			IdemKey: id + "/" + strconv.Itoa(i) + "/" + a})
	}
	return r
}

func entry(action string) audit.Entry {
	return audit.Entry{At: t0, Actor: "controller", Action: action}
}

// verified verifies b's audit chain and fails the test if it is broken.
func verified(t *testing.T, b store.Backend) audit.Report {
	t.Helper()
	rep, err := audit.Verify(t.Context(), b.DB())
	if err != nil {
		t.Fatalf("verifying the audit chain: %v", err)
	}
	return rep
}

// auditActions lists the actions of b's audit entries in chain order.
func auditActions(t *testing.T, b store.Backend) []string {
	t.Helper()
	es, err := audit.List(t.Context(), b.DB(), "")
	if err != nil {
		t.Fatalf("listing audit entries: %v", err)
	}
	out := []string{}
	for _, e := range es {
		out = append(out, e.Action)
	}
	return out
}

// wantAudit fails the test unless b's audit chain verifies and holds
// exactly the entries want names, in order.
func wantAudit(t *testing.T, b store.Backend, want ...string) {
	t.Helper()
	if got := auditActions(t, b); !slices.Equal(got, want) {
		t.Errorf("audit actions = %v, want %v", got, want)
	}
	if rep := verified(t, b); rep.Entries != int64(len(want)) {
		t.Errorf("audit chain has %d entries, want %d", rep.Entries, len(want))
	}
}

// wantIndicators fails the test unless incident's indicators are exactly
// want, oldest first.
func wantIndicators(t *testing.T, b store.Backend, incident string, want ...string) {
	t.Helper()
	rs, err := b.IndicatorsOfIncident(t.Context(), incident)
	if err != nil {
		t.Fatalf("listing indicators of %s: %v", incident, err)
	}
	got := []string{}
	for _, r := range rs {
		got = append(got, r.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("indicators of %s = %v, want %v", incident, got, want)
	}
}

// writeAll writes each of items with write, stopping at the first error.
func writeAll[T any](ctx context.Context, write func(context.Context, T) error, items []T) error {
	for _, it := range items {
		if err := write(ctx, it); err != nil {
			return err
		}
	}
	return nil
}
