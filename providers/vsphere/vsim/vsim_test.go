package vsim_test

import (
	"context"
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/providers/vsphere"
	"github.com/warden-ir/warden/providers/vsphere/vsim"
)

// startLab starts a lab with opt, closed when the test ends.
func startLab(t *testing.T, opt vsim.Options) *vsim.Lab {
	t.Helper()
	lab, err := vsim.Start(t.Context(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	return lab
}

// connect connects a provider with cfg, closed when the test ends.
func connect(t *testing.T, cfg vsphere.Config) *vsphere.Provider {
	t.Helper()
	p, err := vsphere.Connect(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

func TestStartWithOptions(t *testing.T) {
	ctx := t.Context()
	opt := vsim.Options{
		Gateways:            []string{"gw-a", "gw-b"},
		TransitPortgroup:    "transit",
		LANPortgroup:        "lan",
		QuarantinePortgroup: "jail",
	}
	lab := startLab(t, opt)

	if lab.URL.Hostname() != "127.0.0.1" || lab.URL.Scheme != "https" {
		t.Errorf("lab url %s, want https on 127.0.0.1", lab.URL.Redacted())
	}
	if pw, _ := lab.URL.User.Password(); pw != lab.Password || lab.URL.User.Username() != lab.Username {
		t.Errorf("lab url user does not match Username/Password")
	}
	cfg := lab.Config()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("lab config invalid: %v", err)
	}
	if cfg.Insecure || cfg.CAFile == "" || cfg.QuarantinePortgroup != "jail" {
		t.Errorf("lab config %+v: want TLS verification through CAFile and quarantine portgroup jail", cfg)
	}

	p := connect(t, cfg)
	for _, gw := range opt.Gateways {
		st, err := p.ObserveVM(ctx, gw)
		if err != nil {
			t.Fatal(err)
		}
		var nets []string
		for _, n := range st.NICs {
			nets = append(nets, n.Network)
		}
		if st.PowerState != "poweredOn" || !reflect.DeepEqual(nets, []string{"transit", "lan"}) {
			t.Errorf("%s: power %s, nics %v", gw, st.PowerState, nets)
		}
	}
	// The default VMs of vcsim's model are not there.
	if _, err := p.ObserveVM(ctx, "DC0_C0_RP0_VM0"); !actions.IsTerminal(err) {
		t.Errorf("default vcsim vm present: err = %v", err)
	}
	// Nor are the default gateways when others are asked for.
	if _, err := p.ObserveVM(ctx, "gw-hq"); !actions.IsTerminal(err) {
		t.Errorf("gw-hq present: err = %v", err)
	}
}

func TestCloseRemovesFiles(t *testing.T) {
	lab, err := vsim.Start(t.Context(), vsim.Options{Gateways: []string{"gw"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lab.CAFile); err != nil {
		t.Fatalf("ca file: %v", err)
	}
	lab.Close()
	lab.Close() // twice is fine
	if _, err := os.Stat(lab.CAFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ca file left behind: %v", err)
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	tests := map[string]vsim.Options{
		"duplicate gateway": {Gateways: []string{"gw", "gw"}},
		"empty gateway":     {Gateways: []string{""}},
		"same portgroups":   {TransitPortgroup: "x", LANPortgroup: "x"},
		"quarantine is lan": {QuarantinePortgroup: vsim.DefaultLANPortgroup},
	}
	for name, opt := range tests {
		t.Run(name, func(t *testing.T) {
			lab, err := vsim.Start(t.Context(), opt)
			if err == nil {
				lab.Close()
				t.Fatal("started")
			}
		})
	}
}

func TestFailMethodCountsCalls(t *testing.T) {
	ctx := t.Context()
	lab := startLab(t, vsim.Options{})
	p := connect(t, lab.Config())

	lab.FailMethod("PowerOffVM_Task", 2, &types.TaskInProgress{})
	for i := range 2 {
		if _, err := p.PowerOffVM(ctx, "gw-hq"); err == nil || actions.IsTerminal(err) {
			t.Fatalf("call %d: err = %v, want transient", i, err)
		}
	}
	if changed, err := p.PowerOffVM(ctx, "gw-hq"); err != nil || !changed {
		t.Fatalf("third call: changed=%t err=%v", changed, err)
	}

	lab.FailMethod("PowerOffVM_Task", 0, nil)
	lab.ClearFaults()
	if _, err := p.PowerOffVM(ctx, "gw-osaka"); err != nil {
		t.Fatalf("after ClearFaults: %v", err)
	}
}

func TestSetNICNetwork(t *testing.T) {
	ctx := t.Context()
	lab := startLab(t, vsim.Options{})
	if err := lab.SetNICNetwork(ctx, "gw-hq", "Network adapter 1", vsim.DefaultQuarantinePortgroup); err != nil {
		t.Fatal(err)
	}
	p := connect(t, lab.Config())
	st, err := p.ObserveVM(ctx, "gw-hq")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.NICs[0]; n.Network != vsim.DefaultQuarantinePortgroup || !n.Connected || !n.StartConnected {
		t.Fatalf("nic %+v", n)
	}
	if err := lab.SetNICNetwork(ctx, "gw-hq", "Network adapter 9", vsim.DefaultLANPortgroup); err == nil {
		t.Fatal("moved a nic that does not exist")
	}
}
