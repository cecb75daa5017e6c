package e2e

import (
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

// TestSensorsNoticeAndDeliver proves the first part of issue #17 with the
// real pieces: `warden agent --sensors` on every gateway of a namespace lab
// delivering findings over mutual TLS with its own per-gateway certificate
// to `warden serve`'s agent listener, which files them as indicators of
// the gateway the certificate names.
//
//   - `warden sensors show` reads what a gateway's sensors watch and learned.
//   - Editing a watched tunnel configuration file becomes config_change at
//     the controller, about that gateway (a person is asked, by policy).
//   - With the controller down, a finding waits in the agent's queue and
//     arrives once after the controller comes back.
//   - The gateway itself opening a connection to the C2 server, a
//     destination never seen, is a C2-like unknown_destination (as the
//     sensors file configures it) and is contained automatically: the
//     site's LAN no longer reaches the C2 server.
func TestSensorsNoticeAndDeliver(t *testing.T) {
	netlabtest.Skip(t, "nft")
	var agentListen string
	l := newAgentsLab(t, agentsLabOptions{
		Prefix: "sens17", Sites: []string{"hq", "osaka", "dc"}, Policies: sensorPolicies,
		Configure: func(cfg *config.Config) {
			mgmt, _ := netip.ParseAddrPort(cfg.Server.Listen)
			agentListen = netip.AddrPortFrom(mgmt.Addr(), 8781).String()
			cfg.Server.AgentListen = agentListen
			cfg.Agents.ServerCertFile, cfg.Agents.ServerKeyFile = cfg.Agents.CertFile, cfg.Agents.KeyFile
			// Every gateway of this lab reports on purpose, which would trip
			// the fleet circuit breaker (3 of 3 gateways with firing
			// indicators; proven in the controller's tests): it is set above
			// the lab's size.
			cfg.Guards.BreakerMinGateways = 4
		},
		BeforeAgents: func(l *socLab) {
			for _, s := range l.lab.Sites() {
				l.writeSensorsFile(t, s)
			}
		},
		AgentArgs: func(l *socLab, s netlab.Site) []string {
			return []string{"--sensors", filepath.Join(l.dir, "sensors-"+s.Name+".yaml"), "--controller-url", "https://" + agentListen}
		},
	})
	ctx := t.Context()

	// What the sensors watch and learned, through the agent.
	var shown v1.GatewaySensors
	l.api.call(t, http.MethodGet, "/v1/gateways/gw-hq/sensors", nil, http.StatusOK, &shown)
	if !slices.Equal(shown.Enabled, []string{"conn", "config"}) || shown.Learning {
		t.Errorf("sensors of gw-hq: %+v, want conn and config, learning over", shown)
	}

	// A watched tunnel configuration edited on hq.
	l.editSwanctl(t, "hq", "secret = \"hunter2-rotated\"")
	run := l.waitRun(t, "gw-hq", "config-change")
	if run.State != "awaiting_approval" {
		t.Errorf("config change on hq: run %+v", run)
	}
	// The finding's diff names the change but never the tunnel secret.
	code, detail, err := l.api.do(ctx, http.MethodGet, "/v1/incidents/"+run.Incident, nil)
	if err != nil || code != http.StatusOK || !strings.Contains(string(detail), "swanctl.conf") {
		t.Fatalf("the incident of hq's change: %d %v %.300s", code, err, detail)
	}
	if !strings.Contains(string(detail), "hunter2-rotated") && !strings.Contains(string(detail), "redacted") {
		t.Errorf("the incident does not carry the change's diff: %.2000s", detail)
	}
	var ev v1.EvidenceList
	l.api.call(t, http.MethodGet, "/v1/incidents/"+run.Incident+"/evidence", nil, http.StatusOK, &ev)
	if len(ev.Evidence) != 1 || !strings.HasPrefix(ev.Evidence[0].Name, "sensor-config-config_change-") || len(ev.Evidence[0].SHA256) != 64 ||
		ev.Evidence[0].CollectedBy != "agent:gw-hq" {
		t.Errorf("the incident's evidence: %+v, want the finding kept by the agent", ev.Evidence)
	}
	if strings.Contains(string(detail), "hunter2") {
		t.Errorf("the tunnel secret reached the controller: %s", detail)
	}

	// Controller down: dc's edit waits in dc's queue, then arrives once.
	l.ctrl.stop()
	l.editSwanctl(t, "dc", "# a comment the intruder added")
	time.Sleep(time.Second) // long enough for the sensor to queue it; nothing asserts on time
	l.startController(t)
	l.waitRun(t, "gw-dc", "config-change")
	time.Sleep(2 * time.Second)
	if n := l.countRuns(t, "gw-dc", "config-change"); n != 1 {
		t.Errorf("dc's finding made %d runs after the controller came back, want exactly 1", n)
	}

	// The gateway itself dials the C2 server: contained automatically.
	osaka := l.site("osaka")
	c2 := netip.AddrPortFrom(netlab.C2Public[0], echoPort)
	// (Osaka's LAN is not probed first: its forwarded connection would be
	// the sensor's first sight of the destination, reported at forwarded
	// severity, and the gateway's own would then repeat it.)
	if err := netlab.TCPConnect(ctx, osaka.Gateway.NS, c2, okWait); err != nil {
		t.Fatalf("the gateway's own connection to the C2 server: %v", err)
	}
	contained := l.waitRun(t, "gw-osaka", "c2-like-destination-isolate")
	deadline := time.Now().Add(30 * time.Second)
	for contained.State != "succeeded" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		l.api.call(t, http.MethodGet, "/v1/runs/"+contained.ID, nil, http.StatusOK, &contained)
	}
	if contained.State != "succeeded" {
		t.Fatalf("the containment run is %s: %s %s", contained.State, contained.Error, contained.ApprovalReason)
	}
	if err := netlab.TCPConnect(ctx, osaka.LAN.NS, c2, cutWait); err == nil {
		t.Errorf("after containment osaka's LAN still reaches the C2 server")
	}
	if err := netlab.TCPConnect(ctx, l.site("hq").LAN.NS, c2, okWait); err != nil {
		t.Errorf("hq was not contained, yet its LAN no longer reaches %s: %v", c2, err)
	}
}

