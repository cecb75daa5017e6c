package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/demo"
)

func newDemoCmd(g *globals) *cobra.Command {
	var asJSON bool
	var serve string
	var noLinux bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole path on an embedded simulated vCenter: alert, policy, evidence, isolation, verification, audit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opt := demo.Options{Serve: serve, Token: os.Getenv("WARDEN_API_TOKEN")}
			if serve != "" || g.logLevel == "debug" {
				opt.Log = g.logger()
			}
			opt.Ready = func(url, token string) {
				fmt.Fprintf(g.errw, "warden demo: API at %s\nwarden demo: token %s\nwarden demo: try: WARDEN_SERVER=%s WARDEN_API_TOKEN=%s warden gateways list\nwarden demo: Ctrl-C to stop\n", url, token, url, token)
			}
			res, err := demo.Run(cmd.Context(), opt)
			if err != nil {
				return err
			}
			// The Linux part needs root and network namespaces; it says
			// plainly when it cannot run.
			var lres demo.LinuxResult
			if !noLinux && serve == "" {
				lres, err = demo.RunLinux(cmd.Context(), demo.LinuxOptions{Log: opt.Log})
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
	return cmd
}
