package baseline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
)

// Boot-time sysctl values are resolved as systemd-sysctl does at boot on
// Debian 12:
//
//   - *.conf files are collected from /etc/sysctl.d, /run/sysctl.d,
//     /usr/local/lib/sysctl.d, /usr/lib/sysctl.d and /lib/sysctl.d; for one
//     file name the first directory in that list wins and the others are
//     not read; a file that is empty or a symlink to /dev/null masks the
//     name;
//   - the chosen files are applied in lexical order of their names,
//     whatever their directory, and a later assignment overrides an earlier
//     one;
//   - /etc/sysctl.conf is applied last (procps' sysctl --system order),
//     unless one of the files is a symlink to it (Debian's
//     /etc/sysctl.d/99-sysctl.conf), in which case it is applied at that
//     file's place and not again;
//   - keys are normalised like systemd does (dots become slashes, unless the
//     first separator is a slash, in which case a dot inside a component,
//     as in an interface name "eth0.100", stays); a leading "-" (ignore
//     errors) is dropped; lines starting with # or ; are comments;
//   - glob keys ("net.ipv4.conf.*.rp_filter") apply to every matching key
//     that has no explicit assignment anywhere: systemd gives explicit
//     settings precedence over globs, whatever their order. Among globs,
//     the last assigned wins. Exclusions ("-net.ipv4.conf.lo.rp_filter"
//     without a value) are not supported and are ignored.

var sysctlDirs = []string{"/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"}

const sysctlConf = "/etc/sysctl.conf"

type sysctlAssignment struct {
	Value string
	File  string
	Line  int
}

func (a sysctlAssignment) source() string { return fmt.Sprintf("%s:%d", a.File, a.Line) }

type sysctlGlob struct {
	Pattern string
	sysctlAssignment
}

type sysctlBoot struct {
	explicit map[string]sysctlAssignment
	globs    []sysctlGlob
	// Files lists the files applied, in order.
	Files []string
}

// normaliseSysctlKey turns "net.ipv4.conf.all.rp_filter" into
// "net/ipv4/conf/all/rp_filter" (systemd's sysctl_normalize).
func normaliseSysctlKey(k string) string {
	k = strings.TrimLeft(strings.TrimSpace(k), "/")
	i := strings.IndexAny(k, "./")
	if i < 0 || k[i] == '/' {
		return k
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, k)
}

// lookup returns the boot-time assignment for a normalised key.
func (b *sysctlBoot) lookup(key string) (sysctlAssignment, bool) {
	if a, ok := b.explicit[key]; ok {
		return a, true
	}
	for i := len(b.globs) - 1; i >= 0; i-- {
		if ok, _ := path.Match(b.globs[i].Pattern, key); ok {
			return b.globs[i].sysctlAssignment, true
		}
	}
	return sysctlAssignment{}, false
}

func loadSysctlBoot(root string) (*sysctlBoot, error) {
	chosen := map[string]string{} // file name → gateway path
	for _, dir := range sysctlDirs {
		ents, err := os.ReadDir(hostPath(root, dir))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
				continue
			}
			return nil, fmt.Errorf("listing %s: %w", dir, err)
		}
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".conf") || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if _, seen := chosen[e.Name()]; !seen {
				chosen[e.Name()] = path.Join(dir, e.Name())
			}
		}
	}
	names := make([]string, 0, len(chosen))
	for n := range chosen {
		names = append(names, n)
	}
	slices.Sort(names)
	b := &sysctlBoot{explicit: map[string]sysctlAssignment{}}
	confLinked := false
	for _, n := range names {
		p := chosen[n]
		target, isLink := linkTarget(root, p)
		if isLink && target == "/dev/null" {
			continue
		}
		if isLink && target == sysctlConf {
			confLinked = true
		}
		if err := b.applyFile(root, p); err != nil {
			return nil, err
		}
	}
	if !confLinked {
		if err := b.applyFile(root, sysctlConf); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return b, nil
}

// linkTarget resolves one level of symlink at gateway path p, as a gateway
// path.
func linkTarget(root, p string) (string, bool) {
	t, err := os.Readlink(hostPath(root, p))
	if err != nil {
		return "", false
	}
	if !path.IsAbs(t) {
		t = path.Join(path.Dir(p), t)
	}
	return path.Clean(t), true
}

func (b *sysctlBoot) applyFile(root, p string) error {
	data, err := os.ReadFile(hostPath(root, p))
	if err != nil {
		return fmt.Errorf("reading sysctl configuration: %w", err)
	}
	b.Files = append(b.Files, p)
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k = strings.TrimPrefix(strings.TrimSpace(k), "-")
		key := normaliseSysctlKey(k)
		if key == "" {
			continue
		}
		a := sysctlAssignment{Value: normaliseSysctlValue(v), File: p, Line: i + 1}
		if strings.ContainsAny(key, "*?[") {
			b.globs = slices.DeleteFunc(b.globs, func(g sysctlGlob) bool { return g.Pattern == key })
			b.globs = append(b.globs, sysctlGlob{Pattern: key, sysctlAssignment: a})
			continue
		}
		b.explicit[key] = a
	}
	return nil
}

