package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/agenttest"
	"github.com/warden-ir/warden/agent/wire"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/demo"
	"github.com/warden-ir/warden/providers/linux"
	"github.com/warden-ir/warden/providers/vsphere/vsim"
	"github.com/warden-ir/warden/store"
	"github.com/warden-ir/warden/store/pgtest"
)

// The replica tests run three real `warden serve` on one PostgreSQL (a
// private cluster of the test's, store/pgtest) and the vCenter simulator,
// each replica reaching the database through a forwarder of the test's
// own (dbProxy) that can cut it off. The simulator's task delays are a
// package global: these tests must not run in parallel.

// haReplicas is how many `warden serve` share the database.
const haReplicas = 3

// haEnv is one test's world: the simulator, the database, the shared
// configuration, a loopback notification receiver and the replicas.
type haEnv struct {
	t       *testing.T
	bin     string
	lab     *vsim.Lab
	pg      *pgtest.Cluster
	db      string // the database's name
	cfgPath string
	env     []string
	hooks   *webhookCounter
	people  *crew
	reps    []*haReplica
}

// haReplica is one `warden serve` and its way to the database.
type haReplica struct {
	addr  string
	proxy *dbProxy
	proc  *proc
	api   apiCall
}

func newHAEnv(t *testing.T, bin string) *haEnv {
	t.Helper()
	pg := pgtest.Start(t, pgtest.Options{})
	lab, err := vsim.Start(t.Context(), vsim.Options{})
	if err != nil {
		t.Fatalf("starting the simulator: %v", err)
	}
	t.Cleanup(lab.Close)
	e := &haEnv{t: t, bin: bin, lab: lab, pg: pg, db: pg.CreateDB(t, ""), hooks: startWebhookCounter(t)}

	dir := t.TempDir()
	cfg := config.Defaults()
	e.people = bootstrapAdmin(t, &cfg, dir)
	cfg.Store.Driver, cfg.Store.PasswordFile = config.DriverPostgres, pg.PasswordFile
	cfg.Store.DSN = pg.DSNWithoutPassword(e.db) // each replica's own, through its forwarder, comes from WARDEN_STORE_DSN
	cfg.Evidence.Dir = filepath.Join(dir, "evidence")
	cfg.Inventory = demo.Inventory()
	vc := lab.Config()
	cfg.VSphere = vsphereConfig(vc)
	cfg.Notify = config.Notify{Default: "default", Channels: []config.Channel{{Name: "default", URL: e.hooks.url}}}
	cfg.Executor.BackoffBase, cfg.Executor.BackoffMax = 10*time.Millisecond, 100*time.Millisecond
	cfg.Reconcile.Interval = time.Hour
	cfg.Drift.Interval = 0
	e.cfgPath = writeConfig(t, dir, cfg)
	e.env = []string{"WARDEN_VSPHERE_PASSWORD=" + vc.Password}

	// The schema first, as an operator would before starting replicas.
	out, err := exec.CommandContext(t.Context(), bin, "store", "migrate", "-c", e.cfgPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "postgres store: schema version") {
		t.Fatalf("warden store migrate: %v\n%s", err, out)
	}
	for range haReplicas {
		r := &haReplica{addr: freeAddr(t), proxy: startDBProxy(t, pg.Addr())}
		r.api = apiCall{base: "http://" + r.addr, people: e.people}
		e.reps = append(e.reps, r)
	}
	t.Cleanup(func() {
		for i, r := range e.reps {
			if r.proc != nil && strings.Contains(r.proc.log.String(), pg.Password) {
				t.Errorf("replica %d logged the database password", i)
			}
		}
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			for i, r := range e.reps {
				if r.proc != nil {
					t.Logf("replica %d log:\n%s", i, r.proc.log.String())
				}
			}
		}
	})
	for i := range e.reps {
		e.start(i)
	}
	for i := range e.reps {
		e.waitReady(i)
	}
	e.people.add(t, e.reps[0].api.base)
	return e
}

