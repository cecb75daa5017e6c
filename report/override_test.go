package report

import (
	"regexp"
	"strings"
	"testing"

	"github.com/warden-ir/warden/indicator"
)

const (
	overrideBy     = "alice"
	overrideReason = "vendor confirmed a false positive; gateway rebuilt from its golden image"
	releaseBy      = "carol"
)

// releasedByOverride is the demo incident contained, then released by a
// person who overrode the baseline and credential gates (neither was
// done), and approved by another.
func releasedByOverride(t *testing.T) Model {
	t.Helper()
	f := newFlow(t)
	a := f.accept(t, indicator.C2Beacon)
	if err := f.c.ExecuteRun(t.Context(), a.RunID); err != nil {
		t.Fatal(err)
	}
	f.releaseByOverride(t, a.IncidentID, overrideBy, overrideReason, releaseBy, "release agreed with the site manager")
	return f.load(t, a.IncidentID)
}

// After a release that overrode gates, the management summary says which
// gates, who overrode them and why, who approved, and what is still owed,
// in both languages; the technical part no longer asks to do before the
// release what the release skipped.
func TestReportOfReleaseByOverride(t *testing.T) {
	m := releasedByOverride(t)
	rel := m.Release
	var gates []string
	for _, g := range rel.Overridden {
		gates = append(gates, g.Gate)
	}
	if !m.Containment.Released || rel.OverriddenBy != overrideBy || rel.Reason != overrideReason || rel.ApprovedBy != releaseBy ||
		strings.Join(gates, ",") != "baseline,credentials-rotated" || strings.Join(rel.Owed, ",") != "baseline,credentials-rotated" {
		t.Fatalf("release %+v, containment %+v", rel, m.Containment)
	}
	out := render(t, m)
	tests := map[string]struct {
		summary, tech, notSummary, notTech []string
	}{
		LangEnglish: {
			summary: []string{
				"RELEASED BY EXCEPTION — gw-osaka was returned to service at",
				"without the baseline check and the rotation of the tunnel credentials (overridden by alice)",
				"- **Return to service**: done at 25 Nov 03:12:07 JST, by exception: alice overrode the baseline check and the rotation of the tunnel credentials (recorded reason: “" + overrideReason + "”). A second person, carol, approved the release.",
				"- **Break-glass override on " + m.Release.Run + " (release-gateway)**: alice overrode gates; a second person, carol, approved the run.",
				"Still owed: a passing baseline check of gw-osaka, the rotation of the credentials of 2 tunnels.",
				"1. **Accept the early return to service of gw-osaka, or isolate it again?**",
				"Until its tunnel credentials are rotated, they must be treated as known to the attacker, and the tunnels to hq and dc run on them.",
				"Gateway released from quarantine by exception: the baseline check and the rotation of the tunnel credentials overridden",
			},
			tech: []string{
				"Override recorded by alice (reason: “" + overrideReason + "”). Gates it let pass although they were not met: baseline, credentials-rotated.",
				"rotate all of them (2 tunnels) now",
				"The release overrode this check (exception recorded by alice)",
				"- Rotate every tunnel credential the gateway held now",
				"- Check the baseline of gw-osaka now",
			},
			notSummary: []string{"- **Return to service**: done.", "Release needs all three"},
			notTech:    []string{"before release", "Once these are done and approved, release"},
		},
		LangJapanese: {
			summary: []string{
				"【例外による隔離解除】gw-osaka は",
				"セキュリティ基準の確認、トンネルの認証情報の更新を行わないまま業務に復帰しました（例外の適用者：alice）",
				"- **復旧（隔離解除）**: 11月25日 03:12:07 JST に隔離を解除しました。ただし、alice が例外としてセキュリティ基準の確認、トンネルの認証情報の更新を省略しています（記録された理由：「" + overrideReason + "」）。解除は、別の担当者である carol が承認しました（二人承認）。",
				"- **緊急時の例外適用（処理 " + m.Release.Run + "、release-gateway）**: alice が例外を適用し、別の担当者である carol が承認しました（二人承認）。",
				"未完了の事項：gw-osaka のセキュリティ基準の確認（合格）、トンネル 2 本の認証情報の更新。",
				"1. **ゲートウェイ gw-osaka の例外による業務復帰の容認、または再隔離のご判断**",
				"例外の適用により隔離を解除（省略した条件：セキュリティ基準の確認、トンネルの認証情報の更新）",
			},
			tech: []string{
				"alice が例外を記録しました（理由：「" + overrideReason + "」）。この例外により、条件を満たさないまま通過したゲート：セキュリティ基準の確認、認証情報の更新。",
				"直ちに 2 本すべてを更新してください",
				"隔離解除の際、この確認は例外として省略されました（例外の記録者：alice）",
				"- ゲートウェイが保持していたトンネルの認証情報を直ちにすべて更新する",
				"- gw-osaka のセキュリティ基準の確認を直ちに実施する",
			},
			notSummary: []string{"- **復旧（隔離解除）**: 完了。", "3点がすべて必要です"},
			notTech:    []string{"隔離解除の前に", "以上の完了と承認を経て隔離を解除"},
		},
	}
	for lang, tc := range tests {
		t.Run(lang, func(t *testing.T) {
			summary, tech, ok := strings.Cut(out[lang+".md"], "\n---\n")
			if !ok {
				t.Fatal("no separator between summary and technical part")
			}
			for _, w := range tc.summary {
				if !strings.Contains(summary, mdText(w)) && !strings.Contains(summary, w) {
					t.Errorf("summary lacks %q", w)
				}
			}
			checkSays(t, "summary", summary, nil, tc.notSummary)
			checkSays(t, "technical part", tech, tc.tech, tc.notTech)
			if n := strings.Count(summary, "\n"); n > 60 {
				t.Errorf("summary is %d lines; it must fit one screen", n)
			}
		})
	}
}

