package e2e

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/internal/loadgen"
	"github.com/warden-ir/warden/internal/peerbench"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

// BenchmarkPeers is `make bench-peers` (issue #19 item 5): Warden side by
// side with fail2ban, CrowdSec and Prometheus Alertmanager, installed from
// Debian's packages by hack/install-peers.sh, each started here as its own
// process with its configuration and state in a temporary folder, in the
// one namespace lab of newPeersLab, one system at a time:
//
//   - Intake: the same load (internal/loadgen: 16 keep-alive clients from
//     the management namespace, one alert per request, BENCH_PEERS_DURATION,
//     30 s by default) against Warden's POST /v1/indicators (a real `warden
//     serve`, store.sync full, its executor running), CrowdSec's LAPI POST
//     /v1/alerts (a machine's login) and Alertmanager's POST /api/v2/alerts
//     (memory only).
//   - The same attack: SSH password guessing from a fresh attacker address
//     against the gateway's real sshd, BENCH_PEERS_TRIALS trials (12 by
//     default, after one warm-up) with a random start phase; the time from
//     the arrival of the auth.log line that crosses the system's threshold
//     to the first probe (a fresh TCP connection every millisecond) finding
//     the attacker dropped. fail2ban: its sshd jail on the lab's auth.log
//     (pyinotify), nftables action. CrowdSec: acquisition of the same file,
//     crowdsecurity/ssh-bf, the firewall bouncer in nftables mode on the
//     gateway polling every BENCH_PEERS_FAST_POLL (10 ms by default: the
//     bouncer enforces no minimum) and then every 10 s (its default).
//     Warden: the auth sensor, the controller, the agent's quarantine.
//   - References (peers_reference_test.go): the same intake load against
//     a server that does nothing and one that only appends each body to
//     the intake journal, the machine's ceilings for any system's intake
//     figure.
//
// It prints one table and writes BENCH_PEERS_JSON (bench-peers.json in the
// working directory by default). It runs only with WARDEN_BENCH_PEERS=1
// (make bench-peers sets it): it takes about nine minutes, and `make bench`
// runs every other benchmark.
func BenchmarkPeers(b *testing.B) {
	if os.Getenv("WARDEN_BENCH_PEERS") != "1" {
		b.Skip("the peer comparison runs with WARDEN_BENCH_PEERS=1 (make bench-peers)")
	}
	netlabtest.Skip(b, "nft")
	for _, bin := range []string{"/usr/bin/fail2ban-server", "/usr/bin/crowdsec", "/usr/bin/cscli", "/usr/bin/crowdsec-firewall-bouncer", "/usr/bin/prometheus-alertmanager"} {
		if _, err := os.Stat(bin); err != nil {
			b.Skipf("%s missing: run hack/install-peers.sh (make bench-peers does)", bin)
		}
	}
	duration := envDuration(b, "BENCH_PEERS_DURATION", 30*time.Second)
	fastPoll := envDuration(b, "BENCH_PEERS_FAST_POLL", 10*time.Millisecond)
	trials := 12
	if s := os.Getenv("BENCH_PEERS_TRIALS"); s != "" {
		if _, err := fmt.Sscan(s, &trials); err != nil || trials < 1 {
			b.Fatalf("BENCH_PEERS_TRIALS: %q is not a positive number", s)
		}
	}
	systems := map[string]bool{}
	for _, s := range strings.Split(cmp.Or(os.Getenv("BENCH_PEERS_SYSTEMS"), "warden,fail2ban,crowdsec,alertmanager,reference"), ",") {
		systems[strings.TrimSpace(s)] = true
	}
	out := os.Getenv("BENCH_PEERS_JSON")
	if out == "" {
		out = "bench-peers.json"
	}

	for range b.N {
		l := newPeersLab(b, "bpeer")
		var rows []peerbench.Row
		addRow := func(r peerbench.Row, ds []time.Duration, errs []error, in *loadgen.Result) {
			r.SetDrops(ds)
			if in != nil {
				r.IntakePerS, r.IntakeP99MS = peerbench.Num(in.PerSecond()), peerbench.MS(in.Percentile(99))
				if in.Rejected+in.Failed > 0 {
					r.Note = strings.TrimPrefix(r.Note+fmt.Sprintf("; intake: %d rejected %v, %d without an answer", in.Rejected, in.Statuses, in.Failed), "; ")
				}
			}
			if len(errs) > 0 {
				r.Note = strings.TrimPrefix(r.Note+fmt.Sprintf("; %d of %d trials failed (first: %v)", len(errs), trials+1, errs[0]), "; ")
				if len(errs) > trials/2 {
					b.Errorf("%s: %d of %d trials failed", r.Name, len(errs), trials+1)
				}
			}
			rows = append(rows, r)
		}

		// Warden: the attack first (an empty store, as the peers have),
		// then the intake load, then Warden stops.
		if systems["warden"] {
			ds, errs := l.trials(b, l.wardenSystem(), trials)
			in := l.loadWarden(b, duration)
			addRow(peerbench.Row{Name: "Warden", Note: "drop: sensors → controller → agent, the default contain-compromised-gateway runbook (isolate keeping flows first)"}, ds, errs, &in)
		}
		l.ctrl.stop()
		l.agents["hq"].stop()
		l.waitOpen(b)

		if systems["fail2ban"] {
			f2b := l.startFail2ban(b)
			ds, errs := l.trials(b, attackSystem{name: "fail2ban", counts: countsFailed, threshold: 5, attempts: 5, wait: 30 * time.Second, phase: time.Second}, trials)
			addRow(peerbench.Row{Name: "fail2ban 1.0.2", Note: "sshd jail (maxretry 5, pyinotify), nftables-multiport; no HTTP intake"}, ds, errs, nil)
			f2b.stop()
			l.waitOpen(b)
		}

		if systems["crowdsec"] {
			l.runCrowdSec(b, duration, fastPoll, trials, addRow)
		}
		if systems["alertmanager"] {
			in := l.loadAlertmanager(b, duration)
			addRow(peerbench.Row{Name: "Alertmanager 0.25", Note: "POST /api/v2/alerts, memory only (no durability); drops nobody"}, nil, nil, &in)
		}
		if systems["reference"] {
			in := l.loadReference(b, referenceNothing, duration)
			addRow(peerbench.Row{Name: "reference: net/http doing nothing", Note: "the load's ceiling on this machine: a Go server answering 202 without any work"}, nil, nil, &in)
			in = l.loadReference(b, referenceDurable, duration)
			addRow(peerbench.Row{Name: "reference: net/http + fdatasync", Note: "the ceiling of a durable answer here: each body appended to the intake journal (one write and one fdatasync a batch), and nothing else"}, nil, nil, &in)
		}

		var table bytes.Buffer
		if err := peerbench.WriteTable(&table, rows, "Warden"); err != nil {
			b.Fatal(err)
		}
		fmt.Printf("\nmake bench-peers: %d trials each (after one warm-up), intake %s with 16 clients\n%s\n", trials, duration, table.String())
		f, err := os.Create(out)
		if err != nil {
			b.Fatal(err)
		}
		if err := peerbench.WriteJSON(f, rows); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		abs, _ := filepath.Abs(out)
		fmt.Printf("wrote %s\n", abs)
		for _, r := range rows {
			name := strings.NewReplacer(" ", "_", ",", "", ".", "_", ":", "", "/", "", "+", "and").Replace(r.Name)
			if r.DropMedianMS != nil {
				b.ReportMetric(*r.DropMedianMS, name+"-drop-p50-ms")
			}
			if r.IntakePerS != nil {
				b.ReportMetric(*r.IntakePerS, name+"-intake/s")
			}
		}
	}
}

