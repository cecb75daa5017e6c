package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/warden-ir/warden/store"
)

// ---- users and their tokens ----

var userCases = []testCase{
	{"a user reads back in and out of the transaction", userReadsBack},
	{"users list by name and count disabled ones too", userListAndCount},
	{"a taken name is ErrExists and leaves the user as it was", userTakenName},
	{"an unknown user is ErrNotFound", userUnknown},
	{"a rolled-back user and token are not stored", userRolledBack},
	{"a token is found by its hash, with its user", tokenByHash},
	{"an unknown hash is ErrNotFound", tokenUnknownHash},
	{"two tokens cannot share a hash", tokenHashUnique},
	{"a disabled user's token is found and marked so", tokenOfDisabledUser},
	{"disabling an unknown user is ErrNotFound", userDisableUnknown},
	{"revoking returns the working tokens' ids and stops only them", tokenRevoke},
	{"active tokens list oldest first", tokenActiveOrder},
}

// userAt is a user of role made by "user:adm" at at.
func userAt(name, role string, at time.Time) store.User {
	return store.User{Name: name, Role: role, DisplayName: "The " + name, CreatedAt: at, CreatedBy: "user:adm", UpdatedAt: at}
}

// tokenOf is token id of user, whose hash is "hash-"+id.
func tokenOf(id, user string, at time.Time) store.APIToken {
	return store.APIToken{ID: id, User: user, Hash: "hash-" + id, CreatedAt: at, CreatedBy: "user:adm"}
}

// addUsers commits each user with one token per id in tokens[name].
func addUsers(t *testing.T, b store.Backend, users []store.User, tokens map[string][]string) {
	t.Helper()
	ctx := t.Context()
	commit(t, b, func(tx store.Tx) error {
		for _, u := range users {
			if err := tx.InsertUser(ctx, u); err != nil {
				return err
			}
			for i, id := range tokens[u.Name] {
				if err := tx.InsertToken(ctx, tokenOf(id, u.Name, u.CreatedAt.Add(time.Duration(i)*time.Second))); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func sameUser(a, b store.User) bool {
	return a.Name == b.Name && a.Role == b.Role && a.DisplayName == b.DisplayName && a.Disabled == b.Disabled &&
		a.CreatedAt.Equal(b.CreatedAt) && a.CreatedBy == b.CreatedBy && a.UpdatedAt.Equal(b.UpdatedAt)
}

func sameToken(a, b store.APIToken) bool {
	return a.ID == b.ID && a.User == b.User && a.Hash == b.Hash && a.CreatedAt.Equal(b.CreatedAt) && a.CreatedBy == b.CreatedBy &&
		a.RevokedAt.Equal(b.RevokedAt)
}

func userReadsBack(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	want := userAt("alice", "approver", t0)
	commit(t, b, func(tx store.Tx) error {
		if err := tx.InsertUser(ctx, want); err != nil {
			return err
		}
		got, err := tx.User(ctx, "alice")
		if err != nil || !sameUser(got, want) {
			t.Errorf("inside the transaction: User = %+v, %v; want %+v", got, err, want)
		}
		return nil
	})
	got, err := b.User(ctx, "alice")
	if err != nil || !sameUser(got, want) {
		t.Errorf("after commit: User = %+v, %v; want %+v", got, err, want)
	}
}

func userListAndCount(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	if n, err := b.CountUsers(ctx); err != nil || n != 0 {
		t.Errorf("CountUsers of an empty store = %d, %v", n, err)
	}
	addUsers(t, b, []store.User{userAt("carol", "viewer", t0), userAt("alice", "admin", t0.Add(us)), userAt("bob", "intake", t0.Add(2*us))}, nil)
	commit(t, b, func(tx store.Tx) error { return tx.SetUserDisabled(ctx, "bob", true, t0.Add(time.Hour)) })
	check := func(where string, users []store.User, n int, err error) {
		t.Helper()
		var names []string
		for _, u := range users {
			names = append(names, u.Name)
		}
		if err != nil || !slices.Equal(names, []string{"alice", "bob", "carol"}) || n != 3 {
			t.Errorf("%s: Users = %v, CountUsers = %d, %v; want alice, bob, carol and 3", where, names, n, err)
		}
		if len(users) == 3 && (!users[1].Disabled || !users[1].UpdatedAt.Equal(t0.Add(time.Hour)) || users[0].Disabled) {
			t.Errorf("%s: only bob is disabled, since an hour later: %+v", where, users)
		}
	}
	users, err := b.Users(ctx)
	n, cerr := b.CountUsers(ctx)
	check("reader", users, n, errors.Join(err, cerr))
	commit(t, b, func(tx store.Tx) error {
		users, err := tx.Users(ctx)
		n, cerr := tx.CountUsers(ctx)
		check("transaction", users, n, errors.Join(err, cerr))
		return nil
	})
}

func userTakenName(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	first := userAt("alice", "viewer", t0)
	addUsers(t, b, []store.User{first}, nil)
	err := b.Tx(ctx, func(tx store.Tx) error { return tx.InsertUser(ctx, userAt("alice", "admin", t0.Add(time.Hour))) })
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("inserting alice again: %v, want ErrExists", err)
	}
	// In the transaction that inserts it, too.
	err = b.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertUser(ctx, userAt("bob", "viewer", t0)); err != nil {
			return err
		}
		return tx.InsertUser(ctx, userAt("bob", "admin", t0))
	})
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("inserting bob twice in one transaction: %v, want ErrExists", err)
	}
	if got, err := b.User(ctx, "alice"); err != nil || !sameUser(got, first) {
		t.Errorf("alice after the refused insert: %+v, %v; want %+v", got, err, first)
	}
	if _, err := b.User(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bob, whose transaction failed: %v, want ErrNotFound", err)
	}
}

func userUnknown(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	if _, err := b.User(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("reader: User(nobody) = %v, want ErrNotFound", err)
	}
	commit(t, b, func(tx store.Tx) error {
		if _, err := tx.User(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("transaction: User(nobody) = %v, want ErrNotFound", err)
		}
		return nil
	})
	if toks, err := b.ActiveTokens(ctx, "nobody"); err != nil || len(toks) != 0 {
		t.Errorf("ActiveTokens(nobody) = %+v, %v; want none", toks, err)
	}
}

func userRolledBack(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	err := b.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertUser(ctx, userAt("alice", "admin", t0)); err != nil {
			return err
		}
		if err := tx.InsertToken(ctx, tokenOf("tk_1", "alice", t0)); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Tx = %v, want fn's error", err)
	}
	if n, err := b.CountUsers(ctx); err != nil || n != 0 {
		t.Errorf("CountUsers = %d, %v; want 0", n, err)
	}
	if _, _, err := b.CredentialByHash(ctx, "hash-tk_1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CredentialByHash of the rolled-back token = %v, want ErrNotFound", err)
	}
}

