package vsphere_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/providers/vsphere"
	"github.com/warden-ir/warden/providers/vsphere/vsim"
)

// Portgroups the management tests add to the lab.
const (
	mgmtNet     = "vpn-mgmt"  // where a gateway's management NIC lives
	mgmtOnlyNet = "mgmt-only" // a management-only portgroup to move it to
)

// mgmtLab is a lab whose gw-hq has two NICs: "Network adapter 1" on
// vpn-transit and "Network adapter 2" (the management NIC, MAC mac) on
// vpn-mgmt.
type mgmtLab struct {
	lab *vsim.Lab
	mac string
}

func startMgmtLab(t *testing.T) mgmtLab {
	t.Helper()
	ctx := t.Context()
	lab := startLab(t)
	if err := lab.AddPortgroups(ctx, mgmtNet, mgmtOnlyNet); err != nil {
		t.Fatal(err)
	}
	if err := lab.RemoveNIC(ctx, "gw-hq", "Network adapter 2"); err != nil {
		t.Fatal(err)
	}
	mac, err := lab.AddNIC(ctx, "gw-hq", "Network adapter 2", mgmtNet)
	if err != nil {
		t.Fatal(err)
	}
	if mac == "" {
		t.Fatal("added nic has no mac")
	}
	return mgmtLab{lab: lab, mac: mac}
}

// managedEntries decodes the management list of the VM's record.
func managedEntries(t *testing.T, st actions.VMState) []string {
	t.Helper()
	var rec struct {
		Management []struct {
			Label     string `json:"label"`
			Portgroup string `json:"portgroup"`
		} `json:"management"`
	}
	if err := json.Unmarshal([]byte(st.Attributes[vsphere.DefaultAttribute]), &rec); err != nil {
		t.Fatalf("decoding record: %v", err)
	}
	var out []string
	for _, m := range rec.Management {
		out = append(out, m.Label+"@"+m.Portgroup)
	}
	return out
}

func TestIsolateKeepsManagementNIC(t *testing.T) {
	tests := map[string]struct {
		mode string
		keep func(mac string) actions.ManagementNICs
		// wantMgmtNet is where the management NIC must be after isolation.
		wantMgmtNet string
		wantEntry   string
	}{
		"by label": {
			keep: func(string) actions.ManagementNICs {
				return actions.ManagementNICs{NICs: []string{"Network adapter 2"}}
			},
			wantMgmtNet: mgmtNet, wantEntry: "Network adapter 2@",
		},
		"by mac": {
			keep: func(mac string) actions.ManagementNICs {
				return actions.ManagementNICs{NICs: []string{strings.ToUpper(mac)}}
			},
			wantMgmtNet: mgmtNet, wantEntry: "Network adapter 2@",
		},
		"to a management portgroup": {
			keep: func(string) actions.ManagementNICs {
				return actions.ManagementNICs{NICs: []string{"Network adapter 2"}, Portgroup: mgmtOnlyNet}
			},
			wantMgmtNet: mgmtOnlyNet, wantEntry: "Network adapter 2@" + mgmtOnlyNet,
		},
		"disconnect mode": {
			mode: vsphere.ModeDisconnect,
			keep: func(string) actions.ManagementNICs {
				return actions.ManagementNICs{NICs: []string{"Network adapter 2"}}
			},
			wantMgmtNet: mgmtNet, wantEntry: "Network adapter 2@",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			l := startMgmtLab(t)
			p := connect(t, l.lab, func(c *vsphere.Config) {
				if tc.mode != "" {
					c.QuarantineMode = tc.mode
				}
			})
			keep := tc.keep(l.mac)
			original := observe(t, p, "gw-hq")
			if nets := []string{original.NICs[0].Network, original.NICs[1].Network}; !reflect.DeepEqual(nets, []string{"vpn-transit", mgmtNet}) {
				t.Fatalf("lab gw-hq nics on %v", nets)
			}

			must(t, true, "isolate")(p.IsolateVMKeeping(ctx, "gw-hq", keep))
			st := observe(t, p, "gw-hq")
			if !st.Quarantined || !hasTag(st) {
				t.Fatalf("after isolate: quarantined=%t tags=%v nics=%+v", st.Quarantined, st.Tags, st.NICs)
			}
			data, mgmt := st.NICs[0], st.NICs[1]
			if data.Network != "warden-quarantine" || data.StartConnected || data.Management || data.Connected != (tc.mode == "") {
				t.Errorf("data nic after isolate: %+v, want on warden-quarantine, not start connected", data)
			}
			if mgmt.Network != tc.wantMgmtNet || !mgmt.Connected || !mgmt.StartConnected || !mgmt.Management || mgmt.MAC != l.mac {
				t.Errorf("management nic after isolate: %+v, want on %s, connected, management", mgmt, tc.wantMgmtNet)
			}
			// The record holds both originals, and says which NIC is kept.
			rec := record(t, st)
			if len(rec) != 2 || rec[0].Network != "vpn-transit" || rec[1].Network != mgmtNet || !rec[1].Connected {
				t.Errorf("record %+v, want the original networks of both nics", rec)
			}
			if got := managedEntries(t, st); !reflect.DeepEqual(got, []string{tc.wantEntry}) {
				t.Errorf("record management %q, want %q", got, tc.wantEntry)
			}

			must(t, false, "isolate again")(p.IsolateVMKeeping(ctx, "gw-hq", keep))
			if again := observe(t, p, "gw-hq"); !reflect.DeepEqual(again, st) {
				t.Errorf("second isolate changed state:\n got %+v\nwant %+v", again, st)
			}

			must(t, true, "release")(p.ReleaseVM(ctx, "gw-hq"))
			released := observe(t, p, "gw-hq")
			if !reflect.DeepEqual(released.NICs, original.NICs) || released.Quarantined || hasTag(released) {
				t.Errorf("after release:\n got %+v\nwant %+v", released, original)
			}
			if _, ok := released.Attributes[vsphere.DefaultAttribute]; ok {
				t.Errorf("record left after release: %v", released.Attributes)
			}
			must(t, false, "release again")(p.ReleaseVM(ctx, "gw-hq"))
		})
	}
}

