package agentd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/capture"
	"github.com/warden-ir/warden/agent/host"
	"github.com/warden-ir/warden/agent/netfilter"
	"github.com/warden-ir/warden/agent/sensors"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/mtls"
)

// Options is everything an operator chooses about a gateway agent.
type Options struct {
	// Agent is the server's configuration; its Management is filled from
	// Management below.
	Agent agent.Config
	// Management lists networks (CIDR) every quarantine keeps, as given on
	// the command line; Build parses them.
	Management []string
	// Backend is the quarantine firewall: host.BackendIPTables or
	// host.BackendNFTables.
	Backend string
	// VICISocket is charon's socket; empty leaves strongSwan alone.
	VICISocket string
	// BaselineFile is a hardened baseline YAML (empty: the shipped one);
	// BaselineRoot is the filesystem root it reads configuration under.
	BaselineFile, BaselineRoot string
	// PatchRoot is the system root apt patches.
	PatchRoot string
	// WireGuard enables reading and configuring the gateway's WireGuard
	// devices.
	WireGuard bool
	// BlockBackend is the peer blocklist's firewall backend: nftables,
	// iptables, or empty to prefer nftables.
	BlockBackend string
	// SensorsFile turns the gateway's sensors on (agent/sensors); empty:
	// none run.
	SensorsFile string
	// ControllerURL is where findings go (the controller's
	// server.agent_listen, https://HOST:PORT); empty keeps them queued.
	// ControllerCA verifies the controller's certificate (default: the
	// client CA).
	ControllerURL, ControllerCA string
	// LogFiles are classic log files an investigation reads besides
	// capture.DefaultLogFiles.
	LogFiles []string
}

// BindFlags registers the agent's flags, with their defaults, on f. Both
// binaries call it, so `warden agent` and `warden-agent` take the same
// flags.
func (o *Options) BindFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Agent.Listen, "listen", agent.DefaultListen, "TCP address of the HTTPS API")
	f.StringVar(&o.Agent.CertFile, "cert", "/etc/warden-agent/agent.pem", "agent server certificate (PEM)")
	f.StringVar(&o.Agent.KeyFile, "key", "/etc/warden-agent/agent-key.pem", "agent server key (PEM)")
	f.StringVar(&o.Agent.ClientCAFile, "client-ca", "/etc/warden-agent/ca.pem", "CA certificates the controller's client certificate must chain to")
	f.StringVar(&o.Agent.ControllerIdentity, "controller-identity", wire.DefaultControllerIdentity, "name the controller's certificate must carry (CN, DNS or URI SAN)")
	f.StringVar(&o.Agent.StateDir, "state-dir", agent.DefaultStateDir, "directory for the quarantine record and the nonce journal (0700)")
	f.DurationVar(&o.Agent.ConfirmWindow, "confirm-window", agent.DefaultConfirmWindow, "revert an isolate not confirmed within this window")
	f.DurationVar(&o.Agent.HealInterval, "heal-interval", agent.DefaultHealInterval, "how often to repair drift from the recorded quarantine")
	f.DurationVar(&o.Agent.MaxTTL, "max-command-ttl", agent.DefaultMaxTTL, "longest command lifetime accepted")
	f.DurationVar(&o.Agent.ClockSkew, "clock-skew", agent.DefaultClockSkew, "tolerated controller/agent clock difference")
	f.StringVar(&o.Backend, "backend", host.BackendIPTables, "quarantine firewall backend: iptables or nftables")
	f.StringSliceVar(&o.Management, "management", nil, "management networks (CIDR) every quarantine keeps, besides those the controller names")
	f.StringSliceVar(&o.Agent.WireGuardLinks, "wireguard-links", nil, "tunnel links isolate brings down (default: every wireguard link and every link named wg*)")
	f.StringVar(&o.BaselineRoot, "baseline-root", "/", "filesystem root the baseline reads configuration files under (runtime values always come from /proc)")
	f.StringVar(&o.PatchRoot, "patch-root", "/", "system root apt patches (another root only for labs)")
	f.StringVar(&o.BaselineFile, "baseline", "", "hardened baseline YAML to check (default: the shipped gateway baseline)")
	f.StringVar(&o.VICISocket, "vici-socket", host.DefaultVICISocket, "strongSwan VICI socket for terminating SAs and revocation/rotation commands; empty leaves strongSwan alone")
	f.StringVar(&o.BlockBackend, "block-backend", "", "firewall backend of the blocklists (revoked peers; the IoC set of block_ioc): nftables, iptables, or empty to prefer nftables")
	f.StringVar(&o.SensorsFile, "sensors", "", "sensors file (YAML): which of the gateway's watchers run and how (auth, conn, volume, health, config); empty: no sensors")
	f.StringVar(&o.ControllerURL, "controller-url", "", "where the sensors' findings go: the controller's agent listener (server.agent_listen), https://HOST:PORT; empty keeps them queued on disk")
	f.StringVar(&o.ControllerCA, "controller-ca", "", "CA the controller's certificate must chain to (default: --client-ca)")
	f.StringSliceVar(&o.LogFiles, "log-files", nil, "classic log files an investigation reads besides "+strings.Join(capture.DefaultLogFiles, ", "))
	f.BoolVar(&o.WireGuard, "wireguard", true, "read and configure this gateway's WireGuard devices (revocation and rotation); false answers wireguard commands with 501")
}

