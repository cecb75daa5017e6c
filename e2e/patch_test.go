package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/warden-ir/warden/baseline"
	"github.com/warden-ir/warden/patching"
	"github.com/warden-ir/warden/patching/patchtest"
)

const (
	patchPkg = "warden-testpkg"
	// patchBin is where the test package puts its program, inside each
	// root; it must never appear at this path on the host.
	patchBin = "/usr/local/bin/warden-testpkg"
)

// patchPackage is one version of the test package: a program that prints
// its version, and exits with status 1 when broken (a service that does
// not come back after the update).
func patchPackage(version, depends string, broken bool) patchtest.Package {
	script := "#!/bin/sh\necho " + patchPkg + " " + version + "\n"
	if broken {
		script += "exit 1\n"
	}
	return patchtest.Package{Name: patchPkg, Version: version, Depends: depends, Files: map[string]string{patchBin: script}}
}

// readOnlyHostEnv names, for the helper process, the one directory that
// stays writable.
const readOnlyHostEnv = "WARDEN_PATCH_E2E_WRITABLE"

// readOnlyHost runs every apt command in a private mount namespace where
// the whole file system is read-only except dir (the test's roots and
// repository): any write apt or dpkg tried anywhere else on the host would
// fail the run. Together with the host snapshot this proves isolation
// physically, not only by comparing a few files afterwards.
type readOnlyHost struct{ dir string }

func (r readOnlyHost) wrap(c patching.Command) patching.Command {
	args := []string{"--mount", "--propagation", "private", "--",
		os.Args[0], "-test.run=^TestPatchReadOnlyHostHelper$", "-test.count=1", "--", c.Path}
	return patching.Command{
		Path: "/usr/bin/unshare",
		Args: append(args, c.Args...),
		Env:  append(slices.Clone(c.Env), readOnlyHostEnv+"="+r.dir),
	}
}

func (r readOnlyHost) Run(ctx context.Context, c patching.Command) ([]byte, error) {
	return patching.ExecRunner{}.Run(ctx, r.wrap(c))
}

// newReadOnlyHost returns the runner when this machine can make private
// read-only mounts, nil otherwise. It probes without writing: the host's
// dpkg directory must not be writable inside, dir must be.
func newReadOnlyHost(t testing.TB, dir string) *readOnlyHost {
	t.Helper()
	r := &readOnlyHost{dir: dir}
	env := []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	if _, err := r.Run(t.Context(), patching.Command{Path: "/usr/bin/test", Args: []string{"-w", dir}, Env: env}); err != nil {
		t.Logf("read-only host namespace unavailable (%v): isolation is proven by the host snapshot alone", err)
		return nil
	}
	if _, err := r.Run(t.Context(), patching.Command{Path: "/usr/bin/test", Args: []string{"-w", "/var/lib/dpkg"}, Env: env}); err == nil {
		t.Fatal("the host's /var/lib/dpkg is writable inside the read-only namespace")
	}
	return r
}

// TestPatchReadOnlyHostHelper is not a test: readOnlyHost starts the test
// binary with it inside a fresh mount namespace to make the file system
// read-only except one directory, then replace itself with the command
// after "--".
func TestPatchReadOnlyHostHelper(t *testing.T) {
	dir := os.Getenv(readOnlyHostEnv)
	if dir == "" {
		t.Skip("helper process of the patch e2e tests")
	}
	args := flag.Args()
	if len(args) == 0 {
		t.Fatal("no command after --")
	}
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		t.Fatalf("binding %s: %v", dir, err)
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remounting / read-only: %v", err)
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, readOnlyHostEnv+"=") {
			env = append(env, e)
		}
	}
	t.Fatal(syscall.Exec(args[0], args, env))
}

// patchLab is a fleet of isolated roots, each a gateway's file system with
// the test package at 1.0-1 installed by dpkg, and a local repository.
type patchLab struct {
	repo  patchtest.Repo
	roots map[string]string
	names []string
	// exec runs apt: in a read-only host namespace when available.
	exec patching.Runner
	// runs counts apt runs per gateway.
	mu   sync.Mutex
	runs map[string]int
}

// newPatchLab builds the lab; with readOnly, apt runs where the rest of the
// host is read-only (when the machine allows it).
func newPatchLab(t testing.TB, gateways int, update patchtest.Package, readOnly bool) *patchLab {
	t.Helper()
	base := t.TempDir()
	l := &patchLab{roots: map[string]string{}, runs: map[string]int{}, exec: patching.ExecRunner{}}
	if readOnly {
		if ro := newReadOnlyHost(t, base); ro != nil {
			t.Logf("apt and dpkg run in a mount namespace where everything but %s is read-only", base)
			l.exec = ro
		}
	}
	l.repo = patchtest.NewRepo(t, filepath.Join(base, "repo"), nil, patchPackage("1.0-1", "", false), update)
	for i := range gateways {
		gw := fmt.Sprintf("gw%d", i+1)
		root := patchtest.NewRoot(t, filepath.Join(base, gw))
		patchtest.InstallDeb(t, root, l.repo.Deb(t, patchPkg, "1.0-1"))
		l.roots[gw] = root
		l.names = append(l.names, gw)
	}
	return l
}

