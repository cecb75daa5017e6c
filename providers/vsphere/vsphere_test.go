package vsphere_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/internal/testsupport"
	"github.com/warden-ir/warden/providers/vsphere"
	"github.com/warden-ir/warden/providers/vsphere/vsim"
)

func startLab(t testing.TB) *vsim.Lab {
	t.Helper()
	lab, err := vsim.Start(t.Context(), vsim.Options{})
	if err != nil {
		t.Fatalf("starting lab: %v", err)
	}
	t.Cleanup(lab.Close)
	return lab
}

// connect connects to lab with its config changed by edit, and fails the
// test if the log ever shows the password.
func connect(t testing.TB, lab *vsim.Lab, edit func(*vsphere.Config)) *vsphere.Provider {
	t.Helper()
	cfg := lab.Config()
	if edit != nil {
		edit(&cfg)
	}
	logs := &testsupport.SyncBuffer{}
	p, err := vsphere.Connect(t.Context(), cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("closing: %v", err)
		}
		if strings.Contains(logs.String(), lab.Password) {
			t.Errorf("log contains the password:\n%s", logs.String())
		}
	})
	return p
}

func observe(t testing.TB, p *vsphere.Provider, vm string) actions.VMState {
	t.Helper()
	st, err := p.ObserveVM(t.Context(), vm)
	if err != nil {
		t.Fatalf("observing %s: %v", vm, err)
	}
	return st
}

func mustChange(t testing.TB, want bool, what string, changed bool, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if changed != want {
		t.Fatalf("%s: changed=%t, want %t", what, changed, want)
	}
}

type recordedNIC struct {
	Key            int32  `json:"key"`
	Network        string `json:"network"`
	Connected      bool   `json:"connected"`
	StartConnected bool   `json:"start_connected"`
}

func record(t testing.TB, st actions.VMState) []recordedNIC {
	t.Helper()
	raw, ok := st.Attributes[vsphere.DefaultAttribute]
	if !ok {
		t.Fatalf("attribute %q missing: %v", vsphere.DefaultAttribute, st.Attributes)
	}
	var rec struct{ NICs []recordedNIC }
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		t.Fatalf("decoding record %q: %v", raw, err)
	}
	return rec.NICs
}

func hasTag(st actions.VMState) bool {
	for _, tag := range st.Tags {
		if tag == vsphere.DefaultTagCategory+"/"+vsphere.DefaultTag {
			return true
		}
	}
	return false
}

func TestLabLayout(t *testing.T) {
	lab := startLab(t)
	p := connect(t, lab, nil)
	for _, gw := range []string{"gw-hq", "gw-osaka", "gw-dc"} {
		st := observe(t, p, gw)
		if st.PowerState != "poweredOn" || st.Quarantined || len(st.Tags) != 0 || len(st.Snapshots) != 0 {
			t.Errorf("%s: unexpected state %+v", gw, st)
		}
		var nets []string
		for _, n := range st.NICs {
			nets = append(nets, n.Network)
			if !n.Connected || !n.StartConnected || n.MAC == "" {
				t.Errorf("%s: nic %+v not connected or without MAC", gw, n)
			}
		}
		if want := []string{"vpn-transit", "vpn-lan"}; !reflect.DeepEqual(nets, want) {
			t.Errorf("%s: nic networks %v, want %v", gw, nets, want)
		}
		if st.NICs[0].Label != "Network adapter 1" || st.NICs[1].Label != "Network adapter 2" {
			t.Errorf("%s: labels %q, %q", gw, st.NICs[0].Label, st.NICs[1].Label)
		}
	}
	// An inventory path works as well as a name.
	if st := observe(t, p, "/DC0/vm/gw-hq"); st.Name != "gw-hq" {
		t.Errorf("by path: name %q", st.Name)
	}
}

