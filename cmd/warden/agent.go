package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/host"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/providers/linux"
)

// newAgentCmd is `warden agent` (run the gateway agent) and
// `warden agent init` (create a lab's key material).
func newAgentCmd(g *globals) *cobra.Command {
	var (
		cfg          agent.Config
		management   []string
		backend      string
		viciSocket   string
		baselineFile string
		baselineRoot string
		patchRoot    string
		wireGuard    bool
		blockBackend string
	)
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
			for _, m := range management {
				m = strings.TrimSpace(m)
				if m == "" {
					continue
				}
				p, err := netip.ParsePrefix(m)
				if err != nil {
					return fmt.Errorf("--management %q: %w", m, err)
				}
				cfg.Management = append(cfg.Management, p)
			}
			log := g.logger()
			// The seams bind to this thread's network namespace: the
			// agent's, as started.
			deps, closer, err := host.Deps(host.Options{
				Backend: backend, VICISocket: viciSocket, NoVICI: viciSocket == "", Log: log,
			})
			if err != nil {
				return err
			}
			defer closer.Close()
			deps.Baseline, err = host.Baseline(host.BaselineOptions{Root: baselineRoot, File: baselineFile, StateDir: cfg.StateDir})
			if err != nil {
				return err
			}
			if v, ok := deps.SAs.(*host.VICI); ok && viciSocket != "" {
				deps.VICI = v
			}
			if wireGuard {
				wg, err := host.NewWireGuard()
				if err != nil {
					log.Warn("WireGuard control unavailable; wireguard commands will answer 501", "error", err.Error())
				} else {
					defer wg.Close()
					deps.WireGuard = wg
				}
			}
			// A patch passes when the versions are right and the tunnel
			// services answer and their tunnels are back.
			hooks := host.PatchHookOptions{}
			if v, ok := deps.VICI.(*host.VICI); ok {
				hooks.VICI = v
			}
			if wg, ok := deps.WireGuard.(*host.WireGuard); ok {
				hooks.WireGuard = wg
			}
			deps.Patch = host.Patch(patchRoot, log, host.PatchHooks(hooks))
			bl, err := linux.NewBlocklist(blockBackend, log)
			if err != nil {
				log.Warn("peer blocklist unavailable; block commands will answer 501", "error", err.Error())
			} else {
				defer bl.Close()
				deps.Blocker = agentBlocklist{bl}
			}
			srv, err := agent.New(cfg, deps, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.errw, "warden agent: listening on %s (state %s, confirm window %s)\n", cfg.Listen, cfg.StateDir, cfg.ConfirmWindow)
			return srv.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", agent.DefaultListen, "TCP address of the HTTPS API")
	f.StringVar(&cfg.CertFile, "cert", "/etc/warden-agent/agent.pem", "agent server certificate (PEM)")
	f.StringVar(&cfg.KeyFile, "key", "/etc/warden-agent/agent-key.pem", "agent server key (PEM)")
	f.StringVar(&cfg.ClientCAFile, "client-ca", "/etc/warden-agent/ca.pem", "CA certificates the controller's client certificate must chain to")
	f.StringVar(&cfg.ControllerIdentity, "controller-identity", wire.DefaultControllerIdentity, "name the controller's certificate must carry (CN, DNS or URI SAN)")
	f.StringVar(&cfg.StateDir, "state-dir", agent.DefaultStateDir, "directory for the quarantine record and the nonce journal (0700)")
	f.DurationVar(&cfg.ConfirmWindow, "confirm-window", agent.DefaultConfirmWindow, "revert an isolate not confirmed within this window")
	f.DurationVar(&cfg.HealInterval, "heal-interval", agent.DefaultHealInterval, "how often to repair drift from the recorded quarantine")
	f.DurationVar(&cfg.MaxTTL, "max-command-ttl", agent.DefaultMaxTTL, "longest command lifetime accepted")
	f.DurationVar(&cfg.ClockSkew, "clock-skew", agent.DefaultClockSkew, "tolerated controller/agent clock difference")
	f.StringVar(&backend, "backend", host.BackendIPTables, "quarantine firewall backend: iptables or nftables")
	f.StringSliceVar(&management, "management", nil, "management networks (CIDR) every quarantine keeps, besides those the controller names")
	f.StringSliceVar(&cfg.WireGuardLinks, "wireguard-links", nil, "tunnel links isolate brings down (default: every wireguard link and every link named wg*)")
	f.StringVar(&baselineRoot, "baseline-root", "/", "filesystem root the baseline reads configuration files under (runtime values always come from /proc)")
	f.StringVar(&patchRoot, "patch-root", "/", "system root apt patches (another root only for labs)")
	f.StringVar(&baselineFile, "baseline", "", "hardened baseline YAML to check (default: the shipped gateway baseline)")
	f.StringVar(&viciSocket, "vici-socket", host.DefaultVICISocket, "strongSwan VICI socket for terminating SAs and revocation/rotation commands; empty leaves strongSwan alone")
	f.StringVar(&blockBackend, "block-backend", "", "firewall backend of the blocklist that keeps revoked peers out: nftables, iptables, or empty to prefer nftables")
	f.BoolVar(&wireGuard, "wireguard", true, "read and configure this gateway's WireGuard devices (revocation and rotation); false answers wireguard commands with 501")

	cmd.AddCommand(newAgentInitCmd(g))
	return cmd
}

// agentBlocklist adapts the kernel blocklist to the agent's seam.
type agentBlocklist struct{ linux.Blocklist }

func (b agentBlocklist) Set(ctx context.Context, ps []netip.Prefix) (bool, error) {
	changed, err := b.Blocklist.Set(ctx, ps)
	if errors.Is(err, linux.ErrInvalidBlock) {
		return changed, fmt.Errorf("%w: %w", agent.ErrInvalidParams, err)
	}
	return changed, err
}

func (b agentBlocklist) Observe(ctx context.Context) (agent.BlockObservation, error) {
	st, err := b.Blocklist.Observe(ctx)
	return agent.BlockObservation{Prefixes: st.Prefixes, Enforced: st.Enforced}, err
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
			fmt.Fprintf(g.errw, "warden agent init: copy %s, %s and %s to the gateway; %s, %s and %s to the controller; keep %s off both.\n",
				agent.AgentCertFile, agent.AgentKeyFile, agent.CAFile,
				agent.ControllerCertFile, agent.ControllerKeyFile, agent.CAFile, agent.CAKeyFile)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory to write the key material to (created 0700)")
	f.StringSliceVar(&hosts, "host", nil, "DNS name the controller uses for the agent (repeatable)")
	f.StringSliceVar(&ips, "ip", nil, "IP address the controller uses for the agent (repeatable)")
	f.BoolVar(&opt.Overwrite, "force", false, "replace existing files")
	f.StringVar(&opt.ControllerIdentity, "controller-identity", wire.DefaultControllerIdentity, "CommonName of the controller's client certificate")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
