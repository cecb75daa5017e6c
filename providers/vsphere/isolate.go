package vsphere

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/warden-ir/warden/actions"
)

// IsolateVM moves every NIC of vm to the quarantine portgroup (mode
// "portgroup", NICs stay connected there) or disconnects it (mode
// "disconnect", also moved when a quarantine portgroup is configured), sets
// StartConnected false, and tags the VM. It is IsolateVMKeeping with no
// management NICs: the gateway's agent is then cut off until release.
//
// Before any NIC changes, the original backings are recorded as JSON in the
// VM's custom attribute, so release needs nothing but the VM. An existing
// record is never overwritten with quarantine values: a NIC already isolated
// without a record is left out of it (release then leaves it isolated, which
// fails closed).
//
// Idempotent: on an isolated VM it changes nothing and returns false. After
// a partial run (record written, reconfiguration failed) it completes the
// isolation from the existing record. A reconfiguration still running on
// the VM (left by a controller that died while waiting for it) is waited
// for first and never sent twice: the VM read after it ends decides.
func (p *Provider) IsolateVM(ctx context.Context, vm string) (changed bool, err error) {
	return p.IsolateVMKeeping(ctx, vm, actions.ManagementNICs{})
}

// IsolateVMKeeping is IsolateVM for a VM with declared management NICs
// (by label or MAC): those stay on their network, or move to
// keep.Portgroup, and are connected and connect at power on; every other
// NIC is isolated. All NIC changes go in one reconfiguration, so the
// management path never goes down on the way. A management NIC found on
// the quarantine portgroup (isolated earlier without the declaration)
// returns to its recorded original network. The record lists the kept NICs
// so ObserveVM can tell them from a breach, and holds their originals like
// any other NIC's, so release restores exactly what isolation changed.
//
// A declaration that names a NIC the VM lacks (or several), covers every
// NIC without a management portgroup, names a management portgroup that is
// missing or is the quarantine portgroup, or keeps on its network a NIC
// whose original network is unknown, is a terminal error before anything
// changes.
//
// Idempotent as IsolateVM: applied again with the same declaration it
// changes nothing and returns false; with another declaration it converges
// the VM to it.
func (p *Provider) IsolateVMKeeping(ctx context.Context, vm string, keep actions.ManagementNICs) (changed bool, err error) {
	return p.changeVM(ctx, vm, func() (bool, error) { return p.isolate(ctx, vm, keep) })
}

// managementNICs resolves a declaration against the VM: the management
// NICs by key, with where each is kept.
func (p *Provider) managementNICs(v *vmView, keep actions.ManagementNICs) (map[int32]managedNIC, error) {
	out := map[int32]managedNIC{}
	if !keep.Declared() {
		return out, nil
	}
	var nics []actions.NIC
	for _, card := range v.nics() {
		n := v.describe(card)
		nics = append(nics, actions.NIC{Key: n.Key, Label: n.Label, MAC: n.MAC, Network: n.Network})
	}
	keys, err := keep.Select(v.mo.Name, nics)
	if err != nil {
		return nil, err
	}
	var mpg portgroup
	if keep.Portgroup != "" {
		if mpg, err = v.nets.management(keep.Portgroup); err != nil {
			return nil, err
		}
		if v.qpg.Key != "" && mpg.Key == v.qpg.Key && mpg.SwitchUUID == v.qpg.SwitchUUID {
			return nil, fmt.Errorf("checking management portgroup %q: it is the quarantine portgroup: %w", keep.Portgroup, errInvalid)
		}
	}
	for _, n := range nics {
		if keys[n.Key] {
			out[n.Key] = managedNIC{Key: n.Key, Label: n.Label, Portgroup: mpg.Name, PortgroupKey: mpg.Key, SwitchUUID: mpg.SwitchUUID}
		}
	}
	return out, nil
}

