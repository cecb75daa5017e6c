package vsphere

import (
	"context"
	"fmt"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// portgroup is a distributed portgroup as NIC backings refer to it.
type portgroup struct {
	Name       string
	Key        string
	SwitchUUID string
}

// netIndex resolves NIC backings to names and names to backings, for the
// networks of the provider's datacenter.
type netIndex struct {
	pgByKey  map[string]portgroup
	pgByName map[string][]portgroup
	// std maps standard network names to their references.
	std map[string]types.ManagedObjectReference
	// opaque maps opaque network ids to names.
	opaque map[string]string
}

// quarantine returns the distributed portgroup called name, or a terminal
// error naming it when there is none or more than one.
func (n netIndex) quarantine(name string) (portgroup, error) {
	return n.distributed("quarantine portgroup", name, "create it on a distributed switch or fix vsphere.quarantine_portgroup")
}

// management returns the management-only distributed portgroup called
// name, with the same rules as quarantine.
func (n netIndex) management(name string) (portgroup, error) {
	return n.distributed("management portgroup", name, "create it on a distributed switch or fix the gateway's management_portgroup")
}

// distributed finds the one distributed portgroup called name; what and
// fix word the error.
func (n netIndex) distributed(what, name, fix string) (portgroup, error) {
	switch pgs := n.pgByName[name]; len(pgs) {
	case 1:
		return pgs[0], nil
	case 0:
		if _, ok := n.std[name]; ok {
			return portgroup{}, fmt.Errorf("finding %s %q: it is a standard network, not a distributed portgroup: %w", what, name, errInvalid)
		}
		return portgroup{}, fmt.Errorf("finding %s %q: %w (%s)", what, name, errNotFound, fix)
	default:
		return portgroup{}, fmt.Errorf("finding %s %q: %d distributed portgroups have that name: %w", what, name, len(pgs), errInvalid)
	}
}

// networks reads every network of the datacenter in one round trip (plus
// one per switch never seen before, whose uuid is then cached).
func (p *Provider) networks(ctx context.Context) (netIndex, error) {
	_, view := p.views()
	ospec := types.ObjectSpec{
		Obj:  view.Reference(),
		Skip: types.NewBool(true),
		SelectSet: []types.BaseSelectionSpec{
			&types.TraversalSpec{Type: view.Reference().Type, Path: "view"},
		},
	}
	req := types.RetrieveProperties{
		This: p.vim.ServiceContent.PropertyCollector,
		SpecSet: []types.PropertyFilterSpec{{
			ObjectSet: []types.ObjectSpec{ospec},
			PropSet: []types.PropertySpec{
				{Type: "Network", PathSet: []string{"name"}},
				{Type: "DistributedVirtualPortgroup", PathSet: []string{"name", "key", "config.distributedVirtualSwitch"}},
				{Type: "OpaqueNetwork", PathSet: []string{"name", "summary"}},
			},
		}},
	}
	res, err := methods.RetrieveProperties(ctx, p.vim, &req)
	if err != nil {
		return netIndex{}, fmt.Errorf("reading networks of datacenter %s: %w", p.dc.Name(), err)
	}
	idx := netIndex{
		pgByKey:  map[string]portgroup{},
		pgByName: map[string][]portgroup{},
		std:      map[string]types.ManagedObjectReference{},
		opaque:   map[string]string{},
	}
	type rawPG struct {
		name, key string
		dvs       *types.ManagedObjectReference
	}
	var pgs []rawPG
	for _, oc := range res.Returnval {
		props := map[string]any{}
		for _, dp := range oc.PropSet {
			props[dp.Name] = dp.Val
		}
		name, _ := props["name"].(string)
		switch oc.Obj.Type {
		case "Network":
			idx.std[name] = oc.Obj
		case "DistributedVirtualPortgroup":
			key, _ := props["key"].(string)
			dvs, _ := props["config.distributedVirtualSwitch"].(types.ManagedObjectReference)
			pg := rawPG{name: name, key: key}
			if dvs.Value != "" {
				pg.dvs = &dvs
			}
			pgs = append(pgs, pg)
		case "OpaqueNetwork":
			if s, ok := props["summary"].(*types.OpaqueNetworkSummary); ok {
				idx.opaque[s.OpaqueNetworkId] = name
			}
		}
	}
	for _, r := range pgs {
		pg := portgroup{Name: r.name, Key: r.key}
		if r.dvs != nil {
			if pg.SwitchUUID, err = p.switchUUID(ctx, *r.dvs); err != nil {
				return netIndex{}, err
			}
		}
		idx.pgByKey[pg.Key] = pg
		idx.pgByName[pg.Name] = append(idx.pgByName[pg.Name], pg)
	}
	return idx, nil
}

// switchUUID returns a distributed switch's uuid, cached: it never changes.
func (p *Provider) switchUUID(ctx context.Context, ref types.ManagedObjectReference) (string, error) {
	p.mu.Lock()
	uuid, ok := p.dvsUUID[ref]
	p.mu.Unlock()
	if ok {
		return uuid, nil
	}
	var dvs mo.DistributedVirtualSwitch
	if err := property.DefaultCollector(p.vim).RetrieveOne(ctx, ref, []string{"uuid"}, &dvs); err != nil {
		return "", fmt.Errorf("reading uuid of distributed switch %s: %w", ref.Value, err)
	}
	p.mu.Lock()
	p.dvsUUID[ref] = dvs.Uuid
	p.mu.Unlock()
	return dvs.Uuid, nil
}
