package actions

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Combine makes one catalogue action out of several layers that do the same
// job at different levels — isolate on the gateway's OS (agent) and on its
// VM (vCenter), for example. Layers run in the order given; a layer that
// cannot act on a gateway (ErrUnsupported: no agent, no VM) is skipped and
// said so; if no layer can act, the combination is unsupported too. Verify
// requires every applicable layer to verify. Undo runs the layers' undos
// in reverse order.
func Combine(name string, layers ...Action) Action {
	return &combined{name: name, layers: layers}
}

type combined struct {
	name   string
	layers []Action
}

var _ Undoer = (*combined)(nil)

func (c *combined) Name() string { return c.name }

func layerName(a Action, i int) string {
	if n, ok := a.(interface{ Layer() string }); ok {
		return n.Layer()
	}
	return fmt.Sprintf("layer %d", i+1)
}

func (c *combined) each(ctx context.Context, req Request, reverse bool, fn func(i int, a Action) (Result, error)) (Result, error) {
	out := Result{Details: map[string]any{}}
	var summaries, skipped []string
	applied := 0
	for k := range c.layers {
		i := k
		if reverse {
			i = len(c.layers) - 1 - k
		}
		a := c.layers[i]
		res, err := fn(i, a)
		if errors.Is(err, ErrUnsupported) {
			skipped = append(skipped, fmt.Sprintf("%s: %v", layerName(a, i), err))
			continue
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", layerName(a, i), err)
		}
		applied++
		out.Changed = out.Changed || res.Changed
		if res.Summary != "" {
			summaries = append(summaries, res.Summary)
		}
		out.Details[layerName(a, i)] = res.Details
	}
	if applied == 0 {
		return out, fmt.Errorf("%s on gateway %s: no layer applies (%s): %w", c.name, req.Gateway.ID, strings.Join(skipped, "; "), ErrUnsupported)
	}
	if len(skipped) > 0 {
		out.Details["skipped_layers"] = skipped
	}
	out.Summary = strings.Join(summaries, "; ")
	return out, nil
}

// Plan implements Action.
func (c *combined) Plan(ctx context.Context, req Request) (Change, error) {
	var out Change
	var summaries, skipped []string
	applied := 0
	for i, a := range c.layers {
		ch, err := a.Plan(ctx, req)
		if errors.Is(err, ErrUnsupported) {
			skipped = append(skipped, layerName(a, i))
			continue
		}
		if err != nil {
			return Change{}, fmt.Errorf("%s: %w", layerName(a, i), err)
		}
		applied++
		if ch.Summary != "" {
			summaries = append(summaries, ch.Summary)
		}
		out.Changes = append(out.Changes, ch.Changes...)
		out.Destructive = out.Destructive || ch.Destructive
		out.Warnings = append(out.Warnings, ch.Warnings...)
		out.CutsAgent = out.CutsAgent || ch.CutsAgent
	}
	if applied == 0 {
		return Change{}, fmt.Errorf("%s on gateway %s: no layer applies: %w", c.name, req.Gateway.ID, ErrUnsupported)
	}
	out.Summary = strings.Join(summaries, "; ")
	if len(skipped) > 0 {
		out.Summary += " (not applicable: " + strings.Join(skipped, ", ") + ")"
	}
	return out, nil
}

// Apply implements Action.
func (c *combined) Apply(ctx context.Context, req Request) (Result, error) {
	return c.each(ctx, req, false, func(_ int, a Action) (Result, error) { return a.Apply(ctx, req) })
}

// Verify implements Action.
func (c *combined) Verify(ctx context.Context, req Request) (Result, error) {
	return c.each(ctx, req, false, func(_ int, a Action) (Result, error) { return a.Verify(ctx, req) })
}

// ApplyVerified implements ApplyVerifier: every layer applies in order (a
// layer that verifies as it applies does both), then the layers that did
// not verify yet are verified in order, as Apply then Verify would.
//
// The combined verified_at is when the last layer was proved: a layer's
// own verified_at (a layer may go on working after its proof, as the OS
// isolate kills flows), else the moment its verification returned.
func (c *combined) ApplyVerified(ctx context.Context, req Request) (Result, Result, error) {
	verified := make([]*Result, len(c.layers))
	var proved time.Time
	prove := func(v Result) {
		at := verifiedAt(v)
		if at.IsZero() {
			at = time.Now()
		}
		if at.After(proved) {
			proved = at
		}
	}
	res, err := c.each(ctx, req, false, func(i int, a Action) (Result, error) {
		av, ok := verifiesAsItApplies(a)
		if !ok {
			return a.Apply(ctx, req)
		}
		r, v, err := av.ApplyVerified(ctx, req)
		if err == nil {
			verified[i] = &v
			prove(v)
		}
		return r, err
	})
	if err != nil {
		return Result{}, Result{}, err
	}
	vres, err := c.each(ctx, req, false, func(i int, a Action) (Result, error) {
		if v := verified[i]; v != nil {
			return *v, nil
		}
		v, err := a.Verify(ctx, req)
		if err == nil {
			prove(v)
		}
		return v, err
	})
	if err != nil {
		return res, Result{}, fmt.Errorf("verifying: %w", err)
	}
	if !proved.IsZero() {
		vres.Details[VerifiedAtKey] = proved.UTC().Format(time.RFC3339Nano)
	}
	return res, vres, nil
}

// verifiesAsItApplies is a, or the action a names as a layer, when it is an
// ApplyVerifier.
func verifiesAsItApplies(a Action) (ApplyVerifier, bool) {
	if l, ok := a.(*layered); ok {
		a = l.Action
	}
	av, ok := a.(ApplyVerifier)
	return av, ok
}

// Undo implements Undoer.
func (c *combined) Undo(ctx context.Context, req Request) (Result, error) {
	return c.each(ctx, req, true, func(i int, a Action) (Result, error) { return undo(ctx, a, layerName(a, i), req) })
}

// undo undoes a, named what in the error when it cannot be undone.
func undo(ctx context.Context, a Action, what string, req Request) (Result, error) {
	u, ok := a.(Undoer)
	if !ok {
		return Result{}, fmt.Errorf("%s cannot be undone: %w", what, ErrUnsupported)
	}
	return u.Undo(ctx, req)
}

// Layer names an action as one layer of a combination ("os", "vm"), for
// messages and result details.
func Layer(name string, a Action) Action { return &layered{Action: a, layer: name} }

type layered struct {
	Action
	layer string
}

func (l *layered) Layer() string { return l.layer }

// Undo forwards to the wrapped action when it can be undone.
func (l *layered) Undo(ctx context.Context, req Request) (Result, error) {
	return undo(ctx, l.Action, l.layer, req)
}
