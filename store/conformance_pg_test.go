package store_test

import (
	"context"
	"testing"

	"github.com/warden-ir/warden/store"
	"github.com/warden-ir/warden/store/pgtest"
	"github.com/warden-ir/warden/store/storetest"
)

// TestConformancePostgres runs the backend conformance suite against
// PostgreSQL: one private cluster for the test, and for each case an empty
// database of the schema OpenPostgres makes.
func TestConformancePostgres(t *testing.T) {
	dbs := newPostgresDBs(t)
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Backend {
			return dbs.open(t, dbs.pool.Take(t))
		},
		Reopen: func(t *testing.T, b store.Backend) store.Backend {
			dsn, err := dbs.dsn(b)
			if err != nil {
				t.Fatal(err)
			}
			return dbs.open(t, dsn)
		},
		AcquireWriter: func(ctx context.Context, b store.Backend, opt store.LeaseOptions) (storetest.Writer, error) {
			w, err := b.(*store.Store).AcquireWriter(ctx, "", opt)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			return w, nil
		},
	})
}

// postgresDBs makes fresh databases in one cluster and remembers which
// database each open store is on.
type postgresDBs struct {
	// pool hands out empty databases migrated by OpenPostgres.
	pool *pgtest.Databases
	dsns locations
}

func newPostgresDBs(t *testing.T) *postgresDBs {
	t.Helper()
	pg := pgtest.Start(t, pgtest.Options{})
	tmpl := pg.CreateDB(t, "")
	s, err := store.OpenPostgres(t.Context(), pg.DSN(tmpl), store.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return &postgresDBs{pool: pg.Databases(tmpl)}
}

func (d *postgresDBs) open(t *testing.T, dsn string) store.Backend {
	t.Helper()
	s, err := store.OpenPostgres(t.Context(), dsn, store.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	d.dsns.remember(s, dsn)
	return s
}

func (d *postgresDBs) dsn(b store.Backend) (string, error) { return d.dsns.of(b) }
