package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/api"
	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/internal/textsafe"
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
	if evDir == "" {
		evDir = cfg.Evidence.Dir
	}
	if evDir == "" {
		path := db
		if path == "" {
			path = cfg.Store.Path
		}
		if store.IsPostgresDSN(path) || db == "" && cfg.Store.Postgres() {
			return nil, errors.New("the evidence of a PostgreSQL store is in evidence.dir: pass --evidence-dir or -c")
		}
		evDir = filepath.Join(filepath.Dir(strings.TrimPrefix(path, "sqlite:")), "evidence")
	}
	f := &forensics{cfg: cfg}
	if g.configPath != "" && len(cfg.Inventory.Gateways) > 0 {
		f.inv = &f.cfg.Inventory
	}
	if f.st, err = g.openStore(cmd, db); err != nil {
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

const evidenceHelp = `Evidence with its SHA-256 and chain of custody, asked of the controller or read
from the store on this host, by the rule report and audit verify follow (the first
that applies):
  --db FILE        that store, read directly on this host
  --server URL     the controller's API (--token, WARDEN_API_TOKEN or server.api_token)
  -c FILE          the store at the config's store.path, on this host
  WARDEN_SERVER    as --server
  WARDEN_CONFIG    as -c
  none of these    store.path from the defaults and WARDEN_* variables (warden.db)
A flag beats an environment variable; between two of a kind the server wins.

Over the API (list, show, export) you act as the user of your API token: show and
export need the responder role or higher, and the chain of custody records each as
"user:NAME".

On this host (the controller's, where the store is; also when the API is down) the
store is --db FILE, else store.path of the config; the evidence directory is
--evidence-dir, else evidence.dir, else evidence/ beside the store. Who is logged in
here is who acts: the chain of custody records "local:USER", and "local:USER (sudo
from NAME)" under sudo. cat and verify always read here: the API serves no
artefact's bytes and re-hashes nothing on request.`

// errEvidenceOverAPI is the answer of cat and verify when only a server
// was given.
var errEvidenceOverAPI = errors.New("evidence cat and verify read the store on the controller's host, not over the API: pass --db FILE or -c warden.yaml there")

// localActor is who handles evidence read on this host, where no token
// says who acts: the person logged in here, looked up by the process's
// user id rather than taken from $USER, and under sudo who ran it.
func localActor() string {
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if name == "" {
		name = "uid " + strconv.Itoa(os.Getuid())
	}
	actor := "local:" + name
	if from := os.Getenv("SUDO_USER"); from != "" {
		actor += " (sudo from " + textsafe.Line(from) + ")"
	}
	return actor
}

func newEvidenceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "evidence", Short: "List, show, export and verify evidence (chain of custody recorded)", Long: evidenceHelp}
	var db, evDir, out string
	pf := cmd.PersistentFlags()
	pf.StringVar(&db, "db", "", "store file to read on this host (default: store.path from the config)")
	pf.StringVar(&evDir, "evidence-dir", "", "evidence directory on this host (default: evidence.dir, or evidence/ beside the store)")
	// here opens the store and the ledger on this host for cat and verify,
	// which have no API to ask.
	here := func(cmd *cobra.Command) (*forensics, error) {
		if db == "" && g.configPath == "" && g.server != "" {
			return nil, errEvidenceOverAPI
		}
		return g.openForensics(cmd, db, evDir)
	}
	// eitherWay is the RunE of list, show and export, which name one
	// incident or artefact: it refuses a blank id, then asks the controller
	// (remote) or reads the store here (local), by the rule of evidenceHelp.
	eitherWay := func(what string, remote func(ctx context.Context, c *client.Client, id string) error, local func(cmd *cobra.Command, f *forensics, id string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			id, err := idArg(what, args[0])
			if err != nil {
				return err
			}
			if g.readsOverAPI(cmd, db) {
				if evDir != "" {
					return errors.New("--evidence-dir names a ledger on this host; it does not go with a server (the controller uses its own): pass --db or -c to read here")
				}
				c, err := g.client()
				if err != nil {
					return err
				}
				return remote(cmd.Context(), c, id)
			}
			f, err := g.openForensics(cmd, db, evDir)
			if err != nil {
				return err
			}
			defer f.st.Close()
			return local(cmd, f, id)
		}
	}
	// onID is the RunE of cat, which reads here only.
	onID := func(what string, run func(cmd *cobra.Command, f *forensics, id string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			id, err := idArg(what, args[0])
			if err != nil {
				return err
			}
			f, err := here(cmd)
			if err != nil {
				return err
			}
			defer f.st.Close()
			return run(cmd, f, id)
		}
	}
	printList := func(recs []v1.Evidence) error {
		t := newTable(g.out, "ID", "NAME", "KIND", "SIZE", "SHA256", "COLLECTED BY", "COLLECTED AT")
		for _, r := range recs {
			t.row(r.ID, r.Name, r.Kind, strconv.FormatInt(r.Size, 10), r.SHA256, r.CollectedBy, r.CollectedAt.Format("2006-01-02T15:04:05Z07:00"))
		}
		return t.flush()
	}
	list := &cobra.Command{
		Use: "list INCIDENT", Short: "List an incident's evidence with hashes", Args: cobra.ExactArgs(1),
		RunE: eitherWay("incident", func(ctx context.Context, c *client.Client, incident string) error {
			recs, err := c.Evidence(ctx, incident)
			if err != nil {
				return fmt.Errorf("listing the evidence of %s: %w", incident, err)
			}
			return printList(recs)
		}, func(cmd *cobra.Command, f *forensics, incident string) error {
			recs, err := f.ledger.List(cmd.Context(), incident)
			if err != nil {
				return fmt.Errorf("listing evidence: %w", err)
			}
			out := make([]v1.Evidence, 0, len(recs))
			for _, r := range recs {
				out = append(out, api.EvidenceV1(r))
			}
			return printList(out)
		}),
	}
	show := &cobra.Command{
		Use: "show ID", Short: "Show one artefact's record and chain of custody (records an access by you)", Args: cobra.ExactArgs(1),
		RunE: eitherWay("evidence", func(ctx context.Context, c *client.Client, id string) error {
			detail, err := c.ShowEvidence(ctx, id)
			if err != nil {
				return fmt.Errorf("showing evidence %s: %w", id, err)
			}
			return printJSON(g.out, detail)
		}, func(cmd *cobra.Command, f *forensics, id string) error {
			rec, cust, err := f.ledger.Show(cmd.Context(), id, localActor())
			if err != nil {
				return fmt.Errorf("showing evidence: %w", err)
			}
			return printJSON(g.out, api.EvidenceDetailV1(rec, cust))
		}),
	}
	cat := &cobra.Command{
		Use: "cat ID", Short: "Write an artefact's bytes to standard output (on this host; records an access; fails if they no longer match the hash)", Args: cobra.ExactArgs(1),
		RunE: onID("evidence", func(cmd *cobra.Command, f *forensics, id string) error {
			rc, err := f.ledger.Open(cmd.Context(), id, localActor())
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
		Use: "export INCIDENT -o FILE.tar.gz", Short: "Write the incident's evidence, manifest, SHA256SUMS and audit chain to an archive (records an export by you)", Args: cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error {
			if out == "" {
				return errors.New("-o FILE is required")
			}
			return nil
		},
		RunE: eitherWay("incident", func(ctx context.Context, c *client.Client, incident string) error {
			// Streamed to the partial file and checked as it arrives; only
			// an archive that checks is moved into place: a truncated or
			// altered answer must not pass for an export.
			var m evidence.Manifest
			if err := writeArchive(out, func(w io.Writer) error {
				pr, pw := io.Pipe()
				checked := make(chan error, 1)
				go func() {
					var err error
					m, err = checkArchive(pr)
					_, _ = io.Copy(io.Discard, pr) // let the download end whatever the check found
					checked <- err
				}()
				err := c.ExportEvidence(ctx, incident, io.MultiWriter(w, pw))
				pw.CloseWithError(err)
				cerr := <-checked
				switch {
				case err != nil:
					return fmt.Errorf("exporting the evidence of %s: %w", incident, err)
				case cerr != nil:
					return fmt.Errorf("checking the archive the controller sent for %s: %w", incident, cerr)
				}
				return nil
			}); err != nil {
				return err
			}
			return g.exported(out, m)
		}, func(cmd *cobra.Command, f *forensics, incident string) error {
			// Refuse an unknown incident before any file exists (Export
			// checks again, and the partial file is removed on any error).
			if err := f.ledger.KnownIncident(cmd.Context(), incident); err != nil {
				return fmt.Errorf("exporting evidence: %w", err)
			}
			var m evidence.Manifest
			if err := writeArchive(out, func(w io.Writer) error {
				var err error
				m, err = f.ledger.Export(cmd.Context(), incident, w, localActor())
				return err
			}); err != nil {
				return err
			}
			return g.exported(out, m)
		}),
	}
	export.Flags().StringVarP(&out, "output", "o", "", "archive to write (.tar.gz)")
	verify := &cobra.Command{
		Use: "verify", Short: "Re-hash every artefact on this host (exit 2 naming each mismatch)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := here(cmd)
			if err != nil {
				return err
			}
			defer f.st.Close()
			ms, err := f.ledger.VerifyAs(cmd.Context(), localActor())
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

// exported tells the person what export wrote and how to check it.
func (g *globals) exported(out string, m evidence.Manifest) error {
	_, err := fmt.Fprintf(g.out, "wrote %s: %d artefacts, exported by %s; check with: tar xzf %s && sha256sum -c SHA256SUMS\n",
		out, len(m.Records), textsafe.Line(m.ExportedBy), filepath.Base(out))
	return err
}

// writeArchive writes an archive to out through a new file beside it,
// moved into place only when write succeeded: a failed export leaves no
// file that could pass for one.
func writeArchive(out string, write func(io.Writer) error) error {
	tmp := out + ".partial"
	w, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("creating %s: %w", tmp, err)
	}
	err = write(w)
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
	return nil
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
	var opts []report.Option
	if g.configPath != "" {
		// The configuration says whether four eyes held; without it the
		// report does not guess.
		opts = append(opts, report.FourEyes(f.cfg.Guards.FourEyes()))
	}
	m, err := report.Load(cmd.Context(), f.st, f.inv, f.ledger, incident, opts...)
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
