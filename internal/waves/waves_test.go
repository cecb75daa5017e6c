package waves_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-ir/warden/internal/waves"
)

func TestCheck(t *testing.T) {
	tests := map[string]struct {
		items []string
		ok    bool
	}{
		"distinct names": {[]string{"gw1", "gw2"}, true},
		"none":           {nil, false},
		"empty name":     {[]string{"gw1", ""}, false},
		"duplicate":      {[]string{"gw1", "gw2", "gw1"}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if err := waves.Check(tc.items, func(s string) string { return s }); (err == nil) != tc.ok {
				t.Errorf("Check(%q) = %v, want ok=%v", tc.items, err, tc.ok)
			}
		})
	}
}

// peersOf makes a conflicts function from an undirected edge list ("a-b"),
// written only one way round so Plan must ask both.
func peersOf(edges ...string) func(a, b string) bool {
	return func(a, b string) bool { return slices.Contains(edges, a+"-"+b) }
}

func TestPlan(t *testing.T) {
	tests := map[string]struct {
		items  []string
		layout waves.Layout[string]
		want   [][]string
	}{
		"canary alone, then waves": {
			items:  []string{"a", "b", "c", "d", "e", "f"},
			layout: waves.Layout[string]{Canary: 1, Size: 2},
			want:   [][]string{{"a"}, {"b", "c"}, {"d", "e"}, {"f"}},
		},
		"canary of two, zero size means one": {
			items:  []string{"a", "b", "c", "d"},
			layout: waves.Layout[string]{Canary: 2},
			want:   [][]string{{"a", "b"}, {"c"}, {"d"}},
		},
		"canary larger than the list": {
			items:  []string{"a", "b"},
			layout: waves.Layout[string]{Canary: 5, Size: 5},
			want:   [][]string{{"a", "b"}},
		},
		"lead moves the canary first": {
			items:  []string{"a", "b", "c", "d"},
			layout: waves.Layout[string]{Size: 3, Lead: func(s string) bool { return s == "c" }},
			want:   [][]string{{"c"}, {"a", "b", "d"}},
		},
		"lead matching nothing keeps the order": {
			items:  []string{"a", "b", "c"},
			layout: waves.Layout[string]{Size: 3, Lead: func(string) bool { return false }},
			want:   [][]string{{"a"}, {"b", "c"}},
		},
		"conflicting items wait for a later wave": {
			// A hub (h) and spokes; b and c also share an edge.
			items:  []string{"b", "c", "h", "d", "e"},
			layout: waves.Layout[string]{Size: 4, Conflicts: peersOf("h-b", "h-c", "h-d", "h-e", "b-c")},
			want:   [][]string{{"b"}, {"c", "d", "e"}, {"h"}},
		},
		"conflicts keep the canary wave apart too": {
			items:  []string{"a", "b", "c"},
			layout: waves.Layout[string]{Canary: 2, Size: 2, Conflicts: peersOf("b-a")},
			want:   [][]string{{"a", "c"}, {"b"}},
		},
		"nothing to plan": {layout: waves.Layout[string]{Size: 3}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := waves.Plan(tc.items, tc.layout)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("Plan = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPlanNeverPutsConflictsTogether lays out a ring, a clique and a star
// at several sizes and checks what must hold of every plan.
func TestPlanNeverPutsConflictsTogether(t *testing.T) {
	items := []string{"0", "1", "2", "3", "4", "5", "6", "7"}
	ring := func(a, b string) bool { return (a[0]-'0'+1)%8 == b[0]-'0' }
	graphs := map[string]func(a, b string) bool{
		"ring":   ring,
		"clique": func(a, b string) bool { return a != b },
		"star":   func(a, b string) bool { return a == "3" },
		"none":   func(string, string) bool { return false },
	}
	for name, conflicts := range graphs {
		for size := 1; size <= len(items); size++ {
			t.Run(fmt.Sprintf("%s/size %d", name, size), func(t *testing.T) {
				plan := waves.Plan(items, waves.Layout[string]{Canary: 2, Size: size, Conflicts: conflicts})
				if got := slices.Sorted(slices.Values(slices.Concat(plan...))); !slices.Equal(got, items) {
					t.Fatalf("plan %v does not hold every item exactly once", plan)
				}
				for w, wave := range plan {
					if limit := map[bool]int{true: 2, false: size}[w == 0]; len(wave) == 0 || len(wave) > limit {
						t.Errorf("wave %d holds %d items, limit %d", w, len(wave), limit)
					}
					for i, a := range wave {
						for _, b := range wave[i+1:] {
							if conflicts(a, b) || conflicts(b, a) {
								t.Errorf("wave %d holds %s and %s, which conflict: %v", w, a, b, plan)
							}
						}
					}
				}
			})
		}
	}
}

func TestRun(t *testing.T) {
	plan := [][]int{{0}, {1, 2, 3}, {4, 5}}
	tests := map[string]struct {
		concurrency int
		fail        []int
		stopAt      int // the item that sets the stop flag; -1: none
		cancelAt    int // the item that cancels ctx; -1: none
		wantStarted []int
		wantFailed  []int
		wantWaves   []int // waves announced by WaveStarting
		wantAfter   int
		wantReason  waves.Reason
	}{
		"every wave runs": {
			stopAt: -1, cancelAt: -1,
			wantStarted: []int{0, 1, 2, 3, 4, 5}, wantWaves: []int{0, 1, 2}, wantAfter: -1,
		},
		"the canary fails alone": {
			fail: []int{0}, stopAt: -1, cancelAt: -1,
			wantStarted: []int{0}, wantFailed: []int{0}, wantWaves: []int{0}, wantAfter: 0, wantReason: waves.ItemFailed,
		},
		"a failed wave stops the waves after it": {
			concurrency: 1, fail: []int{3}, stopAt: -1, cancelAt: -1,
			wantStarted: []int{0, 1, 2, 3}, wantFailed: []int{3}, wantWaves: []int{0, 1}, wantAfter: 1, wantReason: waves.ItemFailed,
		},
		"a failure keeps the rest of its wave from starting": {
			concurrency: 1, fail: []int{1}, stopAt: -1, cancelAt: -1,
			wantStarted: []int{0, 1}, wantFailed: []int{1}, wantWaves: []int{0, 1}, wantAfter: 1, wantReason: waves.ItemFailed,
		},
		"a failure in the last wave is still reported": {
			fail: []int{5}, stopAt: -1, cancelAt: -1,
			wantStarted: []int{0, 1, 2, 3, 4, 5}, wantFailed: []int{5}, wantWaves: []int{0, 1, 2}, wantAfter: 2, wantReason: waves.ItemFailed,
		},
		"stop requested during the canary": {
			stopAt: 0, cancelAt: -1,
			wantStarted: []int{0}, wantWaves: []int{0}, wantAfter: 0, wantReason: waves.StopRequested,
		},
		"stop requested inside a wave": {
			concurrency: 1, stopAt: 2, cancelAt: -1,
			wantStarted: []int{0, 1, 2}, wantWaves: []int{0, 1}, wantAfter: 1, wantReason: waves.StopRequested,
		},
		"a failure outranks a stop": {
			fail: []int{0}, stopAt: 0, cancelAt: -1,
			wantStarted: []int{0}, wantFailed: []int{0}, wantWaves: []int{0}, wantAfter: 0, wantReason: waves.ItemFailed,
		},
		"context cancelled during the canary": {
			stopAt: -1, cancelAt: 0,
			wantStarted: []int{0}, wantWaves: []int{0}, wantAfter: 0, wantReason: waves.ContextEnded,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var (
				stop    atomic.Bool
				mu      sync.Mutex
				ran     []int
				started []int
			)
			opts := waves.RunOptions{
				Concurrency:  tc.concurrency,
				Stop:         &stop,
				WaveStarting: func(w int) { started = append(started, w) },
			}
			res := waves.Run(ctx, plan, opts, func(ctx context.Context, at waves.Pos, item int) error {
				if at.Index != item || !slices.Contains(plan[at.Wave], item) {
					t.Errorf("item %d run at %+v", item, at)
				}
				mu.Lock()
				ran = append(ran, item)
				mu.Unlock()
				if item == tc.stopAt {
					stop.Store(true)
				}
				if item == tc.cancelAt {
					cancel()
				}
				if slices.Contains(tc.fail, item) {
					return errors.New("boom")
				}
				return nil
			})
			slices.Sort(ran)
			if !slices.Equal(ran, tc.wantStarted) {
				t.Errorf("ran %v, want %v", ran, tc.wantStarted)
			}
			for i, s := range res.Started {
				if s != slices.Contains(tc.wantStarted, i) {
					t.Errorf("Started[%d] = %v", i, s)
				}
			}
			if len(res.Started) != 6 || !slices.Equal(res.Failed, tc.wantFailed) || !slices.Equal(started, tc.wantWaves) {
				t.Errorf("started %v failed %v waves %v; want failed %v waves %v", res.Started, res.Failed, started, tc.wantFailed, tc.wantWaves)
			}
			if res.StoppedAfterWave != tc.wantAfter || res.Reason != tc.wantReason {
				t.Errorf("stopped after wave %d (%q), want %d (%q)", res.StoppedAfterWave, res.Reason, tc.wantAfter, tc.wantReason)
			}
		})
	}
}

// TestRunLetsRunningSiblingsFinish: item 2 fails while 1 and 3, in the same
// wave, are still running; they finish, and the next wave never starts.
func TestRunLetsRunningSiblingsFinish(t *testing.T) {
	plan := [][]int{{0}, {1, 2, 3}, {4}}
	var allStarted sync.WaitGroup
	allStarted.Add(3)
	twoFailed := make(chan struct{})
	res := waves.Run(t.Context(), plan, waves.RunOptions{}, func(ctx context.Context, _ waves.Pos, item int) error {
		if item == 0 || item == 4 {
			return nil
		}
		allStarted.Done()
		allStarted.Wait()
		if item == 2 {
			close(twoFailed)
			return errors.New("boom")
		}
		<-twoFailed
		return nil
	})
	if want := []bool{true, true, true, true, false}; !slices.Equal(res.Started, want) {
		t.Errorf("started %v, want %v", res.Started, want)
	}
	if !slices.Equal(res.Failed, []int{2}) || res.StoppedAfterWave != 1 || res.Reason != waves.ItemFailed {
		t.Errorf("result %+v", res)
	}
}

// TestRunBoundsConcurrency holds every item until the test has seen as many
// start as the bound allows, then waits a while for one too many.
func TestRunBoundsConcurrency(t *testing.T) {
	wave := []int{1, 2, 3, 4, 5, 6}
	tests := map[string]struct {
		concurrency, want int
	}{
		"one at a time":     {1, 1},
		"two at a time":     {2, 2},
		"the whole wave":    {0, 6},
		"more than a wave":  {10, 6},
		"negative is whole": {-1, 6},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var inFlight, peak atomic.Int32
			startedCh := make(chan int, len(wave))
			release := make(chan struct{})
			done := make(chan waves.Result)
			go func() {
				done <- waves.Run(t.Context(), [][]int{wave}, waves.RunOptions{Concurrency: tc.concurrency}, func(ctx context.Context, _ waves.Pos, item int) error {
					n := inFlight.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					startedCh <- item
					<-release
					inFlight.Add(-1)
					return nil
				})
			}()
			for range tc.want {
				<-startedCh
			}
			select {
			case item := <-startedCh:
				t.Errorf("item %d started beyond the bound of %d", item, tc.want)
			case <-time.After(50 * time.Millisecond):
			}
			close(release)
			res := <-done
			if peak.Load() != int32(tc.want) || slices.Contains(res.Started, false) {
				t.Errorf("peak %d, want %d; started %v", peak.Load(), tc.want, res.Started)
			}
		})
	}
}

func TestRunNothing(t *testing.T) {
	res := waves.Run(t.Context(), [][]int(nil), waves.RunOptions{}, func(context.Context, waves.Pos, int) error {
		t.Error("run called for an empty plan")
		return nil
	})
	if len(res.Started) != 0 || res.StoppedAfterWave != -1 || res.Reason != waves.Completed {
		t.Errorf("result %+v", res)
	}
}
