package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// BlockRecord is a fleet-wide block of remote addresses (the controller's
// block unit): what was asked, by whom, whether it is in force.
type BlockRecord struct {
	// Number is assigned by InsertBlock (increasing, never reused).
	Number     int64
	Prefixes   []string
	Domains    []string
	Source     string
	Ref        string
	Name       string
	Kind       string
	TLP        string
	Confidence float64
	State      string
	// Unsafe lists why the block needs a person's approval.
	Unsafe      []string
	RequestedBy string
	DecidedBy   string
	Labels      map[string]string
	CreatedAt   time.Time
	ValidFrom   time.Time
	ExpiresAt   time.Time
	UpdatedAt   time.Time
}

// blocksSchema holds the blocks. A source's reference is unique among that
// source's blocks, so a feed sent twice makes each block once.
const blocksSchema = `
CREATE TABLE IF NOT EXISTS blocks (
	number       INTEGER PRIMARY KEY AUTOINCREMENT,
	prefixes     TEXT NOT NULL,
	domains      TEXT NOT NULL DEFAULT '[]',
	source       TEXT NOT NULL,
	ref          TEXT NOT NULL DEFAULT '',
	name         TEXT NOT NULL DEFAULT '',
	kind         TEXT NOT NULL DEFAULT '',
	tlp          TEXT NOT NULL DEFAULT '',
	confidence   REAL NOT NULL DEFAULT 0,
	state        TEXT NOT NULL,
	unsafe       TEXT NOT NULL DEFAULT '[]',
	requested_by TEXT NOT NULL,
	decided_by   TEXT NOT NULL DEFAULT '',
	labels       TEXT NOT NULL DEFAULT '{}',
	created_at   TEXT NOT NULL,
	valid_from   TEXT NOT NULL,
	expires_at   TEXT NOT NULL,
	updated_at   TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS blocks_ref ON blocks(source, ref) WHERE ref != '';
CREATE INDEX IF NOT EXISTS blocks_state ON blocks(state, expires_at);
`

const blockCols = `number, prefixes, domains, source, ref, name, kind, tlp, confidence, state, unsafe, requested_by, decided_by, labels, created_at, valid_from, expires_at, updated_at`

func scanBlock(sc interface{ Scan(...any) error }) (BlockRecord, error) {
	var b BlockRecord
	var prefixes, domains, unsafe, labels, created, from, expires, updated string
	if err := sc.Scan(&b.Number, &prefixes, &domains, &b.Source, &b.Ref, &b.Name, &b.Kind, &b.TLP, &b.Confidence, &b.State,
		&unsafe, &b.RequestedBy, &b.DecidedBy, &labels, &created, &from, &expires, &updated); err != nil {
		return BlockRecord{}, err
	}
	for _, f := range []struct {
		text string
		into any
	}{{prefixes, &b.Prefixes}, {domains, &b.Domains}, {unsafe, &b.Unsafe}, {labels, &b.Labels}} {
		if err := json.Unmarshal([]byte(f.text), f.into); err != nil {
			return BlockRecord{}, fmt.Errorf("block %d: %w", b.Number, err)
		}
	}
	b.CreatedAt, b.ValidFrom, b.ExpiresAt, b.UpdatedAt = parseTS(created), parseTS(from), parseTS(expires), parseTS(updated)
	return b, nil
}

// InsertBlock records b and sets b.Number. A block of the same source
// and (non-empty) reference is ErrExists.
func (t *txn) InsertBlock(ctx context.Context, b *BlockRecord) error {
	js := func(v any, empty string) string {
		out, _ := json.Marshal(v)
		if string(out) == "null" {
			return empty
		}
		return string(out)
	}
	// A taken reference inserts nothing and returns no number (DO NOTHING,
	// not an error: on PostgreSQL a failed statement spoils the rest of
	// the transaction); RETURNING, because PostgreSQL has no last insert id.
	err := t.queryRow(ctx, `INSERT INTO blocks(prefixes, domains, source, ref, name, kind, tlp, confidence, state, unsafe, requested_by, decided_by, labels, created_at, valid_from, expires_at, updated_at)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING RETURNING number`,
		js(b.Prefixes, "[]"), js(b.Domains, "[]"), b.Source, b.Ref, b.Name, b.Kind, b.TLP, b.Confidence, b.State,
		js(b.Unsafe, "[]"), b.RequestedBy, b.DecidedBy, js(b.Labels, "{}"), ts(b.CreatedAt), ts(b.ValidFrom), ts(b.ExpiresAt), ts(b.UpdatedAt)).Scan(&b.Number)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("block %s %q: %w", b.Source, b.Ref, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("storing block: %w", err)
	}
	return nil
}

