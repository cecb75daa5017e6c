package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrExists is a user name that is taken.
var ErrExists = errors.New("already exists")

// User is a person or machine identity allowed to call the API. Its
// tokens are APITokens; the role is one of package auth's.
type User struct {
	Name        string
	Role        string
	DisplayName string
	Disabled    bool
	CreatedAt   time.Time
	CreatedBy   string
	UpdatedAt   time.Time
}

// APIToken is what is kept of a token: its public id and its SHA-256,
// never the token.
type APIToken struct {
	ID        string
	User      string
	Hash      string
	CreatedAt time.Time
	CreatedBy string
	// RevokedAt is zero while the token works.
	RevokedAt time.Time
}

// usersSchema holds users and the hashes of their tokens.
const usersSchema = `
CREATE TABLE IF NOT EXISTS users (
	name         TEXT PRIMARY KEY,
	role         TEXT NOT NULL,
	display_name TEXT NOT NULL DEFAULT '',
	disabled     INTEGER NOT NULL DEFAULT 0,
	created_at   TEXT NOT NULL,
	created_by   TEXT NOT NULL,
	updated_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
	id         TEXT PRIMARY KEY,
	"user"     TEXT NOT NULL REFERENCES users(name),
	hash       TEXT NOT NULL UNIQUE,
	created_at TEXT NOT NULL,
	created_by TEXT NOT NULL,
	revoked_at TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS api_tokens_user ON api_tokens("user", revoked_at);
`

const userCols = `name, role, display_name, disabled, created_at, created_by, updated_at`

func scanUser(sc interface{ Scan(...any) error }) (User, error) {
	var u User
	var disabled int
	var created, updated string
	if err := sc.Scan(&u.Name, &u.Role, &u.DisplayName, &disabled, &created, &u.CreatedBy, &updated); err != nil {
		return User{}, err
	}
	u.Disabled, u.CreatedAt, u.UpdatedAt = disabled == 1, parseTS(created), parseTS(updated)
	return u, nil
}

// tokenCols quotes "user": on PostgreSQL a bare user is the session's role.
const tokenCols = `id, "user", hash, created_at, created_by, revoked_at`

func scanToken(sc interface{ Scan(...any) error }) (APIToken, error) {
	var t APIToken
	var created, revoked string
	if err := sc.Scan(&t.ID, &t.User, &t.Hash, &created, &t.CreatedBy, &revoked); err != nil {
		return APIToken{}, err
	}
	t.CreatedAt, t.RevokedAt = parseTS(created), parseTS(revoked)
	return t, nil
}

func getUser(ctx context.Context, q queryer, name string) (User, error) {
	u, err := scanUser(q.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return u, err
}

// User reads one user.
func (s *Store) User(ctx context.Context, name string) (User, error) { return getUser(ctx, s.db, name) }

// Users lists every user by name.
func (s *Store) Users(ctx context.Context) ([]User, error) { return listUsers(ctx, s.db) }

// CountUsers is how many users exist, disabled ones included.
func (s *Store) CountUsers(ctx context.Context) (int, error) { return countUsers(ctx, s.db) }

// Users lists every user inside the transaction.
func (t *txn) Users(ctx context.Context) ([]User, error) { return listUsers(ctx, t.tx) }

// CountUsers counts users inside the transaction.
func (t *txn) CountUsers(ctx context.Context) (int, error) { return countUsers(ctx, t.tx) }

func listUsers(ctx context.Context, q queryer) ([]User, error) {
	return queryAll(ctx, q, "user", scanUser, `SELECT `+userCols+` FROM users ORDER BY name`)
}

func countUsers(ctx context.Context, q queryer) (int, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n)
	return n, err
}

// ActiveTokens lists the tokens of user that still work, oldest first.
func (s *Store) ActiveTokens(ctx context.Context, user string) ([]APIToken, error) {
	return queryAll(ctx, s.db, "token", scanToken, `SELECT `+tokenCols+` FROM api_tokens WHERE "user" = ? AND revoked_at = '' ORDER BY created_at, id`, user)
}

