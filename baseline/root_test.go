package baseline

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestResolveIn: symlinks under a root other than "/" resolve as on the
// gateway booted from it.
func TestResolveIn(t *testing.T) {
	tests := map[string]struct {
		files      []string
		links      map[string]string // path -> target
		p          string
		followLast bool
		want       string
		err        error
	}{
		"plain file":                    {files: []string{"/etc/a"}, p: "/etc/a", followLast: true, want: "/etc/a"},
		"absolute target is under root": {files: []string{"/usr/x"}, links: map[string]string{"/etc/l": "/usr/x"}, p: "/etc/l", followLast: true, want: "/usr/x"},
		"relative target":               {files: []string{"/usr/x"}, links: map[string]string{"/etc/l": "../usr/x"}, p: "/etc/l", followLast: true, want: "/usr/x"},
		"dot-dot stops at root":         {files: []string{"/usr/x"}, links: map[string]string{"/etc/l": "../../../../../../usr/x"}, p: "/etc/l", followLast: true, want: "/usr/x"},
		"dot-dot in the path itself":    {files: []string{"/etc/a"}, p: "/../../etc/a", followLast: true, want: "/etc/a"},
		"directory link":                {files: []string{"/srv/d/f"}, links: map[string]string{"/etc/d": "/srv/d"}, p: "/etc/d/f", followLast: true, want: "/srv/d/f"},
		"dot-dot after a directory link follows the target": {files: []string{"/srv/x", "/srv/d/f"}, links: map[string]string{"/etc/d": "/srv/d"}, p: "/etc/d/../x", followLast: true, want: "/srv/x"},
		"chain":                     {files: []string{"/c/f"}, links: map[string]string{"/a": "/b", "/b": "c/f"}, p: "/a", followLast: true, want: "/c/f"},
		"final link kept (lstat)":   {files: []string{"/usr/x"}, links: map[string]string{"/etc/l": "/usr/x"}, p: "/etc/l", want: "/etc/l"},
		"loop":                      {links: map[string]string{"/a": "/b", "/b": "/a"}, p: "/a", followLast: true, err: syscall.ELOOP},
		"missing":                   {p: "/etc/none", followLast: true, err: fs.ErrNotExist},
		"dangling":                  {links: map[string]string{"/etc/l": "/none"}, p: "/etc/l", followLast: true, err: fs.ErrNotExist},
		"a file is not a directory": {files: []string{"/etc/a"}, p: "/etc/a/b", followLast: true, err: syscall.ENOTDIR},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := &gatewayFixture{t: t, root: t.TempDir()}
			for _, p := range tc.files {
				f.write(p, "x")
			}
			for p, target := range tc.links {
				f.symlink(target, p)
			}
			got, err := resolveIn(f.root, tc.p, tc.followLast)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("resolveIn(%q) = %q, %v; want error %v", tc.p, got, err, tc.err)
				}
				if strings.Contains(err.Error(), f.root) {
					t.Errorf("error %q shows the host's path of the root", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("resolveIn(%q) = %q, %v; want %q", tc.p, got, err, tc.want)
			}
		})
	}
}

// TestResolveInHostRoot: under "/" resolution is the kernel's own.
func TestResolveInHostRoot(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "x"), filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	want, err := filepath.EvalSymlinks(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := resolveIn("/", filepath.Join(dir, "l"), true)
	if err != nil || got != want {
		t.Errorf("resolveIn(/, l) = %q, %v; want %q", got, err, want)
	}
}

