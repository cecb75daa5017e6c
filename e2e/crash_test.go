package e2e

import (
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"
	"gopkg.in/yaml.v3"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/demo"
	"github.com/warden-ir/warden/internal/testsupport"
	"github.com/warden-ir/warden/notify"
	"github.com/warden-ir/warden/providers/vsphere"
	"github.com/warden-ir/warden/providers/vsphere/vsim"
	"github.com/warden-ir/warden/store"
)

// buildWarden compiles the real binary once per test.
func buildWarden(tb testing.TB) string {
	tb.Helper()
	return buildCommand(tb, "warden")
}

// buildWardenAgent builds the gateway's own binary, cmd/warden-agent.
func buildWardenAgent(tb testing.TB) string {
	tb.Helper()
	return buildCommand(tb, "warden-agent")
}

// buildCommand builds cmd/NAME, statically, into a temporary directory.
func buildCommand(tb testing.TB, name string) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), name)
	cmd := exec.CommandContext(tb.Context(), "go", "build", "-o", bin, "github.com/warden-ir/warden/cmd/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building %s: %v\n%s", name, err, out)
	}
	return bin
}

// writeConfig writes cfg as dir/warden.yaml and returns its path.
func writeConfig(tb testing.TB, dir string, cfg config.Config) string {
	tb.Helper()
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(dir, "warden.yaml")
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type proc struct {
	cmd *exec.Cmd
	log *testsupport.SyncBuffer
}

func startServe(t testing.TB, bin, cfgPath string, env []string) *proc {
	t.Helper()
	buf := &testsupport.SyncBuffer{}
	cmd := exec.Command(bin, "serve", "-c", cfgPath, "--log-level", "debug")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: buf}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return p
}

// apiCall calls a controller's API on loopback through the API client, as
// one of the stack's people.
type apiCall struct {
	base   string
	people *crew
	// role names whose token the calls carry (crew.token): the responder
	// when empty.
	role string
}

// as is a, calling as the person with role.
func (a apiCall) as(role string) apiCall { a.role = role; return a }

// client is the API client for a (making one does no I/O).
func (a apiCall) client() (*client.Client, error) {
	return client.New(a.base, a.people.token(a.role))
}

// do sends a request and returns the status and the answer: the JSON of a
// 2xx, the API's error message otherwise.
func (a apiCall) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	c, err := a.client()
	if err != nil {
		return 0, nil, err
	}
	return callAPI(ctx, c, method, path, body)
}