func (p *Provider) isolate(ctx context.Context, vm string, keep actions.ManagementNICs) (bool, error) {
	v, err := p.settledView(ctx, vm)
	if err != nil {
		return false, fmt.Errorf("isolating vm %s: %w", vm, err)
	}
	mgmt, err := p.managementNICs(v, keep)
	if err != nil {
		return false, fmt.Errorf("isolating vm %s: %w", vm, err)
	}
	changed := false

	rec := v.rec
	if v.recErr != nil {
		for _, card := range v.nics() {
			if n := v.describe(card); p.nicIsolated(v, n) || v.onQuarantine(n) {
				return false, fmt.Errorf("isolating vm %s: custom attribute %q holds an unreadable record (%v) and nic %q is already isolated, so its original network is unknown; restore the record or the nic by hand: %w",
					v.mo.Name, p.cfg.Attribute, v.recErr, n.Label, errInvalid)
			}
		}
		// Every NIC is still where it was: the current state is the
		// original, so a fresh record is safe.
		p.log.Warn("replacing unreadable quarantine record", "vm", v.mo.Name, "attribute", p.cfg.Attribute, "err", v.recErr)
		rec = nil
	}
	if rec == nil {
		rec = &record{Version: recordVersion}
	}
	recChanged := v.recErr != nil
	for _, card := range v.nics() {
		n := v.describe(card)
		if _, ok := rec.nic(n.Key); ok {
			continue
		}
		switch {
		case p.nicIsolated(v, n) || v.onQuarantine(n):
			if m, ok := mgmt[n.Key]; ok && m.PortgroupKey == "" && v.onQuarantine(n) {
				return false, fmt.Errorf("isolating vm %s: management nic %q is on the quarantine portgroup and its original network is not recorded, so Warden cannot tell where to keep it; move it to its management network by hand, or set the gateway's management_portgroup: %w",
					v.mo.Name, n.Label, errInvalid)
			}
			p.log.Warn("nic already isolated but not recorded; release will leave it isolated", "vm", v.mo.Name, "nic", n.Label)
			continue
		case n.Kind != backingDVS && n.Kind != backingNetwork && n.Kind != backingOpaque:
			p.log.Error("nic backing cannot be recorded; release will leave it isolated", "vm", v.mo.Name, "nic", n.Label, "backing", n.Kind)
			continue
		}
		rec.NICs = append(rec.NICs, n)
		recChanged = true
	}
	var managed []managedNIC
	for _, card := range v.nics() { // ordered by key
		if m, ok := mgmt[card.GetVirtualEthernetCard().Key]; ok {
			managed = append(managed, m)
		}
	}
	if !sameManagement(rec.Management, managed) {
		rec.Management = managed
		recChanged = true
	}

	// Every edit is built before anything is written, so a declaration
	// that cannot be honoured changes nothing.
	poweredOn := v.mo.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
	var specs []types.BaseVirtualDeviceConfigSpec
	var labels, kept []string
	for _, card := range v.nics() {
		n := v.describe(card)
		c := card.GetVirtualEthernetCard()
		conn := types.VirtualDeviceConnectInfo{}
		if c.Connectable != nil {
			conn = *c.Connectable
		}
		if m, ok := mgmt[n.Key]; ok {
			var backing types.BaseVirtualDeviceBackingInfo
			if m.PortgroupKey != "" {
				if n.Kind != backingDVS || n.PortgroupKey != m.PortgroupKey || n.SwitchUUID != m.SwitchUUID {
					backing = &types.VirtualEthernetCardDistributedVirtualPortBackingInfo{
						Port: types.DistributedVirtualSwitchPortConnection{PortgroupKey: m.PortgroupKey, SwitchUuid: m.SwitchUUID},
					}
				}
			} else if orig, ok := rec.nic(n.Key); ok && !sameBacking(n, orig) {
				if backing, err = restoredBacking(v.nets, orig); err != nil {
					return false, fmt.Errorf("isolating vm %s: returning management nic %q to its recorded network: %w", v.mo.Name, n.Label, err)
				}
			}
			if backing == nil && n.StartConnected && (n.Connected || !poweredOn) {
				continue
			}
			if backing != nil {
				c.Backing = backing
			}
			conn.StartConnected = true
			if poweredOn {
				conn.Connected = true
			}
			c.Connectable = &conn
			specs = append(specs, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: card.(types.BaseVirtualDevice)})
			kept = append(kept, fmt.Sprintf("%q", n.Label))
			continue
		}
		if p.nicIsolated(v, n) {
			continue
		}
		if v.qpg.Key != "" {
			c.Backing = &types.VirtualEthernetCardDistributedVirtualPortBackingInfo{
				Port: types.DistributedVirtualSwitchPortConnection{PortgroupKey: v.qpg.Key, SwitchUuid: v.qpg.SwitchUUID},
			}
		}
		conn.StartConnected = false
		if p.cfg.QuarantineMode == ModeDisconnect {
			conn.Connected = false
		}
		c.Connectable = &conn
		specs = append(specs, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: card.(types.BaseVirtualDevice)})
		labels = append(labels, fmt.Sprintf("%q", n.Label))
	}

	if recChanged {
		// The record names the lease epoch it was written under.
		rec.Epoch = actions.FenceEpoch(ctx)
		raw, err := json.Marshal(rec)
		if err != nil {
			return false, fmt.Errorf("encoding original networks of %s: %w", v.mo.Name, err)
		}
		if err := p.setAttribute(ctx, v, string(raw)); err != nil {
			return false, fmt.Errorf("recording original networks of %s: %w", v.mo.Name, err)
		}
		changed = true
	}

	if len(specs) > 0 {
		target := "quarantine portgroup " + p.cfg.QuarantinePortgroup
		if v.qpg.Key == "" {
			target = "disconnected"
		}
		if len(kept) > 0 {
			target += ", keeping management nic " + strings.Join(kept, ", ") + " connected on the management path"
		}
		if err := p.reconfigure(ctx, v, specs); err != nil {
			return changed, fmt.Errorf("moving nic %s of %s to %s: %w", strings.Join(labels, ", "), v.mo.Name, target, err)
		}
		p.log.Info("isolated vm nics", "vm", v.mo.Name, "nics", len(labels), "management_nics", len(kept), "mode", p.cfg.QuarantineMode)
		changed = true
	}

	if !v.tagged {
		if err := p.attachTag(ctx, v); err != nil {
			return changed, fmt.Errorf("tagging %s as %s/%s: %w", v.mo.Name, p.cfg.TagCategory, p.cfg.Tag, err)
		}
		changed = true
	}
	return changed, nil
}