func TestIsolateRelease(t *testing.T) {
	tests := map[string]struct {
		mode          string
		wantConnected bool
	}{
		"portgroup":  {mode: vsphere.ModePortgroup, wantConnected: true},
		"disconnect": {mode: vsphere.ModeDisconnect, wantConnected: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			lab := startLab(t)
			p := connect(t, lab, func(c *vsphere.Config) { c.QuarantineMode = tc.mode })
			original := observe(t, p, "gw-hq")
			bystander := observe(t, p, "gw-osaka")

			changed, err := p.IsolateVM(ctx, "gw-hq")
			mustChange(t, true, "first isolate", changed, err)
			isolated := observe(t, p, "gw-hq")
			if !isolated.Quarantined || !hasTag(isolated) {
				t.Fatalf("after isolate: quarantined=%t tags=%v", isolated.Quarantined, isolated.Tags)
			}
			for _, n := range isolated.NICs {
				if n.Network != "warden-quarantine" || n.StartConnected || n.Connected != tc.wantConnected {
					t.Errorf("after isolate: nic %+v, want on warden-quarantine, start_connected=false, connected=%t", n, tc.wantConnected)
				}
			}
			rec := record(t, isolated)
			for i, n := range original.NICs {
				want := recordedNIC{Key: n.Key, Network: n.Network, Connected: n.Connected, StartConnected: n.StartConnected}
				if i >= len(rec) || rec[i] != want {
					t.Errorf("record[%d] = %+v, want %+v", i, rec, want)
				}
			}

			changed, err = p.IsolateVM(ctx, "gw-hq")
			mustChange(t, false, "second isolate", changed, err)
			if again := observe(t, p, "gw-hq"); !reflect.DeepEqual(again, isolated) {
				t.Errorf("second isolate changed state:\n got %+v\nwant %+v", again, isolated)
			}
			if st := observe(t, p, "gw-osaka"); !reflect.DeepEqual(st, bystander) {
				t.Errorf("isolating gw-hq touched gw-osaka: %+v", st)
			}

			changed, err = p.ReleaseVM(ctx, "gw-hq")
			mustChange(t, true, "first release", changed, err)
			released := observe(t, p, "gw-hq")
			if !reflect.DeepEqual(released.NICs, original.NICs) {
				t.Errorf("after release nics:\n got %+v\nwant %+v", released.NICs, original.NICs)
			}
			if released.Quarantined || hasTag(released) {
				t.Errorf("after release: quarantined=%t tags=%v", released.Quarantined, released.Tags)
			}
			if _, ok := released.Attributes[vsphere.DefaultAttribute]; ok {
				t.Errorf("after release: record still present: %v", released.Attributes)
			}

			changed, err = p.ReleaseVM(ctx, "gw-hq")
			mustChange(t, false, "second release", changed, err)
			if again := observe(t, p, "gw-hq"); !reflect.DeepEqual(again, released) {
				t.Errorf("second release changed state:\n got %+v\nwant %+v", again, released)
			}
		})
	}
}

// A quarantine undone by hand (NIC moved back) is re-applied from the
// existing record, which must still hold the true original.
func TestIsolateAfterDriftKeepsOriginalRecord(t *testing.T) {
	ctx := t.Context()
	lab := startLab(t)
	p := connect(t, lab, nil)
	original := observe(t, p, "gw-dc")
	must(t, true, "isolate")(p.IsolateVM(ctx, "gw-dc"))
	recBefore := record(t, observe(t, p, "gw-dc"))

	if err := lab.SetNICNetwork(ctx, "gw-dc", "Network adapter 2", "vpn-transit"); err != nil {
		t.Fatal(err)
	}
	drifted := observe(t, p, "gw-dc")
	if drifted.Quarantined {
		t.Fatalf("after drift: still reported quarantined: %+v", drifted.NICs)
	}

	must(t, true, "re-isolate")(p.IsolateVM(ctx, "gw-dc"))
	st := observe(t, p, "gw-dc")
	if !st.Quarantined {
		t.Fatalf("after re-isolate: not quarantined: %+v", st.NICs)
	}
	if rec := record(t, st); !reflect.DeepEqual(rec, recBefore) {
		t.Fatalf("record overwritten:\n got %+v\nwant %+v", rec, recBefore)
	}
	must(t, true, "release")(p.ReleaseVM(ctx, "gw-dc"))
	if got := observe(t, p, "gw-dc").NICs; !reflect.DeepEqual(got, original.NICs) {
		t.Fatalf("after release nics:\n got %+v\nwant %+v", got, original.NICs)
	}
}

// must returns a checker for a provider call's (changed, err).
func must(t testing.TB, want bool, what string) func(bool, error) {
	return func(changed bool, err error) {
		t.Helper()
		mustChange(t, want, what, changed, err)
	}
}

