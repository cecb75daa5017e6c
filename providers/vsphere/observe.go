package vsphere

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/warden-ir/warden/actions"
)

// vmProps are the VM properties every call reads, in one round trip.
// recentTask lets a change see a task of its own still in flight (see
// awaitRunning) without another round trip when the list is empty.
var vmProps = []string{"name", "runtime.powerState", "config.hardware.device", "customValue", "snapshot", "recentTask"}

// nicRecord is what release needs to put one NIC back exactly.
type nicRecord struct {
	Key            int32  `json:"key"`
	Label          string `json:"label,omitempty"`
	MAC            string `json:"mac,omitempty"`
	Network        string `json:"network"`
	Kind           string `json:"kind"` // backingDVS, backingNetwork or backingOpaque
	PortgroupKey   string `json:"portgroup_key,omitempty"`
	SwitchUUID     string `json:"switch_uuid,omitempty"`
	OpaqueID       string `json:"opaque_id,omitempty"`
	OpaqueType     string `json:"opaque_type,omitempty"`
	Connected      bool   `json:"connected"`
	StartConnected bool   `json:"start_connected"`
}

// Backing kinds in a nicRecord.
const (
	backingDVS     = "dvs"
	backingNetwork = "network"
	backingOpaque  = "opaque"
)

// record is the JSON kept in the VM's custom attribute while it is
// quarantined. Version lets a later Warden read an older record.
//
// NICs holds the original of every NIC isolation found in its original
// state, management NICs included (for one kept on its network the
// original is where it stays, so release has nothing to restore there).
// Management lists the NICs isolation keeps on the management path, so an
// observer that knows nothing of the inventory can still tell a kept NIC
// from a breach.
type record struct {
	Version int `json:"v"`
	// Epoch is the controller's lease epoch the record was written under
	// (0: outside any lease).
	Epoch      int64        `json:"epoch,omitempty"`
	NICs       []nicRecord  `json:"nics"`
	Management []managedNIC `json:"management,omitempty"`
}

// managedNIC is a NIC isolation keeps on the management path: on the
// management portgroup when PortgroupKey is set, else on its recorded
// original network.
type managedNIC struct {
	Key          int32  `json:"key"`
	Label        string `json:"label,omitempty"`
	Portgroup    string `json:"portgroup,omitempty"`
	PortgroupKey string `json:"portgroup_key,omitempty"`
	SwitchUUID   string `json:"switch_uuid,omitempty"`
}

func (r *record) managed(key int32) (managedNIC, bool) {
	if r == nil {
		return managedNIC{}, false
	}
	for _, m := range r.Management {
		if m.Key == key {
			return m, true
		}
	}
	return managedNIC{}, false
}

// sameManagement compares two Management lists, both ordered by key.
func sameManagement(a, b []managedNIC) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

const recordVersion = 1

func (r *record) nic(key int32) (nicRecord, bool) {
	for _, n := range r.NICs {
		if n.Key == key {
			return n, true
		}
	}
	return nicRecord{}, false
}

func parseRecord(s string) (*record, error) {
	var r record
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("decoding record: %w", err)
	}
	if r.Version != recordVersion {
		return nil, fmt.Errorf("decoding record: unknown version %d", r.Version)
	}
	for _, n := range r.NICs {
		switch n.Kind {
		case backingDVS:
			if n.PortgroupKey == "" || n.SwitchUUID == "" {
				return nil, fmt.Errorf("decoding record: nic %d has no portgroup key or switch uuid", n.Key)
			}
		case backingNetwork:
			if n.Network == "" {
				return nil, fmt.Errorf("decoding record: nic %d has no network name", n.Key)
			}
		case backingOpaque:
			if n.OpaqueID == "" {
				return nil, fmt.Errorf("decoding record: nic %d has no opaque network id", n.Key)
			}
		default:
			return nil, fmt.Errorf("decoding record: nic %d has unknown backing kind %q", n.Key, n.Kind)
		}
	}
	for _, m := range r.Management {
		if (m.PortgroupKey == "") != (m.SwitchUUID == "") {
			return nil, fmt.Errorf("decoding record: management nic %d has a portgroup key or a switch uuid, not both", m.Key)
		}
	}
	return &r, nil
}

