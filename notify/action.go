package notify

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/warden-ir/warden/actions"
)

// Action parameters understood by the notify action.
const (
	ParamChannel  = "channel"  // channel name; default: the action's default channel
	ParamMessage  = "message"  // free text; optional
	ParamTitle    = "title"    // optional; default names incident and gateway
	ParamSeverity = "severity" // optional, passed through
)

// NoChannelSummary is the Result summary when no channel is configured.
const NoChannelSummary = "no notification channel configured"

type notifyAction struct {
	s   *Sender
	def string
}

var _ actions.Action = (*notifyAction)(nil)

// NewAction returns the catalogue's "notify" action. The channel comes from
// the "channel" parameter, else defaultChannel, else the only configured
// channel.
//
// With no channel configured at all (s nil or without channels), Plan, Apply
// and Verify succeed with Changed=false and a summary saying so: a missing
// notification setup must never block containment. A named channel that
// does not exist is a terminal error, so a typo in a runbook is not silent.
// Delivery failures are returned (4xx terminal, 5xx/connection transient);
// runbooks should place notify steps where a failure may not hold up
// containment.
func NewAction(s *Sender, defaultChannel string) actions.Action {
	return &notifyAction{s: s, def: defaultChannel}
}

func (a *notifyAction) Name() string { return actions.NameNotify }

func (a *notifyAction) configured() bool { return a.s != nil && len(a.s.channels) > 0 }

// channel resolves and checks the channel for req.
func (a *notifyAction) channel(req actions.Request) (string, error) {
	for k := range req.Params {
		switch k {
		case ParamChannel, ParamMessage, ParamTitle, ParamSeverity:
		default:
			known := []string{ParamChannel, ParamMessage, ParamTitle, ParamSeverity}
			return "", actions.Terminal(fmt.Errorf("notify: unknown parameter %q (known: %s)", k, strings.Join(known, ", ")))
		}
	}
	name := req.Params[ParamChannel]
	if name == "" {
		name = a.def
	}
	if name == "" && len(a.s.names) == 1 {
		name = a.s.names[0]
	}
	if name == "" {
		return "", actions.Terminal(fmt.Errorf("notify: no channel given and no default channel (configured: %s)",
			strings.Join(slices.Sorted(maps.Keys(a.s.channels)), ", ")))
	}
	if _, ok := a.s.channels[name]; !ok {
		return "", actions.Terminal(fmt.Errorf("notify: unknown channel %q", name))
	}
	return name, nil
}

func (a *notifyAction) delivered(key, ch string) (Delivery, bool) {
	d, ok := a.s.Delivery(key)
	return d, ok && d.OK() && d.Channel == ch
}

// Plan says which channel would be notified; nothing when already delivered.
func (a *notifyAction) Plan(_ context.Context, req actions.Request) (actions.Change, error) {
	if !a.configured() {
		return actions.Change{Summary: NoChannelSummary + ": nothing to send"}, nil
	}
	ch, err := a.channel(req)
	if err != nil {
		return actions.Change{}, err
	}
	if _, ok := a.delivered(req.IdempotencyKey, ch); ok {
		return actions.Change{Summary: fmt.Sprintf("notification already delivered to channel %s", ch)}, nil
	}
	summary := fmt.Sprintf("send notification to channel %s", ch)
	return actions.Change{Summary: summary, Changes: []string{summary}}, nil
}

// Apply sends the notification once per idempotency key.
func (a *notifyAction) Apply(ctx context.Context, req actions.Request) (actions.Result, error) {
	if !a.configured() {
		return actions.Result{Changed: false, Summary: NoChannelSummary}, nil
	}
	ch, err := a.channel(req)
	if err != nil {
		return actions.Result{}, err
	}
	if d, ok := a.delivered(req.IdempotencyKey, ch); ok {
		return actions.Result{Changed: false, Summary: fmt.Sprintf("notification already delivered to channel %s", ch), Details: details(d)}, nil
	}
	d, err := a.s.Send(ctx, ch, req.IdempotencyKey, a.message(req))
	if err != nil {
		return actions.Result{Details: details(d)}, fmt.Errorf("notifying channel %s: %w", ch, err)
	}
	return actions.Result{
		Changed: true,
		Summary: fmt.Sprintf("notified channel %s (HTTP %d after %d attempt(s))", ch, d.Status, d.Attempts),
		Details: details(d),
	}, nil
}

// Verify checks that the receiver accepted the notification (2xx).
func (a *notifyAction) Verify(_ context.Context, req actions.Request) (actions.Result, error) {
	if !a.configured() {
		return actions.Result{Summary: NoChannelSummary + ": nothing to verify"}, nil
	}
	ch, err := a.channel(req)
	if err != nil {
		return actions.Result{}, err
	}
	d, ok := a.s.Delivery(req.IdempotencyKey)
	switch {
	case !ok || d.Channel != ch:
		return actions.Result{}, fmt.Errorf("%w: no delivery to channel %s recorded", actions.ErrNotVerified, ch)
	case !d.OK():
		return actions.Result{Details: details(d)}, fmt.Errorf("%w: channel %s last answered %d", actions.ErrNotVerified, ch, d.Status)
	}
	return actions.Result{Summary: fmt.Sprintf("channel %s accepted the notification (HTTP %d)", ch, d.Status), Details: details(d)}, nil
}

func (a *notifyAction) message(req actions.Request) Message {
	title := req.Params[ParamTitle]
	if title == "" {
		title = fmt.Sprintf("Warden: incident %s on gateway %s", orDash(req.Incident), orDash(req.Gateway.ID))
	}
	return Message{
		Incident: req.Incident,
		Gateway:  req.Gateway.ID,
		Site:     req.Gateway.Site,
		Severity: req.Params[ParamSeverity],
		Title:    title,
		Text:     req.Params[ParamMessage],
	}
}

func details(d Delivery) map[string]any {
	if d.Channel == "" {
		return nil
	}
	m := map[string]any{"channel": d.Channel, "status": d.Status, "attempts": d.Attempts}
	if !d.DeliveredAt.IsZero() {
		m["delivered_at"] = d.DeliveredAt.UTC().Format(time.RFC3339Nano)
	}
	return m
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
