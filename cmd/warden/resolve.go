package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

// newIndicatorResolveCmd is `warden indicator resolve ID --reason R`: a
// person judges an indicator no longer a threat, the only way past a
// release's no-live-threat gate.
func newIndicatorResolveCmd(g *globals) *cobra.Command {
	var by, reason string
	cmd := &cobra.Command{
		Use:   "resolve INDICATOR --reason TEXT",
		Short: "Record that a person judged an indicator no longer a threat (a release needs it for every live one)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return errors.New("--reason is required: why the indicator is no longer a threat")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			body, _ := json.Marshal(map[string]string{"by": whoami(by), "reason": reason})
			var out struct {
				Indicator  string `json:"indicator"`
				ResolvedBy string `json:"resolved_by"`
			}
			if _, err := c.do(cmd.Context(), "POST", "/v1/indicators/"+url.PathEscape(args[0])+"/resolve", body, &out); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "indicator %s resolved by %s\n", out.Indicator, out.ResolvedBy)
			return nil
		},
	}
	cmd.Flags().StringVar(&by, "by", "", "who resolves (default: $USER)")
	cmd.Flags().StringVar(&reason, "reason", "", "why it is no longer a threat (required)")
	return cmd
}
