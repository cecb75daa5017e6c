package v1

// InvestigationRunbook is the runbook POST
// /v1/incidents/{id}/investigations starts (in the default policies).
const InvestigationRunbook = "investigate-intrusion"

// StartInvestigationRequest is the body of POST
// /v1/incidents/{id}/investigations (may be empty).
type StartInvestigationRequest struct {
	// Since is how far before the incident's first sign the window
	// starts ("24h", "90m"); empty: investigate.look_back.
	Since string `json:"since,omitempty"`
}

// CaptureRunbook is the runbook POST /v1/gateways/{id}/captures starts (in
// the default policies).
const CaptureRunbook = "packet-capture"

// CaptureRequest is the body of POST /v1/gateways/{id}/captures.
type CaptureRequest struct {
	// Op is start or stop.
	Op string `json:"op"`
	// Duration ("10m"), MaxBytes and Filter shape a start; empty or zero
	// take capture.duration, capture.max_bytes and capture.filter.
	Duration string `json:"duration,omitempty"`
	MaxBytes int64  `json:"max_bytes,omitempty"`
	Filter   string `json:"filter,omitempty"`
}
