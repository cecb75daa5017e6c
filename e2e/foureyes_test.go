package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/demo"
	"github.com/warden-ir/warden/store"
)

// tokenPattern matches an API token ("wdn_" and 256 bits in base64url): to
// read the one `warden users add` prints, and to keep every token out of
// the test's messages.
var tokenPattern = regexp.MustCompile(`wdn_[A-Za-z0-9_-]{20,}`)

// redact hides every API token in s.
func redact(s string) string { return tokenPattern.ReplaceAllString(s, "wdn_<redacted>") }

// wardenCLI runs the real `warden` binary as a client of the controller at
// base, with token in WARDEN_API_TOKEN (none when empty) and no other
// WARDEN_ variable of the test's environment.
type wardenCLI struct {
	bin, base string
}

// run returns the command's standard output and error, and its error
// (an *exec.ExitError when it exited non-zero).
func (w wardenCLI) run(t *testing.T, token string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), w.bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WARDEN_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "WARDEN_SERVER="+w.base)
	if token != "" {
		cmd.Env = append(cmd.Env, "WARDEN_API_TOKEN="+token)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// ok runs a command that must succeed and returns its standard output.
func (w wardenCLI) ok(t *testing.T, token string, args ...string) string {
	t.Helper()
	out, errOut, err := w.run(t, token, args...)
	if err != nil {
		t.Fatalf("warden %s: %v\nstdout: %s\nstderr: %s", redact(strings.Join(args, " ")), err, redact(out), redact(errOut))
	}
	return out
}

// refused runs a command that the controller must refuse with 403 and
// returns its standard error, which must name every one of want.
func (w wardenCLI) refused(t *testing.T, token string, want []string, args ...string) string {
	t.Helper()
	out, errOut, err := w.run(t, token, args...)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("warden %s: %v, want a non-zero exit\nstdout: %s\nstderr: %s", redact(strings.Join(args, " ")), err, redact(out), redact(errOut))
	}
	for _, s := range append([]string{"403"}, want...) {
		if !strings.Contains(errOut, s) {
			t.Errorf("warden %s: standard error does not name %q:\n%s", redact(strings.Join(args, " ")), s, redact(errOut))
		}
	}
	return errOut
}

