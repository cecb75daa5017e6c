// Package waves runs a list of items in waves: a canary wave first, then
// waves of a bounded size, each finished before the next starts, and
// nothing new started once an item has failed. Patching gateways and
// rotating tunnel credentials share it, so both stop the same way.
//
// It owns the plan (Check, Plan) and running it (Run). It must not know
// what an item is or what running one does: the caller's function does
// that and keeps its own per-item report. And it must not cut short an item
// that has started (a half-installed package or a half-rotated key is worse
// than a late answer): stopping only keeps new items from starting.
package waves

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Check reports why items cannot be run in waves: there are none (an empty
// target never means "all"), a name is empty, or a name is given twice.
// The errors carry no class: the caller wraps them in its own.
func Check[T any](items []T, name func(T) string) error {
	if len(items) == 0 {
		return errors.New("none given")
	}
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		switch n := name(it); {
		case n == "":
			return errors.New("an empty name")
		case seen[n]:
			return fmt.Errorf("%q listed twice", n)
		default:
			seen[n] = true
		}
	}
	return nil
}

// Layout shapes a plan.
type Layout[T any] struct {
	// Canary is how many items form wave 0, Size the most in each later
	// wave; below 1 means 1.
	Canary, Size int
	// Lead, when set, picks the item to put first (the canary); the others
	// keep their order.
	Lead func(T) bool
	// Conflicts, when set, reports whether a must not run at the same time
	// as b; Plan asks both ways round.
	Conflicts func(a, b T) bool
}

// Plan lays items out in waves, in order: each wave takes the next items
// that fit, and an item conflicting with one already in the wave moves to
// a later wave rather than holding the others back. No wave is empty.
func Plan[T any](items []T, l Layout[T]) [][]T {
	rest := items
	if i := slices.IndexFunc(items, func(it T) bool { return l.Lead != nil && l.Lead(it) }); i > 0 {
		rest = slices.Concat(items[i:i+1], items[:i], items[i+1:])
	}
	apart := func(a, b T) bool { return l.Conflicts != nil && (l.Conflicts(a, b) || l.Conflicts(b, a)) }
	var plan [][]T
	for size := max(l.Canary, 1); len(rest) > 0; size = max(l.Size, 1) {
		var wave, later []T
		for _, it := range rest {
			if len(wave) < size && !slices.ContainsFunc(wave, func(o T) bool { return apart(it, o) }) {
				wave = append(wave, it)
			} else {
				later = append(later, it)
			}
		}
		plan, rest = append(plan, wave), later
	}
	return plan
}

// Pos is where an item sits in a plan: its wave (0 is the canary wave) and
// its index in the whole plan, counted across waves.
type Pos struct{ Wave, Index int }

// RunOptions tune Run.
type RunOptions struct {
	// Concurrency bounds how many items of a wave run at once; below 1
	// means the whole wave.
	Concurrency int
	// Stop, once set by someone else, keeps items from starting.
	Stop *atomic.Bool
	// WaveStarting, when set, is called as each wave starts.
	WaveStarting func(wave int)
}

// Reason says why a run stopped early.
type Reason string

// Reasons, in the order Run checks them: a failure outranks a stop.
const (
	Completed     Reason = ""
	ItemFailed    Reason = "an item failed"
	StopRequested Reason = "stop requested"
	ContextEnded  Reason = "context ended"
)

// Result is what Run did.
type Result struct {
	// Started says, by Pos.Index, which items were run; Failed lists the
	// Pos.Index of each that failed, in the order they failed.
	Started []bool
	Failed  []int
	// StoppedAfterWave is the last wave that started when the run stopped
	// early, -1 when every wave ran (or none did); Reason says why.
	StoppedAfterWave int
	Reason           Reason
}

// Run runs plan wave by wave, calling run for the items of a wave
// concurrently (at most Concurrency at a time); a wave starts once every
// item of the one before has returned. An item fails when run returns an
// error. Before each wave and each item, Run checks whether an item has
// failed, a stop was requested or ctx has ended: if so nothing more
// starts, and items already running finish.
func Run[T any](ctx context.Context, plan [][]T, opts RunOptions, run func(ctx context.Context, at Pos, item T) error) Result {
	var (
		mu     sync.Mutex
		failed atomic.Bool
		total  int
	)
	for _, wave := range plan {
		total += len(wave)
	}
	res := Result{Started: make([]bool, total), StoppedAfterWave: -1}
	halt := func() Reason {
		switch {
		case failed.Load():
			return ItemFailed
		case opts.Stop != nil && opts.Stop.Load():
			return StopRequested
		case ctx.Err() != nil:
			return ContextEnded
		}
		return Completed
	}
	next := 0
	for w, wave := range plan {
		if res.Reason = halt(); res.Reason != Completed {
			res.StoppedAfterWave = w - 1
			break
		}
		if opts.WaveStarting != nil {
			opts.WaveStarting(w)
		}
		conc := opts.Concurrency
		if conc < 1 || conc > len(wave) {
			conc = len(wave)
		}
		slots := make(chan struct{}, conc)
		var wg sync.WaitGroup
		for i, item := range wave {
			slots <- struct{}{}
			if res.Reason = halt(); res.Reason != Completed {
				break
			}
			at := Pos{Wave: w, Index: next + i}
			res.Started[at.Index] = true
			wg.Go(func() {
				defer func() { <-slots }()
				if run(ctx, at, item) != nil {
					mu.Lock()
					res.Failed = append(res.Failed, at.Index)
					mu.Unlock()
					failed.Store(true)
				}
			})
		}
		wg.Wait()
		next += len(wave)
		if failed.Load() {
			res.Reason = ItemFailed
		}
		if res.Reason != Completed {
			res.StoppedAfterWave = w
			break
		}
	}
	return res
}
