// Command warden contains and remediates a compromised VPN gateway VM in a
// multi-site VPN. `warden demo` runs the whole path on an embedded
// simulated vCenter; `warden serve` runs the controller and its API; the
// other commands talk to a running controller or read its store.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs one command line as a shell sees it: what the command prints
// goes to out, an error goes to errw as "warden: …", and the result is
// the exit status (0, an exitError's code, or 1).
func run(ctx context.Context, args []string, out, errw io.Writer) int {
	root := newRoot(out, errw)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(errw, "warden:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// exitError carries a specific exit code (e.g. 2 for a broken audit chain).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

type globals struct {
	configPath string
	server     string
	token      string
	logLevel   string
	out, errw  io.Writer
}

func (g *globals) config() (config.Config, error) {
	return config.Load(g.configPath)
}

func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(g.errw, &slog.HandlerOptions{Level: lvl}))
}

func newRoot(out, errw io.Writer) *cobra.Command {
	g := &globals{out: out, errw: errw}
	root := &cobra.Command{
		Use:           "warden",
		Short:         "Contain and remediate a compromised VPN gateway",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetErr(errw)
	root.SetFlagErrorFunc(explainRemovedFlags)
	pf := root.PersistentFlags()
	pf.StringVarP(&g.configPath, "config", "c", os.Getenv("WARDEN_CONFIG"), "configuration file (YAML); env WARDEN_CONFIG")
	pf.StringVar(&g.server, "server", os.Getenv("WARDEN_SERVER"), "controller API URL for client commands (default: from server.listen in the config); env WARDEN_SERVER")
	pf.StringVar(&g.token, "token", "", "your API token for client commands (default: env WARDEN_API_TOKEN, then server.api_token); the controller acts as its user")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")

	root.AddCommand(
		newServeCmd(g), newDemoCmd(g), newIndicatorCmd(g), newPlanCmd(g), newRunbookCmd(g), newRunsCmd(g),
		newGatewaysCmd(g), newAuditCmd(g), newPolicyCmd(g), newConfigCmd(g), newBreakerCmd(g), newReleaseCmd(g), newAgentCmd(g), newEvidenceCmd(g), newReportCmd(g), newDriftCmd(g), newPatchCmd(g), newCredentialsCmd(g),
		newUsersCmd(g), newWhoAmICmd(g), newBlockCmd(g), newSensorsCmd(g), newInvestigateCmd(g), newCaptureCmd(g), newStatusCmd(g), newStoreCmd(g),
	)
	root.AddCommand(newBaselineCmd(g))
	return root
}

// explainRemovedFlags says why --by is gone when an old script passes it:
// who acts is no longer whatever the caller writes.
func explainRemovedFlags(_ *cobra.Command, err error) error {
	if strings.Contains(err.Error(), "unknown flag: --by") {
		return fmt.Errorf("%w: who acts is the user of the API token (see warden whoami); the evidence commands that read the store on this host record who is logged in", err)
	}
	return err
}