// A declaration that does not fit the VM is refused before anything
// changes: never "isolate everything", never "isolate nothing".
func TestIsolateRefusesManagementMismatch(t *testing.T) {
	tests := map[string]struct {
		keep     actions.ManagementNICs
		oneNIC   bool   // gw-hq has only its management NIC
		want     string // in the error
		wantKind error  // wrapped, besides being terminal
	}{
		"unknown label": {
			keep: actions.ManagementNICs{NICs: []string{"Network adapter 9"}},
			want: `"Network adapter 9"`, wantKind: actions.ErrManagementNIC,
		},
		"unknown mac": {
			keep: actions.ManagementNICs{NICs: []string{"Network adapter 2", "00:50:56:ff:ff:ff"}},
			want: "mac 00:50:56:ff:ff:ff", wantKind: actions.ErrManagementNIC,
		},
		"only nic is management": {
			keep: actions.ManagementNICs{NICs: []string{"Network adapter 2"}}, oneNIC: true,
			want: "'Network adapter 2'", wantKind: actions.ErrManagementNIC,
		},
		"every nic is management": {
			keep: actions.ManagementNICs{NICs: []string{"Network adapter 1", "Network adapter 2"}},
			want: "every nic", wantKind: actions.ErrManagementNIC,
		},
		"management portgroup missing": {
			keep: actions.ManagementNICs{NICs: []string{"Network adapter 2"}, Portgroup: "no-such-pg"},
			want: `management portgroup "no-such-pg"`,
		},
		"management portgroup is the quarantine portgroup": {
			keep: actions.ManagementNICs{NICs: []string{"Network adapter 2"}, Portgroup: "warden-quarantine"},
			want: "is the quarantine portgroup",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			l := startMgmtLab(t)
			if tc.oneNIC {
				if err := l.lab.RemoveNIC(ctx, "gw-hq", "Network adapter 1"); err != nil {
					t.Fatal(err)
				}
			}
			p := connect(t, l.lab, nil)
			before := observe(t, p, "gw-hq")
			changed, err := p.IsolateVMKeeping(ctx, "gw-hq", tc.keep)
			if changed || !actions.IsTerminal(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("changed=%t err=%v, want terminal containing %s", changed, err, tc.want)
			}
			if tc.wantKind != nil && !errors.Is(err, tc.wantKind) {
				t.Errorf("err = %v, want it to wrap %v", err, tc.wantKind)
			}
			if after := observe(t, p, "gw-hq"); !reflect.DeepEqual(after, before) {
				t.Fatalf("vm changed:\n got %+v\nwant %+v", after, before)
			}
		})
	}
}

