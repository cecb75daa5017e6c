// Package audit keeps Warden's tamper-evident record: an append-only,
// hash-chained list of entries for every decision, approval, provider call
// and result (safety invariant 5).
//
// Each entry's hash covers its own fields and the previous entry's hash, so
// editing, inserting or deleting any row breaks the chain from that row on;
// a separate head record catches truncation of the newest rows. The package
// owns the audit table's schema, appending inside the caller's transaction,
// verification, and JSON-lines export. It must not decide anything and must
// never store secrets: data is passed through Redact before it is hashed.
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/warden-ir/warden/internal/sqlrows"
)

// Genesis is the previous-hash of the first entry.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Entry is one audit record.
type Entry struct {
	Seq   int64     `json:"seq"`
	At    time.Time `json:"at"`
	Actor string    `json:"actor"` // "controller", "user:<name>", "local:<os user>", "agent:<gw>"
	// Token is the id of the credential the actor authenticated with
	// ("tk_…", "oidc", "legacy"); empty for the controller's own entries.
	Token    string          `json:"token,omitempty"`
	Action   string          `json:"action"` // "indicator.accepted", "policy.decided", "step.apply", …
	Incident string          `json:"incident,omitempty"`
	Run      string          `json:"run,omitempty"`
	Subject  string          `json:"subject,omitempty"` // gateway id, VM, step name
	Data     json.RawMessage `json:"data,omitempty"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

// Schema creates the audit tables. It is safe to run on every start.
const Schema = `
CREATE TABLE IF NOT EXISTS audit (
	seq       INTEGER PRIMARY KEY,
	at        TEXT NOT NULL,
	actor     TEXT NOT NULL,
	action    TEXT NOT NULL,
	incident  TEXT NOT NULL DEFAULT '',
	run       TEXT NOT NULL DEFAULT '',
	subject   TEXT NOT NULL DEFAULT '',
	data      TEXT NOT NULL DEFAULT '',
	prev_hash TEXT NOT NULL,
	hash      TEXT NOT NULL,
	token     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_incident ON audit(incident);
CREATE TABLE IF NOT EXISTS audit_head (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	seq  INTEGER NOT NULL,
	hash TEXT NOT NULL
);
`

// Execer is satisfied by *sql.Tx and *sql.DB.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Append adds e to the chain inside the caller's transaction, filling Seq,
// PrevHash and Hash. Data is redacted first. The caller must serialise
// appends (SQLite's single writer does this for a transaction).
func Append(ctx context.Context, tx Execer, e Entry) (Entry, error) {
	a := NewAppender(tx)
	out, err := a.Append(ctx, e)
	if err != nil {
		return Entry{}, err
	}
	return out, a.Flush(ctx)
}

// Appender appends several entries in one transaction: it reads the head
// once and writes it once (Flush), which matters when one intake request
// writes dozens of entries. It is not safe for concurrent use; a
// transaction is not either.
type Appender struct {
	tx     Execer
	loaded bool
	dirty  bool
	seq    int64
	prev   string
}

// NewAppender starts appending inside tx.
func NewAppender(tx Execer) *Appender { return &Appender{tx: tx} }

// Mark and Reset let a caller that uses savepoints roll the appender back
// with its transaction.
type Mark struct {
	loaded, dirty bool
	seq           int64
	prev          string
}

// Mark records the appender's position.
func (a *Appender) Mark() Mark { return Mark{a.loaded, a.dirty, a.seq, a.prev} }

// Reset returns to a recorded position.
func (a *Appender) Reset(m Mark) { a.loaded, a.dirty, a.seq, a.prev = m.loaded, m.dirty, m.seq, m.prev }

// Append adds one entry; see the package function Append.
func (a *Appender) Append(ctx context.Context, e Entry) (Entry, error) {
	if !a.loaded {
		err := a.tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&a.seq, &a.prev)
		if errors.Is(err, sql.ErrNoRows) {
			a.seq, a.prev = 0, Genesis
		} else if err != nil {
			return Entry{}, fmt.Errorf("reading audit head: %w", err)
		}
		a.loaded = true
	}
	e.Seq = a.seq + 1
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.At = e.At.UTC().Truncate(time.Microsecond)
	if len(e.Data) > 0 && mayHoldSecret(e.Data) {
		red, err := RedactJSON(e.Data)
		if err != nil {
			return Entry{}, fmt.Errorf("redacting audit data: %w", err)
		}
		e.Data = red
	}
	if e.Token == "" {
		if c, ok := ctx.Value(credentialKey{}).(credential); ok && c.actor == e.Actor {
			e.Token = c.token
		}
	}
	e.PrevHash = a.prev
	e.Hash = e.computeHash()
	if _, err := a.tx.ExecContext(ctx, `INSERT INTO audit(seq, at, actor, action, incident, run, subject, data, prev_hash, hash, token) VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
		e.Seq, e.At.Format(time.RFC3339Nano), e.Actor, e.Action, e.Incident, e.Run, e.Subject, string(e.Data), e.PrevHash, e.Hash, e.Token); err != nil {
		return Entry{}, fmt.Errorf("appending audit entry: %w", err)
	}
	a.seq, a.prev, a.dirty = e.Seq, e.Hash, true
	return e, nil
}

