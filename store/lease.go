package store

// One writer per store. On SQLite a controller that executes runs holds
// two things:
//
//   - an exclusive flock on "<store>.lock", which the kernel drops the
//     moment the process dies (kill -9 included), so a successor on the
//     same host never waits for an expiry;
//   - a lease row (owner, host, pid, epoch, expiry) that names the holder
//     for a refused successor, and that every step records its epoch from.
//
// On PostgreSQL, where several replicas share the database, the lease row
// alone is the leadership: a replica takes it when it is free or has
// expired, with the next epoch, and renews it; the others try again. Its
// times are the database's clock, so replicas whose clocks disagree still
// agree on when a lease expires. Acquire, Renew, Close and the epoch are
// the same for both; only the lock under them differs.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/warden-ir/warden/internal/clock"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const leaseSchema = `
CREATE TABLE IF NOT EXISTS leases (
	name        TEXT PRIMARY KEY,
	owner       TEXT NOT NULL,
	host        TEXT NOT NULL,
	pid         INTEGER NOT NULL,
	epoch       INTEGER NOT NULL,
	acquired_at TEXT NOT NULL,
	renewed_at  TEXT NOT NULL,
	expires_at  TEXT NOT NULL
);
`

// writerLease is the lease row's name: the right to execute side effects.
const writerLease = "writer"

// Lease is one holding of the writer lease.
type Lease struct {
	Owner      string    `json:"owner"`
	Host       string    `json:"host"`
	PID        int       `json:"pid"`
	Epoch      int64     `json:"epoch"`
	AcquiredAt time.Time `json:"acquired_at"`
	RenewedAt  time.Time `json:"renewed_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// LeaseHeldError says who holds the store when a second controller tries
// to start on it.
type LeaseHeldError struct {
	Path   string
	Holder Lease
	// Known is false when the lock is held but no lease row names the
	// holder yet (it is between locking and writing the row).
	Known bool
}

