package capture

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/sensors"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock/clocktest"
)

// investigationRoot writes a gateway's file tree and state directory
// holding one intrusion, and returns the root, the state dir and the
// intrusion's times.
func investigationRoot(t *testing.T) (root, state string, at time.Time) {
	t.Helper()
	root, state = t.TempDir(), t.TempDir()
	at = time.Date(2026, 6, 23, 8, 0, 0, 0, time.UTC)
	old := at.Add(-48 * time.Hour)
	write := func(p, content string) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stamp := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	write("var/log/auth.log", strings.Join([]string{
		stamp(old) + " gw sshd[10]: Accepted publickey for admin from 192.0.2.5 port 4000 ssh2: ED25519 SHA256:x",
		stamp(at) + " gw sshd[11]: Failed password for root from 203.0.113.9 port 5000 ssh2",
		stamp(at.Add(time.Second)) + " gw sshd[11]: Failed password for root from 203.0.113.9 port 5001 ssh2",
		stamp(at.Add(2*time.Second)) + " gw sshd[12]: Accepted password for root from 203.0.113.9 port 5002 ssh2",
		stamp(at.Add(3*time.Second)) + " gw sudo:     root : TTY=pts/0 ; PWD=/root ; USER=root ; COMMAND=/usr/bin/vi /etc/swanctl/swanctl.conf",
		stamp(at.Add(4*time.Second)) + " gw charon: 09[IKE] IKE_SA hq-osaka[3] established between 192.0.2.1[hq]...192.0.2.2[osaka]",
		"not a log line",
	}, "\n")+"\n")
	write("var/log/wtmp", string(utmpFile(utmpFixture{typ: 7, pid: 12, line: "pts/0", user: "root", host: "203.0.113.9",
		sec: int32(at.Add(2 * time.Second).Unix()), addr: [16]byte{203, 0, 113, 9}})))
	write("var/log/btmp", string(utmpFile(utmpFixture{typ: 6, line: "ssh:notty", user: "root", host: "203.0.113.9", sec: int32(at.Unix())})))
	write("var/log/dpkg.log", at.Add(5*time.Second).In(time.Local).Format("2006-01-02 15:04:05")+" install netcat-openbsd:amd64 <none> 1.219-1\n"+
		old.In(time.Local).Format("2006-01-02 15:04:05")+" install vim:amd64 <none> 2:9.0\n")
	write("root/.bash_history", fmt.Sprintf("#%d\ncat /etc/swanctl/swanctl.conf\n#%d\nls\n", at.Add(6*time.Second).Unix(), old.Unix()))
	// The configuration watcher's history, as it writes it.
	hist := sensors.ConfigChange{At: at.Add(7 * time.Second), Path: "/etc/swanctl/swanctl.conf", Change: "modified",
		OldSHA256: "aa", NewSHA256: "bb", Summary: "/etc/swanctl/swanctl.conf was modified (+1 −0 lines)",
		Diff: []string{"--- a/etc/swanctl/swanctl.conf", "+++ b/etc/swanctl/swanctl.conf", "@@ -1 +1,2 @@", " connections {", "+  evil { remote_addrs = 203.0.113.9 }"}}
	b, _ := json.Marshal(hist)
	if err := os.MkdirAll(filepath.Join(sensors.StateDir(state), sensors.ConfigStateDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sensors.StateDir(state), sensors.ConfigStateDir, sensors.ConfigHistoryFile), append(b, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RecordKilledFlows(state, []wire.Flow{{Proto: "tcp", Src: "192.0.2.1", Dst: "198.51.100.66", SrcPort: 40000, DstPort: 443,
		OrigBytes: 3_100_000, ReplyBytes: 40_000, OrigPackets: 2100, ReplyPackets: 900, Accounted: true,
		Start: at.Add(8 * time.Second), SeenAt: at.Add(time.Minute)}}, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	return root, state, at
}

func TestInvestigateReadsTheWindow(t *testing.T) {
	root, state, at := investigationRoot(t)
	res, err := Investigate(t.Context(), Options{Root: root, StateDir: state, Clock: clocktest.NewFake(at.Add(time.Hour))},
		wire.InvestigateParams{Since: at.Add(-time.Hour), Until: at.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ action, actor, object, address string }
	got := map[key]wire.TimelineEvent{}
	for _, e := range res.Events {
		got[key{e.Action, e.Actor, e.Object, e.Address}] = e
		if e.Time.Before(at.Add(-time.Hour - investigateSlack)) {
			t.Errorf("an event before the window: %+v", e)
		}
	}
	for _, want := range []key{
		{wire.ActionLoginFailed, "root", "sshd", "203.0.113.9"},
		{wire.ActionLoginAccepted, "root", "sshd", "203.0.113.9"},
		{wire.ActionLoginAccepted, "root", "pts/0", "203.0.113.9"},   // wtmp
		{wire.ActionLoginFailed, "root", "ssh:notty", "203.0.113.9"}, // btmp
		{wire.ActionSudo, "root", "/usr/bin/vi /etc/swanctl/swanctl.conf", ""},
		{wire.ActionTunnel, "", "hq-osaka[3]", ""},
		{wire.ActionPackage, "", "netcat-openbsd:amd64", ""},
		{wire.ActionCommand, "root", "cat /etc/swanctl/swanctl.conf", ""},
		{wire.ActionConfigChanged, "", "/etc/swanctl/swanctl.conf", ""},
		{wire.ActionConnection, "", "tcp 192.0.2.1:40000 → 198.51.100.66:443", "198.51.100.66"},
	} {
		if _, ok := got[want]; !ok {
			t.Errorf("no event %+v among %d", want, len(res.Events))
		}
	}
	if e := got[key{wire.ActionConfigChanged, "", "/etc/swanctl/swanctl.conf", ""}]; !strings.Contains(e.Detail["diff"], "+  evil") {
		t.Errorf("the configuration change carries no diff: %+v", e)
	}
	if e := got[key{wire.ActionConnection, "", "tcp 192.0.2.1:40000 → 198.51.100.66:443", "198.51.100.66"}]; !e.Time.Equal(at.Add(8*time.Second)) || e.TimeApprox {
		t.Errorf("the connection is not placed at its start: %+v", e)
	}
	if len(res.Flows) != 1 || res.Flows[0].OrigBytes != 3_100_000 {
		t.Errorf("flows %+v, want the one the quarantine ended", res.Flows)
	}
	// The week-old login, package and command are outside the window.
	for _, e := range res.Events {
		if e.Address == "192.0.2.5" || strings.Contains(e.Object, "vim") || e.Object == "ls" {
			t.Errorf("an event from outside the window: %+v", e)
		}
	}
	// Every event names an artefact that holds its line, hashed.
	arts := map[string]wire.Artefact{}
	for _, a := range res.Artefacts {
		sum := sha256.Sum256(a.Content)
		if hex.EncodeToString(sum[:]) != a.SHA256 || int64(len(a.Content)) != a.Size {
			t.Errorf("artefact %s: hash or size wrong", a.Name)
		}
		arts[a.Name] = a
	}
	for _, e := range res.Events {
		a, ok := arts[e.Artefact]
		if !ok {
			t.Errorf("event %+v names no artefact", e)
			continue
		}
		if e.Source == wire.SourceLogFile {
			lines := strings.Split(string(a.Content), "\n")
			if e.Line < 1 || e.Line > len(lines) || lines[e.Line-1] != e.Message {
				t.Errorf("event %q does not point at its line %d of %s", e.Message, e.Line, e.Artefact)
			}
		}
	}
	// What is missing is said, not failed on.
	gaps := fmt.Sprint(res.Gaps)
	for _, want := range []string{"lastlog", "journald", "integrity manifest"} {
		if !strings.Contains(gaps, want) {
			t.Errorf("gaps %s do not name %s", gaps, want)
		}
	}
	if !res.AgentTime.Equal(at.Add(time.Hour)) {
		t.Errorf("agent time %s", res.AgentTime)
	}
}

func TestInvestigateRefusesAnEmptyWindow(t *testing.T) {
	now := time.Now()
	if _, err := Investigate(t.Context(), Options{Root: t.TempDir()}, wire.InvestigateParams{Since: now, Until: now.Add(-time.Hour)}); err == nil {
		t.Fatal("a window ending before it starts was accepted")
	}
}

func TestParseLogLineTimes(t *testing.T) {
	ref := time.Date(2026, 1, 2, 3, 0, 0, 0, time.Local)
	tests := map[string]struct {
		line   string
		want   time.Time
		approx bool
	}{
		"rfc3339":                {"2026-01-02T02:59:00.5+00:00 gw sshd[1]: x", time.Date(2026, 1, 2, 2, 59, 0, 5e8, time.UTC), false},
		"traditional this year":  {"Jan  2 02:00:00 gw sshd[1]: x", time.Date(2026, 1, 2, 2, 0, 0, 0, time.Local), true},
		"traditional last year":  {"Dec 31 23:00:00 gw sshd[1]: x", time.Date(2025, 12, 31, 23, 0, 0, 0, time.Local), true},
		"traditional a day late": {"Jan  3 02:00:00 gw sshd[1]: x", time.Date(2026, 1, 3, 2, 0, 0, 0, time.Local), true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			l, ok := parseLogLine(tt.line, ref)
			if !ok || !l.at.Equal(tt.want) || l.approx != tt.approx || l.ident != "sshd" {
				t.Errorf("got %+v %v, want %s approx %v", l, ok, tt.want, tt.approx)
			}
		})
	}
}