// TestRootConfinement: a tree evaluated under --baseline-root (or `warden
// baseline check --root`) whose symlinks point out of it with an absolute
// target or enough "..": the checks read the files inside the tree, never
// the host's. On the host, each escaping target holds a failing file; in
// the tree, the same path holds a passing one.
func TestRootConfinement(t *testing.T) {
	b, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	const badDropIn = "PermitRootLogin yes\nPasswordAuthentication yes\nMaxAuthTries 0\n"
	const badSysctl = "net.ipv4.ip_forward = 0\nnet.ipv4.conf.all.send_redirects = 1\n"
	const badPasswd = goodPasswd + "toor:x:0:0::/root:/bin/bash\n"
	tests := map[string]struct {
		// hostFile is written on the host (outside the root) at
		// <host>/<name> with bad, and inside the root at the same absolute
		// path with good.
		name, bad, good string
		// link is created in the root, pointing at target; %HOST% is the
		// host directory, %UP% enough ".." to reach the host's "/" from
		// the link.
		link, target string
		checks       []string
	}{
		"sshd drop-in, absolute target": {
			name: "hardening.conf", bad: badDropIn, good: goodSSHDDropIn,
			link: "/etc/ssh/sshd_config.d/10-hardening.conf", target: "%HOST%/hardening.conf",
			checks: []string{"ssh-permit-root-login", "ssh-password-authentication", "ssh-max-auth-tries"},
		},
		"sshd drop-in, relative target climbing out": {
			name: "hardening.conf", bad: badDropIn, good: goodSSHDDropIn,
			link: "/etc/ssh/sshd_config.d/10-hardening.conf", target: "%UP%%HOST%/hardening.conf",
			checks: []string{"ssh-permit-root-login", "ssh-password-authentication", "ssh-max-auth-tries"},
		},
		"sshd_config itself, absolute target": {
			name: "sshd_config", bad: "PermitRootLogin yes\n", good: goodSSHDConfig,
			link: "/etc/ssh/sshd_config", target: "%HOST%/sshd_config",
			checks: []string{"ssh-permit-root-login", "ssh-kbd-interactive"},
		},
		"the whole /etc/ssh directory, relative target climbing out": {
			name: "ssh/sshd_config.d/10-hardening.conf", bad: badDropIn, good: goodSSHDDropIn,
			link: "/etc/ssh/sshd_config.d", target: "%UP%%HOST%/ssh/sshd_config.d",
			checks: []string{"ssh-permit-root-login", "ssh-max-auth-tries"},
		},
		"a sysctl.d file, absolute target": {
			name: "60-gateway.conf", bad: badSysctl, good: goodSysctl,
			link: "/etc/sysctl.d/60-gateway.conf", target: "%HOST%/60-gateway.conf",
			checks: []string{"sysctl-ip-forward", "sysctl-send-redirects"},
		},
		"/etc/sysctl.d itself, relative target climbing out": {
			name: "sysctl.d/60-gateway.conf", bad: badSysctl, good: goodSysctl,
			link: "/etc/sysctl.d", target: "%UP%%HOST%/sysctl.d",
			checks: []string{"sysctl-ip-forward", "sysctl-send-redirects"},
		},
		"/etc/passwd, absolute target": {
			name: "passwd", bad: badPasswd, good: goodPasswd,
			link: "/etc/passwd", target: "%HOST%/passwd",
			checks: []string{"integrity-uid0"},
		},
		"dpkg status, relative target climbing out": {
			name: "status", bad: dpkgStanza("openssh-server", "amd64", "1:9.2p1-2", "install ok installed"), good: goodDpkgStatus(),
			link: "/var/lib/dpkg/status", target: "%UP%%HOST%/status",
			checks: []string{"packages-security-minimums"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			host := t.TempDir()
			if err := os.MkdirAll(filepath.Dir(filepath.Join(host, tc.name)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(host, tc.name), []byte(tc.bad), 0o644); err != nil {
				t.Fatal(err)
			}
			f := newGatewayFixture(t)
			f.remove(tc.link)
			f.write(filepath.ToSlash(filepath.Join(host, tc.name)), tc.good)
			if tc.link == "/etc/sysctl.d" {
				f.symlink("../sysctl.conf", filepath.ToSlash(filepath.Join(host, "sysctl.d/99-sysctl.conf")))
			}
			up := strings.Repeat("../", strings.Count(filepath.Join(f.root, tc.link), "/")+2)
			target := strings.NewReplacer("%HOST%", host, "%UP%", strings.TrimSuffix(up, "/")).Replace(tc.target)
			f.symlink(target, tc.link)
			// The link really escapes when followed by the host.
			if got, err := os.ReadFile(filepath.Join(f.root, tc.link)); err == nil && string(got) != tc.bad && !strings.HasSuffix(tc.link, ".d") {
				t.Fatalf("fixture: the host reads %q through the link, want the bad file", got)
			}
			rep, err := b.Evaluate(t.Context(), f.env())
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range tc.checks {
				r, _ := rep.Result(id)
				if r.Status != StatusPass {
					t.Errorf("%s = %s, want pass (the file inside the root): %s\n%+v", id, r.Status, r.Message, r.Evidence)
				}
			}
		})
	}
}

// TestRootHostileFiles: a symlink loop or a FIFO where a configuration
// file belongs is an error for the checks that read it, not a hang, and
// the other checks still run.
func TestRootHostileFiles(t *testing.T) {
	b, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		setup func(t *testing.T, f *gatewayFixture)
		says  string
	}{
		"symlink loop": {
			setup: func(t *testing.T, f *gatewayFixture) {
				f.symlink("/etc/ssh/loop", "/etc/ssh/sshd_config.d/10-hardening.conf")
				f.symlink("/etc/ssh/sshd_config.d/10-hardening.conf", "/etc/ssh/loop")
			},
			says: "too many levels of symbolic links",
		},
		"FIFO": {
			setup: func(t *testing.T, f *gatewayFixture) {
				if err := syscall.Mkfifo(f.host("/etc/ssh/sshd_config.d/10-hardening.conf"), 0o644); err != nil {
					t.Skipf("mkfifo: %v", err)
				}
			},
			says: "not a regular file",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newGatewayFixture(t)
			f.remove("/etc/ssh/sshd_config.d/10-hardening.conf")
			tc.setup(t, f)
			rep, err := b.Evaluate(t.Context(), f.env())
			if err != nil {
				t.Fatal(err)
			}
			r, _ := rep.Result("ssh-permit-root-login")
			if r.Status != StatusError || !strings.Contains(r.Message, tc.says) {
				t.Errorf("ssh-permit-root-login = %s: %s", r.Status, r.Message)
			}
			if r, _ := rep.Result("sysctl-ip-forward"); r.Status != StatusPass {
				t.Errorf("sysctl-ip-forward = %s: %s", r.Status, r.Message)
			}
		})
	}
}