// TestFourEyesThroughTheAPIAndTheCLI is issue 13's acceptance, through the
// real HTTP API and the real `warden` binary on the vSphere stack: a
// detector's alert, posted with an intake token that may do nothing else,
// contains gw-osaka; the admin adds a responder, a viewer and an approver
// with `warden users add`; an approver may not approve a release they
// asked for themselves (four eyes, audited); the responder asks for the
// release with a break-glass override; the responder's own approval is
// refused naming four eyes, the viewer's naming the approver role; the
// approver's goes through and the NICs go back to their portgroups. The
// audit, the run and the report name each person, and every audit entry a
// person wrote through the API carries the id of the token they used.
func TestFourEyesThroughTheAPIAndTheCLI(t *testing.T) {
	bin := buildWarden(t)
	s := startStack(t, nil)
	cli := wardenCLI{bin: bin, base: s.base}
	ctx := t.Context()
	const gw = "gw-osaka"
	before := s.vm(t, gw)

	// The detector posts the alert with its intake token and may do
	// nothing else.
	alertFile := filepath.Join(t.TempDir(), "alert.json")
	if err := os.WriteFile(alertFile, demo.SampleAlert(time.Now()), 0o600); err != nil {
		t.Fatal(err)
	}
	var accepted v1.IntakeResponse
	if err := json.Unmarshal([]byte(cli.ok(t, s.people.intake, "indicator", "submit", "--format", "alertmanager", "-f", alertFile)), &accepted); err != nil {
		t.Fatalf("reading the intake answer: %v", err)
	}
	var incident, contain string
	for _, r := range accepted.Results {
		if r.Matched && r.RunID != "" {
			incident, contain = r.IncidentID, r.RunID
		}
	}
	if contain == "" {
		t.Fatalf("the alert started no run: %+v", accepted.Results)
	}
	cli.refused(t, s.people.intake, []string{"intake"}, "runs", "list")
	if r := s.wait(t, contain); r.State != store.RunSucceeded || r.RequestedBy != "user:"+intakeName {
		t.Fatalf("containment %s (%s), requested by %q; want succeeded, requested by user:%s", r.State, r.Error, r.RequestedBy, intakeName)
	}
	if vm := s.vm(t, gw); !vm.Quarantined {
		t.Fatalf("%s not quarantined: %s", gw, networks(vm))
	}

	// The admin adds three people with the CLI, which prints each token
	// once.
	tokens := map[string]string{}
	for _, p := range []struct{ name, role string }{{"resp1", v1.RoleResponder}, {"view1", v1.RoleViewer}, {"appr1", v1.RoleApprover}} {
		out := cli.ok(t, s.people.admin, "users", "add", p.name, "--role", p.role, "--display-name", "acceptance "+p.role)
		if tokens[p.name] = tokenPattern.FindString(out); tokens[p.name] == "" {
			t.Fatalf("warden users add %s printed no token: %q", p.name, redact(out))
		}
	}
	tokenIDs := map[string]string{}
	for name, token := range map[string]string{"admin": s.people.admin, "resp1": tokens["resp1"], "view1": tokens["view1"], "appr1": tokens["appr1"]} {
		c, err := client.New(s.base, token)
		if err != nil {
			t.Fatal(err)
		}
		me, err := c.WhoAmI(ctx)
		if err != nil || me.User != name || me.Actor != "user:"+name || !strings.HasPrefix(me.TokenID, "tk_") || !me.TwoPerson {
			t.Fatalf("whoami as %s: %+v %v", name, me, err)
		}
		tokenIDs[name] = me.TokenID
	}

	// A body cannot speak for someone else: resp1 naming appr1 in "by" is
	// refused before anything is recorded.
	resp1, err := client.New(s.base, tokens["resp1"])
	if err != nil {
		t.Fatal(err)
	}
	_, err = resp1.Release(ctx, v1.StartRunbookRequest{Gateway: gw, Incident: incident, By: "appr1", OverrideReason: "pretending to be appr1"})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.StatusCode != http.StatusBadRequest || ce.Field != "by" {
		t.Fatalf("release with by=appr1 as resp1: %v; want 400 on field by", err)
	}

	// Four eyes binds approvers too: appr1 asks for a release and may not
	// approve it; the controller refuses, and audits the refusal. appr1
	// withdraws it.
	const reason = "rebuilt from the golden image; keys replaced by hand"
	own := startRelease(t, cli, "--token", tokens["appr1"], gw, "--incident", incident, "--override-reason", reason)
	cli.refused(t, tokens["appr1"], []string{"four eyes", "appr1"}, "runs", "approve", own)
	cli.ok(t, tokens["appr1"], "runs", "cancel", own, "--reason", "withdrawn: the responder on duty asks for it")

	// resp1 asks for the release; this VM has no agent to check its
	// baseline and no rotation on record, so resp1 overrides those gates.
	release := startRelease(t, cli, "--token", tokens["resp1"], gw, "--incident", incident, "--override-reason", reason)

	// resp1 may not approve it (a responder, and the one who asked: the
	// refusal names four eyes), nor may a viewer.
	cli.refused(t, tokens["resp1"], []string{"four eyes", "resp1"}, "runs", "approve", release)
	cli.refused(t, tokens["view1"], []string{"view1", "approver"}, "runs", "approve", release)
	if r, err := s.approver.Run(ctx, release); err != nil || r.State != v1.RunAwaitingApproval {
		t.Fatalf("after the refusals the release is %s (%v); want it still awaiting approval", r.State, err)
	}

	// appr1 may; the NICs go back where they were.
	if out := cli.ok(t, tokens["appr1"], "runs", "approve", release, "--comment", "checked the rebuild"); !strings.Contains(out, "user:appr1") {
		t.Errorf("warden runs approve printed %q; want it to name user:appr1", out)
	}
	rr := s.wait(t, release)
	if rr.State != store.RunSucceeded {
		t.Fatalf("release %s: %s", rr.State, rr.Error)
	}
	if rr.RequestedBy != "user:resp1" || rr.OverriddenBy != "user:resp1" || rr.ApprovedBy != "user:appr1" {
		t.Errorf("release run requested by %q, overridden by %q, approved by %q", rr.RequestedBy, rr.OverriddenBy, rr.ApprovedBy)
	}
	after := s.vm(t, gw)
	if after.Quarantined || networks(after) != networks(before) {
		t.Fatalf("after the release: quarantined %t, networks %s; want %s", after.Quarantined, networks(after), networks(before))
	}

	// The audit names each person with the token they used.
	entries := exportAudit(t, cli, s.d.Config.Store.Path)
	want := []struct {
		action, run, actor, token string
		data                      map[string]string
	}{
		{"user.added", "", "user:admin", tokenIDs["admin"], nil},
		{"run.created", own, "user:appr1", tokenIDs["appr1"], map[string]string{"override_reason": reason}},
		{"run.approval_refused", own, "user:appr1", tokenIDs["appr1"], map[string]string{"rule": "four-eyes"}},
		{"run.created", release, "user:resp1", tokenIDs["resp1"], map[string]string{"override_reason": reason}},
		// resp1's attempt was refused for the role; the controller still
		// records it, saying four eyes would refuse it too.
		{"run.approval_refused", release, "user:resp1", tokenIDs["resp1"], map[string]string{"rule": "role"}},
		{"run.approval_refused", release, "user:view1", tokenIDs["view1"], map[string]string{"rule": "role"}},
		{"run.approved", release, "user:appr1", tokenIDs["appr1"], nil},
	}
	for _, w := range want {
		found := false
		for _, e := range entries {
			if e.Action != w.action || e.Run != w.run || e.Actor != w.actor {
				continue
			}
			found = true
			if e.Token != w.token {
				t.Errorf("%s by %s carries token %q, want %q", w.action, w.actor, e.Token, w.token)
			}
			var data map[string]any
			_ = json.Unmarshal(e.Data, &data)
			for k, v := range w.data {
				if data[k] != v {
					t.Errorf("%s by %s: data %s = %v, want %q", w.action, w.actor, k, data[k], v)
				}
			}
		}
		if !found {
			t.Errorf("no audit entry %s on run %q by %s", w.action, w.run, w.actor)
		}
	}
	// Every entry a person wrote through the API carries their token's id;
	// only appr1 approved anything.
	detector := 0
	for _, e := range entries {
		if e.Action == "run.approved" && e.Actor != "user:appr1" {
			t.Errorf("audit entry %d: %s approved run %s", e.Seq, e.Actor, e.Run)
		}
		if e.Actor == "user:"+intakeName {
			detector++
		}
		name, person := strings.CutPrefix(e.Actor, "user:")
		if id, ok := tokenIDs[name]; person && ok && e.Token != id {
			t.Errorf("audit entry %d %s by %s carries token %q, want %q", e.Seq, e.Action, e.Actor, e.Token, id)
		}
		if e.Actor == "user:"+intakeName && !strings.HasPrefix(e.Token, "tk_") {
			t.Errorf("audit entry %d %s by the detector carries token %q", e.Seq, e.Action, e.Token)
		}
		for _, token := range append(s.people.all(), tokens["resp1"], tokens["view1"], tokens["appr1"]) {
			if strings.Contains(string(e.Data), token) {
				t.Errorf("audit entry %d %s holds an API token", e.Seq, e.Action)
			}
		}
	}
	if detector == 0 {
		t.Errorf("no audit entry names the detector user:%s, whose alert contained %s", intakeName, gw)
	}
	if _, err := audit.Verify(ctx, s.d.Store.DB()); err != nil {
		t.Fatalf("audit chain: %v", err)
	}

	// The report, read by the viewer over the API, names resp1 as who
	// asked and overrode and appr1 as who approved, in the release run's
	// part, in both languages.
	for _, lang := range []string{"en", "ja"} {
		rep := cli.ok(t, tokens["view1"], "report", incident, "--lang", lang, "--format", "md")
		part := runPart(rep, release)
		if part == "" {
			t.Errorf("report (%s) never names the release run %s", lang, release)
			continue
		}
		for _, name := range []string{"resp1", "appr1"} {
			if !strings.Contains(part, name) {
				t.Errorf("report (%s): the release run's part does not name %s:\n%s", lang, name, part)
			}
		}
	}
}

