package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Session is a person signed in to the web console. The session id is a
// bearer secret held in the person's cookie: the store keeps only its
// SHA-256 (Hash), as it does for API tokens, so a copy of the database
// signs nobody in.
type Session struct {
	Hash string
	// User, Role and TokenID are the principal the session acts as: who
	// signed in, their role then, and the credential they signed in with
	// ("tk_…", or "oidc").
	User    string
	Role    string
	TokenID string
	// CreatedAt is when they signed in; the session ends at ExpiresAt
	// whatever happens in between.
	CreatedAt time.Time
	ExpiresAt time.Time
}

// sessionsSchema holds the console's sessions.
const sessionsSchema = `
CREATE TABLE IF NOT EXISTS console_sessions (
	hash       TEXT PRIMARY KEY,
	"user"     TEXT NOT NULL,
	role       TEXT NOT NULL,
	token_id   TEXT NOT NULL,
	created_at TEXT NOT NULL,
	expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_user ON console_sessions("user");
CREATE INDEX IF NOT EXISTS console_sessions_expiry ON console_sessions(expires_at);
`

// sessionCols quotes "user": on PostgreSQL a bare user is the session's role.
const sessionCols = `hash, "user", role, token_id, created_at, expires_at`

func scanSession(sc interface{ Scan(...any) error }) (Session, error) {
	var s Session
	var created, expires string
	if err := sc.Scan(&s.Hash, &s.User, &s.Role, &s.TokenID, &created, &expires); err != nil {
		return Session{}, err
	}
	s.CreatedAt, s.ExpiresAt = parseTS(created), parseTS(expires)
	return s, nil
}

// Session reads the session whose id hashes to hash (ErrNotFound when
// there is none). An expired session is returned too: the caller decides
// against its own clock.
func (s *Store) Session(ctx context.Context, hash string) (Session, error) {
	se, err := scanSession(s.db.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM console_sessions WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, fmt.Errorf("session: %w", ErrNotFound)
	}
	if err != nil {
		return Session{}, fmt.Errorf("reading a session: %w", err)
	}
	return se, nil
}

// InsertSession stores a new session; a hash that is taken is ErrExists.
func (t *txn) InsertSession(ctx context.Context, se Session) error {
	res, err := t.exec(ctx, `INSERT INTO console_sessions(`+sessionCols+`) VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING`,
		se.Hash, se.User, se.Role, se.TokenID, ts(se.CreatedAt), ts(se.ExpiresAt))
	if err != nil {
		return fmt.Errorf("storing a session of %q: %w", se.User, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("session: %w", ErrExists)
	}
	return nil
}

// DeleteSession ends one session and reports whether it existed.
func (t *txn) DeleteSession(ctx context.Context, hash string) (bool, error) {
	res, err := t.exec(ctx, `DELETE FROM console_sessions WHERE hash = ?`, hash)
	if err != nil {
		return false, fmt.Errorf("ending a session: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// DeleteSessionsOf ends every session of user and says how many there
// were.
func (t *txn) DeleteSessionsOf(ctx context.Context, user string) (int, error) {
	res, err := t.exec(ctx, `DELETE FROM console_sessions WHERE "user" = ?`, user)
	if err != nil {
		return 0, fmt.Errorf("ending the sessions of %q: %w", user, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// DeleteExpiredSessions removes the sessions that ended at or before now.
func (t *txn) DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error) {
	res, err := t.exec(ctx, `DELETE FROM console_sessions WHERE expires_at <= ?`, ts(now))
	if err != nil {
		return 0, fmt.Errorf("removing expired sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
