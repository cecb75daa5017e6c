// Package indicator defines the normalised sign of compromise that every
// intake format is decoded into, and the rules that make one valid.
//
// It owns the Indicator value, its validation and its fingerprint (the key
// used for deduplication). It must not know about HTTP, storage or policy:
// decoders live in package intake, decisions in package policies.
package indicator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// Kind names what an indicator says happened.
type Kind string

// The kinds Warden knows. Policies match on them; an unknown kind is rejected
// at intake so that a typo in a detector does not silently match nothing.
const (
	C2Beacon           Kind = "c2_beacon"
	Exfiltration       Kind = "exfiltration"
	BruteForce         Kind = "brute_force"
	OffHoursAdminLogin Kind = "off_hours_admin_login"
	UnknownDestination Kind = "unknown_destination"
	TrafficSpike       Kind = "traffic_spike"
	ConfigTamper       Kind = "config_tamper"
	IntegrityViolation Kind = "integrity_violation"
	BaselineDrift      Kind = "baseline_drift"
	Crash              Kind = "crash"
	// The gateway's own sensors (agent/sensors) report these too.
	// AuthFailureBurst: many failed logins from one source in a window.
	AuthFailureBurst Kind = "auth_failure_burst"
	// NewAdminSource: an administrator logged in from an address outside
	// the management networks never seen before.
	NewAdminSource Kind = "new_admin_source"
	// ConfigChange: a watched configuration file (tunnels, firewall,
	// sshd, sudoers, cron, units, authorized_keys) changed.
	ConfigChange Kind = "config_change"
)

// Kinds lists every known kind in a stable order.
var Kinds = []Kind{C2Beacon, Exfiltration, BruteForce, OffHoursAdminLogin, UnknownDestination, TrafficSpike, ConfigTamper, IntegrityViolation, BaselineDrift, Crash,
	AuthFailureBurst, NewAdminSource, ConfigChange}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	for _, v := range Kinds {
		if v == k {
			return true
		}
	}
	return false
}

// Severity is how bad the detector thinks the event is.
type Severity string

// Severities in increasing order.
const (
	Low      Severity = "low"
	Medium   Severity = "medium"
	High     Severity = "high"
	Critical Severity = "critical"
)

// Rank orders severities: low=1 … critical=4, unknown=0.
func (s Severity) Rank() int {
	switch s {
	case Low:
		return 1
	case Medium:
		return 2
	case High:
		return 3
	case Critical:
		return 4
	}
	return 0
}

// Status of the underlying alert.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// Observables are the concrete things an indicator points at.
type Observables struct {
	IPs     []string `json:"ips,omitempty"`
	Domains []string `json:"domains,omitempty"`
	Hashes  []string `json:"hashes,omitempty"`
}

// Indicator is one normalised sign of compromise about one gateway.
type Indicator struct {
	// ID is assigned by Warden when the indicator is accepted.
	ID string `json:"id,omitempty"`
	// Kind says what happened.
	Kind Kind `json:"kind"`
	// Gateway is the inventory id of the gateway concerned.
	Gateway string `json:"gateway"`
	// Severity and Confidence (0..1) as reported by the detector.
	Severity   Severity `json:"severity"`
	Confidence float64  `json:"confidence"`
	// Observables: addresses, domains, hashes involved.
	Observables Observables `json:"observables,omitempty"`
	// ObservedAt is when the detector saw it. Defaults to the intake time.
	ObservedAt time.Time `json:"observed_at,omitempty"`
	// Source names the detector (e.g. "suricata", "alertmanager").
	Source string `json:"source"`
	// Summary is a one-line human description.
	Summary string `json:"summary,omitempty"`
	// Status is "firing" (default) or "resolved".
	Status string `json:"status,omitempty"`
	// Fingerprint identifies "the same alert" for deduplication. Computed
	// when absent.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Labels carries free-form key/value context from the source.
	Labels map[string]string `json:"labels,omitempty"`
	// Raw is the original alert, kept for evidence.
	Raw json.RawMessage `json:"raw,omitempty"`
}

// FieldError is a validation failure that names the offending field.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// Validate checks the fields every indicator must have. It does not check the
// gateway against the inventory; the caller does that.
func (in *Indicator) Validate() error {
	if in.Kind == "" {
		return &FieldError{"kind", "is required"}
	}
	if !in.Kind.Valid() {
		return &FieldError{"kind", fmt.Sprintf("unknown kind %q (known: %s)", in.Kind, kindList())}
	}
	if strings.TrimSpace(in.Gateway) == "" {
		return &FieldError{"gateway", "is required"}
	}
	if in.Gateway == "*" || strings.ContainsAny(in.Gateway, "*?") {
		return &FieldError{"gateway", "wildcards are not allowed: name exactly one gateway"}
	}
	if in.Severity == "" {
		return &FieldError{"severity", "is required"}
	}
	if in.Severity.Rank() == 0 {
		return &FieldError{"severity", fmt.Sprintf("unknown severity %q (known: low, medium, high, critical)", in.Severity)}
	}
	if in.Confidence < 0 || in.Confidence > 1 {
		return &FieldError{"confidence", "must be between 0 and 1"}
	}
	switch in.Status {
	case "", StatusFiring, StatusResolved:
	default:
		return &FieldError{"status", fmt.Sprintf("must be %q or %q", StatusFiring, StatusResolved)}
	}
	for i, ip := range in.Observables.IPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return &FieldError{fmt.Sprintf("observables.ips[%d]", i), fmt.Sprintf("%q is not an IP address", ip)}
		}
	}
	if len(in.Source) > 200 {
		return &FieldError{"source", "is longer than 200 characters"}
	}
	return nil
}

func kindList() string {
	s := make([]string, len(Kinds))
	for i, k := range Kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// Normalize fills defaults: status firing, observed time now, fingerprint.
func (in *Indicator) Normalize(now time.Time) {
	if in.Status == "" {
		in.Status = StatusFiring
	}
	if in.ObservedAt.IsZero() {
		in.ObservedAt = now
	}
	if in.Fingerprint == "" {
		in.Fingerprint = in.ComputeFingerprint()
	}
}

// ComputeFingerprint hashes what makes two indicators "the same alert":
// gateway, kind, source and the sorted observables. Time, severity and
// status are excluded so repeats and resolutions collapse together.
func (in *Indicator) ComputeFingerprint() string {
	h := sha256.New()
	write := func(s string) { h.Write([]byte(s)); h.Write([]byte{0}) }
	write(in.Gateway)
	write(string(in.Kind))
	write(in.Source)
	for _, list := range [][]string{in.Observables.IPs, in.Observables.Domains, in.Observables.Hashes} {
		c := append([]string(nil), list...)
		sort.Strings(c)
		for _, v := range c {
			write(v)
		}
		write("|")
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}
