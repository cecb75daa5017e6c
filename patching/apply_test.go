package patching_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/patching"
)

// fakeApt stands in for apt-get and apt-mark at the Runner seam. An
// install rewrites the root's dpkg status the way dpkg would, setting each
// pinned package to its pinned version (unpinned ones to newest).
type fakeApt struct {
	mu         sync.Mutex
	root       string
	cmds       []patching.Command
	simulation string
	newest     map[string]string
	failOn     string // a verb ("install", "update") to fail
	failOutput string
}

func (f *fakeApt) Run(_ context.Context, c patching.Command) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, c)
	verb := verbOf(c)
	if verb == f.failOn {
		return []byte(f.failOutput), errors.New("exit status 100")
	}
	switch {
	case slices.Contains(c.Args, "-s"):
		return []byte(f.simulation), nil
	case verb == "install":
		if f.root == "" || f.root == "/" {
			panic("fakeApt would write the host's dpkg status")
		}
		pkgs := readStatus(f.root)
		for _, a := range c.Args[slices.Index(c.Args, "install")+1:] {
			name, version, pinned := strings.Cut(a, "=")
			if !pinned {
				version = f.newest[name]
			}
			pkgs[name] = version
		}
		writeStatus(f.root, pkgs)
		// apt-get install marks what it was given as manual.
		os.Remove(filepath.Join(f.root, "var/lib/apt/extended_states"))
	}
	return []byte("ok\n"), nil
}

func (f *fakeApt) verbs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.cmds {
		out = append(out, filepath.Base(c.Path)+" "+verbOf(c))
	}
	return out
}

func (f *fakeApt) last(verb string) patching.Command {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.cmds) - 1; i >= 0; i-- {
		if verbOf(f.cmds[i]) == verb {
			return f.cmds[i]
		}
	}
	return patching.Command{}
}

// verbOf is the first argument that is neither an option nor an option's
// value.
func verbOf(c patching.Command) string {
	for i := 0; i < len(c.Args); i++ {
		a := c.Args[i]
		if a == "-o" {
			i++
			continue
		}
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}

func fakeRoot(t *testing.T, pkgs map[string]string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "var/lib/dpkg/updates"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeStatus(root, pkgs)
	return root
}

func writeStatus(root string, pkgs map[string]string) {
	var b strings.Builder
	for _, n := range slices.Sorted(maps.Keys(pkgs)) {
		fmt.Fprintf(&b, "Package: %s\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nVersion: %s\nDescription: test\n two lines\n\n", n, pkgs[n])
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), []byte(b.String()), 0o644); err != nil {
		panic(err)
	}
}

func readStatus(root string) map[string]string {
	b, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		panic(err)
	}
	out := map[string]string{}
	var name string
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Package: "); ok {
			name = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "Version: "); ok {
			out[name] = strings.TrimSpace(v)
		}
	}
	return out
}

