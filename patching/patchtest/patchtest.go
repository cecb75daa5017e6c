// Package patchtest builds what tests of package patching need, entirely
// inside directories the test owns: Debian packages made with dpkg-deb, a
// flat local repository with a Packages index (and, optionally, a Release
// file naming its origin and suite), and isolated roots holding a minimal
// dpkg database into which a first version is installed with dpkg --root.
// It also snapshots the host's package database and logs so a test can
// prove that nothing was installed on the machine running it.
//
// It must not install anything on the host, talk to any network or registry,
// or be imported by non-test code.
package patchtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Require skips the test unless it runs as root on a machine with apt-get,
// dpkg and dpkg-deb: dpkg refuses to install as another user, even into a
// directory the user owns.
func Require(t testing.TB) {
	t.Helper()
	for _, p := range []string{"/usr/bin/apt-get", "/usr/bin/apt-mark", "/usr/bin/dpkg", "/usr/bin/dpkg-deb", "/usr/bin/dpkg-query"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("package patching tests need apt and dpkg (Debian packages apt, dpkg): %s: %v", p, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("package patching tests need root: dpkg installs into the test's roots only as root")
	}
}

// Package describes a package to build.
type Package struct {
	Name    string
	Version string
	// Arch defaults to "all".
	Arch string
	// Depends is the control file's Depends field, if any.
	Depends string
	// Files maps absolute paths inside the root to contents; every file
	// is executable.
	Files map[string]string
}

func (p Package) arch() string {
	if p.Arch == "" {
		return "all"
	}
	return p.Arch
}

// FileName is the archive's conventional name.
func (p Package) FileName() string {
	return fmt.Sprintf("%s_%s_%s.deb", p.Name, p.Version, p.arch())
}

func (p Package) control() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Package: %s\nVersion: %s\nArchitecture: %s\n", p.Name, p.Version, p.arch())
	b.WriteString("Maintainer: Warden tests <tests@warden.invalid>\n")
	if p.Depends != "" {
		fmt.Fprintf(&b, "Depends: %s\n", p.Depends)
	}
	fmt.Fprintf(&b, "Priority: optional\nSection: misc\nDescription: %s test package %s\n", p.Name, p.Version)
	return b.String()
}

