package e2e

// Benchmarks of the gateway's sensors (issue #17) with the real binaries in
// a namespace lab: how long a sign on the gateway takes to become an
// indicator at the controller, and what watching costs the agent, and the
// quarantine, on a gateway carrying ten thousand new connections a second.

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/sensors"
	"github.com/warden-ir/warden/agent/wire"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/demo"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
	"github.com/warden-ir/warden/store"
)

// BenchmarkSensorsLatency measures, with `warden agent --sensors` on a lab
// gateway delivering to `warden serve`'s agent listener, the time from a
// sign on the gateway to the indicator the controller files for it:
//
//   - log: one sshd line appended to the log file the authentication
//     watcher follows (source: files): an admin's login outside business
//     hours from an address never used before, so each line is its own
//     off_hours_admin_login with a fingerprint of its own;
//   - conn: the gateway itself opening a TCP connection to a port of the
//     C2 server it never used (learning over): one unknown_destination.
//
// Latency runs from just before the write (or the connect) to the
// indicator's received_at at the controller: both processes read the same
// host clock, and the test's polling for the indicator does not count.
// detect is the part up to the finding's observed_at (the agent's clock
// when its watcher judged the sign), deliver the rest: the agent's durable
// queue, the mutual-TLS post, the controller's intake. One warm-up sign of
// each kind (which also opens the sender's connection) is not counted.
//
// Run it with:
//
//	go test -run '^$' -bench BenchmarkSensorsLatency -benchtime 100x ./e2e/
func BenchmarkSensorsLatency(b *testing.B) {
	netlabtest.Skip(b, "nft")
	l := newSensorsBenchLab(b, sensorsBenchOptions{Prefix: "sbl17", Site: "hq", Policies: "policies:\n" + askPeopleTail, Sensors: latencySensorsFile})
	for _, path := range []struct {
		name string
		sign func(testing.TB) sign
	}{{"log", l.logSign}, {"conn", l.connSign}} {
		b.Run(path.name, func(b *testing.B) {
			path.sign(b) // warm-up, not counted
			var lat latencies
			for b.Loop() {
				lat.add(path.sign(b))
			}
			lat.report(b)
		})
	}
}

// TestSensorsLatencyPath runs the benchmark's two paths three times each
// and checks what arrives: every sign its own indicator (a fresh
// fingerprint, never taken for a duplicate of the one before), of the
// right kind, about the right gateway, and nothing else. It keeps the
// benchmark's machinery (the signs, and finding the indicator each
// became) proven in `make test`, where benchmarks do not run; it asserts
// nothing about time.
func TestSensorsLatencyPath(t *testing.T) {
	netlabtest.Skip(t, "nft")
	l := newSensorsBenchLab(t, sensorsBenchOptions{Prefix: "slp17", Site: "hq", Policies: "policies:\n" + askPeopleTail, Sensors: latencySensorsFile})
	for range 3 {
		got := l.logSign(t)
		if in := got.rec.Indicator; in.Kind != sensors.KindOffHoursAdminLogin || in.Gateway != l.gw || in.Source != "warden-agent" || in.Labels["sensor"] != "auth" || got.rec.Duplicate {
			t.Errorf("log sign became %+v", got.rec)
		}
	}
	for range 3 {
		got := l.connSign(t)
		if in := got.rec.Indicator; in.Kind != sensors.KindUnknownDestination || in.Gateway != l.gw || in.Labels["direction"] != sensors.ConnOriginated || in.Severity != "critical" || got.rec.Duplicate {
			t.Errorf("conn sign became %+v", got.rec)
		}
	}
	// Six signs, six indicators; the agent's queue empties (the agent
	// takes a finding off it once the controller's answer is back, just
	// after the indicator is stored) and dropped none.
	var shown v1.GatewaySensors
	waitUntil(t, "the agent's queue empty", 30*time.Second, func() bool {
		l.api.call(t, http.MethodGet, "/v1/gateways/"+l.gw+"/sensors", nil, http.StatusOK, &shown)
		return shown.Queued == 0
	})
	if shown.Dropped != 0 {
		t.Errorf("the agent's queue dropped %d findings", shown.Dropped)
	}
	if n := len(l.findings.pending); n != 0 {
		t.Errorf("%d indicators came that no sign explains: %+v", n, l.findings.pending)
	}
}