// sensorPolicies: a C2-like new destination is contained (isolate through
// the agent); a configuration change asks a person.
const sensorPolicies = `policies:
  - name: c2-like-destination-isolate
    description: The gateway dialled a destination its sensor calls C2-like.
    priority: 100
    match: 'indicator.kind == "unknown_destination" && indicator.severity_rank >= 4 && indicator.confidence >= 0.9'
    runbook: contain
    approval: auto
  - name: config-change
    description: A watched configuration file changed; a person looks first.
    priority: 90
    match: 'indicator.kind == "config_change"'
    runbook: tell-people
    approval: required
    guards:
      budget: false
` + askPeopleTail + `---
runbooks:
  - name: contain
    description: Isolate through the agent.
    steps:
      - action: isolate
`

// writeSensorsFile writes site s's sensors file and what it watches: a
// swanctl.conf under the site's own etc directory, and a conntrack rule on
// the gateway (the kernel tracks, and so reports, connections only in a
// namespace where some rule uses conntrack).
func (l *socLab) writeSensorsFile(t *testing.T, s netlab.Site) {
	t.Helper()
	dir := l.dir
	if err := os.MkdirAll(filepath.Join(dir, "etc-"+s.Name, "swanctl"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc-"+s.Name, "swanctl", "swanctl.conf"), []byte("connections {\n}\nsecrets {\n  ike-peer {\n    secret = \"hunter2\"\n  }\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var mgmt []string
	for _, p := range l.lab.ManagementPrefixes() {
		mgmt = append(mgmt, fmt.Sprintf("%q", p.String()))
	}
	body := fmt.Sprintf(`learning:
  period: 1ms
conn:
  enabled: true
  management_networks: [%s]
  originated_severity: critical
  unknown_destination_confidence: 0.95
config:
  enabled: true
  root: %q
  paths: ["/swanctl"]
  debounce: 100ms
`, strings.Join(mgmt, ", "), filepath.Join(dir, "etc-"+s.Name))
	if err := os.WriteFile(filepath.Join(dir, "sensors-"+s.Name+".yaml"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"nft", "add", "table", "inet", "site"},
		{"nft", "add", "chain", "inet", "site", "siteout", "{", "type", "filter", "hook", "output", "priority", "0", ";", "policy", "accept", ";", "}"},
		{"nft", "add", "rule", "inet", "site", "siteout", "ct", "state", "new", "counter"},
	} {
		if out, err := l.lab.Run(t.Context(), s.Gateway.NS, c...); err != nil {
			t.Fatalf("site firewall of %s: %v\n%s", s.Name, err, out)
		}
	}
}

// editSwanctl appends line to site's watched swanctl.conf.
func (l *socLab) editSwanctl(t *testing.T, site, line string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(l.dir, "etc-"+site, "swanctl", "swanctl.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, line); err != nil {
		t.Fatal(err)
	}
}

// waitRun waits for a run about gw started by policy, and returns it.
func (l *socLab) waitRun(t *testing.T, gw, policy string) v1.Run {
	t.Helper()
	var found v1.Run
	waitUntil(t, fmt.Sprintf("a %s run about %s", policy, gw), 30*time.Second, func() bool {
		var list v1.RunList
		l.api.call(t, http.MethodGet, "/v1/runs", nil, http.StatusOK, &list)
		for _, r := range list.Runs {
			if r.Gateway == gw && r.Policy == policy {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

// countRuns counts the runs about gw started by policy.
func (l *socLab) countRuns(t *testing.T, gw, policy string) int {
	t.Helper()
	var list v1.RunList
	l.api.call(t, http.MethodGet, "/v1/runs", nil, http.StatusOK, &list)
	n := 0
	for _, r := range list.Runs {
		if r.Gateway == gw && r.Policy == policy {
			n++
		}
	}
	return n
}