// CredentialByHash finds a token by its hash, with its user (ErrNotFound
// when no token has that hash). A revoked token is returned too: the caller
// tells "revoked" from "unknown".
func (s *Store) CredentialByHash(ctx context.Context, hash string) (User, APIToken, error) {
	row := s.db.QueryRowContext(ctx, `SELECT t.id, t."user", t.hash, t.created_at, t.created_by, t.revoked_at,
		u.name, u.role, u.display_name, u.disabled, u.created_at, u.created_by, u.updated_at
		FROM api_tokens t JOIN users u ON u.name = t."user" WHERE t.hash = ?`, hash)
	var t APIToken
	var u User
	var tCreated, tRevoked, uCreated, uUpdated string
	var disabled int
	err := row.Scan(&t.ID, &t.User, &t.Hash, &tCreated, &t.CreatedBy, &tRevoked,
		&u.Name, &u.Role, &u.DisplayName, &disabled, &uCreated, &u.CreatedBy, &uUpdated)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, APIToken{}, ErrNotFound
	}
	if err != nil {
		return User{}, APIToken{}, fmt.Errorf("looking up a token: %w", err)
	}
	t.CreatedAt, t.RevokedAt = parseTS(tCreated), parseTS(tRevoked)
	u.Disabled, u.CreatedAt, u.UpdatedAt = disabled == 1, parseTS(uCreated), parseTS(uUpdated)
	return u, t, nil
}

// User reads one user inside the transaction.
func (t *txn) User(ctx context.Context, name string) (User, error) { return getUser(ctx, t.tx, name) }

// InsertUser adds a user; a taken name is ErrExists.
func (t *txn) InsertUser(ctx context.Context, u User) error {
	// DO NOTHING rather than catching the error: on PostgreSQL a failed
	// statement spoils the rest of the transaction.
	res, err := t.exec(ctx, `INSERT INTO users(`+userCols+`) VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`,
		u.Name, u.Role, u.DisplayName, b2i(u.Disabled), ts(u.CreatedAt), u.CreatedBy, ts(u.UpdatedAt))
	if err != nil {
		return fmt.Errorf("storing user %q: %w", u.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %q: %w", u.Name, ErrExists)
	}
	return nil
}

// SetUserDisabled disables (or enables) a user.
func (t *txn) SetUserDisabled(ctx context.Context, name string, disabled bool, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE users SET disabled = ?, updated_at = ? WHERE name = ?`, b2i(disabled), ts(at), name)
	if err != nil {
		return fmt.Errorf("updating user %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return nil
}

// InsertToken stores a token's hash for its user.
func (t *txn) InsertToken(ctx context.Context, tok APIToken) error {
	if _, err := t.exec(ctx, `INSERT INTO api_tokens(`+tokenCols+`) VALUES (?,?,?,?,?,?)`,
		tok.ID, tok.User, tok.Hash, ts(tok.CreatedAt), tok.CreatedBy, ts(tok.RevokedAt)); err != nil {
		return fmt.Errorf("storing a token of %q: %w", tok.User, err)
	}
	return nil
}

// RevokeTokens revokes every working token of user and returns their ids.
func (t *txn) RevokeTokens(ctx context.Context, user string, at time.Time) ([]string, error) {
	ids, err := queryAll(ctx, t.tx, "token", func(sc interface{ Scan(...any) error }) (string, error) {
		var id string
		return id, sc.Scan(&id)
	}, `SELECT id FROM api_tokens WHERE "user" = ? AND revoked_at = '' ORDER BY id`, user)
	if err != nil {
		return nil, err
	}
	if _, err := t.exec(ctx, `UPDATE api_tokens SET revoked_at = ? WHERE "user" = ? AND revoked_at = ''`, ts(at), user); err != nil {
		return nil, fmt.Errorf("revoking the tokens of %q: %w", user, err)
	}
	return ids, nil
}
