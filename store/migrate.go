package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrate adds the columns that later versions introduced to a store
// created by an earlier one. Each step is idempotent.
func migrate(ctx context.Context, db *sql.DB) error {
	for _, c := range []struct{ table, column, decl string }{
		{"steps", "epoch", "INTEGER NOT NULL DEFAULT 0"},
		// Who asked for a run and who overrode a gate on it: the people
		// four eyes keeps from approving it.
		{"runs", "requested_by", "TEXT NOT NULL DEFAULT ''"},
		{"runs", "overridden_by", "TEXT NOT NULL DEFAULT ''"},
		// The token an entry's actor authenticated with.
		{"audit", "token", "TEXT NOT NULL DEFAULT ''"},
	} {
		has, err := hasColumn(ctx, db, c.table, c.column)
		if err != nil {
			return err
		}
		if has {
			continue
		}
		if _, err := db.ExecContext(ctx, `ALTER TABLE `+c.table+` ADD COLUMN `+c.column+` `+c.decl); err != nil {
			return fmt.Errorf("adding %s.%s: %w", c.table, c.column, err)
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
