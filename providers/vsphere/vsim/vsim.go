// Package vsim runs an in-process vCenter simulator (govmomi's vcsim, VPX
// model) laid out like a small multi-site VPN: one datacenter, one
// distributed switch with a transit, a LAN and a quarantine portgroup, and
// one powered-on gateway VM per site with exactly two NICs (transit, LAN).
//
// It owns the lab's lifecycle, its TLS certificate file and helpers that
// tests and the demo use to inject faults or tamper with a VM behind
// Warden's back. It listens on 127.0.0.1 only and must not be used against
// a real vCenter; it is not a _test package because `warden demo` runs it.
package vsim

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"sync"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator" // registers the vAPI (tags) endpoints
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/warden-ir/warden/providers/vsphere"
)

// Defaults for Options.
const (
	DefaultTransitPortgroup    = "vpn-transit"
	DefaultLANPortgroup        = "vpn-lan"
	DefaultQuarantinePortgroup = "warden-quarantine"
	// Datacenter is the lab's only datacenter.
	Datacenter = "DC0"
	// Username logs in to the lab; the password is random per lab.
	Username = "warden@vsphere.local"
)

// DefaultGateways are the gateway VMs of the demo VPN.
var defaultGateways = []string{"gw-hq", "gw-osaka", "gw-dc"}

// Options shape the lab.
type Options struct {
	// Gateways are VM names; default gw-hq, gw-osaka, gw-dc.
	Gateways []string
	// Portgroup names; defaults vpn-transit, vpn-lan, warden-quarantine.
	TransitPortgroup, LANPortgroup, QuarantinePortgroup string
}

func (o Options) withDefaults() Options {
	if len(o.Gateways) == 0 {
		o.Gateways = append([]string(nil), defaultGateways...)
	}
	o.TransitPortgroup = cmp.Or(o.TransitPortgroup, DefaultTransitPortgroup)
	o.LANPortgroup = cmp.Or(o.LANPortgroup, DefaultLANPortgroup)
	o.QuarantinePortgroup = cmp.Or(o.QuarantinePortgroup, DefaultQuarantinePortgroup)
	return o
}

// Lab is a running simulator.
type Lab struct {
	// URL of the SDK endpoint, with user:password.
	URL *url.URL
	// Username and Password log in to the lab.
	Username, Password string
	// CAFile is a PEM file holding the lab's certificate (removed by Close).
	CAFile string
	// Options the lab was built with, defaults applied.
	Options Options

	model  *simulator.Model
	server *simulator.Server
	once   sync.Once
	hold   waitHold
}

// Start builds and serves a lab on 127.0.0.1. Close it when done.
func Start(ctx context.Context, opt Options) (*Lab, error) {
	opt = opt.withDefaults()
	if err := validate(opt); err != nil {
		return nil, err
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("generating lab password: %w", err)
	}
	l := &Lab{Username: Username, Password: hex.EncodeToString(secret), Options: opt,
		hold: waitHold{tasks: map[string]chan struct{}{}, collectors: map[types.ManagedObjectReference]chan struct{}{}, closed: make(chan struct{})}}

	m := simulator.VPX()
	m.Host = 0    // no standalone host: every host is in the cluster and on the switch
	m.Machine = 0 // no DC0_* VMs: the lab creates its gateways
	m.Portgroup = 1
	if err := m.Create(); err != nil {
		return nil, fmt.Errorf("creating simulator inventory: %w", err)
	}
	l.model = m
	// Installed before the server serves anything: the simulator reads
	// the hook unguarded.
	m.Map().Handler = l.intercept
	m.Service.TLS = new(tls.Config)
	m.Service.RegisterEndpoints = true
	m.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(l.Username, l.Password)}
	l.server = m.Service.NewServer()
	l.URL = l.server.URL
	ca, err := l.server.CertificateFile()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("writing lab certificate: %w", err)
	}
	l.CAFile = ca

	if err := l.populate(ctx); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func validate(opt Options) error {
	seen := map[string]bool{}
	for _, g := range opt.Gateways {
		if g == "" || seen[g] {
			return fmt.Errorf("starting lab: gateway names must be unique and non-empty, got %q", opt.Gateways)
		}
		seen[g] = true
	}
	pgs := []string{opt.TransitPortgroup, opt.LANPortgroup, opt.QuarantinePortgroup}
	if pgs[0] == pgs[1] || pgs[0] == pgs[2] || pgs[1] == pgs[2] {
		return fmt.Errorf("starting lab: portgroup names must differ, got %q", pgs)
	}
	return nil
}

