package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
)

// newIndicatorResolveCmd is `warden indicator resolve ID --reason R`: a
// person judges an indicator no longer a threat, the only way past a
// release's no-live-threat gate.
func newIndicatorResolveCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "resolve INDICATOR --reason TEXT",
		Short: "Record that a person judged an indicator no longer a threat (a release needs it for every live one)",
		Long: "Record that a person judged an indicator no longer a threat (a release needs it for every live one).\n\n" +
			"The person is the user of your API token, who needs the approver or admin role.",
		Args: cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error {
			if strings.TrimSpace(reason) == "" {
				return errors.New("--reason is required: why the indicator is no longer a threat")
			}
			return nil
		},
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.Resolved, error) {
			return c.ResolveIndicator(ctx, args[0], v1.ResolveRequest{Reason: reason})
		}, func(w io.Writer, out v1.Resolved) error {
			fmt.Fprintf(w, "indicator %s resolved by %s\n", out.Indicator, out.ResolvedBy)
			return nil
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why it is no longer a threat (required)")
	return cmd
}
