package actions

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/warden-ir/warden/inventory"
)

// ManagementNICs is a gateway's declaration of the virtual NICs that carry
// its management path (inventory management_nics and
// management_portgroup). Hypervisor isolation keeps them on that path and
// quarantines every other NIC.
type ManagementNICs struct {
	// NICs are device labels or MAC addresses, as in the inventory.
	NICs []string
	// Portgroup, when set, is a management-only portgroup the NICs move
	// to during isolation; empty keeps them on their own network.
	Portgroup string
}

// ManagementOf returns the gateway's declaration.
func ManagementOf(gw inventory.Gateway) ManagementNICs {
	return ManagementNICs{NICs: gw.ManagementNICs, Portgroup: gw.ManagementPortgroup}
}

// Declared reports whether any management NIC is declared.
func (m ManagementNICs) Declared() bool { return len(m.NICs) > 0 }

// ErrManagementNIC is wrapped (as a terminal error) when a management NIC
// declaration does not fit the VM: an entry names no NIC or several, or
// every NIC is declared and there is nowhere to move them. Isolation never
// falls back to isolating every NIC, nor to isolating none.
var ErrManagementNIC = errors.New("management nic declaration does not fit the vm")

// Select returns the keys of the VM's NICs that the declaration names. It
// fails (terminal, wrapping ErrManagementNIC) when an entry names no NIC or
// more than one, and when every NIC of the VM is declared while no
// management portgroup is set: vSphere isolation would then either cut the
// management path or leave the VM fully connected, and a responder must
// choose (a management_portgroup, containment through the agent alone, or
// no declaration).
func (m ManagementNICs) Select(vm string, nics []NIC) (map[int32]bool, error) {
	keys := map[int32]bool{}
	if !m.Declared() {
		return keys, nil
	}
	for _, s := range m.NICs {
		ref, err := inventory.ParseNICRef(s)
		if err != nil {
			return nil, Terminal(fmt.Errorf("reading management nic of %s: %w: %w", vm, err, ErrManagementNIC))
		}
		var found []NIC
		for _, n := range nics {
			if ref.Matches(n.Label, n.MAC) {
				found = append(found, n)
			}
		}
		switch len(found) {
		case 0:
			return nil, Terminal(fmt.Errorf("finding management nic %s of %s: the vm has no such nic (it has %s); fix management_nics: %w",
				ref, vm, listNICs(nics), ErrManagementNIC))
		case 1:
			keys[found[0].Key] = true
		default:
			return nil, Terminal(fmt.Errorf("finding management nic %s of %s: %d nics match (%s): %w", ref, vm, len(found), listNICs(found), ErrManagementNIC))
		}
	}
	if len(keys) == len(nics) && m.Portgroup == "" {
		return nil, Terminal(fmt.Errorf("isolating %s: every nic (%s) is declared as management and no management_portgroup is set, so vSphere isolation would either cut the management path or contain nothing; refusing. Set management_portgroup to move the nic to a management-only portgroup, contain the gateway through its agent alone, or drop the declaration to accept losing the management path: %w",
			vm, listNICs(nics), ErrManagementNIC))
	}
	return keys, nil
}

func listNICs(nics []NIC) string {
	if len(nics) == 0 {
		return "no nics"
	}
	parts := make([]string, len(nics))
	for i, n := range nics {
		parts[i] = fmt.Sprintf("'%s' %s on %s", n.Label, n.MAC, n.Network)
	}
	return strings.Join(parts, ", ")
}

// ManagementIsolator is implemented by VM providers that can isolate a VM
// while keeping its declared management NICs on the management path. It is
// idempotent like IsolateVM, which is IsolateVMKeeping with no declaration.
type ManagementIsolator interface {
	// IsolateVMKeeping isolates every NIC except the management NICs,
	// which stay on their network (or move to keep.Portgroup) and are
	// connected. A declaration that does not fit the VM is a terminal
	// error and nothing changes.
	IsolateVMKeeping(ctx context.Context, vm string, keep ManagementNICs) (changed bool, err error)
}

// NeedsAgent lists the actions that act on the step's gateway itself
// through its agent. After a vSphere isolation that moved every NIC they
// cannot reach it. (revoke_peer and rotate_credentials act at the peers,
// never on the compromised gateway, so they are not listed.)
var NeedsAgent = map[string]bool{NameCaptureVolatile: true, NameVerifyBaseline: true, NamePatch: true}

// Notes returns what a person reading the plan should know about this
// change: its warnings and, when it cuts the controller off from the
// gateway's agent, which of the later steps (action names, in runbook
// order) that will leave to people.
func (c Change) Notes(later []string) []string {
	notes := append([]string(nil), c.Warnings...)
	if !c.CutsAgent {
		return notes
	}
	var affected []string
	for _, a := range later {
		if NeedsAgent[a] {
			affected = append(affected, a)
		}
	}
	s := "later steps that need the agent"
	if len(affected) == 0 {
		s = "no later step of this runbook needs the agent"
	} else {
		s += " (" + strings.Join(affected, ", ") + ") cannot reach it: they will fail (an optional one is skipped, a required one stops the run) and are left to people"
	}
	s += "; release also needs a baseline check passed after the quarantine, which needs the agent, so it waits for a person's check or override"
	return append(notes, s)
}
