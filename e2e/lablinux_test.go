package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/agenttest"
	"github.com/warden-ir/warden/agent/netfilter"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/demo"
	"github.com/warden-ir/warden/internal/testsupport"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
	"github.com/warden-ir/warden/store"
)

// The Linux lab: a netlab internet with three VPN sites, the attacker's C2
// server and a management network. The controller (`warden serve`) runs as
// a process inside the management namespace and the agent (`warden agent`)
// as a process inside the compromised gateway's namespace, both the real
// binary. The test talks to both from its own process through sockets it
// creates inside the management namespace, so every byte it exchanges with
// them crosses the lab's routers and the gateway's quarantine like the
// controller's own.

const (
	echoPort   = 7
	agentPort  = 8443
	apiPort    = 8780
	okWait     = 5 * time.Second        // a probe that must succeed
	cutWait    = 400 * time.Millisecond // a probe that must fail
	targetSite = "osaka"
)

// linuxLabOptions shape a lab.
type linuxLabOptions struct {
	// Prefix names the lab's namespaces; unique among concurrent labs.
	Prefix string
	// Steps are the actions of the containment runbook the c2_beacon
	// policy starts.
	Steps []string
	// Reconcile is the controller's reconcile interval.
	Reconcile time.Duration
	// ConfirmWindow and HealInterval are the agent's flags.
	ConfirmWindow, HealInterval time.Duration
	// Bench lifts the blast-radius guards and makes every alert open a
	// fresh incident, so one gateway can be contained again and again.
	Bench bool
	// AgentArgs are extra flags of the agent (--baseline-root, ...).
	AgentArgs []string
	// QuietTarget starts no echo server in the compromised gateway's
	// namespace, so that the agent is its only listener (a hardened
	// gateway's listener check would flag the echo port).
	QuietTarget bool
	// Configure, when set, adjusts the controller's configuration last,
	// before it is validated and written.
	Configure func(cfg *config.Config)
}

// linuxLab is a running lab with its controller and agent.
type linuxLab struct {
	tb      testing.TB
	opt     linuxLabOptions
	lab     *netlab.Lab
	bin     string
	dir     string
	target  netlab.Site
	peers   []netlab.Site
	gwID    string
	storeDB string

	agentArgs []string
	agentMu   sync.Mutex
	agentProc *nsProc
	ctrl      *nsProc

	people *crew
	api    *apiNS
	agent  *agentCaller
}