func (e *LeaseHeldError) Error() string {
	if e.Path == "" { // a shared database: the holder is the leader
		h := e.Holder
		return fmt.Sprintf("the writer lease is held by warden controller %s (pid %d on host %s) since %s, lease epoch %d valid until %s",
			h.Owner, h.PID, h.Host, h.AcquiredAt.UTC().Format(time.RFC3339), h.Epoch, h.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if !e.Known {
		return fmt.Sprintf("store %s is in use by another warden controller (its lock file %s.lock is held)", e.Path, e.Path)
	}
	h := e.Holder
	return fmt.Sprintf("store %s is in use by warden controller %s (pid %d on host %s) since %s, lease epoch %d valid until %s; stop it first, or point this one at another store",
		e.Path, h.Owner, h.PID, h.Host, h.AcquiredAt.UTC().Format(time.RFC3339), h.Epoch, h.ExpiresAt.UTC().Format(time.RFC3339))
}

// ErrLeaseLost is returned by Renew when another controller took the lease
// over: the caller must stop starting side effects at once.
var ErrLeaseLost = errors.New("writer lease lost")

// LeaseOptions identify the would-be holder.
type LeaseOptions struct {
	// Owner is a unique id of this process's holding (random per start).
	Owner string
	Host  string
	PID   int
	TTL   time.Duration
	// Clock times the lease on SQLite; on PostgreSQL the database's clock
	// does.
	Clock clock.Clock
}

// Writer is a held writer lease on a store. Close releases it.
type Writer struct {
	mu     sync.Mutex // Renew and Close do not interleave
	s      *Store
	path   string
	lock   *os.File // SQLite: the flock; nil once closed
	closed bool
	opt    LeaseOptions
	cur    Lease
}

// AcquireWriter takes the writer lease of the store. On SQLite path is the
// file the store was opened with; on PostgreSQL it is ignored. It fails
// with *LeaseHeldError, naming the holder, when another live controller
// holds it.
func (s *Store) AcquireWriter(ctx context.Context, path string, opt LeaseOptions) (*Writer, error) {
	if opt.Owner == "" || opt.TTL <= 0 {
		return nil, errors.New("acquiring the writer lease: owner and TTL are required")
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real
	}
	if s.dialect == dialectPostgres {
		w := &Writer{s: s, opt: opt}
		if err := w.take(ctx); err != nil {
			return nil, err
		}
		return w, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("acquiring the writer lease: %w", err)
	}
	f, err := os.OpenFile(abs+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the store's lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			held := &LeaseHeldError{Path: abs}
			if l, ok, rerr := s.CurrentLease(ctx); rerr == nil && ok {
				held.Holder, held.Known = l, true
			}
			return nil, held
		}
		return nil, fmt.Errorf("locking %s.lock: %w", abs, err)
	}
	w := &Writer{s: s, path: abs, lock: f, opt: opt}
	if err := w.take(ctx); err != nil {
		_ = f.Close()
		return nil, err
	}
	return w, nil
}

// take writes the lease row with the next epoch. On SQLite holding the
// flock proves that no controller on this host holds the store; a row from
// another host that has not expired yet means the store is shared across
// hosts, where flock may not reach: refuse rather than run two writers. On
// PostgreSQL any other holder's row that has not expired is refused.
func (w *Writer) take(ctx context.Context) error {
	return w.s.inTx(ctx, func(tx *txn) error {
		now, err := w.now(ctx, tx.tx)
		if err != nil {
			return err
		}
		prev, ok, err := currentLease(ctx, tx.tx)
		if err != nil {
			return err
		}
		shared := w.s.dialect == dialectPostgres
		if ok && now.Before(prev.ExpiresAt) && (shared && prev.Owner != w.opt.Owner || !shared && prev.Host != w.opt.Host) {
			return &LeaseHeldError{Path: w.path, Holder: prev, Known: true}
		}
		l := Lease{Owner: w.opt.Owner, Host: w.opt.Host, PID: w.opt.PID, Epoch: prev.Epoch + 1,
			AcquiredAt: now, RenewedAt: now, ExpiresAt: now.Add(w.opt.TTL)}
		if _, err := tx.exec(ctx, `INSERT INTO leases(name, owner, host, pid, epoch, acquired_at, renewed_at, expires_at) VALUES (?,?,?,?,?,?,?,?)
			ON CONFLICT(name) DO UPDATE SET owner=excluded.owner, host=excluded.host, pid=excluded.pid, epoch=excluded.epoch,
			acquired_at=excluded.acquired_at, renewed_at=excluded.renewed_at, expires_at=excluded.expires_at`,
			writerLease, l.Owner, l.Host, l.PID, l.Epoch, ts(l.AcquiredAt), ts(l.RenewedAt), ts(l.ExpiresAt)); err != nil {
			return fmt.Errorf("writing the writer lease: %w", err)
		}
		w.cur = l
		return nil
	})
}

// now is the lease's clock: the database's on PostgreSQL, the holder's on
// SQLite.
func (w *Writer) now(ctx context.Context, q rowQuerier) (time.Time, error) {
	if w.s.dialect != dialectPostgres {
		return w.opt.Clock.Now().UTC(), nil
	}
	var now time.Time
	if err := q.QueryRowContext(ctx, `SELECT clock_timestamp()`).Scan(&now); err != nil {
		return time.Time{}, fmt.Errorf("reading the database's clock: %w", err)
	}
	return now.UTC(), nil
}

// Lease returns the holding as last written.
func (w *Writer) Lease() Lease {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// Epoch is the lease epoch side effects run under.
func (w *Writer) Epoch() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur.Epoch
}

// Check reads the lease row again and returns nil only while it still
// names this holding and has not expired: the check made right before a
// side effect that must not happen under a lease another controller may
// hold by now.
func (w *Writer) Check(ctx context.Context) error {
	w.mu.Lock()
	cur, closed := w.cur, w.closed
	w.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: the holding was closed", ErrLeaseLost)
	}
	now, err := w.now(ctx, w.s.db)
	if err != nil {
		return err
	}
	l, ok, err := w.s.CurrentLease(ctx)
	switch {
	case err != nil:
		return err
	case !ok || l.Owner != cur.Owner || l.Epoch != cur.Epoch:
		return fmt.Errorf("%w: the lease is at epoch %d, held by %s", ErrLeaseLost, l.Epoch, l.Owner)
	case !now.Before(l.ExpiresAt):
		return fmt.Errorf("%w: epoch %d expired at %s", ErrLeaseLost, l.Epoch, l.ExpiresAt.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// Renew extends the lease. It returns ErrLeaseLost when the row names
// another owner or epoch: someone took the store over.
func (w *Writer) Renew(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("%w: the holding was closed", ErrLeaseLost)
	}
	now, err := w.now(ctx, w.s.db)
	if err != nil {
		return fmt.Errorf("renewing the writer lease: %w", err)
	}
	res, err := w.s.db.ExecContext(ctx, `UPDATE leases SET renewed_at=?, expires_at=? WHERE name=? AND owner=? AND epoch=?`,
		ts(now), ts(now.Add(w.opt.TTL)), writerLease, w.cur.Owner, w.cur.Epoch)
	if err != nil {
		return fmt.Errorf("renewing the writer lease: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ErrLeaseLost
	}
	w.cur.RenewedAt, w.cur.ExpiresAt = now, now.Add(w.opt.TTL)
	return nil
}

// Close gives the lease up: the row expires now and the lock is released.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.s.inTx(ctx, func(tx *txn) error {
		now, err := w.now(ctx, tx.tx)
		if err != nil {
			return err
		}
		res, err := tx.tx.ExecContext(ctx, `UPDATE leases SET expires_at=? WHERE name=? AND owner=? AND epoch=?`,
			ts(now), writerLease, w.cur.Owner, w.cur.Epoch)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // a successor's lease is not ours to give up, nor to announce
		}
		return tx.notify(ctx, LeaseChannel, "released")
	})
	var cerr error
	if w.lock != nil {
		cerr = w.lock.Close() // closing the descriptor drops the flock
		w.lock = nil
	}
	if err != nil {
		return fmt.Errorf("releasing the writer lease: %w", err)
	}
	return cerr
}

// CurrentLease reads the writer lease row, if any.
func (s *Store) CurrentLease(ctx context.Context) (Lease, bool, error) {
	return currentLease(ctx, s.db)
}

type rowQuerier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func currentLease(ctx context.Context, q rowQuerier) (Lease, bool, error) {
	var l Lease
	var acq, ren, exp string
	err := q.QueryRowContext(ctx, `SELECT owner, host, pid, epoch, acquired_at, renewed_at, expires_at FROM leases WHERE name=?`, writerLease).
		Scan(&l.Owner, &l.Host, &l.PID, &l.Epoch, &acq, &ren, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return Lease{}, false, nil
	}
	if err != nil {
		return Lease{}, false, fmt.Errorf("reading the writer lease: %w", err)
	}
	l.AcquiredAt, l.RenewedAt, l.ExpiresAt = parseTS(acq), parseTS(ren), parseTS(exp)
	return l, true, nil
}
