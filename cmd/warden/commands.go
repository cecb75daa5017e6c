package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/api"
	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/internal/textsafe"
	"github.com/warden-ir/warden/policies"
	"github.com/warden-ir/warden/store"
)

func newServeCmd(g *globals) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the controller, its HTTP API and the reconcile loop",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.config()
			if err != nil {
				return err
			}
			if listen != "" {
				cfg.Server.Listen = listen
			}
			ctx := cmd.Context()
			setServeProcs(g.logger())
			if path := os.Getenv("WARDEN_CPUPROFILE"); path != "" {
				stop, err := cpuProfile(path)
				if err != nil {
					return err
				}
				defer stop()
			}
			d, err := daemon.Build(ctx, cfg, daemon.Options{Log: g.logger()})
			if err != nil {
				return err
			}
			defer d.Close(ctx)
			// One controller per store: refuse before serving anything.
			if err := d.AcquireWriter(ctx); err != nil {
				return err
			}
			addr, err := d.Listen(cfg.Server.Listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.errw, "warden: serving on %s (store %s)\n", addr, daemon.StoreName(cfg.Store))
			return d.Serve(ctx)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "override server.listen")
	return cmd
}

// cpuProfile writes a Go CPU profile to path until stop is called: set
// WARDEN_CPUPROFILE to profile a running serve (benchmarks do; go tool
// pprof reads the file once serve has stopped).
func cpuProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("WARDEN_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("WARDEN_CPUPROFILE: %w", err)
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

func newIndicatorCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "indicator", Short: "Submit indicators to a running controller"}
	var file, format, secretFile string
	submit := &cobra.Command{
		Use:   "submit -f FILE",
		Short: "Submit an indicator (Warden JSON), an Alertmanager webhook body, a detector's events (Suricata EVE, Zeek notice.log, Wazuh, Falco) or threat intelligence (STIX 2.1, MISP)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			names := append(append([]string{"warden", "alertmanager"}, api.FormatNames()...), api.ThreatFormatNames()...)
			var submit func(c *client.Client, ctx context.Context, body []byte) (any, error)
			oneJSON := true // a detector's stream is checked by the controller
			switch {
			case format == "warden":
				submit = func(c *client.Client, ctx context.Context, body []byte) (any, error) {
					return c.SubmitIndicatorsJSON(ctx, body)
				}
			case format == "alertmanager":
				submit = func(c *client.Client, ctx context.Context, body []byte) (any, error) {
					return c.SubmitAlertmanager(ctx, body)
				}
			case slices.Contains(api.FormatNames(), format):
				submit = func(c *client.Client, ctx context.Context, body []byte) (any, error) {
					return c.SubmitFormat(ctx, format, body)
				}
				oneJSON = false
			case slices.Contains(api.ThreatFormatNames(), format):
				submit = func(c *client.Client, ctx context.Context, body []byte) (any, error) {
					return c.SubmitThreatIntel(ctx, format, body)
				}
			default:
				return fmt.Errorf("--format must be one of %s, got %q", strings.Join(names, ", "), format)
			}
			body, err := readInput(file)
			if err != nil {
				return err
			}
			if oneJSON && !json.Valid(body) {
				return fmt.Errorf("%s is not valid JSON", file)
			}
			var opts []client.Option
			if secretFile != "" {
				secret, err := readSecretFile(secretFile)
				if err != nil {
					return err
				}
				opts = append(opts, client.WithSigningSecret(secret))
			}
			c, err := g.client(opts...)
			if err != nil {
				return err
			}
			out, err := submit(c, cmd.Context(), body)
			if err != nil {
				return err
			}
			return printJSON(g.out, out)
		},
	}
	submit.Flags().StringVarP(&file, "file", "f", "", "file to submit (- for standard input)")
	submit.Flags().StringVar(&format, "format", "warden", "warden, alertmanager, "+strings.Join(append(api.FormatNames(), api.ThreatFormatNames()...), ", ")+
		" (stix and misp: threat intelligence, each indicator a block at every gateway)")
	submit.Flags().StringVar(&secretFile, "secret-file", "", "file holding intake.webhook_secret: sign the body (X-Warden-Signature), each attempt anew; the secret is never printed")
	cmd.AddCommand(submit, newIndicatorResolveCmd(g))
	return cmd
}

