package sensors

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock/clocktest"
)

// authMonday10 is 10:00 on a Monday in Tokyo, within default business
// hours; authSunday03 is 03:00 on the Sunday before, outside them.
var (
	authTokyo    = mustLoadLocation("Asia/Tokyo")
	authMonday10 = time.Date(2025, 3, 3, 10, 0, 0, 0, authTokyo)
	authSunday03 = time.Date(2025, 3, 2, 3, 0, 0, 0, authTokyo)
)

func mustLoadLocation(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

// authCase is one fixture line and what it should say.
type authCase struct {
	Line   string
	Kind   string `json:"kind"`
	User   string `json:"user"`
	From   string `json:"from"`
	Method string `json:"method"`
}

// authReadCases reads a testdata cases file: "# want: {json}" then the line.
func authReadCases(t *testing.T, name string) []authCase {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []authCase
	var want *authCase
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# want: "):
			want = &authCase{}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "# want: ")), want); err != nil {
				t.Fatalf("%s: bad want %q: %v", name, line, err)
			}
		case line == "" || strings.HasPrefix(line, "#"):
		case want == nil:
			t.Fatalf("%s: line without a want: %q", name, line)
		default:
			want.Line = line
			cases = append(cases, *want)
			want = nil
		}
	}
	if len(cases) == 0 {
		t.Fatalf("%s: no cases", name)
	}
	return cases
}

func authSettingsFor(t *testing.T, cfg AuthConfig) authSettings {
	t.Helper()
	s, err := cfg.WithDefaults().compile()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var authKindNames = map[authKind]string{
	authNone: "none", authFailure: "failure", authFailedSession: "session", authSuccess: "success", ikePacket: "packet",
}

func TestParseSSHDFixtures(t *testing.T) {
	authCheckFixtures(t, "auth_sshd_cases.txt", "sshd", parseSSHD)
}

func TestParseCharonFixtures(t *testing.T) {
	authCheckFixtures(t, "auth_charon_cases.txt", "charon", parseCharon)
}

// authCheckFixtures reads the syslog lines of the fixture name, each as
// program's, and checks what parse makes of their messages.
func authCheckFixtures(t *testing.T, name, program string, parse func(msg string) authEvent) {
	t.Helper()
	set := authSettingsFor(t, AuthConfig{})
	for _, tc := range authReadCases(t, name) {
		t.Run(tc.Line, func(t *testing.T) {
			e, ok := parseSyslogLine(tc.Line, set)
			if !ok {
				t.Fatalf("line not recognised as %s's", program)
			}
			checkAuthEvent(t, parse(e.Message), tc)
		})
	}
}

func checkAuthEvent(t *testing.T, ev authEvent, tc authCase) {
	t.Helper()
	if got := authKindNames[ev.Kind]; got != tc.Kind {
		t.Fatalf("kind = %s, want %s (event %+v)", got, tc.Kind, ev)
	}
	if tc.Kind == "none" {
		return
	}
	if ev.User != tc.User {
		t.Errorf("user = %q, want %q", ev.User, tc.User)
	}
	if tc.From != "" && ev.sourceText() != tc.From {
		t.Errorf("from = %q, want %q", ev.sourceText(), tc.From)
	}
	if ev.Method != tc.Method {
		t.Errorf("method = %q, want %q", ev.Method, tc.Method)
	}
}

func TestParseSyslogLinePrefixes(t *testing.T) {
	set := authSettingsFor(t, AuthConfig{})
	tests := map[string]struct {
		line                      string
		ident, pid, thread, ikesa string
		msg                       string
		repeat                    int
	}{
		"charon syslog with IKE SA": {
			line:  "Jun 23 08:16:10 charon[3789]: 09[NET] <PEER|1> received packet: from 192.168.1.2[4500] to 192.168.0.1[4500] (140 bytes)",
			ident: "charon", pid: "3789", thread: "09", ikesa: "1",
			msg: "received packet: from 192.168.1.2[4500] to 192.168.0.1[4500] (140 bytes)",
		},
		"charon unnamed IKE SA": {
			line:  "Jun 23 07:36:33 charon[2440]: 01[IKE] <1> received proposals unacceptable",
			ident: "charon", pid: "2440", thread: "01", ikesa: "1", msg: "received proposals unacceptable",
		},
		"charon's own file log": {
			line:  "Mar 14 10:02:29 07[IKE] tried 1 shared key for 'moon' - 'carol', but MAC mismatched",
			ident: "charon", thread: "07", msg: "tried 1 shared key for 'moon' - 'carol', but MAC mismatched",
		},
		"rsyslog folded repeats": {
			line:  "Dec 10 07:13:56 LabSZ sshd[24227]: message repeated 5 times: [ Failed password for root from 5.36.59.76 port 42393 ssh2]",
			ident: "sshd", pid: "24227", msg: "Failed password for root from 5.36.59.76 port 42393 ssh2", repeat: 5,
		},
		"host name looking like a tag is skipped": {
			line:  "Mar  1 10:00:00 gw-hq sshd[1]: Accepted publickey for root from 192.0.2.1 port 2 ssh2",
			ident: "sshd", pid: "1", msg: "Accepted publickey for root from 192.0.2.1 port 2 ssh2",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e, ok := parseSyslogLine(tc.line, set)
			if !ok {
				t.Fatal("not recognised")
			}
			got := [...]string{e.Ident, e.PID, e.Thread, e.IKESA, e.Message}
			want := [...]string{tc.ident, tc.pid, tc.thread, tc.ikesa, tc.msg}
			if got != want || e.Repeat != tc.repeat {
				t.Errorf("entry = %q repeat %d, want %q repeat %d", got, e.Repeat, want, tc.repeat)
			}
		})
	}
	for _, line := range []string{
		"Mar  1 10:00:00 gw-hq systemd[1]: Started session-42.scope.",
		"Mar  1 10:00:00 gw-hq CRON[811]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
		"",
	} {
		if e, ok := parseSyslogLine(line, set); ok {
			t.Errorf("%q read as %+v, want it skipped", line, e)
		}
	}
}