// Agent is a built gateway agent: its server and the host resources the
// server's seams hold open.
type Agent struct {
	cfg    agent.Config
	server *agent.Server
	log    *slog.Logger
	// closers release the host resources, last opened first.
	closers []func() error
	// The sensors (nil queue: none), their learned state and the sender
	// of their findings (nil: kept queued).
	sensors []sensors.Sensor
	learned *sensors.Learned
	queue   *sensors.Queue
	sender  *sensors.Sender
}

// Build parses o, opens the host's seams and builds the agent's server. It
// applies nothing to the gateway: Run and Serve re-apply a recorded
// quarantine before they accept a connection.
//
// The seams bind to the calling thread's network namespace: call Build
// from the namespace the agent guards (as started, for a real gateway).
// Optional seams that cannot be opened (WireGuard, the peer blocklist) are
// logged and left out, and their commands answer 501.
func Build(o Options, log *slog.Logger) (*Agent, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := o.Agent
	for _, m := range o.Management {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		p, err := netip.ParsePrefix(m)
		if err != nil {
			return nil, fmt.Errorf("--management %q: %w", m, err)
		}
		cfg.Management = append(cfg.Management, p)
	}
	a := &Agent{cfg: cfg, log: log}
	fail := func(err error) (*Agent, error) {
		a.closeHost()
		return nil, err
	}
	// strongSwan is built here rather than by host.Deps so that the SA
	// seam, the VICI command seam and the patch hook share one concrete
	// value without type assertions. Capture still gets the socket.
	stateDir := cfg.StateDir
	if stateDir == "" {
		stateDir = agent.DefaultStateDir
	}
	deps, closer, err := host.Deps(host.Options{
		Backend: o.Backend, VICISocket: o.VICISocket, NoVICI: true, Log: log,
		Capture: capture.Options{StateDir: stateDir, LogFiles: o.LogFiles},
	})
	if err != nil {
		return fail(err)
	}
	a.closers = append(a.closers, closer.Close)
	deps.Baseline, err = host.Baseline(host.BaselineOptions{Root: o.BaselineRoot, File: o.BaselineFile, StateDir: cfg.StateDir})
	if err != nil {
		return fail(err)
	}
	// A patch passes when the versions are right and the tunnel services
	// answer and their tunnels are back.
	var hooks host.PatchHookOptions
	if o.VICISocket != "" {
		vici := host.NewVICI(o.VICISocket)
		deps.SAs, deps.VICI, hooks.VICI = vici, vici, vici
	}
	if o.WireGuard {
		wg, err := host.NewWireGuard()
		if err != nil {
			log.Warn("WireGuard control unavailable; wireguard commands will answer 501", "error", err.Error())
		} else {
			a.closers = append(a.closers, wg.Close)
			deps.WireGuard, hooks.WireGuard = wg, wg
		}
	}
	deps.Patch = host.Patch(o.PatchRoot, log, host.PatchHooks(hooks))
	bl, err := netfilter.NewBlocklist(o.BlockBackend, log)
	if err != nil {
		log.Warn("peer blocklist unavailable; block commands will answer 501", "error", err.Error())
	} else {
		a.closers = append(a.closers, bl.Close)
		deps.Blocker = blocklist{bl}
	}
	// The IoC set (block_ioc): its own table or chains beside the peer
	// blocklist, on the same backend.
	ioc, err := netfilter.NewIOCBlocklist(o.BlockBackend, log)
	if err != nil {
		log.Warn("IoC blocklist unavailable; ioc_block commands will answer 501", "error", err.Error())
	} else {
		a.closers = append(a.closers, ioc.Close)
		deps.IOCBlocker = blocklist{ioc}
	}
	if o.SensorsFile != "" {
		if err := a.buildSensors(o, &deps); err != nil {
			return fail(err)
		}
	}
	if a.server, err = agent.New(cfg, deps, log); err != nil {
		return fail(err)
	}
	return a, nil
}

