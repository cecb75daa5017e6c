package actions

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/warden-ir/warden/inventory"
)

type stubLayer struct {
	name    string
	err     error
	changed bool
	calls   *[]string
}

func (s stubLayer) Name() string { return s.name }
func (s stubLayer) Plan(context.Context, Request) (Change, error) {
	if s.err != nil {
		return Change{}, s.err
	}
	return Change{Summary: s.name, Changes: []string{s.name + " change"}}, nil
}
func (s stubLayer) Apply(context.Context, Request) (Result, error) {
	*s.calls = append(*s.calls, "apply "+s.name)
	return Result{Changed: s.changed, Summary: s.name + " done"}, s.err
}
func (s stubLayer) Verify(context.Context, Request) (Result, error) {
	*s.calls = append(*s.calls, "verify "+s.name)
	return Result{Summary: s.name + " ok"}, s.err
}
func (s stubLayer) Undo(context.Context, Request) (Result, error) {
	*s.calls = append(*s.calls, "undo "+s.name)
	return Result{Changed: true}, s.err
}

func TestCombine(t *testing.T) {
	req := Request{Gateway: inventory.Gateway{ID: "gw"}}
	boom := errors.New("boom")
	tests := map[string]struct {
		os, vm    error
		wantErr   error
		wantCalls string
		changed   bool
	}{
		"both layers, in order":   {nil, nil, nil, "apply os,apply vm", true},
		"no agent: vm only":       {ErrUnsupported, nil, nil, "apply os,apply vm", true},
		"no layer applies":        {ErrUnsupported, ErrUnsupported, ErrUnsupported, "apply os,apply vm", false},
		"a failing layer stops":   {boom, nil, boom, "apply os", false},
		"terminal stays terminal": {Terminal(boom), nil, boom, "apply os", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var calls []string
			a := Combine("isolate", Layer("os", stubLayer{"os", tc.os, true, &calls}), Layer("vm", stubLayer{"vm", tc.vm, true, &calls}))
			res, err := a.Apply(t.Context(), req)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				if IsTerminal(tc.os) && !IsTerminal(err) {
					t.Fatal("terminal classification lost")
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if strings.Join(calls, ",") != tc.wantCalls {
				t.Fatalf("calls %v, want %s", calls, tc.wantCalls)
			}
			if res.Changed != tc.changed {
				t.Fatalf("changed %t", res.Changed)
			}
		})
	}
}

func TestCombineUndoRunsInReverse(t *testing.T) {
	var calls []string
	a := Combine("isolate", Layer("os", stubLayer{"os", nil, true, &calls}), Layer("vm", stubLayer{"vm", nil, true, &calls}))
	if _, err := a.(Undoer).Undo(t.Context(), Request{}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(calls, ",") != "undo vm,undo os" {
		t.Fatalf("calls %v", calls)
	}
	ch, err := a.Plan(t.Context(), Request{})
	if err != nil || len(ch.Changes) != 2 {
		t.Fatalf("plan %+v %v", ch, err)
	}
}
