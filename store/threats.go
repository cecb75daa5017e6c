package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/warden-ir/warden/indicator"
)

// threatSchema records which indicators a person has resolved: looked at
// and judged no longer a threat. Only that lets a gateway be released
// while a serious indicator about it is still firing.
const threatSchema = `
CREATE TABLE IF NOT EXISTS indicator_resolutions (
	indicator   TEXT PRIMARY KEY,
	actor       TEXT NOT NULL,
	reason      TEXT NOT NULL,
	resolved_at TEXT NOT NULL
);
`

// LiveThreat is a firing indicator about a gateway that no person has
// resolved.
type LiveThreat struct {
	ID          string             `json:"id"`
	ReceivedAt  time.Time          `json:"received_at"`
	Kind        indicator.Kind     `json:"kind"`
	Severity    indicator.Severity `json:"severity"`
	Incident    string             `json:"incident,omitempty"`
	Fingerprint string             `json:"fingerprint,omitempty"`
}

// LiveThreats lists the indicators about gw received after since with at
// least minSeverity, firing, duplicates included (a re-sent alert is still
// a live alert), that no person resolved; oldest first, at most 100.
func (t *txn) LiveThreats(ctx context.Context, gw string, since time.Time, minSeverity indicator.Severity) ([]LiveThreat, error) {
	var sev []any
	for _, s := range []indicator.Severity{indicator.Low, indicator.Medium, indicator.High, indicator.Critical} {
		if s.Rank() >= minSeverity.Rank() {
			sev = append(sev, string(s))
		}
	}
	if len(sev) == 0 {
		return nil, nil
	}
	q := liveThreatsQuery(len(sev))
	args := append([]any{gw, indicator.StatusFiring, ts(since)}, sev...)
	out, err := queryAll(ctx, t.tx, "live threat", scanLiveThreat, q, args...)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", gw, err)
	}
	return out, nil
}

// liveThreatsQuery reads a gateway's live threats of n severities
// through indicators_gw.
func liveThreatsQuery(n int) string {
	return `SELECT i.id, i.received_at, i.kind, i.severity, i.incident, i.fingerprint FROM indicators i
		LEFT JOIN indicator_resolutions r ON r.indicator = i.id
		WHERE i.gateway = ? AND i.matched = 1 AND i.status = ? AND i.received_at > ? AND r.indicator IS NULL
		AND i.severity IN (` + placeholders(n) + `) ORDER BY i.received_at LIMIT 100`
}

func scanLiveThreat(sc interface{ Scan(...any) error }) (LiveThreat, error) {
	var l LiveThreat
	var recv, kind, sevr string
	err := sc.Scan(&l.ID, &recv, &kind, &sevr, &l.Incident, &l.Fingerprint)
	l.ReceivedAt, l.Kind, l.Severity = parseTS(recv), indicator.Kind(kind), indicator.Severity(sevr)
	return l, err
}

// ErrAlreadyResolved is returned when an indicator was resolved before.
var ErrAlreadyResolved = errors.New("indicator already resolved")

// ResolveIndicator records that a person judged the indicator no longer a
// threat. It fails with ErrNotFound for an unknown id and
// ErrAlreadyResolved when it was resolved before.
func (t *txn) ResolveIndicator(ctx context.Context, id, actor, reason string, at time.Time) error {
	var n int
	if err := t.tx.QueryRowContext(ctx, `SELECT count(*) FROM indicators WHERE id = ?`, id).Scan(&n); err != nil {
		return fmt.Errorf("looking up indicator %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("indicator %s: %w", id, ErrNotFound)
	}
	res, err := t.tx.ExecContext(ctx, `INSERT INTO indicator_resolutions(indicator, actor, reason, resolved_at) VALUES (?,?,?,?) ON CONFLICT(indicator) DO NOTHING`,
		id, actor, reason, ts(at))
	if err != nil {
		return fmt.Errorf("resolving indicator %s: %w", id, err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return fmt.Errorf("indicator %s: %w", id, ErrAlreadyResolved)
	}
	return nil
}

func placeholders(n int) string {
	b := make([]byte, 0, 2*n)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '?')
	}
	return string(b)
}

// IndicatorByID reads one stored indicator inside the transaction.
func (t *txn) IndicatorByID(ctx context.Context, id string) (IndicatorRecord, error) {
	r, err := scanIndicatorRecord(t.queryRow(ctx, `SELECT `+indicatorRecordCols+` FROM indicators WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("indicator %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("reading indicator %s: %w", id, err)
	}
	return r, nil
}
