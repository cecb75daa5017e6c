package demo

// The Linux part of the demo: containment through `warden agent` with real
// packets. It builds a throw-away laboratory of network namespaces (three
// VPN sites, an attacker's C2 server, a management network), runs the agent
// in-process inside the compromised gateway's namespace with the real
// nftables, conntrack and capture seams, runs the controller in-process
// with its API on loopback, and proves the cut with TCP, UDP and ICMP over
// IPv4 and IPv6 before isolation, after it, and after release.
//
// Traffic stays on loopback and inside the namespaces the demo created; the
// host's own network namespace is never changed.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/net/icmp"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/host"
	"github.com/warden-ir/warden/agent/netfilter"
	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/providers/linux"
	"github.com/warden-ir/warden/store"
)

// LinuxOptions control RunLinux.
type LinuxOptions struct {
	// Prefix names the lab's network namespaces ("<Prefix>-gw-osaka"): 1
	// to 12 lower-case letters or digits, unique among labs that exist at
	// the same time. Default "wd" and the process id.
	Prefix string
	// Dir holds the key material, the store and the agent's state; a
	// temporary directory, removed afterwards, when empty.
	Dir string
	Log *slog.Logger
}

// LinuxProbe is one probe of the Linux demo.
type LinuxProbe struct {
	// Phase is "before", "isolated" or "released".
	Phase string `json:"phase"`
	// Path names the direction ("gateway -> c2").
	Path string `json:"path"`
	// Proto is tcp, udp or icmp; Family ipv4 or ipv6.
	Proto  string `json:"proto"`
	Family string `json:"family"`
	// Reachable is what the probe saw; Want what containment requires.
	Reachable bool `json:"reachable"`
	Want      bool `json:"want"`
}

// LinuxResult is the Linux demo's outcome.
type LinuxResult struct {
	// Skipped is true when this machine cannot build the lab (not root,
	// no network namespaces, no nftables or conntrack in the kernel, no
	// raw sockets); SkipReason says what is missing and how to get it.
	// Nothing else is set then. No binary is needed: the lab, the site
	// firewalls, the quarantine and every probe go through netlink and
	// sockets.
	Skipped    bool   `json:"skipped"`
	SkipReason string `json:"skip_reason,omitempty"`

	Lab       string `json:"lab"`
	Gateway   string `json:"gateway"`
	Site      string `json:"site"`
	AgentMode string `json:"agent_mode"`
	Backend   string `json:"backend"`

	IncidentID string `json:"incident_id"`
	RunID      string `json:"run_id"`
	RunState   string `json:"run_state"`
	Steps      []Step `json:"steps"`
	// KilledFlows is how many tracked flows kill_flows deleted from
	// conntrack, after the capture under the quarantine recorded them.
	KilledFlows int `json:"killed_flows"`

	// The attacker's C2 sessions (one over IPv4, one over IPv6), opened
	// from the gateway before the alert.
	C2SessionAliveBefore bool `json:"c2_session_alive_before"`
	C2SessionAliveAfter  bool `json:"c2_session_alive_after"`
	// ManagementReachable: while isolated, the management network reached
	// the agent's port over IPv4 and IPv6 and the controller read the
	// quarantine back through the agent.
	ManagementReachable bool `json:"management_reachable"`
	// RulesEnforced: the agent read the quarantine rules back from the
	// kernel, without drift.
	RulesEnforced   bool         `json:"rules_enforced"`
	Probes          []LinuxProbe `json:"probes"`
	ProbesAsWanted  bool         `json:"probes_as_wanted"`
	TimeToContainMS float64      `json:"time_to_contain_ms"`
	// Verified: the run succeeded, the posture is quarantined, the rules
	// are enforced, management is reachable, the C2 session died and every
	// isolated-phase probe came out as containment requires.
	Verified bool `json:"verified"`

	ReleaseRunState string `json:"release_run_state"`
	// TrafficRestored: after release every path flows again (v4 and v6).
	TrafficRestored bool `json:"traffic_restored"`

	// People are the identities the demo acted as, each with a token of
	// its own, and what it did as each: the detector posted the
	// indicator, the responder asked for the release, the approver
	// approved it.
	People []Person `json:"people"`
	// ReleaseRequestedBy, ReleaseOverriddenBy and ReleaseApprovedBy are
	// the people the controller recorded on the release run.
	ReleaseRequestedBy  string `json:"release_requested_by"`
	ReleaseOverriddenBy string `json:"release_overridden_by"`
	ReleaseApprovedBy   string `json:"release_approved_by"`
	// SelfApprovalRefused is the controller's answer when the responder
	// tried to approve the release they asked for (a responder may not
	// approve, and with four eyes nobody approves what they asked for).
	SelfApprovalRefused string `json:"self_approval_refused"`
}