// callAPI sends a request through c and returns the status and the answer:
// the JSON of a 2xx, the API's error message otherwise.
func callAPI(ctx context.Context, c *client.Client, method, path string, body []byte) (int, []byte, error) {
	var data []byte
	code, err := c.Call(ctx, method, path, body, &data)
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.StatusCode, []byte(ce.Message), nil
	}
	return code, data, err
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(tb testing.TB, what string, timeout time.Duration, cond func() (bool, error)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run reads a run over the API as the store's row: the tests compare it
// with runs read from the store, and v1's JSON is the row's
// (api/convert_test.go pins it).
func (a apiCall) run(ctx context.Context, id string) (store.Run, error) {
	c, err := a.client()
	if err != nil {
		return store.Run{}, err
	}
	var r store.Run
	_, err = c.Call(ctx, http.MethodGet, "/v1/runs/"+id, nil, &r)
	return r, err
}

// waitRun waits up to within for run id to finish and returns it as it
// ended.
func (a apiCall) waitRun(tb testing.TB, id string, within time.Duration) store.Run {
	tb.Helper()
	var final store.Run
	waitFor(tb, "run "+id+" to finish", within, func() (bool, error) {
		r, err := a.run(tb.Context(), id)
		final = r
		return err == nil && r.Terminal(), err
	})
	return final
}

// The crash matrix kills a real `warden serve` (SIGKILL) in the middle of a
// step that drives a vCenter task, starts it again on the same store, and
// checks that the run finishes once with every side effect done once.
const (
	crashGateway = "gw-osaka"
	// crashTaskDelay keeps an in-flight task running across a kill and a
	// quick restart, and ends it while a slow restart is still down.
	crashTaskDelay = 3 * time.Second
)

// crashTask is the simulator task each crashed step drives.
var crashTask = map[string]string{
	actions.NameSnapshot: vsim.TaskCreateSnapshot,
	actions.NameIsolate:  vsim.TaskReconfigure,
	actions.NameRelease:  vsim.TaskReconfigure,
}

// TestCrashMidStepFinishesOnce is the vSphere part of the crash matrix. For
// each of snapshot, isolate and release it kills the controller
//
//   - in flight: while the step's vCenter task runs (delayed in the
//     simulator), checked through a client of the test's own before and
//     after the kill;
//   - at the step boundary: after vCenter finished the task but before the
//     controller learned it (its wait for the task is held), so the step is
//     still recorded as running;
//
// then restarts it after 0.1 s, or after 5 s (the in-flight task has ended
// meanwhile). The run must succeed once, with one snapshot task and one
// snapshot, one reconfiguration per isolation or release, one notification
// per run on the channel, and an intact audit chain (`warden audit verify`).
// The simulator's task delays are a package global: these cases must not
// run in parallel.
func TestCrashMidStepFinishesOnce(t *testing.T) {
	bin := buildWarden(t)
	tests := map[string]struct {
		step         string
		inFlight     bool
		restartAfter time.Duration
	}{
		"snapshot in flight, restart 0.1s": {actions.NameSnapshot, true, 100 * time.Millisecond},
		"snapshot in flight, restart 5s":   {actions.NameSnapshot, true, 5 * time.Second},
		"snapshot at boundary":             {actions.NameSnapshot, false, 100 * time.Millisecond},
		"isolate in flight, restart 0.1s":  {actions.NameIsolate, true, 100 * time.Millisecond},
		"isolate in flight, restart 5s":    {actions.NameIsolate, true, 5 * time.Second},
		"isolate at boundary":              {actions.NameIsolate, false, 100 * time.Millisecond},
		"release in flight, restart 0.1s":  {actions.NameRelease, true, 100 * time.Millisecond},
		"release in flight, restart 5s":    {actions.NameRelease, true, 5 * time.Second},
		"release at boundary":              {actions.NameRelease, false, 100 * time.Millisecond},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newCrashEnv(t, bin)
			ctx := t.Context()
			task := crashTask[tc.step]
			first := e.serve()

			incident, runID, runs := "", "", 1
			if tc.step == actions.NameRelease {
				var contain string
				incident, contain = e.alert()
				if r := e.waitRun(contain); r.State != store.RunSucceeded {
					t.Fatalf("containment before the release: %s %q\n%s", r.State, r.Error, first.log)
				}
				runs = 2
			}
			before := len(e.tasks(task))

			// Arm the kill point. Delays are set and cleared only while
			// no task runs (the read of the tasks above, and the last one
			// below, order the simulator's reads before these writes).
			unhold := func() {}
			if tc.inFlight {
				vsim.SetTaskDelays(map[string]time.Duration{task: crashTaskDelay})
				defer vsim.SetTaskDelays(nil)
			} else {
				unhold = e.lab.HoldTaskWaits(task)
				defer unhold()
			}
			if tc.step == actions.NameRelease {
				runID = e.startRelease()
			} else {
				incident, runID = e.alert()
			}
			wantTask := types.TaskInfoStateRunning
			if !tc.inFlight {
				wantTask = types.TaskInfoStateSuccess
			}
			waitFor(t, tc.step+" step running with its task "+string(wantTask), 60*time.Second, func() (bool, error) {
				r, err := e.api.run(ctx, runID)
				if err != nil || stepOf(t, r, tc.step).State != store.StepRunning {
					return false, err
				}
				ts := e.tasks(task)
				return len(ts) == before+1 && ts[before].State == wantTask, nil
			})
			first.kill(t)

			// The kill landed where it was meant to.
			mid := e.storedRun(runID)
			if mid.State != store.RunRunning || stepOf(t, mid, tc.step).State != store.StepRunning {
				t.Fatalf("after the kill the store says run %s, step %s %s; want both running", mid.State, tc.step, stepOf(t, mid, tc.step).State)
			}
			ts := e.tasks(task)
			if len(ts) != before+1 {
				t.Fatalf("after the kill: %d %s tasks, want 1", len(ts)-before, task)
			}
			if got := ts[before].State; tc.inFlight && got != types.TaskInfoStateRunning {
				t.Fatalf("after the kill the %s task is %s: the kill did not land while it was in flight", task, got)
			}
			unhold() // the restarted controller's waits go through

			time.Sleep(tc.restartAfter) // the scenario, not a wait for a condition
			second := e.serve()
			final := e.waitRun(runID)
			if final.State != store.RunSucceeded {
				t.Fatalf("resumed run %s: %q\nlog:\n%s", final.State, final.Error, second.log)
			}
			for _, s := range final.Steps {
				want := 1
				if s.Action == tc.step {
					want = 2 // in flight at the kill, once after
				}
				if s.State == store.StepSucceeded && s.Attempts != want {
					t.Errorf("step %s: %d attempts, want %d", s.Name, s.Attempts, want)
				}
			}
			if strings.Contains(second.log.String(), "already in flight") {
				t.Logf("the restarted controller waited for the task the first one left in flight")
			}

			// vCenter did each thing once.
			e.assertTaskCounts(map[string]int{vsim.TaskCreateSnapshot: 1, vsim.TaskReconfigure: runs})
			vm := e.observe()
			if len(vm.Snapshots) != 1 || vm.Snapshots[0].Name != "warden-"+incident {
				t.Errorf("snapshots %+v, want only warden-%s", vm.Snapshots, incident)
			}
			if tc.step == actions.NameRelease {
				if vm.Quarantined || networks(vm) != "vpn-transit,vpn-lan" {
					t.Errorf("after the release: quarantined=%t networks %s", vm.Quarantined, networks(vm))
				}
			} else if !vm.Quarantined {
				t.Errorf("after the containment the vm is not quarantined: %+v", vm)
			}
			e.assertOneNotificationPerRun(runs)

			if tc.step == actions.NameIsolate {
				// The originals recorded before the crash survived the
				// repeat: release puts the NICs back where they were.
				vsim.SetTaskDelays(nil)
				rel := e.waitRun(e.startRelease())
				vm := e.observe()
				if rel.State != store.RunSucceeded || vm.Quarantined || networks(vm) != "vpn-transit,vpn-lan" {
					t.Fatalf("release after the resumed isolation: %s %q, vm networks %s", rel.State, rel.Error, networks(vm))
				}
				e.assertTaskCounts(map[string]int{vsim.TaskReconfigure: 2})
				e.assertOneNotificationPerRun(2)
			}

			second.stop(t)
			e.assertAudit(runID)
			for _, p := range []*proc{first, second} {
				if strings.Contains(p.log.String(), e.lab.Password) {
					t.Error("vCenter password in the controller log")
				}
				for _, token := range e.api.people.all() {
					if strings.Contains(p.log.String(), token) {
						t.Error("an API token in the controller log")
					}
				}
			}
		})
	}
}

