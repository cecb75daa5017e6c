package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

const nonceFile = "nonces.jsonl"

var (
	// errReplay is returned for a nonce already seen.
	errReplay = errors.New("command already received: a replay is refused; send a new command with a new id")
	// errTooManyNonces is returned when the bounded nonce memory is full
	// of nonces that have not expired yet.
	errTooManyNonces = errors.New("too many commands in flight: retry later")
)

// nonceEntry is one journal line.
type nonceEntry struct {
	ID string `json:"id"`
	// Until is the last instant the command could still be accepted.
	Until time.Time `json:"until"`
}

// replayGuard remembers nonces until their commands could no longer be
// accepted. It journals each nonce, on disk before the command changes
// anything (fsync'd before it runs, or carried by the quarantine record
// the command commits: admitUnsynced), so an agent restarted inside a
// command's lifetime still refuses the replay.
//
// The journal was chosen over "refuse commands issued before the agent
// started": that rule would refuse honest commands for as long as the
// controller's clock lags, and would make every restart a window in which
// the controller's retries fail.
type replayGuard struct {
	mu    sync.Mutex
	dir   string
	f     *os.File
	seen  map[string]time.Time
	lines int
	max   int
}

// openReplayGuard loads the journal in dir, forgets expired nonces and
// rewrites it compactly. A torn last line (a crash during an append) is
// ignored: its command was never admitted.
func openReplayGuard(dir string, now time.Time, max int) (*replayGuard, error) {
	g := &replayGuard{dir: dir, seen: map[string]time.Time{}, max: max}
	f, err := os.Open(filepath.Join(dir, nonceFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("opening nonce journal: %w", err)
	default:
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e nonceEntry
			if json.Unmarshal(sc.Bytes(), &e) != nil || e.ID == "" {
				continue
			}
			if e.Until.After(now) {
				g.seen[e.ID] = e.Until
			}
		}
		err := sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading nonce journal: %w", err)
		}
	}
	if err := g.rewrite(); err != nil {
		return nil, err
	}
	return g, nil
}

// rewrite replaces the journal with the live nonces and reopens it for
// appending. Callers hold mu (or own g exclusively).
func (g *replayGuard) rewrite() error {
	var buf []byte
	for id, until := range g.seen {
		b, err := json.Marshal(nonceEntry{ID: id, Until: until})
		if err != nil {
			return fmt.Errorf("encoding nonce: %w", err)
		}
		buf = append(append(buf, b...), '\n')
	}
	// On a failed write the old journal stays in use.
	if err := writeFileAtomic(g.dir, nonceFile, buf, 0o600); err != nil {
		return fmt.Errorf("compacting nonce journal: %w", err)
	}
	if g.f != nil {
		_ = g.f.Close() // its inode was just replaced
		g.f = nil
	}
	// Without the new journal open, admit refuses every command rather
	// than admit one it could not remember.
	f, err := os.OpenFile(filepath.Join(g.dir, nonceFile), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening nonce journal: %w", err)
	}
	g.f, g.lines = f, len(g.seen)
	return nil
}

// admit records id, valid until until, and reports errReplay when it was
// seen before. The nonce is durable when admit returns nil.
func (g *replayGuard) admit(id string, until, now time.Time) error {
	return g.admitAs(id, until, now, true)
}

// admitReadOnly is admit for a command that changes nothing (observe): the
// nonce is remembered, but not fsync'd before the command runs. Replaying
// such a command after a restart could only read the state back, to the
// controller (mutual TLS), and it spares the path to a confirmed
// quarantine a disk flush per read-back.
func (g *replayGuard) admitReadOnly(id string, until, now time.Time) error {
	return g.admitAs(id, until, now, false)
}

// admitUnsynced is admit for a command whose own durable write carries
// its nonce (isolate and confirm: the quarantine record, carryNonce): the
// line is written and the nonce remembered, so a replay is refused at
// once (and by the journal after a crash of the process), but not
// fsync'd. The command must call its commandNonce's durable before it
// changes the gateway without committing a record that carries the
// nonce, and before its answer.
func (g *replayGuard) admitUnsynced(id string, until, now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.checkLocked(id, now); err != nil {
		return err
	}
	if err := g.writeLocked(id, until); err != nil {
		return err
	}
	g.seen[id] = until
	return nil
}

// writeLocked appends id's line to the journal, without a sync. Callers
// hold mu.
func (g *replayGuard) writeLocked(id string, until time.Time) error {
	b, err := json.Marshal(nonceEntry{ID: id, Until: until})
	if err != nil {
		return fmt.Errorf("encoding nonce: %w", err)
	}
	if _, err := g.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("journalling nonce: %w", err)
	}
	g.lines++
	return nil
}

// flush fsyncs the journal: every line written so far is on disk.
func (g *replayGuard) flush() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.f == nil {
		return errors.New("nonce journal is closed")
	}
	if err := syncNonces(g.f); err != nil {
		return fmt.Errorf("syncing nonce journal: %w", err)
	}
	return nil
}

// remember adds the live nonces a quarantine record carries: the record,
// not the journal, may be where they reached the disk.
func (g *replayGuard) remember(nonces map[string]time.Time, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, until := range nonces {
		if until.After(now) {
			g.seen[id] = until
		}
	}
}

// checkLocked refuses id when the journal is closed, when id is live, or
// when the memory is full of live nonces. Callers hold mu.
func (g *replayGuard) checkLocked(id string, now time.Time) error {
	if g.f == nil {
		return errors.New("nonce journal is closed")
	}
	if u, ok := g.seen[id]; ok && u.After(now) {
		return errReplay
	}
	if len(g.seen) >= g.max {
		g.prune(now)
		if len(g.seen) >= g.max {
			return errTooManyNonces
		}
	}
	return nil
}

// syncNonces fsyncs the nonce journal f (a test may fail or hold it).
func syncNonces(f *os.File) error {
	if beforeNonceSync != nil {
		if err := beforeNonceSync(); err != nil {
			return err
		}
	}
	return f.Sync()
}

// beforeNonceSync, set only by tests, runs before every fsync of the
// nonce journal; an error it returns fails the fsync.
var beforeNonceSync func() error

func (g *replayGuard) admitAs(id string, until, now time.Time, durable bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.checkLocked(id, now); err != nil {
		return err
	}
	if !durable {
		g.seen[id] = until
		return nil
	}
	if err := g.writeLocked(id, until); err != nil {
		return err
	}
	if err := syncNonces(g.f); err != nil {
		return fmt.Errorf("syncing nonce journal: %w", err)
	}
	g.seen[id] = until
	// Keep the journal within a small multiple of what is live, even
	// between heal ticks.
	if g.lines%1024 == 0 {
		g.prune(now)
		if g.lines > 2*len(g.seen) {
			// The nonce is already durable: a failed compaction only
			// leaves a longer journal (or, failing to reopen it, makes the
			// next admit refuse).
			_ = g.rewrite()
		}
	}
	return nil
}

// prune forgets expired nonces. Callers hold mu.
func (g *replayGuard) prune(now time.Time) {
	for id, until := range g.seen {
		if !until.After(now) {
			delete(g.seen, id)
		}
	}
}

// tick forgets expired nonces and compacts the journal when most of it is
// dead.
func (g *replayGuard) tick(now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.f == nil {
		return nil
	}
	g.prune(now)
	if g.lines > 64 && g.lines > 2*len(g.seen) {
		return g.rewrite()
	}
	return nil
}

func (g *replayGuard) close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.f == nil {
		return nil
	}
	err := g.f.Close()
	g.f = nil
	return err
}