// The Linux demo's people.
const (
	linuxDetector  = "demo-ids"
	linuxResponder = "demo-responder"
	linuxApprover  = "demo-approver"
)

// Linux demo topology.
const (
	linuxTarget    = "osaka"
	linuxGateway   = "gw-osaka"
	linuxEchoPort  = 7
	linuxAgentPort = 8443
	linuxOKWait    = 5 * time.Second
	linuxCutWait   = 400 * time.Millisecond
)

// LabInventory is the inventory of a netlab lab: a site per lab site (in
// UTC), its gateway "gw-<site>" managed from the lab's management network,
// and the agent at agentURL on the target site's gateway only.
func LabInventory(lab *netlab.Lab, target, agentURL string) inventory.Inventory {
	var mgmt []string
	for _, p := range lab.ManagementPrefixes() {
		mgmt = append(mgmt, p.String())
	}
	inv := inventory.Inventory{}
	for _, s := range lab.Sites() {
		inv.Sites = append(inv.Sites, inventory.Site{Name: s.Name, TimeZone: "UTC", Networks: []string{s.Prefix4.String(), s.Prefix6.String()}})
		gw := inventory.Gateway{ID: "gw-" + s.Name, Site: s.Name, Hostname: "gw-" + s.Name + ".lab",
			Addresses: []string{s.Gateway.V4.String(), s.Gateway.V6.String()}, ManagementNetworks: mgmt}
		if s.Name == target {
			gw.Agent = agentURL
		}
		inv.Gateways = append(inv.Gateways, gw)
	}
	return inv
}

// LinuxPolicySet is a policy set for gateways reached through their agent
// only, whose containment runbook runs exactly steps, each an action name
// followed by its params as key=value ("isolate flows=keep"). The demo:
// isolate keeping the flows, capture, kill the flows, notify; the
// time-to-contain benchmark: isolate alone.
func LinuxPolicySet(steps ...string) string {
	var b strings.Builder
	b.WriteString(`policies:
  - name: c2-or-exfil-isolate
    description: A gateway beaconing to a C2 host is contained through its agent.
    priority: 100
    match: 'indicator.kind in ["c2_beacon", "exfiltration"] && indicator.severity_rank >= 3'
    runbook: contain-linux-gateway
    approval: auto
    guards:
      min_confidence: 0.5
  - name: catch-all-notify
    description: Everything else reaches a person.
    priority: 0
    match: 'true'
    runbook: notify-only
    approval: auto
    guards:
      budget: false
runbooks:
  - name: contain-linux-gateway
    description: The OS quarantine through the agent, evidence, then people.
    steps:
`)
	for _, s := range steps {
		f := strings.Fields(s)
		fmt.Fprintf(&b, "      - action: %s\n", f[0])
		params := f[1:]
		if f[0] == "notify" {
			params = append(params, "channel=default")
		}
		if len(params) > 0 {
			b.WriteString("        params: {")
			for i, kv := range params {
				k, v, _ := strings.Cut(kv, "=")
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "%s: %q", k, v)
			}
			b.WriteString("}\n")
		}
	}
	b.WriteString(`  - name: notify-only
    description: Tell people.
    steps:
      - action: notify
        params: {channel: default}
  - name: release-gateway
    description: Undo isolation.
    steps:
      - action: release
      - action: notify
        params: {channel: default}
`)
	return b.String()
}

// LinuxPolicies is the policy set of the Linux demo.
var LinuxPolicies = LinuxPolicySet("isolate flows=keep", "capture_volatile", "kill_flows", "notify")

