package vsim

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// Task names as the simulator gives them (TaskInfo.Name): the keys of
// SetTaskDelays and HoldTaskWaits. They differ from vCenter's
// ("ReconfigVM_Task", "CreateSnapshot_Task").
const (
	TaskCreateSnapshot = "CreateSnapshotEx"
	TaskReconfigure    = "ReconfigVm"
	TaskPowerOff       = "PowerOff"
)

// SetTaskDelays makes every task with one of the given names (TaskReconfigure,
// ...) wait that long before it does anything, while property reads of its
// VM go through (the VM shows its old state, and the task shows as running,
// as on a busy vCenter). Nil or empty clears every delay.
//
// The delays are a package global of the simulator: they apply to every lab
// in the process, so tests using them must not run in parallel, and may
// change them only while no task runs in any lab (a task reads them as it
// starts).
func SetTaskDelays(delays map[string]time.Duration) {
	if len(delays) == 0 {
		simulator.TaskDelay.MethodDelay = nil
		return
	}
	// LockHandoff 0: without it the delayed task holds the VM's lock and
	// every read of the VM waits for the task.
	m := map[string]int{"LockHandoff": 0}
	for name, d := range delays {
		m[name] = int(d / time.Millisecond)
	}
	simulator.TaskDelay.MethodDelay = m
}

// Tasks returns every task the lab keeps for vm (VirtualMachine.recentTask,
// whatever its state), oldest first, read through a client of its own.
func (l *Lab) Tasks(ctx context.Context, vm string) ([]types.TaskInfo, error) {
	var out []types.TaskInfo
	err := l.WithClient(ctx, func(c *govmomi.Client, f *find.Finder) error {
		obj, err := f.VirtualMachine(ctx, vm)
		if err != nil {
			return fmt.Errorf("finding vm %s: %w", vm, err)
		}
		var m mo.VirtualMachine
		pc := property.DefaultCollector(c.Client)
		if err := pc.RetrieveOne(ctx, obj.Reference(), []string{"recentTask"}, &m); err != nil {
			return fmt.Errorf("reading recent tasks of %s: %w", vm, err)
		}
		if len(m.RecentTask) == 0 {
			return nil
		}
		var tasks []mo.Task
		if err := pc.Retrieve(ctx, m.RecentTask, []string{"info"}, &tasks); err != nil {
			return fmt.Errorf("reading tasks of %s: %w", vm, err)
		}
		for _, t := range tasks {
			out = append(out, t.Info)
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].QueueTime.Before(out[j].QueueTime) })
	return out, err
}

// HoldTaskWaits makes every client that waits for a task called name (its
// WaitForUpdates calls on a filter over that task) wait on until release
// is called, while the task itself runs and ends as usual: the window
// between "vCenter did it" and "the caller learned it" that a crash can
// fall into. Calls already waiting when release is called return then.
func (l *Lab) HoldTaskWaits(name string) (release func()) {
	ch := make(chan struct{})
	l.hold.mu.Lock()
	l.hold.tasks[name] = ch
	l.hold.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.hold.mu.Lock()
			delete(l.hold.tasks, name)
			for ref, c := range l.hold.collectors {
				if c == ch {
					delete(l.hold.collectors, ref)
				}
			}
			l.hold.mu.Unlock()
			close(ch)
		})
	}
}

// waitHold is the lab's state for HoldTaskWaits.
type waitHold struct {
	mu sync.Mutex
	// tasks maps held task names to the channel release closes.
	tasks map[string]chan struct{}
	// collectors maps property collectors with a filter over a held task
	// to that task's channel.
	collectors map[types.ManagedObjectReference]chan struct{}
	// closed ends every hold when the lab closes.
	closed chan struct{}
}

// intercept runs before the simulator dispatches each SOAP call (the
// registry's Handler hook, which is per lab, unlike the simulator's
// delays). It only ever delays a call; it never answers one.
func (l *Lab) intercept(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
	switch body := m.Body.(type) {
	case *types.CreateFilter:
		for _, o := range body.Spec.ObjectSet {
			t, ok := ctx.Map.Get(o.Obj).(*simulator.Task)
			if !ok {
				continue
			}
			l.hold.mu.Lock()
			if ch, held := l.hold.tasks[t.Info.Name]; held {
				l.hold.collectors[m.This] = ch
			}
			l.hold.mu.Unlock()
		}
	case *types.WaitForUpdatesEx, *types.WaitForUpdates:
		l.hold.mu.Lock()
		ch, held := l.hold.collectors[m.This]
		l.hold.mu.Unlock()
		if held {
			select {
			case <-ch:
			case <-l.hold.closed:
			}
		}
	}
	return nil, nil
}
