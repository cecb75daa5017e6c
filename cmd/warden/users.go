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
	"github.com/warden-ir/warden/internal/textsafe"
)

const usersHelp = `People and machine identities (detectors), each with one role and their own
API tokens. The controller acts as the user of the token a command sends, and names
that user ("user:NAME") in the audit, the chain of custody, runs and reports.

  viewer     reads everything: incidents, runs, gateways, reports, the audit, evidence lists
  intake     posts indicators and Alertmanager alerts, and nothing else (for detectors)
  responder  viewer + submits indicators, plans, starts runbooks and dry runs, asks for a
             release, drift checks, patch waves, shows and exports evidence
  approver   responder + approves and cancels runs, resolves indicators
  admin      approver + manages users, resets the circuit breaker

Four eyes (guards.two_person, on unless the configuration file turns it off): a run is
approved by an approver or admin who neither requested it nor overrode a gate on it.

These commands need the admin role. The first admin, "admin", is made when the store has
no users: its token is in server.bootstrap_token_file (default: bootstrap-admin.token
beside the store). A token is printed once, by add and rotate-token, and the controller
keeps only its hash: store it at once.`

// newUsersCmd is `warden users …`. A token reaches standard output once,
// from add or rotate-token, and nothing else shares that stream with it:
// what the command says about it goes to standard error, so that a script
// can capture the token with $(warden users add … --token-only).
func newUsersCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Manage people and machine identities: roles and API tokens (admin)", Long: usersHelp}

	var role, display string
	var addTokenOnly bool
	add := &cobra.Command{
		Use:   "add NAME --role ROLE [--display-name TEXT]",
		Short: "Add a user with a role and print their first API token, once",
		Long: "Add a user with a role (viewer, intake, responder, approver, admin) and print their first API\n" +
			"token, once: the controller keeps only its hash. Standard output carries the token and\n" +
			"nothing else; --token-only prints the bare token, for $(warden users add … --token-only).",
		Args: cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error {
			if strings.TrimSpace(role) == "" {
				return errors.New("--role is required: viewer, intake, responder, approver or admin")
			}
			return nil
		},
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.IssuedToken, error) {
			return c.AddUser(ctx, v1.AddUserRequest{Name: args[0], Role: role, DisplayName: display})
		}, func(w io.Writer, is v1.IssuedToken) error {
			return printIssued(w, g.errw, "added", is, addTokenOnly)
		}),
	}
	add.Flags().StringVar(&role, "role", "", "viewer, intake, responder, approver or admin (required)")
	add.Flags().StringVar(&display, "display-name", "", "the person's full name, or what the identity is (shown in lists)")
	tokenOnlyFlags(add, &addTokenOnly)

	var asJSON bool
	list := &cobra.Command{
		Use: "list", Short: "List users with their roles and token ids (never a token)", Args: cobra.NoArgs,
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, _ []string) ([]v1.User, error) {
			return c.Users(ctx)
		}, func(w io.Writer, users []v1.User) error {
			if asJSON {
				return printJSON(w, users)
			}
			t := newTable(w, "NAME", "ROLE", "DISPLAY NAME", "DISABLED", "TOKENS", "CREATED BY")
			for _, u := range users {
				disabled := "no"
				if u.Disabled {
					disabled = "yes"
				}
				t.row(u.Name, u.Role, orDash(u.DisplayName), disabled, orDash(strings.Join(u.Tokens, ",")), orDash(u.CreatedBy))
			}
			return t.flush()
		}),
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	disable := &cobra.Command{
		Use: "disable NAME", Short: "Disable a user: their tokens stop working at once (the last enabled admin cannot be)", Args: cobra.ExactArgs(1),
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.User, error) {
			return c.DisableUser(ctx, args[0])
		}, func(w io.Writer, u v1.User) error {
			_, err := fmt.Fprintf(w, "user %s (role %s) is disabled: their tokens no longer work\n", textsafe.Line(u.Name), u.Role)
			return err
		}),
	}

	var rotateTokenOnly bool
	rotate := &cobra.Command{
		Use:   "rotate-token NAME",
		Short: "Revoke every token of a user and print a new one, once",
		Long: "Revoke every token of a user and print a new one, once (a lost or leaked token). Standard\n" +
			"output carries the token and nothing else; --token-only prints the bare token.",
		Args: cobra.ExactArgs(1),
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.IssuedToken, error) {
			return c.RotateToken(ctx, args[0])
		}, func(w io.Writer, is v1.IssuedToken) error {
			return printIssued(w, g.errw, "rotated the token of", is, rotateTokenOnly)
		}),
	}
	tokenOnlyFlags(rotate, &rotateTokenOnly)

	cmd.AddCommand(add, list, disable, rotate)
	return cmd
}

// tokenOnlyFlags adds --token-only and its synonym --quiet.
func tokenOnlyFlags(cmd *cobra.Command, v *bool) {
	cmd.Flags().BoolVar(v, "token-only", false, "print only the token on standard output (for $(…) in a script)")
	cmd.Flags().BoolVarP(v, "quiet", "q", false, "the same as --token-only")
}

// printIssued prints a token just issued: on out, the token (alone with
// --token-only), and on errw what it is. Nothing else prints a token.
func printIssued(out, errw io.Writer, did string, is v1.IssuedToken, tokenOnly bool) error {
	fmt.Fprintf(errw, "warden: %s user %s (role %s); new token id %s; the controller keeps only the token's hash\n",
		did, textsafe.Line(is.User.Name), is.User.Role, is.TokenID)
	if tokenOnly {
		_, err := fmt.Fprintln(out, is.Token)
		return err
	}
	_, err := fmt.Fprintf(out, "token for %s (shown once; store it now): %s\n", textsafe.Line(is.User.Name), is.Token)
	return err
}

func newWhoAmICmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show who the controller takes you for: the user, role and token id of your API token",
		Args:  cobra.NoArgs,
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, _ []string) (v1.WhoAmI, error) {
			return c.WhoAmI(ctx)
		}, func(w io.Writer, me v1.WhoAmI) error {
			if asJSON {
				return printJSON(w, me)
			}
			fmt.Fprintf(w, "%s (role %s, token %s)\n", textsafe.Line(me.Actor), me.Role, textsafe.Line(me.TokenID))
			if me.TwoPerson {
				_, err := fmt.Fprintln(w, "four eyes: on (guards.two_person): you may not approve a run you requested or overrode a gate on")
				return err
			}
			_, err := fmt.Fprintln(w, "four eyes: off (guards.two_person: false): one person may request and approve a run alone")
			return err
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