// RunLinux runs the Linux demo. When the machine cannot build the lab it
// returns a result with Skipped set and a nil error.
func RunLinux(ctx context.Context, opt LinuxOptions) (LinuxResult, error) {
	if reason := linuxPreflight(os.Geteuid(), probeLab); reason != "" {
		return LinuxResult{Skipped: true, SkipReason: reason}, nil
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opt.Prefix == "" {
		opt.Prefix = fmt.Sprintf("wd%d", os.Getpid()%10_000_000)
	}
	dir := opt.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "warden-demo-linux-")
		if err != nil {
			return LinuxResult{}, fmt.Errorf("making demo directory: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}

	lab, err := netlab.New(ctx, netlab.Options{Prefix: opt.Prefix, Sites: []string{"hq", linuxTarget, "dc"}})
	if err != nil {
		return LinuxResult{}, fmt.Errorf("building the namespace lab: %w", err)
	}
	defer lab.Close()
	l := &linuxDemo{lab: lab, log: log, dir: dir}
	for _, s := range lab.Sites() {
		if s.Name == linuxTarget {
			l.target = s
		} else {
			l.peers = append(l.peers, s)
		}
	}
	res := LinuxResult{Lab: opt.Prefix, Gateway: linuxGateway, Site: linuxTarget,
		AgentMode: "in-process, inside the gateway's network namespace", Backend: host.BackendNFTables}

	if err := l.prepare(); err != nil {
		return res, err
	}
	stopAgent, err := l.startAgent(ctx)
	if errors.Is(err, netfilter.ErrUnavailable) {
		return LinuxResult{Skipped: true, SkipReason: "nftables is not available in a network namespace here: " + err.Error()}, nil
	}
	if err != nil {
		return res, err
	}
	defer stopAgent()
	relay, err := netlab.StartRelay(lab.Mgmt().NS, netip.AddrPortFrom(l.target.Gateway.V4, linuxAgentPort))
	if err != nil {
		return res, err
	}
	defer relay.Close()
	stopController, err := l.startController(ctx, relay.Addr())
	if err != nil {
		return res, err
	}
	defer stopController()

	if err := l.contain(ctx, &res); err != nil {
		return res, err
	}
	return res, nil
}

// linuxPreflight says in plain words what this machine lacks for the lab
// and how to get it, or "" when the lab can run. probe tries what the lab
// needs in a throw-away namespace (probeLab); it runs only as root.
func linuxPreflight(euid int, probe func() error) string {
	if euid != 0 {
		return "the Linux demo builds network namespaces and firewall rules and needs root; run `sudo warden demo` to include it"
	}
	if err := probe(); err != nil {
		return err.Error()
	}
	return ""
}

// missingFeature is something the Linux demo needs that this machine
// lacks: what, the error that showed it, and how to get it.
type missingFeature struct {
	what, fix string
	err       error
}

func (m *missingFeature) Error() string {
	return fmt.Sprintf("%s (%v); %s", m.what, m.err, m.fix)
}

func (m *missingFeature) Unwrap() error { return m.err }

// probeLab tries, in a new anonymous network namespace, everything the lab
// needs beyond root: the namespace itself, nftables with connection
// tracking (the site firewall the demo installs), and raw ICMP sockets
// (the ping probes). It runs on a throw-away thread: the goroutine exits
// still locked, so the runtime discards the thread, and with it the last
// reference to the namespace. No binary is run.
func probeLab() error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- probeInNewNamespace()
	}()
	return <-errc
}

func probeInNewNamespace() error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return &missingFeature{what: "network namespaces are not available here", err: err,
			fix: "the Linux demo needs CAP_SYS_ADMIN and CAP_NET_ADMIN (in a container: --privileged, or --cap-add SYS_ADMIN --cap-add NET_ADMIN)"}
	}
	if err := installSiteFirewall(); err != nil {
		return &missingFeature{what: "nftables with connection tracking is not available in a network namespace here", err: err,
			fix: "the Linux demo needs a kernel with nf_tables, nft_ct and nf_conntrack (Debian's kernel has them as modules: modprobe nf_tables nft_ct)"}
	}
	for _, network := range []string{"ip4:icmp", "ip6:ipv6-icmp"} {
		c, err := icmp.ListenPacket(network, "")
		if err != nil {
			return &missingFeature{what: "raw ICMP sockets (" + network + ") cannot be opened here", err: err,
				fix: "the Linux demo's ping probes need CAP_NET_RAW (in a container: --cap-add NET_RAW) and IPv6 enabled in the kernel"}
		}
		_ = c.Close()
	}
	return nil
}

