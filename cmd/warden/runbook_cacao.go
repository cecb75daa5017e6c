package main

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/cacao"
	"github.com/warden-ir/warden/internal/textsafe"
	"github.com/warden-ir/warden/policies"
)

// exitUnsupported is the exit status of `warden runbook import` when the
// playbook has steps Warden cannot map (each named on stderr).
const exitUnsupported = 3

// newRunbookExportCmd is `warden runbook export NAME --format cacao`.
func newRunbookExportCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "export NAME --format cacao",
		Short: "Write a runbook as a CACAO v2.0 playbook (JSON) to standard output",
		Long: "Write a runbook as a CACAO v2.0 playbook (JSON) to standard output.\n\n" +
			"The runbook comes from policies.dir of the configuration (-c), or the embedded defaults.\n" +
			"Each step becomes an action step whose command is OpenC2 for Warden's actuator at\n" +
			"--server (default: server.listen) " + cacao.OpenC2Path + ", or a manual command where no\n" +
			"OpenC2 action fits (notify). When a policy runs the runbook with approval: required, or\n" +
			"the runbook releases a gateway, a manual approval step comes first. `warden runbook\n" +
			"import` reads the playbook back.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "cacao" {
				return fmt.Errorf("--format %q: the only format is cacao", format)
			}
			out, err := exportRunbook(g, args[0], time.Now())
			if err != nil {
				return err
			}
			_, err = g.out.Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "cacao", "output format: cacao (CACAO v2.0 JSON)")
	return cmd
}

// exportRunbook loads the policy set the configuration names and exports
// runbook name, dated now.
func exportRunbook(g *globals, name string, now time.Time) ([]byte, error) {
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	set, err := loadPolicySet(cfg.Policies.Dir)
	if err != nil {
		return nil, err
	}
	rb, ok := set.Runbooks[name]
	if !ok {
		return nil, fmt.Errorf("runbook %q: no such runbook (have: %s)", name, strings.Join(runbookNames(set), ", "))
	}
	actuator := g.server
	if actuator == "" {
		scheme := "http"
		if cfg.Server.TLSCertFile != "" {
			scheme = "https"
		}
		actuator = scheme + "://" + cfg.Server.Listen
	}
	pb, err := cacao.Export(rb, cacao.ExportOptions{
		Actuator: strings.TrimSuffix(actuator, "/"), Created: now, Modified: now,
		Approval: cacao.ApprovalFor(set, name),
	})
	if err != nil {
		return nil, err
	}
	return cacao.Marshal(pb)
}

// loadPolicySet loads dir, or the embedded defaults when dir is empty.
func loadPolicySet(dir string) (*policies.Set, error) {
	if dir == "" {
		return policies.Default()
	}
	set, err := policies.LoadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("policies.dir: loading policies: %w", err)
	}
	return set, nil
}

func runbookNames(set *policies.Set) []string {
	names := make([]string, 0, len(set.Runbooks))
	for n := range set.Runbooks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// newRunbookImportCmd is `warden runbook import FILE`.
func newRunbookImportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Read a CACAO v2.0 playbook and print it as a Warden runbook (YAML)",
		Long: "Read a CACAO v2.0 playbook (FILE, or - for standard input) and print it as a Warden\n" +
			"runbook (YAML, as in the policies directory).\n\n" +
			"The workflow must be one sequence of action steps, each with one command: OpenC2 over\n" +
			"openc2-http whose action on a device maps onto a catalogue action, or a step written by\n" +
			"`warden runbook export` (Warden's step extension). Warden's approval step is noted in a\n" +
			"comment: approval is set on the policies that run the runbook.\n\n" +
			"Exit status: 0 and the runbook on standard output; 3 when steps cannot be mapped, each\n" +
			"named on standard error (id, name, why) and nothing printed; 1 when FILE is not a\n" +
			"CACAO v2.0 playbook.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readInput(args[0])
			if err != nil {
				return err
			}
			im, err := cacao.Import(data, cacao.ImportOptions{})
			var unsupported *cacao.UnsupportedError
			if errors.As(err, &unsupported) {
				for _, s := range unsupported.Steps {
					// Ids, names and command types come from the file.
					fmt.Fprintln(g.errw, "unsupported step", textsafe.Line(s.String()))
				}
				return &exitError{code: exitUnsupported, err: fmt.Errorf("%s: %d step(s) cannot be mapped onto Warden's catalogue; nothing imported", args[0], len(unsupported.Steps))}
			}
			if err != nil {
				return fmt.Errorf("%s: %s", args[0], textsafe.Line(err.Error()))
			}
			out, err := cacao.RunbookYAML(im)
			if err != nil {
				return err
			}
			_, err = g.out.Write(out)
			return err
		},
	}
}