// newLinuxLab builds the lab, the key material and the configuration,
// starts the agent and the controller, and waits until both answer. Every
// namespace and process is gone when the test ends, pass or fail.
func newLinuxLab(tb testing.TB, opt linuxLabOptions) *linuxLab {
	tb.Helper()
	netlabtest.Skip(tb, "nft")
	if opt.ConfirmWindow == 0 {
		opt.ConfirmWindow = 2 * time.Second
	}
	if opt.HealInterval == 0 {
		// The agent's own self-heal is proven in package agent; here it is
		// held off so that every repair seen is the controller's.
		opt.HealInterval = time.Hour
	}
	if opt.Reconcile == 0 {
		opt.Reconcile = time.Hour
	}
	bin := buildWarden(tb)
	lab, err := netlab.New(tb.Context(), netlab.Options{Prefix: opt.Prefix, Sites: []string{"hq", targetSite, "dc"}})
	if err != nil {
		tb.Fatalf("building the namespace lab: %v", err)
	}
	tb.Cleanup(func() {
		if err := lab.Close(); err != nil {
			tb.Errorf("tearing the lab down: %v", err)
		}
	})
	l := &linuxLab{tb: tb, opt: opt, lab: lab, bin: bin, dir: tb.TempDir()}
	for _, s := range lab.Sites() {
		if s.Name == targetSite {
			l.target = s
		} else {
			l.peers = append(l.peers, s)
		}
	}
	l.gwID = "gw-" + targetSite

	// Echo servers everywhere a probe may aim.
	for _, n := range l.echoNodes() {
		if opt.QuietTarget && n.NS == l.target.Gateway.NS {
			continue
		}
		if _, err := lab.ServeEcho(n.NS, netip.AddrPortFrom(netip.IPv6Unspecified(), echoPort)); err != nil {
			tb.Fatalf("starting echo server in %s: %v", n.NS, err)
		}
	}

	// Each gateway runs a stateful firewall of its own, as real gateways
	// do: conntrack tracks their flows, so isolation has established
	// sessions to kill (and its drop must win over this accept).
	for _, s := range lab.Sites() {
		for _, c := range [][]string{
			{"nft", "add", "table", "inet", "site"},
			{"nft", "add", "chain", "inet", "site", "sitein", "{", "type", "filter", "hook", "input", "priority", "0", ";", "policy", "accept", ";", "}"},
			{"nft", "add", "chain", "inet", "site", "sitefwd", "{", "type", "filter", "hook", "forward", "priority", "0", ";", "policy", "accept", ";", "}"},
			{"nft", "add", "rule", "inet", "site", "sitein", "ct", "state", "established,related", "accept"},
			{"nft", "add", "rule", "inet", "site", "sitefwd", "ct", "state", "established,related", "accept"},
		} {
			if out, err := lab.Run(tb.Context(), s.Gateway.NS, c...); err != nil {
				tb.Fatalf("installing the site firewall of %s: %v\n%s", s.Name, err, out)
			}
		}
	}

	pki := filepath.Join(l.dir, "pki")
	l.runHost("agent", "init", "--dir", pki, "--ip", l.target.Gateway.V4.String(), "--ip", l.target.Gateway.V6.String())
	l.writeConfig(pki)

	mgmt := lab.Mgmt().NS
	l.api = &apiNS{base: "http://" + netip.AddrPortFrom(lab.Mgmt().V4, apiPort).String(), people: l.people, c: nsHTTPClient(mgmt, nil)}
	l.agent = newAgentCaller(tb, mgmt, pki, l.agentURL())

	l.agentArgs = []string{"agent",
		"--listen", "[::]:" + fmt.Sprint(agentPort),
		"--cert", filepath.Join(pki, agent.AgentCertFile),
		"--key", filepath.Join(pki, agent.AgentKeyFile),
		"--client-ca", filepath.Join(pki, agent.CAFile),
		"--state-dir", filepath.Join(l.dir, "agent-state"),
		"--confirm-window", opt.ConfirmWindow.String(),
		"--heal-interval", opt.HealInterval.String(),
		"--backend", "nftables",
		"--vici-socket=",
		"--log-level", "debug",
	}
	l.agentArgs = append(l.agentArgs, opt.AgentArgs...)
	l.startAgent()
	l.ctrl = startInNS(tb, "controller", mgmt, bin, "serve", "-c", filepath.Join(l.dir, "warden.yaml"), "--log-level", "debug")
	// The processes' logs are shown when the test fails, or always with
	// E2E_LOGS=1 (to read the agent's per-command timings, for example);
	// E2E_LOGS_DIR=DIR writes them to DIR/PREFIX-controller.log and
	// DIR/PREFIX-agent.log (a benchmark's output truncates long logs).
	tb.Cleanup(func() {
		if d := os.Getenv("E2E_LOGS_DIR"); d != "" {
			_ = os.WriteFile(filepath.Join(d, opt.Prefix+"-controller.log"), []byte(l.ctrl.log.String()), 0o600)
			_ = os.WriteFile(filepath.Join(d, opt.Prefix+"-agent.log"), []byte(l.agentProc.log.String()), 0o600)
		}
		if tb.Failed() || os.Getenv("E2E_LOGS") != "" {
			tb.Logf("controller log:\n%s", l.ctrl.log.String())
			l.agentMu.Lock()
			tb.Logf("agent log:\n%s", l.agentProc.log.String())
			l.agentMu.Unlock()
		}
	})
	l.waitFor("controller ready", 30*time.Second, func() (bool, error) {
		if l.ctrl.exited() {
			tb.Fatalf("controller exited: %v", l.ctrl.err)
		}
		code, _, err := l.api.as(v1.RoleAdmin).do(tb.Context(), http.MethodGet, "/readyz", nil)
		return code == http.StatusOK, err
	})
	l.people.add(tb, l.api.base, client.WithHTTPClient(l.api.c))
	return l
}

