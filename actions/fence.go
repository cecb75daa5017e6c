package actions

import (
	"context"
	"errors"
	"fmt"
)

// ErrFenced marks a side effect not made because the lease it would run
// under is no longer held: another controller may lead by now. The step is
// left as it is for the holder to resume, never failed, and no retry
// follows.
var ErrFenced = errors.New("fenced: the writer lease this controller acted under is no longer held")

// Fence is the writer lease a side effect runs under. The controller puts
// it in the context of every step and loop; providers name its epoch in
// what they send and leave behind (an agent command, a snapshot's
// description), and check it right before a change nobody could take back.
type Fence interface {
	// Epoch is the lease epoch the caller acts under.
	Epoch() int64
	// Check confirms against the store, not a cached view, that the lease
	// of Epoch is still held and has not expired; an error wraps
	// ErrFenced.
	Check(ctx context.Context) error
}

type fenceKey struct{}

// WithFence returns ctx carrying f.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceEpoch is the epoch of the fence in ctx; 0 when there is none (unit
// tests, the demo's direct calls, tools run by hand): unfenced.
func FenceEpoch(ctx context.Context) int64 {
	if f, ok := ctx.Value(fenceKey{}).(Fence); ok && f != nil {
		return f.Epoch()
	}
	return 0
}

// CheckFence checks the fence in ctx right before a change and returns its
// epoch; without a fence it returns 0 and nil.
func CheckFence(ctx context.Context) (int64, error) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	if !ok || f == nil {
		return 0, nil
	}
	if err := f.Check(ctx); err != nil {
		if !errors.Is(err, ErrFenced) {
			err = fmt.Errorf("%w: %w", ErrFenced, err)
		}
		return 0, err
	}
	return f.Epoch(), nil
}
