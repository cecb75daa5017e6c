package main

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/store"
)

var tokenRE = regexp.MustCompile(`wdn_[A-Za-z0-9_-]{20,}`)

// noTokens fails the test if any text shows one of tokens, or anything
// shaped like a token.
func noTokens(t *testing.T, where, text string, tokens ...string) {
	t.Helper()
	for _, tok := range tokens {
		if tok != "" && strings.Contains(text, tok) {
			t.Errorf("%s shows a token: %q", where, text)
		}
	}
	if tokenRE.MatchString(text) {
		t.Errorf("%s shows something shaped like a token: %q", where, text)
	}
}

// users add prints a token once, alone on stdout; list never shows it;
// rotate-token replaces it; disable stops the user's token at once, and
// the refused command exits non-zero with the 401 on stderr (and no token
// in it).
func TestUsersRoundTrip(t *testing.T) {
	hermetic(t)
	s := serveController(t)
	admin := func(args ...string) []string { return s.remote(args...) }
	as := func(token string, args ...string) []string { return append(args, "--server", s.url, "--token", token) }

	// users add: one line on stdout, the token in it; what it is on stderr.
	out, errOut, code := shell(t, admin("users", "add", "resp1", "--role", "responder", "--display-name", "Responder One")...)
	if code != 0 {
		t.Fatalf("users add exited %d: %s", code, errOut)
	}
	m := regexp.MustCompile(`^token for resp1 \(shown once; store it now\): (wdn_\S+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("users add printed %q, want one line with the token", out)
	}
	first := m[1]
	if !strings.Contains(errOut, "resp1") || !strings.Contains(errOut, "role responder") || !strings.Contains(errOut, "tk_") {
		t.Errorf("stderr %q does not say what was added", errOut)
	}
	noTokens(t, "users add's stderr", errOut, first)

	// --token-only and --quiet: the bare token.
	for _, flag := range []string{"--token-only", "--quiet"} {
		name := "view" + strings.TrimLeft(flag, "-")[:1]
		out, errOut, code := shell(t, admin("users", "add", name, "--role", "viewer", flag)...)
		if code != 0 || !regexp.MustCompile(`^wdn_\S+\n$`).MatchString(out) {
			t.Errorf("users add %s: exit %d, stdout %q, stderr %q; want the token alone", flag, code, out, errOut)
		}
	}

	refused := map[string]struct {
		args []string
		want []string
	}{
		"unknown role":     {admin("users", "add", "x1", "--role", "superuser"), []string{"400", "role", "superuser"}},
		"bad name":         {admin("users", "add", "Bad Name", "--role", "viewer"), []string{"400", "name"}},
		"existing user":    {admin("users", "add", "resp1", "--role", "viewer"), []string{"409", "resp1"}},
		"list, not admin":  {as(first, "users", "list"), []string{"403", "resp1 (role responder)", "admin"}},
		"add, not admin":   {as(first, "users", "add", "x2", "--role", "admin"), []string{"403", "admin"}},
		"disable unknown":  {admin("users", "disable", "nobody"), []string{"404"}},
		"rotate unknown":   {admin("users", "rotate-token", "nobody"), []string{"404"}},
		"whoami, no token": {as("wdn_not-a-real-token-but-long-enough-0123456789", "whoami"), []string{"401"}},
	}
	for name, tc := range refused {
		t.Run(name, func(t *testing.T) {
			out, errOut, code := shell(t, tc.args...)
			if code == 0 {
				t.Fatalf("succeeded: %s", out)
			}
			if out != "" {
				t.Errorf("stdout on failure: %q", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not contain %q", errOut, w)
				}
			}
			noTokens(t, "stderr", errOut, first)
		})
	}

	out, errOut, code = shell(t, as(first, "whoami")...)
	if code != 0 || !strings.HasPrefix(out, "user:resp1 (role responder, token tk_") || !strings.Contains(out, "four eyes: on") {
		t.Errorf("whoami: exit %d, %q %q", code, out, errOut)
	}
	out, _, code = shell(t, as(first, "whoami", "--json")...)
	var me v1.WhoAmI
	if code != 0 || json.Unmarshal([]byte(out), &me) != nil || me.User != "resp1" || me.Actor != "user:resp1" || me.Role != "responder" || !me.TwoPerson {
		t.Errorf("whoami --json: exit %d, %q", code, out)
	}
	noTokens(t, "whoami", out, first)

	list := func(t *testing.T) (table string, users map[string]v1.User) {
		t.Helper()
		table, errOut, code := shell(t, admin("users", "list")...)
		if code != 0 {
			t.Fatalf("users list: %s", errOut)
		}
		if !strings.HasPrefix(table, "NAME") || !strings.Contains(strings.SplitN(table, "\n", 2)[0], "DISPLAY NAME") {
			t.Errorf("users list header: %q", table)
		}
		js, errOut, code := shell(t, admin("users", "list", "--json")...)
		var all []v1.User
		if code != 0 || json.Unmarshal([]byte(js), &all) != nil {
			t.Fatalf("users list --json: %s %s", js, errOut)
		}
		users = map[string]v1.User{}
		for _, u := range all {
			users[u.Name] = u
		}
		noTokens(t, "users list", table+js, first)
		return table, users
	}
	table, users := list(t)
	row := regexp.MustCompile(`(?m)^resp1\s+responder\s+Responder One\s+no\s+tk_\w+\s+user:shared-api-token\s*$`)
	if !row.MatchString(table) {
		t.Errorf("users list has no row for resp1:\n%s", table)
	}
	if u := users["admin"]; u.Role != "admin" || u.Disabled {
		t.Errorf("the bootstrap admin is listed as %+v", u)
	}
	firstID := users["resp1"].Tokens

	// rotate-token: a new token once; the old one stops working.
	out, errOut, code = shell(t, admin("users", "rotate-token", "resp1")...)
	m = regexp.MustCompile(`^token for resp1 \(shown once; store it now\): (wdn_\S+)\n$`).FindStringSubmatch(out)
	if code != 0 || m == nil || m[1] == first {
		t.Fatalf("rotate-token: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	second := m[1]
	noTokens(t, "rotate-token's stderr", errOut, first, second)
	if _, errOut, code := shell(t, as(first, "whoami")...); code == 0 || !strings.Contains(errOut, "401") {
		t.Errorf("the rotated-out token: exit %d, stderr %q", code, errOut)
	}
	if out, _, code := shell(t, as(second, "whoami")...); code != 0 || !strings.HasPrefix(out, "user:resp1 ") {
		t.Errorf("the new token: exit %d, %q", code, out)
	}
	if _, users := list(t); len(users["resp1"].Tokens) != 1 || users["resp1"].Tokens[0] == firstID[0] {
		t.Errorf("after rotation resp1 holds tokens %v (before: %v)", users["resp1"].Tokens, firstID)
	}

	// disable: the token stops working at once.
	out, errOut, code = shell(t, admin("users", "disable", "resp1")...)
	if code != 0 || !strings.Contains(out, "resp1") || !strings.Contains(out, "disabled") {
		t.Fatalf("disable: exit %d, %q %q", code, out, errOut)
	}
	out, errOut, code = shell(t, as(second, "gateways", "list")...)
	if code == 0 || out != "" || !strings.HasPrefix(errOut, "warden: ") || !strings.Contains(errOut, "401") || !strings.Contains(errOut, "disabled") {
		t.Errorf("a disabled user's token: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	noTokens(t, "stderr", errOut, first, second)
	if table, _ := list(t); !regexp.MustCompile(`(?m)^resp1\s+responder\s+Responder One\s+yes\s`).MatchString(table) {
		t.Errorf("users list does not show resp1 disabled:\n%s", table)
	}
	if _, errOut, code := shell(t, admin("users", "disable", "admin")...); code == 0 || !strings.Contains(errOut, "last enabled admin") {
		t.Errorf("disabling the last admin: exit %d, %q", code, errOut)
	}

	// Who did it is in the audit, under the admin's name and token id,
	// and no token is.
	var chain bytes.Buffer
	if err := audit.Export(t.Context(), s.d.Store.DB(), &chain); err != nil {
		t.Fatal(err)
	}
	noTokens(t, "the audit", chain.String(), first, second)
	done := map[string]string{}
	for line := range strings.Lines(chain.String()) {
		var e audit.Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(e.Action, "user.") && e.Subject == "resp1" {
			done[e.Action] = e.Actor + " " + e.Token
		}
	}
	for _, a := range []string{"user.added", "user.token_rotated", "user.disabled"} {
		if done[a] != "user:shared-api-token legacy" {
			t.Errorf("audit %s of resp1 by %q, want user:shared-api-token with token legacy", a, done[a])
		}
	}
}

// A run is approved by another person than who asked for it: the
// requester's approval exits non-zero naming four eyes, a responder may
// not approve at all, another approver may. An override makes even a
// manual run wait for a second person.
func TestFourEyesFromTheCLI(t *testing.T) {
	hermetic(t)
	s := serveController(t)
	appr1, appr2 := s.user(t, "appr1", "approver"), s.user(t, "appr2", "approver")
	resp1 := s.user(t, "resp1", "responder")
	as := func(token string, args ...string) []string { return append(args, "--server", s.url, "--token", token) }

	tamper := writeFile(t, t.TempDir(), "tamper.json", `{"kind":"config_tamper","gateway":"gw-hq","severity":"high","confidence":0.9,"source":"aide"}`)
	out, errOut, code := shell(t, as(appr1, "indicator", "submit", "-f", tamper)...)
	var submitted struct {
		Results []struct {
			RunID    string `json:"run_id"`
			RunState string `json:"run_state"`
		} `json:"results"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &submitted) != nil || len(submitted.Results) != 1 || submitted.Results[0].RunState != store.RunAwaitingApproval {
		t.Fatalf("submit: exit %d, %s %s", code, out, errOut)
	}
	runID := submitted.Results[0].RunID

	steps := []struct {
		name    string
		args    []string
		wantOut []string
		wantErr []string // on stderr; nil: success
	}{
		{"the requester approves", as(appr1, "runs", "approve", runID), nil, []string{"warden: ", "403", "four eyes", "user:appr1"}},
		{"a responder approves", as(resp1, "runs", "approve", runID), nil, []string{"403", "resp1 (role responder)", "approver"}},
		{"another approver approves", as(appr2, "runs", "approve", runID, "--comment", "checked the tamper alert"), []string{"run " + runID + " approved by user:appr2"}, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			out, errOut, code := shell(t, st.args...)
			if st.wantErr == nil {
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errOut)
				}
			} else if code == 0 || out != "" {
				t.Fatalf("exit %d, stdout %q; want a refusal", code, out)
			}
			for _, w := range st.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout %q does not contain %q", out, w)
				}
			}
			for _, w := range st.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not contain %q", errOut, w)
				}
			}
		})
	}
	run, err := s.d.Store.Run(t.Context(), runID)
	if err != nil || run.RequestedBy != "user:appr1" || run.ApprovedBy != "user:appr2" {
		t.Errorf("run requested by %q, approved by %q (%v)", run.RequestedBy, run.ApprovedBy, err)
	}

	// Break glass: a responder's override waits for an approver.
	out, errOut, code = shell(t, as(resp1, "runbook", "run", "contain-compromised-gateway", "--gateway", "gw-dc", "--override-reason", "the agent is down; isolate first")...)
	var started v1.Run
	if code != 0 || json.Unmarshal([]byte(out), &started) != nil {
		t.Fatalf("runbook run: exit %d, %s %s", code, out, errOut)
	}
	if started.State != v1.RunAwaitingApproval || started.RequestedBy != "user:resp1" || started.OverriddenBy != "user:resp1" {
		t.Errorf("override run: state %s, requested by %q, overridden by %q", started.State, started.RequestedBy, started.OverriddenBy)
	}
	if out, errOut, code := shell(t, as(appr1, "runs", "approve", started.ID)...); code != 0 || !strings.Contains(out, "approved by user:appr1") {
		t.Errorf("an approver approving the override: exit %d, %q %q", code, out, errOut)
	}
}

