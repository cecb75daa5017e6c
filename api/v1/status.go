package v1

import "time"

// Status is the answer of GET /v1/status: the `warden serve` replicas on
// the store, which of them leads (holds the writer lease and executes
// runs) and since when.
type Status struct {
	// Store is the database: sqlite or postgres.
	Store string `json:"store"`
	// AnsweredBy is the id of the replica that answered.
	AnsweredBy string `json:"answered_by"`
	// Now is the answering replica's time, which the ages are measured to.
	Now time.Time `json:"now"`
	// Lease is the writer lease on record; absent before any controller
	// held it.
	Lease *Lease `json:"lease,omitempty"`
	// Replicas are the replicas on record, longest running first.
	Replicas []Replica `json:"replicas"`
}

// Lease is the writer lease: its holder leads while it has not expired.
type Lease struct {
	Owner      string    `json:"owner"`
	Host       string    `json:"host"`
	PID        int       `json:"pid"`
	Epoch      int64     `json:"epoch"`
	AcquiredAt time.Time `json:"acquired_at"`
	RenewedAt  time.Time `json:"renewed_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	// AgeSeconds is how long ago the lease was last renewed: it stays
	// below a third of the TTL while the leader is healthy.
	AgeSeconds float64 `json:"age_seconds"`
	// Expired: the holder stopped renewing; no replica leads until
	// another takes the lease.
	Expired bool `json:"expired"`
}

// Replica is one `warden serve` on the store.
type Replica struct {
	ID        string    `json:"id"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	API       string    `json:"api,omitempty"`
	Version   string    `json:"version,omitempty"`
	StartedAt time.Time `json:"started_at"`
	SeenAt    time.Time `json:"seen_at"`
	// Leader: this replica holds the lease, which has not expired.
	Leader bool `json:"leader"`
	// Silent: it has not reported for longer than a lease lasts (stopped
	// without saying so, or cut off from the database).
	Silent bool `json:"silent"`
}
