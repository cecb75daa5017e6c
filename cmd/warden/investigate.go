package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
)

// newInvestigateCmd is `warden investigate INCIDENT [--since DURATION]`.
func newInvestigateCmd(g *globals) *cobra.Command {
	var since string
	cmd := &cobra.Command{
		Use:   "investigate INCIDENT",
		Short: "Collect what the incident's gateway and the peers of its tunnels recorded, and build the attacker's timeline",
		Long: "Start the investigate-intrusion runbook for the incident's gateway, within the incident, as the\n" +
			"user of your API token. Its step asks the agent of the gateway and of every peer of its tunnels\n" +
			"for the journal, log files, logins, connection records and counters, package and configuration\n" +
			"history, shell histories and processes, from --since before the incident's first sign\n" +
			"(default: investigate.look_back) until now; files them as evidence; and builds the timeline,\n" +
			"corrected for each agent's clock offset. A peer whose agent is down is a gap, not a failure.\n" +
			"Follow it with `warden runs show RUN`; read it in `warden report INCIDENT`.",
		Args: cobra.ExactArgs(1),
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.Run, error) {
			return c.StartInvestigation(ctx, args[0], v1.StartInvestigationRequest{Since: since})
		}, func(w io.Writer, out v1.Run) error {
			fmt.Fprintf(w, "investigation run %s of incident %s on %s is %s\n", out.ID, out.Incident, out.Gateway, out.State)
			_, err := fmt.Fprintf(w, "follow it with: warden runs show %s; then: warden report %s\n", out.ID, out.Incident)
			return err
		}),
	}
	cmd.Flags().StringVar(&since, "since", "", "how far before the incident's first sign to look (24h, 90m; default investigate.look_back)")
	return cmd
}

// newCaptureCmd is `warden capture start|stop GATEWAY`.
func newCaptureCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "capture", Short: "Start or stop a bounded packet capture (pcapng) on a gateway's interfaces"}
	var duration, filter string
	var maxBytes int64
	print := func(w io.Writer, out v1.Run) error {
		fmt.Fprintf(w, "capture run %s on %s is %s\n", out.ID, out.Gateway, out.State)
		_, err := fmt.Fprintf(w, "follow it with: warden runs show %s\n", out.ID)
		return err
	}
	start := &cobra.Command{
		Use:   "start GATEWAY",
		Short: "Record every interface of the gateway as pcapng for --duration, keeping the newest --max-bytes, only what --filter matches",
		Args:  cobra.ExactArgs(1),
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.Run, error) {
			return c.Capture(ctx, args[0], v1.CaptureRequest{Op: "start", Duration: duration, MaxBytes: maxBytes, Filter: filter})
		}, print),
	}
	start.Flags().StringVar(&duration, "duration", "", "how long to capture (default capture.duration)")
	start.Flags().Int64Var(&maxBytes, "max-bytes", 0, "keep at most this many bytes, the oldest packets going first (default capture.max_bytes)")
	start.Flags().StringVar(&filter, "filter", "", "keep only matching packets: host, net, port, tcp, udp, icmp, icmp6, ip, ip6, src, dst, and, or, not")
	stop := &cobra.Command{
		Use:   "stop GATEWAY",
		Short: "Stop the gateway's capture and file every finished capture as evidence (SHA-256, custody)",
		Args:  cobra.ExactArgs(1),
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.Run, error) {
			return c.Capture(ctx, args[0], v1.CaptureRequest{Op: "stop"})
		}, print),
	}
	cmd.AddCommand(start, stop)
	return cmd
}
