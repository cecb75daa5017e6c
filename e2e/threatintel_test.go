package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/demo"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

// TestSOCFormatsEndToEnd proves issue #18 with the real pieces: `warden
// serve` in the management namespace and `warden agent` on every site
// gateway of a namespace lab, whose C2 server also answers on addresses
// outside the lab's reserved ranges (netlab.C2Public).
//
//   - A Suricata EVE stream with an IKE weak-crypto alert about gw-osaka's
//     address starts the policy for it.
//   - An orchestrator's OpenC2 `deny ipv4_connection` (a responder's token)
//     blocks the C2 server's public IPv4 address at every gateway: from each
//     site's LAN it no longer answers, and each gateway's kernel holds it;
//     `query features` answers per the SLPF profile; `delete
//     slpf:rule_number` lifts it and traffic flows again.
//   - A STIX bundle with C2 indicators for both public addresses blocks them
//     at every gateway (IPv4 and IPv6, read back from each kernel); a
//     private-range and a /8 indicator in the same bundle wait for approval
//     and reach no gateway.
//   - A CACAO export of a default runbook validates against the schema (the
//     cacao package's test); here the command answers a playbook.
func TestSOCFormatsEndToEnd(t *testing.T) {
	netlabtest.Skip(t, "nft")
	l := newSOCLab(t)
	ctx := t.Context()

	// 1. Suricata: the IKE weak-crypto alert starts the matching policy.
	eve, err := os.ReadFile(filepath.Join("..", "intake", "testdata", "suricata_ike_weak_crypto.json"))
	if err != nil {
		t.Fatal(err)
	}
	osaka := l.site("osaka")
	eve = []byte(strings.ReplaceAll(string(eve), "203.0.113.20", osaka.Gateway.V4.String()))
	got, err := l.api.as(v1.RoleIntake).client(t).SubmitFormat(ctx, "suricata", eve)
	if err != nil {
		t.Fatalf("posting the EVE stream: %v", err)
	}
	if len(got.Results) != 1 || got.Results[0].Gateway != "gw-osaka" || got.Results[0].Policy != "suricata-ike-weak-crypto" || got.Results[0].RunID == "" {
		t.Fatalf("the IKE weak-crypto alert: %+v, want gw-osaka's policy suricata-ike-weak-crypto with a run", got)
	}
	if got.Ignored["ike"] != 1 || got.Ignored["stats"] != 1 {
		t.Errorf("ignored %v, want the ike and stats records counted", got.Ignored)
	}

	c2v4 := netip.AddrPortFrom(netlab.C2Public[0], echoPort)
	c2v6 := netip.AddrPortFrom(netlab.C2Public[1], echoPort)
	l.expectFromEveryLAN(t, c2v4, true)
	l.expectFromEveryLAN(t, c2v6, true)

	// 2. OpenC2: query features, then deny the C2's IPv4 address.
	soar := l.api.as(v1.RoleResponder)
	var features v1.OpenC2Message
	l.openC2(t, soar, "feat-1", `{"action": "query", "target": {"features": ["versions", "profiles", "pairs", "rate_limit"]}}`, http.StatusOK, &features)
	res := features.Body.OpenC2.Response
	if res == nil || res.Status != 200 || res.Results == nil || !slices.Contains(res.Results.Versions, "1.0") || !slices.Contains(res.Results.Profiles, "slpf") ||
		!slices.Contains(res.Results.Pairs["deny"], "ipv4_connection") || !slices.Contains(res.Results.Pairs["delete"], "slpf:rule_number") || res.Results.RateLimit <= 0 {
		t.Fatalf("query features: %+v", res)
	}
	var denied v1.OpenC2Message
	l.openC2(t, soar, "deny-1", fmt.Sprintf(`{"action": "deny", "target": {"ipv4_connection": {"src_addr": %q, "dst_addr": %q, "dst_port": %d, "protocol": "tcp"}},
		"args": {"response_requested": "complete", "slpf": {"drop_process": "none"}}}`, osaka.LAN.V4, netlab.C2Public[0], echoPort), http.StatusOK, &denied)
	dres := denied.Body.OpenC2.Response
	if dres == nil || dres.Status != 200 || dres.Results == nil || dres.Results.SLPF == nil || dres.Results.SLPF.RuleNumber <= 0 {
		t.Fatalf("deny ipv4_connection: %+v", dres)
	}
	rule := dres.Results.SLPF.RuleNumber
	l.waitHeld(t, netlab.C2Public[0].String()+"/32", true)
	l.expectFromEveryLAN(t, c2v4, false)
	l.expectFromEveryLAN(t, c2v6, true)
	var deleted v1.OpenC2Message
	l.openC2(t, soar, "delete-1", fmt.Sprintf(`{"action": "delete", "target": {"slpf:rule_number": %d}, "args": {"response_requested": "complete"}}`, rule), http.StatusOK, &deleted)
	l.waitHeld(t, netlab.C2Public[0].String()+"/32", false)
	l.expectFromEveryLAN(t, c2v4, true)

	// 3. STIX: both public C2 addresses blocked everywhere; the unsafe ones wait.
	bundle := stixBundleOf(
		"[ipv4-addr:value = '"+netlab.C2Public[0].String()+"']",
		"[ipv6-addr:value = '"+netlab.C2Public[1].String()+"']",
		"[ipv4-addr:value = '10.66.0.0/16']",
		"[ipv4-addr:value = '45.0.0.0/8']",
	)
	intel, err := l.api.as(v1.RoleIntake).client(t).SubmitThreatIntel(ctx, "stix", bundle)
	if err != nil {
		t.Fatalf("posting the STIX bundle: %v", err)
	}
	var states []string
	for _, b := range intel.Blocks {
		states = append(states, b.State)
	}
	if strings.Join(states, ",") != "active,active,pending_approval,pending_approval" {
		t.Fatalf("STIX blocks %+v, want two active and the private and /8 ones waiting", intel.Blocks)
	}
	if !strings.Contains(strings.Join(intel.Blocks[2].Unsafe, ";"), "private") || !strings.Contains(strings.Join(intel.Blocks[3].Unsafe, ";"), "wider than /16") {
		t.Errorf("why approval: %q and %q", intel.Blocks[2].Unsafe, intel.Blocks[3].Unsafe)
	}
	l.waitHeld(t, netlab.C2Public[0].String()+"/32", true)
	l.waitHeld(t, netlab.C2Public[1].String()+"/128", true)
	l.expectFromEveryLAN(t, c2v4, false)
	l.expectFromEveryLAN(t, c2v6, false)
	for _, s := range l.lab.Sites() {
		set := l.kernelSet(t, s)
		if strings.Contains(set, "10.66.") || strings.Contains(set, "45.0.0.0") {
			t.Errorf("%s holds a block that waits for approval:\n%s", s.Gateway.NS, set)
		}
	}
	// The controller read every gateway's set back and found it in sync.
	var list v1.BlockList
	l.api.call(t, http.MethodGet, "/v1/blocks", nil, http.StatusOK, &list)
	if len(list.Gateways) != 3 {
		t.Fatalf("gateway block status %+v, want the three gateways", list.Gateways)
	}
	for _, g := range list.Gateways {
		if !g.InSync || g.Count != 2 {
			t.Errorf("%s: %+v, want in sync holding 2 prefixes", g.Gateway, g)
		}
	}

	// 4. CACAO: the export is a playbook (validated against the official
	// schemas in package cacao's tests).
	out, err := runWarden(ctx, l.bin, "runbook", "export", "tell-people", "--format", "cacao", "-c", filepath.Join(l.dir, "warden.yaml"))
	if err != nil {
		t.Fatalf("runbook export: %v\n%s", err, out)
	}
	if err := validateCACAO(out); err != nil {
		t.Errorf("the exported playbook does not validate against the CACAO v2.0 schemas: %v\n%s", err, out)
	}
}

