package actions

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// QuarantineTargeter is implemented by VM providers that can say where
// isolation puts a NIC, so plans and verifications can name it.
type QuarantineTargeter interface {
	// QuarantineTarget names the network isolated NICs move to ("" when
	// they keep their network) and whether they are also disconnected.
	QuarantineTarget() (network string, disconnect bool)
}

// Power states as VMState reports them.
const (
	PowerStateOn  = "poweredOn"
	PowerStateOff = "poweredOff"
)

// NewSnapshot returns the snapshot action: a vSphere snapshot named
// "warden-<incident>" (param "name" overrides), with memory unless param
// "memory" is "false". It has no Undo: snapshots are evidence.
func NewSnapshot(p VMProvider) Action { return &snapshotAction{p: p} }

// NewIsolate returns the isolate action: every NIC of the gateway's VM goes
// to quarantine and the VM is tagged. Undo releases it.
func NewIsolate(p VMProvider) Action { return &isolateAction{p: p} }

// NewRelease returns the release action: the VM's NICs go back to the
// networks recorded at isolation. Undo isolates again. Param
// "expect_start_connected" (default "true") makes Verify require every NIC
// to connect at power on, as a gateway's NICs do.
func NewRelease(p VMProvider) Action { return &releaseAction{p: p} }

// NewPowerOff returns the power_off action (destructive: the VM's memory,
// and any evidence in it not yet captured, is lost).
func NewPowerOff(p VMProvider) Action { return &powerOffAction{p: p} }

var (
	_ Undoer = (*isolateAction)(nil)
	_ Undoer = (*releaseAction)(nil)
)

// vmOf returns the gateway's VM, or ErrUnsupported when it has none.
func vmOf(action string, req Request) (string, error) {
	if req.Gateway.VM == "" {
		return "", fmt.Errorf("%s on gateway %q: no vm configured: %w", action, req.Gateway.ID, ErrUnsupported)
	}
	return req.Gateway.VM, nil
}

func boolParam(req Request, name string, def bool) (bool, error) {
	v, ok := req.Params[name]
	if !ok || v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, Terminal(fmt.Errorf("reading param %q: %q is not true or false", name, v))
	}
	return b, nil
}

// nicNetworks maps NIC labels to their networks, for Details.
func nicNetworks(st VMState) map[string]string {
	m := make(map[string]string, len(st.NICs))
	for _, n := range st.NICs {
		desc := n.Network
		if !n.Connected {
			desc += " (disconnected)"
		}
		if !n.StartConnected {
			desc += " (not connected at power on)"
		}
		m[n.Label] = desc
	}
	return m
}

// observeForDetails reads state for a Result's details; a failed read only
// leaves the details out, it does not fail the step.
func observeForDetails(ctx context.Context, p VMProvider, vm string) (VMState, bool) {
	st, err := p.ObserveVM(ctx, vm)
	return st, err == nil
}

// ---- snapshot

type snapshotAction struct{ p VMProvider }

func (a *snapshotAction) Name() string { return NameSnapshot }

type snapshotParams struct {
	vm, name, description string
	memory                bool
}

func (a *snapshotAction) params(req Request) (snapshotParams, error) {
	vm, err := vmOf(NameSnapshot, req)
	if err != nil {
		return snapshotParams{}, err
	}
	sp := snapshotParams{vm: vm, name: req.Params["name"]}
	if sp.name == "" {
		if req.Incident == "" {
			return sp, Terminal(fmt.Errorf("naming snapshot of %s: no incident and no param \"name\"", vm))
		}
		sp.name = "warden-" + req.Incident
	}
	if sp.memory, err = boolParam(req, "memory", true); err != nil {
		return sp, err
	}
	sp.description = fmt.Sprintf("Warden evidence snapshot, incident %s, step %s", req.Incident, req.IdempotencyKey)
	return sp, nil
}

func findSnapshot(st VMState, name string) (SnapshotInfo, bool) {
	for _, s := range st.Snapshots {
		if s.Name == name {
			return s, true
		}
	}
	return SnapshotInfo{}, false
}

