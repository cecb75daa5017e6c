package report

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/warden-ir/warden/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/<name>.golden, or rewrites that file
// under -update. The .golden suffix keeps expected output out of the
// tools that treat .html and .md files as source or prose.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("reading golden file (run go test ./report -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) && i < len(wl); i++ {
			if gl[i] != wl[i] {
				t.Fatalf("%s differs at line %d:\n got: %s\nwant: %s\n(run go test ./report -update if the change is intended)", name, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("%s differs in length: got %d lines, want %d (run go test ./report -update if intended)", name, len(gl), len(wl))
	}
}

// The goldens are the demo incident (contained automatically; no person
// acted) and the break-glass fixture (the same incident released by
// exception: resp1 asked and overrode, appr1 approved).
func TestGoldenReports(t *testing.T) {
	demo, _, _ := fixture(t)
	breakGlass := breakGlassFixture(t)
	tests := map[string]struct {
		m            Model
		lang, format string
	}{
		"demo.ja.md":         {demo, LangJapanese, FormatMarkdown},
		"demo.en.md":         {demo, LangEnglish, FormatMarkdown},
		"demo.ja.html":       {demo, LangJapanese, FormatHTML},
		"demo.en.html":       {demo, LangEnglish, FormatHTML},
		"breakglass.ja.md":   {breakGlass, LangJapanese, FormatMarkdown},
		"breakglass.en.md":   {breakGlass, LangEnglish, FormatMarkdown},
		"breakglass.ja.html": {breakGlass, LangJapanese, FormatHTML},
		"breakglass.en.html": {breakGlass, LangEnglish, FormatHTML},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := tc.m
			got := mustRender(t, m, tc.lang, tc.format)
			again, err := Render(m, tc.lang, tc.format)
			if err != nil || !bytes.Equal(got, again) {
				t.Fatal("rendering the same model twice gave different bytes")
			}
			golden(t, name, got)
		})
	}
}

func TestFixtureModel(t *testing.T) {
	m, _, _ := fixture(t)
	if !m.Containment.Contained || !m.Containment.Verified || m.Containment.VerifiedBy != "gw-osaka is quarantined" {
		t.Errorf("containment %+v", m.Containment)
	}
	var peers []string
	for _, p := range m.Peers {
		peers = append(peers, p.Site+"/"+p.Gateway+"/"+p.Tunnel)
	}
	if strings.Join(peers, ",") != "hq/gw-hq/hq-osaka,dc/gw-dc/osaka-dc" {
		t.Errorf("peers %v", peers)
	}
	if strings.Join(m.OtherTunnels, ",") != "hq-dc" {
		t.Errorf("other tunnels %v", m.OtherTunnels)
	}
	if len(m.Snapshots) != 1 || !m.Snapshots[0].Memory || m.Snapshots[0].Name != fxSnapshot {
		t.Errorf("snapshots %+v", m.Snapshots)
	}
	if len(m.Evidence.Items) != 2 || !m.Audit.OK || m.Audit.Entries == 0 {
		t.Errorf("evidence %+v audit %+v", m.Evidence, m.Audit)
	}
	if len(m.Approvals) != 1 || !m.Approvals[0].Automatic {
		t.Errorf("approvals %+v", m.Approvals)
	}
	if m.Baseline.Checked || m.Credentials.Rotated || len(m.Credentials.Tunnels) != 2 {
		t.Errorf("baseline %+v credentials %+v", m.Baseline, m.Credentials)
	}
	var kinds []string
	for _, ms := range m.Milestones {
		k := ms.Kind
		if ms.Action != "" {
			k += ":" + ms.Action
		}
		kinds = append(kinds, k)
	}
	want := "alert,decision,step:capture_volatile,step:snapshot,contained:isolate,step:notify"
	if strings.Join(kinds, ",") != want {
		t.Errorf("milestones %v, want %s", kinds, want)
	}
}