// start starts replica i (again), on its own API address and forwarder.
func (e *haEnv) start(i int) {
	e.t.Helper()
	r := e.reps[i]
	dsn := strings.Replace(e.pg.DSNWithoutPassword(e.db), e.pg.Addr(), r.proxy.addr(), 1)
	r.proc = startServe(e.t, e.bin, e.cfgPath, append(e.env, "WARDEN_SERVER_LISTEN="+r.addr, "WARDEN_STORE_DSN="+dsn))
}

func (e *haEnv) waitReady(i int) {
	e.t.Helper()
	c, err := e.reps[i].api.as(v1.RoleAdmin).client()
	if err != nil {
		e.t.Fatal(err)
	}
	waitFor(e.t, fmt.Sprintf("replica %d ready", i), 60*time.Second, func() (bool, error) {
		err := c.Ready(e.t.Context())
		return err == nil, err
	})
}

// status asks replica i for GET /v1/status.
func (e *haEnv) status(i int) (v1.Status, error) {
	c, err := e.reps[i].api.as(v1.RoleAdmin).client()
	if err != nil {
		return v1.Status{}, err
	}
	return c.Status(e.t.Context())
}

// leader waits until asking replica from names a leader that is one of
// the replicas other than not (-1: any), and returns its index and the
// lease.
func (e *haEnv) leader(from, not int, within time.Duration) (int, v1.Lease) {
	e.t.Helper()
	idx, lease := -1, v1.Lease{}
	waitFor(e.t, fmt.Sprintf("a leader other than replica %d", not), within, func() (bool, error) {
		st, err := e.status(from)
		if err != nil || st.Lease == nil || st.Lease.Expired {
			return false, err
		}
		for i, r := range e.reps {
			if i != not && r.proc != nil && r.proc.cmd.Process.Pid == st.Lease.PID && r.proc.cmd.ProcessState == nil {
				idx, lease = i, *st.Lease
				return true, nil
			}
		}
		return false, fmt.Errorf("the lease names pid %d", st.Lease.PID)
	})
	return idx, lease
}

// metric reads a gauge of replica i's /metrics (which needs no database).
func (e *haEnv) metric(i int, name string) (string, error) {
	return metricOf(e.reps[i].api.base, name)
}

// metricOf reads the sample of an unlabelled metric from a controller's
// /metrics.
func metricOf(base, name string) (string, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no %s in %s/metrics", name, base)
}

// alert posts the demo's C2 alert to replica i as the detector and returns
// the incident and the containment run it started.
func (e *haEnv) alert(i int) (incident, run string) {
	e.t.Helper()
	c, err := e.reps[i].api.as(v1.RoleIntake).client()
	if err != nil {
		e.t.Fatal(err)
	}
	accepted, err := c.SubmitAlertmanager(e.t.Context(), demo.SampleAlert(time.Now()))
	if err != nil {
		e.t.Fatalf("posting the alert to replica %d: %v", i, err)
	}
	for _, r := range accepted.Results {
		if r.Matched && r.RunID != "" {
			return r.IncidentID, r.RunID
		}
	}
	e.t.Fatalf("the alert started no run: %+v", accepted.Results)
	return "", ""
}

// openStore opens the database directly, as an operator's tools would.
func (e *haEnv) openStore() *store.Store {
	e.t.Helper()
	st, err := store.OpenPostgres(e.t.Context(), e.pg.DSN(e.db), store.PostgresOptions{})
	if err != nil {
		e.t.Fatalf("opening the database: %v", err)
	}
	e.t.Cleanup(func() { st.Close() })
	return st
}

