package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/simulator"
	"gopkg.in/yaml.v3"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/demo"
	"github.com/warden-ir/warden/providers/vsphere"
	"github.com/warden-ir/warden/providers/vsphere/vsim"
	"github.com/warden-ir/warden/store"
)

// buildWarden compiles the real binary once per test.
func buildWarden(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "warden")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/warden-ir/warden/cmd/warden")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building warden: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
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
	log *bytes.Buffer
}

func startServe(t *testing.T, bin, cfgPath string, env []string) *proc {
	t.Helper()
	var buf bytes.Buffer
	cmd := exec.Command(bin, "serve", "-c", cfgPath, "--log-level", "debug")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: &buf}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return p
}

type apiCall struct {
	base, token string
}

func (a apiCall) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error: %v)", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (a apiCall) run(ctx context.Context, id string) (store.Run, error) {
	code, data, err := a.do(ctx, "GET", "/v1/runs/"+id, nil)
	if err != nil {
		return store.Run{}, err
	}
	if code != 200 {
		return store.Run{}, fmt.Errorf("GET run: %d %s", code, data)
	}
	var r store.Run
	return r, json.Unmarshal(data, &r)
}

// TestCrashMidRunResumesWithoutRepeatingSideEffects kills a real `warden
// serve` with SIGKILL while the isolate step's vCenter task is in flight,
// starts it again, and checks that the run finishes, the snapshot taken
// before the crash is not taken again, the VM ends up quarantined with its
// original networks still on record (release restores them), and the audit
// chain is intact.
func TestCrashMidRunResumesWithoutRepeatingSideEffects(t *testing.T) {
	bin := buildWarden(t)
	ctx := t.Context()
	lab, err := vsim.Start(ctx, vsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	// Slow the reconfigure task down so the kill lands while it is in
	// flight; let readers through while it waits. TaskDelay is a package
	// global of the simulator: this test must not run in parallel.
	simulator.TaskDelay.MethodDelay = map[string]int{"ReconfigVM": 1500, "LockHandoff": 0}
	defer func() { simulator.TaskDelay.MethodDelay = nil }()

	vc := lab.Config()
	cfg := config.Defaults()
	cfg.Server.Listen = freeAddr(t)
	cfg.Store.Path = filepath.Join(t.TempDir(), "warden.db")
	cfg.Inventory = demo.Inventory()
	cfg.VSphere = config.VSphere{URL: vc.URL, Username: vc.Username, CAFile: vc.CAFile,
		QuarantinePortgroup: vc.QuarantinePortgroup, QuarantineMode: "portgroup", TagCategory: "warden", Tag: "quarantined"}
	cfg.Reconcile.Interval = time.Hour
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	token := "crash-test-token-0123456789"
	env := []string{"WARDEN_SERVER_API_TOKEN=" + token, "WARDEN_VSPHERE_PASSWORD=" + vc.Password}
	api := apiCall{base: "http://" + cfg.Server.Listen, token: token}
	ready := func() (bool, error) {
		code, _, err := api.do(ctx, "GET", "/readyz", nil)
		return code == 200, err
	}

	first := startServe(t, bin, cfgPath, env)
	waitFor(t, "first controller ready", 30*time.Second, ready)
	code, body, err := api.do(ctx, "POST", "/v1/intake/alertmanager", demo.SampleAlert(time.Now()))
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("intake: %d %v %s", code, err, body)
	}
	var accepted struct {
		Results []struct {
			Matched bool   `json:"matched"`
			RunID   string `json:"run_id"`
		} `json:"results"`
	}
	_ = json.Unmarshal(body, &accepted)
	runID := ""
	for _, r := range accepted.Results {
		if r.Matched {
			runID = r.RunID
		}
	}
	if runID == "" {
		t.Fatalf("no run started: %s", body)
	}
	waitFor(t, "isolate step in flight", 30*time.Second, func() (bool, error) {
		r, err := api.run(ctx, runID)
		return err == nil && len(r.Steps) > 2 && r.Steps[2].State == store.StepRunning, err
	})
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()

	// Offline, the store says the run was interrupted mid-isolate.
	st, err := store.Open(ctx, cfg.Store.Path, "full")
	if err != nil {
		t.Fatal(err)
	}
	mid, err := st.Run(ctx, runID)
	st.Close()
	if err != nil || mid.State != store.RunRunning || mid.Steps[1].State != store.StepSucceeded || mid.Steps[2].State != store.StepRunning {
		t.Fatalf("state after kill: %+v %v", mid, err)
	}
	// Let the simulator's in-flight task finish, as vCenter would.
	simulator.TaskDelay.MethodDelay = nil
	time.Sleep(2 * time.Second)

	second := startServe(t, bin, cfgPath, env)
	waitFor(t, "second controller ready", 30*time.Second, ready)
	var final store.Run
	waitFor(t, "resumed run to finish", 60*time.Second, func() (bool, error) {
		r, err := api.run(ctx, runID)
		final = r
		return err == nil && r.Terminal(), err
	})
	if final.State != store.RunSucceeded {
		t.Fatalf("resumed run %s: %s\nlog:\n%s", final.State, final.Error, second.log)
	}
	if final.Steps[1].Attempts != 1 {
		t.Fatalf("snapshot step ran %d times", final.Steps[1].Attempts)
	}
	if final.Steps[2].Attempts != 2 {
		t.Fatalf("isolate attempts %d, want 2 (in flight at the kill, once after)", final.Steps[2].Attempts)
	}

	p, err := vsphere.Connect(ctx, vc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	vm, err := p.ObserveVM(ctx, "gw-osaka")
	if err != nil {
		t.Fatal(err)
	}
	if !vm.Quarantined || len(vm.Snapshots) != 1 {
		t.Fatalf("after resume: quarantined=%t snapshots=%d", vm.Quarantined, len(vm.Snapshots))
	}
	// The originals recorded before the crash survived the repeat: release
	// puts the NICs back where they were.
	code, body, err = api.do(ctx, "POST", "/v1/runbooks/release-gateway/runs", []byte(`{"gateway":"gw-osaka","by":"alice","override_reason":"crash test: no agent to check the baseline"}`))
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("release: %d %v %s", code, err, body)
	}
	var rel store.Run
	_ = json.Unmarshal(body, &rel)
	if code, body, err := api.do(ctx, "POST", "/v1/runs/"+rel.ID+"/approve", []byte(`{"by":"bob"}`)); err != nil || code != http.StatusOK {
		t.Fatalf("approving the release: %d %v %s", code, err, body)
	}
	waitFor(t, "release", 60*time.Second, func() (bool, error) {
		r, err := api.run(ctx, rel.ID)
		rel = r
		return err == nil && r.Terminal(), err
	})
	vm, _ = p.ObserveVM(ctx, "gw-osaka")
	if rel.State != store.RunSucceeded || vm.Quarantined || networks(vm) != "vpn-transit,vpn-lan" {
		t.Fatalf("release %s %q, VM %s", rel.State, rel.Error, networks(vm))
	}

	_ = second.cmd.Process.Signal(syscall.SIGTERM)
	_ = second.cmd.Wait()
	st, err = store.Open(ctx, cfg.Store.Path, "full")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := audit.Verify(ctx, st.DB()); err != nil {
		t.Fatal(err)
	}
	es, _ := audit.List(ctx, st.DB(), "")
	snapshotApplies, resumed := 0, false
	for _, e := range es {
		if e.Action == "step.apply" && strings.Contains(string(e.Data), `"action":"snapshot"`) {
			snapshotApplies++
		}
		if e.Action == "run.resumed" && e.Run == runID {
			resumed = true
		}
	}
	if snapshotApplies != 1 || !resumed {
		t.Fatalf("snapshot applied %d times, resumed audited %t", snapshotApplies, resumed)
	}
	// The vCenter password never reached the controller's log.
	for _, l := range []*bytes.Buffer{first.log, second.log} {
		if strings.Contains(l.String(), vc.Password) {
			t.Fatal("vCenter password in the controller log")
		}
	}
}
