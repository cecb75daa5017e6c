package v1

import (
	"encoding/json"
	"time"
)

// Patch wave states.
const (
	WaveRunning   = "running"
	WaveSucceeded = "succeeded"
	WaveStopped   = "stopped"
	WaveFailed    = "failed"
)

// PatchWaveRequest is the body of POST /v1/patch/waves.
type PatchWaveRequest struct {
	// Gateways, each named, in order (the first are the canaries); an
	// empty list is refused, never "all".
	Gateways []string `json:"gateways"`
	// Packages is "name=version,name2" (version optional: newest).
	Packages string `json:"packages"`
	// Security installs every pending security update.
	Security bool `json:"security"`
	Canary   int  `json:"canary"`
	WaveSize int  `json:"wave_size"`
	// By is deprecated: the caller asks. When set it must name the caller.
	By string `json:"by,omitempty"`
}

// PatchWave is a patch wave's state and, once it ended, its report.
type PatchWave struct {
	ID    string `json:"id"`
	Actor string `json:"actor"`
	// Request is the PatchWaveRequest as the controller recorded it.
	Request json.RawMessage `json:"request"`
	State   string          `json:"state"`
	// Report is the waves' report once the wave ended: waves, outcomes,
	// patched, failed, not_touched, stopped_after_wave, reason, duration.
	Report    json.RawMessage `json:"report,omitempty"`
	Error     string          `json:"error,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Terminal reports whether the wave will not change any more.
func (w PatchWave) Terminal() bool { return w.State != WaveRunning }
