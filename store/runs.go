package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Run states.
const (
	RunPending          = "pending"
	RunAwaitingApproval = "awaiting_approval"
	RunRunning          = "running"
	RunSucceeded        = "succeeded"
	RunFailed           = "failed"
	RunCancelled        = "cancelled"
)

// Step states.
const (
	StepPending   = "pending"
	StepRunning   = "running"
	StepSucceeded = "succeeded"
	StepFailed    = "failed"
	StepSkipped   = "skipped"
)

// Run is one durable execution of a runbook.
type Run struct {
	ID               string    `json:"id"`
	Incident         string    `json:"incident,omitempty"`
	Gateway          string    `json:"gateway"`
	Site             string    `json:"site"`
	Runbook          string    `json:"runbook"`
	Policy           string    `json:"policy,omitempty"`
	Trigger          string    `json:"trigger"` // policy, manual, drift
	State            string    `json:"state"`
	ApprovalRequired bool      `json:"approval_required"`
	ApprovalReason   string    `json:"approval_reason,omitempty"`
	ApprovedBy       string    `json:"approved_by,omitempty"`
	ApprovedAt       time.Time `json:"approved_at,omitzero"`
	AutoIsolation    bool      `json:"auto_isolation"`
	OverrideReason   string    `json:"override_reason,omitempty"`
	// RequestedBy is the authenticated actor who started the run (a
	// person's runbook or release) or whose indicator led to it; empty
	// for the controller's own runs (drift, reconcile).
	RequestedBy string `json:"requested_by,omitempty"`
	// OverriddenBy is who gave OverrideReason.
	OverriddenBy string          `json:"overridden_by,omitempty"`
	Plan         json.RawMessage `json:"plan,omitempty"`
	Error        string          `json:"error,omitempty"`
	CreatedAt    time.Time       `json:"created_at"`
	UpdatedAt    time.Time       `json:"updated_at"`
	StartedAt    time.Time       `json:"started_at,omitzero"`
	FinishedAt   time.Time       `json:"finished_at,omitzero"`
	Steps        []Step          `json:"steps,omitempty"`
}