// normaliseSysctlValue collapses whitespace, as /proc/sys separates the
// fields of multi-valued keys with tabs.
func normaliseSysctlValue(v string) string { return strings.Join(strings.Fields(v), " ") }

func rank(s Status) int {
	switch s {
	case StatusFail:
		return 3
	case StatusError:
		return 2
	case StatusPass:
		return 1
	}
	return 0
}

// worse returns the more serious of two statuses: fail > error > pass > skip.
func worse(a, b Status) Status {
	if rank(b) > rank(a) {
		return b
	}
	return a
}

func (ev *evaluation) bootSysctl() (*sysctlBoot, error) {
	return ev.sysctl.get(func() (*sysctlBoot, error) { return loadSysctlBoot(ev.env.Root) })
}

func (ev *evaluation) checkSysctl(ctx context.Context, c *Check) Result {
	boot, err := ev.bootSysctl()
	if err != nil {
		return c.result(StatusError, err.Error())
	}
	expected := c.Expect.describe()
	r := c.result(StatusSkip, "")
	var problems []string
	for _, name := range c.Keys {
		st, evs, msg := evaluateSysctlKey(ctx, ev.env.Runtime, boot, name, c.Expect, c.RequireBoot, expected)
		r.Status = worse(r.Status, st)
		r.Evidence = append(r.Evidence, evs...)
		if msg != "" {
			problems = append(problems, msg)
		}
	}
	switch {
	case len(problems) > 0:
		r.Message = strings.Join(problems, "; ")
	case r.Status == StatusSkip:
		r.Message = "none of the keys exists on this kernel"
	case evidenceMentions(r.Evidence, "not set (the kernel default applies at boot)"):
		r.Message = fmt.Sprintf("%s = %s at runtime; no boot-time file contradicts it", strings.Join(c.Keys, ", "), expected)
	default:
		r.Message = fmt.Sprintf("%s = %s at runtime and at boot", strings.Join(c.Keys, ", "), expected)
	}
	return r
}

// evaluateSysctlKey judges one key: its runtime value, its boot-time value,
// and whether the two agree.
func evaluateSysctlKey(ctx context.Context, rt RuntimeReader, boot *sysctlBoot, name string, want Expect, requireBoot bool, expected string) (Status, []Evidence, string) {
	key := normaliseSysctlKey(name)
	runtimeSource := "runtime /proc/sys/" + key
	bootVal, bootSet := boot.lookup(key)
	bootEv := Evidence{Source: "boot-time configuration", Value: "not set (the kernel default applies at boot)", Expected: expected}
	if bootSet {
		bootEv = Evidence{Source: bootVal.source(), Value: bootVal.Value, Expected: expected}
	}
	v, err := rt.Sysctl(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return StatusSkip, []Evidence{{Source: runtimeSource, Value: "absent (not supported by this kernel)", Expected: expected}, bootEv}, ""
	}
	if err != nil {
		return StatusError, []Evidence{{Source: runtimeSource, Value: "unreadable", Expected: expected}, bootEv}, fmt.Sprintf("%s: %v", name, err)
	}
	v = normaliseSysctlValue(v)
	evidence := []Evidence{{Source: runtimeSource, Value: v, Expected: expected}, bootEv}
	runtimeOK, _ := want.accepts(v, false)
	bootOK := true
	if bootSet {
		bootOK, _ = want.accepts(bootVal.Value, false)
	}
	switch {
	case !runtimeOK && bootSet && bootOK:
		return StatusFail, evidence, fmt.Sprintf("%s is %s at runtime but %s is set to %s at %s: the running kernel differs from the configuration", name, v, name, bootVal.Value, bootVal.source())
	case !runtimeOK:
		return StatusFail, evidence, fmt.Sprintf("%s is %s at runtime, want %s", name, v, expected)
	case !bootOK:
		return StatusFail, evidence, fmt.Sprintf("%s is %s at runtime but %s sets %s: the next boot would apply it", name, v, bootVal.source(), bootVal.Value)
	case bootSet && bootVal.Value != v:
		return StatusFail, evidence, fmt.Sprintf("%s is %s at runtime but %s at boot (%s): someone changed the running value", name, v, bootVal.Value, bootVal.source())
	case !bootSet && requireBoot:
		return StatusFail, evidence, fmt.Sprintf("%s is %s at runtime but no sysctl file sets it: a reboot would bring back the kernel default", name, v)
	}
	return StatusPass, evidence, ""
}
