// Command warden-agent is the gateway side of Warden: it runs as root on a
// VPN gateway and serves the controller's mutual-TLS commands (isolate,
// confirm, release, observe, capture, baseline, patch, tunnel control,
// peer blocks). The wiring lives in agent/agentd; this command holds the
// flags and the output only.
//
// It must link nothing of the controller: no vSphere client or simulator,
// no lab, no demo, no `testing` (internal/archtest checks this). The
// controller binary keeps `warden agent` as an alias for labs.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/agent/agentd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot(os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "warden-agent:", err)
		os.Exit(1)
	}
}

func newRoot(errw io.Writer) *cobra.Command {
	var (
		opt      agentd.Options
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "warden-agent",
		Short: "Warden's gateway agent (run as root): mutual-TLS API to isolate, release, observe and capture",
		Long: `warden-agent runs on a VPN gateway. It serves POST /v1/commands over TLS 1.3
to the controller only (a client certificate from --client-ca naming
--controller-identity), refuses expired and replayed commands, keeps its
quarantine record in --state-dir and re-applies it at start (fail closed),
and reverts an isolate by itself only when the controller does not confirm
it within --confirm-window. Create its key material with
` + "`warden agent init`" + ` on the controller's side.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := agentd.Build(opt, newLogger(errw, logLevel))
			if err != nil {
				return err
			}
			cfg := a.Config()
			fmt.Fprintf(errw, "warden-agent: listening on %s (state %s, confirm window %s)\n", cfg.Listen, cfg.StateDir, cfg.ConfirmWindow)
			return a.Run(cmd.Context())
		},
	}
	opt.BindFlags(cmd.Flags())
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}

// newLogger logs text to w at level (info when level does not parse, as
// the warden binary does).
func newLogger(w io.Writer, level string) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}