// crashEnv is one case's world: a simulator, a store and config on disk, a
// loopback notification receiver, and the controllers started on them.
type crashEnv struct {
	t       *testing.T
	bin     string
	lab     *vsim.Lab
	cfgPath string
	dbPath  string
	env     []string
	api     apiCall
	hooks   *webhookCounter
}

func newCrashEnv(t *testing.T, bin string) *crashEnv {
	t.Helper()
	return newServedLab(t, bin, nil)
}

// newServedLab is a crashEnv whose configuration mutate changes (may be
// nil) before it is written: other end-to-end tests that run the real
// binary against the simulator start from it.
func newServedLab(t *testing.T, bin string, mutate func(*config.Config)) *crashEnv {
	t.Helper()
	lab, err := vsim.Start(t.Context(), vsim.Options{})
	if err != nil {
		t.Fatalf("starting the simulator: %v", err)
	}
	t.Cleanup(lab.Close)
	hooks := startWebhookCounter(t)

	vc := lab.Config()
	cfg := config.Defaults()
	dir := t.TempDir()
	people := bootstrapAdmin(t, &cfg, dir)
	cfg.Server.Listen = freeAddr(t)
	cfg.Store.Path = filepath.Join(dir, "warden.db")
	cfg.Inventory = demo.Inventory()
	cfg.VSphere = vsphereConfig(vc)
	cfg.Notify = config.Notify{Default: "default", Channels: []config.Channel{{Name: "default", URL: hooks.url}}}
	cfg.Executor.BackoffBase, cfg.Executor.BackoffMax = 10*time.Millisecond, 100*time.Millisecond
	cfg.Reconcile.Interval = time.Hour
	cfg.Drift.Interval = 0
	if mutate != nil {
		mutate(&cfg)
	}
	cfgPath := writeConfig(t, dir, cfg)
	return &crashEnv{
		t: t, bin: bin, lab: lab, cfgPath: cfgPath, dbPath: cfg.Store.Path,
		env:   []string{"WARDEN_VSPHERE_PASSWORD=" + vc.Password},
		api:   apiCall{base: "http://" + cfg.Server.Listen, people: people},
		hooks: hooks,
	}
}

