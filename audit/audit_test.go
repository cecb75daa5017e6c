package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

func openDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.ExecContext(t.Context(), Schema); err != nil {
		t.Fatal(err)
	}
	return db
}

func appendN(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	for i := range n {
		tx, err := db.BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(map[string]any{"i": i, "vm": "gw-hq"})
		if _, err := Append(t.Context(), tx, Entry{At: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC), Actor: "controller", Action: "step.apply", Incident: "inc-1", Data: data}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyIntactChain(t *testing.T) {
	db := openDB(t)
	if rep, err := Verify(t.Context(), db); err != nil || rep.Entries != 0 {
		t.Fatalf("empty chain: %+v %v", rep, err)
	}
	appendN(t, db, 5)
	rep, err := Verify(t.Context(), db)
	if err != nil || rep.Entries != 5 || len(rep.Head) != 64 {
		t.Fatalf("%+v %v", rep, err)
	}
}

func TestTamperIsDetected(t *testing.T) {
	tests := map[string]struct {
		sql     string
		wantSeq int64
	}{
		"edit data":         {`UPDATE audit SET data = '{"i":2,"vm":"gw-other"}' WHERE seq = 3`, 3},
		"edit actor":        {`UPDATE audit SET actor = 'mallory' WHERE seq = 2`, 2},
		"edit time":         {`UPDATE audit SET at = '2020-01-01T00:00:00Z' WHERE seq = 4`, 4},
		"delete middle row": {`DELETE FROM audit WHERE seq = 3`, 3},
		"delete newest row": {`DELETE FROM audit WHERE seq = 5`, 5},
		"delete first row":  {`DELETE FROM audit WHERE seq = 1`, 1},
		"rehash one row":    {`UPDATE audit SET data = '{}', hash = '` + strings.Repeat("a", 64) + `' WHERE seq = 2`, 2},
		"drop head":         {`DELETE FROM audit_head`, 5},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			db := openDB(t)
			appendN(t, db, 5)
			if _, err := db.ExecContext(t.Context(), tc.sql); err != nil {
				t.Fatal(err)
			}
			_, err := Verify(t.Context(), db)
			var be *BrokenError
			if !errors.As(err, &be) {
				t.Fatalf("tamper not detected: %v", err)
			}
			if be.Seq != tc.wantSeq {
				t.Fatalf("first bad entry %d, want %d (%s)", be.Seq, tc.wantSeq, be.Reason)
			}
		})
	}
}

func TestExportVerifiesOfflineAndDetectsEdits(t *testing.T) {
	db := openDB(t)
	appendN(t, db, 4)
	var buf bytes.Buffer
	if err := Export(t.Context(), db, &buf); err != nil {
		t.Fatal(err)
	}
	if rep, err := VerifyJSONLines(bytes.NewReader(buf.Bytes())); err != nil || rep.Entries != 4 {
		t.Fatalf("%+v %v", rep, err)
	}
	edited := bytes.Replace(buf.Bytes(), []byte(`"i":2`), []byte(`"i":9`), 1)
	_, err := VerifyJSONLines(bytes.NewReader(edited))
	var be *BrokenError
	if !errors.As(err, &be) || be.Seq != 3 {
		t.Fatalf("edited export: %v", err)
	}
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	dropped := bytes.Join(append(append([][]byte{}, lines[:1]...), lines[2:]...), []byte("\n"))
	if _, err := VerifyJSONLines(bytes.NewReader(dropped)); !errors.As(err, &be) || be.Seq != 2 {
		t.Fatalf("dropped line: %v", err)
	}
}

func TestRedactsSecrets(t *testing.T) {
	db := openDB(t)
	tx, _ := db.BeginTx(context.Background(), nil)
	data, _ := json.Marshal(map[string]any{
		"password": "p4ss", "vsphere": map[string]any{"api_token": "tok3n", "url": "https://vc"},
		"psk": "s3cret", "idempotency_key": "run-1/0/isolate", "private_key": "k3y", "list": []any{map[string]any{"secret": "x1"}},
	})
	e, err := Append(t.Context(), tx, Entry{Actor: "a", Action: "b", Data: data})
	if err != nil {
		t.Fatal(err)
	}
	_ = tx.Commit()
	s := string(e.Data)
	for _, secret := range []string{"p4ss", "tok3n", "s3cret", "k3y", "x1"} {
		if strings.Contains(s, secret) {
			t.Fatalf("secret %q kept: %s", secret, s)
		}
	}
	if !strings.Contains(s, "run-1/0/isolate") || !strings.Contains(s, "https://vc") {
		t.Fatalf("non-secrets lost: %s", s)
	}
}

// TestLastSeqFollowsEachIncident: the newest entry of one incident, of the
// whole chain, and 0 for an incident nothing was written about.
func TestLastSeqFollowsEachIncident(t *testing.T) {
	db := openDB(t)
	ctx := t.Context()
	if n, err := LastSeq(ctx, db, ""); err != nil || n != 0 {
		t.Fatalf("an empty chain: %d, %v", n, err)
	}
	appendN(t, db, 3) // seq 1-3, all about inc-1
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Append(ctx, tx, Entry{Actor: "controller", Action: "run.created", Incident: "inc-2"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for incident, want := range map[string]int64{"inc-1": 3, "inc-2": 4, "": 4, "inc-9": 0} {
		if n, err := LastSeq(ctx, db, incident); err != nil || n != want {
			t.Errorf("LastSeq(%q) = %d, %v; want %d", incident, n, err, want)
		}
	}
}