// The path: resp1 asks for a release with an override; resp1,
// and a viewer, cannot approve it; appr1 can, and the run names both.
func TestReleaseNeedsAnotherPerson(t *testing.T) {
	hermetic(t)
	s := serveController(t)
	contained := s.incident(t, indicator.C2Beacon, true)
	resp1, view1, appr1 := s.user(t, "resp1", "responder"), s.user(t, "view1", "viewer"), s.user(t, "appr1", "approver")
	as := func(token string, args ...string) []string { return append(args, "--server", s.url, "--token", token) }

	if out, errOut, code := shell(t, as(appr1, "indicator", "resolve", contained.IndicatorID, "--reason", "the beacon was the pentest")...); code != 0 || !strings.Contains(out, "resolved by user:appr1") {
		t.Fatalf("resolve: exit %d, %q %q", code, out, errOut)
	}
	out, errOut, code := shell(t, as(resp1, "release", "gw-osaka", "--override-reason", "rebuilt from the golden image")...)
	m := regexp.MustCompile(`release run (run-\S+) is awaiting_approval`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("release: exit %d, %q %q", code, out, errOut)
	}
	for _, w := range []string{"requested by user:resp1", "another person (an approver, not user:resp1) approves with: warden runs approve " + m[1]} {
		if !strings.Contains(out, w) {
			t.Errorf("release printed %q, want %q", out, w)
		}
	}
	refusals := map[string]struct {
		token string
		want  []string
	}{
		"the requester": {resp1, []string{"403", "resp1 (role responder)", "approver"}},
		"a viewer":      {view1, []string{"403", "view1 (role viewer)"}},
	}
	for name, tc := range refusals {
		out, errOut, code := shell(t, as(tc.token, "runs", "approve", m[1])...)
		if code == 0 || out != "" {
			t.Errorf("%s approving: exit %d, stdout %q; want a refusal", name, code, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s approving: stderr %q lacks %q", name, errOut, w)
			}
		}
	}
	if out, errOut, code := shell(t, as(appr1, "runs", "approve", m[1])...); code != 0 || !strings.Contains(out, "approved by user:appr1") {
		t.Fatalf("appr1 approving: exit %d, %q %q", code, out, errOut)
	}
	run, err := s.d.Store.Run(t.Context(), m[1])
	if err != nil || run.RequestedBy != "user:resp1" || run.OverriddenBy != "user:resp1" || run.ApprovedBy != "user:appr1" {
		t.Errorf("release run: requested by %q, overridden by %q, approved by %q (%v)", run.RequestedBy, run.OverriddenBy, run.ApprovedBy, err)
	}
}

