package daemon

// Who executes. On SQLite one `warden serve` holds the store's writer
// lease from start to exit: a second one is refused, and one that loses
// the lease stops (fail-stop). On PostgreSQL any number of replicas share
// the database: each serves the API and takes intake; the one holding the
// lease (the leader) runs the controller's loops — runs, reconcile, drift
// checks, waves, blocks. The others try to take the lease every second,
// at once when the leader gives it up (LISTEN/NOTIFY), and take it when it
// has expired. A leader that cannot renew stops starting side effects two
// thirds of the TTL after the last renewal it sent, before the lease can
// expire under it; one that learns it lost the lease stops its loops,
// waits for them, and follows again.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/store"
)

// LeaseTTL is the default store.lease_ttl.
const LeaseTTL = 10 * time.Second

// followerPoll is how often a replica that does not lead looks at the
// lease (one row read).
const followerPoll = time.Second

// writerLease fences the controller: Held is nil only while this process
// holds the store's writer lease and its last renewal is fresh enough that
// no successor can have taken the store over.
type writerLease struct {
	mu sync.Mutex
	w  *store.Writer
	// renewed is when the last renewal that went through was sent (this
	// process's clock): the lease cannot expire before renewed + TTL.
	renewed time.Time
	lost    error
	clock   clock.Clock
	ttl     time.Duration
	// owner identifies this process's holdings and its replica row.
	owner string

	leader prometheus.Gauge
	epoch  prometheus.Gauge
}

func newWriterLease(ttl time.Duration, reg prometheus.Registerer) *writerLease {
	if ttl <= 0 {
		ttl = LeaseTTL
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	l := &writerLease{clock: clock.Real, ttl: ttl, owner: hex.EncodeToString(id),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "warden_leader",
			Help: "1 while this process holds the store's writer lease and executes runs (the leader), 0 otherwise."}),
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{Name: "warden_lease_epoch",
			Help: "The epoch of the writer lease this process last held (0: never held)."}),
	}
	if reg != nil {
		reg.MustRegister(l.leader, l.epoch)
	}
	return l
}

func (l *writerLease) Epoch() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return 0
	}
	return l.w.Epoch()
}

// lateLocked reports whether the last renewal is too old for a side
// effect started now to finish before a successor could hold the lease.
// l.mu must be held.
func (l *writerLease) lateLocked() bool { return l.clock.Now().Sub(l.renewed) > l.ttl*2/3 }

func (l *writerLease) Held() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.lost != nil:
		return l.lost
	case l.w == nil:
		return errors.New("the writer lease is not held by this process")
	case l.lateLocked():
		// Renewal is late: by the time a side effect started now could
		// finish, a successor may hold the lease.
		return fmt.Errorf("the writer lease was last renewed at %s, too long ago", l.renewed.UTC().Format(time.RFC3339))
	}
	return nil
}

// Check reads the lease from the store: the fence right before a change
// nobody could take back (controller.leaseChecker).
func (l *writerLease) Check(ctx context.Context) error {
	l.mu.Lock()
	w := l.w
	l.mu.Unlock()
	if w == nil {
		return errors.New("the writer lease is not held by this process")
	}
	cctx, cancel := context.WithTimeout(ctx, l.ttl/3)
	defer cancel()
	return w.Check(cctx)
}

// hold records a holding just taken (sent at sent).
func (l *writerLease) hold(w *store.Writer, sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w, l.renewed, l.lost = w, sent, nil
	l.leader.Set(1)
	l.epoch.Set(float64(w.Epoch()))
}

// drop forgets the holding (lost, or given up) and returns it.
func (l *writerLease) drop() *store.Writer {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.w
	l.w, l.lost = nil, nil
	l.leader.Set(0)
	return w
}

func (l *writerLease) holding() *store.Writer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w
}

func (d *Daemon) leaseOptions() store.LeaseOptions {
	host, _ := os.Hostname()
	return store.LeaseOptions{Owner: d.lease.owner, Host: host, PID: os.Getpid(), TTL: d.lease.ttl, Clock: d.lease.clock}
}