// authDetect feeds syslog lines to a detector at the times given (one per
// line, or the last repeated) and returns the findings.
func authDetect(t *testing.T, d *authDetector, set authSettings, at []time.Time, lines ...string) []wire.Finding {
	t.Helper()
	var out []wire.Finding
	for i, line := range lines {
		e, ok := parseSyslogLine(line, set)
		if !ok {
			t.Fatalf("fixture line not recognised: %q", line)
		}
		out = append(out, d.handle(e, at[min(i, len(at)-1)])...)
	}
	return out
}

// authLearned is a fresh learned state opened an hour before authMonday10.
func authLearned(t *testing.T, learning bool) *Learned {
	t.Helper()
	return trafficLearned(t, clocktest.NewFake(authMonday10.Add(-time.Hour)), learning)
}

// authFailedFrom is the fail2ban fixture's failed password line, from pid
// and port varied per attempt as sshd would log separate connections.
func authFailedFrom(src string, i int) string {
	return fmt.Sprintf("Feb 25 14:34:10 belka sshd[%d]: Failed password for invalid user ROOT from %s port %d ssh2", 31602+i, src, 50273+i)
}

func authEvery(start time.Time, step time.Duration, n int) []time.Time {
	var at []time.Time
	for i := range n {
		at = append(at, start.Add(time.Duration(i)*step))
	}
	return at
}

func TestAuthFailureBurst(t *testing.T) {
	const attacker = "194.117.26.69"
	lines := func(n int) []string {
		var ls []string
		for i := range n {
			ls = append(ls, authFailedFrom(attacker, i))
		}
		return ls
	}
	tests := map[string]struct {
		cfg    AuthConfig
		lines  []string
		at     []time.Time
		bursts int
	}{
		"ten within a minute":         {lines: lines(10), at: authEvery(authMonday10, 5*time.Second, 10), bursts: 1},
		"nine within a minute":        {lines: lines(9), at: authEvery(authMonday10, time.Second, 9), bursts: 0},
		"ten spread over two minutes": {lines: lines(10), at: authEvery(authMonday10, 13*time.Second, 10), bursts: 0},
		"once per source per window":  {lines: lines(25), at: authEvery(authMonday10, time.Second, 25), bursts: 1},
		"again after the window":      {lines: lines(30), at: authEvery(authMonday10, 3*time.Second, 30), bursts: 2},
		"configured threshold":        {cfg: AuthConfig{FailureThreshold: 3, FailureWindow: 10 * time.Second}, lines: lines(3), at: authEvery(authMonday10, 4*time.Second, 3), bursts: 1},
		"configured window":           {cfg: AuthConfig{FailureThreshold: 3, FailureWindow: 10 * time.Second}, lines: lines(3), at: authEvery(authMonday10, 5*time.Second, 3), bursts: 0},
		"sources counted apart": {
			lines: append(lines(5), func() []string {
				var ls []string
				for i := range 5 {
					ls = append(ls, authFailedFrom("198.51.100.9", 100+i))
				}
				return ls
			}()...),
			at: authEvery(authMonday10, time.Second, 10), bursts: 0,
		},
		"syslog folded repeats count": {
			lines: []string{
				"Dec 10 07:13:43 LabSZ sshd[24227]: Failed password for root from 5.36.59.76 port 42393 ssh2",
				"Dec 10 07:13:56 LabSZ sshd[24227]: message repeated 9 times: [ Failed password for root from 5.36.59.76 port 42393 ssh2]",
			},
			at: authEvery(authMonday10, time.Second, 2), bursts: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			set := authSettingsFor(t, tc.cfg)
			d := newAuthDetector(set, authLearned(t, false))
			got := authDetect(t, d, set, tc.at, tc.lines...)
			if len(got) != tc.bursts {
				t.Fatalf("%d findings, want %d: %+v", len(got), tc.bursts, got)
			}
			for _, f := range got {
				if f.Kind != KindAuthFailureBurst || f.Severity != SeverityHigh || f.Sensor != "auth" {
					t.Errorf("finding %+v is not a high auth_failure_burst of the auth sensor", f)
				}
				if len(f.IPs) != 1 || f.Key != "auth_failure_burst/sshd/"+f.IPs[0] {
					t.Errorf("IPs %v, key %q: want the one source and its key", f.IPs, f.Key)
				}
				if len(f.Evidence) == 0 || !strings.Contains(f.Evidence[len(f.Evidence)-1], "Failed password") {
					t.Errorf("evidence %q does not end with the failed lines", f.Evidence)
				}
			}
			if tc.bursts > 0 && name == "ten within a minute" {
				f := got[0]
				if f.IPs[0] != attacker || len(f.Evidence) != 10 || f.Labels["users"] != "ROOT" || f.Labels["failures"] != "10" {
					t.Errorf("burst = %+v, want the attacker, its ten lines, user ROOT", f)
				}
				if !f.ObservedAt.Equal(authMonday10.Add(45 * time.Second)) {
					t.Errorf("ObservedAt = %v, want the tenth failure's time", f.ObservedAt)
				}
			}
		})
	}
}

