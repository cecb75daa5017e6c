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

// NewIsolate returns the isolate action: every NIC of the gateway's VM
// except its declared management NICs (inventory management_nics) goes to
// quarantine and the VM is tagged; the management NICs stay on their
// network, or move to the gateway's management_portgroup, connected. A
// declaration the provider cannot honour, or that does not fit the VM, is a
// terminal error at Plan and Apply. Undo releases it.
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

// observeVMOf reads the state of the gateway's VM for a Plan or a Verify;
// doing names that for the error ("planning isolation").
func observeVMOf(ctx context.Context, p VMProvider, action string, req Request, doing string) (string, VMState, error) {
	vm, err := vmOf(action, req)
	if err != nil {
		return "", VMState{}, err
	}
	st, err := p.ObserveVM(ctx, vm)
	if err != nil {
		return "", VMState{}, fmt.Errorf("%s of %s: %w", doing, vm, err)
	}
	return vm, st, nil
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

// observe reads the params and the VM they name; doing names the step for
// the error ("planning").
func (a *snapshotAction) observe(ctx context.Context, req Request, doing string) (snapshotParams, VMState, error) {
	sp, err := a.params(req)
	if err != nil {
		return sp, VMState{}, err
	}
	st, err := a.p.ObserveVM(ctx, sp.vm)
	if err != nil {
		return sp, VMState{}, fmt.Errorf("%s snapshot of %s: %w", doing, sp.vm, err)
	}
	return sp, st, nil
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
	sp, st, err := a.observe(ctx, req, "planning")
	if err != nil {
		return Change{}, err
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
	if epoch := FenceEpoch(ctx); epoch != 0 {
		// vCenter keeps a snapshot's description, not a task's: the
		// snapshot names the lease epoch it was taken under.
		sp.description += fmt.Sprintf(", lease epoch %d", epoch)
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
	sp, st, err := a.observe(ctx, req, "verifying")
	if err != nil {
		return Result{}, err
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

// Plan lists the NICs that would move. With management NICs declared it
// checks the declaration against the VM first (a NIC it names that the VM
// lacks is a terminal error, as it is at Apply) and says where each
// management NIC stays; without one it warns that the agent will be cut
// off, so the plan can say which later steps are left to people.
func (a *isolateAction) Plan(ctx context.Context, req Request) (Change, error) {
	vm, st, err := observeVMOf(ctx, a.p, NameIsolate, req, "planning isolation")
	if err != nil {
		return Change{}, err
	}
	keep := ManagementOf(req.Gateway)
	mgmt, err := a.management(vm, keep, st)
	if err != nil {
		return Change{}, fmt.Errorf("planning isolation of %s: %w", vm, err)
	}
	qnet, disconnect := target(a.p)
	known := qnet != "" || disconnect
	var changes, kept []string
	for _, n := range st.NICs {
		if mgmt[n.Key] {
			want, moves := managementTarget(n, keep, qnet)
			if moves {
				changes = append(changes, fmt.Sprintf("nic '%s' (management): %s -> %s", n.Label, n.Network, want))
			}
			if !n.StartConnected || (!n.Connected && st.PowerState == PowerStateOn) {
				changes = append(changes, fmt.Sprintf("nic '%s' (management): connect it (and at power on)", n.Label))
			}
			kept = append(kept, fmt.Sprintf("'%s' on %s", n.Label, want))
			continue
		}
		isolated := !n.StartConnected && (qnet == "" || n.Network == qnet) && (!disconnect || !n.Connected) && !n.Management
		if known && isolated {
			continue
		}
		changes = append(changes, fmt.Sprintf("nic '%s': %s -> %s", n.Label, n.Network, isolationTarget(n, qnet, disconnect)))
	}
	ch := Change{}
	if !keep.Declared() && len(st.NICs) > 0 {
		where := "the quarantine portgroup " + qnet
		if qnet == "" {
			where = "quarantine"
			if disconnect {
				where = "a disconnected state"
			}
		}
		w := fmt.Sprintf("no management vNIC is declared for gateway %s (inventory management_nics): vSphere isolation moves every vNIC of %s to %s, so ",
			req.Gateway.ID, vm, where)
		if req.Gateway.Agent != "" {
			w += "the controller cannot reach the gateway's agent until release"
			ch.CutsAgent = true
		} else {
			w += "nothing reaches the gateway over the network until release"
		}
		ch.Warnings = append(ch.Warnings, w)
	}
	keeping := ""
	if len(kept) > 0 {
		keeping = ", keeping management nic " + strings.Join(kept, ", ")
	}
	if st.Quarantined && len(changes) == 0 {
		ch.Summary = fmt.Sprintf("%s is already quarantined%s", vm, keeping)
		return ch, nil
	}
	moved := len(changes)
	if !st.Quarantined {
		changes = append(changes, fmt.Sprintf("tag %s as quarantined", vm))
	}
	ch.Summary = fmt.Sprintf("move %d nics of %s to quarantine%s", moved, vm, keeping)
	ch.Changes = changes
	return ch, nil
}

// management resolves the gateway's management NIC declaration against the
// VM's NICs (empty when none is declared). A declaration this provider
// cannot honour is a terminal error: isolating every NIC instead would
// lock responders out.
func (a *isolateAction) management(vm string, keep ManagementNICs, st VMState) (map[int32]bool, error) {
	if !keep.Declared() {
		return map[int32]bool{}, nil
	}
	if _, ok := a.p.(ManagementIsolator); !ok {
		return nil, Terminal(fmt.Errorf("keeping management nics of %s: the vm provider cannot isolate some nics and keep others; refusing to isolate every nic: %w", vm, ErrManagementNIC))
	}
	return keep.Select(vm, st.NICs)
}

// managementTarget names the network a management NIC stays on (or moves
// to) and whether that is a move. A management NIC found on the quarantine
// portgroup goes back to its recorded original network.
func managementTarget(n NIC, keep ManagementNICs, qnet string) (string, bool) {
	switch {
	case keep.Portgroup != "":
		return keep.Portgroup, n.Network != keep.Portgroup
	case qnet != "" && n.Network == qnet:
		return "its recorded original network", true
	default:
		return n.Network, false
	}
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
	isolate := func() (bool, error) { return a.p.IsolateVM(ctx, vm) }
	if keep := ManagementOf(req.Gateway); keep.Declared() {
		mi, ok := a.p.(ManagementIsolator)
		if !ok {
			return Result{}, Terminal(fmt.Errorf("isolating %s: the vm provider cannot keep management nics %q; refusing to isolate every nic: %w", vm, keep.NICs, ErrManagementNIC))
		}
		isolate = func() (bool, error) { return mi.IsolateVMKeeping(ctx, vm, keep) }
	}
	r, err := changeVM(ctx, a.p, vm, "isolating", "isolated", "was already isolated", isolate)
	if err != nil {
		return Result{}, err
	}
	if len(req.Gateway.ManagementNICs) > 0 {
		r.Details["management_nics"] = req.Gateway.ManagementNICs
	}
	return r, nil
}

// changeVM makes one change to vm (isolate, release) and reports it with
// the NICs before and after; doing names it for the error ("isolating").
func changeVM(ctx context.Context, p VMProvider, vm, doing, did, already string, change func() (bool, error)) (Result, error) {
	before, haveBefore := observeForDetails(ctx, p, vm)
	changed, err := change()
	if err != nil {
		return Result{}, fmt.Errorf("%s %s: %w", doing, vm, err)
	}
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
	return r, nil
}

func (a *isolateAction) Verify(ctx context.Context, req Request) (Result, error) {
	vm, st, err := observeVMOf(ctx, a.p, NameIsolate, req, "verifying isolation")
	if err != nil {
		return Result{}, err
	}
	if !st.Quarantined {
		return Result{}, fmt.Errorf("verifying isolation of %s: not quarantined (nics: %s): %w", vm, describeNICs(st), ErrNotVerified)
	}
	keep := ManagementOf(req.Gateway)
	mgmt, err := keep.Select(vm, st.NICs)
	if err != nil {
		return Result{}, fmt.Errorf("verifying isolation of %s: %w", vm, err)
	}
	qnet, _ := target(a.p)
	for _, n := range st.NICs {
		bad := ""
		switch {
		case !mgmt[n.Key] && n.Management:
			bad = "is kept on the management path but no longer declared in management_nics (isolate again)"
		case !mgmt[n.Key]:
			continue // st.Quarantined says it is isolated
		case !n.Management:
			bad = "is declared as management but the quarantine record does not keep it (isolate again)"
		case qnet != "" && n.Network == qnet:
			bad = "is on the quarantine portgroup " + qnet
		case keep.Portgroup != "" && n.Network != keep.Portgroup:
			bad = fmt.Sprintf("is on %s, not on the management portgroup %s", n.Network, keep.Portgroup)
		case !n.Connected && st.PowerState == PowerStateOn, !n.StartConnected:
			bad = "is not connected: the management path is down"
		default:
			continue
		}
		return Result{}, fmt.Errorf("verifying isolation of %s: management nic '%s' %s (nics: %s): %w", vm, n.Label, bad, describeNICs(st), ErrNotVerified)
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
	vm, st, err := observeVMOf(ctx, a.p, NameRelease, req, "planning release")
	if err != nil {
		return Change{}, err
	}
	qnet, _ := target(a.p)
	mp := req.Gateway.ManagementPortgroup
	var changes []string
	for _, n := range st.NICs {
		// A management NIC kept on its own network has nothing to
		// restore; one moved to the management portgroup goes back.
		if (qnet != "" && n.Network == qnet) || (st.Quarantined && !n.StartConnected) || (n.Management && mp != "" && n.Network == mp) {
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
	return changeVM(ctx, a.p, vm, "releasing", "released", "was not quarantined", func() (bool, error) { return a.p.ReleaseVM(ctx, vm) })
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
	vm, st, err := observeVMOf(ctx, a.p, NamePowerOff, req, "planning power off")
	if err != nil {
		return Change{}, err
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
	vm, st, err := observeVMOf(ctx, a.p, NamePowerOff, req, "verifying power off")
	if err != nil {
		return Result{}, err
	}
	if st.PowerState != PowerStateOff {
		return Result{}, fmt.Errorf("verifying power off of %s: power state is %s: %w", vm, st.PowerState, ErrNotVerified)
	}
	return Result{Summary: vm + " is powered off", Details: map[string]any{"vm": vm, "power_state": st.PowerState}}, nil
}
