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

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/baseline"
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
		manifest, err := loadManifest(manifestPath)
		if err != nil {
			return res, err
		}
		if p.RecordManifest && (manifest == nil || p.Rerecord) {
			m, err := b.Record(root)
			if err != nil {
				return res, fmt.Errorf("recording the integrity manifest: %w", err)
			}
			if err := writeFileAtomic(manifestPath, m); err != nil {
				return res, err
			}
			manifest, res.ManifestRecorded = &m, true
		}
		env.Recorded = manifest
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

func loadManifest(path string) (*baseline.Manifest, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the integrity manifest: %w", err)
	}
	var m baseline.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reading the integrity manifest %s: %w", path, err)
	}
	return &m, nil
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
