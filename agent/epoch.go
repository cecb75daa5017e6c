package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

const epochFile = "epoch.json"

// staleEpochError refuses a command from a controller whose lease epoch is
// older than one this agent has taken commands from.
type staleEpochError struct{ got, seen int64 }

func (e *staleEpochError) Error() string {
	return fmt.Sprintf("command refused: it was sent under lease epoch %d, but this agent has taken commands under epoch %d: the sender is no longer the leading controller", e.got, e.seen)
}

// epochRecord is epoch.json.
type epochRecord struct {
	Epoch int64     `json:"epoch"`
	Since time.Time `json:"since"`
}

// epochGuard remembers the highest lease epoch a command came with,
// written (fsync'd, atomically) before a command of a new epoch runs, so
// that a restarted agent still refuses the deposed leader.
type epochGuard struct {
	mu   sync.Mutex
	dir  string
	seen int64
}

func openEpochGuard(dir string) (*epochGuard, error) {
	g := &epochGuard{dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, epochFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return g, nil
	case err != nil:
		return nil, fmt.Errorf("reading the lease epoch record: %w", err)
	}
	var r epochRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reading the lease epoch record %s: %w", filepath.Join(dir, epochFile), err)
	}
	g.seen = r.Epoch
	return g, nil
}

// admit refuses epoch when it is lower than the highest seen, and records
// it when it is higher. Epoch 0 (no lease) is admitted without a check.
func (g *epochGuard) admit(epoch int64, now time.Time) error {
	if epoch == 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case epoch < g.seen:
		return &staleEpochError{got: epoch, seen: g.seen}
	case epoch == g.seen:
		return nil
	}
	b, err := json.Marshal(epochRecord{Epoch: epoch, Since: now.UTC()})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(g.dir, epochFile, b, 0o600); err != nil {
		return fmt.Errorf("recording lease epoch %d: %w", epoch, err)
	}
	g.seen = epoch
	return nil
}

// highest is the highest epoch seen.
func (g *epochGuard) highest() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seen
}