// startRelease runs `warden release ARGS…`, which must leave a release
// run awaiting approval, and returns the run's id.
func startRelease(t *testing.T, cli wardenCLI, args ...string) string {
	t.Helper()
	out := cli.ok(t, "", append([]string{"release"}, args...)...)
	m := regexp.MustCompile(`release run (\S+) is ([a-z_]+)`).FindStringSubmatch(out)
	if m == nil || m[2] != v1.RunAwaitingApproval {
		t.Fatalf("warden release printed %q: want a run awaiting approval", out)
	}
	return m[1]
}

// exportAudit reads the whole chain with `warden audit export` on the
// store.
func exportAudit(t *testing.T, cli wardenCLI, db string) []audit.Entry {
	t.Helper()
	out := cli.ok(t, "", "audit", "export", "--db", db)
	var entries []audit.Entry
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e audit.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("reading the audit export: %v", err)
		}
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		t.Fatal("the audit export is empty")
	}
	return entries
}

// runPart is what a Markdown report says about run: every paragraph or
// table row that names it.
func runPart(report, run string) string {
	var part []string
	for _, para := range strings.Split(report, "\n\n") {
		for _, line := range strings.Split(para, "\n") {
			if strings.Contains(line, run) {
				part = append(part, line)
			}
		}
	}
	return strings.Join(part, "\n")
}