// secretLike finds things that look like credentials: the fixture's planted
// secrets, key material, and key=value pairs with secret-looking keys.
var secretLike = regexp.MustCompile(`(?i)(sekrit|hunter2|-----BEGIN [A-Z ]*PRIVATE KEY-----|\bbearer\s+\S|"password"|password\s*[:=]|psk\s*[:=]|private_?key\s*[:=]|\b[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)`)

func TestReportsCarryNoSecrets(t *testing.T) {
	m, st, _ := fixture(t)
	// The planted secrets really are in the store, so the check below means
	// something.
	var raw string
	if err := st.DB().QueryRowContext(t.Context(), `SELECT body FROM indicators WHERE id = ?`, fxIndicator).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var steps string
	if err := st.DB().QueryRowContext(t.Context(), `SELECT group_concat(result) FROM steps WHERE run = ?`, fxRun).Scan(&steps); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(raw, "sekrit") || !strings.Contains(steps, fxSecretStep) {
		t.Fatal("fixture lost its planted secrets")
	}
	for _, lang := range []string{LangJapanese, LangEnglish} {
		for _, format := range []string{FormatMarkdown, FormatHTML} {
			out := mustRender(t, m, lang, format)
			if loc := secretLike.FindIndex(out); loc != nil {
				t.Errorf("%s/%s report contains something secret-looking: %q", lang, format, out[max(0, loc[0]-40):min(len(out), loc[1]+40)])
			}
			if bytes.Contains(out, []byte("%!")) || regexp.MustCompile(`\[[a-z]+(\.[a-z_]+)+\]`).Match(out) {
				t.Errorf("%s/%s report has a formatting error or a missing text", lang, format)
			}
			if !utf8.Valid(out) {
				t.Errorf("%s/%s report is not valid UTF-8", lang, format)
			}
		}
	}
}

