package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/internal/textsafe"
	"github.com/warden-ir/warden/notify"
	"github.com/warden-ir/warden/store"
)

// hiddenIn returns the first code point in out that must never reach a
// person raw (tab and newline are layout here), or 0.
func hiddenIn(out string) rune {
	for _, r := range out {
		if textsafe.Hidden(r) && r != '\n' && r != '\t' {
			return r
		}
	}
	return 0
}

// A cell can neither carry a terminal escape nor break the columns.
func TestTableCellsAreOneSafeLine(t *testing.T) {
	tests := map[string]struct {
		cells []string
		want  string // the row as printed, trailing spaces trimmed
	}{
		"plain":       {[]string{"run-1", "gw-hq", "succeeded"}, "run-1  gw-hq  succeeded"},
		"ANSI colour": {[]string{"\x1b[31mred\x1b[0m", "x"}, `\x1b[31mred\x1b[0m  x`},
		"bidi file":   {[]string{"invoice\u202Efdp.exe", "x"}, `invoice\u202efdp.exe  x`},
		"tab":         {[]string{"a\tb", "c"}, `a\tb  c`},
		"newline":     {[]string{"a\nb", "c"}, `a\nb  c`},
		"CR and BEL":  {[]string{"ok\rpwned\a", "c"}, `ok\rpwned\x07  c`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			tb := newTable(&b, "A", "B", "C")
			tb.row(tc.cells...)
			if err := tb.flush(); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
			if len(lines) != 2 {
				t.Fatalf("printed %d lines, want 2: %q", len(lines), b.String())
			}
			if got := strings.TrimRight(lines[1], " "); got != tc.want {
				t.Errorf("row %q, want %q", got, tc.want)
			}
			if r := hiddenIn(b.String()); r != 0 {
				t.Errorf("%U printed raw", r)
			}
		})
	}
}

// An alert whose summary, source, labels and observables carry ESC[31m,
// BEL, CR, a right-to-left override and a fake file name goes in through
// intake; none of those code points comes out raw in the report (both
// languages, both formats), the CLI tables or a chat notification about
// the incident, and what they were stays visible.
func TestHostileAlertReachesNoPersonRaw(t *testing.T) {
	hermetic(t)
	s := serveController(t)
	const summary = "\x1b[31mBEACON\x1b[0m\a from gw-osaka\rall clear; dropped invoice\u202Efdp.exe"
	alert, err := json.Marshal(map[string]any{
		"kind": "c2_beacon", "gateway": "gw-osaka", "severity": "critical", "confidence": 0.9,
		"source": "suricata\x1b[2J", "summary": summary,
		"labels": map[string]string{"alertname": "C2\a", "file": "invoice\u202Efdp.exe"},
		"observables": map[string]any{"ips": []string{"203.0.113.66"}, "domains": []string{"evil\u202E.example"},
			"hashes": []string{"invoice\u202Efdp.exe\r"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	in := writeFile(t, t.TempDir(), "alert.json", string(alert))
	if _, errOut, err := runCLI(t, s.remote("indicator", "submit", "-f", in)...); err != nil {
		t.Fatalf("submit: %v (%s)", err, errOut)
	}
	incs, err := s.d.Store.Incidents(t.Context(), 10)
	if err != nil || len(incs) != 1 {
		t.Fatalf("incidents %+v, %v", incs, err)
	}
	inc := incs[0]
	if !strings.Contains(inc.Title, "\u202E") {
		t.Fatalf("the stored title lost the hostile text (%q): the test proves nothing", inc.Title)
	}
	runs, err := s.d.Store.Runs(t.Context(), store.RunFilter{Incident: inc.ID, Limit: 10})
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs %+v, %v", runs, err)
	}
	if err := s.d.Controller.ExecuteRun(t.Context(), runs[0].ID); err != nil {
		t.Fatal(err)
	}
	// An artefact filed by someone whose name carries the same tricks.
	if _, err := s.d.Ledger.Add(t.Context(), evidence.Item{Incident: inc.ID, Gateway: "gw-osaka", Name: "invoice\u202Efdp.exe",
		Kind: evidence.KindLog, Source: "manual", CollectedBy: "cli:\x1b[31mmallory\u202E", Content: []byte("x")}); err != nil {
		t.Fatal(err)
	}

	outputs := map[string]string{}
	cli := func(name string, args ...string) {
		t.Helper()
		out, errOut, err := runCLI(t, args...)
		if err != nil {
			t.Fatalf("%s: %v (%s)", name, err, errOut)
		}
		outputs[name] = out
	}
	for _, lang := range []string{"ja", "en"} {
		for _, format := range []string{"md", "html"} {
			cli("report "+lang+" "+format, s.remote("report", inc.ID, "--lang", lang, "--format", format)...)
		}
	}
	cli("runs list", s.remote("runs", "list")...)
	cli("gateways list", s.remote("gateways", "list")...)
	cli("evidence list", "evidence", "list", inc.ID, "--db", s.db, "-c", s.config)

	// A chat notification about the incident, with its title and the
	// alert's summary, as a runbook or the pager would send it.
	var mu sync.Mutex
	var body []byte
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		body, _ = io.ReadAll(r.Body)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	sender, err := notify.NewSender([]notify.Channel{{Name: "chat", URL: hook.URL}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sender.Send(t.Context(), "chat", "inc/"+inc.ID, notify.Message{Incident: inc.ID, Gateway: inc.Gateway, Site: inc.Site,
		Severity: inc.Severity, Title: inc.Title, Text: summary}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	var msg notify.Message
	err = json.Unmarshal(body, &msg)
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	outputs["notification"] = strings.Join([]string{msg.Incident, msg.Gateway, msg.Site, msg.Severity, msg.Title, msg.Text}, "\n")

	for name, out := range outputs {
		if r := hiddenIn(out); r != 0 {
			i := strings.IndexRune(out, r)
			t.Errorf("%s shows %U raw: %q", name, r, out[max(0, i-40):min(len(out), i+40)])
		}
	}
	// What was hidden is shown: the override and the escape, as escapes.
	visible := map[string]string{
		"report ja md":   `invoice\\u202efdp.exe`, // Markdown escapes the backslash
		"report en md":   `invoice\\u202efdp.exe`,
		"report ja html": `invoice\u202efdp.exe`,
		"report en html": `\x1b[31mBEACON\x1b[0m\x07 from gw-osaka\rall clear`,
		"evidence list":  `cli:\x1b[31mmallory\u202e`,
		"notification":   `\x1b[31mBEACON\x1b[0m\x07 from gw-osaka\rall clear; dropped invoice\u202efdp.exe`,
	}
	for name, want := range visible {
		if !strings.Contains(outputs[name], want) {
			t.Errorf("%s does not show %q", name, want)
		}
	}
}
