package notify

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/warden-ir/warden/internal/textsafe"
)

// A chat client shows a notification's text to a person: control and bidi
// characters from alerts, runbook parameters or people never reach it raw,
// in any field, and what they were stays visible.
func TestSendShowsHiddenCharactersEscaped(t *testing.T) {
	const hostile = "\x1b[31mALERT\x1b[0m\a ok\rpwned invoice\u202Efdp.exe"
	tests := map[string]struct {
		msg  Message
		want string // in the decoded field, visible
	}{
		"title":    {Message{Title: hostile}, `invoice\u202efdp.exe`},
		"text":     {Message{Title: "t", Text: "line one\n" + hostile}, `\x1b[31mALERT\x1b[0m\x07 ok\rpwned`},
		"incident": {Message{Title: "t", Incident: "inc-1\u202E"}, `inc-1\u202e`},
		"gateway":  {Message{Title: "t", Gateway: "gw\x1b[2J"}, `gw\x1b[2J`},
		"site":     {Message{Title: "t", Site: "hq\u2066"}, `hq\u2066`},
		"severity": {Message{Title: "t", Severity: "high\r"}, `high\r`},
		"run":      {Message{Title: "t", Run: "run\u200f"}, `run\u200f`},
		"step":     {Message{Title: "t", Steps: []StepLine{{Name: "iso\u202Elate", Status: "done\a"}}}, `iso\u202elate`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rcv := newReceiver(t, nil)
			s := mustSender(t, []Channel{{Name: "chat", URL: rcv.srv.URL}}, nil, WithClock(frozenClock()))
			if _, err := s.Send(t.Context(), "chat", "k-"+name, tc.msg); err != nil {
				t.Fatal(err)
			}
			// What the receiver decodes is what a person sees.
			var got Message
			if err := json.Unmarshal(rcv.requests()[0].body, &got); err != nil {
				t.Fatal(err)
			}
			fields := []string{got.Title, got.Text, got.Incident, got.Gateway, got.Site, got.Severity, got.Run}
			for _, st := range got.Steps {
				fields = append(fields, st.Name, st.Status)
			}
			all := strings.Join(fields, "|")
			for i, f := range fields {
				for _, r := range f {
					if textsafe.Hidden(r) && !(i == 1 && r == '\n') { // the text keeps its lines
						t.Fatalf("%U reaches the chat raw: %q", r, all)
					}
				}
			}
			if !strings.Contains(all, tc.want) {
				t.Errorf("decoded body %q does not show %q", all, tc.want)
			}
			if name == "text" && !strings.HasPrefix(got.Text, "line one\n") {
				t.Errorf("the text lost its line break: %q", got.Text)
			}
		})
	}
	// The caller's message is not changed.
	m := Message{Title: hostile, Steps: []StepLine{{Name: hostile}}}
	_ = m.sanitised()
	if m.Title != hostile || m.Steps[0].Name != hostile {
		t.Error("sanitised changed its receiver's data")
	}
}
