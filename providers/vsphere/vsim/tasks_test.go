package vsim_test

import (
	"context"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/warden-ir/warden/providers/vsphere"
	"github.com/warden-ir/warden/providers/vsphere/vsim"
)

func startLabAndProvider(t *testing.T) (*vsim.Lab, *vsphere.Provider) {
	t.Helper()
	lab, err := vsim.Start(t.Context(), vsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	p, err := vsphere.Connect(t.Context(), lab.Config(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return lab, p
}

// lastTask returns the newest task called name on vm, failing without one.
func lastTask(t *testing.T, lab *vsim.Lab, vm, name string) types.TaskInfo {
	t.Helper()
	all, err := lab.Tasks(t.Context(), vm)
	if err != nil {
		t.Fatalf("reading tasks: %v", err)
	}
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Name == name {
			return all[i]
		}
	}
	t.Fatalf("no %s task on %s among %d", name, vm, len(all))
	return types.TaskInfo{}
}

// TestTaskDelayNames pins the names SetTaskDelays takes to the tasks the
// provider's calls start: a misspelt name ("ReconfigVM") delays nothing.
func TestTaskDelayNames(t *testing.T) {
	const delay = 300 * time.Millisecond
	tests := map[string]struct {
		task string
		call func(context.Context, *vsphere.Provider) (bool, error)
	}{
		"snapshot": {vsim.TaskCreateSnapshot, func(ctx context.Context, p *vsphere.Provider) (bool, error) {
			return p.SnapshotVM(ctx, "gw-hq", "s", "", true)
		}},
		"isolate":   {vsim.TaskReconfigure, func(ctx context.Context, p *vsphere.Provider) (bool, error) { return p.IsolateVM(ctx, "gw-hq") }},
		"power off": {vsim.TaskPowerOff, func(ctx context.Context, p *vsphere.Provider) (bool, error) { return p.PowerOffVM(ctx, "gw-hq") }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			lab, p := startLabAndProvider(t)
			// A package global of the simulator: set while no task runs,
			// cleared once the call has waited for its task.
			vsim.SetTaskDelays(map[string]time.Duration{tc.task: delay})
			_, err := tc.call(t.Context(), p)
			vsim.SetTaskDelays(nil)
			if err != nil {
				t.Fatal(err)
			}
			ti := lastTask(t, lab, "gw-hq", tc.task)
			if ti.StartTime == nil || ti.CompleteTime == nil || ti.CompleteTime.Sub(*ti.StartTime) < delay {
				t.Fatalf("%s task %s ran %v-%v: not delayed by %v", tc.task, ti.Key, ti.StartTime, ti.CompleteTime, delay)
			}
		})
	}
}

// TestHoldTaskWaits: the task ends in the simulator while its caller keeps
// waiting, until release.
func TestHoldTaskWaits(t *testing.T) {
	lab, p := startLabAndProvider(t)
	release := lab.HoldTaskWaits(vsim.TaskReconfigure)
	defer release()
	type result struct {
		changed bool
		err     error
	}
	done := make(chan result, 1)
	go func() {
		changed, err := p.IsolateVM(t.Context(), "gw-hq")
		done <- result{changed, err}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		all, err := lab.Tasks(t.Context(), "gw-hq")
		if err != nil {
			t.Fatal(err)
		}
		finished := false
		for _, ti := range all {
			finished = finished || ti.Name == vsim.TaskReconfigure && ti.State == types.TaskInfoStateSuccess
		}
		if finished {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reconfigure task never finished")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case r := <-done:
		t.Fatalf("isolate returned while its task wait was held: %+v", r)
	default:
	}
	release()
	if r := <-done; r.err != nil || !r.changed {
		t.Fatalf("isolate after release: changed=%t err=%v", r.changed, r.err)
	}
}