// latencySensorsFile turns on the authentication watcher on a log file and
// the connection watcher, learning already over: business hours are a day
// three days away, so every admin login is off hours, and logins from the
// sign's addresses (198.51.0.0/16) are from the management networks, so an
// off-hours finding is the only one each makes. The per-minute bound of
// the connection watcher is lifted: every sign must get through.
func latencySensorsFile(l *sensorsBenchLab) string {
	day := strings.ToLower(((time.Now().UTC().Weekday() + 3) % 7).String()[:3])
	return fmt.Sprintf(`learning:
  period: 1ms
auth:
  enabled: true
  source: files
  files: [%q]
  time_zone: UTC
  business_hours: {start: "09:00", end: "18:00", days: [%s]}
  management_networks: ["198.51.0.0/16"]
conn:
  enabled: true
  management_networks: [%s]
  originated_severity: critical
  unknown_destination_confidence: 0.95
  max_findings_per_minute: 1000000
`, l.authLog, day, l.mgmtList())
}

// loadSensorsFile turns on every watcher: authentication on a log file,
// connections (learning over), volume (interface counters), health
// (processes, /dev/kmsg) and configuration (a swanctl.conf).
func loadSensorsFile(l *sensorsBenchLab) string {
	return fmt.Sprintf(`learning:
  period: 1ms
auth:
  enabled: true
  source: files
  files: [%q]
  management_networks: [%s]
conn:
  enabled: true
  management_networks: [%s]
volume:
  enabled: true
  sources: [interfaces]
health:
  enabled: true
config:
  enabled: true
  root: %q
  paths: ["/swanctl"]
`, l.authLog, l.mgmtList(), l.mgmtList(), l.etc)
}

// sensorsBenchLab is an agents lab (newAgentsLab) of one site whose agent
// runs the sensors a file turns on, delivering to the controller's agent
// listener. Each finding opens an incident of its own (incident and dedup
// windows of 1ns), and the guards that would stop a gateway being
// contained again and again are lifted.
type sensorsBenchLab struct {
	*socLab
	site        netlab.Site
	gw          string
	agentListen string
	// authLog is the log file the authentication watcher follows, etc the
	// root of the configuration watcher.
	authLog, etc string
	agent        *agentCaller
	findings     *findingWatch
	signs        int
	// agentArgv starts the agent with its sensors (restartAgent).
	agentArgv []string
}

type sensorsBenchOptions struct {
	Prefix, Site string
	Policies     string
	// Sensors is the sensors file; nil runs the agent without sensors.
	Sensors func(l *sensorsBenchLab) string
	// AgentBinary is agentsLabOptions.AgentBinary.
	AgentBinary string
}

// sensorsAgentListenPort is the controller's agent listener in these labs.
const sensorsAgentListenPort = 8781