// validateCACAO validates a playbook against the official CACAO v2.0 JSON
// schemas as published (package cacao's tests also check them strictly).
func validateCACAO(playbook []byte) error {
	const base = "https://raw.githubusercontent.com/oasis-open/cacao-json-schemas/main/schemas/"
	root := filepath.Join("..", "cacao", "testdata", "cacao-json-schemas", "schemas")
	c := jsonschema.NewCompiler()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".json" {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		doc, err := jsonschema.UnmarshalJSON(f)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		rel, _ := filepath.Rel(root, p)
		return c.AddResource(base+filepath.ToSlash(rel), doc)
	})
	if err != nil {
		return err
	}
	sch, err := c.Compile(base + "playbook.json")
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(playbook))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

// socLab is a namespace lab with an agent on every gateway and `warden
// serve` in the management namespace.
type socLab struct {
	lab    *netlab.Lab
	dir    string
	bin    string
	pki    string
	api    *apiNS
	ctrl   *nsProc
	agents map[string]*nsProc
	// ctrlArgs start the controller again (restartController).
	ctrlArgs []string
}

// agentsLabOptions shape an agentsLab.
type agentsLabOptions struct {
	// Prefix names the lab's namespaces; Sites its sites.
	Prefix string
	Sites  []string
	// Policies is the controller's policy file; empty runs the embedded
	// default policies and runbooks.
	Policies string
	// Configure adjusts the controller's configuration last.
	Configure func(cfg *config.Config)
	// AgentArgs are extra flags of each site's agent (after the lab's).
	AgentArgs func(l *socLab, s netlab.Site) []string
	// BeforeAgents runs once the PKI and the configuration are written,
	// before the agents start (sensors files, site firewalls).
	BeforeAgents func(l *socLab)
	// AgentBinary, when set, is the agents' program: the gateway's own
	// `warden-agent` (buildWardenAgent) rather than `warden agent`.
	AgentBinary string
}

