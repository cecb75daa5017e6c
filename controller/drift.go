package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/baseline"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/store"
)

// BaselineChecker evaluates a gateway's hardened baseline (through its
// agent) and returns the report. ErrUnsupported means the gateway cannot
// be checked (no agent).
type BaselineChecker interface {
	CheckBaseline(ctx context.Context, gw inventory.Gateway) (baseline.Report, error)
}

// DriftResult is one gateway's drift check.
type DriftResult struct {
	Gateway    string            `json:"gateway"`
	Passed     bool              `json:"passed"`
	Counts     baseline.Counts   `json:"counts"`
	Failing    []string          `json:"failing,omitempty"`
	Changes    []baseline.Change `json:"changes,omitempty"`
	Indicators []Accepted        `json:"indicators,omitempty"`
	Skipped    string            `json:"skipped,omitempty"`
	Error      string            `json:"error,omitempty"`
}

// DriftCheck checks the baseline of one gateway (or every gateway when
// gateway is "all" — the only place where "all" is accepted, because a
// check changes nothing), stores each result with history, and turns every
// check that went from pass to fail into an indicator (baseline_drift or
// integrity_violation) that policies act on like any alert.
func (c *drifter) DriftCheck(ctx context.Context, gateway, actor string) ([]DriftResult, error) {
	var targets []inventory.Gateway
	if gateway == "all" {
		targets = c.inv.Gateways
	} else {
		gw, err := c.resolveGateway(gateway)
		if err != nil {
			return nil, err
		}
		targets = []inventory.Gateway{gw}
	}
	if c.opt.Baseline == nil {
		return nil, fmt.Errorf("%w: no baseline checker configured (gateways need agents)", ErrInvalid)
	}
	// A check is a command to every agent: only the leader sends them,
	// under its epoch.
	epoch, err := c.leaseEpoch()
	if err != nil {
		return nil, err
	}
	ctx = c.fenced(ctx, epoch)
	// The agents evaluate in parallel, each on its own gateway, so a
	// fleet's check takes about as long as its slowest agents rather than
	// the sum of every round trip; the store still serialises the
	// writes. The results keep the inventory's order.
	out := make([]DriftResult, len(targets))
	var g errgroup.Group
	g.SetLimit(driftConcurrency)
	for i, gw := range targets {
		g.Go(func() error {
			out[i] = c.driftOne(ctx, gw, actor)
			return nil
		})
	}
	_ = g.Wait()
	return out, nil
}

// driftConcurrency bounds the agents a drift check asks at once.
const driftConcurrency = 16

func (c *drifter) driftOne(ctx context.Context, gw inventory.Gateway, actor string) DriftResult {
	res := DriftResult{Gateway: gw.ID}
	prev, hadPrev, err := c.st.LatestBaseline(ctx, gw.ID)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	rep, err := c.opt.Baseline.CheckBaseline(ctx, gw)
	if errors.Is(err, actions.ErrUnsupported) {
		res.Skipped = err.Error()
		return res
	}
	if err != nil {
		res.Error = err.Error()
		c.log.Warn("checking baseline", "gateway", gw.ID, "err", err)
		return res
	}
	res.Passed, res.Counts = rep.Passed, rep.Counts
	for _, r := range rep.Results {
		if r.Status == baseline.StatusFail || r.Status == baseline.StatusError {
			res.Failing = append(res.Failing, r.ID)
		}
	}
	if hadPrev {
		var before baseline.Report
		if json.Unmarshal(prev.Report, &before) == nil {
			res.Changes = rep.Diff(before)
		}
	}
	now := c.clock.Now()
	raw, _ := json.Marshal(rep)
	if err := c.st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertBaselineResult(ctx, store.BaselineResult{ID: store.NewID("bsl"), Gateway: gw.ID, CheckedAt: now,
			Passed: rep.Passed, Failed: rep.Counts.Fail, Errored: rep.Counts.Error, Source: "drift", Report: raw}); err != nil {
			return err
		}
		return tx.Audit(ctx, audit.Entry{At: now, Actor: actor, Action: "baseline.checked", Subject: gw.ID,
			Data: mustJSON(map[string]any{"passed": rep.Passed, "counts": rep.Counts, "failing": res.Failing, "changes": res.Changes})})
	}); err != nil {
		res.Error = err.Error()
		return res
	}
	if len(res.Changes) == 0 {
		return res
	}
	items := make([]Item, 0, len(res.Changes))
	for _, ch := range res.Changes {
		items = append(items, Item{Indicator: ch.Indicator(gw.ID, now), Matched: true})
	}
	acc, err := c.intake.Accept(ctx, "drift:"+actor, items)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Indicators = acc
	return res
}

func (c *drifter) driftLoop(ctx context.Context) {
	if c.opt.Baseline == nil || c.opt.DriftInterval <= 0 {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.clock.After(c.opt.DriftInterval):
		}
		if _, err := c.leaseEpoch(); err != nil {
			continue // only the lease holder checks on a schedule
		}
		start := c.clock.Now()
		results, err := c.DriftCheck(ctx, "all", "scheduler")
		if err != nil && ctx.Err() == nil {
			c.log.Error("scheduled drift check", "err", err)
			continue
		}
		failing := 0
		for _, r := range results {
			if !r.Passed && r.Skipped == "" {
				failing++
			}
		}
		c.log.Info("drift check done", "gateways", len(results), "not_passing", failing, "took", time.Since(start).Round(time.Millisecond))
	}
}
