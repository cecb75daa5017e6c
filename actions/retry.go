package actions

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Execute applies a and reads the result back: Apply, then Verify, with
// Verify's summary and details added to the result. When a carries its
// own execution (the retry decorator) that is used instead.
func Execute(ctx context.Context, a Action, req Request) (Result, error) {
	if e, ok := a.(Entry); ok {
		a = e.Action
	}
	if x, ok := a.(executor); ok {
		return x.Execute(ctx, req)
	}
	res, vres, err := applyVerified(ctx, a, req)
	if err != nil {
		return Result{}, err
	}
	if res.Details == nil {
		res.Details = map[string]any{}
	}
	res.Details["verified"] = vres.Summary
	if vres.Details != nil {
		res.Details["verify"] = vres.Details
	}
	return res, nil
}

// ApplyVerifier is an action whose Apply reads the outcome back as part of
// its own protocol, so that a Verify right after it would only ask again
// what the Apply has just proven (the OS isolate: the agent confirms only
// after reading its rules back, over a connection opened through the
// quarantine). Execute takes ApplyVerified instead of Apply then Verify;
// verified must be what Verify would have returned, and a read-back that
// does not match is an error wrapping ErrNotVerified, as Verify's. When
// the change was applied but not verified, applied is returned with the
// error (the evidence decorators record what changed all the same).
type ApplyVerifier interface {
	ApplyVerified(ctx context.Context, req Request) (applied, verified Result, err error)
}

// applyVerified is a's ApplyVerified when it has one, else Apply then
// Verify (whose error says it was the verification that failed).
//
// The verified result's details carry verified_at, when the read-back
// proved the change (the controller's wall clock): what a step does after
// it, such as filing the change as evidence, is not part of the time to
// contain.
func applyVerified(ctx context.Context, a Action, req Request) (res, vres Result, err error) {
	defer func() {
		if err == nil {
			stampVerified(&vres)
		}
	}()
	if av, ok := a.(ApplyVerifier); ok {
		return av.ApplyVerified(ctx, req)
	}
	res, err = a.Apply(ctx, req)
	if err != nil {
		return Result{}, Result{}, err
	}
	vres, err = a.Verify(ctx, req)
	if err != nil {
		return res, Result{}, fmt.Errorf("verifying: %w", err)
	}
	return res, vres, nil
}

// VerifiedAtKey is the detail of a verified result saying when the
// read-back proved the change.
const VerifiedAtKey = "verified_at"

// stampVerified sets vres's verified_at, unless an inner layer did (the
// innermost read-back is the moment).
func stampVerified(vres *Result) {
	if _, ok := vres.Details[VerifiedAtKey]; ok {
		return
	}
	if vres.Details == nil {
		vres.Details = map[string]any{}
	}
	vres.Details[VerifiedAtKey] = time.Now().UTC().Format(time.RFC3339Nano)
}

// verifiedAt is v's verified_at, zero when it has none.
func verifiedAt(v Result) time.Time {
	s, _ := v.Details[VerifiedAtKey].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return at
}

// executor is an action with its own Execute (a decorator).
type executor interface {
	Execute(ctx context.Context, req Request) (Result, error)
}

// Attempts observes the attempts of one step. The controller sets it on
// the Request to fence and record every attempt.
type Attempts interface {
	// Starting is called before attempt n (from 1); an error stops the
	// step without another attempt (the writer lease is gone).
	Starting(ctx context.Context, n int) error
	// Failed is called after attempt n failed, saying whether the error
	// is terminal (no attempt follows).
	Failed(ctx context.Context, n int, err error, terminal bool) error
}

// RetryPolicy is the one retry layer a step has.
type RetryPolicy struct {
	// MaxAttempts bounds the attempts (at least 1).
	MaxAttempts int
	// BackoffBase doubles after every failed attempt up to BackoffMax.
	BackoffBase, BackoffMax time.Duration
	// AttemptTimeout bounds one attempt (Apply and Verify); zero is none.
	AttemptTimeout time.Duration
	// After is the clock's timer (nil: time.After).
	After func(time.Duration) <-chan time.Time
	// Retried, when set, is told of each retry (metrics).
	Retried func(action string)
}

// WithRetry returns a decorator retrying Execute (Apply then Verify) on
// transient errors with exponential backoff. Calls made under it see
// RetriedAbove(ctx) true, so HTTP clients below do not retry as well:
// exactly one layer retries a call.
func WithRetry(p RetryPolicy) func(Entry) Action {
	if p.MaxAttempts < 1 {
		p.MaxAttempts = 1
	}
	if p.After == nil {
		p.After = time.After
	}
	return func(e Entry) Action {
		r := &retrying{Action: e.Action, p: p}
		if e.Reversible {
			return reversibleRetrying{r}
		}
		return r
	}
}

type retrying struct {
	Action
	p RetryPolicy
}

// reversibleRetrying keeps Undo visible through the decorator.
type reversibleRetrying struct{ *retrying }

func (r reversibleRetrying) Undo(ctx context.Context, req Request) (Result, error) {
	return r.Action.(Undoer).Undo(ctx, req)
}

// Execute implements executor.
func (r *retrying) Execute(ctx context.Context, req Request) (Result, error) {
	ctx = context.WithValue(ctx, retriedAboveKey{}, true)
	for n := 1; ; n++ {
		if req.Attempts != nil {
			if err := req.Attempts.Starting(ctx, n); err != nil {
				return Result{}, err
			}
		}
		actx, cancel := ctx, context.CancelFunc(func() {})
		if r.p.AttemptTimeout > 0 {
			actx, cancel = context.WithTimeout(ctx, r.p.AttemptTimeout)
		}
		res, err := Execute(actx, r.Action, req)
		cancel()
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		// Fenced: another controller may lead now; it resumes the step.
		fenced := errors.Is(err, ErrFenced)
		last := IsTerminal(err) || fenced || n >= r.p.MaxAttempts
		if req.Attempts != nil {
			if aerr := req.Attempts.Failed(ctx, n, err, IsTerminal(err) || fenced); aerr != nil {
				return Result{}, aerr
			}
		}
		if last {
			return Result{}, err
		}
		if r.p.Retried != nil {
			r.p.Retried(r.Name())
		}
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-r.p.After(backoff(r.p.BackoffBase, r.p.BackoffMax, n)):
		}
	}
}

// backoff is the wait after failed attempt n: base doubled n-1 times, at
// most maxD.
func backoff(base, maxD time.Duration, n int) time.Duration {
	d := base << (n - 1)
	if d > maxD || d <= 0 {
		d = maxD
	}
	return d
}

type retriedAboveKey struct{}

// RetriedAbove reports whether a retry layer above the caller already
// retries this call: an HTTP client seeing it makes one attempt only.
func RetriedAbove(ctx context.Context) bool {
	v, _ := ctx.Value(retriedAboveKey{}).(bool)
	return v
}

// Retrying reports whether a is the retry decorator (the layer that
// calls Request.Attempts).
func Retrying(a Action) bool {
	if e, ok := a.(Entry); ok {
		a = e.Action
	}
	_, ok := a.(executor)
	return ok
}