// TestHAKillLeaderMidRunFinishesOnce: three replicas on one PostgreSQL. A
// C2 alert posted to a follower is contained by the leader; the leader is
// killed with SIGKILL while a step's vCenter task runs (delayed in the
// simulator). Another replica leads within 15 s and finishes the run,
// resuming the step as after a crash: vCenter made one snapshot and one
// isolation change, the channel got one notification, the audit chain
// verifies (`warden audit verify` on the database), and the killed process,
// started again, rejoins as a follower.
func TestHAKillLeaderMidRunFinishesOnce(t *testing.T) {
	if why := pgtest.Available(); why != "" {
		t.Skip(why)
	}
	bin := buildWarden(t)
	for _, step := range []string{actions.NameIsolate, actions.NameSnapshot} {
		t.Run(step+" in flight", func(t *testing.T) {
			e := newHAEnv(t, bin)
			ctx := t.Context()
			task := crashTask[step]
			lead, lease := e.leader(0, -1, 60*time.Second)
			follower := (lead + 1) % haReplicas

			vsim.SetTaskDelays(map[string]time.Duration{task: crashTaskDelay})
			defer vsim.SetTaskDelays(nil)
			incident, runID := e.alert(follower)
			api := e.reps[follower].api
			waitFor(t, step+" step running with its task in flight", 60*time.Second, func() (bool, error) {
				r, err := api.run(ctx, runID)
				if err != nil || stepOf(t, r, step).State != store.StepRunning {
					return false, err
				}
				ts := vmTasks(t, e.lab, task)
				return len(ts) == 1 && ts[0].State == types.TaskInfoStateRunning, nil
			})
			killed := e.reps[lead].proc
			killed.kill(t)
			at := time.Now()

			next, newLease := e.leader(follower, lead, 15*time.Second)
			t.Logf("replica %d took over from replica %d %s after the kill (epoch %d → %d)", next, lead, time.Since(at).Round(time.Millisecond), lease.Epoch, newLease.Epoch)
			if newLease.Epoch != lease.Epoch+1 {
				t.Errorf("the new leader's epoch %d, want %d", newLease.Epoch, lease.Epoch+1)
			}
			final := api.waitRun(t, runID, 60*time.Second)
			if final.State != store.RunSucceeded {
				t.Fatalf("the run after the failover: %s %q\n%s", final.State, final.Error, e.reps[next].proc.log)
			}
			for _, s := range final.Steps {
				if s.State == store.StepSucceeded && s.Action == step && (s.Attempts != 2 || s.Epoch != newLease.Epoch) {
					t.Errorf("step %s: %d attempts under epoch %d, want 2 (one per leader), the last under %d", s.Name, s.Attempts, s.Epoch, newLease.Epoch)
				}
			}

			// vCenter did each thing once; the channel was told once.
			for name, want := range map[string]int{vsim.TaskCreateSnapshot: 1, vsim.TaskReconfigure: 1} {
				if ts := vmTasks(t, e.lab, name); len(ts) != want {
					t.Errorf("%d %s tasks, want %d", len(ts), name, want)
				}
			}
			vm := (&crashEnv{t: t, lab: e.lab}).observe()
			if len(vm.Snapshots) != 1 || vm.Snapshots[0].Name != "warden-"+incident || !vm.Quarantined {
				t.Errorf("after the failover the vm has snapshots %+v, quarantined %t; want one snapshot and quarantined", vm.Snapshots, vm.Quarantined)
			}
			(&crashEnv{t: t, hooks: e.hooks}).assertOneNotificationPerRun(1)

			// The chain verifies, and records the run resumed and finished
			// once.
			cmd := exec.CommandContext(ctx, e.bin, "audit", "verify", "--db", e.pg.DSNWithoutPassword(e.db))
			cmd.Env = append(os.Environ(), "PGPASSWORD="+e.pg.Password)
			if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "intact") {
				t.Fatalf("warden audit verify: %v\n%s", err, out)
			}
			es, err := audit.List(ctx, e.openStore().DB(), "")
			if err != nil {
				t.Fatal(err)
			}
			resumed, finished := 0, 0
			for _, a := range es {
				switch {
				case a.Run != runID:
				case a.Action == "run.resumed":
					resumed++
				case strings.HasPrefix(a.Action, "run.") && (a.Action == "run.succeeded" || a.Action == "run.failed"):
					finished++
				}
			}
			if resumed != 1 || finished != 1 {
				t.Errorf("run %s resumed %d times and finished %d times in the audit; want 1 and 1", runID, resumed, finished)
			}

			// The killed replica, started again, follows.
			e.start(lead)
			e.waitReady(lead)
			waitFor(t, "the restarted replica on record", 30*time.Second, func() (bool, error) {
				st, err := e.status(lead)
				if err != nil {
					return false, err
				}
				for _, r := range st.Replicas {
					if r.PID == e.reps[lead].proc.cmd.Process.Pid {
						return !r.Leader && st.Lease != nil && st.Lease.PID == e.reps[next].proc.cmd.Process.Pid, nil
					}
				}
				return false, nil
			})
			if v, err := e.metric(lead, "warden_leader"); err != nil || v != "0" {
				t.Errorf("the restarted replica's warden_leader = %q (%v), want 0", v, err)
			}
			if v, err := e.metric(next, "warden_lease_epoch"); err != nil || v != fmt.Sprint(newLease.Epoch) {
				t.Errorf("the leader's warden_lease_epoch = %q (%v), want %d", v, err, newLease.Epoch)
			}
		})
	}
}

