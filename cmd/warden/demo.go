package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/demo"
)

func newDemoCmd(g *globals) *cobra.Command {
	var asJSON, noLinux, noSample bool
	var serve, dir string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole path on an embedded simulated vCenter: alert, policy, evidence, isolation, verification, audit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if noSample && serve == "" {
				return errors.New("--no-sample needs --serve: without the sample alert there is nothing to show until you send one")
			}
			envToken := os.Getenv("WARDEN_API_TOKEN")
			opt := demo.Options{Serve: serve, NoSample: noSample, Token: envToken, Dir: dir}
			if serve != "" || g.logLevel == "debug" {
				opt.Log = g.logger()
			}
			opt.Ready = func(url, token string) { printDemoReady(g.errw, url, token, envToken != "") }
			// Run removes its temporary directory itself, also when the
			// context ends (Ctrl-C, SIGTERM: main's signal.NotifyContext).
			res, err := demo.Run(cmd.Context(), opt)
			if err != nil {
				return err
			}
			// The Linux part needs root and network namespaces; it says
			// plainly when it cannot run.
			var lres demo.LinuxResult
			if !noLinux && serve == "" {
				lopt := demo.LinuxOptions{Log: opt.Log}
				if dir != "" {
					lopt.Dir = filepath.Join(dir, "linux")
				}
				lres, err = demo.RunLinux(cmd.Context(), lopt)
				if err != nil {
					return err
				}
			} else {
				lres = demo.LinuxResult{Skipped: true, SkipReason: "not requested"}
			}
			if asJSON {
				out := struct {
					demo.Result
					Linux demo.LinuxResult `json:"linux"`
				}{res, lres}
				if err := printJSON(g.out, out); err != nil {
					return err
				}
			} else {
				if err := res.Summary(g.out); err != nil {
					return err
				}
				fmt.Fprintln(g.out)
				if err := lres.Summary(g.out); err != nil {
					return err
				}
			}
			if noSample {
				return nil
			}
			if !res.Verified || !res.AuditOK {
				return demo.ErrNotContained
			}
			if !lres.Skipped && (!lres.Verified || !lres.TrafficRestored) {
				return demo.ErrNotContained
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().BoolVar(&noLinux, "no-linux", false, "skip the Linux part (network namespaces, real quarantine; needs root)")
	cmd.Flags().StringVar(&serve, "serve", "", "keep the demo controller and API running on ADDR (e.g. 127.0.0.1:8780) until interrupted")
	cmd.Flags().BoolVar(&noSample, "no-sample", false, "with --serve: send no sample alert, so gw-osaka is untouched until you submit one (examples/*.json)")
	cmd.Flags().StringVar(&dir, "dir", "", "keep the store, evidence and reports in DIR (default: a temporary directory, removed on exit)")
	return cmd
}

// printDemoReady tells the person where the demo serves. The token is
// printed only when the demo generated it: one taken from WARDEN_API_TOKEN
// is the person's own and stays out of terminal scrollback and logs.
func printDemoReady(w io.Writer, url, token string, fromEnv bool) {
	fmt.Fprintf(w, "warden demo: API at %s\n", url)
	if fromEnv {
		fmt.Fprintf(w, "warden demo: uses the API token from WARDEN_API_TOKEN\nwarden demo: try: WARDEN_SERVER=%s warden gateways list\n", url)
	} else {
		fmt.Fprintf(w, "warden demo: token %s\nwarden demo: try: WARDEN_SERVER=%s WARDEN_API_TOKEN=%s warden gateways list\n", token, url, token)
	}
	fmt.Fprintln(w, "warden demo: Ctrl-C to stop")
}
