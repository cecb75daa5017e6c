package actions

import (
	"context"
	"fmt"
	"strings"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

// OSQuarantine is what the OS layer of isolate and release needs from a
// gateway (providers/linux's AgentPool, through the gateway's agent). A
// gateway without an agent is an error wrapping ErrUnsupported, so
// Combine skips the layer. IsolateOS and ReleaseOS are idempotent: the
// same call twice reports Changed=false the second time.
type OSQuarantine interface {
	// ObserveOS reads the agent's quarantine record and, from the
	// kernel, the rules in force.
	ObserveOS(ctx context.Context, gw inventory.Gateway) (wire.State, error)
	// IsolateOS puts the quarantine in force for IPv4 and IPv6, keeping
	// gw's management networks, and confirms it only after reaching the
	// agent through it: otherwise the agent reverts it by itself. With
	// keepFlows the tracked flows stay (their packets dropped) for the
	// capture, until kill_flows.
	IsolateOS(ctx context.Context, gw inventory.Gateway, keepFlows bool) (wire.IsolateResult, error)
	// ReleaseOS removes Warden's rules (only those) and brings the tunnel
	// links back.
	ReleaseOS(ctx context.Context, gw inventory.Gateway) (changed bool, err error)
}

// CheckedOSQuarantine is an OSQuarantine whose isolate also returns the
// agent's state as read back when it confirmed: the record and the rules
// in the kernel, read after they went in, once a new connection through
// the quarantine reached the agent (providers/linux's AgentPool). The OS
// isolate then needs no separate read-back (ApplyVerifier).
type CheckedOSQuarantine interface {
	IsolateOSChecked(ctx context.Context, gw inventory.Gateway, keepFlows bool) (wire.IsolateResult, wire.State, error)
}

// NewOSIsolate returns the OS layer of isolate: the agent's quarantine,
// commit-confirmed only after the controller has reached the agent
// through it. Management networks come from the inventory. Undo releases.
//
// The step's param flows is "kill" (the default: established flows are
// deleted with the rules in force) or "keep": the drop rules go in first
// and the connection tracking table stays as it is, so that a capture
// under quarantine still records the attacker's flows; a kill_flows step
// deletes them after it (evidence first without the attacker last).
func NewOSIsolate(q OSQuarantine) Action {
	if cq, ok := q.(CheckedOSQuarantine); ok {
		return &checkedOSIsolate{osIsolate: &osIsolate{q: q}, cq: cq}
	}
	return &osIsolate{q: q}
}

// NewOSRelease returns the OS layer of release.
func NewOSRelease(q OSQuarantine) Action { return &osRelease{q: q} }

var _ Undoer = (*osIsolate)(nil)

type osIsolate struct{ q OSQuarantine }

func (a *osIsolate) Name() string  { return NameIsolate }
func (a *osIsolate) Layer() string { return "os" }

func (a *osIsolate) Plan(ctx context.Context, req Request) (Change, error) {
	st, err := a.q.ObserveOS(ctx, req.Gateway)
	if err != nil {
		return Change{}, err
	}
	if st.Quarantined && st.Confirmed && st.Firewall != nil && st.Firewall.Quarantined && len(st.Firewall.Drift) == 0 {
		return Change{Summary: req.Gateway.ID + " OS quarantine already in force"}, nil
	}
	keep, err := keepFlowsParam(req)
	if err != nil {
		return Change{}, err
	}
	flows := "kill established flows other than management"
	if keep {
		flows = "keep the connection tracking table for the capture (its flows' packets are dropped); kill_flows deletes them"
	}
	return Change{Summary: "quarantine " + req.Gateway.ID + " at the OS (IPv4 and IPv6)", Changes: []string{
		"drop all traffic in INPUT, OUTPUT and FORWARD except loopback and management " + strings.Join(req.Gateway.ManagementNetworks, ", "),
		flows,
		"bring tunnel links down and terminate IPsec SAs",
		"agent reverts by itself unless the controller confirms it can still reach it",
	}}, nil
}

// keepFlowsParam reads isolate's flows param: "kill" (default) or "keep".
func keepFlowsParam(req Request) (bool, error) {
	switch v := req.Params["flows"]; v {
	case "", "kill":
		return false, nil
	case "keep":
		return true, nil
	default:
		return false, Terminal(fmt.Errorf("reading param %q: %q is not kill or keep", "flows", v))
	}
}

func (a *osIsolate) Apply(ctx context.Context, req Request) (Result, error) {
	keep, err := keepFlowsParam(req)
	if err != nil {
		return Result{}, err
	}
	res, err := a.q.IsolateOS(ctx, req.Gateway, keep)
	if err != nil {
		return Result{}, err
	}
	return isolateResult(req, keep, res), nil
}

// checkedOSIsolate is the OS isolate over a quarantine that answers with
// the state it confirmed (CheckedOSQuarantine).
type checkedOSIsolate struct {
	*osIsolate
	cq CheckedOSQuarantine
}

var (
	_ Undoer        = (*checkedOSIsolate)(nil)
	_ ApplyVerifier = (*checkedOSIsolate)(nil)
)

// ApplyVerified implements ApplyVerifier: the state the agent read back
// when it confirmed is judged as Verify judges a fresh read-back, and
// reaching the agent for it already proved the management path through
// the quarantine.
//
// Flows to kill (flows: kill, the default) are killed after the proof: the
// quarantine goes in keeping them, is confirmed and read back, and only
// then are they deleted. The drop rules already stop their packets; the
// kill walks the kernel's whole connection table (about 10 ms even when
// it is nearly empty) and need not stand between the alert and the proof
// of its containment. The step still finishes only once they are killed,
// and its result counts them.
func (a *checkedOSIsolate) ApplyVerified(ctx context.Context, req Request) (Result, Result, error) {
	keep, err := keepFlowsParam(req)
	if err != nil {
		return Result{}, Result{}, err
	}
	killer, killAfter := a.q.(flowKillerOS)
	killAfter = killAfter && !keep
	res, st, err := a.cq.IsolateOSChecked(ctx, req.Gateway, keep || killAfter)
	if err != nil {
		return Result{}, Result{}, err
	}
	vres, err := verifiedIsolation(req, st)
	if err != nil {
		return isolateResult(req, keep, res), Result{}, fmt.Errorf("verifying: %w", err)
	}
	if !killAfter {
		return isolateResult(req, keep, res), vres, nil
	}
	stampVerified(&vres) // proved now; the kill follows
	kr, err := killer.KillFlowsOS(ctx, req.Gateway)
	if err != nil {
		return isolateResult(req, keep, res), Result{}, fmt.Errorf("killing the established flows once the quarantine was verified: %w", err)
	}
	res.KilledFlows = kr.Killed
	res.Changed = res.Changed || kr.Changed
	return isolateResult(req, keep, res), vres, nil
}

// flowKillerOS is the part of FlowKiller the OS isolate kills flows with
// after its proof.
type flowKillerOS interface {
	KillFlowsOS(ctx context.Context, gw inventory.Gateway) (wire.KillFlowsResult, error)
}

// isolateResult describes an applied OS isolate.
func isolateResult(req Request, keep bool, res wire.IsolateResult) Result {
	summary := "OS quarantine of " + req.Gateway.ID + " already in force"
	switch {
	case res.Changed && keep:
		summary = fmt.Sprintf("OS quarantine of %s in force and confirmed, tracked flows kept for the capture (links down: %v)", req.Gateway.ID, res.LinksDown)
	case res.Changed:
		summary = fmt.Sprintf("OS quarantine of %s in force and confirmed (killed %d flows, links down: %v)", req.Gateway.ID, res.KilledFlows, res.LinksDown)
	}
	return Result{Changed: res.Changed, Summary: summary, Details: map[string]any{
		"generation": res.Generation, "management": res.Management, "killed_flows": res.KilledFlows, "flows_kept": keep,
		"links_down": res.LinksDown, "sas_terminated": res.SAsTerminated, "warnings": res.Warnings}}
}

func (a *osIsolate) Verify(ctx context.Context, req Request) (Result, error) {
	st, err := a.q.ObserveOS(ctx, req.Gateway)
	if err != nil {
		return Result{}, err
	}
	return verifiedIsolation(req, st)
}

// verifiedIsolation judges an agent's state read back after an isolate.
func verifiedIsolation(req Request, st wire.State) (Result, error) {
	switch {
	case !st.Quarantined || !st.Confirmed:
		return Result{}, fmt.Errorf("agent on %s reports quarantined=%t confirmed=%t: %w", req.Gateway.ID, st.Quarantined, st.Confirmed, ErrNotVerified)
	case st.Firewall == nil || !st.Firewall.Quarantined:
		return Result{}, fmt.Errorf("rules on %s are not enforced for IPv4 and IPv6: %w", req.Gateway.ID, ErrNotVerified)
	case len(st.Firewall.Drift) > 0:
		return Result{}, fmt.Errorf("rules on %s drifted (%s): %w", req.Gateway.ID, strings.Join(st.Firewall.Drift, "; "), ErrNotVerified)
	}
	// Reaching the agent to read this back proves the management path
	// survived the quarantine.
	return Result{Summary: "OS quarantine enforced (v4+v6, backend " + st.Firewall.Backend + "), agent reachable over management",
		Details: map[string]any{"generation": st.Generation, "backend": st.Firewall.Backend}}, nil
}

// Undo lifts the quarantine.
func (a *osIsolate) Undo(ctx context.Context, req Request) (Result, error) {
	return (&osRelease{q: a.q}).Apply(ctx, req)
}

type osRelease struct{ q OSQuarantine }

func (a *osRelease) Name() string  { return NameRelease }
func (a *osRelease) Layer() string { return "os" }

func (a *osRelease) Plan(ctx context.Context, req Request) (Change, error) {
	st, err := a.q.ObserveOS(ctx, req.Gateway)
	if err != nil {
		return Change{}, err
	}
	if !st.Quarantined && (st.Firewall == nil || st.Firewall.Absent) {
		return Change{Summary: req.Gateway.ID + " has no OS quarantine"}, nil
	}
	return Change{Summary: "lift the OS quarantine of " + req.Gateway.ID, Changes: []string{
		"remove Warden's rules (only those)", "bring back tunnel links: " + strings.Join(st.LinksDown, ", ")}}, nil
}

func (a *osRelease) Apply(ctx context.Context, req Request) (Result, error) {
	changed, err := a.q.ReleaseOS(ctx, req.Gateway)
	if err != nil {
		return Result{}, err
	}
	s := "OS quarantine of " + req.Gateway.ID + " lifted"
	if !changed {
		s = req.Gateway.ID + " had no OS quarantine"
	}
	return Result{Changed: changed, Summary: s}, nil
}

func (a *osRelease) Verify(ctx context.Context, req Request) (Result, error) {
	st, err := a.q.ObserveOS(ctx, req.Gateway)
	if err != nil {
		return Result{}, err
	}
	if st.Quarantined || st.Firewall == nil || !st.Firewall.Absent {
		return Result{}, fmt.Errorf("%s still shows quarantine rules: %w", req.Gateway.ID, ErrNotVerified)
	}
	return Result{Summary: "no Warden rules left on " + req.Gateway.ID}, nil
}
