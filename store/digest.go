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
// covers: all of them.
const indicatorDigestCols = `id, received_at, gateway, kind, severity, status, fingerprint, incident, matched, reason, duplicate, source, body`

// IndicatorDigests returns, for each of ids that is stored, the Merkle
// leaf of its row as stored (every column, length-prefixed): editing any
// column of the row changes it. The intake's batch audit entries carry
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
		cols := make([]sql.NullString, 13)
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
			for _, c := range cols {
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
