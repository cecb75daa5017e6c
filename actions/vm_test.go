package actions_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/providers/vsphere"
	"github.com/warden-ir/warden/providers/vsphere/vsim"
)

type vmLab struct {
	lab *vsim.Lab
	p   *vsphere.Provider
}

func startVMLab(t *testing.T) vmLab {
	t.Helper()
	lab, err := vsim.Start(t.Context(), vsim.Options{})
	if err != nil {
		t.Fatalf("starting lab: %v", err)
	}
	t.Cleanup(lab.Close)
	p, err := vsphere.Connect(t.Context(), lab.Config(), nil)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return vmLab{lab: lab, p: p}
}

func (l vmLab) observe(t *testing.T, vm string) actions.VMState {
	t.Helper()
	st, err := l.p.ObserveVM(t.Context(), vm)
	if err != nil {
		t.Fatalf("observing %s: %v", vm, err)
	}
	return st
}

// noSecrets fails when a result, serialised as it is stored, holds the
// lab password.
func (l vmLab) noSecrets(t *testing.T, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), l.lab.Password) {
		t.Fatalf("result holds the password: %s", b)
	}
}

// plan plans a on req, fails the test if planning changed the VM, and
// returns the VM as it was with the plan.
func (l vmLab) plan(t *testing.T, a actions.Action, req actions.Request) (actions.VMState, actions.Change, error) {
	t.Helper()
	before := l.observe(t, req.Gateway.VM)
	plan, err := a.Plan(t.Context(), req)
	if after := l.observe(t, req.Gateway.VM); !reflect.DeepEqual(after, before) {
		t.Fatalf("plan changed the vm:\n got %+v\nwant %+v", after, before)
	}
	return before, plan, err
}

// applyFirst checks that a does not verify before it is applied, then
// applies it and wants a change.
func applyFirst(t *testing.T, a actions.Action, req actions.Request) actions.Result {
	t.Helper()
	_, err := a.Verify(t.Context(), req)
	wantVMNotVerified(t, "verify before apply", err)
	res, err := a.Apply(t.Context(), req)
	if err != nil || !res.Changed {
		t.Fatalf("first apply: %+v, %v", res, err)
	}
	return res
}

func vmRequest(vm string, params map[string]string) actions.Request {
	return actions.Request{
		IdempotencyKey: "run-1/step-1",
		Incident:       "INC-7",
		Gateway:        inventory.Gateway{ID: "hq", Site: "tokyo", VM: vm},
		Params:         params,
	}
}

func wantVMNotVerified(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, actions.ErrNotVerified) {
		t.Fatalf("%s: err = %v, want ErrNotVerified", what, err)
	}
}

func TestVMActionsWithoutVMAreUnsupported(t *testing.T) {
	l := startVMLab(t)
	ctx := t.Context()
	req := vmRequest("", nil)
	for _, a := range []actions.Action{actions.NewSnapshot(l.p), actions.NewIsolate(l.p), actions.NewRelease(l.p), actions.NewPowerOff(l.p)} {
		t.Run(a.Name(), func(t *testing.T) {
			_, perr := a.Plan(ctx, req)
			_, aerr := a.Apply(ctx, req)
			_, verr := a.Verify(ctx, req)
			for _, err := range []error{perr, aerr, verr} {
				if !errors.Is(err, actions.ErrUnsupported) || !actions.IsTerminal(err) {
					t.Fatalf("err = %v, want ErrUnsupported", err)
				}
			}
		})
	}
}

func TestVMCatalogue(t *testing.T) {
	l := startVMLab(t)
	c, err := actions.NewCatalogue(actions.NewSnapshot(l.p), actions.NewIsolate(l.p), actions.NewRelease(l.p), actions.NewPowerOff(l.p))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{actions.NamePowerOff, actions.NameRelease, actions.NameSnapshot, actions.NameIsolate}
	got := c.Names()
	if len(got) != len(want) {
		t.Fatalf("names %v", got)
	}
	for _, n := range want {
		if _, ok := c[n]; !ok {
			t.Errorf("catalogue lacks %q", n)
		}
	}
	if _, ok := c[actions.NameIsolate].Action.(actions.Undoer); !ok {
		t.Error("isolate has no Undo")
	}
	if _, ok := c[actions.NameSnapshot].Action.(actions.Undoer); ok {
		t.Error("snapshot has an Undo: evidence must not be undone")
	}
}

