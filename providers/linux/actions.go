package linux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

// AgentPool hands out one client per gateway agent URL. It is what the
// catalogue's actions need from a Linux gateway, each call through the
// gateway's agent.
type AgentPool struct {
	tls  AgentTLS
	log  *slog.Logger
	mu   sync.Mutex
	byID map[string]*AgentClient
	// quarantineCapture, when set, is the packet capture every OS
	// quarantine starts (config capture.on_isolate).
	quarantineCapture *wire.CaptureSpec
}

var (
	_ actions.VolatileCapturer    = (*AgentPool)(nil)
	_ actions.OSQuarantine        = (*AgentPool)(nil)
	_ actions.CheckedOSQuarantine = (*AgentPool)(nil)
	_ actions.BaselineVerifier    = (*AgentPool)(nil)
	_ actions.Patcher             = (*AgentPool)(nil)
	_ actions.PeerBlocker         = (*AgentPool)(nil)
)

// NewAgentPool makes clients with the controller's mTLS material.
func NewAgentPool(t AgentTLS, log *slog.Logger) *AgentPool {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &AgentPool{tls: t, log: log, byID: map[string]*AgentClient{}}
}

// CaptureOnQuarantine makes every OS quarantine start a packet capture of
// spec on the gateway (nil: none). Call it before the pool is used.
func (p *AgentPool) CaptureOnQuarantine(spec *wire.CaptureSpec) { p.quarantineCapture = spec }