// TestHALeaderCutOffStopsActing: the leader's connections to the database
// are blocked (its forwarder holds every byte). It stops acting: its
// /metrics shows warden_leader 0 and /readyz 503, another replica takes
// the lease with the next epoch and contains a gateway the alert names,
// and the cut-off one changes nothing in vCenter. An agent that has taken
// a command under the new epoch refuses one carrying the old.
func TestHALeaderCutOffStopsActing(t *testing.T) {
	if why := pgtest.Available(); why != "" {
		t.Skip(why)
	}
	e := newHAEnv(t, buildWarden(t))
	ctx := t.Context()
	lead, lease := e.leader(0, -1, 60*time.Second)
	follower := (lead + 1) % haReplicas
	e.reps[lead].proxy.block()

	waitFor(t, "the cut-off leader to stop leading", 30*time.Second, func() (bool, error) {
		v, err := e.metric(lead, "warden_leader")
		return v == "0", err
	})
	next, newLease := e.leader(follower, lead, 30*time.Second)
	if newLease.Epoch != lease.Epoch+1 {
		t.Errorf("the new leader's epoch %d, want %d", newLease.Epoch, lease.Epoch+1)
	}
	if code, _, err := e.reps[lead].api.do(ctx, http.MethodGet, "/readyz", nil); code != http.StatusServiceUnavailable {
		t.Errorf("the cut-off replica's /readyz: %d (%v), want 503", code, err)
	}
	waitFor(t, "the cut-off replica's log to say it stopped leading", 30*time.Second, func() (bool, error) {
		return strings.Contains(e.reps[lead].proc.log.String(), "stopped leading"), nil
	})

	_, runID := e.alert(follower)
	final := e.reps[follower].api.waitRun(t, runID, 60*time.Second)
	if final.State != store.RunSucceeded {
		t.Fatalf("the run under the new leader: %s %q", final.State, final.Error)
	}
	for _, s := range final.Steps {
		if s.State == store.StepSucceeded && s.Epoch != newLease.Epoch {
			t.Errorf("step %s ran under epoch %d, want the new leader's %d", s.Name, s.Epoch, newLease.Epoch)
		}
	}
	for name, want := range map[string]int{vsim.TaskCreateSnapshot: 1, vsim.TaskReconfigure: 1} {
		if ts := vmTasks(t, e.lab, name); len(ts) != want {
			t.Errorf("%d %s tasks, want %d (the new leader's only)", len(ts), name, want)
		}
	}
	t.Logf("replica %d (epoch %d) leads; replica %d, cut off at epoch %d, does not", next, newLease.Epoch, lead, lease.Epoch)

	// An agent that took a command under the new epoch refuses the old.
	fw := &haFirewall{}
	pki, url := agenttest.Serve(t, agent.Deps{Firewall: fw}, nil)
	c, err := linux.NewAgentClient(url, linux.AgentTLS{CertFile: filepath.Join(pki, agent.ControllerCertFile),
		KeyFile: filepath.Join(pki, agent.ControllerKeyFile), CAFile: filepath.Join(pki, agent.CAFile)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Observe(actions.WithFence(ctx, haFence(newLease.Epoch)))
	if err != nil || st.LeaseEpoch != newLease.Epoch {
		t.Fatalf("a command under the new epoch: %+v, %v", st, err)
	}
	_, err = c.Release(actions.WithFence(ctx, haFence(lease.Epoch)))
	var ae *linux.AgentError
	if !errors.Is(err, actions.ErrFenced) || !errors.As(err, &ae) || ae.Status != wire.StatusStaleEpoch ||
		!strings.Contains(err.Error(), fmt.Sprintf("epoch %d", lease.Epoch)) {
		t.Fatalf("a command under the old epoch: %v, want the agent's refusal (412) naming it", err)
	}
	if fw.removed() != 0 {
		t.Errorf("the refused release reached the firewall")
	}

	// Reconnected, the old leader follows.
	e.reps[lead].proxy.unblock()
	e.waitReady(lead)
	if v, err := e.metric(lead, "warden_leader"); err != nil || v != "0" {
		t.Errorf("the reconnected replica's warden_leader = %q (%v), want 0", v, err)
	}
	if l, _ := e.leader(lead, -1, 30*time.Second); l != next {
		t.Errorf("after the reconnection replica %d leads, want %d", l, next)
	}
}

// haFence is a lease at a fixed epoch, as a controller's would be.
type haFence int64

func (f haFence) Epoch() int64                { return int64(f) }
func (f haFence) Check(context.Context) error { return nil }

// haFirewall is the agent's firewall for the fencing check: it counts
// removals (a release that got through).
type haFirewall struct {
	mu      sync.Mutex
	removes int
}

func (f *haFirewall) Apply(context.Context, wire.QuarantineSpec) (bool, error) { return true, nil }
func (f *haFirewall) Remove(context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removes++
	return true, nil
}
func (f *haFirewall) Observe(context.Context, wire.QuarantineSpec) (wire.FirewallState, error) {
	return wire.FirewallState{}, nil
}
func (f *haFirewall) removed() int { f.mu.Lock(); defer f.mu.Unlock(); return f.removes }

// dbProxy forwards TCP connections to the database and can cut them off:
// while blocked it passes no byte either way (it keeps reading, holding
// what it read) and connects no new connection, as a network partition
// would, without closing anything.
type dbProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	open   chan struct{} // closed while traffic passes
}

func startDBProxy(t *testing.T, target string) *dbProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dbProxy{ln: ln, target: target, open: make(chan struct{})}
	close(p.open)
	var conns sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.unblock()
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { p.forward(t.Context(), c) })
		}
	}()
	return p
}

func (p *dbProxy) addr() string { return p.ln.Addr().String() }

func (p *dbProxy) gate() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

func (p *dbProxy) block() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
		p.open = make(chan struct{})
	default:
	}
}

func (p *dbProxy) unblock() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
	default:
		close(p.open)
	}
}

func (p *dbProxy) forward(ctx context.Context, c net.Conn) {
	defer c.Close()
	select {
	case <-p.gate():
	case <-ctx.Done():
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case <-p.gate():
				case <-ctx.Done():
					return
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pipe(up, c)
	go pipe(c, up)
	select {
	case <-done:
	case <-ctx.Done():
	}
}
