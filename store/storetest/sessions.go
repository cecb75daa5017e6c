package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/warden-ir/warden/store"
)

// ---- the console's sessions ----

var sessionCases = []testCase{
	{"a session reads back by its hash, expired or not", sessionReadsBack},
	{"an unknown hash is ErrNotFound and a taken one ErrExists", sessionUnknownAndTaken},
	{"ending a session ends only that one", sessionDelete},
	{"ending a user's sessions leaves other users'", sessionDeleteOfUser},
	{"expired sessions are removed, live ones kept", sessionDeleteExpired},
	{"a rolled-back session is not stored", sessionRolledBack},
}

// sessionOf is a session of user with the given hash, signed in at at for
// an hour.
func sessionOf(hash, user string, at time.Time) store.Session {
	return store.Session{Hash: hash, User: user, Role: "responder", TokenID: "tk_" + user, CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
}

func insertSessions(t *testing.T, b store.Backend, ss ...store.Session) {
	t.Helper()
	commit(t, b, func(tx store.Tx) error {
		for _, s := range ss {
			if err := tx.InsertSession(t.Context(), s); err != nil {
				return err
			}
		}
		return nil
	})
}

func sameSession(a, b store.Session) bool {
	return a.Hash == b.Hash && a.User == b.User && a.Role == b.Role && a.TokenID == b.TokenID &&
		a.CreatedAt.Equal(b.CreatedAt) && a.ExpiresAt.Equal(b.ExpiresAt)
}

// wantSessions checks which of hashes b still holds.
func wantSessions(t *testing.T, b store.Backend, held map[string]bool) {
	t.Helper()
	for hash, want := range held {
		_, err := b.Session(t.Context(), hash)
		switch {
		case want && err != nil:
			t.Errorf("session %s: %v, want it held", hash, err)
		case !want && !errors.Is(err, store.ErrNotFound):
			t.Errorf("session %s: %v, want ErrNotFound", hash, err)
		}
	}
}

func sessionReadsBack(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	live := sessionOf("h-live", "alice", t0)
	old := sessionOf("h-old", "alice", t0.Add(-3*time.Hour))
	insertSessions(t, b, live, old)
	for _, want := range []store.Session{live, old} {
		got, err := b.Session(ctx, want.Hash)
		if err != nil || !sameSession(got, want) {
			t.Errorf("Session(%s) = %+v, %v; want %+v", want.Hash, got, err, want)
		}
	}
}

func sessionUnknownAndTaken(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	if _, err := b.Session(ctx, "h-nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an unknown session: %v, want ErrNotFound", err)
	}
	first := sessionOf("h-1", "alice", t0)
	insertSessions(t, b, first)
	err := b.Tx(ctx, func(tx store.Tx) error {
		return tx.InsertSession(ctx, sessionOf("h-1", "mallory", t0.Add(time.Minute)))
	})
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("a second session with a taken hash: %v, want ErrExists", err)
	}
	if got, err := b.Session(ctx, "h-1"); err != nil || !sameSession(got, first) {
		t.Errorf("the first session after the refused one: %+v, %v", got, err)
	}
}

func sessionDelete(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	insertSessions(t, b, sessionOf("h-1", "alice", t0), sessionOf("h-2", "alice", t0))
	var existed, again bool
	commit(t, b, func(tx store.Tx) error {
		var err error
		if existed, err = tx.DeleteSession(ctx, "h-1"); err != nil {
			return err
		}
		again, err = tx.DeleteSession(ctx, "h-1")
		return err
	})
	if !existed || again {
		t.Errorf("DeleteSession reported %t then %t, want true then false", existed, again)
	}
	wantSessions(t, b, map[string]bool{"h-1": false, "h-2": true})
}

func sessionDeleteOfUser(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	insertSessions(t, b, sessionOf("h-a1", "alice", t0), sessionOf("h-a2", "alice", t0), sessionOf("h-b1", "bob", t0))
	var n int
	commit(t, b, func(tx store.Tx) error {
		var err error
		n, err = tx.DeleteSessionsOf(ctx, "alice")
		return err
	})
	if n != 2 {
		t.Errorf("DeleteSessionsOf(alice) = %d, want 2", n)
	}
	wantSessions(t, b, map[string]bool{"h-a1": false, "h-a2": false, "h-b1": true})
}

func sessionDeleteExpired(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	// Ends at t0, at t0+1µs and an hour after t0.
	insertSessions(t, b, sessionOf("h-ended", "alice", t0.Add(-time.Hour)), sessionOf("h-next", "alice", t0.Add(-time.Hour+us)), sessionOf("h-live", "bob", t0))
	var n int
	commit(t, b, func(tx store.Tx) error {
		var err error
		n, err = tx.DeleteExpiredSessions(ctx, t0)
		return err
	})
	if n != 1 {
		t.Errorf("DeleteExpiredSessions(t0) = %d, want 1 (the one that ended at t0)", n)
	}
	wantSessions(t, b, map[string]bool{"h-ended": false, "h-next": true, "h-live": true})
}

func sessionRolledBack(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	err := b.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertSession(ctx, sessionOf("h-1", "alice", t0)); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Tx = %v, want errBoom", err)
	}
	wantSessions(t, b, map[string]bool{"h-1": false})
}
