package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/report"
	"github.com/warden-ir/warden/store"
)

// forensics is what the offline commands read: the store and the evidence
// ledger, and the inventory when a configuration file names one.
type forensics struct {
	cfg config.Config
	// inv is nil when the inventory is not known (no -c, or a config
	// without gateways): the report then says so rather than guess.
	inv    *inventory.Inventory
	st     *store.Store
	ledger *evidence.Ledger
}

// openForensics opens the store named by --db, else by the config's
// store.path, and the evidence ledger named by --evidence-dir, else by
// evidence.dir, else evidence/ beside the store. A configuration that
// fails to load is an error even with --db: falling back to an empty
// inventory would write a wrong report.
func (g *globals) openForensics(cmd *cobra.Command, db, evDir string) (*forensics, error) {
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	if db == "" {
		db = cfg.Store.Path
	}
	if evDir == "" {
		evDir = cfg.Evidence.Dir
	}
	if evDir == "" {
		evDir = filepath.Join(filepath.Dir(db), "evidence")
	}
	f := &forensics{cfg: cfg}
	if g.configPath != "" && len(cfg.Inventory.Gateways) > 0 {
		f.inv = &f.cfg.Inventory
	}
	if f.st, err = openExisting(cmd, db); err != nil {
		return nil, err
	}
	if f.ledger, err = evidence.Open(cmd.Context(), f.st.DB(), evDir, evidence.WithIncidents(storeIncidents{f.st})); err != nil {
		f.st.Close()
		return nil, err
	}
	return f, nil
}

// storeIncidents tells the ledger which incidents the store holds, so that
// an id nobody knows is an error rather than an incident without evidence.
type storeIncidents struct{ st *store.Store }

func (s storeIncidents) IncidentExists(ctx context.Context, id string) (bool, error) {
	_, err := s.st.Incident(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// idArg refuses a blank id: the ledger reads an empty incident as "every
// incident", which a command naming one must never do.
func idArg(what, id string) (string, error) {
	if strings.TrimSpace(id) == "" {
		return "", fmt.Errorf("%s id is empty", what)
	}
	return id, nil
}

const evidenceHelp = `Evidence is read from the store and the evidence directory on this host,
never over the API (the controller serves no evidence routes): run it where
the store is. The store is --db FILE, else store.path of the config (-c or
WARDEN_CONFIG); the directory is --evidence-dir, else evidence.dir, else
evidence/ beside the store. Every access is recorded in the chain of custody.`

// errEvidenceOverAPI is the answer when only a server was given.
var errEvidenceOverAPI = errors.New("evidence is read from the store on the controller's host, not over the API: pass --db FILE or -c warden.yaml")

func newEvidenceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "evidence", Short: "List, show, export and verify evidence (chain of custody recorded)", Long: evidenceHelp}
	var db, evDir, out, by string
	open := func(cmd *cobra.Command) (*forensics, error) {
		if db == "" && g.configPath == "" && g.server != "" {
			return nil, errEvidenceOverAPI
		}
		return g.openForensics(cmd, db, evDir)
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&db, "db", "", "store file (default: store.path from the config)")
	pf.StringVar(&evDir, "evidence-dir", "", "evidence directory (default: evidence.dir, or evidence/ beside the store)")
	pf.StringVar(&by, "by", "", "who is handling the evidence (default: $USER); recorded in the chain of custody")
	// onID is the RunE of a subcommand naming one incident or artefact: it
	// refuses a blank id, then opens the store and the ledger for run.
	onID := func(what string, run func(cmd *cobra.Command, f *forensics, id string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			id, err := idArg(what, args[0])
			if err != nil {
				return err
			}
			f, err := open(cmd)
			if err != nil {
				return err
			}
			defer f.st.Close()
			return run(cmd, f, id)
		}
	}
	list := &cobra.Command{
		Use: "list INCIDENT", Short: "List an incident's evidence with hashes", Args: cobra.ExactArgs(1),
		RunE: onID("incident", func(cmd *cobra.Command, f *forensics, incident string) error {
			recs, err := f.ledger.List(cmd.Context(), incident)
			if err != nil {
				return fmt.Errorf("listing evidence: %w", err)
			}
			t := newTable(g.out, "ID", "NAME", "KIND", "SIZE", "SHA256", "COLLECTED BY", "COLLECTED AT")
			for _, r := range recs {
				t.row(r.ID, r.Name, r.Kind, strconv.FormatInt(r.Size, 10), r.SHA256, r.CollectedBy, r.CollectedAt.Format("2006-01-02T15:04:05Z07:00"))
			}
			return t.flush()
		}),
	}
	show := &cobra.Command{
		Use: "show ID", Short: "Show one artefact's record and chain of custody (records an access)", Args: cobra.ExactArgs(1),
		RunE: onID("evidence", func(cmd *cobra.Command, f *forensics, id string) error {
			rec, cust, err := f.ledger.Show(cmd.Context(), id, "cli:"+whoami(by))
			if err != nil {
				return fmt.Errorf("showing evidence: %w", err)
			}
			return printJSON(g.out, map[string]any{"record": rec, "custody": cust})
		}),
	}
	cat := &cobra.Command{
		Use: "cat ID", Short: "Write an artefact's bytes to standard output (records an access; fails if they no longer match the hash)", Args: cobra.ExactArgs(1),
		RunE: onID("evidence", func(cmd *cobra.Command, f *forensics, id string) error {
			rc, err := f.ledger.Open(cmd.Context(), id, "cli:"+whoami(by))
			if err != nil {
				return fmt.Errorf("opening evidence: %w", err)
			}
			defer rc.Close()
			if _, err := io.Copy(g.out, rc); err != nil {
				return fmt.Errorf("copying evidence %s: %w", id, err)
			}
			return nil
		}),
	}
	export := &cobra.Command{
		Use: "export INCIDENT -o FILE.tar.gz", Short: "Write the incident's evidence, manifest, SHA256SUMS and audit chain to an archive", Args: cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error {
			if out == "" {
				return errors.New("-o FILE is required")
			}
			return nil
		},
		RunE: onID("incident", func(cmd *cobra.Command, f *forensics, incident string) error {
			// Refuse an unknown incident before any file exists (Export
			// checks again, and the partial file is removed on any error).
			if err := f.ledger.KnownIncident(cmd.Context(), incident); err != nil {
				return fmt.Errorf("exporting evidence: %w", err)
			}
			tmp := out + ".partial"
			w, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("creating %s: %w", tmp, err)
			}
			m, err := f.ledger.Export(cmd.Context(), incident, w, "cli:"+whoami(by))
			if cerr := w.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("closing %s: %w", tmp, cerr)
			}
			if err != nil {
				os.Remove(tmp)
				return err
			}
			if err := os.Rename(tmp, out); err != nil {
				os.Remove(tmp)
				return fmt.Errorf("moving the archive into place: %w", err)
			}
			fmt.Fprintf(g.out, "wrote %s: %d artefacts; check with: tar xzf %s && sha256sum -c SHA256SUMS\n", out, len(m.Records), filepath.Base(out))
			return nil
		}),
	}
	export.Flags().StringVarP(&out, "output", "o", "", "archive to write (.tar.gz)")
	verify := &cobra.Command{
		Use: "verify", Short: "Re-hash every artefact (exit 2 naming each mismatch)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := open(cmd)
			if err != nil {
				return err
			}
			defer f.st.Close()
			ms, err := f.ledger.VerifyAs(cmd.Context(), "cli:"+whoami(by))
			if err != nil && len(ms) == 0 {
				return fmt.Errorf("verifying evidence: %w", err)
			}
			for _, m := range ms {
				fmt.Fprintln(g.errw, "mismatch:", m.String())
			}
			if len(ms) > 0 {
				return &exitError{code: 2, err: fmt.Errorf("%d artefact(s) do not match their recorded SHA-256", len(ms))}
			}
			fmt.Fprintln(g.out, "every artefact matches its recorded SHA-256")
			return nil
		},
	}
	cmd.AddCommand(list, show, cat, export, verify)
	return cmd
}

