package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/warden-ir/warden/baseline"
)

// imageFiles is a small Debian 12 gateway image: hardened sshd and sysctl
// files, accounts and a patched dpkg database; no tunnels configured.
var imageFiles = map[string]string{
	"etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\n",
	"etc/ssh/sshd_config.d/10-hardening.conf": "PermitRootLogin no\nPasswordAuthentication no\nPermitEmptyPasswords no\nMaxAuthTries 3\n" +
		"MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com\nKexAlgorithms curve25519-sha256,diffie-hellman-group16-sha512\n",
	"etc/sysctl.conf": "# See /etc/sysctl.d/\n",
	"etc/sysctl.d/60-gateway.conf": "net.ipv4.ip_forward = 1\nnet.ipv4.conf.*.rp_filter = 2\n" +
		"net.ipv4.conf.all.accept_redirects = 0\nnet.ipv4.conf.default.accept_redirects = 0\n" +
		"net.ipv6.conf.all.accept_redirects = 0\nnet.ipv6.conf.default.accept_redirects = 0\n" +
		"net.ipv4.conf.all.send_redirects = 0\nnet.ipv4.conf.default.send_redirects = 0\n" +
		"net.ipv4.conf.all.log_martians = 1\nnet.ipv4.conf.default.log_martians = 1\n",
	"etc/passwd": "root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1000::/home/admin:/bin/bash\n",
	"var/lib/dpkg/status": "Package: openssh-server\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:9.2p1-2+deb12u6\n\n" +
		"Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.0.19-1~deb12u2\n\n",
}

// writeImage builds the image in a temporary directory, with Debian's
// 99-sysctl.conf link, and applies edits (path → content; "" removes).
func writeImage(t *testing.T, edits map[string]string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{}
	for p, c := range imageFiles {
		files[p] = c
	}
	for p, c := range edits {
		files[p] = c
	}
	for p, c := range files {
		if c == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../sysctl.conf", filepath.Join(root, "etc/sysctl.d/99-sysctl.conf")); err != nil {
		t.Fatal(err)
	}
	return root
}

func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	return 1
}