func (l *linuxLab) runHost(args ...string) {
	l.tb.Helper()
	out, err := exec.CommandContext(l.tb.Context(), l.bin, args...).CombinedOutput()
	if err != nil {
		l.tb.Fatalf("warden %v: %v\n%s", args, err, out)
	}
}

func (l *linuxLab) agentURL() string {
	return "https://" + netip.AddrPortFrom(l.target.Gateway.V4, agentPort).String()
}

// echoNodes are every node of the lab.
func (l *linuxLab) echoNodes() []netlab.Node {
	out := []netlab.Node{l.lab.C2(), l.lab.Mgmt()}
	for _, s := range l.lab.Sites() {
		out = append(out, s.Gateway, s.LAN)
	}
	return out
}

// labControllerAuth points cfg at the bootstrap admin's token, written to
// dir (the admin adds the lab's people once the controller runs:
// crew.add), and at the controller's client certificate for the agents,
// in pki.
func labControllerAuth(tb testing.TB, cfg *config.Config, dir, pki string) *crew {
	tb.Helper()
	people := bootstrapAdmin(tb, cfg, dir)
	cfg.Agents = config.Agents{CertFile: filepath.Join(pki, agent.ControllerCertFile), KeyFile: filepath.Join(pki, agent.ControllerKeyFile), CAFile: filepath.Join(pki, agent.CAFile)}
	return people
}