// vmView is one consistent read of a VM and what it refers to.
type vmView struct {
	mo   mo.VirtualMachine
	nets netIndex
	// qpg is the quarantine portgroup; empty Key when none is configured.
	qpg  portgroup
	tags []string // "category/name"
	// tagged says the quarantine tag is attached.
	tagged bool
	// attrs are the custom attribute values by name (empty ones left out).
	attrs map[string]string
	// rec is the parsed original-backing record, nil when absent; recErr
	// says why a present value could not be parsed.
	rec    *record
	recErr error
	// recRaw is the raw attribute value ("" when absent).
	recRaw string
}

// nics returns the VM's ethernet cards ordered by device key, which is
// stable (the device list order is not: an edit may move a device last).
func (v *vmView) nics() []types.BaseVirtualEthernetCard {
	if v.mo.Config == nil {
		return nil
	}
	var out []types.BaseVirtualEthernetCard
	for _, d := range v.mo.Config.Hardware.Device {
		if c, ok := d.(types.BaseVirtualEthernetCard); ok {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].GetVirtualEthernetCard().Key < out[j].GetVirtualEthernetCard().Key
	})
	return out
}

// describe turns a card into its recorded form, naming its network.
func (v *vmView) describe(card types.BaseVirtualEthernetCard) nicRecord {
	c := card.GetVirtualEthernetCard()
	n := nicRecord{Key: c.Key, Label: label(c), MAC: c.MacAddress}
	if c.Connectable != nil {
		n.Connected = c.Connectable.Connected
		n.StartConnected = c.Connectable.StartConnected
	}
	switch b := c.Backing.(type) {
	case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
		n.Kind = backingDVS
		n.PortgroupKey = b.Port.PortgroupKey
		n.SwitchUUID = b.Port.SwitchUuid
		if pg, ok := v.nets.pgByKey[b.Port.PortgroupKey]; ok {
			n.Network = pg.Name
		} else {
			n.Network = "dvportgroup:" + b.Port.PortgroupKey
		}
	case *types.VirtualEthernetCardNetworkBackingInfo:
		n.Kind = backingNetwork
		n.Network = b.DeviceName
	case *types.VirtualEthernetCardOpaqueNetworkBackingInfo:
		n.Kind = backingOpaque
		n.OpaqueID = b.OpaqueNetworkId
		n.OpaqueType = b.OpaqueNetworkType
		n.Network = v.nets.opaque[b.OpaqueNetworkId]
		if n.Network == "" {
			n.Network = "opaque:" + b.OpaqueNetworkId
		}
	default:
		n.Kind = fmt.Sprintf("%T", c.Backing)
	}
	return n
}

func label(c *types.VirtualEthernetCard) string {
	if c.DeviceInfo != nil {
		if d := c.DeviceInfo.GetDescription(); d != nil && d.Label != "" {
			return d.Label
		}
	}
	return fmt.Sprintf("nic-%d", c.Key)
}

// onQuarantine says whether a NIC's backing is the quarantine portgroup.
func (v *vmView) onQuarantine(n nicRecord) bool {
	return v.qpg.Key != "" && n.Kind == backingDVS && n.PortgroupKey == v.qpg.Key && n.SwitchUUID == v.qpg.SwitchUUID
}

// onManagementPath says whether a NIC the record keeps on the management
// path is where isolation left it: on the management portgroup, or on its
// recorded original network (anywhere but quarantine when none is
// recorded).
func (v *vmView) onManagementPath(n nicRecord, m managedNIC) bool {
	if m.PortgroupKey != "" {
		return n.Kind == backingDVS && n.PortgroupKey == m.PortgroupKey && n.SwitchUUID == m.SwitchUUID
	}
	if orig, ok := v.rec.nic(n.Key); ok {
		return sameBacking(n, orig)
	}
	return !v.onQuarantine(n)
}

// nicIsolated says whether a NIC is in the state IsolateVM leaves it in.
func (p *Provider) nicIsolated(v *vmView, n nicRecord) bool {
	if n.StartConnected {
		return false
	}
	if p.cfg.QuarantineMode == ModeDisconnect {
		return !n.Connected && (v.qpg.Key == "" || v.onQuarantine(n))
	}
	return v.onQuarantine(n)
}

