package investigation

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/testsupport"
)

var (
	t0       = time.Date(2026, 6, 23, 8, 0, 0, 0, time.UTC)
	attacker = "203.0.113.9"
	c2       = "198.51.100.66"
	hqAddr   = "192.0.2.1"
	osakaLAN = "10.2.0.20"
)

func labSites() []Site {
	return []Site{
		{Name: "hq", Gateway: "gw-hq", Networks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}, Addresses: []netip.Addr{netip.MustParseAddr(hqAddr)}},
		{Name: "osaka", Gateway: "gw-osaka", Networks: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")}, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.2")}},
		{Name: "dc", Gateway: "gw-dc", Networks: []netip.Prefix{netip.MustParsePrefix("10.3.0.0/24")}, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.3")}},
	}
}

func ev(at time.Duration, action, actor, object, addr string, detail map[string]string) wire.TimelineEvent {
	return wire.TimelineEvent{Time: t0.Add(at), Source: wire.SourceLogFile, Action: action, Actor: actor, Object: object, Address: addr,
		Message: action + " " + object, Artefact: "log_var_log_auth.log", Line: 1, Detail: detail}
}

// intrusion is the scenario of issue #16's acceptance, as three agents
// would answer: hq compromised (its clock right), osaka's clock 2 s ahead,
// dc's agent down.
func intrusion() Input {
	hq := wire.InvestigateResult{Started: t0.Add(time.Hour), AgentTime: t0.Add(time.Hour + time.Second), Addresses: []string{hqAddr, "10.1.0.1"},
		Events: []wire.TimelineEvent{
			ev(-time.Hour, wire.ActionLoginAccepted, "admin", "sshd", "192.0.2.100", nil), // management
			ev(0, wire.ActionLoginFailed, "root", "sshd", attacker, nil),
			ev(time.Second, wire.ActionLoginFailed, "root", "sshd", attacker, nil),
			ev(2*time.Second, wire.ActionLoginAccepted, "root", "sshd", attacker, nil),
			ev(10*time.Second, wire.ActionConfigChanged, "", "/etc/swanctl/swanctl.conf", "", map[string]string{"diff": "+evil"}),
			ev(20*time.Second, wire.ActionConnection, "", "tcp 192.0.2.1:40000 → 10.2.0.20:22", osakaLAN, map[string]string{"src": hqAddr, "dst": osakaLAN}),
			ev(30*time.Second, wire.ActionConnection, "", "tcp 192.0.2.1:40001 → 198.51.100.66:443", c2, map[string]string{"src": hqAddr, "dst": c2}),
		},
		Flows: []wire.Flow{
			{Proto: "tcp", Src: hqAddr, Dst: c2, SrcPort: 40001, DstPort: 443, OrigBytes: 3_100_000, Accounted: true, OrigPackets: 2000, Start: t0.Add(30 * time.Second), SeenAt: t0.Add(40 * time.Second)},
			// The same connection in the table now, counted earlier.
			{Proto: "tcp", Src: hqAddr, Dst: c2, SrcPort: 40001, DstPort: 443, OrigBytes: 3_000_000, Accounted: true, OrigPackets: 1900, Start: t0.Add(30 * time.Second), SeenAt: t0.Add(35 * time.Second)},
			// Before the window.
			{Proto: "udp", Src: hqAddr, Dst: c2, SrcPort: 5000, DstPort: 53, OrigBytes: 120, Accounted: true, OrigPackets: 1, Start: t0.Add(-90 * time.Minute), SeenAt: t0.Add(-90 * time.Minute)},
			// Inbound: not a transfer out.
			{Proto: "tcp", Src: attacker, Dst: hqAddr, SrcPort: 5002, DstPort: 22, OrigBytes: 9000, Accounted: true, OrigPackets: 9, Start: t0.Add(2 * time.Second), SeenAt: t0.Add(40 * time.Second)},
		},
		Gaps: []wire.Gap{{What: "lastlog", Why: "no /var/log/lastlog"}},
	}
	osakaAhead := 2 * time.Second
	osaka := wire.InvestigateResult{Started: t0.Add(time.Hour + osakaAhead), AgentTime: t0.Add(time.Hour + osakaAhead + time.Second),
		Events: []wire.TimelineEvent{ev(20*time.Second+osakaAhead+5*time.Millisecond, wire.ActionConnection, "", "tcp 192.0.2.1:40000 → 10.2.0.20:22", osakaLAN,
			map[string]string{"src": hqAddr, "dst": osakaLAN})}}
	return Input{
		Incident: "inc-1", Gateway: "gw-hq", Since: t0.Add(-time.Hour), Until: t0.Add(time.Hour), Sites: labSites(),
		Management: []netip.Prefix{netip.MustParsePrefix("192.0.2.96/28")}, Suspects: []netip.Addr{netip.MustParseAddr(c2)},
		Collections: []Collection{
			{Gateway: "gw-hq", Site: "hq", Sent: t0.Add(time.Hour - 10*time.Millisecond), Received: t0.Add(time.Hour + time.Second + 10*time.Millisecond), Result: hq,
				Evidence: map[string]string{"log_var_log_auth.log": "ev-1"}},
			{Gateway: "gw-osaka", Site: "osaka", Sent: t0.Add(time.Hour - 4*time.Millisecond), Received: t0.Add(time.Hour + time.Second + 4*time.Millisecond), Result: osaka},
			{Gateway: "gw-dc", Site: "dc", Sent: t0.Add(time.Hour), Received: t0.Add(time.Hour + 3*time.Second), Err: "agent unreachable: connection refused"},
		},
	}
}

