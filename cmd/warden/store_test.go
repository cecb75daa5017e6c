package main

import (
	"path/filepath"
	"testing"

	"github.com/warden-ir/warden/store/pgtest"
)

// TestStoreCopyAndMigrate: a SQLite store is copied to PostgreSQL with
// `warden store copy`, whose chain `warden audit verify` then finds intact
// over there; `warden store migrate` finds it up to date, and refuses a
// schema newer than this warden's.
func TestStoreCopyAndMigrate(t *testing.T) {
	hermetic(t)
	src := auditedStore(t, t.TempDir(), false)
	pg := pgtest.Start(t, pgtest.Options{})
	dsn := pg.DSNWithoutPassword(pg.CreateDB(t, ""))
	pw := "--password-file=" + pg.PasswordFile

	out, _, err := runCLI(t, "store", "copy", "--from", "sqlite:"+src, "--to", dsn, pw)
	wantRun(t, out, err, nil, []string{"audit", "3", "audit chain intact on the copy: 3 entries", "copied sqlite:" + src})
	out, _, err = runCLI(t, "store", "copy", "--from", "sqlite:"+src, "--to", dsn, pw)
	wantRun(t, out, err, []string{"not empty"}, nil)
	out, _, err = runCLI(t, "store", "copy", "--from", "sqlite:"+filepath.Join(t.TempDir(), "none.db"), "--to", dsn, pw)
	wantRun(t, out, err, []string{"--from", "none.db"}, nil)

	t.Setenv("PGPASSWORD", pg.Password)
	out, _, err = runCLI(t, "audit", "verify", "--db", dsn)
	wantRun(t, out, err, nil, []string{"audit chain intact: 3 entries"})
	out, _, err = runCLI(t, "store", "migrate", "--db", dsn)
	wantRun(t, out, err, nil, []string{"postgres store: schema version", "up to date"})

	pg.Exec(t, dbName(dsn), `INSERT INTO schema_migrations(version, name, applied_at) VALUES (1000, 'from the future', '')`)
	out, _, err = runCLI(t, "store", "migrate", "--db", dsn)
	wantRun(t, out, err, []string{"schema version 1000, newer than this warden knows"}, nil)
}

func dbName(dsn string) string { return filepath.Base(dsn[:len(dsn)-len("?sslmode=disable")]) }
