// Package store is Warden's durable memory: indicators, incidents, runs and
// their steps, gateway postures, and the audit chain, in one embedded SQLite
// file (modernc.org/sqlite, pure Go, WAL).
//
// It owns the schema and the queries. It must not decide anything: what to
// store and when is the controller's business. Every write that matters goes
// through Tx so that state and its audit entry commit together.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"modernc.org/sqlite" // also registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/indicator"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// Store is an open database.
type Store struct {
	db      *sql.DB
	dialect dialect
	// path is the SQLite file (empty on PostgreSQL).
	path string
	// schemaFound is the schema version the database had when opened.
	schemaFound int

	// Prepared statements, by query text. SQLite's parser is a quarter of
	// intake's CPU; queries used inside transactions are noted and
	// prepared once the transaction has given the connection back (with
	// one connection, preparing inside a transaction would deadlock).
	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt
	wanted map[string]bool
}

const schema = `
CREATE TABLE IF NOT EXISTS indicators (
	id          TEXT PRIMARY KEY,
	received_at TEXT NOT NULL,
	gateway     TEXT NOT NULL DEFAULT '',
	kind        TEXT NOT NULL DEFAULT '',
	severity    TEXT NOT NULL DEFAULT '',
	status      TEXT NOT NULL DEFAULT '',
	fingerprint TEXT NOT NULL DEFAULT '',
	incident    TEXT NOT NULL DEFAULT '',
	matched     INTEGER NOT NULL,
	reason      TEXT NOT NULL DEFAULT '',
	duplicate   INTEGER NOT NULL DEFAULT 0,
	source      TEXT NOT NULL DEFAULT '',
	body        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS indicators_fp ON indicators(fingerprint, matched, received_at);
CREATE INDEX IF NOT EXISTS indicators_gw ON indicators(gateway, matched, received_at);
CREATE INDEX IF NOT EXISTS indicators_incident ON indicators(incident);
CREATE TABLE IF NOT EXISTS incidents (
	id          TEXT PRIMARY KEY,
	gateway     TEXT NOT NULL,
	site        TEXT NOT NULL DEFAULT '',
	opened_at   TEXT NOT NULL,
	updated_at  TEXT NOT NULL,
	status      TEXT NOT NULL,
	severity    TEXT NOT NULL DEFAULT '',
	title       TEXT NOT NULL DEFAULT '',
	last_status TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS incidents_gw ON incidents(gateway, status);
CREATE TABLE IF NOT EXISTS runs (
	id                TEXT PRIMARY KEY,
	incident          TEXT NOT NULL DEFAULT '',
	gateway           TEXT NOT NULL,
	site              TEXT NOT NULL DEFAULT '',
	runbook           TEXT NOT NULL,
	policy            TEXT NOT NULL DEFAULT '',
	trigger_kind      TEXT NOT NULL,
	state             TEXT NOT NULL,
	approval_required INTEGER NOT NULL DEFAULT 0,
	approval_reason   TEXT NOT NULL DEFAULT '',
	approved_by       TEXT NOT NULL DEFAULT '',
	approved_at       TEXT NOT NULL DEFAULT '',
	auto_isolation    INTEGER NOT NULL DEFAULT 0,
	override_reason   TEXT NOT NULL DEFAULT '',
	plan              TEXT NOT NULL DEFAULT '',
	error             TEXT NOT NULL DEFAULT '',
	created_at        TEXT NOT NULL,
	updated_at        TEXT NOT NULL,
	started_at        TEXT NOT NULL DEFAULT '',
	finished_at       TEXT NOT NULL DEFAULT '',
	requested_by      TEXT NOT NULL DEFAULT '',
	overridden_by     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state);
CREATE INDEX IF NOT EXISTS runs_incident ON runs(incident);
-- The active runs of an incident, which every decided indicator asks
-- about (ActiveRunFor): without it the query reads every run the incident
-- ever had, and intake slows as incidents grow.
CREATE INDEX IF NOT EXISTS runs_active ON runs(incident, runbook) WHERE state IN ('pending','awaiting_approval','running');
CREATE TABLE IF NOT EXISTS steps (
	run         TEXT NOT NULL,
	idx         INTEGER NOT NULL,
	name        TEXT NOT NULL,
	action      TEXT NOT NULL,
	params      TEXT NOT NULL DEFAULT '{}',
	optional    INTEGER NOT NULL DEFAULT 0,
	state       TEXT NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	idem_key    TEXT NOT NULL,
	started_at  TEXT NOT NULL DEFAULT '',
	finished_at TEXT NOT NULL DEFAULT '',
	result      TEXT NOT NULL DEFAULT '',
	error       TEXT NOT NULL DEFAULT '',
	epoch       INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (run, idx)
);
CREATE TABLE IF NOT EXISTS postures (
	gateway         TEXT PRIMARY KEY,
	desired         TEXT NOT NULL,
	incident        TEXT NOT NULL DEFAULT '',
	observed        TEXT NOT NULL DEFAULT '',
	observed_detail TEXT NOT NULL DEFAULT '',
	observed_at     TEXT NOT NULL DEFAULT '',
	updated_at      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS baseline_results (
	id         TEXT PRIMARY KEY,
	gateway    TEXT NOT NULL,
	checked_at TEXT NOT NULL,
	passed     INTEGER NOT NULL,
	failed     INTEGER NOT NULL,
	errored    INTEGER NOT NULL,
	source     TEXT NOT NULL DEFAULT '',
	report     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS baseline_gw ON baseline_results(gateway, checked_at);
CREATE TABLE IF NOT EXISTS patch_waves (
	id         TEXT PRIMARY KEY,
	actor      TEXT NOT NULL,
	request    TEXT NOT NULL,
	state      TEXT NOT NULL,
	report     TEXT NOT NULL DEFAULT '',
	error      TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS patch_waves_state ON patch_waves(state);
CREATE TABLE IF NOT EXISTS breaker (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	tripped_at TEXT NOT NULL,
	reason     TEXT NOT NULL
);
`

