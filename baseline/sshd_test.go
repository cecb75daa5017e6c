package baseline

import (
	"slices"
	"strings"
	"testing"
)

func TestSplitSSHDLine(t *testing.T) {
	tests := map[string]struct {
		line    string
		keyword string
		args    []string
		err     bool
	}{
		"plain":                 {"PermitRootLogin no", "PermitRootLogin", []string{"no"}, false},
		"equals":                {"PermitRootLogin=no", "PermitRootLogin", []string{"no"}, false},
		"spaced equals":         {"  PermitRootLogin = no  ", "PermitRootLogin", []string{"no"}, false},
		"tab":                   {"Subsystem\tsftp\t/usr/lib/openssh/sftp-server", "Subsystem", []string{"sftp", "/usr/lib/openssh/sftp-server"}, false},
		"double quotes":         {`Banner "/etc/issue net"`, "Banner", []string{"/etc/issue net"}, false},
		"single quotes":         {`AcceptEnv 'LANG LC_*'`, "AcceptEnv", []string{"LANG LC_*"}, false},
		"trailing comment":      {"MaxAuthTries 3 # three", "MaxAuthTries", []string{"3"}, false},
		"hash inside an arg":    {"Banner /etc/issue#1", "Banner", []string{"/etc/issue#1"}, false},
		"escaped quote":         {`ForceCommand echo \"hi\"`, "ForceCommand", []string{"echo", `"hi"`}, false},
		"escaped space":         {`Banner /etc/my\ issue`, "Banner", []string{"/etc/my issue"}, false},
		"comment line":          {"# PermitRootLogin yes", "", nil, false},
		"indented comment":      {"   #PermitRootLogin yes", "", nil, false},
		"blank":                 {" \t\r", "", nil, false},
		"carriage return":       {"PermitRootLogin no\r", "PermitRootLogin", []string{"no"}, false},
		"no argument":           {"PermitRootLogin", "", nil, true},
		"only a comment as arg": {"PermitRootLogin # nothing", "", nil, true},
		"unterminated quote":    {`Banner "/etc/issue`, "", nil, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			kw, args, err := splitSSHDLine(tc.line)
			if (err != nil) != tc.err {
				t.Fatalf("error = %v, want error %v", err, tc.err)
			}
			if kw != tc.keyword || !slices.Equal(args, tc.args) {
				t.Errorf("got %q %q, want %q %q", kw, args, tc.keyword, tc.args)
			}
		})
	}
}

func TestClassifyMatch(t *testing.T) {
	tests := map[string]struct {
		criteria     string
		broad, total bool
	}{
		"all":                      {"all", true, true},
		"ALL":                      {"ALL", true, true},
		"user star":                {"User *", true, true},
		"user star equals":         {"User=*", true, true},
		"user star with exception": {"User *,!admin", true, false},
		"one user":                 {"User backup", false, false},
		"address everywhere":       {"Address 0.0.0.0/0,::/0", true, true},
		"address IPv4 only":        {"Address 0.0.0.0/0", false, false},
		"star and a narrow one":    {"User * Address 10.0.0.0/8", false, false},
		"two stars":                {"User * Group *", true, true},
		"unknown criterion":        {"Version *", false, false},
		"dangling":                 {"User", false, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			args, err := splitSSHDArgs(tc.criteria)
			if err != nil {
				t.Fatal(err)
			}
			broad, total := classifyMatch(args)
			if broad != tc.broad || total != tc.total {
				t.Errorf("classifyMatch(%q) = %v, %v; want %v, %v", tc.criteria, broad, total, tc.broad, tc.total)
			}
		})
	}
}

