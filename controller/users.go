package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/store"
)

// people manages users and their tokens: every change is audited with
// who made it, in the transaction that makes it.
type people struct{ *core }

// Issued is a user with a token just issued; the token is in this value
// and nowhere else (the store keeps its hash).
type Issued struct {
	User    store.User
	TokenID string
	Token   string
}

// AddUser creates a user with a role and issues their first token.
func (c *people) AddUser(ctx context.Context, actor, name, role, displayName string) (Issued, error) {
	if err := auth.ValidName(name); err != nil {
		return Issued{}, fmt.Errorf("%w: name: %v", ErrInvalid, err)
	}
	r, err := auth.ParseRole(role)
	if err != nil {
		return Issued{}, fmt.Errorf("%w: role: %v", ErrInvalid, err)
	}
	token, id, err := auth.NewToken()
	if err != nil {
		return Issued{}, err
	}
	now := c.clock.Now()
	u := store.User{Name: name, Role: string(r), DisplayName: strings.TrimSpace(displayName), CreatedAt: now, CreatedBy: actor, UpdatedAt: now}
	err = c.st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertUser(ctx, u); err != nil {
			if errors.Is(err, store.ErrExists) {
				return fmt.Errorf("%w: user %q already exists", ErrConflict, name)
			}
			return err
		}
		if err := tx.InsertToken(ctx, store.APIToken{ID: id, User: name, Hash: auth.HashToken(token), CreatedAt: now, CreatedBy: actor}); err != nil {
			return err
		}
		return tx.Audit(ctx, audit.Entry{At: now, Actor: actor, Action: "user.added", Subject: name,
			Data: mustJSON(map[string]any{"role": u.Role, "display_name": u.DisplayName, "token_id": id})})
	})
	if err != nil {
		return Issued{}, err
	}
	return Issued{User: u, TokenID: id, Token: token}, nil
}

// DisableUser disables a user: their tokens stop working and their
// console sessions end at once. The last enabled admin cannot be disabled
// (nobody could manage users after).
func (c *people) DisableUser(ctx context.Context, actor, name string) (store.User, error) {
	var u store.User
	err := c.st.Tx(ctx, func(tx store.Tx) error {
		var err error
		if u, err = tx.User(ctx, name); err != nil {
			return err
		}
		if u.Disabled {
			return nil
		}
		if u.Role == string(auth.Admin) {
			if n, err := enabledAdmins(ctx, tx); err != nil {
				return err
			} else if n <= 1 {
				return fmt.Errorf("%w: %s is the last enabled admin; add another admin first", ErrForbidden, name)
			}
		}
		now := c.clock.Now()
		if err := tx.SetUserDisabled(ctx, name, true, now); err != nil {
			return err
		}
		// Their console sessions end with their tokens.
		ended, err := tx.DeleteSessionsOf(ctx, name)
		if err != nil {
			return err
		}
		u.Disabled, u.UpdatedAt = true, now
		return tx.Audit(ctx, audit.Entry{At: now, Actor: actor, Action: "user.disabled", Subject: name,
			Data: mustJSON(map[string]any{"role": u.Role, "sessions_ended": ended})})
	})
	return u, err
}

func enabledAdmins(ctx context.Context, tx store.Tx) (int, error) {
	users, err := tx.Users(ctx)
	n := 0
	for _, u := range users {
		if u.Role == string(auth.Admin) && !u.Disabled {
			n++
		}
	}
	return n, err
}

// RotateToken revokes every token of a user, ends their console sessions
// and issues a new token.
func (c *people) RotateToken(ctx context.Context, actor, name string) (Issued, error) {
	token, id, err := auth.NewToken()
	if err != nil {
		return Issued{}, err
	}
	var u store.User
	err = c.st.Tx(ctx, func(tx store.Tx) error {
		var err error
		if u, err = tx.User(ctx, name); err != nil {
			return err
		}
		if u.Disabled {
			return fmt.Errorf("%w: user %q is disabled", ErrConflict, name)
		}
		now := c.clock.Now()
		revoked, err := tx.RevokeTokens(ctx, name, now)
		if err != nil {
			return err
		}
		if err := tx.InsertToken(ctx, store.APIToken{ID: id, User: name, Hash: auth.HashToken(token), CreatedAt: now, CreatedBy: actor}); err != nil {
			return err
		}
		// A lost or leaked token may have signed someone in to the
		// console: the sessions it opened end with it.
		ended, err := tx.DeleteSessionsOf(ctx, name)
		if err != nil {
			return err
		}
		return tx.Audit(ctx, audit.Entry{At: now, Actor: actor, Action: "user.token_rotated", Subject: name,
			Data: mustJSON(map[string]any{"revoked": revoked, "token_id": id, "sessions_ended": ended})})
	})
	if err != nil {
		return Issued{}, err
	}
	return Issued{User: u, TokenID: id, Token: token}, nil
}

// BootstrapAdmin makes the first admin, named name, whose token is token,
// when the store has no user yet; it reports whether it did.
func (c *people) BootstrapAdmin(ctx context.Context, name, token string) (bool, error) {
	if len(token) < auth.MinTokenLength {
		return false, fmt.Errorf("the bootstrap admin token is shorter than %d characters", auth.MinTokenLength)
	}
	created := false
	err := c.st.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.User(ctx, name); err == nil {
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if n, err := tx.CountUsers(ctx); err != nil || n > 0 {
			return err
		}
		now := c.clock.Now()
		id := auth.NewTokenID()
		if err := tx.InsertUser(ctx, store.User{Name: name, Role: string(auth.Admin), DisplayName: "bootstrap admin", CreatedAt: now, CreatedBy: "controller", UpdatedAt: now}); err != nil {
			return err
		}
		if err := tx.InsertToken(ctx, store.APIToken{ID: id, User: name, Hash: auth.HashToken(token), CreatedAt: now, CreatedBy: "controller"}); err != nil {
			return err
		}
		created = true
		return tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "user.added", Subject: name,
			Data: mustJSON(map[string]any{"role": string(auth.Admin), "token_id": id, "bootstrap": true})})
	})
	return created, err
}

// FourEyes reports whether approvals need a second person
// (guards.two_person).
func (c *core) FourEyes() bool { return c.opt.Guards.FourEyes() }