// writeConfig writes the controller's configuration and policies: the
// inventory of the three sites (only the compromised gateway runs an
// agent, none has a VM), the management networks of the lab, and one
// policy sending c2_beacon to the containment runbook.
func (l *linuxLab) writeConfig(pki string) {
	l.tb.Helper()
	polDir := filepath.Join(l.dir, "policies")
	if err := os.MkdirAll(polDir, 0o700); err != nil {
		l.tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(polDir, "linux.yaml"), []byte(demo.LinuxPolicySet(l.opt.Steps...)), 0o600); err != nil {
		l.tb.Fatal(err)
	}
	inv := demo.LabInventory(l.lab, targetSite, l.agentURL())
	cfg := config.Defaults()
	cfg.Server.Listen = netip.AddrPortFrom(l.lab.Mgmt().V4, apiPort).String()
	l.storeDB = filepath.Join(l.dir, "warden.db")
	cfg.Store.Path = l.storeDB
	cfg.Policies.Dir = polDir
	l.people = labControllerAuth(l.tb, &cfg, l.dir, pki)
	cfg.Inventory = inv
	cfg.Reconcile.Interval = l.opt.Reconcile
	cfg.Executor.BackoffBase, cfg.Executor.BackoffMax, cfg.Executor.MaxAttempts = 50*time.Millisecond, 500*time.Millisecond, 3
	if l.opt.Bench {
		cfg.Guards.MaxAutoIsolationsPerSite, cfg.Guards.MaxAutoIsolationsFleet = 1<<30, 1<<30
		cfg.Guards.BreakerMinGateways = 1 << 30
		cfg.Intake.DedupWindow, cfg.Intake.IncidentWindow = time.Nanosecond, time.Nanosecond
	}
	if l.opt.Configure != nil {
		l.opt.Configure(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		l.tb.Fatalf("lab configuration: %v", err)
	}
	writeConfig(l.tb, l.dir, cfg)
}

// startAgent starts `warden agent` inside the compromised gateway's
// namespace and waits until the test reaches it from the management
// network.
func (l *linuxLab) startAgent() {
	l.tb.Helper()
	p := startInNS(l.tb, "agent", l.target.Gateway.NS, append([]string{l.bin}, l.agentArgs...)...)
	l.agentMu.Lock()
	l.agentProc = p
	l.agentMu.Unlock()
}

// waitAgent waits until the agent answers an observe over mutual TLS.
func (l *linuxLab) waitAgent() wire.State {
	l.tb.Helper()
	var st wire.State
	l.waitFor("agent answering", 30*time.Second, func() (bool, error) {
		if l.agentProc.exited() {
			l.tb.Fatalf("agent exited: %v\n%s", l.agentProc.err, l.agentProc.log.String())
		}
		code, err := l.agent.send(l.tb.Context(), wire.KindObserve, nil, &st)
		return code == http.StatusOK, err
	})
	return st
}

func (l *linuxLab) waitFor(what string, timeout time.Duration, cond func() (bool, error)) {
	l.tb.Helper()
	waitFor(l.tb, what, timeout, cond)
}

// stopAndVerifyAudit stops the controller, opens its store (closed when
// the test ends), verifies the audit chain and returns every entry.
func (l *linuxLab) stopAndVerifyAudit(ctx context.Context, t *testing.T) (*store.Store, []audit.Entry) {
	t.Helper()
	l.ctrl.stop()
	st, err := store.Open(ctx, l.storeDB, "full")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := audit.Verify(ctx, st.DB()); err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	entries, err := audit.List(ctx, st.DB(), "")
	if err != nil {
		t.Fatal(err)
	}
	return st, entries
}

// rulesInKernel reports whether Warden's nftables table exists in the
// gateway's namespace, read with the nft tool rather than through Warden.
func (l *linuxLab) rulesInKernel() bool {
	l.tb.Helper()
	_, err := l.lab.Run(l.tb.Context(), l.target.Gateway.NS, "nft", "list", "table", "inet", netfilter.NFTTable)
	return err == nil
}

// flushRulesByHand deletes Warden's table as an intruder or a careless
// admin would.
func (l *linuxLab) flushRulesByHand() {
	l.tb.Helper()
	if out, err := l.lab.Run(l.tb.Context(), l.target.Gateway.NS, "nft", "delete", "table", "inet", netfilter.NFTTable); err != nil {
		l.tb.Fatalf("flushing the quarantine by hand: %v\n%s", err, out)
	}
}

// cutTable is the table the lab's internet router uses to cut the
// management network off.
const cutTable = "e2ecut"

// cutManagement makes the internet router drop everything to and from the
// management network (controller and test alike); restoreManagement undoes
// it. Links stay up, so no address or route is lost.
func (l *linuxLab) cutManagement() {
	l.tb.Helper()
	ns := l.lab.WAN().NS
	cmds := [][]string{
		{"nft", "add", "table", "inet", cutTable},
		{"nft", "add", "chain", "inet", cutTable, "cutfwd", "{", "type", "filter", "hook", "forward", "priority", "0", ";", "policy", "accept", ";", "}"},
	}
	for _, p := range l.lab.ManagementPrefixes() {
		fam := "ip"
		if p.Addr().Is6() {
			fam = "ip6"
		}
		cmds = append(cmds,
			[]string{"nft", "add", "rule", "inet", cutTable, "cutfwd", fam, "saddr", p.String(), "drop"},
			[]string{"nft", "add", "rule", "inet", cutTable, "cutfwd", fam, "daddr", p.String(), "drop"})
	}
	for _, c := range cmds {
		if out, err := l.lab.Run(l.tb.Context(), ns, c...); err != nil {
			l.tb.Fatalf("cutting the management path: %v\n%s", err, out)
		}
	}
	l.tb.Cleanup(func() { _, _ = l.lab.Run(context.Background(), ns, "nft", "delete", "table", "inet", cutTable) })
}

func (l *linuxLab) restoreManagement() {
	l.tb.Helper()
	if out, err := l.lab.Run(l.tb.Context(), l.lab.WAN().NS, "nft", "delete", "table", "inet", cutTable); err != nil {
		l.tb.Fatalf("restoring the management path: %v\n%s", err, out)
	}
	// Connections pooled before the cut may have stalled; start afresh.
	l.agent.c.CloseIdleConnections()
	l.api.c.CloseIdleConnections()
}

// path is one direction of traffic between two lab nodes.
type path struct {
	name string
	from string // namespace
	to   netlab.Node
}

// cutPaths are the paths the compromised gateway's quarantine must cut:
// the gateway to the C2 server, to its peers' gateways and LANs, the
// reverse directions, and its own LAN to the C2 server through it.
func (l *linuxLab) cutPaths() []path {
	gw := l.target.Gateway
	ps := []path{
		{"gateway -> c2", gw.NS, l.lab.C2()},
		{"c2 -> gateway", l.lab.C2().NS, gw},
		{"own lan -> c2 through the gateway", l.target.LAN.NS, l.lab.C2()},
	}
	for _, p := range l.peers {
		ps = append(ps,
			path{"gateway -> peer gateway " + p.Name, gw.NS, p.Gateway},
			path{"gateway -> peer lan " + p.Name, gw.NS, p.LAN},
			path{"peer gateway " + p.Name + " -> gateway", p.Gateway.NS, gw},
			path{"peer lan " + p.Name + " -> gateway", p.LAN.NS, gw})
	}
	return ps
}

// keptPaths must work through the quarantine (management) or are not the
// quarantine's business (the healthy sites among themselves and to the
// internet).
func (l *linuxLab) keptPaths() []path {
	gw := l.target.Gateway
	a, b := l.peers[0], l.peers[1]
	return []path{
		{"mgmt -> gateway", l.lab.Mgmt().NS, gw},
		{"gateway -> mgmt", gw.NS, l.lab.Mgmt()},
		{"peer lan " + a.Name + " -> peer lan " + b.Name, a.LAN.NS, b.LAN},
		{"peer gateway " + b.Name + " -> c2", b.Gateway.NS, l.lab.C2()},
	}
}

// probe runs TCP, UDP and ICMP over IPv4 and IPv6 on every path, in
// parallel, and returns one line for every probe whose outcome differs
// from want (reachable or not).
func (l *linuxLab) probe(ctx context.Context, want bool, paths ...path) []string {
	wait := okWait
	if !want {
		wait = cutWait
	}
	var (
		mu  sync.Mutex
		bad []string
		g   errgroup.Group
	)
	g.SetLimit(24)
	record := func(p path, what string, err error) {
		if (err == nil) == want {
			return
		}
		got := "reachable"
		if err != nil {
			got = "unreachable (" + err.Error() + ")"
		}
		mu.Lock()
		bad = append(bad, fmt.Sprintf("%s, %s: %s", p.name, what, got))
		mu.Unlock()
	}
	for _, p := range paths {
		for _, a := range p.to.Addrs() {
			ap := netip.AddrPortFrom(a, echoPort)
			g.Go(func() error { record(p, "tcp "+ap.String(), l.lab.TCPConnect(ctx, p.from, ap, wait)); return nil })
			g.Go(func() error { record(p, "udp "+ap.String(), l.lab.UDPEcho(ctx, p.from, ap, wait)); return nil })
			g.Go(func() error { record(p, "icmp "+a.String(), l.lab.Ping(ctx, p.from, a, wait)); return nil })
		}
	}
	_ = g.Wait()
	return bad
}

// expectReachable and expectCut fail the test with every probe that
// disagrees.
func (l *linuxLab) expectReachable(t testing.TB, paths ...path) {
	t.Helper()
	for _, b := range l.probe(t.Context(), true, paths...) {
		t.Errorf("want reachable: %s", b)
	}
}

func (l *linuxLab) expectCut(t testing.TB, paths ...path) {
	t.Helper()
	for _, b := range l.probe(t.Context(), false, paths...) {
		t.Errorf("want cut: %s", b)
	}
}

// nsProc is a process started inside a namespace with `ip netns exec`,
// which execs in place: the process's pid is the program's own.
type nsProc struct {
	name string
	cmd  *exec.Cmd
	log  *testsupport.SyncBuffer
	done chan struct{}
	err  error
}

func startInNS(tb testing.TB, name, ns string, argv ...string) *nsProc {
	tb.Helper()
	p := &nsProc{name: name, log: &testsupport.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	// Should the test binary die, take the process with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("starting %s in %s: %v", name, ns, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(p.stop)
	return p
}

func (p *nsProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *nsProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the process to end (SIGTERM), then kills it after a grace
// period. Idempotent.
func (p *nsProc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

// nsHTTPClient is an HTTP client whose every connection is a socket created
// inside namespace ns.
func nsHTTPClient(ns string, tlsConf *tls.Config) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: tlsConf,
			DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
				err = netlab.Do(ns, func() error {
					var d net.Dialer
					conn, err = d.DialContext(ctx, network, addr)
					return err
				})
				return conn, err
			},
			MaxIdleConnsPerHost: 4,
		},
	}
}