func newSensorsBenchLab(tb testing.TB, opt sensorsBenchOptions) *sensorsBenchLab {
	tb.Helper()
	sl := &sensorsBenchLab{gw: "gw-" + opt.Site}
	sensorsFile := func(l *socLab) string { return filepath.Join(l.dir, "sensors-"+opt.Site+".yaml") }
	sl.socLab = newAgentsLab(tb, agentsLabOptions{
		Prefix: opt.Prefix, Sites: []string{opt.Site}, Policies: opt.Policies, AgentBinary: opt.AgentBinary,
		Configure: func(cfg *config.Config) {
			mgmt, _ := netip.ParseAddrPort(cfg.Server.Listen)
			sl.agentListen = netip.AddrPortFrom(mgmt.Addr(), sensorsAgentListenPort).String()
			cfg.Server.AgentListen = sl.agentListen
			cfg.Agents.ServerCertFile, cfg.Agents.ServerKeyFile = cfg.Agents.CertFile, cfg.Agents.KeyFile
			cfg.Guards.MaxAutoIsolationsPerSite, cfg.Guards.MaxAutoIsolationsFleet = 1<<30, 1<<30
			cfg.Guards.BreakerMinGateways = 1 << 30
			cfg.Intake.DedupWindow, cfg.Intake.IncidentWindow = time.Nanosecond, time.Nanosecond
		},
		BeforeAgents: func(l *socLab) {
			sl.socLab = l
			sl.site = l.lab.Sites()[0]
			sl.statefulGateway(tb)
			if opt.Sensors == nil {
				return
			}
			sl.authLog = filepath.Join(l.dir, "auth.log")
			sl.etc = filepath.Join(l.dir, "etc-"+opt.Site)
			for _, f := range []struct {
				path, body string
			}{
				{sl.authLog, ""},
				{filepath.Join(sl.etc, "swanctl", "swanctl.conf"), "connections {\n}\n"},
			} {
				if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
					tb.Fatal(err)
				}
				if err := os.WriteFile(f.path, []byte(f.body), 0o600); err != nil {
					tb.Fatal(err)
				}
			}
			if err := os.WriteFile(sensorsFile(l), []byte(opt.Sensors(sl)), 0o600); err != nil {
				tb.Fatal(err)
			}
		},
		AgentArgs: func(l *socLab, s netlab.Site) []string {
			if opt.Sensors == nil {
				return nil
			}
			return []string{"--sensors", sensorsFile(l), "--controller-url", "https://" + sl.agentListen}
		},
	})
	sl.agent = newAgentCaller(tb, sl.lab.Mgmt().NS, sl.pki, "https://"+netip.AddrPortFrom(sl.site.Gateway.V4, agentPort).String())
	sl.waitAgent(tb)
	sl.findings = &findingWatch{api: sl.api, gw: sl.gw, read: map[string]bool{}}
	return sl
}

// statefulGateway gives the gateway a stateful rule, as a real gateway's
// firewall has: the kernel tracks connections (and so reports them to the
// connection watcher, and has flows for the quarantine to kill) only in a
// namespace where some rule uses conntrack. One such rule tracks every
// flow of the namespace, forwarded ones too.
func (l *sensorsBenchLab) statefulGateway(tb testing.TB) {
	tb.Helper()
	for _, c := range [][]string{
		{"nft", "add", "table", "inet", "site"},
		{"nft", "add", "chain", "inet", "site", "siteout", "{", "type", "filter", "hook", "output", "priority", "0", ";", "policy", "accept", ";", "}"},
		{"nft", "add", "rule", "inet", "site", "siteout", "ct", "state", "new", "counter"},
	} {
		if out, err := l.lab.Run(tb.Context(), l.site.Gateway.NS, c...); err != nil {
			tb.Fatalf("site firewall of %s: %v\n%s", l.site.Name, err, out)
		}
	}
}

// mgmtList is the lab's management networks as a YAML flow list's items.
func (l *sensorsBenchLab) mgmtList() string {
	var out []string
	for _, p := range l.lab.ManagementPrefixes() {
		out = append(out, strconv.Quote(p.String()))
	}
	return strings.Join(out, ", ")
}

// sign is one sign made on the gateway and the indicator it became.
type sign struct {
	start time.Time // just before the write or the connect
	rec   v1.IndicatorRecord
}

