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