func TestSnapshot(t *testing.T) {
	ctx := t.Context()
	lab := startLab(t)
	p := connect(t, lab, nil)

	must(t, true, "memory snapshot")(p.SnapshotVM(ctx, "gw-hq", "warden-INC-1", "evidence", true))
	must(t, false, "same snapshot again")(p.SnapshotVM(ctx, "gw-hq", "warden-INC-1", "evidence", true))
	must(t, true, "disk-only snapshot")(p.SnapshotVM(ctx, "gw-hq", "disk-only", "", false))

	st := observe(t, p, "gw-hq")
	got := map[string]bool{}
	for _, s := range st.Snapshots {
		if _, dup := got[s.Name]; dup {
			t.Errorf("snapshot %q taken twice", s.Name)
		}
		got[s.Name] = s.Memory
		if s.Created == "" {
			t.Errorf("snapshot %q has no creation time", s.Name)
		}
	}
	if want := map[string]bool{"warden-INC-1": true, "disk-only": false}; !reflect.DeepEqual(got, want) {
		t.Errorf("snapshots (name: memory) = %v, want %v", got, want)
	}

	// A same-named snapshot without memory cannot satisfy a memory request.
	_, err := p.SnapshotVM(ctx, "gw-hq", "disk-only", "", true)
	if !actions.IsTerminal(err) || !strings.Contains(err.Error(), "without memory") {
		t.Errorf("memory snapshot over disk-only one: err = %v, want terminal", err)
	}
}

func TestPowerOff(t *testing.T) {
	ctx := t.Context()
	lab := startLab(t)
	p := connect(t, lab, nil)
	must(t, true, "power off")(p.PowerOffVM(ctx, "gw-osaka"))
	if st := observe(t, p, "gw-osaka"); st.PowerState != "poweredOff" {
		t.Fatalf("power state %q", st.PowerState)
	}
	must(t, false, "power off again")(p.PowerOffVM(ctx, "gw-osaka"))
	if st := observe(t, p, "gw-hq"); st.PowerState != "poweredOn" {
		t.Fatalf("other vm powered off too: %q", st.PowerState)
	}
}

func TestTerminalErrors(t *testing.T) {
	ctx := t.Context()
	lab := startLab(t)

	t.Run("unknown quarantine portgroup at connect", func(t *testing.T) {
		cfg := lab.Config()
		cfg.QuarantinePortgroup = "no-such-pg"
		_, err := vsphere.Connect(ctx, cfg, nil)
		if !actions.IsTerminal(err) || !strings.Contains(err.Error(), `"no-such-pg"`) {
			t.Fatalf("err = %v, want terminal naming the portgroup", err)
		}
	})

	p := connect(t, lab, nil)
	calls := map[string]func() (bool, error){
		"isolate":  func() (bool, error) { return p.IsolateVM(ctx, "gw-nowhere") },
		"release":  func() (bool, error) { return p.ReleaseVM(ctx, "gw-nowhere") },
		"snapshot": func() (bool, error) { return p.SnapshotVM(ctx, "gw-nowhere", "s", "", true) },
		"poweroff": func() (bool, error) { return p.PowerOffVM(ctx, "gw-nowhere") },
		"observe":  func() (bool, error) { _, err := p.ObserveVM(ctx, "gw-nowhere"); return false, err },
		"path":     func() (bool, error) { _, err := p.ObserveVM(ctx, "/DC0/vm/gw-nowhere"); return false, err },
	}
	for name, call := range calls {
		t.Run("unknown vm "+name, func(t *testing.T) {
			changed, err := call()
			if changed || !actions.IsTerminal(err) || !strings.Contains(err.Error(), "gw-nowhere") {
				t.Fatalf("changed=%t err=%v, want terminal naming the vm", changed, err)
			}
		})
	}

	t.Run("quarantine portgroup deleted after connect", func(t *testing.T) {
		before := observe(t, p, "gw-hq")
		destroyPortgroup(t, lab, "warden-quarantine")
		changed, err := p.IsolateVM(ctx, "gw-hq")
		if changed || !actions.IsTerminal(err) || !strings.Contains(err.Error(), `"warden-quarantine"`) {
			t.Fatalf("changed=%t err=%v, want terminal naming the portgroup", changed, err)
		}
		// Nothing was sent: the VM, record included, is as it was.
		c := connect(t, lab, func(c *vsphere.Config) {
			c.QuarantineMode = vsphere.ModeDisconnect
			c.QuarantinePortgroup = ""
		})
		if after := observe(t, c, "gw-hq"); !reflect.DeepEqual(after, before) {
			t.Fatalf("vm changed:\n got %+v\nwant %+v", after, before)
		}
	})
}