func tokenByHash(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	alice := userAt("alice", "responder", t0)
	addUsers(t, b, []store.User{alice, userAt("bob", "viewer", t0)}, map[string][]string{"alice": {"tk_a"}, "bob": {"tk_b"}})
	u, tok, err := b.CredentialByHash(ctx, "hash-tk_a")
	if err != nil || !sameUser(u, alice) || !sameToken(tok, tokenOf("tk_a", "alice", t0)) {
		t.Errorf("CredentialByHash = %+v, %+v, %v; want alice's tk_a, working", u, tok, err)
	}
	if !tok.RevokedAt.IsZero() {
		t.Errorf("a working token has RevokedAt %v", tok.RevokedAt)
	}
}

func tokenUnknownHash(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	addUsers(t, b, []store.User{userAt("alice", "admin", t0)}, map[string][]string{"alice": {"tk_a"}})
	for _, hash := range []string{"hash-tk_b", "", "HASH-TK_A", "hash-tk_"} {
		if _, _, err := b.CredentialByHash(ctx, hash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CredentialByHash(%q) = %v, want ErrNotFound", hash, err)
		}
	}
}

func tokenHashUnique(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	addUsers(t, b, []store.User{userAt("alice", "admin", t0), userAt("bob", "viewer", t0)}, map[string][]string{"alice": {"tk_a"}})
	dup := tokenOf("tk_b", "bob", t0)
	dup.Hash = "hash-tk_a"
	if err := b.Tx(ctx, func(tx store.Tx) error { return tx.InsertToken(ctx, dup) }); err == nil {
		t.Fatal("a second token with alice's hash was stored")
	}
	if u, tok, err := b.CredentialByHash(ctx, "hash-tk_a"); err != nil || u.Name != "alice" || tok.ID != "tk_a" {
		t.Errorf("alice's token after the refused one: %s %s %v", u.Name, tok.ID, err)
	}
}

