package vsphere_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/inventory"
)

// lease is a fence at epoch whose check fails with lost (nil: held).
type lease struct {
	epoch int64
	lost  error
}

func (l lease) Epoch() int64                { return l.epoch }
func (l lease) Check(context.Context) error { return l.lost }

// TestChangesAreFenced: every change to vCenter is checked against the
// lease right before it is made. A controller whose lease is gone makes
// none (the error is actions.ErrFenced, for the successor to resume the
// step); one that holds it leaves its epoch in what vCenter keeps: the
// snapshot's description and the isolation record on the VM.
func TestChangesAreFenced(t *testing.T) {
	lab := startLab(t)
	p := connect(t, lab, nil)
	deposed := actions.WithFence(t.Context(), lease{epoch: 6, lost: fmt.Errorf("%w: epoch 7 holds it", actions.ErrFenced)})
	changes := map[string]func() (bool, error){
		"snapshot":  func() (bool, error) { return p.SnapshotVM(deposed, "gw-hq", "warden-inc-1", "evidence", true) },
		"isolate":   func() (bool, error) { return p.IsolateVM(deposed, "gw-hq") },
		"power off": func() (bool, error) { return p.PowerOffVM(deposed, "gw-hq") },
	}
	for name, change := range changes {
		if changed, err := change(); changed || !errors.Is(err, actions.ErrFenced) {
			t.Errorf("%s under a lost lease: changed=%t, %v; want ErrFenced and no change", name, changed, err)
		}
	}
	st := observe(t, p, "gw-hq")
	if len(st.Snapshots) != 0 || st.Quarantined || st.PowerState != actions.PowerStateOn {
		t.Fatalf("a deposed controller changed the vm: %+v", st)
	}

	held := actions.WithFence(t.Context(), lease{epoch: 7})
	req := actions.Request{IdempotencyKey: "run-1/1/snapshot", Incident: "inc-1", Gateway: inventory.Gateway{ID: "gw-hq", VM: "gw-hq"}}
	if _, err := actions.Execute(held, actions.NewSnapshot(p), req); err != nil {
		t.Fatalf("snapshot under the lease: %v", err)
	}
	if changed, err := p.IsolateVM(held, "gw-hq"); !changed || err != nil {
		t.Fatalf("isolating under the lease: %t, %v", changed, err)
	}
	st = observe(t, p, "gw-hq")
	if len(st.Snapshots) != 1 || !strings.Contains(st.Snapshots[0].Description, "lease epoch 7") {
		t.Errorf("snapshots %+v, want one whose description names lease epoch 7", st.Snapshots)
	}
	if rec := st.Attributes["warden.original-network"]; !strings.Contains(rec, `"epoch":7`) {
		t.Errorf("isolation record %q does not name epoch 7", rec)
	}
}
