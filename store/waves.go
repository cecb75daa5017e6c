package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Patch wave states.
const (
	WaveRunning   = "running"   // accepted; gateways are being patched
	WaveSucceeded = "succeeded" // every gateway patched and verified
	WaveStopped   = "stopped"   // stopped at a failing gateway; the rest untouched
	WaveFailed    = "failed"    // could not run (see Error)
)

// PatchWave is a durable fleet patch request and, when it ends, its
// report. The controller resumes a wave still running after a restart.
type PatchWave struct {
	ID    string `json:"id"`
	Actor string `json:"actor"`
	// Request is the controller's request as JSON.
	Request json.RawMessage `json:"request"`
	State   string          `json:"state"`
	// Report is the waves' report as JSON once the wave ended.
	Report    json.RawMessage `json:"report,omitempty"`
	Error     string          `json:"error,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Terminal reports whether the wave will not change any more.
func (w PatchWave) Terminal() bool { return w.State != WaveRunning }

// InsertPatchWave stores a new wave.
func (t *txn) InsertPatchWave(ctx context.Context, w PatchWave) error {
	_, err := t.exec(ctx, `INSERT INTO patch_waves(id, actor, request, state, report, error, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)`,
		w.ID, w.Actor, string(w.Request), w.State, string(w.Report), w.Error, ts(w.CreatedAt), ts(w.UpdatedAt))
	if err != nil {
		return fmt.Errorf("storing patch wave %s: %w", w.ID, err)
	}
	return nil
}

// FinishPatchWave records a wave's end.
func (t *txn) FinishPatchWave(ctx context.Context, id, state string, report json.RawMessage, errText string, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE patch_waves SET state = ?, report = ?, error = ?, updated_at = ? WHERE id = ?`,
		state, string(report), errText, ts(at), id)
	if err != nil {
		return fmt.Errorf("finishing patch wave %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("patch wave %q: %w", id, ErrNotFound)
	}
	return nil
}

const waveColumns = `id, actor, request, state, report, error, created_at, updated_at`

func scanWave(row interface{ Scan(...any) error }) (PatchWave, error) {
	var w PatchWave
	var req, report, created, updated string
	if err := row.Scan(&w.ID, &w.Actor, &req, &w.State, &report, &w.Error, &created, &updated); err != nil {
		return PatchWave{}, err
	}
	w.Request = json.RawMessage(req)
	if report != "" {
		w.Report = json.RawMessage(report)
	}
	w.CreatedAt, w.UpdatedAt = parseTS(created), parseTS(updated)
	return w, nil
}

// PatchWave reads one wave.
func (s *Store) PatchWave(ctx context.Context, id string) (PatchWave, error) {
	w, err := scanWave(s.db.QueryRowContext(ctx, `SELECT `+waveColumns+` FROM patch_waves WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return PatchWave{}, fmt.Errorf("patch wave %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return PatchWave{}, fmt.Errorf("reading patch wave %s: %w", id, err)
	}
	return w, nil
}

// PatchWaves lists the waves in state (every wave when empty), oldest
// first.
func (s *Store) PatchWaves(ctx context.Context, state string) ([]PatchWave, error) {
	q := `SELECT ` + waveColumns + ` FROM patch_waves`
	var args []any
	if state != "" {
		q += ` WHERE state = ?`
		args = append(args, state)
	}
	return queryAll(ctx, s.db, "patch wave", scanWave, q+` ORDER BY created_at, id`, args...)
}