func (a *snapshotAction) Plan(ctx context.Context, req Request) (Change, error) {
	sp, err := a.params(req)
	if err != nil {
		return Change{}, err
	}
	st, err := a.p.ObserveVM(ctx, sp.vm)
	if err != nil {
		return Change{}, fmt.Errorf("planning snapshot of %s: %w", sp.vm, err)
	}
	if _, ok := findSnapshot(st, sp.name); ok {
		return Change{Summary: fmt.Sprintf("snapshot %q of %s already exists", sp.name, sp.vm)}, nil
	}
	what := "without memory"
	if sp.memory && st.PowerState == PowerStateOn {
		what = "with memory"
	}
	return Change{
		Summary: fmt.Sprintf("take snapshot %q of %s", sp.name, sp.vm),
		Changes: []string{fmt.Sprintf("take snapshot %q of %s %s", sp.name, sp.vm, what)},
	}, nil
}

func (a *snapshotAction) Apply(ctx context.Context, req Request) (Result, error) {
	sp, err := a.params(req)
	if err != nil {
		return Result{}, err
	}
	changed, err := a.p.SnapshotVM(ctx, sp.vm, sp.name, sp.description, sp.memory)
	if err != nil {
		return Result{}, fmt.Errorf("taking snapshot of %s: %w", sp.vm, err)
	}
	summary := fmt.Sprintf("took snapshot %q of %s", sp.name, sp.vm)
	if !changed {
		summary = fmt.Sprintf("snapshot %q of %s already existed", sp.name, sp.vm)
	}
	return Result{Changed: changed, Summary: summary, Details: map[string]any{
		"vm": sp.vm, "snapshot": sp.name, "memory_requested": sp.memory,
	}}, nil
}

// Verify checks that the snapshot exists and, when memory was asked, that
// it holds memory; a VM that is off cannot give memory, and is accepted.
func (a *snapshotAction) Verify(ctx context.Context, req Request) (Result, error) {
	sp, err := a.params(req)
	if err != nil {
		return Result{}, err
	}
	st, err := a.p.ObserveVM(ctx, sp.vm)
	if err != nil {
		return Result{}, fmt.Errorf("verifying snapshot of %s: %w", sp.vm, err)
	}
	s, ok := findSnapshot(st, sp.name)
	if !ok {
		return Result{}, fmt.Errorf("verifying snapshot %q of %s: not found: %w", sp.name, sp.vm, ErrNotVerified)
	}
	if sp.memory && !s.Memory && st.PowerState != PowerStateOff {
		return Result{}, fmt.Errorf("verifying snapshot %q of %s: it has no memory: %w", sp.name, sp.vm, ErrNotVerified)
	}
	return Result{Summary: fmt.Sprintf("snapshot %q of %s exists (memory: %t)", sp.name, sp.vm, s.Memory),
		Details: map[string]any{"vm": sp.vm, "snapshot": s.Name, "memory": s.Memory, "created": s.Created}}, nil
}

// ---- isolate

type isolateAction struct{ p VMProvider }

func (a *isolateAction) Name() string { return NameIsolate }

func target(p VMProvider) (network string, disconnect bool) {
	if t, ok := p.(QuarantineTargeter); ok {
		return t.QuarantineTarget()
	}
	return "", false
}

func (a *isolateAction) Plan(ctx context.Context, req Request) (Change, error) {
	vm, err := vmOf(NameIsolate, req)
	if err != nil {
		return Change{}, err
	}
	st, err := a.p.ObserveVM(ctx, vm)
	if err != nil {
		return Change{}, fmt.Errorf("planning isolation of %s: %w", vm, err)
	}
	if st.Quarantined {
		return Change{Summary: fmt.Sprintf("%s is already quarantined", vm)}, nil
	}
	qnet, disconnect := target(a.p)
	known := qnet != "" || disconnect
	var changes []string
	for _, n := range st.NICs {
		isolated := !n.StartConnected && (qnet == "" || n.Network == qnet) && (!disconnect || !n.Connected)
		if known && isolated {
			continue
		}
		changes = append(changes, fmt.Sprintf("nic '%s': %s -> %s", n.Label, n.Network, isolationTarget(n, qnet, disconnect)))
	}
	changes = append(changes, fmt.Sprintf("tag %s as quarantined", vm))
	return Change{
		Summary: fmt.Sprintf("move %d nics of %s to quarantine", len(changes)-1, vm),
		Changes: changes,
	}, nil
}

