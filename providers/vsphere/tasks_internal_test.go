package vsphere

import (
	"testing"

	"github.com/vmware/govmomi/vim25/types"
)

// TestTaskKindsMatchVCenterAndSimulatorNames pins the operation names the
// in-flight check recognises: vCenter's (descriptionId, name) as its task
// list shows them, and vcsim's, which differ.
func TestTaskKindsMatchVCenterAndSimulatorNames(t *testing.T) {
	tests := map[string]struct {
		info types.TaskInfo
		kind taskKind
		want bool
	}{
		"vcenter snapshot":         {types.TaskInfo{DescriptionId: "VirtualMachine.createSnapshot", Name: "CreateSnapshot_Task"}, taskSnapshot, true},
		"vcenter snapshot ex":      {types.TaskInfo{DescriptionId: "VirtualMachine.createSnapshotEx", Name: "CreateSnapshotEx_Task"}, taskSnapshot, true},
		"vcsim snapshot":           {types.TaskInfo{DescriptionId: "VirtualMachine.createSnapshotEx", Name: "CreateSnapshotEx"}, taskSnapshot, true},
		"vcenter reconfigure":      {types.TaskInfo{DescriptionId: "VirtualMachine.reconfigure", Name: "ReconfigVM_Task"}, taskReconfigure, true},
		"vcsim reconfigure":        {types.TaskInfo{DescriptionId: "VirtualMachine.reconfigVm", Name: "ReconfigVm"}, taskReconfigure, true},
		"vcenter power off":        {types.TaskInfo{DescriptionId: "VirtualMachine.powerOff", Name: "PowerOffVM_Task"}, taskPower, true},
		"vcsim power off":          {types.TaskInfo{DescriptionId: "VirtualMachine.powerOff", Name: "PowerOff"}, taskPower, true},
		"internal task, no name":   {types.TaskInfo{DescriptionId: "VirtualMachine.reconfigure"}, taskReconfigure, true},
		"snapshot removal":         {types.TaskInfo{DescriptionId: "VirtualMachineSnapshot.remove", Name: "RemoveSnapshot_Task"}, taskSnapshot, false},
		"revert is not a snapshot": {types.TaskInfo{DescriptionId: "VirtualMachine.revertToCurrentSnapshot", Name: "RevertToCurrentSnapshot_Task"}, taskSnapshot, false},
		"reconfigure is not power": {types.TaskInfo{DescriptionId: "VirtualMachine.reconfigure", Name: "ReconfigVM_Task"}, taskPower, false},
		"migration":                {types.TaskInfo{DescriptionId: "Drm.ExecuteVMotionLRO", Name: "MigrateVM_Task"}, taskReconfigure, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.kind.matches(tc.info); got != tc.want {
				t.Errorf("%s.matches(%q, %q) = %t, want %t", tc.kind.name, tc.info.DescriptionId, tc.info.Name, got, tc.want)
			}
		})
	}
}
