package actions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

// GatewayAgent is what every action that acts through a gateway's agent
// needs first: to know that the agent can be reached.
type GatewayAgent interface {
	// CheckAgent returns nil when gw's agent can be reached from here; an
	// error wrapping ErrUnsupported when gw has no agent (so Combine skips
	// the OS layer); a terminal error when no client can be built for it.
	CheckAgent(gw inventory.Gateway) error
}

// VolatileCapturer collects volatile evidence on a gateway
// (providers/linux's AgentPool, through the gateway's agent).
type VolatileCapturer interface {
	GatewayAgent
	// CaptureVolatile records connections, processes, routes, firewall
	// rules, tunnel state, users and log tails, each with its SHA-256.
	// Every call captures anew: the action asks its EvidenceSink first.
	CaptureVolatile(ctx context.Context, gw inventory.Gateway, incident string) (wire.CaptureResult, error)
}

// StoredArtefact is what the controller kept of one captured artefact.
type StoredArtefact struct {
	Name     string `json:"name"`
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	Evidence string `json:"evidence_id,omitempty"`
	Error    string `json:"error,omitempty"`
}

// EvidenceSink keeps captured artefacts as evidence with chain of custody.
// Captured reports what was already stored under an idempotency key, so a
// retried or resumed step does not capture twice.
type EvidenceSink interface {
	Captured(ctx context.Context, incident, key string) ([]StoredArtefact, bool, error)
	StoreCapture(ctx context.Context, incident string, gw inventory.Gateway, key string, res wire.CaptureResult) ([]StoredArtefact, error)
	// VerifyStored re-hashes what was stored under key.
	VerifyStored(ctx context.Context, incident, key string) error
}

// NewCaptureVolatile returns capture_volatile: the gateway's volatile
// state, captured once per step through c and kept in sink, each
// artefact's hash checked on arrival and again by Verify.
func NewCaptureVolatile(c VolatileCapturer, sink EvidenceSink) Action {
	return &captureAction{c: c, sink: sink}
}

type captureAction struct {
	c    VolatileCapturer
	sink EvidenceSink
}

func (a *captureAction) Name() string  { return NameCaptureVolatile }
func (a *captureAction) Layer() string { return "os" }

func (a *captureAction) Plan(_ context.Context, req Request) (Change, error) {
	if err := a.c.CheckAgent(req.Gateway); err != nil {
		return Change{}, err
	}
	return Change{Summary: "collect volatile evidence on " + req.Gateway.ID + " through its agent at " + hostOf(req.Gateway.Agent),
		Changes: []string{"store connections, processes, routes, firewall rules, tunnel state, users and log tails with SHA-256 and custody records"}}, nil
}

func (a *captureAction) Apply(ctx context.Context, req Request) (Result, error) {
	if err := a.c.CheckAgent(req.Gateway); err != nil {
		return Result{}, err
	}
	if stored, ok, err := a.sink.Captured(ctx, req.Incident, req.IdempotencyKey); err != nil {
		return Result{}, err
	} else if ok {
		return Result{Changed: false, Summary: fmt.Sprintf("volatile evidence already captured (%d artefacts)", len(stored)),
			Details: map[string]any{"artefacts": stored}}, nil
	}
	res, err := a.c.CaptureVolatile(ctx, req.Gateway, req.Incident)
	if err != nil {
		return Result{}, err
	}
	for _, art := range res.Artefacts {
		sum := sha256.Sum256(art.Content)
		if hex.EncodeToString(sum[:]) != art.SHA256 {
			return Result{}, fmt.Errorf("artefact %s from %s does not match its SHA-256 (damaged in transit?)", art.Name, req.Gateway.ID)
		}
	}
	stored, err := a.sink.StoreCapture(ctx, req.Incident, req.Gateway, req.IdempotencyKey, res)
	if err != nil {
		return Result{}, fmt.Errorf("storing evidence from %s: %w", req.Gateway.ID, err)
	}
	failed := 0
	for _, s := range stored {
		if s.Error != "" {
			failed++
		}
	}
	summary := fmt.Sprintf("captured %d artefacts from %s", len(stored), req.Gateway.ID)
	if failed > 0 {
		summary += fmt.Sprintf(" (%d collectors reported errors)", failed)
	}
	return Result{Changed: true, Summary: summary, Details: map[string]any{"artefacts": stored}}, nil
}

func (a *captureAction) Verify(ctx context.Context, req Request) (Result, error) {
	if err := a.c.CheckAgent(req.Gateway); err != nil {
		return Result{}, err
	}
	if err := a.sink.VerifyStored(ctx, req.Incident, req.IdempotencyKey); err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrNotVerified, err)
	}
	return Result{Summary: "evidence hashes verified"}, nil
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable agent URL)"
	}
	return u.Host
}
