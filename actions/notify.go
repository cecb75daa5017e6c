package actions

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Notifier delivers notifications to named channels (notify's Sender,
// webhooks with retries).
type Notifier interface {
	// Channels lists the configured channels in configuration order.
	Channels() []string
	// Notify delivers n to channel once per key: a key already delivered
	// to that channel is not sent again, and its delivery is returned.
	// A refused notification (4xx) is a terminal error.
	Notify(ctx context.Context, channel, key string, n Notification) (Delivery, error)
	// Delivered returns the last delivery recorded under key.
	Delivered(key string) (Delivery, bool)
}

// Notification is what the notify action sends. Run is the run whose
// step sends it.
type Notification struct {
	Incident, Run, Gateway, Site, Severity, Title, Text string
}

// Delivery is the outcome of a notification: the channel's last HTTP
// status (0 when no response arrived), the attempts, and when it was
// accepted (zero unless it was: 2xx).
type Delivery struct {
	Channel          string
	Status, Attempts int
	DeliveredAt      time.Time
}

func (d Delivery) accepted() bool { return d.Status >= 200 && d.Status < 300 }

// Parameters understood by the notify action.
const (
	ParamChannel  = "channel"  // channel name; default: the action's default channel
	ParamMessage  = "message"  // free text; optional
	ParamTitle    = "title"    // optional; default names incident and gateway
	ParamSeverity = "severity" // optional, passed through
)

// NoChannelSummary is the Result summary when no channel is configured.
const NoChannelSummary = "no notification channel configured"

// NewNotify returns notify. The channel comes from the "channel"
// parameter, else defaultChannel, else the only configured channel.
//
// With no channel configured at all (n nil or without channels), Plan,
// Apply and Verify succeed with Changed=false and a summary saying so: a
// missing notification setup must never block containment. A named
// channel that does not exist is a terminal error, so a typo in a runbook
// is not silent. Delivery failures are returned (4xx terminal,
// 5xx/connection transient); runbooks should place notify steps where a
// failure may not hold up containment.
func NewNotify(n Notifier, defaultChannel string) Action {
	return &notifyAction{n: n, def: defaultChannel}
}

type notifyAction struct {
	n   Notifier
	def string
}

func (a *notifyAction) Name() string { return NameNotify }

func (a *notifyAction) configured() bool { return a.n != nil && len(a.n.Channels()) > 0 }

// channel resolves and checks the channel for req.
func (a *notifyAction) channel(req Request) (string, error) {
	known := []string{ParamChannel, ParamMessage, ParamTitle, ParamSeverity}
	for k := range req.Params {
		if !slices.Contains(known, k) {
			return "", Terminal(fmt.Errorf("notify: unknown parameter %q (known: %s)", k, strings.Join(known, ", ")))
		}
	}
	channels := a.n.Channels()
	name := req.Params[ParamChannel]
	if name == "" {
		name = a.def
	}
	if name == "" && len(channels) == 1 {
		name = channels[0]
	}
	if name == "" {
		return "", Terminal(fmt.Errorf("notify: no channel given and no default channel (configured: %s)",
			strings.Join(slices.Sorted(slices.Values(channels)), ", ")))
	}
	if !slices.Contains(channels, name) {
		return "", Terminal(fmt.Errorf("notify: unknown channel %q", name))
	}
	return name, nil
}

func (a *notifyAction) delivered(key, ch string) (Delivery, bool) {
	d, ok := a.n.Delivered(key)
	return d, ok && d.accepted() && d.Channel == ch
}

// Plan says which channel would be notified; nothing when already delivered.
func (a *notifyAction) Plan(_ context.Context, req Request) (Change, error) {
	if !a.configured() {
		return Change{Summary: NoChannelSummary + ": nothing to send"}, nil
	}
	ch, err := a.channel(req)
	if err != nil {
		return Change{}, err
	}
	if _, ok := a.delivered(req.IdempotencyKey, ch); ok {
		return Change{Summary: fmt.Sprintf("notification already delivered to channel %s", ch)}, nil
	}
	summary := fmt.Sprintf("send notification to channel %s", ch)
	return Change{Summary: summary, Changes: []string{summary}}, nil
}

// Apply sends the notification once per idempotency key.
func (a *notifyAction) Apply(ctx context.Context, req Request) (Result, error) {
	if !a.configured() {
		return Result{Changed: false, Summary: NoChannelSummary}, nil
	}
	ch, err := a.channel(req)
	if err != nil {
		return Result{}, err
	}
	if d, ok := a.delivered(req.IdempotencyKey, ch); ok {
		return Result{Changed: false, Summary: fmt.Sprintf("notification already delivered to channel %s", ch), Details: deliveryDetails(d)}, nil
	}
	d, err := a.n.Notify(ctx, ch, req.IdempotencyKey, notification(req))
	if err != nil {
		return Result{Details: deliveryDetails(d)}, fmt.Errorf("notifying channel %s: %w", ch, err)
	}
	return Result{
		Changed: true,
		Summary: fmt.Sprintf("notified channel %s (HTTP %d after %d attempt(s))", ch, d.Status, d.Attempts),
		Details: deliveryDetails(d),
	}, nil
}

// Verify checks that the receiver accepted the notification (2xx).
func (a *notifyAction) Verify(_ context.Context, req Request) (Result, error) {
	if !a.configured() {
		return Result{Summary: NoChannelSummary + ": nothing to verify"}, nil
	}
	ch, err := a.channel(req)
	if err != nil {
		return Result{}, err
	}
	d, ok := a.n.Delivered(req.IdempotencyKey)
	switch {
	case !ok || d.Channel != ch:
		return Result{}, fmt.Errorf("%w: no delivery to channel %s recorded", ErrNotVerified, ch)
	case !d.accepted():
		return Result{Details: deliveryDetails(d)}, fmt.Errorf("%w: channel %s last answered %d", ErrNotVerified, ch, d.Status)
	}
	return Result{Summary: fmt.Sprintf("channel %s accepted the notification (HTTP %d)", ch, d.Status), Details: deliveryDetails(d)}, nil
}

func notification(req Request) Notification {
	title := req.Params[ParamTitle]
	if title == "" {
		title = fmt.Sprintf("Warden: incident %s on gateway %s", orDash(req.Incident), orDash(req.Gateway.ID))
	}
	return Notification{Incident: req.Incident, Run: req.Run, Gateway: req.Gateway.ID, Site: req.Gateway.Site,
		Severity: req.Params[ParamSeverity], Title: title, Text: req.Params[ParamMessage]}
}

func deliveryDetails(d Delivery) map[string]any {
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