// apiNS calls the controller's HTTP API from the management namespace,
// through the API client over c (a namespaced dialer), as one of the lab's
// people.
type apiNS struct {
	base   string
	people *crew
	// role names whose token the calls carry (crew.token): the responder
	// when empty.
	role string
	c    *http.Client
}

// as is a, calling as the person with role (sharing a's connections).
func (a *apiNS) as(role string) *apiNS {
	b := *a
	b.role = role
	return &b
}

// client is the API client for a (making one does no I/O; c's connections
// are shared).
func (a *apiNS) client(tb testing.TB) *client.Client {
	tb.Helper()
	c, err := client.New(a.base, a.people.token(a.role), client.WithHTTPClient(a.c))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// do sends a request and returns the status and the answer: the JSON of a
// 2xx, the API's error message otherwise.
func (a *apiNS) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	c, err := client.New(a.base, a.people.token(a.role), client.WithHTTPClient(a.c))
	if err != nil {
		return 0, nil, err
	}
	return callAPI(ctx, c, method, path, body)
}

// call does a request that must answer want and decodes the answer.
func (a *apiNS) call(tb testing.TB, method, path string, body []byte, want int, out any) {
	tb.Helper()
	code, data, err := a.do(tb.Context(), method, path, body)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	if code != want {
		tb.Fatalf("%s %s: %d, want %d: %s", method, path, code, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			tb.Fatalf("%s %s: decoding %s: %v", method, path, data, err)
		}
	}
}

