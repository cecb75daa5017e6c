package v1

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"
)

// Indicator is one indicator as a detector submits it to POST
// /v1/indicators (alone, or in an IndicatorBatch) and to POST /v1/plan.
// Empty fields are left out, so that what the controller keeps as the
// indicator's raw form is what was set.
type Indicator struct {
	Kind     string `json:"kind"`
	Gateway  string `json:"gateway"`
	Severity string `json:"severity"`
	// Confidence is 0..1.
	Confidence  float64      `json:"confidence,omitempty"`
	Observables *Observables `json:"observables,omitempty"`
	// ObservedAt defaults to the intake time.
	ObservedAt time.Time `json:"observed_at,omitzero"`
	Source     string    `json:"source,omitempty"`
	Summary    string    `json:"summary,omitempty"`
	// Status is "firing" (default) or "resolved".
	Status string `json:"status,omitempty"`
	// Fingerprint is the dedup key; computed when absent.
	Fingerprint string            `json:"fingerprint,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Raw is the original alert, kept as evidence.
	Raw json.RawMessage `json:"raw,omitempty"`
}

// Observables are the addresses, domains and hashes an indicator names.
type Observables struct {
	IPs     []string `json:"ips,omitempty"`
	Domains []string `json:"domains,omitempty"`
	Hashes  []string `json:"hashes,omitempty"`
}

// IndicatorBatch is several indicators in one POST /v1/indicators.
type IndicatorBatch struct {
	Indicators []Indicator `json:"indicators"`
}

// IntakeResponse is the 202 answer of the intake routes.
type IntakeResponse struct {
	Accepted int        `json:"accepted"`
	Results  []Accepted `json:"results"`
	// Skipped lists the alerts (Alertmanager's, or a detector format's
	// records) that could not be understood.
	// They are in Results too, unmatched with the same reason; they start
	// nothing.
	Skipped []SkippedAlert `json:"skipped,omitempty"`
	// Ignored counts, by record type, the records of a detector's body
	// that are not alerts (a Suricata flow event, a Falco internal
	// record): they are dropped, not stored.
	Ignored map[string]int `json:"ignored,omitempty"`
}

// Accepted is what became of one submitted indicator or alert.
type Accepted struct {
	Index       int    `json:"index"`
	IndicatorID string `json:"indicator_id"`
	Gateway     string `json:"gateway,omitempty"`
	Matched     bool   `json:"matched"`
	Reason      string `json:"unmatched_reason,omitempty"`
	IncidentID  string `json:"incident_id,omitempty"`
	Duplicate   bool   `json:"duplicate,omitempty"`
	Status      string `json:"status,omitempty"`
	Policy      string `json:"policy,omitempty"`
	RunID       string `json:"run_id,omitempty"`
	RunState    string `json:"run_state,omitempty"`
	// Queued says the indicator is stored durably (the intake journal)
	// and is being decided: IncidentID, Policy and RunID are not known in
	// this answer (ask with ?wait=decided, or read the indicator later).
	Queued bool `json:"queued,omitempty"`
}

// SkippedAlert is one alert of an Alertmanager message that could not be
// understood.
type SkippedAlert struct {
	// Index is the alert's position in the message's alerts.
	Index int `json:"index"`
	// Reason names the field.
	Reason string `json:"reason"`
}

// SignatureHeader carries the intake webhook signature when the
// controller has intake.webhook_secret.
const SignatureHeader = "X-Warden-Signature"

// Sign returns the SignatureHeader value for body at time t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>". The
// controller accepts a signature once: sign each delivery, and each retry,
// anew.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(h.Sum(nil))
}
