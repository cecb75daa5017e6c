package store

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/warden-ir/warden/audit"
)

// TestDigestOfARowWithoutSenderKeepsItsLeaf: the leaf of an indicator
// stored without a sender or a decision is the leaf of its first thirteen
// columns, as before schema version 4 added them, so that batch entries
// written before the upgrade still verify.
func TestDigestOfARowWithoutSenderKeepsItsLeaf(t *testing.T) {
	st, err := Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), "normal")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cols := []string{"ind-1", "2026-12-07T00:00:00.000000000Z", "gw-1", "brute_force", "low", "firing", "fp", "inc-1", "1", "", "0", "bench", `{"kind":"brute_force"}`}
	if _, err := st.DB().ExecContext(t.Context(), `INSERT INTO indicators(id, received_at, gateway, kind, severity, status, fingerprint, incident, matched, reason, duplicate, source, body) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], 1, cols[9], 0, cols[11], cols[12]); err != nil {
		t.Fatal(err)
	}
	var buf []byte
	for _, c := range cols {
		buf = binary.AppendUvarint(buf, uint64(len(c)))
		buf = append(buf, c...)
	}
	got, err := st.IndicatorDigests(t.Context(), []string{"ind-1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := audit.MerkleLeaf(buf); got["ind-1"] != want {
		t.Errorf("leaf %x, want %x (the thirteen columns before sender and decision)", got["ind-1"], want)
	}
}