// Open opens (creating if needed) the database at path. Sync "full" (the
// default) makes every commit durable across power loss, not only process
// crashes.
func Open(ctx context.Context, path string, sync string) (*Store, error) {
	if sync == "" {
		sync = "full"
	}
	switch sync {
	case "full", "normal":
	default:
		return nil, fmt.Errorf("opening store: sync must be full or normal, got %q", sync)
	}
	dsn := fileURI(path) + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(" + sync + ")&_pragma=temp_store(MEMORY)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	// temp_store(MEMORY) keeps savepoints' statement journals in memory:
	// group-committed intake opens one per request, and in a file each
	// page a savepoint touched was written out again (a tenth of the
	// decider's time).
	//
	// One connection: SQLite has one writer anyway, and this removes
	// SQLITE_BUSY between our own goroutines.
	db.SetMaxOpenConns(1)
	s := &Store{db: db, dialect: dialectSQLite, path: path, stmts: map[string]*sql.Stmt{}, wanted: map[string]bool{}}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	return s, nil
}

// dialect is the database behind a Store.
type dialect int

const (
	dialectSQLite dialect = iota
	dialectPostgres
)

func (d dialect) String() string {
	if d == dialectPostgres {
		return "postgres"
	}
	return "sqlite"
}

// Driver names the database behind the store: "sqlite" or "postgres".
func (s *Store) Driver() string { return s.dialect.String() }

// uriPathEscaper escapes what SQLite's URI parser would otherwise read as
// the start of the query ('?'), of a fragment ('#') or of an escape ('%').
var uriPathEscaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

// fileURI makes path a SQLite URI filename. The driver also splits the DSN
// at its first '?', so an unescaped '?' in a directory name would turn the
// rest of the path into parameters. An absolute path gets an empty
// authority ("file:///…") so that one starting with "//" is not read as a
// host.
func fileURI(path string) string {
	if strings.HasPrefix(path, "/") {
		return "file://" + uriPathEscaper.Replace(path)
	}
	return "file:" + uriPathEscaper.Replace(path)
}

// probeSchema is the single row ProbeWrite rewrites.
const probeSchema = `
CREATE TABLE IF NOT EXISTS write_probe (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	probed TEXT NOT NULL,
	count  INTEGER NOT NULL
);
`

