package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/internal/textsafe"
)

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the controllers on the store: each replica, which one leads, the lease's epoch and age",
		Long: "Show the `warden serve` replicas on the store (one with SQLite), which of them leads (holds\n" +
			"the writer lease and executes runs, reconcile, drift checks and waves), the lease's epoch\n" +
			"(every side effect carries it) and how long ago it was renewed. Any replica answers.",
		Args: cobra.NoArgs,
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, _ []string) (v1.Status, error) {
			return c.Status(ctx)
		}, func(w io.Writer, st v1.Status) error {
			if asJSON {
				return printJSON(w, st)
			}
			return printStatus(w, st)
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(w io.Writer, st v1.Status) error {
	fmt.Fprintf(w, "store:    %s\n", st.Store)
	switch l := st.Lease; {
	case l == nil:
		fmt.Fprintln(w, "leader:   none (no controller has held the lease yet)")
	case l.Expired:
		fmt.Fprintf(w, "leader:   none: the lease of %s (pid %d on %s) expired %s ago; epoch %d\n",
			textsafe.Line(l.Owner), l.PID, textsafe.Line(l.Host), st.Now.Sub(l.ExpiresAt).Round(time.Millisecond), l.Epoch)
	default:
		fmt.Fprintf(w, "leader:   %s (pid %d on %s)\n", textsafe.Line(l.Owner), l.PID, textsafe.Line(l.Host))
		fmt.Fprintf(w, "epoch:    %d, held since %s (%s)\n", l.Epoch, l.AcquiredAt.UTC().Format(time.RFC3339), st.Now.Sub(l.AcquiredAt).Round(time.Second))
		fmt.Fprintf(w, "lease:    renewed %s ago, valid until %s\n", time.Duration(l.AgeSeconds*float64(time.Second)).Round(time.Millisecond), l.ExpiresAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	t := newTable(w, "REPLICA", "ROLE", "HOST", "PID", "API", "VERSION", "UP", "SEEN")
	for _, r := range st.Replicas {
		role := "follower"
		switch {
		case r.Leader:
			role = "leader"
		case r.Silent:
			role = "silent"
		}
		if r.ID == st.AnsweredBy {
			role += " (answered)"
		}
		t.row(textsafe.Line(r.ID), role, textsafe.Line(r.Host), fmt.Sprint(r.PID), textsafe.Line(r.API), textsafe.Line(r.Version),
			st.Now.Sub(r.StartedAt).Round(time.Second).String(), st.Now.Sub(r.SeenAt).Round(time.Millisecond).String()+" ago")
	}
	return t.flush()
}
