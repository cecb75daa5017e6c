package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/warden-ir/warden/api"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

// TestSensorsNoticeAndDeliver proves the first part of issue #17 with the
// real pieces: `warden agent --sensors` on every gateway of a namespace lab
// delivering findings over mutual TLS with its own per-gateway certificate
// to `warden serve`'s agent listener, which files them as indicators of
// the gateway the certificate names, decided by the embedded default
// policies.
//
//   - `warden sensors show` reads what a gateway's sensors watch and learned.
//   - Editing a watched tunnel configuration file becomes config_change at
//     the controller, about that gateway; tamper-contain-with-approval asks
//     a person before containing it.
//   - With the controller down, a finding waits in the agent's queue and
//     arrives once after the controller comes back.
//   - The gateway itself opening a connection to the C2 server, a
//     destination never seen, is a C2-like unknown_destination (as the
//     sensors file configures it) and c2-like-destination-isolate contains
//     it automatically: the site's LAN no longer reaches the C2 server.
func TestSensorsNoticeAndDeliver(t *testing.T) {
	netlabtest.Skip(t, "nft")
	var agentListen string
	l := newAgentsLab(t, agentsLabOptions{
		Prefix: "sens17", Sites: []string{"hq", "osaka", "dc"}, // Policies: the embedded defaults
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
	run := l.waitRun(t, "gw-hq", "tamper-contain-with-approval")
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
	// The agent listener files the finding as evidence right after the
	// indicator is committed, so the run can be seen a moment before it.
	var ev v1.EvidenceList
	waitUntil(t, "the finding filed as evidence", 30*time.Second, func() bool {
		l.api.call(t, http.MethodGet, "/v1/incidents/"+run.Incident+"/evidence", nil, http.StatusOK, &ev)
		return len(ev.Evidence) > 0
	})
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
	l.waitRun(t, "gw-dc", "tamper-contain-with-approval")
	time.Sleep(2 * time.Second)
	if n := l.countRuns(t, "gw-dc", "tamper-contain-with-approval"); n != 1 {
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

// TestSensorsSeeAnAttackOnTheGateway proves the rest of issue #17's signs
// with the real pieces and the embedded default policies: hq's gateway
// runs a real sshd (netlab.StartSSHD, logging through syslog as on
// Debian) and a real charon with a tunnel to osaka, and its agent's auth,
// health and volume sensors watch them.
//
//   - Ten failed SSH logins from the attacker's namespace (the C2 host, on
//     the internet) are an auth_failure_burst naming the attacker's address;
//     brute-force-from-outside tells people.
//   - An administrator's login at 03:00 site time is an
//     off_hours_admin_login, and off-hours-admin-login asks a person before
//     containing. The clock is injected through the site's time zone: the
//     test gives hq (in the inventory and in the sensors file alike) the
//     Etc/GMT zone in which this instant is 03:xx, so the real sshd, the
//     agent and the controller keep the host's clock.
//   - A transfer through the tunnel at more than 20 times the learned rate
//     (a seeded profile) is a traffic_spike; unusual-traffic-investigate
//     preserves evidence and tells people.
//   - Killing charon is a crash; crash-investigate does the same.
func TestSensorsSeeAnAttackOnTheGateway(t *testing.T) {
	netlabtest.SkipStrongSwan(t)
	if err := netlab.SSHDAvailable(); err != nil {
		t.Skip(err.Error())
	}
	zone := zoneWhereNowIs(t, time.Now(), 3)
	admin := newSSHKey(t)
	var (
		agentListen string
		sshd        *netlab.SSHD
		mesh        *netlab.StrongSwanMesh
	)
	l := newAgentsLab(t, agentsLabOptions{
		Prefix: "sena17", Sites: []string{"hq", "osaka"}, // Policies: the embedded defaults
		Configure: func(cfg *config.Config) {
			mgmt, _ := netip.ParseAddrPort(cfg.Server.Listen)
			agentListen = netip.AddrPortFrom(mgmt.Addr(), 8782).String()
			cfg.Server.AgentListen = agentListen
			cfg.Agents.ServerCertFile, cfg.Agents.ServerKeyFile = cfg.Agents.CertFile, cfg.Agents.KeyFile
			for i := range cfg.Inventory.Sites {
				cfg.Inventory.Sites[i].TimeZone = zone
			}
		},
		BeforeAgents: func(l *socLab) {
			var err error
			if mesh, err = l.lab.StrongSwanMesh(t.Context(), netlab.StrongSwanOptions{Dir: l.dir}); err != nil {
				t.Fatalf("the tunnel: %v", err)
			}
			if sshd, err = l.lab.StartSSHD(t.Context(), "hq", netlab.SSHDOptions{Dir: l.dir, AuthorizedKeys: []ssh.PublicKey{admin.PublicKey()}}); err != nil {
				t.Fatalf("sshd on hq: %v", err)
			}
			l.writeAttackSensorsFile(t, "hq", zone, sshd.AuthLog)
		},
		AgentArgs: func(l *socLab, s netlab.Site) []string {
			if s.Name != "hq" {
				return nil
			}
			return []string{"--sensors", filepath.Join(l.dir, "sensors-hq.yaml"), "--controller-url", "https://" + agentListen}
		},
	})
	ctx := t.Context()
	attacker, mgmt := l.lab.C2(), l.lab.Mgmt()

	// Ten failed logins from the attacker.
	for i := range 10 {
		if err := netlab.SSHLogin(ctx, attacker.NS, sshd.Addr, sshd.HostKey, "root", ssh.Password(fmt.Sprintf("guess-%d", i)), ""); err == nil {
			t.Fatalf("attempt %d: the attacker's password login succeeded", i)
		}
	}
	burst := l.waitIndicator(t, "gw-hq", "auth_failure_burst", attacker.V4.String())
	if !slices.Contains(burst.Indicator.Observables.IPs, attacker.V4.String()) {
		t.Errorf("the burst does not name the attacker %s: %+v", attacker.V4, burst.Indicator)
	}
	if run := l.waitRunDone(t, "gw-hq", "brute-force-from-outside"); run.State != "succeeded" || run.Runbook != "notify-only" {
		t.Errorf("brute force from outside: run %s %s (%s), want notify-only succeeded", run.Runbook, run.State, run.Error)
	}

	// An administrator logs in from the management network at 03:xx.
	if err := netlab.SSHLogin(ctx, mgmt.NS, sshd.Addr, sshd.HostKey, "root", ssh.PublicKeys(admin), "true"); err != nil {
		t.Fatalf("the administrator's login: %v", err)
	}
	off := l.waitIndicator(t, "gw-hq", "off_hours_admin_login", "")
	if !strings.Contains(off.Indicator.Summary, " 03:") || !strings.Contains(off.Indicator.Summary, mgmt.V4.String()) {
		t.Errorf("the off-hours login does not say 03:xx from %s: %q", mgmt.V4, off.Indicator.Summary)
	}
	if run := l.waitRun(t, "gw-hq", "off-hours-admin-login"); run.State != "awaiting_approval" || run.Runbook != "respond-confirmed-compromise" {
		t.Errorf("off-hours login: run %s %s, want respond-confirmed-compromise awaiting approval", run.Runbook, run.State)
	}

	// A transfer through the tunnel, hq's LAN to osaka's, far above the
	// seeded 10 kB/s (about 2 MB/s: 200 times it, and still more than 20
	// times it if a loaded machine moves only a tenth of that).
	hq, osaka := l.site("hq"), l.site("osaka")
	if _, err := l.lab.ServeEcho(osaka.LAN.NS, netip.AddrPortFrom(osaka.LAN.V4, bulkPort)); err != nil {
		t.Fatal(err)
	}
	if err := transfer(ctx, hq.LAN.NS, netip.AddrPortFrom(osaka.LAN.V4, bulkPort), 2_000_000, 4*time.Second); err != nil {
		t.Fatalf("the transfer through the tunnel: %v", err)
	}
	spike := l.waitIndicator(t, "gw-hq", "traffic_spike", "ipsec0")
	if f, err := strconv.ParseFloat(spike.Indicator.Labels["factor"], 64); err != nil || f < 20 || spike.Indicator.Labels["interface"] != "ipsec0" {
		t.Errorf("the spike: %+v, want ipsec0 at 20× or more", spike.Indicator.Labels)
	}
	if run := l.waitRunDone(t, "gw-hq", "unusual-traffic-investigate"); run.State != "succeeded" || run.Runbook != "investigate" {
		t.Errorf("traffic spike: run %s %s (%s), want investigate succeeded", run.Runbook, run.State, run.Error)
	}

	// charon dies.
	if err := mesh.Crash("hq"); err != nil {
		t.Fatal(err)
	}
	crash := l.waitIndicator(t, "gw-hq", "crash", "charon")
	if crash.Indicator.Severity != "high" || crash.Indicator.Labels["process"] != "charon" {
		t.Errorf("the crash: %+v, want charon at high severity", crash.Indicator)
	}
	if run := l.waitRunDone(t, "gw-hq", "crash-investigate"); run.State != "succeeded" || run.Runbook != "investigate" {
		t.Errorf("charon's crash: run %s %s (%s), want investigate succeeded", run.Runbook, run.State, run.Error)
	}
}

// bulkPort is where the transfer's echo server listens.
const bulkPort = 9009

// zoneWhereNowIs names the Etc/GMT zone in which now's local hour is hour.
func zoneWhereNowIs(t *testing.T, now time.Time, hour int) string {
	t.Helper()
	east := ((hour-now.UTC().Hour())%24 + 24) % 24
	if east > 14 {
		east -= 24
	}
	name := "Etc/GMT"
	if east != 0 {
		name = fmt.Sprintf("Etc/GMT%+d", -east) // POSIX: Etc/GMT-9 is nine hours east
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("zone %s: %v", name, err)
	}
	if h := now.In(loc).Hour(); h != hour {
		t.Fatalf("zone %s: now is %02d:xx there, want %02d", name, h, hour)
	}
	return name
}

// newSSHKey makes an administrator's SSH key.
func newSSHKey(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// transfer sends about rate bytes a second for d to an echo server at to,
// from namespace ns, reading the echo back.
func transfer(ctx context.Context, ns string, to netip.AddrPort, rate int, d time.Duration) error {
	var conn net.Conn
	err := netlab.Do(ns, func() (err error) {
		var dl net.Dialer
		conn, err = dl.DialContext(ctx, "tcp", to.String())
		return err
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	read := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, conn)
		read <- n
	}()
	chunk := make([]byte, rate/20)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	sent := int64(0)
	for end := time.Now().Add(d); time.Now().Before(end); {
		if err := conn.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return err
		}
		n, err := conn.Write(chunk)
		sent += int64(n)
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", sent, err)
		}
		<-tick.C
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got := <-read; got < sent {
		return fmt.Errorf("sent %d bytes, %d came back", sent, got)
	}
	return nil
}

// writeAttackSensorsFile writes site's sensors file for
// TestSensorsSeeAnAttackOnTheGateway: auth on the lab's auth log, health
// of charon and sshd, volume of the tunnel's link with a seeded profile
// of 10 kB/s each way at every hour of the week.
func (l *socLab) writeAttackSensorsFile(t *testing.T, site, zone, authLog string) {
	t.Helper()
	type cell struct {
		Interface string    `json:"interface"`
		Direction string    `json:"direction"`
		Hour      int       `json:"hour"`
		Mean      float64   `json:"mean"`
		Dev       float64   `json:"dev"`
		Samples   int       `json:"samples"`
		Updated   time.Time `json:"updated"`
	}
	now := time.Now().UTC()
	var traffic []cell
	for h := range 168 {
		for _, dir := range []string{"rx", "tx"} {
			traffic = append(traffic, cell{Interface: "ipsec0", Direction: dir, Hour: h, Mean: 10_000, Dev: 1_000, Samples: 2016, Updated: now})
		}
	}
	seed, err := json.Marshal(map[string]any{"version": 1, "learning_started": now.Add(-8 * 24 * time.Hour),
		"admin_sources": []any{}, "destinations": []any{}, "traffic": traffic})
	if err != nil {
		t.Fatal(err)
	}
	seedFile := filepath.Join(l.dir, "seed-"+site+".json")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	var mgmt []string
	for _, p := range l.lab.ManagementPrefixes() {
		mgmt = append(mgmt, fmt.Sprintf("%q", p.String()))
	}
	body := fmt.Sprintf(`learning:
  seed_file: %q
  seed_ends_learning: true
auth:
  enabled: true
  source: files
  files: [%q]
  poll_interval: 50ms
  time_zone: %q
  management_networks: [%s]
health:
  enabled: true
  processes: [charon, sshd]
  kernel_log: "off"
  interval: 500ms
volume:
  enabled: true
  interval: 1s
  sources: [interfaces]
  interfaces: [ipsec0]
  time_zone: %q
`, seedFile, authLog, zone, strings.Join(mgmt, ", "), zone)
	if err := os.WriteFile(filepath.Join(l.dir, "sensors-"+site+".yaml"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitIndicator waits for an indicator from gw's agent of kind whose
// summary has about in it, in any incident, and returns it.
func (l *socLab) waitIndicator(t *testing.T, gw, kind, about string) v1.IndicatorRecord {
	t.Helper()
	var found v1.IndicatorRecord
	waitUntil(t, fmt.Sprintf("a %s indicator about %s (%q)", kind, gw, about), 30*time.Second, func() bool {
		var list v1.IncidentList
		l.api.call(t, http.MethodGet, "/v1/incidents", nil, http.StatusOK, &list)
		for _, inc := range list.Incidents {
			if inc.Gateway != gw {
				continue
			}
			var d v1.IncidentDetail
			l.api.call(t, http.MethodGet, "/v1/incidents/"+inc.ID, nil, http.StatusOK, &d)
			for _, r := range d.Indicators {
				if r.Indicator.Kind == kind && r.Indicator.Source == api.SourceAgent && strings.Contains(r.Indicator.Summary, about) {
					found = r
					return true
				}
			}
		}
		return false
	})
	t.Logf("%s from %s: %s", kind, gw, found.Indicator.Summary)
	return found
}

// waitRunDone waits for a run about gw started by policy to finish, and
// returns it.
func (l *socLab) waitRunDone(t *testing.T, gw, policy string) v1.Run {
	t.Helper()
	run := l.waitRun(t, gw, policy)
	waitUntil(t, "run "+run.ID+" finished", 30*time.Second, func() bool {
		l.api.call(t, http.MethodGet, "/v1/runs/"+run.ID, nil, http.StatusOK, &run)
		return run.Terminal()
	})
	return run
}