// shared reports whether replicas share the store (PostgreSQL).
func (d *Daemon) shared() bool { return d.Config.Store.Postgres() }

// AcquireWriter takes the store's writer lease. On SQLite one controller
// executes runs on a store at a time: a second `warden serve` on the same
// store is refused with an error naming the holder. On PostgreSQL it takes
// the lease when it is free and otherwise leaves this replica following
// (Serve keeps trying). Either way it makes the bootstrap admin of a store
// without users. Serve calls it when the caller has not.
func (d *Daemon) AcquireWriter(ctx context.Context) error {
	if d.lease.holding() == nil {
		if err := d.tryLead(ctx); err != nil {
			var held *store.LeaseHeldError
			if !d.shared() || !errors.As(err, &held) {
				return fmt.Errorf("taking the store's writer lease: %w", err)
			}
			d.Log.Info("following: another replica leads", "leader", held.Holder.Owner, "host", held.Holder.Host, "pid", held.Holder.PID, "epoch", held.Holder.Epoch)
		}
	}
	return d.bootstrapAdmin(ctx)
}

// tryLead takes the lease once.
func (d *Daemon) tryLead(ctx context.Context) error {
	sent := d.lease.clock.Now()
	w, err := d.Store.AcquireWriter(ctx, d.Config.Store.Path, d.leaseOptions())
	if err != nil {
		return err
	}
	d.lease.hold(w, sent)
	l := w.Lease()
	d.Log.Info("holding the store's writer lease", "epoch", l.Epoch, "owner", l.Owner)
	return nil
}

// lead runs the controller's loops while this process holds the lease,
// renewing it every third of its TTL, until ctx ends. On SQLite it returns
// the error that lost the lease (the process then stops). On PostgreSQL a
// replica that does not lead tries to take the lease every followerPoll
// and when the leader gives it up; one that loses it stops its loops and
// follows again.
func (d *Daemon) lead(ctx context.Context) error {
	var (
		leading context.CancelFunc // the loops' context, while they run
		next    = time.Duration(0)
	)
	stopLoops := func() {
		if leading != nil {
			leading()
			d.Controller.Wait()
			leading = nil
		}
	}
	defer stopLoops()
	wake := d.listenForLease(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-d.lease.clock.After(next):
		}
		if d.lease.holding() == nil {
			next = followerPoll
			if !d.shared() {
				return errors.New("the store's writer lease is not held")
			}
			if err := d.tryLead(ctx); err != nil {
				var held *store.LeaseHeldError
				if !errors.As(err, &held) && ctx.Err() == nil {
					d.Log.Warn("taking the writer lease", "err", err)
				}
				continue
			}
		}
		if leading == nil {
			lctx, cancel := context.WithCancel(ctx)
			leading = cancel
			d.Controller.Start(lctx)
			go d.listenForRuns(lctx)
			d.Log.Info("leading: executing runs", "epoch", d.lease.Epoch())
		} else if err := d.renew(ctx); err != nil {
			d.Log.Error("lost the writer lease: starting no side effect, stopping the controller's loops", "err", err)
			stopLoops()
			if w := d.lease.drop(); w != nil {
				// Ours no more: closing gives up nothing of a successor's.
				// Bounded: the database may be out of reach.
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.lease.ttl/3)
				_ = w.Close(cctx)
				cancel()
			}
			if !d.shared() {
				return err
			}
			d.Log.Warn("stopped leading; following")
			next = followerPoll
			continue
		}
		next = d.lease.ttl / 3
	}
}