func TestSSHSessionCountsOnce(t *testing.T) {
	// One connection: the invalid user, three failed passwords, the close.
	session := []string{
		"Mar 19 16:47:48 test sshd[5672]: Invalid user admin from 192.0.2.117 port 44004",
		"Mar 19 16:47:49 test sshd[5672]: Failed password for invalid user admin from 192.0.2.117 port 44004 ssh2",
		"Mar 19 16:47:50 test sshd[5672]: Failed password for invalid user admin from 192.0.2.117 port 44004 ssh2",
		"Mar 19 16:47:51 test sshd[5672]: Failed password for invalid user admin from 192.0.2.117 port 44004 ssh2",
		"Mar 19 16:47:52 test sshd[5672]: error: maximum authentication attempts exceeded for invalid user admin from 192.0.2.117 port 44004 ssh2 [preauth]",
		"Mar 19 16:47:52 test sshd[5672]: Connection closed by invalid user admin 192.0.2.117 port 44004 [preauth]",
	}
	// Connections that say only that they failed (keys offered at the
	// VERBOSE level, then a close) count once each.
	closes := []string{
		"Jul 17 23:03:05 srv sshd[1296]: Connection closed by authenticating user root 192.0.2.10 port 46038 [preauth]",
		"Jul 17 23:03:06 srv sshd[1297]: Connection closed by authenticating user root 192.0.2.10 port 46039 [preauth]",
		"Jul 17 23:03:07 srv sshd[1298]: Connection closed by authenticating user root 192.0.2.10 port 46040 [preauth]",
	}
	tests := map[string]struct {
		lines     []string
		threshold int
		bursts    int
	}{
		"three attempts reach three":  {lines: session, threshold: 3, bursts: 1},
		"three attempts are not four": {lines: session, threshold: 4, bursts: 0},
		"three closes reach three":    {lines: closes, threshold: 3, bursts: 1},
		"three closes are not four":   {lines: closes, threshold: 4, bursts: 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			set := authSettingsFor(t, AuthConfig{FailureThreshold: tc.threshold})
			d := newAuthDetector(set, authLearned(t, false))
			got := authDetect(t, d, set, authEvery(authMonday10, time.Second, len(tc.lines)), tc.lines...)
			if len(got) != tc.bursts {
				t.Fatalf("%d bursts, want %d: %+v", len(got), tc.bursts, got)
			}
		})
	}
}

