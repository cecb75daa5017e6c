package actions

import "context"

// VMState is what a hypervisor provider observes about a gateway VM. It is
// the "observed" half of a gateway's posture.
type VMState struct {
	Name       string `json:"name"`
	PowerState string `json:"power_state"` // poweredOn, poweredOff, suspended
	NICs       []NIC  `json:"nics"`
	// Tags attached to the VM ("category/name").
	Tags []string `json:"tags,omitempty"`
	// Attributes are the VM's custom attribute values by name.
	Attributes map[string]string `json:"attributes,omitempty"`
	Snapshots  []SnapshotInfo    `json:"snapshots,omitempty"`
	// Quarantined is true when the quarantine tag is set and every NIC is
	// on the quarantine portgroup or disconnected with StartConnected
	// false, except the management NICs isolation kept, which must be on
	// the network isolation left them on.
	Quarantined bool `json:"quarantined"`
}

// NIC is one virtual network card.
type NIC struct {
	Key            int32  `json:"key"`
	Label          string `json:"label"`
	MAC            string `json:"mac,omitempty"`
	Network        string `json:"network"` // portgroup or network name
	Connected      bool   `json:"connected"`
	StartConnected bool   `json:"start_connected"`
	// Management says the VM's quarantine record names this NIC as a
	// management NIC that isolation keeps on the management path.
	Management bool `json:"management,omitempty"`
}

// SnapshotInfo describes one snapshot of a VM.
type SnapshotInfo struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Memory      bool   `json:"memory"`
	Created     string `json:"created,omitempty"`
}

// VMProvider is what VM actions need from a hypervisor. Every method is
// idempotent: called twice with the same arguments it leaves the same state
// and reports changed=false the second time. Errors are classified at the
// provider boundary: Terminal(err) for what retrying cannot fix.
type VMProvider interface {
	// ObserveVM reads the VM's current state.
	ObserveVM(ctx context.Context, vm string) (VMState, error)
	// SnapshotVM takes a snapshot named name (with memory if asked) unless
	// one with that name already exists.
	SnapshotVM(ctx context.Context, vm, name, description string, memory bool) (changed bool, err error)
	// IsolateVM moves every NIC to the quarantine portgroup (or
	// disconnects it), sets StartConnected false, records the original
	// backings on the VM itself, and tags it. Providers that can keep
	// management NICs implement ManagementIsolator.
	IsolateVM(ctx context.Context, vm string) (changed bool, err error)
	// ReleaseVM restores the recorded backings and removes the tag.
	ReleaseVM(ctx context.Context, vm string) (changed bool, err error)
	// PowerOffVM powers the VM off.
	PowerOffVM(ctx context.Context, vm string) (changed bool, err error)
}