// serve starts a controller and waits until it is ready. The first start
// makes the bootstrap admin, who then adds the stack's people.
func (e *crashEnv) serve() *proc {
	e.t.Helper()
	p := startServe(e.t, e.bin, e.cfgPath, e.env)
	c, err := e.api.as(v1.RoleAdmin).client()
	if err != nil {
		e.t.Fatal(err)
	}
	waitFor(e.t, "controller ready", 30*time.Second, func() (bool, error) {
		err := c.Ready(e.t.Context())
		return err == nil, err
	})
	e.api.people.add(e.t, e.api.base)
	return p
}

// alert posts the demo alert about gw-osaka as the detector and returns
// the incident and the containment run it started.
func (e *crashEnv) alert() (incident, run string) {
	e.t.Helper()
	c, err := e.api.as(v1.RoleIntake).client()
	if err != nil {
		e.t.Fatal(err)
	}
	accepted, err := c.SubmitAlertmanager(e.t.Context(), demo.SampleAlert(time.Now()))
	if err != nil {
		e.t.Fatalf("posting the alert: %v", err)
	}
	for _, r := range accepted.Results {
		if r.Matched && r.RunID != "" {
			return r.IncidentID, r.RunID
		}
	}
	e.t.Fatalf("the alert started no run: %+v", accepted.Results)
	return "", ""
}

// startRelease has the responder ask for the release of gw-osaka
// (overriding the gates this lab cannot meet: no agent, no credentials)
// and the approver approve it.
func (e *crashEnv) startRelease() string {
	e.t.Helper()
	ctx := e.t.Context()
	c, err := e.api.client()
	if err != nil {
		e.t.Fatal(err)
	}
	rel, err := c.Release(ctx, v1.StartRunbookRequest{Gateway: crashGateway, OverrideReason: "crash test: no agent to check the baseline"})
	if err != nil || rel.ID == "" {
		e.t.Fatalf("starting the release: %v %+v", err, rel)
	}
	approver, err := e.api.as(v1.RoleApprover).client()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := approver.Approve(ctx, rel.ID, v1.ApproveRequest{}); err != nil {
		e.t.Fatalf("approving the release: %v", err)
	}
	return rel.ID
}

func (e *crashEnv) waitRun(id string) store.Run {
	e.t.Helper()
	return e.api.waitRun(e.t, id, 60*time.Second)
}

// storedRun reads a run from the store directly (no controller running).
func (e *crashEnv) storedRun(id string) store.Run {
	e.t.Helper()
	st, err := store.Open(e.t.Context(), e.dbPath, "full")
	if err != nil {
		e.t.Fatalf("opening the store: %v", err)
	}
	defer st.Close()
	r, err := st.Run(e.t.Context(), id)
	if err != nil {
		e.t.Fatalf("reading run %s: %v", id, err)
	}
	return r
}

// tasks returns the simulator's tasks called name on the gateway's VM,
// oldest first, read through a client of the test's own.
func (e *crashEnv) tasks(name string) []types.TaskInfo {
	e.t.Helper()
	return vmTasks(e.t, e.lab, name)
}

