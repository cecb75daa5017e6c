package main

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/actions/actionstest"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/store"
)

// servedController is a controller built from testConfig, serving its API,
// with fake actions.
type servedController struct {
	d      *daemon.Daemon
	url    string
	token  string
	config string // the configuration file
	db     string // its store.path
}

func serveController(t *testing.T) servedController {
	t.Helper()
	dir := t.TempDir()
	fakes := actionstest.All(actions.NameCaptureVolatile, actions.NameSnapshot, actions.NameIsolate, actions.NameRevokePeer,
		actions.NameRotateCredentials, actions.NameNotify)
	cfg, d := buildDaemon(t, dir, "", daemon.Options{ExtraActions: fakes})
	if err := d.AcquireWriter(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.API)
	t.Cleanup(srv.Close)
	return servedController{d: d, url: srv.URL, token: cfg.Server.APIToken,
		config: filepath.Join(dir, "warden.yaml"), db: filepath.Join(dir, "warden.db")}
}

// incident accepts one indicator about gw-osaka and returns what became
// of it; run, when set, executes its run to the end.
func (s servedController) incident(t *testing.T, kind indicator.Kind, run bool) controller.Accepted {
	t.Helper()
	res, err := s.d.Controller.Accept(t.Context(), "api:test", []controller.Item{{Matched: true, Indicator: indicator.Indicator{
		Kind: kind, Gateway: "gw-osaka", Severity: indicator.Critical, Confidence: 0.9, Source: "suricata",
		Summary: "sample " + string(kind), Observables: indicator.Observables{IPs: []string{"203.0.113.66"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].RunID == "" {
		t.Fatalf("accepted %+v, want one incident with a run", res)
	}
	if run {
		if err := s.d.Controller.ExecuteRun(t.Context(), res[0].RunID); err != nil {
			t.Fatal(err)
		}
	}
	return res[0]
}

func (s servedController) remote(args ...string) []string {
	return append(args, "--server", s.url, "--token", s.token)
}

// user makes a user with role through the API, as the admin of the
// shared token, and returns their token.
func (s servedController) user(t *testing.T, name, role string) string {
	t.Helper()
	return addUser(t, s.url, s.token, name, role)
}

// generatedLine is the one line that legitimately differs between two
// renderings of the same incident: when each was written.
var generatedLine = regexp.MustCompile(`(?m)^- \*\*(Report generated|報告書作成日時)\*\*: .*$|<dt>(Report generated|報告書作成日時)</dt><dd>[^<]*</dd>`)

// The report read from the store with the configuration is the report
// the controller serves: same impact, time zones and peers, byte for byte
// in both languages and formats apart from when each was generated.
func TestReportOfflineMatchesAPI(t *testing.T) {
	hermetic(t)
	s := serveController(t)
	id := s.incident(t, indicator.C2Beacon, true).IncidentID

	tests := map[string]struct {
		lang, format string
		want         []string // containment, and what the inventory contributes
	}{
		"ja md":   {"ja", "md", []string{"【封じ込め済み】", "Asia/Tokyo", "JST", "仮想マシン gw-osaka", "hq（ゲートウェイ gw-hq、トンネル gw-hq-gw-osaka、WireGuard）", "拠点「osaka」と hq との間"}},
		"en md":   {"en", "md", []string{"CONTAINED", "Asia/Tokyo", "JST", "(VM gw-osaka)", "hq (gateway gw-hq, tunnel gw-hq-gw-osaka, WireGuard)", "osaka stays cut off from hq."}},
		"ja html": {"ja", "html", []string{"Asia/Tokyo", "仮想マシン gw-osaka"}},
		"en html": {"en", "html", []string{"Asia/Tokyo", "(VM gw-osaka)"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			render := func(args ...string) string {
				t.Helper()
				out, errOut, err := runCLI(t, append([]string{"report", id, "--lang", tc.lang, "--format", tc.format}, args...)...)
				if err != nil {
					t.Fatalf("report %v: %v (stderr %s)", args, err, errOut)
				}
				return generatedLine.ReplaceAllString(out, "GENERATED")
			}
			api := render("--server", s.url, "--token", s.token)
			for _, w := range tc.want {
				if !strings.Contains(api, w) {
					t.Errorf("the API's report lacks %q", w)
				}
			}
			if strings.Count(api, "GENERATED") != 1 {
				t.Fatalf("the generated time was not found once in the API's report")
			}
			sources := map[string][]string{
				"-c":        {"-c", s.config},
				"--db + -c": {"--db", s.db, "-c", s.config},
			}
			for src, args := range sources {
				if local := render(args...); local != api {
					t.Errorf("report read with %s differs from the API's: %s", src, firstDifference(local, api))
				}
			}
		})
	}
}

func firstDifference(got, want string) string {
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(gl) && i < len(wl); i++ {
		if gl[i] != wl[i] {
			return fmt.Sprintf("line %d\n got: %s\nwant: %s", i+1, gl[i], wl[i])
		}
	}
	return fmt.Sprintf("%d lines, want %d", len(gl), len(wl))
}

// A store read without the configuration says plainly that the
// inventory is unknown where the time zone, VM, sites and peers would go.
func TestReportWithoutConfigSaysInventoryUnknown(t *testing.T) {
	hermetic(t)
	s := serveController(t)
	id := s.incident(t, indicator.C2Beacon, true).IncidentID
	tests := map[string]struct {
		lang    string
		want    []string
		notWant []string
	}{
		"en": {"en",
			[]string{"- **Times**: UTC only: the time zone of site osaka is not known (inventory unknown: pass -c warden.yaml)",
				"- **Sites connected to it by tunnels**: not known (inventory unknown: pass -c warden.yaml)."},
			[]string{"(UTC, UTC)", "VM —", "none in the inventory", "cut off from ."}},
		"ja": {"ja",
			[]string{"- **時刻表記**: UTC のみで表記（拠点「osaka」のタイムゾーンは不明。インベントリ不明：-c warden.yaml を指定してください）",
				"- **トンネルで直接接続している拠点**: 不明です（インベントリ不明：-c warden.yaml を指定してください）。"},
			[]string{"（UTC、UTC）", "仮想マシン —", "インベントリ上はありません", "」と  との間"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, _, err := runCLI(t, "report", id, "--db", s.db, "--lang", tc.lang)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("report lacks %q", w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("report says %q without an inventory", w)
				}
			}
		})
	}
}

// report, audit verify, plan and evidence choose between the store and
// the API by one rule: --db; then flags before environment variables, a
// server before a configuration within each.
func TestStoreReadersPrecedence(t *testing.T) {
	hermetic(t)
	s := serveController(t)
	id := s.incident(t, indicator.C2Beacon, true).IncidentID
	// Nothing listens here: a command that reaches for it fails.
	const nowhere = "http://127.0.0.1:1"
	unreachable := []string{"--server", nowhere, "--token", "t"}
	dir := t.TempDir()
	// A configuration that cannot load: a command that reads it fails.
	broken := writeFile(t, dir, "broken.yaml", "server:\n  colour: red\n")
	planConfig := writeFile(t, dir, "plan.yaml", strings.ReplaceAll(testConfig, "%STORE%", filepath.Join(dir, "plan.db")))
	tamper := writeFile(t, dir, "tamper.json", `{"kind":"config_tamper","gateway":"gw-hq","severity":"high","confidence":0.9,"source":"aide"}`)
	serverEnv := map[string]string{"WARDEN_SERVER": s.url, "WARDEN_API_TOKEN": s.token}
	nowhereEnv := map[string]string{"WARDEN_SERVER": nowhere, "WARDEN_API_TOKEN": "t"}

	tests := map[string]struct {
		env     map[string]string
		args    []string
		wantOut []string
		wantErr []string
	}{
		"report: --server beats -c": {args: []string{"report", id, "-c", broken, "--server", s.url, "--token", s.token, "--lang", "en"},
			wantOut: []string{"Asia/Tokyo"}},
		"report: -c beats WARDEN_SERVER": {env: nowhereEnv, args: []string{"report", id, "-c", s.config, "--lang", "en"}, wantOut: []string{"Asia/Tokyo"}},
		"report: WARDEN_SERVER":          {env: serverEnv, args: []string{"report", id, "--lang", "en"}, wantOut: []string{"Asia/Tokyo"}},
		"report: WARDEN_SERVER beats WARDEN_CONFIG": {env: map[string]string{"WARDEN_SERVER": s.url, "WARDEN_API_TOKEN": s.token, "WARDEN_CONFIG": broken},
			args: []string{"report", id, "--lang", "en"}, wantOut: []string{"Asia/Tokyo"}},
		"report: --db beats WARDEN_SERVER":     {env: nowhereEnv, args: []string{"report", id, "--db", s.db, "--lang", "en"}, wantOut: []string{"inventory unknown"}},
		"audit verify: -c beats WARDEN_SERVER": {env: nowhereEnv, args: []string{"audit", "verify", "-c", s.config}, wantOut: []string{"audit chain intact: "}},
		"audit verify: WARDEN_SERVER":          {env: serverEnv, args: []string{"audit", "verify"}, wantOut: []string{"audit chain intact: "}},
		"plan: -c beats WARDEN_SERVER":         {env: nowhereEnv, args: []string{"plan", "-c", planConfig, "-f", tamper}, wantOut: []string{"tamper-contain-with-approval"}},
		"plan: --server":                       {args: s.remote("plan", "-f", tamper), wantOut: []string{"tamper-contain-with-approval"}},
		"evidence: WARDEN_SERVER":              {env: serverEnv, args: []string{"evidence", "list", id}, wantOut: []string{"SHA256"}},
		"evidence: -c beats WARDEN_SERVER":     {env: nowhereEnv, args: []string{"evidence", "list", id, "-c", s.config}, wantOut: []string{"SHA256"}},
		"report: --db wins over --server": {args: append([]string{"report", id, "--db", s.db, "-c", s.config, "--lang", "en"}, unreachable...),
			wantOut: []string{"Asia/Tokyo", "(VM gw-osaka)"}},
		"report: --server without --db asks the API": {args: s.remote("report", id, "--lang", "en"), wantOut: []string{"Asia/Tokyo"}},
		"report: -c alone reads store.path":          {args: []string{"report", id, "-c", s.config, "--lang", "en"}, wantOut: []string{"Asia/Tokyo"}},
		"report: unknown incident over the API":      {args: s.remote("report", "inc-nope"), wantErr: []string{"404", "inc-nope"}},
		"report: unknown language over the API":      {args: s.remote("report", id, "--lang", "fr"), wantErr: []string{"400", `"fr"`}},
		"report: wrong token":                        {args: []string{"report", id, "--server", s.url, "--token", "wrong"}, wantErr: []string{"401"}},
		"report: --evidence-dir with --server":       {args: s.remote("report", id, "--evidence-dir", t.TempDir()), wantErr: []string{"--evidence-dir"}},
		"report: a broken config is not ignored":     {args: []string{"report", id, "--db", s.db, "-c", broken}, wantErr: []string{"colour", broken}},
		"audit verify over the API":                  {args: s.remote("audit", "verify"), wantOut: []string{"audit chain intact: "}},
		"audit verify: --db wins over --server":      {args: append([]string{"audit", "verify", "--db", s.db}, unreachable...), wantOut: []string{"audit chain intact: "}},
		"audit verify: -c reads store.path":          {args: []string{"audit", "verify", "-c", s.config}, wantOut: []string{"audit chain intact: "}},
		"evidence: --server asks the API":            {args: s.remote("evidence", "list", id), wantOut: []string{"SHA256"}},
		"evidence: --server beats -c":                {args: append([]string{"evidence", "list", id, "-c", s.config}, unreachable...), wantErr: []string{"127.0.0.1:1"}},
		"evidence: --db beats --server":              {args: append([]string{"evidence", "list", id, "--db", s.db}, unreachable...), wantOut: []string{"SHA256"}},
		"evidence: unknown incident over the API":    {args: s.remote("evidence", "list", "inc-nope"), wantErr: []string{"404", "inc-nope"}},
		"evidence: --evidence-dir with --server":     {args: s.remote("evidence", "list", id, "--evidence-dir", t.TempDir()), wantErr: []string{"--evidence-dir"}},
		"evidence cat: only --server":                {args: append([]string{"evidence", "cat", "evd-1"}, unreachable...), wantErr: []string{"not over the API", "--db"}},
		"evidence verify: -c with --server":          {args: append([]string{"evidence", "verify", "-c", s.config}, unreachable...), wantOut: []string{"every artefact matches"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			out, _, err := runCLI(t, tc.args...)
			wantRun(t, out, err, tc.wantErr, tc.wantOut)
			if tc.wantErr != nil && out != "" {
				t.Errorf("stdout is not empty on failure: %.300s", out)
			}
		})
	}
}

// A broken chain exits 2 with the same words whether the store is read
// here or the controller verifies it.
func TestAuditVerifyBrokenChainFromEitherSource(t *testing.T) {
	hermetic(t)
	s := serveController(t)
	s.incident(t, indicator.C2Beacon, true)
	if _, err := s.d.Store.DB().ExecContext(t.Context(), `UPDATE audit SET actor = 'mallory' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"store": {"audit", "verify", "--db", s.db},
		"API":   s.remote("audit", "verify"),
	} {
		t.Run(name, func(t *testing.T) {
			out, _, err := runCLI(t, args...)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "audit chain broken at entry 2") {
				t.Fatalf("err %v, want exit 2 naming entry 2", err)
			}
			if out != "" {
				t.Errorf("stdout on a broken chain: %q", out)
			}
		})
	}
}

// WAITING FOR says why a run waits for a person only while it does.
func TestRunsListWaitingFor(t *testing.T) {
	hermetic(t)
	s := serveController(t)
	a := s.incident(t, indicator.ConfigTamper, false)
	if a.RunState != store.RunAwaitingApproval {
		t.Fatalf("accepted %+v, want a run waiting for approval", a)
	}
	waiting := func(t *testing.T) (state, reason string) {
		t.Helper()
		out, _, err := runCLI(t, s.remote("runs", "list")...)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(out, "\n")
		col := strings.Index(lines[0], "WAITING FOR")
		for _, l := range lines[1:] {
			if f := strings.Fields(l); len(f) > 3 && f[0] == a.RunID {
				return f[3], strings.TrimSpace(l[col:])
			}
		}
		t.Fatalf("run %s not listed:\n%s", a.RunID, out)
		return "", ""
	}
	steps := []struct {
		name   string
		do     func(t *testing.T)
		state  string
		reason string // "" means: any text but "-"
	}{
		{"awaiting approval", func(*testing.T) {}, store.RunAwaitingApproval, ""},
		{"approved", func(t *testing.T) {
			if _, _, err := runCLI(t, "runs", "approve", a.RunID, "--server", s.url, "--token", s.user(t, "alice", "approver")); err != nil {
				t.Fatal(err)
			}
		}, store.RunPending, "-"},
		{"finished", func(t *testing.T) {
			if err := s.d.Controller.ExecuteRun(t.Context(), a.RunID); err != nil {
				t.Fatal(err)
			}
		}, store.RunSucceeded, "-"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do(t)
			state, reason := waiting(t)
			if state != st.state {
				t.Fatalf("state %s, want %s", state, st.state)
			}
			if (st.reason == "" && (reason == "" || reason == "-")) || (st.reason != "" && reason != st.reason) {
				t.Errorf("WAITING FOR %q in state %s", reason, state)
			}
		})
	}
}