// Once what the override skipped has been done, the report says so and
// owes nothing.
func TestReleaseOwesNothingOnceDone(t *testing.T) {
	m := releasedByOverride(t)
	m.Release.Owed = nil
	for lang, want := range map[string]string{
		LangEnglish:  "What the exception skipped has been done since.",
		LangJapanese: "例外で省略した事項は、その後完了しています。",
	} {
		md := mustRender(t, m, lang, FormatMarkdown)
		s := string(md)
		if !strings.Contains(s, want) || strings.Contains(s, "BY EXCEPTION —") || strings.Contains(s, "【例外による隔離解除】") {
			t.Errorf("%s: report of a settled override does not read %q", lang, want)
		}
	}
}

// wardenEnglish are words of Warden's own English sentences (gate
// details, policy explanations, step summaries, statuses); none may be
// left in a Japanese report outside text that came from outside.
var wardenEnglish = regexp.MustCompile(`(?i)\b(matched|expression|succeeded|skipped|overridden|override|gates?|failed|passed|verified|automatic|approval|approved|isolated|quarantined?|rotated|released|pending|evaluated|requires?|required|attempts?|delivered|took|already|within|budget|notified|channel|accepted|dup|resolved|unsupported|configured|owed|exception|started)\b`)

// identifier is a token of code rather than a sentence: an audit action
// (step.succeeded), a kind (c2_beacon), a policy, runbook, gateway, actor
// or file name (c2-or-exfil-isolate, api:test, alertmanager-alert.json).
var identifier = regexp.MustCompile(`[A-Za-z0-9]+(?:[-_.:/@][A-Za-z0-9]+)+`)

// outsideText lists what came into the model from outside Warden's code:
// alerts, people, runbook step names, errors from providers.
func outsideText(m Model) []string {
	var out []string
	for _, in := range m.Indicators {
		out = append(out, in.Summary, in.Source, in.ResolveReason)
	}
	for _, a := range m.Actors {
		out = append(out, a.Name, a.DisplayName)
	}
	for _, r := range m.Runs {
		out = append(out, r.OverrideReason, r.OverriddenBy, r.ApprovedBy, r.RequestedBy, r.Error)
		for _, s := range r.Steps {
			out = append(out, s.Name, s.Error)
		}
	}
	for _, a := range m.Approvals {
		out = append(out, a.Comment, a.By)
	}
	for _, e := range m.Evidence.Items {
		out = append(out, e.Name, e.CollectedBy, e.CollectedFrom)
	}
	return out
}

// englishLeftIn returns the words of Warden's English found in a Japanese
// Markdown report of m, with their lines.
func englishLeftIn(md string, m Model) []string {
	for _, s := range outsideText(m) {
		if strings.TrimSpace(s) != "" {
			md = strings.ReplaceAll(md, mdText(s), "〓")
		}
	}
	md = identifier.ReplaceAllString(md, "〓")
	var found []string
	for _, line := range strings.Split(md, "\n") {
		for _, w := range wardenEnglish.FindAllString(line, -1) {
			found = append(found, w+" in: "+line)
		}
	}
	return found
}

// A Japanese report says everything Warden itself wrote in Japanese: step
// results, gate names and details, policy explanations, overrides. Only
// outside text (an alert's summary, a person's reason) and identifiers stay
// as they are.
func TestJapaneseReportHasNoWardenEnglish(t *testing.T) {
	demo, _, _ := fixture(t)
	waiting := func(t *testing.T) Model {
		f := newFlow(t)
		a := f.accept(t, indicator.ConfigTamper)
		return f.load(t, a.IncidentID)
	}
	tests := map[string]func(t *testing.T) Model{
		"demo fixture":            func(*testing.T) Model { return demo },
		"released by override":    releasedByOverride,
		"break-glass fixture":     func(t *testing.T) Model { return breakGlassFixture(t) },
		"waiting for an approval": waiting,
	}
	for name, load := range tests {
		t.Run(name, func(t *testing.T) {
			m := load(t)
			md, err := Markdown(m, LangJapanese)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range englishLeftIn(string(md), m) {
				t.Errorf("English left in the Japanese report: %s", f)
			}
			// The check itself finds what it looks for.
			en, err := Markdown(m, LangEnglish)
			if err != nil {
				t.Fatal(err)
			}
			if len(englishLeftIn(string(en), m)) == 0 {
				t.Error("the check finds nothing even in the English report")
			}
		})
	}
}