func TestBaselineCheckCommand(t *testing.T) {
	hermetic(t)
	good := writeImage(t, nil)
	weak := writeImage(t, map[string]string{
		"etc/ssh/sshd_config.d/10-hardening.conf": strings.Replace(imageFiles["etc/ssh/sshd_config.d/10-hardening.conf"], "MaxAuthTries 3", "MaxAuthTries 0", 1),
		// Read at boot through Debian's 99-sysctl.conf link, after
		// 60-gateway.conf: it wins.
		"etc/sysctl.conf": "net.ipv4.ip_forward = 0\n",
	})
	// An absolute link that would read this host's file if followed on
	// the host: inside the image it names the image's own copy.
	escape := writeImage(t, nil)
	hostFile := filepath.Join(t.TempDir(), "hostile.conf")
	if err := os.WriteFile(hostFile, []byte("PermitRootLogin yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inImage := filepath.Join(escape, hostFile)
	if err := os.MkdirAll(filepath.Dir(inImage), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inImage, []byte(imageFiles["etc/ssh/sshd_config.d/10-hardening.conf"]), 0o644); err != nil {
		t.Fatal(err)
	}
	dropIn := filepath.Join(escape, "etc/ssh/sshd_config.d/10-hardening.conf")
	if err := os.Remove(dropIn); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(hostFile, dropIn); err != nil {
		t.Fatal(err)
	}
	custom := filepath.Join(t.TempDir(), "custom.yaml")
	if err := os.WriteFile(custom, []byte("name: forward-only\nchecks:\n  - id: fwd\n    title: forwarding\n    rationale: the gateway routes\n    severity: high\n    type: sysctl\n    keys: [net.ipv4.ip_forward]\n    one_of: [\"1\"]\n    require_boot: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(broken, []byte("name: x\nchecks:\n  - id: a\n    type: sysctl\n    bogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := map[string]struct {
		args []string
		code int
		// rows maps a check id to its RESULT column; out must appear in
		// stdout, errs in the error main prints on stderr.
		rows      map[string]string
		out, errs []string
	}{
		"a hardened image passes what can be judged offline": {
			args: []string{"--root", good},
			rows: map[string]string{"ssh-max-auth-tries": "pass", "sysctl-ip-forward": "pass", "sysctl-rp-filter": "pass",
				"sysctl-tcp-syncookies": "skip", "fw-listeners": "skip", "fw-default-policy": "skip", "packages-security-minimums": "pass"},
			out: []string{"CHECK", "RESULT", "DETAIL", "not applicable offline", "baseline gateway against " + good + ": 15 pass, 0 fail, 0 error, 11 skip"},
		},
		"one check": {
			args: []string{"--root", good, "--check", "sysctl-ip-forward"},
			out:  []string{"sysctl-ip-forward", "1 pass, 0 fail, 0 error, 0 skip"},
		},
		"an invalid MaxAuthTries fails with exit 3": {
			args: []string{"--root", weak, "--check", "ssh-max-auth-tries", "--check", "sysctl-ip-forward"},
			code: exitBaselineNotPassed,
			out:  []string{"ssh-max-auth-tries", "fail", `MaxAuthTries "0"`, "is invalid", "sysctl-ip-forward", "/etc/sysctl.conf:1 (through /etc/sysctl.d/99-sysctl.conf)", "0 pass, 2 fail"},
			errs: []string{"does not pass baseline gateway: 2 failed"},
		},
		"a symlink out of the image is resolved inside it": {
			args: []string{"--root", escape, "--check", "ssh-permit-root-login"},
			rows: map[string]string{"ssh-permit-root-login": "pass"},
		},
		"a given baseline file": {
			args: []string{"--root", weak, "--baseline", custom},
			code: exitBaselineNotPassed,
			out:  []string{"fwd", "fail", "set to 0 at boot by /etc/sysctl.conf:1 (through /etc/sysctl.d/99-sysctl.conf)"},
		},
		"unknown check id":              {args: []string{"--root", good, "--check", "ssh-nope"}, code: exitUsage, errs: []string{`--check "ssh-nope"`, "no such check"}},
		"no root":                       {args: nil, code: exitUsage, errs: []string{"--root is required"}},
		"root does not exist":           {args: []string{"--root", filepath.Join(good, "missing")}, code: exitUsage, errs: []string{"reading --root", "no such file"}},
		"root is a file":                {args: []string{"--root", custom}, code: exitUsage, errs: []string{"is not a directory"}},
		"a baseline that does not load": {args: []string{"--root", good, "--baseline", broken}, code: exitUsage, errs: []string{"loading the baseline", "bogus"}},
		"unknown flag":                  {args: []string{"--root", good, "--verbose"}, code: exitUsage, errs: []string{"unknown flag: --verbose"}},
		"a stray argument":              {args: []string{"--root", good, "extra"}, code: exitUsage, errs: []string{`unexpected argument "extra"`}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, _, err := runCLI(t, append([]string{"baseline", "check"}, tc.args...)...)
			if got := exitCode(err); got != tc.code {
				t.Fatalf("exit %d (%v), want %d\n%s", got, err, tc.code, out)
			}
			for id, want := range tc.rows {
				if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(id) + `\s+` + want + `\s`).MatchString(out) {
					t.Errorf("no row %s %s:\n%s", id, want, out)
				}
			}
			for _, want := range tc.out {
				if !strings.Contains(out, want) {
					t.Errorf("stdout does not contain %q:\n%s", want, out)
				}
			}
			for _, want := range tc.errs {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v does not say %q", err, want)
				}
			}
		})
	}
}

func TestBaselineCheckCommandJSON(t *testing.T) {
	hermetic(t)
	root := writeImage(t, nil)
	out, _, err := runCLI(t, "baseline", "check", "--root", root, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep baseline.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not a JSON report: %v\n%s", err, out)
	}
	b, _ := baseline.Default()
	if !rep.Passed || len(rep.Results) != len(b.Checks) {
		t.Errorf("passed=%v with %d results, want passed with %d", rep.Passed, len(rep.Results), len(b.Checks))
	}
	r, ok := rep.Result("sysctl-rp-filter")
	if !ok || r.Status != baseline.StatusPass || len(r.Evidence) == 0 || !strings.Contains(r.Evidence[1].Source, "(glob net/ipv4/conf/*/rp_filter)") {
		t.Errorf("sysctl-rp-filter: %+v", r)
	}
	if r, _ := rep.Result("fw-default-policy"); r.Status != baseline.StatusSkip {
		t.Errorf("fw-default-policy = %s, want skip offline", r.Status)
	}
}
