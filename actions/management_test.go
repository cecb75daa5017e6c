package actions_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/inventory"
)

// startMgmtVMLab gives gw-hq two NICs: "Network adapter 1" on vpn-transit
// and "Network adapter 2", the management NIC, on vpn-mgmt. It returns the
// management NIC's MAC.
func startMgmtVMLab(t *testing.T) (vmLab, string) {
	t.Helper()
	ctx := t.Context()
	l := startVMLab(t)
	if err := l.lab.AddPortgroups(ctx, "vpn-mgmt"); err != nil {
		t.Fatal(err)
	}
	if err := l.lab.RemoveNIC(ctx, "gw-hq", "Network adapter 2"); err != nil {
		t.Fatal(err)
	}
	mac, err := l.lab.AddNIC(ctx, "gw-hq", "Network adapter 2", "vpn-mgmt")
	if err != nil {
		t.Fatal(err)
	}
	return l, mac
}

func mgmtRequest(nics ...string) actions.Request {
	req := vmRequest("gw-hq", nil)
	req.Gateway.Agent = "https://gw-hq.example.net:8781"
	req.Gateway.ManagementNICs = nics
	return req
}

func TestIsolateActionKeepsManagementNIC(t *testing.T) {
	tests := map[string]func(mac string) []string{
		"by label": func(string) []string { return []string{"Network adapter 2"} },
		"by mac":   func(mac string) []string { return []string{mac} },
	}
	for name, nics := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			l, mac := startMgmtVMLab(t)
			iso, rel := actions.NewIsolate(l.p), actions.NewRelease(l.p)
			req := mgmtRequest(nics(mac)...)

			before, plan, err := l.plan(t, iso, req)
			if err != nil {
				t.Fatal(err)
			}
			wantChanges := []string{"nic 'Network adapter 1': vpn-transit -> warden-quarantine", "tag gw-hq as quarantined"}
			if !reflect.DeepEqual(plan.Changes, wantChanges) || len(plan.Warnings) != 0 || plan.CutsAgent ||
				!strings.Contains(plan.Summary, "keeping management nic 'Network adapter 2' on vpn-mgmt") {
				t.Fatalf("plan %+v, want changes %q and the management nic kept, no warning", plan, wantChanges)
			}

			applyFirst(t, iso, req)
			st := l.observe(t, "gw-hq")
			data, mgmt := st.NICs[0], st.NICs[1]
			if data.Network != "warden-quarantine" || data.StartConnected {
				t.Errorf("data nic %+v, want on quarantine", data)
			}
			if mgmt.Network != "vpn-mgmt" || !mgmt.Connected || !mgmt.StartConnected || !mgmt.Management {
				t.Errorf("management nic %+v, want untouched on vpn-mgmt and connected", mgmt)
			}
			if _, err := iso.Verify(ctx, req); err != nil {
				t.Fatalf("verify: %v", err)
			}
			if res, err := iso.Apply(ctx, req); err != nil || res.Changed {
				t.Fatalf("second apply: %+v, %v", res, err)
			}
			if plan, err := iso.Plan(ctx, req); err != nil || len(plan.Changes) != 0 {
				t.Fatalf("plan after apply: %+v, %v", plan, err)
			}

			// Verify fails when the declaration and the VM disagree.
			if _, err := iso.Verify(ctx, mgmtRequest()); !errors.Is(err, actions.ErrNotVerified) || !strings.Contains(err.Error(), "no longer declared") {
				t.Errorf("verify without the declaration: %v, want not verified", err)
			}

			if plan, err := rel.Plan(ctx, req); err != nil || len(plan.Changes) != 2 || !strings.HasPrefix(plan.Changes[0], "nic 'Network adapter 1'") {
				t.Fatalf("release plan %+v, %v: want only the data nic restored", plan, err)
			}
			if res, err := rel.Apply(ctx, req); err != nil || !res.Changed {
				t.Fatalf("release: %+v, %v", res, err)
			}
			if got := l.observe(t, "gw-hq"); !reflect.DeepEqual(got.NICs, before.NICs) || got.Quarantined {
				t.Fatalf("after release: %+v, want nics %+v", got, before.NICs)
			}
			if _, err := rel.Verify(ctx, req); err != nil {
				t.Fatalf("verify release: %v", err)
			}
		})
	}
}

