package actions_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
)

// flaky fails its first n Apply calls with err, then succeeds.
type flaky struct {
	name          string
	n             int
	err           error
	applies       int
	sawRetryAbove bool
}

func (f *flaky) Name() string { return f.name }
func (f *flaky) Plan(context.Context, actions.Request) (actions.Change, error) {
	return actions.Change{}, nil
}
func (f *flaky) Apply(ctx context.Context, _ actions.Request) (actions.Result, error) {
	f.applies++
	f.sawRetryAbove = actions.RetriedAbove(ctx)
	if f.applies <= f.n {
		return actions.Result{}, f.err
	}
	return actions.Result{Changed: true, Summary: "done"}, nil
}
func (f *flaky) Verify(context.Context, actions.Request) (actions.Result, error) {
	return actions.Result{Summary: "verified"}, nil
}

type undoable struct{ flaky }

func (u *undoable) Undo(context.Context, actions.Request) (actions.Result, error) {
	return actions.Result{Summary: "undone"}, nil
}

// attemptLog records what the retry layer reported.
type attemptLog struct {
	events  []string
	refuseN int // Starting refuses this attempt (0: never)
}

func (l *attemptLog) Starting(_ context.Context, n int) error {
	if n == l.refuseN {
		return errors.New("lease lost")
	}
	l.events = append(l.events, fmt.Sprintf("start %d", n))
	return nil
}

func (l *attemptLog) Failed(_ context.Context, n int, err error, terminal bool) error {
	l.events = append(l.events, fmt.Sprintf("fail %d terminal=%v", n, terminal))
	return nil
}

func instant(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ch <- time.Time{}
	return ch
}

func TestRetryIsTheOneLayer(t *testing.T) {
	transient := errors.New("connection reset")
	for name, tc := range map[string]struct {
		fails   int
		err     error
		max     int
		refuse  int
		applies int
		events  string
		wantErr string
	}{
		"transient then success": {fails: 2, err: transient, max: 5, applies: 3,
			events: "start 1,fail 1 terminal=false,start 2,fail 2 terminal=false,start 3"},
		"terminal stops at once": {fails: 9, err: actions.Terminal(errors.New("portgroup missing")), max: 5, applies: 1,
			events: "start 1,fail 1 terminal=true", wantErr: "portgroup missing"},
		"unsupported is terminal": {fails: 9, err: actions.ErrUnsupported, max: 5, applies: 1,
			events: "start 1,fail 1 terminal=true", wantErr: "unsupported"},
		"attempts run out": {fails: 9, err: transient, max: 3, applies: 3,
			events: "start 1,fail 1 terminal=false,start 2,fail 2 terminal=false,start 3,fail 3 terminal=false", wantErr: "connection reset"},
		"fenced before a side effect": {fails: 1, err: transient, max: 5, refuse: 2, applies: 1,
			events: "start 1,fail 1 terminal=false", wantErr: "lease lost"},
	} {
		t.Run(name, func(t *testing.T) {
			f := &flaky{name: "isolate-like", n: tc.fails, err: tc.err}
			a := actions.WithRetry(actions.RetryPolicy{MaxAttempts: tc.max, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond, After: instant})(actions.Entry{Action: f})
			log := &attemptLog{refuseN: tc.refuse}
			res, err := actions.Execute(t.Context(), a, actions.Request{IdempotencyKey: "k", Attempts: log})
			if got := strings.Join(log.events, ","); got != tc.events {
				t.Errorf("attempts %q, want %q", got, tc.events)
			}
			if f.applies != tc.applies {
				t.Errorf("applied %d times, want %d", f.applies, tc.applies)
			}
			if !f.sawRetryAbove {
				t.Error("calls under the retry layer do not see RetriedAbove: a client below would retry as well")
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			case tc.wantErr == "" && res.Details["verified"] != "verified":
				t.Fatalf("result %+v lacks the verification", res)
			}
		})
	}
	if actions.RetriedAbove(context.Background()) {
		t.Fatal("RetriedAbove outside any retry layer")
	}
}

func TestRetryKeepsUndoOfReversibleActions(t *testing.T) {
	wrap := actions.WithRetry(actions.RetryPolicy{MaxAttempts: 2})
	u := &undoable{flaky{name: actions.NameIsolate}}
	cat, err := actions.NewCatalogue(u)
	if err != nil {
		t.Fatal(err)
	}
	cat = cat.Decorate(wrap)
	e := cat[actions.NameIsolate]
	if !e.Reversible || !actions.Retrying(e.Action) {
		t.Fatalf("decorated entry %+v lost its metadata or its retry layer", e.Meta)
	}
	if _, ok := e.Action.(actions.Undoer); !ok {
		t.Fatal("the retry layer hid isolate's Undo")
	}
}

func TestCatalogueMetadata(t *testing.T) {
	if cat, err := actions.NewCatalogue(&flaky{name: actions.NameRelease}); err != nil || cat.Meta(actions.NameRelease).Reversible {
		t.Fatalf("a release without Undo is listed reversible: %v", err)
	}
	cat, err := actions.NewCatalogue(&flaky{name: actions.NamePatch}, &flaky{name: actions.NameCaptureVolatile}, &flaky{name: "custom"}, &undoable{flaky{name: actions.NameIsolate}})
	if err != nil {
		t.Fatal(err)
	}
	if m := cat.Meta(actions.NamePatch); !m.Destructive || m.Evidence {
		t.Errorf("patch %+v", m)
	}
	if m := cat.Meta(actions.NameIsolate); m.Posture != actions.EffectQuarantine || !m.Contains || !m.OnVM || !m.Reversible {
		t.Errorf("isolate %+v", m)
	}
	if m := cat.Meta("custom"); m != (actions.Meta{}) {
		t.Errorf("an unknown action got metadata %+v", m)
	}
	if got := cat.EvidenceNames(); len(got) != 1 || got[0] != actions.NameCaptureVolatile {
		t.Errorf("evidence names %v", got)
	}
	if _, err := actions.NewCatalogue(&described{flaky{name: "rebuild"}}); err != nil {
		t.Fatal(err)
	}
	cat, _ = actions.NewCatalogue(&described{flaky{name: "rebuild"}})
	if !cat.Meta("rebuild").Destructive {
		t.Error("an action's own metadata was ignored")
	}
}

type described struct{ flaky }

func (described) Meta() actions.Meta { return actions.Meta{Destructive: true} }