// Step is one step of a run.
type Step struct {
	Run      string            `json:"-"`
	Index    int               `json:"index"`
	Name     string            `json:"name"`
	Action   string            `json:"action"`
	Params   map[string]string `json:"params,omitempty"`
	Optional bool              `json:"optional,omitempty"`
	State    string            `json:"state"`
	Attempts int               `json:"attempts"`
	IdemKey  string            `json:"idempotency_key"`
	// Epoch is the writer-lease epoch the step last ran under (0: never
	// ran, or ran without a lease, as in unit tests).
	Epoch      int64           `json:"epoch,omitempty"`
	StartedAt  time.Time       `json:"started_at,omitzero"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      string          `json:"error,omitempty"`
}

// Terminal reports whether the run will not change any more.
func (r Run) Terminal() bool {
	return r.State == RunSucceeded || r.State == RunFailed || r.State == RunCancelled
}

const runCols = `id, incident, gateway, site, runbook, policy, trigger_kind, state, approval_required, approval_reason, approved_by, approved_at, auto_isolation, override_reason, plan, error, created_at, updated_at, started_at, finished_at, requested_by, overridden_by`

func scanRun(sc interface{ Scan(...any) error }) (Run, error) {
	var r Run
	var appr, auto int
	var approvedAt, plan, created, updated, started, finished string
	err := sc.Scan(&r.ID, &r.Incident, &r.Gateway, &r.Site, &r.Runbook, &r.Policy, &r.Trigger, &r.State, &appr, &r.ApprovalReason, &r.ApprovedBy, &approvedAt, &auto, &r.OverrideReason, &plan, &r.Error, &created, &updated, &started, &finished, &r.RequestedBy, &r.OverriddenBy)
	if err != nil {
		return Run{}, err
	}
	r.ApprovalRequired, r.AutoIsolation = appr == 1, auto == 1
	r.ApprovedAt, r.CreatedAt, r.UpdatedAt, r.StartedAt, r.FinishedAt = parseTS(approvedAt), parseTS(created), parseTS(updated), parseTS(started), parseTS(finished)
	if plan != "" {
		r.Plan = json.RawMessage(plan)
	}
	return r, nil
}

// InsertRun stores a new run with its steps.
func (t *txn) InsertRun(ctx context.Context, r Run) error {
	_, err := t.exec(ctx, `INSERT INTO runs(`+runCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		r.ID, r.Incident, r.Gateway, r.Site, r.Runbook, r.Policy, r.Trigger, r.State, b2i(r.ApprovalRequired), r.ApprovalReason, r.ApprovedBy, ts(r.ApprovedAt),
		b2i(r.AutoIsolation), r.OverrideReason, string(r.Plan), r.Error, ts(r.CreatedAt), ts(r.UpdatedAt), ts(r.StartedAt), ts(r.FinishedAt), r.RequestedBy, r.OverriddenBy)
	if err != nil {
		return fmt.Errorf("storing run: %w", err)
	}
	if r.State == RunPending {
		if err := t.notify(ctx, RunsChannel, r.ID); err != nil {
			return err
		}
	}
	for _, s := range r.Steps {
		params, err := json.Marshal(s.Params)
		if err != nil {
			return fmt.Errorf("encoding step params: %w", err)
		}
		if _, err := t.exec(ctx, `INSERT INTO steps(run, idx, name, action, params, optional, state, attempts, idem_key, started_at, epoch) VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
			r.ID, s.Index, s.Name, s.Action, string(params), b2i(s.Optional), s.State, s.Attempts, s.IdemKey, ts(s.StartedAt), s.Epoch); err != nil {
			return fmt.Errorf("storing step %d of run: %w", s.Index, err)
		}
	}
	return nil
}

// UpdateRun writes a run's mutable fields.
func (t *txn) UpdateRun(ctx context.Context, r Run) error {
	_, err := t.exec(ctx, `UPDATE runs SET state=?, approval_required=?, approval_reason=?, approved_by=?, approved_at=?, override_reason=?, error=?, updated_at=?, started_at=?, finished_at=? WHERE id=?`,
		r.State, b2i(r.ApprovalRequired), r.ApprovalReason, r.ApprovedBy, ts(r.ApprovedAt), r.OverrideReason, r.Error, ts(r.UpdatedAt), ts(r.StartedAt), ts(r.FinishedAt), r.ID)
	if err != nil {
		return fmt.Errorf("updating run %s: %w", r.ID, err)
	}
	if r.State == RunPending { // approved: the leader may start it now
		return t.notify(ctx, RunsChannel, r.ID)
	}
	return nil
}

// ErrStaleEpoch refuses a step update from a controller whose lease epoch
// is older than the one the step last ran under: a deposed leader must not
// overwrite what its successor recorded.
var ErrStaleEpoch = errors.New("the step was taken over under a newer lease epoch")

