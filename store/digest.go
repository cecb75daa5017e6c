package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/warden-ir/warden/audit"
)

// indicatorDigestCols are the columns of a stored indicator its digest
// covers: all of them. The last two (sender, decision; schema version 4)
// are covered when either is set, so that a row stored before they
// existed keeps its leaf.
const indicatorDigestCols = `id, received_at, gateway, kind, severity, status, fingerprint, incident, matched, reason, duplicate, source, body, sender, decision`

// indicatorDigestBase is how many of indicatorDigestCols every leaf covers.
const indicatorDigestBase = 13

// IndicatorDigests returns, for each of ids that is stored, the Merkle
// leaf of its row as stored (every column, length-prefixed; the sender
// and decision only when either is set): editing any column of the row
// changes it. The intake's batch audit entries carry
// the root over their indicators' leaves.
func (t *txn) IndicatorDigests(ctx context.Context, ids []string) (map[string][32]byte, error) {
	return indicatorDigests(ctx, t.tx, ids)
}

// IndicatorDigests is the transaction's IndicatorDigests, outside one.
func (s *Store) IndicatorDigests(ctx context.Context, ids []string) (map[string][32]byte, error) {
	return indicatorDigests(ctx, s.db, ids)
}

type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

func indicatorDigests(ctx context.Context, db querier, ids []string) (map[string][32]byte, error) {
	out := make(map[string][32]byte, len(ids))
	const chunk = 500
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		rows, err := db.QueryContext(ctx, `SELECT `+indicatorDigestCols+` FROM indicators WHERE id IN (?`+strings.Repeat(",?", len(part)-1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("reading indicators to digest: %w", err)
		}
		cols := make([]sql.NullString, indicatorDigestBase+2)
		ptrs := make([]any, len(cols))
		for i := range cols {
			ptrs[i] = &cols[i]
		}
		var buf []byte
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return nil, fmt.Errorf("reading indicators to digest: %w", err)
			}
			buf = buf[:0]
			covered := cols
			if cols[indicatorDigestBase].String == "" && cols[indicatorDigestBase+1].String == "" {
				covered = cols[:indicatorDigestBase]
			}
			for _, c := range covered {
				buf = binary.AppendUvarint(buf, uint64(len(c.String)))
				buf = append(buf, c.String...)
			}
			out[cols[0].String] = audit.MerkleLeaf(buf)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("reading indicators to digest: %w", err)
		}
	}
	return out, nil
}