func destroyPortgroup(t *testing.T, lab *vsim.Lab, name string) {
	t.Helper()
	ctx := t.Context()
	err := lab.WithClient(ctx, func(c *govmomi.Client, f *find.Finder) error {
		n, err := f.Network(ctx, name)
		if err != nil {
			return err
		}
		task, err := object.NewDistributedVirtualPortgroup(c.Client, n.Reference()).Destroy(ctx)
		if err != nil {
			return err
		}
		return task.Wait(ctx)
	})
	if err != nil {
		t.Fatalf("destroying %s: %v", name, err)
	}
}

// A record naming a standard network that does not exist must be refused
// before any reconfiguration: vcsim panics on one (and vCenter fails).
func TestReleaseRefusesMissingRecordedNetwork(t *testing.T) {
	ctx := t.Context()
	lab := startLab(t)
	p := connect(t, lab, nil)
	must(t, true, "isolate")(p.IsolateVM(ctx, "gw-hq"))
	st := observe(t, p, "gw-hq")
	rec := st.Attributes[vsphere.DefaultAttribute]

	tests := map[string]struct {
		record string
		want   string
	}{
		"unknown standard network": {
			record: strings.Replace(strings.Replace(rec, `"kind":"dvs"`, `"kind":"network"`, 1), `"network":"vpn-transit"`, `"network":"no-such-net"`, 1),
			want:   `"no-such-net"`,
		},
		"unknown portgroup key": {
			record: strings.Replace(rec, `"network":"vpn-transit","kind":"dvs","portgroup_key":"`, `"network":"vpn-transit","kind":"dvs","portgroup_key":"x`, 1),
			want:   `"vpn-transit"`,
		},
		"corrupt": {record: `{"v":1,"nics":[`, want: "unreadable"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.record == rec {
				t.Fatalf("test record not altered: %s", rec)
			}
			setAttribute(t, lab, "gw-hq", tc.record)
			changed, err := p.ReleaseVM(ctx, "gw-hq")
			if changed || !actions.IsTerminal(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("changed=%t err=%v, want terminal containing %s", changed, err, tc.want)
			}
			if after := observe(t, p, "gw-hq"); !after.Quarantined {
				t.Fatalf("vm left quarantine: %+v", after.NICs)
			}
		})
	}

	t.Run("missing record", func(t *testing.T) {
		setAttribute(t, lab, "gw-hq", "")
		_, err := p.ReleaseVM(ctx, "gw-hq")
		if !actions.IsTerminal(err) || !strings.Contains(err.Error(), "by hand") {
			t.Fatalf("err = %v, want terminal saying what to do", err)
		}
	})
}

func setAttribute(t *testing.T, lab *vsim.Lab, vm, value string) {
	t.Helper()
	ctx := t.Context()
	err := lab.WithClient(ctx, func(c *govmomi.Client, f *find.Finder) error {
		obj, err := f.VirtualMachine(ctx, vm)
		if err != nil {
			return err
		}
		m, err := object.GetCustomFieldsManager(c.Client)
		if err != nil {
			return err
		}
		key, err := m.FindKey(ctx, vsphere.DefaultAttribute)
		if err != nil {
			return err
		}
		return m.Set(ctx, obj.Reference(), key, value)
	})
	if err != nil {
		t.Fatalf("setting attribute of %s: %v", vm, err)
	}
}

func TestTLSVerification(t *testing.T) {
	lab := startLab(t)
	tests := map[string]struct {
		edit    func(*vsphere.Config)
		wantErr bool
	}{
		"verification on without ca_file fails": {edit: func(c *vsphere.Config) { c.CAFile = "" }, wantErr: true},
		"ca_file trusts the lab":                {edit: func(*vsphere.Config) {}},
		"insecure skips verification":           {edit: func(c *vsphere.Config) { c.CAFile = ""; c.Insecure = true }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := lab.Config()
			tc.edit(&cfg)
			p, err := vsphere.Connect(t.Context(), cfg, nil)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				_ = p.Close(t.Context())
				return
			}
			var unknownCA x509.UnknownAuthorityError
			if !errors.As(err, &unknownCA) || !actions.IsTerminal(err) {
				t.Fatalf("err = %v (%T), want a terminal x509 unknown authority error", err, err)
			}
		})
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	ctx := t.Context()
	lab := startLab(t)
	tests := map[string]func(*vsphere.Config){
		"wrong password": func(c *vsphere.Config) { c.Password = "hunter2-wrong-" + lab.Password },
		"bad ca":         func(c *vsphere.Config) { c.CAFile = "" },
		"bad portgroup":  func(c *vsphere.Config) { c.QuarantinePortgroup = "nope" },
		"password in url": func(c *vsphere.Config) {
			c.URL = strings.Replace(c.URL, "https://", "https://u:"+c.Password+"@", 1)
		},
	}
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := lab.Config()
			edit(&cfg)
			_, err := vsphere.Connect(ctx, cfg, nil)
			if err == nil {
				t.Fatal("connect succeeded")
			}
			if !actions.IsTerminal(err) {
				t.Errorf("err = %v, want terminal", err)
			}
			if strings.Contains(err.Error(), lab.Password) {
				t.Fatalf("error contains the password: %v", err)
			}
		})
	}
}

