// Package actionstest holds catalogue actions for tests of what sits
// above the catalogue (the API, the CLI): they act on nothing, succeed,
// and read back what a real provider would report, so runs finish and
// the controller records them as it records real ones. Only tests import
// it.
package actionstest

import (
	"context"

	"github.com/warden-ir/warden/actions"
)

// Succeeding is an action, named by its value, whose Apply succeeds and
// whose Verify reads the same back.
type Succeeding string

// Name is the action's catalogue name.
func (f Succeeding) Name() string { return string(f) }

// Plan says what it would do.
func (f Succeeding) Plan(context.Context, actions.Request) (actions.Change, error) {
	return actions.Change{Summary: "would " + string(f)}, nil
}

// Apply reports the details a real provider reports for its action.
func (f Succeeding) Apply(_ context.Context, req actions.Request) (actions.Result, error) {
	d := map[string]any{"vm": req.Gateway.VM}
	switch f.Name() {
	case actions.NameSnapshot:
		d["snapshot"], d["memory_requested"] = "warden-"+req.Incident, true
	case actions.NameIsolate:
		d["quarantined"] = true
	}
	return actions.Result{Changed: true, Summary: string(f) + " done on " + req.Gateway.ID, Details: d}, nil
}

// Verify reads it back.
func (f Succeeding) Verify(_ context.Context, req actions.Request) (actions.Result, error) {
	return actions.Result{Summary: req.Gateway.VM + " read back after " + string(f)}, nil
}

// All is a Succeeding action for each name.
func All(names ...string) []actions.Action {
	out := make([]actions.Action, len(names))
	for i, n := range names {
		out[i] = Succeeding(n)
	}
	return out
}