// state builds the actions.VMState of a view.
func (p *Provider) state(v *vmView) actions.VMState {
	st := actions.VMState{
		Name:       v.mo.Name,
		PowerState: string(v.mo.Runtime.PowerState),
		NICs:       []actions.NIC{},
		Tags:       v.tags,
		Attributes: v.attrs,
	}
	quarantined := v.tagged
	for _, card := range v.nics() {
		n := v.describe(card)
		m, managed := v.rec.managed(n.Key)
		st.NICs = append(st.NICs, actions.NIC{
			Key: n.Key, Label: n.Label, MAC: n.MAC, Network: n.Network,
			Connected: n.Connected, StartConnected: n.StartConnected, Management: managed,
		})
		// As documented on VMState: a kept management NIC where
		// isolation left it; any other on the quarantine portgroup or
		// disconnected, and never connecting at power-on.
		switch {
		case managed:
			if !v.onManagementPath(n, m) {
				quarantined = false
			}
		case n.StartConnected || !(v.onQuarantine(n) || !n.Connected):
			quarantined = false
		}
	}
	st.Quarantined = quarantined
	if v.mo.Snapshot != nil {
		st.Snapshots = flattenSnapshots(v.mo.Snapshot.RootSnapshotList, nil)
	}
	return st
}

func flattenSnapshots(tree []types.VirtualMachineSnapshotTree, out []actions.SnapshotInfo) []actions.SnapshotInfo {
	for _, s := range tree {
		out = append(out, actions.SnapshotInfo{
			Name:        s.Name,
			Description: s.Description,
			// vSphere keeps the power state at snapshot time; only a
			// snapshot with memory of a running VM records it as on.
			Memory:  s.State == types.VirtualMachinePowerStatePoweredOn || s.State == types.VirtualMachinePowerStateSuspended,
			Created: s.CreateTime.UTC().Format(time.RFC3339),
		})
		out = flattenSnapshots(s.ChildSnapshotList, out)
	}
	return out
}

// ObserveVM reads the VM's current state: power, NICs with their network
// names, tags, custom attributes, snapshots, and whether it is quarantined.
// It changes nothing.
func (p *Provider) ObserveVM(ctx context.Context, vm string) (actions.VMState, error) {
	var st actions.VMState
	err := p.withSession(ctx, func() error {
		v, err := p.view(ctx, vm)
		if err != nil {
			return fmt.Errorf("observing vm %s: %w", vm, err)
		}
		st = p.state(v)
		return nil
	})
	return st, err
}

