package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// BaselineResult is one evaluation of a gateway's hardened baseline.
type BaselineResult struct {
	ID        string          `json:"id"`
	Gateway   string          `json:"gateway"`
	CheckedAt time.Time       `json:"checked_at"`
	Passed    bool            `json:"passed"`
	Failed    int             `json:"failed"`
	Errored   int             `json:"errored"`
	Source    string          `json:"source"` // "drift", "runbook", "manual"
	Report    json.RawMessage `json:"report"`
}

// InsertBaselineResult stores r (history is kept).
func (t *txn) InsertBaselineResult(ctx context.Context, r BaselineResult) error {
	_, err := t.exec(ctx, `INSERT INTO baseline_results(id, gateway, checked_at, passed, failed, errored, source, report) VALUES (?,?,?,?,?,?,?,?)`,
		r.ID, r.Gateway, ts(r.CheckedAt), b2i(r.Passed), r.Failed, r.Errored, r.Source, string(r.Report))
	if err != nil {
		return fmt.Errorf("storing baseline result of %s: %w", r.Gateway, err)
	}
	return nil
}

// LatestBaseline returns the newest result for gw.
func (t *txn) LatestBaseline(ctx context.Context, gw string) (BaselineResult, bool, error) {
	return latestBaseline(ctx, t.tx, gw)
}

// LatestBaseline returns the newest result for gw.
func (s *Store) LatestBaseline(ctx context.Context, gw string) (BaselineResult, bool, error) {
	return latestBaseline(ctx, s.db, gw)
}

func latestBaseline(ctx context.Context, q queryer, gw string) (BaselineResult, bool, error) {
	r := BaselineResult{Gateway: gw}
	var at, report string
	var passed int
	err := q.QueryRowContext(ctx, `SELECT id, checked_at, passed, failed, errored, source, report FROM baseline_results WHERE gateway = ? ORDER BY checked_at DESC, id DESC LIMIT 1`, gw).
		Scan(&r.ID, &at, &passed, &r.Failed, &r.Errored, &r.Source, &report)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("reading baseline result of %s: %w", gw, err)
	}
	r.CheckedAt, r.Passed, r.Report = parseTS(at), passed == 1, json.RawMessage(report)
	return r, true, nil
}

// StepSucceededSince reports whether a step of action succeeded in a run
// about gw that finished at or after since.
func (t *txn) StepSucceededSince(ctx context.Context, gw, action string, since time.Time) (bool, error) {
	var n int
	err := t.queryRow(ctx, `SELECT count(*) FROM steps JOIN runs ON runs.id = steps.run WHERE runs.gateway = ? AND steps.action = ? AND steps.state = 'succeeded' AND steps.finished_at >= ?`,
		gw, action, ts(since)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("looking for %s on %s: %w", action, gw, err)
	}
	return n > 0, nil
}
