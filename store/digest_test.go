package store

import (
	"encoding/binary"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/indicator"
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

// TestStoredBodyKeepsEveryIndicatorField: every field of an indicator is
// kept by a column of its row or by its body (storedBody), and bodyOf
// copies each body field: a field added to indicator.Indicator fails this
// test until it is given a place, rather than being dropped on insert.
func TestStoredBodyKeepsEveryIndicatorField(t *testing.T) {
	columns := map[string]bool{"Kind": true, "Gateway": true, "Severity": true, "Status": true, "Fingerprint": true, "Source": true}
	in := reflect.TypeFor[indicator.Indicator]()
	body := reflect.TypeFor[storedBody]()
	full := reflect.New(in).Elem()
	for i := range in.NumField() {
		f := in.Field(i)
		bf, inBody := body.FieldByName(f.Name)
		switch {
		case inBody && bf.Type != f.Type:
			t.Errorf("storedBody.%s is %s, indicator's is %s", f.Name, bf.Type, f.Type)
		case !inBody && !columns[f.Name]:
			t.Errorf("indicator field %s has no column and no place in storedBody", f.Name)
		}
		// A value for every field, to see bodyOf copy it.
		v := full.Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString("x")
		case reflect.Float64:
			v.SetFloat(0.5)
		case reflect.Map:
			v.Set(reflect.ValueOf(map[string]string{"k": "v"}))
		case reflect.Slice:
			v.Set(reflect.ValueOf([]byte(`{}`)).Convert(v.Type()))
		case reflect.Struct:
			if f.Type == reflect.TypeFor[time.Time]() {
				v.Set(reflect.ValueOf(time.Unix(1, 0)))
			} else {
				v.Field(0).Set(reflect.ValueOf([]string{"x"}))
			}
		default:
			t.Fatalf("indicator field %s of kind %s: give the test a value for it", f.Name, v.Kind())
		}
	}
	got := reflect.ValueOf(bodyOf(IndicatorRecord{ID: "other", Indicator: full.Interface().(indicator.Indicator)}))
	for i := range body.NumField() {
		name := body.Field(i).Name
		if columns[name] {
			continue
		}
		if got.Field(i).IsZero() {
			t.Errorf("bodyOf does not copy %s", name)
		}
	}
}
