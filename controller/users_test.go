package controller

import (
	"errors"
	"testing"
	"time"

	"github.com/warden-ir/warden/store"
)

// TestDisablingOrRotatingEndsConsoleSessions: a person disabled, or whose
// token is rotated (lost or leaked), is signed out of the console at once;
// other people's sessions stay.
func TestDisablingOrRotatingEndsConsoleSessions(t *testing.T) {
	h := newHarness(t, nil)
	ctx := t.Context()
	for _, name := range []string{"resp1", "resp2", "appr1"} {
		if _, err := h.c.AddUser(ctx, "user:admin", name, "responder", ""); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	err := h.st.Tx(ctx, func(tx store.Tx) error {
		for hash, user := range map[string]string{"s-resp1": "resp1", "s-resp2": "resp2", "s-appr1": "appr1"} {
			if err := tx.InsertSession(ctx, store.Session{Hash: hash, User: user, Role: "responder", TokenID: "tk_x", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.DisableUser(ctx, "user:admin", "resp1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.RotateToken(ctx, "user:admin", "resp2"); err != nil {
		t.Fatal(err)
	}
	for hash, held := range map[string]bool{"s-resp1": false, "s-resp2": false, "s-appr1": true} {
		_, err := h.st.Session(ctx, hash)
		if held != (err == nil) || (!held && !errors.Is(err, store.ErrNotFound)) {
			t.Errorf("session %s: %v, want held=%t", hash, err, held)
		}
	}
}
