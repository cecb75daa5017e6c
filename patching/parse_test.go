package patching

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseSimulation(t *testing.T) {
	tests := map[string]struct {
		out  string
		want []Upgrade
	}{
		"upgrade from two releases": {
			out:  "Inst libssl3 [3.0.11-1~deb12u1] (3.0.15-1~deb12u1 Debian:12.8/stable, Debian-Security:12/stable-security [amd64])\n",
			want: []Upgrade{{Name: "libssl3", From: "3.0.11-1~deb12u1", To: "3.0.15-1~deb12u1", Releases: []string{"Debian:12.8/stable", "Debian-Security:12/stable-security"}}},
		},
		"new package, foreign architecture": {
			out:  "Inst libc6:i386 (2.36-9+deb12u9 Debian:12.8/stable [i386])\n",
			want: []Upgrade{{Name: "libc6:i386", To: "2.36-9+deb12u9", Releases: []string{"Debian:12.8/stable"}}},
		},
		"flat repository without release": {
			out:  "Inst warden-testpkg [1.0-1] (1.0-2 localhost [all])\n",
			want: []Upgrade{{Name: "warden-testpkg", From: "1.0-1", To: "1.0-2", Releases: []string{"localhost"}}},
		},
		"trailing broken marker": {
			out:  "Inst openssl [3.0.11-1] (3.0.15-1 Debian-Security:12/stable-security [amd64]) []\n",
			want: []Upgrade{{Name: "openssl", From: "3.0.11-1", To: "3.0.15-1", Releases: []string{"Debian-Security:12/stable-security"}}},
		},
		"other lines ignored": {
			out: "NOTE: This is only a simulation!\nConf openssl (3.0.15-1 Debian [amd64])\nRemv foo [1]\nInst garbage\n",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := parseSimulation([]byte(tc.out))
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i].Name != tc.want[i].Name || got[i].From != tc.want[i].From || got[i].To != tc.want[i].To || !slices.Equal(got[i].Releases, tc.want[i].Releases) {
					t.Errorf("got %+v, want %+v", got[i], tc.want[i])
				}
			}
		})
	}
}