// UpdateStep writes a step's mutable fields, unless the step last ran
// under a newer epoch than s.Epoch (ErrStaleEpoch).
func (t *txn) UpdateStep(ctx context.Context, s Step) error {
	res, err := t.exec(ctx, `UPDATE steps SET state=?, attempts=?, started_at=?, finished_at=?, result=?, error=?, epoch=? WHERE run=? AND idx=? AND epoch <= ?`,
		s.State, s.Attempts, ts(s.StartedAt), ts(s.FinishedAt), string(s.Result), s.Error, s.Epoch, s.Run, s.Index, s.Epoch)
	if err != nil {
		return fmt.Errorf("updating step %d of run %s: %w", s.Index, s.Run, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var epoch int64
		err := t.queryRow(ctx, `SELECT epoch FROM steps WHERE run=? AND idx=?`, s.Run, s.Index).Scan(&epoch)
		if err == nil && epoch > s.Epoch {
			return fmt.Errorf("updating step %d of run %s under epoch %d: %w (%d)", s.Index, s.Run, s.Epoch, ErrStaleEpoch, epoch)
		}
	}
	return nil
}

// Run reads a run and its steps inside the transaction, through its
// prepared statements: an alert's containment reads its run twice before
// the first command leaves, and preparing both queries each time was most
// of a reading's cost.
func (t *txn) Run(ctx context.Context, id string) (Run, error) { return getRun(ctx, t, id) }

// Run reads a run and its steps (through prepared statements, as above).
func (s *Store) Run(ctx context.Context, id string) (Run, error) {
	return getRun(ctx, preparedReads{s}, id)
}

// preparedReads reads through the store's prepared statements outside a
// transaction (a query not prepared yet runs as it is, and is prepared
// after the next transaction).
type preparedReads struct{ s *Store }

func (p preparedReads) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := p.s.stmt(q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.s.db.QueryContext(ctx, q, args...)
}

func (p preparedReads) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if st := p.s.stmt(q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.s.db.QueryRowContext(ctx, q, args...)
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getRun(ctx context.Context, q queryer, id string) (Run, error) {
	r, err := scanRun(q.QueryRowContext(ctx, `SELECT `+runCols+` FROM runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, fmt.Errorf("run %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Run{}, fmt.Errorf("reading run %s: %w", id, err)
	}
	r.Steps, err = queryAll(ctx, q, "step", scanStep, `SELECT run, idx, name, action, params, optional, state, attempts, idem_key, started_at, finished_at, result, error, epoch FROM steps WHERE run = ? ORDER BY idx`, id)
	if err != nil {
		return Run{}, fmt.Errorf("run %s: %w", id, err)
	}
	return r, nil
}

func scanStep(sc interface{ Scan(...any) error }) (Step, error) {
	var s Step
	var params, started, finished, result string
	var opt int
	if err := sc.Scan(&s.Run, &s.Index, &s.Name, &s.Action, &params, &opt, &s.State, &s.Attempts, &s.IdemKey, &started, &finished, &result, &s.Error, &s.Epoch); err != nil {
		return s, err
	}
	s.Optional = opt == 1
	s.StartedAt, s.FinishedAt = parseTS(started), parseTS(finished)
	if result != "" {
		s.Result = json.RawMessage(result)
	}
	_ = json.Unmarshal([]byte(params), &s.Params)
	return s, nil
}

// RunFilter narrows Runs.
type RunFilter struct {
	Incident string
	Gateway  string
	States   []string
	Limit    int
}

// Runs lists runs (without steps), newest first.
func (s *Store) Runs(ctx context.Context, f RunFilter) ([]Run, error) {
	q := `SELECT ` + runCols + ` FROM runs WHERE 1=1`
	var args []any
	if f.Incident != "" {
		q += ` AND incident = ?`
		args = append(args, f.Incident)
	}
	if f.Gateway != "" {
		q += ` AND gateway = ?`
		args = append(args, f.Gateway)
	}
	if len(f.States) > 0 {
		q += ` AND state IN (?` + repeatComma(len(f.States)-1) + `)`
		for _, st := range f.States {
			args = append(args, st)
		}
	}
	if f.Limit <= 0 {
		f.Limit = 200
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, f.Limit)
	return queryAll(ctx, s.db, "run", scanRun, q, args...)
}

// queryAll runs a query and reads every row with scan; what names one row
// in errors ("listing runs", "reading run").
func queryAll[T any](ctx context.Context, q queryer, what string, scan func(interface{ Scan(...any) error }) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing %ss: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", what, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func repeatComma(n int) string {
	b := make([]byte, 0, 2*n)
	for range n {
		b = append(b, ",?"...)
	}
	return string(b)
}

// autoIsolationsQuery reads through the partial index
// runs_auto_isolation (schema version 5).
const autoIsolationsQuery = `SELECT count(*), coalesce(sum(CASE WHEN site = ? THEN 1 ELSE 0 END), 0) FROM runs WHERE auto_isolation = 1 AND state != 'cancelled' AND created_at >= ?`

// activeRunQuery reads through the partial index runs_active.
const activeRunQuery = `SELECT id FROM runs WHERE incident = ? AND runbook = ? AND state IN ('pending','awaiting_approval','running') LIMIT 1`

// ActiveRunFor returns a run for incident+runbook that is still pending,
// waiting for approval or running (so the same policy does not start a
// second one meanwhile). A finished run does not count: a new, different
// sign of compromise later in the same incident must get its own response.
func (t *txn) ActiveRunFor(ctx context.Context, incident, runbook string) (string, bool, error) {
	var id string
	err := t.queryRow(ctx, activeRunQuery, incident, runbook).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return id, err == nil, err
}

// recentRunQuery reads through the index runs_recent (schema version 8).
const recentRunQuery = `SELECT id, created_at FROM runs WHERE incident = ? AND policy = ? AND created_at >= ? ORDER BY created_at DESC LIMIT 1`

// RecentRunFor returns the latest run that policy started for incident
// created at or after since, whatever its state (the policy's
// guards.repeat_after). Runs a person started have no policy.
func (t *txn) RecentRunFor(ctx context.Context, incident, policy string, since time.Time) (id string, created time.Time, found bool, err error) {
	var at string
	err = t.queryRow(ctx, recentRunQuery, incident, policy, ts(since)).Scan(&id, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, false, nil
	}
	if err != nil {
		return "", time.Time{}, false, fmt.Errorf("finding a recent run: %w", err)
	}
	return id, parseTS(at), true, nil
}

// CountAutoIsolations counts automatic isolation runs created at or after
// since, fleet-wide and for one site (blast-radius budget).
func (t *txn) CountAutoIsolations(ctx context.Context, since time.Time, site string) (fleet, atSite int, err error) {
	err = t.queryRow(ctx, autoIsolationsQuery, site, ts(since)).Scan(&fleet, &atSite)
	if err != nil {
		err = fmt.Errorf("counting automatic isolations: %w", err)
	}
	return fleet, atSite, err
}

// EvidenceSucceeded reports whether every evidence action named has a
// succeeded step in some run of the incident.
func (t *txn) EvidenceSucceeded(ctx context.Context, incident string, actions []string) (missing []string, err error) {
	for _, a := range actions {
		var n int
		if err := t.queryRow(ctx, `SELECT count(*) FROM steps JOIN runs ON runs.id = steps.run WHERE runs.incident = ? AND steps.action = ? AND steps.state = 'succeeded'`, incident, a).Scan(&n); err != nil {
			return nil, fmt.Errorf("checking evidence %s: %w", a, err)
		}
		if n == 0 {
			missing = append(missing, a)
		}
	}
	return missing, nil
}

// ---- postures ----

// Postures.
const (
	PostureNormal      = "normal"
	PostureQuarantined = "quarantined"
	PostureReleased    = "released"
)

// Posture is a gateway's desired and last observed state.
type Posture struct {
	Gateway        string          `json:"gateway"`
	Desired        string          `json:"desired"`
	Incident       string          `json:"incident,omitempty"`
	Observed       string          `json:"observed,omitempty"`
	ObservedDetail json.RawMessage `json:"observed_detail,omitempty"`
	ObservedAt     time.Time       `json:"observed_at,omitzero"`
	UpdatedAt      time.Time       `json:"updated_at"`
}

// SetDesiredPosture records what the gateway should be. UpdatedAt is when
// the desired posture last changed: isolating a quarantined gateway again
// keeps it, so "since the quarantine began" (the release gates) still
// means the first isolation.
func (t *txn) SetDesiredPosture(ctx context.Context, gw, desired, incident string, at time.Time) error {
	_, err := t.exec(ctx, `INSERT INTO postures(gateway, desired, incident, updated_at) VALUES (?,?,?,?)
		ON CONFLICT(gateway) DO UPDATE SET desired=excluded.desired, incident=excluded.incident,
		updated_at=CASE WHEN postures.desired = excluded.desired THEN postures.updated_at ELSE excluded.updated_at END`, gw, desired, incident, ts(at))
	if err != nil {
		return fmt.Errorf("setting desired posture of %s: %w", gw, err)
	}
	return nil
}

// SetObservedPosture records what the providers saw.
func (s *Store) SetObservedPosture(ctx context.Context, gw, observed string, detail json.RawMessage, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO postures(gateway, desired, observed, observed_detail, observed_at, updated_at) VALUES (?,'normal',?,?,?,?)
		ON CONFLICT(gateway) DO UPDATE SET observed=excluded.observed, observed_detail=excluded.observed_detail, observed_at=excluded.observed_at`, gw, observed, string(detail), ts(at), ts(at))
	if err != nil {
		return fmt.Errorf("setting observed posture of %s: %w", gw, err)
	}
	return nil
}

// Posture returns gw's posture (desired normal when never recorded).
func (s *Store) Posture(ctx context.Context, gw string) (Posture, error) {
	return getPosture(ctx, s.db, gw)
}

// Posture returns gw's posture inside the transaction.
func (t *txn) Posture(ctx context.Context, gw string) (Posture, error) {
	return getPosture(ctx, t.tx, gw)
}

func getPosture(ctx context.Context, q queryer, gw string) (Posture, error) {
	p := Posture{Gateway: gw}
	var detail, obsAt, upd string
	err := q.QueryRowContext(ctx, `SELECT desired, incident, observed, observed_detail, observed_at, updated_at FROM postures WHERE gateway = ?`, gw).Scan(&p.Desired, &p.Incident, &p.Observed, &detail, &obsAt, &upd)
	if errors.Is(err, sql.ErrNoRows) {
		p.Desired = PostureNormal
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("reading posture of %s: %w", gw, err)
	}
	if detail != "" {
		p.ObservedDetail = json.RawMessage(detail)
	}
	p.ObservedAt, p.UpdatedAt = parseTS(obsAt), parseTS(upd)
	return p, nil
}

// ---- circuit breaker ----

// Breaker is the fleet-wide circuit breaker's state.
type Breaker struct {
	Tripped   bool      `json:"tripped"`
	TrippedAt time.Time `json:"tripped_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
}

// Breaker reads the breaker inside the transaction.
func (t *txn) Breaker(ctx context.Context) (Breaker, error) { return getBreaker(ctx, t.tx) }

// Breaker reads the breaker.
func (s *Store) Breaker(ctx context.Context) (Breaker, error) { return getBreaker(ctx, s.db) }

func getBreaker(ctx context.Context, q queryer) (Breaker, error) {
	var at, reason string
	err := q.QueryRowContext(ctx, `SELECT tripped_at, reason FROM breaker WHERE id = 1`).Scan(&at, &reason)
	if errors.Is(err, sql.ErrNoRows) {
		return Breaker{}, nil
	}
	if err != nil {
		return Breaker{}, fmt.Errorf("reading circuit breaker: %w", err)
	}
	return Breaker{Tripped: true, TrippedAt: parseTS(at), Reason: reason}, nil
}

// TripBreaker trips the breaker (no-op if already tripped).
func (t *txn) TripBreaker(ctx context.Context, at time.Time, reason string) error {
	_, err := t.exec(ctx, `INSERT INTO breaker(id, tripped_at, reason) VALUES (1, ?, ?) ON CONFLICT(id) DO NOTHING`, ts(at), reason)
	return err
}

// ResetBreaker closes the breaker again.
func (t *txn) ResetBreaker(ctx context.Context) (bool, error) {
	res, err := t.exec(ctx, `DELETE FROM breaker WHERE id = 1`)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}