func TestBuildFindsTheIntrusionPath(t *testing.T) {
	tl := Build(intrusion())

	// Clock offsets, measured and corrected.
	if len(tl.Offsets) != 2 {
		t.Fatalf("offsets %+v, want hq and osaka", tl.Offsets)
	}
	for _, o := range tl.Offsets {
		want := map[string]time.Duration{"gw-hq": 0, "gw-osaka": 2 * time.Second}[o.Gateway]
		if o.Offset != want || o.Uncertainty > 10*time.Millisecond {
			t.Errorf("offset of %s: %s ± %s, want %s", o.Gateway, o.Offset, o.Uncertainty, want)
		}
	}
	for _, e := range tl.Events {
		if e.Host == "gw-osaka" && !e.Time.Equal(t0.Add(20*time.Second+5*time.Millisecond)) {
			t.Errorf("osaka's event not corrected for its clock: %s (agent %s)", e.Time, e.AgentTime)
		}
	}
	if !slices.IsSortedFunc(tl.Events, func(a, b Event) int { return a.Time.Compare(b.Time) }) {
		t.Error("events out of order")
	}

	// The entry point: the attacker's login, then the first change, then
	// the first new destination, in that order.
	if len(tl.EntryPoint) != 3 {
		t.Fatalf("entry point candidates %+v", tl.EntryPoint)
	}
	login, change, dest := tl.Events[tl.EntryPoint[0].Event], tl.Events[tl.EntryPoint[1].Event], tl.Events[tl.EntryPoint[2].Event]
	if login.Action != wire.ActionLoginAccepted || login.Address != attacker || !strings.Contains(tl.EntryPoint[0].Reason, "after 2 failed-login records") {
		t.Errorf("first candidate %+v (%s), want the attacker's login after 2 failures", login, tl.EntryPoint[0].Reason)
	}
	if change.Action != wire.ActionConfigChanged || change.Detail["diff"] != "+evil" {
		t.Errorf("second candidate %+v, want the configuration change with its diff", change)
	}
	if dest.Address != c2 || !slices.Contains(dest.Marks, MarkSuspect) || !slices.Contains(dest.Marks, MarkNewDestination) {
		t.Errorf("third candidate %+v, want the C2 connection", dest)
	}
	if login.Evidence != "ev-1" {
		t.Errorf("the login event does not name its evidence: %+v", login)
	}

	// Lateral movement into osaka, seen on both gateways; osaka's LAN host reached.
	if len(tl.Lateral) != 2 {
		t.Fatalf("lateral %+v, want the connection as hq and osaka saw it", tl.Lateral)
	}
	for _, c := range tl.Lateral {
		if e := tl.Events[c.Event]; e.Address != osakaLAN || !strings.Contains(c.Reason, "into site osaka") {
			t.Errorf("lateral %+v: %+v", c, e)
		}
	}
	if len(tl.Reached) != 1 || tl.Reached[0].Site != "osaka" || tl.Reached[0].Host != osakaLAN {
		t.Errorf("reached %+v", tl.Reached)
	}
	if !(tl.Events[tl.EntryPoint[0].Event].Time.Before(tl.Events[tl.Lateral[0].Event].Time) && tl.Events[tl.Lateral[0].Event].Time.Before(dest.Time)) {
		t.Error("login, lateral movement and the transfer are not in order")
	}

	// What left: towards C2, counted once at its largest count; the
	// inbound login is no transfer; the DNS query an hour and a half
	// before is the baseline.
	if len(tl.Transfers) != 1 {
		t.Fatalf("transfers %+v", tl.Transfers)
	}
	if x := tl.Transfers[0]; x.Destination != c2 || x.Bytes != 3_100_000 || x.Before != 120 || !x.Suspect || x.Flows != 1 {
		t.Errorf("transfer %+v", x)
	}

	// dc's agent is down: a gap, not a failure.
	if !slices.ContainsFunc(tl.Gaps, func(g Gap) bool { return g.Gateway == "gw-dc" && g.Unreachable && strings.Contains(g.Why, "refused") }) {
		t.Errorf("gaps %+v do not name dc's agent", tl.Gaps)
	}
	if !slices.Equal(tl.Collected, []string{"gw-hq", "gw-osaka"}) {
		t.Errorf("collected %v", tl.Collected)
	}
}