// buildSensors makes the sensors the file turns on, the on-disk queue of
// their findings and, with a controller URL, the sender that delivers
// them over mutual TLS with the agent's own certificate.
func (a *Agent) buildSensors(o Options, deps *agent.Deps) error {
	sc, err := sensors.LoadConfig(o.SensorsFile)
	if err != nil {
		return err
	}
	log := a.log.With("component", "sensors")
	built, err := sensors.Build(sc, a.cfg.StateDir, nil, log)
	if err != nil {
		return err
	}
	q, err := sensors.OpenQueue(filepath.Join(a.cfg.StateDir, "sensors", "queue"), sensors.QueueOptions{Log: log})
	if err != nil {
		return err
	}
	a.closers = append(a.closers, q.Close)
	a.sensors, a.learned, a.queue = built.Sensors, built.Learned, q
	if o.ControllerURL != "" {
		ca := o.ControllerCA
		if ca == "" {
			ca = a.cfg.ClientCAFile
		}
		m, err := mtls.Load(mtls.Files{CertFile: a.cfg.CertFile, KeyFile: a.cfg.KeyFile, CAFile: ca, CertName: "agent certificate", CAName: "controller CA (--controller-ca)"})
		if err != nil {
			return err
		}
		identity := a.cfg.ControllerIdentity
		if identity == "" {
			identity = wire.DefaultControllerIdentity
		}
		if a.sender, err = sensors.NewSender(q, sensors.SenderOptions{URL: o.ControllerURL, TLS: sensors.ControllerTLS(m, identity), Log: log}); err != nil {
			return fmt.Errorf("--controller-url: %w", err)
		}
	}
	deps.Sensors = func(context.Context, struct{}) (wire.SensorsSummary, error) {
		sum := built.Learned.Summary(time.Now(), built.Enabled, 20)
		st := q.Stats()
		sum.Queued, sum.Dropped = st.Pending, int64(st.Dropped)
		return sum, nil
	}
	log.Info("sensors on", "enabled", built.Enabled, "controller", o.ControllerURL)
	return nil
}

// runSensors runs the sensors, the learned state's saver and the sender
// until ctx ends.
func (a *Agent) runSensors(ctx context.Context) func() {
	if a.queue == nil {
		return func() {}
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = sensors.RunAll(ctx, a.log, a.queue.Emit, a.sensors...) })
	wg.Go(func() { _ = a.learned.Persist(ctx, nil) })
	if a.sender != nil {
		wg.Go(func() { _ = a.sender.Run(ctx) })
	}
	return wg.Wait
}

// Config is the agent's configuration as built (management networks
// parsed; unset fields are defaulted by the server).
func (a *Agent) Config() agent.Config { return a.cfg }

// Run listens on the configured address and serves until ctx ends, then
// releases the host resources. The gateway stays as it is: a quarantine
// stays in force.
func (a *Agent) Run(ctx context.Context) error {
	defer a.closeHost()
	ctx, cancel := context.WithCancel(ctx)
	defer a.runSensors(ctx)()
	defer cancel()
	return a.server.Run(ctx)
}

// Serve is Run on a listener the caller opened.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	defer a.closeHost()
	defer a.server.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer a.runSensors(ctx)()
	defer cancel()
	return a.server.Serve(ctx, ln)
}

// closeHost releases the host resources, last opened first. Failing to
// close one is logged, not returned: the agent has already stopped, and a
// failed close must not turn a clean stop into an error exit.
func (a *Agent) closeHost() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			a.log.Warn("releasing a host resource", "error", err.Error())
		}
	}
	a.closers = nil
}

// blocklist adapts the kernel blocklist to the agent's seam.
type blocklist struct{ netfilter.Blocklist }

var _ agent.Blocker = blocklist{}

func (b blocklist) Set(ctx context.Context, ps []netip.Prefix) (bool, error) {
	changed, err := b.Blocklist.Set(ctx, ps)
	if errors.Is(err, netfilter.ErrInvalidBlock) {
		return changed, fmt.Errorf("%w: %w", agent.ErrInvalidParams, err)
	}
	return changed, err
}

func (b blocklist) Observe(ctx context.Context) (agent.BlockObservation, error) {
	st, err := b.Blocklist.Observe(ctx)
	return agent.BlockObservation{Prefixes: st.Prefixes, Enforced: st.Enforced, Backend: st.Backend, Faults: st.Faults}, err
}
