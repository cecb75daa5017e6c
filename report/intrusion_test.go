package report

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/investigation"
	"github.com/warden-ir/warden/store"
)

// intrusionSummary is what the investigate step files for the fixture's
// gw-osaka: a login from the attacker after failures, a change of the
// tunnel configuration, a connection into hq's LAN, 3.1 MB towards the
// C2 address, and dc's agent down.
func intrusionSummary() investigation.Summary {
	at := fxT0.Add(-20 * time.Minute)
	ev := func(d time.Duration, action, actor, object, addr string, detail map[string]string) wire.TimelineEvent {
		return wire.TimelineEvent{Time: at.Add(d), Source: wire.SourceLogFile, Action: action, Actor: actor, Object: object, Address: addr,
			Message: action, Artefact: "log_var_log_auth.log", Line: 7, Detail: detail}
	}
	osaka := wire.InvestigateResult{Started: fxT0, AgentTime: fxT0, Addresses: []string{"198.51.100.20"},
		Events: []wire.TimelineEvent{
			ev(0, wire.ActionLoginFailed, "root", "sshd", "203.0.113.9", nil),
			ev(time.Second, wire.ActionLoginAccepted, "root", "sshd", "203.0.113.9", nil),
			ev(10*time.Second, wire.ActionConfigChanged, "", "/etc/swanctl/swanctl.conf", "", map[string]string{"diff": "--- a/etc/swanctl/swanctl.conf\n+++ b/etc/swanctl/swanctl.conf\n@@ -1 +1,2 @@\n connections {\n+  evil { remote_addrs = 203.0.113.9 }"}),
			ev(20*time.Second, wire.ActionConnection, "", "tcp 198.51.100.20:4000 → 10.10.0.20:22", "10.10.0.20", map[string]string{"src": "198.51.100.20", "dst": "10.10.0.20"}),
		},
		Flows: []wire.Flow{{Proto: "tcp", Src: "198.51.100.20", Dst: "203.0.113.66", SrcPort: 4001, DstPort: 443, OrigBytes: 3_100_000, OrigPackets: 9, Accounted: true, Start: at.Add(30 * time.Second), SeenAt: at.Add(40 * time.Second)}},
	}
	tl := investigation.Build(investigation.Input{Incident: "inc-1", Gateway: "gw-osaka", Since: at.Add(-time.Hour), Until: fxT0,
		Sites: []investigation.Site{
			{Name: "osaka", Gateway: "gw-osaka", Networks: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/24")}, Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.20")}},
			{Name: "hq", Gateway: "gw-hq", Networks: []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24")}, Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.10")}},
		},
		Suspects: []netip.Addr{netip.MustParseAddr("203.0.113.66")},
		Collections: []investigation.Collection{
			{Gateway: "gw-osaka", Site: "osaka", Sent: fxT0, Received: fxT0.Add(time.Millisecond), Result: osaka},
			{Gateway: "gw-dc", Site: "dc", Sent: fxT0, Received: fxT0.Add(3 * time.Second), Err: "agent unreachable or failed: connection refused"},
		}})
	s := tl.Summarise()
	s.Timeline, s.Export = "ev-timeline", "ev-export"
	return s
}

func TestIntrusionSectionSaysWhatTheInvestigationFound(t *testing.T) {
	m, _, _ := fixture(t)
	// The step as the executor stores it: Verify's details under verify.
	step := store.Step{Action: "investigate", State: store.StepSucceeded, FinishedAt: fxT0.Add(time.Minute),
		Result: js(t, map[string]any{"summary": "investigated 1 gateway(s)", "details": map[string]any{"verify": map[string]any{"investigation": intrusionSummary()}}})}
	loadIntrusion(&m, "run-9", step)
	if !m.Intrusion.Investigated || len(m.Intrusion.Summary.EntryPoint) == 0 {
		t.Fatalf("the step's summary was not read: %+v", m.Intrusion)
	}
	out := render(t, m)
	for _, tc := range []struct{ doc, want string }{
		{"en.md", "### Intrusion path and scope"},
		{"en.md", "first successful login as root from a new source 203.0.113.9, after 1 failed-login records from it"},
		{"en.md", "+  evil { remote_addrs = 203.0.113.9 }"},
		{"en.md", "into site hq"},
		{"en.md", "203.0.113.66"},
		{"en.md", "3.0\u00a0MiB (3100000)"},
		{"en.md", "nothing could be collected from gw-dc"},
		{"en.md", "```text"},
		{"en.md", "Investigation: the attacker most likely got in by logging in as root to gw-osaka from 203.0.113.9"},
		{"en.html", IntrusionColour},
		{"ja.md", "### 侵入経路と影響範囲"},
		{"ja.md", "新しい送信元 203.0.113.9 から root として初めてログインに成功（同じ送信元からのログイン失敗の記録 1 件の後）"},
		{"ja.md", "調査の結果：攻撃者は"},
		{"ja.md", "gw-dc からは何も収集できませんでした"},
		{"ja.html", "侵入経路と影響範囲"},
	} {
		if !strings.Contains(out[tc.doc], tc.want) {
			t.Errorf("%s lacks %q", tc.doc, tc.want)
		}
	}
	// The picture holds the key events, in order, the entry point drawn bold.
	d, err := build(m, LangEnglish)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Intrusion.Present || len(d.Intrusion.Rows) != len(m.Intrusion.Summary.Key) {
		t.Fatalf("picture %+v", d.Intrusion)
	}
	bold := 0
	for i, r := range d.Intrusion.Rows {
		if i > 0 && r.X < d.Intrusion.Rows[i-1].X {
			t.Errorf("row %d drawn before the one above it", i)
		}
		if r.Contained {
			bold++
		}
	}
	if bold == 0 {
		t.Error("no entry point drawn")
	}
	// The summary is plain JSON the API carries unchanged.
	if _, err := json.Marshal(m); err != nil {
		t.Fatal(err)
	}
}

func TestIntrusionSectionWithoutInvestigation(t *testing.T) {
	m, _, _ := fixture(t)
	loadIntrusion(&m, "run-9", store.Step{Action: "investigate", State: store.StepFailed, Error: "investigating gw-osaka: agent unreachable"})
	out := render(t, m)
	if !strings.Contains(out["en.md"], "The investigation did not complete") || !strings.Contains(out["ja.md"], "調査は完了していません") {
		t.Errorf("a failed investigation is not said:\n%s", out["en.md"])
	}
	if strings.Contains(out["en.md"], "Investigation: ") {
		t.Error("the management summary claims an investigation")
	}
}