func TestIsolateAction(t *testing.T) {
	l := startVMLab(t)
	ctx := t.Context()
	a := actions.NewIsolate(l.p)
	req := vmRequest("gw-hq", nil)

	before, plan, err := l.plan(t, a, req)
	if err != nil {
		t.Fatal(err)
	}
	wantChanges := []string{
		"nic 'Network adapter 1': vpn-transit -> warden-quarantine",
		"nic 'Network adapter 2': vpn-lan -> warden-quarantine",
		"tag gw-hq as quarantined",
	}
	if !reflect.DeepEqual(plan.Changes, wantChanges) || plan.Destructive {
		t.Fatalf("plan %+v, want changes %q", plan, wantChanges)
	}

	res := applyFirst(t, a, req)
	wantBefore := map[string]string{"Network adapter 1": "vpn-transit", "Network adapter 2": "vpn-lan"}
	wantAfter := map[string]string{
		"Network adapter 1": "warden-quarantine (not connected at power on)",
		"Network adapter 2": "warden-quarantine (not connected at power on)",
	}
	if !reflect.DeepEqual(res.Details["nics_before"], wantBefore) || !reflect.DeepEqual(res.Details["nics_after"], wantAfter) {
		t.Errorf("details %v, want before %v after %v", res.Details, wantBefore, wantAfter)
	}
	l.noSecrets(t, res)
	isolated := l.observe(t, "gw-hq")

	res, err = a.Apply(ctx, req)
	if err != nil || res.Changed {
		t.Fatalf("second apply: %+v, %v", res, err)
	}
	if again := l.observe(t, "gw-hq"); !reflect.DeepEqual(again, isolated) {
		t.Fatalf("second apply changed the vm")
	}
	if _, err := a.Verify(ctx, req); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if plan, err := a.Plan(ctx, req); err != nil || len(plan.Changes) != 0 {
		t.Fatalf("plan after apply: %+v, %v", plan, err)
	}

	// Someone moves a NIC back by hand: verification must notice.
	if err := l.lab.SetNICNetwork(ctx, "gw-hq", "Network adapter 1", "vpn-transit"); err != nil {
		t.Fatal(err)
	}
	_, err = a.Verify(ctx, req)
	wantVMNotVerified(t, "verify after drift", err)
	if plan, err := a.Plan(ctx, req); err != nil || !reflect.DeepEqual(plan.Changes, []string{
		"nic 'Network adapter 1': vpn-transit -> warden-quarantine", "tag gw-hq as quarantined",
	}) {
		t.Fatalf("plan after drift: %+v, %v", plan, err)
	}
	if res, err := a.Apply(ctx, req); err != nil || !res.Changed {
		t.Fatalf("apply after drift: %+v, %v", res, err)
	}
	if _, err := a.Verify(ctx, req); err != nil {
		t.Fatalf("verify after repair: %v", err)
	}

	// Undo releases to the original networks.
	res, err = a.(actions.Undoer).Undo(ctx, req)
	if err != nil || !res.Changed {
		t.Fatalf("undo: %+v, %v", res, err)
	}
	if got := l.observe(t, "gw-hq"); !reflect.DeepEqual(got.NICs, before.NICs) || got.Quarantined {
		t.Fatalf("after undo: %+v, want nics %+v", got, before.NICs)
	}
}

func TestReleaseAction(t *testing.T) {
	l := startVMLab(t)
	ctx := t.Context()
	a := actions.NewRelease(l.p)
	req := vmRequest("gw-osaka", nil)
	original := l.observe(t, "gw-osaka")

	if plan, err := a.Plan(ctx, req); err != nil || len(plan.Changes) != 0 {
		t.Fatalf("plan on a free vm: %+v, %v", plan, err)
	}
	if res, err := a.Apply(ctx, req); err != nil || res.Changed {
		t.Fatalf("release of a free vm: %+v, %v", res, err)
	}
	if _, err := l.p.IsolateVM(ctx, "gw-osaka"); err != nil {
		t.Fatal(err)
	}

	plan, err := a.Plan(ctx, req)
	if err != nil || len(plan.Changes) != 3 || !strings.HasPrefix(plan.Changes[0], "nic 'Network adapter 1': warden-quarantine -> ") {
		t.Fatalf("plan: %+v, %v", plan, err)
	}

	res := applyFirst(t, a, req)
	l.noSecrets(t, res)
	if got := l.observe(t, "gw-osaka"); !reflect.DeepEqual(got.NICs, original.NICs) {
		t.Fatalf("nics %+v, want %+v", got.NICs, original.NICs)
	}
	if res, err := a.Apply(ctx, req); err != nil || res.Changed {
		t.Fatalf("second apply: %+v, %v", res, err)
	}
	if _, err := a.Verify(ctx, req); err != nil {
		t.Fatalf("verify: %v", err)
	}

	// A NIC put on the quarantine portgroup by hand fails verification.
	if err := l.lab.SetNICNetwork(ctx, "gw-osaka", "Network adapter 2", vsim.DefaultQuarantinePortgroup); err != nil {
		t.Fatal(err)
	}
	_, err = a.Verify(ctx, req)
	wantVMNotVerified(t, "verify with a nic on quarantine", err)
}