func TestAdminLogins(t *testing.T) {
	const outside = "203.0.113.5"
	accepted := func(user, from string) string {
		return fmt.Sprintf("Nov 28 09:16:03 srv sshd[32307]: Accepted publickey for %s from %s port 57904 ssh2: ED25519 SHA256:v3dpapGleDaUKf4V1vKyR9ZyUgjaJAmoCTcb2PLljI", user, from)
	}
	base := AuthConfig{TimeZone: "Asia/Tokyo", AdminUsers: []string{"alice"}, ManagementNetworks: []string{"10.10.0.0/16"}}
	tests := map[string]struct {
		cfg      AuthConfig
		learning bool
		lines    []string
		at       time.Time
		want     []string // kinds, in order
	}{
		"root at 03:00 Sunday site time": {lines: []string{accepted("root", "10.10.1.5")}, at: authSunday03, want: []string{KindOffHoursAdminLogin}},
		"root at 10:00 Monday":           {lines: []string{accepted("root", "10.10.1.5")}, at: authMonday10},
		"configured admin off hours":     {lines: []string{accepted("alice", "10.10.1.5")}, at: authSunday03, want: []string{KindOffHoursAdminLogin}},
		"other user off hours":           {lines: []string{accepted("git", "10.10.1.5")}, at: authSunday03},
		"Saturday is not a work day":     {lines: []string{accepted("root", "10.10.1.5")}, at: authMonday10.AddDate(0, 0, -2), want: []string{KindOffHoursAdminLogin}},
		"09:00 opens, 18:00 closes": {
			lines: []string{accepted("root", "10.10.1.5")},
			at:    time.Date(2025, 3, 3, 18, 0, 0, 0, authTokyo), want: []string{KindOffHoursAdminLogin},
		},
		"same instant in UTC is judged in the site's zone": {
			lines: []string{accepted("root", "10.10.1.5")},
			at:    authSunday03.UTC(), want: []string{KindOffHoursAdminLogin},
		},
		"night shift covers 03:00": {
			cfg:   AuthConfig{BusinessHours: AuthBusinessHours{Start: "22:00", End: "06:00", Days: []string{"sat"}}},
			lines: []string{accepted("root", "10.10.1.5")}, at: authSunday03,
		},
		"new outside source": {lines: []string{accepted("root", outside)}, at: authMonday10, want: []string{KindNewAdminSource}},
		"new source reported once": {
			lines: []string{accepted("root", outside), accepted("alice", outside)}, at: authMonday10,
			want: []string{KindNewAdminSource},
		},
		"management network is not new":    {lines: []string{accepted("root", "10.10.200.1")}, at: authMonday10},
		"learning learns, does not report": {learning: true, lines: []string{accepted("root", outside)}, at: authMonday10},
		"off hours and new at once": {
			lines: []string{accepted("root", outside)}, at: authSunday03.AddDate(0, 0, 7),
			want: []string{KindOffHoursAdminLogin, KindNewAdminSource},
		},
		"other user's new source is not watched": {lines: []string{accepted("git", outside)}, at: authMonday10},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := base
			if tc.cfg.BusinessHours.Start != "" {
				cfg.BusinessHours = tc.cfg.BusinessHours
			}
			set := authSettingsFor(t, cfg)
			learned := authLearned(t, tc.learning)
			d := newAuthDetector(set, learned)
			got := authDetect(t, d, set, []time.Time{tc.at}, tc.lines...)
			var kinds []string
			for _, f := range got {
				kinds = append(kinds, f.Kind)
				if f.Severity != SeverityHigh || len(f.Evidence) != 1 || !strings.Contains(f.Evidence[0], "Accepted publickey") {
					t.Errorf("finding %+v: want high, with the accepted line as evidence", f)
				}
				if !strings.HasPrefix(f.Key, f.Kind+"/sshd/") {
					t.Errorf("key %q does not name the kind and sshd", f.Key)
				}
			}
			if !slices.Equal(kinds, tc.want) {
				t.Fatalf("kinds = %v, want %v", kinds, tc.want)
			}
			if tc.learning && !learned.AdminSources().Known(netip.MustParseAddr(outside)) {
				t.Error("the source seen while learning was not learned")
			}
		})
	}
}

func TestOffHoursFindingSaysWhen(t *testing.T) {
	set := authSettingsFor(t, AuthConfig{TimeZone: "Asia/Tokyo"})
	d := newAuthDetector(set, authLearned(t, true))
	got := authDetect(t, d, set, []time.Time{authSunday03.UTC()},
		"Nov 28 09:16:03 srv sshd[32307]: Accepted password for root from 192.0.2.113 port 52100 ssh2")
	if len(got) != 1 {
		t.Fatalf("findings %+v, want one", got)
	}
	f := got[0]
	if f.Labels["local_time"] != "2025-03-02T03:00:00+09:00" || f.Labels["time_zone"] != "Asia/Tokyo" || f.Labels["user"] != "root" {
		t.Errorf("labels %v, want the login's local time in Asia/Tokyo and the user", f.Labels)
	}
	if !strings.Contains(f.Summary, "Sun 03:00") || !slices.Equal(f.IPs, []string{"192.0.2.113"}) {
		t.Errorf("summary %q / IPs %v", f.Summary, f.IPs)
	}
}

func TestCharonFailures(t *testing.T) {
	readLog := func(name string) []string {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	tests := map[string]struct {
		lines     []string
		threshold int
		wantIPs   [][]string // per burst
	}{
		"a successful exchange fails nothing": {lines: readLog("auth_charon_vyos_ok.log"), threshold: 1},
		"the peer refused us": {
			lines: readLog("auth_charon_vyos_initiator_fail.log"), threshold: 1,
			wantIPs: [][]string{{"192.168.1.2"}},
		},
		// charon and charon-systemd both log the failure: one failure.
		"logged twice, counted once": {lines: readLog("auth_charon_vyos_initiator_fail.log"), threshold: 2},
		"no packet told the address: the identity is the source": {
			lines:     []string{"Mar 14 10:02:29 07[IKE] tried 1 shared key for 'moon' - 'carol', but MAC mismatched"},
			threshold: 1,
			wantIPs:   [][]string{nil},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			set := authSettingsFor(t, AuthConfig{FailureThreshold: tc.threshold})
			d := newAuthDetector(set, authLearned(t, false))
			got := authDetect(t, d, set, []time.Time{authMonday10}, tc.lines...)
			if len(got) != len(tc.wantIPs) {
				t.Fatalf("%d bursts, want %d: %+v", len(got), len(tc.wantIPs), got)
			}
			for i, f := range got {
				if !slices.Equal(f.IPs, tc.wantIPs[i]) || f.Labels["service"] != "ike" {
					t.Errorf("burst %d: IPs %v service %q, want %v ike", i, f.IPs, f.Labels["service"], tc.wantIPs[i])
				}
				if f.IPs == nil && (f.Labels["source"] != "id:carol" || f.Key != "auth_failure_burst/ike/id:carol") {
					t.Errorf("burst without address: source %q key %q, want the peer identity", f.Labels["source"], f.Key)
				}
			}
		})
	}
	t.Run("two failures on the same SA count twice", func(t *testing.T) {
		set := authSettingsFor(t, AuthConfig{FailureThreshold: 2})
		d := newAuthDetector(set, authLearned(t, false))
		fail := readLog("auth_charon_vyos_initiator_fail.log")
		got := authDetect(t, d, set, []time.Time{authMonday10, authMonday10, authMonday10, authMonday10, authMonday10, authMonday10,
			authMonday10.Add(5 * time.Second)}, append(fail, fail[4])...)
		if len(got) != 1 {
			t.Fatalf("%d bursts, want 1 (the repeat 5s later is a second failure)", len(got))
		}
	})
}

