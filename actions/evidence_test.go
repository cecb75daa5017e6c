package actions

import (
	"context"
	"slices"
	"testing"

	"github.com/warden-ir/warden/inventory"
)

// memoryRecorder is an EvidenceRecorder keeping records in memory.
type memoryRecorder struct{ recs []Evidence }

func (m *memoryRecorder) Recorded(_ context.Context, incident, note string) (bool, error) {
	return slices.ContainsFunc(m.recs, func(e Evidence) bool { return e.Incident == incident && e.Note == note }), nil
}

func (m *memoryRecorder) Record(_ context.Context, e Evidence) (EvidenceRecord, error) {
	m.recs = append(m.recs, e)
	return EvidenceRecord{ID: "ev-1", Incident: e.Incident, Name: e.Name}, nil
}

// TestRecordEvidence applies each decorated action twice, as a retried
// step would: evidence is filed once per step, only where it applies.
func TestRecordEvidence(t *testing.T) {
	tests := map[string]struct {
		action   Action
		incident string
		want     []string // names of the records filed
	}{
		"snapshot files a reference":       {stubLayer{name: NameSnapshot, calls: new([]string)}, "inc-1", []string{"vm-snapshot.json"}},
		"isolate files what it changed":    {stubLayer{name: NameIsolate, changed: true, calls: new([]string)}, "inc-1", []string{"isolate-configuration-change.json"}},
		"release that changed nothing":     {stubLayer{name: NameRelease, calls: new([]string)}, "inc-1", nil},
		"outside an incident":              {stubLayer{name: NameSnapshot, calls: new([]string)}, "", nil},
		"other actions are left alone":     {stubLayer{name: NamePowerOff, changed: true, calls: new([]string)}, "inc-1", nil},
		"an unavailable one is left alone": {Unavailable{Action: NameIsolate, Reason: "no agent"}, "inc-1", nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rec := &memoryRecorder{}
			cat, err := NewCatalogue(tc.action)
			if err != nil {
				t.Fatal(err)
			}
			e := cat.Decorate(RecordEvidence(rec))[tc.action.Name()]
			req := Request{IdempotencyKey: "run-1/0/" + tc.action.Name(), Incident: tc.incident, Gateway: inventory.Gateway{ID: "gw-hq", VM: "gw-hq"}}
			for range 2 {
				_, _ = e.Apply(t.Context(), req)
			}
			var got []string
			for _, r := range rec.recs {
				got = append(got, r.Name)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("filed %v, want %v", got, tc.want)
			}
			_, had := tc.action.(Undoer)
			if _, undo := e.Action.(Undoer); e.Reversible && had && !undo {
				t.Error("the decorator hides Undo")
			}
		})
	}
}
