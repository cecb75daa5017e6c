package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/store"
)

// hermetic clears the WARDEN_* environment so that the flags' defaults and
// the configuration come from the test alone.
func hermetic(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "WARDEN_") {
			t.Setenv(k, "")
		}
	}
}

// runCLI runs the command tree in process and returns what it printed.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errw bytes.Buffer
	root := newRoot(&out, &errw)
	root.SetArgs(args)
	err = root.ExecuteContext(t.Context())
	return out.String(), errw.String(), err
}

// shell runs a command line in process as the binary would (run): the
// error, if any, on stderr, and the exit status.
func shell(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errw bytes.Buffer
	code = run(t.Context(), args, &out, &errw)
	return out.String(), errw.String(), code
}

// addUser makes a user through `warden users add --token-only` as the
// admin whose token is adminToken, and returns the user's token.
func addUser(t *testing.T, server, adminToken, name, role string) string {
	t.Helper()
	out, errOut, err := runCLI(t, "users", "add", name, "--role", role, "--token-only", "--server", server, "--token", adminToken)
	if err != nil {
		t.Fatalf("users add %s: %v (%s)", name, err, errOut)
	}
	token := strings.TrimSuffix(out, "\n")
	if !strings.HasPrefix(token, "wdn_") || strings.ContainsAny(token, " \n") {
		t.Fatalf("users add %s --token-only printed %q, want the token alone", name, out)
	}
	return token
}

// wantRun fails the test unless a command ran as wanted: an error holding
// every one of wantErr (nil: success), and output holding every one of
// wantOut.
func wantRun(t *testing.T, out string, err error, wantErr, wantOut []string) {
	t.Helper()
	switch {
	case wantErr == nil && err != nil:
		t.Fatalf("%v", err)
	case wantErr != nil && err == nil:
		t.Fatalf("succeeded, want an error containing %q; output:\n%.300s", wantErr, out)
	}
	for _, w := range wantErr {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	for _, w := range wantOut {
		if !strings.Contains(out, w) {
			t.Errorf("output does not contain %q:\n%.300s", w, out)
		}
	}
}

const testConfig = `
server:
  api_token: cli-test-token
store:
  path: %STORE%
inventory:
  sites:
    - {name: hq, time_zone: Asia/Tokyo, networks: [10.10.0.0/16]}
    - {name: osaka, time_zone: Asia/Tokyo, networks: [10.20.0.0/16]}
    - {name: dc, time_zone: Asia/Singapore, networks: [10.30.0.0/16]}
  gateways:
    - {id: gw-hq, site: hq, vm: gw-hq, addresses: [203.0.113.10], management_networks: [192.168.100.0/24]}
    - {id: gw-osaka, site: osaka, vm: gw-osaka, addresses: [203.0.113.20], management_networks: [192.168.100.0/24]}
    - {id: gw-dc, site: dc, vm: gw-dc, addresses: [203.0.113.30], management_networks: [192.168.100.0/24]}
  tunnels:
    - {a: gw-hq, b: gw-osaka, kind: wireguard}
`

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// buildDaemon loads testConfig, with extraConfig appended and its store in
// dir, and builds a daemon from it that is closed when the test ends.
func buildDaemon(t *testing.T, dir, extraConfig string, opts daemon.Options) (config.Config, *daemon.Daemon) {
	t.Helper()
	cfg, err := config.Load(writeFile(t, dir, "warden.yaml", strings.ReplaceAll(testConfig, "%STORE%", filepath.Join(dir, "warden.db"))+extraConfig))
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Build(t.Context(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.WithoutCancel(t.Context())) })
	return cfg, d
}

