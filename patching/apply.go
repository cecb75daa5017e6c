package patching

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/warden-ir/warden/internal/fault"
)

// Apply patches one root: it brings every named package to at least its
// version, or installs every pending security update.
//
// Steps: validate → read the dpkg database → if every named target already
// has a version at or above its own, return Changed=false without running
// apt → apt-get update → choose what to install (the unsatisfied targets,
// pinned as name=version; for SecurityOnly, the upgrades a simulated
// dist-upgrade takes from a security release, pinned the same way) →
// apt-get install → restore the automatic-install marks apt-get install
// cleared → read the dpkg database again and report what changed.
//
// Apply is idempotent: run again with the same request it installs nothing
// and reports Changed=false. A target that is not installed is refused
// (ErrNotInstalled): patching upgrades and never adds software. Once the
// install has started it runs to its end even if ctx is cancelled, because
// dpkg interrupted mid-unpack leaves packages half-installed. When the
// install fails part way, the returned Result still lists what changed.
func Apply(ctx context.Context, req Request) (Result, error) {
	root, err := req.validate()
	if err != nil {
		return Result{}, err
	}
	before, err := readDpkg(root)
	if err != nil {
		return Result{}, err
	}
	var pending []Target
	if !req.SecurityOnly {
		if pending, err = unsatisfied(before, req.Packages); err != nil {
			return Result{}, err
		}
		if len(pending) == 0 {
			return Result{}, nil
		}
	}
	s, err := openSession(root, req.Sources, req.Runner, req.Log)
	if err != nil {
		return Result{}, err
	}
	defer s.close()
	if _, err := s.run(ctx, "updating package lists", s.aptGet("update")); err != nil {
		return Result{}, err
	}
	if req.SecurityOnly {
		ups, err := s.simulate(ctx, "finding security updates", "dist-upgrade")
		if err != nil {
			return Result{}, err
		}
		pending = securityTargets(ups)
		if len(pending) == 0 {
			s.log.Info("no security update pending", "root", root)
			return Result{}, nil
		}
	}
	autoBefore, err := readAutoInstalled(root)
	if err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("patching before install: %w", err)
	}
	s.log.Info("installing updates", "root", root, "targets", targetStrings(pending))
	// From here on dpkg changes the root: do not let a cancellation cut it
	// in half.
	ictx := context.WithoutCancel(ctx)
	_, installErr := s.run(ictx, "installing updates", s.aptGet(installArgs(pending)...))
	after, err := readDpkg(root)
	if err != nil {
		return Result{}, fmt.Errorf("reading back after install: %w", err)
	}
	res := Result{Installed: changes(before, after)}
	res.Changed = len(res.Installed) > 0
	if markErr := s.restoreAutoMarks(ictx, before, autoBefore); markErr != nil && installErr == nil {
		return res, markErr
	}
	if installErr != nil {
		return res, installErr
	}
	s.log.Info("updates installed", "root", root, "changed", len(res.Installed))
	return res, nil
}

// unsatisfied returns the targets below their version (and every target
// without a version: only apt knows what "newest" is), refusing targets
// that are not installed.
func unsatisfied(db dpkgDB, targets []Target) ([]Target, error) {
	var out []Target
	var missing []string
	for _, t := range targets {
		ok, found := db.satisfied(t)
		switch {
		case !found:
			missing = append(missing, t.Name)
		case !ok || t.Version == "":
			out = append(out, t)
		}
	}
	if len(missing) > 0 {
		return nil, fault.Terminal(fmt.Errorf("checking targets: %w: %s", ErrNotInstalled, strings.Join(missing, ", ")))
	}
	return out, nil
}

// securityTargets pins every upgrade of an installed package that comes
// from a security release.
func securityTargets(ups []Upgrade) []Target {
	var out []Target
	for _, u := range ups {
		if u.From != "" && u.Security() {
			out = append(out, Target{Name: u.Name, Version: u.To})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// simulate runs apt-get -s with args and parses what it would install.
func (s *session) simulate(ctx context.Context, step string, args ...string) ([]Upgrade, error) {
	out, err := s.run(ctx, step, s.aptGet(append([]string{"-s"}, args...)...))
	if err != nil {
		return nil, err
	}
	return parseSimulation(out), nil
}

// restoreAutoMarks marks automatic again the packages apt-get install
// marked manual because they were named on its command line, so a later
// autoremove treats them as before.
func (s *session) restoreAutoMarks(ctx context.Context, before dpkgDB, autoBefore autoSet) error {
	if len(autoBefore) == 0 {
		return nil
	}
	autoAfter, err := readAutoInstalled(s.root)
	if err != nil {
		return err
	}
	var names []string
	for _, p := range before {
		if p.present() && autoBefore.has(p) && !autoAfter.has(p) {
			if p.Arch == "all" {
				names = append(names, p.Name)
			} else {
				names = append(names, p.id())
			}
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	_, err = s.run(ctx, "restoring automatic-install marks", s.aptMark(append([]string{"auto"}, names...)...))
	return err
}

// Plan lists what Apply would install without changing the root. Named
// targets with versions are read from the dpkg database alone. A request
// that needs apt's view (SecurityOnly, or a target without a version) is
// simulated against the root's current package lists, or against the
// request's Sources fetched into a private directory that is removed
// afterwards.
func Plan(ctx context.Context, req Request) ([]Upgrade, error) {
	root, err := req.validate()
	if err != nil {
		return nil, err
	}
	db, err := readDpkg(root)
	if err != nil {
		return nil, err
	}
	var pending []Target
	needApt := req.SecurityOnly
	if !req.SecurityOnly {
		if pending, err = unsatisfied(db, req.Packages); err != nil {
			return nil, err
		}
		for _, t := range pending {
			needApt = needApt || t.Version == ""
		}
		if !needApt {
			var ups []Upgrade
			for _, t := range pending {
				for _, p := range db.instances(t.Name) {
					ups = append(ups, Upgrade{Name: p.id(), From: p.Version, To: t.Version})
				}
			}
			return ups, nil
		}
	}
	s, err := openSession(root, req.Sources, req.Runner, req.Log)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if len(req.Sources) > 0 {
		if _, err := s.run(ctx, "updating private package lists", s.aptGet("update")); err != nil {
			return nil, err
		}
	}
	if req.SecurityOnly {
		ups, err := s.simulate(ctx, "finding security updates", "dist-upgrade")
		if err != nil {
			return nil, err
		}
		var out []Upgrade
		for _, u := range ups {
			if u.From != "" && u.Security() {
				out = append(out, u)
			}
		}
		return out, nil
	}
	return s.simulate(ctx, "simulating install", installArgs(pending)...)
}

func targetStrings(ts []Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.String()
	}
	return out
}
