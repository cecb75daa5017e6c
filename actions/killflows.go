package actions

import (
	"context"
	"errors"
	"fmt"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

// FlowKiller deletes the tracked flows a quarantine kept for the capture
// (providers/linux's AgentPool, through the gateway's agent).
type FlowKiller interface {
	GatewayAgent
	ObserveOS(ctx context.Context, gw inventory.Gateway) (wire.State, error)
	KillFlowsOS(ctx context.Context, gw inventory.Gateway) (wire.KillFlowsResult, error)
}

// NewKillFlows returns kill_flows: after an isolate with flows: keep and
// the capture that recorded them, the attacker's tracked flows are deleted
// (safety invariant 6: isolation kills established sessions, not only new
// ones). A gateway without an agent, or a controller with no agents (k
// nil), has no OS flow table to clear: its isolation is the VM's
// portgroup, which cut its sessions, and the step succeeds saying so.
func NewKillFlows(k FlowKiller) Action { return &killFlows{k: k} }

type killFlows struct{ k FlowKiller }

func (a *killFlows) Name() string  { return NameKillFlows }
func (a *killFlows) Layer() string { return "os" }

// noAgent reports whether gw has no agent to kill flows through.
func (a *killFlows) noAgent(gw inventory.Gateway) (bool, error) {
	if a.k == nil {
		return true, nil
	}
	err := a.k.CheckAgent(gw)
	if errors.Is(err, ErrUnsupported) {
		return true, nil
	}
	return false, err
}

func (a *killFlows) Plan(ctx context.Context, req Request) (Change, error) {
	if none, err := a.noAgent(req.Gateway); none || err != nil {
		return Change{Summary: req.Gateway.ID + " has no agent: no OS flow table to clear"}, err
	}
	st, err := a.k.ObserveOS(ctx, req.Gateway)
	if err != nil {
		return Change{}, err
	}
	if st.Quarantined && !st.FlowsKept {
		return Change{Summary: "no flows kept on " + req.Gateway.ID + "; delete any tracked flow left outside management"}, nil
	}
	return Change{Summary: "kill the tracked flows of " + req.Gateway.ID + " outside management", Changes: []string{
		"delete every connection tracking entry (IPv4 and IPv6) whose addresses all lie outside the management networks",
	}}, nil
}

func (a *killFlows) Apply(ctx context.Context, req Request) (Result, error) {
	if none, err := a.noAgent(req.Gateway); none || err != nil {
		return Result{Summary: req.Gateway.ID + " has no agent: its sessions were cut with its VM's network"}, err
	}
	res, err := a.k.KillFlowsOS(ctx, req.Gateway)
	if err != nil {
		return Result{}, err
	}
	return Result{Changed: res.Changed, Summary: fmt.Sprintf("killed %d tracked flows of %s", res.Killed, req.Gateway.ID),
		Details: map[string]any{"killed_flows": res.Killed, "were_kept": res.WereKept}}, nil
}

func (a *killFlows) Verify(ctx context.Context, req Request) (Result, error) {
	if none, err := a.noAgent(req.Gateway); none || err != nil {
		return Result{Summary: req.Gateway.ID + " has no agent"}, err
	}
	st, err := a.k.ObserveOS(ctx, req.Gateway)
	if err != nil {
		return Result{}, err
	}
	if !st.Quarantined || st.FlowsKept {
		return Result{}, fmt.Errorf("agent on %s reports quarantined=%t flows_kept=%t: %w", req.Gateway.ID, st.Quarantined, st.FlowsKept, ErrNotVerified)
	}
	return Result{Summary: "the quarantine of " + req.Gateway.ID + " keeps no tracked flow"}, nil
}
