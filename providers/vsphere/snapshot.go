package vsphere

import (
	"context"
	"fmt"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/warden-ir/warden/actions"
)

// SnapshotVM takes a snapshot called name, with memory when asked and the
// VM is running (vSphere cannot save the memory of a VM that is off).
//
// Idempotent by name: when a snapshot with that name exists anywhere in the
// tree it changes nothing and returns false. A same-named snapshot without
// memory when memory was asked of a running VM is a terminal error, since
// taking another would leave two snapshots with one name. A snapshot task
// still running on the VM (this step's, left by a controller that died
// while waiting, or anyone's) is waited for first, never doubled: the tree
// read after it ends decides.
func (p *Provider) SnapshotVM(ctx context.Context, vm, name, description string, memory bool) (changed bool, err error) {
	return p.changeVM(ctx, vm, func() (bool, error) { return p.snapshot(ctx, vm, name, description, memory) })
}

func (p *Provider) snapshot(ctx context.Context, vm, name, description string, memory bool) (bool, error) {
	if name == "" {
		return false, fmt.Errorf("snapshotting vm %s: empty snapshot name: %w", vm, errInvalid)
	}
	m, err := p.settledVM(ctx, vm, taskSnapshot)
	if err != nil {
		return false, fmt.Errorf("snapshotting vm %s: %w", vm, err)
	}
	running := m.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
	if m.Snapshot != nil {
		for _, s := range flattenSnapshots(m.Snapshot.RootSnapshotList, nil) {
			if s.Name != name {
				continue
			}
			if memory && running && !s.Memory {
				return false, fmt.Errorf("snapshotting vm %s: snapshot %q exists without memory; delete it or choose another name: %w", m.Name, name, errInvalid)
			}
			return false, nil
		}
	}
	if err := p.fence(ctx, "snapshotting", m.Name); err != nil {
		return false, err
	}
	task, err := object.NewVirtualMachine(p.vim, m.Self).CreateSnapshot(ctx, name, description, memory && running, false)
	if err == nil {
		err = p.waitTask(ctx, m.Name, taskSnapshot, task)
	}
	if err != nil {
		return false, fmt.Errorf("taking snapshot %q of %s: %w", name, m.Name, err)
	}
	p.log.Info("took snapshot", "vm", m.Name, "snapshot", name, "memory", memory && running)
	return true, nil
}

// PowerOffVM powers the VM off (a hard power off, not a guest shutdown: the
// guest may be hostile). Idempotent: a VM already off returns false; a
// power task still running on the VM is waited for first, then the power
// state decides.
func (p *Provider) PowerOffVM(ctx context.Context, vm string) (changed bool, err error) {
	return p.changeVM(ctx, vm, func() (bool, error) { return p.powerOff(ctx, vm) })
}

func (p *Provider) powerOff(ctx context.Context, vm string) (bool, error) {
	m, err := p.settledVM(ctx, vm, taskPower)
	if err != nil {
		return false, fmt.Errorf("powering off vm %s: %w", vm, err)
	}
	if m.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOff {
		return false, nil
	}
	if err := p.fence(ctx, "powering off", m.Name); err != nil {
		return false, err
	}
	task, err := object.NewVirtualMachine(p.vim, m.Self).PowerOff(ctx)
	if err == nil {
		err = p.waitTask(ctx, m.Name, taskPower, task)
	}
	if fault.IsAlreadyPoweredOffError(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("powering off vm %s: %w", m.Name, err)
	}
	p.log.Info("powered off vm", "vm", m.Name)
	return true, nil
}

// fence checks, right before a change to vCenter, that the controller
// still holds the writer lease it acts under, reading it from the store
// (actions.CheckFence): a leader deposed while it waited for a task or a
// lock makes no change its successor could make again. The error wraps
// actions.ErrFenced; the step is left for the successor.
func (p *Provider) fence(ctx context.Context, doing, vm string) error {
	epoch, err := actions.CheckFence(ctx)
	if err != nil {
		p.log.Warn("not changing the vm: the writer lease is no longer held", "vm", vm, "change", doing, "err", err)
		return fmt.Errorf("%s vm %s: %w", doing, vm, err)
	}
	if epoch != 0 {
		p.log.Debug("lease checked before a change", "vm", vm, "change", doing, "epoch", epoch)
	}
	return nil
}

// settledVM reads the VM once no task of kind is in flight on it: when one
// was, it waits for it and reads again, so a step applied again after a
// crash sees what the first attempt's task did.
func (p *Provider) settledVM(ctx context.Context, vm string, kind taskKind) (mo.VirtualMachine, error) {
	m, err := p.readVM(ctx, vm)
	if err != nil {
		return m, err
	}
	waited, err := p.awaitRunning(ctx, m, kind)
	if err != nil || !waited {
		return m, err
	}
	return p.readVM(ctx, vm)
}
