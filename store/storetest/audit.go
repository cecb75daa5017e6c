package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/store"
)

var auditCases = []testCase{
	{"entries of several transactions form one chain", auditOneChain},
	{"the head after N commits is entry N", auditHeadAfterN},
	{"an edited entry fails verification", auditEdited},
	{"a removed newest entry fails verification", auditTruncated},
	{"a rolled-back transaction does not advance the head", auditRollback},
	{"entries keep their fields, secrets redacted", auditFields},
}

// appendEntries commits one transaction per count, each with that many
// entries named "<tx>.<i>".
func appendEntries(t *testing.T, b store.Backend, counts ...int) {
	t.Helper()
	ctx := t.Context()
	for n, count := range counts {
		commit(t, b, func(tx store.Tx) error {
			for i := range count {
				if err := tx.Audit(ctx, entry(fmt.Sprintf("%c.%d", 'a'+n, i))); err != nil {
					return err
				}
			}
			return nil
		})
	}
}

// lastEntry is the newest entry of b's chain.
func lastEntry(t *testing.T, b store.Backend) audit.Entry {
	t.Helper()
	es, err := audit.List(t.Context(), b.DB(), "")
	if err != nil || len(es) == 0 {
		t.Fatalf("listing audit entries: %d, %v; want some", len(es), err)
	}
	return es[len(es)-1]
}

// short abbreviates a hash for a message.
func short(h string) string {
	if len(h) > 8 {
		return h[:8] + "…"
	}
	return h
}

func auditOneChain(t *testing.T, h Harness) {
	b := h.Open(t)
	appendEntries(t, b, 1, 2, 3)
	es, err := audit.List(t.Context(), b.DB(), "")
	if err != nil {
		t.Fatal(err)
	}
	prev := audit.Genesis
	for i, e := range es {
		if e.Seq != int64(i+1) || e.PrevHash != prev {
			t.Errorf("entry %d: seq %d, prev %s; want seq %d after %s", i, e.Seq, short(e.PrevHash), i+1, short(prev))
		}
		prev = e.Hash
	}
	want := []string{"a.0", "b.0", "b.1", "c.0", "c.1", "c.2"}
	if got := auditActions(t, b); !slices.Equal(got, want) {
		t.Errorf("actions = %v, want %v", got, want)
	}
	if rep := verified(t, b); rep.Entries != 6 || rep.Head != prev {
		t.Errorf("Verify = %+v, want 6 entries ending at the last hash", rep)
	}
}

func auditHeadAfterN(t *testing.T, h Harness) {
	b := h.Open(t)
	const n = 7
	for i := range n {
		appendEntries(t, b, 1)
		if rep := verified(t, b); rep.Entries != int64(i+1) {
			t.Fatalf("after %d commits the chain has %d entries", i+1, rep.Entries)
		}
	}
	if last := lastEntry(t, b); last.Seq != n || verified(t, b).Head != last.Hash {
		t.Errorf("head after %d commits is seq %d; want %d with the head hash", n, last.Seq, n)
	}
}

func auditEdited(t *testing.T, h Harness) {
	b := h.Open(t)
	appendEntries(t, b, 2, 1)
	if _, err := b.DB().ExecContext(t.Context(), `UPDATE audit SET actor = 'mallory' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	_, err := audit.Verify(t.Context(), b.DB())
	var broken *audit.BrokenError
	if !errors.As(err, &broken) || broken.Seq != 2 {
		t.Errorf("Verify after editing entry 2 = %v, want *audit.BrokenError at 2", err)
	}
}

func auditTruncated(t *testing.T, h Harness) {
	b := h.Open(t)
	appendEntries(t, b, 2, 1)
	if _, err := b.DB().ExecContext(t.Context(), `DELETE FROM audit WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	_, err := audit.Verify(t.Context(), b.DB())
	var broken *audit.BrokenError
	if !errors.As(err, &broken) {
		t.Errorf("Verify after removing the newest entry = %v, want *audit.BrokenError", err)
	}
}

func auditRollback(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	appendEntries(t, b, 2)
	head := verified(t, b).Head
	err := b.Tx(ctx, func(tx store.Tx) error {
		for range 3 {
			if err := tx.Audit(ctx, entry("undone")); err != nil {
				return err
			}
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Tx = %v, want fn's error", err)
	}
	if rep := verified(t, b); rep.Entries != 2 || rep.Head != head {
		t.Errorf("after a rollback Verify = %+v, want the 2 entries and head as before", rep)
	}
	appendEntries(t, b, 1)
	if last := lastEntry(t, b); last.Seq != 3 || last.PrevHash != head {
		t.Errorf("next entry after the rollback: seq %d after %s, want 3 after %s", last.Seq, short(last.PrevHash), short(head))
	}
	verified(t, b)
}

func auditFields(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	e := audit.Entry{At: t0, Actor: "api:ops", Action: "step.apply", Incident: "inc-1", Run: "run-1", Subject: "gw-1",
		Data: json.RawMessage(`{"portgroup":"quarantine","password":"hunter2"}`)}
	commit(t, b, func(tx store.Tx) error { return tx.Audit(ctx, e) })
	es, err := audit.List(ctx, b.DB(), "inc-1")
	if err != nil || len(es) != 1 {
		t.Fatalf("List(inc-1) = %d entries, %v; want 1", len(es), err)
	}
	got := es[0]
	if !got.At.Equal(t0) || got.Actor != e.Actor || got.Action != e.Action || got.Run != e.Run || got.Subject != e.Subject {
		t.Errorf("entry = %+v, want the fields of %+v", got, e)
	}
	if strings.Contains(string(got.Data), "hunter2") || !strings.Contains(string(got.Data), "quarantine") {
		t.Errorf("stored data %s: want the secret redacted and the rest kept", got.Data)
	}
	verified(t, b)
}