// submitC2 posts a c2_beacon indicator for the gateway as the detector and
// returns the incident and the run it started.
func (a *apiNS) submitC2(tb testing.TB, gw string, c2 netlab.Node, n int) (incident, run string) {
	tb.Helper()
	out, err := a.as(v1.RoleIntake).client(tb).SubmitIndicators(tb.Context(), v1.Indicator{
		Kind: "c2_beacon", Gateway: gw, Severity: "critical", Confidence: 0.9, Source: "e2e-ids",
		Summary:     fmt.Sprintf("beacon %d from %s to the C2 server", n, gw),
		Observables: &v1.Observables{IPs: []string{c2.V4.String(), c2.V6.String()}},
		Labels:      map[string]string{"n": fmt.Sprint(n)},
	})
	if err != nil {
		tb.Fatalf("submitting the indicator: %v", err)
	}
	if len(out.Results) != 1 || !out.Results[0].Matched || out.Results[0].RunID == "" {
		tb.Fatalf("indicator started no run: %+v", out)
	}
	return out.Results[0].IncidentID, out.Results[0].RunID
}

// waitRun polls a run until it is terminal.
func (a *apiNS) waitRun(tb testing.TB, id string, poll time.Duration) store.Run {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var r store.Run
		a.call(tb, http.MethodGet, "/v1/runs/"+id, nil, http.StatusOK, &r)
		if r.Terminal() {
			return r
		}
		if time.Now().After(deadline) {
			tb.Fatalf("run %s still %s after 2m", id, r.State)
		}
		time.Sleep(poll)
	}
}