// gatewayRunner counts one gateway's apt runs and runs them for real.
type gatewayRunner struct {
	lab *patchLab
	gw  string
}

func (r gatewayRunner) Run(ctx context.Context, c patching.Command) ([]byte, error) {
	r.lab.mu.Lock()
	r.lab.runs[r.gw]++
	r.lab.mu.Unlock()
	return r.lab.exec.Run(ctx, c)
}

func (l *patchLab) aptRuns(gw string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.runs[gw]
}

var patchTargets = []patching.Target{{Name: patchPkg, Version: "1.0-2"}}

// options wires RunWaves to the roots the way the controller wires it to
// agents: Apply patches one gateway, Verify checks its version, that its
// service runs, and that the package baseline passes.
func (l *patchLab) options(t testing.TB) patching.WaveOptions {
	bl, err := baseline.Parse("patch-e2e.yaml", []byte(`name: patch-e2e
checks:
  - id: packages
    title: test package patched
    rationale: the fleet must carry the fix
    severity: high
    type: packages
    minimum_versions:
      warden-testpkg: "1.0-2"
`))
	if err != nil {
		t.Fatalf("parsing the package baseline: %v", err)
	}
	return patching.WaveOptions{
		Canary:   1,
		WaveSize: 2,
		Apply: func(ctx context.Context, gw string) (patching.Result, error) {
			return patching.Apply(ctx, patching.Request{
				Root:     l.roots[gw],
				Packages: patchTargets,
				Sources:  []string{l.repo.Source()},
				Runner:   gatewayRunner{l, gw},
			})
		},
		Verify: func(ctx context.Context, gw string) error {
			root := l.roots[gw]
			_, err := patching.Verify(ctx, root, patchTargets, patching.VerifyHooks{
				Services: func(ctx context.Context) error {
					// The "service" is the program the package installed
					// in the root: it must run and be the new version.
					out, err := exec.CommandContext(ctx, filepath.Join(root, patchBin)).CombinedOutput()
					if err != nil {
						return fmt.Errorf("service %s does not run: %w (%s)", patchBin, err, strings.TrimSpace(string(out)))
					}
					if !strings.Contains(string(out), "1.0-2") {
						return fmt.Errorf("service reports %q, want 1.0-2", strings.TrimSpace(string(out)))
					}
					return nil
				},
				Baseline: func(ctx context.Context) error {
					rep, err := bl.Evaluate(ctx, baseline.Env{Root: root})
					if err != nil {
						return err
					}
					if !rep.Passed {
						r, _ := rep.Result("packages")
						return fmt.Errorf("baseline fails: %s", r.Message)
					}
					return nil
				},
			})
			return err
		},
	}
}

// TestPatchWavesIsolatedRoots patches four gateways' roots from a local
// repository in waves — canary, then two at a time — with apt-get and dpkg
// really installing, and proves the host machine was not touched.
func TestPatchWavesIsolatedRoots(t *testing.T) {
	patchtest.Require(t)
	host := patchtest.SnapshotHost(t)
	if _, err := os.Lstat(patchBin); err == nil {
		t.Fatalf("%s already exists on the host: cannot prove isolation", patchBin)
	}
	l := newPatchLab(t, 4, patchPackage("1.0-2", "", false), true)
	opts := l.options(t)
	ctx := t.Context()

	phase(t, "1 canary first, then waves of two: every root ends at 1.0-2", func(t *testing.T) {
		rep, err := patching.RunWaves(ctx, l.names, opts)
		if err != nil {
			t.Fatalf("RunWaves: %v", err)
		}
		if got := fmt.Sprint(rep.Waves); got != "[[gw1] [gw2 gw3] [gw4]]" {
			t.Errorf("waves %s", got)
		}
		if !slices.Equal(rep.Patched, l.names) || len(rep.Failed)+len(rep.NotTouched) != 0 {
			t.Fatalf("patched %v failed %v not touched %v", rep.Patched, rep.Failed, rep.NotTouched)
		}
		for _, gw := range l.names {
			root := l.roots[gw]
			if v := patchtest.InstalledVersion(t, root, patchPkg); v != "1.0-2" {
				t.Errorf("%s: dpkg-query says %s %q, want 1.0-2", gw, patchPkg, v)
			}
			if b, err := os.ReadFile(filepath.Join(root, patchBin)); err != nil || !strings.Contains(string(b), "1.0-2") {
				t.Errorf("%s: %s under the root = %q, %v", gw, patchBin, b, err)
			}
			o, _ := rep.Outcome(gw)
			want := patching.Installed{Name: patchPkg + ":all", Before: "1.0-1", After: "1.0-2"}
			if !o.Result.Changed || len(o.Result.Installed) != 1 || o.Result.Installed[0] != want {
				t.Errorf("%s: result %+v, want %+v", gw, o.Result, want)
			}
			t.Logf("%s (wave %d): applied and verified in %v", gw, o.Wave, o.Duration)
		}
		t.Logf("patch waves over %d roots took %v", len(l.names), rep.Duration)
	})

	phase(t, "2 the same waves again change nothing and run no apt", func(t *testing.T) {
		before := map[string]int{}
		for _, gw := range l.names {
			before[gw] = l.aptRuns(gw)
		}
		rep, err := patching.RunWaves(ctx, l.names, opts)
		if err != nil || !slices.Equal(rep.Patched, l.names) {
			t.Fatalf("RunWaves again = %+v, %v", rep, err)
		}
		for _, gw := range l.names {
			if o, _ := rep.Outcome(gw); o.Result.Changed {
				t.Errorf("%s changed on the second run: %+v", gw, o.Result)
			}
			if n := l.aptRuns(gw) - before[gw]; n != 0 {
				t.Errorf("%s: apt ran %d times on the second run", gw, n)
			}
		}
	})

	phase(t, "3 the host's package database and /usr/local/bin are untouched", func(t *testing.T) {
		host.AssertUntouched(t, patchPkg, patchBin)
	})
}