// Flush writes the head record. Call it before committing.
func (a *Appender) Flush(ctx context.Context) error {
	if !a.dirty {
		return nil
	}
	if _, err := a.tx.ExecContext(ctx, `INSERT INTO audit_head(id, seq, hash) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, a.seq, a.prev); err != nil {
		return fmt.Errorf("moving audit head: %w", err)
	}
	a.dirty = false
	return nil
}

// mayHoldSecret is a cheap pre-check: only documents with a secret-looking
// key anywhere are decoded and redacted.
func mayHoldSecret(raw []byte) bool {
	lower := bytes.ToLower(raw)
	for _, w := range secretWords {
		if bytes.Contains(lower, []byte(w)) {
			return true
		}
	}
	return bytes.Contains(lower, []byte(`_key"`))
}

// computeHash covers every field but Hash, length-prefixed so that no two
// different entries serialise the same. Token is covered when it is set:
// entries written before tokens were recorded keep their hashes.
func (e Entry) computeHash() string {
	h := sha256.New()
	fields := []string{
		fmt.Sprint(e.Seq), e.At.UTC().Format(time.RFC3339Nano), e.Actor, e.Action,
		e.Incident, e.Run, e.Subject, string(e.Data), e.PrevHash,
	}
	if e.Token != "" {
		fields = append(fields, "token="+e.Token)
	}
	for _, f := range fields {
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

type credentialKey struct{}

type credential struct{ actor, token string }

// WithCredential returns ctx under which entries whose actor is actor
// record token (the id of the credential that actor authenticated with):
// the API marks each request's context so, and every entry written for the
// request names the token as well as the person, without each caller
// passing it along.
func WithCredential(ctx context.Context, actor, token string) context.Context {
	return context.WithValue(ctx, credentialKey{}, credential{actor: actor, token: token})
}

// BrokenError names the first entry where the chain does not hold.
type BrokenError struct {
	Seq    int64
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit chain broken at entry %d: %s", e.Seq, e.Reason)
}

// Report summarises a verification.
type Report struct {
	Entries int64  `json:"entries"`
	Head    string `json:"head"`
}

// Queryer is satisfied by *sql.DB and *sql.Tx.
type Queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Verify walks the whole chain in the database. It returns a *BrokenError
// naming the first bad entry, or the number of entries and the head hash.
func Verify(ctx context.Context, db Queryer) (Report, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+entryCols+` FROM audit ORDER BY seq`)
	if err != nil {
		return Report{}, fmt.Errorf("reading audit entries: %w", err)
	}
	defer rows.Close()
	c := chainChecker{prev: Genesis}
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return Report{}, err
		}
		if err := c.check(e); err != nil {
			return Report{}, err
		}
	}
	if err := rows.Err(); err != nil {
		return Report{}, fmt.Errorf("reading audit entries: %w", err)
	}
	var headSeq int64
	var head string
	err = db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&headSeq, &head)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if c.n > 0 {
			return Report{}, &BrokenError{Seq: c.lastSeq, Reason: "audit head record is missing"}
		}
	case err != nil:
		return Report{}, fmt.Errorf("reading audit head: %w", err)
	default:
		if headSeq != c.lastSeq || head != c.prev {
			return Report{}, &BrokenError{Seq: c.lastSeq + 1, Reason: fmt.Sprintf("head says entry %d but the chain ends at %d: newest entries were removed or replaced", headSeq, c.lastSeq)}
		}
	}
	return Report{Entries: c.n, Head: c.prev}, nil
}

type chainChecker struct {
	prev    string
	lastSeq int64
	n       int64
	partial bool // exported subsets start anywhere
}

