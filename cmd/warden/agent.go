package main

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/agentd"
	"github.com/warden-ir/warden/agent/wire"
)

// newAgentCmd is `warden agent` (run the gateway agent; an alias of
// `warden-agent`, which links nothing of the controller) and
// `warden agent init` (create a lab's key material).
func newAgentCmd(g *globals) *cobra.Command {
	var opt agentd.Options
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run warden agent on a gateway (as root): mutual-TLS API to isolate, release, observe and capture",
		Long: `Run warden agent on a gateway. It serves POST /v1/commands over TLS 1.3 to the
controller only (a client certificate from --client-ca naming
--controller-identity), refuses expired and replayed commands, keeps its
quarantine record in --state-dir and re-applies it at start (fail closed), and
reverts an isolate by itself only when the controller does not confirm it
within --confirm-window.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := agentd.Build(opt, g.logger())
			if err != nil {
				return err
			}
			cfg := a.Config()
			fmt.Fprintf(g.errw, "warden agent: listening on %s (state %s, confirm window %s)\n", cfg.Listen, cfg.StateDir, cfg.ConfirmWindow)
			return a.Run(cmd.Context())
		},
	}
	opt.BindFlags(cmd.Flags())
	cmd.AddCommand(newAgentInitCmd(g))
	return cmd
}

func newAgentInitCmd(g *globals) *cobra.Command {
	var (
		dir        string
		hosts, ips []string
		opt        agent.InitOptions
	)
	cmd := &cobra.Command{
		Use:   "init --dir DIR --host NAME --ip IP",
		Short: "Create a lab's agent key material: CA, agent server certificate, controller client certificate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, ip := range ips {
				if _, err := netip.ParseAddr(ip); err != nil {
					return fmt.Errorf("--ip %q: %w", ip, err)
				}
			}
			written, err := agent.Init(dir, append(append([]string(nil), hosts...), ips...), opt)
			if err != nil {
				if errors.Is(err, agent.ErrExists) {
					return fmt.Errorf("%w (--force replaces them)", err)
				}
				return err
			}
			for _, p := range written {
				fmt.Fprintln(g.out, p)
			}
			cert, key := agent.AgentCertFile, agent.AgentKeyFile
			if opt.Gateway != "" {
				cert, key = agent.GatewayCertFile(opt.Gateway), agent.GatewayKeyFile(opt.Gateway)
			}
			fmt.Fprintf(g.errw, "warden agent init: copy %s, %s and %s to the gateway; %s, %s and %s to the controller; keep %s off both.\n",
				cert, key, agent.CAFile,
				agent.ControllerCertFile, agent.ControllerKeyFile, agent.CAFile, agent.CAKeyFile)
			fmt.Fprintf(g.errw, "warden agent init: %s also serves the agents' listener (agents.server_cert_file, server.agent_listen), where agents deliver their sensors' findings.\n",
				agent.ControllerCertFile)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory to write the key material to (created 0700)")
	f.StringSliceVar(&hosts, "host", nil, "DNS name the controller uses for the agent (repeatable)")
	f.StringSliceVar(&ips, "ip", nil, "IP address the controller uses for the agent (repeatable)")
	f.BoolVar(&opt.Overwrite, "force", false, "replace existing files")
	f.StringVar(&opt.Gateway, "gateway", "", "issue the certificate of this inventory gateway (CN = ID: the controller takes its sensors' findings as this gateway's), from the CA already in --dir when there is one")
	f.StringVar(&opt.ControllerIdentity, "controller-identity", wire.DefaultControllerIdentity, "CommonName of the controller's client certificate")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