func newPlanCmd(g *globals) *cobra.Command {
	var file string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plan -f indicator.json",
		Short: "Show which policy matches an indicator, why the others do not, and the plan — applying nothing",
		Long: "Show which policy matches an indicator, why the others do not, and the plan — applying nothing.\n\n" +
			"It asks the controller (POST /v1/plan) or builds one here from the configuration, by the rule the\n" +
			"commands that read the store follow: --server before -c, -c before WARDEN_SERVER, WARDEN_SERVER\n" +
			"before WARDEN_CONFIG.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := readInput(file)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var resp v1.PlanResponse
			if g.readsOverAPI(cmd, "") {
				c, err := g.client()
				if err != nil {
					return err
				}
				if resp, err = c.PlanJSON(ctx, body); err != nil {
					return err
				}
			} else {
				cfg, err := g.config()
				if err != nil {
					return err
				}
				// No API is served here, so nobody authenticates: the
				// deprecated shared token would only bring its warning.
				cfg.Server.APIToken = ""
				d, err := daemon.Build(ctx, cfg, daemon.Options{Log: g.logger()})
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				inds, err := intake.DecodeNative(body, d.Controller.Inventory(), time.Now())
				if err != nil {
					return err
				}
				if len(inds) != 1 {
					return fmt.Errorf("plan takes exactly one indicator, got %d", len(inds))
				}
				resp, err = api.Explain(ctx, d.Controller, d.Policies, inds[0])
				if err != nil {
					return err
				}
			}
			if asJSON {
				return printJSON(g.out, resp)
			}
			_, err = fmt.Fprint(g.out, resp.Text)
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "indicator JSON (- for standard input)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newRunbookCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "runbook", Short: "Run runbooks by hand"}
	var gateway, incident, override string
	var dry bool
	run := &cobra.Command{
		Use:   "run NAME --gateway G",
		Short: "Start a runbook against exactly one gateway (--dry-run prints the plan)",
		Long: "Start a runbook against exactly one gateway (--dry-run prints the plan).\n\n" +
			"You start it as the user of your API token, and the run names you as its requester. A run\n" +
			"started with --override-reason waits for a second person (an approver) to approve it:\n" +
			"neither its requester nor who overrode may approve it (four eyes, guards.two_person).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(gateway) == "" {
				return errors.New("--gateway is required: name exactly one gateway (an empty target never means all)")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			req := v1.StartRunbookRequest{Gateway: gateway, Incident: incident, OverrideReason: override}
			if dry {
				p, err := c.PlanRunbook(cmd.Context(), args[0], req)
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(g.out, p.Text)
				return err
			}
			run, err := c.StartRunbook(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return printJSON(g.out, run)
		},
	}
	run.Flags().StringVar(&gateway, "gateway", "", "gateway id (exactly one)")
	run.Flags().StringVar(&incident, "incident", "", "attach the run to an incident")
	run.Flags().BoolVar(&dry, "dry-run", false, "print the plan, change nothing")
	run.Flags().StringVar(&override, "override-reason", "", "recorded reason to run destructive steps without evidence first (another person must then approve the run)")
	cmd.AddCommand(run, newRunbookExportCmd(g), newRunbookImportCmd(g))
	return cmd
}

func newReleaseCmd(g *globals) *cobra.Command {
	var incident, override string
	cmd := &cobra.Command{
		Use:   "release GATEWAY",
		Short: "Ask to release a quarantined gateway: refused unless its baseline passes and its credentials were rotated; always needs another person's approval",
		Long: "Ask to release a quarantined gateway: refused unless its baseline passes and its credentials\n" +
			"were rotated since the quarantine (--override-reason records a break-glass reason for those two).\n\n" +
			"You ask as the user of your API token. The release then waits for an approval, which must come\n" +
			"from another person with the approver (or admin) role: neither who asked for it nor who\n" +
			"overrode a gate on it may approve it (four eyes, guards.two_person; the server refuses with 403).",
		Args: cobra.ExactArgs(1),
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.Run, error) {
			return c.Release(ctx, v1.StartRunbookRequest{Gateway: args[0], Incident: incident, OverrideReason: override})
		}, func(w io.Writer, out v1.Run) error {
			fmt.Fprintf(w, "release run %s is %s: %s\n", out.ID, out.State, textsafe.Line(out.ApprovalReason))
			if out.RequestedBy != "" {
				fmt.Fprintf(w, "requested by %s\n", out.RequestedBy)
			}
			fmt.Fprintf(w, "another person (an approver, not %s) approves with: warden runs approve %s\n", notApprovers(out.RequestedBy, out.OverriddenBy), out.ID)
			return nil
		}),
	}
	cmd.Flags().StringVar(&override, "override-reason", "", "recorded reason to release although the baseline or rotation gate is unmet (the approval is still needed)")
	cmd.Flags().StringVar(&incident, "incident", "", "incident the release belongs to")
	return cmd
}