// ProbeWrite commits a tiny transaction that rewrites one row: it fails
// when the store cannot commit (a full or read-only disk, an I/O error), as
// intake would. It goes through Tx so that it begins, writes and commits
// exactly as every other write does.
func (s *Store) ProbeWrite(ctx context.Context, at time.Time) error {
	return s.inTx(ctx, func(tx *txn) error {
		if _, err := tx.exec(ctx, `INSERT INTO write_probe(id, probed, count) VALUES (1, ?, 1)
			ON CONFLICT(id) DO UPDATE SET probed = excluded.probed, count = write_probe.count + 1`, ts(at)); err != nil {
			return fmt.Errorf("writing the probe row: %w", err)
		}
		return nil
	})
}

// Reasons a store cannot commit, as UnwritableReason names them (and the
// metrics label them).
const (
	UnwritableFull     = "disk_full"
	UnwritableReadOnly = "read_only"
	UnwritableIO       = "io_error"
	UnwritableBusy     = "busy"
	UnwritableCorrupt  = "corrupt"
	UnwritableOpen     = "cannot_open"
)

// UnwritableReason says whether err means the store could not commit for
// a reason of the store itself rather than of the data: a full disk
// (SQLITE_FULL, ENOSPC), a read-only one, an I/O error, a lock held past the
// busy timeout, a corrupt or vanished file. ok is false for every other
// error (a constraint, a bad request, nil), which retrying cannot cure.
func UnwritableReason(err error) (reason string, ok bool) {
	if err == nil {
		return "", false
	}
	if reason, ok := pgUnwritableReason(err); ok {
		return reason, true
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		// Code is the extended code (SQLITE_IOERR_WRITE, …); its low byte
		// is the primary one.
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_FULL:
			return UnwritableFull, true
		case sqlite3.SQLITE_READONLY:
			return UnwritableReadOnly, true
		case sqlite3.SQLITE_IOERR:
			return UnwritableIO, true
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return UnwritableBusy, true
		case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			return UnwritableCorrupt, true
		case sqlite3.SQLITE_CANTOPEN:
			return UnwritableOpen, true
		}
	}
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return UnwritableFull, true
	case errors.Is(err, syscall.EROFS):
		return UnwritableReadOnly, true
	case errors.Is(err, syscall.EIO):
		return UnwritableIO, true
	}
	return "", false
}

func (s *Store) stmt(q string) *sql.Stmt {
	if s.dialect != dialectSQLite {
		return nil // pgx prepares and caches every statement per connection itself
	}
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	st, ok := s.stmts[q]
	if !ok && len(s.wanted) < 256 {
		s.wanted[q] = true
	}
	return st
}

// prepareWanted prepares the statements noted during transactions. It must
// not hold stmtMu while preparing: preparing waits for the connection,
// which a transaction may hold while it looks up statements under stmtMu.
func (s *Store) prepareWanted(ctx context.Context) {
	s.stmtMu.Lock()
	var todo []string
	for q := range s.wanted {
		delete(s.wanted, q)
		if _, ok := s.stmts[q]; !ok && len(s.stmts)+len(todo) < 256 {
			todo = append(todo, q)
		}
	}
	s.stmtMu.Unlock()
	for _, q := range todo {
		st, err := s.db.PrepareContext(ctx, q)
		if err != nil {
			continue // used unprepared; the error will show where it runs
		}
		s.stmtMu.Lock()
		if _, dup := s.stmts[q]; dup {
			st.Close()
		} else {
			s.stmts[q] = st
		}
		s.stmtMu.Unlock()
	}
}

// Close closes the database.
func (s *Store) Close() error {
	s.stmtMu.Lock()
	for _, st := range s.stmts {
		st.Close()
	}
	s.stmts = map[string]*sql.Stmt{}
	s.stmtMu.Unlock()
	return s.db.Close()
}

// DB exposes the handle for read-only helpers (audit verification, export).
func (s *Store) DB() *sql.DB { return s.db }

// Tx runs fn in a transaction, committing when fn returns nil.
func (s *Store) Tx(ctx context.Context, fn func(tx Tx) error) error {
	return s.inTx(ctx, func(t *txn) error { return fn(t) })
}

