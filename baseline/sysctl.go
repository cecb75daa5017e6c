package baseline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"syscall"
)

// Boot-time sysctl values are resolved as systemd-sysctl (systemd 252,
// Debian 12) resolves them at boot; procps.service is only an alias of
// systemd-sysctl.service there, so nothing else applies sysctl files:
//
//   - *.conf files are collected from /etc/sysctl.d, /run/sysctl.d,
//     /usr/local/lib/sysctl.d, /usr/lib/sysctl.d and /lib/sysctl.d (the
//     last only matters on a non-merged /usr); for one file name the first
//     directory in that list wins and the same name elsewhere is not read.
//     Names starting with a dot are skipped.
//   - The chosen files are read in the order of their names, whatever their
//     directory. Symlinks are followed (inside Env.Root). A file that is a
//     symlink to /dev/null, or empty, therefore masks a vendor file of the
//     same name; a symlink whose target is missing is skipped, as systemd
//     ignores ENOENT.
//   - /etc/sysctl.conf is not read by systemd-sysctl. Debian's systemd
//     package ships /etc/sysctl.d/99-sysctl.conf -> ../sysctl.conf, so it
//     is read at that name's place in the order; without that link it is
//     not read at boot at all, whatever it says.
//   - Lines: surrounding whitespace is stripped; empty lines and lines
//     starting with # or ; are comments; "key = value" assigns (whitespace
//     around "=" and the value is dropped); a leading "-" on an assignment
//     only means "ignore errors"; "-key" without "=" is an exclusion (see
//     globs); any other line is ignored.
//   - Keys are normalised as sysctl_normalize does: if the first separator
//     is a dot, dots and slashes are swapped, otherwise both stay (so
//     "net/ipv4/conf/eth0.100/rp_filter" keeps the dot of a VLAN name).
//   - A later assignment of a key replaces an earlier one with another
//     value (and moves the key to the end of the order); the same value
//     again keeps the earlier assignment in place. An exclusion replaces an
//     earlier assignment of the same key too: "-key" after "key = 1"
//     leaves the key unset at boot.
//   - Glob keys ("net.ipv4.conf.*.rp_filter") are applied, in the order
//     above, to every existing key they match that has no entry of its
//     own: an explicit assignment or an exclusion of a key wins over every
//     glob, whatever the file order. Where several globs match a key, the
//     one applied last wins. Globs are matched like glob(3) on /proc/sys
//     ("*" does not cross "/"); brace expansion is not supported.
//
// Not modelled: systemd-sysctl's --prefix (not used at boot), keys written
// by udev rules when an interface appears (99-systemd.rules runs
// systemd-sysctl --prefix for each new interface, which does not change
// the "all" and "default" keys the baseline checks), and the kernel refusing
// a value at boot (then the runtime value tells).

// sysctlDirs are systemd's sysctl.d directories, highest precedence first.
var sysctlDirs = []string{"/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"}

const devNull = "/dev/null"

// sysctlAssignment is one line of a sysctl file that systemd-sysctl keeps.
type sysctlAssignment struct {
	Key   string // normalised; may be a glob
	Value string
	// Exclude marks "-key" without a value: no value, and globs skip the
	// key.
	Exclude bool
	// File is the sysctl.d entry the line was read through; Target is the
	// file really read when File is a symlink to another path.
	File   string
	Target string
	Line   int
}

func (a sysctlAssignment) source() string {
	if a.Target != "" && a.Target != a.File {
		return fmt.Sprintf("%s:%d (through %s)", a.Target, a.Line, a.File)
	}
	return fmt.Sprintf("%s:%d", a.File, a.Line)
}

// sysctlFile is one entry of the boot-time file list, in the order read.
type sysctlFile struct {
	Path string
	// Target is where a symlink leads (a gateway path), else empty.
	Target string
	// Skipped says why nothing was read from it: "masked" (/dev/null or
	// empty) or "target missing".
	Skipped string
}

// sysctlBoot is systemd-sysctl's table after reading every file: entries
// in the order they will be applied.
type sysctlBoot struct {
	order   []string // keys, in application order
	entries map[string]*sysctlAssignment
	// replaced keeps, per key, the assignments a later one replaced, for
	// evidence.
	replaced map[string][]sysctlAssignment
	// Files lists the files, in the order read.
	Files []sysctlFile
}

// bootValue is what systemd-sysctl writes to one key at boot.
type bootValue struct {
	Set bool
	// By is the assignment that decides: the value written, an exclusion
	// (Set false), or nil when nothing mentions the key.
	By *sysctlAssignment
	// Glob is true when By is a glob assignment.
	Glob bool
	// Replaced are earlier assignments of the same key that lost.
	Replaced []sysctlAssignment
}

