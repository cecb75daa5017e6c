package baseline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
)

// DropInPath is the sysctl drop-in Remediate maintains. Its name sorts after
// Debian's 99-sysctl.conf (the link to /etc/sysctl.conf) so that it wins
// over /etc/sysctl.conf and the files shipped by packages; files whose
// names sort later still win, and then the re-evaluation says so.
const DropInPath = "/etc/sysctl.d/99-zz-warden-baseline.conf"

// ErrNoSafeRemediation is returned for a check without a remediation marked
// safe. It is terminal: a person has to act.
var ErrNoSafeRemediation = errors.New("check has no safe remediation")

// ErrRemediationIncomplete is wrapped when the check still fails after the
// remediation was applied (for example a sysctl.d file sorting after the
// drop-in overrides it).
var ErrRemediationIncomplete = errors.New("remediation applied but the check still does not pass")

// RemediationOutcome says what Remediate did.
type RemediationOutcome struct {
	Check string `json:"check"`
	// Changed is false when the check already passed: nothing was written.
	Changed bool `json:"changed"`
	// Steps lists each change made, for the audit trail.
	Steps  []string `json:"steps,omitempty"`
	Before Result   `json:"before"`
	After  Result   `json:"after"`
}

// Remediate applies a check's safe remediation and evaluates the check
// again. Only sysctl checks can carry one: every key whose runtime value is
// not Remediation.Value is set (through env.Runtime, which must implement
// SysctlWriter), and every key whose boot-time value is not is written to
// DropInPath, atomically, keeping the file's other keys. It is idempotent:
// on a passing check it writes nothing and returns Changed=false. When the
// check still does not pass afterwards the error wraps
// ErrRemediationIncomplete and the outcome's After result says why.
func Remediate(ctx context.Context, c *Check, env Env) (RemediationOutcome, error) {
	out := RemediationOutcome{Check: c.ID}
	if c.Remediation == nil || !c.Remediation.Safe || c.Type != TypeSysctl {
		return out, fmt.Errorf("remediating %s: %w", c.ID, ErrNoSafeRemediation)
	}
	env, err := env.withDefaults()
	if err != nil {
		return out, err
	}
	out.Before = (&evaluation{env: env}).run(ctx, c)
	out.After = out.Before
	if out.Before.Status == StatusPass {
		return out, nil
	}
	w, ok := env.Runtime.(SysctlWriter)
	if !ok {
		return out, fmt.Errorf("remediating %s: the runtime reader cannot write sysctl values", c.ID)
	}
	boot, err := loadSysctlBoot(env.Root)
	if err != nil {
		return out, fmt.Errorf("remediating %s: %w", c.ID, err)
	}
	want := c.Remediation.Value
	persist := map[string]string{}
	for _, name := range c.Keys {
		key := normaliseSysctlKey(name)
		cur, err := env.Runtime.Sysctl(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("remediating %s: %w", c.ID, err)
		}
		if normaliseSysctlValue(cur) != want {
			if err := w.SetSysctl(ctx, key, want); err != nil {
				return out, fmt.Errorf("remediating %s: %w", c.ID, err)
			}
			out.Steps = append(out.Steps, fmt.Sprintf("set %s at runtime: %s → %s", name, normaliseSysctlValue(cur), want))
			out.Changed = true
		}
		if bv := boot.lookup(key); !bv.Set || normaliseSysctlValue(bv.By.Value) != want {
			persist[name] = want
		}
	}
	if len(persist) > 0 {
		if err := writeSysctlDropIn(env.Root, persist); err != nil {
			return out, fmt.Errorf("remediating %s: %w", c.ID, err)
		}
		names := slices.Sorted(maps.Keys(persist))
		out.Steps = append(out.Steps, fmt.Sprintf("wrote %s = %s to %s", strings.Join(names, ", "), want, DropInPath))
		out.Changed = true
	}
	out.After = (&evaluation{env: env}).run(ctx, c)
	if out.After.Status != StatusPass {
		return out, fmt.Errorf("remediating %s: %w: %s", c.ID, ErrRemediationIncomplete, out.After.Message)
	}
	return out, nil
}

// writeSysctlDropIn merges settings (dotted or slashed names) into
// DropInPath and replaces it atomically.
func writeSysctlDropIn(root string, settings map[string]string) error {
	type entry struct{ name, value string }
	entries := map[string]entry{}
	if data, err := readFileIn(root, DropInPath); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' || line[0] == ';' {
				continue
			}
			if k, v, ok := strings.Cut(line, "="); ok {
				k = strings.TrimSpace(k)
				entries[normaliseSysctlKey(k)] = entry{k, strings.TrimSpace(v)}
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", DropInPath, err)
	}
	for name, v := range settings {
		entries[normaliseSysctlKey(name)] = entry{name, v}
	}
	var b strings.Builder
	b.WriteString("# Written by Warden's baseline remediation. Change the baseline, not this file.\n")
	for _, k := range slices.Sorted(maps.Keys(entries)) {
		fmt.Fprintf(&b, "%s = %s\n", entries[k].name, entries[k].value)
	}
	if err := replaceFileIn(root, DropInPath, []byte(b.String())); err != nil {
		return fmt.Errorf("writing %s: %w", DropInPath, err)
	}
	return nil
}