func newSOCLab(t *testing.T) *socLab {
	return newAgentsLab(t, agentsLabOptions{Prefix: "soc18", Sites: []string{"hq", "osaka", "dc"}, Policies: socPolicies})
}

// newAgentsLab builds the lab: the C2 server also on public addresses
// (netlab.C2Public) with an echo server, a certificate per gateway (CN =
// its id), an agent on every gateway, and the controller, ready, with the
// lab's people.
func newAgentsLab(t testing.TB, opt agentsLabOptions) *socLab {
	t.Helper()
	lab, err := netlab.New(t.Context(), netlab.Options{Prefix: opt.Prefix, Sites: opt.Sites})
	if err != nil {
		t.Fatalf("building the lab: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	if err := lab.AddC2Public(); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.ServeEcho(lab.C2().NS, netip.AddrPortFrom(netip.IPv6Unspecified(), echoPort)); err != nil {
		t.Fatal(err)
	}
	l := &socLab{lab: lab, dir: t.TempDir(), bin: buildWarden(t), agents: map[string]*nsProc{}}
	l.pki = filepath.Join(l.dir, "pki")
	for _, s := range lab.Sites() {
		if out, err := runWarden(t.Context(), l.bin, "agent", "init", "--dir", l.pki, "--gateway", "gw-"+s.Name,
			"--ip", s.Gateway.V4.String(), "--ip", s.Gateway.V6.String()); err != nil {
			t.Fatalf("agent init: %v\n%s", err, out)
		}
	}

	agentURL := func(s netlab.Site) string { return "https://" + netip.AddrPortFrom(s.Gateway.V4, agentPort).String() }
	inv := demo.LabInventory(lab, "", "")
	for i, s := range lab.Sites() {
		inv.Gateways[i].Agent = agentURL(s)
	}
	cfg := config.Defaults()
	cfg.Server.Listen = netip.AddrPortFrom(lab.Mgmt().V4, apiPort).String()
	cfg.Store.Path = filepath.Join(l.dir, "warden.db")
	if opt.Policies != "" {
		polDir := filepath.Join(l.dir, "policies")
		if err := os.MkdirAll(polDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(polDir, "lab.yaml"), []byte(opt.Policies), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.Policies.Dir = polDir
	}
	people := labControllerAuth(t, &cfg, l.dir, l.pki)
	cfg.Inventory = inv
	cfg.Reconcile.Interval = time.Hour
	cfg.Executor.BackoffBase, cfg.Executor.BackoffMax, cfg.Executor.MaxAttempts = 50*time.Millisecond, 500*time.Millisecond, 3
	if opt.Configure != nil {
		opt.Configure(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("lab configuration: %v", err)
	}
	writeConfig(t, l.dir, cfg)
	if opt.BeforeAgents != nil {
		opt.BeforeAgents(l)
	}

	for _, s := range lab.Sites() {
		args := []string{l.bin, "agent"}
		if opt.AgentBinary != "" {
			args = []string{opt.AgentBinary}
		}
		args = append(args,
			"--listen", "[::]:"+fmt.Sprint(agentPort),
			"--cert", filepath.Join(l.pki, agent.GatewayCertFile("gw-"+s.Name)), "--key", filepath.Join(l.pki, agent.GatewayKeyFile("gw-"+s.Name)),
			"--client-ca", filepath.Join(l.pki, agent.CAFile), "--state-dir", filepath.Join(l.dir, "agent-"+s.Name),
			"--heal-interval", "1h", "--backend", "nftables", "--block-backend", "nftables", "--vici-socket=", "--log-level", "debug")
		if opt.AgentArgs != nil {
			args = append(args, opt.AgentArgs(l, s)...)
		}
		l.agents[s.Name] = startInNS(t, "agent-"+s.Name, s.Gateway.NS, args...)
	}
	mgmt := lab.Mgmt().NS
	l.api = &apiNS{base: "http://" + cfg.Server.Listen, people: people, c: nsHTTPClient(mgmt, nil)}
	l.ctrlArgs = []string{l.bin, "serve", "-c", filepath.Join(l.dir, "warden.yaml"), "--log-level", "debug"}
	l.startController(t)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			t.Logf("controller log:\n%s", l.ctrl.log.String())
			for name, p := range l.agents {
				t.Logf("agent %s log:\n%s", name, p.log.String())
			}
		}
	})
	people.add(t, l.api.base, client.WithHTTPClient(l.api.c))
	return l
}