// isolationTarget names where isolation puts a NIC, for plans.
func isolationTarget(n NIC, qnet string, disconnect bool) string {
	switch {
	case qnet == "" && !disconnect:
		return "quarantine"
	case qnet == "":
		return n.Network + " (disconnected)"
	case disconnect:
		return qnet + " (disconnected)"
	default:
		return qnet
	}
}

func (a *isolateAction) Apply(ctx context.Context, req Request) (Result, error) {
	vm, err := vmOf(NameIsolate, req)
	if err != nil {
		return Result{}, err
	}
	before, haveBefore := observeForDetails(ctx, a.p, vm)
	changed, err := a.p.IsolateVM(ctx, vm)
	if err != nil {
		return Result{}, fmt.Errorf("isolating %s: %w", vm, err)
	}
	return vmResult(ctx, a.p, vm, changed, "isolated", "was already isolated", before, haveBefore), nil
}

func vmResult(ctx context.Context, p VMProvider, vm string, changed bool, did, already string, before VMState, haveBefore bool) Result {
	r := Result{Changed: changed, Summary: fmt.Sprintf("%s %s", did, vm), Details: map[string]any{"vm": vm}}
	if !changed {
		r.Summary = fmt.Sprintf("%s %s", vm, already)
	}
	if haveBefore {
		r.Details["nics_before"] = nicNetworks(before)
	}
	if after, ok := observeForDetails(ctx, p, vm); ok {
		r.Details["nics_after"] = nicNetworks(after)
		r.Details["quarantined"] = after.Quarantined
	}
	return r
}

func (a *isolateAction) Verify(ctx context.Context, req Request) (Result, error) {
	vm, err := vmOf(NameIsolate, req)
	if err != nil {
		return Result{}, err
	}
	st, err := a.p.ObserveVM(ctx, vm)
	if err != nil {
		return Result{}, fmt.Errorf("verifying isolation of %s: %w", vm, err)
	}
	if !st.Quarantined {
		return Result{}, fmt.Errorf("verifying isolation of %s: not quarantined (nics: %s): %w", vm, describeNICs(st), ErrNotVerified)
	}
	return Result{Summary: fmt.Sprintf("%s is quarantined", vm),
		Details: map[string]any{"vm": vm, "nics": nicNetworks(st)}}, nil
}

// Undo releases the VM.
func (a *isolateAction) Undo(ctx context.Context, req Request) (Result, error) {
	return (&releaseAction{p: a.p}).Apply(ctx, req)
}

func describeNICs(st VMState) string {
	var parts []string
	for _, n := range st.NICs {
		parts = append(parts, fmt.Sprintf("'%s' on %s connected=%t start_connected=%t", n.Label, n.Network, n.Connected, n.StartConnected))
	}
	return strings.Join(parts, "; ")
}

// ---- release

type releaseAction struct{ p VMProvider }

func (a *releaseAction) Name() string { return NameRelease }

func (a *releaseAction) Plan(ctx context.Context, req Request) (Change, error) {
	vm, err := vmOf(NameRelease, req)
	if err != nil {
		return Change{}, err
	}
	st, err := a.p.ObserveVM(ctx, vm)
	if err != nil {
		return Change{}, fmt.Errorf("planning release of %s: %w", vm, err)
	}
	qnet, _ := target(a.p)
	var changes []string
	for _, n := range st.NICs {
		if (qnet != "" && n.Network == qnet) || (st.Quarantined && !n.StartConnected) {
			changes = append(changes, fmt.Sprintf("nic '%s': %s -> its recorded original network", n.Label, n.Network))
		}
	}
	if !st.Quarantined && len(changes) == 0 {
		return Change{Summary: fmt.Sprintf("%s is not quarantined", vm)}, nil
	}
	changes = append(changes, fmt.Sprintf("remove quarantine tag and record from %s", vm))
	return Change{Summary: fmt.Sprintf("restore %d nics of %s", len(changes)-1, vm), Changes: changes}, nil
}

