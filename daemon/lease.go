package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/warden-ir/warden/internal/clock"
	"os"
	"sync"
	"time"

	"github.com/warden-ir/warden/store"
)

// LeaseTTL is how long a writer lease lasts without renewal. The holder
// renews every third of it and stops acting before it can run out.
const LeaseTTL = 15 * time.Second

// writerLease fences the controller: Held is nil only while this process
// holds the store's writer lease and its last renewal is fresh enough that
// no successor can have taken the store over.
type writerLease struct {
	mu      sync.Mutex
	w       *store.Writer
	renewed time.Time
	lost    error
	clock   clock.Clock
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
func (l *writerLease) lateLocked() bool { return l.clock.Now().Sub(l.renewed) > LeaseTTL*2/3 }

func (l *writerLease) Held() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.lost != nil:
		return l.lost
	case l.w == nil:
		return errors.New("the writer lease has not been acquired")
	case l.lateLocked():
		// Renewal is late: by the time a side effect started now could
		// finish, a successor may hold the lease.
		return fmt.Errorf("the writer lease was last renewed at %s, too long ago", l.renewed.UTC().Format(time.RFC3339))
	}
	return nil
}

// AcquireWriter takes the store's writer lease: one controller executes
// runs on a store at a time. A second `warden serve` on the same store is
// refused with an error naming the holder. Serve calls it when the caller
// has not.
func (d *Daemon) AcquireWriter(ctx context.Context) error {
	d.lease.mu.Lock()
	defer d.lease.mu.Unlock()
	if d.lease.w != nil {
		return nil
	}
	host, _ := os.Hostname()
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	w, err := d.Store.AcquireWriter(ctx, d.Config.Store.Path, store.LeaseOptions{
		Owner: hex.EncodeToString(id), Host: host, PID: os.Getpid(), TTL: LeaseTTL, Clock: d.lease.clock,
	})
	if err != nil {
		return fmt.Errorf("taking the store's writer lease: %w", err)
	}
	d.lease.w, d.lease.renewed, d.lease.lost = w, d.lease.clock.Now(), nil
	l := w.Lease()
	d.Log.Info("holding the store's writer lease", "epoch", l.Epoch, "owner", l.Owner)
	return d.bootstrapAdmin(ctx)
}

// keepLease renews the lease until ctx ends. It returns an error (and
// fences the controller) when the lease is lost or cannot be renewed in
// time.
func (d *Daemon) keepLease(ctx context.Context) error {
	t := time.NewTicker(LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		d.lease.mu.Lock()
		w := d.lease.w
		d.lease.mu.Unlock()
		if w == nil {
			return nil
		}
		err := w.Renew(ctx)
		d.lease.mu.Lock()
		if err == nil {
			d.lease.renewed = d.lease.clock.Now()
			d.lease.mu.Unlock()
			continue
		}
		if renewalLost(err, d.lease.lateLocked()) {
			d.lease.lost = fmt.Errorf("the store's writer lease was lost: %w", err)
			lost := d.lease.lost
			d.lease.mu.Unlock()
			return lost
		}
		d.lease.mu.Unlock()
		if ctx.Err() == nil {
			d.Log.Warn("renewing the store's writer lease", "err", err)
		}
	}
}

// renewalLost decides whether a failed renewal loses the lease (and stops
// the controller). A successor shows as ErrLeaseLost. A renewal that is
// late for another reason loses it, since the lease may have expired under
// a successor it cannot see; but a store that cannot commit (a full disk)
// is no sign of one: the controller stays up, fenced by Held (the renewal
// is late) and unready (/readyz), and resumes when a renewal goes through.
// A successor that took the lease meanwhile had to commit its epoch, and
// the next renewal sees it as ErrLeaseLost.
func renewalLost(err error, late bool) bool {
	if errors.Is(err, store.ErrLeaseLost) {
		return true
	}
	_, unwritable := store.UnwritableReason(err)
	return late && !unwritable
}

// releaseWriter gives the lease up.
func (d *Daemon) releaseWriter(ctx context.Context) {
	d.lease.mu.Lock()
	w := d.lease.w
	d.lease.w = nil
	d.lease.mu.Unlock()
	if w != nil {
		if err := w.Close(ctx); err != nil {
			d.Log.Warn("releasing the store's writer lease", "err", err)
		}
	}
}