func TestResolveAlgorithms(t *testing.T) {
	defaults := sshAlgorithmDefaults["ciphers"]
	tests := map[string]struct {
		spec string
		want []string
	}{
		"unset":            {"", defaults},
		"explicit":         {"aes256-gcm@openssh.com,aes256-ctr", []string{"aes256-gcm@openssh.com", "aes256-ctr"}},
		"explicit dedup":   {"aes256-ctr,AES256-CTR", []string{"aes256-ctr"}},
		"append":           {"+aes128-cbc", append(slices.Clone(defaults), "aes128-cbc")},
		"append existing":  {"+aes128-ctr", defaults},
		"prepend":          {"^aes256-cbc,aes128-ctr", append([]string{"aes256-cbc", "aes128-ctr", "chacha20-poly1305@openssh.com"}, defaults[2:]...)},
		"remove exact":     {"-chacha20-poly1305@openssh.com", defaults[1:]},
		"remove wildcard":  {"-aes*-ctr", []string{"chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}},
		"remove ? pattern": {"-aes1?8-*", []string{"chacha20-poly1305@openssh.com", "aes192-ctr", "aes256-ctr", "aes256-gcm@openssh.com"}},
		"remove negated":   {"-aes*,!aes256-gcm@openssh.com", []string{"chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := resolveAlgorithms(tc.spec, defaults); !slices.Equal(got, tc.want) {
				t.Errorf("resolveAlgorithms(%q) = %v, want %v", tc.spec, got, tc.want)
			}
		})
	}
}

func TestSSHDSkippedWhenNotConfigured(t *testing.T) {
	f := newGatewayFixture(t)
	f.remove("/etc/ssh")
	_, _, rep := evaluateRecorded(t, f)
	for _, r := range rep.Results {
		if r.Type == TypeSSHD && r.Status != StatusSkip {
			t.Errorf("%s = %s without sshd_config, want skip", r.ID, r.Status)
		}
	}
	if !rep.Passed || rep.Counts.Skip != 8 {
		t.Errorf("Passed = %v, counts %+v", rep.Passed, rep.Counts)
	}
}

func TestSSHDIncludeLoopIsAnError(t *testing.T) {
	f := newGatewayFixture(t)
	f.appendTo("/etc/ssh/sshd_config", "Include sshd_config\n")
	_, err := loadSSHD(f.root)
	if err == nil || !strings.Contains(err.Error(), "nested deeper than 16") {
		t.Errorf("error = %v, want an Include depth error", err)
	}
	b, _ := Default()
	rep, err := b.Evaluate(t.Context(), f.env())
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := rep.Result("ssh-permit-root-login"); r.Status != StatusError {
		t.Errorf("status %s, want error", r.Status)
	}
}

func TestSSHDSyntaxErrorIsAnError(t *testing.T) {
	f := newGatewayFixture(t)
	f.appendTo("/etc/ssh/sshd_config.d/10-hardening.conf", "Banner \"unterminated\n")
	b, _ := Default()
	rep, err := b.Evaluate(t.Context(), f.env())
	if err != nil {
		t.Fatal(err)
	}
	r, _ := rep.Result("ssh-password-authentication")
	if r.Status != StatusError || !strings.Contains(r.Message, "/etc/ssh/sshd_config.d/10-hardening.conf:9: unterminated quote") {
		t.Errorf("got %s %q", r.Status, r.Message)
	}
}

// TestJudgeSSHDNumbers: numeric options are read as sshd reads them
// (strtonum from 0 to INT_MAX, convtime for times); what its parser
// refuses, or what leaves it unusable, fails as invalid whatever the
// bounds say.
func TestJudgeSSHDNumbers(t *testing.T) {
	ptr := func(n int) *int { return &n }
	tests := map[string]struct {
		option string
		expect Expect
		value  string
		want   Status
		says   string
	}{
		"MaxAuthTries within":               {"MaxAuthTries", Expect{Max: ptr(4)}, "3", StatusPass, ""},
		"MaxAuthTries above":                {"MaxAuthTries", Expect{Max: ptr(4)}, "5", StatusFail, "want ≤ 4"},
		"MaxAuthTries 0":                    {"MaxAuthTries", Expect{Max: ptr(4)}, "0", StatusFail, "is invalid: with 0 sshd disconnects every client"},
		"MaxAuthTries negative":             {"MaxAuthTries", Expect{Max: ptr(4)}, "-2", StatusFail, "-2 is negative; sshd refuses to start"},
		"MaxAuthTries word":                 {"MaxAuthTries", Expect{Max: ptr(4)}, "three", StatusFail, `"three" is not an integer`},
		"MaxAuthTries hex":                  {"MaxAuthTries", Expect{Max: ptr(4)}, "0x3", StatusFail, "is invalid"},
		"MaxAuthTries plus sign":            {"MaxAuthTries", Expect{Max: ptr(4)}, "+3", StatusPass, ""},
		"MaxSessions 0 is valid":            {"MaxSessions", Expect{Max: ptr(2)}, "0", StatusPass, ""},
		"ClientAliveCountMax word":          {"ClientAliveCountMax", Expect{Min: ptr(1)}, "never", StatusFail, "refuses to start"},
		"LoginGraceTime in minutes":         {"LoginGraceTime", Expect{Max: ptr(60)}, "1m", StatusPass, ""},
		"LoginGraceTime too long":           {"LoginGraceTime", Expect{Max: ptr(60)}, "1m30s", StatusFail, "want ≤ 60"},
		"LoginGraceTime negative":           {"LoginGraceTime", Expect{Max: ptr(60)}, "-1", StatusFail, "is not a time value"},
		"LoginGraceTime bad unit":           {"LoginGraceTime", Expect{Max: ptr(60)}, "1y", StatusFail, "is not a time value"},
		"ClientAliveInterval hours":         {"ClientAliveInterval", Expect{Max: ptr(3600)}, "1H", StatusPass, ""},
		"ClientAliveInterval 0 is disabled": {"ClientAliveInterval", Expect{Min: ptr(1)}, "0", StatusFail, "want ≥ 1"},
		"ClientAliveInterval overflow":      {"ClientAliveInterval", Expect{Max: ptr(60)}, "9999999w", StatusFail, "too large"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := &Check{ID: "x", Type: TypeSSHD, Expect: tc.expect, SSHDParams: SSHDParams{Option: tc.option}}
			st, msg := judgeSSHDValue(c, strings.ToLower(tc.option), tc.value, "f:1")
			if st != tc.want || !strings.Contains(msg, tc.says) {
				t.Errorf("judge %s %q = %s %q, want %s saying %q", tc.option, tc.value, st, msg, tc.want, tc.says)
			}
		})
	}
}
