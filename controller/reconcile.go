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

func (c *reconciler) reconcileLoop(ctx context.Context) {
	if c.opt.Observer == nil && c.opt.OSObserver == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.clock.After(c.opt.Reconcile.Interval):
		}
		if _, err := c.leaseEpoch(); err != nil {
			continue // repairs are side effects: only the lease holder makes them
		}
		if _, err := c.ReconcileOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("reconciling postures", "err", err)
		}
	}
}

// OSObserver reads a gateway's OS-level quarantine (through its agent).
type OSObserver interface {
	ObserveQuarantine(ctx context.Context, gw inventory.Gateway) (quarantined bool, detail any, err error)
}

// Repair records one drift the reconcile loop repaired.
type Repair struct {
	Gateway string `json:"gateway"`
	Detail  string `json:"detail"`
}

// layerObservation is what one layer (vm, os) showed.
type layerObservation struct {
	Quarantined bool `json:"quarantined"`
	Detail      any  `json:"detail,omitempty"`
}

// ReconcileOnce observes every gateway through each layer it has (VM in
// vCenter, OS through the agent), records what it saw, and re-applies a
// quarantine that is desired but no longer observed on every layer
// (someone reconnected a NIC or flushed the rules by hand). It is
// level-based and idempotent. It never releases anything: a gateway
// observed quarantined while desired normal is reported, not changed,
// because release must be earned.
func (c *reconciler) ReconcileOnce(ctx context.Context) ([]Repair, error) {
	var repairs []Repair
	for _, gw := range c.inv.Gateways {
		layers := map[string]layerObservation{}
		if gw.VM != "" && c.opt.Observer != nil {
			vm, err := c.opt.Observer.ObserveVM(ctx, gw.VM)
			if err != nil {
				c.log.Warn("observing gateway VM", "gateway", gw.ID, "err", err)
				continue
			}
			layers["vm"] = layerObservation{Quarantined: vm.Quarantined, Detail: vm}
		}
		if gw.Agent != "" && c.opt.OSObserver != nil {
			q, detail, err := c.opt.OSObserver.ObserveQuarantine(ctx, gw)
			if err != nil {
				c.log.Warn("observing gateway OS through its agent", "gateway", gw.ID, "err", err)
				continue
			}
			layers["os"] = layerObservation{Quarantined: q, Detail: detail}
		}
		if len(layers) == 0 {
			continue
		}
		now := c.clock.Now()
		quarantined := true
		var drifted []string
		for name, l := range layers {
			if !l.Quarantined {
				quarantined = false
				drifted = append(drifted, name)
			}
		}
		observed := store.PostureNormal
		if quarantined {
			observed = store.PostureQuarantined
		}
		detail, _ := json.Marshal(layers)
		if err := c.st.SetObservedPosture(ctx, gw.ID, observed, detail, now); err != nil {
			return repairs, err
		}
		p, err := c.st.Posture(ctx, gw.ID)
		if err != nil {
			return repairs, err
		}
		if p.Desired != store.PostureQuarantined || quarantined {
			continue
		}
		active, err := c.st.Runs(ctx, store.RunFilter{Gateway: gw.ID, States: []string{store.RunRunning}})
		if err != nil {
			return repairs, err
		}
		if len(active) > 0 {
			continue // a run is working on it
		}
		r, err := c.repairQuarantine(ctx, gw, p, drifted, layers)
		if err != nil {
			c.log.Error("repairing quarantine drift", "gateway", gw.ID, "err", err)
			continue
		}
		repairs = append(repairs, r)
	}
	return repairs, nil
}

func (c *reconciler) repairQuarantine(ctx context.Context, gw inventory.Gateway, p store.Posture, drifted []string, layers map[string]layerObservation) (Repair, error) {
	act, ok := c.acts[actions.NameIsolate]
	if !ok {
		return Repair{}, fmt.Errorf("no isolate action available")
	}
	now := c.clock.Now()
	drift := map[string]any{"layers_not_quarantined": drifted, "observed": layers}
	req := actions.Request{IdempotencyKey: "reconcile/" + gw.ID + "/" + now.UTC().Format("20060102T150405.000"), Incident: p.Incident, Gateway: gw}
	res, err := act.Apply(ctx, req)
	if err == nil {
		_, err = act.Verify(ctx, req)
	}
	auditErr := c.st.Tx(ctx, func(tx store.Tx) error {
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
func (c *reconciler) Gateways(ctx context.Context) ([]GatewayView, error) {
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