// view reads a VM, its networks, tags and attributes. The VM, the network
// index and the tags are read concurrently: they are independent round
// trips, and this is on the containment path.
func (p *Provider) view(ctx context.Context, vm string) (*vmView, error) {
	v := &vmView{}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var err error
		v.nets, err = p.networks(gctx)
		return err
	})
	g.Go(func() error {
		var err error
		if v.mo, err = p.readVM(gctx, vm); err != nil {
			return err
		}
		if err := p.readTags(gctx, v); err != nil {
			return err
		}
		return p.readAttributes(gctx, v)
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if p.cfg.QuarantinePortgroup != "" {
		var err error
		if v.qpg, err = v.nets.quarantine(p.cfg.QuarantinePortgroup); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// readVM finds a VM by name or inventory path and reads vmProps.
func (p *Provider) readVM(ctx context.Context, vm string) (mo.VirtualMachine, error) {
	var m mo.VirtualMachine
	if vm == "" {
		return m, fmt.Errorf("finding vm: empty name: %w", errInvalid)
	}
	for attempt := 0; attempt < 2; attempt++ {
		ref, cached, err := p.vmRef(ctx, vm)
		if err != nil {
			return m, err
		}
		err = property.DefaultCollector(p.vim).RetrieveOne(ctx, ref, vmProps, &m)
		stale := err != nil && isManagedObjectNotFound(err) ||
			err == nil && !strings.Contains(vm, "/") && m.Name != vm
		if cached && stale {
			p.mu.Lock()
			delete(p.vmRefs, vm)
			p.mu.Unlock()
			continue
		}
		if err != nil {
			return m, fmt.Errorf("reading vm %s: %w", vm, err)
		}
		return m, nil
	}
	return m, fmt.Errorf("finding vm %s: it moved during the look-up: %w", vm, errNotFound)
}

// vmRef resolves a VM name (unique in the datacenter) or inventory path.
func (p *Provider) vmRef(ctx context.Context, vm string) (ref types.ManagedObjectReference, cached bool, err error) {
	p.mu.Lock()
	ref, cached = p.vmRefs[vm]
	p.mu.Unlock()
	if cached {
		return ref, true, nil
	}
	if strings.Contains(vm, "/") {
		obj, err := p.finder.VirtualMachine(ctx, vm)
		if err != nil {
			return ref, false, fmt.Errorf("finding vm %s: %w", vm, err)
		}
		ref = obj.Reference()
	} else {
		var all []mo.VirtualMachine
		vms, _ := p.views()
		if err := vms.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name"}, &all); err != nil {
			return ref, false, fmt.Errorf("listing vms: %w", err)
		}
		var found []types.ManagedObjectReference
		for _, m := range all {
			if m.Name == vm {
				found = append(found, m.Self)
			}
		}
		switch len(found) {
		case 0:
			return ref, false, fmt.Errorf("finding vm %q in datacenter %s: %w", vm, p.dc.Name(), errNotFound)
		case 1:
			ref = found[0]
		default:
			return ref, false, fmt.Errorf("finding vm %q: %d vms have that name, use an inventory path: %w", vm, len(found), errInvalid)
		}
	}
	p.mu.Lock()
	p.vmRefs[vm] = ref
	p.mu.Unlock()
	return ref, false, nil
}

func isManagedObjectNotFound(err error) bool {
	return hasFault(err, "ManagedObjectNotFound")
}

// readTags fills v.tags and v.tagged.
func (p *Provider) readTags(ctx context.Context, v *vmView) error {
	ids, err := p.tags.ListAttachedTags(ctx, v.mo.Self)
	if err != nil {
		return fmt.Errorf("listing tags of vm %s: %w", v.mo.Name, err)
	}
	v.tags = []string{}
	for _, id := range ids {
		n, err := p.tagName(ctx, id)
		if err != nil {
			return err
		}
		v.tags = append(v.tags, n.category+"/"+n.name)
		if n.category == p.cfg.TagCategory && n.name == p.cfg.Tag {
			v.tagged = true
		}
	}
	sort.Strings(v.tags)
	return nil
}

// tagName resolves a tag id to its category and name, cached.
func (p *Provider) tagName(ctx context.Context, id string) (tagName, error) {
	if n, ok := cached(&p.mu, p.tagNames, id); ok {
		return n, nil
	}
	t, err := p.tags.GetTag(ctx, id)
	if err != nil {
		return tagName{}, fmt.Errorf("reading tag %s: %w", id, err)
	}
	cat, ok := cached(&p.mu, p.categoryNames, t.CategoryID)
	if !ok {
		c, err := p.tags.GetCategory(ctx, t.CategoryID)
		if err != nil {
			return tagName{}, fmt.Errorf("reading tag category %s: %w", t.CategoryID, err)
		}
		cat = c.Name
	}
	n := tagName{category: cat, name: t.Name}
	p.mu.Lock()
	p.categoryNames[t.CategoryID] = cat
	p.tagNames[id] = n
	p.mu.Unlock()
	return n, nil
}

// readAttributes fills v.attrs and the parsed record.
func (p *Provider) readAttributes(ctx context.Context, v *vmView) error {
	v.attrs = map[string]string{}
	for _, cv := range v.mo.CustomValue {
		s, ok := cv.(*types.CustomFieldStringValue)
		if !ok || s.Value == "" {
			continue
		}
		name, err := p.fieldName(ctx, s.Key)
		if err != nil {
			return err
		}
		v.attrs[name] = s.Value
	}
	if raw, ok := v.attrs[p.cfg.Attribute]; ok {
		v.recRaw = raw
		v.rec, v.recErr = parseRecord(raw)
	}
	return nil
}

// fieldName resolves a custom field key, reading the field list again when
// the key is new.
func (p *Provider) fieldName(ctx context.Context, key int32) (string, error) {
	if name, ok := cached(&p.mu, p.fieldNames, key); ok {
		return name, nil
	}
	if err := p.readFields(ctx); err != nil {
		return "", err
	}
	if name, ok := cached(&p.mu, p.fieldNames, key); ok {
		return name, nil
	}
	return fmt.Sprintf("field-%d", key), nil
}

// cached reads key from a name cache that mu guards.
func cached[K comparable, V any](mu *sync.Mutex, names map[K]V, key K) (V, bool) {
	mu.Lock()
	defer mu.Unlock()
	v, ok := names[key]
	return v, ok
}

func (p *Provider) readFields(ctx context.Context) error {
	defs, err := p.fields.Field(ctx)
	if err != nil {
		return fmt.Errorf("reading custom attribute definitions: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range defs {
		p.fieldNames[d.Key] = d.Name
		if d.Name == p.cfg.Attribute && (d.ManagedObjectType == "" || d.ManagedObjectType == "VirtualMachine") {
			p.fieldKey = d.Key
		}
	}
	return nil
}