func (c *chainChecker) check(e Entry) error {
	if c.n == 0 && c.partial {
		c.prev = e.PrevHash
		c.lastSeq = e.Seq - 1
	}
	if !c.partial && e.Seq != c.lastSeq+1 {
		return &BrokenError{Seq: c.lastSeq + 1, Reason: fmt.Sprintf("entry missing (next entry found is %d)", e.Seq)}
	}
	if e.PrevHash != c.prev {
		return &BrokenError{Seq: e.Seq, Reason: "previous-hash does not match the entry before it"}
	}
	if got := e.computeHash(); got != e.Hash {
		return &BrokenError{Seq: e.Seq, Reason: "content does not match its hash (entry was edited)"}
	}
	c.prev, c.lastSeq = e.Hash, e.Seq
	c.n++
	return nil
}

const entryCols = `seq, at, actor, action, incident, run, subject, data, prev_hash, hash, token`

func scanEntry(rows *sql.Rows) (Entry, error) {
	var e Entry
	var at, data string
	if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.Incident, &e.Run, &e.Subject, &data, &e.PrevHash, &e.Hash, &e.Token); err != nil {
		return Entry{}, fmt.Errorf("reading audit entry: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		// An unparsable time is an edit; keep going so the hash check names it.
		t = time.Time{}
	}
	e.At = t
	if data != "" {
		e.Data = json.RawMessage(data)
	}
	return e, nil
}

// List returns entries, optionally for one incident, oldest first.
func List(ctx context.Context, db Queryer, incident string) ([]Entry, error) {
	q := `SELECT ` + entryCols + ` FROM audit`
	var args []any
	if incident != "" {
		q += ` WHERE incident = ?`
		args = append(args, incident)
	}
	q += ` ORDER BY seq`
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing audit entries: %w", err)
	}
	return sqlrows.Collect(rows, scanEntry)
}

// LastSeq is the sequence number of the newest entry about incident (of
// the whole chain when incident is ""), 0 when there is none. Every change
// to an incident is audited in the transaction that makes it, so a reader
// that saw LastSeq unchanged has seen no change: the console polls it to
// know when to redraw a page that follows an incident live.
func LastSeq(ctx context.Context, db Queryer, incident string) (int64, error) {
	q, args := `SELECT COALESCE(MAX(seq), 0) FROM audit`, []any{}
	if incident != "" {
		q, args = q+` WHERE incident = ?`, append(args, incident)
	}
	var seq int64
	if err := db.QueryRowContext(ctx, q, args...).Scan(&seq); err != nil {
		return 0, fmt.Errorf("reading the newest audit entry: %w", err)
	}
	return seq, nil
}

// Export writes the whole chain as JSON lines, one entry a line. The full
// chain (not one incident's subset) is what can be verified offline.
func Export(ctx context.Context, db Queryer, w io.Writer) error {
	entries, err := List(ctx, db, "")
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("writing audit export: %w", err)
		}
	}
	return nil
}

// VerifyJSONLines verifies an exported chain offline. It must start at the
// genesis entry.
func VerifyJSONLines(r io.Reader) (Report, error) {
	dec := json.NewDecoder(r)
	c := chainChecker{prev: Genesis}
	for {
		var e Entry
		err := dec.Decode(&e)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Report{}, &BrokenError{Seq: c.lastSeq + 1, Reason: fmt.Sprintf("unreadable line: %v", err)}
		}
		if err := c.check(e); err != nil {
			return Report{}, err
		}
	}
	return Report{Entries: c.n, Head: c.prev}, nil
}

var secretWords = []string{"password", "passwd", "secret", "token", "private", "psk", "credential", "authorization"}

// IsSecretKey reports whether a field name looks like it holds a secret.
func IsSecretKey(k string) bool {
	lk := strings.ToLower(k)
	if lk == "idempotency_key" || lk == "public_key" || lk == "key" {
		return false
	}
	for _, w := range secretWords {
		if strings.Contains(lk, w) {
			return true
		}
	}
	return strings.HasSuffix(lk, "_key") && !strings.Contains(lk, "idempotency")
}

// Redact replaces the values of secret-looking keys, recursively.
func Redact(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, val := range t {
			if IsSecretKey(k) {
				out[k] = "[redacted]"
				continue
			}
			out[k] = Redact(val)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, val := range t {
			out[i] = Redact(val)
		}
		return out
	}
	return v
}

// RedactJSON applies Redact to a JSON document.
func RedactJSON(raw json.RawMessage) (json.RawMessage, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return json.Marshal(Redact(v))
}