func newReportCmd(g *globals) *cobra.Command {
	var db, evDir, lang, format, out string
	cmd := &cobra.Command{
		Use:   "report INCIDENT",
		Short: "Write the incident report for management and engineers (--lang ja|en, --format md|html)",
		Long: "Write the incident report for management and engineers (--lang ja|en, --format md|html).\n\n" + storeReadersHelp +
			"\n\nOver the API the report is GET /v1/incidents/{id}/report; read here with -c\nit is the same report.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var b []byte
			var err error
			if g.readsOverAPI(cmd, db) {
				if evDir != "" {
					return errors.New("--evidence-dir names a local ledger; it does not go with --server (the controller uses its own)")
				}
				b, err = g.reportOverAPI(cmd.Context(), args[0], lang, format)
			} else {
				b, err = g.reportFromStore(cmd, db, evDir, args[0], lang, format)
			}
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = g.out.Write(b)
				return err
			}
			return os.WriteFile(out, b, 0o600)
		},
	}
	cmd.Flags().StringVar(&db, "db", "", "store file to read directly (default: store.path from the config)")
	cmd.Flags().StringVar(&evDir, "evidence-dir", "", "evidence directory (default: evidence.dir, or evidence/ beside the store)")
	cmd.Flags().StringVar(&lang, "lang", "ja", "ja or en")
	cmd.Flags().StringVar(&format, "format", "md", "md or html")
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write (default: standard output)")
	return cmd
}

func (g *globals) reportFromStore(cmd *cobra.Command, db, evDir, incident, lang, format string) ([]byte, error) {
	f, err := g.openForensics(cmd, db, evDir)
	if err != nil {
		return nil, err
	}
	defer f.st.Close()
	m, err := report.Load(cmd.Context(), f.st, f.inv, f.ledger, incident)
	if err != nil {
		return nil, err
	}
	return report.Render(m, lang, format)
}

func (g *globals) reportOverAPI(ctx context.Context, incident, lang, format string) ([]byte, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	b, err := c.Report(ctx, incident, lang, format)
	if err != nil {
		return nil, fmt.Errorf("fetching the report of %s: %w", incident, err)
	}
	return b, nil
}