// BuildDeb builds p into dir with dpkg-deb and returns the archive's path.
// The files are owned by root in the archive whoever builds it.
func BuildDeb(t testing.TB, dir string, p Package) string {
	t.Helper()
	tree, err := os.MkdirTemp(t.TempDir(), "build-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(tree, "DEBIAN"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "DEBIAN", "control"), []byte(p.control()), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, content := range p.Files {
		dst := filepath.Join(tree, filepath.Clean("/"+path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, p.FileName())
	run(t, "dpkg-deb", "--root-owner-group", "-Zgzip", "--build", tree, out)
	return out
}

// Release names a repository's origin the way apt prints it in
// simulations ("Debian-Security:stable-security").
type Release struct {
	Origin, Label, Suite, Codename string
}

// Repo is a flat repository ("deb [trusted=yes] file:DIR ./").
type Repo struct {
	Dir string
	// Debs maps "name_version" to the archive's path.
	Debs map[string]string
}

// Source is the repository's one-line apt source.
func (r Repo) Source() string {
	return "deb [trusted=yes] file:" + r.Dir + " ./"
}

// Deb returns the path of a package's archive in the repository.
func (r Repo) Deb(t testing.TB, name, version string) string {
	t.Helper()
	p, ok := r.Debs[name+"_"+version]
	if !ok {
		t.Fatalf("repository %s has no %s %s", r.Dir, name, version)
	}
	return p
}

// NewRepo builds pkgs into dir and writes the Packages index apt reads (and
// a Release file when rel is not nil). The index is written here from the
// control data, size and SHA-256 of each archive, so dpkg-dev is not
// needed.
func NewRepo(t testing.TB, dir string, rel *Release, pkgs ...Package) Repo {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// apt fetches as the unprivileged _apt user: let it reach the
	// repository through the test's private temporary directories.
	openPath(t, dir)
	repo := Repo{Dir: dir, Debs: map[string]string{}}
	sorted := append([]Package(nil), pkgs...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Name != sorted[j].Name {
			return sorted[i].Name < sorted[j].Name
		}
		return sorted[i].Version < sorted[j].Version
	})
	var index bytes.Buffer
	for _, p := range sorted {
		deb := BuildDeb(t, dir, p)
		repo.Debs[p.Name+"_"+p.Version] = deb
		b, err := os.ReadFile(deb)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		index.WriteString(p.control())
		fmt.Fprintf(&index, "Filename: ./%s\nSize: %d\nSHA256: %s\n\n", p.FileName(), len(b), hex.EncodeToString(sum[:]))
	}
	if err := os.WriteFile(filepath.Join(dir, "Packages"), index.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if rel != nil {
		sum := sha256.Sum256(index.Bytes())
		release := fmt.Sprintf("Origin: %s\nLabel: %s\nSuite: %s\nCodename: %s\nDate: %s\nArchitectures: all amd64 arm64\nSHA256:\n %s %d Packages\n",
			rel.Origin, rel.Label, rel.Suite, rel.Codename, time.Now().UTC().Format(time.RFC1123),
			hex.EncodeToString(sum[:]), index.Len())
		if err := os.WriteFile(filepath.Join(dir, "Release"), []byte(release), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return repo
}

// openPath makes dir and its parents up to the file system root
// traversable by other users, where the test owns them.
func openPath(t testing.TB, dir string) {
	t.Helper()
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o005 == 0o005 {
			continue
		}
		if strings.HasPrefix(d, os.TempDir()+"/") {
			if err := os.Chmod(d, fi.Mode().Perm()|0o055); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// NewRoot creates an isolated root under dir with an empty dpkg database
// and the directories apt expects, and returns its path.
func NewRoot(t testing.TB, dir string) string {
	t.Helper()
	for _, d := range []string{
		"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/lib/dpkg/alternatives",
		"var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/log/apt",
		"etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d", "etc/apt/trusted.gpg.d",
		"usr/local/bin", "tmp",
	} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "etc/apt/sources.list"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	openPath(t, dir)
	return dir
}

// InstallDeb installs an archive into root with dpkg --root (database and
// files under root, its log under root too: dpkg 1.21 otherwise appends to
// the host's /var/log/dpkg.log).
func InstallDeb(t testing.TB, root, deb string) {
	t.Helper()
	run(t, "dpkg", "--root="+root, "--log="+filepath.Join(root, "var/log/dpkg.log"),
		"--force-confdef", "--force-confold", "-i", deb)
}

// InstalledVersion asks dpkg-query (not the parser under test) for the
// installed version of name in root; "" when it is not installed.
func InstalledVersion(t testing.TB, root, name string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"),
		"-W", "-f", "${db:Status-Status} ${Version}", name)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	status, version, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if status != "installed" {
		return ""
	}
	return version
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	// dpkg-deb's temporary files go to the test's directory, not /tmp.
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive", "TMPDIR=" + t.TempDir()}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// HostSnapshot is the state of the host's package database and package
// logs at one moment, to prove afterwards that a test installed nothing on
// the host.
type HostSnapshot struct {
	files map[string]fileState
}

type fileState struct {
	sum  string // SHA-256, "" when absent
	size int
}

// hostFiles are where a package run on the host leaves traces: dpkg's
// database and log, apt's state, logs and cache, debconf's database.
var hostFiles = []string{
	"/var/lib/dpkg/status",
	"/var/log/dpkg.log",
	"/var/lib/apt/extended_states",
	"/var/log/apt/history.log",
	"/var/log/apt/term.log",
	"/var/cache/debconf/config.dat",
}

// SnapshotHost records the host files a package run would change.
func SnapshotHost(t testing.TB) HostSnapshot {
	t.Helper()
	s := HostSnapshot{files: map[string]fileState{}}
	for _, f := range hostFiles {
		s.files[f], _ = readState(t, f)
	}
	return s
}

func readState(t testing.TB, path string) (fileState, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return fileState{}, nil
	}
	if err != nil {
		t.Fatalf("reading host file %s: %v", path, err)
	}
	sum := sha256.Sum256(b)
	return fileState{sum: hex.EncodeToString(sum[:]), size: len(b)}, b
}

// AssertUntouched fails the test when the host shows a trace of pkg: the
// dpkg status database must be byte-identical to the snapshot; the logs
// and other state (which other package runs on the host may append to)
// must not have gained a mention of pkg; and none of files (paths a test
// package installs) may exist on the host.
func (s HostSnapshot) AssertUntouched(t testing.TB, pkg string, files ...string) {
	t.Helper()
	for _, f := range hostFiles {
		was := s.files[f]
		now, b := readState(t, f)
		if now == was {
			continue
		}
		if strings.HasSuffix(f, ".log") && len(b) >= was.size {
			b = b[was.size:] // what was appended
		}
		mentions := bytes.Contains(b, []byte(pkg))
		switch {
		case mentions:
			t.Errorf("host file %s changed during the test and now mentions %s: the package reached the host", f, pkg)
		case f == "/var/lib/dpkg/status":
			t.Errorf("host dpkg status changed during the test (it does not mention %s: another package run on this host at the same time?)", pkg)
		default:
			t.Logf("host file %s changed during the test without mentioning %s (another package run on this host)", f, pkg)
		}
	}
	for _, f := range files {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s exists on the host: the test package was installed outside its root", f)
		}
	}
}