// notApprovers names who may not approve a run: its requester and who
// overrode a gate on it.
func notApprovers(requester, overrider string) string {
	switch {
	case requester == "" && overrider == "":
		return "its requester"
	case overrider == "" || overrider == requester:
		return requester
	case requester == "":
		return overrider
	}
	return requester + " nor " + overrider
}

func newRunsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "runs", Short: "List, show, approve or cancel runs"}
	var state, incident string
	list := &cobra.Command{
		Use: "list", Short: "List runs", Args: cobra.NoArgs,
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, _ []string) ([]v1.Run, error) {
			f := client.RunFilter{Incident: incident}
			if state != "" {
				f.States = strings.Split(state, ",")
			}
			return c.Runs(ctx, f)
		}, func(w io.Writer, runs []v1.Run) error {
			t := newTable(w, "RUN", "GATEWAY", "RUNBOOK", "STATE", "CREATED", "WAITING FOR")
			for _, r := range runs {
				t.row(r.ID, r.Gateway, r.Runbook, r.State, r.CreatedAt.Format(time.RFC3339), waitingFor(r))
			}
			return t.flush()
		}),
	}
	list.Flags().StringVar(&state, "state", "", "comma-separated states")
	list.Flags().StringVar(&incident, "incident", "", "only runs of this incident")
	show := &cobra.Command{
		Use: "show ID", Short: "Show a run with its steps", Args: cobra.ExactArgs(1),
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.Run, error) {
			return c.Run(ctx, args[0])
		}, printJSON),
	}
	var comment string
	approve := &cobra.Command{
		Use:   "approve ID",
		Short: "Approve a run that waits for a person (four eyes: not one you requested or overrode)",
		Long: "Approve a run that waits for a person.\n\n" +
			"You approve as the user of your API token, who needs the approver or admin role. With\n" +
			"guards.two_person (the default) the approval must come from another person than the\n" +
			"run's requester and whoever overrode a gate on it (four eyes): the controller refuses\n" +
			"your own with 403. warden runs show ID names both (requested_by, overridden_by).",
		Args: cobra.ExactArgs(1),
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.Run, error) {
			return c.Approve(ctx, args[0], v1.ApproveRequest{Comment: comment})
		}, func(w io.Writer, out v1.Run) error {
			fmt.Fprintf(w, "run %s approved by %s; state %s\n", out.ID, out.ApprovedBy, out.State)
			return nil
		}),
	}
	approve.Flags().StringVar(&comment, "comment", "", "why")
	var reason string
	cancel := &cobra.Command{
		Use: "cancel ID", Short: "Cancel a run that has not finished (as your token's user; needs the approver role)", Args: cobra.ExactArgs(1),
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.Run, error) {
			return c.Cancel(ctx, args[0], v1.CancelRequest{Reason: reason})
		}, func(w io.Writer, out v1.Run) error {
			fmt.Fprintf(w, "run %s cancelled\n", out.ID)
			return nil
		}),
	}
	cancel.Flags().StringVar(&reason, "reason", "", "why")
	cmd.AddCommand(list, show, approve, cancel)
	return cmd
}

// waitingFor is the WAITING FOR column: why a run waits for a person, and
// only while it does. The stored reason stays on the run after approval,
// but a run that is running or finished waits for nothing.
func waitingFor(r v1.Run) string {
	if r.State != v1.RunAwaitingApproval {
		return "-"
	}
	return orDash(r.ApprovalReason)
}

func newGatewaysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "gateways", Short: "Gateways with desired and observed posture"}
	list := &cobra.Command{
		Use: "list", Short: "List gateways", Args: cobra.NoArgs,
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, _ []string) ([]v1.Gateway, error) {
			return c.Gateways(ctx)
		}, func(w io.Writer, gws []v1.Gateway) error {
			t := newTable(w, "GATEWAY", "SITE", "VM", "DESIRED", "OBSERVED", "INCIDENT")
			for _, gw := range gws {
				t.row(gw.ID, gw.Site, gw.VM, gw.Posture.Desired, orDash(gw.Posture.Observed), orDash(gw.Posture.Incident))
			}
			return t.flush()
		}),
	}
	show := &cobra.Command{
		Use: "show ID", Short: "Show one gateway", Args: cobra.ExactArgs(1),
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.Gateway, error) {
			return c.Gateway(ctx, args[0])
		}, printJSON),
	}
	cmd.AddCommand(list, show)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Verify or export the tamper-evident audit log"}
	var db, file string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the hash chain (exit 0 intact; exit 2 naming the first bad entry)",
		Long: "Verify the hash chain (exit 0 intact; exit 2 naming the first bad entry).\n\n" +
			"--file checks an exported JSON-lines chain and reads nothing else. Otherwise:\n" + storeReadersHelp +
			"\n\nOver the API the controller verifies its own store (GET /v1/audit/verify).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var rep audit.Report
			var err error
			journaled := 0 // indicators checked against their batches' Merkle roots
			switch {
			case file != "":
				f, ferr := os.Open(file)
				if ferr != nil {
					return fmt.Errorf("opening export: %w", ferr)
				}
				defer f.Close()
				rep, err = audit.VerifyJSONLines(f)
			case g.readsOverAPI(cmd, db):
				rep, err = g.verifyAuditOverAPI(cmd.Context())
			default:
				st, oerr := g.openStore(cmd, db)
				if oerr != nil {
					return oerr
				}
				defer st.Close()
				rep, err = audit.Verify(cmd.Context(), st.DB())
				if err == nil {
					// Journaled indicators are kept by their batch's
					// Merkle root: their rows must still make it.
					journaled, err = controller.VerifyIntakeBatches(cmd.Context(), st)
				}
			}
			var be *audit.BrokenError
			if errors.As(err, &be) {
				return &exitError{code: 2, err: err}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "audit chain intact: %d entries, head %s\n", rep.Entries, rep.Head)
			if journaled > 0 {
				fmt.Fprintf(g.out, "journaled indicators intact: %d match their batches' Merkle roots\n", journaled)
			}
			return nil
		},
	}
	prove := &cobra.Command{
		Use:   "prove INDICATOR",
		Short: "Print a journaled indicator's proof of membership in its batch's audit entry (exit 2 when the stored row no longer proves)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.openStore(cmd, db)
			if err != nil {
				return err
			}
			defer st.Close()
			if _, err := audit.Verify(cmd.Context(), st.DB()); err != nil {
				return &exitError{code: 2, err: err}
			}
			p, err := controller.ProveIndicator(cmd.Context(), st, args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(g.out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(p); err != nil {
				return err
			}
			if !p.Valid {
				return &exitError{code: 2, err: fmt.Errorf("indicator %s as stored does not make the Merkle root of audit entry %d: it was changed", p.Indicator, p.AuditSeq)}
			}
			return nil
		},
	}
	prove.Flags().StringVar(&db, "db", "", "store file to read directly (default: store.path from the config)")
	verify.Flags().StringVar(&db, "db", "", "store file to read directly (default: store.path from the config)")
	verify.Flags().StringVar(&file, "file", "", "verify an exported JSON-lines chain instead")
	export := &cobra.Command{
		Use:   "export",
		Short: "Write the whole chain as JSON lines to standard output",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.openStore(cmd, db)
			if err != nil {
				return err
			}
			defer st.Close()
			return audit.Export(cmd.Context(), st.DB(), g.out)
		},
	}
	export.Flags().StringVar(&db, "db", "", "store file (default: store.path from the config)")
	cmd.AddCommand(verify, export, prove)
	return cmd
}

// verifyAuditOverAPI asks the controller to verify its chain; a broken
// chain is an *audit.BrokenError, as when the store is read here.
func (g *globals) verifyAuditOverAPI(ctx context.Context) (audit.Report, error) {
	c, err := g.client()
	if err != nil {
		return audit.Report{}, err
	}
	out, err := c.AuditVerify(ctx)
	if err != nil {
		return audit.Report{}, fmt.Errorf("verifying the audit chain on the controller: %w", err)
	}
	if !out.OK {
		return audit.Report{}, &audit.BrokenError{Seq: out.FirstBadEntry, Reason: out.Reason}
	}
	return audit.Report{Entries: out.Entries, Head: out.Head}, nil
}