// logSign appends one sshd line to the followed log: root logging in, off
// hours, from an address of the management networks never used before.
func (l *sensorsBenchLab) logSign(tb testing.TB) sign {
	tb.Helper()
	l.signs++
	n := l.signs
	src := netip.AddrFrom4([4]byte{198, 51, byte(n / 250), byte(n%250 + 1)}).String()
	line := fmt.Sprintf("%s %s sshd[%d]: Accepted publickey for root from %s port 5555 ssh2: ED25519 SHA256:qGm0aA9n8Xm2bG5tpoB4m1jPZrK8vS0wZ2bD4n7dE%03d\n",
		time.Now().Format(time.Stamp), l.gw, 1000+n, src, n%1000)
	f, err := os.OpenFile(l.authLog, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	if _, err := f.WriteString(line); err != nil {
		tb.Fatal(err)
	}
	rec := l.findings.wait(tb, "the off-hours login from "+src, func(r v1.IndicatorRecord) bool {
		return r.Indicator.Kind == sensors.KindOffHoursAdminLogin && slices.Contains(r.Indicator.Observables.IPs, src)
	})
	return sign{start: start, rec: rec}
}

// connSign has the gateway open a TCP connection to a port of the C2
// server it never used, on which a listener answers for this sign alone.
func (l *sensorsBenchLab) connSign(tb testing.TB) sign {
	tb.Helper()
	l.signs++
	port := uint16(20000 + l.signs)
	c2 := l.lab.C2()
	to := netip.AddrPortFrom(c2.V4, port)
	var ln net.Listener
	if err := netlab.Do(c2.NS, func() (err error) {
		ln, err = net.Listen("tcp", to.String())
		return err
	}); err != nil {
		tb.Fatalf("listening on the C2 server's %s: %v", to, err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			_ = c.Close()
		}
	}()
	start := time.Now()
	if err := netlab.TCPConnect(tb.Context(), l.site.Gateway.NS, to, okWait); err != nil {
		tb.Fatalf("the gateway's connection to %s: %v", to, err)
	}
	rec := l.findings.wait(tb, fmt.Sprintf("the gateway's connection to %s", to), func(r v1.IndicatorRecord) bool {
		return r.Indicator.Kind == sensors.KindUnknownDestination && r.Indicator.Labels["port"] == strconv.Itoa(int(port)) &&
			slices.Contains(r.Indicator.Observables.IPs, c2.V4.String())
	})
	return sign{start: start, rec: rec}
}

// findingWatch finds, at the controller, the indicator a sign became. Each
// finding opens an incident of its own (sensorsBenchLab), so the incidents
// about the gateway are read once each, newest first.
type findingWatch struct {
	api *apiNS
	gw  string
	// read are the incidents already read; pending the indicators found
	// in them that no wait has claimed yet.
	read    map[string]bool
	pending []v1.IndicatorRecord
}

// wait polls until an indicator about the gateway matches, and returns it.
// Indicators that match nothing stay pending.
func (w *findingWatch) wait(tb testing.TB, what string, match func(v1.IndicatorRecord) bool) v1.IndicatorRecord {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for i, r := range w.pending {
			if match(r) {
				w.pending = slices.Delete(w.pending, i, i+1)
				return r
			}
		}
		var list v1.IncidentList
		w.api.call(tb, http.MethodGet, "/v1/incidents?limit=20", nil, http.StatusOK, &list)
		fresh := false
		for _, inc := range list.Incidents {
			if inc.Gateway != w.gw || w.read[inc.ID] {
				continue
			}
			var d v1.IncidentDetail
			w.api.call(tb, http.MethodGet, "/v1/incidents/"+inc.ID, nil, http.StatusOK, &d)
			w.read[inc.ID] = true
			w.pending = append(w.pending, d.Indicators...)
			fresh = true
		}
		if fresh {
			continue
		}
		if time.Now().After(deadline) {
			tb.Fatalf("waiting for %s at the controller: nothing after 30s (other indicators: %+v)", what, w.pending)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// latencies collects signs' latencies and their two parts.
type latencies struct {
	total, detect, deliver []time.Duration
}

func (s *latencies) add(g sign) {
	s.total = append(s.total, g.rec.ReceivedAt.Sub(g.start))
	s.detect = append(s.detect, g.rec.Indicator.ObservedAt.Sub(g.start))
	s.deliver = append(s.deliver, g.rec.ReceivedAt.Sub(g.rec.Indicator.ObservedAt))
}

func (s *latencies) report(b *testing.B) {
	b.ReportMetric(float64(len(s.total)), "signs")
	b.ReportMetric(ms(pct(s.total, 50)), "p50-ms")
	b.ReportMetric(ms(pct(s.total, 99)), "p99-ms")
	b.ReportMetric(ms(pct(s.total, 100)), "max-ms")
	b.ReportMetric(ms(pct(s.detect, 50)), "detect-p50-ms")
	b.ReportMetric(ms(pct(s.detect, 99)), "detect-p99-ms")
	b.ReportMetric(ms(pct(s.deliver, 50)), "deliver-p50-ms")
	b.ReportMetric(ms(pct(s.deliver, 99)), "deliver-p99-ms")
}

// BenchmarkSensorsUnderLoad measures the agent on a gateway carrying about
// loadRate new TCP connections a second through it, from its LAN to the C2
// server (each reset by the client once up), made by a load generator in
// the test process from sockets created inside the LAN namespace.
//
// First, over loadWindow of load, with every watcher on (authentication on
// a log file, connections with learning over, volume, health,
// configuration): the agent's CPU (utime+stime from /proc/PID/stat, in %
// of one core), its memory (VmRSS and VmHWM), the connections completed
// per second, the findings they made, what the agent's queue holds and
// dropped, and how often the conntrack event socket overran (events the
// kernel dropped because the watcher fell behind). Then the same agent
// without sensors, for its CPU alone (agent-cpu-off-%) and the
// connections the gateway then carries (conn/s-off).
//
// Then, under the same load, each iteration is one containment: a
// c2_beacon indicator, the isolate step through the agent, time to contain
// from the indicator's received_at to the isolate step's finished_at (as
// BenchmarkLinuxTimeToContain). Iterations alternate, in pairs (on, off,
// off, on, on, …), between the agent with its sensors and the agent
// without, restarted between pairs outside the timer, so that both halves
// share the machine's conditions; ttc-p50-vs-off-% and ttc-p99-vs-off-%
// say how much longer containment took with the sensors on, and
// ttc-paired-vs-off-% the median difference within each run of four. Outside the
// timer each iteration first waits until the gateway tracks again most
// (80 %) of the flows it tracked in the first window: the quarantine kills
// every flow, and how many there are to kill is most of its time. After
// the containment it releases the gateway.
//
// Run it with, for example (an iteration takes about five seconds):
//
//	go test -run '^$' -bench BenchmarkSensorsUnderLoad -benchtime 100x ./e2e/
func BenchmarkSensorsUnderLoad(b *testing.B) {
	netlabtest.Skip(b, "nft")
	l := newSensorsBenchLab(b, sensorsBenchOptions{Prefix: "sbu17", Site: "osaka", Policies: demo.LinuxPolicySet(actions.NameIsolate), Sensors: loadSensorsFile})
	// The sensors answer (through the agent) once they run.
	l.api.call(b, http.MethodGet, "/v1/gateways/"+l.gw+"/sensors", nil, http.StatusOK, nil)
	c2 := l.lab.C2()
	acceptAndClose(b, c2.NS, netip.AddrPortFrom(netip.IPv6Unspecified(), loadPort))
	load := startConnLoad(b, l.site.LAN.NS, netip.AddrPortFrom(c2.V4, loadPort), loadRate, loadWorkers)
	withSensors := l.agents[l.site.Name]
	metrics := map[string]float64{} // reported after the loop: b.Loop's start deletes earlier ones

	// The load alone: what watching it costs the agent.
	time.Sleep(2 * time.Second) // let the load settle before measuring it
	pid := withSensors.cmd.Process.Pid
	cpu0, ok0, failed0, t0 := procCPU(b, pid), load.ok.Load(), load.failed.Load(), time.Now()
	time.Sleep(loadWindow)
	cpu1, ok1, failed1, t1 := procCPU(b, pid), load.ok.Load(), load.failed.Load(), time.Now()
	rss, hwm := procMemory(b, pid)
	window := t1.Sub(t0)
	steadyFlows := l.trackedFlows(b)
	metrics["agent-cpu-%"] = 100 * float64(cpu1-cpu0) / float64(window)
	metrics["agent-rss-MiB"] = float64(rss) / (1 << 20)
	metrics["agent-hwm-MiB"] = float64(hwm) / (1 << 20)
	metrics["conn/s"] = float64(ok1-ok0) / window.Seconds()
	metrics["failed-conn/s"] = float64(failed1-failed0) / window.Seconds()
	metrics["tracked-flows"] = float64(steadyFlows)
	var shown v1.GatewaySensors
	l.api.call(b, http.MethodGet, "/v1/gateways/"+l.gw+"/sensors", nil, http.StatusOK, &shown)
	kinds := l.agentFindings(b)
	n := 0
	for _, c := range kinds {
		n += c
	}
	metrics["findings"] = float64(n)
	metrics["queued"] = float64(shown.Queued)
	metrics["dropped"] = float64(shown.Dropped)
	metrics["ct-overruns"] = float64(strings.Count(withSensors.log.String(), "conntrack events lost"))
	b.Logf("under load: %.0f conn/s completed, %.0f/s failed %v; %d flows tracked; findings by kind %v; the agent's queue: %d pending, %d dropped",
		metrics["conn/s"], metrics["failed-conn/s"], load.errors(), steadyFlows, kinds, shown.Queued, shown.Dropped)

	// The same agent without sensors, for its own cost, and the load the
	// gateway then carries (the kernel's work for the watcher, building
	// and sending an event per connection, is in no agent's CPU time).
	l.restartAgent(b, false)
	pid = l.agents[l.site.Name].cmd.Process.Pid
	cpu0, ok0, t0 = procCPU(b, pid), load.ok.Load(), time.Now()
	time.Sleep(loadWindow)
	window = time.Since(t0)
	metrics["agent-cpu-off-%"] = 100 * float64(procCPU(b, pid)-cpu0) / float64(window)
	metrics["conn/s-off"] = float64(load.ok.Load()-ok0) / window.Seconds()

	// Containment under the same load, alternating in pairs.
	ttc := map[bool][]time.Duration{}
	isolate := map[bool][]time.Duration{}
	var series []time.Duration // every time to contain, in order: on, off, off, on, …
	sensorsOn := false
	i := 0
	for b.Loop() {
		b.StopTimer()
		if on := (i+1)/2%2 == 0; on != sensorsOn {
			l.restartAgent(b, on)
			sensorsOn = on
		}
		l.waitTracked(b, steadyFlows*8/10)
		i++
		b.StartTimer()
		_, runID := l.api.submitC2(b, l.gw, c2, i)
		r := l.api.waitRun(b, runID, 2*time.Millisecond)
		b.StopTimer()
		if r.State != store.RunSucceeded {
			b.Fatalf("run %s: %s", r.State, r.Error)
		}
		iso := stepOf(b, r, actions.NameIsolate)
		var inc v1.IncidentDetail
		l.api.call(b, http.MethodGet, "/v1/incidents/"+r.Incident, nil, http.StatusOK, &inc)
		if len(inc.Indicators) == 0 {
			b.Fatalf("incident %s has no indicator", r.Incident)
		}
		ttc[sensorsOn] = append(ttc[sensorsOn], iso.FinishedAt.Sub(inc.Indicators[0].ReceivedAt))
		series = append(series, iso.FinishedAt.Sub(inc.Indicators[0].ReceivedAt))
		isolate[sensorsOn] = append(isolate[sensorsOn], iso.FinishedAt.Sub(iso.StartedAt))
		l.api.release(b, l.gw, r.Incident)
		b.StartTimer()
	}
	b.StopTimer()
	load.stop()
	for _, v := range []struct {
		on   bool
		name string
	}{{true, "on"}, {false, "off"}} {
		metrics["ttc-"+v.name+"-p50-ms"] = ms(pct(ttc[v.on], 50))
		metrics["ttc-"+v.name+"-p99-ms"] = ms(pct(ttc[v.on], 99))
		metrics["isolate-"+v.name+"-p50-ms"] = ms(pct(isolate[v.on], 50))
	}
	metrics["containments"] = float64(i)
	if on, off := ttc[true], ttc[false]; len(on) > 0 && len(off) > 0 {
		rel := func(p int) float64 { return 100 * (float64(pct(on, p)) - float64(pct(off, p))) / float64(pct(off, p)) }
		metrics["ttc-p50-vs-off-%"] = rel(50)
		metrics["ttc-p99-vs-off-%"] = rel(99)
	}
	// The same, paired: each run of four (on, off, off, on) compares its
	// two halves, which ran within seconds of each other, so that the
	// machine's drift (other work on it) cancels out; the median of those.
	var paired []float64
	for q := 0; q+4 <= len(series); q += 4 {
		on, off := series[q]+series[q+3], series[q+1]+series[q+2]
		paired = append(paired, 100*(float64(on)-float64(off))/float64(off))
	}
	if len(paired) > 0 {
		slices.Sort(paired)
		metrics["ttc-paired-vs-off-%"] = paired[len(paired)/2]
	}
	for unit, v := range metrics {
		b.ReportMetric(v, unit)
	}
}

const (
	loadRate    = 10000
	loadWorkers = 64
	loadWindow  = 10 * time.Second
	// loadPort is the C2 server's port the load connects to.
	loadPort = 9
)

// restartAgent stops the gateway's agent and starts it again, with its
// sensors (as the lab first started it) or without, and waits until it
// answers. The quarantine was released before: the agent starts clean.
func (l *sensorsBenchLab) restartAgent(tb testing.TB, sensors bool) {
	tb.Helper()
	if l.agentArgv == nil {
		l.agentArgv = slices.Clone(l.agents[l.site.Name].cmd.Args[4:]) // after "ip netns exec NS"
	}
	argv := slices.Clone(l.agentArgv)
	if !sensors {
		for _, flag := range []string{"--sensors", "--controller-url"} {
			if i := slices.Index(argv, flag); i >= 0 {
				argv = slices.Delete(argv, i, i+2)
			}
		}
	}
	l.agents[l.site.Name].stop()
	p := startInNS(tb, "agent-"+l.site.Name, l.site.Gateway.NS, argv...)
	l.agents[l.site.Name] = p
	l.waitAgent(tb)
	// A fresh agent's first seconds are not its steady state: the
	// watchers' first looks (a /proc scan, counters, hashes of the
	// watched files), and with sensors the load's destination reported
	// again (the repeat gate is the process's) and its notify run at the
	// controller. Containment is measured after them, for both variants.
	time.Sleep(3 * time.Second)
	if sensors {
		waitUntil(tb, "the agent's queue empty", 30*time.Second, func() bool {
			var shown v1.GatewaySensors
			l.api.call(tb, http.MethodGet, "/v1/gateways/"+l.gw+"/sensors", nil, http.StatusOK, &shown)
			return shown.Queued == 0
		})
	}
	waitUntil(tb, "no run in progress at the controller", 30*time.Second, func() bool {
		var list v1.RunList
		l.api.call(tb, http.MethodGet, "/v1/runs", nil, http.StatusOK, &list)
		return !slices.ContainsFunc(list.Runs, func(r v1.Run) bool { return r.State == v1.RunPending || r.State == v1.RunRunning })
	})
}

// waitAgent waits until the gateway's agent answers over mutual TLS.
func (l *sensorsBenchLab) waitAgent(tb testing.TB) {
	tb.Helper()
	waitFor(tb, "the agent answering", 30*time.Second, func() (bool, error) {
		if p := l.agents[l.site.Name]; p.exited() {
			tb.Fatalf("the agent exited: %v\n%s", p.err, p.log.String())
		}
		_, err := l.agent.send(tb.Context(), wire.KindObserve, nil, nil)
		return err == nil, err
	})
}

// trackedFlows is how many flows the gateway's conntrack table holds.
func (l *sensorsBenchLab) trackedFlows(tb testing.TB) int {
	tb.Helper()
	var raw []byte
	// /proc/sys/net answers for the network namespace of the thread that
	// opens it.
	if err := netlab.Do(l.site.Gateway.NS, func() (err error) {
		raw, err = os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count")
		return err
	}); err != nil {
		tb.Fatalf("reading the gateway's conntrack count: %v", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		tb.Fatalf("the gateway's conntrack count %q: %v", raw, err)
	}
	return n
}

// waitTracked waits until the gateway tracks at least n flows again.
func (l *sensorsBenchLab) waitTracked(tb testing.TB, n int) {
	tb.Helper()
	waitUntil(tb, fmt.Sprintf("the gateway tracking %d flows again", n), 30*time.Second, func() bool { return l.trackedFlows(tb) >= n })
}

// agentFindings counts, by kind, the indicators the gateway's agent
// delivered.
func (l *sensorsBenchLab) agentFindings(tb testing.TB) map[string]int {
	tb.Helper()
	var list v1.IncidentList
	l.api.call(tb, http.MethodGet, "/v1/incidents?limit=10000", nil, http.StatusOK, &list)
	out := map[string]int{}
	for _, inc := range list.Incidents {
		if inc.Gateway != l.gw {
			continue
		}
		var d v1.IncidentDetail
		l.api.call(tb, http.MethodGet, "/v1/incidents/"+inc.ID, nil, http.StatusOK, &d)
		for _, r := range d.Indicators {
			if r.Indicator.Source == "warden-agent" {
				out[r.Indicator.Kind]++
			}
		}
	}
	return out
}

// connLoad opens TCP connections from a namespace at a steady rate, each
// reset as soon as it is up, so that the client keeps no TIME_WAIT and the
// LAN host's ports last. Each worker keeps its OS thread inside the
// namespace (netlab.Do) for its whole loop, so every socket it creates is
// the namespace's, and makes blocking system calls: a goroutine locked to
// its thread and parked in Go's network poller would cost a thread handoff
// per connection, and the generator could not reach the rate on two cores.
type connLoad struct {
	ok, failed atomic.Int64
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	stopOnce   sync.Once
	// errs counts failures by error.
	errMu sync.Mutex
	errs  map[string]int
}

func (g *connLoad) countError(err error) {
	g.failed.Add(1)
	g.errMu.Lock()
	g.errs[err.Error()]++
	g.errMu.Unlock()
}

// errors reports the failures by error.
func (g *connLoad) errors() map[string]int {
	g.errMu.Lock()
	defer g.errMu.Unlock()
	return maps.Clone(g.errs)
}

// startConnLoad connects from namespace ns to the IPv4 address to, rate
// times a second over workers workers, until the benchmark ends.
func startConnLoad(tb testing.TB, ns string, to netip.AddrPort, rate, workers int) *connLoad {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g := &connLoad{cancel: cancel, errs: map[string]int{}}
	sa := &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()}
	// A connection not up within this fails with EINPROGRESS (SO_SNDTIMEO
	// bounds a blocking connect): under a quarantine, say.
	timeout := unix.NsecToTimeval((250 * time.Millisecond).Nanoseconds())
	reset := unix.Linger{Onoff: 1, Linger: 0}
	every := time.Duration(workers) * time.Second / time.Duration(rate)
	for w := range workers {
		g.wg.Go(func() {
			err := netlab.Do(ns, func() error {
				next := time.Now().Add(every * time.Duration(w) / time.Duration(workers))
				for ctx.Err() == nil {
					// Paced, with no catching up on a backlog (after a
					// quarantine, say) beyond a few connections.
					if wait := time.Until(next); wait > 0 {
						time.Sleep(wait)
					} else if wait < -4*every {
						next = time.Now()
					}
					next = next.Add(every)
					fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
					if err != nil {
						g.countError(err)
						continue
					}
					if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &timeout); err != nil {
						g.countError(err)
					} else if err := unix.Connect(fd, sa); err != nil {
						g.countError(err)
					} else {
						_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &reset)
						g.ok.Add(1)
					}
					_ = unix.Close(fd)
				}
				return nil
			})
			if err != nil {
				g.countError(err)
			}
		})
	}
	tb.Cleanup(g.stop)
	return g
}

func (g *connLoad) stop() {
	g.stopOnce.Do(func() {
		g.cancel()
		g.wg.Wait()
	})
}

// acceptAndClose listens at addr in namespace ns and closes every
// connection it accepts at once. The client resets its end (connLoad), so
// neither keeps a TIME_WAIT; were this end to reset first, the reset could
// reach the client before its dial returned, and fail it.
func acceptAndClose(tb testing.TB, ns string, addr netip.AddrPort) {
	tb.Helper()
	var ln net.Listener
	if err := netlab.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr.String())
		return err
	}); err != nil {
		tb.Fatalf("listening in %s: %v", ns, err)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.Close()
			}
		})
	}
	tb.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
}

// userHZ is the unit of /proc/PID/stat's times (USER_HZ, 100 on Linux
// whatever the kernel's own tick).
const userHZ = 100

// procCPU is the CPU time process pid used so far: utime + stime.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command (which may hold spaces), from field 3.
	i := bytes.LastIndexByte(raw, ')')
	f := strings.Fields(string(raw[i+1:]))
	if i < 0 || len(f) < 13 {
		tb.Fatalf("/proc/%d/stat: %q", pid, raw)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("/proc/%d/stat: %q", pid, raw)
	}
	return time.Duration(utime+stime) * time.Second / userHZ
}

// procMemory is process pid's resident set now and at its peak, in bytes.
func procMemory(tb testing.TB, pid int) (rss, hwm int64) {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		name, v, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			tb.Fatalf("/proc/%d/status: %q", pid, line)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm
}