func (v bootValue) evidence(expected string) Evidence {
	switch {
	case v.Set && v.Glob:
		return Evidence{Source: v.By.source() + " (glob " + v.By.Key + ")", Value: v.By.Value, Expected: expected}
	case v.Set:
		return Evidence{Source: v.By.source(), Value: v.By.Value, Expected: expected}
	case v.By != nil:
		return Evidence{Source: v.By.source() + " (excluded from globs; no value)", Value: notSetAtBoot, Expected: expected}
	}
	return Evidence{Source: "boot-time configuration", Value: notSetAtBoot, Expected: expected}
}

const notSetAtBoot = "not set (the kernel default applies at boot)"

// normaliseSysctlKey is systemd's sysctl_normalize: "net.ipv4.conf.all.
// rp_filter" becomes "net/ipv4/conf/all/rp_filter"; when the first
// separator is a slash nothing is swapped; duplicate and leading slashes
// are dropped.
func normaliseSysctlKey(k string) string {
	k = strings.TrimSpace(k)
	if i := strings.IndexAny(k, "./"); i >= 0 && k[i] == '.' {
		k = strings.Map(func(r rune) rune {
			switch r {
			case '.':
				return '/'
			case '/':
				return '.'
			}
			return r
		}, k)
	}
	var parts []string
	for _, p := range strings.Split(k, "/") {
		if p != "" && p != "." {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/")
}

func isSysctlGlob(k string) bool { return strings.ContainsAny(k, "*?[") }

// lookup returns what boot does to a normalised, non-glob key.
func (b *sysctlBoot) lookup(key string) bootValue {
	if a, ok := b.entries[key]; ok {
		return bootValue{Set: !a.Exclude, By: a, Replaced: b.replaced[key]}
	}
	var v bootValue
	for _, k := range b.order {
		a := b.entries[k]
		if a.Exclude || !isSysctlGlob(k) {
			continue
		}
		if matchGlobPath("/"+k, "/"+key) {
			v = bootValue{Set: true, By: a, Glob: true}
		}
	}
	return v
}

// add records one line as systemd-sysctl's ordered hashmap does.
func (b *sysctlBoot) add(a sysctlAssignment) {
	if old, ok := b.entries[a.Key]; ok {
		if old.Exclude == a.Exclude && old.Value == a.Value {
			return
		}
		b.replaced[a.Key] = append(b.replaced[a.Key], *old)
		b.order = slices.DeleteFunc(b.order, func(k string) bool { return k == a.Key })
	}
	b.entries[a.Key] = &a
	b.order = append(b.order, a.Key)
}

// loadSysctlBoot reads the boot-time sysctl configuration under root.
func loadSysctlBoot(root string) (*sysctlBoot, error) {
	chosen := map[string]string{} // file name → gateway path
	for _, dir := range sysctlDirs {
		ents, err := readDirIn(root, dir)
		if err != nil {
			// systemd ignores directories it cannot enumerate; a missing
			// one is the common case.
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOTDIR) {
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
	b := &sysctlBoot{entries: map[string]*sysctlAssignment{}, replaced: map[string][]sysctlAssignment{}}
	for _, n := range slices.Sorted(maps.Keys(chosen)) {
		if err := b.readFile(root, chosen[n]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// readFile reads one sysctl.d entry, following a symlink inside root.
func (b *sysctlBoot) readFile(root, p string) error {
	u, err := openUnder(root)
	if err != nil {
		return err
	}
	defer u.Close()
	f := sysctlFile{Path: p}
	// Resolved lexically past a missing component, so that a link to
	// /dev/null is recognised in an image that has no /dev.
	target, err := u.resolve(p, true, true)
	if err != nil {
		return fmt.Errorf("reading sysctl configuration: %w", err)
	}
	if target != p {
		f.Target = target
	}
	if target == devNull {
		f.Skipped = "masked"
		b.Files = append(b.Files, f)
		return nil
	}
	file, err := u.open(target)
	if errors.Is(err, fs.ErrNotExist) {
		// A dangling link (99-sysctl.conf without /etc/sysctl.conf):
		// systemd-sysctl opens it, gets ENOENT and goes on.
		f.Skipped = "target missing"
		b.Files = append(b.Files, f)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading sysctl configuration %s: %w", p, err)
	}
	data, err := io.ReadAll(file)
	file.Close()
	if err != nil {
		return fmt.Errorf("reading sysctl configuration %s: %w", p, err)
	}
	if len(data) == 0 {
		f.Skipped = "masked"
	}
	b.Files = append(b.Files, f)
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		a := sysctlAssignment{File: p, Target: f.Target, Line: i + 1}
		k, v, hasValue := strings.Cut(line, "=")
		if !hasValue {
			if !strings.HasPrefix(line, "-") {
				continue // "Line is not an assignment, ignoring"
			}
			a.Exclude = true
		}
		a.Key = normaliseSysctlKey(strings.TrimPrefix(k, "-"))
		if a.Key == "" {
			continue
		}
		a.Value = strings.TrimSpace(v)
		b.add(a)
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
	var problems, skipped []string
	offline := false
	for _, name := range c.Keys {
		k := evaluateSysctlKey(ctx, ev.env.Runtime, boot, name, c.Expect, c.RequireBoot, expected)
		r.Status = worse(r.Status, k.status)
		r.Evidence = append(r.Evidence, k.evidence...)
		offline = offline || k.offline
		switch {
		case k.problem != "":
			problems = append(problems, k.problem)
		case k.status == StatusSkip && k.offline:
			skipped = append(skipped, name)
		}
	}
	keys := strings.Join(c.Keys, ", ")
	switch {
	case len(problems) > 0:
		r.Message = strings.Join(problems, "; ")
	case r.Status == StatusSkip && offline:
		r.Message = fmt.Sprintf("not applicable offline: no boot-time file sets %s, so the kernel default applies, and there is no running kernel to read it from", keys)
	case r.Status == StatusSkip:
		r.Message = "none of the keys exists on this kernel"
	case offline:
		r.Message = fmt.Sprintf("%s = %s at boot (offline: the boot-time configuration alone is judged)", keys, expected)
		if len(skipped) > 0 {
			r.Message += "; not set at boot, kernel default not known offline: " + strings.Join(skipped, ", ")
		}
	case evidenceMentions(r.Evidence, notSetAtBoot):
		r.Message = fmt.Sprintf("%s = %s at runtime; no boot-time file contradicts it", keys, expected)
	default:
		r.Message = fmt.Sprintf("%s = %s at runtime and at boot", keys, expected)
	}
	return r
}

// keyVerdict is the judgement of one sysctl key.
type keyVerdict struct {
	status   Status
	evidence []Evidence
	problem  string
	// offline: there was no running kernel, only the boot-time value was
	// judged.
	offline bool
}

// evaluateSysctlKey judges one key: its runtime value, its boot-time value,
// and whether the two agree. Without a running kernel (ErrOffline) the
// boot-time value is judged alone: that is what the image will apply.
func evaluateSysctlKey(ctx context.Context, rt RuntimeReader, boot *sysctlBoot, name string, want Expect, requireBoot bool, expected string) keyVerdict {
	key := normaliseSysctlKey(name)
	runtimeSource := "runtime /proc/sys/" + key
	bv := boot.lookup(key)
	bootEv := bv.evidence(expected)
	var history []Evidence
	for _, a := range bv.Replaced {
		v := a.Value
		if a.Exclude {
			v = "excluded"
		}
		history = append(history, Evidence{Source: a.source() + " (replaced by " + bv.By.source() + ")", Value: v, Expected: expected})
	}
	bootOK := true
	if bv.Set {
		bootOK, _ = want.accepts(normaliseSysctlValue(bv.By.Value), false)
	}
	v, err := rt.Sysctl(ctx, key)
	if errors.Is(err, ErrOffline) {
		evs := append([]Evidence{{Source: runtimeSource, Value: "not read (offline evaluation)", Expected: expected}, bootEv}, history...)
		switch {
		case bv.Set && !bootOK:
			return keyVerdict{StatusFail, evs, fmt.Sprintf("%s is set to %s at boot by %s, want %s", name, bv.By.Value, bv.By.source(), expected), true}
		case bv.Set:
			return keyVerdict{StatusPass, evs, "", true}
		case requireBoot:
			return keyVerdict{StatusFail, evs, fmt.Sprintf("no boot-time file sets %s: the kernel default applies at boot", name), true}
		}
		return keyVerdict{StatusSkip, evs, "", true}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return keyVerdict{status: StatusSkip, evidence: append([]Evidence{{Source: runtimeSource, Value: "absent (not supported by this kernel)", Expected: expected}, bootEv}, history...)}
	}
	if err != nil {
		return keyVerdict{status: StatusError, evidence: append([]Evidence{{Source: runtimeSource, Value: "unreadable", Expected: expected}, bootEv}, history...), problem: fmt.Sprintf("%s: %v", name, err)}
	}
	v = normaliseSysctlValue(v)
	evs := append([]Evidence{{Source: runtimeSource, Value: v, Expected: expected}, bootEv}, history...)
	runtimeOK, _ := want.accepts(v, false)
	fail := func(msg string, args ...any) keyVerdict {
		return keyVerdict{status: StatusFail, evidence: evs, problem: fmt.Sprintf(msg, args...)}
	}
	switch {
	case !runtimeOK && bv.Set && bootOK:
		return fail("%s is %s at runtime but %s is set to %s at %s: the running kernel differs from the configuration", name, v, name, bv.By.Value, bv.By.source())
	case !runtimeOK:
		return fail("%s is %s at runtime, want %s", name, v, expected)
	case !bootOK:
		return fail("%s is %s at runtime but %s sets %s: the next boot would apply it", name, v, bv.By.source(), bv.By.Value)
	case bv.Set && normaliseSysctlValue(bv.By.Value) != v:
		return fail("%s is %s at runtime but %s at boot (%s): someone changed the running value", name, v, bv.By.Value, bv.By.source())
	case !bv.Set && requireBoot:
		return fail("%s is %s at runtime but no sysctl file sets it: a reboot would bring back the kernel default", name, v)
	}
	return keyVerdict{status: StatusPass, evidence: evs}
}