// startController starts `warden serve` in the management namespace and
// waits until it is ready.
func (l *socLab) startController(t testing.TB) {
	t.Helper()
	l.ctrl = startInNS(t, "controller", l.lab.Mgmt().NS, l.ctrlArgs...)
	waitUntil(t, "controller ready", 30*time.Second, func() bool {
		if l.ctrl.exited() {
			t.Fatalf("controller exited: %v\n%s", l.ctrl.err, l.ctrl.log.String())
		}
		code, _, err := l.api.as(v1.RoleAdmin).do(t.Context(), http.MethodGet, "/readyz", nil)
		return err == nil && code == http.StatusOK
	})
}

// socPolicies send Suricata's IKE weak-crypto alerts (baseline_drift) to a
// person: the run waits for approval, so the lab's gateways, which share
// the host's files, are never checked or changed.
const socPolicies = `policies:
  - name: suricata-ike-weak-crypto
    description: A gateway negotiated weak IKE parameters; a person looks first.
    priority: 100
    match: 'indicator.kind == "baseline_drift" && indicator.source == "suricata"'
    runbook: tell-people
    approval: required
    guards:
      budget: false
` + askPeopleTail

// askPeopleTail ends the labs' policy files: every other indicator
// reaches a person, whose approval the notifying run waits for.
const askPeopleTail = `  - name: everything-else
    description: Every other indicator reaches a person.
    priority: 0
    match: 'true'
    runbook: tell-people
    approval: required
    guards:
      budget: false
runbooks:
  - name: tell-people
    description: Notify.
    steps:
      - action: notify
`