// ReleaseVM restores every recorded NIC exactly (backing, Connected,
// StartConnected; Connected only takes effect on a powered-on VM, as in
// vSphere), then detaches the quarantine tag, then clears the record. A
// management NIC isolation kept on its network is already at its recorded
// original and is not touched; one moved to a management portgroup goes
// back. The
// record goes last so an interrupted release can be run again.
//
// Idempotent: on a VM that is not quarantined and has no record it changes
// nothing and returns false. A VM that looks quarantined but has no
// readable record is a terminal error saying what to do by hand. As with
// IsolateVM, a reconfiguration in flight is waited for, not repeated.
func (p *Provider) ReleaseVM(ctx context.Context, vm string) (changed bool, err error) {
	return p.changeVM(ctx, vm, func() (bool, error) { return p.release(ctx, vm) })
}

func (p *Provider) release(ctx context.Context, vm string) (bool, error) {
	v, err := p.settledView(ctx, vm)
	if err != nil {
		return false, fmt.Errorf("releasing vm %s: %w", vm, err)
	}
	var onQ []string
	for _, card := range v.nics() {
		if n := v.describe(card); v.onQuarantine(n) {
			onQ = append(onQ, n.Label)
		}
	}
	if v.recRaw == "" {
		if !v.tagged && len(onQ) == 0 {
			return false, nil
		}
		return false, fmt.Errorf("releasing vm %s: it looks quarantined (tag %s/%s attached: %t; nics on %q: %v) but custom attribute %q with its original networks is missing; move its nics back by hand, set them to connect at power on, then detach the tag: %w",
			v.mo.Name, p.cfg.TagCategory, p.cfg.Tag, v.tagged, p.cfg.QuarantinePortgroup, onQ, p.cfg.Attribute, errInvalid)
	}
	if v.recErr != nil {
		return false, fmt.Errorf("releasing vm %s: custom attribute %q is unreadable (%v); restore its nics by hand from the attribute's value, then clear the attribute and detach tag %s/%s: %w",
			v.mo.Name, p.cfg.Attribute, v.recErr, p.cfg.TagCategory, p.cfg.Tag, errInvalid)
	}

	poweredOn := v.mo.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
	var specs []types.BaseVirtualDeviceConfigSpec
	var labels []string
	for _, card := range v.nics() {
		n := v.describe(card)
		orig, ok := v.rec.nic(n.Key)
		if !ok {
			if v.onQuarantine(n) {
				p.log.Warn("nic has no recorded original network; leaving it on the quarantine portgroup", "vm", v.mo.Name, "nic", n.Label)
			}
			continue
		}
		if sameBacking(n, orig) && n.StartConnected == orig.StartConnected && (!poweredOn || n.Connected == orig.Connected) {
			continue
		}
		backing, err := restoredBacking(v.nets, orig)
		if err != nil {
			return false, fmt.Errorf("releasing vm %s: restoring nic %q: %w", v.mo.Name, orig.Label, err)
		}
		c := card.GetVirtualEthernetCard()
		c.Backing = backing
		conn := types.VirtualDeviceConnectInfo{}
		if c.Connectable != nil {
			conn = *c.Connectable
		}
		conn.Connected = orig.Connected
		conn.StartConnected = orig.StartConnected
		c.Connectable = &conn
		specs = append(specs, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: card.(types.BaseVirtualDevice)})
		labels = append(labels, fmt.Sprintf("%q", n.Label))
	}
	if len(specs) > 0 {
		if err := p.reconfigure(ctx, v, specs); err != nil {
			return false, fmt.Errorf("restoring nic %s of %s to its recorded network: %w", strings.Join(labels, ", "), v.mo.Name, err)
		}
		p.log.Info("restored vm nics", "vm", v.mo.Name, "nics", len(specs))
	}
	if v.tagged {
		if err := p.detachTag(ctx, v); err != nil {
			return true, fmt.Errorf("detaching tag %s/%s from %s: %w", p.cfg.TagCategory, p.cfg.Tag, v.mo.Name, err)
		}
	}
	if err := p.setAttribute(ctx, v, ""); err != nil {
		return true, fmt.Errorf("clearing record of original networks of %s: %w", v.mo.Name, err)
	}
	return true, nil
}

