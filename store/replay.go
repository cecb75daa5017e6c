package store

import (
	"context"
	"fmt"
	"time"
)

// replaySchema holds the digests of accepted webhook signatures until their
// window has passed, so that a replay is refused across a restart too.
// Only digests are kept: a SHA-256 of the signature, never a secret.
// Open creates it with the rest of the schema.
const replaySchema = `
CREATE TABLE IF NOT EXISTS webhook_signatures (
	digest     BLOB PRIMARY KEY,
	expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_signatures_expiry ON webhook_signatures(expires_at);
`

// RememberSignature records a webhook signature digest until expiry and
// reports whether it was new; false means it was recorded before and has
// not expired (a replay). Entries that expired before now are deleted in
// the same transaction, so the table holds at most one window of
// deliveries. The write is committed (durable) before it returns true.
// It satisfies intake.ReplayLedger.
func (s *Store) RememberSignature(ctx context.Context, digest []byte, expiry, now time.Time) (bool, error) {
	var fresh bool
	err := s.inTx(ctx, func(tx *txn) error {
		if _, err := tx.exec(ctx, `DELETE FROM webhook_signatures WHERE expires_at < ?`, ts(now)); err != nil {
			return fmt.Errorf("pruning expired webhook signatures: %w", err)
		}
		res, err := tx.exec(ctx, `INSERT INTO webhook_signatures (digest, expires_at) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING`, digest, ts(expiry))
		if err != nil {
			return fmt.Errorf("recording a webhook signature: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("recording a webhook signature: %w", err)
		}
		fresh = n == 1
		return nil
	})
	if err != nil {
		return false, err
	}
	return fresh, nil
}