// Close stops the simulator and removes its files. Safe to call twice.
func (l *Lab) Close() {
	l.once.Do(func() {
		close(l.hold.closed)
		if l.server != nil {
			l.server.Close()
		}
		if l.model != nil {
			l.model.Remove()
		}
	})
}

// Config returns a provider configuration for the lab, with TLS
// verification on (trusting the lab's certificate through CAFile).
func (l *Lab) Config() vsphere.Config {
	u := *l.URL
	u.User = nil
	return vsphere.Config{
		URL:                 u.String(),
		Username:            l.Username,
		Password:            l.Password,
		CAFile:              l.CAFile,
		Datacenter:          Datacenter,
		QuarantinePortgroup: l.Options.QuarantinePortgroup,
		QuarantineMode:      vsphere.ModePortgroup,
	}
}

// FailMethod makes the next times calls of the SOAP method (e.g.
// "ReconfigVM_Task") fail with f before doing anything; times <= 0 fails
// every call until ClearFaults. f nil means a generic SystemError.
func (l *Lab) FailMethod(method string, times int, f types.BaseMethodFault) {
	if times < 0 {
		times = 0
	}
	rule := &simulator.FaultInjectionRule{
		MethodName:  method,
		ObjectType:  "*",
		ObjectName:  "*",
		Probability: 1,
		FaultType:   simulator.FaultTypeGeneric,
		Message:     "fault injected by the lab",
		MaxCount:    times,
		Enabled:     true,
	}
	if f != nil {
		rule.FaultType = simulator.FaultTypeCustom
		rule.Fault = f
	}
	l.model.Service.AddFaultRule(rule)
}

// ClearFaults removes every fault rule.
func (l *Lab) ClearFaults() { l.model.Service.ClearFaultRules() }

// NewClient logs in to the lab with TLS verification on. The caller logs
// out.
func (l *Lab) NewClient(ctx context.Context) (*govmomi.Client, error) {
	u := *l.URL
	sc := soap.NewClient(&u, false)
	if err := sc.SetRootCAs(l.CAFile); err != nil {
		return nil, fmt.Errorf("trusting lab certificate: %w", err)
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("connecting to lab: %w", err)
	}
	c := &govmomi.Client{Client: vc, SessionManager: session.NewManager(vc)}
	if err := c.Login(ctx, l.URL.User); err != nil {
		return nil, fmt.Errorf("logging in to lab: %w", err)
	}
	return c, nil
}

// SetNICNetwork moves the NIC labelled label of vm to portgroup and makes
// it connected and start connected, the way a person undoing a quarantine
// by hand would. Tests and the demo use it to create drift.
func (l *Lab) SetNICNetwork(ctx context.Context, vm, label, portgroup string) error {
	return l.WithClient(ctx, func(_ *govmomi.Client, f *find.Finder) error {
		obj, backing, err := vmAndBacking(ctx, f, vm, portgroup)
		if err != nil {
			return err
		}
		dev, err := existingNIC(ctx, obj, vm, label)
		if err != nil {
			return err
		}
		card := dev.(types.BaseVirtualEthernetCard)
		nic := card.GetVirtualEthernetCard()
		nic.Backing = backing
		nic.Connectable = &types.VirtualDeviceConnectInfo{Connected: true, StartConnected: true, AllowGuestControl: true}
		if err := obj.EditDevice(ctx, dev); err != nil {
			return fmt.Errorf("moving nic %q of %s to %s: %w", label, vm, portgroup, err)
		}
		return nil
	})
}

// AddPortgroups adds distributed portgroups to the lab's switch (a
// management network, say).
func (l *Lab) AddPortgroups(ctx context.Context, names ...string) error {
	return l.WithClient(ctx, func(_ *govmomi.Client, f *find.Finder) error {
		return addPortgroups(ctx, f, names...)
	})
}