func sameBacking(n, orig nicRecord) bool {
	if n.Kind != orig.Kind {
		return false
	}
	switch n.Kind {
	case backingDVS:
		return n.PortgroupKey == orig.PortgroupKey && n.SwitchUUID == orig.SwitchUUID
	case backingNetwork:
		return n.Network == orig.Network
	case backingOpaque:
		return n.OpaqueID == orig.OpaqueID && n.OpaqueType == orig.OpaqueType
	}
	return false
}

// restoredBacking builds the backing of a recorded NIC after checking that
// its network still exists: vcsim panics on an unknown standard network,
// and vCenter would fail the whole task.
func restoredBacking(nets netIndex, orig nicRecord) (types.BaseVirtualDeviceBackingInfo, error) {
	switch orig.Kind {
	case backingDVS:
		pg, ok := nets.pgByKey[orig.PortgroupKey]
		if !ok {
			return nil, fmt.Errorf("recorded portgroup %q (key %s) no longer exists: %w", orig.Network, orig.PortgroupKey, errNotFound)
		}
		if pg.SwitchUUID != orig.SwitchUUID {
			return nil, fmt.Errorf("recorded portgroup %q (key %s) is now on another switch: %w", orig.Network, orig.PortgroupKey, errInvalid)
		}
		return &types.VirtualEthernetCardDistributedVirtualPortBackingInfo{
			Port: types.DistributedVirtualSwitchPortConnection{PortgroupKey: pg.Key, SwitchUuid: pg.SwitchUUID},
		}, nil
	case backingNetwork:
		ref, ok := nets.std[orig.Network]
		if !ok {
			return nil, fmt.Errorf("recorded network %q no longer exists: %w", orig.Network, errNotFound)
		}
		return &types.VirtualEthernetCardNetworkBackingInfo{
			VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: orig.Network},
			Network:                        &ref,
		}, nil
	case backingOpaque:
		if _, ok := nets.opaque[orig.OpaqueID]; !ok {
			return nil, fmt.Errorf("recorded opaque network %s no longer exists: %w", orig.OpaqueID, errNotFound)
		}
		return &types.VirtualEthernetCardOpaqueNetworkBackingInfo{
			OpaqueNetworkId: orig.OpaqueID, OpaqueNetworkType: orig.OpaqueType,
		}, nil
	}
	return nil, fmt.Errorf("recorded backing kind %q: %w", orig.Kind, errInvalid)
}

// settledView reads the VM's view once no reconfiguration is in flight on
// it: when one was, it waits for it and reads again, so a step applied
// again after a crash sees what the first attempt's task did.
func (p *Provider) settledView(ctx context.Context, vm string) (*vmView, error) {
	v, err := p.view(ctx, vm)
	if err != nil {
		return nil, err
	}
	waited, err := p.awaitRunning(ctx, v.mo, taskReconfigure)
	if err != nil || !waited {
		return v, err
	}
	return p.view(ctx, vm)
}

// reconfigure sends one ReconfigVM_Task with the device edits and waits.
func (p *Provider) reconfigure(ctx context.Context, v *vmView, specs []types.BaseVirtualDeviceConfigSpec) error {
	if err := p.fence(ctx, "reconfiguring", v.mo.Name); err != nil {
		return err
	}
	task, err := object.NewVirtualMachine(p.vim, v.mo.Self).Reconfigure(ctx, types.VirtualMachineConfigSpec{DeviceChange: specs})
	if err != nil {
		return err
	}
	return p.waitTask(ctx, v.mo.Name, taskReconfigure, task)
}

