package sensors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock/clocktest"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

var healthT0 = time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)

const healthNetNS = "net:[4026531840]"

// healthProc is a fake /proc: the files the health watcher reads, written
// by the test.
type healthProc struct {
	t    *testing.T
	root string
}

func newHealthProc(t *testing.T, bootID string) *healthProc {
	t.Helper()
	p := &healthProc{t: t, root: t.TempDir()}
	p.write("stat", "cpu  1 2 3 4\nbtime 1796526000\nprocesses 100\n")
	p.setBoot(bootID)
	p.add(4242, 1, "warden-agent", 9000, healthNetNS)
	if err := os.Symlink("4242", filepath.Join(p.root, "self")); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *healthProc) write(rel, content string) {
	p.t.Helper()
	path := filepath.Join(p.root, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

func (p *healthProc) setBoot(id string) { p.write("sys/kernel/random/boot_id", id+"\n") }

// add writes /proc/PID/stat (as Linux lays it out: starttime is field 22)
// and ns/net.
func (p *healthProc) add(pid, ppid int, comm string, start uint64, netns string) {
	p.t.Helper()
	p.addState(pid, ppid, comm, start, netns, 'S')
}

// addState is add with the process's state (Z: a zombie).
func (p *healthProc) addState(pid, ppid int, comm string, start uint64, netns string, state byte) {
	p.t.Helper()
	p.write(fmt.Sprintf("%d/stat", pid), fmt.Sprintf("%d (%s) %c %d %d %d 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 1000 100 18446744073709551615\n", pid, comm, state, ppid, pid, pid, start))
	ns := filepath.Join(p.root, strconv.Itoa(pid), "ns")
	if err := os.MkdirAll(ns, 0o755); err != nil {
		p.t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(ns, "net"))
	if err := os.Symlink(netns, filepath.Join(ns, "net")); err != nil {
		p.t.Fatal(err)
	}
}

func (p *healthProc) kill(pid int) {
	p.t.Helper()
	if err := os.RemoveAll(filepath.Join(p.root, strconv.Itoa(pid))); err != nil {
		p.t.Fatal(err)
	}
}

// healthFindings collects findings from a running sensor.
type healthFindings struct {
	mu  sync.Mutex
	all []wire.Finding
	ch  chan wire.Finding
}

func newHealthFindings() *healthFindings { return &healthFindings{ch: make(chan wire.Finding, 256)} }

func (c *healthFindings) emit(f wire.Finding) {
	c.mu.Lock()
	c.all = append(c.all, f)
	c.mu.Unlock()
	c.ch <- f
}

func (c *healthFindings) list() []wire.Finding {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.all)
}

// healthRunning is a watcher running in the background of a test.
type healthRunning struct {
	s     *Health
	looks chan struct{} // signalled after every look
	stop  func() error  // cancels Run and returns its error
}

// healthStarted runs s until the test ends and returns once its start hook
// ran.
func healthStarted(t *testing.T, s *Health, emit func(wire.Finding)) *healthRunning {
	t.Helper()
	h := &healthRunning{s: s, looks: make(chan struct{}, 1024)}
	started := make(chan struct{})
	s.started = func() { close(started) }
	s.looked = func() {
		select {
		case h.looks <- struct{}{}:
		default:
		}
	}
	h.stop = sensorsStart(t, started, func(ctx context.Context) error { return s.Run(ctx, emit) })
	return h
}

// healthNext advances clk by step until a finding arrives (a real-time
// deadline only fails the test; it never decides an outcome).
func healthNext(t *testing.T, clk *clocktest.Fake, step time.Duration, c *healthFindings) wire.Finding {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case f := <-c.ch:
			return f
		case <-deadline:
			t.Fatal("no finding within 10s")
		default:
		}
		clk.Advance(step)
		select {
		case f := <-c.ch:
			return f
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ticks advances clk until the watcher has taken n more looks (an Advance
// made while Run is between looks arms nothing, so it keeps advancing;
// the real-time deadline only fails the test).
func (h *healthRunning) ticks(t *testing.T, clk *clocktest.Fake, n int) {
	t.Helper()
	for len(h.looks) > 0 { // looks before this call do not count
		<-h.looks
	}
	deadline := time.After(10 * time.Second)
	for seen := 0; seen < n; {
		clk.Advance(h.s.cfg.Interval)
		select {
		case <-h.looks:
			seen++
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%d of %d looks within 10s", seen, n)
		}
	}
}

func newTestHealth(t *testing.T, cfg HealthConfig, deps HealthDeps) *Health {
	t.Helper()
	s, err := NewHealth(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	return s.(*Health)
}

func TestHealthConfigValidate(t *testing.T) {
	tests := map[string]struct {
		cfg  HealthConfig
		want []string // substrings of the error; none: valid
	}{
		"defaults":     {cfg: HealthConfig{}},
		"no processes": {cfg: HealthConfig{Processes: []string{}}},
		"long comm": {cfg: HealthConfig{Processes: []string{"a-very-long-daemon-name"}},
			want: []string{"sensors.health.processes[0]", "15 bytes"}},
		"critical not watched": {cfg: HealthConfig{Processes: []string{"charon"}, Critical: []string{"sshd"}},
			want: []string{"sensors.health.critical[0]", "not among"}},
		"bad device": {cfg: HealthConfig{WireGuardDevices: []string{"wg0", "wg/1"}},
			want: []string{"sensors.health.wireguard_devices[1]"}},
		"option-like unit": {cfg: HealthConfig{Units: []string{"strongswan.service", "--all"}},
			want: []string{"sensors.health.units[1]"}},
		"relative kernel log": {cfg: HealthConfig{KernelLog: "kmsg"}, want: []string{"sensors.health.kernel_log"}},
		"kernel log off":      {cfg: HealthConfig{KernelLog: KernelLogOff}},
		"tiny interval":       {cfg: HealthConfig{Interval: time.Millisecond}, want: []string{"sensors.health.interval"}},
		"negative limit":      {cfg: HealthConfig{KernelRateLimit: -time.Second}, want: []string{"sensors.health.kernel_rate_limit"}},
		"relative proc":       {cfg: HealthConfig{ProcRoot: "proc"}, want: []string{"sensors.health.proc_root"}},
		"relative netns":      {cfg: HealthConfig{NetNamespace: "site-a"}, want: []string{"sensors.health.net_namespace"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sensorsCheckValidate(t, tc.cfg.WithDefaults().Validate(), tc.want...)
		})
	}
	if _, err := NewHealth(HealthConfig{}, HealthDeps{}); err == nil || !strings.Contains(err.Error(), "state dir") {
		t.Errorf("NewHealth without a state dir = %v, want an error naming the state dir", err)
	}
}

func TestHealthParseProcStat(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    procEntry
		wantErr bool
	}{
		"plain": {in: "812 (charon) S 1 812 812 0 -1 4194560 1 0 0 0 3 2 0 0 20 0 17 0 1234 1000 100",
			want: procEntry{pid: 812, ppid: 1, comm: "charon", state: 'S', start: 1234}},
		"zombie": {in: "813 (sshd) Z 1 812 812 0 -1 4194560 1 0 0 0 3 2 0 0 20 0 17 0 1235 0 0",
			want: procEntry{pid: 813, ppid: 1, comm: "sshd", state: 'Z', start: 1235}},
		"comm with spaces and parens": {in: "77 (a) b (c)) S 76 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 1 1",
			want: procEntry{pid: 77, ppid: 76, comm: "a) b (c)", state: 'S', start: 99}},
		"truncated": {in: "5 (x) S 1 5 5", wantErr: true},
		"no comm":   {in: "5 x S 1", wantErr: true},
		"bad start": {in: "5 (x) S 1 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 soon 1 1", wantErr: true},
		"bad pid":   {in: "x5 (x) S 1 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 1 1", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tc.in))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseProcStat = %+v, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseProcStat = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	// And the real thing.
	self, err := readProcStat("/proc/self/stat")
	if err != nil || self.pid != os.Getpid() || self.start == 0 {
		t.Errorf("readProcStat(/proc/self/stat) = %+v, %v; want pid %d and a start time", self, err, os.Getpid())
	}
}

func TestHealthDiffProcesses(t *testing.T) {
	a, b, c := procInstance{PID: 100, Start: 10}, procInstance{PID: 200, Start: 20}, procInstance{PID: 100, Start: 30}
	tests := map[string]struct {
		prev, cur map[string][]procInstance
		want      []string // "name gone->next"
	}{
		"first look":       {prev: nil, cur: map[string][]procInstance{"charon": {a}}},
		"same":             {prev: map[string][]procInstance{"charon": {a}}, cur: map[string][]procInstance{"charon": {a}}},
		"stopped":          {prev: map[string][]procInstance{"charon": {a}}, cur: map[string][]procInstance{"charon": {}}, want: []string{"charon 100->none"}},
		"restarted":        {prev: map[string][]procInstance{"charon": {a}}, cur: map[string][]procInstance{"charon": {b}}, want: []string{"charon 100->200"}},
		"pid reused":       {prev: map[string][]procInstance{"sshd": {a}}, cur: map[string][]procInstance{"sshd": {c}}, want: []string{"sshd 100->100"}},
		"started only":     {prev: map[string][]procInstance{"charon": {}}, cur: map[string][]procInstance{"charon": {a}}},
		"newly watched":    {prev: map[string][]procInstance{"sshd": {b}}, cur: map[string][]procInstance{"sshd": {b}, "charon": {a}}},
		"two gone one new": {prev: map[string][]procInstance{"charon": {a, b}}, cur: map[string][]procInstance{"charon": {{PID: 300, Start: 40}}}, want: []string{"charon 100->300", "charon 200->none"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, ch := range diffProcesses(tc.prev, tc.cur) {
				next := "none"
				if ch.next != nil {
					next = strconv.Itoa(ch.next.PID)
				}
				got = append(got, fmt.Sprintf("%s %d->%s", ch.name, ch.gone.PID, next))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("diffProcesses = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestHealthProcessCrashes runs the watcher over a fake /proc: a charon
// that stops, restarts and is replaced; sshd sessions coming and going;
// a charon of another network namespace.
func TestHealthProcessCrashes(t *testing.T) {
	proc := newHealthProc(t, "boot-1")
	proc.add(1, 0, "systemd", 1, healthNetNS)
	proc.add(100, 1, "charon", 500, healthNetNS)
	proc.add(200, 1, "sshd", 600, healthNetNS)
	proc.add(900, 1, "charon", 700, "net:[4026532999]") // another site's charon
	clk := clocktest.NewFake(healthT0)
	s := newTestHealth(t, HealthConfig{ProcRoot: proc.root, KernelLog: KernelLogOff, Processes: []string{"charon", "sshd", "wireguard-go"}, Critical: []string{"charon", "sshd"}},
		HealthDeps{StateDir: t.TempDir(), Clock: clk})
	got := newHealthFindings()
	run := healthStarted(t, s, got.emit)
	step := DefaultHealthInterval

	// A session: sshd's child sshd, and a shell; then it ends. Not a crash.
	proc.add(201, 200, "sshd", 800, healthNetNS)
	run.ticks(t, clk, 2)
	proc.kill(201)
	// A session's unprivileged child outlived its monitor as a zombie,
	// re-parented to PID 1 (which may reap late): no instance of sshd, and
	// no crash when it is reaped.
	proc.addState(202, 1, "sshd", 850, healthNetNS, 'Z')
	run.ticks(t, clk, 2)
	proc.kill(202)
	// The other namespace's charon dies: not ours.
	proc.kill(900)
	run.ticks(t, clk, 2)
	if l := got.list(); len(l) != 0 {
		t.Fatalf("findings after a session and a foreign charon = %+v, want none", l)
	}

	proc.kill(100)
	f := healthNext(t, clk, step, got)
	want := map[string]string{"source": "process", "process": "charon", "pid": "100", "event": "stopped"}
	healthCheck(t, f, KindCrash, SeverityHigh, want)
	if f.Key != "crash/process/charon/100@500" {
		t.Errorf("Key = %q, want crash/process/charon/100@500", f.Key)
	}
	if !strings.Contains(f.Evidence[0], "charon pid 100") || f.Labels["started"] != "2026-12-06T03:00:05Z" {
		t.Errorf("evidence %q / started %q: want the gone pid and its start time (btime + 5 s)", f.Evidence, f.Labels["started"])
	}

	// Started again: no finding; then the new one is replaced.
	proc.add(101, 1, "charon", 900, healthNetNS)
	run.ticks(t, clk, 2)
	proc.kill(101)
	proc.add(102, 1, "charon", 950, healthNetNS)
	f = healthNext(t, clk, step, got)
	healthCheck(t, f, KindCrash, SeverityHigh, map[string]string{"event": "restarted", "pid": "101", "new_pid": "102"})

	// A non-critical program: medium.
	proc.add(300, 1, "wireguard-go", 990, healthNetNS)
	run.ticks(t, clk, 2)
	proc.kill(300)
	f = healthNext(t, clk, step, got)
	healthCheck(t, f, KindCrash, SeverityMedium, map[string]string{"process": "wireguard-go", "event": "stopped"})

	if err := run.stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}

func healthCheck(t *testing.T, f wire.Finding, kind, severity string, labels map[string]string) {
	t.Helper()
	if f.Kind != kind || f.Severity != severity || f.Sensor != HealthSensorName || f.Key == "" || f.Summary == "" || len(f.Evidence) == 0 {
		t.Errorf("finding %+v: want kind %s, severity %s, sensor health, a key, a summary and evidence", f, kind, severity)
	}
	for k, v := range labels {
		if f.Labels[k] != v {
			t.Errorf("label %s = %q, want %q (finding %+v)", k, f.Labels[k], v, f)
		}
	}
}

// TestHealthWhileDown: what changed while the agent was not running is
// reported when it starts again, and the agent's own unclean stop too;
// after a reboot, old pids mean nothing.
func TestHealthWhileDown(t *testing.T) {
	proc := newHealthProc(t, "boot-1")
	proc.add(100, 1, "charon", 500, healthNetNS)
	proc.add(200, 1, "sshd", 600, healthNetNS)
	state := t.TempDir()
	clk := clocktest.NewFake(healthT0)
	run := func() []wire.Finding {
		t.Helper()
		s := newTestHealth(t, HealthConfig{ProcRoot: proc.root, KernelLog: KernelLogOff}, HealthDeps{StateDir: state, Clock: clk})
		got := newHealthFindings()
		run := healthStarted(t, s, got.emit)
		if err := run.stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v", err)
		}
		return got.list()
	}
	if l := run(); len(l) != 0 {
		t.Fatalf("first run = %+v, want no findings (nothing to compare with)", l)
	}
	// A clean restart with nothing changed: nothing.
	if l := run(); len(l) != 0 {
		t.Fatalf("clean restart = %+v, want no findings", l)
	}

	// charon restarted while the agent was down.
	proc.kill(100)
	proc.add(110, 1, "charon", 520, healthNetNS)
	l := run()
	if len(l) != 1 {
		t.Fatalf("after charon restarted while down: %+v, want one finding", l)
	}
	healthCheck(t, l[0], KindCrash, SeverityHigh, map[string]string{"process": "charon", "event": "restarted", "pid": "100", "new_pid": "110"})

	// The agent itself was killed: its record says it never stopped cleanly.
	healthEditState(t, state, func(st *healthState) { st.Agent.Clean = false })
	l = run()
	if len(l) != 1 {
		t.Fatalf("after an unclean stop: %+v, want one finding", l)
	}
	healthCheck(t, l[0], KindCrash, SeverityMedium, map[string]string{"source": "agent", "event": "agent_unclean_stop", "pid": "4242"})

	// A reboot: new boot id, every pid new; only the reboot is reported.
	proc.setBoot("boot-2")
	proc.kill(110)
	proc.kill(200)
	proc.add(120, 1, "charon", 50, healthNetNS)
	proc.add(210, 1, "sshd", 60, healthNetNS)
	l = run()
	if len(l) != 1 {
		t.Fatalf("after a clean reboot: %+v, want one finding", l)
	}
	healthCheck(t, l[0], KindCrash, SeverityLow, map[string]string{"event": "reboot"})

	// An unclean reboot (the agent never stopped): medium.
	healthEditState(t, state, func(st *healthState) { st.Agent.Clean = false })
	proc.setBoot("boot-3")
	l = run()
	if len(l) != 1 {
		t.Fatalf("after an unclean reboot: %+v, want one finding", l)
	}
	healthCheck(t, l[0], KindCrash, SeverityMedium, map[string]string{"event": "unclean_reboot"})

	st := healthReadState(t, state)
	if st.Agent.Runs != 6 || st.Agent.UncleanStops != 2 || !st.Agent.Clean {
		t.Errorf("agent record %+v: want 6 runs, 2 unclean stops, a clean last stop", st.Agent)
	}
	fi, err := os.Stat(filepath.Join(state, HealthStateFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v, mode %v; want 0600", err, fi.Mode())
	}
}

func healthReadState(t *testing.T, dir string) healthState {
	t.Helper()
	st, ok, err := loadHealthState(dir)
	if err != nil || !ok {
		t.Fatalf("loading the state: %v (found %t)", err, ok)
	}
	return st
}

func healthEditState(t *testing.T, dir string, edit func(*healthState)) {
	t.Helper()
	st := healthReadState(t, dir)
	edit(&st)
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, HealthStateFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestHealthRealProcess watches a real process this test starts and
// kills, through the real /proc.
func TestHealthRealProcess(t *testing.T) {
	name, bin := healthSleeper(t, "wdnh")
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	first := start()
	clk := clocktest.NewFake(healthT0)
	// AllNamespaces: the namespace filter is proven by the namespace test
	// and the fake /proc; this one is about reading the real /proc, and
	// must not depend on which namespace this test binary's main thread is
	// in while the package's namespace tests run.
	s := newTestHealth(t, HealthConfig{Processes: []string{name}, KernelLog: KernelLogOff, AllNamespaces: true}, HealthDeps{StateDir: t.TempDir(), Clock: clk})
	got := newHealthFindings()
	h := healthStarted(t, s, got.emit)
	// The first look may come after Run has started: make sure one has
	// seen the first process before it is killed.
	h.ticks(t, clk, 1)

	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	second := start()
	f := healthNext(t, clk, DefaultHealthInterval, got)
	healthCheck(t, f, KindCrash, SeverityHigh, map[string]string{"process": name, "pid": strconv.Itoa(first.Process.Pid)})
	// Either the replacement was already running at that look (restarted)
	// or not yet (stopped): both say the first run ended.
	if e := f.Labels["event"]; e != "restarted" && e != "stopped" {
		t.Errorf("event = %q, want restarted or stopped", e)
	}
	_ = second
}

// healthSleeper copies sleep(1) under a name unique to this test binary,
// so that its processes' comm is one no one else runs.
func healthSleeper(t *testing.T, prefix string) (name, bin string) {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	name = fmt.Sprintf("%s%d", prefix, os.Getpid()%1_000_000_000)
	bin = filepath.Join(t.TempDir(), name)
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return name, bin
}

// TestHealthNetNamespace: with net_namespace naming a namespace the test
// creates, a program run inside it is watched and the same program run
// outside is not.
func TestHealthNetNamespace(t *testing.T) {
	netlabtest.Skip(t)
	name, bin := healthSleeper(t, "wdnn")
	ns, err := netlab.NewNamespace(fmt.Sprintf("sensors-health-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Errorf("closing the namespace: %v", err)
		}
	})
	run := func(inside bool) *exec.Cmd {
		t.Helper()
		cmd := exec.Command(bin, "600")
		start := cmd.Start
		var err error
		if inside {
			err = ns.Do(start) // forked from a thread inside the namespace
		} else {
			err = start()
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	in, out := run(true), run(false)
	clk := clocktest.NewFake(healthT0)
	s := newTestHealth(t, HealthConfig{Processes: []string{name}, KernelLog: KernelLogOff, NetNamespace: "/run/netns/" + ns.Name},
		HealthDeps{StateDir: t.TempDir(), Clock: clk})
	got := newHealthFindings()
	h := healthStarted(t, s, got.emit)

	_ = out.Process.Kill()
	_ = out.Wait()
	h.ticks(t, clk, 2)
	if l := got.list(); len(l) != 0 {
		t.Fatalf("findings after the outside process ended: %+v, want none", l)
	}
	_ = in.Process.Kill()
	_ = in.Wait()
	f := healthNext(t, clk, DefaultHealthInterval, got)
	healthCheck(t, f, KindCrash, SeverityHigh, map[string]string{"process": name, "pid": strconv.Itoa(in.Process.Pid), "event": "stopped"})
}

// TestHealthWireGuardDevice: a configured device that disappears is a
// crash; one that was never there is not; one that comes back is quiet.
func TestHealthWireGuardDevice(t *testing.T) {
	proc := newHealthProc(t, "boot-1")
	var mu sync.Mutex
	links := []string{"lo", "eth0", "wg0"}
	setLinks := func(l ...string) { mu.Lock(); links = l; mu.Unlock() }
	clk := clocktest.NewFake(healthT0)
	s := newTestHealth(t, HealthConfig{ProcRoot: proc.root, KernelLog: KernelLogOff, Processes: []string{}, WireGuardDevices: []string{"wg0", "wg9"}},
		HealthDeps{StateDir: t.TempDir(), Clock: clk, Links: func() ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(links), nil
		}})
	got := newHealthFindings()
	run := healthStarted(t, s, got.emit)
	run.ticks(t, clk, 2)
	setLinks("lo", "eth0")
	f := healthNext(t, clk, DefaultHealthInterval, got)
	healthCheck(t, f, KindCrash, SeverityHigh, map[string]string{"source": "link", "device": "wg0", "event": "disappeared"})
	setLinks("lo", "eth0", "wg0")
	run.ticks(t, clk, 3)
	if l := got.list(); len(l) != 1 {
		t.Fatalf("findings = %+v, want only the disappearance", l)
	}
}

// A `systemctl show -p … -- a b` answer as systemd prints it: a block per
// unit, in order, properties in systemd's own order.
const healthShowOutput = `Result=success
NRestarts=0
ExecMainCode=0
ExecMainStatus=0
LoadState=loaded
ActiveState=active
SubState=running
InvocationID=8e3e7b2f1b7c4b0e9d1d0c8e4f6a2b11

Result=success
NRestarts=0
ExecMainCode=0
ExecMainStatus=0
LoadState=not-found
ActiveState=inactive
SubState=dead
InvocationID=
`

func TestHealthParseSystemctlShow(t *testing.T) {
	units, err := parseSystemctlShow([]byte(healthShowOutput), 2)
	if err != nil {
		t.Fatal(err)
	}
	if units[0].ActiveState != "active" || units[0].InvocationID == "" || units[1].LoadState != "not-found" {
		t.Fatalf("units = %+v", units)
	}
	if _, err := parseSystemctlShow([]byte(healthShowOutput), 3); err == nil {
		t.Error("3 units expected from 2 blocks: want an error")
	}
	if _, err := parseSystemctlShow([]byte("garbage\n"), 1); err == nil {
		t.Error("a line without =: want an error")
	}
}

func TestHealthJudgeUnit(t *testing.T) {
	active := unitState{LoadState: "loaded", ActiveState: "active", SubState: "running", Result: "success", InvocationID: "aa"}
	with := func(u unitState, f func(*unitState)) unitState { f(&u); return u }
	tests := map[string]struct {
		prev, cur unitState
		event     string // "": no finding
		severity  string
	}{
		"unchanged": {prev: active, cur: active},
		"systemd restarted it": {prev: active, cur: with(active, func(u *unitState) { u.NRestarts, u.InvocationID, u.Result = 1, "bb", "signal" }),
			event: "restarted_after_failure", severity: SeverityHigh},
		"auto-restart pending then done": {prev: with(active, func(u *unitState) { u.ActiveState, u.SubState = "activating", "auto-restart" }),
			cur: with(active, func(u *unitState) { u.NRestarts = 1 }), event: "restarted_after_failure", severity: SeverityHigh},
		"failed": {prev: active, cur: with(active, func(u *unitState) { u.ActiveState, u.SubState, u.Result = "failed", "failed", "core-dump" }),
			event: "failed", severity: SeverityHigh},
		"stopped": {prev: active, cur: with(active, func(u *unitState) { u.ActiveState, u.SubState = "inactive", "dead" }),
			event: "stopped", severity: SeverityMedium},
		"restarted by hand": {prev: active, cur: with(active, func(u *unitState) { u.InvocationID = "cc" }),
			event: "restarted", severity: SeverityLow},
		"started":   {prev: with(active, func(u *unitState) { u.ActiveState = "inactive" }), cur: active},
		"recovered": {prev: with(active, func(u *unitState) { u.ActiveState = "failed" }), cur: with(active, func(u *unitState) { u.InvocationID = "dd" })},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f, ok := judgeUnit("strongswan.service", tc.prev, tc.cur, healthT0)
			if tc.event == "" {
				if ok {
					t.Fatalf("judgeUnit = %+v, want no finding", f)
				}
				return
			}
			if !ok {
				t.Fatalf("judgeUnit: no finding, want %s", tc.event)
			}
			healthCheck(t, f, KindCrash, tc.severity, map[string]string{"event": tc.event, "unit": "strongswan.service", "source": "systemd"})
		})
	}
}

// TestHealthUnits runs systemctl through the exec seam: a stand-in
// program records its argument array and answers as systemctl would.
func TestHealthUnits(t *testing.T) {
	dir := t.TempDir()
	argsFile, answer := filepath.Join(dir, "args"), filepath.Join(dir, "answer")
	script := filepath.Join(dir, "systemctl")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > \""+argsFile+"\"\ncat \""+answer+"\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	setAnswer := func(nrestarts int, inv string) {
		t.Helper()
		out := fmt.Sprintf("ActiveState=active\nSubState=running\nResult=success\nNRestarts=%d\nInvocationID=%s\nLoadState=loaded\n", nrestarts, inv)
		if err := os.WriteFile(answer, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setAnswer(0, "aa")
	proc := newHealthProc(t, "boot-1")
	clk := clocktest.NewFake(healthT0)
	s := newTestHealth(t, HealthConfig{ProcRoot: proc.root, KernelLog: KernelLogOff, Processes: []string{}, Units: []string{"strongswan.service"}, Systemctl: script},
		HealthDeps{StateDir: t.TempDir(), Clock: clk})
	got := newHealthFindings()
	healthStarted(t, s, got.emit)
	args, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	wantArgs := "show\n-p\n" + strings.Join(unitProperties, ",") + "\n--\nstrongswan.service\n"
	if string(args) != wantArgs {
		t.Fatalf("systemctl argv = %q, want %q", args, wantArgs)
	}
	setAnswer(1, "bb")
	f := healthNext(t, clk, DefaultHealthInterval, got)
	healthCheck(t, f, KindCrash, SeverityHigh, map[string]string{"unit": "strongswan.service", "event": "restarted_after_failure", "n_restarts": "1"})
	if f.Key != "crash/unit/strongswan.service/aa/0" {
		t.Errorf("Key = %q: want the ended invocation", f.Key)
	}

	// A systemctl that fails (no systemd) costs a log line, not the watcher.
	missing := execSystemctl(filepath.Join(dir, "missing"))
	if _, err := missing(t.Context(), "show"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("running a missing systemctl = %v, want an error naming it", err)
	}
}

// healthKernelLines reads a fixture's lines.
func healthKernelLines(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return textLines(string(data))
}

// TestHealthClassifyKernel runs every fixture line through the classifier.
func TestHealthClassifyKernel(t *testing.T) {
	type sign struct{ event, process, detail string }
	tests := map[string][]sign{ // per line, in order; "" event: not a sign
		"health_kmsg_debian12.txt": {
			{}, {}, {},
			{kernelOOMNote, "perl", ""},
			{kernelOOMKill, "perl", ""},
			{kernelSegfault, "wdn-segv", "segfault"},
			{}, {}, {},
		},
		"health_dmesg_syzkaller.txt": {
			{kernelBug, "", "unable to handle kernel paging request at ffff88002bde1e40"},
			{kernelBug, "", "Oops: 0002 [#1] SMP DEBUG_PAGEALLOC KASAN"},
			{},
			{kernelBug, "", "general protection fault: 0000 [#1] SMP DEBUG_PAGEALLOC KASAN"},
			{kernelWarning, "", "kernel/locking/lockdep.c:3344"},
			{kernelWarning, "", "lib/refcount.c:150"},
		},
		"health_oom_older.txt": {
			{},
			{kernelOOMKill, "heapster", ""},
			{kernelOOMNote, "oomprocs", ""},
			{kernelOOMKill, "oomprocs", ""},
			{},
		},
	}
	for file, want := range tests {
		t.Run(file, func(t *testing.T) {
			lines := healthKernelLines(t, file)
			if len(lines) != len(want) {
				t.Fatalf("%d lines, want %d", len(lines), len(want))
			}
			for i, line := range lines {
				rec := parseKernelLine(line)
				s, ok := classifyKernel(rec.msg)
				got := sign{s.event, s.process, s.detail}
				if !ok {
					got = sign{}
				}
				if got != want[i] {
					t.Errorf("line %d %q: got %+v, want %+v", i+1, line, got, want[i])
				}
			}
		})
	}
	// The kmsg header is split off, and only from kmsg records.
	rec := parseKernelLine("3,82733,29559492192,-;Memory cgroup out of memory: Killed process 15343 (perl)")
	if !rec.hasSeq || rec.seq != 82733 || !strings.HasPrefix(rec.msg, "Memory cgroup") {
		t.Errorf("kmsg record parsed as %+v", rec)
	}
	if rec := parseKernelLine("Jul 22 10:42:40 newserver kernel: a; b, c, d"); rec.hasSeq {
		t.Errorf("a syslog line with ; parsed as a kmsg record: %+v", rec)
	}
	if _, ok := classifyKernel("RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, data leaks possible!"); ok {
		t.Error("a boot-time mitigation WARNING is not a crash sign")
	}
}

// TestHealthKernelFile follows a kernel log file the test appends the
// fixtures to while the watcher runs.
func TestHealthKernelFile(t *testing.T) {
	proc := newHealthProc(t, "boot-1")
	logPath := filepath.Join(t.TempDir(), "kern.log")
	if err := os.WriteFile(logPath, []byte("old line: Out of memory: Killed process 1 (before-start) total-vm:1kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	clk := clocktest.NewFake(healthT0)
	// An hour's rate limit: however the appends fall into polls, a burst
	// is within it.
	s := newTestHealth(t, HealthConfig{ProcRoot: proc.root, KernelLog: logPath, Processes: []string{"charon", "sshd"}, KernelRateLimit: time.Hour},
		HealthDeps{StateDir: t.TempDir(), Clock: clk})
	got := newHealthFindings()
	run := healthStarted(t, s, got.emit)
	appendLines := func(lines ...string) {
		t.Helper()
		f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := io.WriteString(f, strings.Join(lines, "\n")+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	step := DefaultHealthInterval

	appendLines(healthKernelLines(t, "health_kmsg_debian12.txt")...)
	oom := healthNext(t, clk, step, got)
	healthCheck(t, oom, KindCrash, SeverityMedium, map[string]string{"source": "kernel", "event": kernelOOMKill, "process": "perl", "pid": "15343"})
	if len(oom.Evidence) != 2 || !strings.Contains(oom.Evidence[0], "oom-kill:") || !strings.Contains(oom.Evidence[1], "Killed process 15343") {
		t.Errorf("OOM evidence = %q, want the oom-kill: summary and the kill line", oom.Evidence)
	}
	seg := healthNext(t, clk, step, got)
	healthCheck(t, seg, KindCrash, SeverityMedium, map[string]string{"event": kernelSegfault, "process": "wdn-segv"})

	// A critical program's OOM kill is high.
	appendLines("Out of memory: Killed process 812 (charon) total-vm:1056800kB, anon-rss:8kB, file-rss:4kB, shmem-rss:0kB")
	f := healthNext(t, clk, step, got)
	healthCheck(t, f, KindCrash, SeverityHigh, map[string]string{"process": "charon", "pid": "812"})

	// Warnings in a burst: one finding per rate limit, the next counts the
	// rest. Two more looks make sure the whole burst was read.
	syz := healthKernelLines(t, "health_dmesg_syzkaller.txt")
	appendLines(syz[4], syz[5], syz[4])
	f = healthNext(t, clk, step, got)
	healthCheck(t, f, KindCrash, SeverityMedium, map[string]string{"event": kernelWarning, "at": "kernel/locking/lockdep.c:3344"})
	run.ticks(t, clk, 2)
	clk.Advance(time.Hour)
	appendLines(syz[5])
	f = healthNext(t, clk, step, got)
	healthCheck(t, f, KindCrash, SeverityMedium, map[string]string{"event": kernelWarning, "left_out": "2"})

	// Truncated (logrotate copytruncate): read from the start again.
	if err := os.WriteFile(logPath, []byte(syz[0]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f = healthNext(t, clk, step, got)
	healthCheck(t, f, KindCrash, SeverityHigh, map[string]string{"event": kernelBug})

	for _, f := range got.list() {
		if f.Labels["process"] == "before-start" {
			t.Errorf("a line written before the watcher started was reported: %+v", f)
		}
	}
}

// TestHealthKernelResume: after a restart in the same boot, /dev/kmsg
// records up to the saved sequence number were handled already.
func TestHealthKernelResume(t *testing.T) {
	saved := uint64(82732)
	r := &healthRun{
		h:      &Health{critical: map[string]bool{}},
		kernel: &kernelSource{device: true, resume: &saved},
		oom:    map[int]string{},
		limit:  rateLimiter{last: map[string]time.Time{}, left: map[string]int{}},
		boot:   bootInfo{id: "boot-1"},
	}
	r.h.deps.Clock = clocktest.NewFake(healthT0)
	var got []wire.Finding
	for _, line := range healthKernelLines(t, "health_kmsg_debian12.txt") {
		r.handleKernel(parseKernelLine(line), func(f wire.Finding) { got = append(got, f) })
	}
	// The oom-kill: note (82732) was handled before; the kill (82733) and
	// the segfault (82734) are new.
	if len(got) != 2 || got[0].Labels["event"] != kernelOOMKill || got[1].Labels["event"] != kernelSegfault {
		t.Fatalf("findings = %+v, want the OOM kill and the segfault", got)
	}
	if len(got[0].Evidence) != 1 {
		t.Errorf("evidence = %q: the note was before the resume point", got[0].Evidence)
	}
	if got[0].Key != "crash/kernel/oom_kill/boot-1/82733" {
		t.Errorf("Key = %q, want crash/kernel/oom_kill/boot-1/82733", got[0].Key)
	}
	if r.kernel.seq == nil || *r.kernel.seq != 82737 {
		t.Errorf("last sequence = %v, want 82737", r.kernel.seq)
	}
}

// TestHealthKmsgDevice reads the real /dev/kmsg: a marker record written
// by the test (matching no crash sign) comes through the device reader,
// and closing stops the blocked read.
func TestHealthKmsgDevice(t *testing.T) {
	w, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("/dev/kmsg not writable: %v", err)
	}
	defer w.Close()
	s := newTestHealth(t, HealthConfig{ProcRoot: "/proc"}, HealthDeps{StateDir: t.TempDir()})
	k := s.openKernel(nil)
	if !k.device || k.records == nil {
		k.close()
		t.Skip("/dev/kmsg not readable as a device")
	}
	marker := fmt.Sprintf("warden agent/sensors test marker %d-%d", os.Getpid(), time.Now().UnixNano())
	// The newline ends the record: the kernel keeps a record without one
	// open for continuation, and readers see it only once it is ended.
	if _, err := io.WriteString(w, marker+"\n"); err != nil {
		k.close()
		t.Fatalf("writing the marker: %v", err)
	}
	deadline := time.After(10 * time.Second)
	for found := false; !found; {
		select {
		case rec := <-k.records:
			found = rec.hasSeq && strings.Contains(rec.msg, marker)
		case <-deadline:
			k.close()
			t.Fatal("the marker did not come through /dev/kmsg within 10s")
		}
	}
	closed := make(chan struct{})
	go func() { k.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("closing did not stop the blocked /dev/kmsg read")
	}
	if _, ok := <-k.records; ok {
		t.Error("records still open after close")
	}
}

func TestHealthRateLimiter(t *testing.T) {
	l := rateLimiter{every: time.Minute, last: map[string]time.Time{}, left: map[string]int{}}
	steps := []struct {
		key  string
		at   time.Duration
		ok   bool
		left int
	}{
		{"w", 0, true, 0},
		{"w", 10 * time.Second, false, 0},
		{"b", 20 * time.Second, true, 0},
		{"w", 30 * time.Second, false, 0},
		{"w", 60 * time.Second, true, 2},
		{"w", 61 * time.Second, false, 0},
	}
	for i, s := range steps {
		left, ok := l.allow(s.key, healthT0.Add(s.at))
		if ok != s.ok || left != s.left {
			t.Errorf("step %d: allow(%s, +%s) = %d, %t; want %d, %t", i, s.key, s.at, left, ok, s.left, s.ok)
		}
	}
	off := rateLimiter{}
	if _, ok := off.allow("x", healthT0); !ok {
		t.Error("a zero limiter must let everything through")
	}
}

// TestHealthCorruptState: a state file that cannot be read costs the
// history, not the watcher.
func TestHealthCorruptState(t *testing.T) {
	proc := newHealthProc(t, "boot-1")
	proc.add(100, 1, "charon", 500, healthNetNS)
	state := t.TempDir()
	if err := os.WriteFile(filepath.Join(state, HealthStateFile), []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk := clocktest.NewFake(healthT0)
	s := newTestHealth(t, HealthConfig{ProcRoot: proc.root, KernelLog: KernelLogOff}, HealthDeps{StateDir: state, Clock: clk})
	got := newHealthFindings()
	healthStarted(t, s, got.emit)
	proc.kill(100)
	f := healthNext(t, clk, DefaultHealthInterval, got)
	healthCheck(t, f, KindCrash, SeverityHigh, map[string]string{"process": "charon", "event": "stopped"})
	if st := healthReadState(t, state); st.Agent.PID != 4242 {
		t.Errorf("state after a torn file: %+v, want it rewritten", st)
	}
}

// TestHealthNamespaceID: the same namespace reached as /proc/self and as
// /proc/PID agrees, a fake's link text is its name.
func TestHealthNamespaceID(t *testing.T) {
	self, pid := namespaceID("/proc/self/ns/net"), namespaceID(fmt.Sprintf("/proc/%d/ns/net", os.Getpid()))
	if self == "" || self != pid || !strings.HasPrefix(self, "ino:") {
		t.Errorf("namespaceID: self %q, by pid %q; want the same nsfs inode", self, pid)
	}
	proc := newHealthProc(t, "boot-1")
	if got := namespaceID(filepath.Join(proc.root, "self", "ns", "net")); got != healthNetNS {
		t.Errorf("namespaceID in a fake /proc = %q, want %q", got, healthNetNS)
	}
	if got := namespaceID(filepath.Join(proc.root, "nowhere")); got != "" {
		t.Errorf("namespaceID of nothing = %q, want empty", got)
	}
}

// BenchmarkHealthLook is one look at the real /proc (every process's stat
// read, the namespace of each watched one).
func BenchmarkHealthLook(b *testing.B) {
	s, err := NewHealth(HealthConfig{KernelLog: KernelLogOff}, HealthDeps{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	r := &healthRun{h: s.(*Health), warned: map[string]string{}, kernel: &kernelSource{}}
	r.selfNS = namespaceID("/proc/self/ns/net")
	for b.Loop() {
		r.lookProcesses(healthT0)
	}
}
