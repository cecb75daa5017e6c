package cacao

import (
	"errors"
	"os"
	"testing"

	"github.com/warden-ir/warden/policies"
)

// FuzzCacaoImport: Import never panics; what it accepts prints as a
// runbook file that loads with the same steps; what it refuses as
// unsupported names each step with a reason.
func FuzzCacaoImport(f *testing.F) {
	set, err := policies.Default()
	if err != nil {
		f.Fatal(err)
	}
	for name := range set.Runbooks {
		pb, err := Export(set.Runbooks[name], ExportOptions{Actuator: "http://127.0.0.1:8780", Created: exportTime, Modified: exportTime,
			Approval: ApprovalFor(set, name)})
		if err != nil {
			f.Fatal(err)
		}
		data, err := Marshal(pb)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	soarca, err := os.ReadFile("testdata/soarca_example_playbook.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(soarca)
	for _, s := range []string{``, `{}`, `null`, `[]`, `{"type":"playbook","spec_version":"cacao-2.0","workflow":{}}`,
		`{"type":"playbook","spec_version":"cacao-2.0","workflow_start":"s","workflow":{"s":{"type":"start","on_completion":"s"}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		im, err := Import(data, ImportOptions{})
		var ue *UnsupportedError
		switch {
		case errors.As(err, &ue):
			if len(ue.Steps) == 0 {
				t.Fatal("an UnsupportedError naming no step")
			}
			for _, s := range ue.Steps {
				if s.ID == "" || s.Reason == "" {
					t.Fatalf("unsupported step without id or reason: %+v", s)
				}
			}
			return
		case err != nil:
			return
		}
		loaded, out := loadPrinted(t, im)
		rb := loaded.Runbooks[im.Runbook.Name]
		if rb == nil || len(rb.Steps) != len(im.Runbook.Steps) {
			t.Fatalf("printed runbook %v, want %d steps of %s:\n%s", rb, len(im.Runbook.Steps), im.Runbook.Name, out)
		}
	})
}
