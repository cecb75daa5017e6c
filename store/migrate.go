package store

// Schema migrations are versioned: schema_migrations holds one row per
// version applied, and each migration runs once, in its own transaction,
// in order. On PostgreSQL that transaction holds the write lock, so
// replicas started at once migrate once. A database on a version newer
// than this build knows is refused: this build would not know what the
// newer columns mean, and writing without them could lose what a newer
// replica relies on.

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/warden-ir/warden/audit"
)

// SchemaVersion is the newest schema this build knows.
const SchemaVersion = 9

type migration struct {
	version int
	name    string
	up      func(ctx context.Context, tx *txn) error
}

var migrations = []migration{
	{1, "the tables of Warden before versioned migrations", migrateBase},
	{2, "replicas: every warden serve on the database, for warden status", migrateReplicas},
	{3, "console sessions: who is signed in to the web console", migrateSessions},
	{4, "indicators keep who sent them and what was decided (bulk intake's compact record)", migrateIndicatorDecision},
	{5, "an index of automatic isolations by time, for the blast-radius budget", migrateAutoIsolationIndex},
	{6, "an index of the incidents still open, by gateway, for every decided indicator", migrateOpenIncidentsIndex},
	{7, "each gateway's latest firing indicator, for the circuit breaker", migrateGatewayFiring},
	{8, "an index of an incident's runs by policy and time, for a policy's repeat_after", migrateRecentRunIndex},
	{9, "no index of firing indicators across gateways: gateway_firing answers the circuit breaker", migrateDropFiringIndex},
}

// SchemaTooNewError is a database a newer Warden has migrated.
type SchemaTooNewError struct {
	Found, Known int
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("the database is on schema version %d, newer than this warden knows (%d): run the newer warden, or restore a backup taken before the upgrade", e.Found, e.Known)
}

const migrationsSchema = `
CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at TEXT NOT NULL
);
`

// migrate brings the schema up to SchemaVersion, refusing a newer one.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, migrationsSchema); err != nil {
		return fmt.Errorf("creating the schema_migrations table: %w", err)
	}
	found, err := s.schemaVersion(ctx, s.db)
	if err != nil {
		return err
	}
	s.schemaFound = found
	if found > SchemaVersion {
		return &SchemaTooNewError{Found: found, Known: SchemaVersion}
	}
	for _, m := range migrations {
		if m.version <= found {
			continue
		}
		err := s.inTx(ctx, func(tx *txn) error {
			// Another replica may have applied it while this one waited
			// for the write lock.
			now, err := s.schemaVersion(ctx, tx.tx)
			if err != nil || now >= m.version {
				return err
			}
			if err := m.up(ctx, tx); err != nil {
				return err
			}
			_, err = tx.tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, name, applied_at) VALUES (?,?,?)`,
				m.version, m.name, ts(time.Now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("migrating the schema to version %d (%s): %w", m.version, m.name, err)
		}
	}
	// The base tables and indexes are CREATE … IF NOT EXISTS: made again
	// on every open, so that one added to them (an index) reaches a
	// database already at this version. What is not idempotent (a new
	// column) needs a migration of its own.
	if err := s.inTx(ctx, func(tx *txn) error {
		_, err := tx.tx.ExecContext(ctx, baseSchema())
		return err
	}); err != nil {
		return fmt.Errorf("creating the base tables: %w", err)
	}
	return nil
}

// baseSchema is every table and index of the base schema, as
// CREATE … IF NOT EXISTS.
func baseSchema() string {
	return schema + leaseSchema + threatSchema + replaySchema + probeSchema + usersSchema + blocksSchema + audit.Schema + replicasSchema + sessionsSchema
}

// SchemaVersions are the schema version the database had when it was
// opened and the one it has now.
func (s *Store) SchemaVersions(ctx context.Context) (found, now int, err error) {
	now, err = s.schemaVersion(ctx, s.db)
	return s.schemaFound, now, err
}

func (s *Store) schemaVersion(ctx context.Context, q rowQuerier) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading the schema version: %w", err)
	}
	return int(v.Int64), nil
}

// migrateBase creates the tables as they were before migrations were
// versioned, and adds to a SQLite store of that time the columns later
// versions introduced (each step idempotent: such a store has tables and
// no schema_migrations rows).
func migrateBase(ctx context.Context, tx *txn) error {
	if _, err := tx.tx.ExecContext(ctx, schema+leaseSchema+threatSchema+replaySchema+probeSchema+usersSchema+blocksSchema+audit.Schema); err != nil {
		return fmt.Errorf("creating tables: %w", err)
	}
	if tx.s.dialect != dialectSQLite {
		return nil
	}
	for _, c := range []struct{ table, column, decl string }{
		{"steps", "epoch", "INTEGER NOT NULL DEFAULT 0"},
		// Who asked for a run and who overrode a gate on it: the people
		// four eyes keeps from approving it.
		{"runs", "requested_by", "TEXT NOT NULL DEFAULT ''"},
		{"runs", "overridden_by", "TEXT NOT NULL DEFAULT ''"},
		// The token an entry's actor authenticated with.
		{"audit", "token", "TEXT NOT NULL DEFAULT ''"},
	} {
		has, err := hasColumn(ctx, tx.tx, c.table, c.column)
		if err != nil {
			return err
		}
		if has {
			continue
		}
		if _, err := tx.tx.ExecContext(ctx, `ALTER TABLE `+c.table+` ADD COLUMN `+c.column+` `+c.decl); err != nil {
			return fmt.Errorf("adding %s.%s: %w", c.table, c.column, err)
		}
	}
	return nil
}

func hasColumn(ctx context.Context, q queryer, table, column string) (bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, table)
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

func migrateReplicas(ctx context.Context, tx *txn) error {
	if _, err := tx.tx.ExecContext(ctx, replicasSchema); err != nil {
		return fmt.Errorf("creating the replicas table: %w", err)
	}
	return nil
}

// migrateIndicatorDecision adds to indicators the sender and the decision
// that bulk (journaled) intake records on the row instead of in audit
// entries of their own; the intake batch entry's Merkle root covers them.
func migrateIndicatorDecision(ctx context.Context, tx *txn) error {
	for _, col := range []string{"sender", "decision"} {
		add := `ALTER TABLE indicators ADD COLUMN IF NOT EXISTS ` + col + ` TEXT NOT NULL DEFAULT ''`
		if tx.s.dialect == dialectSQLite {
			// A store whose versions were forgotten runs this again.
			if has, err := hasColumn(ctx, tx.tx, "indicators", col); err != nil || has {
				if err != nil {
					return err
				}
				continue
			}
			add = `ALTER TABLE indicators ADD COLUMN ` + col + ` TEXT NOT NULL DEFAULT ''`
		}
		if _, err := tx.tx.ExecContext(ctx, add); err != nil {
			return fmt.Errorf("adding indicators.%s: %w", col, err)
		}
	}
	return nil
}

// migrateAutoIsolationIndex indexes the runs the blast-radius budget
// counts (CountAutoIsolations, asked for every run a decision starts):
// without it the count read every run ever recorded, plans included, and
// a C2 alert's intake slowed as runs accumulated.
func migrateAutoIsolationIndex(ctx context.Context, tx *txn) error {
	if _, err := tx.tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS runs_auto_isolation ON runs(created_at, state, site) WHERE auto_isolation = 1`); err != nil {
		return fmt.Errorf("creating the runs_auto_isolation index: %w", err)
	}
	return nil
}