func (a *releaseAction) Apply(ctx context.Context, req Request) (Result, error) {
	vm, err := vmOf(NameRelease, req)
	if err != nil {
		return Result{}, err
	}
	before, haveBefore := observeForDetails(ctx, a.p, vm)
	changed, err := a.p.ReleaseVM(ctx, vm)
	if err != nil {
		return Result{}, fmt.Errorf("releasing %s: %w", vm, err)
	}
	return vmResult(ctx, a.p, vm, changed, "released", "was not quarantined", before, haveBefore), nil
}

func (a *releaseAction) Verify(ctx context.Context, req Request) (Result, error) {
	vm, err := vmOf(NameRelease, req)
	if err != nil {
		return Result{}, err
	}
	wantStart, err := boolParam(req, "expect_start_connected", true)
	if err != nil {
		return Result{}, err
	}
	st, err := a.p.ObserveVM(ctx, vm)
	if err != nil {
		return Result{}, fmt.Errorf("verifying release of %s: %w", vm, err)
	}
	if st.Quarantined {
		return Result{}, fmt.Errorf("verifying release of %s: still quarantined: %w", vm, ErrNotVerified)
	}
	qnet, _ := target(a.p)
	for _, n := range st.NICs {
		if qnet != "" && n.Network == qnet {
			return Result{}, fmt.Errorf("verifying release of %s: nic '%s' is still on %s: %w", vm, n.Label, qnet, ErrNotVerified)
		}
		if wantStart && !n.StartConnected {
			return Result{}, fmt.Errorf("verifying release of %s: nic '%s' does not connect at power on: %w", vm, n.Label, ErrNotVerified)
		}
	}
	return Result{Summary: fmt.Sprintf("%s is released", vm), Details: map[string]any{"vm": vm, "nics": nicNetworks(st)}}, nil
}

// Undo isolates the VM again.
func (a *releaseAction) Undo(ctx context.Context, req Request) (Result, error) {
	return (&isolateAction{p: a.p}).Apply(ctx, req)
}

// ---- power_off

type powerOffAction struct{ p VMProvider }

func (a *powerOffAction) Name() string { return NamePowerOff }

func (a *powerOffAction) Plan(ctx context.Context, req Request) (Change, error) {
	vm, err := vmOf(NamePowerOff, req)
	if err != nil {
		return Change{}, err
	}
	st, err := a.p.ObserveVM(ctx, vm)
	if err != nil {
		return Change{}, fmt.Errorf("planning power off of %s: %w", vm, err)
	}
	if st.PowerState == PowerStateOff {
		return Change{Summary: fmt.Sprintf("%s is already powered off", vm), Destructive: true}, nil
	}
	return Change{
		Summary:     fmt.Sprintf("power off %s", vm),
		Changes:     []string{fmt.Sprintf("power off %s (%s -> %s; memory is lost)", vm, st.PowerState, PowerStateOff)},
		Destructive: true,
	}, nil
}

func (a *powerOffAction) Apply(ctx context.Context, req Request) (Result, error) {
	vm, err := vmOf(NamePowerOff, req)
	if err != nil {
		return Result{}, err
	}
	changed, err := a.p.PowerOffVM(ctx, vm)
	if err != nil {
		return Result{}, fmt.Errorf("powering off %s: %w", vm, err)
	}
	r := Result{Changed: changed, Summary: "powered off " + vm, Details: map[string]any{"vm": vm}}
	if !changed {
		r.Summary = vm + " was already powered off"
	}
	return r, nil
}

func (a *powerOffAction) Verify(ctx context.Context, req Request) (Result, error) {
	vm, err := vmOf(NamePowerOff, req)
	if err != nil {
		return Result{}, err
	}
	st, err := a.p.ObserveVM(ctx, vm)
	if err != nil {
		return Result{}, fmt.Errorf("verifying power off of %s: %w", vm, err)
	}
	if st.PowerState != PowerStateOff {
		return Result{}, fmt.Errorf("verifying power off of %s: power state is %s: %w", vm, st.PowerState, ErrNotVerified)
	}
	return Result{Summary: vm + " is powered off", Details: map[string]any{"vm": vm, "power_state": st.PowerState}}, nil
}
