package v1

import "time"

// Block is a fleet-wide block of remote addresses (block_ioc at every
// gateway with an agent).
type Block struct {
	// Number is the block's rule number (OpenC2 slpf:rule_number).
	Number   int64    `json:"number"`
	Prefixes []string `json:"prefixes"`
	// Domains are recorded, never blocked (a packet filter cannot).
	Domains    []string `json:"domains,omitempty"`
	Source     string   `json:"source"`
	Ref        string   `json:"ref,omitempty"`
	Name       string   `json:"name,omitempty"`
	Kind       string   `json:"kind,omitempty"`
	TLP        string   `json:"tlp,omitempty"`
	Confidence float64  `json:"confidence,omitempty"`
	// State: pending_approval, active, withdrawn, expired, refused, noted.
	State string `json:"state"`
	// Unsafe says why the block needs a person's approval.
	Unsafe      []string          `json:"unsafe,omitempty"`
	RequestedBy string            `json:"requested_by"`
	DecidedBy   string            `json:"decided_by,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	ValidFrom   time.Time         `json:"valid_from"`
	ExpiresAt   time.Time         `json:"expires_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

// GatewayBlocks is what a gateway held at the leader's last pass.
type GatewayBlocks struct {
	Gateway string    `json:"gateway"`
	Count   int       `json:"count"`
	Digest  string    `json:"digest,omitempty"`
	InSync  bool      `json:"in_sync"`
	Error   string    `json:"error,omitempty"`
	At      time.Time `json:"at"`
}

// BlockList is the answer of GET /v1/blocks.
type BlockList struct {
	Blocks   []Block         `json:"blocks"`
	Gateways []GatewayBlocks `json:"gateways"`
}

// BlockRequest is the body of POST /v1/blocks.
type BlockRequest struct {
	// Prefixes are addresses or CIDRs to block at every gateway.
	Prefixes []string `json:"prefixes"`
	Name     string   `json:"name,omitempty"`
	// Kind is what the addresses are (c2_beacon by default).
	Kind string `json:"kind,omitempty"`
	// Ref makes the request idempotent: the same ref again returns the
	// recorded block.
	Ref string `json:"ref,omitempty"`
	// ValidUntil ends the block (default: blocks.default_ttl from now).
	ValidUntil time.Time `json:"valid_until,omitzero"`
}

// BlockDecision is the body of approve, refuse and withdraw.
type BlockDecision struct {
	Reason string `json:"reason,omitempty"`
}

// ThreatIntakeResponse answers POST /v1/intake/stix and /v1/intake/misp:
// a block per indicator or attribute that names addresses, the objects
// that could not be understood (with why), and the counts of object types
// that are not indicators.
type ThreatIntakeResponse struct {
	Blocks  []ThreatBlock   `json:"blocks"`
	Skipped []ThreatSkipped `json:"skipped,omitempty"`
	Ignored map[string]int  `json:"ignored,omitempty"`
}

// ThreatBlock is the block one indicator became.
type ThreatBlock struct {
	Ref     string `json:"ref"`
	Number  int64  `json:"number"`
	State   string `json:"state"`
	Created bool   `json:"created"`
	// Unsafe says why it waits for approval.
	Unsafe []string `json:"unsafe,omitempty"`
}

// ThreatSkipped is an object that could not be understood.
type ThreatSkipped struct {
	Ref    string `json:"ref,omitempty"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}