// setAttribute writes the record attribute, creating its definition first
// when missing. An empty value clears it.
func (p *Provider) setAttribute(ctx context.Context, v *vmView, value string) error {
	key, err := p.attributeKey(ctx)
	if err != nil {
		return err
	}
	if err := p.fence(ctx, "writing the isolation record of", v.mo.Name); err != nil {
		return err
	}
	return p.fields.Set(ctx, v.mo.Self, key, value)
}

func (p *Provider) attributeKey(ctx context.Context) (int32, error) {
	if key := p.knownFieldKey(); key != 0 {
		return key, nil
	}
	if err := p.readFields(ctx); err != nil {
		return 0, err
	}
	if key := p.knownFieldKey(); key != 0 {
		return key, nil
	}
	def, err := p.fields.Add(ctx, p.cfg.Attribute, "VirtualMachine", nil, nil)
	if err != nil {
		if !hasFault(err, "DuplicateName") {
			return 0, fmt.Errorf("creating custom attribute %q: %w", p.cfg.Attribute, err)
		}
		// Another client created it between our read and our add.
		if err := p.readFields(ctx); err != nil {
			return 0, err
		}
		return p.knownFieldKey(), nil
	}
	p.log.Info("created custom attribute", "attribute", p.cfg.Attribute)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fieldKey = def.Key
	p.fieldNames[def.Key] = def.Name
	return def.Key, nil
}

// knownFieldKey is the record attribute's key, 0 until it is known.
func (p *Provider) knownFieldKey() int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fieldKey
}

// attachTag attaches the quarantine tag, creating category and tag when
// missing. A failure forgets the cached tag id so the next try looks again.
func (p *Provider) attachTag(ctx context.Context, v *vmView) error {
	return p.withQuarantineTag(ctx, v, p.tags.AttachTag)
}

// detachTag detaches the quarantine tag, as attachTag attaches it.
func (p *Provider) detachTag(ctx context.Context, v *vmView) error {
	return p.withQuarantineTag(ctx, v, p.tags.DetachTag)
}

// withQuarantineTag applies op (attach or detach) with the quarantine tag
// to the VM.
func (p *Provider) withQuarantineTag(ctx context.Context, v *vmView, op func(context.Context, string, mo.Reference) error) error {
	id, err := p.quarantineTagID(ctx)
	if err != nil {
		return err
	}
	if err := p.fence(ctx, "tagging", v.mo.Name); err != nil {
		return err
	}
	if err := op(ctx, id, v.mo.Self); err != nil {
		p.mu.Lock()
		p.quarantineTag = ""
		p.mu.Unlock()
		return err
	}
	return nil
}

func (p *Provider) quarantineTagID(ctx context.Context) (string, error) {
	p.mu.Lock()
	id := p.quarantineTag
	p.mu.Unlock()
	if id != "" {
		return id, nil
	}
	cats, err := p.tags.GetCategories(ctx)
	if err != nil {
		return "", fmt.Errorf("listing tag categories: %w", err)
	}
	catID := ""
	for _, c := range cats {
		if c.Name == p.cfg.TagCategory {
			catID = c.ID
		}
	}
	if catID == "" {
		catID, err = p.tags.CreateCategory(ctx, &tags.Category{
			Name:            p.cfg.TagCategory,
			Description:     "Warden incident response markers",
			Cardinality:     "MULTIPLE",
			AssociableTypes: []string{"VirtualMachine"},
		})
		if err != nil {
			return "", fmt.Errorf("creating tag category %q: %w", p.cfg.TagCategory, err)
		}
		p.log.Info("created tag category", "category", p.cfg.TagCategory)
	}
	list, err := p.tags.GetTagsForCategory(ctx, catID)
	if err != nil {
		return "", fmt.Errorf("listing tags of category %q: %w", p.cfg.TagCategory, err)
	}
	for _, t := range list {
		if t.Name == p.cfg.Tag {
			id = t.ID
		}
	}
	if id == "" {
		id, err = p.tags.CreateTag(ctx, &tags.Tag{
			Name:        p.cfg.Tag,
			CategoryID:  catID,
			Description: "VM isolated by Warden; release with warden release",
		})
		if err != nil {
			return "", fmt.Errorf("creating tag %s/%s: %w", p.cfg.TagCategory, p.cfg.Tag, err)
		}
		p.log.Info("created tag", "category", p.cfg.TagCategory, "tag", p.cfg.Tag)
	}
	p.mu.Lock()
	p.quarantineTag = id
	p.categoryNames[catID] = p.cfg.TagCategory
	p.tagNames[id] = tagName{category: p.cfg.TagCategory, name: p.cfg.Tag}
	p.mu.Unlock()
	return id, nil
}
