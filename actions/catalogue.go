package actions

import (
	"context"
	"fmt"
	"sort"
)

// Effect is what a succeeded step does to the gateway's desired posture.
type Effect string

// Posture effects.
const (
	// EffectNone leaves the posture as it is.
	EffectNone Effect = ""
	// EffectQuarantine makes the desired posture "quarantined" (and the
	// incident contained).
	EffectQuarantine Effect = "quarantine"
	// EffectRelease makes the desired posture "released"; a run with such
	// a step passes the release gates.
	EffectRelease Effect = "release"
)

// Meta is what the controller must know about an action, as data: the
// controller reads these fields and never switches on action names.
type Meta struct {
	// Evidence: the action preserves evidence (safety invariant 4: on a
	// compromised gateway a destructive step waits for one to succeed).
	Evidence bool
	// Destructive: the action may destroy evidence or availability.
	Destructive bool
	// Reversible: Undo puts back what Apply changed (set by NewCatalogue
	// from whether the action has one).
	Reversible bool
	// Posture is the effect of a succeeded step on the desired posture.
	Posture Effect
	// Contains: the action takes the gateway out of service (isolate,
	// power off) and counts against the automatic-isolation budget.
	Contains bool
	// OnVM: the action acts on the gateway's VM (plans name the VM).
	OnVM bool
}

// Describer is implemented by an action outside the standard catalogue
// that declares its own metadata.
type Describer interface {
	Meta() Meta
}

// Standard is the metadata of the catalogue's standard actions; other
// names get the zero Meta (nothing special).
func Standard(name string) Meta {
	switch name {
	case NameCaptureVolatile, NameInvestigate:
		return Meta{Evidence: true}
	case NameSnapshot:
		return Meta{Evidence: true, OnVM: true}
	case NameIsolate:
		return Meta{Posture: EffectQuarantine, Contains: true, OnVM: true}
	case NameRelease:
		return Meta{Posture: EffectRelease, OnVM: true}
	case NamePowerOff:
		return Meta{Destructive: true, Contains: true, OnVM: true}
	case NamePatch, NameRotateCredentials:
		return Meta{Destructive: true}
	}
	return Meta{}
}

// Describe is the metadata of a: its own when it declares it, the
// standard entry for its name otherwise.
func Describe(a Action) Meta {
	if d, ok := a.(Describer); ok {
		return d.Meta()
	}
	return Standard(a.Name())
}

// Entry is one action of the catalogue with its metadata.
type Entry struct {
	Action
	Meta
}

// Catalogue maps names to entries.
type Catalogue map[string]Entry

// NewCatalogue builds a catalogue, rejecting duplicate names. Whether an
// entry is reversible is a fact, not a claim: it has an Undo or not.
func NewCatalogue(list ...Action) (Catalogue, error) {
	c := Catalogue{}
	for _, a := range list {
		if _, dup := c[a.Name()]; dup {
			return nil, fmt.Errorf("registering action %q: duplicate name", a.Name())
		}
		e := Entry{Action: a, Meta: Describe(a)}
		_, e.Reversible = a.(Undoer)
		c[a.Name()] = e
	}
	return c, nil
}

// Decorate wraps every entry's action with wrap, keeping its metadata:
// how evidence recording and retrying are composed once, where the
// catalogue is built.
func (c Catalogue) Decorate(wrap func(Entry) Action) Catalogue {
	out := make(Catalogue, len(c))
	for n, e := range c {
		out[n] = Entry{Action: keepUndo(e, wrap(e)), Meta: e.Meta}
	}
	return out
}

// keepUndo returns d, the decorated e, with e's Undo still visible when
// the decorator did not forward it itself.
func keepUndo(e Entry, d Action) Action {
	if _, ok := d.(Undoer); ok || !e.Reversible {
		return d
	}
	return undoable{Action: d, undo: e.Action.(Undoer)}
}

type undoable struct {
	Action
	undo Undoer
}

func (u undoable) Undo(ctx context.Context, req Request) (Result, error) {
	return u.undo.Undo(ctx, req)
}

// ApplyVerified keeps an action that verifies as it applies doing so
// (ApplyVerifier); for any other it is Apply then Verify, as Execute's.
func (u undoable) ApplyVerified(ctx context.Context, req Request) (Result, Result, error) {
	return applyVerified(ctx, u.Action, req)
}

// Meta is the metadata of name (zero when the catalogue lacks it).
func (c Catalogue) Meta(name string) Meta { return c[name].Meta }

// EvidenceNames lists the catalogue's evidence actions, sorted.
func (c Catalogue) EvidenceNames() []string {
	var out []string
	for n, e := range c {
		if e.Evidence {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Names lists the catalogue's names, sorted.
func (c Catalogue) Names() []string {
	out := make([]string, 0, len(c))
	for n := range c {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// StandardNames lists the standard catalogue's names in the order a
// runbook usually takes them.
func StandardNames() []string {
	return []string{NameCaptureVolatile, NameSnapshot, NameIsolate, NameKillFlows, NameRelease, NamePowerOff, NameNotify,
		NameVerifyBaseline, NamePatch, NameRevokePeer, NameRotateCredentials, NameBlockIOC, NameInvestigate, NameCapture}
}
