package daemon

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/store"
)

// StoreProbeInterval is how often Serve checks that the store can commit,
// and the Retry-After a 503 for an uncommittable store carries.
const StoreProbeInterval = 5 * time.Second

// errNotProbed is the state before the first probe: not ready, since
// nothing has shown yet that a commit goes through.
var errNotProbed = errors.New("the store has not been probed yet")

// storeWritability remembers whether the store's last commit went
// through: its own periodic probe (a one-row transaction) and every intake
// commit report to it, so a failure shows at once and a recovery at the
// next success. /readyz and intake consult it (api.StoreHealth).
//
// A tiny probe can succeed on a full disk while a large commit fails (a
// WAL file that was checkpointed is rewritten in place, needing no new
// space); intake's own failures are reported too, so readiness does not
// claim more than the last commit showed.
type storeWritability struct {
	st    *store.Store
	log   *slog.Logger
	clock clock.Clock

	writable prometheus.Gauge
	failures *prometheus.CounterVec

	mu   sync.Mutex
	last error // nil: the last commit went through
}

func newStoreWritability(st *store.Store, reg prometheus.Registerer, log *slog.Logger) *storeWritability {
	w := &storeWritability{
		st: st, log: log, clock: clock.Real, last: errNotProbed,
		writable: prometheus.NewGauge(prometheus.GaugeOpts{Name: "warden_store_writable",
			Help: "1 when the store's last commit (probe or intake) went through, 0 when it failed; /readyz answers 503 while 0."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_store_commit_failures_total",
			Help: "Commits the store refused (probe or intake), by reason: disk_full, read_only, io_error, busy, corrupt, cannot_open, other."}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(w.writable, w.failures)
	}
	return w
}

// Writable returns nil when the store's last commit went through, or the
// error that made it fail.
func (w *storeWritability) Writable() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// ObserveCommit records the outcome of a commit made outside the probe.
// Errors that say nothing about the store (a bad request, a constraint)
// are ignored.
func (w *storeWritability) ObserveCommit(err error) {
	if err != nil {
		if _, ok := store.UnwritableReason(err); !ok {
			return
		}
	}
	w.record(err)
}

// Probe commits the store's probe row and records the outcome. Any
// failure counts: a store that cannot commit the smallest transaction
// cannot take an indicator.
func (w *storeWritability) Probe(ctx context.Context) error {
	err := w.st.ProbeWrite(ctx, w.clock.Now())
	if ctx.Err() != nil {
		return err // shutting down: a cancelled probe says nothing about the disk
	}
	w.record(err)
	return err
}

// Run probes every interval until ctx ends, starting at once.
func (w *storeWritability) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		_ = w.Probe(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *storeWritability) record(err error) {
	w.mu.Lock()
	prev := w.last
	w.last = err
	w.mu.Unlock()
	if err == nil {
		w.writable.Set(1)
		if prev != nil && !errors.Is(prev, errNotProbed) {
			w.log.Info("the store commits again; ready", "was", prev)
		}
		return
	}
	reason, ok := store.UnwritableReason(err)
	if !ok {
		reason = "other"
	}
	w.writable.Set(0)
	w.failures.WithLabelValues(reason).Inc()
	if prev == nil || errors.Is(prev, errNotProbed) {
		w.log.Error("the store cannot commit: /readyz and intake answer 503 until it can", "reason", reason, "err", err)
	}
}