// The lab captures are whole charon logs of a real strongSwan 5.9.8 pair:
// a tunnel established, then the initiator signing with a wrong PSK. Only
// that last attempt fails, once at each end, from the other end's address.
func TestCharonLabCaptures(t *testing.T) {
	tests := map[string]struct {
		file, wantIP, wantUser string
	}{
		"responder: MAC mismatched":             {file: "auth_charon_lab_responder.log", wantIP: "198.18.0.10", wantUser: "hq.gw.authcap17.test"},
		"initiator: AUTHENTICATION_FAILED back": {file: "auth_charon_lab_initiator.log", wantIP: "198.18.0.11"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			set := authSettingsFor(t, AuthConfig{FailureThreshold: 1})
			d := newAuthDetector(set, authLearned(t, false))
			var got []wire.Finding
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				if e, ok := parseSyslogLine(line, set); ok {
					got = append(got, d.handle(e, authMonday10)...)
				}
			}
			if len(got) != 1 {
				t.Fatalf("%d bursts, want 1: %+v", len(got), got)
			}
			f := got[0]
			if !slices.Equal(f.IPs, []string{tc.wantIP}) || f.Labels["users"] != tc.wantUser || f.Key != "auth_failure_burst/ike/"+tc.wantIP {
				t.Errorf("burst IPs %v users %q key %q; want %s, %q", f.IPs, f.Labels["users"], f.Key, tc.wantIP, tc.wantUser)
			}
			if len(f.Evidence) != 1 || !strings.Contains(f.Evidence[0], "16:00:48") {
				t.Errorf("evidence %q, want the one failure line", f.Evidence)
			}
		})
	}
}

func TestAuthConfigValidate(t *testing.T) {
	tests := map[string]struct {
		cfg  AuthConfig
		want string // "" = valid
	}{
		"defaults":            {},
		"files without files": {cfg: AuthConfig{Source: "files"}, want: "sensors.auth.files"},
		"unknown source":      {cfg: AuthConfig{Source: "syslog"}, want: "sensors.auth.source"},
		"bad zone":            {cfg: AuthConfig{TimeZone: "Mars/Olympus"}, want: "sensors.auth.time_zone"},
		"bad start":           {cfg: AuthConfig{BusinessHours: AuthBusinessHours{Start: "9am", End: "18:00"}}, want: "sensors.auth.business_hours.start"},
		"bad day":             {cfg: AuthConfig{BusinessHours: AuthBusinessHours{Days: []string{"monday"}}}, want: "sensors.auth.business_hours.days"},
		"negative threshold":  {cfg: AuthConfig{FailureThreshold: -1}, want: "sensors.auth.failure_threshold"},
		"bad management":      {cfg: AuthConfig{ManagementNetworks: []string{"10.0.0.0/33"}}, want: "sensors.auth.management_networks[0]"},
		"nothing to watch":    {cfg: AuthConfig{SSHDIdentifiers: []string{}, CharonIdentifiers: []string{}}, want: "nothing to watch"},
		"empty admin":         {cfg: AuthConfig{AdminUsers: []string{" "}}, want: "sensors.auth.admin_users[0]"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sensorsCheckValidate(t, tc.cfg.WithDefaults().Validate(), tc.want)
		})
	}
	if _, err := NewAuth(AuthConfig{}, AuthDeps{}); err == nil {
		t.Error("NewAuth without learned state succeeded")
	}
}

// ---- reading: the journal ----

// authJournal is a JournalOpener whose readers the test writes into.
type authJournal struct {
	mu     sync.Mutex
	calls  [][]string
	writer *io.PipeWriter
	opened chan struct{}
}

func newAuthJournal() *authJournal { return &authJournal{opened: make(chan struct{}, 8)} }

func (j *authJournal) open(_ context.Context, args []string) (io.ReadCloser, error) {
	r, w := io.Pipe()
	j.mu.Lock()
	j.calls = append(j.calls, args)
	j.writer = w
	j.mu.Unlock()
	j.opened <- struct{}{}
	return r, nil
}

func (j *authJournal) write(t *testing.T, b []byte) {
	t.Helper()
	j.mu.Lock()
	w := j.writer
	j.mu.Unlock()
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
}

func (j *authJournal) callCount() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.calls)
}