func TestApplyArgumentArrays(t *testing.T) {
	root := fakeRoot(t, map[string]string{"openssl": "3.0.11-1~deb12u1", "libssl3": "3.0.11-1~deb12u1", "curl": "7.88.1-10"})
	apt := &fakeApt{root: root}
	res, err := patching.Apply(t.Context(), patching.Request{
		Root: root,
		Packages: []patching.Target{
			{Name: "openssl", Version: "3.0.15-1~deb12u1"},
			{Name: "libssl3:amd64", Version: "3.0.15-1~deb12u1"},
			{Name: "curl", Version: "7.88.1-10"}, // already there: not pinned again
		},
		Sources: []string{"deb [trusted=yes] file:/srv/repo ./"},
		Runner:  apt,
	})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got, want := apt.verbs(), []string{"apt-get update", "apt-get install"}; !slices.Equal(got, want) {
		t.Fatalf("ran %v, want %v", got, want)
	}
	install := apt.last("install")
	if install.Path != "/usr/bin/apt-get" {
		t.Errorf("install runs %q, want /usr/bin/apt-get", install.Path)
	}
	tail := install.Args[slices.Index(install.Args, "install")+1:]
	if want := []string{"openssl=3.0.15-1~deb12u1", "libssl3:amd64=3.0.15-1~deb12u1"}; !slices.Equal(tail, want) {
		t.Errorf("install targets %q, want pinned %q", tail, want)
	}
	opts := strings.Join(install.Args, "\x00")
	for _, want := range []string{
		"-y", "--only-upgrade", "--no-install-recommends", "--no-remove",
		"-o\x00Dir=" + root + "/",
		"-o\x00Dir::State::status=" + filepath.Join(root, "var/lib/dpkg/status"),
		"-o\x00DPkg::Options::=--root=" + root,
		"-o\x00DPkg::Options::=--log=" + filepath.Join(root, "var/log/dpkg.log"),
		"-o\x00DPkg::Options::=--force-confdef",
		"-o\x00DPkg::Options::=--force-confold",
	} {
		if !strings.Contains("\x00"+opts+"\x00", "\x00"+want+"\x00") {
			t.Errorf("install arguments lack %q:\n%q", strings.ReplaceAll(want, "\x00", " "), install.Args)
		}
	}
	for _, a := range install.Args {
		if strings.ContainsAny(a, "|;&$`") {
			t.Errorf("argument %q looks like shell syntax", a)
		}
	}
	env := strings.Join(install.Env, "\n")
	if !strings.Contains(env, "DEBIAN_FRONTEND=noninteractive") || !strings.Contains(env, "APT_CONFIG="+root+"/var/lib/apt/") {
		t.Errorf("environment %q lacks the non-interactive frontend or the root's APT_CONFIG", install.Env)
	}
	if !res.Changed || len(res.Installed) != 2 {
		t.Errorf("result %+v, want openssl and libssl3 changed", res)
	}
	// The private work directory (APT_CONFIG, sources) is gone.
	if left, _ := filepath.Glob(filepath.Join(root, "var/lib/apt/warden-patch-*")); len(left) > 0 {
		t.Errorf("work directory left behind: %v", left)
	}
}

func TestHostRootHasNoRedirection(t *testing.T) {
	// On a gateway the root is "/": apt and dpkg run with their own
	// configuration, nothing points them elsewhere. Only Plan (a
	// simulation) and satisfied targets are used here, so the fake runner
	// never pretends to install on this machine.
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		t.Skip("not a Debian system")
	}
	apt := &fakeApt{simulation: "Inst dpkg [1.21.22] (1.21.23 Debian-Security:12/stable-security [amd64])\n"}
	res, err := patching.Apply(t.Context(), patching.Request{Root: "/", Packages: []patching.Target{{Name: "dpkg", Version: "1.0"}}, Runner: apt})
	if err != nil || res.Changed || len(apt.verbs()) != 0 {
		t.Fatalf("Apply on / with a satisfied target = %+v, %v, ran %v", res, err, apt.verbs())
	}
	plan, err := patching.Plan(t.Context(), patching.Request{Root: "/", Packages: []patching.Target{{Name: "dpkg"}}, Runner: apt})
	if err != nil || len(plan) != 1 || plan[0].To != "1.21.23" || !plan[0].Security() {
		t.Fatalf("Plan on / = %+v, %v", plan, err)
	}
	sim := apt.last("install")
	if want := []string{"-s", "--only-upgrade", "--no-install-recommends", "--no-remove", "install", "dpkg"}; !slices.Equal(sim.Args[len(sim.Args)-len(want):], want) {
		t.Errorf("simulation arguments %q, want to end with %q", sim.Args, want)
	}
	for _, a := range sim.Args {
		if strings.HasPrefix(a, "Dir") || strings.Contains(a, "--root") || strings.Contains(a, "--log") {
			t.Errorf("argument %q redirects apt or dpkg on the real root", a)
		}
	}
	for _, e := range sim.Env {
		if strings.HasPrefix(e, "APT_CONFIG=") {
			t.Errorf("environment sets %s on the real root", e)
		}
	}
	if left, _ := filepath.Glob("/var/lib/apt/warden-patch-*"); len(left) > 0 {
		t.Errorf("work directory created on the real root: %v", left)
	}
}