func tokenOfDisabledUser(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	addUsers(t, b, []store.User{userAt("alice", "approver", t0)}, map[string][]string{"alice": {"tk_a"}})
	commit(t, b, func(tx store.Tx) error { return tx.SetUserDisabled(ctx, "alice", true, t0.Add(time.Minute)) })
	u, tok, err := b.CredentialByHash(ctx, "hash-tk_a")
	if err != nil || !u.Disabled || tok.ID != "tk_a" || !tok.RevokedAt.IsZero() {
		t.Errorf("a disabled user's token: %+v %+v %v; want it found, its user disabled", u, tok, err)
	}
	commit(t, b, func(tx store.Tx) error { return tx.SetUserDisabled(ctx, "alice", false, t0.Add(time.Hour)) })
	if u, _, err := b.CredentialByHash(ctx, "hash-tk_a"); err != nil || u.Disabled || !u.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("enabled again: %+v %v", u, err)
	}
}

func userDisableUnknown(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	err := b.Tx(ctx, func(tx store.Tx) error { return tx.SetUserDisabled(ctx, "nobody", true, t0) })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetUserDisabled(nobody) = %v, want ErrNotFound", err)
	}
	if n, err := b.CountUsers(ctx); err != nil || n != 0 {
		t.Errorf("disabling nobody made %d users (%v)", n, err)
	}
}

func tokenRevoke(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	addUsers(t, b, []store.User{userAt("alice", "admin", t0), userAt("bob", "viewer", t0)},
		map[string][]string{"alice": {"tk_a2", "tk_a1"}, "bob": {"tk_b"}})
	at := t0.Add(time.Hour)
	var revoked []string
	commit(t, b, func(tx store.Tx) error {
		var err error
		revoked, err = tx.RevokeTokens(ctx, "alice", at)
		return err
	})
	slices.Sort(revoked)
	if !slices.Equal(revoked, []string{"tk_a1", "tk_a2"}) {
		t.Errorf("RevokeTokens(alice) = %v, want both of alice's tokens", revoked)
	}
	for _, id := range []string{"tk_a1", "tk_a2"} {
		// A revoked token is still found, so that "revoked" can be told
		// from "unknown".
		if _, tok, err := b.CredentialByHash(ctx, "hash-"+id); err != nil || !tok.RevokedAt.Equal(at) {
			t.Errorf("%s after revoking: revoked at %v (%v), want %v", id, tok.RevokedAt, err, at)
		}
	}
	if toks, err := b.ActiveTokens(ctx, "alice"); err != nil || len(toks) != 0 {
		t.Errorf("alice's active tokens after revoking: %+v %v", toks, err)
	}
	if _, tok, err := b.CredentialByHash(ctx, "hash-tk_b"); err != nil || !tok.RevokedAt.IsZero() {
		t.Errorf("bob's token after revoking alice's: %+v %v; want it working", tok, err)
	}
	// Again: nothing works any more, so nothing is revoked, and the first
	// revocation's time stays.
	commit(t, b, func(tx store.Tx) error {
		var err error
		revoked, err = tx.RevokeTokens(ctx, "alice", at.Add(time.Hour))
		return err
	})
	if len(revoked) != 0 {
		t.Errorf("revoking again = %v, want none", revoked)
	}
	if _, tok, _ := b.CredentialByHash(ctx, "hash-tk_a1"); !tok.RevokedAt.Equal(at) {
		t.Errorf("revoking again moved tk_a1's revocation to %v", tok.RevokedAt)
	}
	// A new token after the revocation works.
	commit(t, b, func(tx store.Tx) error { return tx.InsertToken(ctx, tokenOf("tk_a3", "alice", at)) })
	if toks, err := b.ActiveTokens(ctx, "alice"); err != nil || len(toks) != 1 || toks[0].ID != "tk_a3" {
		t.Errorf("alice's active tokens after a new one: %+v %v", toks, err)
	}
}

func tokenActiveOrder(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	addUsers(t, b, []store.User{userAt("alice", "admin", t0)}, nil)
	commit(t, b, func(tx store.Tx) error {
		return writeAll(ctx, tx.InsertToken, []store.APIToken{
			tokenOf("tk_c", "alice", t0.Add(2*time.Second)),
			tokenOf("tk_a", "alice", t0.Add(time.Second)),
			tokenOf("tk_b", "alice", t0),
		})
	})
	toks, err := b.ActiveTokens(ctx, "alice")
	var ids []string
	for _, tk := range toks {
		ids = append(ids, tk.ID)
	}
	if err != nil || !slices.Equal(ids, []string{"tk_b", "tk_a", "tk_c"}) {
		t.Errorf("ActiveTokens = %v, %v; want oldest first: tk_b, tk_a, tk_c", ids, err)
	}
	if len(toks) == 3 && !sameToken(toks[0], tokenOf("tk_b", "alice", t0)) {
		t.Errorf("ActiveTokens[0] = %+v", toks[0])
	}
}