func TestSnapshotAction(t *testing.T) {
	l := startVMLab(t)
	ctx := t.Context()
	a := actions.NewSnapshot(l.p)
	req := vmRequest("gw-dc", nil)

	_, plan, err := l.plan(t, a, req)
	if err != nil || !reflect.DeepEqual(plan.Changes, []string{`take snapshot "warden-INC-7" of gw-dc with memory`}) {
		t.Fatalf("plan: %+v, %v", plan, err)
	}
	_, err = a.Verify(ctx, req)
	wantVMNotVerified(t, "verify before apply", err)

	for i, want := range []bool{true, false} {
		res, err := a.Apply(ctx, req)
		if err != nil || res.Changed != want {
			t.Fatalf("apply %d: %+v, %v; want changed=%t", i, res, err, want)
		}
		l.noSecrets(t, res)
	}
	res, err := a.Verify(ctx, req)
	if err != nil || res.Details["memory"] != true {
		t.Fatalf("verify: %+v, %v", res, err)
	}
	if n := len(l.observe(t, "gw-dc").Snapshots); n != 1 {
		t.Fatalf("%d snapshots, want 1", n)
	}

	// A same-named snapshot without memory does not verify.
	named := vmRequest("gw-dc", map[string]string{"name": "disk-only", "memory": "false"})
	if _, err := a.Apply(ctx, named); err != nil {
		t.Fatal(err)
	}
	withMemory := vmRequest("gw-dc", map[string]string{"name": "disk-only"})
	_, err = a.Verify(ctx, withMemory)
	wantVMNotVerified(t, "verify memory of a disk-only snapshot", err)

	bad := map[string]actions.Request{
		"memory not a bool":   vmRequest("gw-dc", map[string]string{"memory": "maybe"}),
		"no incident no name": {Gateway: inventory.Gateway{ID: "hq", VM: "gw-dc"}},
	}
	for name, req := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := a.Apply(ctx, req); !actions.IsTerminal(err) {
				t.Fatalf("err = %v, want terminal", err)
			}
		})
	}
}

func TestPowerOffAction(t *testing.T) {
	l := startVMLab(t)
	ctx := t.Context()
	a := actions.NewPowerOff(l.p)
	req := vmRequest("gw-hq", nil)

	plan, err := a.Plan(ctx, req)
	if err != nil || !plan.Destructive || len(plan.Changes) != 1 {
		t.Fatalf("plan: %+v, %v", plan, err)
	}
	if st := l.observe(t, "gw-hq"); st.PowerState != actions.PowerStateOn {
		t.Fatal("plan powered the vm off")
	}
	_, err = a.Verify(ctx, req)
	wantVMNotVerified(t, "verify before apply", err)
	for i, want := range []bool{true, false} {
		if res, err := a.Apply(ctx, req); err != nil || res.Changed != want {
			t.Fatalf("apply %d: %+v, %v", i, res, err)
		}
	}
	if _, err := a.Verify(ctx, req); err != nil {
		t.Fatalf("verify: %v", err)
	}

	// Powered on again behind our back.
	err = l.lab.WithClient(ctx, func(_ *govmomi.Client, f *find.Finder) error {
		vm, err := f.VirtualMachine(ctx, "gw-hq")
		if err != nil {
			return err
		}
		task, err := vm.PowerOn(ctx)
		if err != nil {
			return err
		}
		return task.Wait(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Verify(ctx, req)
	wantVMNotVerified(t, "verify after power on", err)
}
