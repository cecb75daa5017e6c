package actions

import (
	"context"
	"fmt"
)

// Unavailable stands in for a catalogue action whose provider is not
// configured (no agent, no vCenter). Runbooks that name it still load;
// running it fails with ErrUnsupported, which is terminal, so an optional
// step is recorded as failed and the run goes on, while a required step
// stops the run with a clear cause instead of pretending.
type Unavailable struct {
	Action string
	Reason string
}

var _ Action = Unavailable{}

// Name implements Action.
func (u Unavailable) Name() string { return u.Action }

func (u Unavailable) err(req Request) error {
	return fmt.Errorf("%s on gateway %s: %s: %w", u.Action, req.Gateway.ID, u.Reason, ErrUnsupported)
}

// Plan implements Action.
func (u Unavailable) Plan(_ context.Context, req Request) (Change, error) {
	return Change{}, u.err(req)
}

// Apply implements Action.
func (u Unavailable) Apply(_ context.Context, req Request) (Result, error) {
	return Result{}, u.err(req)
}

// Verify implements Action.
func (u Unavailable) Verify(_ context.Context, req Request) (Result, error) {
	return Result{}, u.err(req)
}