func TestIsolateActionManagementVerify(t *testing.T) {
	ctx := t.Context()
	l, _ := startMgmtVMLab(t)
	iso := actions.NewIsolate(l.p)
	req := mgmtRequest("Network adapter 2")
	if _, err := iso.Apply(ctx, req); err != nil {
		t.Fatal(err)
	}
	// The kept NIC put on quarantine by hand: contained, but the
	// management path is gone, and verification says so.
	if err := l.lab.SetNICNetwork(ctx, "gw-hq", "Network adapter 2", "warden-quarantine"); err != nil {
		t.Fatal(err)
	}
	_, err := iso.Verify(ctx, req)
	wantVMNotVerified(t, "verify with the management nic on quarantine", err)
	if plan, err := iso.Plan(ctx, req); err != nil || len(plan.Changes) == 0 || !strings.Contains(plan.Changes[0], "its recorded original network") {
		t.Fatalf("plan after drift: %+v, %v", plan, err)
	}
	if res, err := iso.Apply(ctx, req); err != nil || !res.Changed {
		t.Fatalf("repair: %+v, %v", res, err)
	}
	if _, err := iso.Verify(ctx, req); err != nil {
		t.Fatalf("verify after repair: %v", err)
	}
	if st := l.observe(t, "gw-hq"); st.NICs[1].Network != "vpn-mgmt" || !st.NICs[1].Connected {
		t.Fatalf("management nic after repair: %+v", st.NICs[1])
	}
}

// Without a declaration every NIC moves, and the plan says plainly what
// that costs.
func TestIsolateActionWarnsWithoutManagementNIC(t *testing.T) {
	tests := map[string]struct {
		agent         string
		wantCutsAgent bool
		wantWarning   string
	}{
		"with an agent":    {agent: "https://gw-hq.example.net:8781", wantCutsAgent: true, wantWarning: "the controller cannot reach the gateway's agent until release"},
		"without an agent": {wantWarning: "nothing reaches the gateway over the network until release"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			l, _ := startMgmtVMLab(t)
			iso := actions.NewIsolate(l.p)
			req := mgmtRequest()
			req.Gateway.Agent = tc.agent
			plan, err := iso.Plan(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Warnings) != 1 || plan.CutsAgent != tc.wantCutsAgent ||
				!strings.Contains(plan.Warnings[0], "no management vNIC is declared for gateway hq (inventory management_nics)") ||
				!strings.Contains(plan.Warnings[0], "every vNIC of gw-hq to the quarantine portgroup warden-quarantine") ||
				!strings.Contains(plan.Warnings[0], tc.wantWarning) {
				t.Fatalf("plan %+v: want one warning saying %q, cuts agent %t", plan, tc.wantWarning, tc.wantCutsAgent)
			}
			if res, err := iso.Apply(ctx, req); err != nil || !res.Changed {
				t.Fatalf("apply: %+v, %v", res, err)
			}
			for _, n := range l.observe(t, "gw-hq").NICs {
				if n.Network != "warden-quarantine" || n.Management {
					t.Errorf("nic %+v, want on quarantine", n)
				}
			}
			if _, err := iso.Verify(ctx, req); err != nil {
				t.Fatalf("verify: %v", err)
			}
			// Already quarantined: the warning still stands.
			if plan, err := iso.Plan(ctx, req); err != nil || len(plan.Changes) != 0 || len(plan.Warnings) != 1 {
				t.Fatalf("plan after apply: %+v, %v", plan, err)
			}
		})
	}
}

// vmOnly hides every optional capability of a VM provider.
type vmOnly struct{ actions.VMProvider }