// TestPatchWavesFailingCanary runs a bad update through the waves: the
// canary fails (for a dependency the repository lacks, or for a service
// that does not come back) and no other gateway is touched.
func TestPatchWavesFailingCanary(t *testing.T) {
	patchtest.Require(t)
	tests := map[string]struct {
		update        patchtest.Package
		phase         string
		reason        string
		canaryVersion string
	}{
		"update depends on a package nobody has": {
			update: patchPackage("1.0-2", "warden-missing-dep (>= 1.0)", false),
			phase:  patching.PhaseApply, reason: "warden-missing-dep", canaryVersion: "1.0-1",
		},
		"update installs but its service does not run": {
			update: patchPackage("1.0-2", "", true),
			phase:  patching.PhaseVerify, reason: "does not run", canaryVersion: "1.0-2",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			host := patchtest.SnapshotHost(t)
			l := newPatchLab(t, 3, tc.update, true)
			rep, err := patching.RunWaves(t.Context(), l.names, l.options(t))
			if !errors.Is(err, patching.ErrWaveFailed) {
				t.Fatalf("RunWaves error %v, want ErrWaveFailed", err)
			}
			t.Logf("reported: %v", err)
			if !strings.Contains(err.Error(), "gw1") || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not name the canary and the reason %q", err, tc.reason)
			}
			if !slices.Equal(rep.Failed, []string{"gw1"}) || len(rep.Patched) != 0 || !slices.Equal(rep.NotTouched, []string{"gw2", "gw3"}) {
				t.Errorf("failed %v patched %v not touched %v", rep.Failed, rep.Patched, rep.NotTouched)
			}
			o, _ := rep.Outcome("gw1")
			if o.Phase != tc.phase || !strings.Contains(o.Error, tc.reason) {
				t.Errorf("canary outcome %+v, want phase %s and reason %q", o, tc.phase, tc.reason)
			}
			if rep.StoppedAfterWave != 0 {
				t.Errorf("stopped after wave %d, want 0 (the canary wave)", rep.StoppedAfterWave)
			}
			if v := patchtest.InstalledVersion(t, l.roots["gw1"], patchPkg); v != tc.canaryVersion {
				t.Errorf("canary at %q, want %s", v, tc.canaryVersion)
			}
			for _, gw := range []string{"gw2", "gw3"} {
				if v := patchtest.InstalledVersion(t, l.roots[gw], patchPkg); v != "1.0-1" {
					t.Errorf("%s at %q after the canary failed, want 1.0-1", gw, v)
				}
				if n := l.aptRuns(gw); n != 0 {
					t.Errorf("apt ran %d times for %s after the canary failed", n, gw)
				}
			}
			host.AssertUntouched(t, patchPkg, patchBin)
		})
	}
}

// BenchmarkPatchWave measures one wave run over four fresh roots (canary,
// then waves of two, two at a time): apt-get update and install from a
// local repository plus verification, per run and per gateway. apt runs
// directly here, without the read-only namespace the tests add.
func BenchmarkPatchWave(b *testing.B) {
	patchtest.Require(b)
	const gateways = 4
	runs := 0
	for b.Loop() {
		b.StopTimer()
		l := newPatchLab(b, gateways, patchPackage("1.0-2", "", false), false)
		opts := l.options(b)
		b.StartTimer()
		if _, err := patching.RunWaves(b.Context(), l.names, opts); err != nil {
			b.Fatal(err)
		}
		runs++
	}
	ms := float64(b.Elapsed().Microseconds()) / 1000
	b.ReportMetric(ms/float64(runs), "ms/run")
	b.ReportMetric(ms/float64(runs*gateways), "ms/gateway")
}