// release starts release-gateway for gw, waits for it and fails unless it
// succeeded.
func (a *apiNS) release(tb testing.TB, gw, incident string) {
	tb.Helper()
	// The lab gateway shares the host's files, so its baseline is not a
	// gateway's; the responder overrides that gate with a reason and the
	// approver approves (release is never automatic).
	r, err := a.as(v1.RoleResponder).client(tb).Release(tb.Context(), v1.StartRunbookRequest{Gateway: gw, Incident: incident,
		OverrideReason: "e2e lab: the namespace shares the host's files, no gateway baseline to check"})
	if err != nil {
		tb.Fatalf("asking for the release: %v", err)
	}
	if r.State != v1.RunAwaitingApproval {
		tb.Fatalf("release did not wait for approval: %s", r.State)
	}
	if _, err := a.as(v1.RoleApprover).client(tb).Approve(tb.Context(), r.ID, v1.ApproveRequest{}); err != nil {
		tb.Fatalf("approving the release: %v", err)
	}
	if run := a.waitRun(tb, r.ID, 10*time.Millisecond); run.State != store.RunSucceeded {
		tb.Fatalf("release %s: %s", run.State, run.Error)
	}
}

// posture reads GET /v1/gateways/{id}.
func (a *apiNS) posture(tb testing.TB, gw string) v1.Posture {
	tb.Helper()
	g, err := a.client(tb).Gateway(tb.Context(), gw)
	if err != nil {
		tb.Fatalf("reading gateway %s: %v", gw, err)
	}
	return g.Posture
}

// agentCaller sends agent commands over mutual TLS with the controller's
// certificate, from the management namespace: a second controller, as a
// responder with the key material would be.
type agentCaller struct {
	url string
	c   *http.Client
}

func newAgentCaller(tb testing.TB, ns, pki, base string) *agentCaller {
	tb.Helper()
	c := nsHTTPClient(ns, agenttest.ControllerTLS(tb, pki))
	c.Timeout = 5 * time.Second
	return &agentCaller{url: base + wire.CommandsPath, c: c}
}

// send posts one command and decodes a 200 answer into out. It returns the
// status; a non-200 answer is returned as an error with the agent's
// message.
func (a *agentCaller) send(ctx context.Context, kind string, params, out any) (int, error) {
	cmd, err := wire.NewCommand(kind, params, time.Now(), 30*time.Second)
	if err != nil {
		return 0, err
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		var e wire.Error
		_ = json.Unmarshal(data, &e)
		return resp.StatusCode, errors.New(e.Error)
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(data, out)
	}
	return resp.StatusCode, nil
}

// observe must succeed.
func (a *agentCaller) observe(tb testing.TB) wire.State {
	tb.Helper()
	var st wire.State
	if code, err := a.send(tb.Context(), wire.KindObserve, nil, &st); err != nil || code != http.StatusOK {
		tb.Fatalf("observing the agent: %d %v", code, err)
	}
	return st
}

// openC2Sessions opens a TCP session from the target gateway to each of
// the C2 server's addresses (IPv4 and IPv6).
func (l *linuxLab) openC2Sessions(tb testing.TB) []*netlab.Session {
	tb.Helper()
	var sessions []*netlab.Session
	for _, a := range l.lab.C2().Addrs() {
		s, err := l.lab.OpenSession(tb.Context(), l.target.Gateway.NS, netip.AddrPortFrom(a, echoPort))
		if err != nil {
			tb.Fatalf("opening the C2 session: %v", err)
		}
		sessions = append(sessions, s)
	}
	return sessions
}

// stepOf returns the run's step for action.
func stepOf(tb testing.TB, r store.Run, action string) store.Step {
	tb.Helper()
	for _, s := range r.Steps {
		if s.Action == action {
			return s
		}
	}
	tb.Fatalf("run %s has no %s step: %+v", r.ID, action, r.Steps)
	return store.Step{}
}