// With a management portgroup, a VM whose only NIC is the management NIC
// can be contained: the NIC moves to the management-only portgroup.
func TestIsolateOnlyNICToManagementPortgroup(t *testing.T) {
	ctx := t.Context()
	l := startMgmtLab(t)
	if err := l.lab.RemoveNIC(ctx, "gw-hq", "Network adapter 1"); err != nil {
		t.Fatal(err)
	}
	p := connect(t, l.lab, nil)
	original := observe(t, p, "gw-hq")
	keep := actions.ManagementNICs{NICs: []string{l.mac}, Portgroup: mgmtOnlyNet}
	must(t, true, "isolate")(p.IsolateVMKeeping(ctx, "gw-hq", keep))
	st := observe(t, p, "gw-hq")
	if len(st.NICs) != 1 || st.NICs[0].Network != mgmtOnlyNet || !st.NICs[0].Connected || !st.Quarantined {
		t.Fatalf("after isolate: %+v", st)
	}
	must(t, false, "isolate again")(p.IsolateVMKeeping(ctx, "gw-hq", keep))
	must(t, true, "release")(p.ReleaseVM(ctx, "gw-hq"))
	if got := observe(t, p, "gw-hq").NICs; !reflect.DeepEqual(got, original.NICs) {
		t.Fatalf("after release: %+v, want %+v", got, original.NICs)
	}
}

// Isolation is level-based in the declaration too: declaring a management
// NIC on an isolated VM brings it back from quarantine, dropping the
// declaration sends it there, and a kept NIC moved by hand is drift that
// observe reports and isolation repairs. The record keeps the true
// originals throughout.
func TestManagementDeclarationConverges(t *testing.T) {
	keep := actions.ManagementNICs{NICs: []string{"Network adapter 2"}}
	steps := map[string][]struct {
		what  string
		do    func(t *testing.T, l mgmtLab, p *vsphere.Provider) (bool, error)
		want  []string // networks of adapters 1 and 2 afterwards
		quar  bool
		kept  bool // adapter 2 is kept as management
		moved bool // the call reports a change
	}{
		"declared after isolation": {
			{what: "isolate undeclared", do: isolateWith(actions.ManagementNICs{}), want: []string{"warden-quarantine", "warden-quarantine"}, quar: true, moved: true},
			{what: "isolate declared", do: isolateWith(keep), want: []string{"warden-quarantine", mgmtNet}, quar: true, kept: true, moved: true},
			{what: "isolate declared again", do: isolateWith(keep), want: []string{"warden-quarantine", mgmtNet}, quar: true, kept: true},
		},
		"declaration dropped": {
			{what: "isolate declared", do: isolateWith(keep), want: []string{"warden-quarantine", mgmtNet}, quar: true, kept: true, moved: true},
			{what: "isolate undeclared", do: isolateWith(actions.ManagementNICs{}), want: []string{"warden-quarantine", "warden-quarantine"}, quar: true, moved: true},
		},
		"kept nic moved by hand": {
			{what: "isolate declared", do: isolateWith(keep), want: []string{"warden-quarantine", mgmtNet}, quar: true, kept: true, moved: true},
			{what: "drift", do: func(t *testing.T, l mgmtLab, _ *vsphere.Provider) (bool, error) {
				return true, l.lab.SetNICNetwork(t.Context(), "gw-hq", "Network adapter 2", "vpn-transit")
			}, want: []string{"warden-quarantine", "vpn-transit"}, quar: false, kept: true, moved: true},
			{what: "repair", do: isolateWith(keep), want: []string{"warden-quarantine", mgmtNet}, quar: true, kept: true, moved: true},
		},
	}
	for name, seq := range steps {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			l := startMgmtLab(t)
			p := connect(t, l.lab, nil)
			original := observe(t, p, "gw-hq")
			for _, s := range seq {
				must(t, s.moved, s.what)(s.do(t, l, p))
				st := observe(t, p, "gw-hq")
				got := []string{st.NICs[0].Network, st.NICs[1].Network}
				if !reflect.DeepEqual(got, s.want) || st.Quarantined != s.quar || st.NICs[1].Management != s.kept {
					t.Fatalf("after %s: nics %v quarantined=%t kept=%t, want %v %t %t", s.what, got, st.Quarantined, st.NICs[1].Management, s.want, s.quar, s.kept)
				}
				if rec := record(t, st); rec[0].Network != "vpn-transit" || rec[1].Network != mgmtNet {
					t.Fatalf("after %s: record %+v no longer holds the originals", s.what, rec)
				}
			}
			must(t, true, "release")(p.ReleaseVM(ctx, "gw-hq"))
			if got := observe(t, p, "gw-hq").NICs; !reflect.DeepEqual(got, original.NICs) {
				t.Fatalf("after release: %+v, want %+v", got, original.NICs)
			}
		})
	}
}

func isolateWith(keep actions.ManagementNICs) func(*testing.T, mgmtLab, *vsphere.Provider) (bool, error) {
	return func(t *testing.T, _ mgmtLab, p *vsphere.Provider) (bool, error) {
		return p.IsolateVMKeeping(t.Context(), "gw-hq", keep)
	}
}