func TestBuildWithoutAnything(t *testing.T) {
	in := intrusion()
	in.Collections = in.Collections[2:]
	tl := Build(in)
	if len(tl.Events) != 0 || len(tl.EntryPoint) != 0 || len(tl.Transfers) != 0 || len(tl.Gaps) != 1 {
		t.Errorf("only an unreachable agent: %+v", tl)
	}
}

func TestMeasureOffset(t *testing.T) {
	tests := map[string]struct {
		t0, a1, a2, t3   time.Time
		offset, uncertty time.Duration
	}{
		"same clock, slow work": {t0, t0.Add(time.Millisecond), t0.Add(5 * time.Second), t0.Add(5*time.Second + 2*time.Millisecond), -500 * time.Microsecond, 1500 * time.Microsecond},
		"agent a minute ahead":  {t0, t0.Add(time.Minute + time.Millisecond), t0.Add(time.Minute + 2*time.Millisecond), t0.Add(3 * time.Millisecond), time.Minute, time.Millisecond},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			off, unc := MeasureOffset(tt.t0, tt.a1, tt.a2, tt.t3)
			if off != tt.offset || unc != tt.uncertty {
				t.Errorf("got %s ± %s, want %s ± %s", off, unc, tt.offset, tt.uncertty)
			}
		})
	}
}

func TestTimesketchJSONLValidates(t *testing.T) {
	tl := Build(intrusion())
	out, err := TimesketchJSONL(tl)
	if err != nil {
		t.Fatal(err)
	}
	if n := testsupport.ValidateJSONLines(t, "testdata/timesketch-event.schema.json", out); n != len(tl.Events) {
		t.Errorf("%d lines, want %d", n, len(tl.Events))
	}
	for i, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		if _, err := time.Parse(time.RFC3339Nano, rec["datetime"].(string)); err != nil {
			t.Errorf("line %d: datetime %v", i+1, err)
		}
	}
	if !bytes.Contains(out, []byte(`"marks":"entry_point"`)) {
		t.Errorf("no entry point marked in the export:\n%s", out)
	}
}