// inTx is Tx for the store's own code, which needs the SQLite transaction.
func (s *Store) inTx(ctx context.Context, fn func(tx *txn) error) error {
	sqlTx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	tx := &txn{tx: sqlTx, s: s}
	defer s.prepareWanted(context.WithoutCancel(ctx))
	// Runs before prepareWanted: a panic (or t.Fatal's Goexit) in fn must
	// give the only connection back, or every later call waits on it.
	defer func() { _ = sqlTx.Rollback() }() // after Commit: sql.ErrTxDone, nothing to undo
	if err := fn(tx); err != nil {
		return err
	}
	if tx.audit != nil {
		if err := tx.audit.Flush(ctx); err != nil {
			return err
		}
	}
	if err := tx.flushFiring(ctx); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("committing transaction: %w", err)
	}
	return nil
}

// txn is an open SQLite transaction; it implements Tx.
type txn struct {
	tx    *sql.Tx
	s     *Store
	audit *audit.Appender
	sp    int
	// firing is, for each gateway, the latest matched, firing indicator
	// this transaction stored and has not written to gateway_firing yet:
	// a batch of indicators about one gateway writes its row once, before
	// the commit or a count that reads it (flushFiring).
	firing map[string]time.Time
	// firingUndo records, while a savepoint is open (depth > 0), what each
	// change to firing replaced, so that a rolled-back savepoint puts back
	// what it was before at the cost of its own changes only.
	firingUndo []firingUndo
	depth      int
}

// firingUndo is what one change to txn.firing replaced: gw's entry was at,
// or there was none (!had).
type firingUndo struct {
	gw  string
	at  time.Time
	had bool
}

// setFiring sets gw's pending firing time, or deletes it (!had), keeping
// what it replaced while a savepoint is open.
func (t *txn) setFiring(gw string, at time.Time, had bool) {
	if t.depth > 0 {
		old, ok := t.firing[gw]
		t.firingUndo = append(t.firingUndo, firingUndo{gw: gw, at: old, had: ok})
	}
	if !had {
		delete(t.firing, gw)
		return
	}
	if t.firing == nil {
		t.firing = map[string]time.Time{}
	}
	t.firing[gw] = at
}

// undoFiring puts firing back as it was when firingUndo had mark entries.
func (t *txn) undoFiring(mark int) {
	for i := len(t.firingUndo) - 1; i >= mark; i-- {
		u := t.firingUndo[i]
		if u.had {
			if t.firing == nil {
				t.firing = map[string]time.Time{}
			}
			t.firing[u.gw] = u.at
		} else {
			delete(t.firing, u.gw)
		}
	}
	t.firingUndo = t.firingUndo[:mark]
}

func (t *txn) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := t.s.stmt(q); st != nil {
		return t.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, q, args...)
}

func (t *txn) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st := t.s.stmt(q); st != nil {
		return t.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, q, args...)
}

// ExecContext and QueryRowContext let the audit appender use the
// transaction's prepared statements.
func (t *txn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.exec(ctx, q, args...)
}

// QueryRowContext: see ExecContext.
func (t *txn) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return t.queryRow(ctx, q, args...)
}

// QueryContext: see ExecContext.
func (t *txn) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := t.s.stmt(q); st != nil {
		return t.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, q, args...)
}

// Audit appends an audit entry in this transaction.
func (t *txn) Audit(ctx context.Context, e audit.Entry) error {
	if t.audit == nil {
		t.audit = audit.NewAppender(t)
	}
	_, err := t.audit.Append(ctx, e)
	return err
}