func (l *socLab) site(name string) netlab.Site {
	for _, s := range l.lab.Sites() {
		if s.Name == name {
			return s
		}
	}
	panic("no site " + name)
}

// expectFromEveryLAN checks that a TCP connection from each site's LAN to
// addr succeeds (want) or does not.
func (l *socLab) expectFromEveryLAN(t *testing.T, addr netip.AddrPort, want bool) {
	t.Helper()
	for _, s := range l.lab.Sites() {
		timeout := okWait
		if !want {
			timeout = cutWait
		}
		err := netlab.TCPConnect(t.Context(), s.LAN.NS, addr, timeout)
		if want && err != nil {
			t.Errorf("from %s's LAN %s should answer: %v", s.Name, addr, err)
		}
		if !want && err == nil {
			t.Errorf("from %s's LAN %s answered; it should be blocked", s.Name, addr)
		}
	}
}

// kernelSet is the IoC table of a gateway's kernel, as nft prints it.
func (l *socLab) kernelSet(t *testing.T, s netlab.Site) string {
	t.Helper()
	out, err := l.lab.Run(t.Context(), s.Gateway.NS, "nft", "list", "table", "inet", "warden_ioc")
	if err != nil && !strings.Contains(string(out), "No such file") {
		t.Fatalf("reading %s's IoC table: %v\n%s", s.Gateway.NS, err, out)
	}
	return string(out)
}

// waitHeld waits until every gateway's kernel holds prefix (or none does).
func (l *socLab) waitHeld(t *testing.T, prefix string, held bool) {
	t.Helper()
	// nft prints /32 and /128 elements as bare addresses.
	elem := strings.TrimSuffix(strings.TrimSuffix(prefix, "/32"), "/128")
	waitUntil(t, fmt.Sprintf("%s held=%v at every gateway", prefix, held), 20*time.Second, func() bool {
		for _, s := range l.lab.Sites() {
			if strings.Contains(l.kernelSet(t, s), elem) != held {
				return false
			}
		}
		return true
	})
}

// openC2 posts an OpenC2 command in the HTTPS transfer envelope as a and
// decodes the answer, which must have status want.
func (l *socLab) openC2(t *testing.T, a *apiNS, id, command string, want int, out any) {
	t.Helper()
	body := fmt.Sprintf(`{"headers": {"request_id": %q, "from": "soarca"}, "body": {"openc2": {"request": %s}}}`, id, command)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, a.base+"/.well-known/openc2", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", v1.OpenC2ContentType)
	req.Header.Set("Authorization", "Bearer "+a.people.token(a.role))
	resp, err := a.c.Do(req)
	if err != nil {
		t.Fatalf("OpenC2 %s: %v", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		var msg json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&msg)
		t.Fatalf("OpenC2 %s: HTTP %d, want %d: %s", id, resp.StatusCode, want, msg)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("OpenC2 %s: decoding the answer: %v", id, err)
	}
}

// stixBundleOf is a STIX 2.1 bundle with one indicator per pattern.
func stixBundleOf(patterns ...string) []byte {
	var objs []string
	for i, p := range patterns {
		objs = append(objs, fmt.Sprintf(`{"type": "indicator", "spec_version": "2.1", "id": "indicator--6b2a3f1e-0000-4000-8000-%012d",
			"created": "2026-12-01T00:00:00Z", "modified": "2026-12-01T00:00:00Z", "name": "C2 server %d", "indicator_types": ["malicious-activity"],
			"pattern_type": "stix", "pattern": %q, "valid_from": "2026-12-01T00:00:00Z",
			"object_marking_refs": ["marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"]}`, i+1, i+1, p))
	}
	return []byte(`{"type": "bundle", "id": "bundle--6b2a3f1e-1111-4000-8000-000000000001", "objects": [` + strings.Join(objs, ",") + `]}`)
}

// runWarden runs the warden binary on the host and returns its standard
// output (standard error with it when it fails).
func runWarden(ctx context.Context, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return append(out, stderr.String()...), err
	}
	return out, nil
}

func waitUntil(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: still not after %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