func TestSessionLossLogsInAgain(t *testing.T) {
	tests := map[string]struct{ soap, rest bool }{
		"soap and rest": {soap: true, rest: true},
		"soap only":     {soap: true},
		"rest only":     {rest: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			lab := startLab(t)
			p := connect(t, lab, nil)
			observe(t, p, "gw-hq")
			if err := vsphere.ExpireSession(ctx, p, tc.soap, tc.rest); err != nil {
				t.Fatal(err)
			}
			must(t, true, "isolate after session loss")(p.IsolateVM(ctx, "gw-hq"))
			if st := observe(t, p, "gw-hq"); !st.Quarantined {
				t.Fatalf("not quarantined: %+v", st)
			}
		})
	}
}

func TestFaultInjection(t *testing.T) {
	transient := map[string]types.BaseMethodFault{
		"TaskInProgress":    &types.TaskInProgress{},
		"HostCommunication": &types.HostCommunication{},
		"ConcurrentAccess":  &types.ConcurrentAccess{},
		"SystemError":       &types.SystemError{Reason: "disk hiccup"},
		"generic (nil)":     nil,
	}
	for name, f := range transient {
		t.Run("one-shot "+name+" is transient and a retry succeeds", func(t *testing.T) {
			ctx := t.Context()
			lab := startLab(t)
			p := connect(t, lab, nil)
			original := observe(t, p, "gw-hq")
			lab.FailMethod("ReconfigVM_Task", 1, f)

			changed, err := p.IsolateVM(ctx, "gw-hq")
			if err == nil || actions.IsTerminal(err) {
				t.Fatalf("changed=%t err=%v, want a transient error", changed, err)
			}
			if !strings.Contains(err.Error(), "moving nic") {
				t.Errorf("error lacks context: %v", err)
			}
			st := observe(t, p, "gw-hq")
			if st.Quarantined || !reflect.DeepEqual(st.NICs, original.NICs) {
				t.Fatalf("after failed isolate: nics moved: %+v", st.NICs)
			}
			must(t, true, "retry")(p.IsolateVM(ctx, "gw-hq"))
			if !observe(t, p, "gw-hq").Quarantined {
				t.Fatal("retry did not quarantine")
			}
		})
	}

	terminal := map[string]types.BaseMethodFault{
		"NoPermission":    &types.NoPermission{PrivilegeId: "VirtualMachine.Config.EditDevice"},
		"InvalidArgument": &types.InvalidArgument{InvalidProperty: "deviceChange"},
	}
	for name, f := range terminal {
		t.Run(name+" is terminal", func(t *testing.T) {
			lab := startLab(t)
			p := connect(t, lab, nil)
			lab.FailMethod("ReconfigVM_Task", 1, f)
			if _, err := p.IsolateVM(t.Context(), "gw-hq"); !actions.IsTerminal(err) {
				t.Fatalf("err = %v, want terminal", err)
			}
		})
	}

	t.Run("persistent fault leaves nics where they were", func(t *testing.T) {
		ctx := t.Context()
		lab := startLab(t)
		p := connect(t, lab, nil)
		original := observe(t, p, "gw-osaka")
		lab.FailMethod("ReconfigVM_Task", 0, &types.HostCommunication{})
		for range 3 {
			if _, err := p.IsolateVM(ctx, "gw-osaka"); err == nil || actions.IsTerminal(err) {
				t.Fatalf("err = %v, want transient", err)
			}
		}
		st := observe(t, p, "gw-osaka")
		if st.Quarantined || hasTag(st) || !reflect.DeepEqual(st.NICs, original.NICs) {
			t.Fatalf("after failing isolations: %+v", st)
		}
		// The record was written before the first attempt and is the
		// true original.
		for i, r := range record(t, st) {
			if r.Network != original.NICs[i].Network {
				t.Fatalf("record[%d] = %+v, want network %s", i, r, original.NICs[i].Network)
			}
		}
		lab.ClearFaults()
		must(t, true, "isolate after fault cleared")(p.IsolateVM(ctx, "gw-osaka"))
		must(t, true, "release")(p.ReleaseVM(ctx, "gw-osaka"))
		if got := observe(t, p, "gw-osaka").NICs; !reflect.DeepEqual(got, original.NICs) {
			t.Fatalf("after release: %+v, want %+v", got, original.NICs)
		}
	})

	t.Run("release after a partial isolation clears the record", func(t *testing.T) {
		ctx := t.Context()
		lab := startLab(t)
		p := connect(t, lab, nil)
		lab.FailMethod("ReconfigVM_Task", 1, &types.TaskInProgress{})
		if _, err := p.IsolateVM(ctx, "gw-hq"); err == nil {
			t.Fatal("isolate succeeded despite fault")
		}
		must(t, true, "release of partial isolation")(p.ReleaseVM(ctx, "gw-hq"))
		if st := observe(t, p, "gw-hq"); len(st.Attributes) != 0 || st.Quarantined {
			t.Fatalf("after release: %+v", st)
		}
		must(t, false, "release again")(p.ReleaseVM(ctx, "gw-hq"))
	})
}

