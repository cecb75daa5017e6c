package store

import (
	"context"
	"fmt"
	"time"
)

// replicasSchema lists the `warden serve` processes on the database: each
// writes its row when it starts and every few seconds after (Heartbeat),
// and removes it when it stops. `warden status` reads them beside the
// lease.
const replicasSchema = `
CREATE TABLE IF NOT EXISTS replicas (
	owner      TEXT PRIMARY KEY,
	host       TEXT NOT NULL,
	pid        INTEGER NOT NULL,
	api        TEXT NOT NULL DEFAULT '',
	version    TEXT NOT NULL DEFAULT '',
	started_at TEXT NOT NULL,
	seen_at    TEXT NOT NULL
);
`

// Replica is one `warden serve` on the database.
type Replica struct {
	// Owner is the replica's id, the lease owner it takes the lease as.
	Owner string `json:"owner"`
	Host  string `json:"host"`
	PID   int    `json:"pid"`
	// API is the address its API listens on.
	API       string    `json:"api,omitempty"`
	Version   string    `json:"version,omitempty"`
	StartedAt time.Time `json:"started_at"`
	SeenAt    time.Time `json:"seen_at"`
}

// Heartbeat records r as alive at r.SeenAt, and forgets replicas not seen
// since forgetBefore (stopped without saying so: killed, or cut off).
func (s *Store) Heartbeat(ctx context.Context, r Replica, forgetBefore time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO replicas(owner, host, pid, api, version, started_at, seen_at) VALUES (?,?,?,?,?,?,?)
		ON CONFLICT(owner) DO UPDATE SET seen_at = excluded.seen_at, api = excluded.api`,
		r.Owner, r.Host, r.PID, r.API, r.Version, ts(r.StartedAt), ts(r.SeenAt))
	if err != nil {
		return fmt.Errorf("recording replica %s: %w", r.Owner, err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM replicas WHERE seen_at < ?`, ts(forgetBefore)); err != nil {
		return fmt.Errorf("forgetting stopped replicas: %w", err)
	}
	return nil
}

// ForgetReplica removes a replica that stops.
func (s *Store) ForgetReplica(ctx context.Context, owner string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM replicas WHERE owner = ?`, owner); err != nil {
		return fmt.Errorf("forgetting replica %s: %w", owner, err)
	}
	return nil
}

// Replicas lists the replicas on record, longest running first.
func (s *Store) Replicas(ctx context.Context) ([]Replica, error) {
	return queryAll(ctx, s.db, "replica", func(sc interface{ Scan(...any) error }) (Replica, error) {
		var r Replica
		var started, seen string
		err := sc.Scan(&r.Owner, &r.Host, &r.PID, &r.API, &r.Version, &started, &seen)
		r.StartedAt, r.SeenAt = parseTS(started), parseTS(seen)
		return r, err
	}, `SELECT owner, host, pid, api, version, started_at, seen_at FROM replicas ORDER BY started_at, owner`)
}
