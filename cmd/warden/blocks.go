package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/internal/textsafe"
)

const blocksHelp = `Blocks of remote addresses at every gateway with an agent (the block_ioc action):
from STIX bundles and MISP events (POST /v1/intake/stix, /v1/intake/misp, or a TAXII
feed), from an orchestrator over OpenC2 (/.well-known/openc2), or from a person here.

A block goes into force by itself when every address in it is safe to block. One that
covers a private, loopback, link-local, multicast or reserved range, a management
network, a site's network, any gateway's address (a tunnel endpoint), a range in
blocks.protected, or a network wider than blocks.max_auto_prefix_v4 (/16) or
blocks.max_auto_prefix_v6 (/32) waits for approval by another person, and says why.
Every block expires (blocks.default_ttl, at most blocks.max_ttl); the leader then takes
it out of every gateway's set, as it does when a block is withdrawn.`

// newBlockCmd is `warden block …`.
func newBlockCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "block", Short: "Block remote addresses at every gateway; list, approve, withdraw", Long: blocksHelp}

	var state string
	var limit int
	var asJSON bool
	list := &cobra.Command{
		Use: "list [--state STATE]", Short: "List blocks, newest first, and what each gateway holds", Args: cobra.NoArgs,
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, _ []string) (v1.BlockList, error) {
			return c.Blocks(ctx, state, limit)
		}, func(w io.Writer, l v1.BlockList) error {
			if asJSON {
				return printJSON(w, l)
			}
			t := newTable(w, "NUMBER", "STATE", "PREFIXES", "SOURCE", "REQUESTED BY", "EXPIRES", "WHY APPROVAL")
			for _, b := range l.Blocks {
				t.row(strconv.FormatInt(b.Number, 10), b.State, prefixSummary(b), b.Source, b.RequestedBy,
					b.ExpiresAt.UTC().Format(time.RFC3339), orDash(textsafe.Line(strings.Join(b.Unsafe, "; "))))
			}
			if err := t.flush(); err != nil {
				return err
			}
			if len(l.Gateways) > 0 {
				fmt.Fprintln(w)
				gt := newTable(w, "GATEWAY", "PREFIXES HELD", "IN SYNC", "ERROR")
				for _, gw := range l.Gateways {
					gt.row(gw.Gateway, strconv.Itoa(gw.Count), yesNo(gw.InSync), orDash(textsafe.Line(gw.Error)))
				}
				return gt.flush()
			}
			return nil
		}),
	}
	list.Flags().StringVar(&state, "state", "", "only blocks in this state: pending_approval, active, withdrawn, expired, refused, noted")
	list.Flags().IntVar(&limit, "limit", 0, "at most this many (default: the controller's)")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	show := &cobra.Command{
		Use: "show NUMBER", Short: "Show one block", Args: cobra.ExactArgs(1),
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.Block, error) {
			n, err := blockNumberArg(args[0])
			if err != nil {
				return v1.Block{}, err
			}
			return c.Block(ctx, n)
		}, func(w io.Writer, b v1.Block) error { return printJSON(w, b) }),
	}

	var name, kind, ref string
	var ttl time.Duration
	var dryRun bool
	add := &cobra.Command{
		Use:   "add ADDRESS|CIDR...",
		Short: "Block addresses or networks at every gateway (unsafe ones wait for another person's approval)",
		Args:  cobra.MinimumNArgs(1),
		RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.Block, error) {
			req := v1.BlockRequest{Prefixes: args, Name: name, Kind: kind, Ref: ref}
			if ttl < 0 {
				return v1.Block{}, fmt.Errorf("--ttl: %s is negative", ttl)
			}
			if ttl > 0 {
				req.ValidUntil = time.Now().Add(ttl)
			}
			if dryRun {
				return c.PlanBlock(ctx, req)
			}
			return c.RequestBlock(ctx, req)
		}, func(w io.Writer, b v1.Block) error {
			if dryRun {
				fmt.Fprintln(w, "dry run: nothing recorded")
			}
			return printBlockState(w, b)
		}),
	}
	add.Flags().BoolVar(&dryRun, "dry-run", false, "say what the block would be and why it would wait for approval; record nothing")
	add.Flags().StringVar(&name, "name", "", "what the addresses are, for people")
	add.Flags().StringVar(&kind, "kind", "", "indicator kind the addresses stand for (default c2_beacon)")
	add.Flags().StringVar(&ref, "ref", "", "your reference: the same reference again returns the recorded block")
	add.Flags().DurationVar(&ttl, "ttl", 0, "how long the block lasts (default blocks.default_ttl)")

	cmd.AddCommand(list, show, add)
	for _, d := range []struct{ use, short string }{
		{"approve", "Approve a block waiting for approval (not the person who asked for it)"},
		{"refuse", "Refuse a block waiting for approval"},
		{"withdraw", "Lift a block: the next pass takes it out of every gateway"},
	} {
		var reason string
		c := &cobra.Command{
			Use: d.use + " NUMBER [--reason TEXT]", Short: d.short, Args: cobra.ExactArgs(1),
			RunE: callAPI(g, func(ctx context.Context, c *client.Client, args []string) (v1.Block, error) {
				n, err := blockNumberArg(args[0])
				if err != nil {
					return v1.Block{}, err
				}
				return c.DecideBlock(ctx, n, d.use, reason)
			}, printBlockState),
		}
		c.Flags().StringVar(&reason, "reason", "", "why, for the audit")
		cmd.AddCommand(c)
	}
	return cmd
}

func blockNumberArg(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("NUMBER: %q is not a block number (see warden block list)", s)
	}
	return n, nil
}

func printBlockState(w io.Writer, b v1.Block) error {
	number := "-"
	if b.Number > 0 {
		number = strconv.FormatInt(b.Number, 10)
	}
	_, err := fmt.Fprintf(w, "block %s (%s): %s\n", number, prefixSummary(b), b.State)
	if err == nil && len(b.Unsafe) > 0 && b.State == "pending_approval" {
		_, err = fmt.Fprintf(w, "waits for another person's approval: %s\n", textsafe.Line(strings.Join(b.Unsafe, "; ")))
	}
	return err
}

// prefixSummary is the first prefixes of a block and how many more.
func prefixSummary(b v1.Block) string {
	ps := b.Prefixes
	if len(ps) == 0 {
		return orDash(strings.Join(b.Domains, ","))
	}
	if len(ps) > 3 {
		return strings.Join(ps[:3], ",") + fmt.Sprintf(" (+%d)", len(ps)-3)
	}
	return strings.Join(ps, ",")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