func TestConfigValidate(t *testing.T) {
	good := vsphere.Config{URL: "https://vc.example/sdk", Username: "u", Password: "p", QuarantinePortgroup: "q"}
	tests := map[string]struct {
		edit func(*vsphere.Config)
		want string // "" means valid
	}{
		"good":                  {edit: func(*vsphere.Config) {}},
		"disconnect without pg": {edit: func(c *vsphere.Config) { c.QuarantineMode = vsphere.ModeDisconnect; c.QuarantinePortgroup = "" }},
		"no url":                {edit: func(c *vsphere.Config) { c.URL = "" }, want: "vsphere.url"},
		"http":                  {edit: func(c *vsphere.Config) { c.URL = "http://vc/sdk" }, want: "vsphere.url: scheme"},
		"creds in url":          {edit: func(c *vsphere.Config) { c.URL = "https://u:secret@vc/sdk" }, want: "vsphere.url: must not contain credentials"},
		"no username":           {edit: func(c *vsphere.Config) { c.Username = "" }, want: "vsphere.username"},
		"no password":           {edit: func(c *vsphere.Config) { c.Password = "" }, want: "vsphere.password"},
		"insecure and ca":       {edit: func(c *vsphere.Config) { c.Insecure = true; c.CAFile = "/ca.pem" }, want: "vsphere.ca_file"},
		"bad mode":              {edit: func(c *vsphere.Config) { c.QuarantineMode = "shutdown" }, want: "vsphere.quarantine_mode"},
		"portgroup mode no pg":  {edit: func(c *vsphere.Config) { c.QuarantinePortgroup = "" }, want: "vsphere.quarantine_portgroup"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
	d := vsphere.Config{}.WithDefaults()
	if d.QuarantineMode != vsphere.ModePortgroup || d.TagCategory != "warden" || d.Tag != "quarantined" || d.Attribute != "warden.original-network" {
		t.Errorf("defaults: %+v", d)
	}
}

// BenchmarkIsolateRelease measures one isolation and one release of a
// two-NIC VM against vcsim, reporting each half. Most of the time is
// vcsim's own SOAP encoding on the same two cores.
func BenchmarkIsolateRelease(b *testing.B) {
	lab := startLab(b)
	p := connect(b, lab, nil)
	ctx := b.Context()
	var isolate, release time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := p.IsolateVM(ctx, "gw-hq"); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		if _, err := p.ReleaseVM(ctx, "gw-hq"); err != nil {
			b.Fatal(err)
		}
		isolate += mid.Sub(start)
		release += time.Since(mid)
	}
	b.ReportMetric(float64(isolate.Microseconds())/1000/float64(b.N), "isolate-ms/op")
	b.ReportMetric(float64(release.Microseconds())/1000/float64(b.N), "release-ms/op")
}

func BenchmarkObserveVM(b *testing.B) {
	lab := startLab(b)
	p := connect(b, lab, nil)
	ctx := b.Context()
	for b.Loop() {
		if _, err := p.ObserveVM(ctx, "gw-hq"); err != nil {
			b.Fatal(err)
		}
	}
}