// BlockByRef reads the block of source with reference ref.
func (t *txn) BlockByRef(ctx context.Context, source, ref string) (BlockRecord, error) {
	b, err := scanBlock(t.queryRow(ctx, `SELECT `+blockCols+` FROM blocks WHERE source = ? AND ref = ?`, source, ref))
	if errors.Is(err, sql.ErrNoRows) {
		return BlockRecord{}, fmt.Errorf("block %s %q: %w", source, ref, ErrNotFound)
	}
	return b, err
}

// BlockByNumber reads block n inside the transaction.
func (t *txn) BlockByNumber(ctx context.Context, n int64) (BlockRecord, error) {
	return getBlock(ctx, t.tx, n)
}

// Block reads block n.
func (s *Store) Block(ctx context.Context, n int64) (BlockRecord, error) {
	return getBlock(ctx, s.db, n)
}

func getBlock(ctx context.Context, q queryer, n int64) (BlockRecord, error) {
	b, err := scanBlock(q.QueryRowContext(ctx, `SELECT `+blockCols+` FROM blocks WHERE number = ?`, n))
	if errors.Is(err, sql.ErrNoRows) {
		return BlockRecord{}, fmt.Errorf("block %d: %w", n, ErrNotFound)
	}
	return b, err
}

// SetBlockState moves block n to state, decided by by (kept when by is
// empty), at at.
func (t *txn) SetBlockState(ctx context.Context, n int64, state, by string, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE blocks SET state = ?, decided_by = CASE WHEN ? = '' THEN decided_by ELSE ? END, updated_at = ? WHERE number = ?`,
		state, by, by, ts(at), n)
	if err != nil {
		return fmt.Errorf("updating block %d: %w", n, err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return fmt.Errorf("block %d: %w", n, ErrNotFound)
	}
	return nil
}

// ExpireBlocks moves every block in state from whose expiry is at or
// before now to state to, and returns their numbers in order.
func (t *txn) ExpireBlocks(ctx context.Context, from, to string, now time.Time) ([]int64, error) {
	nums, err := queryAll(ctx, t.tx, "block", func(sc interface{ Scan(...any) error }) (int64, error) {
		var n int64
		return n, sc.Scan(&n)
	}, `SELECT number FROM blocks WHERE state = ? AND expires_at <= ? ORDER BY number`, from, ts(now))
	if err != nil || len(nums) == 0 {
		return nil, err
	}
	if _, err := t.exec(ctx, `UPDATE blocks SET state = ?, updated_at = ? WHERE state = ? AND expires_at <= ?`, to, ts(now), from, ts(now)); err != nil {
		return nil, fmt.Errorf("expiring blocks: %w", err)
	}
	return nums, nil
}

// Blocks lists blocks in state (every state when empty), newest first,
// at most limit (all when limit <= 0).
func (s *Store) Blocks(ctx context.Context, state string, limit int) ([]BlockRecord, error) {
	return listBlocks(ctx, s.db, state, limit)
}

// Blocks lists blocks inside the transaction (see Store.Blocks).
func (t *txn) Blocks(ctx context.Context, state string, limit int) ([]BlockRecord, error) {
	return listBlocks(ctx, t.tx, state, limit)
}

func listBlocks(ctx context.Context, q queryer, state string, limit int) ([]BlockRecord, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	return queryAll(ctx, q, "block", scanBlock, `SELECT `+blockCols+` FROM blocks WHERE (? = '' OR state = ?) ORDER BY number DESC LIMIT ?`, state, state, limit)
}
