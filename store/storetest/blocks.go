package storetest

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/warden-ir/warden/store"
)

// ---- fleet-wide blocks ----

var blockCases = []testCase{
	{"a block reads back with an increasing number", blockReadsBack},
	{"the same source and reference is ErrExists; no reference may repeat", blockRefUnique},
	{"a rolled-back block is not stored and its number not shown", blockRolledBack},
	{"state changes keep the decider unless another is named", blockStateChanges},
	{"an unknown block is ErrNotFound", blockUnknown},
	{"expiring moves only the blocks due, and says which", blockExpire},
	{"blocks list newest first, by state, limited", blockList},
}

func blockAt(ref string, at time.Time) store.BlockRecord {
	return store.BlockRecord{
		Prefixes: []string{"203.0.113.7/32", "2001:db8:dead::/48"}, Domains: []string{"c2.example"},
		Source: "stix", Ref: ref, Name: "C2 " + ref, Kind: "c2_beacon", TLP: "TLP:AMBER", Confidence: 0.75,
		State: "active", Unsafe: []string{}, RequestedBy: "user:feed", Labels: map[string]string{"sightings": "2"},
		CreatedAt: at, ValidFrom: at, ExpiresAt: at.Add(24 * time.Hour), UpdatedAt: at,
	}
}

func addBlocks(t *testing.T, b store.Backend, blocks ...*store.BlockRecord) {
	t.Helper()
	commit(t, b, func(tx store.Tx) error {
		for _, bl := range blocks {
			if err := tx.InsertBlock(t.Context(), bl); err != nil {
				return err
			}
		}
		return nil
	})
}

func sameBlock(a, b store.BlockRecord) bool {
	times := a.CreatedAt.Equal(b.CreatedAt) && a.ValidFrom.Equal(b.ValidFrom) && a.ExpiresAt.Equal(b.ExpiresAt) && a.UpdatedAt.Equal(b.UpdatedAt)
	a.CreatedAt, a.ValidFrom, a.ExpiresAt, a.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	b.CreatedAt, b.ValidFrom, b.ExpiresAt, b.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if len(a.Unsafe) == 0 && len(b.Unsafe) == 0 {
		a.Unsafe, b.Unsafe = nil, nil
	}
	return times && reflect.DeepEqual(a, b)
}

func blockReadsBack(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	first, second := blockAt("indicator--1", t0), blockAt("indicator--2", t0.Add(us))
	second.Unsafe = []string{"10.0.0.0/8 is private"}
	addBlocks(t, b, &first, &second)
	if first.Number <= 0 || second.Number <= first.Number {
		t.Fatalf("numbers %d then %d: want positive and increasing", first.Number, second.Number)
	}
	for _, want := range []store.BlockRecord{first, second} {
		got, err := b.Block(ctx, want.Number)
		if err != nil || !sameBlock(got, want) {
			t.Errorf("Block(%d) = %+v, %v; want %+v", want.Number, got, err, want)
		}
	}
	commit(t, b, func(tx store.Tx) error {
		got, err := tx.BlockByRef(ctx, "stix", "indicator--2")
		if err != nil || !sameBlock(got, second) {
			t.Errorf("BlockByRef = %+v, %v; want %+v", got, err, second)
		}
		return nil
	})
}

func blockRefUnique(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	first := blockAt("indicator--1", t0)
	addBlocks(t, b, &first)
	err := b.Tx(ctx, func(tx store.Tx) error {
		again := blockAt("indicator--1", t0.Add(us))
		return tx.InsertBlock(ctx, &again)
	})
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("the same reference again: %v, want ErrExists", err)
	}
	other := blockAt("indicator--1", t0)
	other.Source = "misp"
	noRef1, noRef2 := blockAt("", t0), blockAt("", t0)
	addBlocks(t, b, &other, &noRef1, &noRef2)
	if all, err := b.Blocks(ctx, "", 0); err != nil || len(all) != 4 {
		t.Errorf("Blocks = %d blocks, %v; want 4 (another source's reference and two without one are distinct)", len(all), err)
	}
}

func blockRolledBack(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	boom := errors.New("boom")
	var n int64
	err := b.Tx(ctx, func(tx store.Tx) error {
		bl := blockAt("indicator--1", t0)
		if err := tx.InsertBlock(ctx, &bl); err != nil {
			return err
		}
		n = bl.Number
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx = %v", err)
	}
	if _, err := b.Block(ctx, n); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a rolled-back block reads back: %v", err)
	}
}

func blockStateChanges(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	bl := blockAt("indicator--1", t0)
	bl.State = "pending_approval"
	addBlocks(t, b, &bl)
	commit(t, b, func(tx store.Tx) error {
		return tx.SetBlockState(ctx, bl.Number, "active", "user:bob", t0.Add(time.Minute))
	})
	commit(t, b, func(tx store.Tx) error { return tx.SetBlockState(ctx, bl.Number, "expired", "", t0.Add(time.Hour)) })
	got, err := b.Block(ctx, bl.Number)
	if err != nil || got.State != "expired" || got.DecidedBy != "user:bob" || !got.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("after approval and expiry: %+v, %v; want expired, decided by user:bob, updated an hour later", got, err)
	}
}

func blockUnknown(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	if _, err := b.Block(ctx, 42); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Block(42) = %v, want ErrNotFound", err)
	}
	err := b.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.BlockByRef(ctx, "stix", "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("BlockByRef = %v, want ErrNotFound", err)
		}
		return tx.SetBlockState(ctx, 42, "withdrawn", "user:a", t0)
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetBlockState(42) = %v, want ErrNotFound", err)
	}
}

func blockExpire(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	due, later, pending := blockAt("a", t0), blockAt("b", t0), blockAt("c", t0)
	later.ExpiresAt = t0.Add(48 * time.Hour)
	pending.State = "pending_approval"
	addBlocks(t, b, &due, &later, &pending)
	var got []int64
	commit(t, b, func(tx store.Tx) error {
		var err error
		got, err = tx.ExpireBlocks(ctx, "active", "expired", t0.Add(24*time.Hour))
		return err
	})
	if !slices.Equal(got, []int64{due.Number}) {
		t.Errorf("expired %v, want only %d", got, due.Number)
	}
	for bl, want := range map[int64]string{due.Number: "expired", later.Number: "active", pending.Number: "pending_approval"} {
		if r, err := b.Block(ctx, bl); err != nil || r.State != want {
			t.Errorf("block %d: %q, %v; want %q", bl, r.State, err, want)
		}
	}
}

func blockList(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	one, two, three := blockAt("1", t0), blockAt("2", t0), blockAt("3", t0)
	two.State = "withdrawn"
	addBlocks(t, b, &one, &two, &three)
	numbers := func(bs []store.BlockRecord) []int64 {
		var out []int64
		for _, bl := range bs {
			out = append(out, bl.Number)
		}
		return out
	}
	all, err := b.Blocks(ctx, "", 0)
	if err != nil || !slices.Equal(numbers(all), []int64{three.Number, two.Number, one.Number}) {
		t.Errorf("all: %v, %v", numbers(all), err)
	}
	active, err := b.Blocks(ctx, "active", 1)
	if err != nil || !slices.Equal(numbers(active), []int64{three.Number}) {
		t.Errorf("active, limit 1: %v, %v", numbers(active), err)
	}
	commit(t, b, func(tx store.Tx) error {
		w, err := tx.Blocks(ctx, "withdrawn", 0)
		if err != nil || !slices.Equal(numbers(w), []int64{two.Number}) {
			t.Errorf("withdrawn in a transaction: %v, %v", numbers(w), err)
		}
		return nil
	})
}
