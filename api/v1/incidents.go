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
