package sensors

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/warden-ir/warden/agent/wire"
)

// The configuration watcher keeps only the latest copy of each file, so
// a change it reported cannot be shown again from the copies. It also
// appends every change it reports to a history (ConfigHistoryFile, in its
// state directory): when, which file, the old and new hashes and the
// redacted unified diff, which an investigation reads for its window.

// ConfigHistoryFile is the history of reported changes in ConfigStateDir,
// one JSON object per line; at maxConfigHistoryBytes it moves to
// ConfigHistoryFile+".1" (the one before is dropped).
const ConfigHistoryFile = "history.jsonl"

const maxConfigHistoryBytes = 4 << 20

// ConfigChange is one entry of the history.
type ConfigChange struct {
	At        time.Time `json:"at"`
	Path      string    `json:"path"`
	Change    string    `json:"change"`
	OldSHA256 string    `json:"old_sha256,omitempty"`
	NewSHA256 string    `json:"new_sha256,omitempty"`
	Summary   string    `json:"summary"`
	// Diff is the unified diff, secrets redacted (empty for binary files
	// and metadata changes).
	Diff []string `json:"diff,omitempty"`
}

// remembering wraps emit so that every change reported is also appended
// to the history; a failure to write it is logged, never lost silently,
// and never stops the finding.
func (r *configRun) remembering(emit func(wire.Finding)) func(wire.Finding) {
	return func(f wire.Finding) {
		emit(f)
		if f.Kind != KindConfigChange || f.Labels["change"] == "state_lost" {
			return
		}
		c := ConfigChange{At: f.ObservedAt, Path: f.Labels["path"], Change: f.Labels["change"],
			OldSHA256: f.Labels["old_sha256"], NewSHA256: f.Labels["new_sha256"], Summary: f.Summary}
		if len(f.Evidence) > 0 && (len(f.Evidence[0]) > 3 && f.Evidence[0][:4] == "--- ") {
			c.Diff = f.Evidence
		}
		if err := appendConfigHistory(r.dir, c); err != nil {
			r.w.deps.Log.Warn("keeping the configuration history", "path", c.Path, "err", err)
		}
	}
}

func appendConfigHistory(dir string, c ConfigChange) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding a configuration change: %w", err)
	}
	p := filepath.Join(dir, ConfigHistoryFile)
	if fi, err := os.Stat(p); err == nil && fi.Size()+int64(len(b)) > maxConfigHistoryBytes {
		if err := os.Rename(p, p+".1"); err != nil {
			return fmt.Errorf("rotating the configuration history: %w", err)
		}
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("opening the configuration history: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	return errors.Join(werr, serr, cerr)
}

// ReadConfigHistory returns the changes the configuration watcher of the
// agent with state directory agentStateDir reported, oldest first, with the
// raw line of each (for evidence) and the file it came from. No history
// is not an error: it returns fs.ErrNotExist wrapped, so the caller can
// say why there is none.
func ReadConfigHistory(agentStateDir string) ([]ConfigChange, []HistoryLine, error) {
	dir := filepath.Join(StateDir(agentStateDir), ConfigStateDir)
	var out []ConfigChange
	var lines []HistoryLine
	found := false
	for _, name := range []string{ConfigHistoryFile + ".1", ConfigHistoryFile} {
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, lines, fmt.Errorf("reading the configuration history: %w", err)
		}
		found = true
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		n := 0
		for sc.Scan() {
			n++
			var c ConfigChange
			if json.Unmarshal(sc.Bytes(), &c) != nil {
				continue
			}
			out = append(out, c)
			lines = append(lines, HistoryLine{File: name, Line: n, Raw: sc.Text()})
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return out, lines, fmt.Errorf("reading the configuration history: %w", err)
		}
	}
	if !found {
		return nil, nil, fmt.Errorf("no configuration history in %s: %w", dir, fs.ErrNotExist)
	}
	return out, lines, nil
}

// HistoryLine is where one history entry was read.
type HistoryLine struct {
	File string
	Line int
	Raw  string
}
