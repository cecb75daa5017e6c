package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrate adds the columns that later versions introduced to a store
// created by an earlier one. Each step is idempotent.
func migrate(ctx context.Context, db *sql.DB) error {
	has, err := hasColumn(ctx, db, "steps", "epoch")
	if err != nil {
		return err
	}
	if !has {
		if _, err := db.ExecContext(ctx, `ALTER TABLE steps ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0`); err != nil {
			return fmt.Errorf("adding steps.epoch: %w", err)
		}
	}
	return nil
}

func hasColumn(ctx context.Context, db *sql.DB, table, column string) (bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		return false, fmt.Errorf("reading the columns of %s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return false, err
		}
		if name == column {
			return true, nil
		}
	}
	return false, rows.Err()
}
