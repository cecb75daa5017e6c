package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/internal/textsafe"
)

// newSensorsCmd is `warden sensors show GATEWAY`.
func newSensorsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "sensors", Short: "What a gateway's own sensors watch and have learned"}
	var asJSON bool
	show := &cobra.Command{
		Use:   "show GATEWAY",
		Short: "Ask the gateway's agent what its sensors watch, whether they are still learning, and what they learned",
		Args:  cobra.ExactArgs(1),
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.GatewaySensors, error) {
			return c.Sensors(ctx, args[0])
		}, func(w io.Writer, s v1.GatewaySensors) error {
			if asJSON {
				return printJSON(w, s)
			}
			return printSensors(w, s)
		}),
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(show)
	return cmd
}

func printSensors(w io.Writer, s v1.GatewaySensors) error {
	learning := "over since " + s.LearningEnds.UTC().Format(time.RFC3339)
	if s.Learning {
		learning = "learning until " + s.LearningEnds.UTC().Format(time.RFC3339) + " (new destinations and admin sources are learned, not reported)"
	}
	fmt.Fprintf(w, "gateway %s: watchers %s\n", s.Gateway, orDash(strings.Join(s.Enabled, ", ")))
	fmt.Fprintf(w, "learning: %s\n", learning)
	fmt.Fprintf(w, "destinations learned: %d; traffic profile cells: %d\n", s.Destinations, s.Profiles)
	for _, d := range s.DestinationSample {
		fmt.Fprintf(w, "  %s\n", textsafe.Line(d))
	}
	fmt.Fprintf(w, "findings queued for the controller: %d (dropped: %d)\n", s.Queued, s.Dropped)
	if len(s.AdminSources) == 0 {
		_, err := fmt.Fprintln(w, "admin login sources: none yet")
		return err
	}
	t := newTable(w, "ADMIN SOURCE", "USERS", "FIRST SEEN", "LAST SEEN", "LOGINS")
	for _, a := range s.AdminSources {
		t.row(textsafe.Line(a.Address), textsafe.Line(strings.Join(a.Users, ",")), a.FirstSeen.UTC().Format(time.RFC3339), a.LastSeen.UTC().Format(time.RFC3339), fmt.Sprint(a.Count))
	}
	return t.flush()
}