// Evidence read over the API is handled by the token's user; read on
// the controller's host, by who is logged in there.
func TestEvidenceCustodyNamesWhoActs(t *testing.T) {
	hermetic(t)
	s := serveController(t)
	inc := s.incident(t, indicator.C2Beacon, false).IncidentID
	rec, err := s.d.Ledger.Add(t.Context(), evidenceItem(inc))
	if err != nil {
		t.Fatal(err)
	}
	resp1, view1 := s.user(t, "resp1", "responder"), s.user(t, "view1", "viewer")
	as := func(token string, args ...string) []string { return append(args, "--server", s.url, "--token", token) }

	if out, errOut, code := shell(t, as(view1, "evidence", "list", inc)...); code != 0 || !strings.Contains(out, rec.ID) {
		t.Errorf("a viewer lists evidence: exit %d, %q %q", code, out, errOut)
	}
	if _, errOut, code := shell(t, as(view1, "evidence", "show", rec.ID)...); code == 0 || !strings.Contains(errOut, "403") {
		t.Errorf("a viewer shows evidence: exit %d, %q; want 403 (an access is a responder's)", code, errOut)
	}

	out, errOut, code := shell(t, as(resp1, "evidence", "show", rec.ID)...)
	var detail v1.EvidenceDetail
	if code != 0 || json.Unmarshal([]byte(out), &detail) != nil {
		t.Fatalf("show over the API: exit %d, %s %s", code, out, errOut)
	}
	if last := detail.Custody[len(detail.Custody)-1]; last.Actor != "user:resp1" || last.Action != "accessed" {
		t.Errorf("show over the API ends the custody with %+v, want resp1's access", last)
	}

	archive := t.TempDir() + "/evidence.tar.gz"
	out, errOut, code = shell(t, as(resp1, "evidence", "export", inc, "-o", archive)...)
	if code != 0 || !strings.Contains(out, "1 artefacts, exported by user:resp1") {
		t.Fatalf("export over the API: exit %d, %q %q", code, out, errOut)
	}
	if m, err := checkArchive(bytes.NewReader(readFile(t, archive))); err != nil || m.ExportedBy != "user:resp1" {
		t.Errorf("the exported archive: %v, exported by %q", err, m.ExportedBy)
	}
	unpackChecked(t, archive)
	missing := t.TempDir() + "/none.tar.gz"
	if _, errOut, code := shell(t, as(resp1, "evidence", "export", "inc-nope", "-o", missing)...); code == 0 || !strings.Contains(errOut, "404") || fileExists(missing) || fileExists(missing+".partial") {
		t.Errorf("export of an unknown incident: exit %d, %q", code, errOut)
	}

	// On the controller's host, offline: the logged-in user.
	t.Setenv("SUDO_USER", "") // as if the test ran without sudo
	local := localActor()
	if !strings.HasPrefix(local, "local:") {
		t.Fatalf("localActor() = %q", local)
	}
	offline := func(t *testing.T) []v1.Custody {
		t.Helper()
		out, errOut, code := shell(t, "evidence", "show", rec.ID, "--db", s.db)
		var d v1.EvidenceDetail
		if code != 0 || json.Unmarshal([]byte(out), &d) != nil {
			t.Fatalf("offline show: exit %d, %s %s", code, out, errOut)
		}
		return d.Custody
	}
	custody := offline(t)
	var actors []string
	for _, c := range custody {
		actors = append(actors, c.Action+" by "+c.Actor)
	}
	want := []string{"accessed by user:resp1", "exported by user:resp1", "accessed by " + local}
	if got := strings.Join(actors, "; "); !strings.Contains(got, strings.Join(want, "; ")) {
		t.Errorf("custody %s\nwant it to end with %s", got, strings.Join(want, "; "))
	}
	t.Setenv("SUDO_USER", "alice")
	custody = offline(t)
	if last := custody[len(custody)-1]; last.Actor != local+" (sudo from alice)" {
		t.Errorf("offline show under sudo recorded %q", last.Actor)
	}
	// And the same offline export names the logged-in user too.
	archive = t.TempDir() + "/offline.tar.gz"
	if out, errOut, code := shell(t, "evidence", "export", inc, "--db", s.db, "-o", archive); code != 0 || !strings.Contains(out, "exported by "+local+" (sudo from alice)") {
		t.Errorf("offline export: exit %d, %q %q", code, out, errOut)
	}
}

func evidenceItem(incident string) evidence.Item {
	return evidence.Item{Incident: incident, Gateway: "gw-osaka", Name: "ps.txt", Kind: evidence.KindVolatile,
		CollectedBy: "agent:gw-osaka", Content: []byte("1 init\n")}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