// auditedStore creates a store with a few audit entries and returns its
// path; tamper, when set, edits one entry afterwards.
func auditedStore(t *testing.T, dir string, tamper bool) string {
	t.Helper()
	path := filepath.Join(dir, "audited.db")
	st, err := store.Open(t.Context(), path, "full")
	if err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"incident.opened", "run.created", "run.approved"} {
		if err := st.Tx(t.Context(), func(tx store.Tx) error {
			return tx.Audit(t.Context(), audit.Entry{At: time.Now(), Actor: "test", Action: action, Subject: "gw-hq"})
		}); err != nil {
			t.Fatal(err)
		}
	}
	if tamper {
		if _, err := st.DB().ExecContext(t.Context(), `UPDATE audit SET actor = 'mallory' WHERE seq = 2`); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCommands(t *testing.T) {
	hermetic(t)
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", strings.ReplaceAll(testConfig, "%STORE%", filepath.Join(dir, "warden.db")))
	bad := writeFile(t, dir, "bad.yaml", "server:\n  listen: 127.0.0.1:8780\n  colour: red\n")
	invalid := writeFile(t, dir, "invalid.yaml", "store:\n  sync: sometimes\n")
	indicatorFile := writeFile(t, dir, "tamper.json", `{"kind":"config_tamper","gateway":"gw-hq","severity":"high","confidence":0.9,"source":"aide"}`)
	wildcard := writeFile(t, dir, "wildcard.json", `{"kind":"c2_beacon","gateway":"*","severity":"high"}`)
	intact := auditedStore(t, t.TempDir(), false)
	tampered := auditedStore(t, t.TempDir(), true)

	tests := map[string]struct {
		args     []string
		wantOut  []string // substrings of stdout
		wantErr  []string // substrings of the error; nil: success
		wantCode int      // exit code carried by the error, when not 1
	}{
		"policy lint":                {args: []string{"policy", "lint"}, wantOut: []string{"policies and", "runbooks OK"}},
		"policy test":                {args: []string{"policy", "test"}, wantOut: []string{"fixtures passed"}},
		"policy lint missing":        {args: []string{"policy", "lint", filepath.Join(dir, "nope")}, wantErr: []string{"nope"}},
		"config defaults":            {args: []string{"config", "defaults"}, wantOut: []string{"server:", "sync: full"}},
		"config check good":          {args: []string{"config", "check", "-c", good}, wantOut: []string{"configuration OK: 3 sites, 3 gateways, 1 tunnels"}},
		"config check unknown":       {args: []string{"config", "check", "-c", bad}, wantErr: []string{"colour", bad}},
		"config check invalid":       {args: []string{"config", "check", "-c", invalid}, wantErr: []string{"store.sync", invalid}},
		"config check missing":       {args: []string{"config", "check", "-c", filepath.Join(dir, "absent.yaml")}, wantErr: []string{"absent.yaml"}},
		"audit verify missing":       {args: []string{"audit", "verify", "--db", filepath.Join(dir, "missing.db")}, wantErr: []string{"missing.db"}},
		"audit verify intact":        {args: []string{"audit", "verify", "--db", intact}, wantOut: []string{"audit chain intact: 3 entries"}},
		"audit verify tampered":      {args: []string{"audit", "verify", "--db", tampered}, wantErr: []string{"2"}, wantCode: 2},
		"runbook without target":     {args: []string{"runbook", "run", "contain-compromised-gateway"}, wantErr: []string{"--gateway"}},
		"runbook blank target":       {args: []string{"runbook", "run", "contain-compromised-gateway", "--gateway", " "}, wantErr: []string{"--gateway"}},
		"runbook without name":       {args: []string{"runbook", "run", "--gateway", "gw-hq"}, wantErr: []string{"arg"}},
		"submit missing file":        {args: []string{"indicator", "submit", "-f", filepath.Join(dir, "nonexistent.json")}, wantErr: []string{"nonexistent.json"}},
		"submit no file":             {args: []string{"indicator", "submit"}, wantErr: []string{"-f"}},
		"submit bad format":          {args: []string{"indicator", "submit", "--format", "cef", "-f", indicatorFile}, wantErr: []string{"--format"}},
		"submit not json":            {args: []string{"indicator", "submit", "-f", bad}, wantErr: []string{"not valid JSON"}},
		"breaker without reason":     {args: []string{"breaker", "reset"}, wantErr: []string{"--reason"}},
		"master key without file":    {args: []string{"credentials", "init-key"}, wantErr: []string{"--file"}},
		"master key written":         {args: []string{"credentials", "init-key", "--file", filepath.Join(dir, "master.key")}, wantOut: []string{"wrote master key", "master.key"}},
		"master key not overwritten": {args: []string{"credentials", "init-key", "--file", good}, wantErr: []string{"exists"}},
		"credentials of no store":    {args: []string{"credentials", "list", "-c", good, "--db", filepath.Join(dir, "missing.db")}, wantErr: []string{"missing.db"}},
		"unknown command":            {args: []string{"contain-everything"}, wantErr: []string{"unknown command"}},
		"plan locally":               {args: []string{"plan", "-c", good, "-f", indicatorFile}, wantOut: []string{"tamper-contain-with-approval", "snapshot", "isolate"}},
		"plan wildcard":              {args: []string{"plan", "-c", good, "-f", wildcard}, wantErr: []string{"gateway", "wildcard"}},
		"--by is gone":               {args: []string{"runs", "approve", "run-1", "--by", "alice"}, wantErr: []string{"unknown flag: --by", "user of the API token"}},
		"users add without role":     {args: []string{"users", "add", "resp1", "--server", "http://127.0.0.1:1", "--token", "t"}, wantErr: []string{"--role is required"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, _, err := runCLI(t, tc.args...)
			wantRun(t, out, err, tc.wantErr, tc.wantOut)
			if tc.wantErr != nil {
				code := 1
				var ee *exitError
				if errors.As(err, &ee) {
					code = ee.code
				}
				if want := max(tc.wantCode, 1); code != want {
					t.Errorf("exit code %d, want %d", code, want)
				}
			}
		})
	}
}

// TestConfigDefaultsRoundTrip: what `config defaults` prints is YAML that
// the strict loader accepts and that loads back as the defaults.
func TestConfigDefaultsRoundTrip(t *testing.T) {
	hermetic(t)
	out, _, err := runCLI(t, "config", "defaults")
	if err != nil {
		t.Fatal(err)
	}
	var parsed map[string]any
	if err := yaml.Unmarshal([]byte(out), &parsed); err != nil || len(parsed) == 0 {
		t.Fatalf("config defaults is not YAML (%v):\n%s", err, out)
	}
	got, err := config.Load(writeFile(t, t.TempDir(), "defaults.yaml", out))
	if err != nil {
		t.Fatalf("loading what config defaults printed: %v", err)
	}
	gotYAML, _ := yaml.Marshal(got)
	if wantYAML, _ := config.DefaultsYAML(); !bytes.Equal(gotYAML, wantYAML) {
		t.Errorf("config defaults loads as\n%s\nwant\n%s", gotYAML, wantYAML)
	}
}

// TestClientCommands drives the client commands against a served stack.
func TestClientCommands(t *testing.T) {
	hermetic(t)
	dir := t.TempDir()
	cfg, d := buildDaemon(t, dir, "", daemon.Options{})
	srv := httptest.NewServer(d.API)
	t.Cleanup(srv.Close)
	remote := []string{"--server", srv.URL, "--token", cfg.Server.APIToken}
	client := func(args ...string) []string { return append(args, remote...) }
	// The shared token submits, so it requested the run: another person
	// approves.
	approver := addUser(t, srv.URL, cfg.Server.APIToken, "alice", "approver")
	asAlice := func(args ...string) []string { return append(args, "--server", srv.URL, "--token", approver) }

	tamper := writeFile(t, dir, "tamper.json", `{"kind":"config_tamper","gateway":"gw-hq","severity":"high","confidence":0.9,"source":"aide"}`)
	out, _, err := runCLI(t, client("indicator", "submit", "-f", tamper)...)
	if err != nil {
		t.Fatalf("indicator submit: %v", err)
	}
	var submitted struct {
		Results []struct {
			RunID    string `json:"run_id"`
			RunState string `json:"run_state"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &submitted); err != nil || len(submitted.Results) != 1 || submitted.Results[0].RunState != store.RunAwaitingApproval {
		t.Fatalf("indicator submit printed %s (%v)", out, err)
	}
	runID := submitted.Results[0].RunID
	am := writeFile(t, dir, "am.json", `{"version":"4","alerts":[{"labels":{"alertname":"NodeHighCPU","instance":"db1:9100"}}]}`)

	steps := []struct {
		name    string
		args    []string
		wantOut []string
		wantErr []string
	}{
		{name: "submit alertmanager", args: client("indicator", "submit", "--format", "alertmanager", "-f", am), wantOut: []string{"unmatched_reason", "db1"}},
		{name: "submit rejected", args: client("indicator", "submit", "-f", writeFile(t, dir, "bad.json", `{"kind":"c2_beacon","gateway":"*","severity":"high"}`)),
			wantErr: []string{"400", "field gateway"}},
		{name: "wrong token", args: []string{"gateways", "list", "--server", srv.URL, "--token", "wrong"}, wantErr: []string{"401"}},
		{name: "gateways", args: client("gateways", "list"), wantOut: []string{"gw-hq", "gw-osaka", "gw-dc"}},
		{name: "runs waiting", args: client("runs", "list", "--state", "awaiting_approval"), wantOut: []string{runID, "respond-confirmed-compromise"}},
		{name: "approve by the requester", args: client("runs", "approve", runID), wantErr: []string{"403", "four eyes"}},
		{name: "approve", args: asAlice("runs", "approve", runID), wantOut: []string{"approved by user:alice"}},
		{name: "approve again", args: asAlice("runs", "approve", runID), wantErr: []string{"409"}},
		{name: "approve unknown", args: asAlice("runs", "approve", "run-nope"), wantErr: []string{"404"}},
		{name: "runbook wildcard", args: client("runbook", "run", "contain-compromised-gateway", "--gateway", "*"), wantErr: []string{"400", "wildcard"}},
		{name: "runbook dry run", args: client("runbook", "run", "contain-compromised-gateway", "--gateway", "gw-dc", "--dry-run"), wantOut: []string{"snapshot", "isolate"}},
		{name: "no runs from the dry run", args: client("runs", "list"), wantOut: []string{runID}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			out, _, err := runCLI(t, st.args...)
			wantRun(t, out, err, st.wantErr, st.wantOut)
		})
	}
	if runs, err := d.Store.Runs(t.Context(), store.RunFilter{Gateway: "gw-dc"}); err != nil || len(runs) != 0 {
		t.Errorf("the dry run created %d runs (err %v)", len(runs), err)
	}
}

// TestBinary builds warden and checks exit codes and streams as a shell
// sees them, then runs the demo end to end (simulated vCenter, loopback).
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs the demo")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "warden")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WARDEN_") {
			env = append(env, kv)
		}
	}
	run := func(t *testing.T, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), bin, args...)
		cmd.Env = env
		var out, errw bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errw
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			t.Fatalf("running warden %v: %v", args, err)
		}
		return out.String(), errw.String(), code
	}

	tests := map[string]struct {
		args       []string
		wantCode   int
		wantStderr string
	}{
		"missing store":  {args: []string{"audit", "verify", "--db", filepath.Join(dir, "missing.db")}, wantCode: 1, wantStderr: "warden: opening store"},
		"tampered audit": {args: []string{"audit", "verify", "--db", auditedStore(t, t.TempDir(), true)}, wantCode: 2, wantStderr: "warden: "},
		"no gateway":     {args: []string{"runbook", "run", "contain-compromised-gateway"}, wantCode: 1, wantStderr: "--gateway"},
		"unknown key":    {args: []string{"config", "check", "-c", writeFile(t, dir, "bad.yaml", "server:\n  colour: red\n")}, wantCode: 1, wantStderr: "colour"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			stdout, stderr, code := run(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tc.wantCode, stderr)
			}
			if !strings.HasPrefix(stderr, "warden: ") || !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr %q, want the cause (%q)", stderr, tc.wantStderr)
			}
			if stdout != "" {
				t.Errorf("stdout is not empty on failure: %q", stdout)
			}
		})
	}

	t.Run("demo", func(t *testing.T) {
		stdout, stderr, code := run(t, "demo", "--json")
		if code != 0 {
			t.Fatalf("warden demo --json exited %d; stderr:\n%s", code, stderr)
		}
		var res struct {
			Posture  string `json:"posture"`
			Verified bool   `json:"verified"`
			AuditOK  bool   `json:"audit_ok"`
			RunState string `json:"run_state"`
		}
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("demo output is not one JSON object: %v\n%s", err, stdout)
		}
		if res.Posture != "quarantined" || !res.Verified || !res.AuditOK {
			t.Errorf("demo: posture %q verified %t audit_ok %t (run %s)", res.Posture, res.Verified, res.AuditOK, res.RunState)
		}
	})
}

// warden patch follows the wave it started until it ends: here the
// gateways have no agent, the canary's patch cannot run, the wave stops,
// and the command exits 3 with the report on stdout.
func TestPatchCommandFollowsTheWave(t *testing.T) {
	hermetic(t)
	dir := t.TempDir()
	cfg, d := buildDaemon(t, dir, "", daemon.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	if err := d.AcquireWriter(ctx); err != nil {
		t.Fatal(err)
	}
	d.Controller.Start(ctx)
	defer func() { cancel(); d.Controller.Wait() }()
	srv := httptest.NewServer(d.API)
	t.Cleanup(srv.Close)

	out, errOut, err := runCLI(t, "patch", "--gateways", "gw-hq,gw-osaka", "--packages", "openssh-server", "--poll", "20ms",
		"--server", srv.URL, "--token", cfg.Server.APIToken)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 3 {
		t.Fatalf("warden patch: %v (stderr %s); want exit 3 for a stopped wave", err, errOut)
	}
	if !strings.Contains(errOut, "patch wave wave-") || !strings.Contains(out, `"state": "stopped"`) || !strings.Contains(out, `"not_touched"`) {
		t.Errorf("stdout %s\nstderr %s", out, errOut)
	}
	out, _, err = runCLI(t, "patch", "--gateways", "gw-hq", "--packages", "openssh-server", "--no-wait",
		"--server", srv.URL, "--token", cfg.Server.APIToken)
	if err != nil || !strings.Contains(out, `"state": "running"`) {
		t.Errorf("--no-wait: %v, %s", err, out)
	}
}