func TestIsolateActionRefusesManagementMismatch(t *testing.T) {
	tests := map[string]struct {
		nics        []string
		removeFirst bool // gw-hq keeps only its management NIC
		onlyVM      bool // the provider cannot keep management NICs
		want        string
	}{
		"missing label":          {nics: []string{"Network adapter 3"}, want: `management nic "Network adapter 3" of gw-hq: the vm has no such nic`},
		"missing mac":            {nics: []string{"00:50:56:ff:ff:ff"}, want: "management nic mac 00:50:56:ff:ff:ff of gw-hq: the vm has no such nic"},
		"only nic is management": {nics: []string{"Network adapter 2"}, removeFirst: true, want: "every nic ('Network adapter 2'"},
		"provider cannot keep":   {nics: []string{"Network adapter 2"}, onlyVM: true, want: "refusing to isolate every nic"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			l, _ := startMgmtVMLab(t)
			if tc.removeFirst {
				if err := l.lab.RemoveNIC(ctx, "gw-hq", "Network adapter 1"); err != nil {
					t.Fatal(err)
				}
			}
			var p actions.VMProvider = l.p
			if tc.onlyVM {
				p = vmOnly{l.p}
			}
			iso := actions.NewIsolate(p)
			req := mgmtRequest(tc.nics...)
			before := l.observe(t, "gw-hq")
			_, perr := iso.Plan(ctx, req)
			_, aerr := iso.Apply(ctx, req)
			for what, err := range map[string]error{"plan": perr, "apply": aerr} {
				if !actions.IsTerminal(err) || !errors.Is(err, actions.ErrManagementNIC) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: err = %v, want terminal ErrManagementNIC containing %q", what, err, tc.want)
				}
			}
			if after := l.observe(t, "gw-hq"); !reflect.DeepEqual(after, before) {
				t.Fatalf("nothing may move:\n got %+v\nwant %+v", after, before)
			}
		})
	}
}

func TestChangeNotes(t *testing.T) {
	const release = "release also needs a baseline check passed after the quarantine"
	tests := map[string]struct {
		change actions.Change
		later  []string
		want   []string // substrings, one per note
	}{
		"no warning":   {change: actions.Change{}, later: []string{actions.NameVerifyBaseline}},
		"warning only": {change: actions.Change{Warnings: []string{"w"}}, later: []string{actions.NameVerifyBaseline}, want: []string{"w"}},
		"cuts the agent": {
			change: actions.Change{Warnings: []string{"w"}, CutsAgent: true},
			later:  []string{actions.NameCaptureVolatile, actions.NameNotify, actions.NameRevokePeer, actions.NameVerifyBaseline, actions.NamePatch},
			want:   []string{"w", "later steps that need the agent (capture_volatile, verify_baseline, patch) cannot reach it"},
		},
		"cuts the agent, no later agent step": {
			change: actions.Change{CutsAgent: true},
			later:  []string{actions.NameNotify, actions.NameRotateCredentials},
			want:   []string{"no later step of this runbook needs the agent; " + release},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := tc.change.Notes(tc.later)
			if len(got) != len(tc.want) {
				t.Fatalf("notes %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("note %d = %q, want it to contain %q", i, got[i], w)
				}
			}
			if tc.change.CutsAgent && !strings.Contains(got[len(got)-1], release) {
				t.Errorf("last note %q does not mention release", got[len(got)-1])
			}
		})
	}
}

func TestCombinePassesWarnings(t *testing.T) {
	l, _ := startMgmtVMLab(t)
	c := actions.Combine(actions.NameIsolate, actions.Layer("vm", actions.NewIsolate(l.p)))
	ch, err := c.Plan(t.Context(), actions.Request{Gateway: inventory.Gateway{ID: "hq", VM: "gw-hq", Agent: "https://gw-hq.example.net:8781"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Warnings) != 1 || !ch.CutsAgent {
		t.Fatalf("combined plan %+v lost the layer's warning", ch)
	}
}