// AddNIC adds a vmxnet3 NIC labelled label on portgroup to vm, connected
// and connecting at power on, and returns the MAC address vSphere gave it.
func (l *Lab) AddNIC(ctx context.Context, vm, label, portgroup string) (mac string, err error) {
	err = l.WithClient(ctx, func(_ *govmomi.Client, f *find.Finder) error {
		obj, backing, err := vmAndBacking(ctx, f, vm, portgroup)
		if err != nil {
			return err
		}
		nic, err := newNIC(backing, label)
		if err != nil {
			return fmt.Errorf("creating nic %q for %s: %w", label, vm, err)
		}
		if err := obj.AddDevice(ctx, nic); err != nil {
			return fmt.Errorf("adding nic %q to %s: %w", label, vm, err)
		}
		d, err := nicOf(ctx, obj, vm, label)
		if err != nil {
			return err
		}
		if d != nil {
			mac = d.(types.BaseVirtualEthernetCard).GetVirtualEthernetCard().MacAddress
			return nil
		}
		return fmt.Errorf("adding nic %q to %s: not found after adding it", label, vm)
	})
	return mac, err
}

// RemoveNIC removes the NIC labelled label from vm.
func (l *Lab) RemoveNIC(ctx context.Context, vm, label string) error {
	return l.WithClient(ctx, func(_ *govmomi.Client, f *find.Finder) error {
		obj, err := findVM(ctx, f, vm)
		if err != nil {
			return err
		}
		d, err := existingNIC(ctx, obj, vm, label)
		if err != nil {
			return err
		}
		if err := obj.RemoveDevice(ctx, false, d); err != nil {
			return fmt.Errorf("removing nic %q from %s: %w", label, vm, err)
		}
		return nil
	})
}

func findVM(ctx context.Context, f *find.Finder, vm string) (*object.VirtualMachine, error) {
	obj, err := f.VirtualMachine(ctx, vm)
	if err != nil {
		return nil, fmt.Errorf("finding vm %s: %w", vm, err)
	}
	return obj, nil
}

// vmAndBacking finds vm and the backing of a NIC on portgroup.
func vmAndBacking(ctx context.Context, f *find.Finder, vm, portgroup string) (*object.VirtualMachine, types.BaseVirtualDeviceBackingInfo, error) {
	obj, err := findVM(ctx, f, vm)
	if err != nil {
		return nil, nil, err
	}
	backing, err := pgBacking(ctx, f, portgroup)
	if err != nil {
		return nil, nil, err
	}
	return obj, backing, nil
}

// nicOf returns the NIC of vm labelled label, nil when it has none.
func nicOf(ctx context.Context, obj *object.VirtualMachine, vm, label string) (types.BaseVirtualDevice, error) {
	devices, err := obj.Device(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading devices of %s: %w", vm, err)
	}
	return findNIC(devices, label), nil
}

// existingNIC is nicOf for a NIC that must be there: none is an error.
func existingNIC(ctx context.Context, obj *object.VirtualMachine, vm, label string) (types.BaseVirtualDevice, error) {
	d, err := nicOf(ctx, obj, vm, label)
	if err == nil && d == nil {
		err = fmt.Errorf("finding nic %q of %s: not found", label, vm)
	}
	return d, err
}

func findNIC(devices object.VirtualDeviceList, label string) types.BaseVirtualDevice {
	for _, d := range devices.SelectByType((*types.VirtualEthernetCard)(nil)) {
		if info := d.GetVirtualDevice().DeviceInfo; info != nil && info.GetDescription().Label == label {
			return d
		}
	}
	return nil
}

func newNIC(backing types.BaseVirtualDeviceBackingInfo, label string) (types.BaseVirtualDevice, error) {
	var devices object.VirtualDeviceList
	nic, err := devices.CreateEthernetCard("vmxnet3", backing)
	if err != nil {
		return nil, err
	}
	// Labels as vSphere's client names them; vcsim would invent its own.
	nic.GetVirtualDevice().DeviceInfo = &types.Description{Label: label}
	return nic, nil
}

// WithClient runs fn with a logged-in client and a finder set to the lab's
// datacenter, logging out afterwards. Tests use it to change the lab
// behind Warden's back.
func (l *Lab) WithClient(ctx context.Context, fn func(*govmomi.Client, *find.Finder) error) error {
	c, err := l.NewClient(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = c.Logout(context.WithoutCancel(ctx)) }()
	f := find.NewFinder(c.Client, false)
	dc, err := f.Datacenter(ctx, Datacenter)
	if err != nil {
		return fmt.Errorf("finding datacenter: %w", err)
	}
	f.SetDatacenter(dc)
	return fn(c, f)
}