func TestUpgradeSecurity(t *testing.T) {
	tests := map[string]struct {
		releases []string
		want     bool
	}{
		"debian security":           {[]string{"Debian-Security:12/stable-security"}, true},
		"old debian security suite": {[]string{"Debian-Security:10/oldoldstable"}, true},
		"ubuntu security":           {[]string{"Ubuntu:22.04/jammy-updates", "Ubuntu:22.04/jammy-security"}, true},
		"flat test release":         {[]string{"Debian-Security:stable-security"}, true},
		"stable updates is not":     {[]string{"Debian:12.8/stable-updates"}, false},
		"point release is not":      {[]string{"Debian:12.8/stable"}, false},
		"security in the middle no": {[]string{"Vendor:1/security-tools"}, false},
		"no release information":    {nil, false},
		"local repository is not":   {[]string{"localhost"}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := (Upgrade{Releases: tc.releases}).Security(); got != tc.want {
				t.Errorf("Security() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReadDpkg(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, dpkgAdminDir)
	if err := os.MkdirAll(filepath.Join(dir, "updates"), 0o755); err != nil {
		t.Fatal(err)
	}
	status := `Package: libssl3
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 3.0.11-1~deb12u1
Description: ssl
 with a continuation line
 Version: 0.0 inside a description is not a field

Package: libssl3
Status: install ok installed
Architecture: i386
Version: 3.0.11-1~deb12u1

Package: removed
status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: openssl
Status: install ok installed
Architecture: amd64
Version: 3.0.11-1~deb12u1
`
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	// An interrupted dpkg run left journal entries: 0001 overrides 0000.
	for name, body := range map[string]string{
		"0000":  "Package: openssl\nStatus: install ok half-installed\nArchitecture: amd64\nVersion: 3.0.13-1\n",
		"0001":  "Package: openssl\nStatus: install ok unpacked\nArchitecture: amd64\nVersion: 3.0.15-1\n",
		"tmp.i": "Package: openssl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 0.1\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, "updates", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db, err := readDpkg(root)
	if err != nil {
		t.Fatal(err)
	}
	if p := db["openssl:amd64"]; p.Version != "3.0.15-1" || p.State != "unpacked" {
		t.Errorf("openssl = %+v, want the journal's 3.0.15-1 unpacked", p)
	}
	if got := db.instances("libssl3"); len(got) != 2 || got[0].Arch != "amd64" || got[1].Arch != "i386" {
		t.Errorf("instances(libssl3) = %+v, want amd64 and i386", got)
	}
	if got := db.instances("libssl3:i386"); len(got) != 1 {
		t.Errorf("instances(libssl3:i386) = %+v", got)
	}
	if got := db.instances("removed"); len(got) != 0 {
		t.Errorf("config-files package counted as installed: %+v", got)
	}
	tests := map[string]struct {
		target    Target
		ok, found bool
	}{
		"both architectures at target": {Target{Name: "libssl3", Version: "3.0.11-1~deb12u1"}, true, true},
		"both architectures below":     {Target{Name: "libssl3", Version: "3.0.15-1~deb12u1"}, false, true},
		"one architecture named":       {Target{Name: "libssl3:i386", Version: "3.0.11"}, true, true},
		"newest: only apt knows":       {Target{Name: "openssl"}, true, true},
		"config files only: not found": {Target{Name: "removed", Version: "1.0"}, false, false},
		"absent":                       {Target{Name: "strongswan", Version: "1"}, false, false},
		"architecture not installed":   {Target{Name: "openssl:arm64", Version: "1"}, false, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ok, found := db.satisfied(tc.target)
			if ok != tc.ok || found != tc.found {
				t.Errorf("satisfied(%v) = %v, %v; want %v, %v", tc.target, ok, found, tc.ok, tc.found)
			}
		})
	}
	if _, err := readDpkg(filepath.Join(root, "nowhere")); err == nil {
		t.Error("reading a root without a dpkg database succeeded")
	}
}

func TestChanges(t *testing.T) {
	before := dpkgDB{
		"a:amd64": {Name: "a", Arch: "amd64", Version: "1", State: "installed"},
		"b:amd64": {Name: "b", Arch: "amd64", Version: "1", State: "installed"},
		"c:all":   {Name: "c", Arch: "all", Version: "1", State: "installed"},
		"d:all":   {Name: "d", Arch: "all", Version: "1", State: "config-files"},
	}
	after := dpkgDB{
		"a:amd64": {Name: "a", Arch: "amd64", Version: "2", State: "installed"},
		"b:amd64": {Name: "b", Arch: "amd64", Version: "1", State: "installed"},
		"d:all":   {Name: "d", Arch: "all", Version: "2", State: "installed"},
		"e:amd64": {Name: "e", Arch: "amd64", Version: "1", State: "installed"},
	}
	want := []Installed{
		{Name: "a:amd64", Before: "1", After: "2"},
		{Name: "c:all", Before: "1"},
		{Name: "d:all", After: "2"},
		{Name: "e:amd64", After: "1"},
	}
	if got := changes(before, after); !slices.Equal(got, want) {
		t.Errorf("changes = %+v, want %+v", got, want)
	}
}

func TestAutoInstalled(t *testing.T) {
	root := t.TempDir()
	if a, err := readAutoInstalled(root); err != nil || len(a) != 0 {
		t.Fatalf("no extended_states: %v, %v", a, err)
	}
	if err := os.MkdirAll(filepath.Join(root, "var/lib/apt"), 0o755); err != nil {
		t.Fatal(err)
	}
	body := "Package: libssl3\nArchitecture: amd64\nAuto-Installed: 1\n\nPackage: tool\nArchitecture: amd64\nAuto-Installed: 1\n\nPackage: manual\nArchitecture: amd64\nAuto-Installed: 0\n"
	if err := os.WriteFile(filepath.Join(root, extendedStates), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := readAutoInstalled(root)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		p    pkgInstance
		want bool
	}{
		"same architecture":              {pkgInstance{Name: "libssl3", Arch: "amd64"}, true},
		"other architecture":             {pkgInstance{Name: "libssl3", Arch: "i386"}, false},
		"arch all recorded under native": {pkgInstance{Name: "tool", Arch: "all"}, true},
		"manual":                         {pkgInstance{Name: "manual", Arch: "amd64"}, false},
		"absent":                         {pkgInstance{Name: "nope", Arch: "all"}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := a.has(tc.p); got != tc.want {
				t.Errorf("has(%+v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	in := "E: Failed to fetch https://user:s3cret@mirror.example/debian/dists/x and http://tok@h/p but not file:/srv/a@b"
	out := redact(in)
	if strings.Contains(out, "s3cret") || strings.Contains(out, "tok@") {
		t.Errorf("redact left a credential: %s", out)
	}
	if !strings.Contains(out, "https://***@mirror.example/debian") || !strings.Contains(out, "file:/srv/a@b") {
		t.Errorf("redact changed more than credentials: %s", out)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 8}
	b.Write([]byte("0123"))
	b.Write([]byte("456789ab"))
	if got := string(b.Bytes()); got != "[…]\n456789ab" {
		t.Errorf("tail = %q", got)
	}
	s := &tailBuffer{max: 8}
	s.Write([]byte("abc"))
	if got := string(s.Bytes()); got != "abc" {
		t.Errorf("short = %q", got)
	}
}
