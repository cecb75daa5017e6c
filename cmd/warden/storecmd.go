package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/rotation"
	"github.com/warden-ir/warden/store"
)

const storeLocationHelp = `A store is a SQLite file (PATH or sqlite:PATH) or a PostgreSQL database
(postgres://USER@HOST:PORT/DB?sslmode=...). A PostgreSQL password comes from
--password-file, PGPASSWORD or ~/.pgpass: never put it on the command line.`

func newStoreCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "store", Short: "Migrate the store's schema, or copy a store to another backend"}
	var db, passwordFile string
	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "Bring the store's schema up to this warden's version (serve refuses a newer one)",
		Long: "Bring the store's schema up to this warden's version, one versioned migration at a time,\n" +
			"each in a transaction (replicas starting at once migrate once). `warden serve` does the same\n" +
			"when it starts; run this first when the role serve connects as may not change the schema.\n" +
			"A store on a newer schema than this warden knows is refused: exit 1.\n\n" + storeLocationHelp +
			"\n\nWithout --db: the configured store (store.driver, store.path or store.dsn).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st *store.Store
			var err error
			if db != "" {
				st, err = openLocation(cmd, db, passwordFile, false)
			} else {
				var cfg config.Config
				if cfg, err = g.config(); err != nil {
					return fmt.Errorf("finding the store (pass --db): %w", err)
				}
				if passwordFile != "" {
					cfg.Store.PasswordFile = passwordFile
				}
				st, err = openConfigured(cmd, cfg.Store)
			}
			if err != nil {
				return err
			}
			defer st.Close()
			found, now, err := st.SchemaVersions(cmd.Context())
			if err != nil {
				return err
			}
			if found == now {
				fmt.Fprintf(g.out, "%s store: schema version %d, up to date\n", st.Driver(), now)
				return nil
			}
			fmt.Fprintf(g.out, "%s store: schema version %d, migrated from %d\n", st.Driver(), now, found)
			return nil
		},
	}
	migrate.Flags().StringVar(&db, "db", "", "the store (default: the configured one)")
	migrate.Flags().StringVar(&passwordFile, "password-file", "", "file holding the PostgreSQL password")

	var from, to, copyPassword string
	cp := &cobra.Command{
		Use:   "copy --from sqlite:PATH --to postgres://...",
		Short: "Copy everything in a store into a new, empty one (SQLite to PostgreSQL, or back)",
		Long: "Copy everything in a store into a new, empty one, in one transaction of the target:\n" +
			"incidents, indicators, runs and steps, postures, users and token hashes, blocks, the\n" +
			"evidence index and its chain of custody, the credential vault (sealed), and the audit\n" +
			"chain, which must verify on the copy as on the source. Every table of the source must\n" +
			"exist in the target; the target is migrated first. The evidence blobs are files: move\n" +
			"evidence.dir yourself (to storage every replica shares). Stop every warden serve on the\n" +
			"source first: a source whose writer lease is held is refused. The lease's epoch is\n" +
			"carried over, so agents accept the target's first leader.\n\n" + storeLocationHelp +
			"\n--password-file is for whichever side is PostgreSQL.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return fmt.Errorf("--from and --to are required")
			}
			src, err := openLocation(cmd, from, copyPassword, true)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			defer src.Close()
			dst, err := openLocation(cmd, to, copyPassword, false)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			defer dst.Close()
			// The ledger and the vault make their tables when first opened;
			// the copy needs them in the target now.
			if _, err := dst.DB().ExecContext(cmd.Context(), evidence.Schema+rotation.Schema); err != nil {
				return fmt.Errorf("--to: creating the evidence and vault tables: %w", err)
			}
			rep, err := store.Copy(cmd.Context(), src, dst)
			if err != nil {
				return err
			}
			t := newTable(g.out, "TABLE", "ROWS")
			for _, tb := range rep.Tables {
				t.row(tb.Name, fmt.Sprint(tb.Rows))
			}
			if err := t.flush(); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "copied %s to %s; audit chain intact on the copy: %d entries, head %s\n",
				storeName(from), storeName(to), rep.Audit.Entries, rep.Audit.Head)
			return nil
		},
	}
	cp.Flags().StringVar(&from, "from", "", "the store to copy (sqlite:PATH or postgres://...)")
	cp.Flags().StringVar(&to, "to", "", "the new, empty store (postgres://... or sqlite:PATH)")
	cp.Flags().StringVar(&copyPassword, "password-file", "", "file holding the PostgreSQL password")
	cmd.AddCommand(migrate, cp)
	return cmd
}

// openLocation opens a store named on the command line; a SQLite file
// must exist when mustExist.
func openLocation(cmd *cobra.Command, loc, passwordFile string, mustExist bool) (*store.Store, error) {
	pw, err := config.Store{PasswordFile: passwordFile}.Password()
	if err != nil {
		return nil, err
	}
	return store.OpenAt(cmd.Context(), loc, store.PostgresOptions{Password: pw}, mustExist)
}

// storeName names a location for people, without a password.
func storeName(loc string) string {
	if store.IsPostgresDSN(loc) {
		return store.RedactDSN(loc)
	}
	return loc
}
