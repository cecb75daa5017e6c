package vsphere

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// taskKind is a kind of vCenter task Warden starts on a VM. A controller
// killed while it waits for such a task leaves the task running in
// vCenter; the step is then applied again, and must wait for that task
// rather than start a second one (two memory snapshots with one name, two
// reconfigurations).
//
// vCenter keeps nothing of the caller's on a built-in task: TaskInfo's
// description and activationId are only settable on tasks an extension
// creates with TaskManager.CreateTask (SetTaskDescription on a
// CreateSnapshot_Task is refused by vCenter, though vcsim accepts it), and
// the config spec of a reconfiguration is not on the task at all. So a
// step's task is recognised by what vCenter does keep: the VM it runs on
// (the VM's recentTask list), what it does (descriptionId / name) and that
// it has not finished. Waiting for every unfinished task of the kind,
// whoever started it, is what the step needs anyway: vCenter would refuse
// or serialise a second one, and after it ends the read-back decides
// (snapshot by name, whose description carries the step's idempotency key;
// NICs by their backing; power by its state).
type taskKind struct {
	// name is used in logs and errors.
	name string
	// ops are operation names as opName normalises them: vCenter's
	// descriptionId and name ("VirtualMachine.createSnapshot",
	// "CreateSnapshot_Task") and vcsim's ("VirtualMachine.createSnapshotEx",
	// "CreateSnapshotEx").
	ops []string
}

var (
	taskSnapshot    = taskKind{name: "snapshot", ops: []string{"createsnapshot", "createsnapshotex"}}
	taskReconfigure = taskKind{name: "reconfigure", ops: []string{"reconfigure", "reconfigvm"}}
	taskPower       = taskKind{name: "power", ops: []string{"poweroff", "poweroffvm", "poweron", "poweronvm", "reset", "resetvm", "suspend", "suspendvm"}}
)

// matches says whether a task is of kind k.
func (k taskKind) matches(info types.TaskInfo) bool {
	for _, raw := range []string{info.DescriptionId, info.Name} {
		op := opName(raw)
		for _, want := range k.ops {
			if op == want {
				return true
			}
		}
	}
	return false
}

// opName normalises "VirtualMachine.reconfigure", "ReconfigVM_Task" or
// "ReconfigVm" to a lower-case operation name without type or suffix.
func opName(s string) string {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.ToLower(s)
	return strings.TrimSuffix(s, "_task")
}

func unfinished(info types.TaskInfo) bool {
	return info.State == types.TaskInfoStateQueued || info.State == types.TaskInfoStateRunning
}

// awaitRunning waits until no task of kind is queued or running on the VM
// m (read with "recentTask"), and reports whether it waited for any: the
// caller then reads the VM again. A task that fails is logged, not
// returned: the read-back decides what is left to do.
func (p *Provider) awaitRunning(ctx context.Context, m mo.VirtualMachine, kind taskKind) (bool, error) {
	if len(m.RecentTask) == 0 {
		return false, nil
	}
	running, err := p.runningTasks(ctx, m.Self, kind)
	if err != nil {
		return false, fmt.Errorf("reading recent tasks of vm %s: %w", m.Name, err)
	}
	for _, info := range running {
		user := ""
		if r, ok := info.Reason.(*types.TaskReasonUser); ok {
			user = r.UserName
		}
		p.log.Warn("waiting for a vcenter task already in flight on the vm instead of starting another",
			"vm", m.Name, "kind", kind.name, "task", info.Task.Value, "operation", info.DescriptionId,
			"user", user, "queued", info.QueueTime)
		_, err := object.NewTask(p.vim, info.Task).WaitForResult(ctx)
		if err == nil {
			// govmomi answers a cancelled wait with no error.
			err = ctx.Err()
		}
		var failed task.Error
		switch {
		case err == nil:
		case errors.As(err, &failed):
			p.log.Warn("vcenter task in flight on the vm failed; reading the vm again", "vm", m.Name, "task", info.Task.Value, "err", err)
		case isManagedObjectNotFound(err):
			// vCenter dropped the task from its list: it has ended.
		default:
			return false, fmt.Errorf("waiting for %s task %s already in flight on vm %s: %w", kind.name, info.Task.Value, m.Name, err)
		}
	}
	return len(running) > 0, nil
}

// runningTasks returns the unfinished tasks of kind among the VM's recent
// tasks, in one round trip: a traversal from the VM through recentTask,
// so a task vCenter dropped meanwhile is simply not returned.
func (p *Provider) runningTasks(ctx context.Context, vm types.ManagedObjectReference, kind taskKind) ([]types.TaskInfo, error) {
	req := types.RetrieveProperties{
		This: p.vim.ServiceContent.PropertyCollector,
		SpecSet: []types.PropertyFilterSpec{{
			ObjectSet: []types.ObjectSpec{{
				Obj:  vm,
				Skip: types.NewBool(true),
				SelectSet: []types.BaseSelectionSpec{
					&types.TraversalSpec{Type: "VirtualMachine", Path: "recentTask"},
				},
			}},
			PropSet: []types.PropertySpec{{Type: "Task", PathSet: []string{"info"}}},
		}},
	}
	res, err := methods.RetrieveProperties(ctx, p.vim, &req)
	if err != nil {
		return nil, err
	}
	var out []types.TaskInfo
	for _, oc := range res.Returnval {
		for _, dp := range oc.PropSet {
			var info types.TaskInfo
			switch v := dp.Val.(type) {
			case types.TaskInfo:
				info = v
			case *types.TaskInfo:
				info = *v
			default:
				continue
			}
			if unfinished(info) && kind.matches(info) {
				out = append(out, info)
			}
		}
	}
	return out, nil
}

// waitTask waits for a task Warden started, logging its id first so that a
// person can find it in vCenter's task list (and so the log shows which
// task a restarted controller later waits for).
//
// govmomi's Task.Wait returns nil when ctx ends before the task does (it
// cancels the wait and reports that cancellation's success): without the
// ctx check, a step timeout or a stopping controller would count a task
// still running as done.
func (p *Provider) waitTask(ctx context.Context, vm string, kind taskKind, t *object.Task) error {
	p.log.Debug("started vcenter task", "vm", vm, "kind", kind.name, "task", t.Reference().Value)
	if err := t.Wait(ctx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("waiting for %s task %s: %w", kind.name, t.Reference().Value, err)
	}
	return nil
}
