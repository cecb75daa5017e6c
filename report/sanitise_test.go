package report

import (
	"strings"
	"testing"

	"github.com/warden-ir/warden/internal/textsafe"
)

// hostile holds what an attacker puts in alert text to fool a person:
// a terminal colour (ESC [31m), a bell, a carriage return that overwrites
// the line, a right-to-left override, and a file name that displays as
// "invoiceexe.pdf".
const hostile = "\x1b[31mALERT\x1b[0m\a all good\rpwned \u202Etxt.exe invoice\u202Efdp.exe \u2066x\u2069 \u200f\u0085"

// Control and bidi characters from outside never reach a report raw, in
// any language or format, wherever the text came in; they are shown as
// visible escapes instead.
func TestReportShowsHiddenCharactersEscaped(t *testing.T) {
	m, _, _ := fixture(t)
	m.Indicators[0].Summary = hostile
	m.Indicators[0].Source = "suricata" + hostile
	m.Indicators[0].Domains = []string{"invoice\u202Efdp.exe"}
	m.Indicators[0].Hashes = []string{"\x1b]8;;http://evil\a"}
	m.Approvals[0].Detail = hostile
	m.Runs[0].OverrideReason = hostile
	m.Runs[0].Steps[2].Summary = hostile
	m.Evidence.Items[0].Name = "invoice\u202Efdp.exe"
	m.Milestones[0].Detail = hostile
	for _, lang := range []string{LangJapanese, LangEnglish} {
		for _, format := range []string{FormatMarkdown, FormatHTML} {
			t.Run(lang+"."+format, func(t *testing.T) {
				out := mustRender(t, m, lang, format)
				for _, r := range string(out) {
					if textsafe.Hidden(r) && r != '\n' && r != '\t' {
						t.Fatalf("%U reaches the report raw", r)
					}
				}
				for _, want := range []string{`invoice\u202efdp.exe`, `\x1b[31mALERT`, `\x07`, `\r`} {
					if format == FormatMarkdown {
						want = mdText(want) // displays as want
					}
					if !strings.Contains(string(out), want) {
						t.Errorf("the report does not show %q", want)
					}
				}
			})
		}
	}
}