// authRun runs s until stop (or the test's end); findings arrive on the
// channel. stop cancels the run and returns what Run returned.
func authRun(t *testing.T, s Sensor) (found <-chan wire.Finding, stop func() error) {
	t.Helper()
	ctx, cancel := sensorsContext(t)
	ch := make(chan wire.Finding, 64)
	finished := make(chan struct{})
	var runErr error
	go func() {
		defer close(finished)
		runErr = s.Run(ctx, func(f wire.Finding) { ch <- f })
	}()
	stop = func() error {
		cancel()
		<-finished
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return ch, stop
}

func TestAuthFollowsJournal(t *testing.T) {
	clk := clocktest.NewFake(authMonday10)
	poll := clocktest.NewFake(authMonday10)
	j := newAuthJournal()
	s, err := NewAuth(AuthConfig{Enabled: true, TimeZone: "Asia/Tokyo"},
		AuthDeps{Learned: authLearned(t, false), Clock: clk, PollClock: poll, OpenJournal: j.open})
	if err != nil {
		t.Fatal(err)
	}
	found, stop := authRun(t, s)
	<-j.opened
	fixture, err := os.ReadFile(filepath.Join("testdata", "auth_journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	j.write(t, fixture)

	f := sensorsNext(t, found)
	if f.Kind != KindAuthFailureBurst || !slices.Equal(f.IPs, []string{"194.117.26.69"}) || len(f.Evidence) != 10 {
		t.Fatalf("first finding %+v, want the burst from 194.117.26.69 with its ten lines", f)
	}
	if want := "2025-03-01T18:10:12Z sshd[31602]: Failed password for invalid user ROOT from 194.117.26.69 port 50273 ssh2"; f.Evidence[0] != want {
		t.Errorf("evidence[0] = %q, want %q", f.Evidence[0], want)
	}
	if f.Labels["logged_at"] != "2025-03-01T18:10:21Z" || !f.ObservedAt.Equal(authMonday10) {
		t.Errorf("logged_at %q observed %v: want the journal's time as a label and the clock's as ObservedAt",
			f.Labels["logged_at"], f.ObservedAt)
	}
	select {
	case extra := <-found:
		t.Fatalf("unexpected second finding %+v (the 11th failure is within the window)", extra)
	default:
	}

	// journalctl stops: the watcher starts it again after the last cursor.
	j.mu.Lock()
	_ = j.writer.Close()
	j.mu.Unlock()
	sensorsPump(t, poll, time.Second, func() bool { return j.callCount() == 2 })
	j.mu.Lock()
	first, second := j.calls[0], j.calls[1]
	j.mu.Unlock()
	if !slices.Contains(first, "--since=now") || !slices.Contains(first, "--follow") || !slices.Contains(first, "--output=json") {
		t.Errorf("first journalctl args %q, want follow, JSON, since now", first)
	}
	if !slices.Contains(first, "SYSLOG_IDENTIFIER=sshd") || !slices.Contains(first, "_COMM=charon-systemd") {
		t.Errorf("first journalctl args %q do not select sshd and charon-systemd", first)
	}
	lastCursor := "--after-cursor=" + authLastCursor(t, fixture)
	if !slices.Contains(second, lastCursor) || slices.Contains(second, "--since=now") {
		t.Errorf("restarted journalctl args %q, want %s instead of --since=now", second, lastCursor)
	}

	// The restarted reader is read too.
	var more strings.Builder
	for i := range 10 {
		fmt.Fprintf(&more, `{"__CURSOR":"c%d","__REALTIME_TIMESTAMP":"1740852700000000","_COMM":"sshd","SYSLOG_IDENTIFIER":"sshd","_PID":"%d","MESSAGE":"Failed password for root from 198.51.100.23 port %d ssh2"}`+"\n", i, 700+i, 40000+i)
	}
	<-j.opened
	j.write(t, []byte(more.String()))
	if f := sensorsNext(t, found); !slices.Equal(f.IPs, []string{"198.51.100.23"}) {
		t.Errorf("after the restart: %+v, want the burst from 198.51.100.23", f)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

func TestParseJournalLine(t *testing.T) {
	set := authSettingsFor(t, AuthConfig{})
	b, err := os.ReadFile(filepath.Join("testdata", "auth_journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if e, _, ok := parseJournalLine([]byte(line), set); ok {
			got = append(got, fmt.Sprintf("%s|%s|%s|%s|%s", e.Ident, e.PID, e.Thread, e.IKESA, e.Message))
		}
	}
	want := []string{
		"charon-systemd|2440|13|3|received packet: from 192.168.1.2[4500] to 192.168.0.1[4500] (268 bytes)",
		"charon-systemd|2440|13|3|tried 1 shared key for '192.168.1.2' - '192.168.0.1', but MAC mismatched",
		"sshd|4100|||Invalid user \ufffdadmin from 203.0.113.50 port 40022",
	}
	// the systemd entry, the null MESSAGE and the torn last line are skipped
	if len(got) != 11+1+len(want) {
		t.Fatalf("%d entries read, want %d: %q", len(got), 11+1+len(want), got)
	}
	if !slices.Equal(got[12:], want) {
		t.Errorf("entries %q, want %q", got[12:], want)
	}
	set1 := authSettingsFor(t, AuthConfig{FailureThreshold: 1})
	d := newAuthDetector(set1, authLearned(t, false))
	var bursts []wire.Finding
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if e, _, ok := parseJournalLine([]byte(line), set1); ok && e.Ident == "charon-systemd" {
			bursts = append(bursts, d.handle(e, authMonday10)...)
		}
	}
	if len(bursts) != 1 || !slices.Equal(bursts[0].IPs, []string{"192.168.1.2"}) {
		t.Errorf("charon-systemd journal entries made %+v, want one failure from 192.168.1.2 (its IKE SA's packet)", bursts)
	}
}

// authLastCursor is the cursor of the last whole entry of a JSON-lines
// journal.
func authLastCursor(t *testing.T, journal []byte) string {
	t.Helper()
	last := ""
	for _, line := range strings.Split(string(journal), "\n") {
		var r struct {
			Cursor string `json:"__CURSOR"`
		}
		if json.Unmarshal([]byte(line), &r) == nil && r.Cursor != "" {
			last = r.Cursor
		}
	}
	return last
}

// ---- reading: files ----

func TestFileFollowerRotationAndTruncation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.log")
	appendTo := func(p, s string) {
		t.Helper()
		f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	appendTo(path, "old 1\nold 2\n")
	var got []string
	line := func(b []byte) { got = append(got, string(b)) }
	ff := &fileFollower{path: path, log: discardLog()}
	ff.split.max = 64
	ff.buf = make([]byte, 7) // small reads: lines cross read boundaries
	step := func() {
		t.Helper()
		if err := ff.drain(line); err != nil {
			t.Fatal(err)
		}
		if err := ff.check(line); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want ...string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("lines %q, want %q", got, want)
		}
		got = nil
	}
	if err := ff.open(true); err != nil {
		t.Fatal(err)
	}
	defer ff.close()
	step()
	expect() // what was there at start is not read

	appendTo(path, "a\nb is a longer line\npart")
	step()
	expect("a", "b is a longer line")
	appendTo(path, "ial\n")
	step()
	expect("partial")

	// logrotate: rename, the writer finishes a line in the old file, a new
	// file appears.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	step()
	expect() // rotated away, no new file yet: keep reading the old one
	appendTo(path+".1", "late in old\n")
	appendTo(path, "first in new\n")
	step()
	expect("late in old", "first in new")

	// copytruncate: the file shrinks under us.
	appendTo(path, "before truncate\n")
	step()
	expect("before truncate")
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendTo(path, "after\n")
	step()
	expect("after")

	// A line longer than the bound is dropped whole; the next one is read.
	appendTo(path, strings.Repeat("x", 100)+"\nnext\n")
	step()
	expect("next")
}

// A written line is read when inotify reports the write, not at the next
// poll: the poll clock here never moves. The same holds across a rotation
// (rename, then a new file).
func TestFileFollowerWakesOnWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.log")
	learnWriteFile(t, path, "there before\n")
	learnWriteFile(t, filepath.Join(dir, "syslog"), "")
	poll := &authArmedClock{Fake: clocktest.NewFake(authMonday10), armed: make(chan struct{}, 64)}
	ff := &fileFollower{path: path, poll: time.Hour, clk: poll, log: discardLog()}
	lines := make(chan string, 16)
	ctx, cancel := sensorsContext(t)
	done := make(chan error, 1)
	go func() { done <- ff.follow(ctx, func(l string) { lines <- l }) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("follow = %v, want context.Canceled", err)
		}
	}()
	<-poll.armed // the first look is done: the watch was on before it
	appendTo := func(p, s string) {
		t.Helper()
		f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-lines:
			if got != want {
				t.Fatalf("read %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q was not read in 10s, and the poll never came: nothing woke the follower", want)
		}
	}
	appendTo(filepath.Join(dir, "syslog"), "another file's line\n")
	appendTo(path, "first\n")
	expect("first")
	appendTo(path, "second\n")
	expect("second")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendTo(path, "first in new\n")
	expect("first in new")
	appendTo(path, "second in new\n") // the new file is watched too
	expect("second in new")
	select {
	case l := <-lines:
		t.Errorf("read %q, which nobody wrote to the followed file", l)
	default:
	}
}

// Which inotify events wake a follower: writes to the followed file (or
// to one rotated away), its name coming or going in the directory, and an
// overflow; not what happens to the directory's other files.
func TestInotifyWakes(t *testing.T) {
	const dir = 1
	event := func(wd int32, mask uint32, name string) []byte {
		b := binary.NativeEndian.AppendUint32(nil, uint32(wd))
		b = binary.NativeEndian.AppendUint32(b, mask)
		b = binary.NativeEndian.AppendUint32(b, 0) // cookie
		padded := 0
		if name != "" {
			padded = (len(name) + 1 + 15) / 16 * 16 // NUL-terminated, padded as the kernel does
		}
		b = binary.NativeEndian.AppendUint32(b, uint32(padded))
		return append(b, append([]byte(name), make([]byte, padded-len(name))...)...)
	}
	tests := map[string]struct {
		events        [][]byte
		wake, created bool
	}{
		"a write to the file":                  {events: [][]byte{event(2, unix.IN_MODIFY, "")}, wake: true},
		"a write to the file rotated away":     {events: [][]byte{event(3, unix.IN_MODIFY, "")}, wake: true},
		"the file created":                     {events: [][]byte{event(dir, unix.IN_CREATE, "auth.log")}, wake: true, created: true},
		"the file moved into place":            {events: [][]byte{event(dir, unix.IN_MOVED_TO, "auth.log")}, wake: true, created: true},
		"the file rotated away":                {events: [][]byte{event(dir, unix.IN_MOVED_FROM, "auth.log")}, wake: true},
		"another file of the directory":        {events: [][]byte{event(dir, unix.IN_CREATE, "syslog"), event(dir, unix.IN_MOVED_FROM, "auth.log.1")}},
		"a prefix of the name is another file": {events: [][]byte{event(dir, unix.IN_CREATE, "auth")}},
		"a watch gone with its file":           {events: [][]byte{event(3, unix.IN_IGNORED, "")}},
		"an overflow":                          {events: [][]byte{event(-1, unix.IN_Q_OVERFLOW, "")}, wake: true},
		"one event among others": {events: [][]byte{event(dir, unix.IN_DELETE, "syslog.2"), event(dir, unix.IN_CREATE, "auth.log"), event(dir, unix.IN_CREATE, "x")},
			wake: true, created: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			wake, created := inotifyWakes(slices.Concat(tc.events...), dir, "auth.log")
			if wake != tc.wake || created != tc.created {
				t.Fatalf("inotifyWakes = wake %v, created %v; want %v, %v", wake, created, tc.wake, tc.created)
			}
		})
	}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// authArmedClock is a fake clock that says when a timer is armed: a
// follower arms one after each look at its file.
type authArmedClock struct {
	*clocktest.Fake
	armed chan struct{}
}

func (c *authArmedClock) After(d time.Duration) <-chan time.Time {
	ch := c.Fake.After(d)
	select {
	case c.armed <- struct{}{}:
	default:
	}
	return ch
}

func TestAuthFollowsFiles(t *testing.T) {
	dir := t.TempDir()
	authLog := filepath.Join(dir, "auth.log")
	charonLog := filepath.Join(dir, "charon.log")
	clk := clocktest.NewFake(authMonday10)
	poll := &authArmedClock{Fake: clocktest.NewFake(authMonday10), armed: make(chan struct{}, 64)}
	s, err := NewAuth(AuthConfig{
		Enabled: true, Source: AuthSourceFiles, Files: []string{authLog, charonLog},
		FailureThreshold: 3, PollInterval: 100 * time.Millisecond,
	}, AuthDeps{Learned: authLearned(t, false), Clock: clk, PollClock: poll})
	if err != nil {
		t.Fatal(err)
	}
	found, _ := authRun(t, s)
	// Both followers looked once (and found no file) before the files
	// appear, so they read them from their start.
	<-poll.armed
	<-poll.armed
	var lines strings.Builder
	for i := range 3 {
		lines.WriteString(authFailedFrom("194.117.26.69", i) + "\n")
	}
	learnWriteFile(t, authLog, lines.String())
	var f wire.Finding
	sensorsPump(t, poll.Fake, 100*time.Millisecond, func() bool {
		select {
		case f = <-found:
			return true
		default:
			return false
		}
	})
	if !slices.Equal(f.IPs, []string{"194.117.26.69"}) || len(f.Evidence) != 3 {
		t.Fatalf("finding %+v, want the burst of the three lines", f)
	}

	// After a rotation the new file's lines count too.
	if err := os.Rename(authLog, authLog+".1"); err != nil {
		t.Fatal(err)
	}
	lines.Reset()
	for i := range 3 {
		lines.WriteString(authFailedFrom("198.51.100.77", i) + "\n")
	}
	learnWriteFile(t, authLog, lines.String())
	sensorsPump(t, poll.Fake, 100*time.Millisecond, func() bool {
		select {
		case f = <-found:
			return true
		default:
			return false
		}
	})
	if !slices.Equal(f.IPs, []string{"198.51.100.77"}) {
		t.Fatalf("after rotation: %+v, want the burst from 198.51.100.77", f)
	}
}

func TestExecJournal(t *testing.T) {
	t.Run("a missing journalctl stops the watcher", func(t *testing.T) {
		s, err := NewAuth(AuthConfig{Journalctl: "/nonexistent/journalctl"}, AuthDeps{Learned: authLearned(t, false)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := sensorsContext(t)
		defer cancel()
		if err := s.Run(ctx, func(wire.Finding) {}); !errors.Is(err, exec.ErrNotFound) {
			t.Fatalf("Run = %v, want exec.ErrNotFound", err)
		}
	})
	t.Run("closing stops journalctl quietly", func(t *testing.T) {
		if _, err := exec.LookPath("journalctl"); err != nil {
			t.Skip("no journalctl here")
		}
		rc, err := execJournal("journalctl")(t.Context(), journalArgs(authSettingsFor(t, AuthConfig{}), ""))
		if err != nil {
			t.Fatal(err)
		}
		read := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, rc)
			read <- err
		}()
		if err := rc.Close(); err != nil {
			t.Errorf("Close = %v, want nil for a journalctl we stopped", err)
		}
		<-read // the reader ends once journalctl is gone
	})
}