// Names of the site firewall every lab gateway gets.
const (
	siteTable   = "site"
	siteInput   = "sitein"
	siteForward = "sitefwd"
)

// installSiteFirewall installs, in the calling thread's network namespace,
// the stateful firewall a real gateway has, in one netlink transaction:
//
//	table inet site {
//		chain sitein  { type filter hook input   priority 0; policy accept; ct state established,related accept }
//		chain sitefwd { type filter hook forward priority 0; policy accept; ct state established,related accept }
//	}
//
// It accepts everything, but its ct expressions make conntrack track every
// flow, which is what isolation must find and kill. Calling it again
// replaces the table rather than adding rules twice (add, delete, add: safe
// whether or not the table exists).
func installSiteFirewall() error {
	// Not lasting: the socket is opened at Flush, on this thread, so in
	// this thread's namespace.
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("opening nftables netlink: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: siteTable}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	for _, h := range []struct {
		name string
		hook *nftables.ChainHook
	}{{siteInput, nftables.ChainHookInput}, {siteForward, nftables.ChainHookForward}} {
		ch := c.AddChain(&nftables.Chain{Table: t, Name: h.name, Type: nftables.ChainTypeFilter,
			Hooknum: h.hook, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ctStateAccept(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("installing table inet %s: %w", siteTable, err)
	}
	return nil
}

// ctStateAccept is `ct state <states> accept`: load the conntrack state
// into a register, mask it with the wanted state bits, accept when any
// bit is left.
func ctStateAccept(states uint32) []expr.Any {
	zero := binaryutil.NativeEndian.PutUint32(0)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(states), Xor: zero},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}

// linuxDemo is one run's lab, agent and controller.
type linuxDemo struct {
	lab    *netlab.Lab
	log    *slog.Logger
	dir    string
	target netlab.Site
	peers  []netlab.Site
	d      *daemon.Daemon
	base   string
	token  string
}

// prepare starts echo servers on every node, gives every gateway a
// stateful firewall of its own as real gateways have (installSiteFirewall:
// conntrack then tracks the flows isolation must kill), and creates the
// key material.
func (l *linuxDemo) prepare() error {
	nodes := []netlab.Node{l.lab.C2(), l.lab.Mgmt()}
	for _, s := range l.lab.Sites() {
		nodes = append(nodes, s.Gateway, s.LAN)
	}
	for _, n := range nodes {
		if _, err := l.lab.ServeEcho(n.NS, netip.AddrPortFrom(netip.IPv6Unspecified(), linuxEchoPort)); err != nil {
			return err
		}
	}
	for _, s := range l.lab.Sites() {
		if err := l.lab.Do(s.Gateway.NS, installSiteFirewall); err != nil {
			return fmt.Errorf("installing the site firewall of %s: %w", s.Name, err)
		}
	}
	gw := l.target.Gateway
	// The controller reaches the agent through a relay on loopback (see
	// netlab.StartRelay), so the agent's certificate names 127.0.0.1 too.
	if _, err := agent.Init(filepath.Join(l.dir, "pki"), []string{gw.V4.String(), gw.V6.String(), "127.0.0.1"}, agent.InitOptions{Overwrite: true}); err != nil {
		return fmt.Errorf("creating agent key material: %w", err)
	}
	return nil
}

// startAgent runs the agent in-process: its seams and its listening socket
// are created on a thread inside the gateway's namespace, which binds them
// there for their whole life (the firewall and conntrack seams re-enter
// that namespace themselves, whichever goroutine calls).
func (l *linuxDemo) startAgent(ctx context.Context) (stop func(), err error) {
	var (
		deps   agent.Deps
		closer io.Closer
		ln     net.Listener
	)
	err = l.lab.Do(l.target.Gateway.NS, func() error {
		var err error
		deps, closer, err = host.Deps(host.Options{Backend: host.BackendNFTables, NoVICI: true, Log: l.log.With("component", "agent")})
		if err != nil {
			return err
		}
		ln, err = net.Listen("tcp", netip.AddrPortFrom(netip.IPv6Unspecified(), linuxAgentPort).String())
		if err != nil {
			return errors.Join(fmt.Errorf("listening for the agent: %w", err), closer.Close())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	pki := filepath.Join(l.dir, "pki")
	srv, err := agent.New(agent.Config{
		CertFile: filepath.Join(pki, agent.AgentCertFile), KeyFile: filepath.Join(pki, agent.AgentKeyFile),
		ClientCAFile: filepath.Join(pki, agent.CAFile), StateDir: filepath.Join(l.dir, "agent-state"),
		ConfirmWindow: 10 * time.Second,
	}, deps, l.log.With("component", "agent"))
	if err != nil {
		return nil, errors.Join(err, ln.Close(), closer.Close())
	}
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(actx, ln); err != nil {
			l.log.Error("agent stopped", "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
		_ = srv.Close()
		_ = closer.Close()
	}, nil
}

// startController builds and serves the controller in-process, its API on
// loopback, its agent client pointed at the relay.
func (l *linuxDemo) startController(ctx context.Context, relay string) (stop func(), err error) {
	polDir := filepath.Join(l.dir, "policies")
	if err := os.MkdirAll(polDir, 0o700); err != nil {
		return nil, fmt.Errorf("writing demo policies: %w", err)
	}
	if err := os.WriteFile(filepath.Join(polDir, "linux.yaml"), []byte(LinuxPolicies), 0o600); err != nil {
		return nil, fmt.Errorf("writing demo policies: %w", err)
	}
	inv := LabInventory(l.lab, linuxTarget, "https://"+relay)
	pki := filepath.Join(l.dir, "pki")
	cfg := config.Defaults()
	token, err := bootstrapAdmin(&cfg, l.dir, "")
	if err != nil {
		return nil, err
	}
	cfg.Store.Path = filepath.Join(l.dir, "warden.db")
	cfg.Policies.Dir = polDir
	cfg.Agents = config.Agents{CertFile: filepath.Join(pki, agent.ControllerCertFile), KeyFile: filepath.Join(pki, agent.ControllerKeyFile), CAFile: filepath.Join(pki, agent.CAFile)}
	cfg.Inventory = inv
	cfg.Reconcile.Interval = time.Hour
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("linux demo configuration: %w", err)
	}
	d, err := daemon.Build(ctx, cfg, daemon.Options{Log: l.log})
	if err != nil {
		return nil, err
	}
	addr, err := d.Listen("127.0.0.1:0")
	if err == nil {
		// The bootstrap admin is made now, before the first request.
		err = d.AcquireWriter(ctx)
	}
	if err != nil {
		d.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Serve(sctx); err != nil {
			l.log.Error("controller stopped", "err", err)
		}
	}()
	l.d, l.base, l.token = d, "http://"+addr, token
	return func() {
		cancel()
		<-done
		d.Close(context.WithoutCancel(ctx))
	}, nil
}

// contain is the demo proper: C2 sessions, probes, the alert over HTTP,
// probes again, release over HTTP, probes again.
func (l *linuxDemo) contain(ctx context.Context, res *LinuxResult) error {
	gw, c2 := l.target.Gateway, l.lab.C2()
	var sessions []*netlab.Session
	for _, a := range c2.Addrs() {
		s, err := l.lab.OpenSession(ctx, gw.NS, netip.AddrPortFrom(a, linuxEchoPort))
		if err != nil {
			return fmt.Errorf("opening the C2 session: %w", err)
		}
		sessions = append(sessions, s)
	}
	res.Probes = append(res.Probes, l.probe(ctx, "before", true, append(l.cutPaths(), l.keptPaths()...)...)...)
	res.C2SessionAliveBefore = allAlive(sessions, linuxOKWait)

	people, err := addTeam(ctx, l.base, l.token,
		member{linuxDetector, v1.RoleIntake, "the IDS watching the VPN"},
		member{linuxResponder, v1.RoleResponder, "the on-call responder"},
		member{linuxApprover, v1.RoleApprover, "the incident lead"})
	if err != nil {
		return err
	}
	defer func() { res.People = people.people }()
	intake, err := people.as(linuxDetector).SubmitIndicators(ctx, v1.Indicator{
		Kind: "c2_beacon", Gateway: linuxGateway, Severity: "critical", Confidence: 0.9, Source: "demo-ids",
		Summary:     "gw-osaka beacons to " + c2.V4.String() + " and " + c2.V6.String(),
		Observables: &v1.Observables{IPs: []string{c2.V4.String(), c2.V6.String()}},
	})
	if err != nil {
		return fmt.Errorf("calling the demo controller: %w", err)
	}
	if len(intake.Results) != 1 || intake.Results[0].RunID == "" {
		return fmt.Errorf("the C2 indicator started no run: %+v", intake.Results)
	}
	people.did(linuxDetector, "posted the c2_beacon indicator, which contained "+linuxGateway)
	res.IncidentID, res.RunID = intake.Results[0].IncidentID, intake.Results[0].RunID
	run, err := l.waitRun(ctx, res.RunID)
	if err != nil {
		return err
	}
	res.RunState = run.State
	res.Steps = demoSteps(run)
	inds, err := l.d.Store.IndicatorsOfIncident(ctx, res.IncidentID)
	if err != nil {
		return err
	}
	for _, s := range run.Steps {
		if s.State != store.StepSucceeded {
			continue
		}
		switch s.Action {
		case actions.NameIsolate:
			if len(inds) > 0 {
				res.TimeToContainMS = float64(s.FinishedAt.Sub(inds[0].ReceivedAt).Microseconds()) / 1000
			}
		case actions.NameKillFlows:
			// The flows were kept for the capture, then killed here.
			var r struct {
				Details struct {
					KilledFlows int `json:"killed_flows"`
				} `json:"details"`
			}
			if json.Unmarshal(s.Result, &r) == nil {
				res.KilledFlows = r.Details.KilledFlows
			}
		}
	}

	isolated := l.probe(ctx, "isolated", false, l.cutPaths()...)
	isolated = append(isolated, l.probe(ctx, "isolated", true, l.keptPaths()...)...)
	res.Probes = append(res.Probes, isolated...)
	res.C2SessionAliveAfter = anyAlive(sessions, time.Second)
	agentPort := true
	for _, a := range gw.Addrs() {
		if err := l.lab.TCPConnect(ctx, l.lab.Mgmt().NS, netip.AddrPortFrom(a, linuxAgentPort), linuxOKWait); err != nil {
			agentPort = false
		}
	}
	gwInv, _ := l.d.Controller.Inventory().Gateway(linuxGateway)
	enforced, st, observeErr := linux.ObserveQuarantine(ctx, l.d.Agents, gwInv)
	res.RulesEnforced = observeErr == nil && enforced && st.Confirmed
	res.ManagementReachable = agentPort && observeErr == nil
	p, err := l.d.Store.Posture(ctx, linuxGateway)
	if err != nil {
		return err
	}
	isolatedOK := asWanted(isolated)
	res.Verified = run.State == store.RunSucceeded && p.Desired == store.PostureQuarantined && res.RulesEnforced &&
		res.ManagementReachable && !res.C2SessionAliveAfter && isolatedOK
	for _, s := range sessions {
		_ = s.Close()
	}

	// Release is earned: a gateway baseline cannot be checked in a lab
	// namespace that shares the host's files, so the responder records
	// an override, and a second person, an approver, approves: the
	// controller refuses the responder's own approval.
	responder := people.as(linuxResponder)
	started, err := responder.Release(ctx, v1.StartRunbookRequest{Gateway: linuxGateway, Incident: res.IncidentID,
		OverrideReason: "demo lab: the namespace shares the host's files, no gateway baseline to check"})
	if err != nil {
		return fmt.Errorf("asking for the release: %w", err)
	}
	people.did(linuxResponder, "asked for the release, overriding the baseline gate with a reason")
	_, err = responder.Approve(ctx, started.ID, v1.ApproveRequest{Comment: "approving my own release"})
	if code, _ := client.StatusCode(err); code != http.StatusForbidden {
		return fmt.Errorf("the requester approving their own release: %v; want 403", err)
	}
	var ce *client.Error
	if errors.As(err, &ce) {
		res.SelfApprovalRefused = ce.Message
	}
	people.did(linuxResponder, "tried to approve it: refused (403)")
	if _, err := people.as(linuxApprover).Approve(ctx, started.ID, v1.ApproveRequest{Comment: "override reviewed"}); err != nil {
		return fmt.Errorf("approving the release: %w", err)
	}
	people.did(linuxApprover, "approved the release")
	rel, err := l.waitRun(ctx, started.ID)
	if err != nil {
		return err
	}
	res.ReleaseRunState = rel.State
	res.ReleaseRequestedBy, res.ReleaseOverriddenBy, res.ReleaseApprovedBy = rel.RequestedBy, rel.OverriddenBy, rel.ApprovedBy
	released := l.probe(ctx, "released", true, append(l.cutPaths(), l.keptPaths()...)...)
	res.Probes = append(res.Probes, released...)
	res.TrafficRestored = rel.State == store.RunSucceeded && asWanted(released)
	res.ProbesAsWanted = asWanted(res.Probes)
	return nil
}

func (l *linuxDemo) waitRun(ctx context.Context, id string) (store.Run, error) {
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return l.d.Controller.WaitRun(wctx, id)
}

func demoSteps(run store.Run) []Step {
	var out []Step
	for _, s := range run.Steps {
		st := Step{Name: s.Name, Action: s.Action, Status: s.State, Error: s.Error}
		if !s.FinishedAt.IsZero() {
			st.DurationMS = s.FinishedAt.Sub(s.StartedAt).Milliseconds()
		}
		var r actions.Result
		if json.Unmarshal(s.Result, &r) == nil {
			st.Summary = r.Summary
		}
		out = append(out, st)
	}
	return out
}

// demoPath is one direction of traffic between two lab nodes.
type demoPath struct {
	name string
	from string
	to   netlab.Node
}

// cutPaths must be cut while the gateway is isolated.
func (l *linuxDemo) cutPaths() []demoPath {
	gw := l.target.Gateway
	ps := []demoPath{
		{"gateway -> c2", gw.NS, l.lab.C2()},
		{"own lan -> c2 through the gateway", l.target.LAN.NS, l.lab.C2()},
	}
	for _, p := range l.peers {
		ps = append(ps,
			demoPath{"gateway -> peer lan " + p.Name, gw.NS, p.LAN},
			demoPath{"peer gateway " + p.Name + " -> gateway", p.Gateway.NS, gw},
			demoPath{"peer lan " + p.Name + " -> gateway", p.LAN.NS, gw})
	}
	return ps
}

// keptPaths must work throughout: management, and the healthy sites.
func (l *linuxDemo) keptPaths() []demoPath {
	a, b := l.peers[0], l.peers[1]
	return []demoPath{
		{"mgmt -> gateway", l.lab.Mgmt().NS, l.target.Gateway},
		{"peer lan " + a.Name + " -> peer lan " + b.Name, a.LAN.NS, b.LAN},
	}
}

// probe runs TCP, UDP and ICMP over IPv4 and IPv6 on every path in
// parallel; want is what containment requires of them.
func (l *linuxDemo) probe(ctx context.Context, phase string, want bool, paths ...demoPath) []LinuxProbe {
	wait := linuxOKWait
	if !want {
		wait = linuxCutWait
	}
	var (
		mu  sync.Mutex
		out []LinuxProbe
		g   errgroup.Group
	)
	g.SetLimit(16)
	for _, p := range paths {
		for _, a := range p.to.Addrs() {
			fam := "ipv4"
			if a.Is6() {
				fam = "ipv6"
			}
			ap := netip.AddrPortFrom(a, linuxEchoPort)
			for _, proto := range []string{"tcp", "udp", "icmp"} {
				g.Go(func() error {
					var err error
					switch proto {
					case "tcp":
						err = l.lab.TCPConnect(ctx, p.from, ap, wait)
					case "udp":
						err = l.lab.UDPEcho(ctx, p.from, ap, wait)
					default:
						err = l.lab.Ping(ctx, p.from, a, wait)
					}
					mu.Lock()
					out = append(out, LinuxProbe{Phase: phase, Path: p.name, Proto: proto, Family: fam, Reachable: err == nil, Want: want})
					mu.Unlock()
					return nil
				})
			}
		}
	}
	_ = g.Wait()
	return out
}

func asWanted(ps []LinuxProbe) bool {
	for _, p := range ps {
		if p.Reachable != p.Want {
			return false
		}
	}
	return len(ps) > 0
}

func allAlive(ss []*netlab.Session, wait time.Duration) bool {
	for _, s := range ss {
		if s.Alive(wait) != nil {
			return false
		}
	}
	return len(ss) > 0
}

func anyAlive(ss []*netlab.Session, wait time.Duration) bool {
	alive := false
	for _, s := range ss {
		alive = s.Alive(wait) == nil || alive
	}
	return alive
}

// Summary renders the Linux demo's outcome for people.
func (r LinuxResult) Summary(w io.Writer) error {
	var b strings.Builder
	if r.Skipped {
		fmt.Fprintf(&b, "Linux agent demo skipped: %s\n", r.SkipReason)
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "Warden demo, Linux path: network namespaces %s-*, 3 sites, a C2 server, a management network\n", r.Lab)
	fmt.Fprintf(&b, "Agent   %s (%s backend) on %s\n", r.AgentMode, r.Backend, r.Gateway)
	fmt.Fprintf(&b, "Alert   c2_beacon for %s -> run %s (%s), incident %s\n\nSteps\n", r.Gateway, r.RunID, r.RunState, r.IncidentID)
	for i, s := range r.Steps {
		fmt.Fprintf(&b, "  %d. %-17s %-9s %5d ms  %s%s\n", i+1, s.Name, s.Status, s.DurationMS, s.Summary, errSuffix(s.Error))
	}
	fmt.Fprintf(&b, "\nC2 session (IPv4 and IPv6) alive before: %t, after: %t (established flows killed: %d)\n", r.C2SessionAliveBefore, r.C2SessionAliveAfter, r.KilledFlows)
	fmt.Fprintf(&b, "Rules enforced and read back: %t; management reachable while isolated: %t\n", r.RulesEnforced, r.ManagementReachable)
	for _, phase := range []string{"before", "isolated", "released"} {
		fmt.Fprintf(&b, "Probes %-8s %s\n", phase, probeLine(r.Probes, phase))
	}
	fmt.Fprintf(&b, "\nVerified containment: %t\n", r.Verified)
	fmt.Fprintf(&b, "Time to contain (alert accepted -> quarantine enforced and verified): %.1f ms\n", r.TimeToContainMS)
	fmt.Fprintf(&b, "Release: %s; traffic restored (v4+v6): %t\n", r.ReleaseRunState, r.TrafficRestored)
	fmt.Fprintf(&b, "  requested by %s (overridden by %s), approved by %s\n", orDash(r.ReleaseRequestedBy), orDash(r.ReleaseOverriddenBy), orDash(r.ReleaseApprovedBy))
	if r.SelfApprovalRefused != "" {
		fmt.Fprintf(&b, "  the requester's own approval was refused: %s\n", r.SelfApprovalRefused)
	}
	if len(r.People) > 0 {
		fmt.Fprintf(&b, "\nPeople (each with an API token of their own; the audit, the runs and the reports name them)\n%s", peopleLines(r.People))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// probeLine counts a phase's probes: how many were reachable and cut, and
// how many disagreed with what containment requires.
func probeLine(ps []LinuxProbe, phase string) string {
	var reach, cut, wrong int
	var bad []string
	for _, p := range ps {
		if p.Phase != phase {
			continue
		}
		if p.Reachable {
			reach++
		} else {
			cut++
		}
		if p.Reachable != p.Want {
			wrong++
			if len(bad) < 3 {
				bad = append(bad, fmt.Sprintf("%s %s/%s", p.Path, p.Proto, p.Family))
			}
		}
	}
	s := fmt.Sprintf("%3d reachable, %3d cut, %d unexpected", reach, cut, wrong)
	if len(bad) > 0 {
		s += " (" + strings.Join(bad, "; ") + ")"
	}
	return s
}