// migrateOpenIncidentsIndex indexes the incidents not closed by gateway
// (OpenIncidentFor, asked for every indicator, and CountOpenIncidents):
// with only incidents_gw(gateway, status), "status != 'closed'" read every
// incident the gateway ever had, and intake about a gateway slowed as its
// closed incidents accumulated.
func migrateOpenIncidentsIndex(ctx context.Context, tx *txn) error {
	if _, err := tx.tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS incidents_open ON incidents(gateway, updated_at, status) WHERE status != 'closed'`); err != nil {
		return fmt.Errorf("creating the incidents_open index: %w", err)
	}
	return nil
}

// migrateGatewayFiring keeps each gateway's latest matched, firing
// indicator (InsertIndicator maintains it), so that the circuit breaker's
// count of gateways with firing indicators within its window
// (CountGatewaysWithIndicators, asked for every automatic containment)
// reads one row per gateway, not every indicator of the window: an hour of
// an alert storm made a C2 alert's decision read them all. The rows are
// filled from the indicators already stored.
func migrateGatewayFiring(ctx context.Context, tx *txn) error {
	for _, q := range []string{
		gatewayFiringSchema,
		`INSERT INTO gateway_firing(gateway, last_at) SELECT gateway, max(received_at) FROM indicators WHERE matched = 1 AND status = 'firing' GROUP BY gateway
			ON CONFLICT(gateway) DO UPDATE SET last_at = excluded.last_at WHERE excluded.last_at > gateway_firing.last_at`,
	} {
		if _, err := tx.tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("creating the gateway_firing table: %w", err)
		}
	}
	return nil
}

// migrateRecentRunIndex indexes runs by incident, policy and creation
// time, so that a policy's guards.repeat_after (RecentRunFor, asked for
// indicators that such a policy decides) reads the runs of its window
// only, not every run the incident ever had.
func migrateRecentRunIndex(ctx context.Context, tx *txn) error {
	if _, err := tx.tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS runs_recent ON runs(incident, policy, created_at)`); err != nil {
		return fmt.Errorf("creating the runs_recent index: %w", err)
	}
	return nil
}

// migrateDropFiringIndex drops indicators_firing (matched, status,
// received_at, gateway): it served the circuit breaker's count of
// gateways with firing indicators, which reads gateway_firing since
// schema version 7, and no query reads it now (a gateway's live threats
// go through indicators_gw). Every stored indicator paid for it, on disk
// and in each insert.
func migrateDropFiringIndex(ctx context.Context, tx *txn) error {
	if _, err := tx.tx.ExecContext(ctx, `DROP INDEX IF EXISTS indicators_firing`); err != nil {
		return fmt.Errorf("dropping the indicators_firing index: %w", err)
	}
	return nil
}

// migrateSessions creates the web console's sessions table.
func migrateSessions(ctx context.Context, tx *txn) error {
	if _, err := tx.tx.ExecContext(ctx, sessionsSchema); err != nil {
		return fmt.Errorf("creating the console_sessions table: %w", err)
	}
	return nil
}
