package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func quarantined(gen int64) record {
	return record{Version: stateVersion, Quarantined: true, Generation: gen, Spec: specRecord{Management: []string{"192.0.2.0/24"}}}
}

// Saves alternate between the slots, a load takes the newest, and a save
// torn by a crash (a slot half written) leaves the record before it.
func TestRecordSlots(t *testing.T) {
	dir := t.TempDir()
	for gen := int64(1); gen <= 3; gen++ {
		if err := saveRecord(dir, quarantined(gen)); err != nil {
			t.Fatal(err)
		}
		r, err := loadRecord(dir)
		if err != nil || r.Generation != gen {
			t.Fatalf("after saving generation %d: %+v, %v", gen, r, err)
		}
	}
	// Generation 3 went into slot 0 (1: slot 0, 2: slot 1, 3: slot 0).
	// Tear it: its payload cut short, as a crash mid-write leaves it.
	p0 := filepath.Join(dir, slotNames[0])
	b, err := os.ReadFile(p0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p0, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := loadRecord(dir)
	if err != nil || r.Generation != 2 {
		t.Fatalf("with the newest slot torn: %+v, %v; want generation 2", r, err)
	}
	// The next save goes over the torn slot, never over the intact one.
	if err := saveRecord(dir, quarantined(4)); err != nil {
		t.Fatal(err)
	}
	if r, err := loadRecord(dir); err != nil || r.Generation != 4 {
		t.Fatalf("after saving over the torn slot: %+v, %v", r, err)
	}
	// A flipped bit in the payload is caught by the checksum.
	p1 := filepath.Join(dir, slotNames[1])
	b, err = os.ReadFile(p0)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-3] ^= 1
	if err := os.WriteFile(p0, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err := loadRecord(dir); err != nil || r.Generation != 2 {
		t.Fatalf("with a flipped bit in the newest slot: %+v, %v; want generation 2", r, err)
	}
	// Neither slot intact: the agent refuses to guess.
	if err := os.WriteFile(p1, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadRecord(dir); err == nil || !strings.Contains(err.Error(), "will not guess") {
		t.Fatalf("with no intact slot: %v", err)
	}
}

// An agent upgraded over the JSON file of earlier agents reads it, and its
// first save moves the record into the slots.
func TestRecordFromEarlierAgents(t *testing.T) {
	dir := t.TempDir()
	old := `{"version":1,"quarantined":true,"confirmed":true,"generation":3,"spec":{"management":["192.0.2.0/24"]}}`
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := loadRecord(dir)
	if err != nil || r.Generation != 3 || !r.Confirmed {
		t.Fatalf("earlier record: %+v, %v", r, err)
	}
	r.Generation = 4
	if err := saveRecord(dir, r); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, stateFile)); !os.IsNotExist(err) {
		t.Fatalf("the superseded %s is still there: %v", stateFile, err)
	}
	if r, err := loadRecord(dir); err != nil || r.Generation != 4 {
		t.Fatalf("after the first save: %+v, %v", r, err)
	}
}

// BenchmarkSaveRecord is one durable save of the quarantine record, the
// write on the path of every isolate and confirm: slots (one write, one
// fdatasync) against the earlier atomic file replacement (write, fsync,
// rename, directory fsync).
func BenchmarkSaveRecord(b *testing.B) {
	r := quarantined(1)
	r.Spec.Management = []string{"192.0.2.0/24", "198.51.100.0/24", "2001:db8::/48"}
	b.Run("slots", func(b *testing.B) {
		dir := b.TempDir()
		for b.Loop() {
			r.Generation++
			if err := saveRecord(dir, r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rename", func(b *testing.B) {
		dir := b.TempDir()
		for b.Loop() {
			r.Generation++
			if err := saveJSONFile(dir, stateFile, "quarantine state", r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
