package vsphere_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/providers/vsphere"
	"github.com/warden-ir/warden/providers/vsphere/vsim"
)

// tasksNamed returns the lab's tasks on vm called name.
func tasksNamed(t testing.TB, lab *vsim.Lab, vm, name string) []types.TaskInfo {
	t.Helper()
	all, err := lab.Tasks(t.Context(), vm)
	if err != nil {
		t.Fatalf("reading tasks of %s: %v", vm, err)
	}
	var out []types.TaskInfo
	for _, ti := range all {
		if ti.Name == name {
			out = append(out, ti)
		}
	}
	return out
}

// waitTaskRunning waits until a task called name runs on vm.
func waitTaskRunning(t testing.TB, lab *vsim.Lab, vm, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, ti := range tasksNamed(t, lab, vm, name) {
			if ti.State == types.TaskInfoStateRunning || ti.State == types.TaskInfoStateQueued {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s task running on %s", name, vm)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStepAppliedAgainWaitsForItsTaskInFlight plays a controller killed
// while it waits for a vCenter task: the first provider gives up waiting
// (its context ends) while the simulator still runs the delayed task; a
// second provider, as the restarted controller, applies the same step. It
// must wait for that task and start no second one.
func TestStepAppliedAgainWaitsForItsTaskInFlight(t *testing.T) {
	const vm = "gw-hq"
	tests := map[string]struct {
		task        string
		setup       func(context.Context, *vsphere.Provider) error
		apply       func(context.Context, *vsphere.Provider) (bool, error)
		wantChanged bool
		check       func(*testing.T, actions.VMState)
	}{
		"snapshot": {
			task: vsim.TaskCreateSnapshot,
			apply: func(ctx context.Context, p *vsphere.Provider) (bool, error) {
				return p.SnapshotVM(ctx, vm, "warden-INC-7", "Warden evidence snapshot, incident INC-7, step run-1/1", true)
			},
			// The snapshot the first attempt's task took already exists.
			wantChanged: false,
			check: func(t *testing.T, st actions.VMState) {
				if len(st.Snapshots) != 1 || st.Snapshots[0].Name != "warden-INC-7" || !st.Snapshots[0].Memory {
					t.Errorf("snapshots %+v, want one memory snapshot warden-INC-7", st.Snapshots)
				}
			},
		},
		"isolate": {
			task:  vsim.TaskReconfigure,
			apply: func(ctx context.Context, p *vsphere.Provider) (bool, error) { return p.IsolateVM(ctx, vm) },
			// The NICs moved in the first attempt's task; the tag, which
			// comes after it, is attached now.
			wantChanged: true,
			check: func(t *testing.T, st actions.VMState) {
				if !st.Quarantined || !hasTag(st) {
					t.Errorf("not quarantined: %+v", st)
				}
			},
		},
		"release": {
			task:  vsim.TaskReconfigure,
			setup: func(ctx context.Context, p *vsphere.Provider) error { _, err := p.IsolateVM(ctx, vm); return err },
			apply: func(ctx context.Context, p *vsphere.Provider) (bool, error) { return p.ReleaseVM(ctx, vm) },
			// The NICs went back in the first attempt's task; the tag and
			// the record go now.
			wantChanged: true,
			check: func(t *testing.T, st actions.VMState) {
				if st.Quarantined || hasTag(st) || st.Attributes[vsphere.DefaultAttribute] != "" {
					t.Errorf("still quarantined: %+v", st)
				}
				for _, n := range st.NICs {
					if n.Network == vsim.DefaultQuarantinePortgroup || !n.Connected || !n.StartConnected {
						t.Errorf("nic not restored: %+v", n)
					}
				}
			},
		},
		"power off": {
			task:        vsim.TaskPowerOff,
			apply:       func(ctx context.Context, p *vsphere.Provider) (bool, error) { return p.PowerOffVM(ctx, vm) },
			wantChanged: false,
			check: func(t *testing.T, st actions.VMState) {
				if st.PowerState != actions.PowerStateOff {
					t.Errorf("power state %s", st.PowerState)
				}
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			lab := startLab(t)
			first := connect(t, lab, nil)
			if tc.setup != nil {
				if err := tc.setup(ctx, first); err != nil {
					t.Fatalf("setting up: %v", err)
				}
			}
			before := len(tasksNamed(t, lab, vm, tc.task))

			// A package global of the simulator: these tests do not run
			// in parallel, and it is cleared only once every task ended.
			vsim.SetTaskDelays(map[string]time.Duration{tc.task: 2 * time.Second})
			defer vsim.SetTaskDelays(nil)

			firstCtx, die := context.WithCancel(ctx)
			firstErr := make(chan error, 1)
			go func() { _, err := tc.apply(firstCtx, first); firstErr <- err }()
			waitTaskRunning(t, lab, vm, tc.task)
			die()
			if err := <-firstErr; !errors.Is(err, context.Canceled) {
				t.Fatalf("first attempt: err = %v, want it to stop waiting with context.Canceled", err)
			}
			if got := tasksNamed(t, lab, vm, tc.task); len(got) != before+1 || got[len(got)-1].State != types.TaskInfoStateRunning {
				t.Fatalf("after the first attempt stopped waiting: %d %s tasks, last %s; want its task still running", len(got)-before, tc.task, got[len(got)-1].State)
			}

			second := connect(t, lab, nil)
			changed, err := tc.apply(ctx, second)
			if err != nil {
				t.Fatalf("second attempt: %v", err)
			}
			if changed != tc.wantChanged {
				t.Errorf("second attempt: changed=%t, want %t", changed, tc.wantChanged)
			}
			got := tasksNamed(t, lab, vm, tc.task)
			if len(got) != before+1 {
				t.Fatalf("%d %s tasks after both attempts, want exactly 1", len(got)-before, tc.task)
			}
			if got[len(got)-1].State != types.TaskInfoStateSuccess {
				t.Fatalf("when the second attempt returned, the task was %s; it must have waited for it", got[len(got)-1].State)
			}
			tc.check(t, observe(t, second, vm))

			// Once settled, the step is idempotent as ever.
			must(t, false, "third attempt")(tc.apply(ctx, second))
			if n := len(tasksNamed(t, lab, vm, tc.task)); n != before+1 {
				t.Fatalf("third attempt started a task (%d in all)", n-before)
			}
		})
	}
}

// TestInFlightTaskOfAnotherSnapshotIsWaitedFor: a snapshot task of another
// name in flight is waited for too (vCenter would refuse a concurrent
// one), and then this step's snapshot is taken.
func TestInFlightTaskOfAnotherSnapshotIsWaitedFor(t *testing.T) {
	const vm = "gw-dc"
	ctx := t.Context()
	lab := startLab(t)
	first := connect(t, lab, nil)
	vsim.SetTaskDelays(map[string]time.Duration{vsim.TaskCreateSnapshot: time.Second})
	defer vsim.SetTaskDelays(nil)

	other := make(chan error, 1)
	go func() { _, err := first.SnapshotVM(ctx, vm, "nightly-backup", "", false); other <- err }()
	waitTaskRunning(t, lab, vm, vsim.TaskCreateSnapshot)
	second := connect(t, lab, nil)
	must(t, true, "snapshot while another is in flight")(second.SnapshotVM(ctx, vm, "warden-INC-8", "", true))
	if err := <-other; err != nil {
		t.Fatalf("other snapshot: %v", err)
	}
	st := observe(t, second, vm)
	names := map[string]int{}
	for _, s := range st.Snapshots {
		names[s.Name]++
	}
	if len(names) != 2 || names["nightly-backup"] != 1 || names["warden-INC-8"] != 1 {
		t.Fatalf("snapshots %v, want one of each", names)
	}
	if got := tasksNamed(t, lab, vm, vsim.TaskCreateSnapshot); len(got) != 2 || got[0].CompleteTime == nil || got[1].StartTime == nil || got[1].StartTime.Before(*got[0].CompleteTime) {
		var spans []string
		for _, ti := range got {
			spans = append(spans, fmt.Sprintf("%s %s %v-%v", ti.Key, ti.State, ti.StartTime, ti.CompleteTime))
		}
		t.Fatalf("want two snapshot tasks, the second started after the first ended: %v", spans)
	}
}
