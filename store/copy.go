package store

// Moving between backends: Copy reads every table of one store and writes
// it into another, empty one of this build's schema, in one transaction of
// the target. It copies tables it does not know too (the evidence index,
// the credential vault): every table of the source must exist in the
// target, so nothing is left behind without a word. What only describes
// the running processes (the replicas, the write probe, the schema's own
// version record) is not copied; the writer lease is, expired, so that the
// target's first holder takes the next epoch and agents, which refuse an
// epoch lower than one they have seen, accept it.

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/warden-ir/warden/audit"
)

// notCopied are tables that describe the processes on a store, not its
// contents.
var notCopied = map[string]bool{"schema_migrations": true, "replicas": true, "write_probe": true}

// copyFirst are tables others refer to (foreign keys): copied before the
// rest, in this order.
var copyFirst = []string{"users", "evidence"}

// CopiedTable is one table Copy wrote.
type CopiedTable struct {
	Name string `json:"name"`
	Rows int64  `json:"rows"`
}

// CopyReport says what Copy did.
type CopyReport struct {
	Tables []CopiedTable `json:"tables"`
	// Audit is the target's audit chain, verified after the copy; it is
	// the source's, entry for entry.
	Audit audit.Report `json:"audit"`
}

// Copy copies everything in from into to, which must be empty. It refuses
// a source whose writer lease is held (stop its controllers first).
func Copy(ctx context.Context, from, to *Store) (CopyReport, error) {
	var rep CopyReport
	if l, ok, err := from.CurrentLease(ctx); err != nil {
		return rep, err
	} else if ok && time.Now().Before(l.ExpiresAt) {
		return rep, fmt.Errorf("copying: the source is in use: its writer lease is held by warden controller %s (pid %d on %s) until %s; stop every warden serve on it first",
			l.Owner, l.PID, l.Host, l.ExpiresAt.UTC().Format(time.RFC3339))
	}
	srcAudit, err := audit.Verify(ctx, from.db)
	if err != nil {
		return rep, fmt.Errorf("copying: the source's audit chain does not verify, so a copy could not be checked against it: %w", err)
	}
	tables, err := from.tables(ctx)
	if err != nil {
		return rep, err
	}
	have, err := to.tables(ctx)
	if err != nil {
		return rep, err
	}
	for _, t := range tables {
		if !slices.Contains(have, t) {
			return rep, fmt.Errorf("copying: table %s of the source is not in the target; open the target once with this warden (warden store migrate) and copy again", t)
		}
	}
	err = to.inTx(ctx, func(tx *txn) error {
		for _, t := range tables {
			var n int64
			if err := tx.tx.QueryRowContext(ctx, `SELECT count(*) FROM `+t).Scan(&n); err != nil {
				return fmt.Errorf("counting the target's %s: %w", t, err)
			}
			if n > 0 {
				return fmt.Errorf("copying: the target is not empty (table %s has %d rows): copy into a new database", t, n)
			}
		}
		for _, t := range tables {
			n, err := copyTable(ctx, from.db, tx.tx, t)
			if err != nil {
				return err
			}
			rep.Tables = append(rep.Tables, CopiedTable{Name: t, Rows: n})
		}
		if _, err := tx.tx.ExecContext(ctx, `UPDATE leases SET expires_at = ?`, ts(time.Now())); err != nil {
			return fmt.Errorf("expiring the copied lease: %w", err)
		}
		return to.restartIdentities(ctx, tx.tx)
	})
	if err != nil {
		return rep, err
	}
	rep.Audit, err = audit.Verify(ctx, to.db)
	if err != nil {
		return rep, fmt.Errorf("verifying the copy's audit chain: %w", err)
	}
	if rep.Audit != srcAudit {
		return rep, fmt.Errorf("the copy's audit chain (%d entries, head %s) differs from the source's (%d entries, head %s)",
			rep.Audit.Entries, rep.Audit.Head, srcAudit.Entries, srcAudit.Head)
	}
	return rep, nil
}

// tables lists the store's tables to copy: those others refer to first.
func (s *Store) tables(ctx context.Context) ([]string, error) {
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`
	if s.dialect == dialectPostgres {
		q = `SELECT tablename FROM pg_tables WHERE schemaname = current_schema()`
	}
	names, err := queryAll(ctx, s.db, "table", func(sc interface{ Scan(...any) error }) (string, error) {
		var n string
		return n, sc.Scan(&n)
	}, q)
	if err != nil {
		return nil, err
	}
	names = slices.DeleteFunc(names, func(n string) bool { return notCopied[n] })
	slices.SortFunc(names, func(a, b string) int {
		ia, ib := slices.Index(copyFirst, a), slices.Index(copyFirst, b)
		switch {
		case ia >= 0 && ib >= 0:
			return ia - ib
		case ia >= 0:
			return -1
		case ib >= 0:
			return 1
		}
		return strings.Compare(a, b)
	})
	return names, nil
}

// copyTable copies every row of table, many rows to an INSERT.
func copyTable(ctx context.Context, from *sql.DB, to *sql.Tx, table string) (int64, error) {
	rows, err := from.QueryContext(ctx, `SELECT * FROM `+table)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = `"` + c + `"`
	}
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",") + ")"
	// Well below both databases' limits on the parameters of a statement.
	per := max(1, 30000/len(cols))
	var (
		n     int64
		batch []any
		count int
	)
	flush := func() error {
		if count == 0 {
			return nil
		}
		q := `INSERT INTO ` + table + ` (` + strings.Join(quoted, ", ") + `) VALUES ` + strings.TrimSuffix(strings.Repeat(one+",", count), ",")
		if _, err := to.ExecContext(ctx, q, batch...); err != nil {
			return fmt.Errorf("writing %s: %w", table, err)
		}
		n += int64(count)
		batch, count = batch[:0], 0
		return nil
	}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return n, fmt.Errorf("reading %s: %w", table, err)
		}
		batch = append(batch, vals...)
		if count++; count == per {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("reading %s: %w", table, err)
	}
	return n, flush()
}

// restartIdentities moves PostgreSQL's identity sequences past the numbers
// copied in (SQLite keeps its own AUTOINCREMENT counters as rows go in).
func (s *Store) restartIdentities(ctx context.Context, tx *sql.Tx) error {
	if s.dialect != dialectPostgres {
		return nil
	}
	type ident struct{ table, column string }
	ids, err := queryAll(ctx, tx, "identity column", func(sc interface{ Scan(...any) error }) (ident, error) {
		var i ident
		return i, sc.Scan(&i.table, &i.column)
	}, `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() AND is_identity = 'YES'`)
	if err != nil {
		return err
	}
	for _, i := range ids {
		// setval(…, max, true): the next number is max+1; an empty table
		// starts at 1.
		if _, err := tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence(?, ?), coalesce((SELECT max(`+i.column+`) FROM `+i.table+`), 0) + 1, false)`,
			i.table, i.column); err != nil {
			return fmt.Errorf("restarting the numbering of %s.%s: %w", i.table, i.column, err)
		}
	}
	return nil
}
