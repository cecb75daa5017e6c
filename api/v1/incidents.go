package v1

import (
	"encoding/json"
	"time"
)

// Incident states.
const (
	IncidentOpen      = "open"
	IncidentContained = "contained"
	IncidentClosed    = "closed"
)

// Incident groups the indicators about one gateway and the runs they
// started.
type Incident struct {
	ID        string    `json:"id"`
	Gateway   string    `json:"gateway"`
	Site      string    `json:"site"`
	OpenedAt  time.Time `json:"opened_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Status    string    `json:"status"`
	Severity  string    `json:"severity"`
	Title     string    `json:"title"`
	// LastAlertStatus is the status of the newest alert (firing or
	// resolved).
	LastAlertStatus string `json:"last_alert_status,omitempty"`
}

// IncidentList is the answer of GET /v1/incidents.
type IncidentList struct {
	Incidents []Incident `json:"incidents"`
}

// IncidentDetail is the answer of GET /v1/incidents/{id}: the incident
// with its indicators and its runs (with their steps).
type IncidentDetail struct {
	Incident
	Indicators []IndicatorRecord `json:"indicators"`
	Runs       []Run             `json:"runs"`
}

// IndicatorRecord is one indicator as the controller received it.
type IndicatorRecord struct {
	ID         string    `json:"id"`
	ReceivedAt time.Time `json:"received_at"`
	Incident   string    `json:"incident,omitempty"`
	Matched    bool      `json:"matched"`
	// Reason says why it matched no gateway, or what else became of it.
	Reason    string            `json:"reason,omitempty"`
	Duplicate bool              `json:"duplicate,omitempty"`
	Indicator RecordedIndicator `json:"indicator"`
	// Sender and Decision are set for an indicator of bulk intake
	// (answered queued): who sent it and what became of it, kept on the
	// indicator instead of in audit entries of its own.
	Sender   string             `json:"sender,omitempty"`
	Decision *IndicatorDecision `json:"decision,omitempty"`
}

// IndicatorDecision is what became of an indicator of bulk intake.
type IndicatorDecision struct {
	At time.Time `json:"at"`
	// Triage is accepted, duplicate, unmatched or resolved.
	Triage        string `json:"triage"`
	DuplicateOf   string `json:"duplicate_of,omitempty"`
	Policy        string `json:"policy,omitempty"`
	Runbook       string `json:"runbook,omitempty"`
	Approval      string `json:"approval,omitempty"`
	BusinessHours bool   `json:"business_hours,omitempty"`
	// ActiveRun is the run already active for the incident that made
	// starting another unnecessary.
	ActiveRun string `json:"active_run,omitempty"`
	// RecentRun is the run the policy started for the incident within its
	// repeat_after, which made starting another unnecessary.
	RecentRun string `json:"recent_run,omitempty"`
	Note      string `json:"note,omitempty"`
}

// RecordedIndicator is an indicator after intake: normalised, with its id.
type RecordedIndicator struct {
	ID          string            `json:"id,omitempty"`
	Kind        string            `json:"kind"`
	Gateway     string            `json:"gateway"`
	Severity    string            `json:"severity"`
	Confidence  float64           `json:"confidence"`
	Observables Observables       `json:"observables"`
	ObservedAt  time.Time         `json:"observed_at"`
	Source      string            `json:"source"`
	Summary     string            `json:"summary,omitempty"`
	Status      string            `json:"status,omitempty"`
	Fingerprint string            `json:"fingerprint,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Raw         json.RawMessage   `json:"raw,omitempty"`
}