// renew renews the holding. It returns an error (and has fenced the
// controller) when the lease is lost or cannot be renewed in time; a
// renewal that fails for a passing reason is retried at the next tick,
// fenced by Held meanwhile if it is late.
func (d *Daemon) renew(ctx context.Context) error {
	w := d.lease.holding()
	if w == nil {
		return errors.New("the writer lease is not held")
	}
	sent := d.lease.clock.Now()
	rctx, cancel := context.WithTimeout(ctx, d.lease.ttl/3)
	err := w.Renew(rctx)
	cancel()
	d.lease.mu.Lock()
	defer d.lease.mu.Unlock()
	if err == nil {
		d.lease.renewed = sent
		return nil
	}
	if renewalLost(err, d.lease.lateLocked(), d.shared()) {
		d.lease.lost = fmt.Errorf("the store's writer lease was lost: %w", err)
		d.lease.leader.Set(0) // not acting from now on: Held refuses every side effect
		return d.lease.lost
	}
	if ctx.Err() == nil {
		d.Log.Warn("renewing the store's writer lease", "err", err)
	}
	return nil
}

// renewalLost decides whether a failed renewal loses the lease (and stops
// the controller's loops). A successor shows as ErrLeaseLost. A renewal
// that is late for another reason loses it, since the lease may have
// expired under a successor it cannot see; but on SQLite a store that
// cannot commit (a full disk) is no sign of one: the controller stays up,
// fenced by Held (the renewal is late) and unready (/readyz), and resumes
// when a renewal goes through. A successor that took the lease meanwhile
// had to commit its epoch, and the next renewal sees it as ErrLeaseLost.
// With replicas a late renewal always loses it: another replica can reach
// the database this one cannot.
func renewalLost(err error, late, shared bool) bool {
	if errors.Is(err, store.ErrLeaseLost) {
		return true
	}
	if shared {
		return late
	}
	_, unwritable := store.UnwritableReason(err)
	return late && !unwritable
}

// listenForLease wakes the loop when the leader gives the lease up (on
// PostgreSQL; never on SQLite).
func (d *Daemon) listenForLease(ctx context.Context) <-chan struct{} {
	wake := make(chan struct{}, 1)
	if !d.shared() {
		return wake
	}
	go func() {
		for ctx.Err() == nil {
			err := d.Store.Listen(ctx, store.LeaseChannel, func(string) {
				select {
				case wake <- struct{}{}:
				default:
				}
			})
			if ctx.Err() == nil {
				d.Log.Debug("listening for the lease's release", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(followerPoll):
				}
			}
		}
	}()
	return wake
}

// listenForRuns wakes the executor when another replica records a run
// (PostgreSQL), until ctx ends; the executor's own poll is the fallback.
func (d *Daemon) listenForRuns(ctx context.Context) {
	for d.shared() && ctx.Err() == nil {
		err := d.Store.Listen(ctx, store.RunsChannel, func(string) { d.Controller.Kick() })
		if ctx.Err() == nil {
			d.Log.Debug("listening for new runs", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(followerPoll):
			}
		}
	}
}

// heartbeat records this replica in the store every third of the lease's
// TTL until ctx ends, then removes it.
func (d *Daemon) heartbeat(ctx context.Context, api string) {
	host, _ := os.Hostname()
	now := d.lease.clock.Now()
	r := store.Replica{Owner: d.lease.owner, Host: host, PID: os.Getpid(), API: api, Version: buildVersion(), StartedAt: now}
	for {
		r.SeenAt = d.lease.clock.Now()
		if err := d.Store.Heartbeat(ctx, r, r.SeenAt.Add(-10*d.lease.ttl)); err != nil && ctx.Err() == nil {
			d.Log.Debug("recording this replica", "err", err)
		}
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = d.Store.ForgetReplica(fctx, r.Owner)
			cancel()
			return
		case <-d.lease.clock.After(d.lease.ttl / 3):
		}
	}
}

// buildVersion names this build: the module's version, or the commit it
// was built from.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 && (v == "" || v == "(devel)") {
			v = s.Value[:12]
		}
	}
	return v
}

// releaseWriter gives the lease up.
func (d *Daemon) releaseWriter(ctx context.Context) {
	if w := d.lease.drop(); w != nil {
		if err := w.Close(ctx); err != nil {
			d.Log.Warn("releasing the store's writer lease", "err", err)
		}
	}
}