// For returns the client for gw's agent; a gateway without an agent gets
// ErrUnsupported (terminal), so combined actions skip the OS layer.
func (p *AgentPool) For(gw inventory.Gateway) (*AgentClient, error) {
	if gw.Agent == "" {
		return nil, fmt.Errorf("gateway %s has no agent configured: %w", gw.ID, actions.ErrUnsupported)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.byID[gw.ID]; ok {
		return c, nil
	}
	c, err := NewAgentClient(gw.Agent, p.tls, p.log.With("gateway", gw.ID))
	if err != nil {
		return nil, actions.Terminal(fmt.Errorf("building agent client for %s: %w", gw.ID, err))
	}
	p.byID[gw.ID] = c
	return c, nil
}

// Close drops idle connections.
func (p *AgentPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.byID {
		c.Close()
	}
}

// Agents resolves a gateway's agent.
type Agents interface {
	For(gw inventory.Gateway) (*AgentClient, error)
}

// through runs call on gw's agent; its error says what failed (what names
// the gateway with %s).
func through[T any](agents Agents, gw inventory.Gateway, what string, call func(*AgentClient) (T, error)) (T, error) {
	c, err := agents.For(gw)
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := call(c)
	if err != nil {
		return v, fmt.Errorf("%s: %w", fmt.Sprintf(what, gw.ID), err)
	}
	return v, nil
}

// CheckAgent implements actions.GatewayAgent.
func (p *AgentPool) CheckAgent(gw inventory.Gateway) error {
	_, err := p.For(gw)
	return err
}

// CaptureVolatile implements actions.VolatileCapturer.
func (p *AgentPool) CaptureVolatile(ctx context.Context, gw inventory.Gateway, incident string) (wire.CaptureResult, error) {
	return through(p, gw, "capturing volatile evidence on %s", func(c *AgentClient) (wire.CaptureResult, error) {
		return c.Capture(ctx, wire.CaptureParams{Incident: incident})
	})
}

// Investigate implements actions.Investigator.
func (p *AgentPool) Investigate(ctx context.Context, gw inventory.Gateway, params wire.InvestigateParams) (wire.InvestigateResult, error) {
	return through(p, gw, "investigating %s", func(c *AgentClient) (wire.InvestigateResult, error) {
		return call[wire.InvestigateResult](ctx, c, wire.KindInvestigate, params)
	})
}

// ObserveOS implements actions.OSQuarantine.
func (p *AgentPool) ObserveOS(ctx context.Context, gw inventory.Gateway) (wire.State, error) {
	return observeAgent(ctx, p, gw)
}

// IsolateOS implements actions.OSQuarantine with the agent's
// commit-confirmed quarantine, keeping gw's management networks (and,
// with keepFlows, the tracked flows until KillFlowsOS).
func (p *AgentPool) IsolateOS(ctx context.Context, gw inventory.Gateway, keepFlows bool) (wire.IsolateResult, error) {
	res, _, err := p.IsolateOSChecked(ctx, gw, keepFlows)
	return res, err
}

// IsolateOSChecked implements actions.CheckedOSQuarantine: IsolateOS, with
// the state the agent read back when it confirmed.
func (p *AgentPool) IsolateOSChecked(ctx context.Context, gw inventory.Gateway, keepFlows bool) (wire.IsolateResult, wire.State, error) {
	res, err := through(p, gw, "quarantining %s at the OS", func(c *AgentClient) (checkedIsolate, error) {
		return c.isolateChecked(ctx, wire.IsolateParams{Management: gw.ManagementNetworks, KeepFlows: keepFlows, Capture: p.quarantineCapture})
	})
	if err != nil {
		return res.IsolateResult, wire.State{}, err
	}
	return res.IsolateResult, *res.state, nil
}

// KillFlowsOS implements actions.FlowKiller.
func (p *AgentPool) KillFlowsOS(ctx context.Context, gw inventory.Gateway) (wire.KillFlowsResult, error) {
	return through(p, gw, "killing the kept flows of %s", func(c *AgentClient) (wire.KillFlowsResult, error) { return c.KillFlows(ctx) })
}

// ReleaseOS implements actions.OSQuarantine.
func (p *AgentPool) ReleaseOS(ctx context.Context, gw inventory.Gateway) (bool, error) {
	return through(p, gw, "releasing %s at the OS", func(c *AgentClient) (bool, error) { return c.Release(ctx) })
}

// observeAgent reads the agent's quarantine record and rules of gw.
func observeAgent(ctx context.Context, agents Agents, gw inventory.Gateway) (wire.State, error) {
	return through(agents, gw, "reading quarantine state of %s through its agent", func(c *AgentClient) (wire.State, error) {
		return c.Observe(ctx)
	})
}

// ObserveQuarantine reports whether the gateway's OS quarantine is in force
// (for the controller's reconcile loop).
func ObserveQuarantine(ctx context.Context, agents Agents, gw inventory.Gateway) (bool, wire.State, error) {
	st, err := observeAgent(ctx, agents, gw)
	if err != nil {
		return false, st, err
	}
	ok := st.Quarantined && st.Firewall != nil && st.Firewall.Quarantined && len(st.Firewall.Drift) == 0
	return ok, st, nil
}

// CheckBaseline runs the check through gw's agent and, with rec, records
// it under source.
func CheckBaseline(ctx context.Context, agents Agents, rec actions.BaselineRecorder, gw inventory.Gateway, source string, remediate []string) (wire.BaselineResult, error) {
	res, err := through(agents, gw, "checking the baseline of %s", func(c *AgentClient) (wire.BaselineResult, error) {
		return c.Baseline(ctx, wire.BaselineParams{Management: gw.ManagementNetworks, RecordManifest: true, Remediate: remediate})
	})
	if err != nil || rec == nil {
		return res, err
	}
	return res, rec.RecordBaseline(ctx, gw, source, res)
}

// VerifyBaseline implements actions.BaselineVerifier.
func (p *AgentPool) VerifyBaseline(ctx context.Context, gw inventory.Gateway, remediate []string) (wire.BaselineResult, error) {
	return CheckBaseline(ctx, p, nil, gw, "", remediate)
}

// Patch implements actions.Patcher with apt on the gateway.
func (p *AgentPool) Patch(ctx context.Context, gw inventory.Gateway, params wire.PatchParams) (wire.PatchResult, error) {
	what := "patching %s"
	if params.VerifyOnly {
		what = "reading versions back from %s"
	}
	return through(p, gw, what, func(c *AgentClient) (wire.PatchResult, error) { return c.Patch(ctx, params) })
}

// SanctionPatch implements actions.Patcher. An agent older than manifest
// re-records refuses the field: that is nil and no error.
func (p *AgentPool) SanctionPatch(ctx context.Context, gw inventory.Gateway, packages []string) (*wire.ManifestSanction, error) {
	br, err := through(p, gw, "re-recording the integrity manifest of %s after the verified patch", func(c *AgentClient) (wire.BaselineResult, error) {
		return c.Baseline(ctx, wire.BaselineParams{Management: gw.ManagementNetworks, SanctionPackages: packages})
	})
	if err != nil && !agentLacksField(err, "sanction_packages") {
		return nil, err
	}
	return br.Sanction, nil
}

// agentLacksField reports whether the agent refused a command for a
// parameter it does not know (an agent older than the controller): agents
// decode parameters strictly and answer 400 naming the field.
func agentLacksField(err error, field string) bool {
	var ae *AgentError
	return errors.As(err, &ae) && ae.Status == http.StatusBadRequest && strings.Contains(ae.Message, `unknown field "`+field+`"`)
}

// Block implements actions.PeerBlocker: at drops every packet from and to
// peer's addresses (BlockPeer).
func (p *AgentPool) Block(ctx context.Context, at, peer inventory.Gateway) (bool, error) {
	if at.Agent == "" {
		return false, fmt.Errorf("%s has no agent: %w", at.ID, actions.ErrUnsupported)
	}
	res, err := BlockPeer(ctx, p, at, wire.BlockParams{Peer: peer.ID, Addresses: peer.Addresses})
	return res.Changed, err
}

// VerifyBlocked implements actions.PeerBlocker (PeerBlocked).
func (p *AgentPool) VerifyBlocked(ctx context.Context, at, peer inventory.Gateway) error {
	if at.Agent == "" {
		return fmt.Errorf("%s has no agent: %w", at.ID, actions.ErrUnsupported)
	}
	return PeerBlocked(ctx, p, at, wire.BlockParams{Peer: peer.ID, Addresses: peer.Addresses})
}
