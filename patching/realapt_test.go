package patching_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/patching"
	"github.com/warden-ir/warden/patching/patchtest"
)

const binPath = "/usr/local/bin/warden-testpkg"

func testPackage(name, version string) patchtest.Package {
	return patchtest.Package{
		Name: name, Version: version,
		Files: map[string]string{"/usr/local/bin/" + name: "#!/bin/sh\necho " + name + " " + version + "\n"},
	}
}

// countingRunner runs programs for real and records them.
type countingRunner struct {
	mu   sync.Mutex
	cmds []patching.Command
}

func (r *countingRunner) Run(ctx context.Context, c patching.Command) ([]byte, error) {
	r.mu.Lock()
	r.cmds = append(r.cmds, c)
	r.mu.Unlock()
	return patching.ExecRunner{}.Run(ctx, c)
}

func (r *countingRunner) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cmds)
}

// TestApplyRealApt runs apt-get and dpkg for real against isolated roots
// built here, from a local repository built here.
func TestApplyRealApt(t *testing.T) {
	patchtest.Require(t)
	host := patchtest.SnapshotHost(t)
	t.Cleanup(func() { host.AssertUntouched(t, "warden-testpkg", binPath, "/usr/local/bin/warden-otherpkg") })
	base := t.TempDir()
	repo := patchtest.NewRepo(t, filepath.Join(base, "repo"), nil,
		testPackage("warden-testpkg", "1.0-1"), testPackage("warden-testpkg", "1.0-2"), testPackage("warden-testpkg", "1.0-3"),
		testPackage("warden-otherpkg", "1.0-1"), testPackage("warden-otherpkg", "2.0-1"))

	newRoot := func(t *testing.T, name string) string {
		root := patchtest.NewRoot(t, filepath.Join(base, name))
		patchtest.InstallDeb(t, root, repo.Deb(t, "warden-testpkg", "1.0-1"))
		patchtest.InstallDeb(t, root, repo.Deb(t, "warden-otherpkg", "1.0-1"))
		return root
	}

	t.Run("pinned version, then idempotent without apt", func(t *testing.T) {
		root := newRoot(t, "pinned")
		run := &countingRunner{}
		req := patching.Request{
			Root:     root,
			Packages: []patching.Target{{Name: "warden-testpkg", Version: "1.0-2"}},
			Sources:  []string{repo.Source()},
			Runner:   run,
			Log:      testLog(t),
		}
		res, err := patching.Apply(t.Context(), req)
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		want := []patching.Installed{{Name: "warden-testpkg:all", Before: "1.0-1", After: "1.0-2"}}
		if !res.Changed || !equalInstalled(res.Installed, want) {
			t.Fatalf("result = %+v, want changed with %+v", res, want)
		}
		// Pinned: 1.0-3 is available but 1.0-2 was asked for; the other
		// package was not touched.
		if v := patchtest.InstalledVersion(t, root, "warden-testpkg"); v != "1.0-2" {
			t.Errorf("dpkg-query says warden-testpkg %q, want 1.0-2", v)
		}
		if v := patchtest.InstalledVersion(t, root, "warden-otherpkg"); v != "1.0-1" {
			t.Errorf("warden-otherpkg changed to %q", v)
		}
		if b, err := os.ReadFile(filepath.Join(root, binPath)); err != nil || !strings.Contains(string(b), "1.0-2") {
			t.Errorf("installed file %s = %q, %v; want version 1.0-2", binPath, b, err)
		}
		if _, err := os.Stat(filepath.Join(root, "var/log/dpkg.log")); err != nil {
			t.Errorf("dpkg's log is not under the root: %v", err)
		}
		leftovers, _ := filepath.Glob(filepath.Join(root, "var/lib/apt/warden-patch-*"))
		if len(leftovers) > 0 {
			t.Errorf("work directory left behind: %v", leftovers)
		}
		if _, err := os.Stat(filepath.Join(root, "var/lib/apt/lists/lock")); err == nil {
			t.Errorf("private sources were fetched into the root's own list directory")
		}
		calls := run.count()
		// Second run: already at the target, so no program at all.
		for _, v := range []string{"1.0-2", "1.0-1", "1.0"} {
			req.Packages[0].Version = v
			res, err = patching.Apply(t.Context(), req)
			if err != nil || res.Changed {
				t.Fatalf("Apply again (target %s) = %+v, %v; want unchanged", v, res, err)
			}
		}
		if run.count() != calls {
			t.Errorf("apt ran %d more times although every target was satisfied", run.count()-calls)
		}
		checks, err := patching.Verify(t.Context(), root, []patching.Target{{Name: "warden-testpkg", Version: "1.0-2"}}, patching.VerifyHooks{})
		if err != nil || len(checks) != 1 || !checks[0].Passed {
			t.Errorf("Verify = %+v, %v", checks, err)
		}
	})

	t.Run("no apt hook runs, neither the host's nor the root's", func(t *testing.T) {
		root := newRoot(t, "hooks")
		// apt would run these with the host's shell, outside the root.
		marker := filepath.Join(t.TempDir(), "hook-ran")
		hook := "DPkg::Pre-Invoke { \"/usr/bin/touch " + marker + "\"; };\nDPkg::Post-Invoke { \"/usr/bin/touch " + marker + "\"; };\n"
		for _, f := range []string{"etc/apt/apt.conf.d/99hook", "etc/apt/apt.conf"} {
			if err := os.WriteFile(filepath.Join(root, f), []byte(hook), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, err := patching.Apply(t.Context(), patching.Request{
			Root:     root,
			Packages: []patching.Target{{Name: "warden-testpkg", Version: "1.0-2"}},
			Sources:  []string{repo.Source()},
		})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if v := patchtest.InstalledVersion(t, root, "warden-testpkg"); v != "1.0-2" {
			t.Fatalf("warden-testpkg %q, want 1.0-2", v)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("an apt hook from the root's configuration ran on the host")
		}
	})

	t.Run("newest available, with automatic mark kept", func(t *testing.T) {
		root := newRoot(t, "newest")
		markAuto(t, root, "warden-otherpkg")
		res, err := patching.Apply(t.Context(), patching.Request{
			Root:     root,
			Packages: []patching.Target{{Name: "warden-otherpkg"}},
			Sources:  []string{repo.Source()},
		})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		want := []patching.Installed{{Name: "warden-otherpkg:all", Before: "1.0-1", After: "2.0-1"}}
		if !equalInstalled(res.Installed, want) {
			t.Fatalf("installed %+v, want %+v", res.Installed, want)
		}
		if b, _ := os.ReadFile(filepath.Join(root, "var/lib/apt/extended_states")); !strings.Contains(string(b), "warden-otherpkg") || !strings.Contains(string(b), "Auto-Installed: 1") {
			t.Errorf("automatic mark lost:\n%s", b)
		}
		res, err = patching.Apply(t.Context(), patching.Request{
			Root:     root,
			Packages: []patching.Target{{Name: "warden-otherpkg"}},
			Sources:  []string{repo.Source()},
		})
		if err != nil || res.Changed {
			t.Errorf("second newest-available Apply = %+v, %v; want unchanged", res, err)
		}
	})

	t.Run("version the sources lack fails terminally and changes nothing", func(t *testing.T) {
		root := newRoot(t, "missing")
		_, err := patching.Apply(t.Context(), patching.Request{
			Root:     root,
			Packages: []patching.Target{{Name: "warden-testpkg", Version: "9.9-1"}},
			Sources:  []string{repo.Source()},
		})
		var aptErr *patching.AptError
		if !errors.As(err, &aptErr) || !actions.IsTerminal(err) {
			t.Fatalf("Apply = %v; want a terminal *AptError", err)
		}
		if !strings.Contains(err.Error(), "9.9-1") {
			t.Errorf("error %q does not name the missing version", err)
		}
		if v := patchtest.InstalledVersion(t, root, "warden-testpkg"); v != "1.0-1" {
			t.Errorf("warden-testpkg is %q after a failed patch", v)
		}
	})
}

// TestApplySecurityOnlyRealApt proves SecurityOnly takes updates only from
// a release apt reports as a security archive.
func TestApplySecurityOnlyRealApt(t *testing.T) {
	patchtest.Require(t)
	host := patchtest.SnapshotHost(t)
	t.Cleanup(func() { host.AssertUntouched(t, "warden-testpkg", binPath) })
	base := t.TempDir()
	old := patchtest.NewRepo(t, filepath.Join(base, "old"), nil,
		testPackage("warden-testpkg", "1.0-1"), testPackage("warden-otherpkg", "1.0-1"))
	security := patchtest.NewRepo(t, filepath.Join(base, "security"),
		&patchtest.Release{Origin: "Debian", Label: "Debian-Security", Suite: "stable-security", Codename: "bookworm-security"},
		testPackage("warden-testpkg", "1.0-2"))
	main := patchtest.NewRepo(t, filepath.Join(base, "main"),
		&patchtest.Release{Origin: "Debian", Label: "Debian", Suite: "stable", Codename: "bookworm"},
		testPackage("warden-otherpkg", "1.0-2"))
	root := patchtest.NewRoot(t, filepath.Join(base, "root"))
	patchtest.InstallDeb(t, root, old.Deb(t, "warden-testpkg", "1.0-1"))
	patchtest.InstallDeb(t, root, old.Deb(t, "warden-otherpkg", "1.0-1"))
	// The root's own sources this time, not private ones.
	if err := os.WriteFile(filepath.Join(root, "etc/apt/sources.list"), []byte(security.Source()+"\n"+main.Source()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	req := patching.Request{Root: root, SecurityOnly: true, Log: testLog(t)}

	plan, err := patching.Plan(t.Context(), req)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	// The root's lists have not been fetched yet: Plan must not fetch them.
	if len(plan) != 0 {
		t.Errorf("Plan before any update = %+v; want nothing (Plan does not update the root's lists)", plan)
	}
	res, err := patching.Apply(t.Context(), req)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := []patching.Installed{{Name: "warden-testpkg:all", Before: "1.0-1", After: "1.0-2"}}
	if !equalInstalled(res.Installed, want) {
		t.Fatalf("installed %+v, want only the security update %+v", res.Installed, want)
	}
	if v := patchtest.InstalledVersion(t, root, "warden-otherpkg"); v != "1.0-1" {
		t.Errorf("non-security update applied: warden-otherpkg %s", v)
	}
	if _, err := patching.Verify(t.Context(), root, res.Targets(), patching.VerifyHooks{}); err != nil {
		t.Errorf("Verify of what was installed: %v", err)
	}
	res, err = patching.Apply(t.Context(), req)
	if err != nil || res.Changed {
		t.Errorf("second security-only Apply = %+v, %v; want unchanged", res, err)
	}
	// The root's lists are fresh now: Plan sees the pending non-security
	// update only when asked for the package by name.
	plan, err = patching.Plan(t.Context(), patching.Request{Root: root, Packages: []patching.Target{{Name: "warden-otherpkg"}}})
	if err != nil || len(plan) != 1 || plan[0].To != "1.0-2" || plan[0].Security() {
		t.Errorf("Plan for warden-otherpkg = %+v, %v; want one non-security upgrade to 1.0-2", plan, err)
	}
}

// testLog shows apt's output in the test log (printed with -v or on
// failure).
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func markAuto(t *testing.T, root, name string) {
	t.Helper()
	b := "Package: " + name + "\nArchitecture: amd64\nAuto-Installed: 1\n\n"
	if err := os.WriteFile(filepath.Join(root, "var/lib/apt/extended_states"), []byte(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

func equalInstalled(a, b []patching.Installed) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