// vmTasks returns lab's tasks called name on the crash gateway's VM,
// oldest first, read through a client of the test's own.
func vmTasks(t *testing.T, lab *vsim.Lab, name string) []types.TaskInfo {
	t.Helper()
	all, err := lab.Tasks(t.Context(), crashGateway)
	if err != nil {
		t.Fatalf("reading the vm's tasks: %v", err)
	}
	var out []types.TaskInfo
	for _, ti := range all {
		if ti.Name == name {
			out = append(out, ti)
		}
	}
	return out
}

// assertTaskCounts checks how many tasks of each name vCenter ran on the
// VM, and that every one of them has ended well.
func (e *crashEnv) assertTaskCounts(want map[string]int) {
	e.t.Helper()
	for name, n := range want {
		ts := e.tasks(name)
		if len(ts) != n {
			e.t.Errorf("%d %s tasks on %s, want %d", len(ts), name, crashGateway, n)
		}
		for _, ti := range ts {
			if ti.State != types.TaskInfoStateSuccess {
				e.t.Errorf("%s task %s: %s", name, ti.Key, ti.State)
			}
		}
	}
}

func (e *crashEnv) observe() actions.VMState {
	e.t.Helper()
	p, err := vsphere.Connect(e.t.Context(), e.lab.Config(), nil)
	if err != nil {
		e.t.Fatalf("connecting to the simulator: %v", err)
	}
	defer p.Close(context.Background())
	vm, err := p.ObserveVM(e.t.Context(), crashGateway)
	if err != nil {
		e.t.Fatalf("observing %s: %v", crashGateway, err)
	}
	return vm
}

// assertOneNotificationPerRun checks that the channel got exactly one post
// per notify step, i.e. per run.
func (e *crashEnv) assertOneNotificationPerRun(runs int) {
	e.t.Helper()
	posts := e.hooks.posts()
	if len(posts) != runs {
		e.t.Errorf("notifications per idempotency key %v, want %d keys", posts, runs)
	}
	for key, n := range posts {
		if n != 1 {
			e.t.Errorf("notification %q posted %d times", key, n)
		}
	}
}

// assertAudit runs `warden audit verify` on the store and checks that the
// run was resumed and finished exactly once.
func (e *crashEnv) assertAudit(runID string) {
	e.t.Helper()
	out, err := exec.CommandContext(e.t.Context(), e.bin, "audit", "verify", "--db", e.dbPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "intact") {
		e.t.Fatalf("warden audit verify: %v\n%s", err, out)
	}
	st, err := store.Open(e.t.Context(), e.dbPath, "full")
	if err != nil {
		e.t.Fatalf("opening the store: %v", err)
	}
	defer st.Close()
	es, err := audit.List(e.t.Context(), st.DB(), "")
	if err != nil {
		e.t.Fatalf("listing the audit log: %v", err)
	}
	resumed, finished := 0, 0
	for _, a := range es {
		if a.Run != runID {
			continue
		}
		switch a.Action {
		case "run.resumed":
			resumed++
		case "run.succeeded", "run.failed", "run.cancelled":
			finished++
		}
	}
	if resumed != 1 || finished != 1 {
		e.t.Errorf("run %s: resumed %d times, finished %d times in the audit log; want 1 and 1", runID, resumed, finished)
	}
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("killing the controller: %v", err)
	}
	_ = p.cmd.Wait()
}

func (p *proc) stop(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stopping the controller: %v", err)
	}
	_ = p.cmd.Wait()
}

// webhookCounter is a loopback notification channel counting the posts it
// gets per Idempotency-Key.
type webhookCounter struct {
	url  string
	mu   sync.Mutex
	keys map[string]int
}

func startWebhookCounter(t *testing.T) *webhookCounter {
	t.Helper()
	w := &webhookCounter{keys: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.mu.Lock()
		w.keys[r.Header.Get(notify.HeaderIdempotencyKey)]++
		w.mu.Unlock()
		rw.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	w.url = srv.URL
	return w
}

func (w *webhookCounter) posts() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.keys)
}
