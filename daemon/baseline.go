package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/baseline"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/providers/linux"
	"github.com/warden-ir/warden/store"
)

// baselineStore keeps baseline verdicts from runbooks (verify_baseline) in
// the same history the drift checks and the release gate read.
type baselineStore struct{ st *store.Store }

func (b baselineStore) RecordBaseline(ctx context.Context, gw inventory.Gateway, source string, res wire.BaselineResult) error {
	var rep baseline.Report
	if err := json.Unmarshal(res.Report, &rep); err != nil {
		return fmt.Errorf("reading the baseline report of %s: %w", gw.ID, err)
	}
	now := time.Now()
	return b.st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertBaselineResult(ctx, store.BaselineResult{ID: store.NewID("bsl"), Gateway: gw.ID, CheckedAt: now,
			Passed: res.Passed, Failed: rep.Counts.Fail, Errored: rep.Counts.Error, Source: source, Report: res.Report}); err != nil {
			return err
		}
		data, _ := json.Marshal(map[string]any{"passed": res.Passed, "counts": rep.Counts, "remediated": res.Remediated, "source": source})
		return tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "baseline.checked", Subject: gw.ID, Data: data})
	})
}

// baselineChecker runs drift checks through the agents.
type baselineChecker struct{ agents *linux.AgentPool }

func (b baselineChecker) CheckBaseline(ctx context.Context, gw inventory.Gateway) (baseline.Report, error) {
	res, err := linux.CheckBaseline(ctx, b.agents, nil, gw, "drift", nil)
	if err != nil {
		return baseline.Report{}, err
	}
	var rep baseline.Report
	if err := json.Unmarshal(res.Report, &rep); err != nil {
		return rep, fmt.Errorf("reading the baseline report of %s: %w", gw.ID, err)
	}
	return rep, nil
}