// runCrowdSec is CrowdSec's part: the attack with the bouncer at the fast
// poll and at its default, then the intake load on its local API. The
// attack comes first, on an empty database, as for Warden: after 30 s of
// intake CrowdSec is still busy with what it took in and the first
// attacks went undropped for more than 30 s.
func (l *peersLab) runCrowdSec(b *testing.B, duration, fastPoll time.Duration, trials int, addRow func(peerbench.Row, []time.Duration, []error, *loadgen.Result)) {
	cs := l.startCrowdSec(b)
	type result struct {
		poll time.Duration
		ds   []time.Duration
		errs []error
	}
	var results []result
	for _, poll := range []time.Duration{fastPoll, 10 * time.Second} {
		bouncer := l.startBouncer(b, cs, poll)
		// ssh-bf overflows at the 6th event; each failed login logs two
		// it counts (Failed password, Connection closed by
		// authenticating user).
		sys := attackSystem{name: "CrowdSec poll " + poll.String(), counts: countsCrowdSec, threshold: 6, attempts: 3,
			wait: 30*time.Second + 2*poll, phase: max(time.Second, poll)}
		ds, errs := l.trials(b, sys, trials)
		results = append(results, result{poll, ds, errs})
		bouncer.stop()
		l.dropBouncerTables(b)
	}
	in := l.loadCrowdSec(b, cs, duration)
	for _, r := range results {
		note := "LAPI POST /v1/alerts (SQLite, WAL); ssh-bf, firewall bouncer (nftables) polling every " + r.poll.String()
		if r.poll == 10*time.Second {
			note += " (its default)"
		}
		addRow(peerbench.Row{Name: "CrowdSec 1.4.6, bouncer poll " + r.poll.String(), Note: note}, r.ds, r.errs, &in)
	}
	cs.proc.stop()
	l.waitOpen(b)
}

func envDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		tb.Fatalf("%s: %q is not a positive duration", name, s)
	}
	return d
}

// peerLoad is the one intake load: 16 keep-alive clients from the
// management namespace.
func (l *peersLab) peerLoad(tb testing.TB, name, url string, header http.Header, d time.Duration, body func(c, n int) []byte) loadgen.Result {
	tb.Helper()
	mgmt := l.lab.Mgmt().NS
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = netlab.Do(mgmt, func() error {
				conn, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
		MaxIdleConns: 16, MaxIdleConnsPerHost: 16, MaxConnsPerHost: 16, DisableCompression: true,
	}
	defer tr.CloseIdleConnections()
	res, err := loadgen.Run(tb.Context(), loadgen.Config{URL: url, Header: header, Clients: 16, Duration: d, Body: body, Transport: tr})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("%s intake: %s", name, res)
	if res.Accepted == 0 {
		tb.Errorf("%s took no alert: %s (first error %v)", name, res, res.FirstError)
	}
	return res
}

// benchSource is the nth client's nth alert's source address, unique.
func benchSource(c, n int) string { return fmt.Sprintf("2001:db8:%x:%x::1", c, n) }

func (l *peersLab) loadWarden(tb testing.TB, d time.Duration) loadgen.Result {
	h := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + l.api.people.token(v1.RoleIntake)}}
	return l.peerLoad(tb, "Warden", l.api.base+"/v1/indicators", h, d, wardenAlert)
}

// wardenAlert is the nth client's nth alert in Warden's native format
// (also what the reference servers take).
func wardenAlert(c, n int) []byte {
	return fmt.Appendf(nil, `{"kind":"brute_force","gateway":"gw-hq","severity":"medium","confidence":0.7,"source":"bench","summary":"SSH password guessing","observables":{"ips":[%q]}}`, benchSource(c, n))
}

