package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/baseline"
)

// Exit codes of `warden baseline check`. 3 is what `warden drift check`
// returns when a gateway does not pass, so scripts read both the same way;
// 1 stays for anything unexpected.
const (
	exitBaselineNotPassed = 3
	exitUsage             = 2
)

// newBaselineCmd is `warden baseline`: the hardened baseline evaluated
// here, without a controller or an agent.
func newBaselineCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "baseline", Short: "Evaluate the hardened gateway baseline locally"}
	cmd.AddCommand(newBaselineCheckCmd(g))
	return cmd
}

// usageError makes err exit with status 2; main prints it on stderr.
func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

func newBaselineCheckCmd(g *globals) *cobra.Command {
	var (
		root, file string
		ids        []string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "check --root DIR [--check ID]... [--json] [--baseline FILE]",
		Short: "Check a mounted image or folder against the baseline before it is deployed (exit 0 pass, 3 a check fails or errs, 2 usage)",
		Long: `Evaluate the shipped gateway baseline (or --baseline FILE) offline against the
tree under --root: a mounted image or a folder that is not running. Files are
read under DIR with symlinks resolved inside it (an absolute link /x means
DIR/x; ".." stops at DIR), so nothing of this host is judged. sysctl checks
judge the values systemd-sysctl will apply at boot; checks that need a running
system (listening sockets, the loaded firewall) and integrity checks that need
a recorded manifest are skipped, and say so.

Exit status: 0 when no check fails or errs (skipped checks do not count); 3
when one does; 2 on a usage error (missing or unreadable --root, unknown
--check, a baseline that does not load), with the cause on stderr.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(fmt.Errorf("unexpected argument %q", args[0]))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, env, err := baselineCheckInputs(root, file, ids)
			if err != nil {
				return usageError(err)
			}
			rep, err := b.Evaluate(cmd.Context(), env)
			if err != nil {
				return fmt.Errorf("evaluating baseline %s: %w", b.Name, err)
			}
			if asJSON {
				err = printJSON(g.out, rep)
			} else {
				err = printBaselineTable(g, rep, env.Root)
			}
			if err != nil {
				return fmt.Errorf("writing the report: %w", err)
			}
			if !rep.Passed {
				return &exitError{code: exitBaselineNotPassed, err: fmt.Errorf("%s does not pass baseline %s: %d failed, %d could not be evaluated", env.Root, b.Name, rep.Counts.Fail, rep.Counts.Error)}
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	f := cmd.Flags()
	f.StringVar(&root, "root", "", "the image or folder to check, as the gateway's / (required)")
	f.StringSliceVar(&ids, "check", nil, "evaluate only this check id (repeatable; default: every check)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON, with every check's evidence")
	f.StringVar(&file, "baseline", "", "baseline YAML to evaluate (default: the shipped gateway baseline)")
	return cmd
}

// baselineCheckInputs validates the flags into the baseline to evaluate and
// an offline environment. Every error is a usage error.
func baselineCheckInputs(root, file string, ids []string) (*baseline.Baseline, baseline.Env, error) {
	if root == "" {
		return nil, baseline.Env{}, errors.New("--root is required: the image or folder to check")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, baseline.Env{}, fmt.Errorf("resolving --root %s: %w", root, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, baseline.Env{}, fmt.Errorf("reading --root: %w", err)
	}
	if !st.IsDir() {
		return nil, baseline.Env{}, fmt.Errorf("--root %s is not a directory", root)
	}
	var b *baseline.Baseline
	if file != "" {
		b, err = baseline.LoadFile(file)
	} else {
		b, err = baseline.Default()
	}
	if err != nil {
		return nil, baseline.Env{}, fmt.Errorf("loading the baseline: %w", err)
	}
	if len(ids) > 0 {
		selected := *b
		selected.Checks = nil
		for _, id := range ids {
			c, ok := b.Check(id)
			if !ok {
				return nil, baseline.Env{}, fmt.Errorf("--check %q: baseline %s has no such check", id, b.Name)
			}
			if _, dup := selected.Check(id); !dup {
				selected.Checks = append(selected.Checks, *c)
			}
		}
		b = &selected
	}
	return b, baseline.OfflineEnv(abs), nil
}

func printBaselineTable(g *globals, rep baseline.Report, root string) error {
	t := newTable(g.out, "CHECK", "RESULT", "DETAIL")
	for _, r := range rep.Results {
		t.row(r.ID, fmt.Sprint(r.Status), strings.ReplaceAll(r.Message, "\n", " "))
	}
	if err := t.flush(); err != nil {
		return err
	}
	c := rep.Counts
	_, err := fmt.Fprintf(g.out, "\nbaseline %s against %s: %d pass, %d fail, %d error, %d skip\n", rep.Baseline, root, c.Pass, c.Fail, c.Error, c.Skip)
	return err
}
