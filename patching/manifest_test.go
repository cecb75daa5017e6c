package patching_test

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/baseline"
	"github.com/warden-ir/warden/patching"
)

// dpkgPkg is a package as dpkg would have left it in a root: installed at
// a version, owning files, with their MD5 sums (and conffiles) recorded.
type dpkgPkg struct {
	name, arch, version string
	files               map[string]string // path → content installed
	conffiles           []string          // paths among files that are conffiles
}

// dpkgRoot writes the packages into a fresh root: files, status database,
// info/<name>.list and .md5sums. Nothing runs dpkg: the MD5 sums are what
// the content hashes to at install time.
func dpkgRoot(t *testing.T, pkgs ...dpkgPkg) string {
	t.Helper()
	root := t.TempDir()
	info := filepath.Join(root, "var/lib/dpkg/info")
	if err := os.MkdirAll(info, 0o755); err != nil {
		t.Fatal(err)
	}
	var status strings.Builder
	for _, p := range pkgs {
		var list, sums strings.Builder
		list.WriteString("/.\n")
		conf := map[string]bool{}
		for _, c := range p.conffiles {
			conf[c] = true
		}
		fmt.Fprintf(&status, "Package: %s\nStatus: install ok installed\nArchitecture: %s\nVersion: %s\n", p.name, p.arch, p.version)
		if len(p.conffiles) > 0 {
			status.WriteString("Conffiles:\n")
			for _, c := range p.conffiles {
				fmt.Fprintf(&status, " %s %s\n", c, md5hex(p.files[c]))
			}
			status.WriteString(" /etc/obsolete.conf 00000000000000000000000000000000 obsolete\n")
		}
		status.WriteString("Description: test\n\n")
		for f, content := range p.files {
			writeRootFile(t, root, f, content, 0o755)
			fmt.Fprintf(&list, "%s\n", f)
			if !conf[f] {
				fmt.Fprintf(&sums, "%s  %s\n", md5hex(content), strings.TrimPrefix(f, "/"))
			}
		}
		if err := os.WriteFile(filepath.Join(info, p.name+".list"), []byte(list.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(info, p.name+".md5sums"), []byte(sums.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), []byte(status.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func writeRootFile(t *testing.T, root, p, content string, mode os.FileMode) {
	t.Helper()
	dst := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil {
		t.Fatal(err)
	}
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestPlanManifestUpdate records a manifest of the "old" files, lays the
// root out as an upgrade (and whatever else) left it, and checks which
// entries the patch may re-record and which stay violations.
func TestPlanManifestUpdate(t *testing.T) {
	sshd := dpkgPkg{name: "openssh-server", arch: "amd64", version: "1:9.2p1-2+deb12u5",
		files: map[string]string{"/usr/sbin/sshd": "sshd new", "/etc/ssh/moduli": "moduli new"}, conffiles: []string{"/etc/ssh/moduli"}}
	sudo := dpkgPkg{name: "sudo", arch: "amd64", version: "1.9.13p3-1+deb12u1", files: map[string]string{"/usr/bin/sudo": "sudo"}}
	// What the manifest recorded before the patch.
	old := baseline.Manifest{
		Patterns: []string{"/usr/sbin/sshd", "/etc/ssh/moduli", "/usr/bin/sudo", "/usr/bin/su", "/etc/ssh/sshd_config.d/*.conf"},
		Files: map[string]baseline.FileRecord{
			"/usr/sbin/sshd":  {SHA256: sha("sshd old"), Mode: "0755"},
			"/etc/ssh/moduli": {SHA256: sha("moduli old"), Mode: "0755"},
			"/usr/bin/sudo":   {SHA256: sha("sudo"), Mode: "0755"},
		},
	}
	tests := map[string]struct {
		pkgs     []dpkgPkg
		upgraded []string
		after    func(t *testing.T, root string) // changes after dpkg's
		manifest func(m *baseline.Manifest)
		want     []wire.ManifestChange
		refused  map[string]string // path → part of the reason
	}{
		"a binary and a conffile the upgrade replaced": {
			pkgs: []dpkgPkg{sshd, sudo}, upgraded: []string{"openssh-server"},
			want: []wire.ManifestChange{
				{Path: "/etc/ssh/moduli", Package: "openssh-server:amd64", Version: sshd.version, OldSHA256: sha("moduli old"), NewSHA256: sha("moduli new"), Mode: "0755"},
				{Path: "/usr/sbin/sshd", Package: "openssh-server:amd64", Version: sshd.version, OldSHA256: sha("sshd old"), NewSHA256: sha("sshd new"), Mode: "0755"},
			},
		},
		"a file no upgraded package owns changed at the same time": {
			pkgs: []dpkgPkg{sshd, sudo}, upgraded: []string{"openssh-server:amd64"},
			after: func(t *testing.T, root string) { writeRootFile(t, root, "/usr/bin/sudo", "trojan", 0o755) },
			want: []wire.ManifestChange{
				{Path: "/etc/ssh/moduli", Package: "openssh-server:amd64", Version: sshd.version, OldSHA256: sha("moduli old"), NewSHA256: sha("moduli new"), Mode: "0755"},
				{Path: "/usr/sbin/sshd", Package: "openssh-server:amd64", Version: sshd.version, OldSHA256: sha("sshd old"), NewSHA256: sha("sshd new"), Mode: "0755"},
			},
			refused: map[string]string{"/usr/bin/sudo": "no package this patch upgraded owns it"},
		},
		"an owned file written after dpkg unpacked it": {
			pkgs: []dpkgPkg{sshd, sudo}, upgraded: []string{"openssh-server"},
			after: func(t *testing.T, root string) { writeRootFile(t, root, "/usr/sbin/sshd", "trojan", 0o755) },
			want: []wire.ManifestChange{
				{Path: "/etc/ssh/moduli", Package: "openssh-server:amd64", Version: sshd.version, OldSHA256: sha("moduli old"), NewSHA256: sha("moduli new"), Mode: "0755"},
			},
			refused: map[string]string{"/usr/sbin/sshd": "content is not what openssh-server:amd64"},
		},
		"an owned file that gained setuid": {
			pkgs: []dpkgPkg{sshd, sudo}, upgraded: []string{"openssh-server"},
			after: func(t *testing.T, root string) {
				writeRootFile(t, root, "/usr/sbin/sshd", "sshd new", os.ModeSetuid|0o755)
			},
			want: []wire.ManifestChange{
				{Path: "/etc/ssh/moduli", Package: "openssh-server:amd64", Version: sshd.version, OldSHA256: sha("moduli old"), NewSHA256: sha("moduli new"), Mode: "0755"},
			},
			refused: map[string]string{"/usr/sbin/sshd": "mode changed 0755 → 4755"},
		},
		"an owned file that is missing": {
			pkgs: []dpkgPkg{sshd, sudo}, upgraded: []string{"openssh-server"},
			after: func(t *testing.T, root string) { os.Remove(filepath.Join(root, "usr/sbin/sshd")) },
			want: []wire.ManifestChange{
				{Path: "/etc/ssh/moduli", Package: "openssh-server:amd64", Version: sshd.version, OldSHA256: sha("moduli old"), NewSHA256: sha("moduli new"), Mode: "0755"},
			},
			refused: map[string]string{"/usr/sbin/sshd": "missing although openssh-server:amd64 lists it"},
		},
		"the package that changed was not upgraded by this patch": {
			pkgs: []dpkgPkg{sshd, sudo}, upgraded: []string{"sudo"},
			refused: map[string]string{
				"/etc/ssh/moduli": "no package this patch upgraded owns it",
				"/usr/sbin/sshd":  "no package this patch upgraded owns it",
			},
		},
		"a file the upgrade added under a recorded pattern": {
			pkgs: []dpkgPkg{{name: "openssh-server", arch: "amd64", version: "2", files: map[string]string{
				"/usr/sbin/sshd": "sshd old", "/etc/ssh/moduli": "moduli old", "/etc/ssh/sshd_config.d/hardening.conf": "x"}}, sudo},
			upgraded: []string{"openssh-server"},
			want: []wire.ManifestChange{
				{Path: "/etc/ssh/sshd_config.d/hardening.conf", Package: "openssh-server:amd64", Version: "2", NewSHA256: sha("x"), Mode: "0755"},
			},
		},
		"a package listing /bin/su on a merged /usr": {
			pkgs:     []dpkgPkg{sudo, {name: "util-linux", arch: "amd64", version: "2.38.1-5+deb12u2", files: map[string]string{"/usr/bin/su": "su new"}}},
			upgraded: []string{"util-linux"},
			after: func(t *testing.T, root string) {
				// dpkg's list says /bin/su; /bin is a link to usr/bin.
				if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
					t.Fatal(err)
				}
				list := filepath.Join(root, "var/lib/dpkg/info/util-linux.list")
				sums := filepath.Join(root, "var/lib/dpkg/info/util-linux.md5sums")
				for _, f := range []string{list, sums} {
					b, _ := os.ReadFile(f)
					b = []byte(strings.ReplaceAll(strings.ReplaceAll(string(b), "/usr/bin/su", "/bin/su"), "usr/bin/su", "bin/su"))
					if err := os.WriteFile(f, b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			},
			manifest: func(m *baseline.Manifest) {
				m.Files["/usr/bin/su"] = baseline.FileRecord{SHA256: sha("su old"), Mode: "0755"}
				delete(m.Files, "/usr/sbin/sshd")
				delete(m.Files, "/etc/ssh/moduli")
			},
			want: []wire.ManifestChange{
				{Path: "/usr/bin/su", Package: "util-linux:amd64", Version: "2.38.1-5+deb12u2", OldSHA256: sha("su old"), NewSHA256: sha("su new"), Mode: "0755"},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := dpkgRoot(t, tc.pkgs...)
			if tc.after != nil {
				tc.after(t, root)
			}
			m := old
			m.Files = map[string]baseline.FileRecord{}
			for k, v := range old.Files {
				m.Files[k] = v
			}
			if tc.manifest != nil {
				tc.manifest(&m)
			}
			upd, err := patching.PlanManifestUpdate(root, m, tc.upgraded)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(upd.Rerecord, tc.want) {
				t.Errorf("re-record:\n got %+v\nwant %+v", upd.Rerecord, tc.want)
			}
			refused := map[string]string{}
			for _, r := range upd.Refused {
				refused[r.Path] = r.Reason
			}
			if len(refused) != len(tc.refused) {
				t.Errorf("refused %v, want %v", refused, tc.refused)
			}
			for p, want := range tc.refused {
				if !strings.Contains(refused[p], want) {
					t.Errorf("refused %s: %q, want %q", p, refused[p], want)
				}
			}
			// Idempotent: applied, the plan re-records nothing more and
			// refuses the same files.
			again, err := patching.PlanManifestUpdate(root, upd.Apply(m), tc.upgraded)
			if err != nil {
				t.Fatal(err)
			}
			if len(again.Rerecord) != 0 || !reflect.DeepEqual(again.Refused, upd.Refused) {
				t.Errorf("planned again: re-record %+v, refused %+v", again.Rerecord, again.Refused)
			}
			// Applied, the integrity check flags the refused files and
			// only those.
			applied := upd.Apply(m)
			rep, err := integrityBaseline(t, m.Patterns).Evaluate(t.Context(), baseline.Env{Root: root, Recorded: &applied})
			if err != nil {
				t.Fatal(err)
			}
			r, _ := rep.Result("files")
			if passed := r.Status == baseline.StatusPass; passed != (len(tc.refused) == 0) {
				t.Errorf("integrity check %s (%s), with %d refused", r.Status, r.Message, len(tc.refused))
			}
			for p := range tc.refused {
				if !strings.Contains(r.Message, p) {
					t.Errorf("integrity message %q does not name %s", r.Message, p)
				}
			}
			for _, c := range tc.want {
				if strings.Contains(r.Message, c.Path) {
					t.Errorf("integrity message %q names re-recorded %s", r.Message, c.Path)
				}
			}
		})
	}
}

func TestPlanManifestUpdateRefusesBadNames(t *testing.T) {
	root := dpkgRoot(t)
	for _, name := range []string{"../../etc/passwd", "-rf", ""} {
		if _, err := patching.PlanManifestUpdate(root, baseline.Manifest{}, []string{name}); !errors.Is(err, patching.ErrInvalidRequest) {
			t.Errorf("%q: %v, want ErrInvalidRequest", name, err)
		}
	}
}

// integrityBaseline is a baseline of one integrity check over files.
func integrityBaseline(t *testing.T, files []string) *baseline.Baseline {
	t.Helper()
	var b strings.Builder
	b.WriteString("name: manifest-test\nchecks:\n  - id: files\n    title: files as recorded\n    rationale: test\n    severity: critical\n    type: integrity\n    files:\n")
	for _, f := range files {
		fmt.Fprintf(&b, "      - %q\n", f)
	}
	bl, err := baseline.Parse("manifest-test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return bl
}