func (l *peersLab) loadAlertmanager(tb testing.TB, d time.Duration) loadgen.Result {
	tb.Helper()
	dir := filepath.Join(l.dir, "alertmanager")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte("route:\n  receiver: none\nreceivers:\n  - name: none\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	listen := netip.AddrPortFrom(l.lab.Mgmt().V4, 9093).String()
	p := startInNS(tb, "alertmanager", l.lab.Mgmt().NS, "/usr/bin/prometheus-alertmanager", "--config.file="+cfg,
		"--storage.path="+dir, "--web.listen-address="+listen, "--cluster.listen-address=")
	defer p.stop()
	hc := nsHTTPClient(l.lab.Mgmt().NS, nil)
	waitUntil(tb, "Alertmanager ready", 30*time.Second, func() bool {
		if p.exited() {
			tb.Fatalf("alertmanager exited: %v\n%s", p.err, p.log.String())
		}
		resp, err := hc.Get("http://" + listen + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return l.peerLoad(tb, "Alertmanager", "http://"+listen+"/api/v2/alerts", http.Header{"Content-Type": {"application/json"}}, d, func(c, n int) []byte {
		return fmt.Appendf(nil, `[{"labels":{"alertname":"SSHPasswordGuessing","gateway":"gw-hq","source":%q},"annotations":{"summary":"SSH password guessing"}}]`, benchSource(c, n))
	})
}

// startFail2ban starts fail2ban-server in the gateway's namespace with its
// sshd jail on the lab's auth.log: Debian's configuration, copied, without
// its jail.d, with a jail.local of the lab's and its state in the folder.
func (l *peersLab) startFail2ban(tb testing.TB) *nsProc {
	tb.Helper()
	dir := filepath.Join(l.dir, "fail2ban")
	if err := os.CopyFS(dir, os.DirFS("/etc/fail2ban")); err != nil {
		tb.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "jail.d")); err != nil {
		tb.Fatal(err)
	}
	files := map[string]string{
		"fail2ban.local": fmt.Sprintf("[Definition]\nloglevel = INFO\nlogtarget = STDOUT\nsocket = %s\npidfile = %s\ndbfile = %s\n",
			filepath.Join(dir, "f2b.sock"), filepath.Join(dir, "f2b.pid"), filepath.Join(dir, "f2b.sqlite3")),
		"jail.local": fmt.Sprintf(`[DEFAULT]
banaction = nftables-multiport
banaction_allports = nftables-allports
bantime = 1h
findtime = 10m
maxretry = 5

[sshd]
enabled = true
port = %d
logpath = %s
backend = pyinotify
`, l.sshd.Addr.Port(), l.sshd.AuthLog),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "f2b.sock")
	p := startInNS(tb, "fail2ban", l.gw.Gateway.NS, "/usr/bin/fail2ban-server", "-f", "-x", "-c", dir, "-s", sock, "-p", filepath.Join(dir, "f2b.pid"))
	waitUntil(tb, "fail2ban's sshd jail", 30*time.Second, func() bool {
		if p.exited() {
			tb.Fatalf("fail2ban exited: %v\n%s", p.err, p.log.String())
		}
		return exec.CommandContext(tb.Context(), "/usr/bin/fail2ban-client", "-s", sock, "status", "sshd").Run() == nil
	})
	tb.Cleanup(func() {
		if tb.Failed() || os.Getenv("E2E_LOGS") != "" {
			tb.Logf("fail2ban log:\n%s", p.log.String())
		}
	})
	return p
}

// crowdSec is a running CrowdSec (agent and local API, one process) in the
// management namespace.
type crowdSec struct {
	proc         *nsProc
	dir, cfg     string
	url          string
	bouncerKey   string
	loadPassword string
}

// startCrowdSec starts crowdsec with Debian's hub (parsers, scenarios,
// collections under /etc/crowdsec, read only) and everything it writes in
// a folder: its SQLite database (WAL, as Debian's postinst sets), the
// agent's machine credentials, acquisition of the lab's auth.log. No
// central API.
func (l *peersLab) startCrowdSec(tb testing.TB) *crowdSec {
	tb.Helper()
	cs := &crowdSec{dir: filepath.Join(l.dir, "crowdsec"), bouncerKey: randomHex(tb), loadPassword: randomHex(tb)}
	for _, d := range []string{"data", "notifications"} {
		if err := os.MkdirAll(filepath.Join(cs.dir, d), 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	listen := netip.AddrPortFrom(l.lab.Mgmt().V4, 8090).String()
	cs.url = "http://" + listen + "/"
	cs.cfg = filepath.Join(cs.dir, "config.yaml")
	files := map[string]string{
		"config.yaml": fmt.Sprintf(`common:
  daemonize: false
  log_media: stdout
  log_level: info
config_paths:
  config_dir: /etc/crowdsec/
  data_dir: /var/lib/crowdsec/data/
  simulation_path: /etc/crowdsec/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub/
  index_path: /var/lib/crowdsec/hub/.index.json
  notification_dir: %[1]s/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service:
  acquisition_path: %[1]s/acquis.yaml
  parser_routines: 1
cscli:
  output: human
db_config:
  log_level: info
  type: sqlite
  db_path: %[1]s/data/crowdsec.db
  use_wal: true
  flush:
    max_items: 5000
    max_age: 7d
api:
  client:
    insecure_skip_verify: false
    credentials_path: %[1]s/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: %[2]s
    profiles_path: /etc/crowdsec/profiles.yaml
    trusted_ips:
      - 127.0.0.1
prometheus:
  enabled: false
`, cs.dir, listen),
		"acquis.yaml": fmt.Sprintf("filenames:\n  - %s\nlabels:\n  type: syslog\n", l.sshd.AuthLog),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(cs.dir, name), []byte(body), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	cscli := func(args ...string) {
		tb.Helper()
		cmd := exec.CommandContext(tb.Context(), "/usr/bin/cscli", append([]string{"-c", cs.cfg, "--error"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("cscli %s: %v\n%s", args[0]+" "+args[1], err, out)
		}
	}
	cscli("machines", "add", "bench-agent", "--auto", "--force", "--file", filepath.Join(cs.dir, "local_api_credentials.yaml"), "--url", cs.url)
	cscli("machines", "add", "bench-load", "--password", cs.loadPassword, "--force", "--file", filepath.Join(cs.dir, "load_credentials.yaml"), "--url", cs.url)
	cscli("bouncers", "add", "bench-firewall", "--key", cs.bouncerKey)
	cs.proc = startInNS(tb, "crowdsec", l.lab.Mgmt().NS, "/usr/bin/crowdsec", "-c", cs.cfg)
	tb.Cleanup(func() {
		if tb.Failed() || os.Getenv("E2E_LOGS") != "" {
			tb.Logf("crowdsec log:\n%s", cs.proc.log.String())
		}
	})
	// The local API answers within a second; the agent reads its parsers
	// and scenarios for some seconds more before it follows auth.log (from
	// its end): an attack before that is never seen.
	waitUntil(tb, "CrowdSec's agent following auth.log and its local API", 120*time.Second, func() bool {
		if cs.proc.exited() {
			tb.Fatalf("crowdsec exited: %v\n%s", cs.proc.err, cs.proc.log.String())
		}
		if !strings.Contains(cs.proc.log.String(), "Starting processing data") {
			return false
		}
		_, err := l.crowdSecLogin(tb, cs)
		return err == nil
	})
	return cs
}

func randomHex(tb testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// crowdSecLogin logs the load's machine in and returns its token.
func (l *peersLab) crowdSecLogin(tb testing.TB, cs *crowdSec) (string, error) {
	body, _ := json.Marshal(map[string]any{"machine_id": "bench-load", "password": cs.loadPassword, "scenarios": []string{}})
	resp, err := nsHTTPClient(l.lab.Mgmt().NS, nil).Post(cs.url+"v1/watchers/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("login: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
		return "", fmt.Errorf("login: no token (%v)", err)
	}
	return out.Token, nil
}

func (l *peersLab) loadCrowdSec(tb testing.TB, cs *crowdSec, d time.Duration) loadgen.Result {
	tb.Helper()
	token, err := l.crowdSecLogin(tb, cs)
	if err != nil {
		tb.Fatal(err)
	}
	h := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + token}}
	return l.peerLoad(tb, "CrowdSec", cs.url+"v1/alerts", h, d, func(c, n int) []byte {
		now := time.Now().UTC().Format(time.RFC3339)
		src := benchSource(c, n)
		return fmt.Appendf(nil, `[{"scenario":"bench/ssh-guessing","scenario_hash":"","scenario_version":"","message":"SSH password guessing from %[1]s",`+
			`"events_count":1,"start_at":%[2]q,"stop_at":%[2]q,"capacity":5,"leakspeed":"10s","simulated":false,`+
			`"events":[{"timestamp":%[2]q,"meta":[{"key":"source_ip","value":%[1]q}]}],`+
			`"source":{"scope":"Ip","value":%[1]q,"ip":%[1]q},"decisions":[]}]`, src, now)
	})
}

// startBouncer starts crowdsec-firewall-bouncer in nftables mode on the
// gateway, polling the local API every poll.
func (l *peersLab) startBouncer(tb testing.TB, cs *crowdSec, poll time.Duration) *nsProc {
	tb.Helper()
	cfg := filepath.Join(cs.dir, "bouncer-"+poll.String()+".yaml")
	body := fmt.Sprintf(`mode: nftables
pid_dir: %s
update_frequency: %s
daemonize: false
log_mode: stdout
log_level: info
api_url: %s
api_key: %s
disable_ipv6: false
deny_action: DROP
deny_log: false
supported_decisions_types:
  - ban
blacklists_ipv4: crowdsec-blacklists
blacklists_ipv6: crowdsec6-blacklists
ipset_type: nethash
iptables_chains:
  - INPUT
nftables:
  ipv4:
    enabled: true
    set-only: false
    table: crowdsec
    chain: crowdsec-chain
  ipv6:
    enabled: true
    set-only: false
    table: crowdsec6
    chain: crowdsec6-chain
prometheus:
  enabled: false
  listen_addr: 127.0.0.1
  listen_port: 60601
`, cs.dir, poll, cs.url, cs.bouncerKey)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
	p := startInNS(tb, "bouncer", l.gw.Gateway.NS, "/usr/bin/crowdsec-firewall-bouncer", "-c", cfg)
	tb.Cleanup(func() {
		if tb.Failed() || os.Getenv("E2E_LOGS") != "" {
			tb.Logf("bouncer (%s) log:\n%s", poll, p.log.String())
		}
	})
	waitUntil(tb, "the bouncer's nftables table", 30*time.Second, func() bool {
		if p.exited() {
			tb.Fatalf("the bouncer exited: %v\n%s", p.err, p.log.String())
		}
		_, err := l.lab.Run(tb.Context(), l.gw.Gateway.NS, "nft", "list", "table", "ip", "crowdsec")
		return err == nil
	})
	return p
}

// dropBouncerTables removes the bouncer's tables should it have left them.
func (l *peersLab) dropBouncerTables(tb testing.TB) {
	for _, t := range [][2]string{{"ip", "crowdsec"}, {"ip6", "crowdsec6"}} {
		_, _ = l.lab.Run(tb.Context(), l.gw.Gateway.NS, "nft", "delete", "table", t[0], t[1])
	}
}