func TestApplyIdempotent(t *testing.T) {
	tests := map[string]struct {
		installed map[string]string
		targets   []patching.Target
	}{
		"exactly at target":   {map[string]string{"openssl": "3.0.15-1"}, []patching.Target{{Name: "openssl", Version: "3.0.15-1"}}},
		"above target":        {map[string]string{"openssl": "3.0.15-2"}, []patching.Target{{Name: "openssl", Version: "3.0.15-1"}}},
		"epoch wins":          {map[string]string{"openssl": "1:1.0-1"}, []patching.Target{{Name: "openssl", Version: "9.9-9"}}},
		"tilde sorts before":  {map[string]string{"openssl": "3.0.15-1"}, []patching.Target{{Name: "openssl", Version: "3.0.15-1~deb12u1"}}},
		"several all present": {map[string]string{"a1": "2", "b2": "3"}, []patching.Target{{Name: "a1", Version: "1"}, {Name: "b2", Version: "3"}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := fakeRoot(t, tc.installed)
			apt := &fakeApt{root: root}
			res, err := patching.Apply(t.Context(), patching.Request{Root: root, Packages: tc.targets, Runner: apt})
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if res.Changed || len(res.Installed) != 0 {
				t.Errorf("result %+v, want unchanged", res)
			}
			if v := apt.verbs(); len(v) != 0 {
				t.Errorf("apt ran %v although every target was satisfied", v)
			}
		})
	}
}

func TestApplyTwiceSecondUnchanged(t *testing.T) {
	root := fakeRoot(t, map[string]string{"openssl": "3.0.11-1"})
	apt := &fakeApt{root: root}
	req := patching.Request{Root: root, Packages: []patching.Target{{Name: "openssl", Version: "3.0.15-1"}}, Runner: apt}
	first, err := patching.Apply(t.Context(), req)
	if err != nil || !first.Changed {
		t.Fatalf("first Apply = %+v, %v", first, err)
	}
	n := len(apt.verbs())
	second, err := patching.Apply(t.Context(), req)
	if err != nil || second.Changed {
		t.Fatalf("second Apply = %+v, %v; want unchanged", second, err)
	}
	if len(apt.verbs()) != n {
		t.Errorf("second Apply ran apt: %v", apt.verbs()[n:])
	}
}

func TestApplySecurityOnly(t *testing.T) {
	root := fakeRoot(t, map[string]string{"openssl": "3.0.11-1~deb12u1", "libssl3": "3.0.11-1~deb12u1", "tzdata": "2024a-0+deb12u1", "bash": "5.2.15-2+b2"})
	apt := &fakeApt{root: root, simulation: `Reading package lists...
Inst libssl3 [3.0.11-1~deb12u1] (3.0.15-1~deb12u1 Debian:12.8/stable, Debian-Security:12/stable-security [amd64])
Inst openssl [3.0.11-1~deb12u1] (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64]) []
Inst tzdata [2024a-0+deb12u1] (2024b-0+deb12u1 Debian:12.8/stable-updates [all])
Inst newdep (1.0-1 Debian:12.8/stable [amd64])
Conf libssl3 (3.0.15-1~deb12u1 Debian:12.8/stable, Debian-Security:12/stable-security [amd64])
`}
	res, err := patching.Apply(t.Context(), patching.Request{Root: root, SecurityOnly: true, Runner: apt})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got, want := apt.verbs(), []string{"apt-get update", "apt-get dist-upgrade", "apt-get install"}; !slices.Equal(got, want) {
		t.Fatalf("ran %v, want %v", got, want)
	}
	install := apt.last("install")
	tail := install.Args[slices.Index(install.Args, "install")+1:]
	if want := []string{"libssl3=3.0.15-1~deb12u1", "openssl=3.0.15-1~deb12u1"}; !slices.Equal(tail, want) {
		t.Errorf("installed %q, want only the security updates pinned %q", tail, want)
	}
	want := []patching.Installed{
		{Name: "libssl3:amd64", Before: "3.0.11-1~deb12u1", After: "3.0.15-1~deb12u1"},
		{Name: "openssl:amd64", Before: "3.0.11-1~deb12u1", After: "3.0.15-1~deb12u1"},
	}
	if !slices.Equal(res.Installed, want) {
		t.Errorf("installed %+v, want %+v", res.Installed, want)
	}
	if got := res.Targets(); len(got) != 2 || got[0] != (patching.Target{Name: "libssl3:amd64", Version: "3.0.15-1~deb12u1"}) {
		t.Errorf("Targets() = %+v", got)
	}

	// Nothing from a security release pending: no install.
	apt = &fakeApt{root: root, simulation: "Inst tzdata [2024a-0+deb12u1] (2024b-0+deb12u1 Debian:12.8/stable-updates [all])\n"}
	res, err = patching.Apply(t.Context(), patching.Request{Root: root, SecurityOnly: true, Runner: apt})
	if err != nil || res.Changed {
		t.Fatalf("Apply with no security update = %+v, %v", res, err)
	}
	if got, want := apt.verbs(), []string{"apt-get update", "apt-get dist-upgrade"}; !slices.Equal(got, want) {
		t.Errorf("ran %v, want %v", got, want)
	}
}