// openStore opens the existing store named by --db (a SQLite file, or a
// postgres:// URL whose password comes from PGPASSWORD or ~/.pgpass), else
// the configured one.
func (g *globals) openStore(cmd *cobra.Command, db string) (*store.Store, error) {
	if db != "" {
		return store.OpenAt(cmd.Context(), db, store.PostgresOptions{}, true)
	}
	cfg, err := g.config()
	if err != nil {
		return nil, fmt.Errorf("finding the store (pass --db): %w", err)
	}
	return openConfigured(cmd, cfg.Store)
}

// openConfigured opens the configured store; a SQLite file must exist.
func openConfigured(cmd *cobra.Command, c config.Store) (*store.Store, error) {
	if c.Postgres() {
		return daemon.OpenStore(cmd.Context(), c)
	}
	return store.OpenAt(cmd.Context(), c.Path, store.PostgresOptions{}, true)
}

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Check policies and runbooks"}
	load := func(args []string) (*policies.Set, string, error) {
		if len(args) == 0 {
			s, err := policies.Default()
			return s, "", err
		}
		s, err := policies.LoadDir(args[0])
		return s, args[0], err
	}
	lint := &cobra.Command{
		Use: "lint [DIR]", Short: "Compile and lint policies and runbooks (default: the embedded defaults)", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, err := load(args)
			if err != nil {
				return err
			}
			problems := s.Lint(policies.StandardActions())
			for _, p := range problems {
				fmt.Fprintln(g.errw, "lint:", p)
			}
			if len(problems) > 0 {
				return fmt.Errorf("%d problem(s) found", len(problems))
			}
			fmt.Fprintf(g.out, "%d policies and %d runbooks OK\n", len(s.Policies), len(s.Runbooks))
			return nil
		},
	}
	test := &cobra.Command{
		Use: "test [DIR]", Short: "Run the fixtures in DIR/tests (default: the embedded defaults)", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, dir, err := load(args)
			if err != nil {
				return err
			}
			var res []policies.FixtureResult
			if dir == "" {
				res, err = policies.RunFixturesFS(s, policies.DefaultFS(), ".")
			} else {
				res, err = policies.RunFixtures(s, dir)
			}
			if err != nil {
				return err
			}
			failed := 0
			for _, r := range res {
				mark := "ok  "
				if !r.Passed {
					mark = "FAIL"
					failed++
				}
				fmt.Fprintf(g.out, "%s %s: %s", mark, r.File, r.Name)
				if !r.Passed {
					fmt.Fprintf(g.out, " — %s", r.Message)
				}
				fmt.Fprintln(g.out)
			}
			if len(res) == 0 {
				return errors.New("no fixtures found")
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d fixtures failed", failed, len(res))
			}
			fmt.Fprintf(g.out, "%d fixtures passed\n", len(res))
			return nil
		},
	}
	cmd.AddCommand(lint, test)
	return cmd
}

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Show defaults or check a configuration"}
	defaults := &cobra.Command{
		Use: "defaults", Short: "Print the default configuration", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := config.DefaultsYAML()
			if err != nil {
				return err
			}
			_, err = g.out.Write(b)
			return err
		},
	}
	check := &cobra.Command{
		Use:   "check",
		Short: "Load and validate the configuration, and run every check serve makes short of connecting or opening the store",
		Long: "Load and validate the configuration, then run every check serve makes short of connecting or opening the store:\n" +
			"policies load, compile and name available actions; the store's directory is writable; TLS, agent, vCenter CA\n" +
			"and credential files load; the API token is set. Warnings (printed, exit 0) flag settings that work but are\n" +
			"probably mistakes. Secrets are never printed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.config()
			if err != nil {
				return err
			}
			checked, err := daemon.Check(cfg, daemon.Options{})
			for _, w := range checked.Warnings {
				fmt.Fprintln(g.errw, "warning:", w)
			}
			if err != nil {
				where := g.configPath
				if where == "" {
					where = "defaults and environment"
				}
				return fmt.Errorf("checking config %s: %w", where, err)
			}
			fmt.Fprintf(g.out, "configuration OK: %d sites, %d gateways, %d tunnels\n", len(cfg.Inventory.Sites), len(cfg.Inventory.Gateways), len(cfg.Inventory.Tunnels))
			return nil
		},
	}
	cmd.AddCommand(defaults, check)
	return cmd
}

func newBreakerCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "breaker", Short: "The fleet circuit breaker"}
	var reason string
	reset := &cobra.Command{
		Use: "reset --reason TEXT", Short: "Close the circuit breaker after a person has looked (as your token's user; needs the admin role)", Args: cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if reason == "" {
				return errors.New("--reason is required")
			}
			return nil
		},
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, _ []string) (v1.BreakerReset, error) {
			return c.ResetBreaker(ctx, v1.BreakerResetRequest{Reason: reason})
		}, printJSON),
	}
	reset.Flags().StringVar(&reason, "reason", "", "why it is safe to resume automatic actions")
	cmd.AddCommand(reset)
	return cmd
}

func newDriftCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "drift", Short: "Hardened-baseline drift checks"}
	var gateway string
	check := &cobra.Command{
		Use:   "check [--gateway G]",
		Short: "Check baselines now (default: every gateway); pass-to-fail changes become indicators; exit 3 if any gateway does not pass",
		Args:  cobra.NoArgs,
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, _ []string) ([]v1.DriftResult, error) {
			return c.DriftCheck(ctx, v1.DriftCheckRequest{Gateway: gateway})
		}, func(w io.Writer, results []v1.DriftResult) error {
			t := newTable(w, "GATEWAY", "BASELINE", "NEWLY FAILING", "INDICATORS", "FAILING CHECKS")
			bad := 0
			for _, r := range results {
				verdict := "pass"
				switch {
				case r.Skipped != "":
					verdict = "skipped: " + r.Skipped
				case r.Error != "":
					verdict, bad = "error: "+r.Error, bad+1
				case !r.Passed:
					verdict, bad = "FAIL", bad+1
				}
				t.row(r.Gateway, verdict, strconv.Itoa(len(r.Changes)), strconv.Itoa(len(r.Indicators)), strings.Join(r.Failing, ", "))
			}
			if err := t.flush(); err != nil {
				return err
			}
			if bad > 0 {
				return &exitError{code: 3, err: fmt.Errorf("%d gateway(s) do not pass their baseline", bad)}
			}
			return nil
		}),
	}
	check.Flags().StringVar(&gateway, "gateway", "all", "gateway id, or all")
	cmd.AddCommand(check)
	return cmd
}

func newPatchCmd(g *globals) *cobra.Command {
	var req v1.PatchWaveRequest
	var (
		noWait bool
		poll   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "patch --gateways A,B,C (--packages name=version,... | --security)",
		Short: "Patch gateways in waves: canary first, verify (versions, baseline), stop at the first failure",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(req.Gateways) == 0 {
				return errors.New("--gateways is required: name each gateway (an empty list never means all)")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			wave, err := c.StartPatchWave(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.errw, "patch wave %s accepted\n", wave.ID)
			for !noWait && !wave.Terminal() {
				select {
				case <-cmd.Context().Done():
					return fmt.Errorf("stopped waiting; wave %s goes on in the controller: %w", wave.ID, cmd.Context().Err())
				case <-time.After(poll):
				}
				if wave, err = c.PatchWave(cmd.Context(), wave.ID); err != nil {
					return err
				}
			}
			if err := printJSON(g.out, wave); err != nil {
				return err
			}
			switch wave.State {
			case v1.WaveStopped:
				return &exitError{code: 3, err: fmt.Errorf("the wave stopped: %s", wave.Error)}
			case v1.WaveFailed:
				return fmt.Errorf("the wave failed: %s", wave.Error)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&req.Gateways, "gateways", nil, "gateways to patch, in order (the first are the canaries)")
	f.StringVar(&req.Packages, "packages", "", "name=version,... (version optional: newest)")
	f.BoolVar(&req.Security, "security", false, "install every pending security update")
	f.IntVar(&req.Canary, "canary", 1, "gateways patched and verified alone first")
	f.IntVar(&req.WaveSize, "wave-size", 5, "gateways per wave after the canary")
	f.BoolVar(&noWait, "no-wait", false, "print the accepted wave and return; follow it with GET /v1/patch/waves/{id}")
	f.DurationVar(&poll, "poll", time.Second, "how often to look at the wave while waiting")
	return cmd
}
