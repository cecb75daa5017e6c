package v1

import "time"

// Evidence is one artefact in the evidence ledger.
type Evidence struct {
	ID            string    `json:"id"`
	Incident      string    `json:"incident"`
	Gateway       string    `json:"gateway,omitempty"`
	Name          string    `json:"name"`
	MediaType     string    `json:"media_type"`
	Kind          string    `json:"kind"`
	SHA256        string    `json:"sha256"`
	Size          int64     `json:"size"`
	Source        string    `json:"source,omitempty"`
	CollectedAt   time.Time `json:"collected_at"`
	CollectedBy   string    `json:"collected_by"`
	CollectedFrom string    `json:"collected_from,omitempty"`
	StoredAt      time.Time `json:"stored_at"`
	Note          string    `json:"note,omitempty"`
}

// Custody is one event in an artefact's chain of custody: who did what
// with it, and when. The actor is the authenticated caller for events
// written through the API.
type Custody struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Detail string    `json:"detail,omitempty"`
}

// EvidenceList is the answer of GET /v1/incidents/{id}/evidence.
type EvidenceList struct {
	Evidence []Evidence `json:"evidence"`
}

// EvidenceDetail is the answer of GET /v1/evidence/{id}: the record and
// its chain of custody, which now ends with this access.
type EvidenceDetail struct {
	Evidence Evidence  `json:"evidence"`
	Custody  []Custody `json:"custody"`
}
