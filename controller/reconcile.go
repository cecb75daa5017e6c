package controller

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/store"
)

func (c *Controller) reconcileLoop(ctx context.Context) {
	if c.opt.Observer == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.clock.After(c.opt.Reconcile.Interval):
		}
		if _, err := c.ReconcileOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("reconciling postures", "err", err)
		}
	}
}

// Repair records one drift the reconcile loop repaired.
type Repair struct {
	Gateway string `json:"gateway"`
	Detail  string `json:"detail"`
}

// ReconcileOnce observes every gateway with a VM, records what it saw, and
// re-applies a quarantine that is desired but no longer observed (someone
// reconnected a NIC by hand). It is level-based and idempotent. It never
// releases anything: a gateway observed quarantined while desired normal is
// reported, not changed, because release must be earned.
func (c *Controller) ReconcileOnce(ctx context.Context) ([]Repair, error) {
	var repairs []Repair
	for _, gw := range c.inv.Gateways {
		if gw.VM == "" {
			continue
		}
		vm, err := c.opt.Observer.ObserveVM(ctx, gw.VM)
		now := c.clock.Now()
		if err != nil {
			c.log.Warn("observing gateway VM", "gateway", gw.ID, "err", err)
			continue
		}
		observed := store.PostureNormal
		if vm.Quarantined {
			observed = store.PostureQuarantined
		}
		detail, _ := json.Marshal(vm)
		if err := c.st.SetObservedPosture(ctx, gw.ID, observed, detail, now); err != nil {
			return repairs, err
		}
		p, err := c.st.Posture(ctx, gw.ID)
		if err != nil {
			return repairs, err
		}
		if p.Desired != store.PostureQuarantined || vm.Quarantined {
			continue
		}
		active, err := c.st.Runs(ctx, store.RunFilter{Gateway: gw.ID, States: []string{store.RunRunning}})
		if err != nil {
			return repairs, err
		}
		if len(active) > 0 {
			continue // a run is working on it
		}
		r, err := c.repairQuarantine(ctx, gw, p, vm)
		if err != nil {
			c.log.Error("repairing quarantine drift", "gateway", gw.ID, "err", err)
			continue
		}
		repairs = append(repairs, r)
	}
	return repairs, nil
}

func (c *Controller) repairQuarantine(ctx context.Context, gw inventory.Gateway, p store.Posture, vm actions.VMState) (Repair, error) {
	act, ok := c.acts[actions.NameIsolate]
	if !ok {
		return Repair{}, fmt.Errorf("no isolate action available")
	}
	now := c.clock.Now()
	var drift []string
	for _, n := range vm.NICs {
		drift = append(drift, fmt.Sprintf("%s on %s connected=%t start_connected=%t", n.Label, n.Network, n.Connected, n.StartConnected))
	}
	req := actions.Request{IdempotencyKey: "reconcile/" + gw.ID + "/" + now.UTC().Format("20060102T150405.000"), Incident: p.Incident, Gateway: gw}
	res, err := act.Apply(ctx, req)
	if err == nil {
		_, err = act.Verify(ctx, req)
	}
	auditErr := c.st.Tx(ctx, func(tx *store.Tx) error {
		data := map[string]any{"observed": drift, "desired": store.PostureQuarantined, "summary": res.Summary, "details": res.Details}
		if err != nil {
			data["error"] = err.Error()
		}
		return tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "reconcile.repair", Incident: p.Incident, Subject: gw.ID, Data: mustJSON(data)})
	})
	if err != nil {
		return Repair{}, err
	}
	if auditErr != nil {
		return Repair{}, auditErr
	}
	c.m.ReconcileRepairs.WithLabelValues(gw.ID).Inc()
	c.log.Warn("quarantine drift repaired", "gateway", gw.ID)
	_ = c.st.SetObservedPosture(ctx, gw.ID, store.PostureQuarantined, mustJSON(res.Details), c.clock.Now())
	return Repair{Gateway: gw.ID, Detail: res.Summary}, nil
}

// GatewayView is a gateway with its desired and observed posture.
type GatewayView struct {
	inventory.Gateway
	Posture store.Posture `json:"posture"`
}

// Gateways lists every gateway with its posture.
func (c *Controller) Gateways(ctx context.Context) ([]GatewayView, error) {
	out := make([]GatewayView, 0, len(c.inv.Gateways))
	for _, g := range c.inv.Gateways {
		p, err := c.st.Posture(ctx, g.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, GatewayView{Gateway: g, Posture: p})
	}
	return out, nil
}