func pgBacking(ctx context.Context, f *find.Finder, name string) (types.BaseVirtualDeviceBackingInfo, error) {
	n, err := f.Network(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("finding portgroup %s: %w", name, err)
	}
	pg, ok := n.(*object.DistributedVirtualPortgroup)
	if !ok {
		return nil, fmt.Errorf("finding portgroup %s: not a distributed portgroup", name)
	}
	b, err := pg.EthernetCardBackingInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading backing of portgroup %s: %w", name, err)
	}
	return b, nil
}

// populate adds the portgroups and the gateway VMs.
func (l *Lab) populate(ctx context.Context) error {
	return l.WithClient(ctx, func(_ *govmomi.Client, f *find.Finder) error {
		opt := l.Options
		if err := addPortgroups(ctx, f, opt.TransitPortgroup, opt.LANPortgroup, opt.QuarantinePortgroup); err != nil {
			return err
		}
		transit, err := pgBacking(ctx, f, opt.TransitPortgroup)
		if err != nil {
			return err
		}
		lan, err := pgBacking(ctx, f, opt.LANPortgroup)
		if err != nil {
			return err
		}
		folders, err := f.DefaultFolder(ctx)
		if err != nil {
			return fmt.Errorf("finding vm folder: %w", err)
		}
		pool, err := f.ResourcePool(ctx, "/"+Datacenter+"/host/DC0_C0/Resources")
		if err != nil {
			return fmt.Errorf("finding resource pool: %w", err)
		}
		for _, name := range opt.Gateways {
			if err := createGateway(ctx, folders, pool, name, transit, lan); err != nil {
				return err
			}
		}
		return nil
	})
}

// addPortgroups adds distributed portgroups to the lab's switch.
func addPortgroups(ctx context.Context, f *find.Finder, names ...string) error {
	n, err := f.Network(ctx, "DVS0")
	if err != nil {
		return fmt.Errorf("finding lab switch: %w", err)
	}
	dvs, ok := n.(*object.DistributedVirtualSwitch)
	if !ok {
		return errors.New("finding lab switch: DVS0 is not a distributed switch")
	}
	var specs []types.DVPortgroupConfigSpec
	for _, name := range names {
		specs = append(specs, types.DVPortgroupConfigSpec{
			Name:     name,
			Type:     string(types.DistributedVirtualPortgroupPortgroupTypeEarlyBinding),
			NumPorts: 128,
		})
	}
	task, err := dvs.AddPortgroup(ctx, specs)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("adding lab portgroups %q: %w", names, err)
	}
	return nil
}

func createGateway(ctx context.Context, folder *object.Folder, pool *object.ResourcePool, name string, backings ...types.BaseVirtualDeviceBackingInfo) error {
	var devices object.VirtualDeviceList
	for i, b := range backings {
		nic, err := newNIC(b, fmt.Sprintf("Network adapter %d", i+1))
		if err != nil {
			return fmt.Errorf("creating nic for %s: %w", name, err)
		}
		devices = append(devices, nic)
	}
	change, err := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	if err != nil {
		return fmt.Errorf("building devices of %s: %w", name, err)
	}
	spec := types.VirtualMachineConfigSpec{
		Name:         name,
		GuestId:      string(types.VirtualMachineGuestOsIdentifierOtherLinux64Guest),
		NumCPUs:      2,
		MemoryMB:     2048,
		Files:        &types.VirtualMachineFileInfo{VmPathName: "[LocalDS_0]"},
		DeviceChange: change,
	}
	task, err := folder.CreateVM(ctx, spec, pool, nil)
	if err != nil {
		return fmt.Errorf("creating vm %s: %w", name, err)
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return fmt.Errorf("creating vm %s: %w", name, err)
	}
	vm := object.NewVirtualMachine(folder.Client(), info.Result.(types.ManagedObjectReference))
	task, err = vm.PowerOn(ctx)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("powering on vm %s: %w", name, err)
	}
	return nil
}
