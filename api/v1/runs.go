package v1

import (
	"encoding/json"
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

// ReleaseRunbook is the runbook that releases a quarantined gateway.
const ReleaseRunbook = "release-gateway"

// Run is one execution of a runbook against one gateway.
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
	// RequestedBy is who asked for the run (a person starting it, or who
	// sent the indicator a policy decided on); OverriddenBy who gave the
	// override reason. Neither may approve it (four eyes).
	RequestedBy  string `json:"requested_by,omitempty"`
	OverriddenBy string `json:"overridden_by,omitempty"`
	// Plan is the run's Plan as recorded when the run was created.
	Plan       json.RawMessage `json:"plan,omitempty"`
	Error      string          `json:"error,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	StartedAt  time.Time       `json:"started_at,omitzero"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
	// Steps are absent from lists (GET /v1/runs).
	Steps []Step `json:"steps,omitempty"`
}

// Terminal reports whether the run will not change any more.
func (r Run) Terminal() bool {
	return r.State == RunSucceeded || r.State == RunFailed || r.State == RunCancelled
}

// DecodePlan decodes the recorded plan (the zero Plan when there is none).
func (r Run) DecodePlan() (Plan, error) {
	var p Plan
	if len(r.Plan) == 0 {
		return p, nil
	}
	return p, json.Unmarshal(r.Plan, &p)
}

// Step is one step of a run.
type Step struct {
	Index          int               `json:"index"`
	Name           string            `json:"name"`
	Action         string            `json:"action"`
	Params         map[string]string `json:"params,omitempty"`
	Optional       bool              `json:"optional,omitempty"`
	State          string            `json:"state"`
	Attempts       int               `json:"attempts"`
	IdempotencyKey string            `json:"idempotency_key"`
	// Epoch is the writer-lease epoch the step last ran under.
	Epoch      int64     `json:"epoch,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Result is what the action reported, as recorded.
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// RunList is the answer of GET /v1/runs.
type RunList struct {
	Runs []Run `json:"runs"`
}

// ApproveRequest is the body of POST /v1/runs/{id}/approve. The approver
// is the authenticated caller.
type ApproveRequest struct {
	// By is deprecated: who acts comes from the token. When set it must
	// name the caller (400 otherwise).
	By      string `json:"by,omitempty"`
	Comment string `json:"comment,omitempty"`
}

// CancelRequest is the body of POST /v1/runs/{id}/cancel.
type CancelRequest struct {
	// By is deprecated; when set it must name the caller.
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// StartRunbookRequest is the body of POST /v1/runbooks/{name}/runs.
type StartRunbookRequest struct {
	// Gateway names exactly one gateway; empty or a wildcard is refused.
	Gateway  string `json:"gateway"`
	Incident string `json:"incident,omitempty"`
	// By is deprecated: the caller starts it. When set it must name the
	// caller.
	By string `json:"by,omitempty"`
	// DryRun answers 200 with a RunbookDryRun and starts nothing.
	DryRun bool `json:"dry_run,omitempty"`
	// OverrideReason is the recorded reason to run destructive steps
	// without evidence first, or to release although a gate is unmet.
	OverrideReason string `json:"override_reason,omitempty"`
}

// RunbookDryRun is the 200 answer of a dry-run POST
// /v1/runbooks/{name}/runs.
type RunbookDryRun struct {
	DryRun bool   `json:"dry_run"`
	Plan   Plan   `json:"plan"`
	Text   string `json:"text"`
}

// ResolveRequest is the body of POST /v1/indicators/{id}/resolve.
type ResolveRequest struct {
	// By is deprecated; when set it must name the caller.
	By string `json:"by,omitempty"`
	// Reason says why the indicator is no longer a threat; required.
	Reason string `json:"reason"`
}

// Resolved is the answer of POST /v1/indicators/{id}/resolve.
type Resolved struct {
	Indicator  string `json:"indicator"`
	ResolvedBy string `json:"resolved_by"`
}

// BreakerResetRequest is the body of POST /v1/breaker/reset.
type BreakerResetRequest struct {
	// By is deprecated; when set it must name the caller. Reason is
	// required.
	By     string `json:"by,omitempty"`
	Reason string `json:"reason"`
}

// BreakerReset is the answer of POST /v1/breaker/reset.
type BreakerReset struct {
	WasTripped bool `json:"was_tripped"`
}
