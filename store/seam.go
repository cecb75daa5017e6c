package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/indicator"
)

// Backend is the store seam: what the controller, the API's read paths and
// the reports need from durable storage. *Store (SQLite) implements it; a
// second backend implements the same and passes the same conformance suite
// (storetest.Run).
type Backend interface {
	Reader
	// Tx runs fn in one transaction, committing when fn returns nil and
	// rolling everything back (audit entries included) otherwise, or when
	// fn panics. Inside fn, read through the Tx, never the Backend: the
	// SQLite backend has one connection, and the transaction holds it.
	Tx(ctx context.Context, fn func(tx Tx) error) error
	// SetObservedPosture records what the providers observe; it is a
	// fact, not a decision, and needs no transaction of its own.
	SetObservedPosture(ctx context.Context, gw, observed string, detail json.RawMessage, at time.Time) error
	// RememberSignature records a signed body's digest until expiry and
	// reports whether it was seen before (replay).
	RememberSignature(ctx context.Context, digest []byte, expiry, now time.Time) (bool, error)
	// ProbeWrite commits a small write as intake would (the write probe).
	ProbeWrite(ctx context.Context, at time.Time) error
	// CurrentLease is the writer lease on record, if any.
	CurrentLease(ctx context.Context) (Lease, bool, error)
	// Replicas lists the `warden serve` processes on the database;
	// Heartbeat records one as alive (and forgets those silent since
	// forgetBefore), ForgetReplica removes one that stops.
	Replicas(ctx context.Context) ([]Replica, error)
	Heartbeat(ctx context.Context, r Replica, forgetBefore time.Time) error
	ForgetReplica(ctx context.Context, owner string) error
	// DB is the database/sql handle for the audit chain's verification and
	// the evidence ledger.
	DB() *sql.DB
	Close() error
}

// Reader is the store's read side outside a transaction.
type Reader interface {
	Run(ctx context.Context, id string) (Run, error)
	Runs(ctx context.Context, f RunFilter) ([]Run, error)
	Posture(ctx context.Context, gw string) (Posture, error)
	Breaker(ctx context.Context) (Breaker, error)
	LatestBaseline(ctx context.Context, gw string) (BaselineResult, bool, error)
	IndicatorsOfIncident(ctx context.Context, incident string) ([]IndicatorRecord, error)
	CountIndicators(ctx context.Context) (int, error)
	IndicatorDigests(ctx context.Context, ids []string) (map[string][32]byte, error)
	Incident(ctx context.Context, id string) (Incident, error)
	Incidents(ctx context.Context, limit int) ([]Incident, error)
	PatchWave(ctx context.Context, id string) (PatchWave, error)
	PatchWaves(ctx context.Context, state string) ([]PatchWave, error)

	User(ctx context.Context, name string) (User, error)
	Users(ctx context.Context) ([]User, error)
	CountUsers(ctx context.Context) (int, error)
	Block(ctx context.Context, number int64) (BlockRecord, error)
	Blocks(ctx context.Context, state string, limit int) ([]BlockRecord, error)
	ActiveTokens(ctx context.Context, user string) ([]APIToken, error)
	CredentialByHash(ctx context.Context, hash string) (User, APIToken, error)
	Session(ctx context.Context, hash string) (Session, error)
}

// Tx is one open transaction: every write that matters goes through one, so
// that state and the audit entry describing it commit together.
type Tx interface {
	// Audit appends an entry to the hash chain in this transaction.
	Audit(ctx context.Context, e audit.Entry) error
	// Savepoint runs fn so that, when fn fails, only its writes and audit
	// entries are undone and the transaction goes on.
	Savepoint(ctx context.Context, fn func() error) error

	InsertIndicator(ctx context.Context, r IndicatorRecord) error
	IndicatorByID(ctx context.Context, id string) (IndicatorRecord, error)
	IndicatorDigests(ctx context.Context, ids []string) (map[string][32]byte, error)
	RecentByFingerprint(ctx context.Context, fp string, since time.Time) (IndicatorRecord, bool, error)
	CountRecentIndicators(ctx context.Context, gw string, since time.Time) (int, error)
	CountGatewaysWithIndicators(ctx context.Context, since time.Time, also string) (int, error)
	LiveThreats(ctx context.Context, gw string, since time.Time, minSeverity indicator.Severity) ([]LiveThreat, error)
	ResolveIndicator(ctx context.Context, id, actor, reason string, at time.Time) error

	OpenIncidentFor(ctx context.Context, gw string, since time.Time) (Incident, bool, error)
	CountOpenIncidents(ctx context.Context, gw string) (int, error)
	UpsertIncident(ctx context.Context, in Incident) error
	SetIncidentStatus(ctx context.Context, id, status string, at time.Time) error
	IncidentByID(ctx context.Context, id string) (Incident, error)

	InsertRun(ctx context.Context, r Run) error
	UpdateRun(ctx context.Context, r Run) error
	UpdateStep(ctx context.Context, s Step) error
	Run(ctx context.Context, id string) (Run, error)
	ActiveRunFor(ctx context.Context, incident, runbook string) (string, bool, error)
	RecentRunFor(ctx context.Context, incident, policy string, since time.Time) (id string, created time.Time, found bool, err error)
	CountAutoIsolations(ctx context.Context, since time.Time, site string) (fleet, atSite int, err error)
	EvidenceSucceeded(ctx context.Context, incident string, actions []string) (missing []string, err error)
	StepSucceededSince(ctx context.Context, gw, action string, since time.Time) (bool, error)

	SetDesiredPosture(ctx context.Context, gw, desired, incident string, at time.Time) error
	Posture(ctx context.Context, gw string) (Posture, error)
	Breaker(ctx context.Context) (Breaker, error)
	TripBreaker(ctx context.Context, at time.Time, reason string) error
	ResetBreaker(ctx context.Context) (bool, error)

	InsertBaselineResult(ctx context.Context, r BaselineResult) error
	LatestBaseline(ctx context.Context, gw string) (BaselineResult, bool, error)

	InsertPatchWave(ctx context.Context, w PatchWave) error
	FinishPatchWave(ctx context.Context, id, state string, report json.RawMessage, errText string, at time.Time) error

	User(ctx context.Context, name string) (User, error)
	Users(ctx context.Context) ([]User, error)
	CountUsers(ctx context.Context) (int, error)
	InsertUser(ctx context.Context, u User) error

	InsertBlock(ctx context.Context, b *BlockRecord) error
	BlockByRef(ctx context.Context, source, ref string) (BlockRecord, error)
	BlockByNumber(ctx context.Context, number int64) (BlockRecord, error)
	SetBlockState(ctx context.Context, number int64, state, by string, at time.Time) error
	ExpireBlocks(ctx context.Context, from, to string, now time.Time) ([]int64, error)
	Blocks(ctx context.Context, state string, limit int) ([]BlockRecord, error)
	SetUserDisabled(ctx context.Context, name string, disabled bool, at time.Time) error
	InsertToken(ctx context.Context, t APIToken) error
	RevokeTokens(ctx context.Context, user string, at time.Time) ([]string, error)

	InsertSession(ctx context.Context, s Session) error
	DeleteSession(ctx context.Context, hash string) (bool, error)
	DeleteSessionsOf(ctx context.Context, user string) (int, error)
	DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error)
}

// RecentIndicatorsCap caps CountRecentIndicators: policies ask whether a
// gateway is noisy, not for a census.
const RecentIndicatorsCap = 1000

var (
	_ Backend = (*Store)(nil)
	_ Tx      = (*txn)(nil)
)