// Savepoint runs fn inside a savepoint: when fn fails, only its writes
// (and its audit entries) are undone and the transaction goes on. Group
// commit uses it so one bad request cannot spoil its neighbours.
func (t *txn) Savepoint(ctx context.Context, fn func() error) error {
	t.sp++
	name := fmt.Sprintf("sp%d", t.sp)
	if _, err := t.tx.ExecContext(ctx, "SAVEPOINT "+name); err != nil {
		return fmt.Errorf("opening savepoint: %w", err)
	}
	var mark audit.Mark
	if t.audit != nil {
		mark = t.audit.Mark()
	}
	firingMark := len(t.firingUndo)
	t.depth++
	defer func() {
		if t.depth--; t.depth == 0 {
			t.firingUndo = t.firingUndo[:0] // nothing can roll back now
		}
	}()
	hadAudit := t.audit != nil
	if err := fn(); err != nil {
		if _, rerr := t.tx.ExecContext(ctx, "ROLLBACK TO "+name); rerr != nil {
			return errors.Join(err, fmt.Errorf("rolling back savepoint: %w", rerr))
		}
		_, _ = t.tx.ExecContext(ctx, "RELEASE "+name)
		t.undoFiring(firingMark)
		if hadAudit {
			t.audit.Reset(mark)
		} else {
			t.audit = nil
		}
		return err
	}
	if _, err := t.tx.ExecContext(ctx, "RELEASE "+name); err != nil {
		return fmt.Errorf("releasing savepoint: %w", err)
	}
	return nil
}

// NewID makes a sortable, prefixed id ("inc-0195…").
func NewID(prefix string) string {
	u, err := uuid.NewV7()
	if err != nil {
		u = uuid.New()
	}
	return prefix + "-" + strings.ReplaceAll(u.String(), "-", "")[:20]
}

// tsLayout is fixed-width so that times compare correctly as strings
// (RFC3339Nano drops trailing zeros: "…07Z" would sort after "…07.038Z").
const tsLayout = "2006-01-02T15:04:05.000000000Z07:00"

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(tsLayout)
}

