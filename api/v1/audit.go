package v1

import "encoding/json"

// AuditVerification is the answer of GET /v1/audit/verify: Entries and
// Head when the chain is intact (OK), FirstBadEntry and Reason when it is
// not. Only the fields of its case are sent.
type AuditVerification struct {
	Entries       int64  `json:"entries"`
	FirstBadEntry int64  `json:"first_bad_entry"`
	Head          string `json:"head"`
	OK            bool   `json:"ok"`
	Reason        string `json:"reason"`
}

// MarshalJSON sends the fields of the verdict's case, in the order v1
// always sent them: an intact chain of no entries still says "entries": 0.
func (a AuditVerification) MarshalJSON() ([]byte, error) {
	if a.OK {
		return json.Marshal(struct {
			Entries int64  `json:"entries"`
			Head    string `json:"head"`
			OK      bool   `json:"ok"`
		}{a.Entries, a.Head, true})
	}
	return json.Marshal(struct {
		FirstBadEntry int64  `json:"first_bad_entry"`
		OK            bool   `json:"ok"`
		Reason        string `json:"reason"`
	}{a.FirstBadEntry, false, a.Reason})
}