func TestUnknownLanguageOrFormatIsNamed(t *testing.T) {
	m, _, _ := fixture(t)
	tests := map[string]struct {
		lang, format, want string
	}{
		"language fr":      {"fr", FormatMarkdown, `"fr"`},
		"language empty":   {"", FormatHTML, `""`},
		"language JA case": {"JA", FormatHTML, `"JA"`},
		"format pdf":       {LangJapanese, "pdf", `"pdf"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Render(m, tc.lang, tc.format)
			var ue *UnsupportedError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want an UnsupportedError naming %s", err, tc.want)
			}
		})
	}
	if _, err := Markdown(m, "de"); err == nil || !strings.Contains(err.Error(), `"de"`) {
		t.Errorf("Markdown(de): %v", err)
	}
	if _, err := HTML(m, "de"); err == nil || !strings.Contains(err.Error(), `"de"`) {
		t.Errorf("HTML(de): %v", err)
	}
}

func TestTextsMatchAcrossLanguages(t *testing.T) {
	for k, w := range wording {
		if w.en == "" {
			t.Errorf("english lacks %q", k)
		}
		if w.ja == "" {
			t.Errorf("japanese lacks %q", k)
		}
	}
	if len(english) != len(wording) || len(japanese) != len(wording) {
		t.Errorf("%d English and %d Japanese texts for %d keys", len(english), len(japanese), len(wording))
	}
}

func TestHostileAlertTextIsInert(t *testing.T) {
	m, _, _ := fixture(t)
	const hostile = "x</td><script>alert(1)</script><img src=x onerror=alert(2)> [click](javascript:alert(3)) | cell |\n# injected heading\n<!-- c -->"
	m.Indicators[0].Summary = hostile
	m.Indicators[0].Source = "<b>suricata</b>"
	m.Runs[0].Steps[2].Summary = "</p><iframe src=//evil>"
	t.Run("html", func(t *testing.T) {
		for _, lang := range []string{LangJapanese, LangEnglish} {
			out := mustRender(t, m, lang, FormatHTML)
			for _, bad := range []string{"<script", "<img", "<iframe", "<b>suricata", "<!-- c", "</td><script"} {
				if bytes.Contains(bytes.ToLower(out), []byte(bad)) {
					t.Errorf("%s HTML contains raw %q", lang, bad)
				}
			}
			if !bytes.Contains(out, []byte("&lt;script&gt;alert(1)&lt;/script&gt;")) {
				t.Errorf("%s HTML does not show the alert text escaped", lang)
			}
		}
	})
	t.Run("markdown", func(t *testing.T) {
		for _, lang := range []string{LangJapanese, LangEnglish} {
			out := mustRender(t, m, lang, FormatMarkdown)
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "# injected") || strings.HasPrefix(line, "<!--") {
					t.Errorf("%s Markdown: alert text started its own line: %q", lang, line)
				}
			}
			for _, bad := range []string{"<script", "<img", "<iframe", "](javascript", "<b>"} {
				// Escaped means preceded by a backslash.
				if regexp.MustCompile(`(^|[^\\])` + regexp.QuoteMeta(bad)).Match(out) {
					t.Errorf("%s Markdown contains unescaped %q", lang, bad)
				}
			}
			// Every indicator table row keeps its 8 columns.
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, "injected heading") {
					cells := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|")
					if cells != 9 {
						t.Errorf("%s Markdown row has %d cell separators, want 9: %s", lang, cells, line)
					}
				}
			}
		}
	})
}

func TestHTMLIsSelfContained(t *testing.T) {
	m, _, _ := fixture(t)
	for _, lang := range []string{LangJapanese, LangEnglish} {
		out := mustRender(t, m, lang, FormatHTML)
		s := string(out)
		for _, bad := range []string{"<script", "<link", "@import", "url(", "src=", "@font-face", "<img", "<iframe"} {
			if strings.Contains(s, bad) {
				t.Errorf("%s HTML references something external: %q", lang, bad)
			}
		}
		// The only URL is the SVG namespace, which browsers never fetch.
		if urls := regexp.MustCompile(`https?://[^"\s<]+`).FindAllString(s, -1); len(urls) != 1 || urls[0] != "http://www.w3.org/2000/svg" {
			t.Errorf("%s HTML URLs: %v", lang, urls)
		}
		for _, want := range []string{`<html lang="` + lang + `">`, `<svg class="timeline"`, `fill="` + TimelineColour + `"`, "@media print", `<h3 id="decide">`, `<h3 id="evidence">`} {
			if !strings.Contains(s, want) {
				t.Errorf("%s HTML lacks %q", lang, want)
			}
		}
		if strings.Index(s, `class="mgmt"`) > strings.Index(s, `class="tech"`) {
			t.Errorf("%s HTML: management summary must come before the technical part", lang)
		}
		for _, e := range m.Evidence.Items {
			if !strings.Contains(s, e.SHA256) {
				t.Errorf("%s HTML lacks the SHA-256 of %s", lang, e.Name)
			}
		}
	}
}

func TestManagementSummaryFitsOneScreen(t *testing.T) {
	m, _, _ := fixture(t)
	for _, lang := range []string{LangJapanese, LangEnglish} {
		out := mustRender(t, m, lang, FormatMarkdown)
		head, _, ok := strings.Cut(string(out), "\n---\n")
		if !ok {
			t.Fatalf("%s: no separator between summary and technical part", lang)
		}
		if n := strings.Count(head, "\n"); n > 60 {
			t.Errorf("%s management summary is %d lines; it must fit one screen", lang, n)
		}
		// What a manager must find in two minutes.
		for _, want := range []string{"osaka", "gw-osaka", "hq", "dc", "03:12:07 JST", "18:12:07"} {
			if !strings.Contains(head, want) {
				t.Errorf("%s summary lacks %q", lang, want)
			}
		}
	}
	ja, _ := Markdown(m, LangJapanese)
	for _, want := range []string{"経営層向け要約", "発生した事象", "影響範囲", "実施した対応", "現在の状況", "ご判断いただきたい事項", "封じ込め済み",
		"外部の専門調査機関", "個人情報保護委員会", "隔離解除", "技術詳細", "未実施"} {
		if !strings.Contains(string(ja), want) {
			t.Errorf("Japanese report lacks %q", want)
		}
	}
}

