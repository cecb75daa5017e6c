package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/baseline"
	"github.com/warden-ir/warden/patching"
)

// BaselineOptions say where the checks look.
type BaselineOptions struct {
	// Root is the filesystem root the configuration files are read under
	// (default "/"); runtime values always come from this host's /proc.
	Root string
	// File is a baseline YAML; empty means the shipped gateway baseline.
	File string
	// StateDir keeps the recorded integrity manifest.
	StateDir string
}

// manifestFile is the recorded integrity manifest inside the state dir.
const manifestFile = "baseline-manifest.json"

// Baseline evaluates the hardened baseline on this host: effective sshd
// configuration, runtime and boot sysctl values, firewall default policies
// and listeners, tunnel proposals and key age, package minimums, and
// integrity against the manifest recorded in the state directory.
//
// The manifest is recorded on first use (RecordManifest), recorded anew
// on request (Rerecord), and amended after a verified patch
// (SanctionPackages, see sanctionPatch) for exactly the files the upgraded
// packages installed; the dpkg database read for that is the one under
// Root, the same tree the manifest hashes.
func Baseline(opt BaselineOptions) (agent.BaselineFunc, error) {
	var b *baseline.Baseline
	var err error
	if opt.File != "" {
		b, err = baseline.LoadFile(opt.File)
	} else {
		b, err = baseline.Default()
	}
	if err != nil {
		return nil, fmt.Errorf("loading the baseline: %w", err)
	}
	root := opt.Root
	if root == "" {
		root = "/"
	}
	manifestPath := filepath.Join(opt.StateDir, manifestFile)
	var manifestMu sync.Mutex // one read-modify-write of the manifest file at a time
	return func(ctx context.Context, p wire.BaselineParams) (wire.BaselineResult, error) {
		var res wire.BaselineResult
		// Files under Root; runtime values (sysctl, sockets) always from
		// this host's /proc, i.e. the agent's own network namespace.
		env := baseline.Env{Root: root, Runtime: baseline.ProcRuntime{Root: "/"}}
		if root != "/" {
			env.Firewall = baseline.ExecFirewall{}
		}
		for _, m := range p.Management {
			pfx, err := netip.ParsePrefix(m)
			if err != nil {
				return res, fmt.Errorf("management network %q: %w", m, err)
			}
			env.ManagementNetworks = append(env.ManagementNetworks, pfx)
		}
		manifestMu.Lock()
		state, err := loadManifest(manifestPath)
		if err == nil && len(p.SanctionPackages) > 0 {
			res.Sanction, state, err = sanctionPatch(root, manifestPath, state, p.SanctionPackages, time.Now().UTC())
		}
		if err == nil && p.RecordManifest && (state == nil || p.Rerecord) {
			var m baseline.Manifest
			if m, err = b.Record(root); err != nil {
				err = fmt.Errorf("recording the integrity manifest: %w", err)
			} else if err = writeFileAtomic(manifestPath, manifestState{Manifest: m}); err != nil {
				err = fmt.Errorf("writing the integrity manifest: %w", err)
			} else {
				// A new known-good state: earlier re-records are history.
				state, res.ManifestRecorded = &manifestState{Manifest: m}, true
			}
		}
		manifestMu.Unlock()
		if err != nil {
			return res, err
		}
		if state != nil {
			env.Recorded = &state.Manifest
		}
		ids := p.Remediate
		if len(ids) == 1 && ids[0] == "safe" {
			// Every failing check whose remediation is marked safe.
			before, err := b.Evaluate(ctx, env)
			if err != nil {
				return res, err
			}
			ids = nil
			for _, r := range before.Results {
				if r.Status == baseline.StatusFail && r.Remediable {
					ids = append(ids, r.ID)
				}
			}
		}
		for _, id := range ids {
			c, ok := b.Check(id)
			if !ok {
				return res, fmt.Errorf("remediating: unknown check %q", id)
			}
			if _, err := baseline.Remediate(ctx, c, env); err != nil {
				res.Warnings = append(res.Warnings, fmt.Sprintf("remediating %s: %v", id, err))
				continue
			}
			res.Remediated = append(res.Remediated, id)
		}
		rep, err := b.Evaluate(ctx, env)
		if err != nil {
			return res, err
		}
		res.Passed = rep.Passed
		res.Report, err = json.Marshal(rep)
		return res, err
	}, nil
}

// manifestState is the manifest file: the recorded manifest and the
// entries verified patches re-recorded in it since (the latest per path).
// Both live in one file, written atomically, so a re-record and its
// history never disagree, whenever the agent stops.
type manifestState struct {
	baseline.Manifest
	Sanctioned []wire.ManifestChange `json:"sanctioned,omitempty"`
}

// loadManifest reads the manifest file; nil when none is recorded.
func loadManifest(path string) (*manifestState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the integrity manifest: %w", err)
	}
	var m manifestState
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reading the integrity manifest %s: %w", path, err)
	}
	return &m, nil
}

// sanctionPatch re-records the manifest entries that the verified upgrade
// of pkgs accounts for (patching.PlanManifestUpdate decides which) and
// writes the manifest file, then reports every entry those packages at
// their installed versions account for — re-recorded now or by an earlier
// call, the file still holding that content — and the differences they do
// not. It is idempotent: a repeated call (a resumed patch step) writes
// nothing and reports the same, so the controller can record the old and
// new hashes even if it stopped after the first call; and a file changed
// after dpkg installed it is never re-recorded, however often it is asked.
func sanctionPatch(root, file string, st *manifestState, pkgs []string, now time.Time) (*wire.ManifestSanction, *manifestState, error) {
	if st == nil {
		return &wire.ManifestSanction{NoManifest: true}, nil, nil
	}
	upd, err := patching.PlanManifestUpdate(root, st.Manifest, pkgs)
	if err != nil {
		return nil, st, fmt.Errorf("deciding what the patch changed in the integrity manifest: %w", err)
	}
	if len(upd.Rerecord) > 0 {
		latest := map[string]wire.ManifestChange{}
		for _, c := range st.Sanctioned {
			latest[c.Path] = c
		}
		for _, c := range upd.Rerecord {
			c.At = now
			latest[c.Path] = c
		}
		next := &manifestState{Manifest: upd.Apply(st.Manifest)}
		for _, c := range latest {
			next.Sanctioned = append(next.Sanctioned, c)
		}
		slices.SortFunc(next.Sanctioned, func(a, b wire.ManifestChange) int { return strings.Compare(a.Path, b.Path) })
		if err := writeFileAtomic(file, next); err != nil {
			return nil, st, fmt.Errorf("writing the re-recorded integrity manifest: %w", err)
		}
		st = next
	}
	out := &wire.ManifestSanction{Refused: upd.Refused}
	refused := map[string]bool{}
	for _, r := range upd.Refused {
		refused[r.Path] = true
	}
	// An earlier re-record still stands if the packages are at the same
	// versions and the file still holds what was re-recorded.
	for _, c := range st.Sanctioned {
		if v, ok := upd.Packages[c.Package]; ok && v == c.Version && st.Files[c.Path].SHA256 == c.NewSHA256 && !refused[c.Path] {
			out.Rerecorded = append(out.Rerecorded, c)
		}
	}
	return out, st, nil
}

func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
