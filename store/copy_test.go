package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/store"
	"github.com/warden-ir/warden/store/pgtest"
)

// filledStore is a SQLite store with a little of everything: indicators,
// an incident, a run with steps, users and a token, a block, evidence with
// custody, the audit chain over all of it, and a writer lease given up at
// epoch 3.
func filledStore(t *testing.T) *store.Store {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "warden.db"))
	now := time.Now().UTC().Truncate(time.Microsecond)
	err := s.Tx(ctx, func(tx store.Tx) error {
		for _, id := range []string{"ind-1", "ind-2"} {
			if err := tx.InsertIndicator(ctx, store.IndicatorRecord{ID: id, ReceivedAt: now, Incident: "inc-1", Matched: true,
				Indicator: indicator.Indicator{ID: id, Kind: indicator.C2Beacon, Gateway: "gw-1", Severity: indicator.High, Status: indicator.StatusFiring}}); err != nil {
				return err
			}
		}
		if err := tx.UpsertIncident(ctx, store.Incident{ID: "inc-1", Gateway: "gw-1", OpenedAt: now, UpdatedAt: now, Status: store.IncidentOpen}); err != nil {
			return err
		}
		if err := tx.InsertRun(ctx, store.Run{ID: "run-1", Incident: "inc-1", Gateway: "gw-1", Runbook: "contain", Trigger: "policy", State: store.RunSucceeded,
			CreatedAt: now, UpdatedAt: now, Steps: []store.Step{{Index: 0, Name: "snapshot", Action: "snapshot", State: store.StepSucceeded, IdemKey: "run-1/0"}}}); err != nil {
			return err
		}
		if err := tx.InsertUser(ctx, store.User{Name: "alice", Role: "approver", CreatedAt: now, CreatedBy: "admin", UpdatedAt: now}); err != nil {
			return err
		}
		if err := tx.InsertToken(ctx, store.APIToken{ID: "tk_1", User: "alice", Hash: "h1", CreatedAt: now, CreatedBy: "admin"}); err != nil {
			return err
		}
		if err := tx.InsertBlock(ctx, &store.BlockRecord{Prefixes: []string{"203.0.113.7/32"}, Source: "api", State: "active", RequestedBy: "user:alice",
			CreatedAt: now, ValidFrom: now, ExpiresAt: now.Add(time.Hour), UpdatedAt: now}); err != nil {
			return err
		}
		return tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "run.succeeded", Run: "run-1"})
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := evidence.Open(ctx, s.DB(), filepath.Join(dir, "evidence"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Add(ctx, evidence.Item{Incident: "inc-1", Gateway: "gw-1", Name: "conns.txt", Kind: evidence.KindVolatile, CollectedBy: "agent:gw-1", Content: []byte("tcp 203.0.113.7:443\n")}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		w, err := s.AcquireWriter(ctx, filepath.Join(dir, "warden.db"), store.LeaseOptions{Owner: "o" + string(rune('a'+i)), Host: "h", PID: 1, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestCopySQLiteToPostgres: `warden store copy` moves everything — the
// indicators, incidents, runs, users, blocks, the evidence index and its
// custody, the audit chain — and the copy's chain verifies as the
// source's; numbering and the lease epoch go on from where they were.
func TestCopySQLiteToPostgres(t *testing.T) {
	ctx := t.Context()
	src := filledStore(t)
	pg := pgtest.Start(t, pgtest.Options{})
	dst, err := store.OpenPostgres(ctx, pg.DSN(pg.CreateDB(t, "")), store.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := dst.DB().ExecContext(ctx, evidence.Schema); err != nil {
		t.Fatal(err)
	}
	rep, err := store.Copy(ctx, src, dst)
	if err != nil {
		t.Fatalf("copying: %v", err)
	}
	rows := map[string]int64{}
	for _, tb := range rep.Tables {
		rows[tb.Name] = tb.Rows
	}
	for table, want := range map[string]int64{"indicators": 2, "incidents": 1, "runs": 1, "steps": 1, "users": 1, "api_tokens": 1,
		"blocks": 1, "evidence": 1, "custody": 2, "leases": 1} {
		if rows[table] != want {
			t.Errorf("copied %d rows of %s, want %d (report %+v)", rows[table], table, want, rep.Tables)
		}
	}
	if rep.Audit.Entries < 2 {
		t.Errorf("audit after the copy: %+v, want the source's entries", rep.Audit)
	}
	if r, err := dst.Run(ctx, "run-1"); err != nil || len(r.Steps) != 1 || r.Steps[0].IdemKey != "run-1/0" {
		t.Errorf("the copied run: %+v, %v", r, err)
	}
	if _, tok, err := dst.CredentialByHash(ctx, "h1"); err != nil || tok.User != "alice" {
		t.Errorf("the copied token: %+v, %v", tok, err)
	}
	// Numbering goes on: the next block is 2.
	err = dst.Tx(ctx, func(tx store.Tx) error {
		b := &store.BlockRecord{Prefixes: []string{"198.51.100.0/24"}, Source: "api", State: "active", RequestedBy: "user:alice"}
		if err := tx.InsertBlock(ctx, b); err != nil {
			return err
		}
		if b.Number != 2 {
			return errors.New("the block after the copied one is not number 2")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	// The lease came along, expired: the next holder takes epoch 4.
	w, err := dst.AcquireWriter(ctx, "", store.LeaseOptions{Owner: "new", Host: "h2", PID: 2, TTL: time.Minute})
	if err != nil {
		t.Fatalf("acquiring the copied lease: %v", err)
	}
	defer w.Close(context.Background())
	if w.Epoch() != 4 {
		t.Errorf("epoch after the copy = %d, want 4 (agents refuse an epoch below one they have seen)", w.Epoch())
	}

	// Copying again into the same database is refused: it is not empty.
	if _, err := store.Copy(ctx, src, dst); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("copying into a database with rows: %v, want a refusal", err)
	}
}

// TestCopyRefusesASourceInUse: a controller still holding the source's
// lease could write after the copy began.
func TestCopyRefusesASourceInUse(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "w.db")
	src := openStore(t, path)
	w, err := src.AcquireWriter(ctx, path, store.LeaseOptions{Owner: "busy", Host: "h", PID: 7, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	dst := openStore(t, filepath.Join(t.TempDir(), "copy.db"))
	if _, err := store.Copy(ctx, src, dst); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("copying a store in use: %v, want a refusal", err)
	}
}