func TestLoadUnknownIncident(t *testing.T) {
	_, st, ledger := fixture(t)
	if _, err := Load(t.Context(), st, demoInventory(t), ledger, "inc-nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("err %v, want store.ErrNotFound", err)
	}
	if _, err := Load(t.Context(), nil, demoInventory(t), nil, fxIncident); err == nil {
		t.Fatal("Load without a store succeeded")
	}
}

func TestLoadWithoutLedgerAndWithBrokenAudit(t *testing.T) {
	_, st, _ := fixture(t)
	if _, err := st.DB().ExecContext(t.Context(), `UPDATE audit SET actor = 'mallory' WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	m, err := Load(t.Context(), st, demoInventory(t), nil, fxIncident)
	if err != nil {
		t.Fatal(err)
	}
	if m.Evidence.Available || m.Audit.OK || !strings.Contains(m.Audit.Problem, "entry 3") {
		t.Fatalf("evidence %+v audit %+v", m.Evidence, m.Audit)
	}
	for lang, want := range map[string]string{LangJapanese: "異常あり", LangEnglish: "BROKEN"} {
		out := mustRender(t, m, lang, FormatMarkdown)
		if !strings.Contains(string(out), want) {
			t.Errorf("%s report does not say the audit chain is broken", lang)
		}
	}
}

// What Warden did at the peers reads as what it means, and a step that
// could not run here says it is left to people, in both languages.
func TestMilestonesOfRevocationAndSkippedSteps(t *testing.T) {
	for _, tc := range []struct {
		lang string
		ms   Milestone
		want string
	}{
		{"en", Milestone{Action: "revoke_peer", State: store.StepSucceeded}, "removed from every peer site"},
		{"ja", Milestone{Action: "revoke_peer", State: store.StepSucceeded}, "全ての接続先拠点"},
		{"en", Milestone{Action: "rotate_credentials", State: store.StepSkipped}, "to be done by hand"},
		{"ja", Milestone{Action: "rotate_credentials", State: store.StepSkipped}, "手作業"},
		{"en", Milestone{Action: "capture_volatile", State: store.StepSkipped}, "not available for this gateway"},
	} {
		l, err := newLoc(tc.lang, "UTC")
		if err != nil {
			t.Fatal(err)
		}
		if got := milestoneText(Model{}, tc.ms, l); !strings.Contains(got, tc.want) {
			t.Errorf("%s %s %s: %q, want it to say %q", tc.lang, tc.ms.Action, tc.ms.State, got, tc.want)
		}
	}
}

// TestVerifyAuditOff: a model loaded for a live page leaves the audit
// chain unchecked and says nothing about it; the rest is the same.
func TestVerifyAuditOff(t *testing.T) {
	st, ledger := seedDemo(t)
	checked := loadFixture(t, st, ledger)
	unchecked := loadFixture(t, st, ledger, VerifyAudit(false))
	if !checked.Audit.OK || checked.Audit.Entries == 0 {
		t.Fatalf("by default the chain is verified: %+v", checked.Audit)
	}
	if unchecked.Audit != (AuditStatus{}) {
		t.Errorf("VerifyAudit(false) still reports the chain: %+v", unchecked.Audit)
	}
	if len(unchecked.Timeline) != len(checked.Timeline) || len(unchecked.Evidence.Items) != len(checked.Evidence.Items) || len(unchecked.Runs) != len(checked.Runs) {
		t.Errorf("VerifyAudit(false) changed the rest of the model")
	}
}