func parseTS(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ---- indicators ----

// IndicatorRecord is a stored indicator (or unmatched alert).
type IndicatorRecord struct {
	ID         string              `json:"id"`
	ReceivedAt time.Time           `json:"received_at"`
	Incident   string              `json:"incident,omitempty"`
	Matched    bool                `json:"matched"`
	Reason     string              `json:"reason,omitempty"`
	Duplicate  bool                `json:"duplicate,omitempty"`
	Indicator  indicator.Indicator `json:"indicator"`
	// Sender and Decision are set for an indicator of bulk (journaled)
	// intake: who sent it, and what the policies decided (JSON), kept on
	// the row, under the intake batch entry's Merkle root, instead of in
	// audit entries of its own.
	Sender   string             `json:"sender,omitempty"`
	Decision *IndicatorDecision `json:"decision,omitempty"`
}

// IndicatorDecision is what became of an indicator of bulk intake, kept
// on its row: the audit actions indicator.*, policy.decided and
// run.not_started that an indicator decided before its answer gets, in
// one small record.
type IndicatorDecision struct {
	// At is when it was decided.
	At time.Time `json:"at"`
	// Triage is how it was sorted: accepted, duplicate, unmatched or
	// resolved (the indicator.* audit action it stands for).
	Triage      string `json:"triage"`
	DuplicateOf string `json:"duplicate_of,omitempty"`
	// Policy and Runbook are the policy that matched and the runbook it
	// names (none matched: both empty); Approval is said when not auto.
	Policy        string `json:"policy,omitempty"`
	Runbook       string `json:"runbook,omitempty"`
	Approval      string `json:"approval,omitempty"`
	BusinessHours bool   `json:"business_hours,omitempty"`
	// ActiveRun is the run of the runbook already active for the
	// incident, which made starting another unnecessary.
	ActiveRun string `json:"active_run,omitempty"`
	// RecentRun is the latest run the policy started for the incident,
	// within its guards.repeat_after, which made starting another
	// unnecessary.
	RecentRun string `json:"recent_run,omitempty"`
	// Note says why a resolved alert starts nothing.
	Note string `json:"note,omitempty"`
}

// InsertIndicator stores r.
func (t *txn) InsertIndicator(ctx context.Context, r IndicatorRecord) error {
	body, err := json.Marshal(bodyOf(r))
	if err != nil {
		return fmt.Errorf("encoding indicator: %w", err)
	}
	var decision []byte
	if r.Decision != nil {
		if decision, err = json.Marshal(r.Decision); err != nil {
			return fmt.Errorf("encoding decision: %w", err)
		}
	}
	_, err = t.exec(ctx, `INSERT INTO indicators(id, received_at, gateway, kind, severity, status, fingerprint, incident, matched, reason, duplicate, source, body, sender, decision) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		r.ID, ts(r.ReceivedAt), r.Indicator.Gateway, string(r.Indicator.Kind), string(r.Indicator.Severity), r.Indicator.Status, r.Indicator.Fingerprint,
		r.Incident, b2i(r.Matched), r.Reason, b2i(r.Duplicate), r.Indicator.Source, string(body), r.Sender, string(decision))
	if err != nil {
		return fmt.Errorf("storing indicator: %w", err)
	}
	if r.Matched && r.Indicator.Status == indicator.StatusFiring {
		t.noteFiring(r.Indicator.Gateway, r.ReceivedAt)
	}
	return nil
}

// noteFiring notes that gw had a matched, firing indicator at at, for
// gateway_firing (its latest only; written by flushFiring).
func (t *txn) noteFiring(gw string, at time.Time) {
	if last, ok := t.firing[gw]; ok && !at.After(last) {
		return
	}
	t.setFiring(gw, at, true)
}

// flushFiring writes what noteFiring noted to gateway_firing.
func (t *txn) flushFiring(ctx context.Context) error {
	for gw, at := range t.firing {
		if _, err := t.exec(ctx, noteFiringQuery, gw, ts(at)); err != nil {
			return fmt.Errorf("noting gateway %s firing: %w", gw, err)
		}
		// Written: no longer pending, unless a savepoint open now rolls
		// the write back.
		t.setFiring(gw, time.Time{}, false)
	}
	return nil
}

// storedBody is an indicator as its row's body keeps it: the fields its
// columns do not (id, kind, gateway, severity, status, fingerprint and
// source are columns; reads put them back). Rows written before kept the
// whole indicator, which reads the same.
type storedBody struct {
	ID          string                `json:"id,omitempty"`
	Kind        indicator.Kind        `json:"kind,omitempty"`
	Gateway     string                `json:"gateway,omitempty"`
	Severity    indicator.Severity    `json:"severity,omitempty"`
	Confidence  float64               `json:"confidence"`
	Observables indicator.Observables `json:"observables,omitzero"`
	ObservedAt  time.Time             `json:"observed_at,omitzero"`
	Source      string                `json:"source,omitempty"`
	Summary     string                `json:"summary,omitempty"`
	Status      string                `json:"status,omitempty"`
	Fingerprint string                `json:"fingerprint,omitempty"`
	Labels      map[string]string     `json:"labels,omitempty"`
	Raw         json.RawMessage       `json:"raw,omitempty"`
}

// bodyOf is r's body: what of its indicator the columns do not keep.
func bodyOf(r IndicatorRecord) storedBody {
	in := r.Indicator
	b := storedBody{Confidence: in.Confidence, Observables: in.Observables, ObservedAt: in.ObservedAt, Summary: in.Summary, Labels: in.Labels, Raw: in.Raw}
	if in.ID != r.ID {
		b.ID = in.ID
	}
	return b
}

// RecentByFingerprint returns the newest matched indicator with fp received
// at or after since.
func (t *txn) RecentByFingerprint(ctx context.Context, fp string, since time.Time) (IndicatorRecord, bool, error) {
	var id, incident, recv string
	err := t.queryRow(ctx, `SELECT id, incident, received_at FROM indicators WHERE fingerprint = ? AND matched = 1 AND received_at >= ? ORDER BY received_at DESC LIMIT 1`, fp, ts(since)).Scan(&id, &incident, &recv)
	if errors.Is(err, sql.ErrNoRows) {
		return IndicatorRecord{}, false, nil
	}
	if err != nil {
		return IndicatorRecord{}, false, fmt.Errorf("looking up fingerprint: %w", err)
	}
	return IndicatorRecord{ID: id, Incident: incident, ReceivedAt: parseTS(recv)}, true, nil
}

// CountRecentIndicators counts matched indicators about gw since, up to
// 1000.
func (t *txn) CountRecentIndicators(ctx context.Context, gw string, since time.Time) (int, error) {
	var n int
	// Capped: policies ask "is this gateway noisy", not for an exact
	// census, and counting every row of a burst costs intake dearly.
	err := t.queryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM indicators WHERE gateway = ? AND matched = 1 AND received_at >= ? LIMIT ?) AS recent`, gw, ts(since), RecentIndicatorsCap).Scan(&n)
	return n, err
}

// gateway_firing holds each gateway's latest matched, firing indicator
// (schema version 7): the circuit breaker counts its rows within the
// window instead of every indicator the window holds.
const (
	gatewayFiringSchema = `
CREATE TABLE IF NOT EXISTS gateway_firing (
	gateway TEXT PRIMARY KEY,
	last_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gateway_firing_last ON gateway_firing(last_at);
`
	noteFiringQuery = `INSERT INTO gateway_firing(gateway, last_at) VALUES (?, ?)
		ON CONFLICT(gateway) DO UPDATE SET last_at = excluded.last_at WHERE excluded.last_at > gateway_firing.last_at`
	gatewaysFiringQuery = `SELECT count(*) + CASE WHEN ? != '' AND NOT EXISTS (SELECT 1 FROM gateway_firing WHERE gateway = ? AND last_at >= ?) THEN 1 ELSE 0 END
		FROM gateway_firing WHERE last_at >= ?`
)

// CountGatewaysWithIndicators counts distinct gateways with matched firing
// indicators since (for the circuit breaker).
func (t *txn) CountGatewaysWithIndicators(ctx context.Context, since time.Time, also string) (int, error) {
	var n int
	// also is a gateway counted as if it had one (the indicator being
	// decided, not yet recorded); "" adds none.
	if err := t.flushFiring(ctx); err != nil {
		return 0, err
	}
	err := t.queryRow(ctx, gatewaysFiringQuery, also, also, ts(since), ts(since)).Scan(&n)
	return n, err
}

// IndicatorsOfIncident lists an incident's indicators, oldest first.
func (s *Store) IndicatorsOfIncident(ctx context.Context, incident string) ([]IndicatorRecord, error) {
	return queryAll(ctx, s.db, "indicator", scanIndicatorRecord, `SELECT `+indicatorRecordCols+` FROM indicators WHERE incident = ? ORDER BY received_at, id`, incident)
}

// indicatorRecordCols are the columns scanIndicatorRecord reads.
const indicatorRecordCols = `id, received_at, incident, matched, reason, duplicate, body, sender, decision, kind, gateway, severity, status, fingerprint, source`

func scanIndicatorRecord(sc interface{ Scan(...any) error }) (IndicatorRecord, error) {
	var r IndicatorRecord
	var recv, body, decision, kind, gw, severity, status, fp, source string
	var matched, dup int
	if err := sc.Scan(&r.ID, &recv, &r.Incident, &matched, &r.Reason, &dup, &body, &r.Sender, &decision, &kind, &gw, &severity, &status, &fp, &source); err != nil {
		return r, err
	}
	r.ReceivedAt, r.Matched, r.Duplicate = parseTS(recv), matched == 1, dup == 1
	if decision != "" {
		r.Decision = &IndicatorDecision{}
		if err := json.Unmarshal([]byte(decision), r.Decision); err != nil {
			return r, fmt.Errorf("decoding the decision of indicator %s: %w", r.ID, err)
		}
	}
	if err := json.Unmarshal([]byte(body), &r.Indicator); err != nil {
		return r, fmt.Errorf("decoding indicator %s: %w", r.ID, err)
	}
	in := &r.Indicator
	if in.ID == "" {
		in.ID = r.ID
	}
	// The fields the columns keep (a body written before kept them too).
	in.Kind, in.Gateway, in.Severity = indicator.Kind(kind), gw, indicator.Severity(severity)
	in.Status, in.Fingerprint, in.Source = status, fp, source
	return r, nil
}

// CountIndicators counts stored indicators (all, matched or not).
func (s *Store) CountIndicators(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM indicators`).Scan(&n)
	return n, err
}

// ---- incidents ----

// Incident statuses.
const (
	IncidentOpen      = "open"
	IncidentContained = "contained"
	IncidentClosed    = "closed"
)

// Incident groups indicators about one gateway in time.
type Incident struct {
	ID         string    `json:"id"`
	Gateway    string    `json:"gateway"`
	Site       string    `json:"site"`
	OpenedAt   time.Time `json:"opened_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	Status     string    `json:"status"`
	Severity   string    `json:"severity"`
	Title      string    `json:"title"`
	LastStatus string    `json:"last_alert_status,omitempty"`
}

const incidentCols = `id, gateway, site, opened_at, updated_at, status, severity, title, last_status`

func scanIncident(sc interface{ Scan(...any) error }) (Incident, error) {
	var in Incident
	var opened, updated string
	err := sc.Scan(&in.ID, &in.Gateway, &in.Site, &opened, &updated, &in.Status, &in.Severity, &in.Title, &in.LastStatus)
	in.OpenedAt, in.UpdatedAt = parseTS(opened), parseTS(updated)
	return in, err
}

// OpenIncidentFor returns the newest incident about gw that is not closed
// and was updated at or after since.
func (t *txn) OpenIncidentFor(ctx context.Context, gw string, since time.Time) (Incident, bool, error) {
	row := t.queryRow(ctx, openIncidentQuery, gw, ts(since))
	in, err := scanIncident(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Incident{}, false, nil
	}
	if err != nil {
		return Incident{}, false, fmt.Errorf("looking up open incident: %w", err)
	}
	return in, true, nil
}

// openIncidentQuery and openIncidentsCountQuery read through the
// incidents_open index (schema version 6): their "status != 'closed'" is
// the index's own condition, so closed incidents are never read.
const (
	openIncidentQuery       = `SELECT ` + incidentCols + ` FROM incidents WHERE gateway = ? AND status != 'closed' AND updated_at >= ? ORDER BY updated_at DESC LIMIT 1`
	openIncidentsCountQuery = `SELECT count(*) FROM incidents WHERE gateway = ? AND status != 'closed'`
)

// CountOpenIncidents counts incidents about gw that are not closed.
func (t *txn) CountOpenIncidents(ctx context.Context, gw string) (int, error) {
	var n int
	err := t.queryRow(ctx, openIncidentsCountQuery, gw).Scan(&n)
	return n, err
}

// UpsertIncident inserts or updates in.
func (t *txn) UpsertIncident(ctx context.Context, in Incident) error {
	_, err := t.exec(ctx, `INSERT INTO incidents(`+incidentCols+`) VALUES (?,?,?,?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET updated_at=excluded.updated_at, status=excluded.status, severity=excluded.severity, title=excluded.title, last_status=excluded.last_status`,
		in.ID, in.Gateway, in.Site, ts(in.OpenedAt), ts(in.UpdatedAt), in.Status, in.Severity, in.Title, in.LastStatus)
	if err != nil {
		return fmt.Errorf("storing incident: %w", err)
	}
	return nil
}

// SetIncidentStatus changes an incident's status.
func (t *txn) SetIncidentStatus(ctx context.Context, id, status string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE incidents SET status = ?, updated_at = ? WHERE id = ?`, status, ts(at), id)
	return err
}

// IncidentByID returns one incident inside the transaction.
func (t *txn) IncidentByID(ctx context.Context, id string) (Incident, error) {
	in, err := scanIncident(t.queryRow(ctx, `SELECT `+incidentCols+` FROM incidents WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Incident{}, fmt.Errorf("incident %q: %w", id, ErrNotFound)
	}
	return in, err
}

// Incident returns one incident.
func (s *Store) Incident(ctx context.Context, id string) (Incident, error) {
	in, err := scanIncident(s.db.QueryRowContext(ctx, `SELECT `+incidentCols+` FROM incidents WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Incident{}, fmt.Errorf("incident %q: %w", id, ErrNotFound)
	}
	return in, err
}

// Incidents lists incidents, newest first.
func (s *Store) Incidents(ctx context.Context, limit int) ([]Incident, error) {
	if limit <= 0 {
		limit = 100
	}
	return queryAll(ctx, s.db, "incident", scanIncident, `SELECT `+incidentCols+` FROM incidents ORDER BY opened_at DESC LIMIT ?`, limit)
}