func TestApplyRestoresAutomaticMarks(t *testing.T) {
	root := fakeRoot(t, map[string]string{"libssl3": "3.0.11-1", "openssl": "3.0.11-1"})
	if err := os.MkdirAll(filepath.Join(root, "var/lib/apt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/apt/extended_states"), []byte("Package: libssl3\nArchitecture: amd64\nAuto-Installed: 1\n\nPackage: openssl\nArchitecture: amd64\nAuto-Installed: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	apt := &fakeApt{root: root}
	_, err := patching.Apply(t.Context(), patching.Request{Root: root, Runner: apt, Packages: []patching.Target{
		{Name: "libssl3", Version: "3.0.15-1"}, {Name: "openssl", Version: "3.0.15-1"},
	}})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	mark := apt.last("auto")
	if mark.Path != "/usr/bin/apt-mark" {
		t.Fatalf("apt-mark auto not run; ran %v", apt.verbs())
	}
	if tail := mark.Args[slices.Index(mark.Args, "auto")+1:]; !slices.Equal(tail, []string{"libssl3:amd64"}) {
		t.Errorf("apt-mark auto %q, want only libssl3:amd64", tail)
	}
}

func TestApplyErrors(t *testing.T) {
	tests := map[string]struct {
		req          patching.Request
		failOn, out  string
		wantIs       error
		wantTerminal bool
		wantRuns     int
	}{
		"not installed": {
			req:    patching.Request{Packages: []patching.Target{{Name: "strongswan", Version: "5.9.8-5+deb12u1"}}},
			wantIs: patching.ErrNotInstalled, wantTerminal: true,
		},
		"unknown version": {
			req:    patching.Request{Packages: []patching.Target{{Name: "openssl", Version: "9.9-1"}}},
			failOn: "install", out: "Reading package lists...\nE: Version '9.9-1' for 'openssl' was not found\n",
			wantTerminal: true, wantRuns: 2,
		},
		"unmet dependency": {
			req:    patching.Request{Packages: []patching.Target{{Name: "openssl", Version: "9.9-1"}}},
			failOn: "install", out: "The following packages have unmet dependencies:\n openssl : Depends: libfoo but it is not installable\nE: Unable to correct problems, you have held broken packages.\n",
			wantTerminal: true, wantRuns: 2,
		},
		"lock held: retry later": {
			req:    patching.Request{Packages: []patching.Target{{Name: "openssl", Version: "9.9-1"}}},
			failOn: "install", out: "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (unattended-upgr)\n",
			wantTerminal: false, wantRuns: 2,
		},
		"mirror unreachable: retry later": {
			req:    patching.Request{Packages: []patching.Target{{Name: "openssl", Version: "9.9-1"}}, Sources: []string{"deb https://user:s3cret@mirror.invalid/debian bookworm main"}},
			failOn: "update", out: "Err:1 https://user:s3cret@mirror.invalid/debian bookworm InRelease\nE: Failed to fetch https://user:s3cret@mirror.invalid/debian/dists/bookworm/InRelease  Could not resolve 'mirror.invalid'\n",
			wantTerminal: false, wantRuns: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := fakeRoot(t, map[string]string{"openssl": "3.0.11-1"})
			apt := &fakeApt{root: root, failOn: tc.failOn, failOutput: tc.out}
			tc.req.Root, tc.req.Runner = root, apt
			_, err := patching.Apply(t.Context(), tc.req)
			if err == nil {
				t.Fatal("Apply succeeded")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v is not %v", err, tc.wantIs)
			}
			if tc.failOn != "" {
				var aptErr *patching.AptError
				if !errors.As(err, &aptErr) || len(aptErr.Messages) == 0 {
					t.Errorf("error %v is not an *AptError with apt's messages", err)
				}
			}
			if actions.IsTerminal(err) != tc.wantTerminal {
				t.Errorf("terminal = %v, want %v (%v)", actions.IsTerminal(err), tc.wantTerminal, err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks a credential: %v", err)
			}
			if n := len(apt.verbs()); n != tc.wantRuns {
				t.Errorf("ran %v, want %d runs", apt.verbs(), tc.wantRuns)
			}
		})
	}
}

func TestRequestValidation(t *testing.T) {
	ok := []patching.Target{{Name: "openssl", Version: "3.0.15-1"}}
	tests := map[string]patching.Request{
		"empty root":                {Packages: ok},
		"relative root":             {Root: "srv/gw", Packages: ok},
		"root with a quote":         {Root: `/srv/gw";Dir "/`, Packages: ok},
		"nothing to do":             {Root: "/"},
		"both targets and security": {Root: "/", Packages: ok, SecurityOnly: true},
		"option as package":         {Root: "/", Packages: []patching.Target{{Name: "--allow-downgrades"}}},
		"shell in package":          {Root: "/", Packages: []patching.Target{{Name: "openssl;reboot"}}},
		"upper case package":        {Root: "/", Packages: []patching.Target{{Name: "OpenSSL"}}},
		"package named twice":       {Root: "/", Packages: []patching.Target{{Name: "openssl"}, {Name: "openssl", Version: "1"}}},
		"version with space":        {Root: "/", Packages: []patching.Target{{Name: "openssl", Version: "1 2"}}},
		"version not a digit":       {Root: "/", Packages: []patching.Target{{Name: "openssl", Version: "latest"}}},
		"source with newline":       {Root: "/", Packages: ok, Sources: []string{"deb file:/a ./\ndeb file:/b ./"}},
		"source not deb":            {Root: "/", Packages: ok, Sources: []string{"rm -rf /"}},
	}
	for name, req := range tests {
		t.Run(name, func(t *testing.T) {
			apt := &fakeApt{}
			req.Runner = apt
			_, err := patching.Apply(t.Context(), req)
			if !errors.Is(err, patching.ErrInvalidRequest) || !actions.IsTerminal(err) {
				t.Errorf("Apply = %v; want terminal ErrInvalidRequest", err)
			}
			if _, err := patching.Plan(t.Context(), req); !errors.Is(err, patching.ErrInvalidRequest) {
				t.Errorf("Plan = %v; want ErrInvalidRequest", err)
			}
			if len(apt.verbs()) != 0 {
				t.Errorf("ran %v for an invalid request", apt.verbs())
			}
		})
	}
}

func TestPlanPinnedTargetsFromDpkgAlone(t *testing.T) {
	root := fakeRoot(t, map[string]string{"openssl": "3.0.11-1", "curl": "7.88.1-10"})
	apt := &fakeApt{root: root}
	plan, err := patching.Plan(t.Context(), patching.Request{Root: root, Runner: apt, Packages: []patching.Target{
		{Name: "openssl", Version: "3.0.15-1"}, {Name: "curl", Version: "7.88.1-10"},
	}})
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	want := []patching.Upgrade{{Name: "openssl:amd64", From: "3.0.11-1", To: "3.0.15-1"}}
	if len(plan) != 1 || plan[0].Name != want[0].Name || plan[0].From != want[0].From || plan[0].To != want[0].To {
		t.Errorf("plan %+v, want %+v", plan, want)
	}
	if len(apt.verbs()) != 0 {
		t.Errorf("Plan ran %v", apt.verbs())
	}
	if readStatus(root)["openssl"] != "3.0.11-1" {
		t.Error("Plan changed the root")
	}
}
